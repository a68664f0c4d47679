//! Metric names, the Prometheus recorder and logging setup.
//!
//! Owns: every metric name (as constants, `stocksync_<subsystem>_<thing>_<unit|total>`,
//! DESIGN.md §6) and the process-wide recorder. Labels are bounded: channel, source,
//! outcome, kind, error type; never a SKU.
//!
//! May depend on: nothing else in the crate.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Movements applied by the ledger; labels `source`, `kind`.
pub const LEDGER_MOVEMENTS_TOTAL: &str = "stocksync_ledger_movements_total";
/// Duplicate movements acknowledged without effect; label `source`.
pub const LEDGER_DEDUPE_HITS_TOTAL: &str = "stocksync_ledger_dedupe_hits_total";
/// Movements refused by the state machine; label `reason`.
pub const LEDGER_REJECTED_TOTAL: &str = "stocksync_ledger_rejected_total";
/// Sales that left a location's available below zero; label `source`.
pub const LEDGER_OVERSELLS_TOTAL: &str = "stocksync_ledger_oversells_total";
/// SKU actors currently live (gauge).
pub const LEDGER_LIVE_SKU_ACTORS: &str = "stocksync_ledger_live_sku_actors";
/// SKU actors passivated after idling.
pub const LEDGER_PASSIVATIONS_TOTAL: &str = "stocksync_ledger_passivations_total";
/// Durable group-commit latency (histogram, seconds).
pub const STORE_COMMIT_SECONDS: &str = "stocksync_store_commit_seconds";
/// Events per group commit (histogram).
pub const STORE_COMMIT_BATCH_EVENTS: &str = "stocksync_store_commit_batch_events";
/// Store calls; labels `method`, `outcome`.
pub const STORE_CALLS_TOTAL: &str = "stocksync_store_calls_total";
/// Kafka messages consumed; label `outcome` (`applied`, `duplicate`, `rejected`, `dead_letter`).
pub const INGEST_KAFKA_MESSAGES_TOTAL: &str = "stocksync_ingest_kafka_messages_total";
/// Messages sent to the dead-letter topic; label `reason`.
pub const INGEST_DEAD_LETTERS_TOTAL: &str = "stocksync_ingest_dead_letters_total";
/// Webhook deliveries; labels `channel`, `topic`, `outcome`.
pub const INGEST_WEBHOOKS_TOTAL: &str = "stocksync_ingest_webhooks_total";
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

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its render handle.
/// Later calls return the same handle.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder is installed in this process")
        })
        .clone()
}

/// Sets up `tracing` logs: `RUST_LOG` filter (default `info`), plain text or JSON.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
