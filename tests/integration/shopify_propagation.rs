//! Propagation end to end against the Shopify simulator on 127.0.0.1:0 (PLATFORMS.md §1,
//! DESIGN.md §3 rules 4–5): ATP reaches the shop, throttling is respected, a refused item
//! does not block the others (scenario S6), and an order the shop took itself is not
//! overwritten.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use stocksync::config::Config;
use stocksync::domain::{AvailabilityChange, AvailabilitySink, LocationLevel, Sku};
use stocksync::propagation::{Propagation, PropagationOptions};
use stocksync::sandbox::shopify::{
    self, SandboxLevel, ShopifySimulator, ShopifySimulatorOptions, SimOrderLine,
};
use stocksync::store::Store;
use stocksync::store::embedded::EmbeddedStore;

const CHANNEL: &str = "shopify-main";
const LOCATION: u64 = 7;
const FIRST_ITEM: u64 = 40_000;

fn sku(n: u64) -> String {
    format!("SKU-{n:03}")
}

fn item(n: u64) -> u64 {
    FIRST_ITEM + n
}

async fn simulator(options: ShopifySimulatorOptions) -> ShopifySimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    shopify::start(options, listener).await.unwrap()
}

/// Writes the listings CSV for `count` SKUs and returns a config pointing at the simulator.
fn config(
    sim: &ShopifySimulator,
    dir: &Path,
    count: u64,
    use_rest: bool,
    requests_per_sec: f64,
    burst: u32,
) -> Config {
    let csv: String = std::iter::once("sku,inventory_item_id\n".to_owned())
        .chain((0..count).map(|n| format!("{},{}\n", sku(n), item(n))))
        .collect();
    let csv_path = dir.join("listings.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let text = format!(
        r#"
        [[locations]]
        id = "WH-1"
        [[locations]]
        id = "WH-2"
        [[locations]]
        id = "STORE-9"

        [[channels]]
        id = "{CHANNEL}"
        kind = "shopify"
        locations = ["WH-1", "WH-2"]
        safety_stock = 2
        [channels.rate_limit]
        requests_per_sec = {requests_per_sec:.1}
        burst = {burst}
        [channels.retry]
        initial_backoff_ms = 50
        max_backoff_ms = 400
        [channels.shopify]
        shop_url = "{url}"
        api_version = "2026-04"
        access_token = "{token}"
        webhook_secret = "secret"
        location_id = {LOCATION}
        use_rest = {use_rest}
        listings_csv = "{csv}"
        "#,
        url = sim.base_url(),
        token = sim.options().access_token,
        csv = csv_path.display(),
    );
    let config = Config::from_toml(&text).unwrap();
    config.validate().unwrap();
    config
}

fn store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.join("stocksync.db")).unwrap())
}

