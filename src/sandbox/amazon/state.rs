//! The simulated Amazon selling-partner account: listings and their JSON Patch semantics,
//! asynchronous application, feeds and documents, orders, FBA stock, tokens, token buckets
//! and ORDER_CHANGE notifications (PLATFORMS.md §4). Pure state driven by the HTTP handlers
//! and the handle; time is passed in.

use super::{
    AmazonCounters, AmazonSimulatorOptions, FbaDefaultPatch, Fulfilment, PlacedOrder, RateLimit,
    SandboxListing, SimListing, SimOrderLine, iso8601,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use tokio::time::{Duration, Instant};

/// The stock attribute (§4.1).
pub(crate) const FULFILLMENT_AVAILABILITY: &str = "fulfillment_availability";
/// Most request offsets remembered.
const OFFSETS_MAX: usize = 100_000;
/// Most applied quantities remembered per listing.
const HISTORY_MAX: usize = 1_000;

/// FBA stock of a listing (§4.4).
#[derive(Clone, Debug, Default)]
pub(crate) struct FbaStock {
    pub fulfillable: u64,
    /// Units on open AFN orders (`pendingCustomerOrderQuantity`).
    pub reserved: u64,
    pub updated_ms: i64,
}

/// One listing.
#[derive(Clone, Debug)]
pub(crate) struct Listing {
    pub seller_sku: String,
    pub asin: String,
    /// Fulfilled by Amazon now.
    pub fba: bool,
    /// Top-level attributes (`fulfillment_availability` among them).
    pub attributes: BTreeMap<String, Value>,
    /// FBA stock, for listings that were created as FBA.
    pub fba_stock: Option<FbaStock>,
    pub history: Vec<u64>,
}

impl Listing {
    /// The DEFAULT (merchant) quantity.
    pub fn default_quantity(&self) -> Option<i64> {
        self.attributes
            .get(FULFILLMENT_AVAILABILITY)?
            .as_array()?
            .iter()
            .find(|entry| entry["fulfillment_channel_code"] == "DEFAULT")?["quantity"]
            .as_i64()
    }

    fn set_default_quantity(&mut self, quantity: i64) {
        let entries = self
            .attributes
            .entry(FULFILLMENT_AVAILABILITY.to_owned())
            .or_insert_with(|| json!([]));
        if let Some(entries) = entries.as_array_mut()
            && let Some(entry) = entries
                .iter_mut()
                .find(|entry| entry["fulfillment_channel_code"] == "DEFAULT")
        {
            entry["quantity"] = json!(quantity);
        }
    }
}

/// An accepted patch waiting to be applied.
#[derive(Clone, Debug)]
pub(crate) struct PendingPatch {
    pub due: Instant,
    pub seq: u64,
    pub seller_sku: String,
    pub patches: Vec<Value>,
}

/// A feed document (input uploaded by the seller, or a processing report).
#[derive(Clone, Debug)]
pub(crate) struct Document {
    pub content_type: String,
    pub content: Option<Vec<u8>>,
}

/// One feed.
#[derive(Clone, Debug)]
pub(crate) struct Feed {
    pub feed_id: String,
    pub feed_type: String,
    pub document_id: String,
    pub created: Instant,
    pub created_ms: i64,
    /// `None` while processing; `DONE` / `FATAL` afterwards.
    pub outcome: Option<&'static str>,
    pub result_document_id: Option<String>,
    pub done_ms: Option<i64>,
}

/// One order item.
#[derive(Clone, Debug)]
pub(crate) struct OrderItem {
    pub order_item_id: String,
    pub seller_sku: String,
    pub quantity: u64,
    pub shipped: u64,
    /// Units the seller cancelled (a partial cancel leaves the rest open).
    pub canceled: u64,
    pub buyer_cancel: bool,
}

impl OrderItem {
    /// Units neither shipped nor cancelled.
    pub fn open(&self) -> u64 {
        self.quantity
            .saturating_sub(self.shipped)
            .saturating_sub(self.canceled)
    }

    /// The units still on the order after seller cancellations.
    pub fn current_quantity(&self) -> u64 {
        self.quantity.saturating_sub(self.canceled)
    }

    /// `QuantityOrdered` / `Quantity` as reported: lowered by a partial seller cancel; a
    /// cancelled order keeps its items' quantities (its status says it all).
    pub fn reported_quantity(&self, order_canceled: bool) -> u64 {
        if order_canceled {
            self.quantity
        } else {
            self.current_quantity()
        }
    }

    /// `OrderItemStatus` of the ORDER_CHANGE item.
    pub fn status(&self, order_canceled: bool) -> &'static str {
        if order_canceled || self.current_quantity() == 0 {
            "Canceled"
        } else if self.shipped >= self.current_quantity() {
            "Shipped"
        } else if self.shipped > 0 {
            "PartiallyShipped"
        } else {
            "Unshipped"
        }
    }
}

