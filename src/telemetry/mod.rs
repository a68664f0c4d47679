//! Metric names, the Prometheus recorder and logging setup.
//!
//! Owns: every metric name (as constants, `stocksync_<subsystem>_<thing>_<unit|total>`,
//! DESIGN.md §6), the process-wide recorder, and the dead-letter notice type with its
//! broadcast handle ([`DeadLetterBroadcast`], created per app, not process-wide). Labels
//! are bounded: channel, source, outcome, kind, error type; never a SKU.
//!
//! May depend on: nothing else in the crate.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Movements applied by the ledger; labels `source`, `kind`.
pub const LEDGER_MOVEMENTS_TOTAL: &str = "stocksync_ledger_movements_total";
/// Duplicate movements acknowledged without effect; label `source`.
pub const LEDGER_DEDUPE_HITS_TOTAL: &str = "stocksync_ledger_dedupe_hits_total";
/// Movements refused by the state machine; label `reason`.
pub const LEDGER_REJECTED_TOTAL: &str = "stocksync_ledger_rejected_total";
/// Movements parked until their order line gets there; label `kind`.
pub const LEDGER_PARKED_TOTAL: &str = "stocksync_ledger_parked_total";
/// Parked movements that expired (dead letters); label `kind`.
pub const LEDGER_PARKED_EXPIRED_TOTAL: &str = "stocksync_ledger_parked_expired_total";
/// Units order edits put below what their lines had shipped (each needs a return).
pub const LEDGER_DISCREPANCY_UNITS_TOTAL: &str = "stocksync_ledger_discrepancy_units_total";
/// Sales that left a location's available below zero; label `source`.
pub const LEDGER_OVERSELLS_TOTAL: &str = "stocksync_ledger_oversells_total";
/// SKUs currently in memory in the ledger's shards, live or loading (gauge). The name is
/// kept from when each SKU was an actor: dashboards and alerts use it.
pub const LEDGER_LIVE_SKU_ACTORS: &str = "stocksync_ledger_live_sku_actors";
/// SKUs passivated (dropped from memory) after idling or at shutdown.
pub const LEDGER_PASSIVATIONS_TOTAL: &str = "stocksync_ledger_passivations_total";
/// Counter: holds released by the reaper because their TTL passed (scenario S5).
pub const LEDGER_RESERVATIONS_EXPIRED_TOTAL: &str = "stocksync_ledger_reservations_expired_total";
/// Several instances: group commits the store refused because another instance owns one of
/// their partitions now (a fenced, stale writer: a paused or partitioned node).
pub const CLUSTER_FENCED_WRITES_TOTAL: &str = "stocksync_cluster_fenced_writes_total";
/// Several instances: partitions this instance took (`event="acquired"`), gave up
/// (`"released"`) or lost to another instance (`"lost"`); label `event`.
pub const CLUSTER_PARTITION_CHANGES_TOTAL: &str = "stocksync_cluster_partition_changes_total";
/// Several instances: movements topic partitions this instance owns (gauge).
pub const CLUSTER_PARTITIONS_OWNED: &str = "stocksync_cluster_partitions_owned";
/// Several instances: live instances this one sees in the store (gauge).
pub const CLUSTER_MEMBERS: &str = "stocksync_cluster_members";
/// Several instances: 1 while this instance leads the channel (pushes to, polls and
/// reconciles it), 0 while another does or none; label `channel` (gauge).
pub const CLUSTER_CHANNEL_LEADER: &str = "stocksync_cluster_channel_leader";
/// Several instances: channel leaderships this instance took (`event="acquired"`), handed
/// over (`"released"`) or lost to another instance (`"lost"`); labels `channel`, `event`.
pub const CLUSTER_CHANNEL_CHANGES_TOTAL: &str = "stocksync_cluster_channel_changes_total";
/// Several instances: availability changes sent to the instances that lead channels;
/// label `outcome` (`sent`: delivered; `dropped`: the queue of a destination was full and
/// its oldest change dropped; `failed`: a request failed and will be retried).
pub const CLUSTER_AVAILABILITY_FORWARDED_TOTAL: &str =
    "stocksync_cluster_availability_forwarded_total";
