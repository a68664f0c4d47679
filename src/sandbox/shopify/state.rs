//! The simulated shop's data and rules, free of HTTP: inventory levels, the GraphQL and
//! REST rate buckets, `inventorySetQuantities` (PLATFORMS.md §1.2), REST `set.json` (§1.4),
//! orders and idempotency keys. Handlers in `http.rs` lock it, call one method, unlock.

use super::{ShopifySimulatorOptions, SimulatorCounters, SimulatorError};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use tokio::time::Instant;

/// Most remembered idempotency keys (oldest forgotten first).
const IDEMPOTENCY_KEYS_MAX: usize = 10_000;
/// Most remembered webhook events (`GET /_sandbox/webhooks`, re-delivery).
pub(crate) const DELIVERIES_MAX: usize = 1_000;
/// Most remembered values per level (for `level_history`).
const HISTORY_MAX: usize = 1_000;
/// `InventorySetQuantitiesInput.quantities` cap (PLATFORMS.md §1.2).
pub(crate) const QUANTITIES_MAX: usize = 250;
/// Largest settable quantity (`INVALID_QUANTITY_TOO_HIGH` above it).
const QUANTITY_MAX: i64 = 1_000_000_000;
/// Reasons accepted by `inventorySetQuantities` (PLATFORMS.md §1.2; the list is [?]).
const REASONS: &[&str] = &[
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_created",
    "movement_updated",
    "movement_received",
    "movement_canceled",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
];

/// One inventory level (inventory item at a location).
#[derive(Clone, Debug)]
pub(crate) struct SimLevel {
    pub available: i64,
    pub on_hand: i64,
    pub updated_at_ms: i64,
    pub history: Vec<i64>,
    /// When each value of `history` was set (wall ms), for the load generator's push latency.
    pub history_at_ms: Vec<i64>,
}

impl SimLevel {
    pub(crate) fn new(available: i64, now_ms: i64) -> Self {
        Self {
            available,
            on_hand: available.max(0),
            updated_at_ms: now_ms,
            history: vec![available],
            history_at_ms: vec![now_ms],
        }
    }

    pub(crate) fn set_available(&mut self, available: i64, now_ms: i64) -> i64 {
        let delta = available - self.available;
        self.available = available;
        self.on_hand += delta;
        self.updated_at_ms = now_ms;
        if self.history.len() < HISTORY_MAX {
            self.history.push(available);
            self.history_at_ms.push(now_ms);
        }
        delta
    }

    fn set_on_hand(&mut self, on_hand: i64, now_ms: i64) -> i64 {
        let delta = on_hand - self.on_hand;
        self.set_available(self.available + delta, now_ms);
        delta
    }
}

/// A leaky bucket that refills at `rate_per_sec` up to `capacity`.
#[derive(Clone, Debug)]
pub(crate) struct LeakyBucket {
    pub capacity: f64,
    pub rate_per_sec: f64,
    pub available: f64,
    last: Instant,
}

impl LeakyBucket {
    pub fn new(capacity: f64, rate_per_sec: f64, now: Instant) -> Self {
        Self {
            capacity,
            rate_per_sec,
            available: capacity,
            last: now,
        }
    }

    pub fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.available = (self.available + elapsed * self.rate_per_sec).min(self.capacity);
        self.last = now;
    }

    /// Takes `cost` if it fits; otherwise leaves the bucket alone and returns false.
    pub fn try_take(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        if self.available + 1e-9 >= cost {
            self.available -= cost;
            true
        } else {
            false
        }
    }

    /// Seconds until `cost` fits.
    pub fn secs_until(&self, cost: f64) -> f64 {
        if self.rate_per_sec <= 0.0 {
            return 1.0;
        }
        ((cost - self.available) / self.rate_per_sec).max(0.0)
    }
}

/// One line of an order the shop took, with what happened to it since.
#[derive(Clone, Debug)]
pub(crate) struct SimLineRecord {
    pub id: u64,
    pub item: u64,
    pub sku: String,
    /// Units at creation (`quantity` in the REST body; an added line's added units).
    pub quantity: u64,
    /// `quantity` after edits plus what refunds removed since (see `current_quantity`).
    pub edited_quantity: u64,
    /// Units fulfilled.
    pub fulfilled: u64,
    /// Unfulfilled units removed by refunds (`cancel`, or `no_restock` of open units).
    pub refunded_open: u64,
    /// Fulfilled units refunded (`return`, or `no_restock` of shipped units).
    pub returned: u64,
}

