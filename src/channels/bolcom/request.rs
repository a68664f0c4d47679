//! Request bodies of the bol.com adapter (PLATFORMS.md §3.3); URLs, the media type and the
//! token request are the platform client's ([`crate::platforms::bolcom`]).

use serde_json::{Value, json};

/// The stock body `{amount, managedByRetailer}`. `managedByRetailer` is always `true`:
/// our amount is ATP after the orders we already ingested, so bol must only subtract
/// orders placed after this update (§3.8).
pub fn stock_body(amount: u64) -> Value {
    json!({ "amount": amount, "managedByRetailer": true })
}