/// Availability changes propagation dropped because a newer change of the same SKU (a
/// higher ledger `seq`) was already taken: a previous owner's late change (counter).
pub const PROPAGATION_STALE_CHANGES_TOTAL: &str = "stocksync_propagation_stale_changes_total";
/// Several instances: movements and reads forwarded to the owning instance; labels `kind`
/// (`movements`, `reservation`, `read`), `outcome` (`ok`, `retried`, `failed`).
pub const CLUSTER_FORWARDS_TOTAL: &str = "stocksync_cluster_forwards_total";
/// Durable group-commit latency (histogram, seconds).
pub const STORE_COMMIT_SECONDS: &str = "stocksync_store_commit_seconds";
/// Events per group commit (histogram).
pub const STORE_COMMIT_BATCH_EVENTS: &str = "stocksync_store_commit_batch_events";
/// Store calls, counted by `store::metered` for every backend; labels `backend`
/// (`embedded`, `postgres`, `scylla`), `method` (the `Store` method).
pub const STORE_CALLS_TOTAL: &str = "stocksync_store_calls_total";
/// Store calls that returned an error; labels `backend`, `method`, `kind` (`backend`,
/// `corrupt`, `poisoned`, `fenced`: the `StoreError` variant).
pub const STORE_ERRORS_TOTAL: &str = "stocksync_store_errors_total";
/// Latency of one store call (histogram, seconds, [`STORE_LATENCY_BUCKETS`]); labels
/// `backend`, `method`.
pub const STORE_LATENCY_SECONDS: &str = "stocksync_store_latency_seconds";
/// Store calls made again by their caller after a failure (the ledger's committer writes a
/// failed group commit again); labels `backend`, `method`.
pub const STORE_RETRIES_TOTAL: &str = "stocksync_store_retries_total";
/// Listings compared instead of pushed on channels in shadow mode
/// (`propagation::shadow`).
pub const PROPAGATION_SHADOW_COMPARED_TOTAL: &str = "stocksync_propagation_shadow_compared_total";
/// Events deleted by the hourly retention run (`[store] event_retention_days`,
/// [`crate::store::Store::prune_events`]).
pub const STORE_EVENTS_PRUNED_TOTAL: &str = "stocksync_store_events_pruned_total";
/// Size of the embedded store's write-ahead log in bytes (gauge, set after each commit).
pub const STORE_WAL_BYTES: &str = "stocksync_store_wal_bytes";
/// WAL checkpoints of the embedded store; labels `reason` (`size`, `idle`, `close`),
/// `outcome` (`ok`, `busy`, `error`).
pub const STORE_WAL_CHECKPOINTS_TOTAL: &str = "stocksync_store_wal_checkpoints_total";
/// Kafka messages consumed; label `outcome` (`applied`, `duplicate`, `rejected`, `dead_letter`).
pub const INGEST_KAFKA_MESSAGES_TOTAL: &str = "stocksync_ingest_kafka_messages_total";
/// Messages sent to the dead-letter topic; label `reason`.
pub const INGEST_DEAD_LETTERS_TOTAL: &str = "stocksync_ingest_dead_letters_total";
/// Webhook deliveries; labels `channel`, `topic`, `outcome`.
pub const INGEST_WEBHOOKS_TOTAL: &str = "stocksync_ingest_webhooks_total";
/// Reservation moves that followed a channel's own routing (a Shopify fulfillment order
/// moved to another location) and that the ledger refused because the target cannot hold
/// the line's open units: the reservation stays where it was; label `channel`.
pub const INGEST_REASSIGN_REFUSED_TOTAL: &str = "stocksync_ingest_reassign_refused_total";
/// REST movements received; label `outcome`.
pub const INGEST_REST_MOVEMENTS_TOTAL: &str = "stocksync_ingest_rest_movements_total";
/// Listings waiting to be pushed per channel (gauge); label `channel`.
pub const PROPAGATION_QUEUE_DEPTH: &str = "stocksync_propagation_queue_depth";
/// Pushes per channel; labels `channel`, `outcome`.
pub const PROPAGATION_PUSHES_TOTAL: &str = "stocksync_propagation_pushes_total";
/// Ledger change to channel acknowledgement (histogram, seconds); label `channel`.
pub const PROPAGATION_LAG_SECONDS: &str = "stocksync_propagation_lag_seconds";
/// ATP changes dropped because the Kafka ATP output queue was full; label `channel`.
pub const PROPAGATION_ATP_OUTPUT_DROPPED_TOTAL: &str =
    "stocksync_propagation_atp_output_dropped_total";
/// Throttle responses (429 or GraphQL THROTTLED); label `channel`.
pub const CHANNEL_THROTTLED_TOTAL: &str = "stocksync_channel_throttled_total";
/// 5xx responses and transport errors; labels `channel`, `error`.
pub const CHANNEL_ERRORS_TOTAL: &str = "stocksync_channel_errors_total";
/// Compare-and-set conflicts reported by a channel; label `channel`.
pub const CHANNEL_CAS_CONFLICTS_TOTAL: &str = "stocksync_channel_cas_conflicts_total";

