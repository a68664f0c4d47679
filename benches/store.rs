//! The embedded store on its own: the stored movement and snapshot encodings (binary vs the
//! JSON of earlier layouts: time per encode + decode and bytes), and group commits of the
//! pipeline bench's movements into a store that already holds many events (events/s, the
//! slowest commit, the largest WAL, bytes per stored movement).
//!
//! Run: `cargo bench --bench store`. Environment: `STORE_BENCH_PREFILL` events written
//! before measuring (default 1,000,000), `STORE_BENCH_SKUS` (default 2,000),
//! `STORE_BENCH_SECS` measured seconds per variant (default 10), `STORE_BENCH_BATCH` events
//! per commit (default 16,384, the default group-commit limit), `STORE_BENCH_ONLY` (`codecs`,
//! `json` or `binary`: one part only); for experiments, `STORE_BENCH_PAGE_SIZE` (a new
//! database's page size) and `STORE_BENCH_DROP_TIME_INDEX` (without `events_recorded_at`).

// A bench target sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

use std::hint::black_box;
use std::time::{Duration, Instant};
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION, SkuState};
use stocksync::store::codec;
use stocksync::store::embedded::EmbeddedStore;
use stocksync::store::{CommitBatch, EventRecord, Store};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The pipeline bench's movement `i` of round `round`, as the ledger records it (time and
/// route decided).
fn movement(round: u64, i: u64, skus: u64) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: format!("SKU-{:05}", i % skus).into(),
        idempotency_key: format!("r{round}:m{i}"),
        source: "bench".into(),
        occurred_at_ms: Some(1_764_000_000_000 + i as i64),
        kind: if i % 3 == 2 {
            MovementKind::Sale {
                reservation: format!("c:r{round}:o{i}"),
                quantity: 1,
                location: Some("WH-1".into()),
                route: vec!["WH-1".into()],
            }
        } else {
            MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 2,
            }
        },
    }
}

fn codecs() {
    let movements: Vec<Movement> = (0..100_000).map(|i| movement(1, i, 2_000)).collect();
    let started = Instant::now();
    let mut json_bytes = 0;
    for m in &movements {
        let text = serde_json::to_vec(m).unwrap();
        json_bytes += text.len();
        black_box(serde_json::from_slice::<Movement>(&text).unwrap());
    }
    let json_ns = started.elapsed().as_nanos() as f64 / movements.len() as f64;
    let started = Instant::now();
    let mut binary_bytes = 0;
    for m in &movements {
        let bytes = codec::encode_movement(m);
        binary_bytes += bytes.len();
        black_box(codec::decode_movement(&bytes, m.sku.as_str(), &m.idempotency_key).unwrap());
    }
    let binary_ns = started.elapsed().as_nanos() as f64 / movements.len() as f64;
    let n = movements.len() as f64;
    println!(
        "movement encode+decode: json {json_ns:.0} ns, {:.1} bytes | binary {binary_ns:.0} ns, {:.1} bytes",
        json_bytes as f64 / n,
        binary_bytes as f64 / n
    );

    let mut state = SkuState::new("SKU-00001".into());
    for (seq, m) in (0..300)
        .map(|i| movement(1, i * 2_000 + 1, 2_000))
        .enumerate()
    {
        state.apply(&m, seq as u64 + 1).unwrap();
    }
    let rounds = 2_000;
    let started = Instant::now();
    let mut json_len = 0;
    for _ in 0..rounds {
        let text = serde_json::to_vec(&state).unwrap();
        json_len = text.len();
        black_box(serde_json::from_slice::<SkuState>(&text).unwrap());
    }
    let json_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let started = Instant::now();
    let mut cbor_len = 0;
    for _ in 0..rounds {
        let bytes = codec::encode_state(&state);
        cbor_len = bytes.len();
        black_box(codec::decode_state(&bytes).unwrap());
    }
    let cbor_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "snapshot (300 movements, 100 open reservations) encode+decode: json {json_us:.1} µs, {json_len} bytes | cbor {cbor_us:.1} µs, {cbor_len} bytes"
    );
}

/// One group commit's events, continuing each SKU's sequence.
fn batch(round: u64, size: u64, skus: u64, seqs: &mut [u64], binary: bool) -> CommitBatch {
    let events = (0..size)
        .map(|i| {
            let m = movement(round, i, skus);
            let next = &mut seqs[(i % skus) as usize];
            *next += 1;
            EventRecord {
                sku: m.sku.0.clone(),
                seq: *next,
                idempotency_key: m.idempotency_key.clone(),
                key_expires_at_ms: 1_764_604_800_000,
                recorded_at_ms: 1_764_000_000_000 + round as i64,
                movement: if binary {
                    codec::encode_movement(&m)
                } else {
                    serde_json::to_vec(&m).unwrap()
                },
                movement_hash: None,
            }
        })
        .collect();
    CommitBatch {
        events,
        ..Default::default()
    }
}

async fn commits(binary: bool) {
    let prefill = env("STORE_BENCH_PREFILL", 1_000_000);
    let skus = env("STORE_BENCH_SKUS", 2_000);
    let secs = env("STORE_BENCH_SECS", 10);
    let size = env("STORE_BENCH_BATCH", 16_384);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    if let Ok(page_size) = std::env::var("STORE_BENCH_PAGE_SIZE") {
        // Only honoured before the first table exists.
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(&format!(
                "PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL; CREATE TABLE t (x); DROP TABLE t;"
            ))
            .unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    if std::env::var("STORE_BENCH_DROP_TIME_INDEX").is_ok() {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("DROP INDEX events_recorded_at;")
            .unwrap();
    }
    let mut seqs = vec![0u64; skus as usize];
    let mut round = 0;
    let mut written = 0;
    let started = Instant::now();
    while written < prefill {
        round += 1;
        store
            .commit(batch(round, size, skus, &mut seqs, binary))
            .await
            .unwrap();
        written += size;
    }
    let prefill_rate = written as f64 / started.elapsed().as_secs_f64();
    let mut measured = 0;
    let mut slowest = Duration::ZERO;
    let mut largest_wal = 0;
    let mut busy = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        round += 1;
        let next = batch(round, size, skus, &mut seqs, binary);
        let commit_started = Instant::now();
        store.commit(next).await.unwrap();
        let took = commit_started.elapsed();
        busy += took;
        slowest = slowest.max(took);
        largest_wal = largest_wal.max(store.wal_bytes());
        measured += size;
    }
    written += measured;
    store.close().await.unwrap();
    let db_bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "commit {}: prefill {written_before} events at {prefill_rate:.0}/s; then {:.0} events/s in commits ({:.0}/s with encoding), slowest commit {} ms, largest wal {:.1} MiB; {:.1} bytes per stored movement, wal after close {} bytes",
        if binary { "binary" } else { "json  " },
        measured as f64 / busy.as_secs_f64(),
        measured as f64 / started.elapsed().as_secs_f64(),
        slowest.as_millis(),
        largest_wal as f64 / 1_048_576.0,
        db_bytes as f64 / written as f64,
        store.wal_bytes(),
        written_before = written - measured,
    );
}

fn main() {
    // `STORE_BENCH_ONLY=binary` (or `json`, `codecs`) runs one part.
    let only = std::env::var("STORE_BENCH_ONLY").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if only.is_empty() || only == "codecs" {
        codecs();
    }
    if only.is_empty() || only == "json" {
        runtime.block_on(commits(false));
    }
    if only.is_empty() || only == "binary" {
        runtime.block_on(commits(true));
    }
}
