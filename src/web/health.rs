//! Operational health: `GET /readyz`, `GET /api/v1/channels`, and the bookkeeping behind
//! them (webhook freshness per channel, recent error and throttle rates).
//!
//! Owns: [`ChannelStatusView`] (what the app reports per channel through
//! [`super::ChannelView::channel_status`]), [`ChannelHealth`] (that status judged over a
//! recent window), the [`KafkaView`] trait through which readiness reads the consumer's
//! partition assignment, [`Readiness`] (the `/readyz` body) and [`Operations`] (the
//! per-process memory those answers need).
//!
//! May depend on: `ledger` (health and a store read), `config`, `clock`, and the app's views
//! through traits (never `propagation`, `channels` or `ingest::kafka` themselves).
//!
//! Channel states, judged over the last [`HEALTH_WINDOW_SECS`] seconds of samples:
//! - `down`: the newest error is newer than the newest acknowledged push and requests have
//!   failed in the window (`connected` is then false);
//! - `degraded`: throttled, failing part of the time, or holding isolated listings;
//! - `idle`: nothing pushed and nothing failed yet;
//! - `ok`: otherwise.
//!
//! Readiness (`/readyz`, 200 or 503): the store accepts writes (the ledger's committer is
//! healthy and a read answers within [`STORE_PROBE_TIMEOUT_MS`]), Kafka partitions are
//! assigned when `[kafka]` is configured, and no channel is `down`. The body names every
//! check and lists the failing ones in `not_ready`.

use super::WebState;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// The window over which error and throttle rates are judged, in seconds.
pub const HEALTH_WINDOW_SECS: u64 = 60;
/// Samples closer together than this are not recorded, in milliseconds.
const SAMPLE_SPACING_MS: i64 = 1_000;
/// How long the readiness store read may take, in milliseconds.
pub const STORE_PROBE_TIMEOUT_MS: u64 = 2_000;

/// One channel's propagation status, as the app reports it (a web-owned copy of
/// propagation's own status, so `web` never imports `propagation`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelStatusView {
    /// Channel id.
    pub channel: String,
    /// The platform (`shopify`, `woocommerce`), if known.
    pub kind: Option<String>,
    /// Listings the channel maps.
    pub listings: usize,
    /// Listings waiting to be pushed (isolated ones included).
    pub queue_depth: usize,
    /// Listings in the request being sent now.
    pub in_flight: usize,
    /// Listings the channel refused permanently, retried alone with backoff.
    pub isolated: usize,
    /// Listing updates the channel acknowledged.
    pub accepted_total: u64,
    /// Compare-and-set conflicts (the channel changed a value itself).
    pub conflicts_total: u64,
    /// Listing updates the channel refused.
    pub rejected_total: u64,
    /// Failed requests (transport, 5xx, 401, malformed), throttling excluded.
    pub errors_total: u64,
    /// Throttled requests (429 or GraphQL `THROTTLED`).
    pub throttled_total: u64,
    /// Last acknowledged push, in milliseconds since the Unix epoch.
    pub last_success_at_ms: Option<i64>,
    /// Last error or refusal.
    pub last_error: Option<String>,
    /// When `last_error` happened, in milliseconds since the Unix epoch.
    pub last_error_at_ms: Option<i64>,
}

/// How a channel is doing, in one word (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Pushing normally.
    Ok,
    /// Nothing pushed and nothing failed yet.
    Idle,
    /// Throttled, failing part of the time, or holding isolated listings.
    Degraded,
    /// The newest request failed and nothing succeeded since.
    Down,
}

/// One channel's health as `GET /api/v1/channels` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelHealth {
    /// The status as propagation reports it.
    #[serde(flatten)]
    pub status: ChannelStatusView,
    /// The verdict.
    pub state: ChannelState,
    /// False while the channel is `down`.
    pub connected: bool,
    /// Throttled at least once in the window.
    pub rate_limited: bool,
    /// Failed requests ÷ (failed + acknowledged + conflicting + refused updates) in the
    /// window, 0 when there was no traffic.
    pub error_rate: f64,
    /// Failed requests in the window.
    pub errors_in_window: u64,
    /// Throttled requests in the window.
    pub throttled_in_window: u64,
    /// The window the rates cover, in seconds (shorter right after start).
    pub window_secs: u64,
    /// Last signed webhook delivery accepted for the channel (ms since the Unix epoch).
    pub last_webhook_at_ms: Option<i64>,
    /// Seconds since that delivery.
    pub webhook_age_secs: Option<u64>,
}

/// Reads the Kafka consumer's partition assignment for readiness. Implemented by the app.
pub trait KafkaView: Send + Sync + 'static {
    /// The `(topic, partition)`s assigned now (empty before the first assignment).
    fn assignment(&self) -> Vec<(String, i32)>;
}

