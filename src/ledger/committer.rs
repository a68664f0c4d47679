//! Group commit: one durable store write for many movements of many SKUs.
//!
//! Shards hand over their [`CommitRequest`]s in batches (one `Vec` per mailbox drain, see
//! `super::actor`) through one bounded queue (the bound is the ledger's back-pressure). A
//! single task takes everything queued (up to the batch limit), writes it in one
//! [`CommitBatch`], then answers every caller, raises each shard's durable ticket, and
//! publishes the newest availability of each changed SKU. Metrics are counted per batch.
//!
//! A failed write is written again, the same batch, with exponential backoff
//! ([`RETRY_INITIAL_MS`] doubling to [`RETRY_MAX_MS`], tokio time) until the store takes
//! it: nothing is answered, and nothing queued behind it is written, before it is durable,
//! so a SKU's log never has a gap and no caller is told "durable" early. Meanwhile the
//! committer reports itself down with the store's error ([`Committer::down_reason`]):
//! ingest pauses (Kafka pauses its partitions, REST answers 503, `/readyz` 503), the
//! queue in front of the committer fills and shards wait, and everything resumes by itself
//! once a write succeeds.
//!
//! Several instances (`super::ownership`): every write carries the fence of each partition
//! it touches. A request whose partition is no longer held is answered `NotOwner` before
//! the write. When the store refuses a write as stale (`StoreError::Fenced`), retrying it
//! could never succeed: the committer drops every fence no longer held at the batch's
//! epoch, answers exactly those fences' requests `NotOwner` and removes exactly their
//! records and Kafka offsets (indexes into the batch's fences as built, one snapshot of the
//! ownership), and writes the rest at once.

use super::ownership::OwnershipHandle;
use super::{Ack, LedgerError};
use crate::domain::{AvailabilityChange, AvailabilitySink};
use crate::store::{
    CommitBatch, EventRecord, HoldExpiryRecord, OffsetWatermark, ReservationRecord, SnapshotRecord,
    Store,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Batches queued in front of the committer before shards wait (back-pressure). A batch
/// holds at most one shard drain (`super::actor::MAX_DRAIN` requests), so this bounds the
/// queued requests too.
const QUEUE_CAPACITY: usize = 256;

/// First wait before a failed group commit is written again, in milliseconds.
pub(crate) const RETRY_INITIAL_MS: u64 = 50;
/// Longest wait between two attempts at a failed group commit, in milliseconds.
pub(crate) const RETRY_MAX_MS: u64 = 5_000;

/// Whether the store takes writes, as the committer last saw it.
#[derive(Default)]
struct Health {
    /// True while the last write failed (read on every REST request: one atomic load).
    down: AtomicBool,
    /// The store's error of the last failed write, while down.
    reason: Mutex<Option<String>>,
}

impl Health {
    fn set_down(&self, reason: String) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        if !self.down.swap(true, Ordering::AcqRel) {
            metrics::gauge!(crate::telemetry::LEDGER_WRITES_PAUSED).set(1.0);
        }
    }

    fn set_up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = None;
            metrics::gauge!(crate::telemetry::LEDGER_WRITES_PAUSED).set(0.0);
        }
    }
}

/// Requests from one sender, in order, with the shard ticket they make durable.
pub(crate) struct Handover {
    /// The requests, in the order their events must be written.
    pub(crate) requests: Vec<CommitRequest>,
    /// `(shard index, ticket)`: once written, the shard's durable ticket is raised to this.
    pub(crate) ticket: Option<(usize, u64)>,
}

