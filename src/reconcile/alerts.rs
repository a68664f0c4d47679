//! Outbound alerts: a Slack-compatible JSON webhook, deduplicated per (kind, channel, SKU)
//! and rate-limited, plus the health monitor that raises alerts for a channel that is down,
//! webhooks gone quiet, queue lag and dead letters.
//!
//! The JSON body: `{"text": "...", "attachments": [{"color", "title", "text", "fields":
//! [{"title","value","short"}]}], "kind", "severity", "channel", "sku", "details": {...}}`:
//! Slack (and compatible receivers) render `text`/`attachments`; machines read the rest.
//!
//! [`Alerter::raise`] never blocks: alerts go through a bounded queue to one sender task.
//! Dedupe and rate windows use tokio's clock; the health monitor reads wall time from the
//! [`SharedClock`] it is given.

use crate::clock::SharedClock;
use crate::config::AlertsConfig;
use crate::propagation::Propagation;
use crate::telemetry;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Alerts waiting for the sender before new ones are dropped.
const ALERT_QUEUE: usize = 256;

/// Dedupe entries kept before the oldest are forgotten.
const MAX_DEDUPE_ENTRIES: usize = 10_000;

/// What an alert is about; the `kind` field and metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A channel disagrees with the ledger.
    Discrepancy,
    /// A channel fails every request, or acknowledged nothing for too long.
    ChannelDown,
    /// No webhook delivery from a channel for too long.
    WebhooksQuiet,
    /// A channel's queue is over the threshold.
    QueueLag,
    /// Kafka messages went to the dead-letter topic.
    DeadLetter,
}

impl AlertKind {
    /// The bounded label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Discrepancy => "discrepancy",
            Self::ChannelDown => "channel_down",
            Self::WebhooksQuiet => "webhooks_quiet",
            Self::QueueLag => "queue_lag",
            Self::DeadLetter => "dead_letter",
        }
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs a look.
    Warning,
    /// Needs action now.
    Critical,
}

impl Severity {
    fn color(self) -> &'static str {
        match self {
            Self::Info => "#439FE0",
            Self::Warning => "warning",
            Self::Critical => "danger",
        }
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// How urgent.
    pub severity: Severity,
    /// The channel concerned, if any.
    pub channel: Option<String>,
    /// The SKU concerned, if any.
    pub sku: Option<String>,
    /// One human line.
    pub text: String,
    /// Machine-readable facts (shown as attachment fields too).
    pub details: serde_json::Value,
}