impl SimLineRecord {
    pub fn new(id: u64, item: u64, sku: String, quantity: u64) -> Self {
        Self {
            id,
            item,
            sku,
            quantity,
            edited_quantity: quantity,
            fulfilled: 0,
            refunded_open: 0,
            returned: 0,
        }
    }

    /// `current_quantity`: the quantity after edits and refunds.
    pub fn current_quantity(&self) -> u64 {
        self.edited_quantity
            .saturating_sub(self.refunded_open)
            .saturating_sub(self.returned)
    }

    /// `fulfillable_quantity` of an open order: units neither fulfilled nor removed.
    pub fn fulfillable(&self) -> u64 {
        self.edited_quantity
            .saturating_sub(self.refunded_open)
            .saturating_sub(self.fulfilled)
    }
}

/// An order the shop took (webhook body source).
#[derive(Clone, Debug)]
pub(crate) struct SimOrderRecord {
    pub id: u64,
    pub number: u64,
    pub location_id: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub cancelled_at_ms: Option<i64>,
    /// `cancel_reason` (`customer`, `inventory`, `fraud`, `declined`, `staff`, `other`).
    pub cancel_reason: Option<String>,
    /// Fulfilments made so far (names the next one `#1001.N`).
    pub fulfillments: u64,
    pub lines: Vec<SimLineRecord>,
    /// The order's refunds so far, as the REST refund resource (the order body embeds them
    /// as `refunds`, like Shopify's); at most [`MAX_REFUNDS_PER_ORDER`].
    pub refunds: Vec<Value>,
    /// Where the order came from (`source_name`: `web` or `pos`).
    pub source: OrderSource,
    /// The order's one fulfillment order; its assigned location is `location_id`.
    pub fulfillment_order: SimFulfillmentOrder,
}

/// Where an order was taken (`source_name` of the REST order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrderSource {
    /// The online store: units are committed at the assigned location until fulfilled.
    Web,
    /// A point-of-sale checkout: the units leave the store's shelf at once.
    Pos,
}

impl OrderSource {
    /// `source_name` as Shopify writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Pos => "pos",
        }
    }
}

/// An order's fulfillment order: its id, status and last change (the assigned location is
/// the order's `location_id`, the line items are derived from the order's lines).
#[derive(Clone, Debug)]
pub(crate) struct SimFulfillmentOrder {
    pub id: u64,
    pub status: super::FulfillmentOrderStatus,
    pub updated_at_ms: i64,
}

/// Most refunds one sandbox order keeps (a further refund is refused).
pub(crate) const MAX_REFUNDS_PER_ORDER: usize = 100;

/// One webhook event the shop sent (or would have sent), kept for inspection and re-delivery.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct DeliveryRecord {
    /// Sandbox delivery number (the `{id}` of `POST /_sandbox/webhooks/{id}/redeliver`).
    pub id: u64,
    pub topic: &'static str,
    /// `X-Shopify-Event-Id`, the same on every re-delivery.
    pub event_id: String,
    pub triggered_at: String,
    /// The last attempt's outcome (`None` while in flight).
    pub outcome: Option<super::WebhookOutcome>,
    #[serde(skip)]
    pub event: super::webhook::WebhookEvent,
    /// The body as JSON (for inspection).
    pub body: Value,
}

/// The result of a GraphQL `inventorySetQuantities` call before it is wrapped for HTTP.
#[derive(Debug)]
pub(crate) enum MutationResult {
    /// `data.inventorySetQuantities` payload, with the levels it changed.
    Payload {
        payload: Value,
        changed: Vec<(u64, u64)>,
    },
    /// Top-level GraphQL `errors` (the request never ran).
    Errors(Value),
}

