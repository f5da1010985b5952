//! `keepalive logs [NAME] [-n N] [-f]`: the last lines of an instance's log
//! files (an `up`'s apps', or every instance's, each line labelled), read
//! from their end (a 1 GiB log costs a few blocks, not 1 GiB), and with
//! `-f` what they get from then on; `keepalive flush NAME` empties them.
//!
//! Following is `tail -F`'s way: by the descriptor opened, not by the
//! path. When another file appears at the path (keepalive rotated it, or
//! logrotate moved it and made a new one), what is left in the old file
//! is read to its end first, then the new one from its start; the old one
//! is still read for a while (logrotate's USR1 comes after the move, so a
//! line or two may still land there). A file cut short in place
//! (`copytruncate`) is read again from its start. Each line once.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keepalive::{Request, Status};

/// How often a followed file is looked at.
const EVERY: Duration = Duration::from_millis(200);
/// How many looks an old (rotated) file is still read after the switch.
const OLD_FILE_LOOKS: u32 = 25;
/// The most `-n` reads back from a file's end, whatever N says.
const MAX_TAIL: u64 = 16 << 20;

/// A log file to show, and the label its lines get (`web`, `web:err`)
/// when several instances are shown at once.
struct Shown {
    label: Option<String>,
    path: PathBuf,
}

/// `keepalive logs [NAME]`: NAME's log files; an `up`'s name, every app's;
/// no name, every instance's (each line labelled with its instance).
pub(crate) fn logs(name: Option<&str>, lines: usize, follow: bool) -> Result<(), String> {
    let files = log_files(name)?;
    let mut out = io::stdout().lock();
    let mut followed = Vec::new();
    let headers = files.len() > 1 && files.iter().all(|shown| shown.label.is_none());
    for shown in &files {
        let path = &shown.path;
        if headers {
            let _ = writeln!(out, "==> {} <==", path.display());
        }
        let mut follower = Follower::open(path);
        let Some(file) = &mut follower.file else {
            // keepalive made it when it started: gone, or not this file.
            return Err(format!("{}: no such file", path.display()));
        };
        let (tail, end) = tail(file, lines).map_err(|err| format!("{}: {err}", path.display()))?;
        let mut labelled = Labelled::new(shown.label.as_deref(), &mut out);
        let _ = labelled.write_all(&tail);
        follower.position = end;
        followed.push((follower, labelled.at_line_start));
    }
    let _ = out.flush();
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(EVERY);
        for ((follower, at_line_start), shown) in followed.iter_mut().zip(&files) {
            let mut labelled = Labelled::new(shown.label.as_deref(), &mut out);
            labelled.at_line_start = *at_line_start;
            let polled = follower.poll(&mut labelled);
            *at_line_start = labelled.at_line_start;
            if polled.and_then(|()| out.flush()).is_err() {
                return Ok(()); // nobody reads any more
            }
        }
    }
}

/// `keepalive flush NAME` (pm2's `flush`): empties NAME's log files (an
/// `up`'s: every app's). Lines written from then on start the file again.
pub(crate) fn flush(name: &str) -> Result<(), String> {
    for shown in log_files(Some(name))? {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&shown.path)
            .and_then(|file| file.set_len(0))
            .map_err(|err| format!("{}: {err}", shown.path.display()))?;
        println!("emptied {}", shown.path.display());
    }
    Ok(())
}

/// The log files to show for `name` (see [`logs`]).
fn log_files(name: Option<&str>) -> Result<Vec<Shown>, String> {
    let statuses: Vec<(bool, Status)> = match name {
        Some(name) => {
            let status = status_of(name)?;
            if status.apps.is_empty() {
                vec![(false, status)]
            } else {
                // An up: its apps, each an instance of its own.
                let running = status.apps.iter().filter(|app| app.pid.is_some());
                running
                    .map(|app| status_of(&app.name).map(|status| (true, status)))
                    .collect::<Result<_, _>>()?
            }
        }
        None => keepalive::control::instances()
            .map_err(|err| err.to_string())?
            .iter()
            .filter_map(|socket| {
                keepalive::control::status_at(socket, keepalive::control::ANSWER_WITHIN).ok()
            })
            .filter(|status| status.apps.is_empty())
            .map(|status| (true, status))
            .collect(),
    };
    let mut files = Vec::new();
    for (labelled, status) in statuses {
        let label = |suffix: &str| labelled.then(|| format!("{}{suffix}", status.name));
        files.extend(status.stdout_log.as_ref().map(|path| Shown {
            label: label(""),
            path: PathBuf::from(path),
        }));
        files.extend(status.stderr_log.as_ref().map(|path| Shown {
            label: label(":err"),
            path: PathBuf::from(path),
        }));
    }
    if files.is_empty() {
        return Err(match name {
            Some(name) => {
                format!("{name} writes no log files (run it with --stdout, --stderr or --log-dir)")
            }
            None => "no instance writes log files (--stdout, --stderr or --log-dir)".into(),
        });
    }
    Ok(files)
}

fn status_of(name: &str) -> Result<Status, String> {
    crate::client::ask(name, &Request::Status)?
        .status
        .ok_or_else(|| format!("{name}: no status"))
}

