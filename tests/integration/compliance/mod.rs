//! The channel compliance harness: ONE suite every channel adapter must pass (STYLE.md,
//! after Vector's component compliance), driving the real `Propagation` against each
//! platform's simulator.
//!
//! A target implements [`ComplianceTarget`] (start its simulator with listed SKUs and the
//! SKUs it must refuse permanently, describe its `[channels.<platform>]` section, read
//! what it lists). Faults are injected by a [`FaultProxy`] between the adapter and the
//! simulator, the same for every platform: 429 + `Retry-After`, 5xx, stalls longer than
//! the client's read timeout, and outages. The proxy also timestamps every request, which
//! is what the rate-budget check counts.
//!
//! Only the requests a target [`counts`](ComplianceTarget::counts) towards its rate budget
//! are logged and get injected faults (default: every request); the others (tokens,
//! status polls, feed documents) are forwarded untouched except during an outage.
//!
//! To add a platform: write `tests/integration/compliance/<platform>.rs` with a target, add
//! it below, and add one `compliance_suite!(<platform>, <Target>);` line in
//! `tests/integration/channel_compliance.rs`.

pub mod amazon;
pub mod bolcom;
pub mod shopify;
pub mod woocommerce;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stocksync::config::Config;
use stocksync::domain::{AvailabilityChange, AvailabilitySink};
use stocksync::propagation::Propagation;
use stocksync::store::Store;
use stocksync::store::embedded::EmbeddedStore;
use tokio::time::Instant;

/// The one location feeding the compliance channel.
pub const LOCATION: &str = "WH-1";

/// What a target's simulator must hold at start.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// SKUs listed on the platform, each starting at 0.
    pub skus: Vec<String>,
    /// SKUs whose stock writes the platform refuses permanently.
    pub rejected: Vec<String>,
}

/// One platform under test.
#[async_trait]
pub trait ComplianceTarget: Send + Sync + Sized + 'static {
    /// Short name (`shopify`), used in channel ids.
    const NAME: &'static str;

    /// Starts the simulator on 127.0.0.1:0 with the knobs applied.
    async fn start(knobs: &Knobs) -> Self;

    /// The simulator's base URL (the proxy forwards to it).
    fn base_url(&self) -> String;

    /// The TOML of the channel's platform section (`[channels.<platform>]` with every
    /// SKU of the knobs mapped), with `platform_url` as the API base URL. `dir` is a temp
    /// dir for listing files.
    fn platform_toml(&self, platform_url: &str, dir: &Path) -> String;

    /// The quantity the platform lists for `sku` now.
    fn listed(&self, sku: &str) -> Option<i64>;

    /// Whether a request (method, path) counts towards the channel's rate budget; only
    /// those are logged and get injected faults. Default: every request.
    fn counts(method: &str, path: &str) -> bool {
        let _ = (method, path);
        true
    }

    /// The most counted requests the first push of `good_items` listings plus one refused
    /// listing may take: a batching platform needs at most 3 (the batch, the batch without
    /// the refused item, the refused item alone); a platform that writes one listing per
    /// request overrides this.
    fn good_items_request_budget(good_items: usize) -> usize {
        let _ = good_items;
        3
    }

    /// Whether a counted request with this path writes `sku`'s listing and nothing else
    /// (a platform with one listing per request can tell; a batching one cannot: false).
    fn request_is_only_for(path: &str, sku: &str) -> bool {
        let _ = (path, sku);
        false
    }
}

/// A fault the proxy applies to the next requests.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Status {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    Stall {
        millis: u64,
    },
}

#[derive(Default)]
struct ProxyState {
    log: Vec<Instant>,
    /// The path of each logged request, in the order of `log`.
    paths: Vec<String>,
    /// Every request, counted or not.
    attempts: usize,
    faults: std::collections::VecDeque<Fault>,
    outage: bool,
    retry_after_until: Option<Instant>,
    retry_after_violations: u32,
    throttled_at: Vec<Instant>,
}

