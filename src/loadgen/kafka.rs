//! The Kafka row: pre-produce movements keyed by SKU to a new topic, time a raw rdkafka
//! consume of the whole topic (the same-run baseline), then time an in-process App
//! consuming the same topic until every movement is durable (the store's recorded offset
//! watermarks reach the topic's end).
//!
//! Depends on `app`, `config`, `store` (offsets) and the workload.

use super::LoadgenError;
use super::targets::app_config;
use super::workload::Workload;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Longest a phase (produce, raw consume, App consume) may take.
const PHASE_TIMEOUT_SECS: u64 = 900;

/// What to produce and where.
#[derive(Clone, Debug)]
pub struct KafkaRunOptions {
    /// Bootstrap servers.
    pub brokers: String,
    /// Movements to pre-produce.
    pub movements: u64,
    /// Partitions of the new topic.
    pub partitions: i32,
    /// Topic name; a fresh one is made from the run id when absent.
    pub topic: Option<String>,
    /// Most messages the App takes from the consumer before waiting for durability
    /// (`[kafka] batch_max`).
    pub batch_max: usize,
}

/// The Kafka row's figures.
#[derive(Clone, Debug, Serialize)]
pub struct KafkaReport {
    /// The topic used.
    pub topic: String,
    /// Partitions.
    pub partitions: i32,
    /// Movements in the topic.
    pub movements: u64,
    /// Produce rate, messages/s (acknowledged by the broker).
    pub produce_per_sec: f64,
    /// Raw rdkafka consume of the whole topic, messages/s.
    pub raw_consume_per_sec: f64,
    /// App start to every movement durable, in seconds.
    pub app_secs_from_start: f64,
    /// First durable offset to every movement durable, in seconds (excludes start-up and
    /// the consumer group join).
    pub app_secs_from_first_durable: f64,
    /// Movements/s from App start.
    pub app_per_sec_from_start: f64,
    /// Movements/s from the first durable offset.
    pub app_per_sec: f64,
    /// `app_per_sec / raw_consume_per_sec`.
    pub ratio_to_raw: f64,
}

fn kafka_error(error: KafkaError) -> LoadgenError {
    LoadgenError::Kafka(error.to_string())
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), LoadgenError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(kafka_error)?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(kafka_error)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LoadgenError::Kafka(format!("create topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

fn produce(
    brokers: &str,
    topic: &str,
    mut workload: Workload,
    movements: u64,
) -> Result<f64, LoadgenError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("acks", "all")
        .create()
        .map_err(kafka_error)?;
    let started = Instant::now();
    for _ in 0..movements {
        let movement = workload.next_movement();
        let payload =
            serde_json::to_vec(&movement).map_err(|e| LoadgenError::Encode(e.to_string()))?;
        let mut record = BaseRecord::to(topic)
            .key(movement.sku.as_str())
            .payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(50));
                }
                Err((error, _)) => return Err(kafka_error(error)),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(PHASE_TIMEOUT_SECS))
        .map_err(kafka_error)?;
    Ok(movements as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// High watermark per partition.
fn high_watermarks(brokers: &str, topic: &str, partitions: i32) -> Result<Vec<i64>, LoadgenError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-watermarks"))
        .create()
        .map_err(kafka_error)?;
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .map(|(_, high)| high)
                .map_err(kafka_error)
        })
        .collect()
}

fn raw_consume(
    brokers: &str,
    topic: &str,
    partitions: i32,
    total: i64,
) -> Result<f64, LoadgenError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-raw"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(kafka_error)?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(kafka_error)?;
    }
    consumer.assign(&assignment).map_err(kafka_error)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(PHASE_TIMEOUT_SECS);
    let mut seen = 0i64;
    let mut bytes = 0usize;
    while seen < total {
        if Instant::now() > deadline {
            return Err(LoadgenError::Timeout(format!(
                "raw consume saw {seen} of {total}"
            )));
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.map_err(kafka_error)?;
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(total as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Runs the whole Kafka row.
pub async fn run(
    options: KafkaRunOptions,
    workload: Workload,
    run_id: &str,
) -> Result<KafkaReport, LoadgenError> {
    let topic = options
        .topic
        .clone()
        .unwrap_or_else(|| format!("loadgen-{run_id}"));
    create_topic(&options.brokers, &topic, options.partitions).await?;
    let (brokers, produce_topic, movements) =
        (options.brokers.clone(), topic.clone(), options.movements);
    let produce_per_sec =
        tokio::task::spawn_blocking(move || produce(&brokers, &produce_topic, workload, movements))
            .await
            .map_err(|e| LoadgenError::Kafka(e.to_string()))??;
    let (brokers, raw_topic, partitions) =
        (options.brokers.clone(), topic.clone(), options.partitions);
    let (highs, raw_consume_per_sec) = tokio::task::spawn_blocking(move || {
        let highs = high_watermarks(&brokers, &raw_topic, partitions)?;
        let total: i64 = highs.iter().sum();
        raw_consume(&brokers, &raw_topic, partitions, total).map(|rate| (highs, rate))
    })
    .await
    .map_err(|e| LoadgenError::Kafka(e.to_string()))??;
    let total: i64 = highs.iter().sum();

    let dir = tempfile::tempdir()?;
    let group = format!("{topic}-app");
    let config = app_config(
        dir.path(),
        &format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nmovements_topic = \"{topic}\"\n\
             dead_letter_topic = \"{topic}.dlq\"\nbatch_max = {}\n",
            options.brokers, options.batch_max
        ),
    )?;
    let started = Instant::now();
    let app = crate::app::App::start(config)
        .await
        .map_err(|e| LoadgenError::App(format!("{e:#}")))?;
    let store = app.ledger().store().clone();
    let deadline = started + Duration::from_secs(PHASE_TIMEOUT_SECS);
    let mut first_durable: Option<Instant> = None;
    let done = loop {
        let durable: i64 = store
            .offsets(&group)
            .await?
            .iter()
            .filter(|w| w.topic == topic)
            .map(|w| w.next_offset)
            .sum();
        if durable > 0 && first_durable.is_none() {
            first_durable = Some(Instant::now());
        }
        if durable >= total {
            break Instant::now();
        }
        if Instant::now() > deadline {
            app.shutdown(Duration::from_secs(10)).await;
            return Err(LoadgenError::Timeout(format!(
                "app made {durable} of {total} durable"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    app.shutdown(Duration::from_secs(10)).await;
    let from_start = done.duration_since(started).as_secs_f64();
    let from_first = done
        .duration_since(first_durable.unwrap_or(started))
        .as_secs_f64()
        .max(1e-9);
    let app_per_sec = total as f64 / from_first;
    Ok(KafkaReport {
        topic,
        partitions: options.partitions,
        movements: total as u64,
        produce_per_sec,
        raw_consume_per_sec,
        app_secs_from_start: from_start,
        app_secs_from_first_durable: from_first,
        app_per_sec_from_start: total as f64 / from_start.max(1e-9),
        app_per_sec,
        ratio_to_raw: app_per_sec / raw_consume_per_sec.max(1e-9),
    })
}
