//! A faithful Amazon Selling Partner API simulator (PLATFORMS.md §4), served by axum
//! in-process (tests, demo, benchmarks) or standalone.
//!
//! Owns: the simulated selling-partner account (listings with their
//! `fulfillment_availability`, FBA stock, orders, feeds and their documents, LWA tokens,
//! per-operation token buckets, ORDER_CHANGE notifications) and the endpoints
//! - `POST /auth/o2/token` (§4 auth): `grant_type=refresh_token` form with `refresh_token`,
//!   `client_id`, `client_secret` → `{access_token, token_type: "bearer", expires_in,
//!   refresh_token}`; bad client → 401 `invalid_client`, bad refresh token → 400
//!   `invalid_grant`;
//! - `PATCH /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=…[&mode=VALIDATION_PREVIEW]`
//!   (§4.1): JSON Patch (`add`/`replace`/`merge`/`delete` on top-level `/attributes/…`,
//!   `productType` required) → 200 `{sku, status: "ACCEPTED", submissionId, issues: []}`,
//!   **applied `apply_delay_ms` later** (0: before the answer); refusals are 200 `INVALID`
//!   with ERROR issues; a malformed body is 400;
//! - `GET /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=…&includedData=fulfillmentAvailability,issues`;
//! - the Feeds flow of §4.2: `POST /feeds/2021-06-30/documents` → `{feedDocumentId, url}`
//!   where `url` is a pre-signed `PUT {base}/_upload/{id}` served here (no access token,
//!   the Content-Type must match); `POST /feeds/2021-06-30/feeds` → 202 `{feedId}` (at most
//!   `json_feeds_per_window` JSON_LISTINGS_FEEDs per `json_feed_window_ms`, else 429);
//!   `GET /feeds/2021-06-30/feeds/{id}` → `processingStatus` `IN_QUEUE` → `IN_PROGRESS` →
//!   `DONE` | `FATAL` over `feed_processing_ms`; `GET /feeds/2021-06-30/documents/{id}` →
//!   `{feedDocumentId, url}` of the processing report (`header`, `issues[]{messageId, sku,
//!   code, severity, message}`, `summary`), downloaded from `GET {base}/_download/{id}`;
//!   more than `feed_max_messages` (25,000) messages, or a document that is not JSON → FATAL;
//! - Orders API v0 (§4.3): `GET /orders/v0/orders?MarketplaceIds=…&LastUpdatedAfter=…`
//!   (`NextToken` pages) and `GET /orders/v0/orders/{id}/orderItems`;
//! - FBA inventory (§4.4): `GET /fba/inventory/v1/summaries?granularityType=Marketplace&granularityId=…&marketplaceIds=…&details=true[&sellerSkus=…][&startDateTime=…][&nextToken=…]`
//!   (`nextToken` expires after `next_token_ttl_ms`);
//! - `GET /_sandbox`: the index of every endpoint below (method, path, example body), built
//!   from the same table as the routes ([`crate::sandbox::index`]);
//! - `/_sandbox/listings` (GET, POST), `/_sandbox/listings/{sku}` (GET),
//!   `/_sandbox/listings/{sku}/fba` (POST), `/_sandbox/orders` (POST),
//!   `/_sandbox/orders/{id}/cancel` (POST; optional body `{"reason": "NoInventory",
//!   "items": [{"order_item_id", "quantity"}]}`: a seller cancellation of the whole order
//!   or of some open units; the ORDER_CHANGE notification has `OrderChangeType`
//!   `OrderStatusChange` and `OrderChangeTrigger.ChangeReason` = the reason code
//!   (`SellerCancelled` without one), items carry `OrderItemStatus`; a partial cancel
//!   lowers the item's `Quantity` / `QuantityOrdered` and leaves the order open),
//!   `/_sandbox/orders/{id}/ship`, `/_sandbox/notifications` (GET), `/_sandbox/counters` (GET).
//!   The reason codes are those of Amazon's seller cancellation (`NoInventory`,
//!   `BuyerCanceled`, `ShippingAddressUndeliverable`, `CustomerExchange`,
//!   `GeneralAdjustment`, …); which text Amazon puts in `ChangeReason` for a seller cancel
//!   is not documented ([?]; its published example is "Buyer Requested Cancel").
//!
//! Every SP-API call needs `x-amz-access-token` with a live token (403 `Unauthorized`
//! otherwise, also after expiry) and is admitted by its operation's token bucket (§4.5,
//! rates and bursts are knobs); over the limit it is 429 `QuotaExceeded` with
//! `x-amzn-RateLimit-Limit` and no `Retry-After`, as SP-API does. Every admitted answer
//! carries `x-amzn-RateLimit-Limit` too.
//!
//! Awkward parts kept (§4.6): `ACCEPTED` is not applied; a `DEFAULT` quantity patch on an
//! FBA SKU flips the offer to MFN or is refused (knob [`FbaDefaultPatch`]); Amazon
//! decrements an MFN listing's quantity when an order is placed (Pending included) and puts
//! it back when the order is cancelled; AFN orders take FBA stock only; ORDER_CHANGE
//! notifications are delivered at least once (`notification_copies`).
//!
//! Wall time (order, feed and stock timestamps) is read from the injected clock
//! ([`AmazonSimulatorOptions::clock`]); timing (token expiry, buckets, feed processing,
//! delayed patches) follows tokio's clock, so tests can drive both under paused time.
//!
//! May depend on: `clock` only (standalone otherwise).

