//! The HTTP surface: REST movements, stock read-out, reservations, rules, audit log,
//! dashboard, `/metrics`, `/healthz`, and the mount point of the platform webhook receivers.
//!
//! Owns: the axum [`router`] and [`serve`], the shared [`WebState`], the [`ChannelView`]
//! trait through which the API reads what propagation last pushed, and the API's error
//! answers ([`WebError`], as RFC 9457 [`Problem`]s from the leaf [`crate::problem`]). The
//! webhook receivers are not here: each is a router in `ingest::<platform>::receiver`
//! that [`router`] merges, handing it the ledger, the config and the delivery memory the
//! app created ([`WebState::with_delivery_memory`]); the layers below (body limit, webhook
//! activity, tracing, 404/405 problems) wrap them like every other route.
//!
//! May depend on: `ledger` (submit and read), `domain`, `config`, `telemetry`, `problem`,
//! `ingest` (the receivers' routers and state), and a propagation view through
//! [`ChannelView`] (never `propagation` itself, so the app adapts it).
//!
//! Invariant (DESIGN.md §3 rule 3): a 2xx answer to a movement or a webhook is sent only
//! after every movement it carried is durable in the store (the ledger's `PendingAck`
//! resolved). Anything else is answered with a problem, so the sender retries; retries are
//! harmless because every movement carries an idempotency key.
//!
//! Limits (see [`limits`]): header-read and request timeouts, a connection limit, a
//! concurrency limit with load shedding (503 with `Retry-After`) on every route but
//! `/healthz`, `/readyz` and `/metrics`, a body limit on every route and a movement limit
//! per request, all from `[http]`.
//!
//! Routes:
//! - `POST /api/v1/movements`: one movement or an array (see [`movements`]).
//! - `POST /webhooks/shopify/{channel_id}`: Shopify deliveries (see
//!   [`crate::ingest::shopify::receiver`]).
//! - `POST /webhooks/woocommerce/{channel_id}`: WooCommerce deliveries and the creation ping
//!   (see [`crate::ingest::woocommerce::receiver`]).
//! - `POST /webhooks/amazon/{channel_id}`: Amazon ORDER_CHANGE notifications from an SQS
//!   bridge (see [`crate::ingest::amazon::receiver`]).
//! - `GET /api/v1/stock/{sku}`: levels (with in-transit and inbound units), reservations and
//!   per-channel ATP; a bundle's levels derived from its components; a SKU never seen is a
//!   404 `unknown-sku` problem and loads nothing (see [`stock`]).
//! - `POST /api/v1/reservations`, `GET /api/v1/reservations/{id}`, `POST …/{id}/commit`,
//!   `POST …/{id}/release`: all-or-nothing multi-SKU holds (see [`reservations`]).
//! - `GET /api/v1/config/rules`, `PUT /api/v1/config/rules`: the stock rules in force
//!   (see [`rules`]).
//! - `GET /api/v1/openapi.json`: the OpenAPI 3.1 contract of all of the above (see
//!   [`openapi`]; checked in as `docs/openapi.json`).
//! - `GET /metrics`: Prometheus text format 0.0.4.
//! - `GET /healthz`: 200 while the process answers: `{"status":"ok"}`, or
//!   `{"status":"paused","reason":…}` while the store refuses writes (ingest resumes by
//!   itself; `/readyz` answers 503 meanwhile).
//! - `GET /readyz`, `GET /api/v1/channels`: readiness and channel health (see [`health`]).
//! - `GET /api/v1/movements` (JSON or CSV), `GET /api/v1/pushes`, `GET /api/v1/audit/config`:
//!   the audit log (see [`history`]); each movement shows its `outcome` (`applied`,
//!   `parked`, `ignored`).
//! - `GET /api/v1/dead-letters?sku=&limit=`: parked movements that expired (see
//!   [`dead_letters`]).
//! - `GET /` (`/dashboard`), `GET /api/v1/skus`, `GET /api/v1/stock/{sku}/events`,
//!   `GET /api/v1/events` (server-sent events): the dashboard (see [`dashboard`]).
//!
//! Every route but `/healthz`, `/readyz`, `/metrics` and the webhooks needs a token with
//! the route's scope once `[http.auth]` has tokens (see [`auth`]).

pub mod auth;
pub mod channel_mode;
pub mod cluster;
pub mod dashboard;
pub mod dead_letters;
pub mod health;
pub mod history;
pub mod limits;
pub mod movements;
pub mod openapi;
mod problem;
pub mod reservations;
pub mod rules;
pub mod stock;

