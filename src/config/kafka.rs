//! `[kafka]`: the movements consumer, its dead-letter topic and the ATP topic.
//!
//! Owns: [`KafkaConfig`].
//!
//! May depend on: nothing but serde.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[kafka]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated (`127.0.0.1:9092`).
    pub brokers: String,
    /// Consumer group id; instances sharing it split the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topic carrying movements, keyed by SKU.
    #[serde(default = "default_movements_topic")]
    pub movements_topic: String,
    /// Topic receiving messages that cannot be decoded, with the reason in headers.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Topic receiving each channel's new ATP, keyed by SKU; absent disables it.
    #[serde(default)]
    pub atp_topic: Option<String>,
    /// Most messages taken from the consumer before waiting for their durability.
    #[serde(default = "default_kafka_batch_max")]
    pub batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[serde(default = "default_kafka_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Most records submitted to the ledger and not yet settled (durable, or delivered to
    /// the dead-letter topic) at once, over all batches in flight; at least `batch_max`.
    #[serde(default = "default_kafka_max_in_flight")]
    pub max_in_flight: usize,
    /// librdkafka consumer properties (`fetch.max.bytes`, `queued.max.messages.kbytes`, …)
    /// set after stocksync's own, so they override them. `enable.auto.commit`,
    /// `enable.auto.offset.store`, `group.id` and `bootstrap.servers` cannot be overridden.
    #[serde(default)]
    pub consumer_overrides: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "stocksync".to_owned()
}
fn default_movements_topic() -> String {
    "stock.movements".to_owned()
}
fn default_dead_letter_topic() -> String {
    "stock.movements.dlq".to_owned()
}
fn default_kafka_batch_max() -> usize {
    1000
}
fn default_kafka_batch_wait_ms() -> u64 {
    5
}
fn default_kafka_max_in_flight() -> usize {
    16_384
}
