//! A faithful Shopify Admin API simulator (PLATFORMS.md §1), served by axum in-process (tests,
//! demo, benchmarks) or standalone.
//!
//! Owns: the simulated shop (inventory levels per inventory item and location, orders),
//! the endpoints
//! - `POST /admin/api/{version}/graphql.json`: `inventorySetQuantities` (§1.2, with
//!   `changeFromQuantity` CAS, `@idempotent`, the 250-item cap, all-or-nothing user errors)
//!   and an inventory-level read (`nodes(ids:) { ... on InventoryItem { inventoryLevel(locationId:) { quantities } } }`),
//!   with a cost-based leaky bucket and `extensions.cost.throttleStatus` on every answer (§1.9);
//! - `POST /admin/api/{version}/inventory_levels/set.json` and
//!   `GET /admin/api/{version}/inventory_levels.json` (REST legacy, §1.4) with a
//!   request-based leaky bucket, `X-Shopify-Shop-Api-Call-Limit` and 429 + `Retry-After`;
//! - the order-edit mutations on the same GraphQL endpoint: `orderEditBegin(id:)` →
//!   `calculatedOrder { id lineItems { nodes { id sku quantity } } }`,
//!   `orderEditSetQuantity(id:, lineItemId: gid://shopify/CalculatedLineItem/N, quantity:, restock:)`
//!   (0 removes the line), `orderEditAddVariant(id:, variantId: gid://shopify/ProductVariant/<item>, quantity:)`,
//!   `orderEditCommit(id:)` → `order { id }`; refusals are `userErrors`;
//! - the `fulfillmentOrder(id:)` query on the same endpoint (`id status updatedAt order {
//!   id legacyResourceId } assignedLocation { location { id legacyResourceId } } lineItems {
//!   nodes { id totalQuantity remainingQuantity lineItem { id sku quantity } } }`, `null`
//!   for an unknown id);
//! - `GET /_sandbox`: the index of every endpoint below (method, path, example body), built
//!   from the same table as the routes ([`crate::sandbox::index`]);
//! - `GET|POST /_sandbox/levels` (`{inventory_item_id, location_id, available, sku?}`),
//!   `POST /_sandbox/orders` (`source_name` `web`, the default, or `pos`),
//!   `GET /_sandbox/orders/{id}`, `GET /_sandbox/orders/{id}/fulfillment_orders`,
//!   `POST /_sandbox/fulfillment_orders/{id}/move` (`{new_location_id}`),
//!   `POST /_sandbox/orders/{id}/cancel` (`{restock, reason}`; reason `customer`, `inventory`, …),
//!   `POST /_sandbox/orders/{id}/edit` (`{set: [{line_item_id, quantity, restock}], add:
//!   [{inventory_item_id, sku?, quantity}]}`: the whole order-edit flow in one call),
//!   `POST /_sandbox/orders/{id}/fulfillments` (`{line_items: [{id, quantity?}]}`),
//!   `POST /_sandbox/orders/{id}/refunds` (`{note?, refund_line_items: [{line_item_id,
//!   quantity, restock_type, location_id?}]}`), `GET /_sandbox/webhooks` (the delivery log),
//!   `POST /_sandbox/webhooks/{id}/redeliver`, `GET /_sandbox/counters`: inspection and
//!   "behind our back" changes;
//!
//! and the outgoing signed webhooks (`orders/create`, `orders/updated`, `orders/edited`,
//! `orders/cancelled`, `refunds/create`, `fulfillments/create` (opt-in),
//! `fulfillment_orders/order_routing_complete`, `fulfillment_orders/moved`,
//! `inventory_levels/update`, §1.6–§1.7).
//!
//! Multi-location: a web order commits its units at one location and gets one fulfillment
//! order assigned there (`orders/create` is followed by the thin
//! `fulfillment_orders/order_routing_complete`, `{"fulfillment_order": {id, status}}`); its
//! REST body has `source_name: "web"` and `location_id: null`. Moving the fulfillment order
//! ([`ShopifySimulator::move_fulfillment_order`]) moves the committed units and sends
//! `fulfillment_orders/moved`; fulfilments ship from the assigned location, cancelling the
//! order cancels an open fulfillment order. A POS order ([`ShopifySimulator::place_pos_order`])
//! takes the units off the store's shelf at once, is fulfilled, has a closed fulfillment
//! order, `source_name: "pos"` and the store's `location_id`, and sends only `orders/create`. A committed edit sends `orders/edited` (the
//! `{"order_edit": {id, order_id, created_at, committed_at, line_items: {additions: [{id,
//! delta}], removals: [{id, delta}]}, …}}` body) and then `orders/updated` (the order, whose
//! lines keep `quantity` and change `current_quantity`; added lines are appended). A
//! fulfilment lowers `fulfillable_quantity`; a refund lowers `current_quantity` and, for
//! `cancel`/`return`, restocks at its `location_id`. Like Shopify's, the order body embeds
//! its refunds so far (`refunds[]`, each the `refunds/create` body with
//! `refund_line_items[]` of `line_item_id`, `quantity`, `restock_type`, `location_id`; at
//! most 100 per order, a further refund is refused), so a consumer can tell what
//! `current_quantity` already excludes. Every event is logged and can be sent
//! again (same body and `X-Shopify-Event-Id`) so tests can deliver an old edit late.
//!
//! Simplifications (documented, not hidden): GraphQL is recognised by the operation's field
//! names rather than parsed, and the mutation input must come from a variable
//! (`inventorySetQuantities(input: $input)`); the sandbox uses the inventory item id as the
//! variant id in order bodies; webhooks are retried `webhook_retries` times, `webhook_retry_delay_ms` apart.
//!
//! Wall time (level, order and webhook timestamps) is read from the injected clock
//! ([`ShopifySimulatorOptions::clock`]); the leaky buckets and `Retry-After` follow tokio's
//! clock, so tests can drive both under paused time.
//!
//! May depend on: `clock` and `signing` only (standalone otherwise).

