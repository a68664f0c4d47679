//! The Kafka row: pre-produce movements keyed by SKU to a new topic, time a raw rdkafka
//! consume of the whole topic (the same-run baseline, which also checks the topic holds
//! exactly the movements produced), then time an in-process App
//! consuming the same topic until every movement is durable (the App's consumer group has
//! committed the topic's end: it commits an offset only once everything before it is
//! durable). Not the store's offset watermarks: they lag behind the records written with
//! them (see `ingest::kafka`), so they never reach the end of a topic that stopped growing.
//!
//! Depends on `app`, `config` and the workload.

use super::LoadgenError;
use super::targets::app_config;
use super::workload::Workload;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Most rounds of produce-then-retry-what-failed before the produce phase gives up.
const MAX_PRODUCE_ROUNDS: u32 = 5;
/// Most messages queued in the producer (in flight or waiting for a batch) at once.
const MAX_QUEUED_MESSAGES: usize = 100_000;

/// What the delivery reports said: a count of delivered messages and the key and payload
/// of every failed one (to send again), with the last error.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    last_error: Mutex<Option<String>>,
}

/// A producer context that records every delivery report in [`Deliveries`].
struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                let key = message.key().unwrap_or_default().to_vec();
                let payload = message.payload().unwrap_or_default().to_vec();
                if let Ok(mut failed) = self.0.failed.lock() {
                    failed.push((key, payload));
                }
                if let Ok(mut last) = self.0.last_error.lock() {
                    *last = Some(error.to_string());
                }
            }
        }
    }
}

/// Queues one message, polling (serving delivery reports) while the local queue is full.
fn send_one(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> Result<(), LoadgenError> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(kafka_error(error)),
        }
    }
}

