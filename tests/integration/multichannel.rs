//! All four channels at once, against their simulators (the demo's platforms and config):
//! - one movement reaches every channel in parallel, and a channel that is down delays
//!   none of the others (issue: "a slow or failing channel does not delay the others");
//! - scenario S9, three channels and two units: after each sale the other channels follow
//!   within about a second, and safety stock on the slower marketplaces keeps a sale that
//!   lands inside the propagation window from overselling.

use std::time::{Duration, Instant};
use stocksync::app::App;
use stocksync::config::SkuRuleConfig;
use stocksync::demo::{self, DemoOptions, Platforms};
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION};
use stocksync::sandbox::bolcom::BolcomSimulator;
use stocksync::sandbox::shopify::ShopifySimulator;
use stocksync::sandbox::{amazon, bolcom, shopify, woocommerce};

const SHOPIFY: &str = shopify::demo::CHANNEL;
const WOOCOMMERCE: &str = woocommerce::demo::CHANNEL;
const BOLCOM: &str = bolcom::demo::CHANNEL;
const AMAZON: &str = amazon::demo::CHANNEL;

/// The demo's Shopify simulator.
fn shopify_simulator(platforms: &Platforms) -> &ShopifySimulator {
    platforms
        .simulator()
        .expect("the demo runs a Shopify simulator")
}

/// The demo's Bol.com simulator.
fn bolcom_simulator(platforms: &Platforms) -> &BolcomSimulator {
    platforms
        .simulator()
        .expect("the demo runs a Bol.com simulator")
}

fn options(dir: &std::path::Path, skus: usize) -> DemoOptions {
    DemoOptions {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: dir.to_owned(),
        skus,
        stream_secs: 0,
        exit_after_summary: true,
    }
}

fn receipt(index: usize, key: &str, quantity: u64) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: demo::sku_name(index).into(),
        idempotency_key: key.to_owned(),
        source: "wms".to_owned(),
        occurred_at_ms: None,
        kind: MovementKind::Receipt {
            location: "WH-1".into(),
            quantity,
        },
    }
}

