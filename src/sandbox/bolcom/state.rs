//! The simulated bol.com retailer account: offers, asynchronous process statuses, orders,
//! returns, tokens and per-endpoint fixed-window rate limits (PLATFORMS.md §3). Pure state
//! driven by the HTTP handlers and the handle; time is passed in.

use super::{BolcomSimulatorOptions, EndpointLimit, ProcessOutcome};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use tokio::time::{Duration, Instant};

/// Counters of what the simulator saw.
pub(crate) use super::BolcomCounters as Counters;

/// One offer.
#[derive(Clone, Debug)]
pub(crate) struct Offer {
    pub offer_id: String,
    pub reference: String,
    pub ean: String,
    pub amount: u64,
    pub managed_by_retailer: bool,
    /// When the last stock update was applied (ms since epoch).
    pub updated_at_ms: i64,
    /// The account sequence number of the last applied stock update (orders compare to it).
    pub updated_seq: u64,
    /// Every amount applied, oldest first.
    pub history: Vec<u64>,
}

/// One asynchronous process status.
#[derive(Clone, Debug)]
pub(crate) struct Process {
    pub id: u64,
    pub entity_id: String,
    pub status: &'static str,
    pub description: String,
    pub created_ms: i64,
    pub due: Instant,
    pub outcome: ProcessOutcome,
    pub amount: u64,
    pub managed_by_retailer: bool,
}

/// One order item.
#[derive(Clone, Debug)]
pub(crate) struct OrderItem {
    pub order_item_id: String,
    pub offer_id: String,
    pub reference: String,
    pub ean: String,
    pub quantity: u64,
    pub quantity_shipped: u64,
    pub quantity_cancelled: u64,
    pub cancellation_request: bool,
    pub method: String,
    pub changed_ms: i64,
}

impl OrderItem {
    fn open_quantity(&self) -> u64 {
        self.quantity
            .saturating_sub(self.quantity_shipped + self.quantity_cancelled)
    }
}

/// One order.
#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub order_id: String,
    pub placed_ms: i64,
    /// The account sequence number when the order was placed.
    pub placed_seq: u64,
    pub items: Vec<OrderItem>,
}

/// One return item.
#[derive(Clone, Debug)]
pub(crate) struct ReturnItem {
    pub return_id: u64,
    pub rma_id: u64,
    pub order_id: String,
    pub ean: String,
    pub quantity: u64,
    pub method: String,
    pub handled: bool,
    pub registered_ms: i64,
}

/// A fixed-window counter of one endpoint group.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    pub limit: EndpointLimit,
    pub started: Instant,
    pub used: u32,
    /// The earliest instant a request may come after a 429 (for `retry_after_violations`).
    pub retry_after_until: Option<Instant>,
}

/// What a rate check says.
pub(crate) struct RateAnswer {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

impl Window {
    fn new(limit: EndpointLimit, now: Instant) -> Self {
        Self {
            limit,
            started: now,
            used: 0,
            retry_after_until: None,
        }
    }

    pub fn admit(&mut self, now: Instant, counters: &mut Counters) -> RateAnswer {
        let window = Duration::from_millis(self.limit.window_ms.max(1));
        if now.saturating_duration_since(self.started) >= window {
            self.started = now;
            self.used = 0;
        }
        if self.retry_after_until.is_some_and(|until| now < until) {
            counters.retry_after_violations += 1;
        }
        let reset = (self.started + window).saturating_duration_since(now);
        let reset_secs = reset.as_millis().div_ceil(1000).max(1) as u64;
        if self.used >= self.limit.requests {
            counters.throttled += 1;
            self.retry_after_until = Some(self.started + window);
            return RateAnswer {
                allowed: false,
                limit: self.limit.requests,
                remaining: 0,
                reset_secs,
            };
        }
        self.used += 1;
        RateAnswer {
            allowed: true,
            limit: self.limit.requests,
            remaining: self.limit.requests - self.used,
            reset_secs,
        }
    }
}

/// The endpoint groups with their own limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Token,
    Stock,
    ProcessStatus,
    Reads,
}

