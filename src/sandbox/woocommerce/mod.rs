//! A faithful WooCommerce REST API v3 simulator (PLATFORMS.md §2), served by axum in-process
//! (tests, demo, benchmarks) or standalone.
//!
//! Owns: the simulated shop (products, variations, orders, refunds) and the endpoints
//! - `GET|PUT /wp-json/wc/v3/products/{id}`, `GET /wp-json/wc/v3/products?include=&sku=`,
//!   `POST /wp-json/wc/v3/products/batch`;
//! - `GET|PUT /wp-json/wc/v3/products/{pid}/variations/{id}`,
//!   `GET /wp-json/wc/v3/products/{pid}/variations?include=`,
//!   `POST /wp-json/wc/v3/products/{pid}/variations/batch`;
//! - `GET /wp-json/wc/v3/orders?modified_after=&per_page=&page=` (ordered by modified date),
//!   `GET /wp-json/wc/v3/orders/{id}`, `GET|POST /wp-json/wc/v3/orders/{id}/refunds`
//!   (create: `{amount?, reason?, api_refund?, api_restock?, line_items: [{id, quantity,
//!   refund_total?}]}` → 201 with the refund; items not on the order are skipped as core
//!   does; more units than are left on a line, or an amount above what is left, → HTTP 500
//!   `{"code": "woocommerce_rest_cannot_create_order_refund", "message": "Invalid refund
//!   amount.", "data": {"status": 500}}`: `wc_create_refund` fails with that message and
//!   the REST controller wraps it with status 500);
//! - `GET /_sandbox`: the index of every endpoint below (method, path, example body), built
//!   from the same table as the routes ([`crate::sandbox::index`]);
//! - `/_sandbox/...`: `products`, `orders` (GET list, POST place), `orders/{id}/status`
//!   (`{"status": "refunded"}` adds core's automatic "Order fully refunded." refund without
//!   line items or restock: stock stays reduced), `orders/{id}/lines` (`{"line_items":
//!   [{"id", "quantity"}, {"product_id", "variation_id", "quantity"}]}`: new quantities,
//!   0 removes the line, which then vanishes from `line_items`; reduced stock follows the
//!   change; sends `order.updated` with the full order and a later `date_modified_gmt`),
//!   `orders/{id}/refunds` (refused beyond what is left, like the REST route),
//!   `webhooks` (GET, POST `ping`, POST `enable`), `counters`, `requests`, `failures`
//!   (inject 429/503 bursts);
//!
//! and the outgoing webhooks (`order.created`, `order.updated`) as `class-wc-webhook.php`
//! sends them (§2.4).
//!
//! The awkward parts, reproduced on purpose:
//! - `manage_stock` is a bool on products and bool or `"parent"` on variations;
//!   `stock_quantity` is ignored unless `manage_stock` is true on that object (§2.2);
//! - batches over the limit (default 100, create+update+delete) get HTTP 413
//!   `woocommerce_rest_request_entity_too_large` "Unable to accept more than N items for
//!   this request."; failed items come back inside an HTTP 200 as
//!   `{"id":…,"error":{"code","message","data":{"status"}}}` (unknown ids, and ids listed in
//!   [`WoocommerceSimulatorOptions::failing_items`]);
//! - auth is HTTP Basic `consumer_key:consumer_secret` or the query-parameter form;
//! - core has no rate limiter; optional host/WAF 429/503 bursts with `Retry-After`
//!   ([`WoocommerceSimulator::inject_failures`], [`WoocommerceSimulatorOptions::waf_requests_per_sec`]);
//! - orders reduce stock when they enter processing / on-hold / completed and restore it on
//!   cancelled (and pending), never on creation as `pending` (§2.3); refunds restock only
//!   with `api_restock` (its default is a knob, §8);
//! - webhooks: delivery id with second resolution (two deliveries of one webhook in a
//!   second share it), coalescing per (webhook, order) while a delivery is pending, the
//!   payload built at send time (intermediate statuses are lost), no retry, success =
//!   200–302, and a failure counter that disables the webhook on the 7th consecutive
//!   failure (`failure_count > 5` checked before incrementing, as the code does).
//!
//! Simplifications (documented): OAuth 1.0a over plain HTTP is not implemented (Basic is
//! accepted on http too); `product.*` topics are not sent; one secret and URL for all
//! webhooks; prices are placeholders (10.00 per unit).
//!
//! Wall time (product, order and refund dates, webhook delivery ids) is read from the
//! injected clock ([`WoocommerceSimulatorOptions::clock`]); latency, the WAF bucket and
//! webhook delays follow tokio's clock, so tests can drive both under paused time.
//!
//! May depend on: `clock` and `signing` only (standalone otherwise).

