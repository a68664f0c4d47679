//! The Kafka movements consumer, its dead-letter producer, and the ATP output producer.
//!
//! Owns: consuming the movements topic (DESIGN.md §5) with manual offset commits to the
//! consumer group, dead-lettering records that can never be applied, and producing ATP
//! changes to the optional `atp_topic` ([`AtpPublisher`]).
//!
//! Which partitions are read, two modes ([`KafkaIngestOptions::assignment`]):
//! - **subscribed** (the default, one instance): the consumer subscribes to the topic in
//!   the group `group_id`, and the group's coordinator assigns and revokes partitions
//!   (rebalances, served inside the poll);
//! - **manual assignment** (several instances, issue 13): ownership comes from leases in
//!   the store, not from the broker's coordinator (tansu's does not move the partitions of
//!   a paused member). The consumer does not subscribe; it reads exactly the partitions of
//!   a [`PartitionAssignment`] handed in on a `watch` channel and follows every change of
//!   it within about one poll, batches in flight or not (librdkafka's
//!   `incremental_assign`/`incremental_unassign`, which need no subscription). A partition
//!   added starts at the greater of its [`PartitionStart::start_offset`] (the store's
//!   offset watermark) and the group's committed offset, or, without a start offset, at
//!   the committed offset (`auto.offset.reset`, earliest, when none). A partition removed,
//!   or handed over again under another epoch, is handled exactly like a revoked one
//!   (below). Offsets are still committed to `group_id` (no member joins it).
//!
//! The loop gathers batches and keeps several of them in flight:
//! 1. take up to `batch_max` records, waiting at most `batch_wait_ms` after the first one;
//! 2. decode each one ([`decode_movement`], IO-free) and submit every movement with
//!    [`Ledger::submit_from`] in record order, carrying its partition's settled position
//!    (below) as an [`OffsetWatermark`] (the ledger writes it in the same durable write as
//!    the event); then go on gathering the next batch while this one settles, as long as
//!    at most `max_in_flight` records are submitted and not settled;
//! 3. each batch settles on its own: every acknowledgement is awaited. Records with a
//!    `Store`/`Unavailable` failure are submitted again after a backoff (idempotency keys
//!    make the replay harmless), at most [`RetryPolicy::max_attempts`] times in all, then
//!    dead-lettered with reason `unavailable` (attempts made while the ledger reports the
//!    store down do not count: ingest is paused then, see below). `Rejected` movements
//!    (they will never succeed unchanged, including a movement refused because applying it
//!    crashed the ledger twice) and undecodable records go to the dead-letter topic with
//!    the reason and origin in headers; the partition moves on;
//! 4. batches settle in any order. Each partition keeps a window of its submitted records;
//!    at most every 20 ms the first offset not settled of every partition whose window
//!    moved (or one past its highest, when all are settled) is committed, asynchronously;
//!    at stop, synchronously;
//! 5. while it cannot take records (the ledger reports the store down,
//!    [`Ledger::is_healthy`], or `max_in_flight` records are in flight) the loop stops
//!    calling `recv` until the store takes writes and there is room again; records wait in
//!    librdkafka's bounded fetch queue. It never pauses partitions: a librdkafka pause and
//!    resume skipped records fetched around it, both with manual assignment (the
//!    three-process test) and subscribed (`a_flapping_store_pauses_…` in the integration
//!    tests lost 2–5 of 6,000 records per run), and a skipped record never reaches the
//!    offset window, so its offset would be committed past it. librdkafka's background
//!    thread keeps the group session alive meanwhile; a subscribed consumer that stops
//!    reading for longer than `max.poll.interval.ms` (librdkafka's default 300,000 ms, a
//!    `consumer_overrides` key) leaves its group, and joins it again when it reads, from
//!    the committed offsets;
//!
//! The store's offset watermark is where a partition's next owner starts reading (with
//! several instances, see [`crate::cluster`]), so it must be contiguous like the committed
//! offset. A record's watermark is its partition's settled position once its batch is
//! submitted: the first offset of the partition's window not settled (one past the highest
//! when all are), which is at or below the batch's first record of that partition. Not
//! `offset + 1`: batches settle, and the ledger's group commits land, in any order, so a
//! later record's write can be durable while an earlier record of another SKU is still in
//! flight. It lags (by what is in flight when the record is submitted; a quiet partition's
//! last records carry the position before them) and only ever moves forward in the store
//! (every backend keeps the greatest). Subscribed, the consumer starts at the group's
//! committed offset and does not read the store's watermark (the committed offset is as
//! fresh or fresher, except for the last commit interval before a crash, and the group
//! assigns inside librdkafka's poll, where the store cannot be asked).
//!
//! Invariants:
//! - an offset is committed only after everything before it in its partition is durable in
//!   the ledger or delivered to the dead-letter topic (DESIGN.md §3 rule 3);
//! - likewise, the offset watermark written with a record never passes a record of its
//!   partition that is not settled (durable or dead-lettered). A window starts where the
//!   partition was assigned (librdkafka hands a partition's records out in order), and
//!   records gathered before a partition was taken away are dropped even when it is handed
//!   back at once;
//! - at most `max_in_flight` records are held or in flight (librdkafka's own prefetch
//!   queue aside, and records it hands out after a pause);
//! - a rebalance (served inside the poll), or a change of the manual assignment, may find
//!   batches in flight. Records of a revoked (taken away) partition gathered but not yet
//!   submitted are dropped, and the consumer forgets the partition's window: whatever of
//!   it settles later is not committed by this consumer, even once the partition is read
//!   again (each window has a generation). The partition's next owner reads those records
//!   again from the committed offset (or the store's watermark); they are duplicates there
//!   (at most `max_in_flight` of them);
//! - a movement the ledger answers [`LedgerError::NotOwner`] for (the instance is losing
//!   the partition's lease) is neither retried, dead-lettered nor committed: the consumer
//!   gives the partition up as if it were revoked (its dead letters in the same batch are
//!   not sent either). With manual assignment the partition is unassigned until the
//!   assignment drops it or hands it over under another epoch, so whoever publishes the
//!   assignment must let the ledger write a partition before handing it over; subscribed,
//!   its records are dropped until the group revokes it.
//!
//! Every dead-lettered batch is also announced, per reason, on the app's
//! [`DeadLetterBroadcast`] when one is handed in ([`KafkaIngestOptions::dead_letters`]),
//! for alerting; there is no process-wide broadcast.
//!
//! May depend on: `domain`, `ledger`, `config`, `store` types, `telemetry`.

mod atp;
mod decode;
mod group;
pub mod partitioner;

pub use atp::{AtpOutput, AtpPublisher, AtpUpdate};
pub use decode::{DecodeError, MessageOrigin, decode_movement, fallback_idempotency_key};
pub use group::{ensure_group_idle, set_committed_offsets};

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
use crate::ledger::{Ack, Ledger, LedgerError, PendingAck};
use crate::store::OffsetWatermark;
use crate::telemetry::{
    DeadLetterBroadcast, INGEST_DEAD_LETTERS_TOTAL, INGEST_KAFKA_MESSAGES_TOTAL,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
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
/// Dead-letter reason label for records the ledger stayed unavailable for through every
/// retry ([`RetryPolicy`]).
pub const REASON_UNAVAILABLE: &str = "unavailable";

/// While the store is down, how often the loop checks whether it may read again, in
/// milliseconds.
const STORE_DOWN_CHECK_MS: u64 = 100;

/// How records whose movements the ledger reports unavailable (`Store`/`Unavailable`) are
/// retried before they are dead-lettered with reason [`REASON_UNAVAILABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Submissions of a record in all (the first one included), counting only those made
    /// while the ledger reports the store up.
    pub max_attempts: u32,
    /// Wait before the second submission, in milliseconds; doubles after each one.
    pub initial_backoff_ms: u64,
    /// Longest wait between two submissions, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    /// 8 submissions, waits from 100 ms doubling to at most 10 s (about 23 s in all).
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: RETRY_BACKOFF_INITIAL_MS,
            max_backoff_ms: RETRY_BACKOFF_MAX_MS,
        }
    }
}