fn change(n: u64, wh1: (i64, i64), wh2_on_hand: i64, seq: u64) -> AvailabilityChange {
    AvailabilityChange {
        inbound: Vec::new(),
        sku: Sku(sku(n)),
        seq,
        locations: vec![
            LocationLevel {
                inbound: 0,
                in_transit: 0,
                location: "STORE-9".into(),
                on_hand: 1_000,
                reserved: 0,
            },
            LocationLevel {
                inbound: 0,
                in_transit: 0,
                location: "WH-1".into(),
                on_hand: wh1.0,
                reserved: wh1.1,
            },
            LocationLevel {
                inbound: 0,
                in_transit: 0,
                location: "WH-2".into(),
                on_hand: wh2_on_hand,
                reserved: 0,
            },
        ],
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout * crate::support::SLOW_MACHINE_FACTOR;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test]
async fn atp_reaches_the_simulator_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    for n in 0..20 {
        sim.set_level(item(n), LOCATION, 0);
    }
    let config = config(&sim, dir.path(), 20, false, 50.0, 10);
    let propagation = Propagation::start(&config, store(dir.path()), reqwest::Client::new())
        .await
        .unwrap();

    // WH-1 available = on_hand − reserved (a negative location counts as 0), plus WH-2,
    // minus safety stock 2; STORE-9 does not feed the channel.
    let changes: Vec<AvailabilityChange> =
        (0..20).map(|n| change(n, (n as i64, 1), 3, 1)).collect();
    propagation.publish(&changes);
    propagation.flush(Duration::from_secs(10)).await.unwrap();
    let expected = |n: u64| ((n as i64 - 1).max(0) + 3 - 2).max(0);
    for n in 0..20 {
        assert_eq!(
            sim.level(item(n), LOCATION),
            Some(expected(n)),
            "{}",
            sku(n)
        );
        assert_eq!(
            propagation.last_pushed(CHANNEL, &sku(n)),
            Some(expected(n) as u64)
        );
    }
    let levels: Vec<SandboxLevel> = reqwest::get(format!("{}/_sandbox/levels", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(levels.len(), 20);
    assert_eq!(propagation.channel_status()[0].accepted_total, 20);
    propagation.shutdown().await;

    // A restarted engine knows what it pushed: an unchanged ATP is not sent again.
    let requests_before = sim.counters().requests;
    let restarted = Propagation::start(&config, store(dir.path()), reqwest::Client::new())
        .await
        .unwrap();
    assert_eq!(
        restarted.last_pushed(CHANNEL, &sku(5)),
        Some(expected(5) as u64)
    );
    restarted.publish(&changes);
    restarted.publish(&[change(5, (0, 0), 0, 2)]);
    restarted.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(sim.level(item(5), LOCATION), Some(0));
    assert_eq!(
        sim.counters().requests,
        requests_before + 1,
        "only SKU-005 changed"
    );
    restarted.shutdown().await;
}

#[tokio::test]
async fn the_graphql_cost_budget_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(ShopifySimulatorOptions {
        graphql_bucket_size: 30.0,
        graphql_points_per_sec: 20.0,
        mutation_cost: 10.0,
        ..Default::default()
    })
    .await;
    for n in 0..8 {
        sim.set_level(item(n), LOCATION, 0);
    }
    // Our own limit is far above the shop's budget: only throttleStatus can keep us in it.
    let config = config(&sim, dir.path(), 8, false, 500.0, 500);
    let propagation = Propagation::start(&config, store(dir.path()), reqwest::Client::new())
        .await
        .unwrap();
    for n in 0..8 {
        propagation.publish(&[change(n, (10, 0), 0, 1)]);
        propagation.flush(Duration::from_secs(10)).await.unwrap();
    }
    for n in 0..8 {
        assert_eq!(sim.level(item(n), LOCATION), Some(8));
    }
    let counters = sim.counters();
    assert_eq!(counters.mutations_applied, 8);
    assert_eq!(
        counters.throttled, 0,
        "the budget reported in throttleStatus was followed"
    );
    propagation.shutdown().await;
}

#[tokio::test]
async fn rest_429_retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(ShopifySimulatorOptions {
        rest_bucket_size: 3,
        rest_leak_per_sec: 2.0,
        ..Default::default()
    })
    .await;
    for n in 0..10 {
        sim.set_level(item(n), LOCATION, 0);
    }
    let config = config(&sim, dir.path(), 10, true, 500.0, 500);
    let propagation = Propagation::start(&config, store(dir.path()), reqwest::Client::new())
        .await
        .unwrap();
    // The pusher paces itself by `X-Shopify-Shop-Api-Call-Limit`, so on its own it never
    // meets a 429. Another caller of the shop's bucket fills it just before the push: the
    // pusher's first call is refused with a Retry-After, which it must honour.
    let other_app = reqwest::Client::new();
    for _ in 0..3 {
        other_app
            .get(format!(
                "{}/admin/api/2026-04/inventory_levels.json?location_ids={LOCATION}",
                sim.base_url()
            ))
            .header("X-Shopify-Access-Token", sim.options().access_token.clone())
            .send()
            .await
            .unwrap();
    }
    let changes: Vec<AvailabilityChange> = (0..10)
        .map(|n| change(n, (n as i64 + 2, 0), 0, 1))
        .collect();
    propagation.publish(&changes);
    propagation.flush(Duration::from_secs(20)).await.unwrap();
    for n in 0..10 {
        assert_eq!(sim.level(item(n), LOCATION), Some(n as i64));
    }
    let counters = sim.counters();
    assert!(
        counters.throttled >= 1,
        "the shop's bucket of 3, filled by another caller, was exceeded at least once"
    );
    assert_eq!(
        counters.retry_after_violations, 0,
        "no request before Retry-After passed"
    );
    assert_eq!(
        propagation.channel_status()[0].throttled_total,
        counters.throttled
    );
    propagation.shutdown().await;
}