impl Alert {
    /// The Slack-compatible body (see the module docs).
    pub fn to_json(&self) -> serde_json::Value {
        let fields: Vec<serde_json::Value> = self
            .details
            .as_object()
            .map(|object| {
                object
                    .iter()
                    .map(|(key, value)| {
                        serde_json::json!({
                            "title": key,
                            "value": match value {
                                serde_json::Value::String(text) => text.clone(),
                                other => other.to_string(),
                            },
                            "short": true
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "text": format!("[stocksync] {}", self.text),
            "attachments": [{
                "color": self.severity.color(),
                "title": self.kind.label(),
                "text": self.text,
                "fields": fields,
            }],
            "kind": self.kind,
            "severity": self.severity,
            "channel": self.channel,
            "sku": self.sku,
            "details": self.details,
        })
    }
}

type DedupeKey = (AlertKind, Option<String>, Option<String>);

struct Limits {
    last_sent: HashMap<DedupeKey, Instant>,
    order: VecDeque<DedupeKey>,
    sent_in_minute: VecDeque<Instant>,
}

/// Raises alerts: logs each, deduplicates per (kind, channel, SKU) within the window, caps
/// the rate, and POSTs to `alerts.webhook_url` when set. Cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    config: Arc<AlertsConfig>,
    limits: Arc<Mutex<Limits>>,
    queue: Option<mpsc::Sender<Alert>>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter")
            .field("webhook_url", &self.config.webhook_url)
            .finish()
    }
}

fn count(kind: AlertKind, outcome: &'static str) {
    metrics::counter!(telemetry::ALERTS_TOTAL, "kind" => kind.label(), "outcome" => outcome)
        .increment(1);
}

impl Alerter {
    /// Starts the sender task (when a webhook URL is configured) and returns the alerter
    /// with the task's handle.
    pub fn start(config: &AlertsConfig, client: reqwest::Client) -> (Self, Option<JoinHandle<()>>) {
        let limits = Arc::new(Mutex::new(Limits {
            last_sent: HashMap::new(),
            order: VecDeque::new(),
            sent_in_minute: VecDeque::new(),
        }));
        let Some(url) = config.webhook_url.clone() else {
            let alerter = Self {
                config: Arc::new(config.clone()),
                limits,
                queue: None,
            };
            return (alerter, None);
        };
        let (sender, mut receiver) = mpsc::channel::<Alert>(ALERT_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(alert) = receiver.recv().await {
                let body = alert.to_json();
                let mut delivered = false;
                for attempt in 0..3u64 {
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status().is_success() => {
                            delivered = true;
                            break;
                        }
                        Ok(response) => {
                            tracing::warn!(status = %response.status(), kind = alert.kind.label(), "alert webhook refused the alert");
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, kind = alert.kind.label(), "alert webhook unreachable");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
                count(alert.kind, if delivered { "sent" } else { "failed" });
            }
        });
        let alerter = Self {
            config: Arc::new(config.clone()),
            limits,
            queue: Some(sender),
        };
        (alerter, Some(task))
    }

    /// An alerter whose sent alerts land in the returned receiver instead of a webhook
    /// (tests; dedupe and rate limits apply as usual).
    #[cfg(test)]
    pub(crate) fn capturing(config: &AlertsConfig) -> (Self, mpsc::Receiver<Alert>) {
        let (sender, receiver) = mpsc::channel::<Alert>(ALERT_QUEUE);
        let alerter = Self {
            config: Arc::new(config.clone()),
            limits: Arc::new(Mutex::new(Limits {
                last_sent: HashMap::new(),
                order: VecDeque::new(),
                sent_in_minute: VecDeque::new(),
            })),
            queue: Some(sender),
        };
        (alerter, receiver)
    }

    /// Raises `alert`: logged always; sent unless the same (kind, channel, SKU) was sent
    /// within `dedupe_window_secs` or more than `max_per_minute` alerts went out in the last
    /// minute. Returns true when it was queued for sending (or logged, without a webhook).
    pub fn raise(&self, alert: Alert) -> bool {
        tracing::warn!(kind = alert.kind.label(), severity = ?alert.severity, channel = ?alert.channel, sku = ?alert.sku, "{}", alert.text);
        let now = Instant::now();
        let key: DedupeKey = (alert.kind, alert.channel.clone(), alert.sku.clone());
        {
            let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
            let window = Duration::from_secs(self.config.dedupe_window_secs);
            if limits
                .last_sent
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < window)
            {
                count(alert.kind, "deduplicated");
                return false;
            }
            while limits
                .sent_in_minute
                .front()
                .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
            {
                limits.sent_in_minute.pop_front();
            }
            if limits.sent_in_minute.len() >= self.config.max_per_minute as usize {
                count(alert.kind, "rate_limited");
                return false;
            }
            limits.sent_in_minute.push_back(now);
            if limits.last_sent.insert(key.clone(), now).is_none() {
                limits.order.push_back(key);
            }
            while limits.order.len() > MAX_DEDUPE_ENTRIES {
                if let Some(oldest) = limits.order.pop_front() {
                    limits.last_sent.remove(&oldest);
                }
            }
        }
        match &self.queue {
            Some(queue) => {
                if queue.try_send(alert.clone()).is_err() {
                    count(alert.kind, "dropped");
                    return false;
                }
                true
            }
            None => {
                count(alert.kind, "logged");
                true
            }
        }
    }
}

/// When a channel's webhooks were last delivered, as the web layer tracks it (the app
/// adapts it, so this module does not import `web`).
pub trait WebhookActivity: Send + Sync + 'static {
    /// The last verified delivery from `channel`, in milliseconds since the Unix epoch.
    fn last_webhook_at_ms(&self, channel: &str) -> Option<i64>;
}

/// Checks channel health every `alerts.check_interval_ms` and listens for dead letters on
/// `dead_letters` (the app's broadcast, fed by Kafka ingest); raises alerts through
/// `alerter`. Silence is measured on `clock` from now. Returns the monitor task.
pub fn start_monitor(
    config: &AlertsConfig,
    alerter: Alerter,
    propagation: Propagation,
    webhooks: Option<Arc<dyn WebhookActivity>>,
    dead_letter_notices: telemetry::DeadLetterBroadcast,
    clock: SharedClock,
) -> JoinHandle<()> {
    let config = config.clone();
    let started_ms = clock.now_ms();
    tokio::spawn(async move {
        let mut dead_letters = dead_letter_notices.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(config.check_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for alert in health_alerts(&config, &propagation, webhooks.as_deref(), started_ms, clock.now_ms()) {
                        alerter.raise(alert);
                    }
                }
                notice = dead_letters.recv() => match notice {
                    Ok(notice) if config.dead_letters => {
                        alerter.raise(Alert {
                            kind: AlertKind::DeadLetter,
                            severity: Severity::Warning,
                            channel: None,
                            sku: None,
                            text: format!("{} Kafka message(s) sent to the dead-letter topic ({})", notice.count, notice.reason),
                            details: serde_json::json!({"reason": notice.reason, "count": notice.count}),
                        });
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        dead_letters = dead_letter_notices.subscribe();
                    }
                },
            }
        }
    })
}

