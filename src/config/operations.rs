//! `[audit]`, `[reconcile]` and `[alerts]`: how the running service is watched.
//!
//! Owns: the push audit log's retention and batching, the reconciliation schedule, and the
//! alert webhook with its thresholds.
//!
//! May depend on: nothing but serde.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};

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
}