pub mod demo;
mod http;
mod state;
#[cfg(test)]
mod tests;

use crate::clock::{self, SharedClock};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state::SimState;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A token bucket of one SP-API operation (§4.5).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests restored per second (sent back as `x-amzn-RateLimit-Limit`).
    pub requests_per_sec: f64,
    /// Bucket size.
    pub burst: u32,
}

impl RateLimit {
    const fn new(requests_per_sec: f64, burst: u32) -> Self {
        Self {
            requests_per_sec,
            burst,
        }
    }
}

/// The token buckets per operation; defaults are the documented per account-application
/// limits of PLATFORMS.md §4.1–§4.4.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimits {
    /// patchListingsItem: 5 req/s, burst 5.
    pub patch_listings_item: RateLimit,
    /// getListingsItem: 5 req/s, burst 5.
    pub get_listings_item: RateLimit,
    /// createFeedDocument: 0.5 req/s, burst 15.
    pub create_feed_document: RateLimit,
    /// createFeed: 0.0083 req/s, burst 15.
    pub create_feed: RateLimit,
    /// getFeed: 2 req/s, burst 15.
    pub get_feed: RateLimit,
    /// getFeedDocument: 0.0222 req/s, burst 10.
    pub get_feed_document: RateLimit,
    /// getOrders: 0.0167 req/s, burst 20.
    pub get_orders: RateLimit,
    /// getOrderItems: 0.5 req/s, burst 30.
    pub get_order_items: RateLimit,
    /// getInventorySummaries: 2 req/s, burst 2.
    pub get_inventory_summaries: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            patch_listings_item: RateLimit::new(5.0, 5),
            get_listings_item: RateLimit::new(5.0, 5),
            create_feed_document: RateLimit::new(0.5, 15),
            create_feed: RateLimit::new(0.0083, 15),
            get_feed: RateLimit::new(2.0, 15),
            get_feed_document: RateLimit::new(0.0222, 10),
            get_orders: RateLimit::new(0.0167, 20),
            get_order_items: RateLimit::new(0.5, 30),
            get_inventory_summaries: RateLimit::new(2.0, 2),
        }
    }
}

