//! Reconciliation: finds where a channel has drifted from what we pushed and from the
//! ledger, classifies it, heals it by re-pushing when configured, and raises alerts
//! (DESIGN.md §3 rules 6–7).
//!
//! Owns: the [`Reconciler`] (periodic read-back of every channel through
//! `ChannelAdapter::read_levels`, paced by the adapter's platform quota
//! (`ChannelAdapter::read_quota`, see `read_paced`), and real-time Shopify `inventory_levels/update` reports),
//! the pure classification ([`classify`]), the memory of what each channel last reported and
//! of open discrepancies (bounded by the channels' listing counts plus
//! [`MAX_UNKNOWN_LISTINGS`]), and alerting ([`alerts`]).
//!
//! How a reported value is judged:
//! 1. equal to a push in flight or queued, or to our last acknowledged push within
//!    `reconcile.echo_window_ms`: our own echo, nothing happens (rule 6);
//! 2. equal to the last push (older) or to the ledger's ATP: in sync;
//! 3. otherwise the difference must survive `reconcile.settle_ms` (an order the channel took
//!    is usually ingested within it: healing before would overwrite the channel's own
//!    decrement, rule 5); then it is re-read and classified: in flight (work pending or the
//!    ledger moved meanwhile), lost update (the channel went back to the value before our
//!    acknowledged push), manual edit (anything else), or unknown listing (not mapped);
//! 4. manual edits and lost updates are healed with `Propagation::repush`, compare-and-set
//!    on the reported value, when `reconcile.heal = true`; every discrepancy but "in flight"
//!    raises an alert.
//!
//! Held listings (issue 9 §4): when a compare-and-set conflict showed a channel lowered a
//! listing itself, propagation holds increases over the channel's value until the ledger
//! has reserved the missing units (see `propagation`). A task checks the holds every
//! `reconcile.settle_ms`; a hold older than the settle window is classified: **manual
//! edit** when an order poll of the channel succeeded after the hold began (the shop's
//! orders were read and explain nothing), **lost order** otherwise (no poller, or none
//! succeeded since). A hold whose channel value now equals the ledger's ATP is released
//! without a discrepancy: the order reached the ledger already shipped (a POS sale is sold
//! and fulfilled in one step, so no reservation ever explained the hold). The heal policy decides, and says so in the push log (a `hold_released`
//! or `hold_kept` entry with 0 requests), the `stocksync_reconcile_discrepancies_total`
//! metric and the discrepancy record: with `reconcile.heal = true` a manual edit ends the
//! hold and re-pushes the ledger's ATP with compare-and-set on the channel's value; a lost
//! order (or any hold with `heal = false`) keeps the listing at the channel's lower value
//! and raises an alert (critical for a lost order). The generic settle path leaves held
//! listings to this task.
//!
//! Several instances: only a channel's leader reconciles it (`Propagation::leads`,
//! checked on every tick and report); a follower's propagation pushes nothing, so what it
//! knows of the channel is not the channel's.
//!
//! Wall time (report and detection times, time since our last push) comes from the
//! [`SharedClock`] the app passes; the settle wait is a tokio timer, so tests drive both
//! with tokio's paused clock.
//!
//! May depend on: `clock`, `domain`, `store`, `channels`, `config`, `telemetry`,
//! `platforms::quota` (through the adapters), and the public API of `propagation`. The ledger is reached through [`LedgerAtp`], which the app implements.

pub mod alerts;
mod classify;
#[cfg(test)]
mod tests;

pub use classify::{DiscrepancyClass, Observation, Verdict, classify};

use crate::channels::{ChannelAdapter, ListingMatch};
use crate::clock::SharedClock;
use crate::config::{Config, ReconcileConfig};
use crate::propagation::Propagation;
use crate::store::{PushLogQuery, PushLogRecord, Store};
use crate::telemetry;
use alerts::{Alert, AlertKind, Alerter, Severity};
use async_trait::async_trait;
use dashmap::DashMap;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Unknown listings remembered (reported by a channel but not mapped) before new ones are
/// only counted.
pub const MAX_UNKNOWN_LISTINGS: usize = 10_000;

