//! Typed configuration: parsing, `${VAR:-default}` interpolation and validation.
//!
//! Owns: [`Config`] (the whole file), [`ConfigError`], loading ([`Config::load`],
//! [`Config::from_toml`]) and the re-exports that keep every `crate::config::X` path short.
//! Every struct denies unknown fields so a typo is an error, not a silently ignored setting.
//! Each section lives in its own file, with its `default_*` functions beside it:
//!
//! - `store.rs`: `[store]` and `[ledger]`;
//! - `http.rs`: `[http]`;
//! - `kafka.rs`: `[kafka]`;
//! - `channels.rs`: `[[channels]]`, one [`PlatformConfig`] variant per platform; the platform
//!   sections themselves live with their platforms (`platforms::<name>::config`) and are
//!   re-exported through `channels` (the registry) and from here;
//! - `stock.rs`: `[[locations]]`, `[stock]`, `[[sku_rules]]`, `[[bundles]]` and the ledger
//!   rules derived from them;
//! - `operations.rs`: `[audit]`, `[reconcile]` and `[alerts]`;
//! - `validate.rs`: [`Config::validate`], one check per section, every problem reported at once;
//! - `interpolate.rs`: `${VAR}` interpolation of the raw text.
//!
//! May depend on: `domain` (for ids and the ATP rule), `platforms::<name>::config`.

mod channels;
mod cluster;
mod http;
mod interpolate;
mod kafka;
mod operations;
mod stock;
mod store;
mod validate;

// The channel types and every platform's section (re-exported by `channels`, the registry),
// so this file names no platform.
pub use channels::*;
pub use cluster::{ClusterConfig, MAX_CLUSTER_PARTITIONS};
pub use http::{
    AuthConfig, HttpConfig, MAX_MOVEMENTS_PER_REQUEST, MAX_TOKENS, Scope, TokenConfig,
    parse_sha256_hex as http_hash,
};
pub use interpolate::interpolate;
pub use kafka::KafkaConfig;
pub use operations::{AlertsConfig, AuditConfig, ReconcileConfig};
pub use stock::{
    BackorderRuleConfig, BundleComponentConfig, BundleConfig, LocationConfig, SkuRuleConfig,
    StockConfig,
};
pub use store::{
    LedgerConfig, MAX_LEDGER_SHARDS, PostgresStoreConfig, ScyllaConsistency, ScyllaReplication,
    ScyllaStoreConfig, StoreBackend, StoreConfig, default_metric_sources, keyspace_problem,
};

use serde::{Deserialize, Serialize};
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
    /// Several instances on one shared store; absent means this instance claims the store.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
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
        Self::from_toml_with(raw, |name| std::env::var(name).ok())
    }

    /// [`Config::from_toml`] with `lookup` for `${VAR}`. A parse error carries the
    /// message (with substituted values replaced by `<redacted>`), the line and column in
    /// `raw`, and the raw (un-interpolated) line: never the interpolated text.
    fn from_toml_with(
        raw: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let interpolated =
            interpolate::interpolate_mapped(raw, lookup).map_err(ConfigError::Interpolation)?;
        toml::from_str(&interpolated.text).map_err(|error| {
            let message = interpolated.scrub(error.message().trim_end());
            let Some(span) = error.span() else {
                return ConfigError::Parse(message);
            };
            let offset = interpolated.raw_offset(span.start).min(raw.len());
            let offset = (0..=offset)
                .rev()
                .find(|at| raw.is_char_boundary(*at))
                .unwrap_or(0);
            let line_start = raw[..offset].rfind('\n').map_or(0, |at| at + 1);
            let line_end = raw[offset..].find('\n').map_or(raw.len(), |at| offset + at);
            let line = raw[..offset].matches('\n').count() + 1;
            let column = raw[line_start..offset].chars().count() + 1;
            ConfigError::Parse(format!(
                "line {line}, column {column}: {message}\n  | {}",
                raw[line_start..line_end].trim_end_matches('\r')
            ))
        })
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
    fn a_parse_error_never_shows_a_substituted_value() {
        let raw = "[store]\nbackend = \"postgres\"\n\n[store.postgres]\nurl = ${URL}\npassword = \"${PW}\"\n";
        for (url, pw) in [
            ("\"host=h\"", "Sup3r\"Secret"),
            ("\"host=h\" Sup3rSecret", "x"),
            ("42", "y"),
        ] {
            let lookup = |name: &str| match name {
                "URL" => Some(url.to_owned()),
                "PW" => Some(pw.to_owned()),
                _ => None,
            };
            match Config::from_toml_with(raw, lookup) {
                Err(ConfigError::Parse(message)) => {
                    assert!(!message.contains("Secret"), "{message}");
                    assert!(!message.contains("42"), "{message}");
                    assert!(message.contains("line 5"), "{message}");
                    assert!(message.contains("url = ${URL}"), "{message}");
                }
                Ok(config) if pw.contains('"') => {
                    // The quote is escaped inside the basic string: it parses.
                    let pg = config.store.postgres;
                    assert_eq!(pg.password.as_deref(), Some(pw));
                    assert_eq!(pg.url, "host=h");
                }
                other => panic!("{url} / {pw}: {other:?}"),
            }
        }
    }
}
