//! The Kafka side of Amazon's ORDER_CHANGE notifications (PLATFORMS.md §4.6): an SQS bridge
//! copies them onto a Kafka topic (`notifications_topic`), and one consumer per channel
//! reads them with the [`super::decode::notification_decoder`].
//!
//! May depend on: `config`, `ledger`, `telemetry`, `ingest::kafka`, `ingest::amazon::decode`.

use crate::config::{ChannelConfig, KafkaConfig};
use crate::ingest::kafka::{IngestError, KafkaIngest, KafkaIngestOptions};
use crate::ledger::Ledger;
use crate::telemetry::DeadLetterBroadcast;

/// Starts the notification consumer of `channel` when it is an Amazon channel with a
/// `notifications_topic`: in its own consumer group `{group_id}-{channel}`, with the
/// `[kafka]` dead-letter topic, announcing dead letters on `dead_letters`. `Ok(None)` for
/// every other channel.
///
/// Errors: [`IngestError`] when the Kafka client cannot be created.
pub fn start(
    channel: &ChannelConfig,
    kafka: &KafkaConfig,
    ledger: &Ledger,
    dead_letters: &DeadLetterBroadcast,
) -> Result<Option<KafkaIngest>, IngestError> {
    let Some(topic) = channel
        .amazon()
        .and_then(|amazon| amazon.notifications_topic.clone())
    else {
        return Ok(None);
    };
    let settings = KafkaConfig {
        movements_topic: topic,
        group_id: format!("{}-{}", kafka.group_id, channel.id),
        ..kafka.clone()
    };
    let options = KafkaIngestOptions {
        decoder: Some(super::decode::notification_decoder(channel.clone())),
        dead_letters: Some(dead_letters.clone()),
        ..KafkaIngestOptions::default()
    };
    KafkaIngest::start_with_options(settings, ledger.clone(), options).map(Some)
}
