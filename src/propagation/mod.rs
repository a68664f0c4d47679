//! Propagation: turns durable availability changes into each channel's ATP and pushes it out,
//! one ractor actor per channel (DESIGN.md §3 rules 4–5, §4).
//!
//! Owns: [`Propagation`] (the [`AvailabilitySink`] the ledger publishes into), each channel's
//! coalescing queue keyed by listing (`queue`), its token bucket and retry backoff (`rate`),
//! and its actor (`actor`) that drains the queue through the channel's adapter.
//!
//! Flow: `publish` computes `channel_atp` for every channel that lists the SKU (for a
//! channel with locations of its own, such as a multi-location Shopify shop, divided into
//! one listing per location by [`split`]), upserts it into that channel's queue (a `Mutex`;
//! the newest ATP wins) and sends the actor a single `Wake` if none is pending, so the
//! unbounded ractor mailbox never holds more than one wake per channel plus one timer. The
//! actor takes batches (decreases first), paces them with its token bucket, pushes, and
//! handles every item's outcome:
//! - accepted: remembered (memory and store) as the channel's value; lag is recorded;
//! - conflict: the value read back becomes the expected value (`changeFromQuantity` of the
//!   next push). When the channel is *below* what we expected (it sold units we have not
//!   ingested yet), the listing is **held**: the difference minus the units the ledger
//!   reserved since our last acknowledged push (orders it already ingested) is the part
//!   still unexplained. Reservations, not ATP falls, explain a hold: a write-off or the
//!   undoing of a receipt lowers the ATP without being an order. A decrease (an ATP below the channel's value) is always
//!   pushed; an increase over the channel's value waits until the ledger has reserved the
//!   unexplained units (the orders arrived, by webhook or by the order poll the conflict
//!   wakes through [`ConflictListener`]), then goes out with the new expected value. A hold
//!   that nothing explains within the reconciliation settle window is classified by
//!   `reconcile` (manual edit or lost order), and its heal policy decides, visibly. Holds
//!   are bounded by the channel's listing count (one per listing). Any reservation counts
//!   as explanation, since availability changes do not say which channel's order caused
//!   them: another channel's sale of shared stock can explain a hold early, and an order
//!   that reaches us already shipped (no reservation) is left to reconciliation. A
//!   conflict where the channel is at or above what we expected (or unreadable) keeps the
//!   CAS grace period, then pushes over the value read;
//! - rejected: the listing is isolated, reported, and retried alone with backoff;
//! - deferred (another item of an all-or-nothing request failed): resent at once;
//! - retryable: backoff with full jitter; throttling pauses the whole channel.
//! - submitted (an Amazon feed, a bol.com process status the platform processes
//!   asynchronously): kept in flight by the actor, which goes on pushing other listings and
//!   asks the adapter for the result when a timer says it is due; the final outcome is then
//!   handled as above, for the listings whose newest push it was (see `actor`). At most
//!   `actor::MAX_SUBMISSIONS_IN_FLIGHT` per channel.
//!
//! Supervision (`supervisor`): each channel actor runs linked to a supervisor that restarts
//! it after a failure (a panic), with a backoff, what the channel holds reloaded from the
//! store, and its queue rebuilt from the ledger through the app's [`QueueRebuilder`].
//!
//! Several instances (issue 13 §4): a channel is pushed only by its leader. Propagation asks
//! a [`Leadership`] (implemented by `cluster`; without one this instance leads every
//! channel) before every wake and batch: a follower's queue keeps coalescing (newest ATP per
//! listing, bounded by the listing count) and nothing is pushed. The coordinator calls
//! [`Propagation::channel_gained`] (reload what the channel holds from the store, drop the
//! queue, rebuild it from the ledger through the [`QueueRebuilder`], then push what differs)
//! and [`Propagation::channel_lost`] (pushing stops; a push in flight may finish). Every
//! change carries its SKU's ledger `seq`; a change below the newest `seq` taken for the SKU
//! is dropped (`seq`), so a previous owner's late change never overwrites a newer one.
//!
//! Invariants: queues hold at most one entry per listing of their channel; a listing whose
//! ATP equals the channel's known value is not pushed; the `seq` filter remembers only listed
//! SKUs and bundle components; metric labels are `channel` and `outcome`/`error`, never a
//! SKU. One slow channel never delays another.
//!
//! Owns also: the [`Leadership`] trait and the `seq` filter.
//!
//! May depend on: `domain`, `store`, `channels`, `config`, `telemetry`. Never on `cluster`
//! (it implements [`Leadership`]).

mod actor;
mod push_log;
mod queue;
mod rate;
mod seq;
pub mod shadow;
pub mod split;
mod supervisor;

use crate::channels::{self, ChannelAdapter, ChannelError};
use crate::config::{ChannelConfig, ChannelKind, Config};
use crate::domain::{
    AtpBreakdown, AvailabilityChange, AvailabilitySink, ChannelStockRule, LocationLevel, Sku,
};
use crate::platforms::PlatformClients;
use crate::store::{Store, StoreError};
use crate::telemetry;
use actor::ChannelMessage;
use dashmap::DashMap;
use queue::CoalescingQueue;
use ractor::{Actor, ActorRef};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
pub use supervisor::QueueRebuilder;
use supervisor::{ChannelSupervisor, SupervisorMessage};

/// Default hold after a compare-and-set conflict, in milliseconds.
pub const DEFAULT_CAS_GRACE_MS: u64 = 2_000;

/// How long `shutdown` waits for each channel actor, in milliseconds.
const SHUTDOWN_WAIT_MS: u64 = 5_000;

/// Receives every new ATP a channel gets (for the Kafka ATP topic); called from `publish`,
/// so it must not block.
pub trait AtpObserver: Send + Sync + 'static {
    /// `channel` now offers `atp` units of `sku` (ledger sequence `seq`).
    fn atp_changed(&self, channel: &str, sku: &Sku, atp: u64, seq: u64);
}

