//! What an instance may be called: a name becomes a file name (its
//! control socket, its lock, its notification directory) and a line of a
//! unit file, so it is a name and nothing else, on every platform.

/// A name an instance can have: it becomes a file name and a line of a
/// unit file, so not empty, no `/`, no leading `.` (`.`, `..`, hidden), no
/// control character (a newline), at most 200 bytes.
///
/// # Errors
///
/// What is wrong with it.
///
/// ```
/// use keepalive::check_name;
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

/// The name an instance gets when none is given: its program's file name
/// (`/usr/bin/my-server` → `my-server`), made a name: control characters
/// become `_`, leading dots go, at most 200 bytes.
///
/// ```
/// use std::path::Path;
/// assert_eq!(keepalive::default_name(Path::new("/usr/bin/my-server")), "my-server");
/// assert_eq!(keepalive::default_name(Path::new("/")), "keepalive");
/// assert_eq!(keepalive::default_name(Path::new("./.hidden\nname")), "hidden_name");
/// ```
pub fn default_name(program: &std::path::Path) -> String {
    let name = program
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    sanitize_name(&name)
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
}
