//! End to end: movements produced with kafka-python reach the Shopify simulator's listings.
//!
//! A real tansu broker, the whole engine (`App`: Kafka ingest → ledger → store →
//! propagation → Shopify adapter) and the in-process Shopify simulator, on each reachable
//! store backend: `embedded::` always, `postgres::` (a fresh schema) when
//! `STOCKSYNC_TEST_POSTGRES` is set (otherwise it writes `skipped: postgres ...` to stderr
//! and passes). 1,000 receipts for
//! 20 SKUs are produced at 200/s by a Python producer; the test watches the simulator's
//! levels and measures, per movement, the time from its send to the first moment the
//! channel lists a quantity that includes it. Every movement must reach the channel, within
//! the channel's `Retry-After` windows; the latency percentiles are printed (run with
//! `--nocapture`) and recorded in BENCHMARKS.md, never asserted: latency budgets belong to
//! benchmarks, not to functional tests on a shared machine.

use crate::support;

use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stocksync::config::{Config, StoreBackend, StoreConfig};
use stocksync::store::conformance::StoreFactory;

const SKUS: usize = 20;
const MOVEMENTS: usize = 1_000;
const RATE_PER_SEC: u32 = 200;
const SHOP_LOCATION: u64 = 1;

fn item(index: usize) -> u64 {
    5000 + index as u64
}

fn sku(index: usize) -> String {
    format!("E2E-{index:02}")
}

fn config(store: &StoreConfig, shop_url: &str, bootstrap: &str, topic: &str, dlq: &str) -> Config {
    let listings: String = (0..SKUS)
        .map(|i| {
            format!(
                "[[channels.shopify.listings]]\nsku = \"{}\"\ninventory_item_id = {}\n",
                sku(i),
                item(i)
            )
        })
        .collect();
    let mut config = Config::from_toml(&format!(
        r#"
[http]
listen = "127.0.0.1:0"
[kafka]
brokers = "{bootstrap}"
group_id = "e2e"
movements_topic = "{topic}"
dead_letter_topic = "{dlq}"
[[locations]]
id = "WH-1"
[[channels]]
id = "shopify-e2e"
kind = "shopify"
locations = ["WH-1"]
[channels.rate_limit]
requests_per_sec = 10.0
burst = 10
[channels.shopify]
shop_url = "{shop_url}"
access_token = "shpat_sandbox_token"
webhook_secret = "sandbox_webhook_secret"
location_id = {SHOP_LOCATION}
{listings}
"#
    ))
    .expect("config parses");
    config.store = store.clone();
    config.validate().expect("config is valid");
    config
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

macro_rules! backend_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kafka_python_movements_all_reach_the_channel_and_their_latency_is_reported() {
                let test = "end_to_end kafka_python_movements_all_reach_the_channel";
                if let Some(factory) = StoreFactory::for_test(&$backend, test) {
                    movements_reach_the_channel(&factory).await;
                }
            }
        }
    };
}

backend_tests!(embedded, StoreBackend::Embedded);
backend_tests!(postgres, StoreBackend::Postgres);

async fn movements_reach_the_channel(factory: &StoreFactory) {
    let broker = support::TansuBroker::start();
    let topic = support::unique("e2e-movements");
    let dlq = support::unique("e2e-dlq");
    broker.create_topic(&topic, 3);
    broker.create_topic(&dlq, 1);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_options = stocksync::sandbox::shopify::ShopifySimulatorOptions {
        auto_create_levels: true,
        ..Default::default()
    };
    let shop = Arc::new(
        stocksync::sandbox::shopify::start(shop_options, listener)
            .await
            .unwrap(),
    );
    let store = factory.fresh_config();
    let app = stocksync::app::App::start(config(
        &store,
        &shop.base_url(),
        &broker.bootstrap(),
        &topic,
        &dlq,
    ))
    .await
    .unwrap();

    // Watch the channel: the first time (ms) each SKU was listed at each level.
    let first_seen: Arc<Mutex<HashMap<(usize, i64), i64>>> = Arc::default();
    let watcher = {
        let (shop, first_seen) = (shop.clone(), first_seen.clone());
        tokio::spawn(async move {
            loop {
                let now = stocksync::clock::Clock::now_ms(&stocksync::clock::SystemClock);
                {
                    let mut seen = first_seen.lock().unwrap();
                    for i in 0..SKUS {
                        if let Some(level) = shop.level(item(i), SHOP_LOCATION) {
                            seen.entry((i, level)).or_insert(now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let movements: Vec<serde_json::Value> = (0..MOVEMENTS)
        .map(|n| {
            json!({"schema_version": 1, "sku": sku(n % SKUS), "idempotency_key": format!("e2e:{n}"),
            "source": "python-wms", "type": "receipt", "location": "WH-1", "quantity": 1})
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_python/paced_produce.py");
    let (bootstrap, topic_for_python) = (broker.bootstrap(), topic.clone());
    let sent_ms: Vec<i64> = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(&script)
            .args([&bootstrap, &topic_for_python, &RATE_PER_SEC.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs kafka-python)");
        {
            let mut stdin = child.stdin.take().unwrap();
            for movement in &movements {
                writeln!(stdin, "{movement}").unwrap();
            }
        }
        let mut sent = vec![0i64; MOVEMENTS];
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let (index, at) = line.split_once(' ').expect("INDEX SENT_MS");
            sent[index.parse::<usize>().unwrap()] = at.parse().unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kafka-python producer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        sent
    })
    .await
    .unwrap();
    assert!(
        sent_ms.iter().all(|&t| t > 0),
        "every movement was acknowledged by the broker"
    );

    // Wait until every SKU is listed at its final ATP (each got MOVEMENTS / SKUS receipts).
    let final_level = (MOVEMENTS / SKUS) as i64;
    support::eventually("every listing reaches its final ATP", Duration::from_secs(20), || {
        let shop = shop.clone();
        async move { (0..SKUS).all(|i| shop.level(item(i), SHOP_LOCATION) == Some(final_level)) }
    })
    .await;
    watcher.abort();
    // On a loaded machine the watcher may not have sampled since the last push: take one
    // last sample (an entry seen earlier keeps its earlier time).
    {
        let now = stocksync::clock::Clock::now_ms(&stocksync::clock::SystemClock);
        let mut seen = first_seen.lock().unwrap();
        for i in 0..SKUS {
            if let Some(level) = shop.level(item(i), SHOP_LOCATION) {
                seen.entry((i, level)).or_insert(now);
            }
        }
    }

    // Movement n is the k-th receipt of its SKU (k = n / SKUS + 1): it is on the channel once
    // the listing shows k or more.
    let seen = first_seen.lock().unwrap().clone();
    let mut latencies: Vec<i64> = (0..MOVEMENTS)
        .map(|n| {
            let (index, k) = (n % SKUS, (n / SKUS + 1) as i64);
            let listed_at = seen
                .iter()
                .filter(|((i, level), _)| *i == index && *level >= k)
                .map(|(_, at)| *at)
                .min()
                .expect("the listing reached the level");
            (listed_at - sent_ms[n]).max(0)
        })
        .collect();
    latencies.sort_unstable();
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies[MOVEMENTS - 1],
    );
    println!(
        "{} store: kafka-python → Shopify simulator latency over {MOVEMENTS} movements: p50 {p50} ms, p99 {p99} ms, max {max} ms",
        factory.backend().name()
    );

    let counters = shop.counters();
    assert_eq!(
        counters.retry_after_violations, 0,
        "requests sent inside a Retry-After window: {counters:?}"
    );
    app.shutdown(Duration::from_secs(5)).await;
}
