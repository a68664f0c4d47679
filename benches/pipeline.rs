//! Criterion: the whole in-process path — submit → SKU actor → durable group commit in the
//! store → propagation enqueue (real `Propagation` with a Shopify channel pointing at the
//! in-process simulator) — against a plain HashMap apply of the same movements, once per
//! store backend it can reach.
//!
//! Run: `cargo bench --bench pipeline`. Environment:
//! - `BENCH_MAX_BATCH=N` overrides the group-commit batch limit (default as in config);
//! - `STOCKSYNC_BENCH_POSTGRES=postgres://user@host/db` adds a run against PostgreSQL
//!   (password in `STOCKSYNC_BENCH_POSTGRES_PASSWORD` or the URL), in a fresh schema
//!   `stocksync_bench_<pid>_<unix secs>` dropped after the run; when the store cannot be
//!   opened the run is skipped with the reason printed;
//! - `STOCKSYNC_BENCH_ROUNDS=N` runs N measured batches per backend after one warm-up batch
//!   without criterion (fixed work, e.g. under `valgrind --tool=callgrind`) and prints each.
//!
//! The embedded store always runs.

// A bench target sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

/// mimalloc: the engine allocates many small, short-lived values on several threads,
/// where it measured faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stocksync::config::{Config, StoreBackend, StoreConfig};
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION};
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::propagation::Propagation;

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

/// One store the pipeline runs against: the backend's name and how to open it.
struct Target {
    name: &'static str,
    config: StoreConfig,
}

/// The embedded store in `dir`, and PostgreSQL when `STOCKSYNC_BENCH_POSTGRES` names one.
fn targets(dir: &std::path::Path) -> Vec<Target> {
    let mut targets = vec![Target {
        name: "embedded",
        config: StoreConfig {
            backend: StoreBackend::Embedded,
            path: dir.join("bench.db"),
            ..StoreConfig::default()
        },
    }];
    if let Some(url) = std::env::var("STOCKSYNC_BENCH_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
    {
        let mut config = StoreConfig {
            backend: StoreBackend::Postgres,
            ..StoreConfig::default()
        };
        config.postgres.url = url;
        config.postgres.password = std::env::var("STOCKSYNC_BENCH_POSTGRES_PASSWORD").ok();
        config.postgres.create_schema = true;
        config.postgres.schema = format!(
            "stocksync_bench_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs())
        );
        targets.push(Target {
            name: "postgres",
            config,
        });
    } else {
        println!("postgres: skipped (set STOCKSYNC_BENCH_POSTGRES=postgres://… to run it)");
    }
    targets
}

/// A running pipeline: the ledger on one store, its propagation and the Shopify simulator.
struct Pipeline {
    ledger: Ledger,
    _shop: stocksync::sandbox::shopify::ShopifySimulator,
}

/// Opens `target`'s store and starts the pipeline on it; the error says why it could not.
async fn start(target: &Target) -> Result<Pipeline, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("simulator listener: {error}"))?;
    let options = stocksync::sandbox::shopify::ShopifySimulatorOptions {
        auto_create_levels: true,
        ..Default::default()
    };
    let shop = stocksync::sandbox::shopify::start(options, listener)
        .await
        .map_err(|error| format!("simulator: {error}"))?;
    let store = stocksync::store::open(&target.config)
        .await
        .map_err(|error| format!("opening the store: {error}"))?;
    let propagation = Propagation::start(
        &config(&shop.base_url()),
        store.clone(),
        reqwest::Client::new(),
    )
    .await
    .map_err(|error| format!("propagation: {error}"))?;
    let options = LedgerOptions {
        group_commit_max_batch: std::env::var("BENCH_MAX_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(LedgerOptions::default().group_commit_max_batch),
        ..LedgerOptions::default()
    };
    let ledger = Ledger::start(store, Arc::new(propagation), options);
    Ok(Pipeline {
        ledger,
        _shop: shop,
    })
}