pub mod demo;
mod http;
mod state;
#[cfg(test)]
mod tests;
mod webhook;

pub use webhook::{delivery_id, is_success, webhook_signature};

use crate::clock::{self, SharedClock};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state::ShopState;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Deliveries and requests remembered for inspection.
const LOG_MAX: usize = 10_000;

/// How the simulated shop behaves; the [?] behaviours of PLATFORMS.md §2 and §8 are knobs.
#[derive(Clone, Debug)]
pub struct WoocommerceSimulatorOptions {
    /// REST consumer key accepted (HTTP Basic user or `consumer_key` query parameter).
    pub consumer_key: String,
    /// REST consumer secret accepted.
    pub consumer_secret: String,
    /// Webhook secret that signs deliveries.
    pub webhook_secret: String,
    /// Where webhooks go; `None` sends none. Changeable with [`WoocommerceSimulator::set_webhook_url`].
    pub webhook_url: Option<String>,
    /// Webhook post id of the `order.created` webhook; `order.updated` gets the next id.
    pub first_webhook_id: u64,
    /// Action Scheduler delay before a queued delivery is sent, in milliseconds (coalescing
    /// happens inside this window).
    pub webhook_delay_ms: u64,
    /// `woocommerce_max_webhook_delivery_failures` (5).
    pub max_webhook_delivery_failures: u32,
    /// `woocommerce_rest_batch_items_limit` (100).
    pub batch_limit: usize,
    /// Product or variation ids whose updates fail inside a batch (and a PUT answers 400).
    pub failing_items: Vec<u64>,
    /// Host/WAF limit in requests per second (429 + `Retry-After` beyond it); `None`: none,
    /// as in core (§2.5).
    pub waf_requests_per_sec: Option<f64>,
    /// Host/WAF burst, in requests.
    pub waf_burst: u32,
    /// Added latency of every API request, in milliseconds.
    pub latency_ms: u64,
    /// `api_restock` when a refund does not say (docs and source disagree, §2.3).
    pub api_restock_default: bool,
    /// Refuse orders entering a stock-reducing status for more than the managed stock.
    pub deny_oversell: bool,
    /// First id handed out for products, variations, orders, lines and refunds.
    pub first_id: u64,
    /// Where wall time comes from (product, order and refund dates, delivery ids); the
    /// system clock by default, a [`TokioClock`](crate::clock::TokioClock) in paused-time
    /// tests.
    pub clock: SharedClock,
}

impl Default for WoocommerceSimulatorOptions {
    fn default() -> Self {
        Self {
            consumer_key: "ck_sandbox_key".to_owned(),
            consumer_secret: "cs_sandbox_secret".to_owned(),
            webhook_secret: "sandbox_wc_webhook_secret".to_owned(),
            webhook_url: None,
            first_webhook_id: 11,
            webhook_delay_ms: 0,
            max_webhook_delivery_failures: 5,
            batch_limit: 100,
            failing_items: Vec::new(),
            waf_requests_per_sec: None,
            waf_burst: 10,
            latency_ms: 0,
            api_restock_default: false,
            deny_oversell: true,
            first_id: 1000,
            clock: clock::system(),
        }
    }
}

/// What the simulator has seen so far (for assertions and the demo).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WoocommerceCounters {
    /// Every `/wp-json` request, authorised or not.
    pub requests: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Requests answered by an injected failure or the WAF limit (429/503/5xx).
    pub throttled_or_failed: u64,
    /// Requests that arrived before the `Retry-After` of an earlier answer had passed.
    pub retry_after_violations: u64,
    /// Batch requests answered 200.
    pub batches: u64,
    /// Batch requests answered 413.
    pub batches_too_large: u64,
    /// Batch items applied.
    pub batch_items_applied: u64,
    /// Batch items failed (per-item error inside a 200).
    pub batch_items_failed: u64,
    /// Single-object PUTs applied.
    pub puts_applied: u64,
    /// Webhook deliveries that succeeded (200–302).
    pub webhooks_delivered: u64,
    /// Webhook deliveries that failed.
    pub webhooks_failed: u64,
    /// Deliveries not queued because one for the same webhook and order was pending.
    pub webhooks_coalesced: u64,
    /// Deliveries not sent because the webhook was disabled.
    pub webhooks_skipped_disabled: u64,
    /// Pings sent.
    pub pings: u64,
}

