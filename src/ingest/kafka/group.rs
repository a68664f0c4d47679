//! Setting the movements consumer group's committed offsets from outside the group, for
//! `stocksync store restore`: after a restore the ledger must read Kafka again from the
//! backup's offset watermarks, not from where the group had got to.
//!
//! May depend on: `config`, the rest of `ingest::kafka`.

use super::{IngestError, consumer_config, kafka_error};
use crate::config::KafkaConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most partitions of the movements topic this sets (the metadata is refused beyond it).
const MAX_PARTITIONS: usize = 10_000;

/// Commits, for `config.group_id`, the next offset of every partition of
/// `config.movements_topic`: the partition's entry in `watermarks` (partition → next
/// offset), or the partition's earliest offset where `watermarks` has none (the store
/// knows nothing of it, so all of it is read again). Returns the `(partition, offset)`s
/// committed, by partition.
///
/// The group must have no members: a running instance would go on committing its own
/// positions. This asks the broker for the group's members first (Kafka's DescribeGroups)
/// and refuses while there are any.
///
/// Errors: [`IngestError::Config`] while the group has members or the topic has no
/// partitions (or more than 10,000); [`IngestError::Kafka`] when the broker cannot be
/// reached or refuses a request.
pub fn set_committed_offsets(
    config: &KafkaConfig,
    watermarks: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, IngestError> {
    let mut client = consumer_config(config);
    client.set("client.id", "stocksync-admin");
    let consumer: BaseConsumer = client
        .create()
        .map_err(kafka_error("create admin consumer"))?;
    idle(&consumer, config, timeout)?;
    let topic = &config.movements_topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka_error("read topic metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() || partitions.len() > MAX_PARTITIONS {
        return Err(IngestError::Config(format!(
            "topic {topic:?} has {} partitions on the broker",
            partitions.len()
        )));
    }
    let mut committed = Vec::with_capacity(partitions.len());
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        let offset = match watermarks.get(&partition) {
            Some(offset) => *offset,
            None => {
                consumer
                    .fetch_watermarks(topic, partition, timeout)
                    .map_err(kafka_error("read the earliest offset"))?
                    .0
            }
        };
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(kafka_error("build the offset commit"))?;
        committed.push((partition, offset));
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .map_err(kafka_error("commit offsets"))?;
    committed.sort_unstable();
    Ok(committed)
}

/// Refuses while `config.group_id` has members (an instance of it is running), asking the
/// broker with Kafka's DescribeGroups. A group the broker does not know is idle.
///
/// Errors: [`IngestError::Config`] naming the member count while there are members;
/// [`IngestError::Kafka`] when the broker cannot be asked.
pub fn ensure_group_idle(config: &KafkaConfig, timeout: Duration) -> Result<(), IngestError> {
    let mut client = consumer_config(config);
    client.set("client.id", "stocksync-admin");
    let consumer: BaseConsumer = client
        .create()
        .map_err(kafka_error("create admin consumer"))?;
    idle(&consumer, config, timeout)
}

fn idle(
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<(), IngestError> {
    let groups = consumer
        .fetch_group_list(Some(&config.group_id), timeout)
        .map_err(kafka_error("describe consumer group"))?;
    if let Some(group) = groups
        .groups()
        .iter()
        .find(|group| group.name() == config.group_id)
        && !group.members().is_empty()
    {
        return Err(IngestError::Config(format!(
            "consumer group {:?} has {} member(s) ({}); stop every stocksync instance of it first",
            config.group_id,
            group.members().len(),
            group.state()
        )));
    }
    Ok(())
}