impl RateLimits {
    /// Every bucket at `requests_per_sec` with `burst` (tests that are not about throttling).
    pub fn generous(requests_per_sec: f64, burst: u32) -> Self {
        let limit = RateLimit::new(requests_per_sec, burst);
        Self {
            patch_listings_item: limit,
            get_listings_item: limit,
            create_feed_document: limit,
            create_feed: limit,
            get_feed: limit,
            get_feed_document: limit,
            get_orders: limit,
            get_order_items: limit,
            get_inventory_summaries: limit,
        }
    }
}

/// What a `DEFAULT` quantity patch does to an FBA SKU (§4.6 [?], §8: a knob).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FbaDefaultPatch {
    /// Accepted, and the offer silently becomes merchant-fulfilled (what integrators report).
    #[default]
    FlipToMfn,
    /// `INVALID` with an ERROR issue; nothing changes.
    Reject,
}

/// How an order is fulfilled (`FulfillmentChannel` / `FulfillmentType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Fulfilment {
    /// Merchant fulfilled: ships from our warehouse.
    Mfn,
    /// Amazon fulfilled (FBA): ships from Amazon's stock.
    Afn,
}

impl Fulfilment {
    /// `MFN` or `AFN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mfn => "MFN",
            Self::Afn => "AFN",
        }
    }
}

/// A listing the account starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimListing {
    /// The seller SKU.
    pub seller_sku: String,
    /// The DEFAULT (merchant) quantity; `None` when the listing has none yet.
    #[serde(default)]
    pub quantity: Option<u64>,
    /// Fulfilled by Amazon.
    #[serde(default)]
    pub fba: bool,
    /// FBA fulfillable units (only for FBA listings).
    #[serde(default)]
    pub fba_fulfillable: u64,
}

/// How the simulated account behaves; [?]/[3P] behaviours of §8 are knobs.
#[derive(Clone, Debug)]
pub struct AmazonSimulatorOptions {
    /// LWA client id accepted by the token endpoint.
    pub client_id: String,
    /// LWA client secret accepted by the token endpoint.
    pub client_secret: String,
    /// The refresh token accepted by the token endpoint.
    pub refresh_token: String,
    /// The seller id (merchant token) in listings paths.
    pub seller_id: String,
    /// The one marketplace of the account.
    pub marketplace_id: String,
    /// Access token lifetime, in seconds (LWA: 3600).
    pub token_ttl_secs: u64,
    /// Delay between `ACCEPTED` and the patch being applied, in milliseconds (0: applied
    /// before the answer is sent).
    pub apply_delay_ms: u64,
    /// Time from createFeed to `DONE`, in milliseconds (first half `IN_QUEUE`, second half
    /// `IN_PROGRESS`).
    pub feed_processing_ms: u64,
    /// Most messages in one JSON_LISTINGS_FEED (Amazon: 25,000); more → FATAL.
    pub feed_max_messages: usize,
    /// JSON_LISTINGS_FEED submissions per window (Amazon: 5 per 5 min).
    pub json_feeds_per_window: u32,
    /// The JSON feed window, in milliseconds (Amazon: 300,000).
    pub json_feed_window_ms: u64,
    /// Token buckets per operation.
    pub rate_limits: RateLimits,
    /// What a DEFAULT quantity patch does to an FBA SKU.
    pub fba_default_patch: FbaDefaultPatch,
    /// Seller SKUs whose stock patches are always refused (`INVALID` / feed ERROR issue).
    pub rejected_skus: Vec<String>,
    /// Orders per page of getOrders (Amazon: up to 100).
    pub orders_page_size: usize,
    /// Summaries per page of getInventorySummaries (Amazon: 50).
    pub inventory_page_size: usize,
    /// Lifetime of a getInventorySummaries `nextToken`, in milliseconds (Amazon: 30 s).
    pub next_token_ttl_ms: u64,
    /// Where ORDER_CHANGE notifications are POSTed (the SQS message body as JSON); `None`
    /// sends none (tests read them with [`AmazonSimulator::notifications`]).
    pub notification_url: Option<String>,
    /// Deliveries of each notification (SQS is at least once; 2 duplicates every one).
    pub notification_copies: u32,
    /// Listings the account starts with.
    pub listings: Vec<SimListing>,
    /// Where wall time comes from (order, feed and stock timestamps); the system clock by
    /// default, a [`TokioClock`](crate::clock::TokioClock) in paused-time tests.
    pub clock: SharedClock,
}