/// Reads this instance's view of the cluster for readiness and the dashboard (several
/// instances). Implemented by the app over `crate::cluster::Cluster`.
pub trait ClusterView: Send + Sync + 'static {
    /// The coordinator's status as JSON (member, members, partitions, owned, rebalances,
    /// last round, error).
    fn status(&self) -> serde_json::Value;
    /// Whether the last round reached the store recently (within the session timeout)
    /// without an error; `Err` says why not.
    fn joined(&self) -> Result<String, String>;
}

/// One readiness check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// `store`, `kafka`, or `channel:<id>`.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What was found, in lowercase prose.
    pub detail: String,
}

/// The `/readyz` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Names of the checks that fail.
    pub not_ready: Vec<String>,
    /// Every check, in order: store, cluster (if configured), kafka (if configured), then
    /// channels in config order.
    pub checks: Vec<Check>,
    /// Several instances: this instance's view of the cluster (members, partition owners,
    /// what it owns, rebalances); absent on a single instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub cluster: Option<serde_json::Value>,
}

/// Counters of one channel at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at_ms: i64,
    traffic: u64,
    errors: u64,
    throttled: u64,
}

impl Sample {
    fn of(status: &ChannelStatusView, at_ms: i64) -> Self {
        Self {
            at_ms,
            traffic: status.accepted_total
                + status.conflicts_total
                + status.rejected_total
                + status.errors_total,
            errors: status.errors_total,
            throttled: status.throttled_total,
        }
    }
}

/// What the web layer remembers for operations: webhook freshness, counter samples for
/// windowed rates, and the Kafka view (set once, possibly after the router is built).
pub struct Operations {
    webhooks: Mutex<HashMap<String, i64>>,
    samples: Mutex<HashMap<String, VecDeque<Sample>>>,
    kafka: OnceLock<Arc<dyn KafkaView>>,
    cluster: OnceLock<Arc<dyn ClusterView>>,
    /// Permits for the dashboard's live streams (see `super::dashboard`).
    pub(super) live_streams: Arc<tokio::sync::Semaphore>,
}

impl Default for Operations {
    fn default() -> Self {
        Self {
            webhooks: Mutex::default(),
            samples: Mutex::default(),
            kafka: OnceLock::new(),
            cluster: OnceLock::new(),
            live_streams: Arc::new(tokio::sync::Semaphore::new(
                super::dashboard::MAX_LIVE_STREAMS,
            )),
        }
    }
}

impl Operations {
    /// Records a signed webhook accepted for `channel` at `at_ms`.
    pub fn webhook_received(&self, channel: &str, at_ms: i64) {
        let mut webhooks = self.webhooks.lock().unwrap_or_else(PoisonError::into_inner);
        match webhooks.get_mut(channel) {
            Some(last) => *last = (*last).max(at_ms),
            None => {
                webhooks.insert(channel.to_owned(), at_ms);
            }
        }
    }

    /// The last signed webhook accepted for `channel`, in ms since the Unix epoch.
    pub fn last_webhook_at_ms(&self, channel: &str) -> Option<i64> {
        self.webhooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .copied()
    }

    /// Sets the cluster view (once; later calls are ignored).
    pub fn set_cluster_view(&self, view: Arc<dyn ClusterView>) {
        let _ = self.cluster.set(view);
    }

    /// The cluster view, with `[cluster]`.
    pub fn cluster_view(&self) -> Option<&Arc<dyn ClusterView>> {
        self.cluster.get()
    }

    /// Uses `view` for the Kafka readiness check. Only the first call has an effect.
    pub fn set_kafka_view(&self, view: Arc<dyn KafkaView>) {
        let _ = self.kafka.set(view);
    }

    /// Judges every channel status at `now_ms`, recording a sample for the window.
    pub fn judge(&self, statuses: Vec<ChannelStatusView>, now_ms: i64) -> Vec<ChannelHealth> {
        let window_ms = i64::try_from(HEALTH_WINDOW_SECS * 1_000).unwrap_or(i64::MAX);
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        statuses
            .into_iter()
            .map(|status| {
                let current = Sample::of(&status, now_ms);
                let history = samples.entry(status.channel.clone()).or_default();
                if history
                    .back()
                    .is_none_or(|last| now_ms - last.at_ms >= SAMPLE_SPACING_MS)
                {
                    history.push_back(current);
                }
                // Keep one sample at or before the window start as the baseline.
                while history.len() > 2 && now_ms - history[1].at_ms >= window_ms {
                    history.pop_front();
                }
                // A single sample means "since start": compare against zero.
                let baseline = match history.front() {
                    Some(first) if history.len() > 1 => *first,
                    _ => Sample::default(),
                };
                let window_secs = if history.len() > 1 {
                    u64::try_from((now_ms - baseline.at_ms) / 1_000).unwrap_or(0)
                } else {
                    0
                };
                let last_webhook_at_ms = self.last_webhook_at_ms(&status.channel);
                judge_one(
                    status,
                    current,
                    baseline,
                    window_secs,
                    last_webhook_at_ms,
                    now_ms,
                )
            })
            .collect()
    }
}