/// Whether this instance leads (pushes to, polls and reconciles) a channel. With several
/// instances `cluster` implements it from its channel leases; without one, propagation
/// leads every channel. Asked on every wake and before every batch, so it must be cheap
/// and must not block.
pub trait Leadership: Send + Sync + 'static {
    /// True while this instance leads `channel`.
    fn leads(&self, channel: &str) -> bool;

    /// Which leadership of `channel` this is (the lease's epoch with several instances; 0
    /// while not led). A channel actor takes a channel over once per epoch: leading may
    /// lapse and come back under the same epoch (a renewal late on the clock, nobody else
    /// led meanwhile) and pushing then simply goes on. Default: 1 while led.
    fn lead_epoch(&self, channel: &str) -> u64 {
        u64::from(self.leads(channel))
    }
}

/// Told when a compare-and-set conflict shows a channel below what we expected (it sold
/// units we have not ingested): the app wakes the channel's order poller. Called from a
/// channel actor, so it must not block.
pub trait ConflictListener: Send + Sync + 'static {
    /// `channel` lowered `sku` itself; the listing is held until the ledger explains it.
    fn channel_lowered(&self, channel: &str, sku: &str);

    /// Whether an order poll of `channel` completed successfully after `since_ms` (ms since
    /// the Unix epoch); `None` when the channel has no order poller. Reconciliation uses it
    /// to tell a manual edit (the orders were read and explain nothing) from a lost order.
    fn orders_polled_since(&self, channel: &str, since_ms: i64) -> Option<bool> {
        let _ = (channel, since_ms);
        None
    }
}

/// A listing held after a compare-and-set conflict showed the channel below what we
/// expected (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeldListing {
    /// What we expected the channel to hold (`changeFromQuantity` of the conflicting push).
    pub expected: i64,
    /// What the channel held when it conflicted (the lowered value).
    pub observed: i64,
    /// The channel's value as we know it now (the lowered value, or a decrease we pushed since).
    pub channel_value: i64,
    /// Units of the channel's own decrease the ledger has not explained yet.
    pub unexplained: u64,
    /// When the hold started, in milliseconds since the Unix epoch.
    pub since_ms: i64,
}

/// Held listings: the public view and the ATP at which the drop accounting last ran.
#[derive(Clone, Debug)]
pub(crate) struct Hold {
    pub view: HeldListing,
    /// The SKU's reserved units when the accounting last ran; reservations since explain
    /// units.
    pub base_reserved: Option<u64>,
}

impl Hold {
    /// True when `pending` must wait: units are unexplained and it would raise the listing.
    pub fn blocks(&self, pending: &queue::Pending) -> bool {
        self.view.unexplained > pending.reservations_since(self.base_reserved)
            && i64::try_from(pending.atp).map_or(true, |atp| atp > self.view.channel_value)
    }
}

/// Counter of compare-and-set holds by `channel` and `outcome` (`held`: a conflict showed
/// the channel below what we expected; `explained`: the ledger explained it and the hold
/// ended; `released`: reconciliation ended it).
pub const PROPAGATION_CAS_HOLDS_TOTAL: &str = "stocksync_propagation_cas_holds_total";

/// Gauge of listings held after a compare-and-set conflict, by `channel`.
pub const PROPAGATION_HELD_LISTINGS: &str = "stocksync_propagation_held_listings";

/// Tuning that is not (yet) in the config file.
#[derive(Clone, Default)]
pub struct PropagationOptions {
    /// Hold after a CAS conflict before pushing over the channel's value, in milliseconds;
    /// `None` means [`DEFAULT_CAS_GRACE_MS`].
    pub cas_grace_ms: Option<u64>,
    /// Told about every changed ATP.
    pub atp_observer: Option<Arc<dyn AtpObserver>>,
    /// The stock rules to read (shared with the ledger and the config API); `None` builds
    /// them from the config.
    pub rules: Option<Arc<crate::domain::RulesCell>>,
    /// Wall time for acknowledgement times, time-boxed allocation rules and the push log;
    /// `None` uses the system clock.
    pub clock: Option<crate::clock::SharedClock>,
    /// The platform clients the adapters are built on (shared with the pollers); `None`
    /// builds them on the client passed to [`Propagation::start_with_options`].
    pub platforms: Option<Arc<PlatformClients>>,
    /// Told when a conflict shows a channel lowered a listing itself (wakes order polls).
    pub conflict_listener: Option<Arc<dyn ConflictListener>>,
    /// Which channels this instance leads (several instances); `None`: all of them.
    pub leadership: Option<Arc<dyn Leadership>>,
}

impl std::fmt::Debug for PropagationOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropagationOptions")
            .field("cas_grace_ms", &self.cas_grace_ms)
            .field("atp_observer", &self.atp_observer.is_some())
            .field("rules", &self.rules.is_some())
            .field("clock", &self.clock)
            .field("platforms", &self.platforms.is_some())
            .field("conflict_listener", &self.conflict_listener.is_some())
            .field("leadership", &self.leadership.is_some())
            .finish()
    }
}

/// Errors of propagation.
#[derive(Debug, thiserror::Error)]
pub enum PropagationError {
    /// A channel's adapter could not be built (config, listings file).
    #[error("channel {channel}: {source}")]
    Channel {
        /// Channel id.
        channel: String,
        /// The adapter's error.
        source: ChannelError,
    },
    /// The values last pushed could not be loaded.
    #[error("channel {channel}: cannot load pushed values: {source}")]
    Store {
        /// Channel id.
        channel: String,
        /// The store's error.
        source: StoreError,
    },
    /// A channel actor did not start.
    #[error("channel {channel}: actor did not start: {message}")]
    Spawn {
        /// Channel id.
        channel: String,
        /// ractor's message.
        message: String,
    },
    /// `flush` gave up with listings still waiting.
    #[error("flush timed out after {timeout_ms} ms with {pending} listing(s) still pending")]
    FlushTimeout {
        /// The timeout, in milliseconds.
        timeout_ms: u64,
        /// Listings still queued or in flight (isolated ones excluded).
        pending: usize,
    },
}