#[tokio::test]
async fn s6_a_non_mutable_item_does_not_block_the_other_99() {
    let dir = tempfile::tempdir().unwrap();
    let bad = 42;
    let sim = simulator(ShopifySimulatorOptions {
        non_mutable_items: vec![item(bad)],
        ..Default::default()
    })
    .await;
    for n in 0..100 {
        sim.set_level(item(n), LOCATION, 0);
    }
    let config = config(&sim, dir.path(), 100, false, 50.0, 10);
    let propagation = Propagation::start(&config, store(dir.path()), reqwest::Client::new())
        .await
        .unwrap();
    for round in 1..=2_i64 {
        let changes: Vec<AvailabilityChange> = (0..100)
            .map(|n| change(n, (5 + round, 0), 0, round as u64))
            .collect();
        propagation.publish(&changes);
        propagation.flush(Duration::from_secs(10)).await.unwrap();
        for n in (0..100).filter(|n| *n != bad) {
            assert_eq!(
                sim.level(item(n), LOCATION),
                Some(3 + round),
                "round {round}: {}",
                sku(n)
            );
        }
    }
    assert_eq!(sim.level(item(bad), LOCATION), Some(0));
    let counters = sim.counters();
    assert_eq!(
        counters.mutations_applied, 2,
        "each round's 99 items went in one call"
    );
    assert_eq!(
        counters.quantities_in_rejected_mutations - 100,
        counters.mutations_rejected - 1,
        "after the first refusal the bad item is only ever sent alone: {counters:?}"
    );
    let status = &propagation.channel_status()[0];
    assert_eq!(status.isolated, 1);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("NON_MUTABLE_INVENTORY_ITEM")
    );
    propagation.shutdown().await;
}

#[tokio::test]
async fn an_order_the_shop_took_itself_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(item(0), LOCATION, 0);
    let config = config(&sim, dir.path(), 1, false, 50.0, 10);
    let options = PropagationOptions {
        cas_grace_ms: Some(1_500),
        ..PropagationOptions::default()
    };
    let propagation = Propagation::start_with_options(
        &config,
        store(dir.path()),
        reqwest::Client::new(),
        options,
    )
    .await
    .unwrap();
    propagation.publish(&[change(0, (12, 0), 0, 1)]);
    propagation.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(sim.level(item(0), LOCATION), Some(10));

    // The shop sells 3 before we ingest the order; a receipt of 2 then lands in our ledger.
    let line = SimOrderLine {
        inventory_item_id: item(0),
        sku: sku(0),
        quantity: 3,
    };
    sim.place_order(LOCATION, &[line]).await.unwrap();
    assert_eq!(sim.level(item(0), LOCATION), Some(7));
    propagation.publish(&[change(0, (14, 0), 0, 2)]);
    assert!(
        eventually(Duration::from_secs(5), || sim.counters().cas_stale >= 1).await,
        "the push carried changeFromQuantity = 10 and hit the shop's 7"
    );
    assert_eq!(
        sim.level(item(0), LOCATION),
        Some(7),
        "the shop's own decrement stands"
    );

    // The order's movement reaches the ledger within the grace period: 14 − 3 reserved.
    propagation.publish(&[change(0, (14, 3), 0, 3)]);
    propagation.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(sim.level(item(0), LOCATION), Some(9));
    assert!(
        !sim.level_history(item(0), LOCATION).contains(&12),
        "the stale ATP 12 was never written: {:?}",
        sim.level_history(item(0), LOCATION)
    );
    assert_eq!(propagation.last_pushed(CHANNEL, &sku(0)), Some(9));
    assert_eq!(propagation.channel_status()[0].conflicts_total, 1);
    propagation.shutdown().await;
}