/// One order.
#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub order_id: String,
    pub fulfilment: Fulfilment,
    pub canceled: bool,
    /// The seller's cancellation reason (`NoInventory`, `BuyerCanceled`, …), last given.
    pub cancel_reason: Option<String>,
    pub purchase_ms: i64,
    pub last_update_ms: i64,
    pub items: Vec<OrderItem>,
}

impl Order {
    /// `OrderStatus` (§4.3).
    pub fn status(&self) -> &'static str {
        let ordered: u64 = self.items.iter().map(OrderItem::current_quantity).sum();
        let shipped: u64 = self.items.iter().map(|item| item.shipped).sum();
        if self.canceled || ordered == 0 {
            "Canceled"
        } else if shipped >= ordered {
            "Shipped"
        } else if shipped > 0 {
            "PartiallyShipped"
        } else {
            "Unshipped"
        }
    }

    fn shipped_and_unshipped(&self) -> (u64, u64) {
        let shipped: u64 = self.items.iter().map(|item| item.shipped).sum();
        let unshipped = if self.canceled {
            0
        } else {
            self.items.iter().map(OrderItem::open).sum()
        };
        (shipped, unshipped)
    }
}

/// The SP-API operations with their own token bucket (§4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Operation {
    PatchListingsItem,
    GetListingsItem,
    CreateFeedDocument,
    CreateFeed,
    GetFeed,
    GetFeedDocument,
    GetOrders,
    GetOrderItems,
    GetInventorySummaries,
}

/// A token bucket.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    pub limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Takes a token if one is there.
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.limit.requests_per_sec)
            .min(f64::from(self.limit.burst.max(1)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A getInventorySummaries continuation.
#[derive(Clone, Debug)]
pub(crate) struct SummaryCursor {
    pub issued: Instant,
    pub offset: usize,
    pub start_ms: Option<i64>,
    pub seller_skus: Option<Vec<String>>,
}

/// A getOrders continuation.
#[derive(Clone, Debug)]
pub(crate) struct OrderCursor {
    pub after_ms: i64,
    pub offset: usize,
}

/// One ERROR issue of a patch or feed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub code: &'static str,
    pub message: String,
}

impl Issue {
    pub fn json(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "severity": "ERROR",
            "attributeNames": [FULFILLMENT_AVAILABILITY],
        })
    }
}

/// The whole simulated account.
#[derive(Debug)]
pub(crate) struct SimState {
    pub listings: BTreeMap<String, Listing>,
    pub pending: Vec<PendingPatch>,
    pub documents: HashMap<String, Document>,
    pub feeds: BTreeMap<String, Feed>,
    pub json_feed_times: VecDeque<Instant>,
    pub orders: BTreeMap<String, Order>,
    pub tokens: HashMap<String, Instant>,
    pub buckets: HashMap<Operation, Bucket>,
    pub summary_cursors: HashMap<String, SummaryCursor>,
    pub order_cursors: HashMap<String, OrderCursor>,
    pub counters: AmazonCounters,
    pub next_id: u64,
    pub outage: bool,
    pub fail_next: Vec<u16>,
    pub response_delay_ms: u64,
    pub rejected: HashSet<String>,
    pub started: Instant,
    pub patch_offsets_ms: Vec<u64>,
    pub notifications: Vec<Value>,
}