/// One movement (or a wait-only marker) on its way to durability.
pub(crate) struct CommitRequest {
    pub(crate) event: Option<EventRecord>,
    pub(crate) snapshot: Option<SnapshotRecord>,
    pub(crate) origin: Option<OffsetWatermark>,
    pub(crate) reply: Option<oneshot::Sender<Result<Ack, LedgerError>>>,
    pub(crate) ack: Ack,
    pub(crate) availability: Option<AvailabilityChange>,
    /// The movement's source as a metric label (`labels::SourceLabels`).
    pub(crate) source: std::borrow::Cow<'static, str>,
    pub(crate) kind: &'static str,
    pub(crate) oversold: bool,
    /// The SKU's new earliest TTL-hold expiry, when this event changed it (reaper).
    pub(crate) hold_expiry: Option<HoldExpiryRecord>,
    /// A reservation request (or its refusal) to record (`reservations`).
    pub(crate) reservation: Option<ReservationRecord>,
    /// The event's outcome when it is not plain `applied` (issue 9 §2b).
    pub(crate) outcome: Option<crate::store::EventOutcomeRecord>,
    /// Parked movements the event expired (dead letters).
    pub(crate) dead_letters: Vec<crate::store::DeadLetterRecord>,
    /// The SKU of a request that writes no record of its own but raises a Kafka offset (a
    /// duplicate's answer): with several instances it is fenced by this SKU's partition, so
    /// no offset is raised under a partition this instance no longer holds.
    pub(crate) sku: Option<Box<str>>,
}

impl CommitRequest {
    /// Names the SKU a wait-only request answers for (see [`CommitRequest::sku`]).
    pub(crate) fn for_sku(mut self, sku: &str) -> Self {
        self.sku = Some(sku.into());
        self
    }

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
            availability: None,
            source: std::borrow::Cow::Borrowed(""),
            kind: "",
            oversold: false,
            hold_expiry: None,
            reservation: None,
            outcome: None,
            dead_letters: Vec::new(),
            sku: None,
        }
    }
}

/// Handle to the committer task.
pub(crate) struct Committer {
    sender: mpsc::Sender<Handover>,
    health: Arc<Health>,
}