/// A one-listing Shopify channel fed by WH-1 (no safety stock) whose orders poller runs
/// only when a compare-and-set conflict wakes it (`on_conflict`).
fn cas_config(sim: &ShopifySimulator, dir: &Path, on_conflict: bool) -> Config {
    let csv_path = dir.join("listings.csv");
    std::fs::write(
        &csv_path,
        format!("sku,inventory_item_id\n{},{}\n", sku(0), item(0)),
    )
    .unwrap();
    let text = format!(
        r#"
        [[locations]]
        id = "WH-1"

        [[channels]]
        id = "{CHANNEL}"
        kind = "shopify"
        locations = ["WH-1"]
        safety_stock = 0
        [channels.rate_limit]
        requests_per_sec = 50.0
        burst = 10
        [channels.retry]
        initial_backoff_ms = 50
        max_backoff_ms = 400
        [channels.shopify]
        shop_url = "{url}"
        api_version = "2026-04"
        access_token = "{token}"
        webhook_secret = "secret"
        location_id = {LOCATION}
        listings_csv = "{csv}"
        orders_poll_interval_secs = 0
        orders_poll_on_conflict = {on_conflict}
        orders_poll_lookback_secs = 600
        "#,
        url = sim.base_url(),
        token = sim.options().access_token,
        csv = csv_path.display(),
    );
    let config = Config::from_toml(&text).unwrap();
    config.validate().unwrap();
    config
}

fn receipt(quantity: u64, key: &str) -> stocksync::domain::Movement {
    stocksync::domain::Movement {
        schema_version: stocksync::domain::SCHEMA_VERSION,
        sku: Sku(sku(0)),
        idempotency_key: format!("test:cas:{key}"),
        source: "test".to_owned(),
        occurred_at_ms: None,
        kind: stocksync::domain::MovementKind::Receipt {
            location: "WH-1".into(),
            quantity,
        },
    }
}

/// Wakes the test's orders poller on a conflict, as the app does.
struct WakePoller(Arc<stocksync::ingest::poller::PollSignal>);

impl stocksync::propagation::ConflictListener for WakePoller {
    fn channel_lowered(&self, _channel: &str, _sku: &str) {
        self.0.wake();
    }
    fn orders_polled_since(&self, _channel: &str, since_ms: i64) -> Option<bool> {
        Some(self.0.succeeded_since(since_ms))
    }
}

/// Everything the compare-and-set tests run: the shop, the ledger publishing into
/// propagation, and (when the channel polls on conflicts) the Shopify orders poller.
struct CasRig {
    sim: ShopifySimulator,
    store: Arc<dyn Store>,
    propagation: Propagation,
    ledger: stocksync::ledger::Ledger,
    poller: Option<stocksync::ingest::poller::PollerHandle>,
    config: Config,
    _dir: tempfile::TempDir,
}

impl CasRig {
    /// Webhooks are held back: the simulator has no webhook URL, so the shop's orders
    /// reach us only through the poller (or a late delivery the test makes itself).
    async fn start(on_conflict: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sim = simulator(ShopifySimulatorOptions::default()).await;
        sim.set_level(item(0), LOCATION, 0);
        let config = cas_config(&sim, dir.path(), on_conflict);
        let store = store(dir.path());
        let signal = Arc::new(stocksync::ingest::poller::PollSignal::new());
        let clients =
            stocksync::platforms::PlatformClients::build(&config.channels, reqwest::Client::new());
        let propagation = Propagation::start_with_options(
            &config,
            store.clone(),
            reqwest::Client::new(),
            PropagationOptions {
                cas_grace_ms: Some(200),
                conflict_listener: Some(Arc::new(WakePoller(signal.clone()))),
                ..PropagationOptions::default()
            },
        )
        .await
        .unwrap();
        let ledger = stocksync::ledger::Ledger::start(
            store.clone(),
            Arc::new(propagation.clone()),
            stocksync::ledger::LedgerOptions::default(),
        );
        let poller = stocksync::ingest::shopify::poller::start(
            &config.channels[0],
            ledger.clone(),
            &clients,
            signal,
            stocksync::ingest::poller::PollGate::always(),
        );
        assert_eq!(poller.is_some(), on_conflict);
        Self {
            sim,
            store,
            propagation,
            ledger,
            poller,
            config,
            _dir: dir,
        }
    }

