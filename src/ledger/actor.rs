//! The shard actor: the single writer of every SKU it hosts.
//!
//! A shard owns `HashMap<Sku, Box<SkuCell>>` of its live SKUs and handles one message at a
//! time (see the module docs of `super` for the execution model). Per SKU it keeps the pure
//! [`SkuState`], a [`KeyFilter`] of unexpired idempotency keys (8 bytes a key), the keys whose
//! events are not yet durable, the ticket of its last queued event, and a buffer for
//! messages that arrive while the SKU loads or while a key is being confirmed in the store.
//!
//! - A message for a SKU not in memory creates a `Loading` cell, buffers the message and
//!   queues the SKU for loading; the first miss of a drain also posts `StartLoads` to the
//!   shard itself, so every SKU missed before it is loaded by one task with one
//!   [`crate::store::Store::load_skus`] call (chunks of [`MAX_LOAD_BATCH`]). The task
//!   replays the SKUs (off the shard) and posts `Loaded` back; the buffered messages then
//!   apply in order. A failed load answers the buffered callers
//!   [`LedgerError::Unavailable`] and drops the cell, so a later message retries.
//! - A movement whose key fingerprint is in the filter is a duplicate if its key is among
//!   the SKU's not-yet-durable keys; otherwise the shard asks the store
//!   ([`crate::store::Store::find_idempotency_key`]) from a task, the SKU's messages waiting
//!   in its buffer meanwhile. Either way a duplicate is answered through the committer, so
//!   only once the original is durable.
//! - Applied events (and duplicate answers) are queued in the shard; the first one of a
//!   drain posts `Flush` to the shard itself, and `Flush` hands everything queued to the
//!   committer as one batch with the next ticket. A SKU is durable when its last ticket is at
//!   most the shard's durable ticket (raised by the committer).
//! - `Sweep` drops idle, durable SKUs with empty buffers (passivation), shrinks the map when
//!   it has shrunk a lot, and gives memory back to the OS (see [`release_memory`]).

use super::committer::{CommitRequest, Handover};
use super::keys::KeyFilter;
use super::{Ack, Core, LedgerError};
use crate::domain::{Movement, Sku, SkuState};
use crate::store::{EventRecord, HoldExpiryRecord, OffsetWatermark, SnapshotRecord};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// Most SKUs in one store load call.
pub(crate) const MAX_LOAD_BATCH: usize = 512;

/// Most requests a shard queues before handing them to the committer without waiting for
/// the end of its drain (bounds one committer batch from one shard).
pub(crate) const MAX_DRAIN: usize = 4_096;

/// A sweep that drops at least this many SKUs gives memory back to the OS.
const RELEASE_AFTER_DROPPED: usize = 1_024;

/// The store's answer for one key: the seq that recorded it and its movement hash, if any.
pub(crate) type KeyAnswer = Result<Option<(u64, Option<u64>)>, LedgerError>;

/// The answer channel of a movement.
pub(crate) type Reply = oneshot::Sender<Result<Ack, LedgerError>>;

/// A movement on its way to its SKU (boxed in [`ShardMessage::Apply`]).
pub(crate) struct ApplyRequest {
    pub(crate) movement: Movement,
    pub(crate) origin: Option<OffsetWatermark>,
    pub(crate) reply: Reply,
}

/// Messages a shard handles. Kept small: large payloads are boxed.
pub(crate) enum ShardMessage {
    /// Apply a movement to its SKU; answer once durable.
    Apply(Box<ApplyRequest>),
    /// Answer with a copy of a SKU's state.
    Read {
        sku: Sku,
        reply: oneshot::Sender<Result<SkuState, LedgerError>>,
    },
    /// Release every hold of the SKU whose TTL has passed (sent by `super::reaper`).
    Reap(Sku),
    /// Load the SKUs queued for loading (posted by the shard to itself).
    StartLoads,
    /// SKUs loaded (or failed) by a load task.
    Loaded(Vec<(Sku, Result<LoadedCell, LedgerError>)>),
    /// The store's answer for a key whose fingerprint was in a SKU's filter: the seq that
    /// recorded it and the movement hash stored with it.
    KeyChecked(Box<(Sku, KeyAnswer)>),
    /// Hand the queued requests to the committer (posted by the shard to itself).
    Flush,
    /// Passivate idle (or, with `force`, all) durable SKUs; answer how many stay.
    Sweep {
        force: bool,
        reply: Option<oneshot::Sender<u64>>,
    },
    /// Drop every SKU `filter` selects, whatever its phase (its partition left this
    /// instance): buffered work is answered `NotOwner`; answer how many were dropped.
    Evict {
        filter: SkuFilter,
        reply: oneshot::Sender<u64>,
    },
}

/// Selects SKUs by name (see [`ShardMessage::Evict`]).
pub(crate) type SkuFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl ShardMessage {
    /// Answers the caller with `error` (used when the message cannot be delivered).
    pub(crate) fn fail(self, error: LedgerError) {
        match self {
            ShardMessage::Apply(request) => {
                let _ = request.reply.send(Err(error));
            }
            ShardMessage::Read { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ShardMessage::Loaded(results) => {
                drop(results);
            }
            ShardMessage::Evict { reply, .. } => {
                let _ = reply.send(0);
            }
            ShardMessage::Reap(_)
            | ShardMessage::StartLoads
            | ShardMessage::KeyChecked(_)
            | ShardMessage::Flush
            | ShardMessage::Sweep { .. } => {}
        }
    }
}

/// Work waiting for (or handed to) one SKU.
enum Work {
    Apply(Box<ApplyRequest>),
    Read(oneshot::Sender<Result<SkuState, LedgerError>>),
    Reap,
}

impl Work {
    fn fail(self, error: LedgerError) {
        match self {
            Work::Apply(request) => {
                let _ = request.reply.send(Err(error));
            }
            Work::Read(reply) => {
                let _ = reply.send(Err(error));
            }
            Work::Reap => {}
        }
    }
}

/// Where a SKU's cell stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its load is in flight; messages wait in the buffer.
    Loading,
    /// A key of the buffer's first movement is being confirmed in the store.
    Checking,
    /// Messages apply at once.
    Ready,
}

