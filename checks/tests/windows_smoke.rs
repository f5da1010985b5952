//! The Windows smoke suite: the crate built for `x86_64-pc-windows-gnu` and
//! run under wine, with real console events and real exit statuses.
//!
//! Built for Windows, this binary is the fixture: `EXIT_HOOK_SCENARIO` (the
//! conformance harness's variable) names what it does. Built for Linux
//! (`cargo test --test windows_smoke`), it is the driver: it cross-builds
//! itself with cargo, builds the `bcryptprimitives.dll` shim that wine 8 lacks
//! (`tests/windows/bcryptprimitives.c`), and runs each case with `wine64`. Where wine, mingw or the rustup target is missing, the
//! cases are reported as ignored, with a warning on stderr that says why;
//! under CI (`CI` set, or `EXIT_HOOK_REQUIRE_WINE=1`) that is a failure
//! instead. The wine prefix is in the target directory cargo used
//! (`CARGO_TARGET_DIR` included), or `WINEPREFIX`.
//!
//! Under wine only SIGINT reaches a Windows process as a console event
//! (`CTRL_C_EVENT`); Ctrl+Break, close, logoff and shutdown cannot be sent
//! from outside (see the crate docs), so the unit tests in
//! `src/sys/windows.rs` call the handler routine directly for those.

#[cfg(windows)]
fn main() {
    fixture::run(&std::env::var("EXIT_HOOK_SCENARIO").unwrap_or_default());
}

#[cfg(windows)]
mod fixture {
    use std::time::Duration;

    pub fn run(scenario: &str) {
        let hook = || exit_hook::add(|exit| println!("hook: {exit}"));
        match scenario {
            "return" => {
                hook();
            }
            "exit" => {
                hook();
                exit_hook::exit(3);
            }
            "process_exit" => {
                hook();
                std::process::exit(7);
            }
            "panic" => {
                hook();
                panic!("boom");
            }
            "wait" => {
                hook();
                ready();
            }
            "slow" => {
                exit_hook::Builder::new()
                    .timeout(Duration::from_secs(30))
                    .install()
                    .unwrap();
                exit_hook::add(|_| {
                    println!("started");
                    std::thread::sleep(Duration::from_secs(60));
                });
                ready();
            }
            "warm_up" => {} // the driver's first run, which creates the wine prefix
            other => {
                // A name the driver and the fixture spell differently fails
                // here, not as a silent exit 0.
                eprintln!("windows_smoke fixture: no scenario named {other:?}");
                std::process::exit(2);
            }
        }
    }

    fn ready() {
        println!("READY");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

#[cfg(unix)]
#[allow(
    dead_code,
    reason = "the conformance suite's harness; this driver uses part of it"
)]
#[path = "conformance/harness.rs"]
mod harness;

#[cfg(unix)]
fn main() {
    driver::main();
}

#[cfg(unix)]
mod driver {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use libtest_mimic::{Arguments, Failed, Trial};

    use crate::harness::{Child, Outcome, cargo_build};

    const WINE: &str = "/usr/lib/wine/wine64";
    const TARGET: &str = "x86_64-pc-windows-gnu";

