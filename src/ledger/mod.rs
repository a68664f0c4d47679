//! The ledger: every mutation of a SKU, serialised per SKU, made durable in group commits.
//!
//! Owns: the [`Ledger`] handle, the shard actors (`actor`) that host the live SKUs, idle
//! passivation, the compact idempotency-key memory (`keys`), the group committer
//! (`committer`), the hold reaper (`reaper`), multi-SKU reservations and bundles.
//!
//! Execution model: a fixed number of shard actors (`[ledger] shards`, ractor actors on
//! tokio) host the SKUs; a SKU belongs to shard `fnv1a(sku) % shards` ([`keys::shard_of`],
//! stable across builds and processes). A shard keeps a map of its live SKUs (state, a
//! compact fingerprint set of unexpired idempotency keys, the keys whose events are not yet
//! durable, a buffer of waiting messages) and handles one message at a time, so each SKU has
//! exactly one writer and the movements submitted for it in order are applied in order.
//! Store IO never runs on a shard: a SKU that is not in memory is loaded by a task (the
//! SKUs missed in one mailbox drain go to the store as one [`Store::load_skus`] call) while
//! its messages wait in its buffer and other SKUs go on; an idempotency-key fingerprint hit
//! that is not among the in-flight keys is confirmed the same way with
//! [`Store::find_idempotency_key`].
//!
//! Flow of one movement: [`Ledger::submit`] casts it into its shard's mailbox
//! (synchronously, so calls made in order reach the shard in order); the shard checks the
//! idempotency key, applies it to the SKU's pure [`SkuState`] and queues the event; once the
//! mailbox drain ends, the shard hands everything it queued to the committer as one batch
//! numbered with a per-shard ticket. The committer writes many shards' batches in one
//! durable transaction, then answers each caller, raises the shard's durable ticket, and
//! publishes the newest availability of every changed SKU to the [`AvailabilitySink`].
//! Several instances (`[cluster]`): a movement not from Kafka is routed instead, applied
//! here or forwarded to its SKU's owner (`ownership`), in a task of its own that waits for
//! the SKU's previously submitted routed movement to be answered (`route_order`), so the
//! order of submission still holds per SKU.
//!
//! Passivation: each shard sweeps its SKUs on a tick (period from `idle_passivate_secs`, time
//! from [`LedgerOptions::clock`]) and drops those idle that long whose last ticket is
//! durable and that have nothing buffered; [`Ledger::shutdown`] passivates everything.
//!
//! Invariants: one writer per SKU (its shard, or nobody while passivated); an
//! acknowledgement means the event is durable; a duplicate key has no effect and is
//! answered only once the original is durable; a failed group commit is written again
//! until the store takes it, nothing behind it being written first (no gaps in a SKU's
//! log), while [`Ledger::unavailable_reason`] says why writes wait.
//!
//! Supervision (`supervisor`): the shards run linked to a supervisor actor. A shard that
//! panics is logged, counted (`stocksync_actor_restarts_total{actor="shard"}`), its SKUs
//! leave the live gauge, and it is started again empty once everything it handed to the
//! committer is durable; its SKUs reload from the store on their next message. Callers
//! whose messages died with it are answered [`LedgerError::Unavailable`] and may retry
//! (nothing acknowledged is lost: acknowledgements follow durability). The movement that
//! was being applied when a shard died is remembered; after
//! [`supervisor::POISON_DEATHS`] deaths it is refused ([`LedgerError::Rejected`]) instead
//! of killing the shard again.
//!
//! May depend on: `domain`, `store`, `telemetry`, `clock`. Knows nothing about channels.

mod actor;
mod bundles;
mod committer;
pub mod keys;
pub mod labels;
pub mod ownership;
mod reads;
mod reaper;
pub mod reservations;
mod route_order;
mod supervisor;