pub mod demo;
mod fulfillment;
mod http;
mod orders;
mod state;
#[cfg(test)]
mod tests;
mod webhook;

pub use fulfillment::{
    FulfillmentOrderMove, FulfillmentOrderStatus, SandboxFulfillmentOrder,
    SandboxFulfillmentOrderLine,
};
pub use orders::{FulfilLineRequest, RefundLineRequest};
pub use webhook::{verify_webhook_signature, webhook_signature};

use crate::clock::{self, SharedClock};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state::{OrderSource, SimState};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webhook::{Sender, WebhookEvent};

/// How the simulated shop behaves; every [?]/[3P] behaviour of PLATFORMS.md §8 is a knob.
#[derive(Clone, Debug)]
pub struct ShopifySimulatorOptions {
    /// `X-Shopify-Shop-Domain` of webhooks (`stocksync-sandbox.myshopify.com`).
    pub shop_domain: String,
    /// Oldest supported API version; older URL versions fall forward to it (`2025-07`).
    pub api_version_min: String,
    /// The only accepted `X-Shopify-Access-Token`; anything else gets 401.
    pub access_token: String,
    /// App client secret that signs outgoing webhooks.
    pub webhook_secret: String,
    /// `X-Shopify-API-Version` of outgoing webhooks.
    pub webhook_api_version: String,
    /// Where webhooks go; `None` sends none. Changeable with [`ShopifySimulator::set_webhook_url`].
    pub webhook_url: Option<String>,
    /// Extra delivery attempts after a failed webhook (Shopify: 8 over 4 h; default 0).
    pub webhook_retries: u32,
    /// Pause between webhook attempts, in milliseconds.
    pub webhook_retry_delay_ms: u64,
    /// Emit `inventory_levels/update` after every level change (our pushes included).
    pub emit_inventory_level_updates: bool,
    /// GraphQL bucket size in cost points (`maximumAvailable`).
    pub graphql_bucket_size: f64,
    /// GraphQL restore rate in points per second (`restoreRate`).
    pub graphql_points_per_sec: f64,
    /// Cost of one `inventorySetQuantities` call, in points.
    pub mutation_cost: f64,
    /// Cost of one inventory-level query, in points.
    pub query_cost: f64,
    /// HTTP status of a GraphQL `THROTTLED` answer: 200 or 429 (vendor docs unclear, §1.9).
    pub throttle_status: u16,
    /// REST bucket size in requests (40 classic, 80 on Plus).
    pub rest_bucket_size: u32,
    /// REST leak rate in requests per second (2 standard).
    pub rest_leak_per_sec: f64,
    /// Inventory items whose quantities cannot be set (`NON_MUTABLE_INVENTORY_ITEM`, e.g. bundle parents).
    pub non_mutable_items: Vec<u64>,
    /// Create unknown levels on first set instead of `ITEM_NOT_STOCKED_AT_LOCATION` / 422.
    pub auto_create_levels: bool,
    /// Whether `@idempotent` keys really deduplicate (a community report says no, §1.2).
    pub idempotency_dedupe: bool,
    /// Refuse orders for more than `available` (a shop that does not sell when out of stock).
    pub deny_oversell: bool,
    /// Location used by `POST /_sandbox/orders` when the body names none.
    pub default_location_id: u64,
    /// Send `fulfillments/create` on a fulfilment (off by default: the engine's Shopify
    /// receiver does not subscribe to it; `orders/updated` is always sent).
    pub emit_fulfillment_webhooks: bool,
    /// Let an order edit set a line below its fulfilled units (Shopify refuses; tests of
    /// "edited below shipped" turn this on).
    pub allow_edit_below_fulfilled: bool,
    /// Where wall time comes from (level, order and webhook timestamps); the system clock
    /// by default, a [`TokioClock`](crate::clock::TokioClock) in paused-time tests.
    pub clock: SharedClock,
}