/// A SKU as loaded and replayed by a load task.
pub(crate) struct LoadedCell {
    state: SkuState,
    keys: KeyFilter,
    events_since_snapshot: u64,
}

/// A key whose event is queued or being written, not yet known durable.
struct InFlightKey {
    key: String,
    seq: u64,
    ticket: u64,
    /// [`super::keys::movement_hash`] of the movement as submitted.
    hash: u64,
}

/// Forgets the in-flight keys whose ticket is durable; frees the list when it empties.
fn forget_durable_keys(in_flight: &mut Vec<InFlightKey>, durable_ticket: u64) {
    let durable = in_flight.partition_point(|entry| entry.ticket <= durable_ticket);
    if durable == in_flight.len() {
        *in_flight = Vec::new();
    } else if durable > 0 {
        in_flight.drain(..durable);
    }
}

/// One live SKU.
struct SkuCell {
    state: SkuState,
    keys: KeyFilter,
    /// Keys of events not yet known durable, with their seq and shard ticket, oldest
    /// first (entries leave once their ticket is durable).
    in_flight: Vec<InFlightKey>,
    buffer: VecDeque<Work>,
    phase: Phase,
    /// The shard ticket of its last queued event (0: none).
    last_ticket: u64,
    last_activity_ms: i64,
    events_since_snapshot: u64,
    /// Earliest expiry among open holds with a TTL, as last reported to the reaper.
    next_hold_expiry_ms: Option<i64>,
}

impl SkuCell {
    fn loading(sku: Sku, now_ms: i64) -> Self {
        Self {
            state: SkuState::new(sku),
            keys: KeyFilter::default(),
            in_flight: Vec::new(),
            buffer: VecDeque::new(),
            phase: Phase::Loading,
            last_ticket: 0,
            last_activity_ms: now_ms,
            events_since_snapshot: 0,
            next_hold_expiry_ms: None,
        }
    }
}

/// The actor behaviour (stateless; the state lives in [`Shard`]).
pub(crate) struct ShardActor;

/// Startup arguments of a shard.
pub(crate) struct ShardArgs {
    pub(crate) core: Arc<Core>,
    pub(crate) index: usize,
    /// The ticket of the shard's first batch: 1, or after the durable ticket of the shard
    /// it replaces (see `super::supervisor`).
    pub(crate) first_ticket: u64,
}

/// A shard's state.
pub(crate) struct Shard {
    core: Arc<Core>,
    index: usize,
    cells: HashMap<Sku, Box<SkuCell>>,
    /// SKUs waiting for `StartLoads`.
    to_load: Vec<Sku>,
    /// Requests waiting for `Flush`.
    queued: Vec<CommitRequest>,
    /// Indexes into `queued` of events that changed stock levels.
    changed: Vec<usize>,
    /// The ticket the next `Flush` hands over (tickets start at 1).
    next_ticket: u64,
    flush_posted: bool,
}

/// Rebuilds a SKU's state from its snapshot and later events.
pub(crate) fn replay(
    sku: &Sku,
    loaded: &crate::store::LoadedSku,
    closed_line_retention_ms: i64,
    parked_ttl_ms: i64,
) -> Result<SkuState, crate::store::StoreError> {
    let context = crate::domain::ApplyContext {
        closed_line_retention_ms,
        parked_ttl_ms,
        ..crate::domain::ApplyContext::replay()
    };
    let corrupt = |message: String| crate::store::StoreError::Corrupt {
        sku: sku.to_string(),
        message,
    };
    let mut state = match &loaded.snapshot {
        Some(snapshot) => snapshot.state()?,
        None => SkuState::new(sku.clone()),
    };
    for event in &loaded.events_after {
        let movement: Movement = event.movement()?;
        if event.seq != state.seq + 1 {
            return Err(corrupt(format!(
                "gap in event log: state at {} but next event is {}",
                state.seq, event.seq
            )));
        }
        state
            .apply_with(&movement, event.seq, &context)
            .map_err(|e| corrupt(format!("event {} no longer applies: {e}", event.seq)))?;
    }
    Ok(state)
}

impl Actor for ShardActor {
    type Msg = ShardMessage;
    type State = Shard;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ShardArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Shard {
            core: args.core,
            index: args.index,
            cells: HashMap::new(),
            to_load: Vec::new(),
            queued: Vec::new(),
            changed: Vec::new(),
            next_ticket: args.first_ticket.max(1),
            flush_posted: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        shard: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMessage::Apply(request) => {
                shard.core.mailbox_movements[shard.index].fetch_sub(1, Ordering::AcqRel);
                let sku = request.movement.sku.clone();
                shard.route(&myself, sku, Work::Apply(request));
            }
            ShardMessage::Read { sku, reply } => shard.route(&myself, sku, Work::Read(reply)),
            ShardMessage::Reap(sku) => shard.route(&myself, sku, Work::Reap),
            ShardMessage::StartLoads => shard.start_loads(&myself),
            ShardMessage::Loaded(results) => shard.loaded(&myself, results),
            ShardMessage::KeyChecked(checked) => {
                let (sku, result) = *checked;
                shard.key_checked(&myself, sku, result);
            }
            ShardMessage::Flush => shard.flush().await,
            ShardMessage::Sweep { force, reply } => {
                let remaining = shard.sweep(force);
                if let Some(reply) = reply {
                    let _ = reply.send(remaining);
                }
            }
            ShardMessage::Evict { filter, reply } => {
                let _ = reply.send(shard.evict(filter.as_ref()));
            }
        }
        if shard.queued.len() >= MAX_DRAIN {
            shard.flush().await;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        shard: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Hand over what was applied, so its callers are answered (or told the committer
        // stopped); buffered work is answered unavailable when dropped.
        shard.flush().await;
        let dropped = shard.cells.len() as u64;
        shard
            .core
            .count_live(shard.index, -i64::try_from(dropped).unwrap_or(i64::MAX));
        Ok(())
    }
}

impl Shard {
    fn durable_ticket(&self) -> u64 {
        self.core.durable_tickets[self.index].load(Ordering::Acquire)
    }

