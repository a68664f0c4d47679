//! `[store]` and `[ledger]`: where movements and snapshots are kept, and how the ledger's
//! shards use them.
//!
//! Owns: [`StoreBackend`], [`StoreConfig`], [`LedgerConfig`].
//!
//! May depend on: nothing but serde.

use crate::domain::CountBasis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which store backend to use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// SQLite in one file on this machine (zero set-up).
    #[default]
    Embedded,
    /// ScyllaDB cluster (for merchants that outgrow one machine).
    Scylla,
}

/// `[store]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` (default) or `scylla`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// Embedded database file; created with its folder if missing.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// ScyllaDB contact points (`host:port`), for the `scylla` backend.
    #[serde(default)]
    pub scylla_nodes: Vec<String>,
    /// ScyllaDB keyspace, for the `scylla` backend.
    #[serde(default = "default_keyspace")]
    pub scylla_keyspace: String,
    /// Most movements written in one durable group commit.
    #[serde(default = "default_group_commit_max_batch")]
    pub group_commit_max_batch: usize,
    /// A snapshot of a SKU is written every this many of its events.
    #[serde(default = "default_snapshot_every_events")]
    pub snapshot_every_events: u64,
    /// Embedded backend: a commit that leaves the write-ahead log larger than this many
    /// bytes checkpoints it into the database and truncates it.
    #[serde(default = "default_wal_checkpoint_bytes")]
    pub wal_checkpoint_bytes: u64,
    /// Embedded backend: with no commit for this many seconds, the write-ahead log is
    /// checkpointed and truncated.
    #[serde(default = "default_wal_idle_checkpoint_secs")]
    pub wal_idle_checkpoint_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            path: default_store_path(),
            scylla_nodes: Vec::new(),
            scylla_keyspace: default_keyspace(),
            group_commit_max_batch: default_group_commit_max_batch(),
            snapshot_every_events: default_snapshot_every_events(),
            wal_checkpoint_bytes: default_wal_checkpoint_bytes(),
            wal_idle_checkpoint_secs: default_wal_idle_checkpoint_secs(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("data/stocksync.db")
}
fn default_keyspace() -> String {
    "stocksync".to_owned()
}
fn default_group_commit_max_batch() -> usize {
    16_384
}
fn default_snapshot_every_events() -> u64 {
    500
}
fn default_wal_checkpoint_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_wal_idle_checkpoint_secs() -> u64 {
    10
}

/// `[ledger]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// A SKU idle this long (and fully durable) is dropped from memory (passivated).
    #[serde(default = "default_idle_passivate_secs")]
    pub idle_passivate_secs: u64,
    /// How long an idempotency key is remembered (Shopify retries for 4 h; default 7 days).
    #[serde(default = "default_idempotency_ttl_secs")]
    pub idempotency_ttl_secs: u64,
    /// Shard actors that host the live SKUs (1..=256; default two per available core).
    /// A SKU's shard is a stable hash of its bytes modulo this number.
    #[serde(default = "default_ledger_shards")]
    pub shards: usize,
    /// The basis of each count source's figures, by movement `source`
    /// (`count_basis = { "erp-1" = "book" }`): a count without its own `basis` from a listed
    /// source is read with this basis, from any other source as `physical`. A count's own
    /// `basis` field wins. At most [`MAX_COUNT_BASIS_SOURCES`] entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub count_basis: BTreeMap<String, CountBasis>,
    /// A movement parked while waiting for its order line (a fulfilment before its sale,
    /// a return before its shipment) expires into the dead-letter store after this long,
    /// counted by source time (default 7 days; 0: never).
    #[serde(default = "default_parked_ttl_secs")]
    pub parked_ttl_secs: u64,
    /// Most movements waiting in one shard actor's mailbox; a movement submitted beyond it
    /// is refused as overloaded (REST 503 with `Retry-After`, Kafka retries later) instead
    /// of growing memory (default 65,536).
    #[serde(default = "default_max_queued_per_shard")]
    pub max_queued_per_shard: usize,
    /// Most messages waiting for one SKU inside its shard (while it loads or confirms a
    /// key); beyond it new work for the SKU is refused as overloaded (default 16,384, more
    /// than one REST batch of 10,000 movements for one SKU).
    #[serde(default = "default_max_buffered_per_sku")]
    pub max_buffered_per_sku: usize,
    /// The movement `source` values reported as themselves in the metric label `source`;
    /// any other source is reported as `other`, so a producer cannot grow the metric
    /// families. Besides this list, `{platform}:{channel id}` of every configured channel
    /// and the sources of `count_basis` are kept. Default: see [`default_metric_sources`].
    #[serde(default = "default_metric_sources")]
    pub metric_sources: Vec<String>,
}

/// The sources the ledger's metrics name by default: the built-in producers.
pub fn default_metric_sources() -> Vec<String> {
    [
        "rest",
        "kafka",
        "shopify",
        "woocommerce",
        "amazon",
        "bolcom",
        "reservations",
        "reaper",
        "reconcile",
        "unknown",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn default_max_queued_per_shard() -> usize {
    65_536
}
fn default_max_buffered_per_sku() -> usize {
    16_384
}

/// Most sources `[ledger] count_basis` may list.
pub const MAX_COUNT_BASIS_SOURCES: usize = 1024;

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            idle_passivate_secs: default_idle_passivate_secs(),
            idempotency_ttl_secs: default_idempotency_ttl_secs(),
            shards: default_ledger_shards(),
            count_basis: BTreeMap::new(),
            parked_ttl_secs: default_parked_ttl_secs(),
            max_queued_per_shard: default_max_queued_per_shard(),
            max_buffered_per_sku: default_max_buffered_per_sku(),
            metric_sources: default_metric_sources(),
        }
    }
}

fn default_idle_passivate_secs() -> u64 {
    120
}
fn default_idempotency_ttl_secs() -> u64 {
    7 * 24 * 3600
}
fn default_parked_ttl_secs() -> u64 {
    7 * 24 * 3600
}
/// Two shards per available core, within 1..=[`MAX_LEDGER_SHARDS`].
fn default_ledger_shards() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |cores| cores.get().saturating_mul(2))
        .clamp(1, MAX_LEDGER_SHARDS)
}

/// Most shards `[ledger] shards` accepts.
pub const MAX_LEDGER_SHARDS: usize = 256;

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn unknown_fields_are_rejected() {
        let error = Config::from_toml("[store]\npaht = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("paht"), "{error}");
    }
}