impl Default for AmazonSimulatorOptions {
    fn default() -> Self {
        Self {
            client_id: "amzn1.application-oa2-client.sandbox".to_owned(),
            client_secret: "sandbox-secret".to_owned(),
            refresh_token: "Atzr|sandbox".to_owned(),
            seller_id: "A2SANDBOXSELLER".to_owned(),
            marketplace_id: "A1805IZSGTT6HS".to_owned(),
            token_ttl_secs: 3600,
            apply_delay_ms: 50,
            feed_processing_ms: 100,
            feed_max_messages: 25_000,
            json_feeds_per_window: 5,
            json_feed_window_ms: 300_000,
            rate_limits: RateLimits::default(),
            fba_default_patch: FbaDefaultPatch::FlipToMfn,
            rejected_skus: Vec::new(),
            orders_page_size: 100,
            inventory_page_size: 50,
            next_token_ttl_ms: 30_000,
            notification_url: None,
            notification_copies: 1,
            listings: Vec::new(),
            clock: clock::system(),
        }
    }
}

/// What the simulator has seen so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AmazonCounters {
    /// Every token and SP-API request (uploads and downloads excluded).
    pub requests: u64,
    /// Requests refused for a missing, unknown or expired access token (403), and token
    /// requests with bad credentials.
    pub unauthorized: u64,
    /// Requests answered 429 (QuotaExceeded), JSON feed budget included.
    pub throttled: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Listings PATCHes admitted.
    pub patches_received: u64,
    /// Listings PATCHes answered `ACCEPTED`.
    pub patches_accepted: u64,
    /// Listings PATCHes answered `INVALID` or 400.
    pub patches_invalid: u64,
    /// Patches (single or feed message) applied to a listing.
    pub patches_applied: u64,
    /// DEFAULT quantity patches aimed at an FBA SKU (single or feed), whatever the knob did.
    pub fba_default_patches: u64,
    /// FBA offers flipped to MFN by such a patch.
    pub fba_flipped_to_mfn: u64,
    /// createFeedDocument calls answered.
    pub feed_documents_created: u64,
    /// Documents uploaded to a pre-signed URL.
    pub feed_documents_uploaded: u64,
    /// createFeed calls accepted.
    pub feeds_created: u64,
    /// createFeed calls refused by the JSON feed budget.
    pub json_feed_quota_exceeded: u64,
    /// Feeds that ended DONE.
    pub feeds_done: u64,
    /// Feeds that ended FATAL.
    pub feeds_fatal: u64,
    /// Feed messages accepted.
    pub feed_messages_accepted: u64,
    /// Feed messages with an ERROR issue.
    pub feed_messages_invalid: u64,
    /// getOrders calls.
    pub order_list_reads: u64,
    /// getOrderItems calls.
    pub order_item_reads: u64,
    /// getInventorySummaries calls.
    pub inventory_summary_reads: u64,
    /// Notification deliveries that got a 2xx.
    pub notifications_delivered: u64,
    /// Notification deliveries that failed (non-2xx or no answer).
    pub notifications_failed: u64,
    /// Answers replaced by an injected failure.
    pub injected_failures: u64,
}

/// One listing as the inspection calls show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxListing {
    /// The seller SKU.
    pub seller_sku: String,
    /// The DEFAULT quantity now, if any.
    pub quantity: Option<i64>,
    /// Whether the offer is fulfilled by Amazon now (a DEFAULT patch may have flipped it).
    pub fba: bool,
    /// The `fulfillment_availability` attribute as stored.
    pub fulfillment_availability: Value,
    /// FBA fulfillable units.
    pub fba_fulfillable: u64,
    /// Every DEFAULT quantity applied by a patch or feed, oldest first.
    pub history: Vec<u64>,
    /// Accepted patches not applied yet.
    pub pending_patches: usize,
}