impl SimState {
    pub fn new(options: &AmazonSimulatorOptions, now: Instant, now_ms: i64) -> Self {
        let limits = &options.rate_limits;
        let buckets = [
            (Operation::PatchListingsItem, limits.patch_listings_item),
            (Operation::GetListingsItem, limits.get_listings_item),
            (Operation::CreateFeedDocument, limits.create_feed_document),
            (Operation::CreateFeed, limits.create_feed),
            (Operation::GetFeed, limits.get_feed),
            (Operation::GetFeedDocument, limits.get_feed_document),
            (Operation::GetOrders, limits.get_orders),
            (Operation::GetOrderItems, limits.get_order_items),
            (
                Operation::GetInventorySummaries,
                limits.get_inventory_summaries,
            ),
        ]
        .into_iter()
        .map(|(operation, limit)| (operation, Bucket::new(limit, now)))
        .collect();
        let mut state = Self {
            listings: BTreeMap::new(),
            pending: Vec::new(),
            documents: HashMap::new(),
            feeds: BTreeMap::new(),
            json_feed_times: VecDeque::new(),
            orders: BTreeMap::new(),
            tokens: HashMap::new(),
            buckets,
            summary_cursors: HashMap::new(),
            order_cursors: HashMap::new(),
            counters: AmazonCounters::default(),
            next_id: 1_000,
            outage: false,
            fail_next: Vec::new(),
            response_delay_ms: 0,
            rejected: options.rejected_skus.iter().cloned().collect(),
            started: now,
            patch_offsets_ms: Vec::new(),
            notifications: Vec::new(),
        };
        for listing in &options.listings {
            state.add_listing(listing, now_ms);
        }
        state
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn add_listing(&mut self, listing: &SimListing, now_ms: i64) {
        let mut entries = Vec::new();
        if listing.fba {
            entries.push(json!({"fulfillment_channel_code": "AMAZON_EU"}));
        }
        if let Some(quantity) = listing.quantity {
            entries.push(json!({"fulfillment_channel_code": "DEFAULT", "quantity": quantity}));
        }
        let mut attributes = BTreeMap::new();
        if !entries.is_empty() {
            attributes.insert(FULFILLMENT_AVAILABILITY.to_owned(), Value::Array(entries));
        }
        let id = self.next_id();
        self.listings.insert(
            listing.seller_sku.clone(),
            Listing {
                seller_sku: listing.seller_sku.clone(),
                asin: format!("B0SANDBOX{id:03}"),
                fba: listing.fba,
                attributes,
                fba_stock: listing.fba.then_some(FbaStock {
                    fulfillable: listing.fba_fulfillable,
                    reserved: 0,
                    updated_ms: now_ms,
                }),
                history: Vec::new(),
            },
        );
    }

    pub fn sandbox_listing(&self, seller_sku: &str) -> Option<SandboxListing> {
        let listing = self.listings.get(seller_sku)?;
        Some(SandboxListing {
            seller_sku: listing.seller_sku.clone(),
            quantity: listing.default_quantity(),
            fba: listing.fba,
            fulfillment_availability: listing
                .attributes
                .get(FULFILLMENT_AVAILABILITY)
                .cloned()
                .unwrap_or(Value::Null),
            fba_fulfillable: listing
                .fba_stock
                .as_ref()
                .map_or(0, |stock| stock.fulfillable),
            history: listing.history.clone(),
            pending_patches: self
                .pending
                .iter()
                .filter(|patch| patch.seller_sku == seller_sku)
                .count(),
        })
    }

    pub fn set_fba_fulfillable(
        &mut self,
        seller_sku: &str,
        units: u64,
        now_ms: i64,
    ) -> Result<(), String> {
        let stock = self
            .listings
            .get_mut(seller_sku)
            .and_then(|listing| listing.fba_stock.as_mut())
            .ok_or_else(|| format!("{seller_sku} is not an FBA listing"))?;
        stock.fulfillable = units;
        stock.updated_ms = now_ms;
        Ok(())
    }

    pub fn issue_token(&mut self, ttl: Duration, now: Instant) -> String {
        let token = format!("Atza|sandbox.{}", uuid::Uuid::new_v4().simple());
        self.tokens.insert(token.clone(), now + ttl);
        self.counters.tokens_issued += 1;
        token
    }

    pub fn token_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens.get(token).is_some_and(|until| now < *until)
    }

    pub fn record_patch_request(&mut self, now: Instant) {
        if self.patch_offsets_ms.len() < OFFSETS_MAX {
            let offset = now.saturating_duration_since(self.started).as_millis() as u64;
            self.patch_offsets_ms.push(offset);
        }
    }

    /// Applies due patches (in acceptance order) and finishes due feeds.
    pub fn advance(&mut self, options: &AmazonSimulatorOptions, now: Instant, now_ms: i64) {
        if self.pending.iter().any(|patch| patch.due <= now) {
            let mut due: Vec<PendingPatch> = Vec::new();
            self.pending.retain(|patch| {
                if patch.due <= now {
                    due.push(patch.clone());
                    false
                } else {
                    true
                }
            });
            due.sort_by_key(|patch| (patch.due, patch.seq));
            for patch in due {
                self.apply(&patch.seller_sku, &patch.patches, options);
            }
        }
        let processing = Duration::from_millis(options.feed_processing_ms);
        let due: Vec<String> = self
            .feeds
            .values()
            .filter(|feed| feed.outcome.is_none() && feed.created + processing <= now)
            .map(|feed| feed.feed_id.clone())
            .collect();
        for feed_id in due {
            self.process_feed(&feed_id, options, now_ms);
        }
    }

