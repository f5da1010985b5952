//! What cargo does with this package: it refuses two copies of the crate in
//! one build (`links`), and the published package holds what users need.

use std::path::Path;
use std::process::{Command, Output};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running cargo")
}

/// A scratch directory for this test, emptied first.
#[cfg(unix)]
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("exit_hook_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A consumer depending on this crate and, with `two`, on a copy of it
/// with another semver-incompatible version (as two dependencies could).
#[cfg(unix)]
fn consumer(dir: &Path, two: bool) -> Output {
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let manifest = std::fs::read_to_string(Path::new(MANIFEST_DIR).join("Cargo.toml")).unwrap();
    let manifest = manifest.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1);
    std::fs::write(copy.join("Cargo.toml"), manifest).unwrap();
    for file in ["build.rs", "README.md"] {
        std::fs::copy(Path::new(MANIFEST_DIR).join(file), copy.join(file)).unwrap();
    }
    std::os::unix::fs::symlink(Path::new(MANIFEST_DIR).join("src"), copy.join("src")).unwrap();
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("src")).unwrap();
    std::fs::write(app.join("src/main.rs"), "fn main() {}\n").unwrap();
    let second = if two {
        "new = { package = \"exit_hook\", path = \"../copy\" }"
    } else {
        ""
    };
    std::fs::write(
        app.join("Cargo.toml"),
        format!(
            "[package]\nname = \"app\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nold = {{ package = \"exit_hook\", path = {MANIFEST_DIR:?} }}\n{second}\n\n\
             [workspace]\n"
        ),
    )
    .unwrap();
    cargo(&app, &["generate-lockfile", "--offline"])
}

#[test]
#[cfg(unix)]
fn cargo_refuses_two_copies_of_the_crate_in_one_build() {
    let dir = scratch("links");
    let one = consumer(&dir.join("one"), false);
    assert!(
        one.status.success(),
        "one copy must resolve: {}",
        String::from_utf8_lossy(&one.stderr)
    );
    let two = consumer(&dir.join("two"), true);
    let stderr = String::from_utf8_lossy(&two.stderr);
    assert!(!two.status.success(), "two copies resolved: {stderr}");
    assert!(stderr.contains("links = \"exit_hook\""), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_package_ships_the_code_docs_and_examples_only() {
    let listed = cargo(
        Path::new(MANIFEST_DIR),
        &["package", "--list", "--allow-dirty", "--offline"],
    );
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let files = String::from_utf8_lossy(&listed.stdout);
    let files: Vec<&str> = files.lines().collect();
    for needed in [
        "src/lib.rs",
        "build.rs",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "docs/deploying.md",
        "examples/01_basic.rs",
    ] {
        assert!(files.contains(&needed), "{needed} missing from {files:?}");
    }
    for file in &files {
        assert!(
            ![".ci/", "scripts/", "benches/", "tests/", "target/"]
                .iter()
                .any(|dir| file.starts_with(dir)),
            "{file} is shipped"
        );
    }
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(
        !stderr.contains("manifest has no documentation"),
        "{stderr}"
    );
}