/// One order line to place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrderLine {
    /// The seller SKU ordered.
    pub seller_sku: String,
    /// Units.
    pub quantity: u64,
}

/// An order placed on the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    /// `AmazonOrderId` (`3-7-7` digits).
    pub amazon_order_id: String,
    /// `OrderItemId`s, in line order.
    pub order_item_ids: Vec<String>,
}

/// Why a sandbox call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimulatorError {
    /// Unknown listing, order or item, or a bad quantity or state.
    #[error("{0}")]
    Invalid(String),
}

/// Shared by the handle and the HTTP handlers.
#[derive(Debug)]
pub(crate) struct Inner {
    options: AmazonSimulatorOptions,
    /// Where notifications go when set after start ([`AmazonSimulator::set_notification_url`]);
    /// overrides `options.notification_url`.
    notification_url: Mutex<Option<String>>,
    state: Mutex<SimState>,
    base_url: String,
    client: reqwest::Client,
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
        state.advance(&self.options, Instant::now(), self.now_ms());
        state
    }

    /// Sends the ORDER_CHANGE notifications queued by the state (outside the lock).
    fn deliver(self: &Arc<Self>, notifications: Vec<Value>) {
        let url = self
            .notification_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .or_else(|| self.options.notification_url.clone());
        let Some(url) = url else {
            return;
        };
        for notification in notifications {
            for _ in 0..self.options.notification_copies.max(1) {
                let inner = Arc::clone(self);
                let url = url.clone();
                let body = notification.to_string();
                tokio::spawn(async move {
                    let answer = inner
                        .client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let delivered = answer.is_ok_and(|answer| answer.status().is_success());
                    let mut state = inner.lock();
                    if delivered {
                        state.counters.notifications_delivered += 1;
                    } else {
                        state.counters.notifications_failed += 1;
                    }
                });
            }
        }
    }

    pub(crate) fn place_order(
        self: &Arc<Self>,
        fulfilment: Fulfilment,
        lines: &[SimOrderLine],
    ) -> Result<PlacedOrder, SimulatorError> {
        let (placed, notification) = self
            .lock()
            .place_order(&self.options, fulfilment, lines, self.now_ms())
            .map_err(SimulatorError::Invalid)?;
        self.deliver(vec![notification]);
        Ok(placed)
    }

    pub(crate) fn cancel_order(
        self: &Arc<Self>,
        order_id: &str,
        reason: Option<&str>,
        items: &[(String, u64)],
    ) -> Result<(), SimulatorError> {
        let notification = self
            .lock()
            .cancel_order(&self.options, order_id, reason, items, self.now_ms())
            .map_err(SimulatorError::Invalid)?;
        self.deliver(vec![notification]);
        Ok(())
    }

    pub(crate) fn ship(self: &Arc<Self>, order_id: &str) -> Result<(), SimulatorError> {
        let notification = self
            .lock()
            .ship(&self.options, order_id, None, self.now_ms())
            .map_err(SimulatorError::Invalid)?;
        self.deliver(vec![notification]);
        Ok(())
    }

    pub(crate) fn ship_item(
        self: &Arc<Self>,
        order_id: &str,
        order_item_id: &str,
        quantity: u64,
    ) -> Result<(), SimulatorError> {
        let notification = self
            .lock()
            .ship(
                &self.options,
                order_id,
                Some((order_item_id, quantity)),
                self.now_ms(),
            )
            .map_err(SimulatorError::Invalid)?;
        self.deliver(vec![notification]);
        Ok(())
    }

    pub(crate) fn request_cancellation(
        self: &Arc<Self>,
        order_id: &str,
        order_item_id: &str,
    ) -> Result<(), SimulatorError> {
        let notification = self
            .lock()
            .request_cancellation(&self.options, order_id, order_item_id, self.now_ms())
            .map_err(SimulatorError::Invalid)?;
        self.deliver(vec![notification]);
        Ok(())
    }
}

