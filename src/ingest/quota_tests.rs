//! The pollers against the simulators under tokio's paused clock: the demo's pollers stay
//! inside every platform's quota for ten virtual minutes, a `Retry-After` (delta-seconds
//! or HTTP-date) holds back the next request, and failures back off with jitter.
//!
//! Test-only; uses `demo` and `sandbox` for the simulators and the demo's configuration.

use crate::config::Config;
use crate::demo::{DemoOptions, Platforms, demo_config};
use crate::domain::NullSink;
use crate::ingest::poller::{PollerHandle, jittered_delay, next_delay};
use crate::ledger::{Ledger, LedgerOptions};
use crate::platforms::PlatformClients;
use crate::sandbox::amazon::{AmazonSimulator, SimListing};
use crate::sandbox::bolcom::{BolcomSimulator, SimOffer};
use crate::sandbox::shopify::ShopifySimulator;
use crate::sandbox::woocommerce::{self as woo, WoocommerceSimulator, WoocommerceSimulatorOptions};
use crate::sandbox::{amazon, bolcom, shopify, woocommerce};
use crate::store::embedded::EmbeddedStore;
use std::sync::Arc;
use std::time::Duration;

/// A client without a connection pool: a pool's idle timer would let paused time jump
/// while a request is on the wire.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn ledger(dir: &std::path::Path) -> Ledger {
    let store = Arc::new(EmbeddedStore::open(&dir.join("s.db")).unwrap());
    Ledger::start(store, Arc::new(NullSink), LedgerOptions::default())
}

