//! The ATP output topic (DESIGN.md §5): each channel's new available-to-promise, keyed by
//! SKU, so other systems can follow. Propagation may call it through [`AtpOutput`] without
//! knowing about Kafka.

use super::{IngestError, kafka_error, producer_config};
use crate::config::KafkaConfig;
use async_trait::async_trait;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One ATP change, the JSON value of an ATP record:
/// `{"sku":"SKU-A","channel":"shopify-main","atp":7,"seq":12}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtpUpdate {
    /// The SKU (also the record key).
    pub sku: String,
    /// The channel id.
    pub channel: String,
    /// Units the channel may sell now.
    pub atp: u64,
    /// The SKU's ledger sequence number the value was derived from (newer is higher).
    pub seq: u64,
}

/// Somewhere ATP changes can be published (the Kafka ATP topic, or a test double).
#[async_trait]
pub trait AtpOutput: Send + Sync + 'static {
    /// Publishes one change and returns once the output has accepted it durably.
    ///
    /// Errors: [`IngestError::Kafka`] when the record was not delivered,
    /// [`IngestError::Serialise`] when it could not be encoded.
    async fn publish(&self, update: &AtpUpdate) -> Result<(), IngestError>;
}

/// Produces [`AtpUpdate`]s as JSON, keyed by SKU, to the configured `atp_topic`.
pub struct AtpPublisher {
    producer: FutureProducer,
    topic: String,
}

impl AtpPublisher {
    /// Creates a producer for `topic` on `brokers` (comma separated `host:port`).
    ///
    /// Errors: [`IngestError::Kafka`] when the client cannot be created.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, IngestError> {
        let producer: FutureProducer = producer_config(brokers)
            .create()
            .map_err(kafka_error("create atp producer"))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// The publisher for `config.atp_topic`, or `None` when no ATP topic is configured.
    ///
    /// Errors: as [`AtpPublisher::new`].
    pub fn from_config(config: &KafkaConfig) -> Result<Option<Self>, IngestError> {
        config
            .atp_topic
            .as_deref()
            .map(|topic| Self::new(&config.brokers, topic))
            .transpose()
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[async_trait]
impl AtpOutput for AtpPublisher {
    async fn publish(&self, update: &AtpUpdate) -> Result<(), IngestError> {
        let value = serde_json::to_vec(update).map_err(|error| IngestError::Serialise {
            what: "atp update",
            message: error.to_string(),
        })?;
        let record = FutureRecord::to(&self.topic)
            .key(update.sku.as_bytes())
            .payload(&value);
        self.producer
            .send(
                record,
                Duration::from_millis(super::PRODUCE_QUEUE_TIMEOUT_MS),
            )
            .await
            .map(|_| ())
            .map_err(|(source, _)| IngestError::Kafka {
                operation: "produce atp update",
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_has_the_documented_json_shape() {
        let update = AtpUpdate {
            sku: "SKU-A".into(),
            channel: "shopify-main".into(),
            atp: 7,
            seq: 12,
        };
        assert_eq!(
            serde_json::to_string(&update).unwrap(),
            r#"{"sku":"SKU-A","channel":"shopify-main","atp":7,"seq":12}"#
        );
    }
}
