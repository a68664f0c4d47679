//! Typed configuration: parsing, `${VAR:-default}` interpolation and validation.
//!
//! Owns: [`Config`] and its sections. Every struct denies unknown fields so a typo is an
//! error, not a silently ignored setting. [`Config::validate`] reports every problem at once.
//! Channels (`channels.rs`) are one [`PlatformConfig`] variant per platform; the platform
//! sections themselves live with their platforms (`platforms::<name>::config`) and are
//! re-exported here.
//!
//! May depend on: `domain` (for ids and the ATP rule), `platforms::<name>::config`.

mod channels;
mod interpolate;

pub use crate::platforms::amazon::config::{AmazonConfig, AmazonListingConfig};
pub use crate::platforms::bolcom::config::{BolcomConfig, BolcomListingConfig};
pub use crate::platforms::shopify::config::{ShopifyConfig, ShopifyListingConfig};
pub use crate::platforms::woocommerce::config::{WoocommerceConfig, WoocommerceListingConfig};
pub use channels::{
    ChannelConfig, ChannelKind, PlatformConfig, PreorderConfig, RateLimitConfig, RetryConfig,
};
pub use interpolate::interpolate;

use crate::domain::LocationId;
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
    /// The push and config audit logs.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Periodic and real-time reconciliation of channels against the ledger.
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// The outbound alert webhook.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Routing and backorder rules.
    #[serde(default)]
    pub stock: StockConfig,
    /// Per-SKU overrides of channel rules (safety stock).
    #[serde(default)]
    pub sku_rules: Vec<SkuRuleConfig>,
    /// Bundles and kits with their bills of materials.
    #[serde(default)]
    pub bundles: Vec<BundleConfig>,
}

/// `[[bundles]]`: a SKU made of components (which may be bundles themselves).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// The bundle's SKU.
    pub sku: String,
    /// Its direct components.
    pub components: Vec<BundleComponentConfig>,
}

/// One component line of a bundle.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleComponentConfig {
    /// The component SKU (a plain SKU or another bundle).
    pub sku: String,
    /// Units of it per bundle, in base units (pieces, not packs).
    pub quantity: u64,
}

/// `[stock]`: how holds are routed and where backorders are allowed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StockConfig {
    /// `priority` (first location in the channel's order with enough available; default)
    /// or `most_stock` (the location with the most available).
    #[serde(default)]
    pub routing: crate::domain::RoutingPolicy,
    /// Per SKU × location backorder rules; they win over `locations[].allow_backorder`.
    #[serde(default)]
    pub backorders: Vec<BackorderRuleConfig>,
    /// A line that no single location can serve may be split across at most this many
    /// locations (default 1: never split).
    #[serde(default = "default_max_split_locations")]
    pub max_split_locations: usize,
    /// Multi-line reservations first try one location that has every line (fewer
    /// shipments); otherwise each line is routed on its own.
    #[serde(default)]
    pub prefer_single_location: bool,
}

fn default_max_split_locations() -> usize {
    1
}

impl Default for StockConfig {
    fn default() -> Self {
        Self {
            routing: crate::domain::RoutingPolicy::default(),
            backorders: Vec::new(),
            max_split_locations: default_max_split_locations(),
            prefer_single_location: false,
        }
    }
}

/// `[[stock.backorders]]`: whether holds of `sku` may take `location` below zero.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackorderRuleConfig {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: LocationId,
    /// `true`: a backorder debt is allowed; `false`: forbidden even if the location allows it.
    pub allow: bool,
}

/// `[[sku_rules]]`: a per-SKU override.
///
/// Safety-stock precedence (highest first): a rule naming this SKU and this channel, a rule
/// naming this SKU with no channel, then the channel's own `safety_stock`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SkuRuleConfig {
    /// The SKU.
    pub sku: String,
    /// The channel it applies to; absent means every channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// Units held back from the channel(s) for this SKU.
    pub safety_stock: u64,
}

/// `[audit]`: the push audit log (every push with the channel's answer).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Push answers older than this are deleted, in seconds (default 30 days).
    #[serde(default = "default_push_log_retention_secs")]
    pub push_log_retention_secs: u64,
    /// Push answers are written in one batch at least this often, in milliseconds.
    #[serde(default = "default_push_log_flush_ms")]
    pub push_log_flush_ms: u64,
    /// Push answers waiting for their batch before new ones are dropped (and counted).
    #[serde(default = "default_push_log_queue")]
    pub push_log_queue: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            push_log_retention_secs: default_push_log_retention_secs(),
            push_log_flush_ms: default_push_log_flush_ms(),
            push_log_queue: default_push_log_queue(),
        }
    }
}

fn default_push_log_retention_secs() -> u64 {
    30 * 24 * 3600
}
fn default_push_log_flush_ms() -> u64 {
    1_000
}
fn default_push_log_queue() -> usize {
    65_536
}