/// One line of a simulated order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrderLine {
    /// Product id (the parent for a variation).
    pub product_id: u64,
    /// Variation id, 0 for a simple product.
    #[serde(default)]
    pub variation_id: u64,
    /// Units ordered.
    pub quantity: u64,
}

/// A webhook as `GET /_sandbox/webhooks` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxWebhook {
    /// Webhook post id (`X-WC-Webhook-ID`).
    pub id: u64,
    /// `order.created` or `order.updated`.
    pub topic: String,
    /// `active` or `disabled`.
    pub status: String,
    /// Consecutive failures counted.
    pub failure_count: u32,
    /// Order ids with a delivery queued.
    pub pending: Vec<u64>,
}

/// One delivery attempt, as `GET /_sandbox/webhooks` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Webhook id.
    pub webhook_id: u64,
    /// Topic.
    pub topic: String,
    /// The order.
    pub order_id: u64,
    /// `X-WC-Webhook-Delivery-ID` sent.
    pub delivery_id: String,
    /// The order status in the body (built at send time).
    pub status_sent: String,
    /// HTTP status answered, `None` on transport failure.
    pub http_status: Option<u16>,
    /// Error text on transport failure.
    pub error: Option<String>,
}

/// One API request, as `GET /_sandbox/requests` lists them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SandboxRequest {
    /// Arrival, in milliseconds since the simulator started.
    pub at_ms: f64,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// HTTP status answered.
    pub status: u16,
}

/// An order the simulated shop holds, after a call.
#[derive(Clone, Debug, Serialize)]
pub struct SimOrder {
    /// Order id.
    pub order_id: u64,
    /// Line item ids, in line order.
    pub line_ids: Vec<u64>,
    /// The REST order resource now.
    pub body: Value,
}

/// Why a simulator call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimulatorError {
    /// No such product or variation.
    #[error("product {product_id} variation {variation_id} does not exist")]
    UnknownProduct {
        /// Product id.
        product_id: u64,
        /// Variation id (0: none).
        variation_id: u64,
    },
    /// Not enough managed stock and `deny_oversell` is on.
    #[error(
        "product {product_id} variation {variation_id} has {available} in stock, {requested} requested"
    )]
    InsufficientStock {
        /// Product id.
        product_id: u64,
        /// Variation id.
        variation_id: u64,
        /// Units in stock.
        available: i64,
        /// Units ordered.
        requested: u64,
    },
    /// No such order.
    #[error("order {order_id} does not exist")]
    UnknownOrder {
        /// Order id.
        order_id: u64,
    },
    /// No such line in the order.
    #[error("order {order_id} has no line {line_id}")]
    UnknownLine {
        /// Order id.
        order_id: u64,
        /// Line id.
        line_id: u64,
    },
    /// Not a WooCommerce order status.
    #[error("unknown order status {status:?}")]
    UnknownStatus {
        /// The status given.
        status: String,
    },
    /// A refund asks for more units of a line than are left to refund. WooCommerce answers
    /// it as `woocommerce_rest_cannot_create_order_refund` "Invalid refund amount."
    /// (`wc_create_refund` refuses an amount above what is left).
    #[error("order {order_id} line {line_id}: {requested} units asked, {remaining} left to refund")]
    RefundExceedsLine {
        /// Order id.
        order_id: u64,
        /// Line id.
        line_id: u64,
        /// Units asked for (over the refund's entries for the line).
        requested: u64,
        /// Units of the line not refunded yet.
        remaining: u64,
    },
    /// An edit would give the order more lines than the simulator keeps.
    #[error("order {order_id} would have more than {max} lines")]
    TooManyLines {
        /// Order id.
        order_id: u64,
        /// The limit.
        max: usize,
    },
}