/// First backoff after the ledger or the dead-letter topic failed.
const RETRY_BACKOFF_INITIAL_MS: u64 = 100;
/// Longest backoff between retries of one batch.
const RETRY_BACKOFF_MAX_MS: u64 = 10_000;
/// After a stop is requested, how long the batch in flight may still take to be acknowledged.
const STOP_GRACE_MS: u64 = 10_000;
/// How long to queue a produce request locally before giving up on it (it is retried).
const PRODUCE_QUEUE_TIMEOUT_MS: u64 = 5_000;
/// Least time between two offset commits while consuming (settled offsets wait at most
/// this long to be committed).
const COMMIT_INTERVAL_MS: u64 = 20;

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
    /// How unavailable movements are retried before they are dead-lettered.
    pub retry: RetryPolicy,
    /// Which partitions of `movements_topic` to read (several instances, `[cluster]`):
    /// `None` (the default) subscribes to the topic in the consumer group, whose
    /// coordinator assigns the partitions; `Some` reads exactly the partitions of the
    /// current value with manual assignment (no subscription, no group membership) and
    /// follows every change of it within about one poll. Offsets are committed to
    /// `group_id` in both modes. See the module docs.
    pub assignment: Option<watch::Receiver<PartitionAssignment>>,
}

/// The partitions of the movements topic this instance owns, with where to start reading
/// each (manual assignment, [`KafkaIngestOptions::assignment`]).
pub type PartitionAssignment = BTreeMap<i32, PartitionStart>;

/// Where the consumer starts reading a partition newly handed to it, and under which
/// ownership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionStart {
    /// The ownership epoch of the partition (logs only here). A change of epoch for a
    /// partition already read is a new ownership: the consumer handles it as the partition
    /// taken away and handed back, reading again from this entry's start.
    pub epoch: u64,
    /// The next offset to read (the store's offset watermark for the partition). The
    /// consumer starts at the greater of this and the group's committed offset; `None`:
    /// at the group's committed offset, or where `auto.offset.reset` says (earliest) when
    /// nothing is committed.
    pub start_offset: Option<i64>,
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
    /// `config.movements_topic` in the group and spawns the consume loop on the current
    /// tokio runtime.
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
    /// notices go, the retry policy, and manual assignment instead of the subscription
    /// when [`KafkaIngestOptions::assignment`] is set).
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

    /// The `(topic, partition)`s currently assigned to this consumer, sorted: by the group
    /// when subscribed; with manual assignment, the partitions of the target it reads
    /// (those it gave up after a `NotOwner` answer left out).
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

    /// Asks the loop to stop, waits for the batches in flight to be acknowledged and committed
    /// (at most about ten seconds; after that they are left uncommitted and will be consumed
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
                // Batches of these partitions may be in flight: the loop drops their
                // unsubmitted records and never commits these partitions again (until they
                // are assigned again).
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
            Rebalance::Assign(tpl) => {
                assigned.extend(partitions(tpl));
            }
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
        // Bounds librdkafka's prefetch per partition (default 64 MiB); what we hold is
        // bounded by `max_in_flight`.
        .set("queued.max.messages.kbytes", "16384")
        // Fetch up to 4 MiB per partition per request (default 1 MiB): fewer round trips
        // when a backlog is read at full speed.
        .set("max.partition.fetch.bytes", "4194304")
        // A fetch returns as soon as one message is there, or after this long: the default
        // (500 ms) would dominate the time from a WMS event to the channel push.
        .set("fetch.wait.max.ms", "20")
        .set("fetch.min.bytes", "1");
    for (key, value) in &config.consumer_overrides {
        client.set(key, value);
    }
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
    if config.max_in_flight < config.batch_max {
        return Err(IngestError::Config(
            "max_in_flight must be at least batch_max".to_owned(),
        ));
    }
    const FIXED: [&str; 4] = [
        "enable.auto.commit",
        "enable.auto.offset.store",
        "group.id",
        "bootstrap.servers",
    ];
    if let Some(key) = FIXED
        .iter()
        .find(|key| config.consumer_overrides.contains_key(**key))
    {
        return Err(IngestError::Config(format!(
            "consumer_overrides must not set {key}"
        )));
    }
    if config.movements_topic == config.dead_letter_topic {
        return Err(IngestError::Config(
            "dead_letter_topic must differ from movements_topic".to_owned(),
        ));
    }
    Ok(())
}

/// Outcome of one record after its batch was processed.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Applied,
    Duplicate,
    DeadLetter {
        reason: &'static str,
        error: String,
    },
    /// The ledger answered [`LedgerError::NotOwner`]: this instance is giving the record's
    /// partition up. The record is dropped (neither dead-lettered nor committed), like the
    /// records of a revoked partition; its next owner reads it again.
    GivenUp,
}

/// What one movement's answer makes of its record (before [`merge_outcomes`]).
fn movement_outcome(ack: &Result<Ack, LedgerError>) -> Outcome {
    match ack {
        // A parked movement is durable and waits in the ledger: acknowledged (its offset
        // committed), never dead-lettered.
        Ok(Ack::Applied { .. } | Ack::Parked { .. } | Ack::Ignored { .. }) => Outcome::Applied,
        Ok(Ack::Duplicate { .. }) => Outcome::Duplicate,
        Err(LedgerError::NotOwner { .. }) => Outcome::GivenUp,
        Err(error @ LedgerError::Rejected(_)) => Outcome::DeadLetter {
            reason: REASON_REJECTED,
            error: error.to_string(),
        },
        Err(
            error @ (LedgerError::Store(_)
            | LedgerError::Unavailable(_)
            | LedgerError::Overloaded(_)),
        ) => Outcome::DeadLetter {
            reason: REASON_UNAVAILABLE,
            error: error.to_string(),
        },
    }
}

/// A record's movements share one outcome: a movement answered `NotOwner` gives the record
/// up, else any refusal dead-letters it, else any applied movement makes it applied, else
/// it was a duplicate.
fn merge_outcomes(previous: Option<Outcome>, next: Outcome) -> Outcome {
    match (previous, next) {
        (Some(Outcome::GivenUp), _) | (_, Outcome::GivenUp) => Outcome::GivenUp,
        (Some(dead @ Outcome::DeadLetter { .. }), _) | (_, dead @ Outcome::DeadLetter { .. }) => {
            dead
        }
        (Some(Outcome::Applied), _) | (_, Outcome::Applied) => Outcome::Applied,
        _ => Outcome::Duplicate,
    }
}

/// Gives up every record of `outcomes` whose partition has a record given up in the same
/// batch: the dead letters of such a partition are not sent (the partition's next owner
/// reads those records again and decides). Returns the partitions given up.
fn give_up_partitions(batch: &[OwnedMessage], outcomes: &mut [Outcome]) -> BTreeSet<(String, i32)> {
    let given_up: BTreeSet<(String, i32)> = batch
        .iter()
        .zip(outcomes.iter())
        .filter(|(_, outcome)| **outcome == Outcome::GivenUp)
        .map(|(message, _)| (message.topic().to_owned(), message.partition()))
        .collect();
    if given_up.is_empty() {
        return given_up;
    }
    for (message, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        if matches!(outcome, Outcome::DeadLetter { .. })
            && given_up.contains(&(message.topic().to_owned(), message.partition()))
        {
            *outcome = Outcome::GivenUp;
        }
    }
    given_up
}