    /// Runs `work` on `sku` now, or buffers it while the SKU loads or confirms a key.
    /// With several instances, work for a SKU this instance may not start is answered
    /// `NotOwner`, and a read of such a SKU not in memory replays it from the store without
    /// keeping it (see `super::ownership`).
    fn route(&mut self, myself: &ActorRef<ShardMessage>, sku: Sku, work: Work) {
        if let Some(ownership) = &self.core.options.ownership
            && let Err(error) = ownership.admit(sku.as_str())
        {
            match work {
                Work::Read(reply) if !self.cells.contains_key(&sku) => {
                    let core = self.core.clone();
                    tokio::spawn(async move {
                        let answer = load_cells(&core, vec![sku])
                            .await
                            .pop()
                            .map(|(_, loaded)| loaded.map(|cell| cell.state))
                            .unwrap_or_else(|| {
                                Err(LedgerError::Unavailable("nothing loaded".to_owned()))
                            });
                        let _ = reply.send(answer);
                    });
                    return;
                }
                Work::Read(_) => {}
                work => {
                    work.fail(error);
                    return;
                }
            }
        }
        let now_ms = self.core.now_ms();
        match self.cells.get_mut(&sku) {
            Some(cell) if cell.phase == Phase::Ready => {
                cell.last_activity_ms = now_ms;
                run(
                    &self.core,
                    myself,
                    cell,
                    work,
                    now_ms,
                    &mut Outbox {
                        queued: &mut self.queued,
                        changed: &mut self.changed,
                        ticket: self.next_ticket,
                        durable: self.core.durable_tickets[self.index].load(Ordering::Acquire),
                        flush_posted: &mut self.flush_posted,
                        shard: self.index,
                    },
                    false,
                );
            }
            Some(cell) if cell.buffer.len() >= self.core.options.max_buffered_per_sku => {
                metrics::counter!(crate::telemetry::LEDGER_REJECTED_TOTAL, "reason" => "overloaded")
                    .increment(1);
                work.fail(LedgerError::Overloaded(format!(
                    "{} messages already wait for {sku}",
                    cell.buffer.len()
                )));
            }
            Some(cell) => cell.buffer.push_back(work),
            None => {
                let mut cell = Box::new(SkuCell::loading(sku.clone(), now_ms));
                cell.buffer.push_back(work);
                self.cells.insert(sku.clone(), cell);
                self.core.count_live(self.index, 1);
                if self.to_load.is_empty() {
                    let _ = myself.send_message(ShardMessage::StartLoads);
                }
                self.to_load.push(sku);
            }
        }
    }

    /// Starts load tasks for every SKU queued for loading.
    fn start_loads(&mut self, myself: &ActorRef<ShardMessage>) {
        let skus = std::mem::take(&mut self.to_load);
        for chunk in skus.chunks(MAX_LOAD_BATCH) {
            let chunk = chunk.to_vec();
            let core = self.core.clone();
            let myself = myself.clone();
            tokio::spawn(async move {
                let results = load_cells(&core, chunk).await;
                if let Err(ractor::MessagingErr::SendErr(returned)) =
                    myself.send_message(ShardMessage::Loaded(results))
                {
                    returned.fail(LedgerError::Unavailable("shard stopped".to_owned()));
                }
            });
        }
    }

    /// Installs loaded SKUs and runs their buffered work; fails the work of SKUs whose load
    /// failed and forgets them.
    fn loaded(
        &mut self,
        myself: &ActorRef<ShardMessage>,
        results: Vec<(Sku, Result<LoadedCell, LedgerError>)>,
    ) {
        for (sku, result) in results {
            let Some(cell) = self.cells.get_mut(&sku) else {
                continue;
            };
            match result {
                Ok(loaded) => {
                    cell.state = loaded.state;
                    cell.keys = loaded.keys;
                    cell.events_since_snapshot = loaded.events_since_snapshot;
                    cell.next_hold_expiry_ms = super::reaper::next_wake_ms(
                        &cell.state,
                        self.core.options.rules.get().stock.parked_ttl(),
                    );
                    if cell.next_hold_expiry_ms.is_some() {
                        self.core.reaper.set(&sku, cell.next_hold_expiry_ms);
                    }
                    cell.phase = Phase::Ready;
                    self.drain(myself, &sku);
                }
                Err(error) => {
                    if let Some(cell) = self.cells.remove(&sku) {
                        self.core.count_live(self.index, -1);
                        for work in cell.buffer {
                            work.fail(error.clone());
                        }
                    }
                }
            }
        }
        self.core.publish_live_gauge();
    }