/// `2030-01-01T10:00:00Z`-style UTC time of milliseconds since the epoch (SP-API dates).
pub(crate) fn iso8601(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Milliseconds since the epoch of an SP-API date (`…Z`), `None` when unreadable.
pub(crate) fn parse_iso8601(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|elapsed| elapsed.as_millis() as i64)
}

/// A running simulator. Dropping it (or [`shutdown`](Self::shutdown)) stops the server.
#[derive(Debug)]
pub struct AmazonSimulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Starts the simulator on a listener the caller bound (tests bind `127.0.0.1:0`).
///
/// Errors: the listener's local address cannot be read.
pub async fn start(
    options: AmazonSimulatorOptions,
    listener: tokio::net::TcpListener,
) -> std::io::Result<AmazonSimulator> {
    let addr = listener.local_addr()?;
    let inner = Arc::new(Inner {
        state: Mutex::new(SimState::new(
            &options,
            Instant::now(),
            options.clock.now_ms(),
        )),
        clock: Arc::clone(&options.clock),
        notification_url: Mutex::new(None),
        options,
        base_url: format!("http://{addr}"),
        client: reqwest::Client::new(),
    });
    let router = http::router(Arc::clone(&inner));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(error) = serve.await {
            tracing::warn!(error = %error, "amazon simulator server stopped with an error");
        }
    });
    Ok(AmazonSimulator {
        inner,
        addr,
        stop: Some(stop),
        server: Some(server),
    })
}

