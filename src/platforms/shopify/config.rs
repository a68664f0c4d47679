//! `[channels.shopify]`: the settings of a Shopify Admin API channel (PLATFORMS.md §1) and
//! their validation.
//!
//! Owns: [`ShopifyConfig`], [`ShopifyListingConfig`], their `default_*` functions and
//! [`validate`], which `Config::validate` calls for channels of this kind.
//!
//! May depend on: nothing else in the crate.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// `[channels.shopify]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    /// Shop base URL (`https://example.myshopify.com`, or the simulator's `http://127.0.0.1:PORT`).
    pub shop_url: String,
    /// Admin API version in the URL (`2026-04`).
    #[serde(default = "default_shopify_api_version")]
    pub api_version: String,
    /// Admin API access token (sent as `X-Shopify-Access-Token`).
    pub access_token: String,
    /// App client secret that signs webhooks (HMAC-SHA256 of the raw body).
    pub webhook_secret: String,
    /// Shopify location id (number) the channel's ATP is written to.
    pub location_id: u64,
    /// Use REST `inventory_levels/set.json` instead of GraphQL (legacy fallback).
    #[serde(default)]
    pub use_rest: bool,
    /// SKU → inventory item mappings written inline.
    #[serde(default)]
    pub listings: Vec<ShopifyListingConfig>,
    /// A CSV file with header `sku,inventory_item_id` holding more mappings.
    #[serde(default)]
    pub listings_csv: Option<PathBuf>,
    /// Poll `orders.json?updated_at_min=…` every this many seconds, a backstop for lost
    /// webhooks (`ingest::shopify::poller`); 0 (the default): poll only when a
    /// compare-and-set conflict wakes the poller.
    #[serde(default)]
    pub orders_poll_interval_secs: u64,
    /// Poll the orders at once when a compare-and-set conflict shows the shop sold units
    /// we have not ingested (default true); with this false and no interval, no poller runs.
    #[serde(default = "default_true")]
    pub orders_poll_on_conflict: bool,
    /// How far the first orders poll looks back, in seconds (default 3600).
    #[serde(default = "default_shopify_orders_poll_lookback_secs")]
    pub orders_poll_lookback_secs: u64,
}

fn default_shopify_api_version() -> String {
    "2026-04".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_shopify_orders_poll_lookback_secs() -> u64 {
    3600
}

/// One SKU → Shopify inventory item mapping.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyListingConfig {
    /// Our SKU.
    pub sku: String,
    /// Shopify InventoryItem id (number).
    pub inventory_item_id: u64,
}

/// Checks a `[channels.shopify]` section of channel `id`; pushes one string per problem.
pub fn validate(id: &str, config: &ShopifyConfig, problems: &mut Vec<String>) {
    if !config.shop_url.starts_with("http://") && !config.shop_url.starts_with("https://") {
        problems.push(format!(
            "channel {id}: shopify.shop_url must start with http:// or https://"
        ));
    }
    if config.webhook_secret.is_empty() {
        problems.push(format!(
            "channel {id}: shopify.webhook_secret must not be empty"
        ));
    }
    let mut skus = HashSet::new();
    for listing in &config.listings {
        if !skus.insert(listing.sku.clone()) {
            problems.push(format!("channel {id}: SKU {} is mapped twice", listing.sku));
        }
    }
}