/// The health alerts due now (pure over the channel statuses; `now_ms` injected).
pub fn health_alerts(
    config: &AlertsConfig,
    propagation: &Propagation,
    webhooks: Option<&dyn WebhookActivity>,
    started_ms: i64,
    now_ms: i64,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let down_ms = i64::try_from(config.channel_down_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
    for status in propagation.channel_status() {
        let channel = status.channel.clone();
        let pending = status.queue_depth + status.in_flight;
        let silent_ms = now_ms - status.last_success_at_ms.unwrap_or(started_ms);
        if status.consecutive_failures >= config.channel_down_failures
            || (pending > 0 && silent_ms >= down_ms)
        {
            alerts.push(Alert {
                kind: AlertKind::ChannelDown,
                severity: Severity::Critical,
                channel: Some(channel.clone()),
                sku: None,
                text: format!(
                    "channel {channel} is down: {} failure(s) in a row, nothing acknowledged for {} s",
                    status.consecutive_failures,
                    silent_ms / 1_000
                ),
                details: serde_json::json!({
                    "consecutive_failures": status.consecutive_failures,
                    "last_success_at_ms": status.last_success_at_ms,
                    "last_error": status.last_error,
                    "queue_depth": status.queue_depth,
                }),
            });
        }
        if status.queue_depth >= config.queue_depth_threshold {
            alerts.push(Alert {
                kind: AlertKind::QueueLag,
                severity: Severity::Warning,
                channel: Some(channel.clone()),
                sku: None,
                text: format!(
                    "channel {channel} has {} listings waiting (threshold {})",
                    status.queue_depth, config.queue_depth_threshold
                ),
                details: serde_json::json!({
                    "queue_depth": status.queue_depth,
                    "threshold": config.queue_depth_threshold,
                }),
            });
        }
        if let (Some(quiet_secs), Some(webhooks)) = (config.webhook_quiet_secs, webhooks) {
            let last = webhooks.last_webhook_at_ms(&channel);
            let quiet_ms = now_ms - last.unwrap_or(started_ms);
            if quiet_ms >= i64::try_from(quiet_secs.saturating_mul(1_000)).unwrap_or(i64::MAX) {
                alerts.push(Alert {
                    kind: AlertKind::WebhooksQuiet,
                    severity: Severity::Warning,
                    channel: Some(channel.clone()),
                    sku: None,
                    text: format!(
                        "no webhook from channel {channel} for {} s",
                        quiet_ms / 1_000
                    ),
                    details: serde_json::json!({
                        "last_webhook_at_ms": last,
                        "quiet_secs": quiet_secs,
                    }),
                });
            }
        }
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(sku: &str) -> Alert {
        Alert {
            kind: AlertKind::Discrepancy,
            severity: Severity::Warning,
            channel: Some("kiosk-east".into()),
            sku: Some(sku.into()),
            text: "drift".into(),
            details: serde_json::json!({"channel_value": 4}),
        }
    }

    #[tokio::test]
    async fn alerts_are_deduplicated_per_key_and_rate_limited() {
        let config = AlertsConfig {
            dedupe_window_secs: 60,
            max_per_minute: 2,
            ..AlertsConfig::default()
        };
        let (alerter, task) = Alerter::start(&config, reqwest::Client::new());
        assert!(task.is_none());
        assert!(alerter.raise(alert("PLUM-1")));
        assert!(
            !alerter.raise(alert("PLUM-1")),
            "same key within the window"
        );
        assert!(alerter.raise(alert("PLUM-2")));
        assert!(!alerter.raise(alert("PLUM-3")), "over max_per_minute");
    }

    #[test]
    fn the_body_is_slack_compatible_with_machine_fields() {
        let body = alert("PLUM-1").to_json();
        assert!(body["text"].as_str().unwrap().contains("drift"));
        assert_eq!(
            body["attachments"][0]["fields"][0]["title"],
            "channel_value"
        );
        assert_eq!(body["kind"], "discrepancy");
        assert_eq!(body["severity"], "warning");
        assert_eq!(body["channel"], "kiosk-east");
        assert_eq!(body["sku"], "PLUM-1");
    }
}