impl Default for ShopifySimulatorOptions {
    fn default() -> Self {
        Self {
            shop_domain: "stocksync-sandbox.myshopify.com".to_owned(),
            api_version_min: "2025-07".to_owned(),
            access_token: "shpat_sandbox_token".to_owned(),
            webhook_secret: "sandbox_webhook_secret".to_owned(),
            webhook_api_version: "2026-04".to_owned(),
            webhook_url: None,
            webhook_retries: 0,
            webhook_retry_delay_ms: 500,
            emit_inventory_level_updates: false,
            graphql_bucket_size: 1000.0,
            graphql_points_per_sec: 100.0,
            mutation_cost: 10.0,
            query_cost: 2.0,
            throttle_status: 200,
            rest_bucket_size: 40,
            rest_leak_per_sec: 2.0,
            non_mutable_items: Vec::new(),
            auto_create_levels: false,
            idempotency_dedupe: true,
            deny_oversell: true,
            default_location_id: 1,
            emit_fulfillment_webhooks: false,
            allow_edit_below_fulfilled: false,
            clock: clock::system(),
        }
    }
}

/// What the simulator has seen so far (for assertions and the demo).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimulatorCounters {
    /// Every `/admin` request, authorised or not.
    pub requests: u64,
    /// `/admin` requests answered 401.
    pub unauthorized: u64,
    /// Requests refused for rate (GraphQL `THROTTLED` or REST 429).
    pub throttled: u64,
    /// REST requests that arrived before the `Retry-After` of an earlier 429 had passed.
    pub retry_after_violations: u64,
    /// Mutations that changed stock (one per GraphQL call or REST set).
    pub mutations_applied: u64,
    /// Compare-and-set failures (`CHANGE_FROM_QUANTITY_STALE` / `COMPARE_QUANTITY_STALE`).
    pub cas_stale: u64,
    /// User errors returned, all codes.
    pub user_errors: u64,
    /// `inventorySetQuantities` calls refused with user errors (nothing applied).
    pub mutations_rejected: u64,
    /// Quantities carried by those refused calls, in total.
    pub quantities_in_rejected_mutations: u64,
    /// Mutations answered from the idempotency store.
    pub idempotent_replays: u64,
    /// Webhook deliveries answered 2xx.
    pub webhooks_delivered: u64,
    /// Webhook deliveries that failed (non-2xx or transport).
    pub webhooks_failed: u64,
}

/// One inventory level as `GET /_sandbox/levels` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLevel {
    /// Inventory item id.
    pub inventory_item_id: u64,
    /// Location id.
    pub location_id: u64,
    /// Units available to sell.
    pub available: i64,
    /// Units on hand.
    pub on_hand: i64,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// One line of a simulated order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrderLine {
    /// The inventory item sold (also used as the variant id in the webhook body).
    pub inventory_item_id: u64,
    /// The SKU printed on the line item.
    pub sku: String,
    /// Units sold.
    pub quantity: u64,
}

/// What happened to a webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// No webhook URL is configured.
    NotConfigured,
    /// The last attempt got this HTTP status (2xx means delivered).
    Answered {
        /// HTTP status.
        status: u16,
    },
    /// The last attempt failed in transport.
    Failed {
        /// The error message.
        error: String,
    },
}

/// An order the simulated shop took or cancelled.
#[derive(Clone, Debug, Serialize)]
pub struct PlacedOrder {
    /// Shopify order id.
    pub order_id: u64,
    /// Order name (`#1001`).
    pub name: String,
    /// The REST order resource sent as webhook body.
    pub body: Value,
    /// The delivery of the `orders/create` (or `orders/cancelled`) webhook.
    pub webhook: WebhookOutcome,
    /// The order's fulfillment order (open for a web order, closed for a POS one).
    pub fulfillment_order_id: u64,
}

/// Why a simulator call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimulatorError {
    /// The inventory item is not stocked at the location.
    #[error("inventory item {inventory_item_id} is not stocked at location {location_id}")]
    UnknownLevel {
        /// Inventory item id.
        inventory_item_id: u64,
        /// Location id.
        location_id: u64,
    },
    /// The shop does not sell more than it has (`deny_oversell`).
    #[error(
        "inventory item {inventory_item_id} at location {location_id} has {available} available, {requested} requested"
    )]
    InsufficientStock {
        /// Inventory item id.
        inventory_item_id: u64,
        /// Location id.
        location_id: u64,
        /// Units available.
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
    /// No such fulfillment order.
    #[error("fulfillment order {fulfillment_order_id} does not exist")]
    UnknownFulfillmentOrder {
        /// Fulfillment order id.
        fulfillment_order_id: u64,
    },
    /// The order was cancelled before.
    #[error("order {order_id} is already cancelled")]
    AlreadyCancelled {
        /// Order id.
        order_id: u64,
    },
    /// An edit, fulfilment or refund the shop refuses (unknown line, too many units, …).
    #[error("{message}")]
    Invalid {
        /// What is wrong, as the shop would say it.
        message: String,
    },
}

