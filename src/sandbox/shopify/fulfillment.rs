//! Fulfillment orders (Shopify multi-location), free of HTTP: every order has one
//! fulfillment order (FO) assigned to the location whose levels it committed (the order's
//! `location_id`); moving the FO moves the committed units to another location, and
//! fulfilments ship from the FO's assigned location. Also the bodies of
//! `fulfillment_orders/order_routing_complete` and `fulfillment_orders/moved`, and the
//! GraphQL `fulfillmentOrder(id:)` answer.
//!
//! Simplifications: one FO per order, moved as a whole (no split, no partial move); its
//! line items are the order's lines (total = fulfilled + still to ship, remaining = still
//! to ship), so edits and refunds show in it at once; a move does not check `deny_oversell`
//! (Shopify lets a merchant move an FO to a location that has too few units).

use super::state::{SimLineRecord, SimOrderRecord, SimState};
use super::webhook::rfc3339;
use super::{SimulatorError, WebhookOutcome};
use serde::Serialize;
use serde_json::{Value, json};

/// FO line item ids are `FO id × LINE_ID_FACTOR + line position + 1`.
const LINE_ID_FACTOR: u64 = 1_000;
const _: () = assert!((super::orders::ORDER_LINES_MAX as u64) < LINE_ID_FACTOR);

/// A fulfillment order's status (GraphQL `FulfillmentOrderStatus`; the sandbox uses three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FulfillmentOrderStatus {
    /// Units left to ship (a web order's FO from creation).
    Open,
    /// Nothing left to ship: fully fulfilled (a POS order's FO from creation) or every open
    /// unit refunded.
    Closed,
    /// The order was cancelled while the FO was open.
    Cancelled,
}

