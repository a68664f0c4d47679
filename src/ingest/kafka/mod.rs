//! The Kafka movements consumer, its dead-letter producer, and the ATP output producer.
//!
//! Owns: consuming the movements topic (DESIGN.md §5) in a consumer group with manual
//! offset commits, dead-lettering records that can never be applied, and producing ATP
//! changes to the optional `atp_topic` ([`AtpPublisher`]).
//!
//! One batch, in order:
//! 1. take up to `batch_max` records, waiting at most `batch_wait_ms` after the first one;
//! 2. decode each one ([`decode_movement`], IO-free) and submit every movement with
//!    [`Ledger::submit_from`] in record order, carrying the partition's next offset as an
//!    [`OffsetWatermark`] (the ledger writes it in the same durable write as the event);
//! 3. await every acknowledgement. `Store`/`Unavailable` failures: nothing is committed, the
//!    whole batch is submitted again after a backoff (idempotency keys make the replay
//!    harmless). `Rejected` movements (they will never succeed unchanged) and undecodable
//!    records go to the dead-letter topic with the reason and origin in headers;
//! 4. once every movement is durable and every dead letter is delivered, commit the highest
//!    offset + 1 of each partition, synchronously.
//!
//! Invariants:
//! - an offset is committed only after everything before it in its partition is durable in
//!   the ledger or delivered to the dead-letter topic (DESIGN.md §3 rule 3);
//! - at most `batch_max` records are held or in flight (librdkafka's own prefetch queue
//!   aside);
//! - the consumer is polled only between batches, so a rebalance (served inside the poll)
//!   never finds acknowledgements in flight: partitions are given up with everything
//!   durable already committed. Records of a revoked partition gathered for the next batch
//!   but not yet submitted are dropped; the partition's next owner reads them again from
//!   the committed offset.
//!
//! Every dead-lettered batch is also announced, per reason, on the app's
//! [`DeadLetterBroadcast`] when one is handed in ([`KafkaIngestOptions::dead_letters`]),
//! for alerting; there is no process-wide broadcast.
//!
//! May depend on: `domain`, `ledger`, `config`, `store` types, `telemetry`.

mod atp;
mod decode;

pub use atp::{AtpOutput, AtpPublisher, AtpUpdate};
pub use decode::{DecodeError, MessageOrigin, decode_movement, fallback_idempotency_key};