use crate::domain::{ApplyError, AvailabilitySink, Movement, Sku, SkuState};
use crate::store::{OffsetWatermark, Store};
use actor::{ApplyRequest, ShardMessage};
use committer::Committer;
pub use reservations::{
    LineShortage, LineStatus, RequestProblem, ReservationLine, ReservationLineView,
    ReservationOutcome, ReservationRequest, ReservationView,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

/// Most shards a ledger runs (`[ledger] shards` is validated against it).
pub const MAX_SHARDS: usize = crate::config::MAX_LEDGER_SHARDS;

/// How long [`Ledger::shutdown`] waits for a store that refuses writes, in seconds.
pub const SHUTDOWN_STORE_DOWN_SECS: u64 = 10;

/// The default shard count: two per available core, within `1..=MAX_SHARDS`.
pub fn default_shards() -> usize {
    crate::config::LedgerConfig::default().shards
}

/// Tuning of the ledger.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// A SKU idle this long (and fully durable) is dropped from memory (passivated).
    pub idle_passivate_secs: u64,
    /// How long idempotency keys are remembered, in seconds.
    pub idempotency_ttl_secs: u64,
    /// Most events in one group commit (a shard's batch is never split, so a commit may
    /// exceed it by less than one batch).
    pub group_commit_max_batch: usize,
    /// A snapshot of a SKU is written every this many of its events.
    pub snapshot_every_events: u64,
    /// Shard actors hosting the SKUs (clamped to `1..=MAX_SHARDS`).
    pub shards: usize,
    /// The stock rules in force: backorder and routing policy applied when movements are
    /// admitted, and the bills of materials by which bundle movements are expanded. Shared
    /// with propagation and the config API, which may replace them at runtime.
    pub rules: Arc<crate::domain::RulesCell>,
    /// Wall time for hold expiry, idle passivation and idempotency-key expiry.
    pub clock: crate::clock::SharedClock,
    /// The basis of counts without their own, by source (`[ledger] count_basis`); the
    /// ledger records the basis it used, so replay does not depend on it.
    pub count_basis: Arc<std::collections::BTreeMap<String, crate::domain::CountBasis>>,
    /// Most movements waiting in one shard's mailbox before new ones are refused with
    /// [`LedgerError::Overloaded`] (`[ledger] max_queued_per_shard`).
    pub max_queued_per_shard: usize,
    /// Most messages waiting for one SKU inside its shard before new work for it is refused
    /// with [`LedgerError::Overloaded`] (`[ledger] max_buffered_per_sku`).
    pub max_buffered_per_sku: usize,
    /// Which movement sources the metrics name (`[ledger] metric_sources`).
    pub metric_sources: Arc<labels::SourceLabels>,
    /// Ownership claims every group commit is written under (`CommitBatch::fences`): the
    /// app claims the whole store ([`LEDGER_SCOPE`]) at start, so that a second instance
    /// started on the same shared store takes it over and this one stops writing instead
    /// of both writing one SKU's log. Empty: no check (tests, tools).
    pub fences: Vec<crate::store::Fence>,
    /// Several instances (`[cluster]`): which SKUs this instance may write and the fence of
    /// each write ([`ownership::Ownership`]). `None`: every SKU is this instance's.
    pub ownership: Option<ownership::OwnershipHandle>,
    /// Several instances: how a movement whose SKU another instance owns reaches it
    /// (REST, webhooks, pollers, reservations; Kafka records are never forwarded: their
    /// partition's owner reads them). `None`: such movements are answered `NotOwner`.
    pub forwarder: Option<ownership::ForwarderHandle>,
}

/// The ownership scope an instance claims on its store at start: the whole ledger (until
/// ownership is split by topic partition).
pub const LEDGER_SCOPE: &str = "ledger";

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            idle_passivate_secs: 120,
            idempotency_ttl_secs: 7 * 24 * 3600,
            group_commit_max_batch: 16_384,
            snapshot_every_events: 500,
            shards: default_shards(),
            rules: Arc::default(),
            clock: crate::clock::system(),
            count_basis: Arc::default(),
            max_queued_per_shard: 65_536,
            max_buffered_per_sku: 16_384,
            metric_sources: Arc::new(labels::SourceLabels::new(
                crate::config::default_metric_sources(),
            )),
            fences: Vec::new(),
            ownership: None,
            forwarder: None,
        }
    }
}

