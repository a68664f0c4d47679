//! The reconciler's settle window and the health monitor's silence timer under tokio's paused
//! clock: a fake channel, a fake ledger, propagation over an embedded store, and a
//! [`TokioClock`] so wall time and timers move together with `tokio::time::advance`.

use super::alerts::{self, Alert, AlertKind, Alerter, WebhookActivity};
use super::*;
use crate::channels::{
    ChannelAdapter, ChannelError, ItemOutcome, ItemResult, LevelsReport, PushItem, PushReport,
};
use crate::clock::TokioClock;
use crate::config::{AlertsConfig, ChannelKind};
use crate::domain::{AvailabilityChange, AvailabilitySink, LocationId, LocationLevel, Sku};
use crate::propagation::PropagationOptions;
use crate::store::embedded::EmbeddedStore;
use std::sync::Mutex;

/// Wall time when each test starts (2020-09-13T12:26:40Z), far from the system clock.
const START_MS: i64 = 1_600_000_000_000;

/// A Shopify-like channel: all or nothing with compare-and-set; values can be edited
/// behind the engine's back.
#[derive(Default)]
struct FakeChannel {
    values: Mutex<HashMap<String, i64>>,
}

impl FakeChannel {
    fn set(&self, sku: &str, value: i64) {
        self.values.lock().unwrap().insert(sku.to_owned(), value);
    }
}

#[async_trait]
impl ChannelAdapter for FakeChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Shopify
    }
    fn max_batch(&self) -> usize {
        250
    }
    fn is_mapped(&self, _sku: &str) -> bool {
        true
    }
    fn listing_count(&self) -> usize {
        10
    }
    /// Like the config's Shopify listing: inventory item 101 at location 7 is SKU A.
    fn listing_sku(&self, listing_id: &str, location_id: &str) -> ListingMatch {
        match (listing_id, location_id) {
            ("101", "7") => ListingMatch::Sku("A".to_owned()),
            (_, "7") => ListingMatch::Unmapped,
            _ => ListingMatch::OtherLocation,
        }
    }
    async fn push(&self, items: &[PushItem]) -> PushReport {
        let mut values = self.values.lock().unwrap();
        let conflict = items.iter().find(|item| {
            item.change_from.is_some() && item.change_from != values.get(&item.sku).copied()
        });
        let results = items
            .iter()
            .map(|item| ItemResult {
                sku: item.sku.clone(),
                outcome: match conflict {
                    Some(conflicting) if conflicting.sku == item.sku => ItemOutcome::Conflict {
                        current: values.get(&item.sku).copied(),
                    },
                    Some(_) => ItemOutcome::Deferred,
                    None => ItemOutcome::Accepted {
                        quantity: item.quantity,
                    },
                },
            })
            .collect();
        if conflict.is_none() {
            for item in items {
                values.insert(item.sku.clone(), item.quantity as i64);
            }
        }
        PushReport {
            results,
            requests: 1,
            ..PushReport::default()
        }
    }
    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        let values = self.values.lock().unwrap();
        Ok(LevelsReport {
            levels: skus
                .iter()
                .map(|sku| (sku.clone(), values.get(sku).copied()))
                .collect(),
            ..LevelsReport::default()
        })
    }
}

/// The ledger's answer, set by the test (an order ingested moves `seq` and `atp`).
struct FakeLedger(Mutex<LedgerReading>);

#[async_trait]
impl LedgerAtp for FakeLedger {
    async fn atp(&self, _channel: &str, _sku: &str) -> Result<LedgerReading, String> {
        Ok(*self.0.lock().unwrap())
    }
}

/// No webhook ever arrived.
struct NoWebhooks;

impl WebhookActivity for NoWebhooks {
    fn last_webhook_at_ms(&self, _channel: &str) -> Option<i64> {
        None
    }
}