/// Turns one record (key, value, origin) into the movements it stands for, without I/O.
/// The movements topic uses [`movement_decoder`]; other contracts (an SQS bridge carrying
/// Amazon notifications) bring their own.
pub type RecordDecoder = Arc<
    dyn Fn(Option<&[u8]>, Option<&[u8]>, &MessageOrigin<'_>) -> Result<Vec<Movement>, DecodeError>
        + Send
        + Sync,
>;

/// The decoder of the movements contract: one movement per record ([`decode_movement`]).
pub fn movement_decoder() -> RecordDecoder {
    Arc::new(|key, value, origin| {
        decode_movement(key, value, origin).map(|movement| vec![movement])
    })
}

use crate::config::KafkaConfig;
use crate::domain::Movement;
use crate::ledger::{Ack, Ledger, LedgerError};
use crate::store::OffsetWatermark;
use crate::telemetry::{
    DeadLetterBroadcast, INGEST_DEAD_LETTERS_TOTAL, INGEST_KAFKA_MESSAGES_TOTAL,
};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Dead-letter header: the human-readable reason the record was not applied.
pub const HEADER_ERROR: &str = "stocksync-error";
/// Dead-letter header: the bounded reason label (`invalid_json`, `invalid_movement`,
/// `invalid_field`, `key_mismatch`, `missing_value`, `rejected`).
pub const HEADER_ERROR_REASON: &str = "stocksync-error-reason";
/// Dead-letter header: the topic the record was consumed from.
pub const HEADER_ORIGINAL_TOPIC: &str = "stocksync-original-topic";
/// Dead-letter header: the partition the record was consumed from (decimal text).
pub const HEADER_ORIGINAL_PARTITION: &str = "stocksync-original-partition";
/// Dead-letter header: the record's offset in that partition (decimal text).
pub const HEADER_ORIGINAL_OFFSET: &str = "stocksync-original-offset";
/// Dead-letter reason label for movements the ledger refused.
pub const REASON_REJECTED: &str = "rejected";

/// First backoff after the ledger or the dead-letter topic failed.
const RETRY_BACKOFF_INITIAL_MS: u64 = 100;
/// Longest backoff between retries of one batch.
const RETRY_BACKOFF_MAX_MS: u64 = 10_000;
/// After a stop is requested, how long the batch in flight may still take to be acknowledged.
const STOP_GRACE_MS: u64 = 10_000;
/// How long to queue a produce request locally before giving up on it (it is retried).
const PRODUCE_QUEUE_TIMEOUT_MS: u64 = 5_000;

/// Errors of the Kafka ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A Kafka client call failed (creating a client, subscribing, a fatal consumer error).
    #[error("kafka {operation} failed: {source}")]
    Kafka {
        /// What was being done (`create consumer`, `subscribe`, `consume`, …).
        operation: &'static str,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The settings cannot work (for example `batch_max = 0`).
    #[error("invalid kafka settings: {0}")]
    Config(String),
    /// A record could not be serialised (ATP output).
    #[error("cannot serialise {what}: {message}")]
    Serialise {
        /// What was being serialised.
        what: &'static str,
        /// The serialiser's message.
        message: String,
    },
    /// The background ingest task panicked or was cancelled.
    #[error("kafka ingest task failed: {0}")]
    Task(String),
}

fn kafka_error(operation: &'static str) -> impl FnOnce(KafkaError) -> IngestError {
    move |source| IngestError::Kafka { operation, source }
}

/// Reads a running consumer's partition assignment; see [`KafkaIngest::assignment_handle`].
#[derive(Clone)]
pub struct AssignmentHandle(Arc<IngestContext>);

impl AssignmentHandle {
    /// The `(topic, partition)`s currently assigned, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.0
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// What a consumer is started with besides its settings.
#[derive(Clone, Default)]
pub struct KafkaIngestOptions {
    /// How records become movements; `None`: the movements contract ([`movement_decoder`]).
    pub decoder: Option<RecordDecoder>,
    /// Where a notice of every dead-lettered batch goes (for alerting); `None`: nowhere.
    pub dead_letters: Option<DeadLetterBroadcast>,
}

/// A running Kafka consumer: created by [`KafkaIngest::start`], stopped by
/// [`KafkaIngest::stop`].
pub struct KafkaIngest {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), IngestError>>,
    context: Arc<IngestContext>,
}

impl KafkaIngest {
    /// Creates the consumer and the dead-letter producer, subscribes to
    /// `config.movements_topic` and spawns the consume loop on the current tokio runtime.
    ///
    /// Errors: [`IngestError::Config`] for unusable settings, [`IngestError::Kafka`] when a
    /// client cannot be created or the subscription fails. Brokers being unreachable is not
    /// an error here: the client keeps reconnecting.
    pub fn start(config: KafkaConfig, ledger: Ledger) -> Result<Self, IngestError> {
        Self::start_with_options(config, ledger, KafkaIngestOptions::default())
    }

    /// Like [`KafkaIngest::start`], decoding records of `config.movements_topic` with
    /// `decoder` (a record may stand for several movements; it is acknowledged, or
    /// dead-lettered, as a whole).
    ///
    /// Errors: as [`KafkaIngest::start`].
    pub fn start_with(
        config: KafkaConfig,
        decoder: RecordDecoder,
        ledger: Ledger,
    ) -> Result<Self, IngestError> {
        let options = KafkaIngestOptions {
            decoder: Some(decoder),
            ..KafkaIngestOptions::default()
        };
        Self::start_with_options(config, ledger, options)
    }

    /// Like [`KafkaIngest::start`], with `options` (the record decoder, where dead-letter
    /// notices go).
    ///
    /// Errors: as [`KafkaIngest::start`].
    pub fn start_with_options(
        config: KafkaConfig,
        ledger: Ledger,
        options: KafkaIngestOptions,
    ) -> Result<Self, IngestError> {
        let (stop, shutdown) = watch::channel(false);
        let worker = Worker::new(config, options, ledger, shutdown)?;
        let context = worker.consumer.context().clone();
        let task = tokio::spawn(worker.run());
        Ok(Self {
            stop,
            task,
            context,
        })
    }

    /// The `(topic, partition)`s currently assigned to this consumer by the group, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.context
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// A cheap handle that reads the assignment without borrowing `self` (for health checks).
    pub fn assignment_handle(&self) -> AssignmentHandle {
        AssignmentHandle(self.context.clone())
    }

    /// Whether the consume loop has ended (stopped, or failed with a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the loop to stop, waits for the batch in flight to be acknowledged and committed
    /// (at most about ten seconds; after that it is left uncommitted and will be consumed
    /// again), then closes the consumer, leaving the group.
    ///
    /// Errors: the loop's own fatal error, or [`IngestError::Task`] if it panicked.
    pub async fn stop(self) -> Result<(), IngestError> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|error| IngestError::Task(error.to_string()))?
    }
}

