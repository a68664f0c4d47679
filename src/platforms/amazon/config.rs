//! `[channels.amazon]`: the settings of an Amazon SP-API channel (PLATFORMS.md §4) and
//! their validation.
//!
//! Owns: [`AmazonConfig`], [`AmazonListingConfig`], their `default_*` functions and
//! [`validate`], which `Config::validate` calls for channels of this kind.
//!
//! May depend on: nothing else in the crate.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// `[channels.amazon]` (PLATFORMS.md §4).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmazonConfig {
    /// Regional SP-API host (`https://sellingpartnerapi-eu.amazon.com`, or the simulator).
    #[serde(default = "default_amazon_api_url")]
    pub api_url: String,
    /// The LWA token endpoint (`https://api.amazon.com/auth/o2/token`).
    #[serde(default = "default_amazon_token_url")]
    pub token_url: String,
    /// LWA client id.
    pub client_id: String,
    /// LWA client secret.
    pub client_secret: String,
    /// LWA refresh token of the selling partner.
    pub refresh_token: String,
    /// The seller id (merchant token) in Listings Items paths.
    pub seller_id: String,
    /// The marketplace (`A1805IZSGTT6HS` for NL).
    pub marketplace_id: String,
    /// Timeout of one HTTP request, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `productType` of listings patches (`PRODUCT` works for offer-only patches, §4.1).
    #[serde(default = "default_amazon_product_type")]
    pub product_type: String,
    /// A push of at least this many listings goes as one JSON_LISTINGS_FEED instead of
    /// single PATCHes (when a feed submission is available, §4.2).
    #[serde(default = "default_amazon_feed_min_items")]
    pub feed_min_items: usize,
    /// Most messages in one feed (Amazon: 25,000).
    #[serde(default = "default_amazon_feed_max_messages")]
    pub feed_max_messages: usize,
    /// JSON_LISTINGS_FEED submissions allowed per window (Amazon: 5 per 5 min).
    #[serde(default = "default_amazon_feeds_per_window")]
    pub feeds_per_window: u32,
    /// The feed submission window, in seconds (Amazon: 300).
    #[serde(default = "default_amazon_feed_window_secs")]
    pub feed_window_secs: u64,
    /// Pause between `getFeed` polls, in milliseconds.
    #[serde(default = "default_amazon_feed_poll_ms")]
    pub feed_poll_ms: u64,
    /// Longest wait for a feed to be processed, in milliseconds; then its items are retried.
    #[serde(default = "default_amazon_feed_wait_ms")]
    pub feed_wait_ms: u64,
    /// How often the Orders API is polled as a backstop to notifications, in milliseconds;
    /// 0 disables it.
    #[serde(default = "default_amazon_order_poll_interval_ms")]
    pub order_poll_interval_ms: u64,
    /// How often FBA inventory summaries are read into the FBA location, in milliseconds;
    /// 0 disables it.
    #[serde(default = "default_amazon_fba_poll_interval_ms")]
    pub fba_poll_interval_ms: u64,
    /// The read-only location FBA stock is counted into; default `FBA-<marketplace_id>`.
    #[serde(default)]
    pub fba_location: Option<String>,
    /// Kafka topic carrying ORDER_CHANGE notifications from an SQS bridge (uses the
    /// `[kafka]` brokers); absent means HTTP and polling only.
    #[serde(default)]
    pub notifications_topic: Option<String>,
    /// SKU → seller SKU mappings, FBA SKUs marked. A SKU may have one MFN and one FBA
    /// listing (each under its own seller SKU).
    #[serde(default)]
    pub listings: Vec<AmazonListingConfig>,
}

impl AmazonConfig {
    /// The location FBA stock is counted into (`fba_location`, else `FBA-<marketplace_id>`).
    pub fn fba_location_id(&self) -> String {
        self.fba_location
            .clone()
            .unwrap_or_else(|| format!("FBA-{}", self.marketplace_id))
    }
}

fn default_amazon_api_url() -> String {
    "https://sellingpartnerapi-eu.amazon.com".to_owned()
}
fn default_amazon_token_url() -> String {
    "https://api.amazon.com/auth/o2/token".to_owned()
}
fn default_amazon_product_type() -> String {
    "PRODUCT".to_owned()
}
fn default_amazon_feed_min_items() -> usize {
    50
}
fn default_amazon_feed_max_messages() -> usize {
    25_000
}
fn default_amazon_feeds_per_window() -> u32 {
    5
}
fn default_amazon_feed_window_secs() -> u64 {
    300
}
fn default_amazon_feed_poll_ms() -> u64 {
    15_000
}
fn default_amazon_feed_wait_ms() -> u64 {
    900_000
}
fn default_amazon_order_poll_interval_ms() -> u64 {
    120_000
}
fn default_amazon_fba_poll_interval_ms() -> u64 {
    900_000
}

/// One SKU → Amazon seller SKU mapping.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmazonListingConfig {
    /// Our SKU.
    pub sku: String,
    /// The seller SKU at Amazon; default: the same as `sku`.
    #[serde(default)]
    pub seller_sku: Option<String>,
    /// Fulfilled by Amazon: never pushed (a DEFAULT quantity would flip it to MFN, §4.6);
    /// its stock is read into the FBA location.
    #[serde(default)]
    pub fba: bool,
}