fn judge_one(
    status: ChannelStatusView,
    current: Sample,
    baseline: Sample,
    window_secs: u64,
    last_webhook_at_ms: Option<i64>,
    now_ms: i64,
) -> ChannelHealth {
    let errors = current.errors.saturating_sub(baseline.errors);
    let throttled = current.throttled.saturating_sub(baseline.throttled);
    let traffic = current.traffic.saturating_sub(baseline.traffic);
    let error_rate = if traffic == 0 {
        0.0
    } else {
        errors as f64 / traffic as f64
    };
    let failing_last = match (status.last_error_at_ms, status.last_success_at_ms) {
        (Some(error), Some(success)) => error > success,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let state = if failing_last && errors > 0 {
        ChannelState::Down
    } else if throttled > 0 || errors > 0 || status.isolated > 0 {
        ChannelState::Degraded
    } else if status.last_success_at_ms.is_none() && status.last_error_at_ms.is_none() {
        ChannelState::Idle
    } else {
        ChannelState::Ok
    };
    ChannelHealth {
        state,
        connected: state != ChannelState::Down,
        rate_limited: throttled > 0,
        error_rate,
        errors_in_window: errors,
        throttled_in_window: throttled,
        window_secs,
        last_webhook_at_ms,
        webhook_age_secs: last_webhook_at_ms
            .map(|at| u64::try_from((now_ms - at).max(0) / 1_000).unwrap_or(0)),
        status,
    }
}

/// Every channel's health now (empty without a channel view).
pub fn channel_health(state: &WebState) -> Vec<ChannelHealth> {
    let statuses = state
        .channel_view
        .as_ref()
        .map(|view| view.channel_status())
        .unwrap_or_default();
    state.ops.judge(statuses, state.ledger.clock().now_ms())
}

/// The `GET /api/v1/channels` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelsView {
    /// One entry per channel, in config order.
    pub channels: Vec<ChannelHealth>,
}