/// Writes lines with `label | ` before each (nothing without a label).
struct Labelled<'a, W: Write> {
    label: Option<&'a str>,
    out: &'a mut W,
    at_line_start: bool,
}

impl<'a, W: Write> Labelled<'a, W> {
    fn new(label: Option<&'a str>, out: &'a mut W) -> Self {
        Labelled {
            label,
            out,
            at_line_start: true,
        }
    }
}

impl<W: Write> Write for Labelled<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(label) = self.label else {
            return self.out.write(bytes);
        };
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                write!(self.out, "{label} | ")?;
            }
            self.out.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The last `n` lines of `file` and where it ends, read backwards a block
/// at a time until they are there (at most [`MAX_TAIL`] bytes).
fn tail(file: &mut File, n: usize) -> io::Result<(Vec<u8>, u64)> {
    let end = file.metadata()?.len();
    if n == 0 {
        return Ok((Vec::new(), end));
    }
    // Blocks from the end, last first, until they hold N newlines besides
    // a final one (the line before the first counted is whole then).
    let mut start = end;
    let mut blocks = Vec::new();
    let mut newlines = 0;
    while start > 0 && end - start < MAX_TAIL && newlines <= n {
        let step = start.min(64 * 1024);
        start -= step;
        let mut block = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        newlines += block.iter().filter(|&&b| b == b'\n').count();
        blocks.push(block);
    }
    let text: Vec<u8> = blocks.into_iter().rev().flatten().collect();
    Ok((last_lines(&text, n).to_vec(), end))
}

/// The last `n` lines of `text`.
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(at, _)| at + 1);
    if n == 0 { &[] } else { &text[start..] }
}

/// A log file followed by descriptor.
struct Follower {
    path: PathBuf,
    file: Option<File>,
    position: u64,
    /// The file before the last rotation, still read for a few looks.
    old: Option<(File, u32)>,
}

impl Follower {
    fn open(path: &Path) -> Follower {
        Follower {
            path: path.to_owned(),
            file: File::open(path).ok(),
            position: 0,
            old: None,
        }
    }

    /// Writes to `out` what the file got since the last look, and
    /// switches to a new file at the path once the old one is read out.
    fn poll(&mut self, out: &mut impl Write) -> io::Result<()> {
        if let Some((old, looks)) = &mut self.old {
            copy_new(old, out)?;
            *looks += 1;
            if *looks >= OLD_FILE_LOOKS {
                self.old = None;
            }
        }
        if let Some(file) = &mut self.file {
            // Cut short in place: from its start again.
            if file.metadata()?.len() < self.position {
                file.seek(SeekFrom::Start(0))?;
                self.position = 0;
            }
            self.position += copy_new(file, out)?;
        }
        let at_path = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let open = self
            .file
            .as_ref()
            .and_then(|file| file.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if at_path.is_some() && at_path != open {
            if let Ok(mut new) = File::open(&self.path) {
                self.position = copy_new(&mut new, out)?;
                if let Some(old) = self.file.replace(new) {
                    self.old = Some((old, 0));
                }
            }
        }
        Ok(())
    }
}

/// Copies what `file` has from its position to its end; how many bytes.
fn copy_new(file: &mut File, out: &mut impl Write) -> io::Result<u64> {
    let mut buf = [0u8; 64 * 1024];
    let mut copied = 0;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => {
                out.write_all(&buf[..n])?;
                copied += n as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_of_a_text() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
    }

    #[test]
    fn the_tail_is_read_from_the_end_across_blocks() {
        let mut file = tempfile::tempfile().unwrap();
        let text: String = (0..50_000).map(|n| format!("line {n}\n")).collect();
        file.write_all(text.as_bytes()).unwrap();
        let (last, end) = tail(&mut file, 3).unwrap();
        assert_eq!(last, b"line 49997\nline 49998\nline 49999\n");
        assert_eq!(end, text.len() as u64);
        let (last, _) = tail(&mut file, 20_000).unwrap();
        assert_eq!(last.split(|&b| b == b'\n').count(), 20_001);
        assert!(last.starts_with(b"line 30000\n"));
    }

    #[test]
    fn a_follower_reads_each_line_once_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "old 1\n").unwrap();
        let mut follower = Follower::open(&path);
        follower.position = 6;
        follower
            .file
            .as_mut()
            .unwrap()
            .seek(SeekFrom::End(0))
            .unwrap();
        let mut out = Vec::new();
        let append = |path: &Path, line: &str| {
            let mut file = File::options().append(true).open(path).unwrap();
            file.write_all(line.as_bytes()).unwrap();
        };
        append(&path, "old 2\n");
        follower.poll(&mut out).unwrap();
        // Rotated: moved away, a line still lands in the old one, a new one made.
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        append(&dir.path().join("app.log.1"), "old 3\n");
        std::fs::write(&path, "new 1\n").unwrap();
        follower.poll(&mut out).unwrap();
        append(&dir.path().join("app.log.1"), "old 4\n");
        append(&path, "new 2\n");
        follower.poll(&mut out).unwrap();
        let mut lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["new 1", "new 2", "old 2", "old 3", "old 4"]);
    }
}
