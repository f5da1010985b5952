//! `keepalive.toml`: one `[apps.NAME]` table per app, its keys the long
//! options of `keepalive run`, its `command` the program.
//!
//! ```toml
//! [apps.web]
//! command = ["./server", "--port", "0"]   # or "./server --port 0" (split as a shell would)
//! workers = 2
//! listen = ["127.0.0.1:8080"]
//! wait-ready = true
//! kill-timeout = "10s"
//! env = { RUST_LOG = "info" }
//! args = ["--verbose"]                      # more words after the command (pm2's args)
//! ```
//!
//! Each table becomes the command line of a `keepalive run` (a `true`
//! flag is `--flag`, a list repeats the option, a table is `--env K=V` per
//! entry), which clap checks as it checks the real command line: the file
//! means exactly what the options mean. Each key is also checked alone, so
//! an error names its line. Relative paths are the config file's
//! directory's: every app runs from there.

use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::{Spanned, Value};

use crate::cli::RunArgs;
use keepalive::check_name;

/// A config file, read and checked.
#[derive(Debug)]
#[cfg_attr(not(unix), allow(dead_code, reason = "keepalive up is Unix-only"))]
pub(crate) struct Config {
    /// The file, as an absolute path (what a unit for `up` runs).
    pub(crate) file: PathBuf,
    /// The environment set chosen (`keepalive up --env NAME`).
    pub(crate) env_set: Option<String>,
    /// Its directory, where every app runs.
    pub(crate) dir: PathBuf,
    /// What `keepalive up` is controlled by: `name = "..."`, else the
    /// directory's name.
    pub(crate) name: String,
    /// In the file's order.
    pub(crate) apps: Vec<App>,
}

/// One `[apps.NAME]`.
#[derive(Debug)]
#[cfg_attr(not(unix), allow(dead_code, reason = "keepalive up is Unix-only"))]
pub(crate) struct App {
    pub(crate) name: String,
    /// `keepalive run`'s arguments for it (after `run`).
    pub(crate) argv: Vec<OsString>,
    pub(crate) run: RunArgs,
    /// Its named environment sets (`env_production = { … }`, pm2's), as
    /// `--env=K=V` arguments, chosen with `keepalive up --env production`.
    pub(crate) env_sets: Vec<(String, Vec<OsString>)>,
    /// The apps it starts after, once they are ready, and stops before
    /// (`after = ["db"]`: Horust's `start-after`, systemd's `After=`).
    pub(crate) after: Vec<String>,
}

#[cfg_attr(not(unix), allow(dead_code, reason = "keepalive up is Unix-only"))]
impl Config {
    /// The apps with the environment set `set` over their own `env`
    /// (`keepalive up --env production`: each app's `env_production`).
    /// An error if no app has that set: a misspelt name would run the
    /// apps without it.
    pub(crate) fn with_env_set(mut self, set: &str) -> Result<Config, String> {
        let mut found = false;
        for app in &mut self.apps {
            let Some((_, args)) = app.env_sets.iter().find(|(name, _)| name == set) else {
                continue;
            };
            found = true;
            let at = app
                .argv
                .iter()
                .position(|arg| arg == "--")
                .unwrap_or(app.argv.len());
            app.argv.splice(at..at, args.iter().cloned());
            app.run = crate::cli::parse_run(&app.argv)
                .map_err(|err| format!("apps.{}: {err}", app.name))?;
        }
        if found {
            self.env_set = Some(set.to_owned());
            Ok(self)
        } else {
            Err(format!("no app has an env_{set} table"))
        }
    }
}

/// What is wrong with a config file, with where.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// 1-based; 0 when it is the file's as a whole.
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// The file's top level.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<Spanned<String>>,
    apps: Spanned<toml::Table>,
}

/// The largest config file read: a few hundred apps fit in far less.
const MAX_FILE: u64 = 1 << 20;

/// Reads and checks `path`: a regular file of at most 1 MiB (a FIFO, a
/// device like `/dev/zero` or a directory is refused before it is read).
pub(crate) fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = read(path).map_err(|err| {
        vec![Problem {
            line: 0,
            message: format!("cannot read {}: {err}", path.display()),
        }]
    })?;
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    parse(&text, dir).map(|config| Config { file, ..config })
}