pub use state::LineChange;

#[derive(Debug)]
struct WebhookState {
    id: u64,
    topic: &'static str,
    active: bool,
    failure_count: u32,
    pending: BTreeSet<u64>,
}

#[derive(Debug)]
struct Injected {
    status: u16,
    remaining: u32,
    retry_after_secs: Option<u64>,
    /// `Retry-After` as an HTTP-date (with a `Date` header) instead of delta-seconds.
    dated: bool,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct SimState {
    shop: ShopState,
    counters: WoocommerceCounters,
    webhooks: Vec<WebhookState>,
    webhook_url: Option<String>,
    in_flight: usize,
    deliveries: VecDeque<DeliveryRecord>,
    failing_items: BTreeSet<u64>,
    injected: VecDeque<Injected>,
    retry_after_until: Option<Instant>,
    waf_tokens: f64,
    waf_last: Instant,
    requests: VecDeque<SandboxRequest>,
}

/// Shared by the handle and the HTTP handlers.
#[derive(Debug)]
pub(crate) struct Inner {
    options: WoocommerceSimulatorOptions,
    site_url: String,
    started: Instant,
    state: Mutex<SimState>,
    client: reqwest::Client,
    clock: SharedClock,
}

impl Inner {
    /// Wall time now, from the injected clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a delivery of `topic` for `order_id` on every active webhook of that topic,
    /// unless one is pending for the same order (coalescing, §2.4).
    fn enqueue(self: &Arc<Self>, topic: &'static str, order_id: u64) {
        let mut queued = Vec::new();
        {
            let mut state = self.lock();
            if state.webhook_url.is_none() {
                return;
            }
            let SimState {
                webhooks, counters, ..
            } = &mut *state;
            for webhook in webhooks.iter_mut().filter(|webhook| webhook.topic == topic) {
                if !webhook.active {
                    counters.webhooks_skipped_disabled += 1;
                } else if !webhook.pending.insert(order_id) {
                    counters.webhooks_coalesced += 1;
                } else {
                    queued.push(webhook.id);
                }
            }
            state.in_flight += queued.len();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for webhook_id in queued {
            let inner = Arc::clone(self);
            runtime.spawn(async move {
                tokio::time::sleep(Duration::from_millis(inner.options.webhook_delay_ms)).await;
                inner.send_queued(webhook_id, topic, order_id).await;
            });
        }
    }

    /// Sends one queued delivery: the payload is built now, not when it was queued.
    async fn send_queued(&self, webhook_id: u64, topic: &'static str, order_id: u64) {
        let prepared = {
            let mut state = self.lock();
            if let Some(webhook) = state.webhooks.iter_mut().find(|w| w.id == webhook_id) {
                webhook.pending.remove(&order_id);
            }
            let url = state.webhook_url.clone();
            let body = state.shop.orders.get(&order_id).map(|order| {
                (
                    state.shop.order_json(order, &self.site_url),
                    order.status.clone(),
                )
            });
            match (url, body) {
                (Some(url), Some(body)) => Some((url, body)),
                _ => None,
            }
        };
        let Some((url, (body, status_sent))) = prepared else {
            self.lock().in_flight -= 1;
            return;
        };
        let delivery = webhook::Delivery {
            webhook_id,
            topic: topic.to_owned(),
            source: format!("{}/", self.site_url),
            secret: self.options.webhook_secret.clone(),
            delivery_id: delivery_id(webhook_id, self.now_ms() / 1000),
            body: serde_json::to_string(&body)
                .expect("a JSON value always serialises")
                .trim()
                .as_bytes()
                .to_vec(),
        };
        let result = webhook::deliver(&self.client, &url, &delivery).await;
        let mut state = self.lock();
        state.in_flight -= 1;
        let success = matches!(result, Ok(status) if is_success(status));
        if success {
            state.counters.webhooks_delivered += 1;
        } else {
            state.counters.webhooks_failed += 1;
        }
        let max = self.options.max_webhook_delivery_failures;
        if let Some(webhook) = state.webhooks.iter_mut().find(|w| w.id == webhook_id) {
            if success {
                webhook.failure_count = 0;
            } else if webhook.failure_count > max {
                webhook.active = false;
            } else {
                webhook.failure_count += 1;
            }
        }
        let (http_status, error) = match result {
            Ok(status) => (Some(status), None),
            Err(error) => (None, Some(error)),
        };
        if state.deliveries.len() >= LOG_MAX {
            state.deliveries.pop_front();
        }
        state.deliveries.push_back(DeliveryRecord {
            webhook_id,
            topic: topic.to_owned(),
            order_id,
            delivery_id: delivery.delivery_id,
            status_sent,
            http_status,
            error,
        });
    }

    fn order(&self, order_id: u64) -> Option<SimOrder> {
        let state = self.lock();
        let order = state.shop.orders.get(&order_id)?;
        Some(SimOrder {
            order_id,
            line_ids: order.lines.iter().map(|line| line.id).collect(),
            body: state.shop.order_json(order, &self.site_url),
        })
    }

    fn place_order(
        self: &Arc<Self>,
        lines: &[SimOrderLine],
        status: &str,
    ) -> Result<SimOrder, SimulatorError> {
        let id = self
            .lock()
            .shop
            .place_order(&self.options, lines, status, self.now_ms())?;
        self.enqueue("order.created", id);
        self.order(id)
            .ok_or(SimulatorError::UnknownOrder { order_id: id })
    }

    fn set_order_status(
        self: &Arc<Self>,
        order_id: u64,
        status: &str,
    ) -> Result<SimOrder, SimulatorError> {
        self.lock()
            .shop
            .set_status(&self.options, order_id, status, self.now_ms())?;
        self.enqueue("order.updated", order_id);
        self.order(order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })
    }