/// 429 answers every simulator served.
fn served_429(platforms: &Platforms) -> [(&'static str, u64); 4] {
    let amazon = platforms.simulator::<AmazonSimulator>().unwrap().counters();
    let bolcom = platforms.simulator::<BolcomSimulator>().unwrap().counters();
    let shopify = platforms
        .simulator::<ShopifySimulator>()
        .unwrap()
        .counters();
    let woo = platforms
        .simulator::<WoocommerceSimulator>()
        .unwrap()
        .counters();
    [
        ("amazon", amazon.throttled + amazon.json_feed_quota_exceeded),
        ("bolcom", bolcom.throttled),
        ("shopify", shopify.throttled),
        ("woocommerce", woo.throttled_or_failed),
    ]
}

#[tokio::test(start_paused = true)]
async fn the_demo_pollers_meet_no_429_in_ten_minutes_of_virtual_time() {
    let dir = tempfile::tempdir().unwrap();
    let skus = 4;
    let platforms = Platforms::start(skus).await.unwrap();
    let options = DemoOptions {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: dir.path().to_path_buf(),
        skus,
        stream_secs: 0,
        exit_after_summary: true,
    };
    let config: Config = demo_config(&options, &platforms);
    // The marketplaces sell only what they show: stock them (no pusher runs here).
    let amazon_sim = platforms.simulator::<AmazonSimulator>().unwrap();
    let bol_sim = platforms.simulator::<BolcomSimulator>().unwrap();
    let shopify_sim = platforms.simulator::<ShopifySimulator>().unwrap();
    for i in 0..skus {
        amazon_sim.add_listing(SimListing {
            seller_sku: crate::demo::sku_name(i),
            quantity: Some(500),
            fba: false,
            fba_fulfillable: 0,
        });
        bol_sim.add_offer(SimOffer {
            offer_id: bolcom::demo::offer(i),
            reference: crate::demo::sku_name(i),
            ean: format!("87{:011}", i + 1),
            amount: 500,
        });
        shopify_sim.set_level(shopify::demo::item(i), shopify::demo::LOCATION, 500);
    }
    let clients = PlatformClients::build(&config.channels, unpooled());
    let ledger = ledger(dir.path());
    let pollers = crate::ingest::start_pollers(&config, &ledger, &clients);
    let names: Vec<_> = pollers.iter().map(|p| p.name().to_owned()).collect();
    for channel in [
        amazon::demo::CHANNEL,
        bolcom::demo::CHANNEL,
        woocommerce::demo::CHANNEL,
    ] {
        assert!(
            names.iter().any(|name| name.ends_with(channel)),
            "the demo polls {channel}: {names:?}"
        );
    }
    // Ten minutes: an order every 5 s, round robin over the four channels.
    let channels = [
        amazon::demo::CHANNEL,
        bolcom::demo::CHANNEL,
        shopify::demo::CHANNEL,
        woocommerce::demo::CHANNEL,
    ];
    let mut placed = 0;
    for step in 0..120usize {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let channel = channels[step % channels.len()];
        if crate::demo::place_order(&platforms, channel, step % skus, 1)
            .await
            .is_ok()
        {
            placed += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let served = served_429(&platforms);
    let stats: Vec<_> = pollers
        .iter()
        .map(|p| (p.name().to_owned(), p.stats()))
        .collect();
    assert!(
        served.iter().all(|(_, count)| *count == 0),
        "429s served: {served:?}; pollers: {stats:#?}"
    );
    assert!(placed >= 60, "orders placed: {placed}");
    let amazon_orders = pollers
        .iter()
        .find(|p| p.name().starts_with("amazon-orders"))
        .unwrap()
        .stats();
    // getOrders allows a burst of 20, then one a minute: about 29 polls in 10 minutes.
    assert!(
        (25..=35).contains(&amazon_orders.polls),
        "amazon orders polls: {amazon_orders:?}"
    );
    assert!(amazon_orders.totals.orders_fetched > 0, "{amazon_orders:?}");
    for poller in pollers {
        poller.stop().await;
    }
    platforms.shutdown().await;
}

/// A WooCommerce shop on a paused clock, polled every second by the app's poller.
async fn woo_poller(
    dir: &std::path::Path,
) -> (
    WoocommerceSimulator,
    Arc<PlatformClients>,
    Config,
    PollerHandle,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = woo::start(
        WoocommerceSimulatorOptions {
            clock: crate::clock::TokioClock::starting_at(1_700_000_000_000),
            ..WoocommerceSimulatorOptions::default()
        },
        listener,
    )
    .await
    .unwrap();
    let options = sim.options().clone();
    let config = Config::from_toml(&format!(
        r#"
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "woo"
        kind = "woocommerce"
        locations = ["WH-1"]
        [channels.woocommerce]
        site_url = "{url}"
        consumer_key = "{key}"
        consumer_secret = "{secret}"
        webhook_secret = "w"
        poll_interval_secs = 1
        listings = []
        "#,
        url = sim.base_url(),
        key = options.consumer_key,
        secret = options.consumer_secret,
    ))
    .unwrap();
    let clients = Arc::new(PlatformClients::build(&config.channels, unpooled()));
    let channel = config.channel("woo").unwrap().clone();
    let handle = crate::ingest::woocommerce::poller::start(
        &channel,
        ledger(dir),
        &clients,
        Default::default(),
    )
    .unwrap();
    (sim, clients, config, handle)
}

/// Advances paused time in small steps until `done` or `limit`.
async fn run_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The arrival (ms since the simulator started) of the 429 and of the request after it.
fn after_the_429(sim: &WoocommerceSimulator) -> Option<(f64, f64)> {
    let requests = sim.requests();
    let throttled = requests.iter().position(|r| r.status == 429)?;
    let next = requests.get(throttled + 1)?;
    Some((requests[throttled].at_ms, next.at_ms))
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_told_to_the_pusher_holds_back_the_poller_too() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, clients, config, poller) = woo_poller(dir.path()).await;
    run_until(Duration::from_secs(5), || poller.stats().polls >= 1).await;
    assert_eq!(poller.stats().failures, 0, "{:?}", poller.stats());
    // The next request of the store, the pusher's, is told 429 Retry-After: 7.
    sim.inject_failures(429, 1, Some(7));
    let section = config
        .channel("woo")
        .unwrap()
        .woocommerce()
        .unwrap()
        .clone();
    let client = clients.woocommerce("woo", &section);
    let answer = client.get("/products?per_page=1").await.unwrap();
    assert_eq!(answer.status, 429);
    run_until(Duration::from_secs(30), || after_the_429(&sim).is_some()).await;
    let (throttled_at, next_at) = after_the_429(&sim).expect("the poller polled again");
    assert!(
        next_at - throttled_at >= 7_000.0,
        "the poller came back {} ms after the 429",
        next_at - throttled_at
    );
    assert_eq!(sim.counters().retry_after_violations, 0);
    poller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_http_date_retry_after_holds_back_the_poller() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _clients, _config, poller) = woo_poller(dir.path()).await;
    run_until(Duration::from_secs(5), || poller.stats().polls >= 1).await;
    // The poller's next request is told 429 with Retry-After 7 s after the answer's Date.
    sim.inject_failures_dated(429, 1, 7);
    run_until(Duration::from_secs(30), || after_the_429(&sim).is_some()).await;
    let (throttled_at, next_at) = after_the_429(&sim).expect("the poller polled again");
    assert!(
        next_at - throttled_at >= 7_000.0,
        "the poller came back {} ms after the 429",
        next_at - throttled_at
    );
    let stats = poller.stats();
    assert!(stats.backoffs >= 1, "{stats:?}");
    assert_eq!(sim.counters().retry_after_violations, 0);
    poller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_with_jitter_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _clients, _config, poller) = woo_poller(dir.path()).await;
    run_until(Duration::from_secs(5), || poller.stats().polls >= 1).await;
    let failures = 8u32;
    sim.inject_failures(503, failures, None);
    let mut delays = Vec::new();
    for n in 1..=failures {
        run_until(Duration::from_secs(600), || {
            poller.stats().backoffs >= u64::from(n)
        })
        .await;
        let stats = poller.stats();
        assert_eq!(stats.backoffs_in_a_row, n, "{stats:?}");
        delays.push(stats.next_delay);
    }
    let interval = Duration::from_secs(1);
    for (n, delay) in (1u32..).zip(&delays) {
        let ceiling = interval * 2u32.pow(n);
        assert!(
            *delay >= ceiling / 2 && *delay <= ceiling,
            "backoff {n}: {delay:?} outside [{:?}, {ceiling:?}]",
            ceiling / 2
        );
    }
    let at_ceiling = (1u32..)
        .zip(&delays)
        .filter(|(n, delay)| **delay == interval * 2u32.pow(*n))
        .count();
    assert!(
        at_ceiling < delays.len(),
        "no jitter: every backoff is its ceiling {delays:?}"
    );
    run_until(Duration::from_secs(600), || {
        poller.stats().backoffs_in_a_row == 0
    })
    .await;
    assert_eq!(poller.stats().last_error, None, "the poller recovers");
    poller.stop().await;
}

#[test]
fn jitter_stays_in_the_upper_half_of_the_ceiling_and_honours_retry_after() {
    let options = crate::ingest::poller::PollerOptions::new("t", Duration::from_secs(10));
    assert_eq!(
        jittered_delay(&options, 2, None, 0.0),
        Duration::from_secs(20)
    );
    assert_eq!(
        jittered_delay(&options, 2, None, 1.0),
        next_delay(&options, 2, None)
    );
    assert_eq!(
        jittered_delay(&options, 1, None, 0.0),
        Duration::from_secs(10),
        "never below the interval"
    );
    assert_eq!(
        jittered_delay(&options, 1, Some(Duration::from_secs(95)), 0.3),
        Duration::from_secs(95),
        "never sooner than Retry-After"
    );
    assert_eq!(
        jittered_delay(&options, 60, None, f64::NAN),
        options.max_backoff,
        "capped"
    );
}
