//! Request bodies of the Amazon adapter: Listings Items PATCH (PLATFORMS.md §4.1) and
//! JSON_LISTINGS_FEED documents (§4.2); paths and the LWA token are the platform client's
//! ([`crate::platforms::amazon`]).

use serde_json::{Value, json};

/// The JSON Patch path of the stock attribute.
pub const FULFILLMENT_AVAILABILITY: &str = "/attributes/fulfillment_availability";

/// The `merge` patch of `fulfillment_availability` with a DEFAULT (merchant) quantity.
/// `merge` keeps siblings such as `lead_time_to_ship_max_days` (§4.1).
pub fn quantity_patch(quantity: u64) -> Value {
    json!([{
        "op": "merge",
        "path": FULFILLMENT_AVAILABILITY,
        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}],
    }])
}

/// The PATCH body.
pub fn patch_body(product_type: &str, quantity: u64) -> Value {
    json!({ "productType": product_type, "patches": quantity_patch(quantity) })
}

/// A JSON_LISTINGS_FEED document: one PATCH message per `(seller SKU, quantity)`, message
/// ids 1.. in order.
pub fn feed_document(seller_id: &str, product_type: &str, items: &[(String, u64)]) -> Value {
    let messages: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(index, (seller_sku, quantity))| {
            json!({
                "messageId": index + 1,
                "sku": seller_sku,
                "operationType": "PATCH",
                "productType": product_type,
                "patches": quantity_patch(*quantity),
            })
        })
        .collect();
    json!({
        "header": {"sellerId": seller_id, "version": "2.0", "issueLocale": "en_US"},
        "messages": messages,
    })
}
