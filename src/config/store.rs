//! `[store]` and `[ledger]`: where movements and snapshots are kept, and how the ledger's
//! shards use them.
//!
//! Owns: [`StoreBackend`], [`StoreConfig`] with its [`PostgresStoreConfig`] and
//! [`ScyllaStoreConfig`] tables, [`LedgerConfig`].
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
    /// A PostgreSQL database shared by several instances (`[store.postgres]`).
    Postgres,
    /// A ScyllaDB cluster (`[store.scylla]`), for merchants that outgrow one machine.
    Scylla,
}

impl StoreBackend {
    /// The backend's name as in the config (`embedded`, `postgres`, `scylla`), also the
    /// `backend` label of the store metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Postgres => "postgres",
            Self::Scylla => "scylla",
        }
    }
}

/// `[store]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` (default), `postgres` or `scylla`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// Embedded database file; created with its folder if missing.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// `[store.postgres]`: the PostgreSQL backend's connection and pool.
    #[serde(default)]
    pub postgres: PostgresStoreConfig,
    /// `[store.scylla]`: the ScyllaDB backend's cluster, keyspace and request policy.
    #[serde(default)]
    pub scylla: ScyllaStoreConfig,
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
    /// Event retention in days; 0 (the default) keeps every event. Otherwise, once an hour,
    /// events older than this that their SKU's newest snapshot covers and whose idempotency
    /// key has expired are deleted ([`crate::store::Store::prune_events`]): the movement
    /// history then reaches back this far. The embedded and PostgreSQL stores prune;
    /// ScyllaDB keeps everything (give its tables a `default_time_to_live` instead). At
    /// most 36,500.
    #[serde(default)]
    pub event_retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            path: default_store_path(),
            postgres: PostgresStoreConfig::default(),
            scylla: ScyllaStoreConfig::default(),
            group_commit_max_batch: default_group_commit_max_batch(),
            snapshot_every_events: default_snapshot_every_events(),
            wal_checkpoint_bytes: default_wal_checkpoint_bytes(),
            wal_idle_checkpoint_secs: default_wal_idle_checkpoint_secs(),
            event_retention_days: 0,
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("data/stocksync.db")
}
fn default_keyspace() -> String {
    "stocksync".to_owned()
}

/// `[store.postgres]`: where the PostgreSQL backend connects and how it pools.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStoreConfig {
    /// Connection string, as libpq takes it: a URL
    /// (`postgres://stocksync@db.internal:5432/stocksync`) or `key=value` pairs. Put the
    /// password in `password` (or `${VAR}`), not here: the URL is shown in the config audit.
    #[serde(default)]
    pub url: String,
    /// The password, overriding one in `url`; redacted from the config audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PostgreSQL schema that holds stocksync's tables (created when missing).
    #[serde(default = "default_postgres_schema")]
    pub schema: String,
    /// Most pooled connections (1..=256).
    #[serde(default = "default_postgres_pool_size")]
    pub pool_size: usize,
    /// How long to wait for a connection (new or from the pool), in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Server-side `statement_timeout` of every connection, in milliseconds (at least 1:
    /// PostgreSQL reads 0 as "no timeout", which `check-config` refuses).
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// Server-side `idle_in_transaction_session_timeout` of every connection, in
    /// milliseconds (at least 1; default 5,000): the server ends the session of an instance
    /// that stops mid-transaction (paused, partitioned), so the row locks it held (its
    /// partitions' fence rows) do not stop the instances that take its partitions over.
    #[serde(default = "default_idle_in_transaction_timeout_ms")]
    pub idle_in_transaction_timeout_ms: u64,
    /// Apply the embedded migrations at start (otherwise only check the schema version and
    /// refuse to start when it is behind; `stocksync migrate` applies them).
    #[serde(default = "default_true")]
    pub create_schema: bool,
}

impl Default for PostgresStoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            password: None,
            schema: default_postgres_schema(),
            pool_size: default_postgres_pool_size(),
            connect_timeout_ms: default_connect_timeout_ms(),
            statement_timeout_ms: default_statement_timeout_ms(),
            idle_in_transaction_timeout_ms: default_idle_in_transaction_timeout_ms(),
            create_schema: true,
        }
    }
}

fn default_postgres_schema() -> String {
    "stocksync".to_owned()
}
fn default_postgres_pool_size() -> usize {
    16
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_idle_in_transaction_timeout_ms() -> u64 {
    5_000
}
fn default_statement_timeout_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}

/// A CQL consistency level the ScyllaDB backend reads and writes with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScyllaConsistency {
    /// A quorum of the replicas in the local datacenter (default).
    #[default]
    LocalQuorum,
    /// A quorum of all replicas.
    Quorum,
    /// A quorum in every datacenter (writes only; reads use `local_quorum`).
    EachQuorum,
    /// One replica in the local datacenter.
    LocalOne,
    /// One replica.
    One,
    /// Every replica.
    All,
}