/// One channel's health, for the API and dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChannelStatus {
    /// Channel id.
    pub channel: String,
    /// The platform (`shopify`).
    pub kind: Option<ChannelKind>,
    /// Listings the channel maps.
    pub listings: usize,
    /// Listings waiting to be pushed (isolated ones included).
    pub queue_depth: usize,
    /// Listings in the request being sent now, or submitted and still processed by the
    /// platform (Amazon feeds, bol.com process statuses).
    pub in_flight: usize,
    /// Listings the channel refused permanently, retried alone with backoff.
    pub isolated: usize,
    /// Listing updates the channel acknowledged.
    pub accepted_total: u64,
    /// Compare-and-set conflicts (the channel changed a value itself).
    pub conflicts_total: u64,
    /// Listing updates the channel refused.
    pub rejected_total: u64,
    /// Failed requests (transport, 5xx, 401, malformed), throttling excluded.
    pub errors_total: u64,
    /// Throttled requests (429 or GraphQL `THROTTLED`).
    pub throttled_total: u64,
    /// Last acknowledged push, in milliseconds since the Unix epoch.
    pub last_success_at_ms: Option<i64>,
    /// Last error or refusal, with the time it happened (ms since the Unix epoch).
    pub last_error: Option<String>,
    /// When `last_error` happened, in milliseconds since the Unix epoch.
    pub last_error_at_ms: Option<i64>,
    /// Request-level failures in a row (throttling excluded); 0 after a success.
    pub consecutive_failures: u32,
    /// Times the channel's actor failed (panicked) and was restarted by its supervisor.
    pub restarts_total: u64,
    /// Whether this instance leads the channel (pushes to it); always true on a single
    /// instance.
    pub leading: bool,
}

/// What propagation knows about one listing, for reconciliation and echo recognition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListingSync {
    /// The value the channel last acknowledged.
    pub last_pushed: Option<u64>,
    /// When it was acknowledged (this process only), in milliseconds since the Unix epoch.
    pub last_pushed_at_ms: Option<i64>,
    /// The ATP waiting in the channel's queue, if any.
    pub queued: Option<u64>,
    /// The quantity of a push being sent now, or submitted and not processed yet (an
    /// Amazon feed, a bol.com process status), if any.
    pub in_flight: Option<u64>,
}

/// State shared between `publish`, the public API and one channel's actor.
pub(crate) struct ChannelShared {
    pub id: String,
    pub config: ChannelConfig,
    pub rule: ChannelStockRule,
    pub adapter: Arc<dyn ChannelAdapter>,
    /// The same adapter, typed: its mode and shadow report.
    pub shadow: Arc<shadow::ShadowAdapter>,
    pub store: Arc<dyn Store>,
    pub cas_grace: Duration,
    pub queue: Mutex<CoalescingQueue>,
    /// A `Wake` is in the mailbox and has not started yet.
    pub wake_queued: AtomicBool,
    pub in_flight: AtomicUsize,
    /// Items submitted and waiting for the platform's processing result.
    pub submitted: AtomicUsize,
    /// The value the channel last acknowledged, per SKU.
    pub pushed: DashMap<String, u64>,
    /// The ATP last computed, per SKU (to tell the observer only about changes).
    pub computed: DashMap<String, u64>,
    pub status: Mutex<ChannelStatus>,
    /// The channel actor now running (replaced by its supervisor after a failure).
    pub actor: Mutex<Option<ActorRef<ChannelMessage>>>,
    /// The actor's supervisor.
    pub supervisor: std::sync::OnceLock<ActorRef<SupervisorMessage>>,
    /// Rebuilds the queue from the ledger after a restart (shared by every channel).
    pub rebuilder: Arc<std::sync::OnceLock<Arc<dyn QueueRebuilder>>>,
    /// Quantities of the push being sent now or submitted, per SKU (echo recognition).
    pub in_flight_values: Mutex<HashMap<String, u64>>,
    /// When each value in `pushed` was acknowledged by this process, in ms since the epoch.
    pub pushed_at_ms: DashMap<String, i64>,
    /// The push audit log queue, when enabled.
    pub push_log: Option<push_log::PushLogSender>,
    /// Wall time (acknowledgement and error times).
    pub clock: crate::clock::SharedClock,
    /// Listings held after a conflict showed the channel below what we expected; at most
    /// one per listing. Lock order: `queue` before `holds`.
    pub holds: Mutex<HashMap<String, Hold>>,
    /// Told when a hold starts.
    pub listener: Option<Arc<dyn ConflictListener>>,
    /// Whether this instance leads the channel (`None`: always).
    pub leadership: Option<Arc<dyn Leadership>>,
}

impl ChannelShared {
    pub fn queue(&self) -> MutexGuard<'_, CoalescingQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn status(&self) -> MutexGuard<'_, ChannelStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while this instance leads the channel (pushes to it).
    pub fn leads(&self) -> bool {
        self.leadership
            .as_ref()
            .is_none_or(|leadership| leadership.leads(&self.id))
    }

    /// The epoch of this instance's leadership of the channel ([`Leadership::lead_epoch`]);
    /// 1 without several instances.
    pub fn lead_epoch(&self) -> u64 {
        self.leadership
            .as_ref()
            .map_or(1, |leadership| leadership.lead_epoch(&self.id))
    }

    /// Sends one `Wake` unless one is already waiting in the mailbox; nothing while another
    /// instance leads the channel (its queue only coalesces).
    pub fn wake(&self) {
        if !self.leads() || self.wake_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let sent = self
            .actor()
            .map(|actor| actor.send_message(ChannelMessage::Wake).is_ok());
        if sent != Some(true) {
            self.wake_queued.store(false, Ordering::Release);
        }
    }