/// What an edit, fulfilment or refund did, and the webhooks it sent (in order).
#[derive(Clone, Debug, Serialize)]
pub struct OrderChange {
    /// Shopify order id.
    pub order_id: u64,
    /// The change's own webhook body: `orders/edited` (`{"order_edit": …}`),
    /// `fulfillments/create` or `refunds/create`.
    pub change: Value,
    /// The order after the change (the `orders/updated` body).
    pub order: Value,
    /// Each webhook sent, in order: (topic, outcome).
    pub webhooks: Vec<(String, WebhookOutcome)>,
}

/// One line change of [`ShopifySimulator::edit_order`] (`orderEditSetQuantity`).
#[derive(Clone, Debug, Deserialize)]
pub struct EditSetLine {
    /// The order's line item id.
    pub line_item_id: u64,
    /// The line's new quantity in whole units (0 removes the line).
    pub quantity: u64,
    /// Put released units back into `available` (default true, as the admin's checkbox).
    #[serde(default = "yes")]
    pub restock: bool,
}

/// One added line of [`ShopifySimulator::edit_order`] (`orderEditAddVariant`).
#[derive(Clone, Debug, Deserialize)]
pub struct EditAddLine {
    /// The inventory item (the sandbox's variant id).
    pub inventory_item_id: u64,
    /// The line's SKU; the one the item was sold or listed under when absent.
    #[serde(default)]
    pub sku: Option<String>,
    /// Units added.
    pub quantity: u64,
}

/// An order edit in one go: begin, set quantities, add variants, commit.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OrderEditRequest {
    /// Lines whose quantity changes.
    #[serde(default)]
    pub set: Vec<EditSetLine>,
    /// Lines added.
    #[serde(default)]
    pub add: Vec<EditAddLine>,
}

fn yes() -> bool {
    true
}

/// Shared by the handle and the HTTP handlers.
#[derive(Debug)]
pub(crate) struct Inner {
    options: ShopifySimulatorOptions,
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

    fn sender(&self) -> Sender {
        Sender {
            secret: self.options.webhook_secret.clone(),
            shop_domain: self.options.shop_domain.clone(),
            api_version: self.options.webhook_api_version.clone(),
        }
    }

    /// `inventory_levels/update` events for changed levels, when enabled.
    fn level_events(
        &self,
        state: &SimState,
        changed: &[(u64, u64)],
        now_ms: i64,
    ) -> Vec<WebhookEvent> {
        if !self.options.emit_inventory_level_updates || state.webhook_url.is_none() {
            return Vec::new();
        }
        changed
            .iter()
            .filter_map(|(item, location)| state.level_json(*item, *location))
            .map(|mut body| {
                if let Some(object) = body.as_object_mut() {
                    object.remove("on_hand");
                }
                WebhookEvent::new("inventory_levels/update", &body, now_ms)
            })
            .collect()
    }

    /// Keeps an event in the delivery log (the oldest beyond `DELIVERIES_MAX` is forgotten).
    fn record(&self, event: &WebhookEvent) -> u64 {
        let mut state = self.lock();
        let id = state.next_delivery_id;
        state.next_delivery_id += 1;
        if state.deliveries.len() >= state::DELIVERIES_MAX {
            state.deliveries.pop_front();
        }
        state.deliveries.push_back(state::DeliveryRecord {
            id,
            topic: event.topic,
            event_id: event.event_id.clone(),
            triggered_at: webhook::rfc3339(event.triggered_at_ms),
            outcome: None,
            event: event.clone(),
            body: serde_json::from_slice(&event.body).unwrap_or(Value::Null),
        });
        id
    }

    /// Delivers with retries and logs the delivery; returns the last attempt's outcome.
    async fn deliver(&self, event: &WebhookEvent) -> WebhookOutcome {
        let id = self.record(event);
        let outcome = self.attempt(event).await;
        let mut state = self.lock();
        if let Some(record) = state.deliveries.iter_mut().find(|record| record.id == id) {
            record.outcome = Some(outcome.clone());
        }
        outcome
    }

