//! A real HTTP client for the tests: a tokio runtime, a client that opens a
//! new connection for every request, and GET. keepalive's suite includes
//! this file too.

use std::time::Duration;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a tokio runtime")
}

/// A client that opens a new connection for every request, so "refused"
/// means the listener is closed, not that a pooled connection was dropped.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// GET `url`: the status and the whole body.
pub fn get(
    client: &reqwest::Client,
    url: String,
) -> impl Future<Output = reqwest::Result<(u16, String)>> + Send + 'static {
    let request = client.get(url);
    async move {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }
}