/// Consumes `config.movements_topic` into `ledger` until `shutdown` becomes `true` (or its
/// sender is dropped). See the module docs for the batch protocol.
///
/// Errors: as [`KafkaIngest::start`], plus [`IngestError::Kafka`] with operation `consume`
/// for a fatal consumer error.
pub async fn run(
    config: KafkaConfig,
    ledger: Ledger,
    shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    Worker::new(config, KafkaIngestOptions::default(), ledger, shutdown)?
        .run()
        .await
}

/// The consumer's callbacks: logs rebalances, tracks the assignment, and remembers revoked
/// partitions so that the loop drops records of theirs that it gathered but has not
/// submitted yet.
struct IngestContext {
    group: String,
    revoked: Mutex<Vec<(String, i32)>>,
    assigned: Mutex<BTreeSet<(String, i32)>>,
}

impl IngestContext {
    fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|element| (element.topic().to_owned(), element.partition()))
        .collect()
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(group = %self.group, partitions = ?partitions(tpl), "kafka partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                // Nothing is in flight here: the loop polls only between batches, after it
                // committed every durable offset. Unsubmitted records are dropped by the loop.
                let revoked = partitions(tpl);
                info!(group = %self.group, partitions = ?revoked, "kafka partitions revoked");
                self.revoked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(revoked);
            }
            Rebalance::Error(error) => {
                warn!(group = %self.group, error = %error, "kafka rebalance failed");
            }
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => assigned.extend(partitions(tpl)),
            Rebalance::Revoke(tpl) => {
                for partition in partitions(tpl) {
                    assigned.remove(&partition);
                }
            }
            Rebalance::Error(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            warn!(group = %self.group, error = %error, offsets = ?offsets, "kafka offset commit failed");
        }
    }
}

type IngestConsumer = StreamConsumer<IngestContext>;

/// The consumer settings: manual commits after durability, start at the earliest offset
/// for a new group (no movement may be skipped).
fn consumer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("client.id", "stocksync-ingest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Bounds librdkafka's prefetch per partition (default 64 MiB); our own batch is
        // bounded by `batch_max`.
        .set("queued.max.messages.kbytes", "16384")
        // A fetch returns as soon as one message is there, or after this long: the default
        // (500 ms) would dominate the time from a WMS event to the channel push.
        .set("fetch.wait.max.ms", "20")
        .set("fetch.min.bytes", "1");
    client
}

