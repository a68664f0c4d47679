//! Shopify fulfillment orders (issue 16): where Shopify decided an order's units ship from,
//! and the movements that keep our reservations there.
//!
//! Shopify assigns each order's units to a location through fulfillment orders (FOs), not
//! through the order (the order's `location_id` is legacy, PLATFORMS.md §1.6). The FO
//! webhooks are thin: `fulfillment_orders/order_routing_complete` carries only
//! `fulfillment_order.id`, and `fulfillment_orders/moved` the original and moved FOs with
//! their `assigned_location_id`, the `destination_location_id` and the `source_location`
//! (Shopify changelog 2023-04), never the order or its lines. So the receiver verifies the
//! delivery, then reads each FO named in it with the Admin GraphQL query
//! [`FULFILLMENT_ORDER_QUERY`] and turns what Shopify holds *now* into movements
//! ([`movements`]). Reading the current state rather than trusting the payload makes
//! duplicate and out-of-order deliveries converge: an older `moved` read after a newer one
//! sees the newer location.
//!
//! Per FO line with units still to ship (`remainingQuantity` > 0), for an open FO
//! (`OPEN`, `IN_PROGRESS`, `SCHEDULED`, `ON_HOLD`) whose assigned location the channel maps:
//! 1. the line's sale, the very movement the order webhooks decode (same reservation id,
//!    idempotency key, quantity and channel routing), so whichever arrives first reserves
//!    and the others are duplicates: an FO read before its `orders/create` still reserves;
//! 2. unless the line already sits at a location of ours feeding the assigned Shopify
//!    location, a [`MovementKind::Reassign`] of it to the location chosen by
//!    [`reassign_target`] (the first feed), applied right after the sale. The ledger moves every open
//!    unit at once or refuses the move when the target cannot hold them (the receipt then
//!    says `rejected`, and the reservation stays, flagged in the log and metrics, where it
//!    was). Key `{channel}:fo:{fo}:{line}:{location}:{updatedAt ms}`, so a later move back
//!    to an earlier location is a new movement.
//!
//! A closed or cancelled FO, an unmapped location or a line without a SKU yields nothing
//! (the reason goes to the receipt's note). A line split across several FOs at different
//! locations follows the FO read last (the ledger keeps one location per order line).
//!
//! Lost webhooks: the orders poller (`ingest::shopify::poller`) reads the fulfillment
//! orders of the open web orders it polls on a multi-location channel
//! ([`ORDER_FULFILLMENT_ORDERS_QUERY`]) and applies the same movements, so a lost routing
//! or move webhook is made good by the next poll (a compare-and-set conflict wakes it).
//!
//! May depend on: `config`, `domain`, `ledger` (reads), `platforms::shopify` (the client),
//! and `ingest::shopify::decode` (keys and labels).

use super::decode::{movement, reservation_id, sale_key};
use crate::config::ChannelConfig;
use crate::domain::{LocationId, Movement, MovementKind, Sku};
use crate::platforms::PlatformError;
use crate::platforms::shopify::ShopifyClient;
use serde_json::{Value, json};

/// Most FO line items read per FO (Shopify's connection page size cap is 250).
pub const FULFILLMENT_ORDER_LINES_MAX: usize = 250;

/// The Admin GraphQL query that reads one fulfillment order: status, order, assigned
/// location and line items (`fulfillmentOrder(id:)`, Admin GraphQL `FulfillmentOrder`).
pub const FULFILLMENT_ORDER_QUERY: &str = "query StocksyncFulfillmentOrder($id: ID!) {
  fulfillmentOrder(id: $id) {
    id status updatedAt
    order { id legacyResourceId }
    assignedLocation { location { id legacyResourceId } }
    lineItems(first: 250) { nodes { id totalQuantity remainingQuantity lineItem { id sku quantity } } }
  }
}";

/// Most fulfillment orders read per order (an order split across many locations is rare).
pub const ORDER_FULFILLMENT_ORDERS_MAX: usize = 20;