    /// The channel actor now running, if any (none between a failure and its restart).
    pub fn actor(&self) -> Option<ActorRef<ChannelMessage>> {
        self.actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes the running actor.
    pub fn set_actor(&self, actor: Option<ActorRef<ChannelMessage>>) {
        *self.actor.lock().unwrap_or_else(PoisonError::into_inner) = actor;
    }

    /// What the channel is believed to hold, from the values it acknowledged (the store).
    pub async fn load_believed(&self) -> Result<HashMap<String, i64>, StoreError> {
        Ok(self
            .store
            .pushed(&self.id)
            .await?
            .into_iter()
            .filter(|record| self.adapter.is_mapped(&record.sku))
            .map(|record| {
                let value = i64::try_from(record.quantity).unwrap_or(i64::MAX);
                (record.sku, value)
            })
            .collect())
    }

    pub fn holds(&self) -> MutexGuard<'_, HashMap<String, Hold>> {
        self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Listings still to deliver: queued (not isolated, not held) plus in flight; 0 while
    /// another instance leads the channel (delivering is the leader's).
    fn pending(&self) -> usize {
        if !self.leads() {
            return 0;
        }
        let queue = self.queue();
        let held = {
            let holds = self.holds();
            if holds.is_empty() {
                0
            } else {
                queue.count_where(|sku, pending| {
                    !pending.isolated && holds.get(sku).is_some_and(|hold| hold.blocks(pending))
                })
            }
        };
        queue.len() - queue.isolated() - held
            + self.in_flight.load(Ordering::Acquire)
            + self.submitted.load(Ordering::Acquire)
    }

    /// Records the number of held listings.
    pub fn record_held(&self, held: usize) {
        metrics::gauge!(PROPAGATION_HELD_LISTINGS, "channel" => self.id.clone()).set(held as f64);
    }

    pub fn record_queue_depth(&self, depth: usize) {
        metrics::gauge!(telemetry::PROPAGATION_QUEUE_DEPTH, "channel" => self.id.clone())
            .set(depth as f64);
    }
}

/// Propagation of ATP to every configured channel. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Propagation {
    channels: Arc<Vec<Arc<ChannelShared>>>,
    observer: Option<Arc<dyn AtpObserver>>,
    stopped: Arc<AtomicBool>,
    push_log: Arc<tokio::sync::Mutex<Option<push_log::PushLogWriter>>>,
    /// The stock rules in force: every channel's ATP rule with the per-SKU overrides (ring
    /// fences need all channels) and the bills of materials; replaceable at runtime.
    rules: Arc<crate::domain::RulesCell>,
    /// Bundles: the newest levels of their components, from which `domain` derives theirs
    /// (see [`Self::publish`]).
    bundles: Arc<std::sync::Mutex<crate::domain::ComponentLevels>>,
    /// Wall time for time-boxed allocation rules.
    clock: crate::clock::SharedClock,
    /// Rebuilds a channel's queue from the ledger after its actor restarted.
    rebuilder: Arc<std::sync::OnceLock<Arc<dyn QueueRebuilder>>>,
    /// The newest ledger `seq` taken per listed SKU: an older change is dropped.
    seqs: Arc<Mutex<seq::SeqFilter>>,
}

impl std::fmt::Debug for Propagation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self
            .channels
            .iter()
            .map(|channel| channel.id.as_str())
            .collect();
        f.debug_struct("Propagation")
            .field("channels", &ids)
            .finish()
    }
}