fn read(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let mut options = std::fs::File::options();
    options.read(true);
    // A FIFO would block the open until a writer came.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a config is a file, not a FIFO, a device or a directory)",
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("larger than {} KiB", MAX_FILE / 1024),
        ));
    }
    let mut text = String::new();
    file.take(MAX_FILE).read_to_string(&mut text)?;
    Ok(text)
}

/// Where each app's table and each of its keys is, as the parser saw
/// them (line numbers, 1-based): the spans, not a search of the text,
/// which a name that is a prefix of another's would fool.
#[derive(Default)]
struct Lines {
    apps: std::collections::HashMap<String, (usize, std::collections::HashMap<String, usize>)>,
}

impl Lines {
    fn of(text: &str, line_of: &impl Fn(Range<usize>) -> usize) -> Lines {
        use toml::de::{DeTable, DeValue};
        let mut lines = Lines::default();
        let Ok(root) = DeTable::parse(text) else {
            return lines;
        };
        let Some(apps) = root.get_ref().get("apps") else {
            return lines;
        };
        let DeValue::Table(apps) = apps.get_ref() else {
            return lines;
        };
        for (name, table) in apps.iter() {
            let keys = match table.get_ref() {
                DeValue::Table(keys) => keys
                    .iter()
                    .map(|(key, _)| (key.get_ref().to_string(), line_of(key.span())))
                    .collect(),
                _ => Default::default(),
            };
            lines
                .apps
                .insert(name.get_ref().to_string(), (line_of(name.span()), keys));
        }
        lines
    }

    /// The line of app `app`'s table, 0 if unknown.
    fn app(&self, app: &str) -> usize {
        self.apps.get(app).map_or(0, |(line, _)| *line)
    }

    /// The line of `key` in app `app`'s table, else the table's.
    fn key(&self, app: &str, key: &str) -> usize {
        self.apps
            .get(app)
            .and_then(|(_, keys)| keys.get(key).copied())
            .unwrap_or_else(|| self.app(app))
    }
}