/// Waits until `channel` lists `expected` for SKU `index`, at most `limit` after `since`;
/// returns how long after `since` it was seen.
async fn listed_since(
    platforms: &Platforms,
    channel: &str,
    index: usize,
    expected: i64,
    since: Instant,
    limit: Duration,
) -> Duration {
    while since.elapsed() < limit {
        if platforms.listed(channel, index) == Some(expected) {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{channel} lists {:?} for {} after {limit:?}, expected {expected}",
        platforms.listed(channel, index),
        demo::sku_name(index)
    );
}

/// [`listed_since`] from now.
async fn listed_within(
    platforms: &Platforms,
    channel: &str,
    index: usize,
    expected: i64,
    limit: Duration,
) -> Duration {
    listed_since(platforms, channel, index, expected, Instant::now(), limit).await
}

async fn available(app: &App, index: usize) -> i64 {
    let state = app
        .ledger()
        .state(&demo::sku_name(index).into())
        .await
        .unwrap();
    state.levels().iter().map(|level| level.available()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_movement_reaches_all_four_channels_and_a_channel_that_is_down_delays_none() {
    let dir = tempfile::tempdir().unwrap();
    let platforms = Platforms::start(1).await.unwrap();
    let app = App::start(demo::demo_config(&options(dir.path(), 1), &platforms))
        .await
        .unwrap();
    // Bol.com is down (every request answers 503) when the movement arrives.
    bolcom_simulator(&platforms).set_outage(true);
    let submitted = Instant::now();
    app.ledger().submit(receipt(0, "r1", 10)).await.unwrap();
    // The others follow at their own pace: Shopify 10 (WH-1 feeds it), WooCommerce 10,
    // Amazon 9 (safety stock 1; its patches apply after 300 ms).
    let limit = Duration::from_secs(3);
    let shopify = listed_since(&platforms, SHOPIFY, 0, 10, submitted, limit).await;
    let woocommerce = listed_since(&platforms, WOOCOMMERCE, 0, 10, submitted, limit).await;
    let amazon = listed_since(&platforms, AMAZON, 0, 9, submitted, limit).await;
    println!(
        "with Bol.com down: Shopify {shopify:?}, WooCommerce {woocommerce:?}, Amazon {amazon:?}"
    );
    assert_eq!(
        platforms.listed(BOLCOM, 0),
        Some(0),
        "bol.com is down and cannot have it yet"
    );
    // When Bol.com is back, it converges by itself (retries with backoff).
    bolcom_simulator(&platforms).set_outage(false);
    listed_within(&platforms, BOLCOM, 0, 9, Duration::from_secs(20)).await;
    app.shutdown(Duration::from_secs(5)).await;
    platforms.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_three_channels_two_units() {
    let dir = tempfile::tempdir().unwrap();
    let platforms = Platforms::start(2).await.unwrap();
    let mut config = demo::demo_config(&options(dir.path(), 2), &platforms);
    // SKU 1 has no safety stock anywhere; SKU 0 keeps the demo's 1 unit on Bol.com and Amazon.
    for channel in [BOLCOM, AMAZON] {
        config.sku_rules.push(SkuRuleConfig {
            sku: demo::sku_name(1),
            channel: Some(channel.to_owned()),
            safety_stock: 0,
        });
    }
    let app = App::start(config).await.unwrap();
    let api = format!("http://{}", app.http_addr());
    shopify_simulator(&platforms)
        .set_webhook_url(Some(format!("{api}/webhooks/shopify/{SHOPIFY}")));
    let shopify_line = |index: usize| stocksync::sandbox::shopify::SimOrderLine {
        inventory_item_id: shopify::demo::item(index),
        sku: demo::sku_name(index),
        quantity: 1,
    };
    let second = Duration::from_millis(1_500);

    // Without safety stock: each sale is followed on the other channels within about a second.
    app.ledger().submit(receipt(1, "n1", 2)).await.unwrap();
    for channel in [SHOPIFY, BOLCOM, AMAZON] {
        listed_within(&platforms, channel, 1, 2, Duration::from_secs(3)).await;
    }
    let sold = Instant::now();
    shopify_simulator(&platforms)
        .place_order(shopify::demo::LOCATION, &[shopify_line(1)])
        .await
        .unwrap();
    let bol = listed_since(&platforms, BOLCOM, 1, 1, sold, second).await;
    let amazon = listed_since(&platforms, AMAZON, 1, 1, sold, second).await;
    let sold = Instant::now();
    demo::place_order(&platforms, BOLCOM, 1, 1)
        .await
        .expect("bol.com shows 1 and sells it");
    // Bol.com orders are polled (every second here), then pushed.
    let shopify = listed_since(&platforms, SHOPIFY, 1, 0, sold, second * 2).await;
    let amazon_zero = listed_since(&platforms, AMAZON, 1, 0, sold, second * 2).await;
    println!(
        "after sale 1: Bol.com {bol:?}, Amazon {amazon:?}; after sale 2: Shopify {shopify:?}, Amazon {amazon_zero:?}"
    );
    assert!(
        demo::place_order(&platforms, AMAZON, 1, 1).await.is_err(),
        "amazon lists 0 and cannot sell a third unit"
    );
    assert_eq!(available(&app, 1).await, 0);

    // With safety stock 1 on the slower marketplaces: a Shopify sale and a Bol.com sale
    // inside the propagation window (Bol.com still shows its old 1) do not oversell.
    app.ledger().submit(receipt(0, "p1", 2)).await.unwrap();
    listed_within(&platforms, SHOPIFY, 0, 2, Duration::from_secs(3)).await;
    listed_within(&platforms, BOLCOM, 0, 1, Duration::from_secs(3)).await;
    listed_within(&platforms, AMAZON, 0, 1, Duration::from_secs(3)).await;
    shopify_simulator(&platforms)
        .place_order(shopify::demo::LOCATION, &[shopify_line(0)])
        .await
        .unwrap();
    demo::place_order(&platforms, BOLCOM, 0, 1)
        .await
        .expect("bol.com still shows its old 1");
    listed_within(&platforms, AMAZON, 0, 0, second * 2).await;
    listed_within(&platforms, SHOPIFY, 0, 0, second * 2).await;
    assert!(demo::place_order(&platforms, AMAZON, 0, 1).await.is_err());
    assert_eq!(
        available(&app, 0).await,
        0,
        "two units, two sales, no oversell"
    );
    app.shutdown(Duration::from_secs(5)).await;
    platforms.shutdown().await;
}
