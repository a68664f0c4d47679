//! A faithful bol.com Retailer API v10 simulator (PLATFORMS.md §3), served by axum
//! in-process (tests, demo, benchmarks) or standalone.
//!
//! Owns: the simulated retailer account (offers, asynchronous process statuses, orders,
//! returns, OAuth2 tokens, per-endpoint rate windows) and the endpoints
//! - `POST /token` (§3.1): client credentials with Basic auth → `{access_token,
//!   token_type: "Bearer", expires_in, scope: "RETAILER"}`;
//! - `PUT /retailer/offers/{offerId}/stock` `{amount, managedByRetailer}` (§3.3) → **202**
//!   with a PENDING ProcessStatus; applied (or failed / timed out) `process_delay_ms` later;
//!   `amount` > `max_amount` → 400 with a violation; unknown offer → 404;
//! - `GET /shared/process-status/{id}` (§3.4);
//! - `GET /retailer/offers/{offerId}`: `stock{amount, correctedStock, managedByRetailer}`,
//!   where `correctedStock` subtracts all open FBR orders (`managedByRetailer: false`) or
//!   only those placed after the last stock update (`true`);
//! - `GET /retailer/orders?fulfilment-method=FBR|FBB|ALL&status=OPEN|ALL&page=N` and
//!   `GET /retailer/orders/{orderId}` (§3.5);
//! - `GET /retailer/returns?handled=false&fulfilment-method=FBR&page=N`;
//! - `GET /_sandbox`: the index of every endpoint below (method, path, example body), built
//!   from the same table as the routes ([`crate::sandbox::index`]);
//! - `/_sandbox/offers` (GET, POST), `/_sandbox/orders` (POST), `/_sandbox/order-items/{id}/cancel`,
//!   `/_sandbox/returns` (POST), `/_sandbox/process-status` (GET), `/_sandbox/counters` (GET).
//!
//! Every `/retailer` and `/shared` call needs a valid bearer (401 otherwise, also after
//! expiry) and `Accept: application/vnd.retailer.v10+json` (406), plus the same
//! `Content-Type` when it has a body (415). Every answer carries `x-ratelimit-limit`,
//! `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds) of its endpoint group (token,
//! stock, process status, reads); over the limit it is 429 with `Retry-After` (seconds).
//! Requests arriving before an earlier `Retry-After` has passed are counted.
//!
//! Awkward parts kept (§3.8): two stock updates in flight for one offer are counted in
//! `overlapping_updates` and, with `reorder_concurrent_updates`, the newer is applied first
//! so the older amount wins, as bol may do.
//!
//! Wall time (order, return and offer timestamps) is read from the injected clock
//! ([`BolcomSimulatorOptions::clock`]); timing (token expiry, rate windows, process
//! delays) follows tokio's clock, so tests can drive both under paused time.
//!
//! May depend on: `clock` only (standalone otherwise).

pub mod demo;
mod http;
mod state;
#[cfg(test)]
mod tests;

use crate::clock::{self, SharedClock};
use serde::{Deserialize, Serialize};
use state::SimState;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// The media type of every Retailer API v10 call (§3).
pub const MEDIA_TYPE: &str = "application/vnd.retailer.v10+json";

/// A fixed-window rate limit of one endpoint group (bol's limits are per endpoint and not
/// published, §3.7, so they are knobs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window, in milliseconds.
    pub window_ms: u64,
}

/// How a stock update's process status ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessOutcome {
    /// Applied.
    Success,
    /// Refused; the stock is unchanged.
    Failure,
    /// Not processed in time; the stock is unchanged.
    Timeout,
}

/// An offer the account starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOffer {
    /// Offer id (UUID-like).
    pub offer_id: String,
    /// The retailer's reference (our SKU).
    pub reference: String,
    /// EAN of the product.
    pub ean: String,
    /// Initial stock amount.
    #[serde(default)]
    pub amount: u64,
}