    /// The store answered for the key of the first buffered movement of `sku`.
    fn key_checked(&mut self, myself: &ActorRef<ShardMessage>, sku: Sku, result: KeyAnswer) {
        let now_ms = self.core.now_ms();
        let durable = self.durable_ticket();
        let Some(cell) = self.cells.get_mut(&sku) else {
            return;
        };
        cell.phase = Phase::Ready;
        let Some(work) = cell.buffer.pop_front() else {
            return;
        };
        let mut outbox = Outbox {
            queued: &mut self.queued,
            changed: &mut self.changed,
            ticket: self.next_ticket,
            durable,
            flush_posted: &mut self.flush_posted,
            shard: self.index,
        };
        match (result, work) {
            (Ok(Some((seq, Some(stored)))), Work::Apply(request))
                if stored != super::keys::movement_hash(&request.movement) =>
            {
                answer_conflict(*request, seq);
            }
            (Ok(Some((seq, _))), Work::Apply(request)) => {
                answer_duplicate(
                    myself,
                    &mut outbox,
                    *request,
                    seq,
                    &self.core.options.metric_sources,
                );
            }
            (Ok(None), work) => run(&self.core, myself, cell, work, now_ms, &mut outbox, true),
            (Err(error), work) => work.fail(error),
            (Ok(Some(_)), work) => run(&self.core, myself, cell, work, now_ms, &mut outbox, true),
        }
        self.drain(myself, &sku);
    }

    /// Runs buffered work of `sku` while it is ready.
    fn drain(&mut self, myself: &ActorRef<ShardMessage>, sku: &Sku) {
        let now_ms = self.core.now_ms();
        let durable = self.durable_ticket();
        let Some(cell) = self.cells.get_mut(sku) else {
            return;
        };
        let mut outbox = Outbox {
            queued: &mut self.queued,
            changed: &mut self.changed,
            ticket: self.next_ticket,
            durable,
            flush_posted: &mut self.flush_posted,
            shard: self.index,
        };
        while cell.phase == Phase::Ready {
            let Some(work) = cell.buffer.pop_front() else {
                break;
            };
            run(&self.core, myself, cell, work, now_ms, &mut outbox, false);
        }
        if cell.buffer.is_empty() && cell.buffer.capacity() > 0 && cell.phase == Phase::Ready {
            cell.buffer = VecDeque::new();
        }
    }

    /// Hands everything queued to the committer as one batch with the next ticket. The
    /// newest availability of each changed SKU is computed here, once per SKU and batch.
    async fn flush(&mut self) {
        self.flush_posted = false;
        if self.queued.is_empty() {
            return;
        }
        let mut requests = std::mem::take(&mut self.queued);
        let mut seen: HashSet<&str> = HashSet::new();
        let mut newest: Vec<usize> = Vec::new();
        for &index in self.changed.iter().rev() {
            if let Some(event) = &requests[index].event
                && seen.insert(event.sku.as_str())
            {
                newest.push(index);
            }
        }
        drop(seen);
        for index in newest {
            let change = requests[index].event.as_ref().and_then(|event| {
                self.cells
                    .get(&Sku(event.sku.clone()))
                    .map(|cell| cell.state.availability())
            });
            requests[index].availability = change;
        }
        self.changed.clear();
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.core
            .committer
            .send_batch(Handover {
                requests,
                ticket: Some((self.index, ticket)),
            })
            .await;
    }

    /// Drops every SKU `filter` selects, in any phase: their buffered work is answered
    /// `NotOwner`, the reaper forgets them, and a load in flight for one of them is ignored
    /// when it lands. Requests already queued for the committer stay queued (the committer
    /// refuses them if the SKU's partition is gone). Returns how many SKUs were dropped.
    fn evict(&mut self, filter: &(dyn Fn(&str) -> bool + Send + Sync)) -> u64 {
        let before = self.cells.len();
        let mut evicted: Vec<(Sku, Box<SkuCell>)> = Vec::new();
        self.cells.retain(|sku, cell| {
            if filter(sku.as_str()) {
                evicted.push((
                    sku.clone(),
                    std::mem::replace(cell, Box::new(SkuCell::loading(sku.clone(), 0))),
                ));
                false
            } else {
                true
            }
        });
        self.to_load.retain(|sku| !filter(sku.as_str()));
        for (sku, cell) in evicted {
            self.core.reaper.set(&sku, None);
            let error = match &self.core.options.ownership {
                Some(ownership) => ownership.admit(sku.as_str()).err(),
                None => None,
            }
            .unwrap_or(LedgerError::NotOwner {
                partition: 0,
                owner: None,
            });
            for work in cell.buffer {
                work.fail(error.clone());
            }
        }
        let dropped = before - self.cells.len();
        if dropped > 0 {
            self.core
                .count_live(self.index, -i64::try_from(dropped).unwrap_or(i64::MAX));
            self.core.publish_live_gauge();
        }
        dropped as u64
    }