/// Checks `text`, a config file in `dir`.
pub(crate) fn parse(text: &str, dir: PathBuf) -> Result<Config, Vec<Problem>> {
    let line_of = |span: Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
    let file: File = toml::from_str(text).map_err(|err| {
        vec![Problem {
            line: err.span().map_or(0, line_of),
            message: err.message().trim().to_owned(),
        }]
    })?;
    let name = match &file.name {
        Some(name) => name.get_ref().clone(),
        None => dir.file_name().map_or_else(
            || "keepalive-up".into(),
            |n| n.to_string_lossy().into_owned(),
        ),
    };
    let mut problems = Vec::new();
    let mut apps = Vec::new();
    if let Some(span) = file.name.as_ref().map(Spanned::span) {
        if let Err(message) = check_name(&name) {
            problems.push(Problem {
                line: line_of(span),
                message: format!("name: {message}"),
            });
        }
    }
    // In the file's order (toml's preserve_order).
    let tables: Vec<(&String, &Value)> = file.apps.get_ref().iter().collect();
    if tables.is_empty() {
        problems.push(Problem {
            line: line_of(file.apps.span()),
            message: "no apps: add an [apps.NAME] table with a command".into(),
        });
    }
    let lines = Lines::of(text, &line_of);
    for (app, table) in tables {
        let header = lines.app(app);
        match app_of(app, table, &lines) {
            Ok(app) if app.name == name => problems.push(Problem {
                line: header,
                message: format!(
                    "apps.{}: the app has the name of the file's `keepalive up` (say name = \"...\" at the top)",
                    app.name
                ),
            }),
            Ok(app) => apps.push(app),
            Err(mut more) => {
                for problem in &mut more {
                    if problem.line == 0 {
                        problem.line = header;
                    }
                }
                problems.extend(more);
            }
        }
    }
    problems.extend(check_after(&apps, &lines));
    if problems.is_empty() {
        Ok(Config {
            file: dir.join("keepalive.toml"),
            env_set: None,
            dir,
            name,
            apps,
        })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

/// One app's table: its `keepalive run` arguments, each key checked alone
/// (so the error has its line), then together.
fn app_of(name: &str, table: &Value, lines: &Lines) -> Result<App, Vec<Problem>> {
    let at = |message: String| Problem { line: 0, message };
    let Value::Table(table) = table else {
        return Err(vec![at(format!(
            "apps.{name}: not a table (say [apps.{name}])"
        ))]);
    };
    check_name(name).map_err(|message| vec![at(format!("apps.{name}: {message}"))])?;
    let mut problems = Vec::new();
    let mut command: Vec<OsString> = Vec::new();
    let mut args: Vec<OsString> = Vec::new();
    let mut env_sets = Vec::new();
    let mut after = Vec::new();
    let mut options: Vec<OsString> = vec!["--name".into(), name.into()];
    for (key, value) in table {
        let line = lines.key(name, key);
        let mut problem = |message: String| {
            problems.push(Problem {
                line,
                message: format!("apps.{name}.{key}: {message}"),
            });
        };
        match key.as_str() {
            "command" => match value {
                // Split as a shell splits words (quotes and backslashes,
                // no expansion: `sh -c 'while :; do …; done'` is three
                // words); a list says them exactly.
                Value::String(line) => match shell_words::split(line) {
                    Ok(words) => command = words.into_iter().map(OsString::from).collect(),
                    Err(err) => problem(format!("{err} (or say the words as a list)")),
                },
                _ => match strings(value) {
                    Ok(words) => command = words.into_iter().map(OsString::from).collect(),
                    Err(message) => problem(message),
                },
            },
            "args" => match strings(value) {
                Ok(words) => args = words.into_iter().map(OsString::from).collect(),
                Err(message) => problem(message),
            },
            "after" => match strings(value) {
                Ok(names) if names.iter().any(|other| other == name) => {
                    problem("an app cannot start after itself".into());
                }
                Ok(names) => after = names,
                Err(message) => problem(message),
            },
            // pm2's env_production: a named set, chosen by `up --env NAME`.
            set if set.strip_prefix("env_").is_some_and(|set| !set.is_empty()) => {
                match option_args("env", value) {
                    Ok(these) => match check_alone(name, &these) {
                        Ok(()) => env_sets.push((set["env_".len()..].to_owned(), these)),
                        Err(message) => problem(message),
                    },
                    Err(message) => problem(message),
                }
            }
            "name" => problem(format!("an app's name is its table's: [apps.{name}]")),
            "daemon" => problem("--daemon is `keepalive up --daemon`'s, not an app's".into()),
            _ => match option_args(key, value) {
                Ok(these) => match check_alone(name, &these) {
                    Ok(()) => options.extend(these),
                    Err(message) => problem(message),
                },
                Err(message) => problem(message),
            },
        }
    }
    let command_said = format!("apps.{name}.command:");
    if command.is_empty()
        && !problems
            .iter()
            .any(|p| p.message.starts_with(&command_said))
    {
        problems.push(at(format!(
            "apps.{name}: no command (say command = [\"./server\", \"--port\", \"8080\"])"
        )));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut argv = options;
    argv.push("--".into());
    argv.extend(command);
    argv.extend(args);
    let run =
        crate::cli::parse_run(&argv).map_err(|err| vec![at(format!("apps.{name}: {err}"))])?;
    Ok(App {
        name: name.to_owned(),
        argv,
        run,
        env_sets,
        after,
    })
}

/// Each app's `after` names apps of the file, and no app comes after
/// itself through others (a cycle would start none of them): a problem at
/// the `after` line of each app that does not.
fn check_after(apps: &[App], lines: &Lines) -> Vec<Problem> {
    let mut problems = Vec::new();
    let index = |name: &str| apps.iter().position(|app| app.name == name);
    for app in apps {
        for other in app.after.iter().filter(|other| index(other).is_none()) {
            problems.push(Problem {
                line: lines.key(&app.name, "after"),
                message: format!("apps.{}.after: no app named {other} in this file", app.name),
            });
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    // A depth-first walk from each app: a path back to an app on it is a cycle.
    for (start, app) in apps.iter().enumerate() {
        let mut path = vec![start];
        // Each app is walked from once: one that did not lead back to
        // `start` will not from elsewhere.
        let mut seen = vec![false; apps.len()];
        seen[start] = true;
        let mut todo: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some((at, next)) = todo.pop() {
            let Some(dependency) = apps[at].after.get(next).and_then(|name| index(name)) else {
                path.pop();
                continue;
            };
            todo.push((at, next + 1));
            if dependency == start {
                let mut names: Vec<&str> = path.iter().map(|&i| apps[i].name.as_str()).collect();
                names.push(&app.name);
                problems.push(Problem {
                    line: lines.key(&app.name, "after"),
                    message: format!(
                        "apps.{}.after: a cycle ({}): none of them could start",
                        app.name,
                        names.join(" → ")
                    ),
                });
                break;
            }
            if !std::mem::replace(&mut seen[dependency], true) {
                path.push(dependency);
                todo.push((dependency, 0));
            }
        }
    }
    problems
}

/// A string, or a list of strings.
fn strings(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(format!("not a string: {other}")),
            })
            .collect(),
        other => Err(format!("not a string or a list of strings: {other}")),
    }
}

/// The option `--key` with `value`: for a flag `true` is the flag and
/// `false` nothing; for an option a list is the option once per item, a
/// table `K=V` per entry.
fn option_args(key: &str, value: &Value) -> Result<Vec<OsString>, String> {
    let long = key.replace('_', "-");
    let option = format!("--{long}");
    let takes_value = crate::cli::run_option(&long).ok_or_else(|| {
        "no such key: an app's keys are command, args and the long options of \
         `keepalive run` (keepalive run --help)"
            .to_owned()
    })?;
    let scalar = |value: &Value| -> Result<String, String> {
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Integer(n) => Ok(n.to_string()),
            Value::Float(x) => Ok(x.to_string()),
            other => Err(format!("not a string or a number: {other}")),
        }
    };
    let with = |text: String| OsString::from(format!("{option}={text}"));
    match value {
        _ if !takes_value => match value {
            Value::Boolean(true) => Ok(vec![option.into()]),
            Value::Boolean(false) => Ok(Vec::new()),
            other => Err(format!("a flag: say true or false, not {other}")),
        },
        Value::Boolean(_) => Err(format!(
            "takes a value, not {value} (see {option} in keepalive run --help)"
        )),
        Value::Array(items) => items.iter().map(|item| scalar(item).map(with)).collect(),
        Value::Table(entries) => entries
            .iter()
            .map(|(k, v)| scalar(v).map(|v| with(format!("{k}={v}"))))
            .collect(),
        other => scalar(other).map(|text| vec![with(text)]),
    }
}

/// clap's word on these options alone, for the one line they come from.
fn check_alone(name: &str, options: &[OsString]) -> Result<(), String> {
    let mut argv: Vec<OsString> = vec!["--name".into(), name.into()];
    argv.extend(options.iter().cloned());
    argv.extend(["--".into(), "true".into()]);
    crate::cli::parse_run(&argv).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(usize, String)> {
        parse(text, PathBuf::from("/srv/shop"))
            .unwrap_err()
            .into_iter()
            .map(|p| (p.line, p.message))
            .collect()
    }

    #[test]
    fn after_names_apps_of_the_file_and_no_cycle() {
        let text = r#"
[apps.db]
command = "./db"

[apps.api]
command = "./api"
after = ["db"]

[apps.web]
command = "./web"
after = ["api", "db"]
"#;
        let config = parse(text, PathBuf::from("/srv/shop")).unwrap();
        assert_eq!(config.apps[2].after, ["api", "db"]);
        let text = r#"
[apps.db]
command = "./db"
after = "web"

[apps.api]
command = "./api"
after = ["db"]

[apps.web]
command = "./web"
after = ["api", "cache"]
"#;
        assert_eq!(
            problems(text),
            [(
                12,
                "apps.web.after: no app named cache in this file".to_owned()
            )]
        );
        let cycle = text.replace(r#"["api", "cache"]"#, r#"["api"]"#);
        assert_eq!(
            problems(&cycle),
            [
                (
                    4,
                    "apps.db.after: a cycle (db → web → api → db): none of them could start"
                        .to_owned()
                ),
                (
                    8,
                    "apps.api.after: a cycle (api → db → web → api): none of them could start"
                        .to_owned()
                ),
                (
                    12,
                    "apps.web.after: a cycle (web → api → db → web): none of them could start"
                        .to_owned()
                ),
            ]
        );
        let myself = "[apps.db]\ncommand = \"./db\"\nafter = [\"db\"]\n";
        assert_eq!(
            problems(myself),
            [(
                3,
                "apps.db.after: an app cannot start after itself".to_owned()
            )]
        );
    }

    #[test]
    fn a_named_environment_set_is_chosen_over_the_apps_own() {
        let text = r#"
[apps.web]
command = "./server"
env = { NODE_ENV = "development", PORT = "3000" }
env_production = { NODE_ENV = "production" }

[apps.jobs]
command = "./jobs"
"#;
        let config = parse(text, PathBuf::from("/srv/shop")).unwrap();
        let envs = |config: &Config| config.apps[0].run.envs.clone();
        assert_eq!(
            envs(&config),
            [
                ("NODE_ENV".to_owned(), "development".to_owned()),
                ("PORT".to_owned(), "3000".to_owned())
            ]
        );
        let production = config.with_env_set("production").unwrap();
        assert_eq!(production.env_set.as_deref(), Some("production"));
        // The set's value comes last: the one the worker gets.
        assert_eq!(
            envs(&production).last(),
            Some(&("NODE_ENV".to_owned(), "production".to_owned()))
        );
        assert_eq!(
            production.apps[1].argv[2..],
            ["--", "./jobs"].map(OsString::from)
        );
        let config = parse(text, PathBuf::from("/srv/shop")).unwrap();
        assert_eq!(
            config.with_env_set("staging").err().as_deref(),
            Some("no app has an env_staging table")
        );
    }

    #[test]
    fn apps_become_run_command_lines() {
        let config = parse(
            r#"
[apps.web]
command = ["./server", "--port", "0"]
workers = 2
listen = ["127.0.0.1:8080", "admin=127.0.0.1:8081"]
wait-ready = true
log-timestamps = false
kill_timeout = "10s"
env = { RUST_LOG = "info" }

[apps.jobs]
command = "./jobs --queue default"

[apps.loop]
command = "sh -c 'while :; do date; sleep 1; done'"
"#,
            PathBuf::from("/srv/shop"),
        )
        .unwrap();
        assert_eq!(config.name, "shop");
        let names: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["web", "jobs", "loop"]);
        let argv: Vec<String> = config.apps[0]
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "--name",
                "web",
                "--workers=2",
                "--listen=127.0.0.1:8080",
                "--listen=admin=127.0.0.1:8081",
                "--wait-ready",
                "--kill-timeout=10s",
                "--env=RUST_LOG=info",
                "--",
                "./server",
                "--port",
                "0"
            ]
        );
        assert_eq!(
            config.apps[0].run.kill_timeout,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            config.apps[1].argv[3..],
            ["./jobs", "--queue", "default"].map(OsString::from)
        );
        // Split as a shell would: the quoted script is one word.
        assert_eq!(
            config.apps[2].argv[3..],
            ["sh", "-c", "while :; do date; sleep 1; done"].map(OsString::from)
        );
    }

    #[test]
    fn each_error_names_its_line() {
        let found = problems(
            r#"name = "shop"

[apps.web]
command = "./server"
workers = 0
wait-raedy = true

[apps.jobs]
kill-timeout = "soon"
"#,
        );
        assert_eq!(found.len(), 4, "{found:#?}");
        assert_eq!(found[0].0, 5);
        assert!(found[0].1.starts_with("apps.web.workers: "), "{found:?}");
        assert!(found[0].1.contains("'0'"), "{found:?}");
        assert_eq!(found[1].0, 6);
        assert!(found[1].1.contains("wait-raedy: no such key"), "{found:?}");
        assert_eq!(found[2].0, 8);
        assert!(found[2].1.contains("no command"), "{found:?}");
        assert_eq!(found[3].0, 9);
        assert!(found[3].1.contains("say 500ms"), "{found:?}");
    }

    #[test]
    fn lines_come_from_the_parser_not_a_search_of_the_text() {
        // `web` is a prefix of `webapp`, `workers` follows `workers-x`-like
        // text earlier: a search of the text would name line 3.
        let found = problems(
            r#"[apps.webapp]
command = "./a"
# workers = 0 in a comment
workers = 2

[apps.web]
command = "./b"
workers = 0
"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 8, "{found:?}");
        assert!(found[0].1.starts_with("apps.web.workers"), "{found:?}");
        // Name rules and a non-table app name their line too.
        let found = problems(
            "[apps.ok]\ncommand = \"x\"\n\n[apps.\"a/b\"]\ncommand = \"x\"\n\n[apps.\"../evil\"]\ncommand = \"x\"\n",
        );
        assert_eq!(
            found.iter().map(|p| p.0).collect::<Vec<_>>(),
            [4, 7],
            "{found:?}"
        );
        assert!(found[0].1.contains("has a '/'"), "{found:?}");
        let found = problems("[apps]\nweb = 3\n");
        assert_eq!(found[0].0, 2, "{found:?}");
        assert!(found[0].1.contains("not a table"), "{found:?}");
    }

    #[test]
    #[cfg(unix)]
    fn only_a_regular_file_of_bounded_size_is_read() {
        for special in ["/dev/zero", "/dev/null", "/"] {
            let err = load(Path::new(special)).unwrap_err();
            assert!(
                err[0].message.contains("not a regular file"),
                "{special}: {err:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (MAX_FILE + 1) as usize]).unwrap();
        let err = load(&big).unwrap_err();
        assert!(err[0].message.contains("larger than 1024 KiB"), "{err:?}");
        {
            let fifo = dir.path().join("fifo.toml");
            assert!(
                std::process::Command::new("mkfifo")
                    .arg(&fifo)
                    .status()
                    .unwrap()
                    .success()
            );
            let err = load(&fifo).unwrap_err();
            assert!(err[0].message.contains("not a regular file"), "{err:?}");
        }
    }

    #[test]
    fn the_file_itself_is_checked() {
        let found = problems("[apps.web]\ncommand = \"x\"\nworkers = \n");
        assert_eq!(found[0].0, 3, "{found:?}");
        let found = problems("nmae = \"x\"\n[apps.web]\ncommand = \"x\"\n");
        assert_eq!(found[0].0, 1, "{found:?}");
        assert!(found[0].1.contains("nmae"), "{found:?}");
        assert!(problems("[apps]\n")[0].1.contains("no apps"));
        let found = problems("[apps.shop]\ncommand = \"x\"\n");
        assert!(found[0].1.contains("the name of the file's"), "{found:?}");
        let found = problems("[apps.web]\ncommand = \"x\"\nname = \"y\"\ndaemon = true\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].0, found[1].0), (3, 4), "{found:?}");
        let found = problems("[apps.web]\ncommand = \"x\"\nwait-ready = \"yes\"\nprefix = true\n");
        assert!(
            found[0].1.contains("a flag: say true or false"),
            "{found:?}"
        );
        assert!(found[1].1.contains("takes a value"), "{found:?}");
    }

    #[test]
    fn the_examples_in_the_help_and_the_readme_are_valid() {
        let help: String = crate::cli::CONFIG_HELP
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .map(|line| format!("{line}\n"))
            .collect();
        let config = parse(&help, PathBuf::from("/srv")).unwrap();
        assert_eq!(config.name, "shop");
        assert_eq!(
            config.apps[0].run.kill_timeout,
            keepalive::Supervisor::DEFAULT_KILL_TIMEOUT
        );
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let block = &readme[start..start + readme[start..].find("```").unwrap()];
        let config = parse(block, PathBuf::from("/srv")).unwrap();
        let names: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["web", "jobs"]);
    }
}
