//! The workers' log files (`--stdout`, `--stderr`, `--log-dir`): every
//! worker of an app writes its stream's lines into one file, a whole line
//! at a time under the file's lock, so lines of several workers never mix.
//!
//! - **Rotation by size** (`--log-max-size`, `--log-keep`): before a line
//!   that would take the file past the limit, `FILE` becomes `FILE.1`
//!   (`FILE.1` becomes `FILE.2`, …, the oldest past `keep` is removed) and
//!   a new `FILE` is opened. It happens between two lines, so none is lost
//!   or split; a line longer than the limit gets a file of its own.
//! - **Reopen on SIGUSR1** (logrotate's convention, `postrotate kill -USR1`):
//!   the next line goes to a `FILE` opened anew, wherever the old one was
//!   moved.
//! - **Timestamps** (`--log-timestamps`): each line starts with the time it
//!   was copied, RFC 3339 in UTC with milliseconds.
//!
//! A write that fails (a full disk) loses that line only, whole: what of it
//! reached the file is cut off again, so the next line does not start in
//! the middle of it. The copy goes on, and a worker is never held up by a
//! full disk. The lines dropped are counted: the first failure is said
//! once ([`Event::LogDropping`]), and the count when writing works again
//! ([`Event::LogResumed`]).
//!
//! [`Event::LogDropping`]: crate::Event::LogDropping
//! [`Event::LogResumed`]: crate::Event::LogResumed

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::event::{Event, Listener, emit};

/// Size-based rotation: at most `max_size` bytes a file, `keep` old ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The most a file holds before the next line goes to a new one.
    pub max_size: u64,
    /// How many rotated files (`FILE.1` … `FILE.keep`) are kept.
    pub keep: u32,
}

/// How an app's log files are written.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogOptions {
    pub(crate) stdout: Option<PathBuf>,
    pub(crate) stderr: Option<PathBuf>,
    pub(crate) rotation: Option<Rotation>,
    pub(crate) timestamps: bool,
}

/// One log file, shared by the copies of every worker's stream.
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Option<Rotation>,
    timestamps: bool,
    /// Set by SIGUSR1: reopen before the next line.
    reopen: Arc<AtomicBool>,
    /// Lines dropped since writing last failed (`None` while it works).
    dropping: Option<u64>,
    /// A failed line's start could not be cut off: the next line starts
    /// on a line of its own.
    broken: bool,
    listener: Option<Listener>,
}

/// A [`LogFile`] as a writer of whole lines, for the copy threads.
#[derive(Clone)]
pub(crate) struct LogSink(pub(crate) Arc<Mutex<LogFile>>);

impl LogFile {
    /// Opens (appends to) `path`; `reopen` is the SIGUSR1 flag; `listener`
    /// hears when lines are dropped.
    pub(crate) fn open(
        path: &Path,
        rotation: Option<Rotation>,
        timestamps: bool,
        reopen: Arc<AtomicBool>,
        listener: Option<Listener>,
    ) -> io::Result<LogFile> {
        // `log-dir = "logs"` on a fresh checkout: made, as pm2 does.
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = append(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_owned(),
            file,
            size,
            rotation,
            timestamps,
            reopen,
            dropping: None,
            broken: false,
            listener,
        })
    }

    /// Writes `line`, or drops it whole and counts it.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self.try_write_line(line) {
            Ok(()) => {
                if let Some(dropped) = self.dropping.take() {
                    let path = self.path.display().to_string();
                    emit(self.listener.as_ref(), Event::LogResumed { path, dropped });
                }
                Ok(())
            }
            Err(err) => {
                let dropped = self.dropping.get_or_insert(0);
                *dropped += 1;
                if *dropped == 1 {
                    let path = self.path.display().to_string();
                    let reason = err.to_string();
                    emit(self.listener.as_ref(), Event::LogDropping { path, reason });
                }
                Err(err)
            }
        }
    }

    /// Writes `line` (ending in a newline), rotating or reopening first
    /// when it is time.
    fn try_write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.file = append(&self.path)?;
            self.size = self.file.metadata()?.len();
        }
        let stamp = self.timestamps.then(|| {
            format!(
                "{} ",
                humantime::format_rfc3339_millis(std::time::SystemTime::now())
            )
        });
        let len = line.len() as u64 + stamp.as_ref().map_or(0, |s| s.len() as u64);
        if let Some(rotation) = self.rotation {
            if self.size > 0 && self.size + len > rotation.max_size {
                self.rotate(rotation.keep)?;
            }
        }
        let mut whole = Vec::with_capacity(len as usize + 1);
        if self.broken {
            whole.push(b'\n');
        }
        if let Some(stamp) = stamp {
            whole.extend_from_slice(stamp.as_bytes());
        }
        whole.extend_from_slice(line);
        if let Err(err) = self.file.write_all(&whole) {
            self.cut_back(whole.len() as u64);
            return Err(err);
        }
        self.broken = false;
        self.size += whole.len() as u64;
        Ok(())
    }

    /// After a write of `tried` bytes failed: cuts off what of it reached
    /// the file (only that: a file cut short or grown by another since is
    /// left alone), or else has the next line start on a line of its own.
    fn cut_back(&mut self, tried: u64) {
        let now = self.file.metadata().map_or(0, |meta| meta.len());
        let ours = now >= self.size && now - self.size <= tried;
        if now == self.size && ours {
            return; // nothing reached it
        }
        if !(ours && self.file.set_len(self.size).is_ok()) {
            self.broken = true;
            self.size = now;
        }
    }

    /// `FILE.n` → `FILE.n+1` from the oldest down, `FILE` → `FILE.1`, a new `FILE`.
    fn rotate(&mut self, keep: u32) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(numbered(keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for LogSink {
    /// One call, one whole line (the copy threads write a line at a time).
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.write_line(line)?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keepalive_log_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rotation_keeps_whole_lines_and_the_newest_files() {
        let dir = dir("rotation");
        let path = dir.join("app.log");
        let rotation = Rotation {
            max_size: 100,
            keep: 2,
        };
        let mut log = LogFile::open(&path, Some(rotation), false, Arc::default(), None).unwrap();
        for n in 0..30 {
            log.write_line(format!("line {n:04}\n").as_bytes()).unwrap();
        }
        // 10 bytes a line, 10 lines a file: 28..29 in the file, 10..27 kept.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            read(&path),
            "line 0020\nline 0021\nline 0022\nline 0023\nline 0024\nline 0025\nline 0026\nline 0027\nline 0028\nline 0029\n"
        );
        assert!(read(&dir.join("app.log.1")).starts_with("line 0010\n"));
        assert!(!dir.join("app.log.3").exists(), "only `keep` old files");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reopen_follows_a_moved_file_and_timestamps_lead_the_line() {
        let dir = dir("reopen");
        let path = dir.join("app.log");
        let reopen = Arc::new(AtomicBool::new(false));
        let mut log = LogFile::open(&path, None, true, reopen.clone(), None).unwrap();
        log.write_line(b"before\n").unwrap();
        std::fs::rename(&path, dir.join("app.log.old")).unwrap();
        reopen.store(true, Ordering::Release);
        log.write_line(b"after\n").unwrap();
        let old = std::fs::read_to_string(dir.join("app.log.old")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.ends_with("Z before\n") && old.starts_with("20"),
            "{old}"
        );
        assert!(new.ends_with("Z after\n"), "{new}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