impl AmazonSimulator {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `amazon.api_url`.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/auth/o2/token`, the value for `amazon.token_url`.
    pub fn token_url(&self) -> String {
        format!("{}/auth/o2/token", self.inner.base_url)
    }

    /// The options it runs with.
    pub fn options(&self) -> &AmazonSimulatorOptions {
        &self.inner.options
    }

    /// Creates (or replaces) a listing.
    pub fn add_listing(&self, listing: SimListing) {
        self.inner.lock().add_listing(&listing, self.inner.now_ms());
    }

    /// One listing, `None` when it does not exist.
    pub fn listing(&self, seller_sku: &str) -> Option<SandboxListing> {
        self.inner.lock().sandbox_listing(seller_sku)
    }

    /// Every listing, by seller SKU.
    pub fn listings(&self) -> Vec<SandboxListing> {
        let state = self.inner.lock();
        state
            .listings
            .keys()
            .filter_map(|sku| state.sandbox_listing(sku))
            .collect()
    }

    /// The DEFAULT quantity of a listing now (what a buyer sees for MFN).
    pub fn quantity(&self, seller_sku: &str) -> Option<i64> {
        self.listing(seller_sku)?.quantity
    }

    /// Sets an FBA listing's fulfillable units (Amazon received or lost stock); its
    /// `lastUpdatedTime` moves to now.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown listing.
    pub fn set_fba_fulfillable(&self, seller_sku: &str, units: u64) -> Result<(), SimulatorError> {
        self.inner
            .lock()
            .set_fba_fulfillable(seller_sku, units, self.inner.now_ms())
            .map_err(SimulatorError::Invalid)
    }

    /// Places an order with status `Unshipped`: MFN lines decrement the listings' DEFAULT
    /// quantity (§4.6), AFN lines take FBA fulfillable units; an ORDER_CHANGE is sent.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown listing, no lines or a zero quantity.
    pub fn place_order(
        &self,
        fulfilment: Fulfilment,
        lines: &[SimOrderLine],
    ) -> Result<PlacedOrder, SimulatorError> {
        self.inner.place_order(fulfilment, lines)
    }

    /// Cancels an order (`Canceled`): unshipped MFN units go back on the listings.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown or fully shipped order.
    pub fn cancel_order(&self, order_id: &str) -> Result<(), SimulatorError> {
        self.inner.cancel_order(order_id, None, &[])
    }

    /// A seller cancellation with a reason code (`NoInventory`, `BuyerCanceled`,
    /// `ShippingAddressUndeliverable`, `CustomerExchange`, `GeneralAdjustment`, …) of the
    /// whole order (`items` empty) or of `(OrderItemId, units)` of some items: their
    /// `Quantity` / `QuantityOrdered` drops by the cancelled units, an item with none left
    /// is `OrderItemStatus: Canceled`, an order with none left is `Canceled`. The
    /// ORDER_CHANGE notification carries the reason as `OrderChangeTrigger.ChangeReason`.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown or shipped order, an unknown
    /// item, or more units than are open.
    pub fn cancel_order_with_reason(
        &self,
        order_id: &str,
        reason: &str,
        items: &[(String, u64)],
    ) -> Result<(), SimulatorError> {
        self.inner.cancel_order(order_id, Some(reason), items)
    }

    /// Ships every unshipped unit of an order (`Shipped`).
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown or cancelled order.
    pub fn ship(&self, order_id: &str) -> Result<(), SimulatorError> {
        self.inner.ship(order_id)
    }

    /// Ships `quantity` units of one item (`PartiallyShipped` until all are shipped).
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown item or more than is open.
    pub fn ship_item(
        &self,
        order_id: &str,
        order_item_id: &str,
        quantity: u64,
    ) -> Result<(), SimulatorError> {
        self.inner.ship_item(order_id, order_item_id, quantity)
    }

    /// The buyer asks to cancel one item (`BuyerRequestedChange`,
    /// `IsBuyerRequestedCancel: true`); the order is otherwise unchanged.
    ///
    /// Errors: [`SimulatorError::Invalid`] for an unknown order or item.
    pub fn request_cancellation(
        &self,
        order_id: &str,
        order_item_id: &str,
    ) -> Result<(), SimulatorError> {
        self.inner.request_cancellation(order_id, order_item_id)
    }

    /// Sends ORDER_CHANGE notifications to `url` from now on (standing in for the SQS
    /// queue's consumer), instead of `options.notification_url`; `None` goes back to it.
    pub fn set_notification_url(&self, url: Option<String>) {
        *self
            .inner
            .notification_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url;
    }

    /// Every ORDER_CHANGE notification generated so far (one per change, before
    /// duplication), oldest first: what the SQS queue received.
    pub fn notifications(&self) -> Vec<Value> {
        self.inner.lock().notifications.clone()
    }

    /// Makes every issued access token invalid (the next call gets 403), as if they expired.
    pub fn expire_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// While on, every token and SP-API call answers 503 (an outage).
    pub fn set_outage(&self, outage: bool) {
        self.inner.lock().outage = outage;
    }

    /// The next `count` listings PATCHes answer `status` (a 5xx) without effect.
    pub fn fail_next_patches(&self, count: usize, status: u16) {
        self.inner
            .lock()
            .fail_next
            .extend(std::iter::repeat_n(status, count));
    }

    /// Delays every SP-API answer by `delay_ms` (to provoke client timeouts).
    pub fn set_response_delay_ms(&self, delay_ms: u64) {
        self.inner.lock().response_delay_ms = delay_ms;
    }

    /// Refuses (or stops refusing) every stock patch of a seller SKU.
    pub fn set_rejected(&self, seller_sku: &str, rejected: bool) {
        let mut state = self.inner.lock();
        if rejected {
            state.rejected.insert(seller_sku.to_owned());
        } else {
            state.rejected.remove(seller_sku);
        }
    }

    /// Milliseconds since start of every admitted-or-throttled listings PATCH, for
    /// rate-budget checks.
    pub fn patch_request_offsets_ms(&self) -> Vec<u64> {
        self.inner.lock().patch_offsets_ms.clone()
    }

    /// What the simulator has seen so far.
    pub fn counters(&self) -> AmazonCounters {
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

impl Drop for AmazonSimulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
