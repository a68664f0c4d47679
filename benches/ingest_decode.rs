//! Criterion: the per-movement cost of ingest decoding, REST and Kafka, without I/O.
//!
//! - `rest_parse`: [`parse_movements`] of one `POST /api/v1/movements` body of 100 movements
//!   (receipts, sales with a route, cancellations, fulfilments), validation included;
//! - `kafka_decode`: [`decode_movement`] of the same 100 movements as Kafka records (key =
//!   SKU), one call per record;
//! - baseline: `serde_json::from_slice::<serde_json::Value>` of the same body (the cost of
//!   merely tokenising the JSON).
//!
//! Run: `cargo bench --bench ingest_decode`

// A bench target sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use stocksync::ingest::kafka::{MessageOrigin, decode_movement};
use stocksync::web::movements::parse_movements;

const BATCH: usize = 100;

/// One movement as a producer would send it.
fn movement_json(i: usize) -> String {
    let sku = format!("SKU-{:06}", i * 7919 % 100_000);
    match i % 4 {
        0 => format!(
            r#"{{"schema_version":1,"sku":"{sku}","idempotency_key":"wms-1:rcpt-{i}:1","source":"wms-1","type":"receipt","location":"WH-1","quantity":12}}"#
        ),
        1 => format!(
            r#"{{"schema_version":1,"sku":"{sku}","idempotency_key":"shopify:main:o{i}:1","source":"shopify:main","occurred_at_ms":1764547200000,"type":"sale","reservation":"shopify:main:o{i}:1","quantity":1,"route":["WH-1","WH-2"]}}"#
        ),
        2 => format!(
            r#"{{"schema_version":1,"sku":"{sku}","idempotency_key":"shopify:main:c{i}:1","source":"shopify:main","type":"cancellation","reservation":"shopify:main:o{}:1","reason":"cancelled"}}"#,
            i - 1
        ),
        _ => format!(
            r#"{{"schema_version":1,"sku":"{sku}","idempotency_key":"wms-1:ship-{i}:1","source":"wms-1","type":"fulfilment","reservation":"shopify:main:o{}:1","quantity":1}}"#,
            i - 2
        ),
    }
}

fn bench(c: &mut Criterion) {
    let items: Vec<String> = (0..BATCH).map(movement_json).collect();
    let body = format!("[{}]", items.join(","));
    let records: Vec<(Vec<u8>, Vec<u8>)> = items
        .iter()
        .map(|item| {
            let value: serde_json::Value = serde_json::from_str(item).expect("valid JSON");
            let sku = value["sku"].as_str().expect("a sku").as_bytes().to_vec();
            (sku, item.as_bytes().to_vec())
        })
        .collect();
    assert_eq!(
        parse_movements(body.as_bytes()).expect("valid").len(),
        BATCH
    );

    let mut group = c.benchmark_group("ingest_decode");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("baseline_value_tokenise", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(
                body.as_bytes(),
            )))
        })
    });
    group.bench_function("rest_parse", |b| {
        b.iter(|| black_box(parse_movements(black_box(body.as_bytes()))))
    });
    group.bench_function("kafka_decode", |b| {
        b.iter(|| {
            for (offset, (key, value)) in records.iter().enumerate() {
                let origin = MessageOrigin {
                    topic: "stock.movements",
                    partition: 0,
                    offset: offset as i64,
                };
                let _ = black_box(decode_movement(
                    Some(key.as_slice()),
                    Some(value.as_slice()),
                    &origin,
                ));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
