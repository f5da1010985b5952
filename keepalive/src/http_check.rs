//! `--health-url`: an HTTP check of the workers, on a thread of its own.
//!
//! Every interval the thread asks `GET URL` (HTTP/1.1, `Connection:
//! close`) and reads the status line: 2xx and 3xx are healthy; anything
//! else, no answer within the interval (at most 10 s), or a refused
//! connection is a failure. After `fails` failures in a row it tells the
//! loop (the shared state, and the loop's bell), which replaces the
//! workers ready-first; it counts nothing while workers are being
//! replaced, or while none is ready yet (a worker starting is not a
//! worker failing).
//!
//! A request to a port the workers share reaches whichever worker the
//! kernel picks, so a failure cannot be pinned on one of several workers:
//! with one worker it is replaced, with more every worker is, one at a
//! time. The check is a few lines over `TcpStream` rather than an HTTP
//! client crate: it sends one fixed request to a plain-HTTP address and
//! reads one line.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stop::Shared;

/// What `--health-url` checks, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// `http://HOST:PORT/PATH`.
    pub url: HealthUrl,
    /// How often it is asked.
    pub interval: Duration,
    /// How many failures in a row make the workers unhealthy (at least 1).
    pub fails: u32,
}

/// A plain-HTTP URL, split: `http://127.0.0.1:8080/healthz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthUrl {
    host: String,
    port: u16,
    path: String,
}

impl std::str::FromStr for HealthUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<HealthUrl, String> {
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            format!("not an http:// URL: {text} (the check speaks plain HTTP, as to a worker on this host)")
        })?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("not a port: {port} in {text}"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("no host in {text}"));
        }
        Ok(HealthUrl {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }
}

impl std::fmt::Display for HealthUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// The longest status line read: `HTTP/1.1 200 OK` and a long reason.
const MAX_STATUS_LINE: usize = 1024;

/// Asks `url` once: `Ok` for a 2xx or 3xx answer, else what was wrong.
/// The whole exchange (connect, request, status line) has `timeout`, not
/// each read: a server that trickles a byte a second fails it; and at most
/// [`MAX_STATUS_LINE`] bytes are read.
fn ask(url: &HealthUrl, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let late = || format!("no answer within {} ms", timeout.as_millis());
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left).ok_or_else(late)
    };
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|err| err.to_string())?
        .next()
        .ok_or_else(|| format!("{} has no address", url.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, left()?).map_err(|err| err.to_string())?;
    let said = |err: io::Error| match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => late(),
        _ => err.to_string(),
    };
    stream.set_write_timeout(Some(left()?)).map_err(said)?;
    // In one write: `write!` on the stream would send each piece of the
    // format apart, and a server that answers once it has the request
    // line, closing the connection, resets it under the rest.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: keepalive\r\nConnection: close\r\n\r\n",
        url.path, url.host, url.port
    );
    stream.write_all(request.as_bytes()).map_err(said)?;
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !line.contains(&b'\n') {
        if line.len() > MAX_STATUS_LINE {
            return Err(format!(
                "not an HTTP answer: no status line in its first {MAX_STATUS_LINE} bytes"
            ));
        }
        stream.set_read_timeout(Some(left()?)).map_err(said)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(said(err)),
        }
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let line = String::from_utf8_lossy(&line[..end]).into_owned();
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim_end()))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code}"))
    }
}

/// Starts the checking thread, for as long as the process lives; it stops
/// asking once the supervisor is stopping.
pub(crate) fn start(check: HealthCheck, shared: Arc<Shared>) -> io::Result<()> {
    let timeout = check
        .interval
        .clamp(Duration::from_millis(100), Duration::from_secs(10));
    std::thread::Builder::new()
        .name("keepalive-health".into())
        .spawn(move || {
            let mut failed = 0;
            loop {
                std::thread::sleep(check.interval);
                let counts = {
                    let state = shared.lock();
                    if state.stopping.is_some() {
                        return;
                    }
                    !state.replacing && state.view.iter().any(|seen| seen.is_ready())
                };
                if !counts {
                    failed = 0;
                    continue;
                }
                match ask(&check.url, timeout) {
                    Ok(()) => failed = 0,
                    Err(reason) => {
                        failed += 1;
                        if failed >= check.fails.max(1) {
                            failed = 0;
                            shared.lock().unhealthy = Some(format!(
                                "{} failed {} time(s) in a row (last: {reason})",
                                check.url, check.fails
                            ));
                            shared.bell.ring();
                        }
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn urls_are_plain_http() {
        let url: HealthUrl = "http://127.0.0.1:8080/healthz".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 8080, "/healthz")
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:8080/healthz");
        let url: HealthUrl = "http://[::1]:81".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 81, "/")
        );
        assert_eq!(url.to_string(), "http://[::1]:81/");
        assert_eq!("http://localhost/x".parse::<HealthUrl>().unwrap().port, 80);
        assert!(
            "https://a/"
                .parse::<HealthUrl>()
                .unwrap_err()
                .contains("plain HTTP")
        );
        assert!("http://a:port/".parse::<HealthUrl>().is_err());
        assert!("http:///x".parse::<HealthUrl>().is_err());
    }

    #[test]
    fn a_refused_connection_is_a_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        assert!(ask(&url, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn the_status_line_decides() {
        for (answer, healthy) in [
            ("HTTP/1.1 200 OK\r\n", true),
            ("HTTP/1.1 302 Found\r\n", true),
            ("HTTP/1.1 503 Busy\r\n", false),
            ("nonsense\r\n", false),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                // The whole request is read before the answer: a socket
                // closed with unread bytes is reset, and the client could
                // see the reset before the answer.
                let mut header = String::new();
                while reader.read_line(&mut header).unwrap() > 0 && header != "\r\n" {
                    header.clear();
                }
                stream.write_all(answer.as_bytes()).unwrap();
                request
            });
            let url = format!("http://127.0.0.1:{port}/healthz").parse().unwrap();
            assert_eq!(
                ask(&url, Duration::from_secs(5)).is_ok(),
                healthy,
                "{answer}"
            );
            assert_eq!(server.join().unwrap(), "GET /healthz HTTP/1.1\r\n");
        }
    }

    /// A server that answers `bytes`, `every` apart, and holds the line.
    fn trickling(bytes: Vec<u8>, every: Duration) -> HealthUrl {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // The request first: a socket closed with unread bytes is reset.
            let mut header = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while reader.read_line(&mut header).unwrap() > 0 && header != "\r\n" {
                header.clear();
            }
            for chunk in bytes.chunks(1) {
                if stream.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
            std::thread::sleep(Duration::from_secs(2));
        });
        format!("http://127.0.0.1:{port}/").parse().unwrap()
    }

    #[test]
    fn the_whole_exchange_has_one_deadline_and_a_bounded_line() {
        // A byte every 200 ms: each read is quick, the whole is not.
        let url = trickling(b"HTTP/1.1 200 OK\r\n".to_vec(), Duration::from_millis(200));
        let started = Instant::now();
        let err = ask(&url, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err, "no answer within 1000 ms");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // An endless status line is cut.
        let url = trickling(vec![b'x'; 4096], Duration::ZERO);
        let err = ask(&url, Duration::from_secs(5)).unwrap_err();
        assert!(
            err.contains("no status line in its first 1024 bytes"),
            "{err}"
        );
    }
}