/// Submits `batch` and waits until every movement is durable; the time it took.
async fn run_batch(ledger: &Ledger, batch: Vec<Movement>) -> Duration {
    let started = Instant::now();
    let pending: Vec<_> = batch.into_iter().map(|m| ledger.submit(m)).collect();
    for ack in futures::future::join_all(pending).await {
        ack.expect("durable");
    }
    started.elapsed()
}

/// What is printed after a backend's run: the embedded database's bytes per movement; the
/// PostgreSQL schema of the run is dropped.
async fn report(target: &Target) {
    match target.config.backend {
        StoreBackend::Embedded => report_bytes_per_movement(&target.config.path),
        _ => match drop_schema(&target.config.postgres).await {
            Ok(()) => println!(
                "{}: schema {} dropped",
                target.name, target.config.postgres.schema
            ),
            Err(error) => println!(
                "{}: schema {} left in place ({error}; DROP SCHEMA {} CASCADE)",
                target.name, target.config.postgres.schema, target.config.postgres.schema
            ),
        },
    }
}

/// Drops the run's schema with everything in it.
async fn drop_schema(config: &stocksync::config::PostgresStoreConfig) -> Result<(), String> {
    let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| format!("{e}"))?;
    if let Some(password) = &config.password {
        pg.password(password.as_str());
    }
    let (client, connection) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{e}"))?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", config.schema))
        .await
        .map_err(|e| format!("{e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("bench runtime starts")
}

fn bench(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
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
    for target in targets(dir.path()) {
        let pipeline = match runtime.block_on(start(&target)) {
            Ok(pipeline) => pipeline,
            Err(reason) => {
                println!("{}: skipped: {reason}", target.name);
                continue;
            }
        };
        let mut round = 1;
        let id = BenchmarkId::new(format!("ledger_durable_{}", target.name), BATCH);
        group.bench_function(id, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let batch = movements(round);
                    round += 1;
                    total += runtime.block_on(run_batch(&pipeline.ledger, batch));
                }
                total
            })
        });
        runtime.block_on(pipeline.ledger.shutdown());
        drop(pipeline);
        runtime.block_on(report(&target));
    }
    group.finish();
}

/// `STOCKSYNC_BENCH_ROUNDS=N`: one warm-up batch, then `rounds` measured batches per
/// backend, each printed, without criterion (a fixed amount of work).
fn fixed_rounds(rounds: u64) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    for target in targets(dir.path()) {
        let pipeline = match runtime.block_on(start(&target)) {
            Ok(pipeline) => pipeline,
            Err(reason) => {
                println!("{}: skipped: {reason}", target.name);
                continue;
            }
        };
        let warm_up = runtime.block_on(run_batch(&pipeline.ledger, movements(0)));
        println!(
            "{}: warm-up {BATCH} movements in {:.1} ms",
            target.name,
            warm_up.as_secs_f64() * 1e3
        );
        let mut rates = Vec::new();
        for round in 1..=rounds {
            let took = runtime.block_on(run_batch(&pipeline.ledger, movements(round)));
            let rate = BATCH as f64 / took.as_secs_f64();
            rates.push(rate);
            println!(
                "{}: round {round}: {BATCH} movements in {:.1} ms = {rate:.0} movements/s",
                target.name,
                took.as_secs_f64() * 1e3
            );
        }
        if !rates.is_empty() {
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let high = rates.iter().copied().fold(0.0, f64::max);
            println!(
                "{}: {rounds} rounds: mean {mean:.0} movements/s ({low:.0}–{high:.0})",
                target.name
            );
        }
        runtime.block_on(pipeline.ledger.shutdown());
        drop(pipeline);
        runtime.block_on(report(&target));
    }
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

fn main() {
    if let Some(rounds) = std::env::var("STOCKSYNC_BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
    {
        fixed_rounds(rounds);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
