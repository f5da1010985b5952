//! The private runtime directory (Unix): where an instance's control
//! socket and its workers' notification sockets live.
//!
//! Anything another local user can make before us is hostile, so a
//! directory is used only once it is checked **on the descriptor opened**
//! (as OpenSSH and tmux do): opened without following a link, it must be a
//! directory of this user's that no one else can enter (no group or other
//! bits). Where it lives:
//!
//! 1. `$XDG_RUNTIME_DIR/keepalive` when that is set (the login session's
//!    own directory, made by logind for the user alone);
//! 2. `/run/keepalive` for root;
//! 3. else `keepalive-UID` in the temporary directory. That name is
//!    predictable: another user may have made it first (open to all, a
//!    link to their own directory, or theirs and closed to us). Such a
//!    directory is refused, never used, and a private one is made in its
//!    place with an unpredictable name, `keepalive-UID.XXXXXX`
//!    (`mkdtemp`'s way, through `tempfile`). A client looks at both
//!    names, and trusts only the directories that pass the same check.
//!
//! A socket's path must fit in `sockaddr_un` (107 bytes and a NUL): a name
//! too long for it gets a socket file named by a prefix of it and a hash
//! of the whole, which a client computes the same way.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The longest socket path `bind(2)` takes (`sun_path` is 108 bytes on
/// Linux, 104 on the BSDs and macOS, with the NUL).
#[cfg(target_os = "linux")]
const MAX_SOCKET_PATH: usize = 107;
#[cfg(not(target_os = "linux"))]
const MAX_SOCKET_PATH: usize = 103;

/// This user's effective id.
fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Where this user's runtime directory is looked for.
enum Base {
    /// `$XDG_RUNTIME_DIR/keepalive` or `/run/keepalive`: one place, made
    /// if missing, an error if it fails the check.
    Fixed(PathBuf),
    /// The temporary directory: `keepalive-UID`, or a private
    /// `keepalive-UID.XXXXXX` beside it when that is not ours.
    Temp(PathBuf),
}

fn base() -> Base {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        return Base::Fixed(PathBuf::from(dir).join("keepalive"));
    }
    outside_a_session()
}

/// Where the runtime directory is without `$XDG_RUNTIME_DIR`: a systemd
/// service's, a cron job's, a container's.
fn outside_a_session() -> Base {
    if me() == 0 && Path::new("/run").is_dir() {
        return Base::Fixed(PathBuf::from("/run/keepalive"));
    }
    Base::Temp(std::env::temp_dir())
}

/// The predictable name in the temporary directory.
fn temp_name() -> String {
    format!("keepalive-{}", me())
}

/// Checks `dir` on its own descriptor: a directory (not a link to one),
/// this user's, closed to everyone else.
///
/// # Errors
///
/// [`io::ErrorKind::PermissionDenied`] saying what is wrong; the open's
/// error when it cannot be opened (`NotFound`).
pub fn check(dir: &Path) -> io::Result<()> {
    checked(dir, false)
}

/// [`check`]; with `repair`, a directory of ours that others may read or
/// enter, but not write to (nothing of theirs can be in it), is closed
/// (`fchmod` 0700 on the descriptor checked) rather than refused.
fn checked(dir: &Path, repair: bool) -> io::Result<()> {
    let opened = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir);
    let file = match opened {
        Ok(file) => file,
        // O_NOFOLLOW on a link: ELOOP, or ENOTDIR with O_DIRECTORY.
        Err(err) if matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            let link = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            let what = if link {
                "is a symbolic link"
            } else {
                "is not a directory"
            };
            return Err(untrusted(dir, what));
        }
        // Somebody else's, closed to us: say whose.
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            return Err(match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.uid() != me() => not_ours(dir, meta.uid()),
                _ => err,
            });
        }
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if meta.uid() != me() {
        return Err(not_ours(dir, meta.uid()));
    }
    if meta.mode() & 0o077 != 0 && repair && meta.mode() & 0o022 == 0 {
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    } else if meta.mode() & 0o077 != 0 {
        return Err(untrusted(
            dir,
            &format!(
                "is open to other users (mode {:o}; it must be 700)",
                meta.mode() & 0o777
            ),
        ));
    }
    Ok(())
}

fn not_ours(dir: &Path, owner: u32) -> io::Error {
    untrusted(
        dir,
        &format!("belongs to uid {owner}, not to you (uid {})", me()),
    )
}

fn untrusted(dir: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} {why}: not used", dir.display()),
    )
}

/// This user's runtime directory, made (mode 0700) if there is none, and
/// checked. Also says, through `refused`, a predictable directory that was
/// refused (somebody else's) before a private one was made instead.
///
/// # Errors
///
/// A directory that cannot be made, or (for `$XDG_RUNTIME_DIR` and
/// `/run`) one that fails [`check`].
pub(crate) fn own(refused: impl FnOnce(&io::Error)) -> io::Result<PathBuf> {
    match base() {
        Base::Fixed(dir) => {
            make(&dir)?;
            checked(&dir, true)?;
            Ok(dir)
        }
        Base::Temp(temp) => {
            check_temp(&temp)?;
            let dir = temp.join(temp_name());
            let err = match make(&dir).and_then(|()| checked(&dir, true)) {
                Ok(()) => return Ok(dir),
                Err(err) => err,
            };
            refused(&err);
            if let Some(private) = private_dirs(&temp).into_iter().next() {
                return Ok(private);
            }
            let made = tempfile::Builder::new()
                .prefix(&format!("{}.", temp_name()))
                .rand_bytes(8)
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir_in(&temp)?
                .keep();
            check(&made)?;
            Ok(made)
        }
    }
}

