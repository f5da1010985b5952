//! The workers' output, each line with a prefix ([`Output::Prefixed`]).
//!
//! Bytes are copied as they are (a line need not be UTF-8), one thread per
//! stream reading until the worker closes it: the pipe is never closed
//! while the worker lives, so a worker never dies of SIGPIPE because of
//! keepalive, and a write that fails (a closed stdout) loses that line
//! only. A line longer than [`MAX_LINE`] is written in pieces of at most
//! that size, each ended with a newline, so memory stays bounded whatever
//! the worker writes. The supervisor waits for the copies to end before
//! it exits, so the lines a worker wrote as it stopped are not lost.
//!
//! [`Output::Prefixed`]: Output::Prefixed

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

/// Where the child's output goes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Output {
    /// The supervisor's own stdout and stderr (the default).
    Inherit,
    /// Each line of the child's stdout and stderr, with this prefix, on the
    /// supervisor's stdout and stderr. The bytes are copied as they are
    /// (UTF-8 or not); a line longer than 64 KiB is written in pieces of
    /// 64 KiB, each ended with a newline, so memory stays bounded; a write
    /// that fails loses that line only, and the child's pipe is read until
    /// the child closes it.
    Prefixed(String),
}

/// The longest piece of a line kept before it is written: 64 KiB.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// The copying threads still running: the supervisor waits for them (up
/// to its deadline) before it ends, so a worker's last lines are written.
#[derive(Debug, Default)]
pub(crate) struct Copiers {
    running: Mutex<usize>,
    finished: Condvar,
}

impl Copiers {
    /// Waits until every copy ended (its worker and whatever held the
    /// worker's pipe are gone), or until `deadline`.
    pub(crate) fn wait(&self, deadline: Instant) {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let left = deadline.saturating_duration_since(Instant::now());
        drop(self.finished.wait_timeout_while(running, left, |n| *n > 0));
    }

    fn change(&self, by: isize) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_add_signed(by);
        self.finished.notify_all();
    }
}

/// Copies `from`, each line with `prefix`, to `to` (keepalive's own
/// stdout or stderr, or a log file), on a thread of its own, counted in
/// `copiers`.
pub(crate) fn copy_lines(
    from: impl Read + Send + 'static,
    prefix: String,
    mut to: Box<dyn Write + Send>,
    copiers: &Arc<Copiers>,
) {
    copiers.change(1);
    let copiers = Arc::clone(copiers);
    let spawned = thread::Builder::new()
        .name("keepalive-output".into())
        .spawn({
            let copiers = Arc::clone(&copiers);
            move || {
                prefix_lines(from, prefix.as_bytes(), &mut to);
                copiers.change(-1);
            }
        });
    if let Err(err) = spawned {
        copiers.change(-1);
        // The pipe is dropped, and the worker gets EPIPE: say why.
        tracing::warn!(%err, "cannot start a thread for a worker's output");
    }
}

/// Copies `from` to `to` line by line, each with `prefix`, until `from`
/// ends; write errors are ignored. Each line goes out in one `write_all`,
/// so lines of several workers do not mix.
fn prefix_lines(from: impl Read, prefix: &[u8], to: &mut impl Write) {
    let mut reader = BufReader::with_capacity(MAX_LINE, from);
    let mut line = Vec::with_capacity(prefix.len() + MAX_LINE + 1);
    line.extend_from_slice(prefix);
    let mut write = |line: &mut Vec<u8>| {
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let _ = to.write_all(line);
        let _ = to.flush();
        line.truncate(prefix.len());
    };
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if buf.is_empty() {
            break;
        }
        let room = MAX_LINE - (line.len() - prefix.len());
        let take = buf.len().min(room);
        let (used, ended) = match buf[..take].iter().position(|&b| b == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (take, take == room),
        };
        line.extend_from_slice(&buf[..used]);
        reader.consume(used);
        if ended {
            write(&mut line);
        }
    }
    if line.len() > prefix.len() {
        write(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prefix_lines(input, b"[w] ", &mut out);
        out
    }

    #[test]
    fn lines_get_the_prefix_and_bytes_pass_as_they_are() {
        assert_eq!(prefixed(b"one\ntwo\n"), b"[w] one\n[w] two\n");
        // Not UTF-8: copied, and the lines after it too.
        assert_eq!(prefixed(b"caf\xe9\nnext\n"), b"[w] caf\xe9\n[w] next\n");
        // A last line without a newline gets one.
        assert_eq!(prefixed(b"last"), b"[w] last\n");
        assert_eq!(prefixed(b""), b"");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_written_in_pieces() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let out = prefixed(&long);
        let pieces: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(pieces.len(), 4, "three pieces and the empty rest");
        for (piece, len) in pieces.iter().zip([MAX_LINE, MAX_LINE, 10, 0]) {
            if len > 0 {
                assert_eq!(&piece[..4], b"[w] ");
                assert_eq!(piece.len(), 4 + len);
            }
        }
    }

    #[test]
    fn a_writer_that_fails_does_not_stop_the_reading() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let input = b"a\nb\nc\n".repeat(10_000);
        let mut reader = &input[..];
        prefix_lines(&mut reader, b"p ", &mut Closed);
        assert!(reader.is_empty(), "everything was read");
    }
}