/// `GET /api/v1/channels`.
#[utoipa::path(
    get,
    path = "/api/v1/channels",
    tag = "operations",
    security(("bearerAuth" = ["read"])),
    responses(
        (status = 200, description = "Every channel's health, in config order.", body = ChannelsView),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_channels(State(state): State<WebState>) -> Json<ChannelsView> {
    Json(ChannelsView {
        channels: channel_health(&state),
    })
}

/// Runs every readiness check.
pub async fn readiness(state: &WebState) -> Readiness {
    let mut checks = vec![store_check(state).await];
    let cluster = state.ops.cluster.get();
    if let Some(view) = cluster {
        let (ok, detail) = match view.joined() {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        checks.push(Check {
            name: "cluster".to_owned(),
            ok,
            detail,
        });
    }
    if let Some(kafka) = &state.config.kafka
        && cluster.is_none()
    {
        let assigned = state
            .ops
            .kafka
            .get()
            .map(|view| view.assignment())
            .unwrap_or_default();
        checks.push(Check {
            name: "kafka".to_owned(),
            ok: !assigned.is_empty(),
            detail: if assigned.is_empty() {
                format!(
                    "no partition of {} assigned to group {} yet",
                    kafka.movements_topic, kafka.group_id
                )
            } else {
                format!("{} partition(s) assigned", assigned.len())
            },
        });
    }
    for health in channel_health(state) {
        let ok = health.state != ChannelState::Down;
        let detail = match (&health.state, &health.status.last_error) {
            (ChannelState::Down, Some(error)) => format!("down: {error}"),
            (state, _) => format!(
                "{}; queue depth {}",
                serde_json::to_value(state)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                health.status.queue_depth
            ),
        };
        checks.push(Check {
            name: format!("channel:{}", health.status.channel),
            ok,
            detail,
        });
    }
    let not_ready: Vec<String> = checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| check.name.clone())
        .collect();
    Readiness {
        status: if not_ready.is_empty() {
            "ready"
        } else {
            "not_ready"
        }
        .to_owned(),
        not_ready,
        checks,
        cluster: cluster.map(|view| view.status()),
    }
}

async fn store_check(state: &WebState) -> Check {
    let name = "store".to_owned();
    if let Some(reason) = state.ledger.unavailable_reason() {
        return Check {
            name,
            ok: false,
            detail: format!(
                "the store refuses writes ({reason}); ingest is paused and resumes by itself once a write succeeds"
            ),
        };
    }
    let probe = tokio::time::timeout(
        Duration::from_millis(STORE_PROBE_TIMEOUT_MS),
        state.ledger.list_skus(None, 1),
    )
    .await;
    match probe {
        Ok(Ok(_)) => Check {
            name,
            ok: true,
            detail: "open and accepting writes".to_owned(),
        },
        Ok(Err(error)) => Check {
            name,
            ok: false,
            detail: format!("read failed: {error}"),
        },
        Err(_) => Check {
            name,
            ok: false,
            detail: format!("read did not answer within {STORE_PROBE_TIMEOUT_MS} ms"),
        },
    }
}

/// `GET /readyz`: 200 with `status: ready`, or 503 naming what is not ready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready (the body names the failing checks).", body = Readiness),
    )
)]
pub(super) async fn get_ready(State(state): State<WebState>) -> Response {
    let readiness = readiness(&state).await;
    let status = if readiness.not_ready.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Middleware: remembers when each channel last had a webhook accepted (a 2xx answer on
/// `/webhooks/{platform}/{channel}`), for webhook freshness.
pub(super) async fn track_webhooks(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    let channel = webhook_channel(request.uri().path()).map(str::to_owned);
    let response = next.run(request).await;
    if let Some(channel) = channel
        && response.status().is_success()
        && state.config.channel(&channel).is_some()
    {
        state
            .ops
            .webhook_received(&channel, state.ledger.clock().now_ms());
    }
    response
}

/// The channel id of a webhook path (`/webhooks/shopify/shop-1` → `shop-1`).
pub(super) fn webhook_channel(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/webhooks/")?;
    let (_platform, channel) = rest.split_once('/')?;
    (!channel.is_empty() && !channel.contains('/')).then_some(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(errors: u64, accepted: u64, throttled: u64) -> ChannelStatusView {
        ChannelStatusView {
            channel: "shop-north".to_owned(),
            errors_total: errors,
            accepted_total: accepted,
            throttled_total: throttled,
            ..ChannelStatusView::default()
        }
    }

    #[test]
    fn a_channel_with_no_traffic_is_idle() {
        let ops = Operations::default();
        let health = ops.judge(vec![status(0, 0, 0)], 1_000);
        assert_eq!(health[0].state, ChannelState::Idle);
        assert!(health[0].connected);
        assert_eq!(health[0].error_rate, 0.0);
    }

    #[test]
    fn failures_after_the_last_success_mean_down_and_rates_use_the_window() {
        let ops = Operations::default();
        let mut first = status(0, 10, 0);
        first.last_success_at_ms = Some(500);
        assert_eq!(ops.judge(vec![first], 1_000)[0].state, ChannelState::Ok);
        let mut failing = status(5, 15, 0);
        failing.last_success_at_ms = Some(1_500);
        failing.last_error_at_ms = Some(2_900);
        let health = &ops.judge(vec![failing], 3_000)[0];
        assert_eq!(health.state, ChannelState::Down);
        assert!(!health.connected);
        assert_eq!(health.errors_in_window, 5);
        // 5 errors out of 5 errors + 5 acknowledged in the window.
        assert!((health.error_rate - 0.5).abs() < 1e-9);
        assert_eq!(health.window_secs, 2);
    }

    #[test]
    fn throttling_in_the_window_is_degraded_and_ages_out() {
        let ops = Operations::default();
        let mut throttled = status(0, 3, 2);
        throttled.last_success_at_ms = Some(900);
        let health = &ops.judge(vec![throttled.clone()], 1_000)[0];
        assert_eq!(health.state, ChannelState::Degraded);
        assert!(health.rate_limited);
        let later = 1_000 + 2 * HEALTH_WINDOW_SECS as i64 * 1_000;
        ops.judge(vec![throttled.clone()], later - 1_000);
        let health = &ops.judge(vec![throttled], later)[0];
        assert!(!health.rate_limited, "{health:?}");
        assert_eq!(health.state, ChannelState::Ok);
    }

    #[test]
    fn webhook_freshness_is_per_channel() {
        let ops = Operations::default();
        ops.webhook_received("shop-north", 10_000);
        ops.webhook_received("shop-north", 9_000);
        let health = &ops.judge(vec![status(0, 0, 0)], 40_000)[0];
        assert_eq!(health.last_webhook_at_ms, Some(10_000));
        assert_eq!(health.webhook_age_secs, Some(30));
        assert_eq!(ops.last_webhook_at_ms("shop-south"), None);
    }

    #[test]
    fn webhook_paths_name_their_channel() {
        assert_eq!(webhook_channel("/webhooks/shopify/shop-1"), Some("shop-1"));
        assert_eq!(webhook_channel("/webhooks/shopify/"), None);
        assert_eq!(webhook_channel("/api/v1/stock/x"), None);
        assert_eq!(webhook_channel("/webhooks/shopify/a/b"), None);
    }
}
