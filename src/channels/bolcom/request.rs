//! Requests of the bol.com adapter: URLs, the v10 media type and bodies (PLATFORMS.md §3.1,
//! §3.3, §3.4).

use serde_json::{Value, json};

/// The media type of every Retailer API v10 call, sent as `Accept` (and `Content-Type`
/// with a body).
pub const MEDIA_TYPE: &str = "application/vnd.retailer.v10+json";

/// `PUT {api}/retailer/offers/{offerId}/stock`.
pub fn stock_url(api_url: &str, offer_id: &str) -> String {
    format!("{api_url}/retailer/offers/{offer_id}/stock")
}

/// `GET {api}/retailer/offers/{offerId}`.
pub fn offer_url(api_url: &str, offer_id: &str) -> String {
    format!("{api_url}/retailer/offers/{offer_id}")
}

/// `GET {api}/shared/process-status/{id}`.
pub fn process_status_url(api_url: &str, id: &str) -> String {
    format!("{api_url}/shared/process-status/{id}")
}

/// The stock body `{amount, managedByRetailer}`. `managedByRetailer` is always `true`:
/// our amount is ATP after the orders we already ingested, so bol must only subtract
/// orders placed after this update (§3.8).
pub fn stock_body(amount: u64) -> Value {
    json!({ "amount": amount, "managedByRetailer": true })
}

/// The client-credentials form body of `POST /token`.
pub const TOKEN_BODY: &str = "grant_type=client_credentials";
