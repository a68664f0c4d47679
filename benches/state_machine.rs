//! Criterion: the pure SKU state machine's `apply` against a plain HashMap baseline, and
//! the per-movement checks the ledger adds around it (movement hash, validation).
//!
//! Run: `cargo bench --bench state_machine`

// A bench target sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hint::black_box;
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION, SkuState};

const MOVEMENTS: usize = 10_000;

fn movements() -> Vec<Movement> {
    (0..MOVEMENTS)
        .map(|i| Movement {
            schema_version: SCHEMA_VERSION,
            sku: "SKU-1".into(),
            idempotency_key: format!("k{i}"),
            source: "bench".into(),
            occurred_at_ms: None,
            kind: match i % 4 {
                0 | 1 => MovementKind::Receipt {
                    location: "WH-1".into(),
                    quantity: 3,
                },
                2 => MovementKind::Adjustment {
                    location: "WH-1".into(),
                    delta: -1,
                    reason: "shrinkage".into(),
                },
                _ => MovementKind::Sale {
                    reservation: format!("c:o{i}:l1"),
                    quantity: 1,
                    location: Some("WH-1".into()),
                    route: vec![],
                },
            },
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let movements = movements();
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(MOVEMENTS as u64));
    group.bench_function(BenchmarkId::new("baseline_hashmap", MOVEMENTS), |b| {
        b.iter(|| {
            let mut levels: HashMap<(&str, &str), i64> = HashMap::new();
            for movement in &movements {
                let (location, delta) = match &movement.kind {
                    MovementKind::Receipt { location, quantity } => {
                        (location.as_str(), *quantity as i64)
                    }
                    MovementKind::Adjustment {
                        location, delta, ..
                    } => (location.as_str(), *delta),
                    MovementKind::Sale {
                        location, quantity, ..
                    } => (
                        location.as_ref().map_or("WH-1", |l| l.as_str()),
                        -(*quantity as i64),
                    ),
                    _ => continue,
                };
                *levels.entry((movement.sku.as_str(), location)).or_default() += delta;
            }
            black_box(levels)
        })
    });
    group.bench_function(BenchmarkId::new("sku_state_apply", MOVEMENTS), |b| {
        b.iter(|| {
            let mut state = SkuState::new("SKU-1".into());
            for (i, movement) in movements.iter().enumerate() {
                state.apply(movement, i as u64 + 1).expect("applies");
            }
            black_box(state)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("per_movement");
    group.throughput(Throughput::Elements(MOVEMENTS as u64));
    group.bench_function(BenchmarkId::new("movement_hash", MOVEMENTS), |b| {
        b.iter(|| {
            movements.iter().fold(0_u64, |sum, m| {
                sum ^ stocksync::ledger::keys::movement_hash(m)
            })
        })
    });
    // The definition as first written (issue 10): a copy of the movement, its encoding in a
    // new vector, SHA-256; the library's hash gives the same value without the copy.
    group.bench_function(BenchmarkId::new("movement_hash_by_copy", MOVEMENTS), |b| {
        b.iter(|| {
            movements.iter().fold(0_u64, |sum, movement| {
                use sha2::{Digest, Sha256};
                let mut canonical = movement.clone();
                canonical.occurred_at_ms = None;
                canonical.source.clear();
                canonical.schema_version = SCHEMA_VERSION;
                let digest = Sha256::digest(stocksync::store::codec::encode_movement(&canonical));
                sum ^ u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
            })
        })
    });
    group.bench_function(BenchmarkId::new("validate", MOVEMENTS), |b| {
        b.iter(|| movements.iter().filter(|m| m.validate().is_ok()).count())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