impl Committer {
    /// Starts the committer task on the current tokio runtime.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        sink: Arc<dyn AvailabilitySink>,
        max_batch: usize,
        durable_tickets: Arc<[AtomicU64]>,
        fences: Vec<crate::store::Fence>,
        ownership: Option<OwnershipHandle>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let health = Arc::new(Health::default());
        tokio::spawn(run(
            store,
            sink,
            receiver,
            Fencing {
                max_batch: max_batch.max(1),
                fences,
                ownership,
            },
            health.clone(),
            durable_tickets,
        ));
        Self { sender, health }
    }

    /// Queues a request; waits only when the queue is full.
    pub(crate) async fn send(&self, request: CommitRequest) {
        self.send_batch(Handover {
            requests: vec![request],
            ticket: None,
        })
        .await;
    }

    /// Queues a shard's batch; waits only when the queue is full.
    pub(crate) async fn send_batch(&self, handover: Handover) {
        if let Err(mpsc::error::SendError(handover)) = self.sender.send(handover).await {
            for request in handover.requests {
                if let Some(reply) = request.reply {
                    let _ = reply.send(Err(LedgerError::Unavailable(
                        "committer stopped".to_owned(),
                    )));
                }
            }
        }
    }

    /// Waits until everything queued so far is durable.
    pub(crate) async fn flush(&self) {
        let (reply, receiver) = oneshot::channel();
        self.send(CommitRequest::wait(Ack::Duplicate { seq: 0 }, None, reply))
            .await;
        let _ = receiver.await;
    }

    /// False while the last group commit failed (it is being written again).
    pub(crate) fn is_healthy(&self) -> bool {
        !self.health.down.load(Ordering::Acquire)
    }

    /// The store's error while the last group commit failed; `None` while writes succeed.
    pub(crate) fn down_reason(&self) -> Option<String> {
        if self.is_healthy() {
            return None;
        }
        self.health
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How the committer batches and fences its writes.
struct Fencing {
    /// Most requests taken into one write (whole handovers only).
    max_batch: usize,
    /// Fences every write carries (the whole-store claim of a single instance).
    fences: Vec<crate::store::Fence>,
    /// Several instances: the per-SKU fences (see `super::ownership`).
    ownership: Option<OwnershipHandle>,
}

async fn run(
    store: Arc<dyn Store>,
    sink: Arc<dyn AvailabilitySink>,
    mut receiver: mpsc::Receiver<Handover>,
    fencing: Fencing,
    health: Arc<Health>,
    durable_tickets: Arc<[AtomicU64]>,
) {
    let max_batch = fencing.max_batch;
    let mut handovers: Vec<Handover> = Vec::new();
    let mut requests: Vec<CommitRequest> = Vec::new();
    let mut tickets: Vec<(usize, u64)> = Vec::new();
    while let Some(first) = receiver.recv().await {
        handovers.push(first);
        // Take more of what is queued, whole handovers only, while under the batch limit.
        let mut queued = handovers[0].requests.len();
        while queued < max_batch {
            match receiver.try_recv() {
                Ok(next) => {
                    queued += next.requests.len();
                    handovers.push(next);
                }
                Err(_) => break,
            }
        }
        for handover in handovers.drain(..) {
            if let Some(ticket) = handover.ticket {
                tickets.push(ticket);
            }
            if requests.is_empty() {
                requests = handover.requests;
            } else {
                requests.extend(handover.requests);
            }
        }
        let mut batch = CommitBatch {
            fences: fencing.fences.clone(),
            ..CommitBatch::default()
        };
        // Several instances: each request's fence scope (an index into `batch.fences`);
        // requests whose SKU is no longer held here are answered and left out.
        let mut fenced = match &fencing.ownership {
            Some(ownership) => fence_requests(&mut requests, ownership, &mut batch.fences),
            None => FencedRequests::default(),
        };
        batch.sku_fences = fenced.sku_fences();
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
            if let Some(outcome) = request.outcome.take() {
                batch.outcomes.push(outcome);
            }
            batch.dead_letters.append(&mut request.dead_letters);
        }
        batch.offsets = offsets_of(&requests);
        let outcome = loop {
            match write(
                store.as_ref(),
                batch,
                &health,
                &receiver,
                fencing.ownership.is_some(),
            )
            .await
            {
                Ok(()) => break Ok(()),
                Err(WriteFailure::Stopped(error)) => break Err(error),
                Err(WriteFailure::Fenced {
                    scope,
                    batch: refused,
                }) => {
                    let Some(ownership) = &fencing.ownership else {
                        unreachable!("only a write with per-SKU fences stops at a fence");
                    };
                    batch = refence(*refused, &scope, &mut requests, &mut fenced, ownership);
                }
            }
        };
        if outcome.is_ok() {
            for (shard, ticket) in tickets.drain(..) {
                if let Some(durable) = durable_tickets.get(shard) {
                    durable.fetch_max(ticket, Ordering::AcqRel);
                }
            }
        }
        tickets.clear();
        finish(&mut requests, outcome, sink.as_ref());
    }
}

/// The SKU a request writes records of (none for a wait-only marker).
fn request_sku(request: &CommitRequest) -> Option<&str> {
    request
        .event
        .as_ref()
        .map(|event| event.sku.as_str())
        .or_else(|| {
            request
                .snapshot
                .as_ref()
                .map(|snapshot| snapshot.sku.as_str())
        })
        .or_else(|| {
            request
                .hold_expiry
                .as_ref()
                .map(|expiry| expiry.sku.as_str())
        })
        .or_else(|| request.outcome.as_ref().map(|outcome| outcome.sku.as_str()))
        .or_else(|| {
            request
                .availability
                .as_ref()
                .map(|change| change.sku.as_str())
        })
        .or(request.sku.as_deref())
}

/// Which fence each request of a batch was written under (several instances).
#[derive(Default)]
struct FencedRequests {
    /// Per request, its index into the batch's fences (`None`: no SKU, or refused).
    scopes: Vec<Option<usize>>,
    /// Per fence of the batch, one SKU written under it (to ask the ownership again).
    samples: Vec<Option<String>>,
    /// Per request, its SKU (the records are moved into the batch, the SKU stays here).
    skus: Vec<Option<Box<str>>>,
    /// The batch's fences as built: `scopes` and `samples` index into this list, which never
    /// shrinks (the fences written are those not `dropped`).
    fences: Vec<crate::store::Fence>,
    /// Per fence, whether a refusal dropped it (with its requests).
    dropped: Vec<bool>,
}