    fn level(&self) -> Option<i64> {
        self.sim.level(item(0), LOCATION)
    }

    async fn stop(self) {
        if let Some(poller) = self.poller {
            poller.stop().await;
        }
        self.propagation.shutdown().await;
    }
}

/// Issue 9 §4 end to end: the shop sells 3 while its webhooks are held back and a receipt
/// raises our ATP. The push conflicts; the listing never rises over the shop's 7; the
/// conflict wakes the orders poller, which ingests the order through the webhook decoder,
/// and the listing converges to 15 − 3 = 12. The push log tells each request apart.
#[tokio::test]
async fn a_conflict_wakes_the_orders_poller_and_the_listing_converges_without_overwriting() {
    let rig = CasRig::start(true).await;
    rig.ledger.submit(receipt(10, "r1")).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || rig.level() == Some(10)).await);

    let line = SimOrderLine {
        inventory_item_id: item(0),
        sku: sku(0),
        quantity: 3,
    };
    let placed = rig.sim.place_order(LOCATION, &[line]).await.unwrap();
    assert_eq!(rig.level(), Some(7));
    rig.ledger.submit(receipt(5, "r2")).await.unwrap();

    assert!(
        eventually(Duration::from_secs(10), || rig.level() == Some(12)).await,
        "converged: {:?}",
        rig.sim.level_history(item(0), LOCATION)
    );
    let history = rig.sim.level_history(item(0), LOCATION);
    assert!(
        !history.contains(&15),
        "the ATP that ignores the shop's sale was never written: {history:?}"
    );
    assert_eq!(rig.propagation.held(CHANNEL, &sku(0)), None);
    let state = rig.ledger.state(&Sku(sku(0))).await.unwrap();
    let wh1 = state.location(&"WH-1".into());
    assert_eq!((wh1.on_hand, wh1.reserved), (15, 3));

    // The webhook arrives late after all: a duplicate, nothing moves.
    let decoded = stocksync::ingest::shopify::decode::decode(
        &rig.config.channels[0],
        stocksync::ingest::shopify::decode::WebhookTopic::OrdersCreate,
        &serde_json::to_vec(&placed.body).unwrap(),
    )
    .unwrap();
    for movement in decoded.movements {
        let ack = rig.ledger.submit(movement).await.unwrap();
        assert!(
            matches!(ack, stocksync::ledger::Ack::Duplicate { .. }),
            "{ack:?}"
        );
    }

    // One push-log entry per request: the refused write, the read, the hold decision,
    // and the write that went through with the new expected value.
    let query = stocksync::store::PushLogQuery {
        channel: Some(CHANNEL.to_owned()),
        sku: Some(sku(0)),
        limit: 20,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = rig.store.query_push_log(&query).await.unwrap();
        if rows.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows.reverse();
    let seen: Vec<(&str, u64, Option<i64>, u32)> = rows
        .iter()
        .map(|row| {
            (
                row.outcome.as_str(),
                row.quantity,
                row.change_from,
                row.requests,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("accepted", 10, None, 1),
            ("conflict", 15, Some(10), 1),
            ("read", 7, None, 1),
            ("held", 15, Some(7), 0),
            ("accepted", 12, Some(7), 1),
        ]
    );
    rig.stop().await;
}

/// Without an orders poll, the hold lasts as long as the order is missing: the listing
/// stays at the shop's 7 (an increase waits) while a decrease goes out at once, and the
/// late webhook then explains the sale and the listing converges.
#[tokio::test]
async fn a_lowered_listing_waits_for_the_late_webhook_and_a_decrease_still_goes_out() {
    let rig = CasRig::start(false).await;
    rig.ledger.submit(receipt(10, "r1")).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || rig.level() == Some(10)).await);
    let line = SimOrderLine {
        inventory_item_id: item(0),
        sku: sku(0),
        quantity: 3,
    };
    let placed = rig.sim.place_order(LOCATION, &[line]).await.unwrap();
    rig.ledger.submit(receipt(5, "r2")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || rig
            .propagation
            .held(CHANNEL, &sku(0))
            .is_some())
        .await
    );
    let held = rig.propagation.held(CHANNEL, &sku(0)).unwrap();
    assert_eq!((held.expected, held.observed, held.unexplained), (10, 7, 3));
    // Well past the CAS grace (200 ms): still the shop's value.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rig.level(), Some(7));
    assert!(
        rig.sim
            .level_history(item(0), LOCATION)
            .iter()
            .all(|value| *value <= 10),
        "{:?}",
        rig.sim.level_history(item(0), LOCATION)
    );

    // A write-off of 10 (ATP 15 → 5) is a decrease below the shop's 7: pushed at once.
    let mut write_off = receipt(0, "w1");
    write_off.kind = stocksync::domain::MovementKind::Adjustment {
        location: "WH-1".into(),
        delta: -10,
        reason: "damaged".to_owned(),
    };
    rig.ledger.submit(write_off).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || rig.level() == Some(5)).await);
    // Stock back (ATP 13): an increase while the sale is unexplained waits.
    rig.ledger.submit(receipt(8, "r3")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.level(), Some(5));

    // The held-back webhook is delivered: the sale is reserved, 13 − 3 = 10 goes out.
    let decoded = stocksync::ingest::shopify::decode::decode(
        &rig.config.channels[0],
        stocksync::ingest::shopify::decode::WebhookTopic::OrdersCreate,
        &serde_json::to_vec(&placed.body).unwrap(),
    )
    .unwrap();
    for movement in decoded.movements {
        rig.ledger.submit(movement).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || rig.level() == Some(10)).await,
        "{:?}",
        rig.sim.level_history(item(0), LOCATION)
    );
    assert_eq!(rig.propagation.held(CHANNEL, &sku(0)), None);
    rig.stop().await;
}