/// The whole simulated shop.
#[derive(Debug)]
pub(crate) struct SimState {
    pub levels: BTreeMap<(u64, u64), SimLevel>,
    pub graphql_bucket: LeakyBucket,
    pub rest_bucket: LeakyBucket,
    pub rest_retry_after_until: Option<Instant>,
    idempotency: HashMap<String, (String, Value)>,
    idempotency_order: VecDeque<String>,
    pub orders: BTreeMap<u64, SimOrderRecord>,
    next_order_number: u64,
    /// Open order edits by `CalculatedOrder` id.
    pub edit_sessions: BTreeMap<u64, super::orders::EditSession>,
    pub next_edit_id: u64,
    pub next_added_line_id: u64,
    pub next_fulfillment_id: u64,
    pub next_refund_id: u64,
    /// The id of the next fulfillment order.
    pub next_fulfillment_order_id: u64,
    /// Fulfillment order id → order id (one entry per order).
    pub fulfillment_order_index: BTreeMap<u64, u64>,
    /// The SKU each inventory item was listed or sold under (for `orderEditAddVariant`).
    pub item_skus: BTreeMap<u64, String>,
    /// The last `DELIVERIES_MAX` webhook events, oldest first.
    pub deliveries: VecDeque<DeliveryRecord>,
    pub next_delivery_id: u64,
    next_adjustment_group: u64,
    pub counters: SimulatorCounters,
    pub webhook_url: Option<String>,
}

/// Parses `gid://shopify/<kind>/<n>` (query strings after the number are ignored).
pub(crate) fn parse_gid(value: &Value, kind: &str) -> Option<u64> {
    let text = value.as_str()?;
    let rest = text
        .strip_prefix("gid://shopify/")?
        .strip_prefix(kind)?
        .strip_prefix('/')?;
    let digits = rest.split(['?', '/']).next()?;
    digits.parse().ok()
}

/// A GraphQL top-level error array with one error.
pub(crate) fn graphql_error(message: &str, code: &str, path: &[&str]) -> Value {
    json!([{ "message": message, "extensions": { "code": code }, "path": path }])
}

fn user_error(code: &str, field: Vec<String>, message: String) -> Value {
    json!({ "code": code, "field": field, "message": message })
}

fn quantity_field(index: usize, name: &str) -> Vec<String> {
    vec![
        "input".to_owned(),
        "quantities".to_owned(),
        index.to_string(),
        name.to_owned(),
    ]
}

impl SimState {
    pub fn new(options: &ShopifySimulatorOptions, now: Instant) -> Self {
        Self {
            levels: BTreeMap::new(),
            graphql_bucket: LeakyBucket::new(
                options.graphql_bucket_size,
                options.graphql_points_per_sec,
                now,
            ),
            rest_bucket: LeakyBucket::new(
                f64::from(options.rest_bucket_size),
                options.rest_leak_per_sec,
                now,
            ),
            rest_retry_after_until: None,
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            orders: BTreeMap::new(),
            next_order_number: 1001,
            edit_sessions: BTreeMap::new(),
            next_edit_id: 1,
            next_added_line_id: 900_000_000_000_001,
            next_fulfillment_id: 4_400_000_000,
            next_refund_id: 8_800_000_000,
            next_fulfillment_order_id: 7_700_000_001,
            fulfillment_order_index: BTreeMap::new(),
            item_skus: BTreeMap::new(),
            deliveries: VecDeque::new(),
            next_delivery_id: 1,
            next_adjustment_group: 1,
            counters: SimulatorCounters::default(),
            webhook_url: options.webhook_url.clone(),
        }
    }