/// How the keyspace is replicated (used when the schema is created).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScyllaReplication {
    /// `NetworkTopologyStrategy` (default) or `SimpleStrategy`.
    #[serde(default = "default_replication_class")]
    pub class: String,
    /// Replicas per datacenter (`NetworkTopologyStrategy` without `datacenters`, or
    /// `SimpleStrategy`); default 3.
    #[serde(default = "default_replication_factor")]
    pub factor: u32,
    /// Replicas per named datacenter (`NetworkTopologyStrategy`); when empty, `factor` in
    /// every datacenter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub datacenters: BTreeMap<String, u32>,
}

impl Default for ScyllaReplication {
    fn default() -> Self {
        Self {
            class: default_replication_class(),
            factor: default_replication_factor(),
            datacenters: BTreeMap::new(),
        }
    }
}

impl ScyllaReplication {
    /// Every problem with this replication (empty when it is usable): a class other than
    /// `NetworkTopologyStrategy` or `SimpleStrategy`, `factor` 0 (when it is used: no
    /// `datacenters`), a datacenter factor of 0 or a datacenter name that is not
    /// `[A-Za-z0-9_.-]+` (it is pasted into CQL text), or `datacenters` with
    /// `SimpleStrategy`. The one rule for `check-config` and the ScyllaDB backend.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let simple = match self.class.as_str() {
            "SimpleStrategy" => true,
            "NetworkTopologyStrategy" => false,
            other => {
                problems.push(format!(
                    "replication class {other:?} is neither NetworkTopologyStrategy nor SimpleStrategy"
                ));
                false
            }
        };
        if simple && !self.datacenters.is_empty() {
            problems.push("SimpleStrategy takes no per-datacenter factors".to_owned());
        }
        if self.datacenters.is_empty() && self.factor == 0 {
            problems.push("a replication factor must be at least 1".to_owned());
        }
        for (datacenter, factor) in &self.datacenters {
            let name_ok = !datacenter.is_empty()
                && datacenter
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !name_ok {
                problems.push(format!(
                    "datacenter name {datacenter:?} is not plain ([A-Za-z0-9_.-]+)"
                ));
            }
            if *factor == 0 {
                problems.push(format!(
                    "the replication factor of datacenter {datacenter:?} must be at least 1"
                ));
            }
        }
        problems
    }
}

/// Why `keyspace` is not a plain CQL identifier (it is pasted into statement text), or
/// `None` when it is: 1 to 48 characters of `a-z`, `0-9` and `_`, starting with a letter.
/// The one rule for `check-config` and the ScyllaDB backend.
pub fn keyspace_problem(keyspace: &str) -> Option<String> {
    let mut chars = keyspace.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && keyspace.len() <= 48 {
        None
    } else {
        Some(format!(
            "keyspace {keyspace:?} must be 1 to 48 characters of a-z, 0-9 and _, starting with a letter"
        ))
    }
}

fn default_replication_class() -> String {
    "NetworkTopologyStrategy".to_owned()
}
fn default_replication_factor() -> u32 {
    3
}

/// `[store.scylla]`: the ScyllaDB cluster, keyspace and request policy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaStoreConfig {
    /// Contact points (`host:port`); the driver discovers the rest of the cluster.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Keyspace holding stocksync's tables.
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// The local datacenter: only its nodes coordinate requests (token-aware: a replica
    /// of the partition first), and requests never go to another datacenter's nodes, even
    /// when none of this one's can be reached (the driver's `permit_dc_failover(false)`).
    /// When unset, any node of any datacenter may coordinate (and `local_*` consistencies
    /// count the replicas in that node's datacenter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_dc: Option<String>,
    /// Consistency of reads and writes (default `local_quorum`).
    #[serde(default)]
    pub consistency: ScyllaConsistency,
    /// Keyspace replication, used when the schema is created.
    #[serde(default)]
    pub replication: ScyllaReplication,
    /// Create the keyspace and tables at start when missing (otherwise only check them;
    /// `stocksync migrate` creates them).
    #[serde(default = "default_true")]
    pub create_schema: bool,
    /// Client-side timeout of one request, in milliseconds.
    #[serde(default = "default_scylla_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Bound on opening the session, in milliseconds: connecting to the nodes, the CQL
    /// handshake and the driver's first topology read, together (a node that accepts TCP
    /// and never answers fails the open after this long).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Most requests in flight from this instance; more wait for a slot.
    #[serde(default = "default_scylla_max_in_flight")]
    pub max_in_flight: usize,
    /// How many times an idempotent request that timed out or met an unavailable
    /// replica set is retried (on the next replica) before the error is returned.
    #[serde(default = "default_scylla_retries")]
    pub retries: u32,
    /// User name for password authentication, if the cluster requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `username`; redacted from the config audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl Default for ScyllaStoreConfig {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            keyspace: default_keyspace(),
            local_dc: None,
            consistency: ScyllaConsistency::default(),
            replication: ScyllaReplication::default(),
            create_schema: true,
            request_timeout_ms: default_scylla_request_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            max_in_flight: default_scylla_max_in_flight(),
            retries: default_scylla_retries(),
            username: None,
            password: None,
        }
    }
}

fn default_scylla_request_timeout_ms() -> u64 {
    5_000
}
fn default_scylla_max_in_flight() -> usize {
    1_024
}
fn default_scylla_retries() -> u32 {
    3
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