impl FencedRequests {
    /// Per SKU written, the index of its fence among the fences written (those as built
    /// less the dropped ones, in order): [`CommitBatch::sku_fences`]. Empty without
    /// per-SKU fences.
    fn sku_fences(&self) -> HashMap<String, usize> {
        let mut written = 0;
        let positions: Vec<Option<usize>> = self
            .dropped
            .iter()
            .map(|dropped| {
                (!dropped).then(|| {
                    written += 1;
                    written - 1
                })
            })
            .collect();
        self.skus
            .iter()
            .zip(&self.scopes)
            .filter_map(|(sku, index)| {
                let position = positions.get((*index)?).copied().flatten()?;
                Some((sku.as_deref()?.to_owned(), position))
            })
            .collect()
    }
}

/// Adds the fence of every request's SKU to `fences` (once per scope) and records which
/// fence each request is written under. A request whose SKU has no fence any more (its
/// partition left this instance) is answered [`LedgerError::NotOwner`] and emptied, so
/// nothing of it is written.
fn fence_requests(
    requests: &mut [CommitRequest],
    ownership: &OwnershipHandle,
    fences: &mut Vec<crate::store::Fence>,
) -> FencedRequests {
    let mut fenced = FencedRequests {
        scopes: Vec::with_capacity(requests.len()),
        samples: vec![None; fences.len()],
        skus: Vec::with_capacity(requests.len()),
        fences: Vec::new(),
        dropped: Vec::new(),
    };
    for request in requests.iter_mut() {
        let Some(sku) = request_sku(request) else {
            fenced.scopes.push(None);
            fenced.skus.push(None);
            continue;
        };
        fenced.skus.push(Some(sku.into()));
        match ownership.fence(sku) {
            Some(fence) => {
                let index = match fences.iter().position(|known| known.scope == fence.scope) {
                    Some(index) => index,
                    None => {
                        fences.push(fence);
                        fenced.samples.push(Some(sku.to_owned()));
                        fences.len() - 1
                    }
                };
                fenced.scopes.push(Some(index));
            }
            None => {
                let error = not_owner(ownership, sku);
                refuse(request, error);
                fenced.scopes.push(None);
            }
        }
    }
    fenced.fences = fences.clone();
    fenced.dropped = vec![false; fences.len()];
    fenced
}

/// The `NotOwner` answer for `sku` (the ownership's own, with the owner's URL when known).
fn not_owner(ownership: &OwnershipHandle, sku: &str) -> LedgerError {
    match ownership.admit(sku) {
        Err(error @ LedgerError::NotOwner { .. }) => error,
        _ => LedgerError::NotOwner {
            partition: 0,
            owner: None,
        },
    }
}

/// Answers `request` with `error` and empties it: nothing of it is written, counted or
/// published, and its Kafka offset is not raised.
fn refuse(request: &mut CommitRequest, error: LedgerError) {
    metrics::counter!(crate::telemetry::LEDGER_REJECTED_TOTAL, "reason" => "not_owner")
        .increment(1);
    if let Some(reply) = request.reply.take() {
        let _ = reply.send(Err(error));
    }
    request.event = None;
    request.snapshot = None;
    request.hold_expiry = None;
    request.reservation = None;
    request.outcome = None;
    request.dead_letters.clear();
    request.origin = None;
    request.availability = None;
    request.kind = "";
    request.oversold = false;
}

/// The offset watermarks of `requests`: per (group, topic, partition) the highest next
/// offset.
fn offsets_of(requests: &[CommitRequest]) -> Vec<OffsetWatermark> {
    let mut offsets: HashMap<(&str, &str, i32), i64> = HashMap::new();
    for origin in requests
        .iter()
        .filter_map(|request| request.origin.as_ref())
    {
        let next = offsets
            .entry((&origin.group, &origin.topic, origin.partition))
            .or_insert(origin.next_offset);
        *next = (*next).max(origin.next_offset);
    }
    offsets
        .into_iter()
        .map(|((group, topic, partition), next_offset)| OffsetWatermark {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            next_offset,
        })
        .collect()
}

