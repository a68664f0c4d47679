//! Requests of the Amazon adapter: LWA token form, Listings Items PATCH (PLATFORMS.md §4.1)
//! and JSON_LISTINGS_FEED documents (§4.2).

use serde_json::{Value, json};

/// The JSON Patch path of the stock attribute.
pub const FULFILLMENT_AVAILABILITY: &str = "/attributes/fulfillment_availability";

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters kept).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The LWA refresh-token form body.
pub fn token_body(client_id: &str, client_secret: &str, refresh_token: &str) -> String {
    format!(
        "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
        encode(refresh_token),
        encode(client_id),
        encode(client_secret)
    )
}

/// `…/listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=…`.
pub fn listing_url(api_url: &str, seller_id: &str, seller_sku: &str, marketplace: &str) -> String {
    format!(
        "{api_url}/listings/2021-08-01/items/{}/{}?marketplaceIds={}",
        encode(seller_id),
        encode(seller_sku),
        encode(marketplace)
    )
}

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