pub use limits::serve_with;
pub use problem::{FieldError, PROBLEM_CONTENT_TYPE, Problem, WebError};

use crate::config::Config;
use crate::ingest::receiver::{DEFAULT_DELIVERY_MEMORY, DeliveryMemory, ReceiverState};
use crate::ledger::Ledger;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::Arc;
use tower_http::trace::TraceLayer;

/// What propagation last pushed to each channel listing, as the API needs it.
///
/// The app adapts `crate::propagation::Propagation` to this trait; `web` never imports
/// propagation, so the two can evolve apart.
pub trait ChannelView: Send + Sync + 'static {
    /// The quantity last acknowledged by `channel` for `sku`, or `None` if nothing was
    /// pushed yet (or the view does not know).
    fn last_pushed(&self, channel: &str, sku: &str) -> Option<u64>;

    /// Every channel's propagation status, in config order (empty if the view does not
    /// know).
    fn channel_status(&self) -> Vec<health::ChannelStatusView> {
        Vec::new()
    }

    /// What `channel` last reported for `sku` (reconciliation), with the open discrepancy;
    /// `None` when nothing was read back yet (or the view does not know).
    fn channel_report(&self, channel: &str, sku: &str) -> Option<stock::ChannelReportView> {
        let _ = (channel, sku);
        None
    }

    /// The per-location listings of `sku` on `channel` when the channel lists stock per
    /// location of its own (Shopify multi-location), for a SKU with these `levels`: each
    /// location with its listing key and its part of `total`, the channel's ATP. Empty
    /// otherwise.
    fn listing_parts(
        &self,
        channel: &str,
        sku: &str,
        levels: &[crate::domain::LocationLevel],
        total: u64,
    ) -> Vec<stock::ListingPart> {
        let _ = (channel, sku, levels, total);
        Vec::new()
    }

    /// `channel`'s shadow-mode report with its `limit` largest differences; `None` for an
    /// unknown channel (or a view that does not know).
    fn shadow_report(&self, channel: &str, limit: usize) -> Option<channel_mode::ShadowReportView> {
        let _ = (channel, limit);
        None
    }

    /// Puts `channel` in `mode`; returns whether that changed the mode, `None` for an
    /// unknown channel.
    fn set_channel_mode(&self, channel: &str, mode: crate::config::ChannelMode) -> Option<bool> {
        let _ = (channel, mode);
        None
    }

    /// Hands a Shopify `inventory_levels/update` (the channel's own figure) to
    /// reconciliation, which recognises our echo or flags a discrepancy. Must not block.
    fn inventory_level_reported(
        &self,
        channel: &str,
        inventory_item_id: &str,
        location_id: &str,
        available: Option<i64>,
    ) {
        let _ = (channel, inventory_item_id, location_id, available);
    }
}

/// Hands inventory levels a channel reports without a movement (Shopify's
/// `inventory_levels/update`) from the receivers to the [`ChannelView`].
struct ViewLevels(Arc<dyn ChannelView>);

impl crate::ingest::receiver::InventoryLevelObserver for ViewLevels {
    fn inventory_level_reported(
        &self,
        channel: &str,
        inventory_item_id: &str,
        location_id: &str,
        available: Option<i64>,
    ) {
        self.0
            .inventory_level_reported(channel, inventory_item_id, location_id, available);
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    ledger: Ledger,
    config: Arc<Config>,
    channel_view: Option<Arc<dyn ChannelView>>,
    deliveries: DeliveryMemory,
    prometheus: PrometheusHandle,
    ops: Arc<health::Operations>,
    rules: Option<Arc<rules::RuntimeRules>>,
    platforms: Option<Arc<crate::platforms::PlatformClients>>,
    /// The config's bills of materials, flattened once on first use (when there are no
    /// runtime rules).
    config_bom: Arc<std::sync::OnceLock<Arc<crate::domain::BillOfMaterials>>>,
    /// Where availability changes other instances send are published (propagation), with
    /// `[cluster]`.
    cluster_availability: Option<Arc<dyn crate::domain::AvailabilitySink>>,
    /// Who leads each channel, and the client webhooks are passed to the leader with
    /// (several instances, see [`cluster::webhooks_to_leader`]).
    webhook_leaders: Option<(Arc<dyn cluster::WebhookLeaders>, reqwest::Client)>,
}

impl WebState {
    /// State over `ledger` and `config` (channels, secrets, `http.body_limit_bytes`), with no
    /// channel view (`last_pushed` is then `null`) and a delivery memory of its own of
    /// [`DEFAULT_DELIVERY_MEMORY`] entries (the app hands in its own with
    /// [`WebState::with_delivery_memory`]). Installs the process-wide Prometheus recorder if
    /// it is not installed yet ([`crate::telemetry::prometheus`]).
    pub fn new(ledger: Ledger, config: Arc<Config>) -> Self {
        Self {
            ledger,
            config,
            channel_view: None,
            deliveries: DeliveryMemory::new(DEFAULT_DELIVERY_MEMORY),
            prometheus: crate::telemetry::prometheus(),
            ops: Arc::new(health::Operations::default()),
            rules: None,
            platforms: None,
            config_bom: Arc::default(),
            cluster_availability: None,
            webhook_leaders: None,
        }
    }