impl LedgerOptions {
    /// Takes the ledger and store sections of the config.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            idle_passivate_secs: config.ledger.idle_passivate_secs,
            idempotency_ttl_secs: config.ledger.idempotency_ttl_secs,
            group_commit_max_batch: config.store.group_commit_max_batch,
            snapshot_every_events: config.store.snapshot_every_events,
            shards: config.ledger.shards,
            // A config that failed validation has no usable BOM; `Config::load` validates.
            rules: Arc::new(crate::domain::RulesCell::new(
                config.rules().unwrap_or_default(),
            )),
            clock: crate::clock::system(),
            count_basis: Arc::new(config.ledger.count_basis.clone()),
            max_queued_per_shard: config.ledger.max_queued_per_shard.max(1),
            max_buffered_per_sku: config.ledger.max_buffered_per_sku.max(1),
            metric_sources: Arc::new(labels::SourceLabels::from_config(config)),
            fences: Vec::new(),
            ownership: None,
            forwarder: None,
        }
    }
}

/// The answer to a submitted movement, given only once it is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ack {
    /// Recorded as event `seq` of its SKU.
    Applied {
        /// The event's sequence number.
        seq: u64,
    },
    /// The idempotency key was seen before (as event `seq`); nothing changed.
    Duplicate {
        /// The sequence number that recorded the key first.
        seq: u64,
    },
    /// Recorded as event `seq`, but its effect waits for its order line (a fulfilment
    /// before its sale, a return before its shipment): it applies when the line gets
    /// there, or expires into the dead-letter store (see `SkuState::parked`).
    Parked {
        /// The event's sequence number.
        seq: u64,
    },
    /// Recorded as event `seq` with no effect on purpose (an order edit whose version is
    /// not newer than the line's).
    Ignored {
        /// The event's sequence number.
        seq: u64,
    },
}

impl Ack {
    /// The sequence number of the event that recorded the movement (or its key first).
    pub fn seq(&self) -> u64 {
        match self {
            Ack::Applied { seq }
            | Ack::Duplicate { seq }
            | Ack::Parked { seq }
            | Ack::Ignored { seq } => *seq,
        }
    }

    /// Whether the movement was recorded now (as opposed to a duplicate of an earlier one).
    pub fn recorded(&self) -> bool {
        !matches!(self, Ack::Duplicate { .. })
    }
}

/// Why a movement was not acknowledged. Serialisable so that an instance that forwarded a
/// movement to its owner gives its caller the owner's exact answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerError {
    /// The state machine refused it (insufficient stock, unknown reservation, invalid).
    /// Nothing was recorded; retrying the same movement gives the same answer unless the
    /// stock changed.
    #[error("movement rejected: {0}")]
    Rejected(#[from] ApplyError),
    /// The store failed; the movement is not durable and may be retried.
    #[error("store failure: {0}")]
    Store(String),
    /// The ledger is stopping or the SKU failed to load; retry later.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The SKU's shard (or the SKU's own buffer) already holds as much waiting work as it
    /// may (`[ledger] max_queued_per_shard`, `max_buffered_per_sku`); nothing was recorded.
    /// Retry after a short pause (REST answers 503 with `Retry-After`).
    #[error("ledger overloaded: {0}")]
    Overloaded(String),
    /// Several instances (`[cluster]`): the SKU's topic partition is owned by another
    /// instance, or is moving between instances, so nothing was recorded here. `owner` is
    /// the owner's advertised URL when one is known: forward the movement there (the
    /// instances do so themselves), or retry shortly.
    #[error("not the owner of the SKU: partition {partition} is {}", owner.as_deref().map_or_else(|| "moving between instances".to_owned(), |url| format!("owned by {url}")))]
    NotOwner {
        /// The SKU's partition of the movements topic (`murmur2(key) mod partitions`).
        partition: u32,
        /// The owner's advertised base URL, when a live owner is known.
        owner: Option<String>,
    },
}

