//! Who can reach an instance: a squatted runtime directory, names that
//! are paths or lines, a unit file's syntax, another user's client.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::Trial;

use super::{NOBODY, as_nobody, assert_root, client};
use crate::cluster::{Watchdog, next_number};
use crate::control::{RuntimeDir, pids, text};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        a_squatted_runtime_directory_is_refused_and_a_private_one_used,
        names_that_are_paths_or_lines_are_refused_and_long_ones_shortened,
        systemd_unit_runs_exactly_the_argv_that_ran,
        another_users_runtime_directory_is_not_trusted,
        root_without_a_session_uses_run_keepalive,
    ]
}

/// A directory like `/tmp`: anyone may make entries, only the owner
/// removes them (sticky). Removed when dropped, passed or failed.
struct SharedTmp(PathBuf);

impl SharedTmp {
    fn new(name: &str) -> SharedTmp {
        let dir = std::env::temp_dir().join(format!("exit_hook_tmp_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        SharedTmp(dir)
    }
}

impl Drop for SharedTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the squatter (root here, another user to `nobody`) put at
/// `keepalive-65534` before nobody's keepalive started.
enum Squat {
    /// A directory open to everyone, with a socket of the squatter's in it.
    OpenDir,
    /// A link to the squatter's own directory (open to everyone).
    Link,
    /// The squatter's directory, closed: nobody cannot even enter it.
    ClosedDir,
}

/// keepalive run as nobody, with `TMPDIR` `tmp` and no
/// `XDG_RUNTIME_DIR`: the fallback directory, squatted.
fn a_squatted_runtime_directory_is_refused_and_a_private_one_used() {
    assert_root();
    for squat in [Squat::OpenDir, Squat::Link, Squat::ClosedDir] {
        let guard = SharedTmp::new("squat");
        let tmp = guard.0.clone();
        let predictable = tmp.join(format!("keepalive-{NOBODY}"));
        let theirs = tmp.join("attacker");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o777)).unwrap();
        match squat {
            Squat::OpenDir => {
                std::fs::create_dir(&predictable).unwrap();
                std::fs::set_permissions(&predictable, std::fs::Permissions::from_mode(0o777))
                    .unwrap();
            }
            Squat::Link => std::os::unix::fs::symlink(&theirs, &predictable).unwrap(),
            Squat::ClosedDir => {
                std::fs::create_dir(&predictable).unwrap();
                std::fs::set_permissions(&predictable, std::fs::Permissions::from_mode(0o700))
                    .unwrap();
            }
        }
        // The squatter's socket, where nobody's `status` and `stop` would go.
        let bait = UnixListener::bind(theirs.join("app.sock")).unwrap();
        bait.set_nonblocking(true).unwrap();
        if let Squat::OpenDir = squat {
            drop(bait);
            let bait_here = UnixListener::bind(predictable.join("app.sock")).unwrap();
            check_squat(&tmp, &predictable, &bait_here);
        } else {
            check_squat(&tmp, &predictable, &bait);
        }
    }
}