/// After the store refused `batch` because `scope` has a newer owner: tells the ownership,
/// and returns the batch to be written at once without every fence that is stale now — the
/// refused one, and any other this instance no longer holds at the batch's epoch (the
/// coordinator may have dropped partitions meanwhile, before another instance took them) —
/// with the records and offsets of those fences' requests, which are answered
/// [`LedgerError::NotOwner`]. A request is either written whole (records and Kafka offset)
/// or refused whole: an offset is never raised over records left out. Each call removes at
/// least the refused scope, so a batch is refused at most once per scope.
fn refence(
    mut batch: CommitBatch,
    scope: &str,
    requests: &mut [CommitRequest],
    fenced: &mut FencedRequests,
    ownership: &OwnershipHandle,
) -> CommitBatch {
    tracing::warn!(
        scope,
        "the store refused a write: another instance owns this partition now; its SKUs' work here is refused"
    );
    metrics::counter!(crate::telemetry::CLUSTER_FENCED_WRITES_TOTAL).increment(1);
    if let Some(fence) = fenced.fences.iter().find(|fence| fence.scope == scope) {
        ownership.fenced(scope, fence.epoch);
    }
    // Per fence as built (indexes stay stable across refusals): stale now when refused, or
    // no longer held at that epoch; fences dropped by an earlier refusal stay dropped.
    let stale: Vec<bool> = fenced
        .fences
        .iter()
        .enumerate()
        .map(|(index, fence)| {
            fenced.dropped.get(index).copied().unwrap_or(false)
                || fence.scope == scope
                || fenced
                    .samples
                    .get(index)
                    .and_then(Option::as_deref)
                    .is_some_and(|sku| ownership.fence(sku).as_ref() != Some(fence))
        })
        .collect();
    // The SKUs of the requests refused now: their records leave the batch. Decided once,
    // from this snapshot, never by asking the ownership again (it may change meanwhile, and
    // a record must never leave while its request is answered as written).
    let mut refused: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for ((request, index), sku) in requests.iter_mut().zip(&fenced.scopes).zip(&fenced.skus) {
        if let Some(index) = index
            && stale.get(*index).copied().unwrap_or(false)
            && !fenced.dropped.get(*index).copied().unwrap_or(false)
        {
            let error = match sku {
                Some(sku) => not_owner(ownership, sku),
                None => LedgerError::NotOwner {
                    partition: 0,
                    owner: None,
                },
            };
            refuse(request, error);
            if let Some(sku) = sku {
                refused.insert(sku);
            }
        }
    }
    let kept: Vec<crate::store::Fence> = fenced
        .fences
        .iter()
        .zip(&stale)
        .filter(|(_, stale)| !**stale)
        .map(|(fence, _)| fence.clone())
        .collect();
    let keep = |sku: &str| !refused.contains(sku);
    batch.events.retain(|event| keep(&event.sku));
    batch.snapshots.retain(|snapshot| keep(&snapshot.sku));
    batch.hold_expiries.retain(|expiry| keep(&expiry.sku));
    batch.outcomes.retain(|outcome| keep(&outcome.sku));
    batch.dead_letters.retain(|dead| keep(&dead.sku));
    fenced.dropped = stale;
    batch.offsets = offsets_of(requests);
    batch.fences = kept;
    batch.sku_fences = fenced.sku_fences();
    batch
}

/// Why [`write`] gave up on a batch.
enum WriteFailure {
    /// The ledger stopped while the store still failed.
    Stopped(LedgerError),
    /// A per-SKU fence was stale (only with several instances): the batch comes back to be
    /// written without that scope's records.
    Fenced {
        scope: String,
        batch: Box<CommitBatch>,
    },
}