    fn refund(
        self: &Arc<Self>,
        order_id: u64,
        lines: &[(u64, u64)],
        api_restock: Option<bool>,
    ) -> Result<u64, SimulatorError> {
        self.refund_with_reason(order_id, lines, api_restock, "sandbox refund")
    }

    fn refund_with_reason(
        self: &Arc<Self>,
        order_id: u64,
        lines: &[(u64, u64)],
        api_restock: Option<bool>,
        reason: &str,
    ) -> Result<u64, SimulatorError> {
        let restock = api_restock.unwrap_or(self.options.api_restock_default);
        let id = self
            .lock()
            .shop
            .refund(order_id, lines, restock, reason, self.now_ms())?;
        self.enqueue("order.updated", order_id);
        Ok(id)
    }

    fn edit_lines(
        self: &Arc<Self>,
        order_id: u64,
        changes: &[LineChange],
    ) -> Result<SimOrder, SimulatorError> {
        self.lock()
            .shop
            .edit_lines(&self.options, order_id, changes, self.now_ms())?;
        self.enqueue("order.updated", order_id);
        self.order(order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })
    }

    async fn ping(&self) -> Vec<(u64, Result<u16, String>)> {
        let (url, ids) = {
            let mut state = self.lock();
            state.counters.pings += state.webhooks.len() as u64;
            (
                state.webhook_url.clone(),
                state.webhooks.iter().map(|w| w.id).collect::<Vec<_>>(),
            )
        };
        let Some(url) = url else {
            return Vec::new();
        };
        let mut answers = Vec::new();
        for id in ids {
            answers.push((id, webhook::ping(&self.client, &url, id).await));
        }
        answers
    }

    fn webhooks(&self) -> Vec<SandboxWebhook> {
        self.lock()
            .webhooks
            .iter()
            .map(|webhook| SandboxWebhook {
                id: webhook.id,
                topic: webhook.topic.to_owned(),
                status: if webhook.active { "active" } else { "disabled" }.to_owned(),
                failure_count: webhook.failure_count,
                pending: webhook.pending.iter().copied().collect(),
            })
            .collect()
    }

    fn enable_webhooks(&self) {
        for webhook in &mut self.lock().webhooks {
            webhook.active = true;
            webhook.failure_count = 0;
        }
    }

    fn inject_failures(&self, status: u16, count: u32, retry_after_secs: Option<u64>, dated: bool) {
        self.lock().injected.push_back(Injected {
            status,
            remaining: count,
            retry_after_secs,
            dated,
        });
    }
}