impl Propagation {
    /// Builds every channel's adapter, loads the values last pushed from the store and starts
    /// one actor per channel.
    ///
    /// Errors: [`PropagationError::Channel`] (bad channel config or listings file),
    /// [`PropagationError::Store`], [`PropagationError::Spawn`].
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        client: reqwest::Client,
    ) -> Result<Self, PropagationError> {
        Self::start_with_options(config, store, client, PropagationOptions::default()).await
    }

    /// [`start`](Self::start) with options outside the config file (CAS grace, ATP observer).
    pub async fn start_with_options(
        config: &Config,
        store: Arc<dyn Store>,
        client: reqwest::Client,
        options: PropagationOptions,
    ) -> Result<Self, PropagationError> {
        let cas_grace = Duration::from_millis(options.cas_grace_ms.unwrap_or(DEFAULT_CAS_GRACE_MS));
        let clock = options.clock.clone().unwrap_or_else(crate::clock::system);
        let platform_clients = options
            .platforms
            .clone()
            .unwrap_or_else(|| Arc::new(PlatformClients::build(&config.channels, client.clone())));
        let (push_log, mut push_log_writer) =
            push_log::PushLogWriter::start(Arc::clone(&store), &config.audit, clock.clone());
        let rebuilder: Arc<std::sync::OnceLock<Arc<dyn QueueRebuilder>>> = Arc::default();
        let mut channels = Vec::with_capacity(config.channels.len());
        for channel in &config.channels {
            let adapter = match channels::build_adapter(channel, &platform_clients) {
                Ok(adapter) => Arc::from(adapter),
                Err(source) => {
                    stop_all(&channels).await;
                    push_log_writer.stop().await;
                    return Err(PropagationError::Channel {
                        channel: channel.id.clone(),
                        source,
                    });
                }
            };
            let shared = Self::start_channel(
                channel,
                adapter,
                Arc::clone(&store),
                cas_grace,
                Some(push_log.clone()),
                clock.clone(),
                options.conflict_listener.clone(),
                Arc::clone(&rebuilder),
                options.leadership.clone(),
            )
            .await;
            match shared {
                Ok(shared) => channels.push(shared),
                Err(error) => {
                    stop_all(&channels).await;
                    push_log_writer.stop().await;
                    return Err(error);
                }
            }
        }
        Ok(Self {
            channels: Arc::new(channels),
            observer: options.atp_observer,
            stopped: Arc::new(AtomicBool::new(false)),
            push_log: Arc::new(tokio::sync::Mutex::new(Some(push_log_writer))),
            rules: options.rules.clone().unwrap_or_else(|| {
                // `Config::validate` rejects a bad BOM, so an error here means an unvalidated
                // config: propagate no bundles rather than guess.
                Arc::new(crate::domain::RulesCell::new(
                    config.rules().unwrap_or_default(),
                ))
            }),
            bundles: Arc::default(),
            clock,
            rebuilder,
            seqs: Arc::default(),
        })
    }

    /// Starts propagation over adapters built elsewhere (tests, simulation).
    #[cfg(test)]
    pub(crate) async fn start_with_adapters(
        channels: Vec<(ChannelConfig, Arc<dyn ChannelAdapter>)>,
        store: Arc<dyn Store>,
        options: PropagationOptions,
    ) -> Result<Self, PropagationError> {
        let cas_grace = Duration::from_millis(options.cas_grace_ms.unwrap_or(DEFAULT_CAS_GRACE_MS));
        let clock = options.clock.clone().unwrap_or_else(crate::clock::system);
        let rebuilder: Arc<std::sync::OnceLock<Arc<dyn QueueRebuilder>>> = Arc::default();
        let mut started = Vec::new();
        let policy = crate::domain::AllocationPolicy {
            channels: channels
                .iter()
                .map(|(channel, _)| channel.stock_rule())
                .collect(),
            ..Default::default()
        };
        for (channel, adapter) in channels {
            started.push(
                Self::start_channel(
                    &channel,
                    adapter,
                    Arc::clone(&store),
                    cas_grace,
                    None,
                    clock.clone(),
                    options.conflict_listener.clone(),
                    Arc::clone(&rebuilder),
                    options.leadership.clone(),
                )
                .await?,
            );
        }
        Ok(Self {
            channels: Arc::new(started),
            observer: options.atp_observer,
            stopped: Arc::new(AtomicBool::new(false)),
            push_log: Arc::new(tokio::sync::Mutex::new(None)),
            rules: Arc::new(crate::domain::RulesCell::new(crate::domain::Rules {
                allocation: policy,
                ..Default::default()
            })),
            bundles: Arc::default(),
            clock,
            rebuilder,
            seqs: Arc::default(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_channel(
        channel: &ChannelConfig,
        adapter: Arc<dyn ChannelAdapter>,
        store: Arc<dyn Store>,
        cas_grace: Duration,
        push_log: Option<push_log::PushLogSender>,
        clock: crate::clock::SharedClock,
        listener: Option<Arc<dyn ConflictListener>>,
        rebuilder: Arc<std::sync::OnceLock<Arc<dyn QueueRebuilder>>>,
        leadership: Option<Arc<dyn Leadership>>,
    ) -> Result<Arc<ChannelShared>, PropagationError> {
        let id = channel.id.clone();
        let pushed_records = store
            .pushed(&id)
            .await
            .map_err(|source| PropagationError::Store {
                channel: id.clone(),
                source,
            })?;
        let pushed: DashMap<String, u64> = pushed_records
            .into_iter()
            .filter(|record| adapter.is_mapped(&record.sku))
            .map(|record| (record.sku, record.quantity))
            .collect();
        let believed: HashMap<String, i64> = pushed
            .iter()
            .map(|entry| {
                (
                    entry.key().clone(),
                    i64::try_from(*entry.value()).unwrap_or(i64::MAX),
                )
            })
            .collect();
        let status = ChannelStatus {
            channel: id.clone(),
            kind: Some(channel.kind()),
            listings: adapter.listing_count(),
            ..ChannelStatus::default()
        };
        let shadow = Arc::new(shadow::ShadowAdapter::new(
            adapter,
            channel.mode == crate::config::ChannelMode::Shadow,
            clock.clone(),
        ));
        let shared = Arc::new(ChannelShared {
            id: id.clone(),
            rule: channel.stock_rule(),
            config: channel.clone(),
            adapter: Arc::clone(&shadow) as Arc<dyn ChannelAdapter>,
            shadow,
            store,
            cas_grace,
            queue: Mutex::new(CoalescingQueue::default()),
            wake_queued: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            submitted: AtomicUsize::new(0),
            pushed,
            computed: DashMap::new(),
            status: Mutex::new(status),
            actor: Mutex::new(None),
            supervisor: std::sync::OnceLock::new(),
            rebuilder,
            in_flight_values: Mutex::new(HashMap::new()),
            pushed_at_ms: DashMap::new(),
            push_log,
            clock,
            holds: Mutex::new(HashMap::new()),
            listener,
            leadership,
        });
        let (supervisor, _handle) =
            Actor::spawn(None, ChannelSupervisor, (Arc::clone(&shared), believed))
                .await
                .map_err(|error| PropagationError::Spawn {
                    channel: id.clone(),
                    message: error.to_string(),
                })?;
        let _ = shared.supervisor.set(supervisor);
        shared.record_queue_depth(0);
        tracing::info!(channel = %id, listings = shared.adapter.listing_count(), "channel propagation started");
        Ok(shared)
    }

    fn channel(&self, id: &str) -> Option<&Arc<ChannelShared>> {
        self.channels.iter().find(|channel| channel.id == id)
    }

    /// The value `channel` last acknowledged for `sku` (survives restarts via the store).
    pub fn last_pushed(&self, channel: &str, sku: &str) -> Option<u64> {
        self.channel(channel)?.pushed.get(sku).map(|value| *value)
    }

    /// Which SKU `channel`'s own listing id names at its location `location_id` (through the
    /// channel's adapter); [`channels::ListingMatch::Unmapped`] for an unknown channel.
    pub fn listing_sku(
        &self,
        channel: &str,
        listing_id: &str,
        location_id: &str,
    ) -> channels::ListingMatch {
        self.channel(channel)
            .map_or(channels::ListingMatch::Unmapped, |shared| {
                shared.adapter.listing_sku(listing_id, location_id)
            })
    }

    /// What `channel` lists for the listing `listing` (a SKU, or a per-location key
    /// `SKU@ID` of a channel with [`channels::ChannelAdapter::listing_locations`]) when the
    /// SKU has these location levels: the channel's ATP, or its part at that location
    /// ([`split`]). `None` for an unknown channel or a location the channel does not have.
    pub fn listing_atp(
        &self,
        channel: &str,
        listing: &str,
        levels: &[LocationLevel],
    ) -> Option<u64> {
        let shared = self.channel(channel)?;
        let total = crate::domain::channel_atp(levels, &shared.rule).atp;
        if shared.adapter.listing_locations().is_empty() {
            return Some(total);
        }
        let sku = split::split_listing_key(listing).0;
        self.listing_parts(channel, sku, levels, total)
            .into_iter()
            .find(|(_, key, _)| key == listing)
            .map(|(_, _, part)| part)
    }

    /// The per-location listings of `sku` on `channel` when the channel lists stock per
    /// location: (location, listing key, part of `total`, the channel's ATP) in config
    /// order, for a SKU with these levels. Empty for other channels (and unknown ones).
    pub fn listing_parts(
        &self,
        channel: &str,
        sku: &str,
        levels: &[LocationLevel],
        total: u64,
    ) -> Vec<(channels::ListingLocation, String, u64)> {
        let Some(shared) = self.channel(channel) else {
            return Vec::new();
        };
        let locations = shared.adapter.listing_locations();
        if locations.is_empty() || !shared.adapter.is_mapped(sku) {
            return Vec::new();
        }
        split::divide_for(total, levels, locations)
            .into_iter()
            .map(|(location, part)| {
                (
                    location.clone(),
                    split::listing_key(sku, &location.id),
                    part,
                )
            })
            .collect()
    }

    /// The SKU a listing key names (`SKU@ID` → `SKU` on a channel with per-location
    /// listings; the key itself otherwise).
    pub fn listing_key_sku<'a>(&self, channel: &str, listing: &'a str) -> &'a str {
        match self.channel(channel) {
            Some(shared) if !shared.adapter.listing_locations().is_empty() => {
                split::split_listing_key(listing).0
            }
            _ => listing,
        }
    }

    /// What `channel` would list for a SKU with these location levels, with the breakdown;
    /// `None` for an unknown channel.
    pub fn atp_for(&self, channel: &str, levels: &[LocationLevel]) -> Option<AtpBreakdown> {
        Some(crate::domain::channel_atp(
            levels,
            &self.channel(channel)?.rule,
        ))
    }

    /// Channel ids, in config order.
    pub fn channel_ids(&self) -> Vec<String> {
        self.channels
            .iter()
            .map(|channel| channel.id.clone())
            .collect()
    }

    /// Every channel's health.
    pub fn channel_status(&self) -> Vec<ChannelStatus> {
        self.channels
            .iter()
            .map(|channel| {
                let (depth, isolated) = {
                    let queue = channel.queue();
                    (queue.len(), queue.isolated())
                };
                let mut status = channel.status().clone();
                status.queue_depth = depth;
                status.isolated = isolated;
                status.in_flight = channel.in_flight.load(Ordering::Acquire)
                    + channel.submitted.load(Ordering::Acquire);
                status.leading = channel.leads();
                status
            })
            .collect()
    }

    /// What propagation knows about `sku` on `channel` (last ack and its time, queued and
    /// in-flight values); `None` for an unknown channel.
    pub fn listing_sync(&self, channel: &str, sku: &str) -> Option<ListingSync> {
        let shared = self.channel(channel)?;
        let queued = shared.queue().atp_of(sku);
        let in_flight = shared
            .in_flight_values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sku)
            .copied();
        Some(ListingSync {
            last_pushed: shared.pushed.get(sku).map(|value| *value),
            last_pushed_at_ms: shared.pushed_at_ms.get(sku).map(|at| *at),
            queued,
            in_flight,
        })
    }

    /// True when `channel` has a listing for `sku`.
    pub fn is_mapped(&self, channel: &str, sku: &str) -> bool {
        self.channel(channel)
            .is_some_and(|shared| shared.adapter.is_mapped(sku))
    }

    /// SKUs with a value acknowledged by `channel` (what periodic reconciliation reads
    /// back), ascending.
    pub fn pushed_skus(&self, channel: &str) -> Vec<String> {
        let mut skus: Vec<String> = self
            .channel(channel)
            .map(|shared| shared.pushed.iter().map(|e| e.key().clone()).collect())
            .unwrap_or_default();
        skus.sort();
        skus
    }

    /// The adapter of `channel` (to read its levels back).
    pub fn adapter(&self, channel: &str) -> Option<Arc<dyn ChannelAdapter>> {
        self.channel(channel)
            .map(|shared| Arc::clone(&shared.adapter))
    }

    /// Forces a re-push of `atp` to `channel`'s listing of `sku`, with compare-and-set on
    /// `channel_value` (what the channel reported; `None` opts out of the check), even if
    /// propagation believes the channel already holds `atp`. Used by reconciliation to heal.
    /// Returns false for an unknown channel, an unmapped SKU, or a stopped propagation.
    pub fn repush(&self, channel: &str, sku: &str, channel_value: Option<i64>, atp: u64) -> bool {
        if self.stopped.load(Ordering::Acquire) || !self.is_mapped(channel, sku) {
            return false;
        }
        let Some(actor) = self.channel(channel).and_then(|shared| shared.actor()) else {
            return false;
        };
        actor
            .send_message(ChannelMessage::Repush {
                sku: sku.to_owned(),
                channel_value,
                atp,
            })
            .is_ok()
    }

    /// The hold of `sku` on `channel`, if a conflict left it held (see the module docs).
    pub fn held(&self, channel: &str, sku: &str) -> Option<HeldListing> {
        self.channel(channel)?
            .holds()
            .get(sku)
            .map(|hold| hold.view.clone())
    }

    /// Every held listing of `channel`, by SKU ascending.
    pub fn held_listings(&self, channel: &str) -> Vec<(String, HeldListing)> {
        let mut held: Vec<(String, HeldListing)> = self
            .channel(channel)
            .map(|shared| {
                shared
                    .holds()
                    .iter()
                    .map(|(sku, hold)| (sku.clone(), hold.view.clone()))
                    .collect()
            })
            .unwrap_or_default();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        held
    }

    /// Ends the hold of `sku` on `channel` (reconciliation's heal policy decided) and
    /// returns it; the listing's queued ATP goes out at the next wake.
    pub fn release_hold(&self, channel: &str, sku: &str) -> Option<HeldListing> {
        let shared = self.channel(channel)?;
        let (released, held) = {
            let mut holds = shared.holds();
            (holds.remove(sku), holds.len())
        };
        if released.is_some() {
            shared.record_held(held);
            metrics::counter!(PROPAGATION_CAS_HOLDS_TOTAL, "channel" => shared.id.clone(), "outcome" => "released").increment(1);
            shared.wake();
        }
        released.map(|hold| hold.view)
    }

    /// Whether an order poll of `channel` completed after `since_ms`, as the
    /// [`ConflictListener`] knows; `None` without a listener or poller.
    pub fn orders_polled_since(&self, channel: &str, since_ms: i64) -> Option<bool> {
        self.channel(channel)?
            .listener
            .as_ref()?
            .orders_polled_since(channel, since_ms)
    }

    /// Listings still to deliver across channels (queued or in flight; isolated and held
    /// ones excluded).
    pub fn pending(&self) -> usize {
        self.channels.iter().map(|channel| channel.pending()).sum()
    }

    /// Waits until every queue is delivered (isolated and held listings excepted) or
    /// `timeout` passes.
    ///
    /// Errors: [`PropagationError::FlushTimeout`] with the number still pending.
    pub async fn flush(&self, timeout: Duration) -> Result<(), PropagationError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending = self.pending();
            if pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PropagationError::FlushTimeout {
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    pending,
                });
            }
            for channel in self.channels.iter() {
                channel.wake();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every channel actor (call [`flush`](Self::flush) first to deliver what is
    /// queued); later `publish` calls are ignored.
    pub async fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        stop_all(&self.channels).await;
        if let Some(mut writer) = self.push_log.lock().await.take() {
            writer.stop().await;
        }
    }
}