    /// The delivery attempts of one event.
    async fn attempt(&self, event: &WebhookEvent) -> WebhookOutcome {
        let Some(url) = self.lock().webhook_url.clone() else {
            return WebhookOutcome::NotConfigured;
        };
        let sender = self.sender();
        let mut outcome = WebhookOutcome::NotConfigured;
        for attempt in 0..=self.options.webhook_retries {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(
                    self.options.webhook_retry_delay_ms,
                ))
                .await;
            }
            let result = webhook::deliver(&self.client, &url, &sender, event).await;
            let delivered = matches!(result, Ok(status) if (200..300).contains(&status));
            {
                let mut state = self.lock();
                if delivered {
                    state.counters.webhooks_delivered += 1;
                } else {
                    state.counters.webhooks_failed += 1;
                }
            }
            outcome = match result {
                Ok(status) => WebhookOutcome::Answered { status },
                Err(error) => WebhookOutcome::Failed { error },
            };
            if delivered {
                break;
            }
        }
        outcome
    }

    /// Delivers events in the background, in order.
    fn spawn_deliveries(self: &Arc<Self>, events: Vec<WebhookEvent>) {
        if events.is_empty() {
            return;
        }
        let inner = Arc::clone(self);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for event in events {
                    inner.deliver(&event).await;
                }
            });
        }
    }

    fn levels(&self) -> Vec<SandboxLevel> {
        let state = self.lock();
        state
            .levels
            .iter()
            .map(|((item, location), level)| SandboxLevel {
                inventory_item_id: *item,
                location_id: *location,
                available: level.available,
                on_hand: level.on_hand,
                updated_at: webhook::rfc3339(level.updated_at_ms),
            })
            .collect()
    }

    fn set_level(self: &Arc<Self>, item: u64, location: u64, available: i64) {
        let now_ms = self.now_ms();
        let events = {
            let mut state = self.lock();
            state.set_level(item, location, available, now_ms);
            self.level_events(&state, &[(item, location)], now_ms)
        };
        self.spawn_deliveries(events);
    }

    /// Takes a web or POS order; sends `orders/create` and, for a web order, then
    /// `fulfillment_orders/order_routing_complete` (waiting for each), then the level updates.
    async fn place_order(
        self: &Arc<Self>,
        source: OrderSource,
        location: u64,
        lines: &[SimOrderLine],
    ) -> Result<PlacedOrder, SimulatorError> {
        let now_ms = self.now_ms();
        let (order, level_events) = {
            let mut state = self.lock();
            let order =
                state.place_order(self.options.deny_oversell, source, location, lines, now_ms)?;
            let changed: Vec<(u64, u64)> = lines
                .iter()
                .map(|line| (line.inventory_item_id, location))
                .collect();
            let events = self.level_events(&state, &changed, now_ms);
            (order, events)
        };
        let body = webhook::order_json(&order);
        let outcome = self
            .deliver(&WebhookEvent::new("orders/create", &body, now_ms))
            .await;
        let fulfillment_order_id = order.fulfillment_order.id;
        if source == OrderSource::Web {
            let routed = fulfillment::routing_complete_json(fulfillment_order_id);
            self.deliver(&WebhookEvent::new(
                "fulfillment_orders/order_routing_complete",
                &routed,
                now_ms,
            ))
            .await;
        }
        self.spawn_deliveries(level_events);
        Ok(PlacedOrder {
            order_id: order.id,
            name: format!("#{}", order.number),
            body,
            webhook: outcome,
            fulfillment_order_id,
        })
    }

    /// Moves a fulfillment order; sends `fulfillment_orders/moved` (waiting for it), then
    /// the level updates.
    async fn move_fulfillment_order(
        self: &Arc<Self>,
        fulfillment_order_id: u64,
        new_location_id: u64,
    ) -> Result<FulfillmentOrderMove, SimulatorError> {
        let now_ms = self.now_ms();
        let (order_id, from, level_events) = {
            let mut state = self.lock();
            let moved = state.move_fulfillment_order(
                self.options.auto_create_levels,
                fulfillment_order_id,
                new_location_id,
                now_ms,
            )?;
            let events = self.level_events(&state, &moved.changed, now_ms);
            (moved.order_id, moved.from_location, events)
        };
        let body = fulfillment::moved_json(fulfillment_order_id, from, new_location_id);
        let outcome = self
            .deliver(&WebhookEvent::new(
                "fulfillment_orders/moved",
                &body,
                now_ms,
            ))
            .await;
        self.spawn_deliveries(level_events);
        Ok(FulfillmentOrderMove {
            order_id,
            fulfillment_order_id,
            from_location_id: from,
            to_location_id: new_location_id,
            body,
            webhook: outcome,
        })
    }

    async fn cancel_order(
        self: &Arc<Self>,
        order_id: u64,
        restock: bool,
        reason: &str,
    ) -> Result<PlacedOrder, SimulatorError> {
        let now_ms = self.now_ms();
        let (order, level_events) = {
            let mut state = self.lock();
            let order = state.cancel_order(order_id, restock, reason, now_ms)?;
            let changed: Vec<(u64, u64)> = if restock {
                order
                    .lines
                    .iter()
                    .map(|line| (line.item, order.location_id))
                    .collect()
            } else {
                Vec::new()
            };
            let events = self.level_events(&state, &changed, now_ms);
            (order, events)
        };
        let body = webhook::order_json(&order);
        let outcome = self
            .deliver(&WebhookEvent::new("orders/cancelled", &body, now_ms))
            .await;
        self.spawn_deliveries(level_events);
        Ok(PlacedOrder {
            order_id: order.id,
            name: format!("#{}", order.number),
            body,
            webhook: outcome,
            fulfillment_order_id: order.fulfillment_order.id,
        })
    }
}