    /// Checks a PATCH's patches against the listing; the first ERROR issue refuses it.
    /// Counts DEFAULT patches aimed at FBA SKUs.
    pub fn validate(
        &mut self,
        seller_sku: &str,
        product_type: Option<&str>,
        patches: &Value,
        options: &AmazonSimulatorOptions,
    ) -> Result<Vec<Value>, Issue> {
        if product_type.is_none_or(|product_type| product_type.trim().is_empty()) {
            return Err(Issue {
                code: "4000004",
                message: "productType is required.".to_owned(),
            });
        }
        let Some(patches) = patches.as_array().filter(|patches| !patches.is_empty()) else {
            return Err(Issue {
                code: "4000005",
                message: "patches must be a non-empty array.".to_owned(),
            });
        };
        let Some(listing) = self.listings.get(seller_sku) else {
            return Err(Issue {
                code: "4000001",
                message: format!("The SKU {seller_sku} does not exist for this seller."),
            });
        };
        let fba = listing.fba;
        for patch in patches {
            let op = patch["op"].as_str().unwrap_or_default();
            if !matches!(op, "add" | "replace" | "merge" | "delete") {
                return Err(Issue {
                    code: "4000006",
                    message: format!("Unsupported patch operation {op:?}."),
                });
            }
            let path = patch["path"].as_str().unwrap_or_default();
            let Some(attribute) = path.strip_prefix("/attributes/") else {
                return Err(Issue {
                    code: "4000007",
                    message: format!("Patch path {path:?} must start with /attributes/."),
                });
            };
            if attribute.is_empty() || attribute.contains('/') {
                return Err(Issue {
                    code: "4000008",
                    message: "Only top-level attributes can be patched.".to_owned(),
                });
            }
            if attribute != FULFILLMENT_AVAILABILITY || op == "delete" {
                continue;
            }
            let Some(entries) = patch["value"].as_array() else {
                return Err(Issue {
                    code: "4000009",
                    message: "fulfillment_availability must be an array.".to_owned(),
                });
            };
            for entry in entries {
                if entry["fulfillment_channel_code"] != "DEFAULT" {
                    continue;
                }
                if !entry["quantity"].is_null() && entry["quantity"].as_u64().is_none() {
                    return Err(Issue {
                        code: "4000010",
                        message: "quantity must be an integer of at least 0.".to_owned(),
                    });
                }
                if self.rejected.contains(seller_sku) {
                    return Err(Issue {
                        code: "90220",
                        message: format!(
                            "The offer of {seller_sku} cannot be updated (sandbox: refused SKU)."
                        ),
                    });
                }
                if fba {
                    self.counters.fba_default_patches += 1;
                    if options.fba_default_patch == FbaDefaultPatch::Reject {
                        return Err(Issue {
                            code: "90244",
                            message: format!(
                                "{seller_sku} is fulfilled by Amazon; a DEFAULT quantity is not allowed."
                            ),
                        });
                    }
                }
            }
        }
        Ok(patches.clone())
    }

    /// Applies validated patches to a listing (JSON Patch on top-level attributes; `merge`
    /// of `fulfillment_availability` merges entries by `fulfillment_channel_code`).
    pub fn apply(&mut self, seller_sku: &str, patches: &[Value], options: &AmazonSimulatorOptions) {
        let Some(listing) = self.listings.get_mut(seller_sku) else {
            return;
        };
        let mut default_set = None;
        for patch in patches {
            let op = patch["op"].as_str().unwrap_or_default();
            let attribute = patch["path"]
                .as_str()
                .and_then(|path| path.strip_prefix("/attributes/"))
                .unwrap_or_default()
                .to_owned();
            let value = patch["value"].clone();
            if attribute == FULFILLMENT_AVAILABILITY
                && op != "delete"
                && let Some(entries) = value.as_array()
            {
                default_set = entries
                    .iter()
                    .find(|entry| entry["fulfillment_channel_code"] == "DEFAULT")
                    .and_then(|entry| entry["quantity"].as_u64())
                    .or(default_set);
            }
            match op {
                "delete" => {
                    listing.attributes.remove(&attribute);
                }
                "merge" if attribute == FULFILLMENT_AVAILABILITY => {
                    let current = listing
                        .attributes
                        .entry(attribute)
                        .or_insert_with(|| json!([]));
                    merge_entries(current, &value);
                }
                _ => {
                    listing.attributes.insert(attribute, value);
                }
            }
        }
        self.counters.patches_applied += 1;
        if let Some(quantity) = default_set {
            listing.history.push(quantity);
            if listing.history.len() > HISTORY_MAX {
                listing.history.remove(0);
            }
            if listing.fba && options.fba_default_patch == FbaDefaultPatch::FlipToMfn {
                listing.fba = false;
                if let Some(entries) = listing
                    .attributes
                    .get_mut(FULFILLMENT_AVAILABILITY)
                    .and_then(Value::as_array_mut)
                {
                    entries.retain(|entry| entry["fulfillment_channel_code"] == "DEFAULT");
                }
                self.counters.fba_flipped_to_mfn += 1;
            }
        }
    }

    /// Queues an accepted patch (or applies it at once when the delay is 0).
    pub fn accept(
        &mut self,
        seller_sku: &str,
        patches: Vec<Value>,
        options: &AmazonSimulatorOptions,
        now: Instant,
    ) {
        if options.apply_delay_ms == 0 {
            self.apply(seller_sku, &patches, options);
            return;
        }
        let seq = self.next_id();
        self.pending.push(PendingPatch {
            due: now + Duration::from_millis(options.apply_delay_ms),
            seq,
            seller_sku: seller_sku.to_owned(),
            patches,
        });
    }