struct ProxyInner {
    upstream: String,
    counts: fn(&str, &str) -> bool,
    client: reqwest::Client,
    state: Mutex<ProxyState>,
}

/// A forwarding proxy on 127.0.0.1:0 that injects faults and timestamps requests.
pub struct FaultProxy {
    inner: Arc<ProxyInner>,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`; `counts` says which (method, path) are logged and
    /// get faults.
    pub async fn start(upstream: String, counts: fn(&str, &str) -> bool) -> Self {
        let inner = Arc::new(ProxyInner {
            upstream,
            counts,
            client: reqwest::Client::new(),
            state: Mutex::new(ProxyState::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            inner,
            addr,
            server,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.inner.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `count` requests with `status` (and `Retry-After`).
    pub fn fail_next(&self, count: usize, status: u16, retry_after_secs: Option<u64>) {
        let mut state = self.state();
        for _ in 0..count {
            state.faults.push_back(Fault::Status {
                status,
                retry_after_secs,
            });
        }
    }

    /// Holds the next `count` requests for `millis` before answering 504 (longer than the
    /// client's read timeout: the client sees a timeout).
    pub fn stall_next(&self, count: usize, millis: u64) {
        let mut state = self.state();
        for _ in 0..count {
            state.faults.push_back(Fault::Stall { millis });
        }
    }

    /// While on, every request gets 503 without `Retry-After`.
    pub fn set_outage(&self, outage: bool) {
        self.state().outage = outage;
    }

    /// How many requests arrived so far, counted or not.
    pub fn attempts(&self) -> usize {
        self.state().attempts
    }

    /// Arrival times of the counted requests.
    pub fn requests_log(&self) -> Vec<Instant> {
        self.state().log.clone()
    }

    /// Paths of the counted requests, in arrival order.
    pub fn requests_paths(&self) -> Vec<String> {
        self.state().paths.clone()
    }

    /// Requests that arrived before an earlier `Retry-After` had passed.
    pub fn retry_after_violations(&self) -> u32 {
        self.state().retry_after_violations
    }

    /// When the 429 answers were sent.
    pub fn throttled_at(&self) -> Vec<Instant> {
        self.state().throttled_at.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(proxy): State<Arc<ProxyInner>>, request: Request) -> Response {
    let arrival = Instant::now();
    let counted = (proxy.counts)(request.method().as_str(), request.uri().path());
    let fault = {
        let mut state = proxy.state.lock().unwrap();
        state.attempts += 1;
        if counted {
            state.log.push(arrival);
            state.paths.push(request.uri().path().to_owned());
            if state.retry_after_until.is_some_and(|until| arrival < until) {
                state.retry_after_violations += 1;
            }
        }
        if state.outage {
            Some(Fault::Status {
                status: 503,
                retry_after_secs: None,
            })
        } else if counted {
            state.faults.pop_front()
        } else {
            None
        }
    };
    match fault {
        Some(Fault::Status {
            status,
            retry_after_secs,
        }) => {
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                "injected by the compliance proxy",
            )
                .into_response();
            if let Some(secs) = retry_after_secs {
                let mut state = proxy.state.lock().unwrap();
                state.retry_after_until = Some(Instant::now() + Duration::from_secs(secs));
                if status == 429 {
                    state.throttled_at.push(Instant::now());
                }
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&secs.to_string()).unwrap(),
                );
            }
            return response;
        }
        Some(Fault::Stall { millis }) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        None => {}
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut builder = proxy
        .client
        .request(parts.method, format!("{}{path}", proxy.upstream));
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            builder = builder.header(name, value);
        }
    }
    let Ok(answer) = builder.body(bytes).send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(body)).unwrap()
}

/// One running compliance setup: simulator, proxy, propagation over a temp store.
pub struct Harness<T: ComplianceTarget> {
    /// The target (simulator).
    pub target: T,
    /// The proxy in front of it.
    pub proxy: FaultProxy,
    /// Propagation under test.
    pub propagation: Propagation,
    /// The channel id (unique per test, so metrics can be told apart).
    pub channel: String,
    /// The SKUs listed.
    pub skus: Vec<String>,
    seq: u64,
    _dir: tempfile::TempDir,
}

/// The channel's pacing in a test.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// `rate_limit.requests_per_sec`.
    pub requests_per_sec: f64,
    /// `rate_limit.burst`.
    pub burst: u32,
}

impl<T: ComplianceTarget> Harness<T> {
    /// Starts the target with `sku_count` SKUs (`rejected` indexes refused permanently),
    /// the proxy and propagation with `pacing`; the client's read timeout is 400 ms.
    pub async fn start(test: &str, sku_count: usize, rejected: &[usize], pacing: Pacing) -> Self {
        let _ = stocksync::telemetry::prometheus();
        let skus: Vec<String> = (0..sku_count)
            .map(|n| format!("CMP-{}-{n:03}", T::NAME.to_uppercase()))
            .collect();
        let knobs = Knobs {
            skus: skus.clone(),
            rejected: rejected.iter().map(|n| skus[*n].clone()).collect(),
        };
        let target = T::start(&knobs).await;
        let proxy = FaultProxy::start(target.base_url(), T::counts).await;
        let dir = tempfile::tempdir().unwrap();
        let channel = format!("compliance-{}-{test}", T::NAME);
        let text = format!(
            r#"
            [[locations]]
            id = "{LOCATION}"

            [[channels]]
            id = "{channel}"
            kind = "{kind}"
            locations = ["{LOCATION}"]
            [channels.rate_limit]
            requests_per_sec = {rate:.3}
            burst = {burst}
            [channels.retry]
            initial_backoff_ms = 100
            max_backoff_ms = 800
            {platform}
            "#,
            kind = T::NAME,
            rate = pacing.requests_per_sec,
            burst = pacing.burst,
            platform = target.platform_toml(&proxy.url(), dir.path()),
        );
        let config = Config::from_toml(&text).unwrap();
        config.validate().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("stocksync.db")).unwrap());
        let client = reqwest::Client::builder()
            .read_timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let propagation = Propagation::start(&config, store, client).await.unwrap();
        Self {
            target,
            proxy,
            propagation,
            channel,
            skus,
            seq: 0,
            _dir: dir,
        }
    }

    /// Publishes `on_hand` at the one location for the SKUs at `indexes` (ATP = on_hand).
    pub fn publish(&mut self, indexes: impl IntoIterator<Item = usize>, on_hand: i64) {
        self.seq += 1;
        // Built through serde so fields added later (with serde defaults) need no edit here.
        let changes: Vec<AvailabilityChange> = indexes
            .into_iter()
            .map(|n| {
                serde_json::from_value(serde_json::json!({
                    "sku": self.skus[n],
                    "seq": self.seq,
                    "locations": [{ "location": LOCATION, "on_hand": on_hand, "reserved": 0 }],
                }))
                .unwrap()
            })
            .collect();
        self.propagation.publish(&changes);
    }

    /// Waits until every queue is delivered (isolated listings excepted).
    pub async fn flush(&self, timeout: Duration) {
        self.propagation
            .flush(timeout)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", T::NAME));
    }

    /// The quantity listed for SKU number `n`.
    pub fn listed(&self, n: usize) -> Option<i64> {
        self.target.listed(&self.skus[n])
    }

    /// This channel's status.
    pub fn status(&self) -> stocksync::propagation::ChannelStatus {
        self.propagation.channel_status().remove(0)
    }

    /// Stops propagation.
    pub async fn stop(self) {
        self.propagation.shutdown().await;
    }
}

/// Largest number of requests inside any window of `window` starting at a request.
pub fn max_in_window(log: &[Instant], window: Duration) -> usize {
    let mut sorted = log.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut end = 0;
    for start in 0..sorted.len() {
        while end < sorted.len() && sorted[end] <= sorted[start] + window {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}
