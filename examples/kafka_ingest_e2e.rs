//! A crude end-to-end measurement of the Kafka ingest against a raw rdkafka consume of the
//! same topic, in the same run.
//!
//! 1. creates a topic of 6 partitions and produces N receipts to it (keyed by SKU, 10,000
//!    SKUs, every record with its own idempotency key);
//! 2. baseline: a plain rdkafka `StreamConsumer` in a fresh group reads all N records
//!    (payloads only touched, nothing decoded);
//! 3. stocksync: [`KafkaIngest`] in another fresh group feeds a [`Ledger`] over an embedded
//!    store in a temporary directory (no propagation); timed until the group's committed
//!    offsets cover all N records, i.e. every movement is durable.
//!
//! Run (a broker must be listening, e.g. `tansu broker --listener-url tcp://127.0.0.1:9092
//! --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/`):
//! `KAFKA_BROKERS=127.0.0.1:9092 cargo run --release --example kafka_ingest_e2e -- 1000000`

// An example sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stocksync::config::KafkaConfig;
use stocksync::domain::NullSink;
use stocksync::ingest::kafka::KafkaIngest;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::embedded::EmbeddedStore;

const PARTITIONS: i32 = 6;
const SKUS: u64 = 10_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let count: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("e2e-movements-{run}");

    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let new_topic = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1));
    admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await?;
    for name in [format!("{topic}.dlq")] {
        let dlq = NewTopic::new(&name, 1, TopicReplication::Fixed(1));
        admin.create_topics([&dlq], &AdminOptions::new()).await?;
    }

    let started = Instant::now();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for i in 0..count {
        let sku = format!("SKU-{:05}", i.wrapping_mul(7919) % SKUS);
        let value = format!(
            r#"{{"schema_version":1,"sku":"{sku}","idempotency_key":"e2e-{i}","source":"e2e","type":"receipt","location":"WH-1","quantity":1}}"#
        );
        let partition = (i % PARTITIONS as u64) as i32;
        let mut record = BaseRecord::to(&topic)
            .key(sku.as_str())
            .payload(value.as_str())
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    println!(
        "produced {count} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Baseline: a raw consume of the same topic.
    let raw: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("e2e-raw-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    raw.subscribe(&[topic.as_str()])?;
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut bytes = 0_usize;
    for _ in 0..count {
        let message = raw.recv().await?;
        first.get_or_insert_with(Instant::now);
        bytes += message.payload().map_or(0, <[u8]>::len);
    }
    let raw_total = started.elapsed().as_secs_f64();
    let raw_after_first = first.map_or(raw_total, |f| f.elapsed().as_secs_f64());
    drop(raw);
    println!(
        "raw rdkafka consume: {count} records ({bytes} bytes) in {raw_total:.2} s ({:.0}/s; {:.0}/s after the first record)",
        count as f64 / raw_total,
        count as f64 / raw_after_first
    );

    // stocksync: consumed into a durable ledger.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn stocksync::store::Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("e2e.db"))?);
    let ledger = Ledger::start(store, Arc::new(NullSink), LedgerOptions::default());
    let group = format!("e2e-ingest-{run}");
    let config = KafkaConfig {
        brokers: brokers.clone(),
        group_id: group.clone(),
        movements_topic: topic.clone(),
        dead_letter_topic: format!("{topic}.dlq"),
        atp_topic: None,
        batch_max: std::env::var("E2E_BATCH_MAX")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
        batch_wait_ms: 5,
        max_in_flight: std::env::var("E2E_MAX_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16_384),
        consumer_overrides: Default::default(),
    };
    let watcher: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        tpl.add_partition(&topic, partition);
    }
    let started = Instant::now();
    let ingest = KafkaIngest::start(config, ledger.clone())?;
    let mut first_commit: Option<(Instant, i64)> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let watcher_tpl = tpl.clone();
        let committed = tokio::task::block_in_place(|| {
            watcher.committed_offsets(watcher_tpl, Duration::from_secs(5))
        })?;
        let done: i64 = committed
            .elements()
            .iter()
            .map(|element| match element.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            })
            .sum();
        if done > 0 && first_commit.is_none() {
            first_commit = Some((Instant::now(), done));
        }
        if done as u64 >= count {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("gave up after 600 s with {done} of {count} committed");
        }
    }
    let total = started.elapsed().as_secs_f64();
    ingest.stop().await?;
    let steady =
        first_commit.map(|(at, done)| (count as f64 - done as f64) / at.elapsed().as_secs_f64());
    println!(
        "stocksync ingest to durable: {count} movements in {total:.2} s ({:.0}/s; {:.0}/s after the first commit); {:.0} % of the raw consume",
        count as f64 / total,
        steady.unwrap_or(0.0),
        100.0 * raw_total / total
    );
    Ok(())
}