    /// Passes webhook deliveries for a channel another instance leads to that instance
    /// (several instances), with `client`; see [`cluster::webhooks_to_leader`].
    pub fn with_webhook_leaders(
        mut self,
        leaders: Arc<dyn cluster::WebhookLeaders>,
        client: reqwest::Client,
    ) -> Self {
        self.webhook_leaders = Some((leaders, client));
        self
    }

    /// Publishes the availability changes other instances send to
    /// `POST /internal/v1/cluster/availability` into `sink` (this instance's propagation;
    /// several instances only).
    pub fn with_cluster_availability(
        mut self,
        sink: Arc<dyn crate::domain::AvailabilitySink>,
    ) -> Self {
        self.cluster_availability = Some(sink);
        self
    }

    /// Lets the webhook receivers read back what thin webhooks name (Shopify fulfillment
    /// orders) through the app's shared platform `clients`.
    pub fn with_platform_clients(
        mut self,
        clients: Arc<crate::platforms::PlatformClients>,
    ) -> Self {
        self.platforms = Some(clients);
        self
    }

    /// Reads `last_pushed` per channel from `view` (propagation, adapted by the app).
    pub fn with_channel_view(mut self, view: Arc<dyn ChannelView>) -> Self {
        self.channel_view = Some(view);
        self
    }

    /// Reports the cluster (several instances) in `/readyz` through `view`.
    pub fn with_cluster_view(self, view: Arc<dyn health::ClusterView>) -> Self {
        self.ops.set_cluster_view(view);
        self
    }

    /// Reads the Kafka partition assignment from `view` for `/readyz` (only needed when
    /// `[kafka]` is configured; without it Kafka counts as not ready).
    pub fn with_kafka_view(self, view: Arc<dyn health::KafkaView>) -> Self {
        self.ops.set_kafka_view(view);
        self
    }

    /// Serves and changes the stock rules through `rules` (`/api/v1/config/rules`), and
    /// explains ATP with the rules in force.
    pub fn with_runtime_rules(mut self, rules: Arc<rules::RuntimeRules>) -> Self {
        self.rules = Some(rules);
        self
    }

    /// The leaf components of `sku` (units per bundle) under the bills of materials in
    /// force — the runtime rules' if set, else the config's (a config that fails validation
    /// has none) — or `None` when `sku` is no bundle.
    pub fn bundle_components(
        &self,
        sku: &crate::domain::Sku,
    ) -> Option<Vec<crate::domain::Component>> {
        match &self.rules {
            Some(rules) => rules.rules().bom.components(sku).map(<[_]>::to_vec),
            None => self
                .config_bom
                .get_or_init(|| Arc::new(self.config.bill_of_materials().unwrap_or_default()))
                .components(sku)
                .map(<[_]>::to_vec),
        }
    }

    /// The allocation policy in force: the runtime rules if set, else the config's.
    pub fn allocation_policy(&self) -> crate::domain::AllocationPolicy {
        match &self.rules {
            Some(rules) => rules.allocation(),
            None => self.config.allocation_policy(),
        }
    }

    /// Remembers the webhook deliveries processed in `memory` (shared by every receiver;
    /// created by the app).
    pub fn with_delivery_memory(mut self, memory: DeliveryMemory) -> Self {
        self.deliveries = memory;
        self
    }

    /// The last signed webhook accepted for `channel`, in ms since the Unix epoch (for the
    /// "webhooks gone quiet" alert).
    pub fn last_webhook_at_ms(&self, channel: &str) -> Option<i64> {
        self.ops.last_webhook_at_ms(channel)
    }

