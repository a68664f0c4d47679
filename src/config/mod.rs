//! Typed configuration: parsing, `${VAR:-default}` interpolation and validation.
//!
//! Owns: [`Config`] and its sections. Every struct denies unknown fields so a typo is an
//! error, not a silently ignored setting. [`Config::validate`] reports every problem at once.
//!
//! May depend on: `domain` (for ids and the ATP rule).

mod interpolate;

pub use interpolate::interpolate;

use crate::domain::{ChannelStockRule, LocationId};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Problems found while loading or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `${VAR}` named a variable that is unset and has no default.
    #[error("config interpolation failed: {0}")]
    Interpolation(String),
    /// The TOML did not match the schema.
    #[error("config is not valid TOML for stocksync: {0}")]
    Parse(String),
    /// The config parsed but is inconsistent; every problem is listed.
    #[error("config has {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where movements and snapshots are stored.
    #[serde(default)]
    pub store: StoreConfig,
    /// SKU actor behaviour.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// The HTTP API, webhooks, dashboard and `/metrics`.
    #[serde(default)]
    pub http: HttpConfig,
    /// The Kafka movements consumer; absent means no Kafka.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// Locations that hold stock.
    #[serde(default)]
    pub locations: Vec<LocationConfig>,
    /// Channels that sell stock.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
}

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
    4096
}
fn default_snapshot_every_events() -> u64 {
    500
}

/// `[ledger]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// A SKU actor idle this long is snapshotted and stopped (passivated).
    #[serde(default = "default_idle_passivate_secs")]
    pub idle_passivate_secs: u64,
    /// How long an idempotency key is remembered (Shopify retries for 4 h; default 7 days).
    #[serde(default = "default_idempotency_ttl_secs")]
    pub idempotency_ttl_secs: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            idle_passivate_secs: default_idle_passivate_secs(),
            idempotency_ttl_secs: default_idempotency_ttl_secs(),
        }
    }
}

fn default_idle_passivate_secs() -> u64 {
    120
}
fn default_idempotency_ttl_secs() -> u64 {
    7 * 24 * 3600
}

/// `[http]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (`127.0.0.1:8080`; port 0 picks a free one).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_body_limit_bytes")]
    pub body_limit_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit_bytes: default_body_limit_bytes(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_body_limit_bytes() -> usize {
    4 * 1024 * 1024
}

/// `[kafka]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated (`127.0.0.1:9092`).
    pub brokers: String,
    /// Consumer group id; instances sharing it split the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topic carrying movements, keyed by SKU.
    #[serde(default = "default_movements_topic")]
    pub movements_topic: String,
    /// Topic receiving messages that cannot be decoded, with the reason in headers.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Topic receiving each channel's new ATP, keyed by SKU; absent disables it.
    #[serde(default)]
    pub atp_topic: Option<String>,
    /// Most messages taken from the consumer before waiting for their durability.
    #[serde(default = "default_kafka_batch_max")]
    pub batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[serde(default = "default_kafka_batch_wait_ms")]
    pub batch_wait_ms: u64,
}

fn default_group_id() -> String {
    "stocksync".to_owned()
}
fn default_movements_topic() -> String {
    "stock.movements".to_owned()
}
fn default_dead_letter_topic() -> String {
    "stock.movements.dlq".to_owned()
}
fn default_kafka_batch_max() -> usize {
    1000
}
fn default_kafka_batch_wait_ms() -> u64 {
    5
}

/// `[[locations]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocationConfig {
    /// Location id used in movements (`WH-1`).
    pub id: LocationId,
    /// Human name for the dashboard.
    #[serde(default)]
    pub name: String,
}

/// The platform behind a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Shopify Admin API (GraphQL `inventorySetQuantities`).
    Shopify,
}

/// `[[channels]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Channel id (`shopify-main`); a bounded metric label.
    pub id: String,
    /// The platform.
    pub kind: ChannelKind,
    /// Locations that feed this channel, in routing priority order.
    pub locations: Vec<LocationId>,
    /// Units held back from this channel's ATP.
    #[serde(default)]
    pub safety_stock: u64,
    /// The most this channel may list, if capped.
    #[serde(default)]
    pub max_listed_quantity: Option<u64>,
    /// Outbound pacing.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Retry policy for failed pushes.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Shopify settings; required when `kind = "shopify"`.
    #[serde(default)]
    pub shopify: Option<ShopifyConfig>,
}

impl ChannelConfig {
    /// The ATP rule this channel applies.
    pub fn stock_rule(&self) -> ChannelStockRule {
        ChannelStockRule {
            locations: self.locations.clone(),
            safety_stock: self.safety_stock,
            max_listed_quantity: self.max_listed_quantity,
        }
    }
}

/// `[channels.rate_limit]`: a token bucket; the platform's own signals can lower it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second sustained.
    #[serde(default = "default_requests_per_sec")]
    pub requests_per_sec: f64,
    /// Requests allowed in a burst.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_sec: default_requests_per_sec(),
            burst: default_burst(),
        }
    }
}

fn default_requests_per_sec() -> f64 {
    2.0
}
fn default_burst() -> u32 {
    4
}

/// `[channels.retry]`: exponential backoff with full jitter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff, in milliseconds.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest backoff, in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