impl Inner {
    /// Sends a change's webhooks in order and waits for each: the change's own topic
    /// (unless `None`), then `orders/updated`; plus level updates in the background.
    async fn announce(
        self: &Arc<Self>,
        order: &state::SimOrderRecord,
        topic: Option<&'static str>,
        change: Value,
        items: &[u64],
        now_ms: i64,
    ) -> OrderChange {
        let level_events = {
            let state = self.lock();
            let changed: Vec<(u64, u64)> = items
                .iter()
                .map(|item| (*item, order.location_id))
                .collect();
            self.level_events(&state, &changed, now_ms)
        };
        let mut webhooks = Vec::new();
        if let Some(topic) = topic {
            let outcome = self
                .deliver(&WebhookEvent::new(topic, &change, now_ms))
                .await;
            webhooks.push((topic.to_owned(), outcome));
        }
        let body = webhook::order_json(order);
        let outcome = self
            .deliver(&WebhookEvent::new("orders/updated", &body, now_ms))
            .await;
        webhooks.push(("orders/updated".to_owned(), outcome));
        self.spawn_deliveries(level_events);
        OrderChange {
            order_id: order.id,
            change,
            order: body,
            webhooks,
        }
    }

    /// Announces a committed edit (`orders/edited`, then `orders/updated`).
    pub(crate) async fn announce_edit(
        self: &Arc<Self>,
        order: &state::SimOrderRecord,
        edited: Value,
        now_ms: i64,
    ) -> OrderChange {
        let items: Vec<u64> = order.lines.iter().map(|line| line.item).collect();
        self.announce(order, Some("orders/edited"), edited, &items, now_ms)
            .await
    }

    async fn edit_order(
        self: &Arc<Self>,
        order_id: u64,
        request: &OrderEditRequest,
    ) -> Result<OrderChange, SimulatorError> {
        let now_ms = self.now_ms();
        let (order, edited) = {
            let mut state = self.lock();
            let edit_id = state.edit_begin(order_id, now_ms)?;
            let staged = (|| {
                for line in &request.set {
                    state.edit_set_quantity(
                        self.options.allow_edit_below_fulfilled,
                        edit_id,
                        line.line_item_id,
                        line.quantity,
                        line.restock,
                    )?;
                }
                for line in &request.add {
                    state.edit_add_variant(
                        edit_id,
                        line.inventory_item_id,
                        line.sku.as_deref(),
                        line.quantity,
                    )?;
                }
                state.edit_commit(self.options.deny_oversell, edit_id, now_ms)
            })();
            if staged.is_err() {
                state.edit_sessions.remove(&edit_id);
            }
            staged?
        };
        Ok(self.announce_edit(&order, edited, now_ms).await)
    }

    async fn fulfil(
        self: &Arc<Self>,
        order_id: u64,
        lines: &[FulfilLineRequest],
    ) -> Result<OrderChange, SimulatorError> {
        let now_ms = self.now_ms();
        let (order, body) = self.lock().fulfil(order_id, lines, now_ms)?;
        let topic = self
            .options
            .emit_fulfillment_webhooks
            .then_some("fulfillments/create");
        let items: Vec<u64> = order.lines.iter().map(|line| line.item).collect();
        Ok(self.announce(&order, topic, body, &items, now_ms).await)
    }

    async fn refund(
        self: &Arc<Self>,
        order_id: u64,
        lines: &[RefundLineRequest],
        note: Option<&str>,
    ) -> Result<OrderChange, SimulatorError> {
        let now_ms = self.now_ms();
        let (order, body) = self.lock().refund(order_id, lines, note, now_ms)?;
        let items: Vec<u64> = order.lines.iter().map(|line| line.item).collect();
        Ok(self
            .announce(&order, Some("refunds/create"), body, &items, now_ms)
            .await)
    }

    async fn redeliver(&self, delivery_id: u64) -> Option<WebhookOutcome> {
        let event = self
            .lock()
            .deliveries
            .iter()
            .find(|record| record.id == delivery_id)
            .map(|record| record.event.clone())?;
        Some(self.deliver(&event).await)
    }

    fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.lock()
            .deliveries
            .iter()
            .map(|record| WebhookDelivery {
                id: record.id,
                topic: record.topic.to_owned(),
                event_id: record.event_id.clone(),
                triggered_at: record.triggered_at.clone(),
                outcome: record.outcome.clone(),
                body: record.body.clone(),
            })
            .collect()
    }

    fn order_body(&self, order_id: u64) -> Option<Value> {
        self.lock().orders.get(&order_id).map(webhook::order_json)
    }

    fn fulfillment_orders(&self, order_id: u64) -> Option<Vec<SandboxFulfillmentOrder>> {
        self.lock()
            .orders
            .get(&order_id)
            .map(|order| vec![order.fulfillment_order_view()])
    }
}

