//! Restart on change (forever's `--watch`), the keepalive way: a change
//! under a watched path asks the loop for a rolling reload, so the workers
//! are replaced one at a time, each new one ready before the old one stops.
//!
//! `notify`'s watcher runs on a thread of its own and reports every event,
//! opens and reads among them (and a read can change a file's access
//! time): only a change of content counts — a write, a creation, a
//! removal, a rename. Otherwise a worker that reads its own config in the
//! watched folder would set off a reload whose new worker reads it again,
//! for ever. A burst of changes (an editor's save, a deploy's copy) is one
//! reload: the first change waits until the folder has been quiet for the
//! debounce, or at most [`BURST`] of debounces. Paths that match an ignore
//! pattern (`glob`: matched against the whole path and each of its
//! components, so `*.log`, `target` and `.git` do what they say) change
//! nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::event::{Event, Listener, emit};
use crate::stop::Shared;

/// How many debounces a burst of changes may last before it reloads
/// anyway (a file written all the time, not ignored).
const BURST: u32 = 10;

/// What to watch.
#[derive(Clone, Debug)]
pub(crate) struct WatchSpec {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) ignore: Vec<glob::Pattern>,
    pub(crate) debounce: Duration,
}

/// The watcher; dropping it stops watching (and its debouncing thread).
pub(crate) struct Watch {
    _watcher: RecommendedWatcher,
}

impl Watch {
    pub(crate) fn start(
        spec: &WatchSpec,
        shared: Arc<Shared>,
        listener: Option<Listener>,
    ) -> std::io::Result<Watch> {
        let ignore = spec.ignore.clone();
        let (changes, changed) = mpsc::channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
                let Ok(event) = result else { return };
                if !changes_content(event.kind) {
                    return;
                }
                for path in event.paths {
                    if !ignored(&path, &ignore) {
                        let _ = changes.send(path);
                    }
                }
            })
            .map_err(std::io::Error::other)?;
        for path in &spec.paths {
            watcher
                .watch(path, RecursiveMode::Recursive)
                .map_err(|err| {
                    let err = std::io::Error::other(err);
                    crate::error::context(err, format!("cannot watch {}", path.display()))
                })?;
        }
        let debounce = spec.debounce;
        std::thread::Builder::new()
            .name("keepalive-watch".into())
            .spawn(move || {
                while let Some(path) = next_burst(&changed, debounce) {
                    emit(
                        listener.as_ref(),
                        Event::Changed {
                            path: path.display().to_string(),
                        },
                    );
                    shared.lock().reload_asked = true;
                    shared.bell.ring();
                }
            })?;
        Ok(Watch { _watcher: watcher })
    }
}

/// Whether an event of this kind changed what a file holds, or which files
/// there are: not an open, a read, a close or a change of metadata.
fn changes_content(kind: EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Waits for a change, then until the changes stop for `debounce` (at most
/// [`BURST`] debounces): the burst's first path. `None` once the watcher
/// is gone.
fn next_burst(changed: &mpsc::Receiver<PathBuf>, debounce: Duration) -> Option<PathBuf> {
    let first = changed.recv().ok()?;
    let until = Instant::now() + debounce * BURST;
    loop {
        let quiet = debounce.min(until.saturating_duration_since(Instant::now()));
        match changed.recv_timeout(quiet) {
            Ok(_) if Instant::now() < until => {}
            Ok(_) | Err(RecvTimeoutError::Timeout) => return Some(first),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
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
    fn only_changes_of_content_count() {
        use notify::event::{
            AccessKind, CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode,
        };
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::Any),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
        ] {
            assert!(changes_content(kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Any),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ] {
            assert!(!changes_content(kind), "{kind:?}");
        }
    }

    #[test]
    fn a_burst_is_one_change_and_a_stream_still_ends() {
        let (send, receive) = mpsc::channel();
        for n in 0..5 {
            send.send(PathBuf::from(format!("/w/{n}"))).unwrap();
        }
        let debounce = Duration::from_millis(20);
        assert_eq!(next_burst(&receive, debounce), Some(PathBuf::from("/w/0")));
        // A file written without a pause: the burst ends at BURST debounces.
        let writer = std::thread::spawn(move || {
            for _ in 0..100 {
                if send.send(PathBuf::from("/w/log")).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let started = Instant::now();
        assert_eq!(
            next_burst(&receive, debounce),
            Some(PathBuf::from("/w/log"))
        );
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "{:?}",
            started.elapsed()
        );
        drop(receive);
        writer.join().unwrap();
    }

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