/// A running simulator. Dropping it (or [`shutdown`](Self::shutdown)) stops the server.
#[derive(Debug)]
pub struct WoocommerceSimulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Starts the simulator on a listener the caller bound (tests bind `127.0.0.1:0`).
///
/// Errors: the listener's local address cannot be read.
pub async fn start(
    options: WoocommerceSimulatorOptions,
    listener: tokio::net::TcpListener,
) -> std::io::Result<WoocommerceSimulator> {
    let addr = listener.local_addr()?;
    let now = Instant::now();
    let webhooks = ["order.created", "order.updated"]
        .into_iter()
        .enumerate()
        .map(|(offset, topic)| WebhookState {
            id: options.first_webhook_id + offset as u64,
            topic,
            active: true,
            failure_count: 0,
            pending: BTreeSet::new(),
        })
        .collect();
    let state = SimState {
        shop: ShopState::new(options.first_id),
        counters: WoocommerceCounters::default(),
        webhooks,
        webhook_url: options.webhook_url.clone(),
        in_flight: 0,
        deliveries: VecDeque::new(),
        failing_items: options.failing_items.iter().copied().collect(),
        injected: VecDeque::new(),
        retry_after_until: None,
        waf_tokens: f64::from(options.waf_burst.max(1)),
        waf_last: now,
        requests: VecDeque::new(),
    };
    let inner = Arc::new(Inner {
        site_url: format!("http://{addr}"),
        started: now,
        state: Mutex::new(state),
        clock: Arc::clone(&options.clock),
        options,
        client: reqwest::Client::new(),
    });
    let router = http::router(Arc::clone(&inner));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(error) = serve.await {
            tracing::warn!(error = %error, "woocommerce simulator server stopped with an error");
        }
    });
    Ok(WoocommerceSimulator {
        inner,
        addr,
        stop: Some(stop),
        server: Some(server),
    })
}

impl WoocommerceSimulator {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `woocommerce.site_url`.
    pub fn base_url(&self) -> String {
        self.inner.site_url.clone()
    }

    /// The options it runs with.
    pub fn options(&self) -> &WoocommerceSimulatorOptions {
        &self.inner.options
    }

    /// Creates or replaces a simple product; `stock: Some(n)` manages stock with `n`,
    /// `None` leaves stock unmanaged.
    pub fn set_product(&self, product_id: u64, sku: &str, stock: Option<i64>) {
        self.inner
            .lock()
            .shop
            .upsert_product(product_id, sku, stock, self.inner.now_ms());
    }

    /// Creates or replaces a variation (creating a variable parent if needed);
    /// `stock: None` means `manage_stock: "parent"` (stock held on the parent).
    pub fn set_variation(&self, product_id: u64, variation_id: u64, sku: &str, stock: Option<i64>) {
        self.inner.lock().shop.upsert_variation(
            product_id,
            variation_id,
            sku,
            stock,
            self.inner.now_ms(),
        );
    }

    /// Sets a product's own managed stock (`None`: unmanaged); false when it does not exist.
    pub fn set_product_stock(&self, product_id: u64, stock: Option<i64>) -> bool {
        self.inner
            .lock()
            .shop
            .set_product_stock(product_id, stock, self.inner.now_ms())
    }

    /// The managed stock a line of (product, variation) sells from: the variation's when it
    /// manages stock, the parent's for `"parent"`; `None` when nobody manages it.
    pub fn stock(&self, product_id: u64, variation_id: u64) -> Option<i64> {
        self.inner.lock().shop.stock_of(product_id, variation_id)
    }