fn check_squat(tmp: &Path, predictable: &Path, bait: &UnixListener) {
    bait.set_nonblocking(true).unwrap();
    let mut watchdog = Watchdog::default();
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["run", "--name", "app", "--"])
        .arg(std::env::current_exe().unwrap())
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", tmp);
    as_nobody(&mut command);
    crate::operations::merge_stderr(&mut command);
    let mut keepalive = Child::spawn_with(command, "worker");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    let refusal = |l: &str| l.contains("using a private directory");
    let refused = match keepalive.seen().iter().find(|l| refusal(l)) {
        Some(line) => line.clone(),
        None => keepalive.wait_line("the refusal", refusal),
    };
    assert!(
        refused.contains(&predictable.display().to_string()),
        "{refused}"
    );
    // nobody's client finds nobody's instance, in the private directory.
    let envs = [("TMPDIR", tmp)];
    let output = client(&["status", "app", "--json"], &envs, true);
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["pid"], keepalive.pid(), "{status}");
    assert_eq!(pids(&status), [u64::from(worker)]);
    // The private directory: nobody's, 0700, not the predictable one.
    let socket = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("keepalive-{NOBODY}."))
        })
        .expect("a private directory");
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.is_dir());
    assert_eq!((meta.uid(), meta.mode() & 0o777), (NOBODY, 0o700));
    assert!(socket.join("app.sock").exists());
    // The worker's notification socket is in there too, unpredictably named.
    let notify = std::fs::read(format!("/proc/{worker}/environ")).unwrap();
    let notify = String::from_utf8_lossy(&notify);
    let notify = notify
        .split('\0')
        .find_map(|entry| entry.strip_prefix("NOTIFY_SOCKET="))
        .unwrap();
    assert!(
        notify.starts_with(&format!("{}/app.workers.", socket.display())),
        "{notify}"
    );
    // Nothing reached the squatter.
    let err = bait.accept().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    let output = client(&["stop", "app"], &envs, true);
    assert!(output.status.success(), "{output:?}");
    keepalive.finish().assert_code(143);
    assert!(
        bait.accept().is_err(),
        "the stop went to the squatter's socket"
    );
}

fn names_that_are_paths_or_lines_are_refused_and_long_ones_shortened() {
    let dir = RuntimeDir::new("names");
    for bad in ["../../x", "/abs/x", "", ".hidden", "a\nExecStartPre=evil"] {
        let output = dir.client(&["run", "--name", bad, "--", "true"]);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {output:?}");
        assert!(
            text(&output.stderr).contains("cannot name an instance"),
            "{bad:?}: {output:?}"
        );
    }
    // A program whose file name is too long for a socket path still runs,
    // and is found by its name.
    let long = format!("a-server-{}", "with-a-long-name-".repeat(9));
    let program = dir.path().join(&long);
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &program).unwrap();
    let mut watchdog = Watchdog::default();
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .arg("--")
        .arg(&program)
        .env("XDG_RUNTIME_DIR", dir.path());
    crate::operations::merge_stderr(&mut command);
    let mut keepalive = Child::spawn_with(command, "worker");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    let status = dir.status(&long);
    assert_eq!(status["name"], long.as_str());
    assert_eq!(pids(&status), [u64::from(worker)]);
    let table = text(&dir.client(&["status"]).stdout);
    assert!(table.contains(&long[..16]), "{table}");
    let output = dir.client(&["stop", &long]);
    assert!(output.status.success(), "{output:?}");
    keepalive.finish().assert_code(143);
}