async fn stop_all(channels: &[Arc<ChannelShared>]) {
    for channel in channels {
        let wait = Some(Duration::from_millis(SHUTDOWN_WAIT_MS));
        // The actor first: a clean stop is not restarted by the supervisor.
        if let Some(actor) = channel.actor()
            && let Err(error) = actor.stop_and_wait(Some("shutdown".to_owned()), wait).await
        {
            tracing::warn!(channel = %channel.id, error = %error, "channel actor did not stop cleanly");
        }
        if let Some(supervisor) = channel.supervisor.get()
            && let Err(error) = supervisor
                .stop_and_wait(Some("shutdown".to_owned()), wait)
                .await
        {
            tracing::warn!(channel = %channel.id, error = %error, "channel supervisor did not stop cleanly");
        }
        channel.set_actor(None);
    }
}

impl Propagation {
    /// Sets what rebuilds a channel's queue from the ledger after its actor failed and was
    /// restarted (the app's, once the ledger runs). Only the first call counts.
    pub fn set_rebuilder(&self, rebuilder: Arc<dyn QueueRebuilder>) {
        let _ = self.rebuilder.set(rebuilder);
    }

    /// Whether this instance leads `channel` (pushes to it, polls it and reconciles it):
    /// always true without a [`Leadership`]; false for an unknown channel.
    pub fn leads(&self, channel: &str) -> bool {
        self.channel(channel).is_some_and(|shared| shared.leads())
    }

