//! Restart on change (forever's `--watch`), the keepalive way: a change
//! under a watched path asks the loop for a rolling reload, so the workers
//! are replaced one at a time, each new one ready before the old one stops.
//!
//! `notify`'s watcher runs on a thread of its own; its debouncer gathers a
//! burst of changes (an editor's save, a deploy's copy) into one. Paths that
//! match an ignore pattern (`glob`: matched against the whole path and each
//! of its components, so `*.log`, `target` and `.git` do what they say)
//! change nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::event::{Event, Listener, emit};
use crate::stop::Shared;

/// What to watch.
#[derive(Clone, Debug)]
pub(crate) struct WatchSpec {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) ignore: Vec<glob::Pattern>,
    pub(crate) debounce: Duration,
}

/// The watcher; dropping it stops watching.
pub(crate) struct Watch {
    _debouncer: Debouncer<RecommendedWatcher>,
}

impl Watch {
    pub(crate) fn start(
        spec: &WatchSpec,
        shared: Arc<Shared>,
        listener: Option<Listener>,
    ) -> std::io::Result<Watch> {
        let ignore = spec.ignore.clone();
        let mut debouncer = new_debouncer(spec.debounce, move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            let Some(changed) = events
                .iter()
                .map(|event| &event.path)
                .find(|path| !ignored(path, &ignore))
            else {
                return;
            };
            emit(
                listener.as_ref(),
                Event::Changed {
                    path: changed.display().to_string(),
                },
            );
            shared.lock().reload_asked = true;
            shared.bell.ring();
        })
        .map_err(std::io::Error::other)?;
        for path in &spec.paths {
            debouncer
                .watcher()
                .watch(path, RecursiveMode::Recursive)
                .map_err(|err| {
                    std::io::Error::other(format!("cannot watch {}: {err}", path.display()))
                })?;
        }
        Ok(Watch {
            _debouncer: debouncer,
        })
    }
}

/// Whether a pattern matches the whole path or one of its components.
fn ignored(path: &Path, patterns: &[glob::Pattern]) -> bool {
    patterns.iter().any(|pattern| {
        pattern.matches_path(path)
            || path
                .components()
                .any(|part| pattern.matches(&part.as_os_str().to_string_lossy()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_patterns_match_a_component_or_the_path() {
        let patterns: Vec<glob::Pattern> = ["*.log", "target", "/srv/app/tmp/*"]
            .iter()
            .map(|p| glob::Pattern::new(p).unwrap())
            .collect();
        for path in [
            "/srv/app/out.log",
            "/srv/app/target/debug/x",
            "/srv/app/tmp/a",
        ] {
            assert!(ignored(Path::new(path), &patterns), "{path}");
        }
        for path in ["/srv/app/main.rs", "/srv/app/logs.txt", "/srv/app/targets"] {
            assert!(!ignored(Path::new(path), &patterns), "{path}");
        }
    }
}
