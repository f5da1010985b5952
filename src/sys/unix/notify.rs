//! The service's side of systemd's notification protocol: when a run
//! starts, one datagram, `STOPPING=1` and `EXTEND_TIMEOUT_USEC=` the run's
//! budget, to the socket `NOTIFY_SOCKET` names (systemd, or keepalive,
//! which speaks the same protocol). systemd starts its stop timer when it
//! reads `STOPPING=1` and kills at `TimeoutStopSec=`; the extension makes
//! it wait as long as the run may take, and never less than its own
//! timeout (systemd does not shorten it). Without the variable nothing is
//! sent. A path or, on Linux, an abstract address
//! (`@name`) is accepted, as `sd_notify(3)` does.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::OnceLock;

/// `NOTIFY_SOCKET`, read at install: a run does not touch the environment,
/// whose lock an application thread may hold.
static ADDRESS: OnceLock<Option<OsString>> = OnceLock::new();

/// Reads `NOTIFY_SOCKET` once.
pub(crate) fn read_notify_socket() {
    ADDRESS.get_or_init(|| std::env::var_os("NOTIFY_SOCKET").filter(|a| !a.is_empty()));
}

/// Tells the service manager the service is stopping, and may take `left`
/// (the run's budget) to do it. It is a courtesy: errors are ignored, and
/// the send never blocks (a full queue drops it).
pub(crate) fn notify_stopping(left: std::time::Duration) {
    if let Some(Some(address)) = ADDRESS.get() {
        let message = format!(
            "STOPPING=1\nEXTEND_TIMEOUT_USEC={}\n",
            left.as_micros().max(1)
        );
        let _ = send(address, message.as_bytes());
    }
}

fn send(address: &OsString, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    match address.as_bytes().strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(name) => {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &address)?;
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Some(_) => return Err(io::ErrorKind::Unsupported.into()),
        None => {
            socket.send_to(message, Path::new(address))?;
        }
    }
    Ok(())
}