impl FulfillmentOrderStatus {
    /// The GraphQL enum value (`OPEN`, `CLOSED`, `CANCELLED`).
    pub fn as_graphql(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Closed => "CLOSED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The webhook (REST) value (`open`, `closed`, `cancelled`).
    pub fn as_rest(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One line item of a fulfillment order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SandboxFulfillmentOrderLine {
    /// Fulfillment order line item id (`gid://shopify/FulfillmentOrderLineItem/<id>`).
    pub id: u64,
    /// The order's line item id.
    pub line_item_id: u64,
    /// The inventory item of the line.
    pub inventory_item_id: u64,
    /// The line's SKU.
    pub sku: String,
    /// Units on the FO: fulfilled plus still to ship (`totalQuantity`).
    pub total_quantity: u64,
    /// Units still to ship (`remainingQuantity`; 0 once the order is cancelled).
    pub remaining_quantity: u64,
}

/// A fulfillment order as [`ShopifySimulator::fulfillment_orders`](super::ShopifySimulator::fulfillment_orders)
/// and `GET /_sandbox/orders/{order_id}/fulfillment_orders` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SandboxFulfillmentOrder {
    /// Fulfillment order id.
    pub id: u64,
    /// The order it belongs to.
    pub order_id: u64,
    /// Open, closed or cancelled.
    pub status: FulfillmentOrderStatus,
    /// The location its units are committed at and ship from.
    pub assigned_location_id: u64,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Its line items (lines removed entirely by edits or refunds are left out).
    pub line_items: Vec<SandboxFulfillmentOrderLine>,
}

/// What [`ShopifySimulator::move_fulfillment_order`](super::ShopifySimulator::move_fulfillment_order) did.
#[derive(Clone, Debug, Serialize)]
pub struct FulfillmentOrderMove {
    /// The order whose FO moved.
    pub order_id: u64,
    /// The FO moved (as a whole, so it is also the moved FO).
    pub fulfillment_order_id: u64,
    /// The location the FO was assigned to before.
    pub from_location_id: u64,
    /// The location it is assigned to now.
    pub to_location_id: u64,
    /// The `fulfillment_orders/moved` body.
    pub body: Value,
    /// The delivery of `fulfillment_orders/moved`.
    pub webhook: WebhookOutcome,
}

/// What a move changed in the shop (before its webhooks are sent).
#[derive(Debug)]
pub(crate) struct MovedUnits {
    /// The order whose FO moved.
    pub order_id: u64,
    /// The FO's location before the move.
    pub from_location: u64,
    /// The levels changed, as (inventory item, location).
    pub changed: Vec<(u64, u64)>,
}

/// Units of a line still to ship (0 once the order is cancelled).
fn remaining(order: &SimOrderRecord, line: &SimLineRecord) -> u64 {
    if order.cancelled_at_ms.is_some() {
        0
    } else {
        line.fulfillable()
    }
}

impl SimOrderRecord {
    /// Closes the FO when nothing is left to ship and reopens it when an edit adds units;
    /// a cancelled FO stays cancelled.
    pub(crate) fn sync_fulfillment_order(&mut self, now_ms: i64) {
        if self.fulfillment_order.status == FulfillmentOrderStatus::Cancelled {
            return;
        }
        let left: u64 = self.lines.iter().map(|line| remaining(self, line)).sum();
        let status = if left == 0 {
            FulfillmentOrderStatus::Closed
        } else {
            FulfillmentOrderStatus::Open
        };
        if status != self.fulfillment_order.status {
            self.fulfillment_order.status = status;
            self.fulfillment_order.updated_at_ms = now_ms;
        }
    }

    /// The order's FO as the sandbox shows it.
    pub(crate) fn fulfillment_order_view(&self) -> SandboxFulfillmentOrder {
        let fo = &self.fulfillment_order;
        let line_items = self
            .lines
            .iter()
            .enumerate()
            .filter_map(|(index, line)| {
                let remaining = remaining(self, line);
                let total = line.fulfilled.saturating_add(line.fulfillable());
                (total > 0).then(|| SandboxFulfillmentOrderLine {
                    id: fo.id * LINE_ID_FACTOR + index as u64 + 1,
                    line_item_id: line.id,
                    inventory_item_id: line.item,
                    sku: line.sku.clone(),
                    total_quantity: total,
                    remaining_quantity: remaining,
                })
            })
            .collect();
        SandboxFulfillmentOrder {
            id: fo.id,
            order_id: self.id,
            status: fo.status,
            assigned_location_id: self.location_id,
            updated_at: rfc3339(fo.updated_at_ms),
            line_items,
        }
    }
}

impl SimState {
    /// Moves an open FO, as a whole, to `new_location`: the open units of every line are
    /// released at the old location (back into `available`) and committed at the new one
    /// (its `available` drops); fulfilments then ship from the new location.
    ///
    /// Errors: [`SimulatorError::UnknownFulfillmentOrder`]; [`SimulatorError::Invalid`] for
    /// a closed or cancelled FO or a move to its own location;
    /// [`SimulatorError::UnknownLevel`] when the new location does not stock a line's item
    /// (unless `auto_create_levels`). Nothing changes on an error.
    pub fn move_fulfillment_order(
        &mut self,
        auto_create_levels: bool,
        fulfillment_order_id: u64,
        new_location: u64,
        now_ms: i64,
    ) -> Result<MovedUnits, SimulatorError> {
        let unknown = SimulatorError::UnknownFulfillmentOrder {
            fulfillment_order_id,
        };
        let order_id = *self
            .fulfillment_order_index
            .get(&fulfillment_order_id)
            .ok_or(unknown.clone())?;
        let order = self.orders.get(&order_id).ok_or(unknown)?;
        let status = order.fulfillment_order.status;
        if status != FulfillmentOrderStatus::Open {
            return Err(SimulatorError::Invalid {
                message: format!(
                    "fulfillment order {fulfillment_order_id} is {}; only an open one can move",
                    status.as_rest()
                ),
            });
        }
        let old_location = order.location_id;
        if new_location == old_location {
            return Err(SimulatorError::Invalid {
                message: format!(
                    "fulfillment order {fulfillment_order_id} is already assigned to location {new_location}"
                ),
            });
        }
        let open: Vec<(u64, i64)> = order
            .lines
            .iter()
            .filter(|line| line.fulfillable() > 0)
            .map(|line| {
                (
                    line.item,
                    i64::try_from(line.fulfillable()).unwrap_or(i64::MAX),
                )
            })
            .collect();
        if !auto_create_levels
            && let Some((item, _)) = open
                .iter()
                .find(|(item, _)| !self.levels.contains_key(&(*item, new_location)))
        {
            return Err(SimulatorError::UnknownLevel {
                inventory_item_id: *item,
                location_id: new_location,
            });
        }
        let mut changed = Vec::new();
        for (item, units) in &open {
            self.commit_units(*item, old_location, -units, true, now_ms);
            self.commit_units(*item, new_location, *units, false, now_ms);
            for level in [(*item, old_location), (*item, new_location)] {
                if !changed.contains(&level) {
                    changed.push(level);
                }
            }
        }
        let order = self
            .orders
            .get_mut(&order_id)
            .expect("the order was found above");
        order.location_id = new_location;
        order.fulfillment_order.updated_at_ms = now_ms;
        Ok(MovedUnits {
            order_id,
            from_location: old_location,
            changed,
        })
    }

    /// The GraphQL `order(id:) { fulfillmentOrders }` answer: the order with its fulfillment
    /// orders (the sandbox keeps one per order) as `nodes`; `null` for an unknown order.
    pub fn order_fulfillment_orders_graphql(&self, order_id: u64) -> Value {
        let Some(order) = self.orders.get(&order_id) else {
            return Value::Null;
        };
        let node = self.fulfillment_order_graphql(order.fulfillment_order.id);
        json!({
            "id": format!("gid://shopify/Order/{order_id}"),
            "fulfillmentOrders": { "nodes": [node] },
        })
    }

    /// The GraphQL `fulfillmentOrder(id:)` answer; `null` for an unknown id.
    pub fn fulfillment_order_graphql(&self, fulfillment_order_id: u64) -> Value {
        let Some(order) = self
            .fulfillment_order_index
            .get(&fulfillment_order_id)
            .and_then(|order_id| self.orders.get(order_id))
        else {
            return Value::Null;
        };
        let view = order.fulfillment_order_view();
        let nodes: Vec<Value> = view
            .line_items
            .iter()
            .map(|line| {
                // `LineItem.quantity` is what was ordered; `currentQuantity` what is left
                // after edits and removals (Admin GraphQL `LineItem`).
                let (quantity, current) = order
                    .lines
                    .iter()
                    .find(|l| l.id == line.line_item_id)
                    .map_or((0, 0), |l| (l.quantity, l.current_quantity()));
                json!({
                    "id": format!("gid://shopify/FulfillmentOrderLineItem/{}", line.id),
                    "totalQuantity": line.total_quantity,
                    "remainingQuantity": line.remaining_quantity,
                    "lineItem": {
                        "id": format!("gid://shopify/LineItem/{}", line.line_item_id),
                        "sku": line.sku,
                        "quantity": quantity,
                        "currentQuantity": current,
                    },
                })
            })
            .collect();
        json!({
            "id": fulfillment_order_gid(view.id),
            "status": view.status.as_graphql(),
            "updatedAt": view.updated_at,
            "order": {
                "id": format!("gid://shopify/Order/{}", order.id),
                "legacyResourceId": order.id.to_string(),
            },
            "assignedLocation": {
                "location": {
                    "id": location_gid(view.assigned_location_id),
                    "legacyResourceId": view.assigned_location_id.to_string(),
                },
            },
            "lineItems": { "nodes": nodes },
        })
    }
}

fn fulfillment_order_gid(id: u64) -> String {
    format!("gid://shopify/FulfillmentOrder/{id}")
}

fn location_gid(id: u64) -> String {
    format!("gid://shopify/Location/{id}")
}

/// The `fulfillment_orders/order_routing_complete` body: thin, as Shopify's (no order id,
/// no lines).
pub(crate) fn routing_complete_json(fulfillment_order_id: u64) -> Value {
    json!({
        "fulfillment_order": {
            "id": fulfillment_order_gid(fulfillment_order_id),
            "status": FulfillmentOrderStatus::Open.as_rest(),
        }
    })
}

/// The `fulfillment_orders/moved` body of a whole-FO move (original and moved FO are the
/// same FO, now at `to`).
pub(crate) fn moved_json(fulfillment_order_id: u64, from: u64, to: u64) -> Value {
    let fo = json!({
        "id": fulfillment_order_gid(fulfillment_order_id),
        "status": FulfillmentOrderStatus::Open.as_rest(),
        "assigned_location_id": location_gid(to),
    });
    json!({
        "original_fulfillment_order": fo,
        "moved_fulfillment_order": fo,
        "destination_location_id": location_gid(to),
        "fulfillment_order_line_items_requested": [],
        "source_location": { "id": location_gid(from) },
    })
}
