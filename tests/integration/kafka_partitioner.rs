//! The SKU → partition rule of `ingest::kafka::partitioner` against real producers on a
//! real broker (tansu): kafka-python with its default partitioner, and rdkafka with
//! `partitioner=murmur2_random` (what README "Going to Kafka" asks Rust and C producers to
//! set) produce keyed records to a 6-partition topic; every record must be where
//! `partition_for_key` says. A key set with every tail length, non-ASCII and long SKUs.

use crate::support::{TansuBroker, produce_with_python};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use stocksync::ingest::kafka::partitioner::partition_for_key;

const PARTITIONS: u32 = 6;

fn keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "A",
        "AB",
        "ABC",
        "ABCD",
        "SKU-A",
        "TEE-M",
        "Tafel 120/80 eiken",
        "Größe-XL",
        "靴-27cm",
        "LANTERN-BRASS",
    ]
    .iter()
    .map(|key| (*key).to_owned())
    .collect();
    keys.extend((0..40).map(|i| format!("DEMO-{i:04}")));
    keys.push("X".repeat(255));
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_rdkafka_and_stocksync_put_every_sku_in_the_same_partition() {
    let broker = TansuBroker::start();
    let topic = crate::support::unique("partitioner");
    broker.create_topic(&topic, PARTITIONS as i32);
    let keys = keys();

    // kafka-python, default partitioner.
    let records: Vec<serde_json::Value> = keys
        .iter()
        .map(|key| serde_json::json!({"topic": topic, "key": key, "value": "{}"}))
        .collect();
    let placed = produce_with_python(&broker.bootstrap(), &records);
    assert_eq!(placed.len(), keys.len());
    let mut used = std::collections::BTreeSet::new();
    for (key, (partition, _)) in keys.iter().zip(&placed) {
        let ours = partition_for_key(key.as_bytes(), PARTITIONS).unwrap();
        assert_eq!(
            *partition as u32, ours,
            "kafka-python put {key:?} in {partition}, stocksync says {ours}"
        );
        used.insert(ours);
    }
    assert!(
        used.len() > 3,
        "the keys spread over the partitions: {used:?}"
    );

    // rdkafka (librdkafka) with the Java-compatible partitioner.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("partitioner", "murmur2_random")
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("create rdkafka producer");
    for key in &keys {
        let delivery = producer
            .send(
                FutureRecord::to(&topic).key(key.as_str()).payload("{}"),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("produce {key:?}: {error}"));
        let ours = partition_for_key(key.as_bytes(), PARTITIONS).unwrap();
        assert_eq!(
            delivery.partition as u32, ours,
            "rdkafka put {key:?} in {}, stocksync says {ours}",
            delivery.partition
        );
    }
}
