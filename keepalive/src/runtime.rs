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

/// [`check`]; with `repair`, a directory of ours open to others is closed
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
                Ok(meta) if meta.uid() != me() => untrusted(
                    dir,
                    &format!("belongs to uid {}, not to you (uid {})", meta.uid(), me()),
                ),
                _ => err,
            });
        }
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if meta.uid() != me() {
        return Err(untrusted(
            dir,
            &format!("belongs to uid {}, not to you (uid {})", meta.uid(), me()),
        ));
    }
    if meta.mode() & 0o077 != 0 && repair {
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
/// that pass the check. When there is none, why: the directory that was
/// found but refused, or `NotFound` when nothing is there.
///
/// # Errors
///
/// As said: no trusted directory, with the reason.
pub(crate) fn trusted() -> io::Result<Vec<PathBuf>> {
    match base() {
        Base::Fixed(dir) => check(&dir).map(|()| vec![dir]),
        Base::Temp(temp) => {
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
    let plain = dir.join(format!("{name}.sock"));
    if plain.as_os_str().len() <= MAX_SOCKET_PATH {
        return plain;
    }
    // `dir/` + prefix + `~` + 16 hex digits + `.sock`.
    let room = MAX_SOCKET_PATH.saturating_sub(dir.as_os_str().len() + 1 + 1 + 16 + 5);
    let mut cut = room.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    dir.join(format!(
        "{}~{:016x}.sock",
        &name[..cut],
        fnv1a(name.as_bytes())
    ))
}

/// A name short enough to prefix a directory of sockets (`NAME.workers.`):
/// the name itself up to 40 bytes, else a prefix, `~` and its hash.
pub(crate) fn short_name(name: &str) -> String {
    if name.len() <= 40 {
        return name.to_owned();
    }
    let mut cut = 20;
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

/// A name an instance can have: it becomes a file name and a line of a
/// unit file, so not empty, no `/`, no leading `.` (`.`, `..`, hidden), no
/// control character (a newline), at most 200 bytes.
///
/// # Errors
///
/// What is wrong with it.
///
/// ```
/// use keepalive::control::check_name;
/// assert!(check_name("web-2").is_ok());
/// for bad in ["", "../x", "/abs/x", ".hidden", "a\nExecStartPre=evil", "a/b"] {
///     assert!(check_name(bad).is_err(), "{bad:?}");
/// }
/// ```
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it has a '/'"
    } else if name.starts_with('.') {
        "it starts with '.'"
    } else if name.chars().any(char::is_control) {
        "it has a control character"
    } else if name.len() > 200 {
        "it is longer than 200 bytes"
    } else {
        return Ok(());
    };
    Err(format!("{name:?} cannot name an instance: {why}"))
}

/// A name for an instance made from any text (a program's file name):
/// control characters and `/` become `_`, leading dots go, and an empty
/// result is `keepalive`.
pub(crate) fn sanitize_name(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() || c == '/' { '_' } else { c })
        .collect();
    let mut name = cleaned.trim_start_matches('.').to_owned();
    while name.len() > 200 {
        name.pop();
    }
    if name.is_empty() {
        "keepalive".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_paths_or_lines_are_refused_and_others_cleaned() {
        assert!(check_name("shop").is_ok());
        assert!(check_name("a..b").is_ok());
        for bad in [
            "", ".", "..", "../../x", "/abs/x", ".sock", "a\tb", "x\u{7f}",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(201)).is_err());
        assert_eq!(sanitize_name("..my\nserver"), "my_server");
        assert_eq!(sanitize_name("..."), "keepalive");
        assert!(check_name(&sanitize_name(&"é".repeat(300))).is_ok());
    }

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
