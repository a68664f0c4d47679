//! The embedded store's write-ahead-log policy: the WAL is checkpointed and truncated when
//! it passes a size, when no commit came for a while, and on a clean close, so that it
//! never grows without bound under load nor stays large next to the database after a stop.
//!
//! Owns: [`WalOptions`] and [`WalPolicy`] (the size check after each commit, the idle
//! checker thread, the checkpoint itself and the `stocksync_store_wal_bytes` gauge).
//!
//! SQLite's own automatic checkpoint is PASSIVE: under a steady stream of commits it never
//! catches up with the writer, the WAL never restarts from its beginning, and the file keeps
//! growing. A `TRUNCATE` checkpoint on the writer connection waits for nothing but short
//! reads (a bounded busy timeout), copies the frames into the database, syncs it and
//! empties the WAL file; commits wait for it, which costs one pause per
//! `wal_checkpoint_bytes` of log (measured in BENCHMARKS.md).
//!
//! May depend on: `telemetry`.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a checkpoint waits for readers to leave the WAL before giving up (it is
/// retried after the next commit or idle period).
const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_millis(200);

/// The writer's usual busy timeout, restored after a checkpoint.
pub(crate) const WRITER_BUSY_TIMEOUT: Duration = Duration::from_millis(5_000);

/// The thresholds of the WAL policy (`[store] wal_checkpoint_bytes`,
/// `wal_idle_checkpoint_secs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A commit that leaves the WAL larger than this many bytes checkpoints and truncates it.
    pub checkpoint_bytes: u64,
    /// With no commit for this many seconds, a non-empty WAL is checkpointed and truncated.
    pub idle_checkpoint_secs: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            checkpoint_bytes: 64 * 1024 * 1024,
            idle_checkpoint_secs: 10,
        }
    }
}

/// Why a checkpoint ran (the `reason` label of `stocksync_store_wal_checkpoints_total`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reason {
    /// The WAL passed `checkpoint_bytes`.
    Size,
    /// No commit for `idle_checkpoint_secs`.
    Idle,
    /// [`crate::store::Store::close`].
    Close,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Size => "size",
            Reason::Idle => "idle",
            Reason::Close => "close",
        }
    }
}

/// The policy's state, shared by the writer and the idle checker.
#[derive(Debug)]
pub struct WalPolicy {
    options: WalOptions,
    wal_path: PathBuf,
    started: Instant,
    /// Milliseconds since `started` of the last commit.
    last_commit_ms: AtomicU64,
    /// A commit happened since the last completed checkpoint.
    dirty: AtomicBool,
    /// Set when the store is dropped: the idle checker ends.
    stopped: AtomicBool,
}

impl WalPolicy {
    /// The policy for the database at `database`.
    pub fn new(database: &Path, options: WalOptions) -> Self {
        let mut wal_path = database.as_os_str().to_owned();
        wal_path.push("-wal");
        Self {
            options,
            wal_path: PathBuf::from(wal_path),
            started: Instant::now(),
            last_commit_ms: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// The WAL file's size in bytes (0 when it does not exist).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal_path).map_or(0, |meta| meta.len())
    }

    /// Called by the writer after each successful commit, holding the writer connection:
    /// checkpoints when the WAL passed the size threshold.
    pub(crate) fn after_commit(&self, writer: &Connection) {
        self.last_commit_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
        let bytes = self.wal_bytes();
        metrics::gauge!(crate::telemetry::STORE_WAL_BYTES).set(bytes as f64);
        if bytes > self.options.checkpoint_bytes {
            self.checkpoint(writer, Reason::Size);
        }
    }

    /// Checkpoints every frame into the database and truncates the WAL to zero bytes.
    /// Returns whether it completed (readers may hold it back past the busy timeout; a
    /// later call retries). Never fails the caller: a commit is durable in the WAL already.
    pub(crate) fn checkpoint(&self, writer: &Connection, reason: Reason) -> bool {
        let started = Instant::now();
        let _ = writer.busy_timeout(CHECKPOINT_BUSY_TIMEOUT);
        let result = writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        });
        let _ = writer.busy_timeout(WRITER_BUSY_TIMEOUT);
        let completed = matches!(result, Ok(0));
        if completed {
            self.dirty.store(false, Ordering::Relaxed);
        }
        let outcome = match &result {
            Ok(0) => "ok",
            Ok(_) => "busy",
            Err(_) => "error",
        };
        metrics::counter!(crate::telemetry::STORE_WAL_CHECKPOINTS_TOTAL,
            "reason" => reason.label(), "outcome" => outcome)
        .increment(1);
        metrics::gauge!(crate::telemetry::STORE_WAL_BYTES).set(self.wal_bytes() as f64);
        match result {
            Ok(_) => tracing::debug!(
                reason = reason.label(),
                outcome,
                took_ms = started.elapsed().as_millis() as u64,
                "wal checkpoint"
            ),
            Err(error) => tracing::warn!(
                reason = reason.label(),
                error = %error,
                "wal checkpoint failed"
            ),
        }
        completed
    }

    /// Whether the idle checkpoint is due: commits since the last checkpoint and none for
    /// `idle_checkpoint_secs`.
    fn idle_due(&self) -> bool {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let idle_ms = self.options.idle_checkpoint_secs.saturating_mul(1000);
        self.dirty.load(Ordering::Relaxed)
            && now_ms.saturating_sub(self.last_commit_ms.load(Ordering::Relaxed)) >= idle_ms
    }

    /// Starts the idle checker: a thread that wakes a few times per idle period and
    /// checkpoints on the writer connection when due. It ends when [`WalPolicy::stop`] is
    /// called or the writer is gone.
    pub(crate) fn spawn_idle_checker(
        self: &Arc<Self>,
        writer: Weak<Mutex<Connection>>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let policy = self.clone();
        let tick = Duration::from_millis(
            (policy.options.idle_checkpoint_secs.saturating_mul(1000) / 4).clamp(50, 1_000),
        );
        std::thread::Builder::new()
            .name("stocksync-wal".to_owned())
            .spawn(move || {
                while !policy.stopped.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    if policy.stopped.load(Ordering::Relaxed) || !policy.idle_due() {
                        continue;
                    }
                    let Some(writer) = writer.upgrade() else {
                        return;
                    };
                    let guard = writer.lock().unwrap_or_else(|poison| poison.into_inner());
                    // A commit may have come while waiting for the lock.
                    if policy.idle_due() {
                        policy.checkpoint(&guard, Reason::Idle);
                    }
                }
            })
    }

    /// Ends the idle checker (it notices at its next wake-up; unpark it to be quick).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}