/// One webhook event in the delivery log (`GET /_sandbox/webhooks`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookDelivery {
    /// Delivery number; `POST /_sandbox/webhooks/{id}/redeliver` sends it again.
    pub id: u64,
    /// `X-Shopify-Topic`.
    pub topic: String,
    /// `X-Shopify-Event-Id` (the same on every re-delivery of the event).
    pub event_id: String,
    /// `X-Shopify-Triggered-At`.
    pub triggered_at: String,
    /// The last attempt's outcome; `None` while in flight.
    pub outcome: Option<WebhookOutcome>,
    /// The body sent.
    pub body: Value,
}

/// A running simulator. Dropping it (or [`shutdown`](Self::shutdown)) stops the server.
#[derive(Debug)]
pub struct ShopifySimulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Starts the simulator on a listener the caller bound (tests bind `127.0.0.1:0`).
///
/// Errors: the listener's local address cannot be read.
pub async fn start(
    options: ShopifySimulatorOptions,
    listener: tokio::net::TcpListener,
) -> std::io::Result<ShopifySimulator> {
    let addr = listener.local_addr()?;
    let now = tokio::time::Instant::now();
    let inner = Arc::new(Inner {
        state: Mutex::new(SimState::new(&options, now)),
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
            tracing::warn!(error = %error, "shopify simulator server stopped with an error");
        }
    });
    Ok(ShopifySimulator {
        inner,
        addr,
        stop: Some(stop),
        server: Some(server),
    })
}