/// The whole simulated account.
#[derive(Debug)]
pub(crate) struct SimState {
    pub offers: BTreeMap<String, Offer>,
    pub processes: BTreeMap<u64, Process>,
    pub orders: BTreeMap<String, Order>,
    pub returns: Vec<ReturnItem>,
    pub tokens: HashMap<String, Instant>,
    pub windows: HashMap<Endpoint, Window>,
    pub counters: Counters,
    pub next_id: u64,
    pub outage: bool,
    pub fail_next: Vec<u16>,
    pub response_delay_ms: u64,
    pub outcome_override: HashMap<String, ProcessOutcome>,
    pub started: Instant,
    /// Offsets (ms since start) of stock PUTs, capped.
    pub stock_request_offsets_ms: Vec<u64>,
}

/// Most stock PUT times remembered.
const STOCK_TIMES_MAX: usize = 100_000;

impl SimState {
    pub fn new(options: &BolcomSimulatorOptions, now: Instant) -> Self {
        let mut windows = HashMap::new();
        windows.insert(Endpoint::Token, Window::new(options.token_limit, now));
        windows.insert(Endpoint::Stock, Window::new(options.stock_limit, now));
        windows.insert(
            Endpoint::ProcessStatus,
            Window::new(options.process_status_limit, now),
        );
        windows.insert(Endpoint::Reads, Window::new(options.read_limit, now));
        let offers = options
            .offers
            .iter()
            .map(|offer| {
                (
                    offer.offer_id.clone(),
                    Offer {
                        offer_id: offer.offer_id.clone(),
                        reference: offer.reference.clone(),
                        ean: offer.ean.clone(),
                        amount: offer.amount,
                        managed_by_retailer: false,
                        updated_at_ms: 0,
                        updated_seq: 0,
                        history: Vec::new(),
                    },
                )
            })
            .collect();
        Self {
            offers,
            processes: BTreeMap::new(),
            orders: BTreeMap::new(),
            returns: Vec::new(),
            tokens: HashMap::new(),
            windows,
            counters: Counters::default(),
            next_id: 1_000,
            outage: false,
            fail_next: Vec::new(),
            response_delay_ms: 0,
            outcome_override: options
                .failing_offers
                .iter()
                .map(|offer| (offer.clone(), ProcessOutcome::Failure))
                .collect(),
            started: now,
            stock_request_offsets_ms: Vec::new(),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn issue_token(&mut self, ttl: Duration, now: Instant) -> String {
        let token = format!(
            "eyJhbGciOiJSUzI1NiJ9.sandbox.{}",
            uuid::Uuid::new_v4().simple()
        );
        self.tokens.insert(token.clone(), now + ttl);
        self.counters.tokens_issued += 1;
        token
    }

    pub fn token_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens.get(token).is_some_and(|until| now < *until)
    }

    pub fn record_stock_request(&mut self, now: Instant) {
        if self.stock_request_offsets_ms.len() < STOCK_TIMES_MAX {
            let offset = now.saturating_duration_since(self.started).as_millis() as u64;
            self.stock_request_offsets_ms.push(offset);
        }
    }

    /// Applies every process status whose delay has passed, oldest first.
    pub fn advance(&mut self, now: Instant, now_ms: i64) {
        let due: Vec<u64> = self
            .processes
            .values()
            .filter(|process| process.status == "PENDING" && process.due <= now)
            .map(|process| process.id)
            .collect();
        let mut due: Vec<(Instant, u64)> = due
            .into_iter()
            .map(|id| (self.processes[&id].due, id))
            .collect();
        due.sort();
        for (_, id) in due {
            let Some(process) = self.processes.get(&id).cloned() else {
                continue;
            };
            let status = match process.outcome {
                ProcessOutcome::Success => {
                    self.next_id += 1;
                    let seq = self.next_id;
                    if let Some(offer) = self.offers.get_mut(&process.entity_id) {
                        offer.amount = process.amount;
                        offer.managed_by_retailer = process.managed_by_retailer;
                        offer.updated_at_ms = now_ms;
                        offer.updated_seq = seq;
                        offer.history.push(process.amount);
                        if offer.history.len() > 1_000 {
                            offer.history.remove(0);
                        }
                    }
                    self.counters.stock_updates_applied += 1;
                    "SUCCESS"
                }
                ProcessOutcome::Failure => {
                    self.counters.stock_updates_failed += 1;
                    "FAILURE"
                }
                ProcessOutcome::Timeout => {
                    self.counters.stock_updates_failed += 1;
                    "TIMEOUT"
                }
            };
            if let Some(stored) = self.processes.get_mut(&id) {
                stored.status = status;
                stored.description = match status {
                    "SUCCESS" => format!(
                        "The stock of offer {} was updated to {}.",
                        stored.entity_id, stored.amount
                    ),
                    "FAILURE" => format!(
                        "The stock of offer {} could not be updated.",
                        stored.entity_id
                    ),
                    _ => format!(
                        "Processing the stock update of offer {} timed out.",
                        stored.entity_id
                    ),
                };
            }
        }
    }

    /// Queues a stock update; returns the PENDING process status.
    #[allow(clippy::too_many_arguments)]
    pub fn queue_stock_update(
        &mut self,
        offer_id: &str,
        amount: u64,
        managed_by_retailer: bool,
        delay: Duration,
        default_outcome: ProcessOutcome,
        reorder: bool,
        now: Instant,
        now_ms: i64,
    ) -> Process {
        let pending: Vec<u64> = self
            .processes
            .values()
            .filter(|p| p.status == "PENDING" && p.entity_id == offer_id)
            .map(|p| p.id)
            .collect();
        let mut due = now + delay;
        if !pending.is_empty() {
            self.counters.overlapping_updates += 1;
            if reorder {
                // The awkward case of §3.8: the newer update overtakes the older one, so the
                // older amount is applied last.
                let earliest = pending
                    .iter()
                    .map(|id| self.processes[id].due)
                    .min()
                    .unwrap_or(due);
                due = earliest
                    .checked_sub(Duration::from_millis(1))
                    .unwrap_or(now);
                due = due.max(now);
            }
        }
        let outcome = self
            .outcome_override
            .get(offer_id)
            .copied()
            .unwrap_or(default_outcome);
        let id = self.next_id();
        let process = Process {
            id,
            entity_id: offer_id.to_owned(),
            status: "PENDING",
            description: format!("Updating the stock of offer {offer_id}."),
            created_ms: now_ms,
            due,
            outcome,
            amount,
            managed_by_retailer,
        };
        self.processes.insert(id, process.clone());
        self.counters.stock_updates_received += 1;
        process
    }

    /// `correctedStock` per §3.3/§3.7: `false` subtracts every open FBR order of the offer,
    /// `true` only those placed after the last stock update.
    pub fn corrected_stock(&self, offer: &Offer) -> i64 {
        let open: u64 = self
            .orders
            .values()
            .filter(|order| !offer.managed_by_retailer || order.placed_seq > offer.updated_seq)
            .flat_map(|order| order.items.iter())
            .filter(|item| item.offer_id == offer.offer_id && item.method == "FBR")
            .map(OrderItem::open_quantity)
            .sum();
        (offer.amount as i64 - open as i64).max(0)
    }

    pub fn offer_json(&self, offer: &Offer) -> Value {
        json!({
            "offerId": offer.offer_id,
            "ean": offer.ean,
            "reference": offer.reference,
            "onHoldByRetailer": false,
            "stock": {
                "amount": offer.amount,
                "correctedStock": self.corrected_stock(offer),
                "managedByRetailer": offer.managed_by_retailer,
            },
            "fulfilment": {"method": "FBR", "deliveryCode": "24uurs-23"},
        })
    }

    pub fn place_order(
        &mut self,
        method: &str,
        lines: &[(String, u64)],
        now_ms: i64,
    ) -> Result<Order, String> {
        let mut items = Vec::new();
        for (offer_id, quantity) in lines {
            let offer = self
                .offers
                .get(offer_id)
                .ok_or_else(|| format!("offer {offer_id} does not exist"))?;
            if *quantity == 0 {
                return Err("quantity must be at least 1".to_owned());
            }
            items.push((
                offer.offer_id.clone(),
                offer.reference.clone(),
                offer.ean.clone(),
                *quantity,
            ));
        }
        let placed_seq = self.next_id();
        let order_id = format!("A{placed_seq:09}");
        let items = items
            .into_iter()
            .map(|(offer_id, reference, ean, quantity)| OrderItem {
                order_item_id: format!("{}", self.next_id() * 7),
                offer_id,
                reference,
                ean,
                quantity,
                quantity_shipped: 0,
                quantity_cancelled: 0,
                cancellation_request: false,
                method: method.to_owned(),
                changed_ms: now_ms,
            })
            .collect();
        let order = Order {
            order_id: order_id.clone(),
            placed_ms: now_ms,
            placed_seq,
            items,
        };
        self.orders.insert(order_id, order.clone());
        Ok(order)
    }

    pub fn find_item_mut(&mut self, order_item_id: &str) -> Option<&mut OrderItem> {
        self.orders
            .values_mut()
            .flat_map(|order| order.items.iter_mut())
            .find(|item| item.order_item_id == order_item_id)
    }

    pub fn order_item_order(&self, order_item_id: &str) -> Option<&Order> {
        self.orders.values().find(|order| {
            order
                .items
                .iter()
                .any(|item| item.order_item_id == order_item_id)
        })
    }

    pub fn order_is_open(order: &Order) -> bool {
        order.items.iter().any(|item| item.open_quantity() > 0)
    }
}

/// RFC 3339 with the Amsterdam offset bol uses, from ms since the epoch.
pub(crate) fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

/// Howard Hinnant's days → civil date.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn process_json(process: &Process) -> Value {
    json!({
        "processStatusId": process.id.to_string(),
        "entityId": process.entity_id,
        "eventType": "UPDATE_OFFER_STOCK",
        "description": process.description,
        "status": process.status,
        "createTimestamp": timestamp(process.created_ms),
        "links": [{
            "rel": "self",
            "href": format!("/shared/process-status/{}", process.id),
            "method": "GET"
        }],
    })
}