/// The records of one partition submitted and not yet settled (durable, or delivered to
/// the dead-letter topic), and what may be committed.
///
/// Records settle in any order; the offset to commit is always the first one not settled
/// (or one past the highest submitted when every one is), so a commit never passes a record
/// that is not settled.
#[derive(Debug, Default)]
struct OffsetWindow {
    /// Which window of the partition this is: a partition revoked (or given up) and read
    /// again gets a new window, and the batches submitted into an older one settle without
    /// touching it.
    generation: u64,
    /// Offsets submitted and not settled.
    pending: BTreeSet<i64>,
    /// One past the highest offset submitted.
    next: Option<i64>,
    /// The last offset committed, or the first one submitted before any commit (where the
    /// group already stands).
    committed: Option<i64>,
}

impl OffsetWindow {
    /// A record at `offset` was submitted.
    fn submitted(&mut self, offset: i64) {
        self.pending.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |next| next.max(offset + 1)));
        if self.committed.is_none() {
            self.committed = Some(offset);
        }
    }

    /// The record at `offset` is settled.
    fn settled(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    /// The partition's settled position: every record before this offset is settled (the
    /// first offset not settled, or one past the highest submitted when every one is).
    /// `None` before anything was submitted into the window.
    fn settled_below(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }

    /// The offset to commit now (the next record to read), if it moved since the last
    /// commit.
    fn committable(&self) -> Option<i64> {
        let next = self.settled_below()?;
        self.committed
            .is_none_or(|committed| next > committed)
            .then_some(next)
    }

    /// `offset` was handed to the consumer for committing.
    fn committing(&mut self, offset: i64) {
        self.committed = Some(offset);
    }
}

/// What every batch in flight needs, shared by the loop and the batches' futures.
struct BatchContext {
    group: String,
    decoder: RecordDecoder,
    ledger: Ledger,
    dead_letters: FutureProducer,
    dead_letter_topic: String,
    retry: RetryPolicy,
}

/// A batch's records, decoded and submitted: one outcome slot per record (already set for
/// undecodable records and records standing for no movement), and for every movement
/// submitted, its record's index and its pending acknowledgement.
struct Submitted {
    outcomes: Vec<Option<Outcome>>,
    owners: Vec<usize>,
    acks: Vec<PendingAck>,
}

/// A batch whose every record is settled.
struct Settled {
    batch: Vec<OwnedMessage>,
    outcomes: Vec<Outcome>,
    /// The windows its records were submitted into.
    windows: BatchWindows,
}

/// Per partition of a batch: the offset window its records were submitted into, and where
/// the partition's settled records ended then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WindowMark {
    /// The window's generation.
    generation: u64,
    /// The window's [`OffsetWindow::settled_below`] once the batch was submitted into it:
    /// the store's offset watermark written with the batch's movements. Every record of the
    /// partition before it is settled, so it never passes a record still in flight (it lags
    /// behind the batch's own records instead; see the module docs).
    settled_below: i64,
}

/// The [`WindowMark`] of every partition of a batch.
type BatchWindows = HashMap<(String, i32), WindowMark>;