/// `[reconcile]`: compare what channels report with what we pushed and the ledger's ATP.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Run the periodic and real-time reconciliation at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Period of the full read-back of every channel, in milliseconds (default 5 minutes).
    #[serde(default = "default_reconcile_interval_ms")]
    pub interval_ms: u64,
    /// Re-push the ledger's ATP (with compare-and-set on the channel's value) when a
    /// discrepancy is found.
    #[serde(default)]
    pub heal: bool,
    /// A reported value equal to one we pushed this recently (or in flight) is our own
    /// echo, in milliseconds.
    #[serde(default = "default_echo_window_ms")]
    pub echo_window_ms: u64,
    /// A difference while the ledger changed this recently is "in flight", in milliseconds.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// Most listings read from a channel per request.
    #[serde(default = "default_reconcile_read_batch")]
    pub read_batch: usize,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: default_reconcile_interval_ms(),
            heal: false,
            echo_window_ms: default_echo_window_ms(),
            settle_ms: default_settle_ms(),
            read_batch: default_reconcile_read_batch(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_reconcile_interval_ms() -> u64 {
    300_000
}
fn default_echo_window_ms() -> u64 {
    60_000
}
fn default_settle_ms() -> u64 {
    5_000
}
fn default_reconcile_read_batch() -> usize {
    100
}

/// `[alerts]`: the outbound alert webhook (Slack-compatible JSON) and its thresholds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where alerts are POSTed; absent disables the webhook (alerts are still logged).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The same (kind, channel, SKU) alert is sent at most once per this many seconds.
    #[serde(default = "default_dedupe_window_secs")]
    pub dedupe_window_secs: u64,
    /// Most alerts sent per minute in total; the rest are counted and dropped.
    #[serde(default = "default_max_alerts_per_minute")]
    pub max_per_minute: u32,
    /// How often health is checked, in milliseconds.
    #[serde(default = "default_alert_check_interval_ms")]
    pub check_interval_ms: u64,
    /// A channel is down after this many request failures in a row.
    #[serde(default = "default_channel_down_failures")]
    pub channel_down_failures: u32,
    /// A channel is down when nothing was acknowledged for this long while work is
    /// pending, in seconds.
    #[serde(default = "default_channel_down_secs")]
    pub channel_down_secs: u64,
    /// Webhooks of a channel are "quiet" after this long without a delivery, in seconds;
    /// absent disables the check (set it for shops that take orders all day).
    #[serde(default)]
    pub webhook_quiet_secs: Option<u64>,
    /// Queue lag alert: listings waiting in one channel's queue.
    #[serde(default = "default_queue_depth_threshold")]
    pub queue_depth_threshold: usize,
    /// Alert on every dead-lettered Kafka message (deduplicated by reason).
    #[serde(default = "default_true")]
    pub dead_letters: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            dedupe_window_secs: default_dedupe_window_secs(),
            max_per_minute: default_max_alerts_per_minute(),
            check_interval_ms: default_alert_check_interval_ms(),
            channel_down_failures: default_channel_down_failures(),
            channel_down_secs: default_channel_down_secs(),
            webhook_quiet_secs: None,
            queue_depth_threshold: default_queue_depth_threshold(),
            dead_letters: true,
        }
    }
}