    /// This instance has just become `channel`'s leader (the coordinator calls it once the
    /// channel's lease is held, so [`Leadership::leads`] already says so): the channel's
    /// actor reloads what the channel holds from the store (the previous leader recorded
    /// every acknowledged push there), drops its queue and has it rebuilt from the ledger
    /// through the [`QueueRebuilder`] (every listing's ATP re-derived, so a failover loses
    /// no pending change), then pushes what differs, with compare-and-set where the
    /// channel has it. Unknown channels are ignored.
    pub fn channel_gained(&self, channel: &str) {
        let Some(shared) = self.channel(channel) else {
            return;
        };
        tracing::info!(
            channel,
            "leading the channel: reloading its values and rebuilding its queue"
        );
        match shared.actor() {
            Some(actor) => {
                if actor.send_message(ChannelMessage::Lead).is_err() {
                    tracing::warn!(
                        channel,
                        "channel actor gone; its supervisor rebuilds the queue on restart"
                    );
                }
            }
            // Between a failure and its restart: the restart reloads and rebuilds.
            None => tracing::debug!(channel, "no channel actor now; the restart rebuilds"),
        }
    }

    /// The shadow-mode comparison of `channel` (its `limit` largest differences); `None`
    /// for an unknown channel.
    pub fn shadow_report(&self, channel: &str, limit: usize) -> Option<shadow::ShadowReport> {
        self.channel(channel)
            .map(|shared| shared.shadow.report(&shared.id, limit))
    }

    /// Switches `channel` between live and shadow on this instance. Going live re-derives
    /// every listing from the ledger, so each listing whose ATP differs from what the
    /// channel lists is pushed once, with compare-and-set on the value the shadow read.
    /// Returns whether the mode changed; `None` for an unknown channel.
    pub fn set_mode(&self, channel: &str, mode: crate::config::ChannelMode) -> Option<bool> {
        let shared = self.channel(channel)?;
        let live = mode == crate::config::ChannelMode::Live;
        let changed = shared.shadow.set_live(live);
        if changed {
            tracing::info!(channel, ?mode, "channel mode changed");
            if live {
                self.resync(channel);
            }
        }
        Some(changed)
    }