/// The producer settings shared by the dead-letter and ATP producers.
pub(crate) fn producer_config(brokers: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("client.id", "stocksync-producer")
        .set("acks", "all")
        .set("message.timeout.ms", "30000");
    client
}

/// Refuses settings the loop cannot work with.
fn check_settings(config: &KafkaConfig) -> Result<(), IngestError> {
    if config.batch_max == 0 {
        return Err(IngestError::Config(
            "batch_max must be at least 1".to_owned(),
        ));
    }
    if config.movements_topic == config.dead_letter_topic {
        return Err(IngestError::Config(
            "dead_letter_topic must differ from movements_topic".to_owned(),
        ));
    }
    Ok(())
}

/// Outcome of one record after its batch was processed.
enum Outcome {
    Applied,
    Duplicate,
    DeadLetter { reason: &'static str, error: String },
}

struct Worker {
    config: KafkaConfig,
    decoder: RecordDecoder,
    ledger: Ledger,
    consumer: Arc<IngestConsumer>,
    dead_letters: FutureProducer,
    dead_letter_notices: Option<DeadLetterBroadcast>,
    shutdown: watch::Receiver<bool>,
}

/// The batch was abandoned because a stop was requested.
struct Stopped;

async fn wait_for_stop(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: nobody can ask any more, so stop too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sleeps for `duration`; returns `true` when a stop was requested meanwhile.
async fn sleep_or_stop(shutdown: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        _ = wait_for_stop(shutdown) => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

impl Worker {
    fn new(
        config: KafkaConfig,
        options: KafkaIngestOptions,
        ledger: Ledger,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, IngestError> {
        check_settings(&config)?;
        let context = IngestContext {
            group: config.group_id.clone(),
            revoked: Mutex::new(Vec::new()),
            assigned: Mutex::new(BTreeSet::new()),
        };
        let consumer: IngestConsumer = consumer_config(&config)
            .create_with_context(context)
            .map_err(kafka_error("create consumer"))?;
        consumer
            .subscribe(&[config.movements_topic.as_str()])
            .map_err(kafka_error("subscribe"))?;
        let dead_letters: FutureProducer = producer_config(&config.brokers)
            .create()
            .map_err(kafka_error("create dead-letter producer"))?;
        Ok(Self {
            config,
            decoder: options.decoder.unwrap_or_else(movement_decoder),
            ledger,
            consumer: Arc::new(consumer),
            dead_letters,
            dead_letter_notices: options.dead_letters,
            shutdown,
        })
    }

    async fn run(mut self) -> Result<(), IngestError> {
        info!(
            group = %self.config.group_id,
            topic = %self.config.movements_topic,
            batch_max = self.config.batch_max,
            "kafka ingest started"
        );
        let mut batch: Vec<OwnedMessage> = Vec::with_capacity(self.config.batch_max);
        let result = loop {
            batch.clear();
            match self.gather(&mut batch).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(error) => break Err(error),
            }
            if batch.is_empty() {
                continue;
            }
            if self.process(&batch).await.is_err() {
                info!("kafka ingest stopping with a batch left uncommitted");
                break Ok(());
            }
        };
        self.consumer.unsubscribe();
        info!(group = %self.config.group_id, "kafka ingest stopped");
        result
    }

    /// Fills `batch`. Returns `Ok(false)` when a stop was requested before the first record.
    async fn gather(&mut self, batch: &mut Vec<OwnedMessage>) -> Result<bool, IngestError> {
        let first = tokio::select! {
            biased;
            _ = wait_for_stop(&mut self.shutdown) => return Ok(false),
            received = self.consumer.recv() => received.map(|message| message.detach()),
        };
        match first {
            Ok(message) => self.push(batch, message),
            Err(error) => return self.consume_error(error).await,
        }
        let wait = Duration::from_millis(self.config.batch_wait_ms);
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < self.config.batch_max {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Ok(message)) => {
                    let message = message.detach();
                    self.push(batch, message);
                }
                Ok(Err(error)) => {
                    warn!(error = %error, "kafka consume error");
                    break;
                }
            }
        }
        self.drop_revoked(batch);
        Ok(true)
    }

    /// A consumer error before the first record of a batch: fatal ones end the loop, others
    /// are logged and followed by a short pause.
    async fn consume_error(&mut self, error: KafkaError) -> Result<bool, IngestError> {
        if let KafkaError::MessageConsumptionFatal(_) = error {
            return Err(IngestError::Kafka {
                operation: "consume",
                source: error,
            });
        }
        warn!(error = %error, "kafka consume error");
        let stopped = sleep_or_stop(
            &mut self.shutdown,
            Duration::from_millis(RETRY_BACKOFF_INITIAL_MS),
        )
        .await;
        Ok(!stopped)
    }

    fn push(&self, batch: &mut Vec<OwnedMessage>, message: OwnedMessage) {
        self.drop_revoked(batch);
        batch.push(message);
    }

    /// Drops gathered records of partitions revoked since the last call (rebalances are
    /// served inside `recv`).
    fn drop_revoked(&self, batch: &mut Vec<OwnedMessage>) {
        let revoked = self.consumer.context().take_revoked();
        if revoked.is_empty() {
            return;
        }
        let before = batch.len();
        batch.retain(|message| {
            !revoked.iter().any(|(topic, partition)| {
                message.topic() == topic && message.partition() == *partition
            })
        });
        if batch.len() != before {
            debug!(
                dropped = before - batch.len(),
                "dropped unsubmitted records of revoked partitions"
            );
        }
    }

    /// Applies one batch and commits it. `Err(Stopped)` when a stop was requested before
    /// the batch could be completed; nothing of it is committed then.
    async fn process(&mut self, batch: &[OwnedMessage]) -> Result<(), Stopped> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
        let mut movements: Vec<(usize, Movement, OffsetWatermark)> = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            let origin = MessageOrigin {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
            };
            match (self.decoder)(message.key(), message.payload(), &origin) {
                Ok(decoded) => {
                    let watermark = OffsetWatermark {
                        group: self.config.group_id.clone(),
                        topic: origin.topic.to_owned(),
                        partition: origin.partition,
                        next_offset: origin.offset + 1,
                    };
                    // A record with no movements (e.g. an AFN order) is simply consumed.
                    let outcome = decoded.is_empty().then_some(Outcome::Duplicate);
                    for movement in decoded {
                        movements.push((index, movement, watermark.clone()));
                    }
                    outcomes.push(outcome);
                }
                Err(error) => {
                    warn!(
                        topic = origin.topic,
                        partition = origin.partition,
                        offset = origin.offset,
                        reason = error.reason(),
                        error = %error,
                        "undecodable record, dead-lettering it"
                    );
                    outcomes.push(Some(Outcome::DeadLetter {
                        reason: error.reason(),
                        error: error.to_string(),
                    }));
                }
            }
        }

