//! The listening sockets the supervisor holds for its workers, passed to
//! each as systemd's socket activation does: descriptors from 3, with
//! `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID`. The supervisor binds
//! them once, at start, and never closes or shuts them down while it lives,
//! so a connection is queued by the kernel whichever worker takes it, and
//! none is refused while workers are replaced.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// An address to listen on: TCP, or a Unix socket path.
///
/// Parsed from `127.0.0.1:8080`, `[::1]:8080`, `unix:/run/app.sock`, or
/// any text with a `/` in it (`/run/app.sock`, `./app.sock`).
///
/// ```
/// use keepalive::ListenAddr;
///
/// let tcp: ListenAddr = "127.0.0.1:8080".parse()?;
/// assert_eq!(tcp, ListenAddr::Tcp("127.0.0.1:8080".parse()?));
/// let unix: ListenAddr = "/run/app.sock".parse()?;
/// assert_eq!(unix, ListenAddr::Unix("/run/app.sock".into()));
/// assert!("localhost".parse::<ListenAddr>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP address and port (port 0 picks a free one).
    Tcp(SocketAddr),
    /// A Unix stream socket at this path. A stale socket file left there
    /// (nobody accepts on it) is replaced; anything else there is an
    /// error that says what it is. The supervisor removes the socket file
    /// it made when it ends.
    Unix(PathBuf),
}

/// Why a text is not a [`ListenAddr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseListenAddrError(String);

impl fmt::Display for ParseListenAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not an address to listen on: {:?} (say 127.0.0.1:8080, [::1]:8080 or /path/to.sock)",
            self.0
        )
    }
}

impl std::error::Error for ParseListenAddrError {}

impl FromStr for ListenAddr {
    type Err = ParseListenAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.is_empty() {
                return Ok(ListenAddr::Unix(path.into()));
            }
        } else if text.contains('/') {
            return Ok(ListenAddr::Unix(text.into()));
        } else if let Ok(addr) = text.parse() {
            return Ok(ListenAddr::Tcp(addr));
        }
        Err(ParseListenAddrError(text.to_owned()))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(unix)]
pub(crate) use unix::{Listeners, SocketFile};

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;

    use super::ListenAddr;

    /// The bound sockets, moved above the descriptors the workers get.
    pub(crate) struct Listeners {
        fds: Vec<OwnedFd>,
        names: String,
        /// What each socket is bound to (port 0 resolved), for the events.
        pub(crate) bound: Vec<String>,
        /// The Unix socket files bound, removed when the listeners go.
        pub(crate) files: Vec<SocketFile>,
    }

    /// A socket file the supervisor made, known by its inode: removed only
    /// if it is still that file (not one another process put there since).
    #[derive(Clone, Debug)]
    pub(crate) struct SocketFile {
        path: std::path::PathBuf,
        id: (u64, u64),
    }

    impl SocketFile {
        pub(crate) fn made(path: &Path) -> io::Result<SocketFile> {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::symlink_metadata(path)?;
            Ok(SocketFile {
                path: path.to_owned(),
                id: (meta.dev(), meta.ino()),
            })
        }

        pub(crate) fn remove(&self) {
            use std::os::unix::fs::MetadataExt;
            if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    impl Drop for Listeners {
        fn drop(&mut self) {
            for file in &self.files {
                file.remove();
            }
        }
    }

    impl Listeners {
        /// Binds every `(name, address)`, in order: the workers get them as
        /// descriptors 3, 4, … with these names.
        pub(crate) fn bind(addrs: &[(String, ListenAddr)]) -> io::Result<Listeners> {
            let mut fds = Vec::with_capacity(addrs.len());
            let mut bound = Vec::with_capacity(addrs.len());
            let mut files = Vec::new();
            for (_, addr) in addrs {
                let context =
                    |err: io::Error| crate::error::context(err, format!("cannot listen on {addr}"));
                let (fd, local) = match addr {
                    ListenAddr::Tcp(addr) => {
                        let listener = std::net::TcpListener::bind(addr).map_err(context)?;
                        let local = listener.local_addr()?.to_string();
                        (OwnedFd::from(listener), local)
                    }
                    ListenAddr::Unix(path) => {
                        replace_stale_socket(path).map_err(context)?;
                        let listener = UnixListener::bind(path).map_err(context)?;
                        files.push(SocketFile::made(path)?);
                        (OwnedFd::from(listener), format!("unix:{}", path.display()))
                    }
                };
                // The longest queue the system allows: connections wait
                // there while workers are replaced.
                rustix::net::listen(&fd, libc::SOMAXCONN)?;
                fds.push(fd);
                bound.push(local);
            }
            // Above the descriptors the workers get (3..3+n), so putting
            // them in place in a child never overwrites one still to move.
            let floor = 3 + fds.len() as RawFd + 64;
            let fds = fds
                .into_iter()
                .map(|fd| move_above(fd, floor))
                .collect::<io::Result<_>>()?;
            let names = addrs
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(":");
            Ok(Listeners {
                fds,
                names,
                bound,
                files,
            })
        }

        /// The descriptors, in the order the workers get them.
        pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
            self.fds.iter().map(AsRawFd::as_raw_fd).collect()
        }

        /// `LISTEN_FDNAMES`: the names, colon-separated.
        pub(crate) fn names(&self) -> &str {
            &self.names
        }
    }

    /// A socket file nobody accepts on (a supervisor that was killed left
    /// it) is removed; one somebody serves is an error, and so is anything
    /// else at the path, named.
    fn replace_stale_socket(path: &Path) -> io::Result<()> {
        use std::os::unix::fs::FileTypeExt;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        let kind = meta.file_type();
        if kind.is_socket() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is served by another process", path.display()),
                ));
            }
            return std::fs::remove_file(path);
        }
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "a file that is not a socket"
        };
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is {what}, not a socket: remove it or listen elsewhere",
                path.display()
            ),
        ))
    }

    /// The same socket at a descriptor `>= floor`, close-on-exec.
    fn move_above(fd: OwnedFd, floor: RawFd) -> io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(&fd, floor)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_back() {
        for (text, shown) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:0", "[::1]:0"),
            ("unix:app.sock", "unix:app.sock"),
            ("/run/app.sock", "unix:/run/app.sock"),
            ("./app.sock", "unix:./app.sock"),
        ] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), shown);
        }
        for bad in ["", "localhost", "8080", "127.0.0.1", "unix:"] {
            let err = bad.parse::<ListenAddr>().unwrap_err();
            assert!(err.to_string().contains("say 127.0.0.1:8080"), "{err}");
        }
    }
}
