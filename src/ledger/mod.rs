//! The ledger: per-SKU actors that serialise every mutation of one SKU.
//!
//! Owns: the SKU actor registry ([`Ledger`]), SKU actors (`actor`), idle passivation, and
//! the group committer (`committer`) that makes movements durable in batches across SKUs.
//!
//! Flow of one movement: [`Ledger::submit`] casts it into the SKU's actor mailbox
//! (synchronously, so calls made in order reach the actor in order); the actor checks the
//! idempotency key, applies it to its pure [`SkuState`] and hands the event to the
//! committer; the committer writes many SKUs' events in one durable transaction and only
//! then answers each caller and publishes the newest availability of every changed SKU to
//! the [`AvailabilitySink`].
//!
//! Invariants: one writer per SKU (its actor, or nobody while passivated); an
//! acknowledgement means the event is durable; a duplicate key has no effect; after a write
//! failure the committer refuses all further writes (no gaps in a SKU's log).
//!
//! May depend on: `domain`, `store`, `telemetry`. Knows nothing about channels.

mod actor;
mod bundles;
mod committer;
mod reaper;
pub mod reservations;

use crate::domain::{ApplyError, AvailabilitySink, Movement, Sku, SkuState};
use crate::store::{OffsetWatermark, Store};
use actor::{SkuActor, SkuActorArgs, SkuMessage, SkuSlot, SlotCounters};
use committer::Committer;
use dashmap::DashMap;
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

/// Tuning of the ledger.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// A SKU actor idle this long is stopped (its state is durable already).
    pub idle_passivate_secs: u64,
    /// How long idempotency keys are remembered, in seconds.
    pub idempotency_ttl_secs: u64,
    /// Most events in one group commit.
    pub group_commit_max_batch: usize,
    /// A snapshot of a SKU is written every this many of its events.
    pub snapshot_every_events: u64,
    /// The stock rules in force: backorder and routing policy applied when movements are
    /// admitted, and the bills of materials by which bundle movements are expanded. Shared
    /// with propagation and the config API, which may replace them at runtime.
    pub rules: Arc<crate::domain::RulesCell>,
    /// Wall time for hold expiry, idle passivation and idempotency-key expiry.
    pub clock: crate::clock::SharedClock,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            idle_passivate_secs: 120,
            idempotency_ttl_secs: 7 * 24 * 3600,
            group_commit_max_batch: 16_384,
            snapshot_every_events: 500,
            rules: Arc::default(),
            clock: crate::clock::system(),
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
            // A config that failed validation has no usable BOM; `Config::load` validates.
            rules: Arc::new(crate::domain::RulesCell::new(
                config.rules().unwrap_or_default(),
            )),
            clock: crate::clock::system(),
        }
    }
}

/// The answer to a submitted movement, given only once it is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Why a movement was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The state machine refused it (insufficient stock, unknown reservation, invalid).
    /// Nothing was recorded; retrying the same movement gives the same answer unless the
    /// stock changed.
    #[error("movement rejected: {0}")]
    Rejected(#[from] ApplyError),
    /// The store failed; the movement is not durable and may be retried.
    #[error("store failure: {0}")]
    Store(String),
    /// The SKU actor or the ledger is stopping or failed to load; retry later.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// A pending acknowledgement; resolves once the movement is durable (or refused).
pub struct PendingAck(oneshot::Receiver<Result<Ack, LedgerError>>);

impl Future for PendingAck {
    type Output = Result<Ack, LedgerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|result| {
            result.unwrap_or_else(|_| {
                Err(LedgerError::Unavailable(
                    "the SKU actor stopped before answering".to_owned(),
                ))
            })
        })
    }
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) committer: Committer,
    pub(crate) options: LedgerOptions,
    pub(crate) registry: DashMap<Sku, Arc<SkuSlot>>,
    pub(crate) live_actors: AtomicU64,
    /// Earliest TTL-hold expiry per SKU (see `reaper`).
    pub(crate) reaper: Arc<reaper::Schedule>,
    /// Serialises requests that name the same reservation id (see `reservations`).
    pub(crate) reservation_locks: reservations::Locks,
}

impl Shared {
    /// Wall time from the ledger's injected clock, in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        self.options.clock.now_ms()
    }
}

/// The handle to the ledger: cheap to clone, shared by every ingest path and the API.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

impl Ledger {
    /// Starts the committer, the passivation sweeper and the hold reaper (which first reads
    /// the store's open TTL holds). SKU actors start on demand.
    pub fn start(
        store: Arc<dyn Store>,
        sink: Arc<dyn AvailabilitySink>,
        options: LedgerOptions,
    ) -> Self {
        let committer = Committer::start(store.clone(), sink, options.group_commit_max_batch);
        let shared = Arc::new(Shared {
            store,
            committer,
            options,
            registry: DashMap::new(),
            live_actors: AtomicU64::new(0),
            reaper: Arc::default(),
            reservation_locks: reservations::Locks::default(),
        });
        reaper::spawn(Arc::downgrade(&shared), shared.reaper.clone());
        let ledger = Self { shared };
        ledger.spawn_sweeper();
        ledger
    }