/// One Shopify channel `fake` over `WH-1`, whose listing `A` is inventory item 101.
fn config(reconcile: ReconcileConfig, alerts: AlertsConfig) -> Config {
    let mut config = Config::from_toml(
        r#"
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "fake"
        kind = "shopify"
        locations = ["WH-1"]
        safety_stock = 0
        [channels.shopify]
        shop_url = "http://127.0.0.1:1"
        access_token = "tok"
        webhook_secret = "whsec"
        location_id = 7
        [[channels.shopify.listings]]
        sku = "A"
        inventory_item_id = 101
        "#,
    )
    .unwrap();
    config.reconcile = reconcile;
    config.alerts = alerts;
    config
}

fn change(sku: &str, on_hand: i64) -> AvailabilityChange {
    AvailabilityChange {
        inbound: Vec::new(),
        sku: Sku::from(sku),
        seq: 1,
        locations: vec![LocationLevel {
            inbound: 0,
            in_transit: 0,
            location: LocationId::from("WH-1"),
            on_hand,
            reserved: 0,
        }],
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    channel: Arc<FakeChannel>,
    propagation: Propagation,
    store: Arc<dyn Store>,
    clock: SharedClock,
}

/// Propagation over the fake channel, with `A` pushed at 10 and acknowledged.
async fn fixture(reconcile: ReconcileConfig, alerts: AlertsConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("reconcile.db")).unwrap());
    let config = config(reconcile, alerts);
    let channel = Arc::new(FakeChannel::default());
    let clock: SharedClock = TokioClock::starting_at(START_MS);
    let propagation = Propagation::start_with_adapters(
        vec![(
            config.channels[0].clone(),
            Arc::clone(&channel) as Arc<dyn ChannelAdapter>,
        )],
        Arc::clone(&store),
        PropagationOptions {
            clock: Some(Arc::clone(&clock)),
            ..PropagationOptions::default()
        },
    )
    .await
    .unwrap();
    propagation.publish(&[change("A", 10)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(propagation.last_pushed("fake", "A"), Some(10));
    Fixture {
        _dir: dir,
        config,
        channel,
        propagation,
        store,
        clock,
    }
}

fn settle_config() -> ReconcileConfig {
    ReconcileConfig {
        interval_ms: 3_600_000,
        settle_ms: 30_000,
        echo_window_ms: 1_000,
        ..ReconcileConfig::default()
    }
}

/// Lets every ready task run (current-thread runtime, paused clock).
async fn settle_tasks() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn quiet_alerts(receiver: &mut tokio::sync::mpsc::Receiver<Alert>, kind: AlertKind) -> Vec<Alert> {
    let mut alerts = Vec::new();
    while let Ok(alert) = receiver.try_recv() {
        if alert.kind == kind {
            alerts.push(alert);
        }
    }
    alerts
}

#[tokio::test(start_paused = true)]
async fn a_manual_edit_is_classified_only_after_the_settle_window() {
    let fixture = fixture(settle_config(), AlertsConfig::default()).await;
    let ledger = Arc::new(FakeLedger(Mutex::new(LedgerReading { atp: 10, seq: 1 })));
    let (alerter, mut alerts) = Alerter::capturing(&AlertsConfig::default());
    let reconciler = Reconciler::start(
        &fixture.config,
        fixture.propagation.clone(),
        ledger,
        Arc::clone(&fixture.store),
        alerter,
        Arc::clone(&fixture.clock),
    );
    fixture.channel.set("A", 7);

    let started_ms = fixture.clock.now_ms();
    let pass = {
        let reconciler = reconciler.clone();
        tokio::spawn(async move { reconciler.reconcile_now("fake").await })
    };
    settle_tasks().await;
    assert_eq!(
        reconciler.channel_report("fake", "A").map(|r| r.value),
        Some(Some(7)),
        "read back at once"
    );

    tokio::time::advance(Duration::from_millis(29_999)).await;
    settle_tasks().await;
    assert!(!pass.is_finished(), "still inside the settle window");
    assert!(reconciler.discrepancies().is_empty());

    tokio::time::advance(Duration::from_millis(1)).await;
    let found = pass.await.unwrap().unwrap();
    assert_eq!(found.len(), 1);
    let discrepancy = &found[0];
    assert_eq!(discrepancy.class, DiscrepancyClass::ManualEdit);
    assert_eq!(
        (
            discrepancy.channel_value,
            discrepancy.ledger_atp,
            discrepancy.last_pushed
        ),
        (Some(7), Some(10), Some(10))
    );
    assert!(
        (started_ms + 30_000..started_ms + 31_000).contains(&discrepancy.detected_at_ms),
        "detected on the injected clock after the settle window: {}",
        discrepancy.detected_at_ms - started_ms
    );
    assert_eq!(
        reconciler.discrepancy("fake", "A").as_ref(),
        Some(discrepancy)
    );
    let raised = quiet_alerts(&mut alerts, AlertKind::Discrepancy);
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].sku.as_deref(), Some("A"));
    reconciler.shutdown();
    fixture.propagation.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_order_ingested_within_the_settle_window_is_no_discrepancy() {
    let fixture = fixture(settle_config(), AlertsConfig::default()).await;
    let ledger = Arc::new(FakeLedger(Mutex::new(LedgerReading { atp: 10, seq: 1 })));
    let (alerter, mut alerts) = Alerter::capturing(&AlertsConfig::default());
    let reconciler = Reconciler::start(
        &fixture.config,
        fixture.propagation.clone(),
        Arc::clone(&ledger) as Arc<dyn LedgerAtp>,
        Arc::clone(&fixture.store),
        alerter,
        Arc::clone(&fixture.clock),
    );
    // The channel sold 3 and tells us by webhook before the order reaches the ledger.
    fixture.channel.set("A", 7);
    reconciler.observe_level("fake", "101", "7", Some(7));
    settle_tasks().await;
    assert_eq!(
        reconciler
            .channel_report("fake", "A")
            .map(|r| (r.value, r.source)),
        Some((Some(7), ReportSource::Webhook))
    );

    tokio::time::advance(Duration::from_millis(20_000)).await;
    settle_tasks().await;
    // The order is ingested inside the settle window: the ledger agrees with the channel.
    *ledger.0.lock().unwrap() = LedgerReading { atp: 7, seq: 2 };

    tokio::time::advance(Duration::from_millis(10_000)).await;
    settle_tasks().await;
    assert!(
        reconciler.discrepancies().is_empty(),
        "healing before the settle window ends would overwrite the channel's own decrement"
    );
    assert!(quiet_alerts(&mut alerts, AlertKind::Discrepancy).is_empty());
    reconciler.shutdown();
    fixture.propagation.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn webhooks_are_reported_quiet_exactly_when_the_quiet_period_has_passed() {
    let alerts_config = AlertsConfig {
        check_interval_ms: 1_000,
        webhook_quiet_secs: Some(600),
        ..AlertsConfig::default()
    };
    let fixture = fixture(settle_config(), alerts_config.clone()).await;
    let (alerter, mut alerts) = Alerter::capturing(&alerts_config);
    let monitor = alerts::start_monitor(
        &alerts_config,
        alerter,
        fixture.propagation.clone(),
        Some(Arc::new(NoWebhooks)),
        crate::telemetry::DeadLetterBroadcast::new(),
        Arc::clone(&fixture.clock),
    );
    settle_tasks().await;

    tokio::time::advance(Duration::from_millis(599_000)).await;
    settle_tasks().await;
    assert!(
        quiet_alerts(&mut alerts, AlertKind::WebhooksQuiet).is_empty(),
        "quiet for 599 s only"
    );

    tokio::time::advance(Duration::from_millis(1_000)).await;
    settle_tasks().await;
    let raised = quiet_alerts(&mut alerts, AlertKind::WebhooksQuiet);
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].channel.as_deref(), Some("fake"));
    assert!(
        raised[0].text.contains("for 600 s"),
        "measured on the injected clock: {}",
        raised[0].text
    );
    monitor.abort();
    fixture.propagation.shutdown().await;
}