        let acks = self.apply(&movements).await?;
        for ((index, movement, watermark), ack) in movements.iter().zip(acks) {
            // A record's movements share one outcome: any refusal dead-letters the record,
            // any applied movement makes it applied, else it was a duplicate.
            let outcome = match ack {
                Ok(Ack::Applied { .. }) => Outcome::Applied,
                Ok(Ack::Duplicate { .. }) => Outcome::Duplicate,
                Err(error) => {
                    warn!(
                        sku = %movement.sku,
                        idempotency_key = %movement.idempotency_key,
                        topic = %watermark.topic,
                        partition = watermark.partition,
                        offset = watermark.next_offset - 1,
                        error = %error,
                        "ledger rejected a movement, dead-lettering its record"
                    );
                    Outcome::DeadLetter {
                        reason: REASON_REJECTED,
                        error: error.to_string(),
                    }
                }
            };
            let slot = &mut outcomes[*index];
            *slot = Some(match (slot.take(), outcome) {
                (Some(dead @ Outcome::DeadLetter { .. }), _)
                | (_, dead @ Outcome::DeadLetter { .. }) => dead,
                (Some(Outcome::Applied), _) | (_, Outcome::Applied) => Outcome::Applied,
                _ => Outcome::Duplicate,
            });
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every record has an outcome"))
            .collect();

        self.send_dead_letters(batch, &outcomes).await?;
        record_metrics(&outcomes, self.dead_letter_notices.as_ref());
        self.commit(batch).await;
        Ok(())
    }

