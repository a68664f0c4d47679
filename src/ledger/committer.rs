//! Group commit: one durable store write for many movements of many SKUs.
//!
//! SKU actors send [`CommitRequest`]s into one bounded queue (the bound is the ledger's
//! back-pressure). A single task takes everything queued (up to the batch limit), writes
//! it in one [`CommitBatch`], then answers every caller, raises each actor's durable
//! sequence number, and publishes the newest availability of each changed SKU.
//! After a failed write the committer is poisoned: every later request fails, so a SKU's
//! log can never have a gap.

use super::{Ack, LedgerError};
use crate::domain::{AvailabilityChange, AvailabilitySink};
use crate::store::{
    CommitBatch, EventRecord, HoldExpiryRecord, OffsetWatermark, ReservationRecord, SnapshotRecord,
    Store,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Requests queued in front of the committer before SKU actors wait (back-pressure).
const QUEUE_CAPACITY: usize = 65_536;

/// One movement (or a wait-only marker) on its way to durability.
pub(crate) struct CommitRequest {
    pub(crate) event: Option<EventRecord>,
    pub(crate) snapshot: Option<SnapshotRecord>,
    pub(crate) origin: Option<OffsetWatermark>,
    pub(crate) reply: Option<oneshot::Sender<Result<Ack, LedgerError>>>,
    pub(crate) ack: Ack,
    /// The actor's durable watermark and the seq this request makes durable.
    pub(crate) durable: Option<(Arc<AtomicU64>, u64)>,
    pub(crate) availability: Option<AvailabilityChange>,
    pub(crate) source: String,
    pub(crate) kind: &'static str,
    pub(crate) oversold: bool,
    /// The SKU's new earliest TTL-hold expiry, when this event changed it (reaper).
    pub(crate) hold_expiry: Option<HoldExpiryRecord>,
    /// A reservation request (or its refusal) to record (`reservations`).
    pub(crate) reservation: Option<ReservationRecord>,
}

impl CommitRequest {
    /// A request that writes nothing of its own and answers `ack` once everything queued
    /// before it is durable.
    pub(crate) fn wait(
        ack: Ack,
        origin: Option<OffsetWatermark>,
        reply: oneshot::Sender<Result<Ack, LedgerError>>,
    ) -> Self {
        Self {
            event: None,
            snapshot: None,
            origin,
            reply: Some(reply),
            ack,
            durable: None,
            availability: None,
            source: String::new(),
            kind: "",
            oversold: false,
            hold_expiry: None,
            reservation: None,
        }
    }
}

/// Handle to the committer task.
pub(crate) struct Committer {
    sender: mpsc::Sender<CommitRequest>,
    healthy: Arc<AtomicBool>,
}

impl Committer {
    /// Starts the committer task on the current tokio runtime.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        sink: Arc<dyn AvailabilitySink>,
        max_batch: usize,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let healthy = Arc::new(AtomicBool::new(true));
        tokio::spawn(run(
            store,
            sink,
            receiver,
            max_batch.max(1),
            healthy.clone(),
        ));
        Self { sender, healthy }
    }

    /// Queues a request; waits only when the queue is full.
    pub(crate) async fn send(&self, request: CommitRequest) {
        if let Err(mpsc::error::SendError(request)) = self.sender.send(request).await
            && let Some(reply) = request.reply
        {
            let _ = reply.send(Err(LedgerError::Unavailable(
                "committer stopped".to_owned(),
            )));
        }
    }

    /// Waits until everything queued so far is durable.
    pub(crate) async fn flush(&self) {
        let (reply, receiver) = oneshot::channel();
        self.send(CommitRequest::wait(Ack::Duplicate { seq: 0 }, None, reply))
            .await;
        let _ = receiver.await;
    }

    /// False once a write has failed.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

async fn run(
    store: Arc<dyn Store>,
    sink: Arc<dyn AvailabilitySink>,
    mut receiver: mpsc::Receiver<CommitRequest>,
    max_batch: usize,
    healthy: Arc<AtomicBool>,
) {
    let mut requests: Vec<CommitRequest> = Vec::with_capacity(max_batch);
    let mut poisoned: Option<String> = None;
    while receiver.recv_many(&mut requests, max_batch).await > 0 {
        let mut batch = CommitBatch::default();
        let mut offsets: HashMap<(String, String, i32), i64> = HashMap::new();
        for request in &mut requests {
            if let Some(event) = request.event.take() {
                batch.events.push(event);
            }
            if let Some(snapshot) = request.snapshot.take() {
                batch.snapshots.push(snapshot);
            }
            if let Some(expiry) = request.hold_expiry.take() {
                batch.hold_expiries.push(expiry);
            }
            if let Some(reservation) = request.reservation.take() {
                batch.reservations.push(reservation);
            }
            if let Some(origin) = request.origin.take() {
                let key = (origin.group, origin.topic, origin.partition);
                let next = offsets.entry(key).or_insert(origin.next_offset);
                *next = (*next).max(origin.next_offset);
            }
        }
        batch.offsets = offsets
            .into_iter()
            .map(|((group, topic, partition), next_offset)| OffsetWatermark {
                group,
                topic,
                partition,
                next_offset,
            })
            .collect();
        let event_count = batch.events.len();
        let outcome = match &poisoned {
            Some(reason) => Err(LedgerError::Store(format!("store is poisoned: {reason}"))),
            None if batch.is_empty() => Ok(()),
            None => {
                let started = Instant::now();
                let result = store.commit(batch).await;
                metrics::histogram!(crate::telemetry::STORE_COMMIT_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!(crate::telemetry::STORE_COMMIT_BATCH_EVENTS)
                    .record(event_count as f64);
                result.map_err(|error| {
                    tracing::error!(error = %error, events = event_count, "group commit failed; refusing further writes");
                    poisoned = Some(error.to_string());
                    healthy.store(false, Ordering::Release);
                    LedgerError::Store(error.to_string())
                })
            }
        };
        finish(&mut requests, outcome, sink.as_ref());
    }
}

/// Answers every request of a batch and publishes the newest availability per SKU.
fn finish(
    requests: &mut Vec<CommitRequest>,
    outcome: Result<(), LedgerError>,
    sink: &dyn AvailabilitySink,
) {
    let mut latest: HashMap<String, AvailabilityChange> = HashMap::new();
    let mut applied: HashMap<(String, &'static str), u64> = HashMap::new();
    let mut oversells: HashMap<String, u64> = HashMap::new();
    for request in requests.drain(..) {
        let result = match &outcome {
            Ok(()) => {
                if let Some((durable, seq)) = &request.durable {
                    durable.fetch_max(*seq, Ordering::AcqRel);
                    *applied
                        .entry((request.source.clone(), request.kind))
                        .or_default() += 1;
                    if request.oversold {
                        *oversells.entry(request.source.clone()).or_default() += 1;
                    }
                }
                if let Some(change) = request.availability {
                    latest.insert(change.sku.0.clone(), change);
                }
                Ok(request.ack)
            }
            Err(error) => Err(error.clone()),
        };
        if let Some(reply) = request.reply {
            let _ = reply.send(result);
        }
    }
    for ((source, kind), count) in applied {
        metrics::counter!(crate::telemetry::LEDGER_MOVEMENTS_TOTAL, "source" => source, "kind" => kind)
            .increment(count);
    }
    for (source, count) in oversells {
        tracing::warn!(source = %source, count, "sale recorded beyond available stock (oversell)");
        metrics::counter!(crate::telemetry::LEDGER_OVERSELLS_TOTAL, "source" => source)
            .increment(count);
    }
    if !latest.is_empty() {
        let changes: Vec<AvailabilityChange> = latest.into_values().collect();
        sink.publish(&changes);
    }
}
