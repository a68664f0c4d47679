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
        rest_leak_per_sec: 4.0,
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
        "the shop's bucket of 3 was exceeded at least once"
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