/// `systemd-unit` quotes every argument by systemd's rules: the unit has
/// one `ExecStart=` line with exactly the argv that ran, whatever the
/// arguments hold (a newline and a unit line, a lone `;`, `$`, `%`).
fn systemd_unit_runs_exactly_the_argv_that_ran() {
    let dir = RuntimeDir::new("unitquote");
    let args = [
        "x\nExecStartPre=touch pwned",
        ";",
        "a b",
        "50%",
        "$HOME",
        "say \"hi\" \\o/",
        "tab\there",
        "",
    ];
    let mut watchdog = Watchdog::default();
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["run", "--name", "quoted", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(args)
        .env("XDG_RUNTIME_DIR", dir.path());
    crate::operations::merge_stderr(&mut command);
    let mut keepalive = Child::spawn_with(command, "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    let output = dir.client(&["systemd-unit", "quoted"]);
    assert!(output.status.success(), "{output:?}");
    let unit = text(&output.stdout);
    let exec: Vec<&str> = unit.lines().filter(|l| l.starts_with("Exec")).collect();
    assert_eq!(exec.len(), 2, "ExecStart and ExecReload only: {unit}");
    let start = exec[0].strip_prefix("ExecStart=").expect("ExecStart first");
    let mut expected = vec![
        env!("CARGO_BIN_EXE_keepalive").to_owned(),
        "run".into(),
        "--name".into(),
        "quoted".into(),
        "--".into(),
        std::env::current_exe().unwrap().display().to_string(),
    ];
    expected.extend(args.iter().map(|arg| (*arg).to_owned()));
    assert_eq!(systemd_words(start), expected, "{unit}");
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

/// An `ExecStart=` value read as systemd reads it (systemd.syntax(7)):
/// `%%` is `%`; words split at white space; double quotes with C escapes;
/// `\;` a literal `;`; `$$` is `$`.
fn systemd_words(line: &str) -> Vec<String> {
    let line = line.replace("%%", "%");
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(first) = chars.next() else { break };
        let mut word = String::new();
        if first == '"' {
            loop {
                match chars.next().expect("a closing quote") {
                    '"' => break,
                    '\\' => match chars.next().unwrap() {
                        'n' => word.push('\n'),
                        't' => word.push('\t'),
                        'r' => word.push('\r'),
                        'x' => {
                            let hex: String = [chars.next().unwrap(), chars.next().unwrap()]
                                .iter()
                                .collect();
                            word.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                        }
                        other => word.push(other),
                    },
                    c => word.push(c),
                }
            }
        } else {
            word.push(first);
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
            assert!(word != ";", "a lone ; separates commands: {line}");
            if word == "\\;" {
                word = ";".into();
            }
        }
        words.push(word.replace("$$", "$"));
    }
    words
}

/// A client of another user, pointed at this user's runtime directory,
/// refuses it, says why, and exits 1.
fn another_users_runtime_directory_is_not_trusted() {
    assert_root();
    let dir = RuntimeDir::new("theirs");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("db", &[], "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("db");
    // The parent must let nobody look in, to see whose the directory is.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["status"][..], &["status", "db"], &["stop", "db"]] {
        let output = client(args, &[("XDG_RUNTIME_DIR", dir.path())], true);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert!(
            text(&output.stderr).contains("belongs to uid 0, not to you (uid 65534)"),
            "{args:?}: {output:?}"
        );
    }
    assert_eq!(dir.status("db")["pid"], keepalive.pid());
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}

/// Root without `XDG_RUNTIME_DIR` (sudo, a system service, cron) uses
/// `/run/keepalive`, which only root can make: nothing in the temporary
/// directory.
fn root_without_a_session_uses_run_keepalive() {
    assert_root();
    let name = format!("exit-hook-test-{}", std::process::id());
    let guard = SharedTmp::new("rootrun");
    let tmp = guard.0.clone();
    let mut watchdog = Watchdog::default();
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["run", "--name", &name, "--"])
        .arg(std::env::current_exe().unwrap())
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &tmp);
    crate::operations::merge_stderr(&mut command);
    let mut keepalive = Child::spawn_with(command, "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    let envs = [("TMPDIR", tmp.as_path())];
    let output = client(&["status", &name, "--json"], &envs, false);
    assert!(output.status.success(), "{output:?}");
    let dir = std::fs::symlink_metadata("/run/keepalive").unwrap();
    assert!(dir.is_dir());
    assert_eq!((dir.uid(), dir.mode() & 0o777), (0, 0o700));
    assert!(Path::new(&format!("/run/keepalive/{name}.sock")).exists());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "nothing in TMPDIR"
    );
    // A login shell (over SSH: XDG_RUNTIME_DIR set, its own directory
    // empty) finds it too, as it finds a systemd unit's instance.
    let session = SharedTmp::new("session");
    std::fs::set_permissions(&session.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let from_session = [
        ("TMPDIR", tmp.as_path()),
        ("XDG_RUNTIME_DIR", session.0.as_path()),
    ];
    let output = client(&["status", &name, "--json"], &from_session, false);
    assert!(output.status.success(), "{output:?}");
    let output = client(&["status"], &from_session, false);
    assert!(text(&output.stdout).contains(&name), "{output:?}");
    let output = client(&["stop", &name], &envs, false);
    assert!(output.status.success(), "{output:?}");
    keepalive.finish().assert_code(143);
    assert!(!Path::new(&format!("/run/keepalive/{name}.sock")).exists());
    let _ = std::fs::remove_file(format!("/run/keepalive/{name}.lock"));
}