/// Issue 17, shadow mode against the Shopify simulator: nothing is written to the shop;
/// each listing is read and compared with what would have been pushed; switched to live,
/// the listings that differ are set once, over the values read.
#[tokio::test]
async fn a_shadow_channel_writes_nothing_to_the_shop_until_it_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    // What the shop lists today: SKU-000 too much, SKU-001 too little, SKU-002 right.
    for (n, listed) in [(0, 9), (1, 0), (2, 4)] {
        sim.set_level(item(n), LOCATION, listed);
    }
    let mut config = config(&sim, dir.path(), 3, false, 50.0, 10);
    config.channels[0].mode = stocksync::config::ChannelMode::Shadow;
    let propagation = Propagation::start(&config, store(dir.path()), reqwest::Client::new())
        .await
        .unwrap();
    // ATP = WH-1 (on hand − reserved) + WH-2 − safety 2: 3, 5, 4.
    let changes = vec![
        change(0, (2, 0), 3, 1),
        change(1, (4, 0), 3, 1),
        change(2, (3, 0), 3, 1),
    ];
    propagation.publish(&changes);
    propagation.flush(Duration::from_secs(10)).await.unwrap();
    for (n, listed) in [(0, 9), (1, 0), (2, 4)] {
        assert_eq!(
            sim.level_history(item(n), LOCATION),
            vec![listed],
            "{}: never written in shadow mode",
            sku(n)
        );
    }
    let report = propagation.shadow_report(CHANNEL, 10).unwrap();
    assert_eq!(report.compared, 3);
    let differences: Vec<(&str, u64, Option<i64>)> = report
        .differences
        .iter()
        .map(|d| (d.sku.as_str(), d.would_push, d.channel_value))
        .collect();
    assert_eq!(
        differences,
        vec![("SKU-000", 3, Some(9)), ("SKU-001", 5, Some(0))]
    );
    assert_eq!((report.units_over, report.units_under), (6, 5));

    propagation.set_mode(CHANNEL, stocksync::config::ChannelMode::Live);
    propagation.publish(&changes);
    propagation.flush(Duration::from_secs(10)).await.unwrap();
    for (n, atp) in [(0, 3), (1, 5), (2, 4)] {
        assert_eq!(sim.level(item(n), LOCATION), Some(atp), "{}", sku(n));
    }
    assert_eq!(
        sim.level_history(item(2), LOCATION),
        vec![4],
        "a listing the shop already had right is not written"
    );
    propagation.shutdown().await;
}