/// The temporary directory itself: one that everyone may write to must be
/// sticky (as `/tmp` is), or another user could rename our directory away
/// between its check and its use.
fn check_temp(temp: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(temp)?;
    if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(untrusted(
            temp,
            "is writable by everyone and not sticky (mode 1777 is)",
        ));
    }
    Ok(())
}

/// Makes `dir` (mode 0700) unless something is there already; its parent
/// must exist (`$XDG_RUNTIME_DIR`, `/run`, the temporary directory).
fn make(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        made => made,
    }
}

/// The private `keepalive-UID.XXXXXX` directories of this user in `temp`
/// that pass the check.
fn private_dirs(temp: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.", temp_name());
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(temp)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .filter(|dir| check(dir).is_ok())
        .collect();
    dirs.sort();
    dirs
}

/// The directories a client looks in for instances: those of this user
/// that pass the check. From a login session (`$XDG_RUNTIME_DIR` set),
/// also the one an instance outside a session uses (one a systemd unit
/// runs, which has no `$XDG_RUNTIME_DIR`), so `keepalive status` over SSH
/// finds it. When there is none, why: the directory that was found but
/// refused, or `NotFound` when nothing is there.
///
/// # Errors
///
/// As said: no trusted directory, with the reason.
pub(crate) fn trusted() -> io::Result<Vec<PathBuf>> {
    let mut found = trusted_in(base());
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| !dir.is_empty()) {
        if let Ok(more) = trusted_in(outside_a_session()) {
            match &mut found {
                Ok(dirs) => {
                    for dir in more {
                        if !dirs.contains(&dir) {
                            dirs.push(dir);
                        }
                    }
                }
                // A directory refused (somebody else's) is said, not
                // hidden behind the other place.
                Err(err) if err.kind() == io::ErrorKind::NotFound && !more.is_empty() => {
                    found = Ok(more);
                }
                Err(_) => {}
            }
        }
    }
    found
}

/// The trusted directories of `base`.
fn trusted_in(base: Base) -> io::Result<Vec<PathBuf>> {
    match base {
        Base::Fixed(dir) => check(&dir).map(|()| vec![dir]),
        Base::Temp(temp) => {
            check_temp(&temp)?;
            let dir = temp.join(temp_name());
            let first = check(&dir);
            let mut dirs = private_dirs(&temp);
            match first {
                Ok(()) => dirs.insert(0, dir),
                Err(err) if dirs.is_empty() => return Err(err),
                Err(_) => {}
            }
            Ok(dirs)
        }
    }
}

/// The socket file of the instance `name` in `dir`: `NAME.sock`, or, when
/// that path would not fit in a socket address, a prefix of the name, `~`
/// and a hash of the whole name.
pub(crate) fn socket_in(dir: &Path, name: &str) -> PathBuf {
    // `dir/` + the name + `.sock`.
    let room = MAX_SOCKET_PATH.saturating_sub(dir.as_os_str().len() + 1 + 5);
    dir.join(format!("{}.sock", fitting_name(name, room)))
}

/// The lock file that says the name `name` is taken, beside its socket.
pub(crate) fn lock_in(dir: &Path, name: &str) -> PathBuf {
    socket_in(dir, name).with_extension("lock")
}

/// The prefix of the notification directory of the instance `name` in
/// `dir`, `NAME.workers.`, with the name cut (and hashed) so that the
/// directory's sockets, `XXXXXX/w` and a number and `.sock`, fit in a
/// socket address.
pub(crate) fn notify_prefix(dir: &Path, name: &str) -> String {
    // `dir/` + the name + `.workers.` + 6 random + `/w` + 20 digits + `.sock`.
    let room = MAX_SOCKET_PATH.saturating_sub(dir.as_os_str().len() + 1 + 9 + 6 + 2 + 20 + 5);
    format!("{}.workers.", fitting_name(name, room))
}

/// `name` if it is at most `room` bytes, else as much of it as leaves room
/// for `~` and 16 hex digits of a hash of the whole.
fn fitting_name(name: &str, room: usize) -> String {
    if name.len() <= room {
        return name.to_owned();
    }
    let mut cut = room.saturating_sub(17).min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{:016x}", &name[..cut], fnv1a(name.as_bytes()))
}

/// FNV-1a, 64 bits: a hash that is the same in every build and version
/// (std's `DefaultHasher` promises neither), for a name too long to be a
/// file name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_gets_a_short_socket_file_that_fits() {
        let dir = Path::new("/run/user/1000/keepalive");
        assert_eq!(socket_in(dir, "web"), dir.join("web.sock"));
        let long = "a-program-with-a-very-long-file-name-".repeat(4);
        let path = socket_in(dir, &long);
        assert!(path.as_os_str().len() <= MAX_SOCKET_PATH, "{path:?}");
        assert_eq!(path, socket_in(dir, &long), "the same every time");
        assert_ne!(path, socket_in(dir, &format!("{long}x")));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("a-program-") && name.ends_with(".sock"),
            "{name}"
        );
        // Multi-byte characters are cut at a boundary.
        let path = socket_in(dir, &"é".repeat(100));
        assert!(path.as_os_str().len() <= MAX_SOCKET_PATH, "{path:?}");
    }

    #[test]
    fn only_a_private_directory_of_ours_passes() {
        let temp = tempfile::tempdir().unwrap();
        let good = temp.path().join("good");
        make(&good).unwrap();
        check(&good).unwrap();
        let open = temp.path().join("open");
        make(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let err = check(&open).unwrap_err().to_string();
        assert!(err.contains("open to other users (mode 777"), "{err}");
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let err = check(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        let file = temp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(
            check(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }
}
