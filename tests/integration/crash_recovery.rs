//! `kill -9` during a stream of movements, then restart: no acknowledged movement is lost
//! and none is applied twice.
//!
//! The real `stocksync` binary runs on each reachable store backend: `embedded::` (a temp
//! dir) always, `postgres::` (a fresh schema per test, in the database of
//! `STOCKSYNC_TEST_POSTGRES`) when that variable is set; otherwise the PostgreSQL variant
//! writes `skipped: postgres ...` to stderr and passes. Four writers post batches of
//! receipts over HTTP and record which keys were acknowledged; the process is killed with
//! SIGKILL mid-stream, restarted and killed again (three cycles). After a restart every acknowledged key must answer `duplicate`, and
//! after re-sending every attempted movement each SKU's on-hand must equal the exact sum of
//! its distinct movements (each applied once, none lost).

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stocksync::config::{StoreBackend, StoreConfig};
use stocksync::store::conformance::{StoreFactory, store_toml};

const SKUS: usize = 16;
const WRITERS: usize = 4;
const BATCH: usize = 25;

/// Starts the binary on `store` (the same config again after a kill: the same data).
fn start_engine(dir: &Path, store: &StoreConfig) -> (Child, String) {
    let config = dir.join("stocksync.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[http]\nlisten = \"127.0.0.1:0\"\n[[locations]]\nid = \"WH-1\"\n",
            store_toml(store)
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stocksync"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stocksync binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().expect("engine printed its address").unwrap();
        if let Some(url) = line.strip_prefix("stocksync listening on ") {
            break url.trim().to_owned();
        }
    };
    (child, address)
}

/// Movement `n` of writer `w` in kill cycle `c`: a receipt of `n % 7 + 1` units for a SKU
/// chosen by `n`.
fn movement(cycle: usize, writer: usize, n: usize) -> (String, String, u64, Value) {
    let sku = format!("CRASH-{:02}", (writer * 7 + n + cycle) % SKUS);
    let key = format!("c{cycle}w{writer}:m{n}");
    let quantity = (n % 7 + 1) as u64;
    let body = json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "crash-test",
        "type": "receipt", "location": "WH-1", "quantity": quantity});
    (sku, key, quantity, body)
}

#[derive(Default)]
struct Ledgerbook {
    attempted: HashMap<String, (String, u64, Value)>,
    acknowledged: HashSet<String>,
}

async fn write_until_killed(
    base: String,
    cycle: usize,
    writer: usize,
    book: Arc<Mutex<Ledgerbook>>,
) {
    let client = reqwest::Client::new();
    for batch in 0.. {
        let movements: Vec<_> = (0..BATCH)
            .map(|i| movement(cycle, writer, batch * BATCH + i))
            .collect();
        {
            let mut book = book.lock().unwrap();
            for (sku, key, quantity, body) in &movements {
                book.attempted
                    .insert(key.clone(), (sku.clone(), *quantity, body.clone()));
            }
        }
        let bodies: Vec<Value> = movements.iter().map(|m| m.3.clone()).collect();
        let Ok(response) = client
            .post(format!("{base}/api/v1/movements"))
            .json(&bodies)
            .send()
            .await
        else {
            return; // the engine is gone
        };
        let Ok(answer) = response.json::<Value>().await else {
            return;
        };
        let mut book = book.lock().unwrap();
        for result in answer["results"].as_array().expect("results") {
            assert_eq!(result["outcome"], "applied", "{result}");
            book.acknowledged
                .insert(result["idempotency_key"].as_str().unwrap().to_owned());
        }
    }
}