    /// Re-derives every listing of `channel` from the ledger into its queue (through the
    /// [`QueueRebuilder`]) without dropping the queue or reloading the pushed values; what
    /// is already listed is not pushed again. The coordinator calls it a few heartbeats
    /// after this instance took the channel: by then every instance sends its SKUs' changes
    /// here, and a change an owner still sent to the previous leader in between is not
    /// lost. Does nothing unless this instance leads `channel`; unknown channels are
    /// ignored.
    pub fn resync(&self, channel: &str) {
        let Some(shared) = self.channel(channel) else {
            return;
        };
        if !shared.leads() {
            return;
        }
        if let Some(rebuilder) = shared.rebuilder.get() {
            tracing::debug!(
                channel,
                "re-deriving the channel's listings from the ledger"
            );
            rebuilder.rebuild(&shared.id);
        }
    }

    /// Wakes `channel`'s actor so that it pushes what is queued (the coordinator calls it
    /// when leading had lapsed on the clock and a renewal under the same epoch brought it
    /// back). Unknown channels are ignored.
    pub fn wake_channel(&self, channel: &str) {
        if let Some(shared) = self.channel(channel) {
            shared.wake();
        }
    }

    /// Another instance leads `channel` now (the coordinator calls it once the lease is
    /// released or lost, so [`Leadership::leads`] already says no): nothing more is pushed
    /// from here (a push in flight may finish); the queue goes on keeping the newest ATP per
    /// listing, bounded by the listing count. Unknown channels are ignored.
    pub fn channel_lost(&self, channel: &str) {
        if let Some(shared) = self.channel(channel) {
            tracing::info!(
                channel,
                queued = shared.queue().len(),
                "no longer leading the channel: pushing stops"
            );
        }
    }

    /// [`AvailabilitySink::publish`] into one channel's queue only (rebuilding it after a
    /// restart); unknown channels are ignored.
    pub fn publish_to(&self, channel: &str, changes: &[AvailabilityChange]) {
        self.publish_into(changes, Some(channel));
    }

    fn publish_into(&self, changes: &[AvailabilityChange], only: Option<&str>) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let now = tokio::time::Instant::now();
        let now_ms = self.clock.now_ms();
        let rules = self.rules.get();
        // Never an older availability of a SKU after a newer one (see `seq`).
        let fresh: Vec<AvailabilityChange>;
        let changes = {
            let mut seqs = self.seqs.lock().unwrap_or_else(PoisonError::into_inner);
            let admitted: Vec<bool> = changes
                .iter()
                .map(|change| {
                    let sku = change.sku.as_str();
                    let tracked = self
                        .channels
                        .iter()
                        .any(|channel| channel.adapter.is_mapped(sku))
                        || rules.bom.bundles_containing(&change.sku).next().is_some();
                    seqs.admit(sku, change.seq, tracked)
                })
                .collect();
            drop(seqs);
            let stale = admitted.iter().filter(|taken| !**taken).count();
            if stale == 0 {
                changes
            } else {
                metrics::counter!(telemetry::PROPAGATION_STALE_CHANGES_TOTAL)
                    .increment(stale as u64);
                fresh = changes
                    .iter()
                    .zip(&admitted)
                    .filter(|(_, taken)| **taken)
                    .map(|(change, _)| change.clone())
                    .collect();
                &fresh[..]
            }
        };
        let bundle_changes = if rules.bom.is_empty() {
            Vec::new()
        } else {
            self.bundles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .derive(&rules.bom, changes)
        };
        let changes: Vec<&AvailabilityChange> = changes.iter().chain(&bundle_changes).collect();
        let allocations: Vec<Vec<AtpBreakdown>> = changes
            .iter()
            .map(|change| rules.allocation.allocate(change, now_ms))
            .collect();
        for channel in self
            .channels
            .iter()
            .filter(|channel| only.is_none_or(|id| channel.id == id))
        {
            let mut queued = false;
            let depth = {
                let mut queue = channel.queue();
                let listing_locations = channel.adapter.listing_locations();
                for (change, atps) in changes.iter().zip(&allocations) {
                    let sku = change.sku.as_str();
                    if !channel.adapter.is_mapped(sku) {
                        continue;
                    }
                    let Some(atp) = atps
                        .iter()
                        .find(|breakdown| breakdown.channel == channel.id)
                        .map(|breakdown| breakdown.atp)
                    else {
                        continue;
                    };
                    if let Some(observer) = &self.observer {
                        let previous = channel.computed.insert(sku.to_owned(), atp);
                        if previous != Some(atp) {
                            observer.atp_changed(&channel.id, &change.sku, atp, change.seq);
                        }
                    }
                    if listing_locations.is_empty() {
                        let reserved = change
                            .locations
                            .iter()
                            .map(|level| u64::try_from(level.reserved).unwrap_or(0))
                            .fold(0u64, u64::saturating_add);
                        queue.upsert_levels(sku, atp, Some(reserved), now);
                    } else {
                        for (location, part) in
                            split::divide_for(atp, &change.locations, listing_locations)
                        {
                            let reserved = split::reserved(&change.locations, &location.feeds);
                            let key = split::listing_key(sku, &location.id);
                            queue.upsert_levels(&key, part, Some(reserved), now);
                        }
                    }
                    queued = true;
                }
                queue.len()
            };
            if queued {
                channel.record_queue_depth(depth);
                channel.wake();
            }
        }
    }
}

impl AvailabilitySink for Propagation {
    fn publish(&self, changes: &[AvailabilityChange]) {
        self.publish_into(changes, None);
    }
}

#[cfg(test)]
mod tests;
