//! Node's `async-exit-hook`, installed with npm into `target/bench-node`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"
const exitHook = require('async-exit-hook');
const [kind, n] = [process.argv[2], Number(process.argv[3])];
for (let i = 0; i < n; i++) {
  if (kind === 'sync') exitHook(() => {});
  else exitHook(done => setTimeout(done, 100));
}
process.stdout.write('READY\n');
setInterval(() => {}, 1 << 30);
"#;

/// The fixture script, with `async-exit-hook` installed beside it.
pub fn script() -> Result<PathBuf, String> {
    let found = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !found("node") || !found("npm") {
        return Err("node or npm is not on the PATH".into());
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-node");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if !dir.join("node_modules/async-exit-hook").exists() {
        let installed = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "async-exit-hook@2.0.1",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !installed.success() {
            return Err("npm install async-exit-hook failed".into());
        }
    }
    let script = dir.join("fixture.js");
    std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
    Ok(script)
}
