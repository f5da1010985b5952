//! keepalive's own lines on stderr, written so that they never stop it.
//!
//! A stderr nobody reads (a stuck log shipper holding a full pipe) would
//! block a plain write forever, and keepalive writes lines from its loop
//! and its stop hook. So a line is queued (a bounded channel of
//! [`QUEUED`] lines) and a thread of its own writes the queue out; when
//! the queue is full the line is dropped and counted, and the count is
//! said once the writer moves again. Each line goes out in one `write`,
//! so it does not mix with the workers' output on the same stderr; a
//! failed write (EPIPE, a full disk) is ignored (Rust ignores SIGPIPE).
//!
//! Before the process ends, [`flush`] waits, briefly, for what is queued.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Lines waiting to be written, at most.
const QUEUED: usize = 1024;

struct Queue {
    sender: Option<SyncSender<Vec<u8>>>,
    /// Lines queued and not written yet.
    pending: Mutex<usize>,
    written: Condvar,
    dropped: AtomicU64,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| {
        let (sender, receiver) = sync_channel(QUEUED);
        let spawned = std::thread::Builder::new()
            .name("keepalive-stderr".into())
            .spawn(move || write_out(&receiver));
        Queue {
            // Without the thread, lines are written directly.
            sender: spawned.ok().map(|_| sender),
            pending: Mutex::new(0),
            written: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    })
}

fn write_out(receiver: &Receiver<Vec<u8>>) {
    for line in receiver {
        let queue = queue();
        let dropped = queue.dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            let note = format!(
                "keepalive: {dropped} line(s) of its own dropped: its stderr was not read\n"
            );
            let _ = std::io::stderr().write_all(note.as_bytes());
        }
        let _ = std::io::stderr().write_all(&line);
        let mut pending = queue.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *pending = pending.saturating_sub(1);
        queue.written.notify_all();
    }
}

/// Queues `line` (a newline is added) for stderr; never blocks.
pub(crate) fn line(mut line: String) {
    line.push('\n');
    let queue = queue();
    let Some(sender) = &queue.sender else {
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    };
    *queue.pending.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
        sender.try_send(line.into_bytes())
    {
        *queue.pending.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        queue.dropped.fetch_add(1, Ordering::AcqRel);
    }
}

/// Waits until every queued line is written, or `within` passed.
pub(crate) fn flush(within: Duration) {
    let Some(queue) = QUEUE.get() else { return };
    let until = Instant::now() + within;
    let mut pending = queue.pending.lock().unwrap_or_else(PoisonError::into_inner);
    while *pending > 0 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        pending = queue
            .written
            .wait_timeout(pending, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// After `exit_hook` is installed: the last of the process's own
/// shutdown (its flush phase) writes out what is queued, for at most a
/// second.
pub(crate) fn flush_at_exit() {
    exit_hook::in_phase(exit_hook::Phase::Flush).add(|_| flush(Duration::from_secs(1)));
}