    /// Submits a movement. The cast into the SKU's mailbox happens before this returns, so
    /// movements submitted one after another reach their SKU in that order; await the
    /// returned [`PendingAck`] for durability.
    pub fn submit(&self, movement: Movement) -> PendingAck {
        self.submit_from(movement, None)
    }

    /// Like [`Ledger::submit`], and records `origin` (a Kafka partition's next offset) in
    /// the same durable write as the movement.
    pub fn submit_from(&self, movement: Movement, origin: Option<OffsetWatermark>) -> PendingAck {
        if self.is_bundle_movement(&movement) {
            // Bundles hold no stock: their movements become component movements. The
            // Kafka origin is not recorded for them; the batch commit still covers it.
            return self.submit_bundle(movement);
        }
        let (reply, receiver) = oneshot::channel();
        let sku = movement.sku.clone();
        self.send(
            &sku,
            SkuMessage::Apply {
                movement: Box::new(movement),
                origin,
                reply,
            },
        );
        PendingAck(receiver)
    }

    /// The current state of a SKU (loading it if passivated). Includes movements whose
    /// durable write is in flight; an empty state for a SKU never seen.
    pub async fn state(&self, sku: &Sku) -> Result<SkuState, LedgerError> {
        let (reply, receiver) = oneshot::channel();
        self.send(sku, SkuMessage::Read { reply });
        receiver
            .await
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("SKU actor stopped".to_owned())))
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

    /// SKU actors currently live.
    pub fn live_actors(&self) -> u64 {
        self.shared.live_actors.load(Ordering::Relaxed)
    }

    /// Whether the committer still accepts writes (false after a store failure).
    pub fn is_healthy(&self) -> bool {
        self.shared.committer.is_healthy()
    }

    /// The wall clock the ledger reads (hold expiry, passivation); the API and the app read
    /// the same one.
    pub fn clock(&self) -> &crate::clock::SharedClock {
        &self.shared.options.clock
    }

    /// Passivates every SKU actor and waits until all pending writes are durable.
    pub async fn shutdown(&self) {
        let skus: Vec<Sku> = self
            .shared
            .registry
            .iter()
            .map(|e| e.key().clone())
            .collect();
        for sku in skus {
            self.passivate(&sku, true);
        }
        for _ in 0..500 {
            if self.shared.registry.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.shared.committer.flush().await;
    }

    /// Sends to the SKU's actor, spawning it when absent. The registry entry stays locked
    /// while sending, which makes sending and passivation mutually exclusive: an actor only
    /// stops when it has handled every message counted in its slot.
    fn send(&self, sku: &Sku, message: SkuMessage) {
        let mut message = message;
        for _ in 0..3 {
            let result = match self.shared.registry.get(sku) {
                Some(slot) => Self::send_to(&slot, message),
                None => {
                    let slot = self
                        .shared
                        .registry
                        .entry(sku.clone())
                        .or_insert_with(|| self.spawn_actor(sku));
                    Self::send_to(&slot, message)
                }
            };
            match result {
                Ok(()) => return,
                Err(returned) => {
                    // The actor died (for example its load failed); start a new one.
                    message = returned;
                    self.shared.registry.remove(sku);
                }
            }
        }
        message.fail(LedgerError::Unavailable(format!(
            "SKU actor for {sku} keeps failing to start"
        )));
    }

    fn send_to(slot: &SkuSlot, message: SkuMessage) -> Result<(), SkuMessage> {
        slot.counters.sent.fetch_add(1, Ordering::AcqRel);
        match slot.actor.send_message(message) {
            Ok(()) => Ok(()),
            Err(ractor::MessagingErr::SendErr(returned)) => Err(returned),
            Err(_) => Ok(()),
        }
    }

    fn spawn_actor(&self, sku: &Sku) -> Arc<SkuSlot> {
        let handler = SkuActor {
            shared: Arc::downgrade(&self.shared),
        };
        let counters = Arc::new(SlotCounters::default());
        let args = SkuActorArgs {
            sku: sku.clone(),
            counters: counters.clone(),
        };
        let (actor, _join) = ractor::ActorRuntime::spawn_instant(None, handler, args)
            .expect("unnamed actors cannot clash");
        let live = self.shared.live_actors.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(crate::telemetry::LEDGER_LIVE_SKU_ACTORS).set(live as f64);
        Arc::new(SkuSlot { actor, counters })
    }

    /// Asks a SKU's actor to stop if it has processed everything sent to it and all its
    /// events are durable. With `force`, skips the idle-time check.
    fn passivate(&self, sku: &Sku, force: bool) {
        if let Some(slot) = self.shared.registry.get(sku) {
            let _ = Self::send_to(&slot, SkuMessage::Passivate { force });
        }
    }

    fn spawn_sweeper(&self) {
        let weak = Arc::downgrade(&self.shared);
        let idle_ms = self.shared.options.idle_passivate_secs.saturating_mul(1000);
        let period = Duration::from_millis((idle_ms / 4).clamp(50, 30_000));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            loop {
                interval.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let now = shared.now_ms();
                let idle: Vec<Sku> = shared
                    .registry
                    .iter()
                    .filter(|entry| now - entry.value().last_activity_ms() >= idle_ms as i64)
                    .map(|entry| entry.key().clone())
                    .collect();
                let ledger = Ledger { shared };
                for sku in idle {
                    ledger.passivate(&sku, false);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