impl LedgerError {
    /// Whether retrying the same movement later may succeed (store failures, a stopping
    /// ledger, an overloaded shard); refusals are final.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LedgerError::Store(_)
                | LedgerError::Unavailable(_)
                | LedgerError::Overloaded(_)
                | LedgerError::NotOwner { .. }
        )
    }
}

/// A pending acknowledgement; resolves once the movement is durable (or refused).
pub struct PendingAck(PendingInner);

/// Where the answer comes from: this instance's shard, or (several instances) the task
/// that routes the movement to its SKU's owner (it runs whether or not the answer is
/// awaited, like a cast into a shard).
enum PendingInner {
    Local(oneshot::Receiver<Result<Ack, LedgerError>>),
    Routed(tokio::task::JoinHandle<Result<Ack, LedgerError>>),
}

impl PendingAck {
    fn local(receiver: oneshot::Receiver<Result<Ack, LedgerError>>) -> Self {
        Self(PendingInner::Local(receiver))
    }
}

impl Future for PendingAck {
    type Output = Result<Ack, LedgerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            PendingInner::Local(receiver) => Pin::new(receiver).poll(cx).map(|result| {
                result.unwrap_or_else(|_| {
                    Err(LedgerError::Unavailable(
                        "the SKU's shard stopped before answering".to_owned(),
                    ))
                })
            }),
            PendingInner::Routed(task) => Pin::new(task).poll(cx).map(|result| {
                result.unwrap_or_else(|error| {
                    Err(LedgerError::Unavailable(format!(
                        "routing the movement to its owner failed: {error}"
                    )))
                })
            }),
        }
    }
}

/// What the shards share: the store, the committer, the options and the counters. Shards
/// hold it strongly; the [`Ledger`] handles hold it through [`Shared`].
pub(crate) struct Core {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) committer: Committer,
    pub(crate) options: LedgerOptions,
    /// SKUs in memory across all shards (loading or live).
    pub(crate) live_skus: AtomicU64,
    /// Per shard, the highest ticket whose batch is durable (raised by the committer).
    pub(crate) durable_tickets: Arc<[AtomicU64]>,
    /// How idempotency keys become fingerprints (see `keys`).
    pub(crate) key_scheme: keys::KeyScheme,
    /// Earliest TTL-hold expiry per SKU (see `reaper`).
    pub(crate) reaper: Arc<reaper::Schedule>,
    /// Serialises requests that name the same reservation id (see `reservations`).
    pub(crate) reservation_locks: reservations::Locks,
    /// Per shard, the movements submitted to its mailbox and not yet taken out of it.
    pub(crate) mailbox_movements: Arc<[std::sync::atomic::AtomicUsize]>,
    /// Per shard, its SKUs in memory (the part of `live_skus` a shard's death takes away).
    pub(crate) shard_live: Box<[AtomicU64]>,
    /// Movements being applied and movements that killed shards (see `supervisor`).
    pub(crate) poison: supervisor::PoisonWatch,
    /// Several instances: the order of routed movements per SKU (see `route_order`).
    pub(crate) route_order: Arc<route_order::RouteOrder>,
}

impl Core {
    /// Wall time from the ledger's injected clock, in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        self.options.clock.now_ms()
    }

    /// Counts `delta` SKUs into (or, negative, out of) memory on shard `index`.
    pub(crate) fn count_live(&self, index: usize, delta: i64) {
        let magnitude = delta.unsigned_abs();
        if delta >= 0 {
            self.live_skus.fetch_add(magnitude, Ordering::Relaxed);
            self.shard_live[index].fetch_add(magnitude, Ordering::Relaxed);
        } else {
            self.live_skus.fetch_sub(magnitude, Ordering::Relaxed);
            self.shard_live[index].fetch_sub(magnitude, Ordering::Relaxed);
        }
    }

    /// Sets the live-SKU gauge from the counter.
    pub(crate) fn publish_live_gauge(&self) {
        metrics::gauge!(crate::telemetry::LEDGER_LIVE_SKU_ACTORS)
            .set(self.live_skus.load(Ordering::Relaxed) as f64);
    }
}