/// The Admin GraphQL query that reads an order's fulfillment orders (`order(id:) {
/// fulfillmentOrders }`), for the orders poller: the backstop when a fulfillment-order
/// webhook was lost.
pub const ORDER_FULFILLMENT_ORDERS_QUERY: &str = "query StocksyncOrderFulfillmentOrders($id: ID!) {
  order(id: $id) {
    id
    fulfillmentOrders(first: 20) { nodes {
      id status updatedAt
      order { id legacyResourceId }
      assignedLocation { location { id legacyResourceId } }
      lineItems(first: 250) { nodes { id totalQuantity remainingQuantity lineItem { id sku quantity } } }
    } }
  }
}";

/// One fulfillment order as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FulfillmentOrder {
    /// The FO's numeric id.
    pub id: u64,
    /// The order's numeric id (as text, like the order webhooks' ids).
    pub order_id: String,
    /// `OPEN`, `IN_PROGRESS`, `SCHEDULED`, `ON_HOLD`, `CLOSED`, `CANCELLED`, `INCOMPLETE`.
    pub status: String,
    /// Last change, in milliseconds since the Unix epoch (0 when absent).
    pub updated_at_ms: i64,
    /// The Shopify location it is assigned to.
    pub assigned_location_id: Option<u64>,
    /// Its line items.
    pub lines: Vec<FulfillmentOrderLine>,
}

/// One line of a fulfillment order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FulfillmentOrderLine {
    /// The order line's numeric id (as text).
    pub line_item_id: String,
    /// The order line's SKU.
    pub sku: Option<String>,
    /// Units the order line was ordered with (`lineItem.quantity`, the sale's quantity).
    pub ordered: u64,
    /// Units of this FO line still to ship.
    pub remaining: u64,
}

impl FulfillmentOrder {
    /// True while Shopify may still ship units of it from its assigned location.
    pub fn is_open(&self) -> bool {
        matches!(
            self.status.as_str(),
            "OPEN" | "IN_PROGRESS" | "SCHEDULED" | "ON_HOLD"
        )
    }
}

/// Why a fulfillment order could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FulfillmentOrderError {
    /// The request failed (transport, throttling, 5xx, auth): the delivery is answered 503
    /// so that Shopify delivers it again.
    #[error("reading fulfillment order {id}: {source}")]
    Platform {
        /// The FO id.
        id: u64,
        /// What failed.
        #[source]
        source: PlatformError,
    },
    /// The answer was not a fulfillment order.
    #[error("reading fulfillment order {id}: unexpected answer: {message}")]
    Answer {
        /// The FO id.
        id: u64,
        /// What was wrong.
        message: String,
    },
}

/// The GraphQL request body that reads FO `id`.
pub fn query_body(id: u64) -> Value {
    json!({
        "query": FULFILLMENT_ORDER_QUERY,
        "variables": { "id": format!("gid://shopify/FulfillmentOrder/{id}") },
    })
}

/// Reads FO `id`; `Ok(None)` when Shopify does not know it (deleted, or another shop's).
///
/// Errors: [`FulfillmentOrderError`].
pub async fn fetch(
    client: &ShopifyClient,
    id: u64,
) -> Result<Option<FulfillmentOrder>, FulfillmentOrderError> {
    let answer = client
        .graphql_paced(&query_body(id))
        .await
        .map_err(|source| FulfillmentOrderError::Platform { id, source })?;
    parse(&answer.body).map_err(|message| FulfillmentOrderError::Answer { id, message })
}

fn gid_number(value: &Value, kind: &str) -> Option<u64> {
    crate::channels::shopify::config::parse_gid(value.as_str()?, kind)
}