    /// Submits every movement in order and awaits every acknowledgement, retrying the whole
    /// batch while the ledger reports `Store`/`Unavailable`. The answers are `Ok` or
    /// `Err(LedgerError::Rejected)`.
    async fn apply(
        &mut self,
        movements: &[(usize, Movement, OffsetWatermark)],
    ) -> Result<Vec<Result<Ack, LedgerError>>, Stopped> {
        let mut backoff_ms = RETRY_BACKOFF_INITIAL_MS;
        loop {
            let pending: Vec<_> = movements
                .iter()
                .map(|(_, movement, watermark)| {
                    self.ledger
                        .submit_from(movement.clone(), Some(watermark.clone()))
                })
                .collect();
            let acks = futures::future::join_all(pending);
            let shutdown = &mut self.shutdown;
            let acks = tokio::select! {
                acks = acks => acks,
                _ = async {
                    wait_for_stop(shutdown).await;
                    tokio::time::sleep(Duration::from_millis(STOP_GRACE_MS)).await;
                } => {
                    warn!("ledger did not acknowledge the batch in time after stop was requested");
                    return Err(Stopped);
                }
            };
            let retryable: Vec<&LedgerError> = acks
                .iter()
                .filter_map(|ack| match ack {
                    Err(error @ (LedgerError::Store(_) | LedgerError::Unavailable(_))) => {
                        Some(error)
                    }
                    _ => None,
                })
                .collect();
            let Some(first) = retryable.first() else {
                return Ok(acks);
            };
            warn!(
                failed = retryable.len(),
                batch = movements.len(),
                error = %first,
                backoff_ms,
                "ledger did not make the batch durable; retrying it"
            );
            if sleep_or_stop(&mut self.shutdown, Duration::from_millis(backoff_ms)).await {
                return Err(Stopped);
            }
            backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
        }
    }

    /// Produces every dead letter of the batch and awaits delivery, retrying failed ones.
    async fn send_dead_letters(
        &mut self,
        batch: &[OwnedMessage],
        outcomes: &[Outcome],
    ) -> Result<(), Stopped> {
        let mut waiting: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, outcome)| matches!(outcome, Outcome::DeadLetter { .. }))
            .map(|(index, _)| index)
            .collect();
        let mut backoff_ms = RETRY_BACKOFF_INITIAL_MS;
        while !waiting.is_empty() {
            let sends = waiting.iter().map(|&index| {
                let Outcome::DeadLetter { reason, error } = &outcomes[index] else {
                    unreachable!("only dead letters are waiting");
                };
                self.send_dead_letter(&batch[index], reason, error)
            });
            let results = futures::future::join_all(sends).await;
            let mut failed = Vec::new();
            for (index, result) in waiting.iter().zip(results) {
                if let Err(error) = result {
                    warn!(error = %error, topic = %self.config.dead_letter_topic, "dead-letter delivery failed");
                    failed.push(*index);
                }
            }
            waiting = failed;
            if !waiting.is_empty() {
                if sleep_or_stop(&mut self.shutdown, Duration::from_millis(backoff_ms)).await {
                    return Err(Stopped);
                }
                backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
            }
        }
        Ok(())
    }

    async fn send_dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        error: &str,
    ) -> Result<(), KafkaError> {
        let headers = dead_letter_headers(message, reason, error);
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.config.dead_letter_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.dead_letters
            .send(record, Duration::from_millis(PRODUCE_QUEUE_TIMEOUT_MS))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    /// Commits the highest offset + 1 of every partition in the batch, synchronously.
    /// A failed commit is only logged: the records are consumed again later and are then
    /// duplicates.
    async fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for message in batch {
            let entry = next
                .entry((message.topic(), message.partition()))
                .or_insert(0);
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                warn!(error = %error, topic, partition, "cannot build the offset commit");
                return;
            }
        }
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        match committed {
            Ok(Ok(())) => debug!(offsets = ?next, "kafka offsets committed"),
            Ok(Err(error)) => warn!(error = %error, offsets = ?next, "kafka offset commit failed"),
            Err(error) => warn!(error = %error, "kafka offset commit task failed"),
        }
    }
}