impl BatchContext {
    /// Decodes every record of `batch` and submits every movement with
    /// [`Ledger::submit_from`], in record order, each with its partition's settled
    /// position from `windows` as the offset watermark.
    fn submit(&self, batch: &[OwnedMessage], windows: &BatchWindows) -> Submitted {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
        let mut owners = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            outcomes.push(self.submit_record(index, message, windows, &mut owners, &mut acks));
        }
        Submitted {
            outcomes,
            owners,
            acks,
        }
    }

    /// Decodes one record and submits its movements (their record index into `owners`,
    /// their acknowledgements into `acks`), with the watermark of its partition in
    /// `windows` (the settled position when its batch was submitted: never past the record
    /// itself). Returns the record's outcome when it is already known: dead letter when
    /// undecodable, consumed when it stands for no movement.
    fn submit_record(
        &self,
        index: usize,
        message: &OwnedMessage,
        windows: &BatchWindows,
        owners: &mut Vec<usize>,
        acks: &mut Vec<PendingAck>,
    ) -> Option<Outcome> {
        let origin = MessageOrigin {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
        };
        // Every record is submitted into a window first, so its partition has a mark (0,
        // which claims nothing, otherwise). The record itself is pending in that window, so
        // the mark is at most its offset.
        let settled_below = windows
            .get(&(origin.topic.to_owned(), origin.partition))
            .map_or(0, |mark| mark.settled_below);
        debug_assert!(settled_below <= origin.offset, "watermark past its record");
        match (self.decoder)(message.key(), message.payload(), &origin) {
            Ok(decoded) => {
                // A record with no movements (e.g. an AFN order) is simply consumed.
                let outcome = decoded.is_empty().then_some(Outcome::Duplicate);
                for movement in decoded {
                    // Never `None`: the origin is what keeps a Kafka record from being
                    // forwarded to another instance.
                    let watermark = OffsetWatermark {
                        group: self.group.clone(),
                        topic: origin.topic.to_owned(),
                        partition: origin.partition,
                        next_offset: settled_below,
                    };
                    owners.push(index);
                    acks.push(self.ledger.submit_from(movement, Some(watermark)));
                }
                outcome
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
                Some(Outcome::DeadLetter {
                    reason: error.reason(),
                    error: error.to_string(),
                })
            }
        }
    }

    /// Awaits every acknowledgement of the batch (submitting records with a
    /// `Store`/`Unavailable` answer again, see [`settle_acks`]), then delivers its dead
    /// letters. `Err(Stopped)` when a stop was requested and the batch could not be settled
    /// in time; nothing of it may be committed then. Records submitted again carry the
    /// watermarks of the first submission (`windows`): older, so still settled.
    async fn settle(
        self: Arc<Self>,
        batch: Vec<OwnedMessage>,
        submitted: Submitted,
        windows: BatchWindows,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Settled, Stopped> {
        let first: Vec<(usize, PendingAck)> =
            submitted.owners.into_iter().zip(submitted.acks).collect();
        let resubmit = |records: &[usize]| -> Vec<(usize, PendingAck)> {
            let mut owners = Vec::new();
            let mut acks = Vec::new();
            for &index in records {
                self.submit_record(index, &batch[index], &windows, &mut owners, &mut acks);
            }
            owners.into_iter().zip(acks).collect()
        };
        let ledger = self.ledger.clone();
        let answers = settle_acks(
            first,
            resubmit,
            self.retry,
            || ledger.is_healthy(),
            &mut shutdown,
        )
        .await?;
        let mut outcomes = submitted.outcomes;
        for (index, ack) in answers {
            let outcome = movement_outcome(&ack);
            if let Err(error) = &ack {
                let message = &batch[index];
                let key = String::from_utf8_lossy(message.key().unwrap_or_default());
                match &outcome {
                    Outcome::DeadLetter { reason, .. } => warn!(
                        key = %key,
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason,
                        error = %error,
                        "ledger did not take a movement, dead-lettering its record"
                    ),
                    _ => info!(
                        key = %key,
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %error,
                        "another instance owns the record's partition; giving the partition up"
                    ),
                }
            }
            let slot = &mut outcomes[index];
            *slot = Some(merge_outcomes(slot.take(), outcome));
        }
        let mut outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every record has an outcome"))
            .collect();
        give_up_partitions(&batch, &mut outcomes);
        self.send_dead_letters(&batch, &outcomes, &mut shutdown)
            .await?;
        Ok(Settled {
            batch,
            outcomes,
            windows,
        })
    }

    /// Produces every dead letter of the batch and awaits delivery, retrying failed ones.
    async fn send_dead_letters(
        &self,
        batch: &[OwnedMessage],
        outcomes: &[Outcome],
        shutdown: &mut watch::Receiver<bool>,
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
                    warn!(error = %error, topic = %self.dead_letter_topic, "dead-letter delivery failed");
                    failed.push(*index);
                }
            }
            waiting = failed;
            if !waiting.is_empty() {
                if sleep_or_stop(shutdown, Duration::from_millis(backoff_ms)).await {
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
            FutureRecord::to(&self.dead_letter_topic).headers(headers);
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
}

/// Every movement's last answer, with the index of its record in the batch.
type Answers = Vec<(usize, Result<Ack, LedgerError>)>;

/// Awaits the answers of a batch's movements (`first`: each with its record index). The
/// records with a `Store`/`Unavailable` answer are handed to `resubmit` after a backoff
/// (doubling from `policy.initial_backoff_ms` to `policy.max_backoff_ms`, tokio time),
/// which submits all their movements again; a record gets at most `policy.max_attempts`
/// submissions counted, a submission counting only if `healthy()` (the ledger says the
/// store takes writes) when its answers came back. Returns every movement's last answer
/// with its record index (unavailable ones included once their attempts are spent).
///
/// `Err(Stopped)` when a stop is requested during a backoff, or when the answers do not
/// come within [`STOP_GRACE_MS`] after a stop was requested.
async fn settle_acks<A, R, H>(
    first: Vec<(usize, A)>,
    mut resubmit: R,
    policy: RetryPolicy,
    healthy: H,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Answers, Stopped>
where
    A: Future<Output = Result<Ack, LedgerError>>,
    R: FnMut(&[usize]) -> Vec<(usize, A)>,
    H: Fn() -> bool,
{
    let mut answers: Answers = Vec::with_capacity(first.len());
    let mut attempts: HashMap<usize, u32> = HashMap::new();
    let mut pending = first;
    let mut backoff_ms = policy.initial_backoff_ms;
    loop {
        let (owners, futures): (Vec<usize>, Vec<A>) = pending.into_iter().unzip();
        let acks = tokio::select! {
            acks = futures::future::join_all(futures) => acks,
            _ = async {
                wait_for_stop(shutdown).await;
                tokio::time::sleep(Duration::from_millis(STOP_GRACE_MS)).await;
            } => {
                warn!("ledger did not acknowledge a batch in time after stop was requested");
                return Err(Stopped);
            }
        };
        let counted = healthy();
        let mut retry: BTreeSet<usize> = BTreeSet::new();
        let mut failed: Vec<(usize, Result<Ack, LedgerError>)> = Vec::new();
        // A full shard mailbox (`Overloaded`) is back-pressure, not a failure: retried like
        // the others, never counted towards the attempts that lead to a dead letter.
        let mut overloaded: BTreeSet<usize> = BTreeSet::new();
        for (owner, ack) in owners.into_iter().zip(acks) {
            match ack {
                Err(LedgerError::Overloaded(_)) => {
                    overloaded.insert(owner);
                    retry.insert(owner);
                    failed.push((owner, ack));
                }
                Err(LedgerError::Store(_) | LedgerError::Unavailable(_)) => {
                    retry.insert(owner);
                    failed.push((owner, ack));
                }
                ack => answers.push((owner, ack)),
            }
        }
        if counted {
            for owner in retry.iter().filter(|owner| !overloaded.contains(owner)) {
                *attempts.entry(*owner).or_insert(0) += 1;
            }
        }
        // Records whose attempts are spent keep their last (unavailable) answers.
        let spent: BTreeSet<usize> = retry
            .iter()
            .copied()
            .filter(|owner| attempts.get(owner).copied().unwrap_or(0) >= policy.max_attempts)
            .collect();
        let mut first_error = None;
        for (owner, ack) in failed {
            if spent.contains(&owner) {
                answers.push((owner, ack));
            } else if first_error.is_none() {
                first_error = ack.err();
            }
        }
        retry.retain(|owner| !spent.contains(owner));
        if !spent.is_empty() {
            warn!(
                records = spent.len(),
                attempts = policy.max_attempts,
                "ledger stayed unavailable for records through every retry; dead-lettering them"
            );
        }
        let Some(error) = first_error else {
            return Ok(answers);
        };
        warn!(
            records = retry.len(),
            error = %error,
            backoff_ms,
            counted,
            "ledger did not make records durable; submitting them again"
        );
        if sleep_or_stop(shutdown, Duration::from_millis(backoff_ms)).await {
            return Err(Stopped);
        }
        backoff_ms = backoff_ms.saturating_mul(2).min(policy.max_backoff_ms);
        let records: Vec<usize> = retry.into_iter().collect();
        pending = resubmit(&records);
    }
}

struct Worker {
    config: KafkaConfig,
    context: Arc<BatchContext>,
    consumer: Arc<IngestConsumer>,
    dead_letter_notices: Option<DeadLetterBroadcast>,
    shutdown: watch::Receiver<bool>,
    /// One window per partition with records submitted since it was (last) assigned.
    windows: HashMap<(String, i32), OffsetWindow>,
    /// The generation of the next window created.
    next_generation: u64,
    /// When the offsets that became committable last were handed to the consumer.
    last_commit: tokio::time::Instant,
    /// Why the loop stopped reading (store down), for logging the change once.
    waiting: Option<String>,
    /// Manual assignment ([`KafkaIngestOptions::assignment`]); `None`: subscribed.
    manual: Option<ManualAssignment>,
    /// Subscribed: partitions given up after a `NotOwner` answer, whose records are dropped
    /// until the group revokes them.
    given_up: BTreeSet<(String, i32)>,
    /// Partitions taken away or given up since the gathered records were last checked:
    /// their gathered records are dropped, even when a partition was handed back meanwhile
    /// (those records belong to the old reading, which the new one reads again from its
    /// start; submitted into the new window, they would make its settled position pass
    /// records not read yet).
    taken_away: BTreeSet<(String, i32)>,
}

/// The state of manual assignment: what the consumer is told to read and what it reads.
struct ManualAssignment {
    /// The partitions to read, from the owner of the leases.
    target: watch::Receiver<PartitionAssignment>,
    /// The sender is gone: the last value stays in force.
    closed: bool,
    /// The partitions assigned to the consumer, with the epoch they were assigned under.
    assigned: BTreeMap<i32, u64>,
    /// Partitions given up after a `NotOwner` answer, with the epoch then: not read again
    /// until the target changes (see `apply_assignment`).
    given_up: BTreeMap<i32, u64>,
    /// When to apply the target again after the consumer refused an assignment.
    retry_at: Option<tokio::time::Instant>,
}

/// How long to wait before applying a manual assignment again after the consumer refused
/// it, in milliseconds.
const ASSIGN_RETRY_MS: u64 = 1_000;
/// How long reading the group's committed offsets for newly assigned partitions may take,
/// in milliseconds; after that they start at the target's start offset.
const COMMITTED_FETCH_TIMEOUT_MS: u64 = 5_000;

/// Resolves when the manual assignment should be applied again: its target changed, or a
/// refused assignment is due for a retry. Never resolves when subscribed.
async fn assignment_due(manual: &mut Option<ManualAssignment>) {
    let Some(ManualAssignment {
        target,
        closed,
        retry_at,
        ..
    }) = manual
    else {
        return std::future::pending().await;
    };
    let retry = async {
        match retry_at {
            Some(at) => tokio::time::sleep_until(*at).await,
            None => std::future::pending().await,
        }
    };
    let changed = async {
        if *closed {
            return std::future::pending().await;
        }
        if target.changed().await.is_err() {
            info!("the partition assignment's sender is gone; keeping the last assignment");
            *closed = true;
        }
    };
    tokio::select! {
        _ = retry => {}
        _ = changed => {}
    }
}

/// A batch was abandoned because a stop was requested.
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
        // Manual assignment: the partitions are assigned by the loop, from the target.
        let manual = options.assignment.map(|target| ManualAssignment {
            target,
            closed: false,
            assigned: BTreeMap::new(),
            given_up: BTreeMap::new(),
            retry_at: None,
        });
        if manual.is_none() {
            consumer
                .subscribe(&[config.movements_topic.as_str()])
                .map_err(kafka_error("subscribe"))?;
        }
        let dead_letters: FutureProducer = producer_config(&config.brokers)
            .create()
            .map_err(kafka_error("create dead-letter producer"))?;
        let context = Arc::new(BatchContext {
            group: config.group_id.clone(),
            decoder: options.decoder.unwrap_or_else(movement_decoder),
            ledger,
            dead_letters,
            dead_letter_topic: config.dead_letter_topic.clone(),
            retry: options.retry,
        });
        Ok(Self {
            config,
            context,
            consumer: Arc::new(consumer),
            dead_letter_notices: options.dead_letters,
            shutdown,
            windows: HashMap::new(),
            next_generation: 0,
            last_commit: tokio::time::Instant::now(),
            waiting: None,
            manual,
            given_up: BTreeSet::new(),
            taken_away: BTreeSet::new(),
        })
    }

    async fn run(mut self) -> Result<(), IngestError> {
        info!(
            group = %self.config.group_id,
            topic = %self.config.movements_topic,
            batch_max = self.config.batch_max,
            max_in_flight = self.config.max_in_flight,
            manual_assignment = self.manual.is_some(),
            "kafka ingest started"
        );
        self.apply_assignment().await;
        let batch_max = self.config.batch_max;
        let max_in_flight = self.config.max_in_flight;
        let batch_wait = Duration::from_millis(self.config.batch_wait_ms);
        let commit_interval = Duration::from_millis(COMMIT_INTERVAL_MS);
        let mut gathering: Vec<OwnedMessage> = Vec::with_capacity(batch_max);
        let mut deadline = tokio::time::Instant::now();
        let mut in_flight = FuturesUnordered::new();
        let mut in_flight_records = 0_usize;
        let mut commit_waiting = false;
        let result = loop {
            self.drop_revoked(&mut gathering);
            let room =
                gathering.len() < batch_max && in_flight_records + gathering.len() < max_in_flight;
            let full = !gathering.is_empty() && !room;
            let now = tokio::time::Instant::now();
            if !gathering.is_empty()
                && (gathering.len() >= batch_max || now >= deadline)
                && (in_flight_records == 0 || in_flight_records + gathering.len() <= max_in_flight)
            {
                let batch = std::mem::replace(&mut gathering, Vec::with_capacity(batch_max));
                in_flight_records += batch.len();
                in_flight.push(self.submit(batch));
                continue;
            }
            // Not reading while the store is down or the in-flight window is full (see
            // the module docs: no librdkafka pause).
            let store_down = !self.context.ledger.is_healthy();
            self.note_waiting(store_down);
            let poll = room && !store_down;
            tokio::select! {
                biased;
                _ = wait_for_stop(&mut self.shutdown) => break Ok(()),
                _ = assignment_due(&mut self.manual) => self.apply_assignment().await,
                Some(settled) = in_flight.next(), if !in_flight.is_empty() => {
                    match settled {
                        Ok(settled) => {
                            in_flight_records -= settled.batch.len();
                            self.settled(settled);
                            commit_waiting = true;
                        }
                        Err(Stopped) => break Ok(()),
                    }
                }
                _ = tokio::time::sleep_until(self.last_commit + commit_interval), if commit_waiting => {}
                _ = tokio::time::sleep(Duration::from_millis(STORE_DOWN_CHECK_MS)), if store_down => {}
                received = self.consumer.recv(), if poll => match received {
                    Ok(message) => {
                        let message = {
                            let borrowed = message;
                            borrowed.detach()
                        };
                        // A rebalance served inside this `recv` revoked what was gathered
                        // before it, not this record (librdkafka hands out no record of
                        // a partition it no longer owns).
                        self.drop_revoked(&mut gathering);
                        // A record of a partition given up, or one librdkafka fetched
                        // before the partition was taken away, is dropped.
                        if self.reads(message.topic(), message.partition()) {
                            if gathering.is_empty() {
                                deadline = tokio::time::Instant::now() + batch_wait;
                            }
                            gathering.push(message);
                        }
                    }
                    Err(KafkaError::MessageConsumptionFatal(code)) => {
                        break Err(IngestError::Kafka {
                            operation: "consume",
                            source: KafkaError::MessageConsumptionFatal(code),
                        });
                    }
                    Err(error) => {
                        warn!(error = %error, "kafka consume error");
                        if gathering.is_empty() && in_flight.is_empty() && sleep_or_stop(
                            &mut self.shutdown,
                            Duration::from_millis(RETRY_BACKOFF_INITIAL_MS),
                        )
                        .await
                        {
                            break Ok(());
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline), if !gathering.is_empty() && !full => {}
            }
            if commit_waiting && self.last_commit.elapsed() >= commit_interval {
                commit_waiting = false;
                self.commit(CommitMode::Async).await;
            }
        };
        // Stopping: records gathered but not submitted are left to be read again; every
        // batch in flight is settled (or given up after the grace period), then what is
        // settled is committed.
        if !gathering.is_empty() || !in_flight.is_empty() {
            info!(
                batches = in_flight.len(),
                records = in_flight_records,
                "kafka ingest stopping; settling the batches in flight"
            );
        }
        while let Some(settled) = in_flight.next().await {
            match settled {
                Ok(settled) => self.settled(settled),
                Err(Stopped) => info!("kafka ingest stopping with a batch left uncommitted"),
            }
        }
        self.commit(CommitMode::Sync).await;
        if self.manual.is_some() {
            if let Err(error) = self.consumer.unassign() {
                warn!(error = %error, "cannot unassign the kafka partitions");
            }
        } else {
            self.consumer.unsubscribe();
        }
        info!(group = %self.config.group_id, "kafka ingest stopped");
        result
    }

    /// Decodes and submits `batch` (now, in record order) and returns the future that
    /// settles it.
    fn submit(
        &mut self,
        batch: Vec<OwnedMessage>,
    ) -> impl Future<Output = Result<Settled, Stopped>> + use<> {
        let mut generations: HashMap<(String, i32), u64> = HashMap::new();
        for message in &batch {
            let partition = (message.topic().to_owned(), message.partition());
            let window = self.windows.entry(partition.clone()).or_insert_with(|| {
                self.next_generation += 1;
                OffsetWindow {
                    generation: self.next_generation,
                    ..OffsetWindow::default()
                }
            });
            window.submitted(message.offset());
            generations.insert(partition, window.generation);
        }
        // Taken once every record of the batch is pending: where each partition's settled
        // records end, at or below the batch's first record of that partition.
        let windows: BatchWindows = generations
            .into_iter()
            .map(|(partition, generation)| {
                let settled_below = self
                    .windows
                    .get(&partition)
                    .and_then(OffsetWindow::settled_below)
                    .unwrap_or(0);
                let mark = WindowMark {
                    generation,
                    settled_below,
                };
                (partition, mark)
            })
            .collect();
        let submitted = self.context.submit(&batch, &windows);
        self.context
            .clone()
            .settle(batch, submitted, windows, self.shutdown.clone())
    }

    /// Logs once when the loop stops reading because the store is down, and once when it
    /// reads again.
    fn note_waiting(&mut self, store_down: bool) {
        match (store_down, self.waiting.is_some()) {
            (true, false) => {
                let reason = self
                    .context
                    .ledger
                    .unavailable_reason()
                    .unwrap_or_else(|| "the store refuses writes".to_owned());
                warn!(reason = %reason, "kafka ingest stopped reading until the store takes writes");
                self.waiting = Some(reason);
            }
            (false, true) => {
                info!("kafka ingest reads again");
                self.waiting = None;
            }
            _ => {}
        }
    }

    /// Counts a settled batch, gives up the partitions of its records answered `NotOwner`,
    /// and marks its other records settled in their partitions' windows.
    fn settled(&mut self, settled: Settled) {
        record_metrics(&settled.outcomes, self.dead_letter_notices.as_ref());
        let mut given_up = BTreeSet::new();
        for (message, outcome) in settled.batch.iter().zip(&settled.outcomes) {
            if *outcome == Outcome::GivenUp {
                given_up.insert((message.topic().to_owned(), message.partition()));
            }
        }
        for partition in given_up {
            // Only the window the batch was submitted into: an answer about an ownership
            // this consumer has already let go of says nothing about the current one.
            if self.current_window(&partition, &settled.windows).is_some() {
                self.give_up(partition);
            }
        }
        for message in &settled.batch {
            // A partition revoked (or taken away, or given up) since has no window any more,
            // or a newer one: its next owner reads the record again from the committed
            // offset (a duplicate then).
            let partition = (message.topic().to_owned(), message.partition());
            if let Some(window) = self.current_window(&partition, &settled.windows) {
                window.settled(message.offset());
            }
        }
    }

    /// The window of `partition` if it is the one a batch with `windows` was submitted
    /// into.
    fn current_window(
        &mut self,
        partition: &(String, i32),
        windows: &BatchWindows,
    ) -> Option<&mut OffsetWindow> {
        let generation = windows.get(partition)?.generation;
        self.windows
            .get_mut(partition)
            .filter(|window| window.generation == generation)
    }

    /// Whether the consumer takes records of `topic`/`partition` now: with manual
    /// assignment, whether the partition is assigned; subscribed, whether it was not given
    /// up.
    fn reads(&self, topic: &str, partition: i32) -> bool {
        match &self.manual {
            Some(manual) => {
                topic == self.config.movements_topic && manual.assigned.contains_key(&partition)
            }
            None => !self
                .given_up
                .iter()
                .any(|(given, number)| given == topic && *number == partition),
        }
    }

    /// The ledger says another instance owns `partition` (`NotOwner`): handled like a
    /// revocation. Its window is forgotten (nothing more of it is committed here), its
    /// gathered records are dropped, and no record of it is taken any more: with manual
    /// assignment it is unassigned until the target drops it or hands it over under
    /// another epoch; subscribed, until the group revokes it.
    fn give_up(&mut self, partition: (String, i32)) {
        warn!(
            topic = %partition.0,
            partition = partition.1,
            "the ledger says another instance owns this partition; giving it up (its next owner reads its records again)"
        );
        self.windows.remove(&partition);
        self.taken_away.insert(partition.clone());
        let Some(manual) = self.manual.as_mut() else {
            self.given_up.insert(partition);
            return;
        };
        if partition.0 != self.config.movements_topic {
            return;
        }
        if let Some(epoch) = manual.assigned.remove(&partition.1) {
            manual.given_up.insert(partition.1, epoch);
            self.unassign(&[partition.1]);
        }
    }

    /// Applies the manual assignment's target (nothing when subscribed): unassigns the
    /// partitions it no longer holds (or holds under another epoch) like revoked ones, and
    /// assigns the new ones at the greater of their start offset and the group's committed
    /// offset.
    async fn apply_assignment(&mut self) {
        let Some(mut manual) = self.manual.take() else {
            return;
        };
        manual.retry_at = None;
        let (target, changed) = {
            let target = manual.target.borrow_and_update();
            (target.clone(), target.has_changed())
        };
        // A partition given up after `NotOwner` is read again once the owner of the leases
        // changes the target in any way (it took, lost or handed over a partition since),
        // even with the same epoch: a partition lost and taken back under the same lease
        // must not stay given up. If the ledger still refuses it, it is given up again.
        if changed {
            manual.given_up.clear();
        }
        manual.given_up.retain(|partition, epoch| {
            target
                .get(partition)
                .is_some_and(|start| start.epoch == *epoch)
        });
        let removed: Vec<i32> = manual
            .assigned
            .iter()
            .filter(|(partition, epoch)| {
                target
                    .get(partition)
                    .is_none_or(|start| start.epoch != **epoch)
            })
            .map(|(partition, _)| *partition)
            .collect();
        if !removed.is_empty() {
            info!(group = %self.config.group_id, partitions = ?removed, "kafka partitions taken away");
            self.unassign(&removed);
            for partition in &removed {
                manual.assigned.remove(partition);
                // Batches of these partitions may be in flight: nothing of them is committed
                // (their window is gone), and their gathered records are dropped.
                let taken = (self.config.movements_topic.clone(), *partition);
                self.windows.remove(&taken);
                self.taken_away.insert(taken);
            }
        }
        let added: Vec<(i32, PartitionStart)> = target
            .iter()
            .filter(|(partition, _)| {
                !manual.assigned.contains_key(partition) && !manual.given_up.contains_key(partition)
            })
            .map(|(partition, start)| (*partition, *start))
            .collect();
        if !added.is_empty() {
            let explicit: Vec<i32> = added
                .iter()
                .filter(|(_, start)| start.start_offset.is_some_and(|offset| offset >= 0))
                .map(|(partition, _)| *partition)
                .collect();
            let committed = self.committed_offsets(&explicit).await;
            let topic = self.config.movements_topic.as_str();
            let mut tpl = TopicPartitionList::new();
            let mut starts = Vec::with_capacity(added.len());
            let mut built = Ok(());
            for (partition, start) in &added {
                let offset = match start.start_offset.filter(|offset| *offset >= 0) {
                    Some(offset) => Offset::Offset(
                        committed
                            .get(partition)
                            .map_or(offset, |committed| offset.max(*committed)),
                    ),
                    None => Offset::Stored,
                };
                starts.push((*partition, start.epoch, offset));
                built = built.and(tpl.add_partition_offset(topic, *partition, offset));
            }
            match built.and_then(|()| self.consumer.incremental_assign(&tpl)) {
                Ok(()) => {
                    info!(group = %self.config.group_id, partitions = ?starts, "kafka partitions assigned (partition, epoch, start)");
                    for (partition, start) in &added {
                        manual.assigned.insert(*partition, start.epoch);
                    }
                }
                Err(error) => {
                    warn!(error = %error, partitions = ?starts, "kafka consumer refused the assignment; trying again");
                    manual.retry_at =
                        Some(tokio::time::Instant::now() + Duration::from_millis(ASSIGN_RETRY_MS));
                }
            }
        }
        let assigned: BTreeSet<(String, i32)> = manual
            .assigned
            .keys()
            .map(|partition| (self.config.movements_topic.clone(), *partition))
            .collect();
        *self
            .consumer
            .context()
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = assigned;
        self.manual = Some(manual);
    }

    /// Unassigns `partitions` of the movements topic (manual assignment). A failure is
    /// only logged: their records are dropped anyway.
    fn unassign(&self, partitions: &[i32]) {
        let mut tpl = TopicPartitionList::new();
        for partition in partitions {
            tpl.add_partition(&self.config.movements_topic, *partition);
        }
        if let Err(error) = self.consumer.incremental_unassign(&tpl) {
            warn!(error = %error, partitions = ?partitions, "cannot unassign kafka partitions");
        }
        if self.manual.is_none() {
            return;
        }
        let mut assigned = self
            .consumer
            .context()
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for partition in partitions {
            assigned.remove(&(self.config.movements_topic.clone(), *partition));
        }
    }

    /// The group's committed offsets of `partitions` of the movements topic (those with
    /// one). On failure (logged) none: the partitions start at their start offsets.
    async fn committed_offsets(&self, partitions: &[i32]) -> HashMap<i32, i64> {
        if partitions.is_empty() {
            return HashMap::new();
        }
        let mut tpl = TopicPartitionList::new();
        for partition in partitions {
            tpl.add_partition(&self.config.movements_topic, *partition);
        }
        let consumer = self.consumer.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(tpl, Duration::from_millis(COMMITTED_FETCH_TIMEOUT_MS))
        })
        .await;
        match fetched {
            Ok(Ok(tpl)) => tpl
                .elements()
                .iter()
                .filter_map(|element| match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => Some((element.partition(), offset)),
                    _ => None,
                })
                .collect(),
            Ok(Err(error)) => {
                warn!(error = %error, partitions = ?partitions, "cannot read the group's committed offsets; starting at the start offsets");
                HashMap::new()
            }
            Err(error) => {
                warn!(error = %error, "committed-offset task failed; starting at the start offsets");
                HashMap::new()
            }
        }
    }

    /// Drops gathered records of partitions revoked since the last call (rebalances are
    /// served inside `recv`), and forgets those partitions' windows: nothing of theirs is
    /// committed by this consumer any more. Drops as well the gathered records of
    /// partitions taken away or given up since the last call (handed back meanwhile or
    /// not).
    fn drop_revoked(&mut self, batch: &mut Vec<OwnedMessage>) {
        let taken_away = std::mem::take(&mut self.taken_away);
        if !taken_away.is_empty() {
            let before = batch.len();
            batch.retain(|message| {
                !taken_away.contains(&(message.topic().to_owned(), message.partition()))
                    && self.reads(message.topic(), message.partition())
            });
            if batch.len() != before {
                debug!(
                    dropped = before - batch.len(),
                    "dropped unsubmitted records of partitions taken away or given up"
                );
            }
        }
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
        for partition in revoked {
            self.windows.remove(&partition);
            self.given_up.remove(&partition);
        }
    }

    /// Commits, for every partition whose window moved, the first offset not settled.
    /// A failed commit is only logged: the records are consumed again later and are then
    /// duplicates.
    async fn commit(&mut self, mode: CommitMode) {
        self.last_commit = tokio::time::Instant::now();
        let mut tpl = TopicPartitionList::new();
        let mut offsets = Vec::new();
        for ((topic, partition), window) in &mut self.windows {
            let Some(offset) = window.committable() else {
                continue;
            };
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))
            {
                warn!(error = %error, topic, partition, "cannot build the offset commit");
                return;
            }
            window.committing(offset);
            offsets.push((*partition, offset));
        }
        if offsets.is_empty() {
            return;
        }
        let consumer = self.consumer.clone();
        let committed = match mode {
            // An asynchronous commit only queues the request; failures reach
            // `commit_callback`.
            CommitMode::Async => Ok(consumer.commit(&tpl, CommitMode::Async)),
            CommitMode::Sync => {
                tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await
            }
        };
        match committed {
            Ok(Ok(())) => debug!(offsets = ?offsets, "kafka offsets committed"),
            Ok(Err(error)) => {
                warn!(error = %error, offsets = ?offsets, "kafka offset commit failed")
            }
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
            Outcome::GivenUp => "not_owner",
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

    type Answer = futures::future::Ready<Result<Ack, LedgerError>>;

    fn unavailable() -> Answer {
        futures::future::ready(Err(LedgerError::Unavailable("shard busy".to_owned())))
    }

    fn settled(result: Result<Answers, Stopped>) -> Answers {
        let mut answers = match result {
            Ok(answers) => answers,
            Err(Stopped) => panic!("stopped"),
        };
        answers.sort_by_key(|(owner, _)| *owner);
        answers
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_records_are_retried_with_backoff_a_bounded_number_of_times_then_given_up()
    {
        let policy = RetryPolicy {
            max_attempts: 4,
            initial_backoff_ms: 100,
            max_backoff_ms: 250,
        };
        let (_stop, mut shutdown) = watch::channel(false);
        let refused = LedgerError::Rejected(crate::domain::ApplyError::Invalid("no".to_owned()));
        let first: Vec<(usize, Answer)> = vec![
            (0, futures::future::ready(Ok(Ack::Applied { seq: 1 }))),
            (1, unavailable()),
            (2, futures::future::ready(Err(refused.clone()))),
        ];
        let mut resubmitted: Vec<(Vec<usize>, u128)> = Vec::new();
        let started = tokio::time::Instant::now();
        let answers = settled(
            settle_acks(
                first,
                |records: &[usize]| {
                    resubmitted.push((records.to_vec(), started.elapsed().as_millis()));
                    records
                        .iter()
                        .map(|&record| (record, unavailable()))
                        .collect()
                },
                policy,
                || true,
                &mut shutdown,
            )
            .await,
        );
        // Only the unavailable record is submitted again: 4 submissions in all, after
        // waits of 100, 200 and 250 ms (capped) of virtual time.
        assert_eq!(
            resubmitted,
            [(vec![1], 100), (vec![1], 300), (vec![1], 550)]
        );
        assert_eq!(started.elapsed().as_millis(), 550);
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[0], (0, Ok(Ack::Applied { seq: 1 })));
        assert!(matches!(answers[1], (1, Err(LedgerError::Unavailable(_)))));
        assert_eq!(answers[2], (2, Err(refused)));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_while_the_store_is_down_do_not_count_and_a_recovered_record_is_applied() {
        let policy = RetryPolicy {
            max_attempts: 2,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        let (_stop, mut shutdown) = watch::channel(false);
        let rounds = std::cell::Cell::new(0_u32);
        let answers = settled(
            settle_acks(
                vec![(0, unavailable())],
                |records: &[usize]| {
                    rounds.set(rounds.get() + 1);
                    records
                        .iter()
                        .map(|&record| {
                            let answer = if rounds.get() < 6 {
                                unavailable()
                            } else {
                                futures::future::ready(Ok(Ack::Applied { seq: 9 }))
                            };
                            (record, answer)
                        })
                        .collect()
                },
                policy,
                // The store is down for the first five rounds: those do not count.
                || rounds.get() >= 5,
                &mut shutdown,
            )
            .await,
        );
        assert_eq!(rounds.get(), 6);
        assert_eq!(answers, [(0, Ok(Ack::Applied { seq: 9 }))]);
    }

    fn not_owner() -> LedgerError {
        LedgerError::NotOwner {
            partition: 3,
            owner: Some("http://10.0.0.2:8080".to_owned()),
        }
    }

    #[test]
    fn a_not_owner_answer_gives_the_record_up_instead_of_dead_lettering_it() {
        assert_eq!(movement_outcome(&Err(not_owner())), Outcome::GivenUp);
        assert_eq!(
            movement_outcome(&Err(LedgerError::NotOwner {
                partition: 0,
                owner: None
            })),
            Outcome::GivenUp
        );
        // The other answers keep their outcomes.
        assert_eq!(
            movement_outcome(&Ok(Ack::Applied { seq: 1 })),
            Outcome::Applied
        );
        assert_eq!(
            movement_outcome(&Ok(Ack::Parked { seq: 1 })),
            Outcome::Applied
        );
        assert_eq!(
            movement_outcome(&Ok(Ack::Duplicate { seq: 1 })),
            Outcome::Duplicate
        );
        let refused = LedgerError::Rejected(crate::domain::ApplyError::Invalid("no".to_owned()));
        assert!(matches!(
            movement_outcome(&Err(refused)),
            Outcome::DeadLetter {
                reason: REASON_REJECTED,
                ..
            }
        ));
        for error in [
            LedgerError::Store("down".to_owned()),
            LedgerError::Unavailable("stopping".to_owned()),
            LedgerError::Overloaded("full".to_owned()),
        ] {
            assert!(matches!(
                movement_outcome(&Err(error)),
                Outcome::DeadLetter {
                    reason: REASON_UNAVAILABLE,
                    ..
                }
            ));
        }
        // A record with one movement given up is given up whatever its others answered.
        let dead = || Outcome::DeadLetter {
            reason: REASON_REJECTED,
            error: "no".to_owned(),
        };
        assert_eq!(
            merge_outcomes(Some(dead()), Outcome::GivenUp),
            Outcome::GivenUp
        );
        assert_eq!(
            merge_outcomes(Some(Outcome::GivenUp), dead()),
            Outcome::GivenUp
        );
        assert_eq!(
            merge_outcomes(Some(Outcome::Applied), Outcome::GivenUp),
            Outcome::GivenUp
        );
        assert_eq!(merge_outcomes(Some(Outcome::Applied), dead()), dead());
        assert_eq!(
            merge_outcomes(Some(Outcome::Duplicate), Outcome::Applied),
            Outcome::Applied
        );
        assert_eq!(merge_outcomes(None, Outcome::Duplicate), Outcome::Duplicate);
    }

    #[test]
    fn a_partition_given_up_sends_no_dead_letter_of_that_batch() {
        let record = |partition: i32, offset: i64| {
            OwnedMessage::new(
                Some(b"{}".to_vec()),
                Some(b"SKU".to_vec()),
                "stock.movements".to_owned(),
                rdkafka::Timestamp::NotAvailable,
                partition,
                offset,
                None,
            )
        };
        let dead = || Outcome::DeadLetter {
            reason: REASON_REJECTED,
            error: "no".to_owned(),
        };
        let batch = vec![record(0, 4), record(1, 9), record(0, 5), record(0, 6)];
        let mut outcomes = vec![dead(), dead(), Outcome::GivenUp, Outcome::Applied];
        let given_up = give_up_partitions(&batch, &mut outcomes);
        assert_eq!(
            given_up,
            BTreeSet::from([("stock.movements".to_owned(), 0)])
        );
        // Partition 0's dead letter is dropped with it; partition 1's is still sent.
        assert_eq!(
            outcomes,
            [Outcome::GivenUp, dead(), Outcome::GivenUp, Outcome::Applied]
        );
        let mut untouched = vec![dead(), Outcome::Applied, Outcome::Duplicate, dead()];
        assert!(give_up_partitions(&batch, &mut untouched).is_empty());
        assert_eq!(
            untouched,
            [dead(), Outcome::Applied, Outcome::Duplicate, dead()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_not_owner_answer_is_not_retried() {
        let (_stop, mut shutdown) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let answers = settled(
            settle_acks(
                vec![
                    (0, futures::future::ready(Err(not_owner()))),
                    (1, futures::future::ready(Ok(Ack::Applied { seq: 2 }))),
                ],
                |records: &[usize]| -> Vec<(usize, Answer)> {
                    panic!("records {records:?} submitted again")
                },
                RetryPolicy::default(),
                || true,
                &mut shutdown,
            )
            .await,
        );
        assert_eq!(
            answers,
            [(0, Err(not_owner())), (1, Ok(Ack::Applied { seq: 2 }))]
        );
        assert_eq!(started.elapsed(), Duration::ZERO, "no backoff");
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
            max_in_flight: 100,
            consumer_overrides: Default::default(),
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

    #[test]
    fn the_offset_window_commits_only_past_settled_records() {
        let mut window = OffsetWindow::default();
        assert_eq!(window.committable(), None);
        for offset in 5..=8 {
            window.submitted(offset);
        }
        // Nothing settled: the group already stands at the first offset.
        assert_eq!(window.committable(), None);
        // Settled out of order: 7 and 8 wait for 5 and 6.
        window.settled(7);
        window.settled(8);
        assert_eq!(window.committable(), None);
        window.settled(5);
        assert_eq!(window.committable(), Some(6));
        window.committing(6);
        assert_eq!(window.committable(), None);
        window.submitted(9);
        window.settled(9);
        assert_eq!(window.committable(), None, "6 is not settled yet");
        window.settled(6);
        assert_eq!(window.committable(), Some(10));
        window.committing(10);
        assert_eq!(window.committable(), None);
    }

    #[test]
    fn the_offset_window_never_passes_an_unsettled_record_in_any_order() {
        // Every order of settling 0..6: the committable offset never passes an offset not
        // settled yet, and reaches 6 at the end.
        fn orders(rest: Vec<i64>, prefix: &mut Vec<i64>, out: &mut Vec<Vec<i64>>) {
            if rest.is_empty() {
                out.push(prefix.clone());
            }
            for (i, &offset) in rest.iter().enumerate() {
                let mut rest = rest.clone();
                rest.remove(i);
                prefix.push(offset);
                orders(rest, prefix, out);
                prefix.pop();
            }
        }
        let mut all = Vec::new();
        orders((0..6).collect(), &mut Vec::new(), &mut all);
        for order in all {
            let mut window = OffsetWindow::default();
            for offset in 0..6 {
                window.submitted(offset);
            }
            let mut settled = std::collections::BTreeSet::new();
            let mut last = 0;
            for offset in &order {
                window.settled(*offset);
                settled.insert(*offset);
                let below = window.settled_below().expect("records were submitted");
                assert!((0..below).all(|o| settled.contains(&o)), "{order:?}");
                if let Some(commit) = window.committable() {
                    assert!(commit > last, "{order:?}");
                    assert!(
                        (0..commit).all(|o| settled.contains(&o)),
                        "{order:?}: {commit}"
                    );
                    window.committing(commit);
                    last = commit;
                }
            }
            assert_eq!(last, 6, "{order:?}");
        }
    }

    #[test]
    fn the_settled_position_written_with_a_batch_never_passes_a_record_in_flight() {
        // Batches of three offsets submitted one after another while earlier ones settle
        // out of order: the settled position taken once a batch is submitted (the store's
        // watermark written with its movements) has every record before it settled, is at
        // most the batch's first offset, and never goes back.
        let settle_after: [&[i64]; 5] = [&[1], &[0, 4], &[2, 3], &[5, 6, 7, 8, 10, 11], &[]];
        let mut window = OffsetWindow::default();
        let mut settled = BTreeSet::new();
        let mut marks = Vec::new();
        for (batch, settle) in (0_i64..).zip(settle_after) {
            for offset in batch * 3..batch * 3 + 3 {
                window.submitted(offset);
            }
            let mark = window.settled_below().expect("records were submitted");
            assert!(mark <= batch * 3, "batch {batch}: {mark}");
            assert!(
                (0..mark).all(|offset| settled.contains(&offset)),
                "batch {batch}: {mark} passes a record in flight"
            );
            marks.push(mark);
            for offset in settle {
                window.settled(*offset);
                settled.insert(*offset);
            }
        }
        assert_eq!(marks, [0, 0, 2, 5, 9]);
        for offset in [9, 12, 13, 14] {
            window.settled(offset);
        }
        assert_eq!(
            window.settled_below(),
            Some(15),
            "all settled: one past the last"
        );
    }

    #[test]
    fn fixed_consumer_settings_cannot_be_overridden() {
        let mut config = KafkaConfig {
            brokers: "127.0.0.1:1".to_owned(),
            group_id: "g".to_owned(),
            movements_topic: "t".to_owned(),
            dead_letter_topic: "dlq".to_owned(),
            atp_topic: None,
            batch_max: 10,
            batch_wait_ms: 5,
            max_in_flight: 10,
            consumer_overrides: Default::default(),
        };
        assert!(check_settings(&config).is_ok());
        config
            .consumer_overrides
            .insert("fetch.max.bytes".to_owned(), "1048576".to_owned());
        assert!(check_settings(&config).is_ok());
        assert_eq!(
            consumer_config(&config).get("fetch.max.bytes"),
            Some("1048576")
        );
        config
            .consumer_overrides
            .insert("enable.auto.commit".to_owned(), "true".to_owned());
        assert!(check_settings(&config).is_err());
        config.consumer_overrides.clear();
        config.max_in_flight = 9;
        assert!(check_settings(&config).is_err());
    }
}