/// How the simulated account behaves; [?]/[3P] behaviours of §8 are knobs.
#[derive(Clone, Debug)]
pub struct BolcomSimulatorOptions {
    /// OAuth2 client id accepted by `POST /token`.
    pub client_id: String,
    /// OAuth2 client secret accepted by `POST /token`.
    pub client_secret: String,
    /// Token lifetime, in seconds (bol: 299).
    pub token_ttl_secs: u64,
    /// Delay before a stock update leaves PENDING, in milliseconds.
    pub process_delay_ms: u64,
    /// How stock updates end unless the offer is in `failing_offers`.
    pub process_outcome: ProcessOutcome,
    /// Offers whose stock updates always end in FAILURE.
    pub failing_offers: Vec<String>,
    /// Largest `amount` accepted (999 commonly cited, §3.3 [?]).
    pub max_amount: u64,
    /// Apply a newer concurrent update of one offer before an older one (§3.8).
    pub reorder_concurrent_updates: bool,
    /// Require the v10 media type headers.
    pub require_media_type: bool,
    /// Limit of `POST /token`.
    pub token_limit: EndpointLimit,
    /// Limit of `PUT /retailer/offers/{id}/stock`.
    pub stock_limit: EndpointLimit,
    /// Limit of `GET /shared/process-status/{id}`.
    pub process_status_limit: EndpointLimit,
    /// Limit of the reads (offers, orders, returns).
    pub read_limit: EndpointLimit,
    /// Orders per page of `GET /retailer/orders` (bol: 50).
    pub orders_page_size: usize,
    /// Offers the account starts with.
    pub offers: Vec<SimOffer>,
    /// Where wall time comes from (order, return and offer timestamps); the system clock by
    /// default, a [`TokioClock`](crate::clock::TokioClock) in paused-time tests.
    pub clock: SharedClock,
}

impl Default for BolcomSimulatorOptions {
    fn default() -> Self {
        Self {
            client_id: "sandbox-client".to_owned(),
            client_secret: "sandbox-secret".to_owned(),
            token_ttl_secs: 299,
            process_delay_ms: 50,
            process_outcome: ProcessOutcome::Success,
            failing_offers: Vec::new(),
            max_amount: 999,
            reorder_concurrent_updates: true,
            require_media_type: true,
            token_limit: EndpointLimit {
                requests: 20,
                window_ms: 60_000,
            },
            stock_limit: EndpointLimit {
                requests: 25,
                window_ms: 1_000,
            },
            process_status_limit: EndpointLimit {
                requests: 100,
                window_ms: 1_000,
            },
            read_limit: EndpointLimit {
                requests: 25,
                window_ms: 1_000,
            },
            orders_page_size: 50,
            offers: Vec::new(),
            clock: clock::system(),
        }
    }
}

/// What the simulator has seen so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BolcomCounters {
    /// Every `/token`, `/retailer` and `/shared` request.
    pub requests: u64,
    /// Requests answered 401 (no, unknown or expired bearer; bad client credentials).
    pub unauthorized: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests that arrived before an earlier `Retry-After` of their group had passed.
    pub retry_after_violations: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Stock updates answered 202.
    pub stock_updates_received: u64,
    /// Stock updates applied (SUCCESS).
    pub stock_updates_applied: u64,
    /// Stock updates that ended FAILURE or TIMEOUT.
    pub stock_updates_failed: u64,
    /// Stock updates received while another one of the same offer was still PENDING.
    pub overlapping_updates: u64,
    /// Stock updates refused with 400 (amount out of range, bad body).
    pub stock_updates_invalid: u64,
    /// Requests refused for a missing media type (406/415).
    pub media_type_errors: u64,
    /// Requests answered with an injected 5xx.
    pub injected_failures: u64,
    /// `GET /shared/process-status/{id}` calls.
    pub process_status_reads: u64,
    /// `GET /retailer/orders` list calls.
    pub order_list_reads: u64,
    /// `GET /retailer/returns` calls.
    pub return_list_reads: u64,
}

/// One offer as `GET /_sandbox/offers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxOffer {
    /// Offer id.
    pub offer_id: String,
    /// Our SKU.
    pub reference: String,
    /// EAN.
    pub ean: String,
    /// `stock.amount`.
    pub amount: u64,
    /// `stock.correctedStock`.
    pub corrected_stock: i64,
    /// `stock.managedByRetailer`.
    pub managed_by_retailer: bool,
    /// Every amount applied, oldest first.
    pub history: Vec<u64>,
}

/// One order line to place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrderLine {
    /// The offer ordered.
    pub offer_id: String,
    /// Units.
    pub quantity: u64,
}

/// An order placed on the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    /// bol order id.
    pub order_id: String,
    /// Order item ids, in line order.
    pub order_item_ids: Vec<String>,
}

/// Why a sandbox call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimulatorError {
    /// Unknown offer, order item or bad quantity.
    #[error("{0}")]
    Invalid(String),
}

/// Shared by the handle and the HTTP handlers.
#[derive(Debug)]
pub(crate) struct Inner {
    options: BolcomSimulatorOptions,
    state: Mutex<SimState>,
    clock: SharedClock,
}

impl Inner {
    /// Wall time now, from the injected clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.advance(Instant::now(), self.now_ms());
        state
    }
}