/// Produces `movements` movements keyed by SKU and waits for every delivery report;
/// what the broker refused is sent again (at most [`MAX_PRODUCE_ROUNDS`] rounds). Returns
/// delivered messages/s over the whole phase.
fn produce(
    brokers: &str,
    topic: &str,
    mut workload: Workload,
    movements: u64,
) -> Result<f64, LoadgenError> {
    let deliveries = Arc::new(Deliveries::default());
    let producer: BaseProducer<DeliveryContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "2000")
        .set("compression.type", "none")
        // One request in flight per broker: a retried batch cannot overtake a later one, so
        // each SKU's movements stay in order (the ledger would refuse a fulfilment first).
        .set("max.in.flight.requests.per.connection", "1")
        .set(
            "queue.buffering.max.messages",
            MAX_QUEUED_MESSAGES.to_string(),
        )
        .set("message.timeout.ms", "120000")
        .set("acks", "all")
        .create_with_context(DeliveryContext(deliveries.clone()))
        .map_err(kafka_error)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(PHASE_TIMEOUT_SECS);
    for _ in 0..movements {
        let movement = workload.next_movement();
        let payload =
            serde_json::to_vec(&movement).map_err(|e| LoadgenError::Encode(e.to_string()))?;
        send_one(&producer, topic, movement.sku.as_str().as_bytes(), &payload)?;
        producer.poll(Duration::ZERO);
    }
    let mut round = 1;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        producer.flush(remaining).map_err(kafka_error)?;
        let failed = std::mem::take(
            &mut *deliveries
                .failed
                .lock()
                .map_err(|_| LoadgenError::Kafka("delivery report lock poisoned".into()))?,
        );
        if failed.is_empty() {
            break;
        }
        let last_error = deliveries
            .last_error
            .lock()
            .ok()
            .and_then(|last| last.clone())
            .unwrap_or_default();
        if round >= MAX_PRODUCE_ROUNDS || Instant::now() > deadline {
            return Err(LoadgenError::Kafka(format!(
                "{} messages still undelivered after {round} rounds (last error: {last_error})",
                failed.len()
            )));
        }
        eprintln!(
            "produce round {round}: {} messages failed ({last_error}); sending them again",
            failed.len()
        );
        std::thread::sleep(Duration::from_millis(200 * u64::from(round)));
        for (key, payload) in &failed {
            send_one(&producer, topic, key, payload)?;
            producer.poll(Duration::ZERO);
        }
        round += 1;
    }
    let delivered = deliveries.delivered.load(Ordering::Relaxed);
    if delivered != movements {
        return Err(LoadgenError::Kafka(format!(
            "{delivered} of {movements} messages reported delivered"
        )));
    }
    Ok(movements as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Longest a consume may see nothing new before the topic counts as short.
const CONSUME_IDLE_SECS: u64 = 15;

/// Times a raw rdkafka consume of the whole topic until it has read `expected` messages
/// and returns (messages/s, each partition's end offset = its last offset + 1). The end
/// offsets come from the messages themselves: tansu's ListOffsets (what
/// `fetch_watermarks` asks) can report less than the last offset + 1 right after a fast
/// produce. Fails if the topic holds fewer than `expected` messages (nothing new for
/// [`CONSUME_IDLE_SECS`]), more (anything after the `expected`-th within a second), or
/// offsets that do not add up to `expected`.
fn raw_consume(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: u64,
) -> Result<(f64, Vec<i64>), LoadgenError> {
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
    let mut ends = vec![0i64; usize::try_from(partitions).unwrap_or(0)];
    let mut note = |message: &rdkafka::message::BorrowedMessage<'_>| {
        if let Some(end) = usize::try_from(message.partition())
            .ok()
            .and_then(|p| ends.get_mut(p))
        {
            *end = (*end).max(message.offset().saturating_add(1));
        }
        message.payload().map_or(0, <[u8]>::len)
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(PHASE_TIMEOUT_SECS);
    let mut last_new = Instant::now();
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < expected {
        if Instant::now() > deadline || last_new.elapsed() > Duration::from_secs(CONSUME_IDLE_SECS)
        {
            return Err(LoadgenError::Kafka(format!(
                "topic {topic} holds only {seen} of the {expected} messages produced"
            )));
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.map_err(kafka_error)?;
            bytes += note(&message);
            seen += 1;
            last_new = Instant::now();
        }
    }
    let rate = expected as f64 / started.elapsed().as_secs_f64().max(1e-9);
    std::hint::black_box(bytes);
    let extra_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < extra_until {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.map_err(kafka_error)?;
            note(&message);
            seen += 1;
        }
    }
    let sum: i64 = ends.iter().sum();
    if seen != expected || u64::try_from(sum).ok() != Some(expected) {
        return Err(LoadgenError::Kafka(format!(
            "topic {topic} holds {seen} messages (end offsets {ends:?}) after producing {expected}"
        )));
    }
    Ok((rate, ends))
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
    let (raw_consume_per_sec, ends) = tokio::task::spawn_blocking(move || {
        raw_consume(&brokers, &raw_topic, partitions, movements)
    })
    .await
    .map_err(|e| LoadgenError::Kafka(e.to_string()))??;
    let total: i64 = ends.iter().sum();

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
    // Reads the App's committed offsets (never joins its group).
    let offsets = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &options.brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create::<BaseConsumer>()
            .map_err(kafka_error)?,
    );
    let started = Instant::now();
    let app = crate::app::App::start(config)
        .await
        .map_err(|e| LoadgenError::App(format!("{e:#}")))?;
    let deadline = started + Duration::from_secs(PHASE_TIMEOUT_SECS);
    let mut first_durable: Option<Instant> = None;
    let mut durable = 0_i64;
    let done = loop {
        let (reader, committed_topic) = (offsets.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || {
            committed_sum(&reader, &committed_topic, options.partitions)
        })
        .await
        .map_err(|e| LoadgenError::Kafka(e.to_string()))?
        {
            Ok(committed) => durable = committed,
            // A slow OffsetFetch is asked again; the phase's deadline still holds.
            Err(error) => tracing::warn!(error = %error, "cannot read the committed offsets"),
        }
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

/// The consumer group's committed offsets of `topic` partitions `0..partitions`, summed
/// (a partition with nothing committed counts 0), read with an OffsetFetch that does not
/// join the group. Everything before a committed offset is durable (or dead-lettered).
fn committed_sum(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Result<i64, LoadgenError> {
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(kafka_error)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) if offset > 0 => Some(offset),
            _ => None,
        })
        .sum())
}