/// Says whether an order poll succeeded since a time, as the app's listener does.
struct PollAnswer(Option<bool>);

impl crate::propagation::ConflictListener for PollAnswer {
    fn channel_lowered(&self, _channel: &str, _sku: &str) {}
    fn orders_polled_since(&self, _channel: &str, _since_ms: i64) -> Option<bool> {
        self.0
    }
}

/// Propagation over the fake channel with `A` pushed at 10, then the channel sold 3 itself
/// (7) and a receipt raised our ATP to 15: the conflict holds the listing.
async fn held_fixture(polled: Option<bool>, heal: bool) -> (Fixture, Reconciler) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("reconcile.db")).unwrap());
    let config = config(
        ReconcileConfig {
            heal,
            ..settle_config()
        },
        AlertsConfig::default(),
    );
    let channel = Arc::new(FakeChannel::default());
    let clock: SharedClock = TokioClock::starting_at(START_MS);
    let propagation = Propagation::start_with_adapters(
        vec![(
            config.channels[0].clone(),
            Arc::clone(&channel) as Arc<dyn ChannelAdapter>,
        )],
        Arc::clone(&store),
        PropagationOptions {
            clock: Some(Arc::clone(&clock)),
            conflict_listener: Some(Arc::new(PollAnswer(polled))),
            ..PropagationOptions::default()
        },
    )
    .await
    .unwrap();
    propagation.publish(&[change("A", 10)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    channel.set("A", 7);
    propagation.publish(&[change("A", 15)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    let held = propagation.held("fake", "A").expect("held");
    assert_eq!((held.observed, held.unexplained), (7, 3));
    let ledger = Arc::new(FakeLedger(Mutex::new(LedgerReading { atp: 15, seq: 2 })));
    let (alerter, _alerts) = Alerter::capturing(&AlertsConfig::default());
    let reconciler = Reconciler::start(
        &config,
        propagation.clone(),
        Arc::clone(&ledger) as Arc<dyn LedgerAtp>,
        Arc::clone(&store),
        alerter,
        Arc::clone(&clock),
    );
    let fixture = Fixture {
        _dir: dir,
        config,
        channel,
        propagation,
        store,
        clock,
    };
    HELD_LEDGER.with(|cell| *cell.borrow_mut() = Some(ledger));
    (fixture, reconciler)
}

thread_local! {
    /// The fake ledger of the last [`held_fixture`] on this thread (paused-time tests run
    /// on one thread), so a test can move the ledger's ATP.
    static HELD_LEDGER: std::cell::RefCell<Option<Arc<FakeLedger>>> = const { std::cell::RefCell::new(None) };
}

/// Waits (1 ms steps of paused time, at most 1 s) for the discrepancy of `A`: the held
/// check writes to the embedded store, which runs on a blocking thread.
async fn wait_discrepancy(reconciler: &Reconciler) -> Option<Discrepancy> {
    for _ in 0..1000 {
        if let Some(discrepancy) = reconciler.discrepancy("fake", "A") {
            return Some(discrepancy);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

async fn push_log_outcomes(store: &Arc<dyn Store>) -> Vec<String> {
    let query = PushLogQuery {
        channel: Some("fake".to_owned()),
        sku: Some("A".to_owned()),
        limit: 50,
        ..PushLogQuery::default()
    };
    store
        .query_push_log(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.outcome)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_hold_the_orders_poll_cannot_explain_is_a_manual_edit_and_healed_after_the_window() {
    let (fixture, reconciler) = held_fixture(Some(true), true).await;
    assert!(
        reconciler.judge_held_now("fake").await.is_empty(),
        "within the window"
    );
    tokio::time::advance(Duration::from_millis(29_000)).await;
    settle_tasks().await;
    assert_eq!(reconciler.discrepancy("fake", "A"), None);
    assert_eq!(fixture.channel.values.lock().unwrap()["A"], 7);

    tokio::time::advance(Duration::from_millis(31_000)).await;
    let discrepancy = wait_discrepancy(&reconciler).await.expect("classified");
    assert_eq!(discrepancy.class, DiscrepancyClass::ManualEdit);
    assert!(discrepancy.heal_requested);
    assert_eq!(discrepancy.channel_value, Some(7));
    assert_eq!(discrepancy.ledger_atp, Some(15));
    fixture
        .propagation
        .flush(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(fixture.channel.values.lock().unwrap()["A"], 15);
    assert_eq!(fixture.propagation.held("fake", "A"), None);
    assert!(
        push_log_outcomes(&fixture.store)
            .await
            .contains(&"hold_released".to_owned())
    );
    reconciler.shutdown();
    fixture.propagation.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_hold_no_poll_could_check_is_a_lost_order_and_keeps_the_channel_value() {
    let (fixture, reconciler) = held_fixture(None, true).await;
    tokio::time::advance(Duration::from_millis(61_000)).await;
    let discrepancy = wait_discrepancy(&reconciler).await.expect("classified");
    assert_eq!(discrepancy.class, DiscrepancyClass::LostOrder);
    assert!(!discrepancy.heal_requested);
    assert_eq!(fixture.channel.values.lock().unwrap()["A"], 7);
    assert!(
        fixture.propagation.held("fake", "A").is_some(),
        "still held"
    );
    // Judged once: another pass records nothing new.
    assert!(reconciler.judge_held_now("fake").await.is_empty());
    assert!(
        push_log_outcomes(&fixture.store)
            .await
            .contains(&"hold_kept".to_owned())
    );
    reconciler.shutdown();
    fixture.propagation.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_hold_the_ledger_caught_up_with_is_released_without_a_discrepancy() {
    let (fixture, reconciler) = held_fixture(None, false).await;
    // The order reached us already shipped (a POS sale): no reservation explained the hold,
    // but the ledger's ATP is now the channel's 7.
    HELD_LEDGER.with(|cell| {
        *cell.borrow().as_ref().unwrap().0.lock().unwrap() = LedgerReading { atp: 7, seq: 3 };
    });
    fixture.propagation.publish(&[change("A", 7)]);
    tokio::time::advance(Duration::from_millis(61_000)).await;
    assert!(reconciler.judge_held_now("fake").await.is_empty());
    assert_eq!(reconciler.discrepancy("fake", "A"), None);
    assert_eq!(fixture.propagation.held("fake", "A"), None, "released");
    fixture
        .propagation
        .flush(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(fixture.channel.values.lock().unwrap()["A"], 7);
    assert!(
        push_log_outcomes(&fixture.store)
            .await
            .contains(&"hold_released".to_owned())
    );
    reconciler.shutdown();
    fixture.propagation.shutdown().await;
}

/// Answers every read throttled (`Retry-After: 2 s`) until `throttles` reads were refused.
struct ThrottlingChannel {
    throttles: u32,
    reads: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl ChannelAdapter for ThrottlingChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Bolcom
    }
    fn max_batch(&self) -> usize {
        1
    }
    fn is_mapped(&self, _sku: &str) -> bool {
        true
    }
    fn listing_count(&self) -> usize {
        1
    }
    async fn push(&self, _items: &[PushItem]) -> PushReport {
        PushReport::default()
    }
    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        let read = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if read < self.throttles {
            return Err(ChannelError::Platform(
                crate::platforms::http::PlatformError::Throttled {
                    retry_after_ms: Some(2_000),
                },
            ));
        }
        Ok(LevelsReport {
            levels: skus.iter().map(|sku| (sku.clone(), Some(3))).collect(),
            requests: 1,
            ..LevelsReport::default()
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_reconciliation_read_waits_as_told_and_reads_again() {
    let channel = ThrottlingChannel {
        throttles: 2,
        reads: Default::default(),
    };
    let started = tokio::time::Instant::now();
    let report = read_paced(&channel, &["A".to_owned()]).await.unwrap();
    assert_eq!(report.levels, vec![("A".to_owned(), Some(3))]);
    assert_eq!(channel.reads.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited {:?}, not the 2 × 2 s asked",
        started.elapsed()
    );
    // A channel that never stops throttling: the pass gives up after a bounded number
    // of reads.
    let stuck = ThrottlingChannel {
        throttles: u32::MAX,
        reads: Default::default(),
    };
    let error = read_paced(&stuck, &["A".to_owned()]).await.unwrap_err();
    assert!(error.is_throttled());
    assert_eq!(
        stuck.reads.load(std::sync::atomic::Ordering::SeqCst),
        READ_THROTTLE_RETRIES + 1
    );
}