/// Reads the fulfillment orders of order `order_id` (at most
/// [`ORDER_FULFILLMENT_ORDERS_MAX`]); empty when Shopify does not know the order.
///
/// Errors: [`FulfillmentOrderError`] (with the order id in place of an FO id).
pub async fn fetch_for_order(
    client: &ShopifyClient,
    order_id: u64,
) -> Result<Vec<FulfillmentOrder>, FulfillmentOrderError> {
    let body = json!({
        "query": ORDER_FULFILLMENT_ORDERS_QUERY,
        "variables": { "id": format!("gid://shopify/Order/{order_id}") },
    });
    let answer =
        client
            .graphql_paced(&body)
            .await
            .map_err(|source| FulfillmentOrderError::Platform {
                id: order_id,
                source,
            })?;
    parse_order(&answer.body).map_err(|message| FulfillmentOrderError::Answer {
        id: order_id,
        message,
    })
}

/// Parses an [`ORDER_FULFILLMENT_ORDERS_QUERY`] answer; empty for `"order": null`.
///
/// Errors: a message when the answer has GraphQL `errors` or a node misses a required field.
pub fn parse_order(body: &Value) -> Result<Vec<FulfillmentOrder>, String> {
    if let Some(errors) = body.get("errors").filter(|errors| !errors.is_null()) {
        return Err(format!("GraphQL errors: {errors}"));
    }
    if !body["data"].is_object() {
        return Err("no data".to_owned());
    }
    body["data"]["order"]["fulfillmentOrders"]["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(ORDER_FULFILLMENT_ORDERS_MAX)
        .map(parse_node)
        .collect()
}

/// Parses a [`FULFILLMENT_ORDER_QUERY`] answer; `Ok(None)` for `"fulfillmentOrder": null`.
///
/// Errors: a message when the answer has GraphQL `errors` or misses a required field.
pub fn parse(body: &Value) -> Result<Option<FulfillmentOrder>, String> {
    if let Some(errors) = body.get("errors").filter(|errors| !errors.is_null()) {
        return Err(format!("GraphQL errors: {errors}"));
    }
    let node = &body["data"]["fulfillmentOrder"];
    if node.is_null() {
        return if body["data"].is_object() {
            Ok(None)
        } else {
            Err("no data".to_owned())
        };
    }
    parse_node(node).map(Some)
}

/// One `FulfillmentOrder` node.
fn parse_node(node: &Value) -> Result<FulfillmentOrder, String> {
    let id = gid_number(&node["id"], "FulfillmentOrder").ok_or("missing fulfillmentOrder.id")?;
    let order_id = gid_number(&node["order"]["id"], "Order")
        .ok_or("missing fulfillmentOrder.order.id")?
        .to_string();
    let status = node["status"].as_str().unwrap_or("").to_ascii_uppercase();
    let updated_at_ms = node["updatedAt"]
        .as_str()
        .and_then(crate::ingest::timestamp_ms)
        .unwrap_or(0);
    let assigned_location_id = gid_number(&node["assignedLocation"]["location"]["id"], "Location");
    let nodes = node["lineItems"]["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut lines = Vec::with_capacity(nodes.len().min(FULFILLMENT_ORDER_LINES_MAX));
    for line in nodes.iter().take(FULFILLMENT_ORDER_LINES_MAX) {
        let Some(line_item_id) = gid_number(&line["lineItem"]["id"], "LineItem") else {
            return Err("a line item has no lineItem.id".to_owned());
        };
        lines.push(FulfillmentOrderLine {
            line_item_id: line_item_id.to_string(),
            sku: line["lineItem"]["sku"]
                .as_str()
                .map(str::trim)
                .filter(|sku| !sku.is_empty())
                .map(str::to_owned),
            ordered: line["lineItem"]["quantity"]
                .as_u64()
                .or_else(|| line["totalQuantity"].as_u64())
                .unwrap_or(0),
            remaining: line["remainingQuantity"].as_u64().unwrap_or(0),
        });
    }
    Ok(FulfillmentOrder {
        id,
        order_id,
        status,
        updated_at_ms,
        assigned_location_id,
        lines,
    })
}

/// The locations of ours that feed Shopify location `shopify_location` on `channel`, in
/// routing order (empty when the channel does not map it).
pub fn feeds(channel: &ChannelConfig, shopify_location: u64) -> Vec<LocationId> {
    let Some(shopify) = channel.shopify() else {
        return Vec::new();
    };
    let channel_locations: Vec<String> = channel
        .locations
        .iter()
        .map(|location| location.as_str().to_owned())
        .collect();
    shopify
        .feeds_of(&channel_locations, shopify_location)
        .into_iter()
        .map(LocationId::from)
        .collect()
}

/// Where a reassignment to a Shopify location fed by `feeds` goes: the line's `current`
/// location when it is one of the feeds (nothing moves), else the first feed.
pub fn reassign_target(feeds: &[LocationId], current: Option<&LocationId>) -> Option<LocationId> {
    match current {
        Some(current) if feeds.contains(current) => Some(current.clone()),
        _ => feeds.first().cloned(),
    }
}

/// The key of a reassignment of FO line `line` to `to` at FO version `updated_at_ms`.
pub fn reassign_key(
    channel: &ChannelConfig,
    fo: u64,
    line: &str,
    to: &LocationId,
    updated_at_ms: i64,
) -> String {
    format!("{}:fo:{fo}:{line}:{to}:{updated_at_ms}", channel.id)
}

/// The movements for FO `fo` (see the module docs); `current` gives the location a line's
/// reservation is at now (by reservation id), when the ledger knows it. Returns the
/// movements and, when the FO yields none on purpose, why.
pub fn movements(
    channel: &ChannelConfig,
    fo: &FulfillmentOrder,
    current: &dyn Fn(&str, &str) -> Option<LocationId>,
) -> (Vec<Movement>, Option<String>) {
    if !fo.is_open() {
        return (
            Vec::new(),
            Some(format!(
                "fulfillment order {} is {}; nothing to reserve",
                fo.id, fo.status
            )),
        );
    }
    let Some(shopify_location) = fo.assigned_location_id else {
        return (
            Vec::new(),
            Some(format!(
                "fulfillment order {} has no assigned location yet",
                fo.id
            )),
        );
    };
    let feeds = feeds(channel, shopify_location);
    if feeds.is_empty() {
        return (
            Vec::new(),
            Some(format!(
                "fulfillment order {} is assigned to Shopify location {shopify_location}, which channel {} does not map",
                fo.id, channel.id
            )),
        );
    }
    let mut out = Vec::new();
    for line in &fo.lines {
        let Some(sku) = line.sku.as_deref() else {
            continue;
        };
        if line.remaining == 0 || line.ordered == 0 {
            continue;
        }
        let reservation = reservation_id(channel, &fo.order_id, &line.line_item_id);
        // Exactly the order webhook's sale, so that whichever arrives second is a duplicate
        // (the ledger refuses a key reused for a different movement).
        out.push(movement(
            channel,
            sale_key(channel, &fo.order_id, &line.line_item_id),
            sku,
            MovementKind::Sale {
                reservation: reservation.clone(),
                quantity: line.ordered,
                location: None,
                route: channel.locations.clone(),
            },
        ));
        let here = current(sku, &reservation);
        let Some(to) = reassign_target(&feeds, here.as_ref()) else {
            continue;
        };
        if here.as_ref() == Some(&to) {
            continue;
        }
        out.push(movement(
            channel,
            reassign_key(channel, fo.id, &line.line_item_id, &to, fo.updated_at_ms),
            sku,
            MovementKind::Reassign { reservation, to },
        ));
    }
    (out, None)
}

/// [`movements`] for `fo`, with each line's current location read from `ledger` (a SKU the
/// ledger never saw has none).
///
/// Errors: the ledger cannot read a SKU's state (store failure).
pub async fn movements_from_ledger(
    ledger: &crate::ledger::Ledger,
    channel: &ChannelConfig,
    fo: &FulfillmentOrder,
) -> Result<(Vec<Movement>, Option<String>), crate::ledger::LedgerError> {
    let mut current: std::collections::HashMap<String, LocationId> =
        std::collections::HashMap::new();
    for line in &fo.lines {
        let Some(sku) = line.sku.as_deref() else {
            continue;
        };
        let reservation = reservation_id(channel, &fo.order_id, &line.line_item_id);
        let known = ledger.known_state(&Sku::from(sku)).await?;
        if let Some(location) = known.and_then(|state| {
            state
                .reservations
                .get(reservation.as_str())
                .map(|line| line.location.clone())
        }) {
            current.insert(reservation, location);
        }
    }
    Ok(movements(channel, fo, &|_, reservation| {
        current.get(reservation).cloned()
    }))
}

/// A test channel `shop`: a warehouse (Shopify 100, fed by WH) and a store (Shopify 200, fed
/// by STORE then STORE-BACK).
#[cfg(test)]
pub(crate) fn two_location_channel() -> ChannelConfig {
    let toml = r#"
[[locations]]
id = "WH"
[[locations]]
id = "STORE"
[[locations]]
id = "STORE-BACK"

[[channels]]
id = "shop"
kind = "shopify"
locations = ["WH", "STORE", "STORE-BACK"]
[channels.shopify]
shop_url = "http://127.0.0.1:1"
access_token = "t"
webhook_secret = "w"
[[channels.shopify.location_map]]
shopify_location_id = 100
feeds = ["WH"]
[[channels.shopify.location_map]]
shopify_location_id = 200
feeds = ["STORE", "STORE-BACK"]
"#;
    let config = crate::config::Config::from_toml(toml).unwrap();
    config.validate().unwrap();
    config.channels[0].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> ChannelConfig {
        two_location_channel()
    }

    fn answer(status: &str, location: u64, remaining: u64) -> Value {
        json!({"data": {"fulfillmentOrder": {
        "id": "gid://shopify/FulfillmentOrder/77", "status": status,
        "updatedAt": "2026-12-02T10:00:00.000Z",
        "order": {"id": "gid://shopify/Order/5500", "legacyResourceId": "5500"},
        "assignedLocation": {"location": {"id": format!("gid://shopify/Location/{location}")}},
        "lineItems": {"nodes": [
            {"id": "gid://shopify/FulfillmentOrderLineItem/1", "totalQuantity": 2, "remainingQuantity": remaining,
             "lineItem": {"id": "gid://shopify/LineItem/9001", "sku": "TEE-M", "quantity": 2}},
            {"id": "gid://shopify/FulfillmentOrderLineItem/2", "totalQuantity": 1, "remainingQuantity": 1,
             "lineItem": {"id": "gid://shopify/LineItem/9002", "sku": null, "quantity": 1}}
        ]}}}})
    }

    #[test]
    fn an_answer_parses_into_the_order_location_and_lines() {
        let fo = parse(&answer("OPEN", 200, 2)).unwrap().unwrap();
        assert_eq!(fo.id, 77);
        assert_eq!(fo.order_id, "5500");
        assert_eq!(fo.assigned_location_id, Some(200));
        assert_eq!(fo.updated_at_ms, 1_796_205_600_000);
        assert_eq!(fo.lines.len(), 2);
        assert_eq!(fo.lines[0].line_item_id, "9001");
        assert_eq!(fo.lines[0].sku.as_deref(), Some("TEE-M"));
        assert_eq!((fo.lines[0].ordered, fo.lines[0].remaining), (2, 2));
        assert_eq!(fo.lines[1].sku, None);
        assert_eq!(
            parse(&json!({"data": {"fulfillmentOrder": null}})).unwrap(),
            None
        );
        assert!(parse(&json!({"errors": [{"message": "x"}]})).is_err());
        assert!(parse(&json!({})).is_err());
    }

    #[test]
    fn an_open_order_reserves_among_the_feeds_and_reassigns_there() {
        let channel = channel();
        let fo = parse(&answer("OPEN", 200, 2)).unwrap().unwrap();
        let (out, note) = movements(&channel, &fo, &|_, _| Some(LocationId::from("WH")));
        assert_eq!(note, None);
        assert_eq!(out.len(), 2, "the line without a SKU yields nothing");
        match &out[0].kind {
            MovementKind::Sale {
                reservation,
                quantity,
                location,
                route,
            } => {
                assert_eq!(reservation, "shop:5500:9001");
                assert_eq!(*quantity, 2);
                assert_eq!(*location, None);
                assert_eq!(route, &channel.locations, "the order webhook's own sale");
            }
            other => panic!("expected a sale, got {other:?}"),
        }
        assert_eq!(out[0].idempotency_key, sale_key(&channel, "5500", "9001"));
        assert_eq!(
            out[1].kind,
            MovementKind::Reassign {
                reservation: "shop:5500:9001".into(),
                to: "STORE".into()
            }
        );
        assert_eq!(
            out[1].idempotency_key,
            "shop:fo:77:9001:STORE:1796205600000"
        );
    }

    #[test]
    fn the_sale_is_the_order_webhooks_own_so_either_is_a_duplicate_of_the_other() {
        let channel = channel();
        let fo = parse(&answer("OPEN", 200, 2)).unwrap().unwrap();
        let (out, _) = movements(&channel, &fo, &|_, _| None);
        let order = serde_json::to_vec(&json!({
            "id": 5500, "line_items": [{"id": 9001, "sku": "TEE-M", "quantity": 2}]
        }))
        .unwrap();
        let decoded = super::super::decode::decode(
            &channel,
            super::super::decode::WebhookTopic::OrdersCreate,
            &order,
        )
        .unwrap();
        assert_eq!(out[0], decoded.movements[0]);
        // A line the ledger has not seen yet: reserved by the sale, then moved to the store.
        assert_eq!(
            out[1].kind,
            MovementKind::Reassign {
                reservation: "shop:5500:9001".into(),
                to: "STORE".into()
            }
        );
    }

    #[test]
    fn a_line_already_at_a_feed_is_not_moved_within_the_shopify_location() {
        let channel = channel();
        let fo = parse(&answer("OPEN", 200, 2)).unwrap().unwrap();
        let (out, _) = movements(&channel, &fo, &|_, _| Some(LocationId::from("STORE-BACK")));
        assert_eq!(out.len(), 1, "the sale only: {out:?}");
        assert!(matches!(out[0].kind, MovementKind::Sale { .. }));
    }

    #[test]
    fn closed_unmapped_and_shipped_orders_yield_nothing() {
        let channel = channel();
        let closed = parse(&answer("CLOSED", 200, 2)).unwrap().unwrap();
        let (out, note) = movements(&channel, &closed, &|_, _| None);
        assert!(out.is_empty());
        assert!(note.unwrap().contains("CLOSED"));
        let unmapped = parse(&answer("OPEN", 999, 2)).unwrap().unwrap();
        let (out, note) = movements(&channel, &unmapped, &|_, _| None);
        assert!(out.is_empty());
        assert!(note.unwrap().contains("does not map"));
        let shipped = parse(&answer("IN_PROGRESS", 100, 0)).unwrap().unwrap();
        let (out, _) = movements(&channel, &shipped, &|_, _| None);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn an_orders_fulfillment_orders_parse_as_nodes() {
        let node = answer("OPEN", 200, 2)["data"]["fulfillmentOrder"].clone();
        let body = json!({"data": {"order": {"id": "gid://shopify/Order/5500",
            "fulfillmentOrders": {"nodes": [node.clone(), node]}}}});
        let fos = parse_order(&body).unwrap();
        assert_eq!(fos.len(), 2);
        assert_eq!(fos[0].assigned_location_id, Some(200));
        assert!(
            parse_order(&json!({"data": {"order": null}}))
                .unwrap()
                .is_empty()
        );
        assert!(parse_order(&json!({"errors": [{"message": "Throttled"}]})).is_err());
    }

    #[test]
    fn the_target_is_the_current_feed_or_the_first() {
        let feeds = vec![LocationId::from("A"), "B".into()];
        assert_eq!(reassign_target(&feeds, Some(&"B".into())), Some("B".into()));
        assert_eq!(reassign_target(&feeds, Some(&"C".into())), Some("A".into()));
        assert_eq!(reassign_target(&feeds, None), Some("A".into()));
        assert_eq!(reassign_target(&[], None), None);
    }
}
