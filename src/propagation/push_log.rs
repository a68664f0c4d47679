//! The push audit log writer: every listing of every push, with the channel's answer, goes
//! into a bounded queue and is written to the store's `push_log` in batches by one task,
//! off the channel actors' path. A full queue drops entries (counted in
//! `stocksync_audit_push_log_dropped_total`) rather than slowing propagation; entries older
//! than the retention are pruned once an hour.

use crate::config::AuditConfig;
use crate::store::{PushLogRecord, Store};
use crate::telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most entries written in one store call.
const MAX_WRITE_BATCH: usize = 4_096;

/// How often expired entries are pruned.
const PRUNE_PERIOD: Duration = Duration::from_secs(3_600);

/// The channel actors' end of the queue. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PushLogSender(mpsc::Sender<PushLogRecord>);

impl PushLogSender {
    /// Queues answers without waiting; drops (and counts) what does not fit.
    pub fn send(&self, records: Vec<PushLogRecord>) {
        for record in records {
            if let Err(error) = self.0.try_send(record) {
                let channel = match &error {
                    mpsc::error::TrySendError::Full(record)
                    | mpsc::error::TrySendError::Closed(record) => record.channel.clone(),
                };
                metrics::counter!(telemetry::AUDIT_PUSH_LOG_DROPPED_TOTAL, "channel" => channel)
                    .increment(1);
            }
        }
    }
}

/// The writer task; [`stop`](Self::stop) writes what is queued and ends it.
pub(crate) struct PushLogWriter {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PushLogWriter {
    /// Starts the writer over `store` with the `[audit]` settings.
    pub fn start(
        store: Arc<dyn Store>,
        config: &AuditConfig,
        clock: crate::clock::SharedClock,
    ) -> (PushLogSender, Self) {
        let (sender, receiver) = mpsc::channel(config.push_log_queue.max(1));
        let (stop, stopped) = oneshot::channel();
        let flush = Duration::from_millis(config.push_log_flush_ms.max(1));
        let retention_ms =
            i64::try_from(config.push_log_retention_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let task = tokio::spawn(run(store, receiver, stopped, flush, retention_ms, clock));
        (
            PushLogSender(sender),
            Self {
                stop: Some(stop),
                task: Some(task),
            },
        )
    }

    /// Writes what is queued and stops the task.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<PushLogRecord>,
    mut stopped: oneshot::Receiver<()>,
    flush: Duration,
    retention_ms: i64,
    clock: crate::clock::SharedClock,
) {
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut batch = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stopped => true,
        };
        loop {
            while batch.len() < MAX_WRITE_BATCH {
                match receiver.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            if let Err(error) = store.append_push_log(&batch).await {
                tracing::warn!(error = %error, entries = batch.len(), "push log batch not written");
            }
            batch.clear();
        }
        if stopping {
            return;
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_PERIOD) {
            last_prune = Some(tokio::time::Instant::now());
            let before = clock.now_ms().saturating_sub(retention_ms);
            match store.prune_push_log(before).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "expired push log entries pruned"),
                Err(error) => tracing::warn!(error = %error, "pruning the push log failed"),
            }
        }
    }
}