/// The dead-letter record's headers: reason, origin, then the original headers.
fn dead_letter_headers(message: &OwnedMessage, reason: &str, error: &str) -> OwnedHeaders {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: HEADER_ERROR,
            value: Some(error),
        })
        .insert(Header {
            key: HEADER_ERROR_REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: HEADER_ORIGINAL_TOPIC,
            value: Some(message.topic()),
        })
        .insert(Header {
            key: HEADER_ORIGINAL_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: HEADER_ORIGINAL_OFFSET,
            value: Some(&offset),
        });
    if let Some(original) = message.headers() {
        for header in original.iter() {
            headers = headers.insert(header);
        }
    }
    headers
}

/// Counts one batch's outcomes (emitted per batch, not per record), and tells `notices`
/// about dead letters.
fn record_metrics(outcomes: &[Outcome], notices: Option<&DeadLetterBroadcast>) {
    let mut by_outcome: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    for outcome in outcomes {
        let label = match outcome {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLetter { reason, .. } => {
                *by_reason.entry(reason).or_default() += 1;
                if *reason == REASON_REJECTED {
                    "rejected"
                } else {
                    "dead_letter"
                }
            }
        };
        *by_outcome.entry(label).or_default() += 1;
    }
    for (outcome, count) in by_outcome {
        metrics::counter!(INGEST_KAFKA_MESSAGES_TOTAL, "outcome" => outcome).increment(count);
    }
    for (reason, count) in by_reason {
        metrics::counter!(INGEST_DEAD_LETTERS_TOTAL, "reason" => reason).increment(count);
        if let Some(notices) = notices {
            notices.dead_letters_sent(reason, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    #[test]
    fn dead_letter_headers_carry_reason_origin_and_original_headers() {
        let original = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some("abc"),
        });
        let message = OwnedMessage::new(
            Some(b"{bad".to_vec()),
            Some(b"SKU-A".to_vec()),
            "stock.movements".to_owned(),
            Timestamp::NotAvailable,
            2,
            17,
            Some(original),
        );
        let headers = dead_letter_headers(&message, "invalid_json", "value is not valid JSON");
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        let expected = [
            (HEADER_ERROR, "value is not valid JSON"),
            (HEADER_ERROR_REASON, "invalid_json"),
            (HEADER_ORIGINAL_TOPIC, "stock.movements"),
            (HEADER_ORIGINAL_PARTITION, "2"),
            (HEADER_ORIGINAL_OFFSET, "17"),
            ("trace-id", "abc"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn unusable_settings_are_refused() {
        let config = KafkaConfig {
            brokers: "127.0.0.1:1".to_owned(),
            group_id: "g".to_owned(),
            movements_topic: "t".to_owned(),
            dead_letter_topic: "t".to_owned(),
            atp_topic: None,
            batch_max: 10,
            batch_wait_ms: 5,
        };
        let error = match check_settings(&config) {
            Err(error) => error,
            Ok(()) => panic!("same topic for movements and dead letters must be refused"),
        };
        assert!(error.to_string().contains("dead_letter_topic"), "{error}");
        let config = KafkaConfig {
            batch_max: 0,
            dead_letter_topic: "dlq".to_owned(),
            ..config
        };
        assert!(check_settings(&config).is_err());
    }
}