impl AmazonListingConfig {
    /// The seller SKU (`seller_sku`, else `sku`).
    pub fn seller_sku(&self) -> &str {
        self.seller_sku.as_deref().unwrap_or(&self.sku)
    }
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

fn check_url(problems: &mut Vec<String>, id: &str, field: &str, url: &str) {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        problems.push(format!(
            "channel {id}: {field} must start with http:// or https://"
        ));
    }
}

/// Checks an `[channels.amazon]` section; `has_kafka` says whether `[kafka]` is configured
/// (needed by `notifications_topic`). Pushes one string per problem.
pub fn validate(id: &str, config: &AmazonConfig, has_kafka: bool, problems: &mut Vec<String>) {
    check_url(problems, id, "amazon.api_url", &config.api_url);
    check_url(problems, id, "amazon.token_url", &config.token_url);
    for (field, value) in [
        ("client_id", &config.client_id),
        ("client_secret", &config.client_secret),
        ("refresh_token", &config.refresh_token),
        ("seller_id", &config.seller_id),
        ("marketplace_id", &config.marketplace_id),
        ("product_type", &config.product_type),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("channel {id}: amazon.{field} must not be empty"));
        }
    }
    if config.feed_max_messages == 0 || config.feed_max_messages > 25_000 {
        problems.push(format!(
            "channel {id}: amazon.feed_max_messages must be within 1..=25000"
        ));
    }
    if config.feed_min_items < 2 {
        problems.push(format!(
            "channel {id}: amazon.feed_min_items must be at least 2"
        ));
    }
    if config.feed_poll_ms == 0 {
        problems.push(format!(
            "channel {id}: amazon.feed_poll_ms must be at least 1"
        ));
    }
    if config.notifications_topic.is_some() && !has_kafka {
        problems.push(format!(
            "channel {id}: amazon.notifications_topic needs a [kafka] section"
        ));
    }
    // A SKU may have one MFN and one FBA listing (two offers, two seller SKUs); a second
    // listing of the same fulfilment is a real duplicate.
    let mut skus = HashSet::new();
    let mut seller_skus = HashSet::new();
    for listing in &config.listings {
        if !skus.insert((listing.sku.as_str(), listing.fba)) {
            problems.push(format!(
                "channel {id}: SKU {} is mapped twice as {} (a SKU may have one MFN and one FBA listing)",
                listing.sku,
                if listing.fba { "FBA" } else { "MFN" }
            ));
        }
        if listing.seller_sku().trim().is_empty() || !seller_skus.insert(listing.seller_sku()) {
            problems.push(format!(
                "channel {id}: seller SKU {:?} is empty or mapped twice",
                listing.seller_sku()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amazon_feed_limits_and_kafka_topic_are_checked() {
        let mut config: AmazonConfig = toml::from_str(
            r#"
            client_id = "c"
            client_secret = "s"
            refresh_token = "r"
            seller_id = "SELLER"
            marketplace_id = "A1805IZSGTT6HS"
            feed_max_messages = 30000
            notifications_topic = "amazon.notifications"
            [[listings]]
            sku = "A"
            fba = true
            "#,
        )
        .unwrap();
        assert_eq!(config.fba_location_id(), "FBA-A1805IZSGTT6HS");
        assert_eq!(config.listings[0].seller_sku(), "A");
        let mut problems = Vec::new();
        validate("amz", &config, false, &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        config.feed_max_messages = 25_000;
        let mut problems = Vec::new();
        validate("amz", &config, true, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    fn listings(listings: &str) -> Vec<String> {
        let config: AmazonConfig = toml::from_str(&format!(
            r#"
            client_id = "c"
            client_secret = "s"
            refresh_token = "r"
            seller_id = "SELLER"
            marketplace_id = "M"
            listings = [{listings}]
            "#
        ))
        .unwrap();
        let mut problems = Vec::new();
        validate("amz", &config, false, &mut problems);
        problems
    }

    #[test]
    fn an_mfn_and_an_fba_listing_of_one_sku_pass_real_duplicates_do_not() {
        assert_eq!(
            listings(
                r#"{ sku = "A", seller_sku = "A-MFN" }, { sku = "A", seller_sku = "A-FBA", fba = true }"#
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            listings(r#"{ sku = "A", seller_sku = "A-1" }, { sku = "A", seller_sku = "A-2" }"#),
            vec![
                "channel amz: SKU A is mapped twice as MFN (a SKU may have one MFN and one FBA listing)"
                    .to_owned()
            ]
        );
        assert_eq!(
            listings(
                r#"{ sku = "A", seller_sku = "A-1", fba = true }, { sku = "A", seller_sku = "A-2", fba = true }"#
            ),
            vec![
                "channel amz: SKU A is mapped twice as FBA (a SKU may have one MFN and one FBA listing)"
                    .to_owned()
            ]
        );
        assert_eq!(
            listings(
                r#"{ sku = "A", seller_sku = "X" }, { sku = "A", seller_sku = "X", fba = true }"#
            ),
            vec!["channel amz: seller SKU \"X\" is empty or mapped twice".to_owned()]
        );
    }
}