/// The shards and what they share; stops the shards when the last [`Ledger`] handle goes.
pub(crate) struct Shared {
    core: Arc<Core>,
    /// The running actor of every shard (replaced when the supervisor restarts one).
    shards: Arc<supervisor::ShardSlots>,
    supervisor: ractor::ActorRef<()>,
}

impl std::ops::Deref for Shared {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The supervisor first, so that it restarts nothing while the shards stop.
        self.supervisor.stop(None);
        for shard in self.shards.all() {
            shard.stop(None);
        }
    }
}

impl Shared {
    /// The shard that owns `sku`.
    fn shard(&self, sku: &str) -> ractor::ActorRef<ShardMessage> {
        self.shards.get(keys::shard_of(sku, self.shards.len()))
    }

    /// Sends to `sku`'s shard; a message that cannot be delivered (the shard stopped) is
    /// answered [`LedgerError::Unavailable`].
    pub(crate) fn send(&self, sku: &str, message: ShardMessage) {
        if let Err(ractor::MessagingErr::SendErr(returned)) = self.shard(sku).send_message(message)
        {
            returned.fail(LedgerError::Unavailable(format!(
                "the shard of {sku} has stopped"
            )));
        }
    }
}

/// Why `movement`'s SKU cannot name a ledger entry (longer than
/// [`MAX_ID_BYTES`](crate::domain::MAX_ID_BYTES), a control character, empty), if it cannot.
fn unroutable_sku(movement: &Movement) -> Option<String> {
    let sku = movement.sku.as_str();
    if sku.len() <= crate::domain::MAX_ID_BYTES
        && !sku.trim().is_empty()
        && !sku.chars().any(char::is_control)
    {
        return None;
    }
    Some(movement.validate().err().map_or_else(
        || "sku is not a valid ledger key".to_owned(),
        |problems| problems.join("; "),
    ))
}

/// The handle to the ledger: cheap to clone, shared by every ingest path and the API.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

impl Ledger {
    /// Starts the committer, the shard actors, the passivation ticker and the hold reaper
    /// (which first reads the store's open TTL holds). SKUs load on demand.
    pub fn start(
        store: Arc<dyn Store>,
        sink: Arc<dyn AvailabilitySink>,
        options: LedgerOptions,
    ) -> Self {
        let key_scheme = keys::KeyScheme::new(options.idempotency_ttl_secs);
        Self::start_with(store, sink, options, key_scheme)
    }

    fn start_with(
        store: Arc<dyn Store>,
        sink: Arc<dyn AvailabilitySink>,
        options: LedgerOptions,
        key_scheme: keys::KeyScheme,
    ) -> Self {
        let shard_count = options.shards.clamp(1, MAX_SHARDS);
        let durable_tickets: Arc<[AtomicU64]> =
            (0..shard_count).map(|_| AtomicU64::new(0)).collect();
        let committer = Committer::start(
            store.clone(),
            sink,
            options.group_commit_max_batch,
            durable_tickets.clone(),
            options.fences.clone(),
            options.ownership.clone(),
        );
        let core = Arc::new(Core {
            store,
            committer,
            options,
            live_skus: AtomicU64::new(0),
            durable_tickets,
            key_scheme,
            reaper: Arc::default(),
            reservation_locks: reservations::Locks::default(),
            mailbox_movements: (0..shard_count)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
            shard_live: (0..shard_count).map(|_| AtomicU64::new(0)).collect(),
            poison: supervisor::PoisonWatch::new(shard_count),
            route_order: Arc::new(route_order::RouteOrder::new(shard_count)),
        });
        let (shards, supervisor) = supervisor::start(core.clone(), shard_count);
        let shared = Arc::new(Shared {
            core,
            shards,
            supervisor,
        });
        reaper::spawn(Arc::downgrade(&shared), shared.reaper.clone());
        let ledger = Self { shared };
        ledger.spawn_sweeper();
        ledger
    }

