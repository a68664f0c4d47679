//! Criterion: the whole in-process path — submit → SKU actor → durable group commit in the
//! embedded store → propagation enqueue (real `Propagation` with a Shopify channel pointing
//! at the in-process simulator) — against a plain HashMap apply of the same movements.
//!
//! Run: `cargo bench --bench pipeline` (`BENCH_MAX_BATCH=N` overrides the group-commit
//! batch limit, default as in config).

// A bench target sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

/// mimalloc: the engine allocates many small, short-lived values on several threads,
/// where it measured faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stocksync::config::Config;
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION};
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::propagation::Propagation;
use stocksync::store::embedded::EmbeddedStore;

const SKUS: usize = 2_000;
const BATCH: usize = 50_000;

fn movements(round: u64) -> Vec<Movement> {
    (0..BATCH)
        .map(|i| Movement {
            schema_version: SCHEMA_VERSION,
            sku: format!("SKU-{:05}", i % SKUS).into(),
            idempotency_key: format!("r{round}:m{i}"),
            source: "bench".into(),
            occurred_at_ms: None,
            kind: if i % 3 == 2 {
                MovementKind::Sale {
                    reservation: format!("c:r{round}:o{i}"),
                    quantity: 1,
                    location: None,
                    route: vec!["WH-1".into()],
                }
            } else {
                MovementKind::Receipt {
                    location: "WH-1".into(),
                    quantity: 2,
                }
            },
        })
        .collect()
}

fn config(shop_url: &str) -> Config {
    let listings: String = (0..SKUS)
        .map(|i| {
            format!(
                "[[channels.shopify.listings]]\nsku = \"SKU-{i:05}\"\ninventory_item_id = {}\n",
                1000 + i
            )
        })
        .collect();
    Config::from_toml(&format!(
        r#"
[[locations]]
id = "WH-1"
[[channels]]
id = "shopify-bench"
kind = "shopify"
locations = ["WH-1"]
[channels.rate_limit]
requests_per_sec = 2.0
burst = 2
[channels.shopify]
shop_url = "{shop_url}"
access_token = "shpat_sandbox_token"
webhook_secret = "sandbox_webhook_secret"
location_id = 1
{listings}
"#
    ))
    .expect("bench config parses")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _shop) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = stocksync::sandbox::shopify::ShopifySimulatorOptions {
            auto_create_levels: true,
            ..Default::default()
        };
        let shop = stocksync::sandbox::shopify::start(options, listener)
            .await
            .unwrap();
        let store: Arc<dyn stocksync::store::Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("bench.db")).unwrap());
        let propagation = Propagation::start(
            &config(&shop.base_url()),
            store.clone(),
            reqwest::Client::new(),
        )
        .await
        .unwrap();
        let options = LedgerOptions {
            group_commit_max_batch: std::env::var("BENCH_MAX_BATCH")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(LedgerOptions::default().group_commit_max_batch),
            ..LedgerOptions::default()
        };
        let ledger = Ledger::start(store, Arc::new(propagation), options);
        (ledger, shop)
    });

    let mut group = c.benchmark_group("durable_pipeline");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let sample = movements(0);
    group.bench_function(BenchmarkId::new("baseline_hashmap", BATCH), |b| {
        b.iter(|| {
            let mut levels: HashMap<&str, i64> = HashMap::new();
            for movement in &sample {
                let delta = match &movement.kind {
                    MovementKind::Receipt { quantity, .. } => *quantity as i64,
                    MovementKind::Sale { quantity, .. } => -(*quantity as i64),
                    _ => 0,
                };
                *levels.entry(movement.sku.as_str()).or_default() += delta;
            }
            black_box(levels)
        })
    });
    let mut round = 1;
    group.bench_function(BenchmarkId::new("ledger_durable", BATCH), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let batch = movements(round);
                round += 1;
                let ledger = ledger.clone();
                total += runtime.block_on(async move {
                    let started = Instant::now();
                    let pending: Vec<_> = batch.into_iter().map(|m| ledger.submit(m)).collect();
                    for ack in futures::future::join_all(pending).await {
                        ack.expect("durable");
                    }
                    started.elapsed()
                });
            }
            total
        })
    });
    group.finish();
    report_bytes_per_movement(&dir.path().join("bench.db"));
}

/// Prints the database size per stored movement after the run (WAL checkpointed first).
fn report_bytes_per_movement(path: &std::path::Path) {
    let connection = rusqlite::Connection::open(path).expect("bench database opens");
    let _ = connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    let (events, pages, page_size, free): (i64, i64, i64, i64) = connection
        .query_row(
            "SELECT (SELECT count(*) FROM events), (SELECT * FROM pragma_page_count()),
                    (SELECT * FROM pragma_page_size()), (SELECT * FROM pragma_freelist_count())",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .expect("bench database answers");
    let bytes = (pages - free) * page_size;
    println!(
        "store: {events} events in {bytes} bytes = {:.1} bytes per stored movement",
        bytes as f64 / events.max(1) as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