/// Real-time reports waiting to be judged before new ones are dropped (and counted).
const REPORT_QUEUE: usize = 4_096;

/// The shortest period of the held-listing check, in milliseconds.
const HELD_CHECK_MIN_MS: u64 = 100;

/// The ledger as reconciliation needs it; the app implements it over `ledger::Ledger`.
#[async_trait]
pub trait LedgerAtp: Send + Sync + 'static {
    /// The ATP `channel` should list for `sku` now, with the SKU's ledger sequence number.
    ///
    /// Errors: a message when the ledger cannot answer (store failure).
    async fn atp(&self, channel: &str, sku: &str) -> Result<LedgerReading, String>;
}

/// One ledger read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerReading {
    /// The channel's ATP.
    pub atp: u64,
    /// The SKU's sequence number (a change means the ledger moved).
    pub seq: u64,
}

/// Where a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportSource {
    /// The periodic read-back.
    Periodic,
    /// A channel webhook (`inventory_levels/update`).
    Webhook,
}

/// What a channel last reported for a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelReport {
    /// The value reported (`None`: not stocked there).
    pub value: Option<i64>,
    /// When, in milliseconds since the Unix epoch.
    pub reported_at_ms: i64,
    /// How.
    pub source: ReportSource,
}

/// One discrepancy found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    /// Channel id.
    pub channel: String,
    /// Our SKU, or the channel's listing id for an unknown listing.
    pub sku: String,
    /// The class.
    pub class: DiscrepancyClass,
    /// What the channel reported.
    pub channel_value: Option<i64>,
    /// What the channel last acknowledged from us.
    pub last_pushed: Option<u64>,
    /// The ledger's ATP for the channel when classified.
    pub ledger_atp: Option<u64>,
    /// How it was found.
    pub source: ReportSource,
    /// When it was classified, in milliseconds since the Unix epoch.
    pub detected_at_ms: i64,
    /// A re-push was issued to heal it.
    pub heal_requested: bool,
}

struct LevelReport {
    channel: String,
    item: String,
    location: String,
    available: Option<i64>,
}

struct Inner {
    config: ReconcileConfig,
    propagation: Propagation,
    ledger: Arc<dyn LedgerAtp>,
    store: Arc<dyn Store>,
    alerter: Alerter,
    reports: DashMap<(String, String), ChannelReport>,
    open: DashMap<(String, String), Discrepancy>,
    clock: SharedClock,
}

/// The running reconciler. Cheap to clone; [`shutdown`](Self::shutdown) stops its tasks.
#[derive(Clone)]
pub struct Reconciler {
    inner: Arc<Inner>,
    reports: mpsc::Sender<LevelReport>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("interval_ms", &self.inner.config.interval_ms)
            .field("heal", &self.inner.config.heal)
            .finish()
    }
}

/// Runs one step of a reconciler task under supervision: a panic is logged and counted
/// (`stocksync_actor_restarts_total{actor = "reconciler"}`) and the task goes on with the
/// next channel and tick (its state is re-read from propagation and the ledger on every
/// pass) instead of dying. `None` when the step panicked.
async fn supervised<T>(channel: &str, step: impl std::future::Future<Output = T>) -> Option<T> {
    match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(step)).await {
        Ok(value) => Some(value),
        Err(panic) => {
            let message = telemetry::panic_message(panic.as_ref());
            tracing::error!(channel = %channel, panic = %message, "reconciliation step panicked; the reconciler goes on");
            metrics::counter!(telemetry::ACTOR_RESTARTS_TOTAL, "actor" => "reconciler")
                .increment(1);
            None
        }
    }
}