/// `[channels.shopify]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    /// Shop base URL (`https://example.myshopify.com`, or the simulator's `http://127.0.0.1:PORT`).
    pub shop_url: String,
    /// Admin API version in the URL (`2026-04`).
    #[serde(default = "default_shopify_api_version")]
    pub api_version: String,
    /// Admin API access token (sent as `X-Shopify-Access-Token`).
    pub access_token: String,
    /// App client secret that signs webhooks (HMAC-SHA256 of the raw body).
    pub webhook_secret: String,
    /// Shopify location id (number) the channel's ATP is written to.
    pub location_id: u64,
    /// Use REST `inventory_levels/set.json` instead of GraphQL (legacy fallback).
    #[serde(default)]
    pub use_rest: bool,
    /// SKU → inventory item mappings written inline.
    #[serde(default)]
    pub listings: Vec<ShopifyListingConfig>,
    /// A CSV file with header `sku,inventory_item_id` holding more mappings.
    #[serde(default)]
    pub listings_csv: Option<PathBuf>,
}

fn default_shopify_api_version() -> String {
    "2026-04".to_owned()
}

/// One SKU → Shopify inventory item mapping.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyListingConfig {
    /// Our SKU.
    pub sku: String,
    /// Shopify InventoryItem id (number).
    pub inventory_item_id: u64,
}

impl Config {
    /// Reads, interpolates, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_toml(&raw)?;
        config.validate()?;
        Ok(config)
    }

    /// Interpolates and parses TOML text without validating it.
    pub fn from_toml(raw: &str) -> Result<Self, ConfigError> {
        let text = interpolate(raw, |name| std::env::var(name).ok())
            .map_err(ConfigError::Interpolation)?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse(error.to_string()))
    }

    /// Checks cross-field rules and reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut location_ids = HashSet::new();
        for location in &self.locations {
            if location.id.as_str().trim().is_empty() {
                problems.push("a location has an empty id".to_owned());
            }
            if !location_ids.insert(location.id.clone()) {
                problems.push(format!("location {} is defined twice", location.id));
            }
        }
        if self.store.group_commit_max_batch == 0 {
            problems.push("store.group_commit_max_batch must be at least 1".to_owned());
        }
        if self.store.snapshot_every_events == 0 {
            problems.push("store.snapshot_every_events must be at least 1".to_owned());
        }
        if self.store.backend == StoreBackend::Scylla && self.store.scylla_nodes.is_empty() {
            problems.push("store.backend = \"scylla\" needs store.scylla_nodes".to_owned());
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "http.listen {:?} is not host:port",
                self.http.listen
            ));
        }
        if let Some(kafka) = &self.kafka {
            if kafka.brokers.trim().is_empty() {
                problems.push("kafka.brokers must not be empty".to_owned());
            }
            if kafka.batch_max == 0 {
                problems.push("kafka.batch_max must be at least 1".to_owned());
            }
            if kafka.movements_topic == kafka.dead_letter_topic {
                problems
                    .push("kafka.dead_letter_topic must differ from movements_topic".to_owned());
            }
        }
        let mut channel_ids = HashSet::new();
        for channel in &self.channels {
            let id = &channel.id;
            if !channel_ids.insert(id.clone()) {
                problems.push(format!("channel {id} is defined twice"));
            }
            if channel.locations.is_empty() {
                problems.push(format!("channel {id} has no locations feeding it"));
            }
            for location in &channel.locations {
                if !location_ids.contains(location) {
                    problems.push(format!("channel {id} names unknown location {location}"));
                }
            }
            if channel.rate_limit.requests_per_sec.is_nan()
                || channel.rate_limit.requests_per_sec <= 0.0
            {
                problems.push(format!(
                    "channel {id}: rate_limit.requests_per_sec must be > 0"
                ));
            }
            if channel.rate_limit.burst == 0 {
                problems.push(format!("channel {id}: rate_limit.burst must be at least 1"));
            }
            if channel.retry.initial_backoff_ms == 0
                || channel.retry.max_backoff_ms < channel.retry.initial_backoff_ms
            {
                problems.push(format!(
                    "channel {id}: retry needs 0 < initial_backoff_ms <= max_backoff_ms"
                ));
            }
            match (channel.kind, &channel.shopify) {
                (ChannelKind::Shopify, None) => problems.push(format!(
                    "channel {id} is kind shopify but has no [shopify] section"
                )),
                (ChannelKind::Shopify, Some(shopify)) => {
                    if !shopify.shop_url.starts_with("http://")
                        && !shopify.shop_url.starts_with("https://")
                    {
                        problems.push(format!(
                            "channel {id}: shopify.shop_url must start with http:// or https://"
                        ));
                    }
                    if shopify.webhook_secret.is_empty() {
                        problems.push(format!(
                            "channel {id}: shopify.webhook_secret must not be empty"
                        ));
                    }
                    let mut skus = HashSet::new();
                    for listing in &shopify.listings {
                        if !skus.insert(listing.sku.clone()) {
                            problems
                                .push(format!("channel {id}: SKU {} is mapped twice", listing.sku));
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The channel with this id.
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|channel| channel.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_config_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen > 0, "no config files found in {}", dir.display());
    }

    #[test]
    fn validation_reports_all_problems_at_once() {
        let config = Config::from_toml(
            r#"
            [http]
            listen = "nowhere"
            [[locations]]
            id = "WH-1"
            [[locations]]
            id = "WH-1"
            [[channels]]
            id = "c1"
            kind = "shopify"
            locations = ["WH-9"]
            "#,
        )
        .unwrap();
        let Err(ConfigError::Invalid(problems)) = config.validate() else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = Config::from_toml("[store]\npaht = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("paht"), "{error}");
    }
}
