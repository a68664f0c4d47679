//! Request bodies and paths of the Shopify adapter (PLATFORMS.md §1.2, §1.4); the Admin
//! API base and the token are the platform client's ([`crate::platforms::shopify`]).

use super::config::{inventory_item_gid, location_gid};
use serde_json::{Value, json};

/// `inventorySetQuantities` with name `available`, CAS per quantity and an idempotency key
/// (mandatory from 2026-04, PLATFORMS.md §1.2).
pub const SET_QUANTITIES_MUTATION: &str = "mutation StocksyncSetAvailable($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange item { id } location { id } } }
    userErrors { code field message }
  }
}";

/// Reads `available` of inventory items at one location.
pub const LEVELS_QUERY: &str = "query StocksyncLevels($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } } }
  }
}";

/// `reason` sent with every set: our ledger corrects the channel's number.
pub const SET_REASON: &str = "correction";

/// One quantity of a set: inventory item at a location, new `available`, expected current
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetQuantity {
    /// Inventory item id.
    pub item: u64,
    /// Shopify location id (one call may set levels at several locations, §1.2).
    pub location: u64,
    /// New `available`.
    pub quantity: u64,
    /// `changeFromQuantity`; `None` is sent as an explicit `null` (opt out, allowed in 2026-04).
    pub change_from: Option<i64>,
}

/// The GraphQL body of one `inventorySetQuantities` call (each quantity at its own location).
pub fn set_quantities_body(
    quantities: &[SetQuantity],
    idempotency_key: &str,
    reference: &str,
) -> Value {
    let quantities: Vec<Value> = quantities
        .iter()
        .map(|quantity| {
            json!({
                "inventoryItemId": inventory_item_gid(quantity.item),
                "locationId": location_gid(quantity.location),
                "quantity": quantity.quantity,
                "changeFromQuantity": quantity.change_from,
            })
        })
        .collect();
    json!({
        "query": SET_QUANTITIES_MUTATION,
        "variables": {
            "idempotencyKey": idempotency_key,
            "input": {
                "name": "available",
                "reason": SET_REASON,
                "referenceDocumentUri": reference,
                "quantities": quantities,
            },
        },
    })
}

/// The GraphQL body of one level read.
pub fn levels_body(items: &[u64], location: u64) -> Value {
    let ids: Vec<String> = items.iter().map(|item| inventory_item_gid(*item)).collect();
    json!({
        "query": LEVELS_QUERY,
        "variables": { "ids": ids, "locationId": location_gid(location) },
    })
}

/// The REST `inventory_levels/set.json` body.
pub fn rest_set_body(item: u64, location: u64, available: u64) -> Value {
    json!({ "location_id": location, "inventory_item_id": item, "available": available })
}

/// The REST `inventory_levels/set.json` path under the Admin API base.
pub const REST_SET_PATH: &str = "/inventory_levels/set.json";

/// `/inventory_levels.json?inventory_item_ids=…&location_ids=…` under the Admin API base.
pub fn rest_levels_path(items: &[u64], location: u64) -> String {
    let ids: Vec<String> = items.iter().map(u64::to_string).collect();
    format!(
        "/inventory_levels.json?inventory_item_ids={}&location_ids={location}",
        ids.join(",")
    )
}