/// Writes `batch`, again and again after failures (backoff doubling from
/// [`RETRY_INITIAL_MS`] to [`RETRY_MAX_MS`]), until the store takes it. Gives up only when
/// the ledger is gone (every sender dropped) while the store still fails, or, with
/// `per_sku_fences`, at once when a fence is stale (retrying could never succeed).
async fn write(
    store: &dyn Store,
    batch: CommitBatch,
    health: &Health,
    receiver: &mpsc::Receiver<Handover>,
    per_sku_fences: bool,
) -> Result<(), WriteFailure> {
    if batch.is_empty() {
        return Ok(());
    }
    let event_count = batch.events.len();
    let batch = Arc::new(batch);
    let mut backoff_ms = RETRY_INITIAL_MS;
    let mut attempts: u64 = 0;
    loop {
        if attempts > 0 {
            crate::store::metered::record_retry(store.backend_name(), "commit");
        }
        let started = Instant::now();
        let result = store.commit_shared(batch.clone()).await;
        metrics::histogram!(crate::telemetry::STORE_COMMIT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        attempts += 1;
        match result {
            Ok(()) => {
                metrics::histogram!(crate::telemetry::STORE_COMMIT_BATCH_EVENTS)
                    .record(event_count as f64);
                if attempts > 1 {
                    tracing::warn!(
                        attempts,
                        events = event_count,
                        "group commit written after the store recovered; ingest resumes"
                    );
                }
                health.set_up();
                return Ok(());
            }
            Err(crate::store::StoreError::Fenced { scope, .. }) if per_sku_fences => {
                let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                return Err(WriteFailure::Fenced {
                    scope,
                    batch: Box::new(batch),
                });
            }
            Err(error) => {
                metrics::counter!(crate::telemetry::STORE_COMMIT_FAILURES_TOTAL).increment(1);
                if attempts == 1 && matches!(error, crate::store::StoreError::Fenced { .. }) {
                    tracing::error!(error = %error, events = event_count, "another instance took this store over: this one writes nothing more (ingest paused); stop it, or restart it to take the store back");
                } else if attempts == 1 {
                    tracing::error!(error = %error, events = event_count, "group commit failed; writing it again until the store takes it, ingest paused");
                } else {
                    tracing::debug!(error = %error, attempts, backoff_ms, "group commit failed again");
                }
                health.set_down(error.to_string());
                if receiver.is_closed() {
                    return Err(WriteFailure::Stopped(LedgerError::Store(format!(
                        "the ledger stopped while the store refused writes: {error}"
                    ))));
                }
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = backoff_ms.saturating_mul(2).min(RETRY_MAX_MS);
            }
        }
    }
}

/// Answers every request of a batch and publishes the newest availability per SKU.
fn finish(
    requests: &mut Vec<CommitRequest>,
    outcome: Result<(), LedgerError>,
    sink: &dyn AvailabilitySink,
) {
    if outcome.is_ok() {
        count_applied(requests);
    }
    // The newest change per SKU: a later request of the same SKU replaces an earlier one.
    let mut latest: HashMap<&str, usize> = HashMap::new();
    for (index, request) in requests.iter().enumerate() {
        if let Some(change) = &request.availability {
            latest.insert(change.sku.as_str(), index);
        }
    }
    let mut newest: Vec<usize> = latest.into_values().collect();
    newest.sort_unstable();
    let mut changes: Vec<AvailabilityChange> = Vec::with_capacity(newest.len());
    let mut next_newest = newest.iter().peekable();
    for (index, request) in requests.drain(..).enumerate() {
        let result = match &outcome {
            Ok(()) => {
                if next_newest.peek() == Some(&&index) {
                    next_newest.next();
                    changes.extend(request.availability);
                }
                Ok(request.ack)
            }
            Err(error) => Err(error.clone()),
        };
        if let Some(reply) = request.reply {
            let _ = reply.send(result);
        }
    }
    if !changes.is_empty() {
        sink.publish(&changes);
    }
}

/// Counts the applied movements of a durable batch per (source, kind), and oversells per
/// source: a few metric updates per batch, none per movement.
fn count_applied(requests: &[CommitRequest]) {
    let mut applied: HashMap<(&str, &'static str), u64> = HashMap::new();
    let mut oversells: HashMap<&str, u64> = HashMap::new();
    for request in requests {
        if request.kind.is_empty() {
            continue;
        }
        *applied
            .entry((request.source.as_ref(), request.kind))
            .or_default() += 1;
        if request.oversold {
            *oversells.entry(request.source.as_ref()).or_default() += 1;
        }
    }
    for ((source, kind), count) in applied {
        metrics::counter!(crate::telemetry::LEDGER_MOVEMENTS_TOTAL, "source" => source.to_owned(), "kind" => kind)
            .increment(count);
    }
    for (source, count) in oversells {
        tracing::warn!(source = %source, count, "sale recorded beyond available stock (oversell)");
        metrics::counter!(crate::telemetry::LEDGER_OVERSELLS_TOTAL, "source" => source.to_owned())
            .increment(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ownership::Ownership;
    use crate::store::Fence;

    /// An ownership whose fences the test sets per SKU.
    #[derive(Default)]
    struct Fences(Mutex<HashMap<String, Fence>>);

    impl Fences {
        fn set(&self, sku: &str, fence: Option<Fence>) {
            let mut fences = self.0.lock().unwrap();
            match fence {
                Some(fence) => fences.insert(sku.to_owned(), fence),
                None => fences.remove(sku),
            };
        }
    }

    impl Ownership for Fences {
        fn admit(&self, _sku: &str) -> Result<(), LedgerError> {
            Ok(())
        }
        fn fence(&self, sku: &str) -> Option<Fence> {
            self.0.lock().unwrap().get(sku).cloned()
        }
        fn fenced(&self, _scope: &str, _epoch: u64) {}
    }

    fn fence(scope: &str, epoch: u64) -> Fence {
        Fence {
            scope: scope.to_owned(),
            epoch,
        }
    }

    fn request(
        sku: &str,
        partition: i32,
        offset: i64,
    ) -> (CommitRequest, oneshot::Receiver<Result<Ack, LedgerError>>) {
        let (reply, receiver) = oneshot::channel();
        let mut request = CommitRequest::wait(
            Ack::Applied { seq: 1 },
            Some(OffsetWatermark {
                group: "g".to_owned(),
                topic: "t".to_owned(),
                partition,
                next_offset: offset,
            }),
            reply,
        );
        request.event = Some(EventRecord {
            sku: sku.to_owned(),
            seq: 1,
            idempotency_key: format!("k-{sku}"),
            key_expires_at_ms: 0,
            recorded_at_ms: 0,
            movement: Vec::new(),
            movement_hash: None,
        });
        (request, receiver)
    }

    /// The loss the three-process test found: a zombie's batch is refused for partition 1
    /// while its coordinator has also dropped partition 2, which nobody took yet. Partition
    /// 2's records must not be left out while its Kafka offset is still written: its
    /// requests are refused whole, and no offset of either partition is raised.
    #[test]
    fn a_refused_batch_drops_every_stale_partition_with_its_offsets() {
        let fences = Arc::new(Fences::default());
        fences.set("A", Some(fence("movements/1", 3)));
        fences.set("B", Some(fence("movements/2", 3)));
        fences.set("C", Some(fence("movements/3", 5)));
        let ownership = OwnershipHandle(fences.clone());
        let mut receivers = Vec::new();
        let mut requests = Vec::new();
        for (sku, partition) in [("A", 1), ("B", 2), ("C", 3)] {
            let (request, receiver) = request(sku, partition, 100 + i64::from(partition));
            requests.push(request);
            receivers.push(receiver);
        }
        // A wait-only duplicate answer of B, carrying an offset of partition 2.
        let (reply, duplicate) = oneshot::channel();
        requests.push(
            CommitRequest::wait(
                Ack::Duplicate { seq: 1 },
                Some(OffsetWatermark {
                    group: "g".to_owned(),
                    topic: "t".to_owned(),
                    partition: 2,
                    next_offset: 200,
                }),
                reply,
            )
            .for_sku("B"),
        );
        receivers.push(duplicate);
        let mut batch = CommitBatch::default();
        let mut fenced = fence_requests(&mut requests, &ownership, &mut batch.fences);
        assert_eq!(batch.fences.len(), 3);
        for request in &mut requests {
            if let Some(event) = request.event.take() {
                batch.events.push(event);
            }
        }
        batch.offsets = offsets_of(&requests);
        // Meanwhile the coordinator dropped partitions 1 and 2; the store refuses 1.
        fences.set("A", None);
        fences.set("B", None);
        let batch = refence(batch, "movements/1", &mut requests, &mut fenced, &ownership);
        assert_eq!(batch.fences, vec![fence("movements/3", 5)]);
        assert_eq!(
            batch
                .events
                .iter()
                .map(|e| e.sku.as_str())
                .collect::<Vec<_>>(),
            vec!["C"]
        );
        assert_eq!(
            batch
                .offsets
                .iter()
                .map(|mark| (mark.partition, mark.next_offset))
                .collect::<Vec<_>>(),
            vec![(3, 103)],
            "no offset of a refused partition is raised"
        );
        for (index, receiver) in receivers.iter_mut().enumerate() {
            let answer = receiver.try_recv();
            if index == 2 {
                assert!(
                    answer.is_err(),
                    "C is still to be written, not answered yet"
                );
            } else {
                assert!(
                    matches!(answer, Ok(Err(LedgerError::NotOwner { .. }))),
                    "request {index}: {answer:?}"
                );
            }
        }
        // A second refusal, of the last fence left: its position in the shrunk list differs
        // from the one it was built at; C must still be the request refused, with its record.
        fences.set("C", None);
        let batch = refence(batch, "movements/3", &mut requests, &mut fenced, &ownership);
        assert!(batch.fences.is_empty());
        assert!(batch.events.is_empty(), "C's record left with its request");
        assert!(batch.offsets.is_empty());
        assert!(matches!(
            receivers[2].try_recv(),
            Ok(Err(LedgerError::NotOwner { .. }))
        ));
    }

    /// A store that stamps rows with an epoch (ScyllaDB) needs each SKU's own fence, not
    /// the batch's: the batch names it per SKU, also after a refusal shrank the fences.
    #[test]
    fn each_sku_of_a_batch_names_its_own_partition_fence_also_after_a_refusal() {
        let fences = Arc::new(Fences::default());
        fences.set("A", Some(fence("movements/1", 3)));
        fences.set("B", Some(fence("movements/2", 7)));
        fences.set("C", Some(fence("movements/3", 5)));
        let ownership = OwnershipHandle(fences.clone());
        let mut requests = Vec::new();
        let mut receivers = Vec::new();
        for (sku, partition) in [("A", 1), ("B", 2), ("C", 3), ("B", 2)] {
            let (request, receiver) = request(sku, partition, 10);
            requests.push(request);
            receivers.push(receiver);
        }
        let mut batch = CommitBatch::default();
        let mut fenced = fence_requests(&mut requests, &ownership, &mut batch.fences);
        batch.sku_fences = fenced.sku_fences();
        for request in &mut requests {
            batch.events.extend(request.event.take());
        }
        assert_eq!(batch.fence_of("A"), Some(&fence("movements/1", 3)));
        assert_eq!(batch.fence_of("B"), Some(&fence("movements/2", 7)));
        assert_eq!(batch.fence_of("C"), Some(&fence("movements/3", 5)));
        assert_eq!(batch.sku_fences.len(), 3);
        fences.set("A", None);
        let batch = refence(batch, "movements/1", &mut requests, &mut fenced, &ownership);
        assert_eq!(batch.fence_of("A"), None, "A left the batch");
        assert_eq!(batch.fence_of("B"), Some(&fence("movements/2", 7)));
        assert_eq!(batch.fence_of("C"), Some(&fence("movements/3", 5)));
    }
}