pub(crate) fn order_list_json(order: &Order) -> Value {
    json!({
        "orderId": order.order_id,
        "orderPlacedDateTime": timestamp(order.placed_ms),
        "orderItems": order.items.iter().map(|item| json!({
            "orderItemId": item.order_item_id,
            "ean": item.ean,
            "fulfilmentMethod": item.method,
            "fulfilmentStatus": if item.open_quantity() > 0 { "OPEN" } else { "HANDLED" },
            "quantity": item.quantity,
            "quantityShipped": item.quantity_shipped,
            "quantityCancelled": item.quantity_cancelled,
            "cancellationRequest": item.cancellation_request,
            "latestChangedDateTime": timestamp(item.changed_ms),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn order_json(order: &Order) -> Value {
    json!({
        "orderId": order.order_id,
        "pickupPoint": false,
        "orderPlacedDateTime": timestamp(order.placed_ms),
        "shipmentDetails": {"firstName": "Sam", "surname": "Example", "city": "Utrecht", "email": "sam@example.invalid"},
        "orderItems": order.items.iter().map(|item| json!({
            "orderItemId": item.order_item_id,
            "cancellationRequest": item.cancellation_request,
            "fulfilment": {
                "method": item.method,
                "distributionParty": if item.method == "FBB" { "BOL" } else { "RETAILER" },
                "latestDeliveryDate": "2030-01-02",
                "timeFrameType": "REGULAR",
            },
            "offer": {"offerId": item.offer_id, "reference": item.reference},
            "product": {"ean": item.ean, "title": format!("Sandbox product {}", item.ean)},
            "quantity": item.quantity,
            "quantityShipped": item.quantity_shipped,
            "quantityCancelled": item.quantity_cancelled,
            "unitPrice": 12.5,
            "totalPrice": 12.5 * item.quantity as f64,
            "commission": 1.5,
            "latestChangedDateTime": timestamp(item.changed_ms),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn return_json(item: &ReturnItem) -> Value {
    json!({
        "returnId": item.return_id.to_string(),
        "registrationDateTime": timestamp(item.registered_ms),
        "fulfilmentMethod": item.method,
        "returnItems": [{
            "rmaId": item.rma_id.to_string(),
            "orderId": item.order_id,
            "ean": item.ean,
            "expectedQuantity": item.quantity,
            "returnReason": {"mainReason": "Niet naar verwachting", "customerComments": "Sandbox return"},
            "handled": item.handled,
            "processingResults": [],
        }],
    })
}