/// Push answers dropped because the push audit log queue was full; label `channel`.
pub const AUDIT_PUSH_LOG_DROPPED_TOTAL: &str = "stocksync_audit_push_log_dropped_total";
/// Discrepancies found between a channel and the ledger; labels `channel`, `class`
/// (`in_flight`, `manual_edit`, `lost_update`, `unknown_listing`).
pub const RECONCILE_DISCREPANCIES_TOTAL: &str = "stocksync_reconcile_discrepancies_total";
/// Discrepancies healed by a re-push; label `channel`.
pub const RECONCILE_HEALED_TOTAL: &str = "stocksync_reconcile_healed_total";
/// Channel values recognised as the echo of our own push; label `channel`.
pub const RECONCILE_ECHOES_TOTAL: &str = "stocksync_reconcile_echoes_total";
/// Periodic reconciliation passes; labels `channel`, `outcome` (`ok`, `error`).
pub const RECONCILE_RUNS_TOTAL: &str = "stocksync_reconcile_runs_total";
/// Alerts raised; labels `kind`, `outcome` (`sent`, `failed`, `deduplicated`, `rate_limited`, `logged`).
pub const ALERTS_TOTAL: &str = "stocksync_alerts_total";
/// HTTP requests answered 503 by the server's limits; label `reason` (`overloaded`,
/// `timeout`).
pub const HTTP_REQUESTS_SHED_TOTAL: &str = "stocksync_http_requests_shed_total";
/// HTTP connections closed at accept because `http.max_connections` were open.
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "stocksync_http_connections_refused_total";
/// Supervised actors and tasks restarted after a panic; label `actor` (`propagator`,
/// `poller`, `reconciler`, `shard`).
pub const ACTOR_RESTARTS_TOTAL: &str = "stocksync_actor_restarts_total";
/// Group commits that failed and are being written again (the store is down meanwhile).
pub const STORE_COMMIT_FAILURES_TOTAL: &str = "stocksync_store_commit_failures_total";
/// 1 while ingest is paused because the store refuses writes, else 0.
pub const LEDGER_WRITES_PAUSED: &str = "stocksync_ledger_writes_paused";

/// The text of a caught panic's payload (`&str` or `String`, as `panic!` makes them).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A batch of Kafka messages sent to the dead-letter topic, for alerting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterNotice {
    /// Why they were dead-lettered (`invalid_json`, `rejected`, …): a bounded label.
    pub reason: String,
    /// How many messages.
    pub count: u64,
}

/// Notices kept for a slow subscriber before the oldest are dropped.
const DEAD_LETTER_NOTICES: usize = 256;

/// The dead-letter broadcast: Kafka ingest sends a [`DeadLetterNotice`] per batch and
/// reason, the alert monitor subscribes. Created by the app and handed to both (there is
/// no process-wide one); clones share one broadcast.
#[derive(Clone, Debug)]
pub struct DeadLetterBroadcast(tokio::sync::broadcast::Sender<DeadLetterNotice>);

impl Default for DeadLetterBroadcast {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadLetterBroadcast {
    /// A broadcast with no subscriber yet.
    pub fn new() -> Self {
        Self(tokio::sync::broadcast::channel(DEAD_LETTER_NOTICES).0)
    }

    /// The dead-letter hook: called by Kafka ingest once per batch and reason; never
    /// blocks (with no subscriber, or a full one, the notice is simply dropped).
    pub fn dead_letters_sent(&self, reason: &str, count: u64) {
        let _ = self.0.send(DeadLetterNotice {
            reason: reason.to_owned(),
            count,
        });
    }

    /// Subscribes to the notices sent from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DeadLetterNotice> {
        self.0.subscribe()
    }
}

/// Bucket bounds (seconds) of [`STORE_LATENCY_SECONDS`]: finer at the low end than
/// [`SECONDS_BUCKETS`], since an embedded read takes tens of microseconds and a shared
/// store's round trip about a millisecond.
pub const STORE_LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Bucket bounds (seconds) of every `*_seconds` histogram: rendered as Prometheus
/// histograms (`_bucket`/`_sum`/`_count`) so quantiles aggregate across instances
/// (`histogram_quantile` in the Grafana dashboard and alert rules).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the Prometheus recorder once per process and returns its render handle.
/// Later calls return the same handle.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .expect("the bucket list is not empty")
                // A full-name matcher wins over the suffix one (the exporter sorts them).
                .set_buckets_for_metric(
                    Matcher::Full(STORE_LATENCY_SECONDS.to_owned()),
                    STORE_LATENCY_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process")
        })
        .clone()
}

/// How logs are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event; ANSI colours only when stderr is a terminal (and
    /// `NO_COLOR` is unset).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, spans), never
    /// coloured.
    Json,
}

/// Whether text logs get ANSI colours: only on a terminal, and not when `NO_COLOR` is set
/// (<https://no-color.org>).
pub fn log_colours(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Sets up `tracing` logs on stderr: `RUST_LOG` filter (default `info`), in `format`.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(log_colours(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(log_colours(true, None));
        assert!(!log_colours(false, None));
        assert!(!log_colours(true, Some("1".into())));
        assert!(log_colours(true, Some("".into())));
    }

    #[test]
    fn dead_letter_broadcasts_are_separate_per_handle() {
        let broadcast = DeadLetterBroadcast::new();
        let other = DeadLetterBroadcast::new();
        let mut subscriber = broadcast.subscribe();
        let mut elsewhere = other.subscribe();
        broadcast.clone().dead_letters_sent("invalid_json", 3);
        assert_eq!(
            subscriber.try_recv().unwrap(),
            DeadLetterNotice {
                reason: "invalid_json".to_owned(),
                count: 3
            }
        );
        assert!(elsewhere.try_recv().is_err(), "another app hears nothing");
        DeadLetterBroadcast::default().dead_letters_sent("rejected", 1);
    }
}