impl Inner {
    /// Places an order (`method` `FBR` or `FBB`); bol does not change `amount`, the order
    /// shows in `correctedStock` and in `GET /retailer/orders`.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown offer or a zero quantity.
    pub(crate) fn place_order(
        &self,
        method: &str,
        lines: &[SimOrderLine],
    ) -> Result<PlacedOrder, SimulatorError> {
        let lines: Vec<(String, u64)> = lines
            .iter()
            .map(|line| (line.offer_id.clone(), line.quantity))
            .collect();
        let order = self
            .lock()
            .place_order(method, &lines, self.now_ms())
            .map_err(SimulatorError::Invalid)?;
        Ok(PlacedOrder {
            order_id: order.order_id,
            order_item_ids: order
                .items
                .into_iter()
                .map(|item| item.order_item_id)
                .collect(),
        })
    }

    /// bol cancels `quantity` more units of an order item (`quantityCancelled` rises).
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item or more than is open.
    pub(crate) fn cancel_item(
        &self,
        order_item_id: &str,
        quantity: u64,
    ) -> Result<(), SimulatorError> {
        let mut state = self.lock();
        let item = state.find_item_mut(order_item_id).ok_or_else(|| {
            SimulatorError::Invalid(format!("order item {order_item_id} does not exist"))
        })?;
        let open = item.quantity - item.quantity_shipped - item.quantity_cancelled;
        if quantity == 0 || quantity > open {
            return Err(SimulatorError::Invalid(format!(
                "cannot cancel {quantity} of {open} open units"
            )));
        }
        item.quantity_cancelled += quantity;
        item.changed_ms = self.now_ms();
        Ok(())
    }

    /// The customer asks to cancel an order item (`cancellationRequest: true`).
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item.
    pub(crate) fn request_cancellation(&self, order_item_id: &str) -> Result<(), SimulatorError> {
        let mut state = self.lock();
        let item = state.find_item_mut(order_item_id).ok_or_else(|| {
            SimulatorError::Invalid(format!("order item {order_item_id} does not exist"))
        })?;
        item.cancellation_request = true;
        item.changed_ms = self.now_ms();
        Ok(())
    }

    /// Marks `quantity` units of an order item shipped.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item or more than is open.
    pub(crate) fn ship_item(
        &self,
        order_item_id: &str,
        quantity: u64,
    ) -> Result<(), SimulatorError> {
        let mut state = self.lock();
        let item = state.find_item_mut(order_item_id).ok_or_else(|| {
            SimulatorError::Invalid(format!("order item {order_item_id} does not exist"))
        })?;
        let open = item.quantity - item.quantity_shipped - item.quantity_cancelled;
        if quantity == 0 || quantity > open {
            return Err(SimulatorError::Invalid(format!(
                "cannot ship {quantity} of {open} open units"
            )));
        }
        item.quantity_shipped += quantity;
        item.changed_ms = self.now_ms();
        Ok(())
    }

    /// The customer registers a return of `quantity` units of an order item; returns the
    /// rma id.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item.
    pub(crate) fn register_return(
        &self,
        order_item_id: &str,
        quantity: u64,
    ) -> Result<String, SimulatorError> {
        let mut state = self.lock();
        let order = state.order_item_order(order_item_id).ok_or_else(|| {
            SimulatorError::Invalid(format!("order item {order_item_id} does not exist"))
        })?;
        let order_id = order.order_id.clone();
        let item = order
            .items
            .iter()
            .find(|item| item.order_item_id == order_item_id)
            .cloned()
            .ok_or_else(|| SimulatorError::Invalid("order item vanished".to_owned()))?;
        state.next_id += 1;
        let return_id = state.next_id;
        state.next_id += 1;
        let rma_id = state.next_id;
        state.returns.push(state::ReturnItem {
            return_id,
            rma_id,
            order_id,
            ean: item.ean,
            quantity,
            method: item.method,
            handled: false,
            registered_ms: self.now_ms(),
        });
        Ok(rma_id.to_string())
    }
}

/// A running simulator. Dropping it (or [`shutdown`](Self::shutdown)) stops the server.
#[derive(Debug)]
pub struct BolcomSimulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Starts the simulator on a listener the caller bound (tests bind `127.0.0.1:0`).
///
/// Errors: the listener's local address cannot be read.
pub async fn start(
    options: BolcomSimulatorOptions,
    listener: tokio::net::TcpListener,
) -> std::io::Result<BolcomSimulator> {
    let addr = listener.local_addr()?;
    let inner = Arc::new(Inner {
        state: Mutex::new(SimState::new(&options, Instant::now())),
        clock: Arc::clone(&options.clock),
        options,
    });
    let router = http::router(Arc::clone(&inner));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(error) = serve.await {
            tracing::warn!(error = %error, "bol.com simulator server stopped with an error");
        }
    });
    Ok(BolcomSimulator {
        inner,
        addr,
        stop: Some(stop),
        server: Some(server),
    })
}