    /// Counts a JSON_LISTINGS_FEED submission against the window; `false` when over budget.
    pub fn take_json_feed_slot(&mut self, options: &AmazonSimulatorOptions, now: Instant) -> bool {
        let window = Duration::from_millis(options.json_feed_window_ms);
        while self
            .json_feed_times
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            self.json_feed_times.pop_front();
        }
        if self.json_feed_times.len() >= options.json_feeds_per_window as usize {
            return false;
        }
        self.json_feed_times.push_back(now);
        true
    }

    /// `IN_QUEUE`, `IN_PROGRESS`, `DONE` or `FATAL`.
    pub fn feed_status(
        &self,
        feed: &Feed,
        options: &AmazonSimulatorOptions,
        now: Instant,
    ) -> &'static str {
        if let Some(outcome) = feed.outcome {
            return outcome;
        }
        let half = Duration::from_millis(options.feed_processing_ms / 2);
        if now < feed.created + half {
            "IN_QUEUE"
        } else {
            "IN_PROGRESS"
        }
    }

    fn store_report(&mut self, report: Value) -> String {
        let id = format!("amzn1.tortuga.4.eu.{}", uuid::Uuid::new_v4().simple());
        self.documents.insert(
            id.clone(),
            Document {
                content_type: "application/json".to_owned(),
                content: Some(report.to_string().into_bytes()),
            },
        );
        id
    }

    fn process_feed(&mut self, feed_id: &str, options: &AmazonSimulatorOptions, now_ms: i64) {
        let Some(feed) = self.feeds.get(feed_id).cloned() else {
            return;
        };
        let content = self
            .documents
            .get(&feed.document_id)
            .and_then(|document| document.content.clone());
        let parsed = content
            .as_deref()
            .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok());
        let fatal = |reason: &str| {
            json!({
                "header": {"sellerId": options.seller_id, "version": "2.0", "feedId": feed_id},
                "issues": [{"code": "FATAL", "severity": "ERROR", "message": reason}],
                "summary": {"errors": 1, "warnings": 0, "messagesProcessed": 0,
                            "messagesAccepted": 0, "messagesInvalid": 0},
            })
        };
        let (outcome, report) = match (feed.feed_type.as_str(), parsed) {
            ("JSON_LISTINGS_FEED", Some(document)) => {
                let messages = document["messages"].as_array().cloned().unwrap_or_default();
                if messages.len() > options.feed_max_messages {
                    (
                        "FATAL",
                        fatal(&format!(
                            "The feed has {} messages; at most {} are allowed.",
                            messages.len(),
                            options.feed_max_messages
                        )),
                    )
                } else {
                    ("DONE", self.process_messages(feed_id, &messages, options))
                }
            }
            ("JSON_LISTINGS_FEED", None) => (
                "FATAL",
                fatal("The feed document is missing or is not valid JSON."),
            ),
            _ => (
                "FATAL",
                fatal("Legacy XML and flat-file feeds are no longer processed."),
            ),
        };
        let result_document_id = self.store_report(report);
        if outcome == "DONE" {
            self.counters.feeds_done += 1;
        } else {
            self.counters.feeds_fatal += 1;
        }
        if let Some(stored) = self.feeds.get_mut(feed_id) {
            stored.outcome = Some(outcome);
            stored.result_document_id = Some(result_document_id);
            stored.done_ms = Some(now_ms);
        }
    }

    fn process_messages(
        &mut self,
        feed_id: &str,
        messages: &[Value],
        options: &AmazonSimulatorOptions,
    ) -> Value {
        let mut issues = Vec::new();
        let mut accepted = 0_u64;
        for message in messages {
            let message_id = message["messageId"].as_u64().unwrap_or(0);
            let sku = message["sku"].as_str().unwrap_or_default().to_owned();
            let operation = message["operationType"].as_str().unwrap_or_default();
            let checked = if matches!(operation, "PATCH" | "PARTIAL_UPDATE") {
                self.validate(
                    &sku,
                    message["productType"].as_str(),
                    &message["patches"],
                    options,
                )
            } else {
                Err(Issue {
                    code: "4000011",
                    message: format!("operationType {operation:?} is not supported here."),
                })
            };
            match checked {
                Ok(patches) => {
                    self.apply(&sku, &patches, options);
                    accepted += 1;
                }
                Err(issue) => {
                    let mut json = issue.json();
                    json["messageId"] = json!(message_id);
                    json["sku"] = json!(sku);
                    issues.push(json);
                }
            }
        }
        let invalid = messages.len() as u64 - accepted;
        self.counters.feed_messages_accepted += accepted;
        self.counters.feed_messages_invalid += invalid;
        json!({
            "header": {"sellerId": options.seller_id, "version": "2.0", "feedId": feed_id},
            "issues": issues,
            "summary": {
                "errors": invalid,
                "warnings": 0,
                "messagesProcessed": messages.len(),
                "messagesAccepted": accepted,
                "messagesInvalid": invalid,
            },
        })
    }

    /// A new `3-7-7` order id.
    fn order_id(&mut self) -> String {
        let id = self.next_id();
        format!("40{:01}-{:07}-{:07}", id % 10, id * 7 % 10_000_000, id)
    }

    pub fn place_order(
        &mut self,
        options: &AmazonSimulatorOptions,
        fulfilment: Fulfilment,
        lines: &[SimOrderLine],
        now_ms: i64,
    ) -> Result<(PlacedOrder, Value), String> {
        if lines.is_empty() {
            return Err("an order needs at least one line".to_owned());
        }
        for line in lines {
            let listing = self
                .listings
                .get(&line.seller_sku)
                .ok_or_else(|| format!("listing {} does not exist", line.seller_sku))?;
            if line.quantity == 0 {
                return Err("quantities must be at least 1".to_owned());
            }
            if fulfilment == Fulfilment::Afn {
                let available = listing.fba_stock.as_ref().map_or(0, |s| s.fulfillable);
                if available < line.quantity {
                    return Err(format!(
                        "{} has {available} FBA units, {} ordered",
                        line.seller_sku, line.quantity
                    ));
                }
            }
        }
        let order_id = self.order_id();
        let mut items = Vec::new();
        for line in lines {
            let item_id = format!("{:014}", self.next_id() * 1_000_003);
            let listing = self.listings.get_mut(&line.seller_sku).expect("checked");
            match fulfilment {
                Fulfilment::Mfn => {
                    if let Some(quantity) = listing.default_quantity() {
                        listing.set_default_quantity((quantity - line.quantity as i64).max(0));
                    }
                }
                Fulfilment::Afn => {
                    if let Some(stock) = listing.fba_stock.as_mut() {
                        stock.fulfillable -= line.quantity;
                        stock.reserved += line.quantity;
                        stock.updated_ms = now_ms;
                    }
                }
            }
            items.push(OrderItem {
                order_item_id: item_id,
                seller_sku: line.seller_sku.clone(),
                quantity: line.quantity,
                shipped: 0,
                canceled: 0,
                buyer_cancel: false,
            });
        }
        let order = Order {
            order_id: order_id.clone(),
            fulfilment,
            canceled: false,
            cancel_reason: None,
            purchase_ms: now_ms,
            last_update_ms: now_ms,
            items,
        };
        let placed = PlacedOrder {
            amazon_order_id: order_id.clone(),
            order_item_ids: order
                .items
                .iter()
                .map(|item| item.order_item_id.clone())
                .collect(),
        };
        self.orders.insert(order_id.clone(), order);
        let notification = self.notify(options, &order_id, "OrderStatusChange", "NewOrder", now_ms);
        Ok((placed, notification))
    }

    /// A seller cancellation with `reason` (`NoInventory`, `BuyerCanceled`,
    /// `ShippingAddressUndeliverable`, `CustomerExchange`, `GeneralAdjustment`, …): of the
    /// whole order when `items` is empty (`Canceled`), else of some open units of some
    /// items (their `Quantity` drops; an order left with no units is `Canceled`). Cancelled
    /// MFN units go back on the listing, AFN units back to fulfillable. The ORDER_CHANGE
    /// notification carries the reason as `OrderChangeTrigger.ChangeReason`.
    pub fn cancel_order(
        &mut self,
        options: &AmazonSimulatorOptions,
        order_id: &str,
        reason: Option<&str>,
        items: &[(String, u64)],
        now_ms: i64,
    ) -> Result<Value, String> {
        let order = self
            .orders
            .get(order_id)
            .ok_or_else(|| format!("order {order_id} does not exist"))?;
        if order.canceled || order.status() == "Shipped" {
            return Err(format!("order {order_id} is {}", order.status()));
        }
        // (item index, units)
        let mut cancel: Vec<(usize, u64)> = Vec::new();
        if items.is_empty() {
            for (index, item) in order.items.iter().enumerate() {
                cancel.push((index, item.open()));
            }
        } else {
            for (item_id, units) in items {
                let index = order
                    .items
                    .iter()
                    .position(|item| item.order_item_id == *item_id)
                    .ok_or_else(|| format!("order item {item_id} does not exist"))?;
                let already: u64 = cancel
                    .iter()
                    .filter(|(i, _)| *i == index)
                    .map(|(_, units)| *units)
                    .sum();
                let open = order.items[index].open().saturating_sub(already);
                if *units == 0 || *units > open {
                    return Err(format!(
                        "cannot cancel {units} of {open} open units of item {item_id}"
                    ));
                }
                cancel.push((index, *units));
            }
        }
        let fulfilment = order.fulfilment;
        let order = self.orders.get_mut(order_id).expect("found above");
        let mut released = Vec::new();
        for (index, units) in &cancel {
            let item = &mut order.items[*index];
            item.canceled += units;
            released.push((item.seller_sku.clone(), *units));
        }
        if items.is_empty() || order.items.iter().all(|item| item.current_quantity() == 0) {
            order.canceled = true;
        }
        order.cancel_reason = reason.map(str::to_owned);
        order.last_update_ms = now_ms;
        for (sku, open) in released {
            let Some(listing) = self.listings.get_mut(&sku) else {
                continue;
            };
            match fulfilment {
                Fulfilment::Mfn => {
                    if let Some(quantity) = listing.default_quantity() {
                        listing.set_default_quantity(quantity + open as i64);
                    }
                }
                Fulfilment::Afn => {
                    if let Some(stock) = listing.fba_stock.as_mut() {
                        stock.reserved -= open.min(stock.reserved);
                        stock.fulfillable += open;
                        stock.updated_ms = now_ms;
                    }
                }
            }
        }
        Ok(self.notify(
            options,
            order_id,
            "OrderStatusChange",
            reason.unwrap_or("SellerCancelled"),
            now_ms,
        ))
    }

    pub fn ship(
        &mut self,
        options: &AmazonSimulatorOptions,
        order_id: &str,
        item: Option<(&str, u64)>,
        now_ms: i64,
    ) -> Result<Value, String> {
        let order = self
            .orders
            .get_mut(order_id)
            .ok_or_else(|| format!("order {order_id} does not exist"))?;
        if order.canceled {
            return Err(format!("order {order_id} is cancelled"));
        }
        let mut shipped = Vec::new();
        for line in &mut order.items {
            let open = line.open();
            let units = match item {
                None => open,
                Some((id, _)) if id != line.order_item_id => 0,
                Some((_, quantity)) if quantity == 0 || quantity > open => {
                    return Err(format!("cannot ship {quantity} of {open} open units"));
                }
                Some((_, quantity)) => quantity,
            };
            line.shipped += units;
            shipped.push((line.seller_sku.clone(), units));
        }
        if shipped.iter().all(|(_, units)| *units == 0) {
            return Err(format!("nothing to ship on order {order_id}"));
        }
        order.last_update_ms = now_ms;
        if order.fulfilment == Fulfilment::Afn {
            for (sku, units) in shipped {
                if let Some(stock) = self
                    .listings
                    .get_mut(&sku)
                    .and_then(|listing| listing.fba_stock.as_mut())
                {
                    stock.reserved -= units.min(stock.reserved);
                    stock.updated_ms = now_ms;
                }
            }
        }
        Ok(self.notify(options, order_id, "OrderStatusChange", "Shipped", now_ms))
    }

    pub fn request_cancellation(
        &mut self,
        options: &AmazonSimulatorOptions,
        order_id: &str,
        order_item_id: &str,
        now_ms: i64,
    ) -> Result<Value, String> {
        let order = self
            .orders
            .get_mut(order_id)
            .ok_or_else(|| format!("order {order_id} does not exist"))?;
        let item = order
            .items
            .iter_mut()
            .find(|item| item.order_item_id == order_item_id)
            .ok_or_else(|| format!("order item {order_item_id} does not exist"))?;
        item.buyer_cancel = true;
        order.last_update_ms = now_ms;
        Ok(self.notify(
            options,
            order_id,
            "BuyerRequestedChange",
            "BuyerRequestedCancel",
            now_ms,
        ))
    }

    /// Builds, records and returns an ORDER_CHANGE notification of an order (§4.3).
    fn notify(
        &mut self,
        options: &AmazonSimulatorOptions,
        order_id: &str,
        change_type: &str,
        reason: &str,
        now_ms: i64,
    ) -> Value {
        let Some(order) = self.orders.get(order_id) else {
            return Value::Null;
        };
        let (shipped, unshipped) = order.shipped_and_unshipped();
        let items: Vec<Value> = order
            .items
            .iter()
            .map(|item| {
                json!({
                    "OrderItemId": item.order_item_id,
                    "SupplySourceId": null,
                    "SellerSKU": item.seller_sku,
                    "Quantity": item.reported_quantity(order.canceled),
                    "QuantityShipped": item.shipped,
                    "OrderItemStatus": item.status(order.canceled),
                    "IsBuyerRequestedCancel": item.buyer_cancel,
                })
            })
            .collect();
        let notification = json!({
            "NotificationVersion": "1.0",
            "NotificationType": "ORDER_CHANGE",
            "PayloadVersion": "1.0",
            "EventTime": iso8601(now_ms),
            "Payload": {
                "OrderChangeNotification": {
                    "NotificationLevel": "OrderLevel",
                    "SellerId": options.seller_id,
                    "AmazonOrderId": order.order_id,
                    "OrderChangeType": change_type,
                    "OrderChangeTrigger": {
                        "TimeOfOrderChange": iso8601(now_ms),
                        "ChangeReason": reason,
                    },
                    "Summary": {
                        "MarketplaceId": options.marketplace_id,
                        "OrderStatus": order.status(),
                        "PurchaseDate": iso8601(order.purchase_ms),
                        "DestinationPostalCode": "1011 AB",
                        "FulfillmentType": order.fulfilment.as_str(),
                        "OrderType": "StandardOrder",
                        "NumberOfItemsShipped": shipped,
                        "NumberOfItemsUnshipped": unshipped,
                        "EarliestDeliveryDate": null,
                        "LatestDeliveryDate": null,
                        "EarliestShipDate": null,
                        "LatestShipDate": null,
                        "CancelNotifyDate": null,
                        "OrderPrograms": [],
                        "ShippingPrograms": [],
                        "OrderItems": items,
                    },
                },
            },
            "NotificationMetadata": {
                "ApplicationId": "amzn1.sellerapps.app.sandbox",
                "SubscriptionId": "sandbox-subscription",
                "PublishTime": iso8601(now_ms),
                "NotificationId": uuid::Uuid::new_v4().to_string(),
            },
        });
        self.notifications.push(notification.clone());
        notification
    }

    /// An order as getOrders lists it.
    pub fn order_json(&self, order: &Order, options: &AmazonSimulatorOptions) -> Value {
        let (shipped, unshipped) = order.shipped_and_unshipped();
        json!({
            "AmazonOrderId": order.order_id,
            "PurchaseDate": iso8601(order.purchase_ms),
            "LastUpdateDate": iso8601(order.last_update_ms),
            "OrderStatus": order.status(),
            "FulfillmentChannel": order.fulfilment.as_str(),
            "SalesChannel": "Amazon.nl",
            "OrderType": "StandardOrder",
            "NumberOfItemsShipped": shipped,
            "NumberOfItemsUnshipped": unshipped,
            "MarketplaceId": options.marketplace_id,
            "IsPrime": false,
        })
    }

    /// getOrderItems `payload`.
    pub fn order_items_json(&self, order: &Order) -> Value {
        let items: Vec<Value> = order
            .items
            .iter()
            .map(|item| {
                let asin = self
                    .listings
                    .get(&item.seller_sku)
                    .map(|listing| listing.asin.clone())
                    .unwrap_or_default();
                let mut json = json!({
                    "ASIN": asin,
                    "SellerSKU": item.seller_sku,
                    "OrderItemId": item.order_item_id,
                    "Title": format!("Sandbox product {}", item.seller_sku),
                    "QuantityOrdered": item.reported_quantity(order.canceled),
                    "QuantityShipped": item.shipped,
                });
                if item.buyer_cancel {
                    json["BuyerRequestedCancel"] = json!({
                        "IsBuyerRequestedCancel": "true",
                        "BuyerCancelReason": "Changed my mind",
                    });
                }
                json
            })
            .collect();
        json!({"AmazonOrderId": order.order_id, "OrderItems": items})
    }

    /// One FBA inventory summary (§4.4), `None` for listings without FBA stock.
    pub fn summary_json(listing: &Listing) -> Option<Value> {
        let stock = listing.fba_stock.as_ref()?;
        Some(json!({
            "asin": listing.asin,
            "fnSku": format!("X00{}", listing.asin),
            "sellerSku": listing.seller_sku,
            "condition": "NewItem",
            "inventoryDetails": {
                "fulfillableQuantity": stock.fulfillable,
                "inboundWorkingQuantity": 0,
                "inboundShippedQuantity": 0,
                "inboundReceivingQuantity": 0,
                "reservedQuantity": {
                    "totalReservedQuantity": stock.reserved,
                    "pendingCustomerOrderQuantity": stock.reserved,
                    "pendingTransshipmentQuantity": 0,
                    "fcProcessingQuantity": 0,
                },
                "researchingQuantity": {"totalResearchingQuantity": 0, "researchingQuantityBreakdown": []},
                "unfulfillableQuantity": {
                    "totalUnfulfillableQuantity": 0, "customerDamagedQuantity": 0,
                    "warehouseDamagedQuantity": 0, "distributorDamagedQuantity": 0,
                    "carrierDamagedQuantity": 0, "defectiveQuantity": 0, "expiredQuantity": 0,
                },
            },
            "lastUpdatedTime": iso8601(stock.updated_ms),
            "productName": format!("Sandbox product {}", listing.seller_sku),
            "totalQuantity": stock.fulfillable + stock.reserved,
        }))
    }
}

/// `merge` of `fulfillment_availability`: entries with the same `fulfillment_channel_code`
/// are merged field by field, others appended (siblings such as
/// `lead_time_to_ship_max_days` survive, §4.1).
fn merge_entries(current: &mut Value, patch: &Value) {
    if !current.is_array() {
        *current = json!([]);
    }
    let (Some(entries), Some(updates)) = (current.as_array_mut(), patch.as_array()) else {
        return;
    };
    for update in updates {
        let code = &update["fulfillment_channel_code"];
        match entries
            .iter_mut()
            .find(|entry| &entry["fulfillment_channel_code"] == code)
        {
            Some(entry) => {
                if let (Some(entry), Some(update)) = (entry.as_object_mut(), update.as_object()) {
                    for (key, value) in update {
                        entry.insert(key.clone(), value.clone());
                    }
                }
            }
            None => entries.push(update.clone()),
        }
    }
}