    /// Submits a movement. Movements submitted one after another reach their SKU in that
    /// order: the cast into the SKU's shard happens before this returns, and with several
    /// instances, where a movement may be forwarded to the SKU's owner, its place among the
    /// SKU's routed movements is fixed before this returns (each is admitted here or
    /// forwarded only once the previous one of its SKU has been answered; other SKUs do not
    /// wait). Await the returned [`PendingAck`] for durability; dropping it does not
    /// withdraw the movement.
    pub fn submit(&self, movement: Movement) -> PendingAck {
        self.submit_from(movement, None)
    }

    /// Like [`Ledger::submit`], and records `origin` (a Kafka partition's next offset) in
    /// the same durable write as the movement.
    pub fn submit_from(&self, movement: Movement, origin: Option<OffsetWatermark>) -> PendingAck {
        if let Some(problem) = unroutable_sku(&movement) {
            // Refused before a shard makes room (and a store lookup) for such a SKU; every
            // other check of `Movement::validate` runs when the movement is applied.
            let (reply, receiver) = oneshot::channel();
            let _ = reply.send(Err(LedgerError::Rejected(ApplyError::Invalid(problem))));
            return PendingAck::local(receiver);
        }
        if self.is_bundle_movement(&movement) {
            // Bundles hold no stock: their movements become component movements. The
            // Kafka origin is not recorded for them; the batch commit still covers it.
            return self.submit_bundle(movement);
        }
        if origin.is_none()
            && self.shared.options.ownership.is_some()
            && self.shared.options.forwarder.is_some()
        {
            // Several instances: applied here while this instance owns the SKU, else on its
            // owner; retried while the SKU's partition moves, also when it moves after the
            // movement was admitted here (Kafka records are never routed: their
            // partition's owner reads them).
            return self.submit_routed(movement);
        }
        self.submit_owned(movement, origin)
    }

    /// Routes `movement` to its SKU's owner ([`Ledger::routed`]) in a task of its own,
    /// after every routed movement of its SKU submitted before it has been answered. Its
    /// turn is taken here, synchronously, so the order of submission is the order in which
    /// the owner receives them, however long each forward or retry takes. The routing
    /// deadline runs from now, so a chain waiting behind a moving partition ends with it.
    fn submit_routed(&self, movement: Movement) -> PendingAck {
        let mut turn = self.shared.route_order.turn(&movement.sku);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(ownership::ROUTE_DEADLINE_MS);
        let ledger = self.clone();
        PendingAck(PendingInner::Routed(tokio::spawn(async move {
            turn.predecessor_done().await;
            let answer = ledger.routed(movement, deadline).await;
            // The SKU's next routed movement goes once this one is answered.
            drop(turn);
            answer
        })))
    }

    /// Like [`Ledger::submit_from`] but never routes: the movement goes to this instance's
    /// shard, which answers [`LedgerError::NotOwner`] when the SKU's partition is not
    /// admitted here (the endpoint forwarded movements arrive at uses it, so a movement is
    /// forwarded at most once).
    pub fn submit_owned(&self, movement: Movement, origin: Option<OffsetWatermark>) -> PendingAck {
        let (reply, receiver) = oneshot::channel();
        let index = keys::shard_of(movement.sku.as_str(), self.shared.shards.len());
        let waiting = &self.shared.mailbox_movements[index];
        let limit = self.shared.options.max_queued_per_shard;
        if waiting.fetch_add(1, Ordering::AcqRel) >= limit {
            waiting.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(crate::telemetry::LEDGER_REJECTED_TOTAL, "reason" => "overloaded")
                .increment(1);
            let _ = reply.send(Err(LedgerError::Overloaded(format!(
                "the shard of {} has {limit} movements waiting",
                movement.sku
            ))));
            return PendingAck::local(receiver);
        }
        let message = ShardMessage::Apply(Box::new(ApplyRequest {
            movement,
            origin,
            reply,
        }));
        if let Err(ractor::MessagingErr::SendErr(returned)) =
            self.shared.shards.get(index).send_message(message)
        {
            waiting.fetch_sub(1, Ordering::AcqRel);
            returned.fail(LedgerError::Unavailable(
                "the SKU's shard has stopped".to_owned(),
            ));
        }
        PendingAck::local(receiver)
    }