impl Reconciler {
    /// Starts the periodic pass (one task, every channel each `reconcile.interval_ms`) and the
    /// real-time report task. A channel's own listing ids in its reports are mapped back to
    /// SKUs through its adapter ([`Propagation::listing_sku`]). Wall time is read from
    /// `clock`.
    pub fn start(
        config: &Config,
        propagation: Propagation,
        ledger: Arc<dyn LedgerAtp>,
        store: Arc<dyn Store>,
        alerter: Alerter,
        clock: SharedClock,
    ) -> Self {
        let inner = Arc::new(Inner {
            config: config.reconcile.clone(),
            propagation,
            ledger,
            store,
            alerter,
            reports: DashMap::new(),
            open: DashMap::new(),
            clock,
        });
        let (sender, mut receiver) = mpsc::channel::<LevelReport>(REPORT_QUEUE);
        let mut tasks = Vec::new();
        let periodic = Arc::clone(&inner);
        tasks.push(tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(periodic.config.interval_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                for channel in periodic.propagation.channel_ids() {
                    // Several instances: only the channel's leader reads it back.
                    if !periodic.propagation.leads(&channel) {
                        continue;
                    }
                    let pass = supervised(&channel, periodic.reconcile_channel(&channel)).await;
                    let outcome = match pass {
                        Some(Ok(_)) => "ok",
                        Some(Err(error)) => {
                            tracing::warn!(channel = %channel, error = %error, "reconciliation pass failed");
                            "error"
                        }
                        None => "error",
                    };
                    metrics::counter!(telemetry::RECONCILE_RUNS_TOTAL, "channel" => channel, "outcome" => outcome).increment(1);
                }
            }
        }));
        let held = Arc::clone(&inner);
        tasks.push(tokio::spawn(async move {
            let period = Duration::from_millis(held.config.settle_ms.max(HELD_CHECK_MIN_MS));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for channel in held.propagation.channel_ids() {
                    if !held.propagation.leads(&channel) {
                        continue;
                    }
                    supervised(&channel, held.judge_held(&channel)).await;
                }
            }
        }));
        let realtime = Arc::clone(&inner);
        tasks.push(tokio::spawn(async move {
            while let Some(report) = receiver.recv().await {
                let inner = Arc::clone(&realtime);
                // Each report waits out the settle window on its own task, so one slow
                // listing never delays another.
                tokio::spawn(async move { inner.judge_report(report).await });
            }
        }));
        Self {
            inner,
            reports: sender,
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        }
    }

    /// A Shopify `inventory_levels/update` for `channel`: judged in the background (echo,
    /// in sync or discrepancy). Never blocks; a full queue drops the report.
    pub fn observe_level(
        &self,
        channel: &str,
        inventory_item_id: &str,
        location_id: &str,
        available: Option<i64>,
    ) {
        let report = LevelReport {
            channel: channel.to_owned(),
            item: inventory_item_id.to_owned(),
            location: location_id.to_owned(),
            available,
        };
        if self.reports.try_send(report).is_err() {
            tracing::warn!(channel = %channel, "reconciliation report queue full; report dropped");
        }
    }

    /// What `channel` last reported for `sku`.
    pub fn channel_report(&self, channel: &str, sku: &str) -> Option<ChannelReport> {
        self.inner
            .reports
            .get(&(channel.to_owned(), sku.to_owned()))
            .map(|r| r.clone())
    }

    /// The open discrepancy of `sku` on `channel`, if any.
    pub fn discrepancy(&self, channel: &str, sku: &str) -> Option<Discrepancy> {
        self.inner
            .open
            .get(&(channel.to_owned(), sku.to_owned()))
            .map(|d| d.clone())
    }

    /// Every open discrepancy, by channel then SKU.
    pub fn discrepancies(&self) -> Vec<Discrepancy> {
        let mut all: Vec<Discrepancy> = self.inner.open.iter().map(|d| d.clone()).collect();
        all.sort_by(|a, b| (&a.channel, &a.sku).cmp(&(&b.channel, &b.sku)));
        all
    }

    /// Runs one periodic pass over `channel` now; returns the discrepancies it classified.
    ///
    /// Errors: the channel cannot be read (message).
    pub async fn reconcile_now(&self, channel: &str) -> Result<Vec<Discrepancy>, String> {
        self.inner.reconcile_channel(channel).await
    }

    /// Judges now every listing of `channel` held longer than the settle window (what the
    /// background task does every `settle_ms`); returns the discrepancies it recorded.
    pub async fn judge_held_now(&self, channel: &str) -> Vec<Discrepancy> {
        self.inner.judge_held(channel).await
    }

    /// Stops the background tasks.
    pub fn shutdown(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Inner {
    /// Reads every listing we pushed back from the channel, then re-reads and classifies the
    /// ones that differ after the settle window.
    async fn reconcile_channel(&self, channel: &str) -> Result<Vec<Discrepancy>, String> {
        let Some(adapter) = self.propagation.adapter(channel) else {
            return Err(format!("unknown channel {channel}"));
        };
        let skus = self.propagation.pushed_skus(channel);
        let mut suspects = Vec::new();
        for chunk in skus.chunks(self.config.read_batch.max(1)) {
            let report = read_paced(adapter.as_ref(), chunk)
                .await
                .map_err(|e| e.to_string())?;
            for (sku, value) in report.levels {
                self.remember(channel, &sku, value, ReportSource::Periodic);
                let verdict = self.quick_verdict(channel, &sku, value);
                if matches!(verdict, Verdict::Discrepancy(_)) {
                    suspects.push(sku);
                } else {
                    self.open.remove(&(channel.to_owned(), sku));
                }
            }
        }
        if suspects.is_empty() {
            return Ok(Vec::new());
        }
        let before = self.ledger_readings(channel, &suspects).await;
        tokio::time::sleep(Duration::from_millis(self.config.settle_ms)).await;
        let reread = read_paced(adapter.as_ref(), &suspects)
            .await
            .map_err(|e| e.to_string())?;
        let mut found = Vec::new();
        for (sku, value) in reread.levels {
            self.remember(channel, &sku, value, ReportSource::Periodic);
            if let Some(discrepancy) = self
                .settle(
                    channel,
                    &sku,
                    value,
                    before.get(&sku).copied(),
                    ReportSource::Periodic,
                )
                .await
            {
                found.push(discrepancy);
            }
        }
        Ok(found)
    }

    async fn ledger_readings(&self, channel: &str, skus: &[String]) -> HashMap<String, u64> {
        let mut readings = HashMap::new();
        for sku in skus {
            if let Ok(reading) = self.ledger.atp(channel, sku).await {
                readings.insert(sku.clone(), reading.seq);
            }
        }
        readings
    }

    fn remember(&self, channel: &str, sku: &str, value: Option<i64>, source: ReportSource) {
        self.reports.insert(
            (channel.to_owned(), sku.to_owned()),
            ChannelReport {
                value,
                reported_at_ms: self.clock.now_ms(),
                source,
            },
        );
    }

    /// The verdict from memory only (no ledger read): echo and in-sync checks.
    fn quick_verdict(&self, channel: &str, sku: &str, value: Option<i64>) -> Verdict {
        let sync = self
            .propagation
            .listing_sync(channel, sku)
            .unwrap_or_default();
        let since_last_push_ms = sync
            .last_pushed_at_ms
            .map(|at| u64::try_from(self.clock.now_ms() - at).unwrap_or(0));
        classify(&Observation {
            mapped: true,
            channel_value: value,
            sync,
            since_last_push_ms,
            echo_window_ms: self.config.echo_window_ms,
            ..Observation::default()
        })
    }

    async fn judge_report(&self, report: LevelReport) {
        // Several instances: a report reaching a follower is judged by nobody here (the
        // leader's periodic pass reads the channel back).
        if !self.propagation.leads(&report.channel) {
            return;
        }
        let sku = match self.propagation.listing_sku(
            &report.channel,
            &report.item,
            &report.location,
        ) {
            ListingMatch::Sku(sku) => sku,
            ListingMatch::OtherLocation => {
                tracing::debug!(channel = %report.channel, location = %report.location, "level update for another location ignored");
                return;
            }
            ListingMatch::Unmapped => {
                self.unknown_listing(&report).await;
                return;
            }
        };
        self.remember(
            &report.channel,
            &sku,
            report.available,
            ReportSource::Webhook,
        );
        match self.quick_verdict(&report.channel, &sku, report.available) {
            Verdict::Echo => {
                metrics::counter!(telemetry::RECONCILE_ECHOES_TOTAL, "channel" => report.channel.clone()).increment(1);
                tracing::debug!(channel = %report.channel, sku = %sku, value = ?report.available, "echo of our own push");
                return;
            }
            Verdict::InSync => return,
            Verdict::Discrepancy(_) => {}
        }
        let before = self
            .ledger
            .atp(&report.channel, &sku)
            .await
            .ok()
            .map(|r| r.seq);
        tokio::time::sleep(Duration::from_millis(self.config.settle_ms)).await;
        // A newer report of the same listing supersedes this one.
        let latest = self
            .reports
            .get(&(report.channel.clone(), sku.clone()))
            .map(|r| r.value)
            .unwrap_or(report.available);
        self.settle(&report.channel, &sku, latest, before, ReportSource::Webhook)
            .await;
    }

    async fn unknown_listing(&self, report: &LevelReport) {
        let listing = format!("inventory_item:{}", report.item);
        let key = (report.channel.clone(), listing.clone());
        if !self.open.contains_key(&key) && self.open.len() >= MAX_UNKNOWN_LISTINGS {
            return;
        }
        let discrepancy = Discrepancy {
            channel: report.channel.clone(),
            sku: listing,
            class: DiscrepancyClass::UnknownListing,
            channel_value: report.available,
            last_pushed: None,
            ledger_atp: None,
            source: ReportSource::Webhook,
            detected_at_ms: self.clock.now_ms(),
            heal_requested: false,
        };
        self.record(discrepancy);
    }

    /// Classifies every hold of `channel` older than the settle window once (see the module
    /// docs) and applies the heal policy.
    async fn judge_held(&self, channel: &str) -> Vec<Discrepancy> {
        let now_ms = self.clock.now_ms();
        let settle_ms = i64::try_from(self.config.settle_ms).unwrap_or(i64::MAX);
        let mut found = Vec::new();
        for (sku, held) in self.propagation.held_listings(channel) {
            if now_ms.saturating_sub(held.since_ms) < settle_ms {
                continue;
            }
            let key = (channel.to_owned(), sku.clone());
            let judged = self.open.get(&key).is_some_and(|open| {
                matches!(
                    open.class,
                    DiscrepancyClass::ManualEdit | DiscrepancyClass::LostOrder
                ) && open.detected_at_ms >= held.since_ms
                    && open.channel_value == Some(held.channel_value)
            });
            if judged {
                continue;
            }
            let reading = self.ledger.atp(channel, &sku).await.ok();
            if reading.is_some_and(|r| i64::try_from(r.atp) == Ok(held.channel_value)) {
                // The channel lists exactly what the ledger says it should: whatever lowered
                // it reached the ledger without a reservation (an order that arrived already
                // shipped, such as a POS sale). Nothing to heal or flag.
                self.propagation.release_hold(channel, &sku);
                self.open.remove(&key);
                let decision = PushLogRecord {
                    channel: channel.to_owned(),
                    sku: sku.clone(),
                    quantity: u64::try_from(held.channel_value).unwrap_or(0),
                    change_from: Some(held.channel_value),
                    outcome: "hold_released".to_owned(),
                    detail: Some(format!(
                        "in sync: the channel's {} equals the ledger's ATP (what lowered it from {} reached the ledger without a reservation, e.g. a POS sale)",
                        held.channel_value, held.expected
                    )),
                    requests: 0,
                    at_ms: now_ms,
                };
                if let Err(error) = self.store.append_push_log(&[decision]).await {
                    tracing::warn!(channel = %channel, sku = %sku, error = %error, "hold decision not written to the push log");
                }
                continue;
            }
            let polled = self.propagation.orders_polled_since(channel, held.since_ms);
            let class = if polled == Some(true) {
                DiscrepancyClass::ManualEdit
            } else {
                DiscrepancyClass::LostOrder
            };
            let heal = self.config.heal && class == DiscrepancyClass::ManualEdit;
            let mut heal_requested = false;
            if heal && let Some(reading) = reading {
                self.propagation.release_hold(channel, &sku);
                heal_requested =
                    self.propagation
                        .repush(channel, &sku, Some(held.channel_value), reading.atp);
                if heal_requested {
                    metrics::counter!(telemetry::RECONCILE_HEALED_TOTAL, "channel" => channel.to_owned())
                        .increment(1);
                }
            }
            let decision = PushLogRecord {
                channel: channel.to_owned(),
                sku: sku.clone(),
                quantity: reading.map_or(0, |r| r.atp),
                change_from: Some(held.channel_value),
                outcome: if heal_requested {
                    "hold_released"
                } else {
                    "hold_kept"
                }
                .to_owned(),
                detail: Some(format!(
                    "{}: the channel lowered {} to {} itself and the ledger has not explained {} unit(s) in {} ms; {}",
                    class.label().replace('_', " "),
                    held.expected,
                    held.observed,
                    held.unexplained,
                    now_ms.saturating_sub(held.since_ms),
                    if heal_requested {
                        "re-pushing the ledger's ATP over the channel's value"
                    } else if class == DiscrepancyClass::LostOrder {
                        "keeping the channel's lower value until the order is ingested"
                    } else {
                        "keeping the channel's value (reconcile.heal = false)"
                    }
                )),
                requests: 0,
                at_ms: now_ms,
            };
            if let Err(error) = self.store.append_push_log(&[decision]).await {
                tracing::warn!(channel = %channel, sku = %sku, error = %error, "hold decision not written to the push log");
            }
            let discrepancy = Discrepancy {
                channel: channel.to_owned(),
                sku,
                class,
                channel_value: Some(held.channel_value),
                last_pushed: self
                    .propagation
                    .listing_sync(channel, &key.1)
                    .and_then(|sync| sync.last_pushed),
                ledger_atp: reading.map(|r| r.atp),
                source: ReportSource::Periodic,
                detected_at_ms: now_ms,
                heal_requested,
            };
            self.record(discrepancy.clone());
            found.push(discrepancy);
        }
        found
    }

    /// Classifies a difference that survived the settle window; heals and alerts.
    async fn settle(
        &self,
        channel: &str,
        sku: &str,
        value: Option<i64>,
        seq_before: Option<u64>,
        source: ReportSource,
    ) -> Option<Discrepancy> {
        if self.propagation.held(channel, sku).is_some() {
            // A held listing is judged by `judge_held`, on the hold's own clock.
            return None;
        }
        let sync = self
            .propagation
            .listing_sync(channel, sku)
            .unwrap_or_default();
        let reading = self.ledger.atp(channel, sku).await.ok();
        let value_before_last_push = self.value_before_last_push(channel, sku).await;
        let since_last_push_ms = sync
            .last_pushed_at_ms
            .map(|at| u64::try_from(self.clock.now_ms() - at).unwrap_or(0));
        let observation = Observation {
            mapped: self.propagation.is_mapped(channel, sku),
            channel_value: value,
            sync: sync.clone(),
            ledger_atp: reading.map(|r| r.atp),
            ledger_moving: matches!((seq_before, reading), (Some(before), Some(now)) if before != now.seq),
            value_before_last_push,
            since_last_push_ms,
            echo_window_ms: self.config.echo_window_ms,
        };
        let Verdict::Discrepancy(class) = classify(&observation) else {
            self.open.remove(&(channel.to_owned(), sku.to_owned()));
            return None;
        };
        let mut discrepancy = Discrepancy {
            channel: channel.to_owned(),
            sku: sku.to_owned(),
            class,
            channel_value: value,
            last_pushed: sync.last_pushed,
            ledger_atp: reading.map(|r| r.atp),
            source,
            detected_at_ms: self.clock.now_ms(),
            heal_requested: false,
        };
        if self.config.heal
            && class.healable()
            && let Some(reading) = reading
            && self.propagation.repush(channel, sku, value, reading.atp)
        {
            discrepancy.heal_requested = true;
            metrics::counter!(telemetry::RECONCILE_HEALED_TOTAL, "channel" => channel.to_owned())
                .increment(1);
        }
        self.record(discrepancy.clone());
        Some(discrepancy)
    }

    /// `changeFromQuantity` of our newest accepted push of the listing (push log).
    async fn value_before_last_push(&self, channel: &str, sku: &str) -> Option<i64> {
        let query = PushLogQuery {
            channel: Some(channel.to_owned()),
            sku: Some(sku.to_owned()),
            limit: 20,
            ..PushLogQuery::default()
        };
        let rows = self.store.query_push_log(&query).await.ok()?;
        rows.into_iter()
            .find(|row| row.outcome == "accepted")
            .and_then(|row| row.change_from)
    }

    fn record(&self, discrepancy: Discrepancy) {
        let class = discrepancy.class;
        metrics::counter!(telemetry::RECONCILE_DISCREPANCIES_TOTAL,
            "channel" => discrepancy.channel.clone(), "class" => class.label())
        .increment(1);
        // A change still in flight is expected chatter; anything else an operator may act on.
        if class == DiscrepancyClass::InFlight {
            tracing::debug!(channel = %discrepancy.channel, sku = %discrepancy.sku, class = class.label(),
                channel_value = ?discrepancy.channel_value, ledger_atp = ?discrepancy.ledger_atp,
                heal = discrepancy.heal_requested, "discrepancy");
        } else {
            tracing::info!(channel = %discrepancy.channel, sku = %discrepancy.sku, class = class.label(),
                channel_value = ?discrepancy.channel_value, ledger_atp = ?discrepancy.ledger_atp,
                heal = discrepancy.heal_requested, "discrepancy");
        }
        if class != DiscrepancyClass::InFlight {
            let severity = match class {
                DiscrepancyClass::LostUpdate | DiscrepancyClass::LostOrder => Severity::Critical,
                _ => Severity::Warning,
            };
            self.alerter.raise(Alert {
                kind: AlertKind::Discrepancy,
                severity,
                channel: Some(discrepancy.channel.clone()),
                sku: Some(discrepancy.sku.clone()),
                text: format!(
                    "{} on {}: {} reports {:?}, ledger ATP {:?}, last pushed {:?}{}",
                    class.label().replace('_', " "),
                    discrepancy.sku,
                    discrepancy.channel,
                    discrepancy.channel_value,
                    discrepancy.ledger_atp,
                    discrepancy.last_pushed,
                    if discrepancy.heal_requested {
                        "; re-pushing the ledger's ATP"
                    } else {
                        ""
                    }
                ),
                details: serde_json::json!({
                    "class": class.label(),
                    "channel_value": discrepancy.channel_value,
                    "ledger_atp": discrepancy.ledger_atp,
                    "last_pushed": discrepancy.last_pushed,
                    "source": discrepancy.source,
                    "heal_requested": discrepancy.heal_requested,
                }),
            });
        }
        self.open.insert(
            (discrepancy.channel.clone(), discrepancy.sku.clone()),
            discrepancy,
        );
    }
}

/// Reads `skus` back through `adapter` within the platform's quota: waits for a token of the
/// adapter's [`read_quota`](ChannelAdapter::read_quota) first (a `Retry-After` told to
/// the pusher or a poller holds the read-back too), then charges the further requests the
/// read made, so the next read, poll or push waits for them.
///
/// Errors: the adapter's.
async fn read_paced(
    adapter: &dyn ChannelAdapter,
    skus: &[String],
) -> Result<crate::channels::LevelsReport, crate::channels::ChannelError> {
    let quota = adapter.read_quota();
    let mut attempt = 0;
    loop {
        if let Some(quota) = &quota {
            quota.acquire().await;
        }
        match adapter.read_levels(skus).await {
            Ok(report) => {
                if let Some(quota) = &quota {
                    quota.charge(report.requests.saturating_sub(1));
                }
                return Ok(report);
            }
            // A channel without a read quota of its own (bol.com, Amazon) throttles the
            // read when propagation has spent its budget: wait as the channel says and
            // read the chunk again, so a busy channel is still reconciled (a pass that
            // gave up on every throttle never healed a busy channel).
            Err(error) if error.is_throttled() && attempt < READ_THROTTLE_RETRIES => {
                attempt += 1;
                let wait_ms = error
                    .retry_after_ms()
                    .unwrap_or(READ_THROTTLE_WAIT_MS)
                    .clamp(READ_THROTTLE_WAIT_MS / 10, READ_THROTTLE_MAX_WAIT_MS);
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Times a throttled reconciliation read is made again before the pass gives up.
const READ_THROTTLE_RETRIES: u32 = 8;
/// The wait after a throttled read without `Retry-After`, in milliseconds.
const READ_THROTTLE_WAIT_MS: u64 = 1_000;
/// The longest wait after a throttled read, in milliseconds.
const READ_THROTTLE_MAX_WAIT_MS: u64 = 10_000;