    /// Drops idle (or all, with `force`) durable SKUs with nothing buffered; returns how
    /// many SKUs stay in memory.
    fn sweep(&mut self, force: bool) -> u64 {
        let now_ms = self.core.now_ms();
        let idle_ms = i64::try_from(self.core.options.idle_passivate_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let durable = self.durable_ticket();
        let scheme = self.core.key_scheme;
        let before = self.cells.len();
        self.cells.retain(|_, cell| {
            let is_durable = cell.last_ticket <= durable;
            let idle = force || now_ms.saturating_sub(cell.last_activity_ms) >= idle_ms;
            let keep =
                !is_durable || !idle || cell.phase != Phase::Ready || !cell.buffer.is_empty();
            if keep && !cell.in_flight.is_empty() {
                forget_durable_keys(&mut cell.in_flight, durable);
                if cell.in_flight.is_empty() {
                    cell.keys.prune(&scheme, now_ms);
                }
            }
            keep
        });
        let dropped = before - self.cells.len();
        if dropped > 0 {
            self.core
                .count_live(self.index, -i64::try_from(dropped).unwrap_or(i64::MAX));
            metrics::counter!(crate::telemetry::LEDGER_PASSIVATIONS_TOTAL)
                .increment(dropped as u64);
            self.core.publish_live_gauge();
            if self.cells.capacity() > self.cells.len().saturating_mul(4).max(64) {
                self.cells.shrink_to_fit();
            }
            if self.to_load.capacity() > 1_024 && self.to_load.is_empty() {
                self.to_load = Vec::new();
            }
            if dropped >= RELEASE_AFTER_DROPPED {
                release_memory();
                // The store's page cache held the dropped SKUs' pages too.
                let store = self.core.store.clone();
                tokio::spawn(async move { store.release_memory().await });
            }
        }
        self.cells.len() as u64
    }
}

/// Gives freed memory back to the OS after a sweep dropped many SKUs.
///
/// The binary allocates with mimalloc, which keeps freed pages in its per-thread heaps for
/// reuse; memory freed on one thread but allocated on another (a SKU loaded by a task on
/// one worker and dropped by its shard on another) waits in the allocating thread's
/// delayed-free list until that thread allocates again. After passivating many SKUs nothing
/// may allocate there for a long time, so resident memory stayed near its peak.
/// `mi_collect(true)` frees the delayed blocks of the calling thread's heap, returns every
/// empty page and segment it can, and purges (decommits) the free memory of the process's
/// segments now instead of after mimalloc's purge delay. It costs a walk over the heap, so it
/// runs only after a sweep that dropped at least [`RELEASE_AFTER_DROPPED`] SKUs (on the
/// shard's thread, which freed them). Under another global allocator (tests) it only
/// touches mimalloc's own, empty heap.
fn release_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Where applied work goes: the shard's queue for the committer.
struct Outbox<'a> {
    queued: &'a mut Vec<CommitRequest>,
    changed: &'a mut Vec<usize>,
    /// The ticket of the batch being queued.
    ticket: u64,
    /// The shard's durable ticket when the work started.
    durable: u64,
    flush_posted: &'a mut bool,
    /// The shard's index (for the poison watch).
    shard: usize,
}

impl Outbox<'_> {
    fn push(&mut self, myself: &ActorRef<ShardMessage>, request: CommitRequest) {
        self.queued.push(request);
        if !*self.flush_posted {
            *self.flush_posted = true;
            let _ = myself.send_message(ShardMessage::Flush);
        }
    }
}

/// Answers a duplicate once everything queued before it is durable; its offset is still
/// recorded so a redelivered partition moves on.
fn answer_duplicate(
    myself: &ActorRef<ShardMessage>,
    outbox: &mut Outbox<'_>,
    request: ApplyRequest,
    seq: u64,
    labels: &super::labels::SourceLabels,
) {
    metrics::counter!(crate::telemetry::LEDGER_DEDUPE_HITS_TOTAL, "source" => labels.label_owned(request.movement.source))
        .increment(1);
    outbox.push(
        myself,
        CommitRequest::wait(Ack::Duplicate { seq }, request.origin, request.reply)
            .for_sku(request.movement.sku.as_str()),
    );
}

/// Refuses a movement whose key was recorded (as event `seq`) for another movement of the
/// SKU; nothing is recorded, so the answer need not wait for durability.
fn answer_conflict(request: ApplyRequest, seq: u64) {
    metrics::counter!(crate::telemetry::LEDGER_REJECTED_TOTAL, "reason" => "idempotency_key_conflict")
        .increment(1);
    let _ = request.reply.send(Err(LedgerError::Rejected(
        crate::domain::ApplyError::IdempotencyConflict {
            key: request.movement.idempotency_key,
            seq,
        },
    )));
}

/// Runs one piece of work on a ready SKU. `key_confirmed_new`: the store said the movement's
/// key is not recorded, so the filter is not consulted again.
fn run(
    core: &Arc<Core>,
    myself: &ActorRef<ShardMessage>,
    cell: &mut SkuCell,
    work: Work,
    now_ms: i64,
    outbox: &mut Outbox<'_>,
    key_confirmed_new: bool,
) {
    match work {
        Work::Read(reply) => {
            let _ = reply.send(Ok(cell.state.clone()));
        }
        Work::Reap => reap(core, myself, cell, now_ms, outbox),
        Work::Apply(request) => {
            if !cell.in_flight.is_empty() {
                forget_durable_keys(&mut cell.in_flight, outbox.durable);
            }
            let key = request.movement.idempotency_key.as_str();
            if !key_confirmed_new && cell.keys.maybe_contains(&core.key_scheme, key, now_ms) {
                if let Some((seq, hash)) = cell
                    .in_flight
                    .iter()
                    .find(|entry| entry.key == key)
                    .map(|entry| (entry.seq, entry.hash))
                {
                    if hash != super::keys::movement_hash(&request.movement) {
                        answer_conflict(*request, seq);
                        return;
                    }
                    answer_duplicate(myself, outbox, *request, seq, &core.options.metric_sources);
                    return;
                }
                check_key(core, myself, cell, request, now_ms);
                return;
            }
            apply(core, myself, cell, *request, now_ms, outbox);
        }
    }
}

/// Confirms a fingerprint hit in the store from a task; the SKU waits (its messages buffer)
/// until `KeyChecked` comes back.
fn check_key(
    core: &Arc<Core>,
    myself: &ActorRef<ShardMessage>,
    cell: &mut SkuCell,
    request: Box<ApplyRequest>,
    now_ms: i64,
) {
    let sku = cell.state.sku.clone();
    let key = request.movement.idempotency_key.clone();
    cell.phase = Phase::Checking;
    cell.buffer.push_front(Work::Apply(request));
    let core = core.clone();
    let myself = myself.clone();
    tokio::spawn(async move {
        let result = core
            .store
            .find_idempotency_key_hash(sku.as_str(), &key, now_ms)
            .await
            .map_err(|error| {
                LedgerError::Unavailable(format!("idempotency check failed: {error}"))
            });
        let _ = myself.send_message(ShardMessage::KeyChecked(Box::new((sku, result))));
    });
}