    /// A smoke case: what it checks, given the fixture.
    type Case = (&'static str, fn(&Fixture));

    /// The cross-built fixture, ready to run under wine.
    #[derive(Clone)]
    struct Fixture {
        exe: PathBuf,
        prefix: PathBuf,
    }

    impl Fixture {
        fn spawn(&self, scenario: &str) -> Child {
            let mut command = Command::new(WINE);
            command
                .arg(&self.exe)
                .env("WINEDEBUG", "-all")
                .env("WINEPREFIX", &self.prefix);
            Child::spawn_with(command, scenario)
        }

        fn run(&self, scenario: &str) -> Outcome {
            self.spawn(scenario).finish()
        }
    }

    pub fn main() {
        crate::harness::default_signal_dispositions();
        let args = Arguments::from_args();
        let fixture = prepare();
        if let Err(why) = &fixture {
            let required = ["EXIT_HOOK_REQUIRE_WINE", "CI"]
                .iter()
                .any(|name| std::env::var_os(name).is_some_and(|value| value != "false"));
            if required {
                eprintln!("windows smoke suite cannot run, and CI requires it: {why}");
                std::process::exit(1);
            }
            // Loud on stderr, where cargo shows it whatever the filter.
            eprintln!(
                "\n*** WARNING: the Windows smoke suite did NOT run: {why}\n\
                 *** its cases are reported as ignored; `.ci/run` installs what it needs\n"
            );
        }
        let cases: [Case; 6] = [
            ("main_return_runs_hooks", main_return_runs_hooks),
            (
                "exit_hook_exit_runs_hooks_then_exits",
                exit_hook_exit_runs_hooks_then_exits,
            ),
            (
                "panic_runs_hooks_and_exits_101",
                panic_runs_hooks_and_exits_101,
            ),
            (
                "ctrl_c_runs_hooks_and_exits_130",
                ctrl_c_runs_hooks_and_exits_130,
            ),
            ("second_ctrl_c_forces_exit", second_ctrl_c_forces_exit),
            ("std_process_exit_skips_hooks", std_process_exit_skips_hooks),
        ];
        let trials = cases
            .into_iter()
            .map(|(name, case)| {
                let fixture = fixture.clone().ok();
                let ignored = fixture.is_none();
                Trial::test(name, move || {
                    case(fixture.as_ref().ok_or_else(|| Failed::from("no fixture"))?);
                    Ok(())
                })
                .with_ignored_flag(ignored)
            })
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }

    /// Cross-builds the fixture, builds the DLL shim beside it, and warms up
    /// the wine prefix.
    fn prepare() -> Result<Fixture, String> {
        if !Path::new(WINE).exists() {
            return Err(format!("{WINE} not found (Debian: apt-get install wine64)"));
        }
        let exe = PathBuf::from(cargo_build("windows_smoke", &["--target", TARGET, "--test", "windows_smoke"]).map_err(
            |err| {
                format!(
                    "cross-building for {TARGET} failed: {err} (rustup target add {TARGET}; Debian: apt-get install gcc-mingw-w64-x86-64)"
                )
            },
        )?);
        let dir = exe.parent().ok_or("the executable has no directory")?;
        let shim = dir.join("bcryptprimitives.dll");
        if !shim.exists() {
            let built = Command::new("x86_64-w64-mingw32-gcc")
                .args(["-shared", "-O2", "-o"])
                .arg(&shim)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/windows/bcryptprimitives.c"
                ))
                .arg("-ladvapi32")
                .status()
                .map_err(|err| format!("x86_64-w64-mingw32-gcc: {err}"))?;
            if !built.success() {
                return Err("building bcryptprimitives.dll failed".into());
            }
        }
        // The wine prefix lives in the target directory cargo really used
        // (CARGO_TARGET_DIR, or the workspace's), unless WINEPREFIX says.
        let prefix = match std::env::var_os("WINEPREFIX") {
            Some(prefix) => PathBuf::from(prefix),
            None => exe
                .ancestors()
                .find(|dir| dir.file_name().is_some_and(|name| name == TARGET))
                .and_then(Path::parent)
                .ok_or("the executable is not under a target directory")?
                .join("wineprefix"),
        };
        let fixture = Fixture { exe, prefix };
        // The first run creates the wine prefix, which takes a few seconds.
        let warm_up = fixture.run("warm_up");
        if warm_up.status.code() != Some(0) {
            return Err(format!("the fixture does not run under wine: {warm_up:?}"));
        }
        Ok(fixture)
    }

    fn main_return_runs_hooks(fixture: &Fixture) {
        let outcome = fixture.run("return");
        outcome.assert_code(0);
        // The C runtime does not tell atexit handlers the status.
        assert_eq!(outcome.stdout, ["hook: process exit"]);
    }

    fn exit_hook_exit_runs_hooks_then_exits(fixture: &Fixture) {
        let outcome = fixture.run("exit");
        outcome.assert_code(3);
        assert_eq!(outcome.stdout, ["hook: exit_hook::exit, exit status 3"]);
    }

    fn panic_runs_hooks_and_exits_101(fixture: &Fixture) {
        let outcome = fixture.run("panic");
        outcome.assert_code(101);
        let [line] = &outcome.stdout[..] else {
            panic!("one hook line: {outcome:#?}")
        };
        assert!(
            line.starts_with("hook: thread 'main' panicked at checks/tests/windows_smoke.rs:"),
            "{line}"
        );
        assert!(line.ends_with(": boom, exit status 101"), "{line}");
    }

    /// Wine delivers SIGINT to a console program as CTRL_C_EVENT.
    fn ctrl_c_runs_hooks_and_exits_130(fixture: &Fixture) {
        let outcome = fixture.spawn("wait").ready().signal(libc::SIGINT).finish();
        outcome.assert_code(130);
        assert_eq!(outcome.after_ready(), ["hook: SIGINT (2), exit status 130"]);
    }

    fn second_ctrl_c_forces_exit(fixture: &Fixture) {
        let outcome = fixture
            .spawn("slow")
            .ready()
            .signal(libc::SIGINT)
            .wait_for("started")
            .signal(libc::SIGINT)
            .finish();
        // Forced, not the 30 s deadline.
        outcome
            .assert_code(130)
            .assert_elapsed(..Duration::from_secs(10));
        assert_eq!(outcome.after_ready(), ["started"]);
    }

    /// Rust's `std::process::exit` calls `ExitProcess`, which skips the C
    /// runtime's exit handlers: on Windows it runs no hooks (documented).
    fn std_process_exit_skips_hooks(fixture: &Fixture) {
        let outcome = fixture.run("process_exit");
        outcome.assert_code(7);
        assert_eq!(outcome.stdout, Vec::<String>::new());
    }
}

#[cfg(not(any(unix, windows)))]
fn main() {}