    /// `extensions.cost` for a GraphQL response (PLATFORMS.md §1.9).
    pub fn cost_extension(&self, requested: f64, actual: Option<f64>) -> Value {
        json!({
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": {
                    "maximumAvailable": self.graphql_bucket.capacity,
                    "currentlyAvailable": self.graphql_bucket.available.floor(),
                    "restoreRate": self.graphql_bucket.rate_per_sec,
                }
            }
        })
    }

    /// Sets a level directly (creates it), as a merchant editing stock in the admin would.
    pub fn set_level(&mut self, item: u64, location: u64, available: i64, now_ms: i64) {
        match self.levels.get_mut(&(item, location)) {
            Some(level) => {
                level.set_available(available, now_ms);
            }
            None => {
                self.levels
                    .insert((item, location), SimLevel::new(available, now_ms));
            }
        }
    }

    /// `inventorySetQuantities` with its validation, CAS and idempotency rules (§1.2).
    pub fn set_quantities(
        &mut self,
        options: &ShopifySimulatorOptions,
        version: &str,
        input: Option<&Value>,
        idempotency_key: Option<&str>,
        now_ms: i64,
    ) -> MutationResult {
        let path = ["inventorySetQuantities"];
        let Some(input) = input.and_then(Value::as_object) else {
            return MutationResult::Errors(graphql_error(
                "Variable $input of type InventorySetQuantitiesInput! was provided invalid value",
                "INVALID_VARIABLE",
                &path,
            ));
        };
        let cas_era = version >= "2026-01";
        let mandatory_era = version >= "2026-04";
        if mandatory_era && idempotency_key.is_none() {
            return MutationResult::Errors(graphql_error(
                "The @idempotent directive is required for this mutation.",
                "BAD_REQUEST",
                &path,
            ));
        }
        let quantities = input
            .get("quantities")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if quantities.len() > QUANTITIES_MAX {
            return MutationResult::Errors(graphql_error(
                &format!(
                    "The input array size of {} is greater than the maximum allowed of {QUANTITIES_MAX}.",
                    quantities.len()
                ),
                "MAX_INPUT_SIZE_EXCEEDED",
                &["inventorySetQuantities", "input", "quantities"],
            ));
        }
        if input.get("reason").is_none_or(Value::is_null) {
            return MutationResult::Errors(graphql_error(
                "Variable $input of type InventorySetQuantitiesInput! was provided invalid value for reason (Expected value to not be null)",
                "INVALID_VARIABLE",
                &path,
            ));
        }
        for (index, quantity) in quantities.iter().enumerate() {
            let has_change_from = quantity.get("changeFromQuantity").is_some();
            let has_compare = quantity.get("compareQuantity").is_some();
            if !cas_era && has_change_from {
                return MutationResult::Errors(graphql_error(
                    "InputObject 'InventoryQuantityInput' doesn't accept argument 'changeFromQuantity'",
                    "argumentNotAccepted",
                    &path,
                ));
            }
            if mandatory_era && (has_compare || input.contains_key("ignoreCompareQuantity")) {
                return MutationResult::Errors(graphql_error(
                    "compareQuantity and ignoreCompareQuantity were removed in 2026-04; use changeFromQuantity",
                    "argumentNotAccepted",
                    &path,
                ));
            }
            if mandatory_era && !has_change_from {
                return MutationResult::Errors(graphql_error(
                    &format!(
                        "quantities[{index}]: changeFromQuantity is required from API version 2026-04; pass null to opt out of compare-and-swap"
                    ),
                    "BAD_REQUEST",
                    &path,
                ));
            }
        }

        let fingerprint = Value::Object(input.clone()).to_string();
        if let Some(key) = idempotency_key.filter(|_| options.idempotency_dedupe)
            && let Some((stored_fingerprint, stored)) = self.idempotency.get(key)
        {
            {
                if *stored_fingerprint == fingerprint {
                    self.counters.idempotent_replays += 1;
                    return MutationResult::Payload {
                        payload: stored.clone(),
                        changed: Vec::new(),
                    };
                }
                self.counters.user_errors += 1;
                return MutationResult::Payload {
                    payload: json!({
                        "inventoryAdjustmentGroup": null,
                        "userErrors": [user_error(
                            "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                            vec!["input".to_owned()],
                            "The same idempotency key was used with different parameters.".to_owned(),
                        )],
                    }),
                    changed: Vec::new(),
                };
            }
        }

        let (payload, changed) =
            self.apply_set_quantities(options, input, &quantities, cas_era, now_ms);
        if let Some(key) = idempotency_key.filter(|_| options.idempotency_dedupe) {
            self.remember_key(key, fingerprint, payload.clone());
        }
        MutationResult::Payload { payload, changed }
    }

    fn remember_key(&mut self, key: &str, fingerprint: String, payload: Value) {
        if self.idempotency_order.len() >= IDEMPOTENCY_KEYS_MAX
            && let Some(oldest) = self.idempotency_order.pop_front()
        {
            self.idempotency.remove(&oldest);
        }
        self.idempotency_order.push_back(key.to_owned());
        self.idempotency
            .insert(key.to_owned(), (fingerprint, payload));
    }

    fn apply_set_quantities(
        &mut self,
        options: &ShopifySimulatorOptions,
        input: &serde_json::Map<String, Value>,
        quantities: &[Value],
        cas_era: bool,
        now_ms: i64,
    ) -> (Value, Vec<(u64, u64)>) {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let reason = input
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ignore_compare = input
            .get("ignoreCompareQuantity")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut errors = Vec::new();
        if name != "available" && name != "on_hand" {
            errors.push(user_error(
                "INVALID_NAME",
                vec!["input".to_owned(), "name".to_owned()],
                format!("The quantity name '{name}' is not valid; use available or on_hand."),
            ));
        }
        if !REASONS.contains(&reason.as_str()) {
            errors.push(user_error(
                "INVALID_REASON",
                vec!["input".to_owned(), "reason".to_owned()],
                format!("The reason '{reason}' is not valid."),
            ));
        }
        let mut targets = Vec::with_capacity(quantities.len());
        let mut seen = HashSet::new();
        for (index, quantity) in quantities.iter().enumerate() {
            let item = parse_gid(&quantity["inventoryItemId"], "InventoryItem");
            let location = parse_gid(&quantity["locationId"], "Location");
            let value = quantity["quantity"].as_i64();
            let (Some(item), Some(location), Some(value)) = (item, location, value) else {
                let (code, field) = match (item, location) {
                    (None, _) => ("INVALID_INVENTORY_ITEM", "inventoryItemId"),
                    (_, None) => ("INVALID_LOCATION", "locationId"),
                    _ => ("INVALID_QUANTITY_TOO_LOW", "quantity"),
                };
                errors.push(user_error(
                    code,
                    quantity_field(index, field),
                    format!("{field} is not valid"),
                ));
                continue;
            };
            if let Some(error) = self.check_quantity(
                options,
                index,
                quantity,
                (item, location, value),
                &name,
                cas_era,
                ignore_compare,
            ) {
                errors.push(error);
                continue;
            }
            if !seen.insert((item, location)) {
                errors.push(user_error(
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    quantity_field(index, "inventoryItemId"),
                    "The same inventory item and location appear twice.".to_owned(),
                ));
                continue;
            }
            targets.push((item, location, value));
        }
        if !errors.is_empty() {
            self.counters.user_errors += errors.len() as u64;
            self.counters.mutations_rejected += 1;
            self.counters.quantities_in_rejected_mutations += quantities.len() as u64;
            return (
                json!({ "inventoryAdjustmentGroup": null, "userErrors": errors }),
                Vec::new(),
            );
        }
        let mut changes = Vec::new();
        let mut changed = Vec::new();
        for (item, location, value) in targets {
            let level = self
                .levels
                .entry((item, location))
                .or_insert_with(|| SimLevel::new(0, now_ms));
            let delta = if name == "available" {
                level.set_available(value, now_ms)
            } else {
                level.set_on_hand(value, now_ms)
            };
            if delta != 0 {
                changed.push((item, location));
            }
            for (quantity_name, after) in
                [("available", level.available), ("on_hand", level.on_hand)]
            {
                changes.push(json!({
                    "name": quantity_name,
                    "delta": delta,
                    "quantityAfterChange": after,
                    "item": { "id": format!("gid://shopify/InventoryItem/{item}") },
                    "location": { "id": format!("gid://shopify/Location/{location}") },
                }));
            }
        }
        self.counters.mutations_applied += 1;
        let group = self.next_adjustment_group;
        self.next_adjustment_group += 1;
        let payload = json!({
            "inventoryAdjustmentGroup": {
                "id": format!("gid://shopify/InventoryAdjustmentGroup/{group}"),
                "reason": reason,
                "referenceDocumentUri": input.get("referenceDocumentUri").cloned().unwrap_or(Value::Null),
                "changes": changes,
            },
            "userErrors": [],
        });
        (payload, changed)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_quantity(
        &mut self,
        options: &ShopifySimulatorOptions,
        index: usize,
        quantity: &Value,
        (item, location, value): (u64, u64, i64),
        name: &str,
        cas_era: bool,
        ignore_compare: bool,
    ) -> Option<Value> {
        if value < 0 && name == "on_hand" {
            return Some(user_error(
                "INVALID_QUANTITY_NEGATIVE",
                quantity_field(index, "quantity"),
                "The quantity can't be negative.".to_owned(),
            ));
        }
        if value > QUANTITY_MAX {
            return Some(user_error(
                "INVALID_QUANTITY_TOO_HIGH",
                quantity_field(index, "quantity"),
                format!("The quantity can't be higher than {QUANTITY_MAX}."),
            ));
        }
        if options.non_mutable_items.contains(&item) {
            return Some(user_error(
                "NON_MUTABLE_INVENTORY_ITEM",
                quantity_field(index, "inventoryItemId"),
                "The inventory item's quantities can't be changed (it is a bundle parent)."
                    .to_owned(),
            ));
        }
        let current = match self.levels.get(&(item, location)) {
            Some(level) if name == "on_hand" => level.on_hand,
            Some(level) => level.available,
            None if options.auto_create_levels => 0,
            None => {
                return Some(user_error(
                    "ITEM_NOT_STOCKED_AT_LOCATION",
                    quantity_field(index, "locationId"),
                    "The inventory item is not stocked at the location.".to_owned(),
                ));
            }
        };
        if cas_era {
            if let Some(expected) = quantity.get("changeFromQuantity").and_then(Value::as_i64)
                && expected != current
            {
                self.counters.cas_stale += 1;
                return Some(user_error(
                    "CHANGE_FROM_QUANTITY_STALE",
                    quantity_field(index, "changeFromQuantity"),
                    "The changeFromQuantity argument no longer matches the persisted quantity."
                        .to_owned(),
                ));
            }
        } else if !ignore_compare {
            match quantity.get("compareQuantity").and_then(Value::as_i64) {
                None => {
                    return Some(user_error(
                        "COMPARE_QUANTITY_REQUIRED",
                        quantity_field(index, "compareQuantity"),
                        "compareQuantity is required unless ignoreCompareQuantity is true."
                            .to_owned(),
                    ));
                }
                Some(expected) if expected != current => {
                    self.counters.cas_stale += 1;
                    return Some(user_error(
                        "COMPARE_QUANTITY_STALE",
                        quantity_field(index, "compareQuantity"),
                        "The compareQuantity argument no longer matches the persisted quantity."
                            .to_owned(),
                    ));
                }
                Some(_) => {}
            }
        }
        None
    }

    /// REST `inventory_levels/set.json` (§1.4): `Ok(level json)` or `Err(422 message)`.
    pub fn rest_set(
        &mut self,
        options: &ShopifySimulatorOptions,
        item: u64,
        location: u64,
        available: i64,
        now_ms: i64,
    ) -> Result<bool, String> {
        if options.non_mutable_items.contains(&item) {
            return Err("Inventory item is not mutable".to_owned());
        }
        if !self.levels.contains_key(&(item, location)) && !options.auto_create_levels {
            return Err("Inventory item is not stocked at the location".to_owned());
        }
        if available > QUANTITY_MAX {
            return Err(format!(
                "Available must be less than or equal to {QUANTITY_MAX}"
            ));
        }
        let level = self
            .levels
            .entry((item, location))
            .or_insert_with(|| SimLevel::new(0, now_ms));
        let delta = level.set_available(available, now_ms);
        self.counters.mutations_applied += 1;
        Ok(delta != 0)
    }

    /// Takes an order at `location`, all lines or none (refused beyond
    /// [`ORDER_LINES_MAX`](super::orders::ORDER_LINES_MAX) lines). A web order commits its
    /// units there (`available` drops, `on_hand` stays until fulfilment, §1.5) and opens a
    /// fulfillment order assigned to `location`; a POS order takes the units off the shelf
    /// (`available` and `on_hand` drop), is fulfilled at once and its fulfillment order is
    /// `CLOSED`.
    pub fn place_order(
        &mut self,
        deny_oversell: bool,
        source: OrderSource,
        location: u64,
        lines: &[super::SimOrderLine],
        now_ms: i64,
    ) -> Result<SimOrderRecord, SimulatorError> {
        if lines.len() > super::orders::ORDER_LINES_MAX {
            return Err(SimulatorError::Invalid {
                message: format!(
                    "an order has at most {} lines",
                    super::orders::ORDER_LINES_MAX
                ),
            });
        }
        for line in lines {
            let level = self.levels.get(&(line.inventory_item_id, location)).ok_or(
                SimulatorError::UnknownLevel {
                    inventory_item_id: line.inventory_item_id,
                    location_id: location,
                },
            )?;
            let requested = i64::try_from(line.quantity).unwrap_or(i64::MAX);
            if deny_oversell && level.available < requested {
                return Err(SimulatorError::InsufficientStock {
                    inventory_item_id: line.inventory_item_id,
                    location_id: location,
                    available: level.available,
                    requested: line.quantity,
                });
            }
        }
        let number = self.next_order_number;
        self.next_order_number += 1;
        let id = 5_500_000_000 + number;
        let mut records = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            let requested = i64::try_from(line.quantity).unwrap_or(i64::MAX);
            if let Some(level) = self.levels.get_mut(&(line.inventory_item_id, location)) {
                let after = level.available - requested;
                level.set_available(after, now_ms);
                if source == OrderSource::Web {
                    // A web order commits stock: on-hand stays until fulfilment.
                    level.on_hand += requested;
                }
            }
            let line_id = id * 100 + index as u64 + 1;
            let mut record = SimLineRecord::new(
                line_id,
                line.inventory_item_id,
                line.sku.clone(),
                line.quantity,
            );
            if source == OrderSource::Pos {
                record.fulfilled = line.quantity;
            }
            records.push(record);
            self.item_skus
                .insert(line.inventory_item_id, line.sku.clone());
        }
        let fulfillment_order_id = self.next_fulfillment_order_id;
        self.next_fulfillment_order_id += 1;
        self.fulfillment_order_index
            .insert(fulfillment_order_id, id);
        let status = match source {
            OrderSource::Web => super::FulfillmentOrderStatus::Open,
            OrderSource::Pos => super::FulfillmentOrderStatus::Closed,
        };
        let order = SimOrderRecord {
            id,
            number,
            location_id: location,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            cancelled_at_ms: None,
            cancel_reason: None,
            fulfillments: u64::from(source == OrderSource::Pos),
            lines: records,
            refunds: Vec::new(),
            source,
            fulfillment_order: SimFulfillmentOrder {
                id: fulfillment_order_id,
                status,
                updated_at_ms: now_ms,
            },
        };
        self.orders.insert(id, order.clone());
        Ok(order)
    }

    /// Cancels an order; with `restock`, puts every unfulfilled unit back into `available`
    /// (without, the units leave on-hand). `reason` is the order's `cancel_reason`.
    pub fn cancel_order(
        &mut self,
        order_id: u64,
        restock: bool,
        reason: &str,
        now_ms: i64,
    ) -> Result<SimOrderRecord, SimulatorError> {
        let order = self
            .orders
            .get_mut(&order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })?;
        if order.cancelled_at_ms.is_some() {
            return Err(SimulatorError::AlreadyCancelled { order_id });
        }
        // Open units are released: their fulfillable quantity is computed before the cancel.
        let open: Vec<(u64, u64)> = order
            .lines
            .iter()
            .map(|line| (line.item, line.fulfillable()))
            .collect();
        order.cancelled_at_ms = Some(now_ms);
        order.cancel_reason = Some(reason.to_owned());
        order.updated_at_ms = now_ms;
        // An open fulfillment order is cancelled with its order; a closed one stays closed.
        if order.fulfillment_order.status == super::FulfillmentOrderStatus::Open {
            order.fulfillment_order.status = super::FulfillmentOrderStatus::Cancelled;
            order.fulfillment_order.updated_at_ms = now_ms;
        }
        let order = order.clone();
        for (item, units) in open {
            let units = i64::try_from(units).unwrap_or(i64::MAX);
            if let Some(level) = self.levels.get_mut(&(item, order.location_id)) {
                if restock {
                    let after = level.available + units;
                    level.set_available(after, now_ms);
                }
                level.on_hand -= units;
            }
        }
        Ok(order)
    }

    /// A level as the REST `InventoryLevel` resource (also the `inventory_levels/update` body).
    pub fn level_json(&self, item: u64, location: u64) -> Option<Value> {
        let level = self.levels.get(&(item, location))?;
        Some(json!({
            "inventory_item_id": item,
            "location_id": location,
            "available": level.available,
            "on_hand": level.on_hand,
            "updated_at": super::webhook::rfc3339(level.updated_at_ms),
            "admin_graphql_api_id": format!("gid://shopify/InventoryLevel/{location}?inventory_item_id={item}"),
        }))
    }
}