fn default_dedupe_window_secs() -> u64 {
    600
}
fn default_max_alerts_per_minute() -> u32 {
    30
}
fn default_alert_check_interval_ms() -> u64 {
    10_000
}
fn default_channel_down_failures() -> u32 {
    5
}
fn default_channel_down_secs() -> u64 {
    300
}
fn default_queue_depth_threshold() -> usize {
    10_000
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
    16_384
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
    /// Whether holds may take this location below zero (a backorder debt that never cancels
    /// stock held elsewhere). Default: forbidden.
    #[serde(default)]
    pub allow_backorder: bool,
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
        if self.audit.push_log_flush_ms == 0 || self.audit.push_log_queue == 0 {
            problems
                .push("audit.push_log_flush_ms and push_log_queue must be at least 1".to_owned());
        }
        if self.reconcile.interval_ms < 100 {
            problems.push("reconcile.interval_ms must be at least 100".to_owned());
        }
        if self.reconcile.read_batch == 0 {
            problems.push("reconcile.read_batch must be at least 1".to_owned());
        }
        if let Some(url) = &self.alerts.webhook_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            problems.push("alerts.webhook_url must start with http:// or https://".to_owned());
        }
        if self.alerts.check_interval_ms < 10 {
            problems.push("alerts.check_interval_ms must be at least 10".to_owned());
        }
        if self.alerts.channel_down_failures == 0 || self.alerts.max_per_minute == 0 {
            problems.push(
                "alerts.channel_down_failures and alerts.max_per_minute must be at least 1"
                    .to_owned(),
            );
        }
        let mut channel_ids = HashSet::new();
        for channel in &self.channels {
            let id = &channel.id;
            if !channel_ids.insert(id.clone()) {
                problems.push(format!("channel {id} is defined twice"));
            }
            channels::validate_channel(channel, &location_ids, self.kafka.is_some(), &mut problems);
        }
        let shares: u64 = self
            .channels
            .iter()
            .filter_map(|channel| match channel.allocation {
                crate::domain::Allocation::Share { percent } => Some(u64::from(percent)),
                _ => None,
            })
            .sum();
        if shares > 100 {
            problems.push(format!(
                "channel allocation shares add up to {shares} %, more than 100 %"
            ));
        }
        for channel in &self.channels {
            if let crate::domain::Allocation::Share { percent } = channel.allocation
                && percent > 100
            {
                problems.push(format!(
                    "channel {}: share percent {percent} is over 100",
                    channel.id
                ));
            }
        }
        for rule in &self.sku_rules {
            if let Some(channel) = &rule.channel
                && self.channel(channel).is_none()
            {
                problems.push(format!(
                    "sku_rules for {} names unknown channel {channel}",
                    rule.sku
                ));
            }
        }
        if self.stock.max_split_locations == 0 {
            problems.push("stock.max_split_locations must be at least 1".to_owned());
        }
        if let Err(mut bom_problems) = self.bill_of_materials() {
            problems.append(&mut bom_problems);
        }
        for rule in &self.stock.backorders {
            if !location_ids.contains(&rule.location) {
                problems.push(format!(
                    "stock.backorders for {} names unknown location {}",
                    rule.sku, rule.location
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Backorder and routing rules for the ledger.
    pub fn stock_policy(&self) -> crate::domain::StockPolicy {
        let mut policy = crate::domain::StockPolicy {
            routing: self.stock.routing,
            max_split_locations: self.stock.max_split_locations,
            // Past the key TTL a redelivered line could not be recognised by its key either.
            closed_line_retention_ms: i64::try_from(
                self.ledger.idempotency_ttl_secs.saturating_mul(1000),
            )
            .unwrap_or(i64::MAX),
            prefer_single_location: self.stock.prefer_single_location,
            backorder_locations: self
                .locations
                .iter()
                .filter(|location| location.allow_backorder)
                .map(|location| location.id.clone())
                .collect(),
            ..Default::default()
        };
        for rule in &self.stock.backorders {
            let set = policy
                .backorders_by_sku
                .entry(rule.sku.as_str().into())
                .or_insert_with(|| policy.backorder_locations.clone());
            if rule.allow {
                set.insert(rule.location.clone());
            } else {
                set.remove(&rule.location);
            }
        }
        policy
    }

    /// The bills of materials, flattened; errors list every problem (cycles, zero
    /// quantities, a bundle defined twice).
    pub fn bill_of_materials(&self) -> Result<crate::domain::BillOfMaterials, Vec<String>> {
        let mut direct = std::collections::BTreeMap::new();
        let mut problems = Vec::new();
        for bundle in &self.bundles {
            let components = bundle
                .components
                .iter()
                .map(|c| crate::domain::Component {
                    sku: c.sku.as_str().into(),
                    quantity: c.quantity,
                })
                .collect();
            if direct
                .insert(bundle.sku.as_str().into(), components)
                .is_some()
            {
                problems.push(format!("bundle {} is defined twice", bundle.sku));
            }
        }
        match crate::domain::BillOfMaterials::new(&direct) {
            Ok(bom) if problems.is_empty() => Ok(bom),
            Ok(_) => Err(problems),
            Err(mut more) => {
                problems.append(&mut more);
                Err(problems)
            }
        }
    }

    /// The stock rules this config describes (allocation, backorders and routing, bills of
    /// materials). Errors: the bill of materials is inconsistent (see [`Config::validate`]).
    pub fn rules(&self) -> Result<crate::domain::Rules, ConfigError> {
        Ok(crate::domain::Rules {
            allocation: self.allocation_policy(),
            stock: self.stock_policy(),
            bom: self.bill_of_materials().map_err(ConfigError::Invalid)?,
        })
    }

    /// Every channel's ATP rule plus the per-SKU safety-stock overrides.
    pub fn allocation_policy(&self) -> crate::domain::AllocationPolicy {
        crate::domain::AllocationPolicy {
            channels: self
                .channels
                .iter()
                .map(ChannelConfig::stock_rule)
                .collect(),
            safety_overrides: self
                .sku_rules
                .iter()
                .map(|rule| ((rule.sku.clone(), rule.channel.clone()), rule.safety_stock))
                .collect(),
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
    fn reconcile_and_alert_sections_have_defaults_and_are_validated() {
        let config = Config::from_toml("").unwrap();
        assert!(config.reconcile.enabled && !config.reconcile.heal);
        assert_eq!(config.alerts.webhook_url, None);
        config.validate().unwrap();
        let bad = Config::from_toml(
            "[reconcile]\ninterval_ms = 5\n[alerts]\nwebhook_url = \"ftp://x\"\n",
        )
        .unwrap();
        let Err(ConfigError::Invalid(problems)) = bad.validate() else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 2, "{problems:#?}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = Config::from_toml("[store]\npaht = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("paht"), "{error}");
    }
}