async fn stock(client: &reqwest::Client, base: &str, sku: &str) -> Value {
    client
        .get(format!("{base}/api/v1/stock/{sku}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One test per reachable backend (see the module doc); `$cycles` is how many times the
/// kill -9 test starts, loads and kills the engine before it checks.
macro_rules! backend_tests {
    ($module:ident, $backend:expr, $cycles:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kill_9_mid_stream_loses_no_acknowledged_movement_and_applies_none_twice() {
                let test = "crash_recovery kill_9_mid_stream";
                if let Some(factory) = StoreFactory::for_test(&$backend, test) {
                    kill_9_mid_stream(&factory, $cycles).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_batch_resent_after_a_crash_tells_what_was_durable_before_it() {
                let test = "crash_recovery a_batch_resent_after_a_crash";
                if let Some(factory) = StoreFactory::for_test(&$backend, test) {
                    a_batch_resent_after_a_crash(&factory).await;
                }
            }
        }
    };
}

// Three kill cycles on both: one cycle (about 2,000 acknowledged movements, then SIGKILL)
// takes about 0.7 s on the embedded store and 1.4 s on PostgreSQL here, so the PostgreSQL
// variant needs no fewer.
backend_tests!(embedded, StoreBackend::Embedded, 3);
backend_tests!(postgres, StoreBackend::Postgres, 3);

/// Movements acknowledged per kill cycle before the SIGKILL.
const ACKNOWLEDGED_PER_CYCLE: usize = 2_000;

async fn kill_9_mid_stream(factory: &StoreFactory, cycles: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = factory.fresh_config();
    let book = Arc::new(Mutex::new(Ledgerbook::default()));
    for cycle in 0..cycles {
        let (attempted_before, acknowledged_before) = {
            let book = book.lock().unwrap();
            (book.attempted.len(), book.acknowledged.len())
        };
        let (mut engine, base) = start_engine(dir.path(), &store);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(write_until_killed(base.clone(), cycle, w, book.clone())))
            .collect();
        // Let the stream run until a good number of movements are acknowledged, then SIGKILL.
        for _ in 0..600 {
            let acknowledged = book.lock().unwrap().acknowledged.len();
            if acknowledged >= acknowledged_before + ACKNOWLEDGED_PER_CYCLE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        engine.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        engine.wait().unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        let book = book.lock().unwrap();
        let acknowledged = book.acknowledged.len() - acknowledged_before;
        let attempted = book.attempted.len() - attempted_before;
        assert!(
            acknowledged >= 100,
            "cycle {cycle}: too few acknowledged before the kill: {acknowledged}"
        );
        assert!(
            attempted > acknowledged,
            "cycle {cycle}: the kill should interrupt in-flight requests"
        );
    }
    let (attempted, acknowledged) = {
        let book = book.lock().unwrap();
        (book.attempted.clone(), book.acknowledged.clone())
    };

    let (mut engine, base) = start_engine(dir.path(), &store);
    let client = reqwest::Client::new();
    // Every acknowledged movement survived: re-sending it answers `duplicate`.
    let mut keys: Vec<&String> = attempted.keys().collect();
    keys.sort();
    let mut resent_applied = 0usize;
    for chunk in keys.chunks(500) {
        let bodies: Vec<Value> = chunk.iter().map(|k| attempted[*k].2.clone()).collect();
        let answer: Value = client
            .post(format!("{base}/api/v1/movements"))
            .json(&bodies)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for result in answer["results"].as_array().unwrap() {
            let key = result["idempotency_key"].as_str().unwrap();
            if acknowledged.contains(key) {
                assert_eq!(
                    result["outcome"], "duplicate",
                    "acknowledged movement {key} was lost: {result}"
                );
            } else if result["outcome"] == "applied" {
                resent_applied += 1;
            }
        }
    }
    assert!(resent_applied <= attempted.len() - acknowledged.len());
    // Each distinct movement is applied exactly once: on-hand equals the exact sum, and the
    // SKU's event count equals its number of distinct movements.
    let mut expected: HashMap<String, (i64, u64)> = HashMap::new();
    for (sku, quantity, _) in attempted.values() {
        let entry = expected.entry(sku.clone()).or_default();
        entry.0 += *quantity as i64;
        entry.1 += 1;
    }
    for (sku, (on_hand, events)) in &expected {
        let view = stock(&client, &base, sku).await;
        assert_eq!(
            view["locations"][0]["on_hand"].as_i64(),
            Some(*on_hand),
            "{sku}: {view}"
        );
        assert_eq!(view["seq"].as_u64(), Some(*events), "{sku}: {view}");
    }
    engine.kill().unwrap();
    engine.wait().unwrap();
}

/// Issue 10 §8: a batch cut by a crash, re-sent whole after the restart, answers every
/// movement with its index and key, the part that was durable before the crash
/// `duplicate` with the seq and time of the original event, the rest `applied`, and a
/// summary that counts both.
async fn a_batch_resent_after_a_crash(factory: &StoreFactory) {
    let dir = tempfile::tempdir().unwrap();
    let store = factory.fresh_config();
    let client = reqwest::Client::new();
    let batch: Vec<Value> = (0..20)
        .map(|n| {
            json!({"sku": format!("RETRY-{}", n % 3), "idempotency_key": format!("retry:{n}"),
                   "source": "crash-test", "type": "receipt", "location": "WH-1", "quantity": 1})
        })
        .collect();
    let post = |base: String, body: Vec<Value>| {
        let client = client.clone();
        async move {
            let response = client
                .post(format!("{base}/api/v1/movements"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    // Before the crash, only the first 8 movements of the batch were made durable.
    let (mut engine, base) = start_engine(dir.path(), &store);
    let (status, first) = post(base, batch[..8].to_vec()).await;
    assert_eq!(status, 201, "{first}");
    engine.kill().expect("SIGKILL");
    engine.wait().unwrap();

    let (mut engine, base) = start_engine(dir.path(), &store);
    let (status, answer) = post(base, batch.clone()).await;
    assert_eq!(status, 201, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result["index"], index, "{result}");
        assert_eq!(result["idempotency_key"], format!("retry:{index}"));
        assert!(result["seq"].as_u64().unwrap() >= 1, "{result}");
        if index < 8 {
            let original = &first["results"][index];
            assert_eq!(result["outcome"], "duplicate", "{result}");
            assert_eq!(
                result["seq"], original["seq"],
                "the original's seq: {result}"
            );
            assert!(
                result["recorded_at_ms"].as_i64().unwrap() > 1_600_000_000_000,
                "the original's time: {result}"
            );
        } else {
            assert_eq!(result["outcome"], "applied", "{result}");
            assert!(result.get("recorded_at_ms").is_none(), "{result}");
        }
    }
    assert_eq!(answer["summary"]["applied"], 12, "{answer}");
    assert_eq!(answer["summary"]["duplicate"], 8, "{answer}");
    engine.kill().unwrap();
    engine.wait().unwrap();
}

/// SIGTERM (what `docker stop`, systemd and Kubernetes send) stops the engine cleanly, like
/// Ctrl-C: it exits 0 after draining, the acknowledged movement is there after a restart,
/// and the embedded store's write-ahead log is checkpointed away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_engine_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig {
        path: dir.path().join("stocksync.db"),
        ..StoreConfig::default()
    };
    let (mut engine, base) = start_engine(dir.path(), &store);
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{base}/api/v1/movements"))
        .json(&json!({
            "type": "receipt", "sku": "TERM-1", "location": "WH-1", "quantity": 5,
            "idempotency_key": "term-1", "source": "test"
        }))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    // SAFETY: `kill` takes a pid and a signal number and touches no memory.
    let sent = unsafe { libc::kill(engine.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM sent");
    let status = tokio::task::spawn_blocking(move || engine.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "a clean exit after SIGTERM, not {status}");
    let wal = dir.path().join("stocksync.db-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
    assert_eq!(
        wal_bytes, 0,
        "the clean stop checkpoints the write-ahead log"
    );
    let (mut engine, base) = start_engine(dir.path(), &store);
    let stock = stock(&client, &base, "TERM-1").await;
    engine.kill().unwrap();
    let _ = engine.wait();
    assert_eq!(stock["locations"][0]["on_hand"], 5, "{stock}");
}