/// Loads and replays `skus` (off the shard).
async fn load_cells(core: &Core, skus: Vec<Sku>) -> Vec<(Sku, Result<LoadedCell, LedgerError>)> {
    let now_ms = core.now_ms();
    let names: Vec<String> = skus.iter().map(|sku| sku.0.clone()).collect();
    let loaded = match core.store.load_skus(&names, now_ms).await {
        Ok(loaded) if loaded.len() == skus.len() => loaded,
        Ok(loaded) => {
            let error = LedgerError::Unavailable(format!(
                "store loaded {} SKUs of {}",
                loaded.len(),
                skus.len()
            ));
            return skus
                .into_iter()
                .map(|sku| (sku, Err(error.clone())))
                .collect();
        }
        Err(error) => {
            tracing::warn!(error = %error, skus = skus.len(), "loading SKUs failed");
            let error = LedgerError::Unavailable(format!("loading failed: {error}"));
            return skus
                .into_iter()
                .map(|sku| (sku, Err(error.clone())))
                .collect();
        }
    };
    let rules = core.options.rules.get();
    let retention_ms = rules.stock.retention_ms();
    let parked_ttl_ms = rules.stock.parked_ttl();
    let ttl_ms =
        i64::try_from(core.options.idempotency_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let scheme = core.key_scheme;
    skus.into_iter()
        .zip(loaded)
        .map(|(sku, batch)| {
            let result = replay(&sku, &batch.loaded, retention_ms, parked_ttl_ms)
                .map(|state| LoadedCell {
                    state,
                    keys: KeyFilter::from_keys(
                        &scheme,
                        batch.keys.iter().map(|key| {
                            // A key stored under a longer TTL than today's (the setting was
                            // lowered, or another build wrote it) is remembered for today's
                            // TTL at most: the filter's expiry buckets only reach one TTL
                            // ahead, and a key beyond them read as expired (the
                            // stored-format test found a stored key applied again).
                            let expires_at_ms =
                                key.expires_at_ms.min(now_ms.saturating_add(ttl_ms));
                            (key.key.as_str(), expires_at_ms)
                        }),
                    ),
                    events_since_snapshot: batch.loaded.events_after.len() as u64,
                })
                .map_err(|error| {
                    tracing::error!(sku = %sku, error = %error, "cannot rebuild SKU");
                    LedgerError::Unavailable(format!("loading {sku} failed: {error}"))
                });
            (sku, result)
        })
        .collect()
}

/// Applies a new movement to its SKU and queues its event for the committer.
fn apply(
    core: &Core,
    myself: &ActorRef<ShardMessage>,
    cell: &mut SkuCell,
    request: ApplyRequest,
    now: i64,
    outbox: &mut Outbox<'_>,
) {
    let ApplyRequest {
        mut movement,
        origin,
        reply,
    } = request;
    let fingerprint = super::supervisor::PoisonWatch::fingerprint(
        cell.state.sku.as_str(),
        &movement.idempotency_key,
    );
    if core.poison.refused(fingerprint) {
        tracing::warn!(sku = %cell.state.sku, key = %movement.idempotency_key, "refusing a movement that crashed its shard before");
        metrics::counter!(crate::telemetry::LEDGER_REJECTED_TOTAL, "reason" => "poison")
            .increment(1);
        let _ = reply.send(Err(LedgerError::Rejected(
            crate::domain::ApplyError::Invalid(format!(
                "applying this movement crashed the ledger {} times; it is refused",
                super::supervisor::POISON_DEATHS
            )),
        )));
        return;
    }
    // Until `done` below, a panic of this shard is blamed on this movement.
    core.poison.applying(outbox.shard, fingerprint);
    #[cfg(test)]
    test_faults::maybe_panic(&movement);
    let seq = cell.state.seq + 1;
    let hash = super::keys::movement_hash(&movement);
    resolve_count(&mut movement, &core.options.count_basis);
    let touches_hold = super::reaper::touches_ttl_hold(&cell.state, &movement.kind);
    let rules = core.options.rules.get();
    let context = rules.stock.context(&cell.state.sku, now);
    let outcome = match rules.stock.unknown_location(&movement) {
        Some((field, location)) => {
            Err(crate::domain::ApplyError::UnknownLocation { field, location })
        }
        None => cell.state.apply_with(&movement, seq, &context),
    };
    core.poison.done(outbox.shard);
    let applied = match outcome {
        Ok(applied) => applied,
        Err(error) => {
            metrics::counter!(crate::telemetry::LEDGER_REJECTED_TOTAL, "reason" => rejection_reason(&error))
                .increment(1);
            let _ = reply.send(Err(LedgerError::Rejected(error)));
            return;
        }
    };
    // Record the decisions, so replay never re-decides: the time used and the location a
    // hold or sale was routed to.
    movement.occurred_at_ms.get_or_insert(now);
    if let Some(split) = applied.split_across.clone() {
        record_split(&mut movement.kind, split);
    } else if let Some(routed) = applied.routed_to.clone() {
        record_route(&mut movement.kind, routed);
    }
    note_line_outcome(&cell.state.sku, &movement, &applied);
    let ack = match (&applied.parked, &applied.ignored) {
        (Some(_), _) => Ack::Parked { seq },
        (None, Some(_)) => Ack::Ignored { seq },
        (None, None) => Ack::Applied { seq },
    };
    let ttl_ms =
        i64::try_from(core.options.idempotency_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let key_expires_at_ms = now.saturating_add(ttl_ms);
    let encoded = crate::store::codec::encode_movement(&movement);
    cell.keys.insert(
        &core.key_scheme,
        &movement.idempotency_key,
        key_expires_at_ms,
    );
    cell.in_flight.push(InFlightKey {
        key: movement.idempotency_key.clone(),
        seq,
        ticket: outbox.ticket,
        hash,
    });
    cell.events_since_snapshot += 1;
    // A snapshot costs time in proportion to the state, and a hot SKU's state grows with its
    // order lines (closed ones are kept for the idempotency window): snapshot at most once
    // per as many events as it has lines, so the cost per event stays constant (replay on
    // reload is then bounded by the same count).
    let every = core
        .options
        .snapshot_every_events
        .max(cell.state.reservations.len() as u64);
    let snapshot = (cell.events_since_snapshot >= every).then(|| {
        cell.events_since_snapshot = 0;
        cell.keys.prune(&core.key_scheme, now);
        SnapshotRecord {
            sku: cell.state.sku.0.clone(),
            seq,
            state: crate::store::codec::encode_state(&cell.state),
        }
    });
    // Only a movement that parks, unparks or expires a parked movement moves the parked
    // deadline: one branch for every other movement (the reaper expires parked movements).
    let parked_changed =
        applied.parked.is_some() || applied.unparked > 0 || !applied.expired.is_empty();
    let (outcome, dead_letters) = if parked_changed || applied.ignored.is_some() {
        line_outcome_records(&cell.state.sku, seq, now, key_expires_at_ms, &applied)
    } else {
        (None, Vec::new())
    };
    let hold_expiry = (touches_hold || parked_changed)
        .then(|| super::reaper::next_wake_ms(&cell.state, context.parked_ttl_ms))
        .filter(|next| *next != cell.next_hold_expiry_ms)
        .map(|next| {
            cell.next_hold_expiry_ms = next;
            core.reaper.set(&cell.state.sku, next);
            HoldExpiryRecord {
                sku: cell.state.sku.0.clone(),
                next_expiry_ms: next,
            }
        });
    cell.last_ticket = outbox.ticket;
    if applied.levels_changed {
        outbox.changed.push(outbox.queued.len());
    }
    let request = CommitRequest {
        hold_expiry,
        reservation: None,
        outcome,
        dead_letters,
        event: Some(EventRecord {
            sku: cell.state.sku.0.clone(),
            seq,
            idempotency_key: movement.idempotency_key,
            key_expires_at_ms,
            recorded_at_ms: now,
            movement: encoded,
            movement_hash: Some(hash),
        }),
        snapshot,
        origin,
        reply: Some(reply),
        ack,
        // Computed once per SKU and batch when the shard flushes.
        availability: None,
        source: core.options.metric_sources.label_owned(movement.source),
        kind: movement.kind.name(),
        oversold: applied.oversold,
        sku: None,
    };
    outbox.push(myself, request);
}

/// A count without its own basis takes its source's configured one (else physical), so the
/// recorded event says which it was; a count without a figure ("not tracked" at the
/// source) is logged: it changes nothing and is never read as 0.
fn resolve_count(
    movement: &mut crate::domain::Movement,
    count_basis: &std::collections::BTreeMap<String, crate::domain::CountBasis>,
) {
    if let crate::domain::MovementKind::Count {
        basis,
        on_hand,
        location,
        ..
    } = &mut movement.kind
    {
        if basis.is_none() {
            *basis = Some(
                count_basis
                    .get(&movement.source)
                    .copied()
                    .unwrap_or_default(),
            );
        }
        if on_hand.is_none() {
            tracing::debug!(
                sku = %movement.sku,
                source = %movement.source,
                location = %location,
                key = %movement.idempotency_key,
                "count ignored: the source does not track this SKU there (on_hand null)"
            );
        }
    }
}

/// Releases every lapsed hold (`Cancellation { reason: "expired" }`, see `super::reaper`)
/// and reports the SKU's next expiry to the reaper.
fn reap(
    core: &Arc<Core>,
    myself: &ActorRef<ShardMessage>,
    cell: &mut SkuCell,
    now_ms: i64,
    outbox: &mut Outbox<'_>,
) {
    let mut acks = Vec::new();
    for (reservation, _) in cell.state.expired_reservations(now_ms) {
        let movement = super::reaper::expiry_movement(&cell.state.sku, reservation, now_ms);
        let (reply, receiver) = oneshot::channel();
        let work = Work::Apply(Box::new(ApplyRequest {
            movement,
            origin: None,
            reply,
        }));
        if cell.phase == Phase::Ready {
            run(core, myself, cell, work, now_ms, outbox, false);
        } else {
            cell.buffer.push_back(work);
        }
        acks.push(receiver);
    }
    let parked_ttl_ms = core.options.rules.get().stock.parked_ttl();
    if cell.phase == Phase::Ready
        && let Some(movement) =
            super::reaper::parked_expiry_movement(&cell.state, parked_ttl_ms, now_ms)
    {
        let (reply, receiver) = oneshot::channel();
        let work = Work::Apply(Box::new(ApplyRequest {
            movement,
            origin: None,
            reply,
        }));
        run(core, myself, cell, work, now_ms, outbox, false);
        // The expired movements are counted when applied (`note_line_outcome`).
        drop(receiver);
    }
    cell.next_hold_expiry_ms = super::reaper::next_wake_ms(&cell.state, parked_ttl_ms);
    core.reaper.set(&cell.state.sku, cell.next_hold_expiry_ms);
    if !acks.is_empty() {
        tokio::spawn(super::reaper::count_expired(cell.state.sku.clone(), acks));
    }
}

fn record_route(kind: &mut crate::domain::MovementKind, routed: crate::domain::LocationId) {
    use crate::domain::MovementKind;
    if let MovementKind::Sale { location, .. }
    | MovementKind::Reservation { location, .. }
    | MovementKind::OrderEdit { location, .. } = kind
    {
        *location = Some(routed);
    }
}

/// Logs and counts what the order-line lifecycle reports besides levels: a parked or
/// ignored movement, a discrepancy (units an edit put below what shipped: they need a
/// return), and parked movements that expired (dead letters, with their reason).
fn note_line_outcome(sku: &Sku, movement: &Movement, applied: &crate::domain::Applied) {
    use crate::telemetry::{
        LEDGER_DISCREPANCY_UNITS_TOTAL, LEDGER_PARKED_EXPIRED_TOTAL, LEDGER_PARKED_TOTAL,
    };
    if let Some(reason) = &applied.parked {
        metrics::counter!(LEDGER_PARKED_TOTAL, "kind" => movement.kind.name()).increment(1);
        tracing::debug!(sku = %sku, key = %movement.idempotency_key, reason = %reason, "movement parked until its line gets there");
    }
    if let Some(reason) = &applied.ignored {
        tracing::debug!(sku = %sku, key = %movement.idempotency_key, reason = %reason, "movement recorded as ignored");
    }
    if applied.discrepancy > 0 {
        metrics::counter!(LEDGER_DISCREPANCY_UNITS_TOTAL).increment(applied.discrepancy);
        tracing::warn!(sku = %sku, key = %movement.idempotency_key, units = applied.discrepancy, "order edit below shipped units: a return is needed");
    }
    for expired in &applied.expired {
        metrics::counter!(LEDGER_PARKED_EXPIRED_TOTAL, "kind" => expired.kind.name()).increment(1);
        tracing::warn!(sku = %sku, key = %expired.idempotency_key, parked_seq = expired.seq, reason = %expired.reason, "parked movement expired");
    }
}

/// The stored outcome of an event that was not plain `applied`, and the dead letters of
/// the parked movements it expired (kept for the idempotency-key lifetime).
fn line_outcome_records(
    sku: &Sku,
    seq: u64,
    now_ms: i64,
    keep_until_ms: i64,
    applied: &crate::domain::Applied,
) -> (
    Option<crate::store::EventOutcomeRecord>,
    Vec<crate::store::DeadLetterRecord>,
) {
    let mut outcome = serde_json::Map::new();
    let (name, reason) = match (&applied.parked, &applied.ignored) {
        (Some(reason), _) => ("parked", Some(reason)),
        (None, Some(reason)) => ("ignored", Some(reason)),
        (None, None) => ("applied", None),
    };
    outcome.insert("outcome".into(), name.into());
    if let Some(reason) = reason {
        outcome.insert("reason".into(), reason.as_str().into());
    }
    if applied.unparked > 0 {
        outcome.insert("unparked".into(), (applied.unparked as u64).into());
    }
    if !applied.expired.is_empty() {
        outcome.insert(
            "dead_lettered".into(),
            (applied.expired.len() as u64).into(),
        );
    }
    let dead_letters = applied
        .expired
        .iter()
        .map(|parked| crate::store::DeadLetterRecord {
            sku: sku.0.clone(),
            parked_seq: parked.seq,
            expired_seq: seq,
            idempotency_key: parked.idempotency_key.clone(),
            source: parked.source.clone(),
            kind: parked.kind.name().to_owned(),
            movement_json: serde_json::to_string(&parked.kind).unwrap_or_default(),
            reason: parked.reason.clone(),
            parked_at_ms: parked.at_ms,
            expired_at_ms: now_ms,
            keep_until_ms,
        })
        .collect();
    let record = crate::store::EventOutcomeRecord {
        sku: sku.0.clone(),
        seq,
        outcome_json: serde_json::Value::Object(outcome).to_string(),
    };
    (Some(record), dead_letters)
}

/// A split line is recorded with no location and exactly the locations it was split
/// across as its route: replay re-makes the same split from the same state.
fn record_split(kind: &mut crate::domain::MovementKind, split: Vec<crate::domain::LocationId>) {
    use crate::domain::MovementKind;
    if let MovementKind::Sale {
        location, route, ..
    }
    | MovementKind::Reservation {
        location, route, ..
    }
    | MovementKind::OrderEdit {
        location, route, ..
    } = kind
    {
        *location = None;
        *route = split;
    }
}

fn rejection_reason(error: &crate::domain::ApplyError) -> &'static str {
    use crate::domain::ApplyError;
    match error {
        ApplyError::InsufficientStock { .. } => "insufficient_stock",
        ApplyError::UnknownReservation { .. } => "unknown_reservation",
        ApplyError::OverFulfilment { .. } => "over_fulfilment",
        ApplyError::Invalid(_) => "invalid",
        ApplyError::WrongSku { .. } => "wrong_sku",
        ApplyError::UnknownTransfer { .. } => "unknown_transfer",
        ApplyError::OverReceipt { .. } => "over_receipt",
        ApplyError::UnknownPurchaseOrder { .. } => "unknown_purchase_order",
        ApplyError::DuplicateTransfer { .. } => "duplicate_transfer",
        ApplyError::ReturnExceedsShipped { .. } => "return_exceeds_shipped",
        ApplyError::NotHeldAt { .. } => "not_held_at",
        ApplyError::TooManyParked { .. } => "too_many_parked",
        ApplyError::Overflow { .. } => "overflow",
        ApplyError::UnknownLocation { .. } => "unknown_location",
        ApplyError::IdempotencyConflict { .. } => "idempotency_key_conflict",
    }
}

/// Test-only fault injection: movements whose idempotency key was registered with
/// [`test_faults::panic_on`] make their shard panic while being applied.
#[cfg(test)]
pub(crate) mod test_faults {
    use std::collections::HashSet;
    use std::sync::Mutex;

    static PANIC_KEYS: Mutex<Option<HashSet<String>>> = Mutex::new(None);

    /// Every movement with idempotency key `key` panics its shard from now on.
    pub(crate) fn panic_on(key: &str) {
        PANIC_KEYS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(key.to_owned());
    }

    pub(super) fn maybe_panic(movement: &crate::domain::Movement) {
        let hit = PANIC_KEYS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|keys| keys.contains(&movement.idempotency_key));
        if hit {
            panic!("injected fault applying {}", movement.idempotency_key);
        }
    }
}