    /// Every value the holder of (product, variation)'s stock took, oldest first.
    pub fn stock_history(&self, product_id: u64, variation_id: u64) -> Vec<i64> {
        let state = self.inner.lock();
        match state.shop.holder(product_id, variation_id) {
            Some(state::Holder::Product(id)) => state
                .shop
                .products
                .get(&id)
                .map(|p| p.history.clone())
                .unwrap_or_default(),
            Some(state::Holder::Variation(id)) => state
                .shop
                .variations
                .get(&id)
                .map(|v| v.history.clone())
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Takes an order in `status` (`pending`, `processing`, `on-hold`, `completed`, …): stock
    /// is reduced only for the reducing statuses; queues an `order.created` webhook.
    ///
    /// Errors: [`SimulatorError::UnknownProduct`], [`SimulatorError::InsufficientStock`],
    /// [`SimulatorError::UnknownStatus`].
    pub fn place_order(
        &self,
        lines: &[SimOrderLine],
        status: &str,
    ) -> Result<SimOrder, SimulatorError> {
        self.inner.place_order(lines, status)
    }

    /// Moves an order to `status` (reducing or restoring stock as core does) and queues an
    /// `order.updated` webhook.
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::UnknownStatus`],
    /// [`SimulatorError::InsufficientStock`].
    pub fn set_order_status(
        &self,
        order_id: u64,
        status: &str,
    ) -> Result<SimOrder, SimulatorError> {
        self.inner.set_order_status(order_id, status)
    }

    /// Refunds `(line id, units)` of an order; `api_restock` (`None`: the configured
    /// default) puts the units back in stock. Queues an `order.updated` webhook; returns
    /// the refund id.
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::UnknownLine`],
    /// [`SimulatorError::RefundExceedsLine`].
    pub fn refund(
        &self,
        order_id: u64,
        lines: &[(u64, u64)],
        api_restock: Option<bool>,
    ) -> Result<u64, SimulatorError> {
        self.inner.refund(order_id, lines, api_restock)
    }

    /// Changes an order's lines as an admin edit does (new quantities, removals with
    /// quantity 0, added lines); reduced stock follows the change. Queues an
    /// `order.updated` webhook (removed lines are gone from its `line_items`).
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::UnknownLine`],
    /// [`SimulatorError::UnknownProduct`], [`SimulatorError::InsufficientStock`],
    /// [`SimulatorError::TooManyLines`].
    pub fn edit_order_lines(
        &self,
        order_id: u64,
        changes: &[LineChange],
    ) -> Result<SimOrder, SimulatorError> {
        self.inner.edit_lines(order_id, changes)
    }

    /// The order now, `None` when unknown.
    pub fn order(&self, order_id: u64) -> Option<SimOrder> {
        self.inner.order(order_id)
    }

    /// Points webhooks at `url` (`None` stops them).
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.lock().webhook_url = url;
    }

    /// Sends the creation ping of every webhook (form-encoded `webhook_id=<id>`, no X-WC
    /// headers); returns each webhook's answer.
    pub async fn ping(&self) -> Vec<(u64, Result<u16, String>)> {
        self.inner.ping().await
    }

    /// The webhooks with their status and failure counters.
    pub fn webhooks(&self) -> Vec<SandboxWebhook> {
        self.inner.webhooks()
    }

    /// Re-enables disabled webhooks and clears their failure counters (the merchant's fix).
    pub fn enable_webhooks(&self) {
        self.inner.enable_webhooks();
    }

    /// Every delivery attempt so far, oldest first (capped).
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.lock().deliveries.iter().cloned().collect()
    }

    /// Waits until no delivery is queued or being sent; false after `timeout`.
    pub async fn wait_for_webhooks(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inner.lock().in_flight == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Makes product/variation `id` fail inside batches (and PUTs), or work again.
    pub fn set_failing(&self, id: u64, failing: bool) {
        let mut state = self.inner.lock();
        if failing {
            state.failing_items.insert(id);
        } else {
            state.failing_items.remove(&id);
        }
    }

    /// Answers the next `count` API requests with `status` (429, 503, 500, …), with
    /// `Retry-After: retry_after_secs` when given: a host or WAF burst (§2.5).
    pub fn inject_failures(&self, status: u16, count: u32, retry_after_secs: Option<u64>) {
        self.inner
            .inject_failures(status, count, retry_after_secs, false);
    }

    /// [`inject_failures`](Self::inject_failures) with `Retry-After` as an HTTP-date
    /// `retry_after_secs` after the answer's `Date` (both from the simulator's clock).
    pub fn inject_failures_dated(&self, status: u16, count: u32, retry_after_secs: u64) {
        self.inner
            .inject_failures(status, count, Some(retry_after_secs), true);
    }

    /// What the simulator has seen so far.
    pub fn counters(&self) -> WoocommerceCounters {
        self.inner.lock().counters.clone()
    }

    /// The API requests seen so far, oldest first (capped).
    pub fn requests(&self) -> Vec<SandboxRequest> {
        self.inner.lock().requests.iter().cloned().collect()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Runs until the server stops (for the standalone `sandbox` command).
    pub async fn wait(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for WoocommerceSimulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