impl BolcomSimulator {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `bolcom.api_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/token`, the value for `bolcom.token_url`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The options it runs with.
    pub fn options(&self) -> &BolcomSimulatorOptions {
        &self.inner.options
    }

    /// Creates (or replaces) an offer.
    pub fn add_offer(&self, offer: SimOffer) {
        self.inner.lock().offers.insert(
            offer.offer_id.clone(),
            state::Offer {
                offer_id: offer.offer_id,
                reference: offer.reference,
                ean: offer.ean,
                amount: offer.amount,
                managed_by_retailer: false,
                updated_at_ms: 0,
                updated_seq: 0,
                history: Vec::new(),
            },
        );
    }

    /// One offer's stock, `None` when it does not exist.
    pub fn offer(&self, offer_id: &str) -> Option<SandboxOffer> {
        let state = self.inner.lock();
        state
            .offers
            .get(offer_id)
            .map(|offer| sandbox_offer(&state, offer))
    }

    /// Every offer, by offer id.
    pub fn offers(&self) -> Vec<SandboxOffer> {
        let state = self.inner.lock();
        state
            .offers
            .values()
            .map(|offer| sandbox_offer(&state, offer))
            .collect()
    }

    /// Places an order (`method` `FBR` or `FBB`); bol does not change `amount`, the order
    /// shows in `correctedStock` and in `GET /retailer/orders`.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown offer or a zero quantity.
    pub fn place_order(
        &self,
        method: &str,
        lines: &[SimOrderLine],
    ) -> Result<PlacedOrder, SimulatorError> {
        self.inner.place_order(method, lines)
    }

    /// bol cancels `quantity` more units of an order item (`quantityCancelled` rises).
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item or more than is open.
    pub fn cancel_item(&self, order_item_id: &str, quantity: u64) -> Result<(), SimulatorError> {
        self.inner.cancel_item(order_item_id, quantity)
    }

    /// The customer asks to cancel an order item (`cancellationRequest: true`).
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item.
    pub fn request_cancellation(&self, order_item_id: &str) -> Result<(), SimulatorError> {
        self.inner.request_cancellation(order_item_id)
    }

    /// Marks `quantity` units of an order item shipped.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item or more than is open.
    pub fn ship_item(&self, order_item_id: &str, quantity: u64) -> Result<(), SimulatorError> {
        self.inner.ship_item(order_item_id, quantity)
    }

    /// The customer registers a return of `quantity` units of an order item; returns the
    /// rma id.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item.
    pub fn register_return(
        &self,
        order_item_id: &str,
        quantity: u64,
    ) -> Result<String, SimulatorError> {
        self.inner.register_return(order_item_id, quantity)
    }

    /// Makes every issued token invalid (the next call gets 401), as if they expired.
    pub fn expire_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// While on, every API call answers 503 (an outage).
    pub fn set_outage(&self, outage: bool) {
        self.inner.lock().outage = outage;
    }

    /// The next `count` stock PUTs answer `status` (a 5xx) without effect.
    pub fn fail_next_stock_updates(&self, count: usize, status: u16) {
        self.inner
            .lock()
            .fail_next
            .extend(std::iter::repeat_n(status, count));
    }

    /// Delays every stock PUT answer by `delay_ms` (to provoke client timeouts).
    pub fn set_response_delay_ms(&self, delay_ms: u64) {
        self.inner.lock().response_delay_ms = delay_ms;
    }

    /// Sets how stock updates of one offer end (`None` restores the default outcome).
    pub fn set_offer_outcome(&self, offer_id: &str, outcome: Option<ProcessOutcome>) {
        let mut state = self.inner.lock();
        match outcome {
            Some(outcome) => state.outcome_override.insert(offer_id.to_owned(), outcome),
            None => state.outcome_override.remove(offer_id),
        };
    }

    /// Milliseconds since start of every stock PUT received (authorised ones, throttled or
    /// not), for rate-budget checks.
    pub fn stock_request_offsets_ms(&self) -> Vec<u64> {
        self.inner.lock().stock_request_offsets_ms.clone()
    }

    /// What the simulator has seen so far.
    pub fn counters(&self) -> BolcomCounters {
        self.inner.lock().counters.clone()
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

impl Drop for BolcomSimulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn sandbox_offer(state: &SimState, offer: &state::Offer) -> SandboxOffer {
    SandboxOffer {
        offer_id: offer.offer_id.clone(),
        reference: offer.reference.clone(),
        ean: offer.ean.clone(),
        amount: offer.amount,
        corrected_stock: state.corrected_stock(offer),
        managed_by_retailer: offer.managed_by_retailer,
        history: offer.history.clone(),
    }
}

/// The token lifetime as a duration.
fn token_ttl(options: &BolcomSimulatorOptions) -> Duration {
    Duration::from_secs(options.token_ttl_secs)
}