    /// The ledger handle.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Builds the HTTP API over `state`: the routes listed in the module docs, a request body
/// limit of `config.http.body_limit_bytes` on every route (413 problem beyond it, whether
/// announced by `Content-Length` or streamed), the request timeout, concurrency limit and
/// load shedding of [`limits::request_limits`] on every route but `/healthz`, `/readyz` and
/// `/metrics` (which must answer under load), a 404 problem for unknown routes and a 405
/// problem for a wrong method, and request tracing.
pub fn router(state: WebState) -> Router {
    let body_limit = state.config.http.body_limit_bytes;
    let auth = Arc::new(
        auth::Auth::new(&state.config.http).with_cluster_token(
            state
                .config
                .cluster
                .as_ref()
                .map(|cluster| cluster.token.as_str()),
        ),
    );
    let cors = auth::cors(&state.config.http.cors_allowed_origins);
    let receivers = ReceiverState::new(
        state.ledger.clone(),
        state.config.clone(),
        state.deliveries.clone(),
    )
    .with_platforms(state.platforms.clone());
    let levels = state.channel_view.clone().map(|view| {
        Arc::new(ViewLevels(view)) as Arc<dyn crate::ingest::receiver::InventoryLevelObserver>
    });
    let api = Router::new()
        .route("/api/v1/movements", post(movements::post_movements))
        .route(
            "/api/v1/config/rules",
            get(rules::get_rules).put(rules::put_rules),
        )
        .route("/api/v1/stock/{sku}", get(stock::get_stock))
        .route("/api/v1/reservations", post(reservations::post_reservation))
        .route(
            "/api/v1/reservations/{id}",
            get(reservations::get_reservation),
        )
        .route(
            "/api/v1/reservations/{id}/commit",
            post(reservations::post_commit),
        )
        .route(
            "/api/v1/reservations/{id}/release",
            post(reservations::post_release),
        )
        .route("/api/v1/movements", get(history::get_movements))
        .route("/api/v1/pushes", get(history::get_pushes))
        .route("/api/v1/audit/config", get(history::get_config_audit))
        .route("/api/v1/dead-letters", get(dead_letters::get_dead_letters))
        .route(
            "/api/v1/channels/{channel}/shadow-report",
            get(channel_mode::get_shadow_report),
        )
        .route(
            "/api/v1/channels/{channel}/mode",
            axum::routing::put(channel_mode::put_mode),
        )
        .merge(crate::ingest::receivers(receivers, levels).layer(
            axum::middleware::from_fn_with_state(state.clone(), cluster::webhooks_to_leader),
        ))
        .route("/api/v1/openapi.json", get(openapi::get_openapi))
        .merge(dashboard::routes());
    let router = limits::request_limits(api, &state.config.http)
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(get_health))
        .route("/readyz", get(health::get_ready))
        .route(
            crate::cluster::forward::APPLY_PATH,
            post(cluster::post_apply),
        )
        .route(
            crate::cluster::availability::AVAILABILITY_PATH,
            post(cluster::post_availability),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_limit))
        .layer(axum::middleware::map_response(limits::body_limit_problem))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            health::track_webhooks,
        ))
        .layer(axum::middleware::from_fn_with_state(auth, auth::guard))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Serves `router` on `listener` with the default `[http]` limits until `shutdown`
/// completes (see [`serve_with`], which the app calls with the configured ones).
///
/// Errors: see [`serve_with`].
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with(
        listener,
        router,
        crate::config::HttpConfig::default(),
        shutdown,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.", body = String, content_type = "text/plain"),
        (status = 401, response = openapi::Unauthorized),
    )
)]
async fn get_metrics(State(state): State<WebState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The process answers: `ok`, or `paused` with the reason while the store refuses writes (ingest pauses and resumes by itself; `/readyz` answers 503 meanwhile).", body = openapi::HealthDoc),
    )
)]
async fn get_health(State(state): State<WebState>) -> Response {
    // Liveness: the process answers. A store that refuses writes pauses ingest, which
    // resumes by itself (a restart would not help): that is `/readyz`'s 503, not this one.
    let body = match state.ledger.unavailable_reason() {
        None => serde_json::json!({"status": "ok"}),
        Some(reason) => serde_json::json!({"status": "paused", "reason": reason}),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn not_found(uri: Uri) -> WebError {
    WebError::NotFound {
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed() -> WebError {
    WebError::MethodNotAllowed
}

/// Maps a body-buffering rejection (over the limit, or a broken stream) to a problem.
fn body_error(rejection: axum::extract::rejection::BytesRejection) -> WebError {
    WebError::Body {
        status: rejection.status(),
        message: rejection.body_text(),
    }
}
