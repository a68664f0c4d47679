//! `[channels.woocommerce]`: the settings of a WooCommerce REST API channel (PLATFORMS.md
//! §2) and their validation.
//!
//! Owns: [`WoocommerceConfig`], [`WoocommerceListingConfig`], their `default_*` functions
//! and [`validate`], which `Config::validate` calls for channels of this kind.
//!
//! May depend on: nothing else in the crate.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// `[channels.woocommerce]` (PLATFORMS.md §2).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WoocommerceConfig {
    /// Site base URL (`https://shop.example.com`, or the simulator's `http://127.0.0.1:PORT`);
    /// the API lives under `{site_url}/wp-json/wc/v3`.
    pub site_url: String,
    /// REST API consumer key (`ck_…`), sent as the HTTP Basic user.
    pub consumer_key: String,
    /// REST API consumer secret (`cs_…`), sent as the HTTP Basic password.
    pub consumer_secret: String,
    /// Send the key and secret as `?consumer_key=…&consumer_secret=…` instead of HTTP Basic
    /// (for hosts that strip the `Authorization` header, §2 Auth).
    #[serde(default)]
    pub auth_in_query: bool,
    /// The webhook `secret` set in WooCommerce; signs deliveries (base64 HMAC-SHA256, §2.4).
    pub webhook_secret: String,
    /// Most items in one `POST …/batch` (the shop's `woocommerce_rest_batch_items_limit`,
    /// default 100, §2.2). A 413 answer splits the batch anyway.
    #[serde(default = "default_woocommerce_batch_limit")]
    pub batch_limit: usize,
    /// Seconds between two polls of `GET /orders?modified_after=` (the backstop for
    /// disabled or lost webhooks, §2.4); 0 disables polling.
    #[serde(default = "default_woocommerce_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// How far back the first poll after start looks, in seconds.
    #[serde(default = "default_woocommerce_poll_lookback_secs")]
    pub poll_lookback_secs: u64,
    /// Timeout of one API request, in seconds.
    #[serde(default = "default_woocommerce_timeout_secs")]
    pub timeout_secs: u64,
    /// SKU → product / variation mappings written inline.
    #[serde(default)]
    pub listings: Vec<WoocommerceListingConfig>,
    /// A CSV file with header `sku,product_id[,variation_id]` holding more mappings (an empty
    /// or 0 `variation_id` means a simple product).
    #[serde(default)]
    pub listings_csv: Option<PathBuf>,
}

fn default_woocommerce_batch_limit() -> usize {
    100
}
fn default_woocommerce_poll_interval_secs() -> u64 {
    60
}
fn default_woocommerce_poll_lookback_secs() -> u64 {
    3600
}
fn default_woocommerce_timeout_secs() -> u64 {
    30
}

/// One SKU → WooCommerce listing mapping: a simple product, or a variation of a product.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WoocommerceListingConfig {
    /// Our SKU.
    pub sku: String,
    /// WooCommerce product id (the parent for a variation).
    pub product_id: u64,
    /// WooCommerce variation id; absent (or 0) for a simple product.
    #[serde(default)]
    pub variation_id: Option<u64>,
}

/// Checks a `[channels.woocommerce]` section of channel `id`; pushes one string per problem.
pub fn validate(id: &str, woocommerce: &WoocommerceConfig, problems: &mut Vec<String>) {
    if !woocommerce.site_url.starts_with("http://") && !woocommerce.site_url.starts_with("https://")
    {
        problems.push(format!(
            "channel {id}: woocommerce.site_url must start with http:// or https://"
        ));
    }
    if woocommerce.consumer_key.is_empty() || woocommerce.consumer_secret.is_empty() {
        problems.push(format!(
            "channel {id}: woocommerce.consumer_key and consumer_secret must not be empty"
        ));
    }
    if woocommerce.webhook_secret.is_empty() {
        problems.push(format!(
            "channel {id}: woocommerce.webhook_secret must not be empty"
        ));
    }
    if woocommerce.batch_limit == 0 {
        problems.push(format!(
            "channel {id}: woocommerce.batch_limit must be at least 1"
        ));
    }
    if woocommerce.timeout_secs == 0 {
        problems.push(format!(
            "channel {id}: woocommerce.timeout_secs must be at least 1"
        ));
    }
    let mut skus = HashSet::new();
    let mut listings = HashSet::new();
    for listing in &woocommerce.listings {
        if !skus.insert(listing.sku.clone()) {
            problems.push(format!("channel {id}: SKU {} is mapped twice", listing.sku));
        }
        let key = (listing.product_id, listing.variation_id.unwrap_or(0));
        if listing.product_id == 0 {
            problems.push(format!(
                "channel {id}: SKU {} has product_id 0",
                listing.sku
            ));
        } else if !listings.insert(key) {
            problems.push(format!(
                "channel {id}: product {} variation {} is mapped to two SKUs",
                key.0, key.1
            ));
        }
    }
}