impl ShopifySimulator {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `shopify.shop_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The options it runs with.
    pub fn options(&self) -> &ShopifySimulatorOptions {
        &self.inner.options
    }

    /// Sets (and creates) a level behind the engine's back, like a merchant in the admin.
    /// Emits `inventory_levels/update` when enabled.
    pub fn set_level(&self, inventory_item_id: u64, location_id: u64, available: i64) {
        self.inner
            .set_level(inventory_item_id, location_id, available);
    }

    /// The `available` quantity of a level, `None` when the item is not stocked there.
    pub fn level(&self, inventory_item_id: u64, location_id: u64) -> Option<i64> {
        self.inner
            .lock()
            .levels
            .get(&(inventory_item_id, location_id))
            .map(|level| level.available)
    }

    /// Every value `available` took at a level, oldest first (capped at 1,000).
    pub fn level_history(&self, inventory_item_id: u64, location_id: u64) -> Vec<i64> {
        self.inner
            .lock()
            .levels
            .get(&(inventory_item_id, location_id))
            .map(|level| level.history.clone())
            .unwrap_or_default()
    }

    /// When each value of [`level_history`](Self::level_history) was set, in wall-clock
    /// milliseconds since the Unix epoch (the simulator's clock), oldest first (capped at
    /// 1,000). Read-only; the load generator's movement → push latency uses it.
    pub fn level_history_at_ms(&self, inventory_item_id: u64, location_id: u64) -> Vec<i64> {
        self.inner
            .lock()
            .levels
            .get(&(inventory_item_id, location_id))
            .map(|level| level.history_at_ms.clone())
            .unwrap_or_default()
    }

    /// Every level, ordered by (inventory item, location); what `GET /_sandbox/levels` returns.
    pub fn levels(&self) -> Vec<SandboxLevel> {
        self.inner.levels()
    }

    /// Points webhooks at `url` (`None` stops them).
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.lock().webhook_url = url;
    }

    /// Takes a web order at `location_id`: commits every line there (`available` drops,
    /// all or none) under one open fulfillment order assigned to `location_id`, then POSTs
    /// signed `orders/create` and `fulfillment_orders/order_routing_complete` webhooks and
    /// waits for their answers.
    ///
    /// Errors: [`SimulatorError::UnknownLevel`], [`SimulatorError::InsufficientStock`],
    /// [`SimulatorError::Invalid`] (more than 250 lines).
    pub async fn place_order(
        &self,
        location_id: u64,
        lines: &[SimOrderLine],
    ) -> Result<PlacedOrder, SimulatorError> {
        self.inner
            .place_order(OrderSource::Web, location_id, lines)
            .await
    }

    /// Takes a point-of-sale order in the store at `location_id`: the units leave
    /// `on_hand` and `available` there at once (all lines or none), the order is fulfilled
    /// (its fulfillment order is closed) and its body has `source_name: "pos"` and
    /// `location_id`. POSTs only `orders/create` (then the level updates).
    ///
    /// Errors: [`SimulatorError::UnknownLevel`], [`SimulatorError::InsufficientStock`]
    /// (under [`ShopifySimulatorOptions::deny_oversell`]), [`SimulatorError::Invalid`].
    pub async fn place_pos_order(
        &self,
        location_id: u64,
        lines: &[SimOrderLine],
    ) -> Result<PlacedOrder, SimulatorError> {
        self.inner
            .place_order(OrderSource::Pos, location_id, lines)
            .await
    }

    /// Moves an open fulfillment order, as a whole, to `new_location_id` (the admin's
    /// "Change location"): its open units are released at the old location and committed
    /// at the new one, later fulfilments ship from there; then POSTs
    /// `fulfillment_orders/moved` and waits for its answer (level updates follow).
    ///
    /// Errors: [`SimulatorError::UnknownFulfillmentOrder`]; [`SimulatorError::Invalid`]
    /// (closed or cancelled FO, or the location it already has);
    /// [`SimulatorError::UnknownLevel`] (the new location does not stock a line's item and
    /// [`ShopifySimulatorOptions::auto_create_levels`] is off).
    pub async fn move_fulfillment_order(
        &self,
        fulfillment_order_id: u64,
        new_location_id: u64,
    ) -> Result<FulfillmentOrderMove, SimulatorError> {
        self.inner
            .move_fulfillment_order(fulfillment_order_id, new_location_id)
            .await
    }

    /// The fulfillment orders of an order (the sandbox keeps one per order); empty when
    /// the order is unknown.
    pub fn fulfillment_orders(&self, order_id: u64) -> Vec<SandboxFulfillmentOrder> {
        self.inner.fulfillment_orders(order_id).unwrap_or_default()
    }

    /// Cancels an order (with `restock`, its units return to `available`) and POSTs a
    /// signed `orders/cancelled` webhook.
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::AlreadyCancelled`].
    pub async fn cancel_order(
        &self,
        order_id: u64,
        restock: bool,
    ) -> Result<PlacedOrder, SimulatorError> {
        self.inner.cancel_order(order_id, restock, "customer").await
    }

    /// Cancels an order with a `cancel_reason` (`customer`, `inventory`, `fraud`,
    /// `declined`, `staff`, `other`); otherwise as [`cancel_order`](Self::cancel_order).
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::AlreadyCancelled`].
    pub async fn cancel_order_with_reason(
        &self,
        order_id: u64,
        restock: bool,
        reason: &str,
    ) -> Result<PlacedOrder, SimulatorError> {
        self.inner.cancel_order(order_id, restock, reason).await
    }

    /// Edits an order as `orderEditBegin` → `orderEditSetQuantity` / `orderEditAddVariant`
    /// → `orderEditCommit` would: lines keep `quantity`, `current_quantity` changes, added
    /// lines appear, levels follow; then sends `orders/edited` and `orders/updated` and
    /// waits for their answers. All changes or none.
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::AlreadyCancelled`],
    /// [`SimulatorError::InsufficientStock`], [`SimulatorError::Invalid`].
    pub async fn edit_order(
        &self,
        order_id: u64,
        request: &OrderEditRequest,
    ) -> Result<OrderChange, SimulatorError> {
        self.inner.edit_order(order_id, request).await
    }

    /// Fulfils lines (all fulfillable units when `lines` is empty): `fulfillable_quantity`
    /// drops and the units leave on-hand; sends `fulfillments/create` (when
    /// [`ShopifySimulatorOptions::emit_fulfillment_webhooks`]) and `orders/updated`.
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::AlreadyCancelled`],
    /// [`SimulatorError::Invalid`].
    pub async fn fulfil(
        &self,
        order_id: u64,
        lines: &[FulfilLineRequest],
    ) -> Result<OrderChange, SimulatorError> {
        self.inner.fulfil(order_id, lines).await
    }

    /// Refunds lines with a `restock_type` each; sends `refunds/create` and `orders/updated`.
    ///
    /// Errors: [`SimulatorError::UnknownOrder`], [`SimulatorError::Invalid`] (unknown line,
    /// more units than are left, unknown restock type).
    pub async fn refund(
        &self,
        order_id: u64,
        lines: &[RefundLineRequest],
        note: Option<&str>,
    ) -> Result<OrderChange, SimulatorError> {
        self.inner.refund(order_id, lines, note).await
    }

    /// Every webhook event sent so far (the last 1,000), oldest first.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.inner.deliveries()
    }

    /// Sends a past delivery again (same topic, body and `X-Shopify-Event-Id`, a fresh
    /// `X-Shopify-Webhook-Id`); `None` when no delivery has that id.
    pub async fn redeliver(&self, delivery_id: u64) -> Option<WebhookOutcome> {
        self.inner.redeliver(delivery_id).await
    }

    /// The order as the REST resource (`orders/updated` body), `None` when unknown.
    pub fn order(&self, order_id: u64) -> Option<Value> {
        self.inner.order_body(order_id)
    }

    /// What the simulator has seen so far.
    pub fn counters(&self) -> SimulatorCounters {
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

impl Drop for ShopifySimulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