    /// The first location `movement` names that is not configured (`[[locations]]`), with
    /// the JSON field naming it; `None` when all are (or no location list is configured).
    /// The ledger refuses such a movement with `ApplyError::UnknownLocation`; the API asks
    /// first to answer 422 with a pointer before anything of a batch is applied.
    pub fn unknown_location(
        &self,
        movement: &Movement,
    ) -> Option<(String, crate::domain::LocationId)> {
        self.shared
            .options
            .rules
            .get()
            .stock
            .unknown_location(movement)
    }

    /// The current state of a SKU (loading it if passivated). Includes movements whose
    /// durable write is in flight; an empty state for a SKU never seen.
    pub async fn state(&self, sku: &Sku) -> Result<SkuState, LedgerError> {
        let (reply, receiver) = oneshot::channel();
        self.shared.send(
            sku.as_str(),
            ShardMessage::Read {
                sku: sku.clone(),
                reply,
            },
        );
        receiver
            .await
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("shard stopped".to_owned())))
    }

    /// SKUs known to the store, ascending, after `after`, at most `limit`.
    pub async fn list_skus(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, LedgerError> {
        self.shared
            .store
            .list_skus(after, limit)
            .await
            .map_err(|e| LedgerError::Store(e.to_string()))
    }

    /// The store behind the ledger (for read-only views such as history).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// SKUs currently in memory (live or loading) across all shards. The name is kept
    /// from the time each SKU was an actor: the metric `stocksync_ledger_live_sku_actors`,
    /// which dashboards and alerts use, reports the same number.
    pub fn live_actors(&self) -> u64 {
        self.shared.live_skus.load(Ordering::Relaxed)
    }

    /// Shard actors hosting the SKUs.
    pub fn shard_count(&self) -> usize {
        self.shared.shards.len()
    }

    /// Whether the store takes writes: false while a failed group commit is being written
    /// again (ingest should pause; it resumes by itself once the store is back).
    pub fn is_healthy(&self) -> bool {
        self.shared.committer.is_healthy()
    }

    /// Why writes wait (the store's error of the last failed group commit); `None` while
    /// the store takes writes.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.shared.committer.down_reason()
    }

    /// The wall clock the ledger reads (hold expiry, passivation); the API and the app read
    /// the same one.
    pub fn clock(&self) -> &crate::clock::SharedClock {
        &self.shared.options.clock
    }

    /// Passivates every SKU and waits until all pending writes are durable (at most about
    /// five seconds for SKUs that still have work buffered). While the store refuses writes
    /// it gives up after [`SHUTDOWN_STORE_DOWN_SECS`] seconds: what is not durable then was
    /// never acknowledged (and its Kafka offsets never committed), so nothing is lost.
    pub async fn shutdown(&self) {
        let work = async {
            for _ in 0..500 {
                self.shared.committer.flush().await;
                if self.sweep(true).await == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.shared.committer.flush().await;
        };
        tokio::pin!(work);
        let mut down_secs = 0;
        loop {
            tokio::select! {
                _ = &mut work => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if self.is_healthy() {
                        down_secs = 0;
                        continue;
                    }
                    down_secs += 1;
                    if down_secs >= SHUTDOWN_STORE_DOWN_SECS {
                        tracing::warn!(
                            reason = ?self.unavailable_reason(),
                            "stopping while the store refuses writes; movements not yet durable were never acknowledged"
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Applies `movement` on its owner: here when this instance admits its SKU, else on
    /// the instance whose URL the ownership names ([`ownership::Forwarder`]). While the
    /// SKU's partition moves (no owner known, or an owner that answers `NotOwner`) it waits
    /// and tries again, backing off from 50 ms to 1 s, until `deadline` (at least one
    /// attempt); then the last `NotOwner` is the answer.
    async fn routed(
        self,
        movement: Movement,
        deadline: tokio::time::Instant,
    ) -> Result<Ack, LedgerError> {
        let (Some(ownership), Some(forwarder)) = (
            self.shared.options.ownership.clone(),
            self.shared.options.forwarder.clone(),
        ) else {
            return self.submit_owned(movement, None).await;
        };
        let mut backoff_ms = 50;
        loop {
            let (outcome, remote) = match ownership.admit(movement.sku.as_str()) {
                Ok(()) => (self.submit_owned(movement.clone(), None).await, false),
                Err(LedgerError::NotOwner {
                    owner: Some(url), ..
                }) => (forwarder.forward(url, movement.clone()).await, true),
                Err(error) => (Err(error), false),
            };
            let retry = matches!(outcome, Err(LedgerError::NotOwner { .. }))
                && tokio::time::Instant::now() < deadline;
            if remote {
                let label = match (&outcome, retry) {
                    (_, true) => "retried",
                    (Ok(_) | Err(LedgerError::Rejected(_)), false) => "ok",
                    _ => "failed",
                };
                metrics::counter!(crate::telemetry::CLUSTER_FORWARDS_TOTAL, "kind" => "movement", "outcome" => label)
                    .increment(1);
            }
            if !retry {
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(1_000);
        }
    }

    /// Reads the store's open TTL holds (and parked-movement expiries) of every SKU `filter`
    /// selects into the reaper's schedule: a partition this instance just took may hold
    /// reservations another instance made, which must lapse here on time.
    pub async fn schedule_holds_where(&self, filter: Arc<dyn Fn(&str) -> bool + Send + Sync>) {
        let shared = Arc::downgrade(&self.shared);
        reaper::scan(&shared, &self.shared.reaper, filter.as_ref()).await;
    }

    /// Drops from memory every SKU `filter` selects (their partition left this instance, see
    /// [`ownership`]): work buffered for them is answered [`LedgerError::NotOwner`], then
    /// waits until every write handed to the store before is settled (durable, or refused
    /// as fenced). Afterwards nothing of those SKUs is in memory or in flight here, so
    /// another instance may take them over. Returns how many SKUs were dropped.
    pub async fn evict_where(&self, filter: Arc<dyn Fn(&str) -> bool + Send + Sync>) -> u64 {
        let mut answers = Vec::with_capacity(self.shared.shards.len());
        for shard in self.shared.shards.all() {
            let (reply, receiver) = oneshot::channel();
            if shard
                .send_message(ShardMessage::Evict {
                    filter: filter.clone(),
                    reply,
                })
                .is_ok()
            {
                answers.push(receiver);
            }
        }
        let mut dropped = 0;
        for answer in answers {
            dropped += answer.await.unwrap_or(0);
        }
        // The shards flushed what they had queued before the eviction reached them.
        self.shared.committer.flush().await;
        dropped
    }

    /// Asks every shard to passivate its idle (or, with `force`, all) fully durable SKUs;
    /// returns how many SKUs stay in memory.
    async fn sweep(&self, force: bool) -> u64 {
        let mut answers = Vec::with_capacity(self.shared.shards.len());
        for shard in self.shared.shards.all() {
            let (reply, receiver) = oneshot::channel();
            if shard
                .send_message(ShardMessage::Sweep {
                    force,
                    reply: Some(reply),
                })
                .is_ok()
            {
                answers.push(receiver);
            }
        }
        let mut remaining = 0;
        for answer in answers {
            remaining += answer.await.unwrap_or(0);
        }
        remaining
    }

    /// Ticks every shard's idle sweep at a quarter of the idle time (50 ms to 30 s).
    fn spawn_sweeper(&self) {
        let weak = Arc::downgrade(&self.shared);
        let idle_ms = self.shared.options.idle_passivate_secs.saturating_mul(1000);
        let period = Duration::from_millis((idle_ms / 4).clamp(50, 30_000));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                for shard in shared.shards.all() {
                    let _ = shard.send_message(ShardMessage::Sweep {
                        force: false,
                        reply: None,
                    });
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bundles;
#[cfg(test)]
mod tests_counts;
#[cfg(test)]
mod tests_dead;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_routing;
#[cfg(test)]
mod tests_supervision;
