//! `[channels.shopify]`: the settings of a Shopify Admin API channel (PLATFORMS.md §1) and
//! their validation.
//!
//! Owns: [`ShopifyConfig`], [`ShopifyListingConfig`], [`ShopifyLocationMap`] (which of our
//! locations feed which Shopify location, issue 16), their `default_*` functions and
//! [`validate`], which `Config::validate` calls for channels of this kind.
//!
//! One Shopify location or several: `location_id = N` is the one-location form (every
//! location that feeds the channel feeds Shopify location N); `[[channels.shopify.location_map]]`
//! entries name each Shopify location with the locations of ours that feed it. Exactly one
//! of the two forms. With a map, every location feeding the channel must feed exactly one
//! Shopify location (a location of ours feeds at most one Shopify location per channel;
//! several of ours may feed one Shopify location).
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
    /// Shopify location id (number) the channel's ATP is written to: the one-location form.
    /// Absent when `location_map` names the locations.
    #[serde(default)]
    pub location_id: Option<u64>,
    /// The multi-location form: one entry per Shopify location, with the locations of ours
    /// that feed it (see the module docs). Empty with `location_id`.
    #[serde(default)]
    pub location_map: Vec<ShopifyLocationMap>,
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

/// Most Shopify locations one channel may map (Shopify plans allow up to 200 locations for
/// Plus shops; beyond that a shop uses several channels).
pub const MAX_SHOPIFY_LOCATIONS: usize = 200;

/// One Shopify location and the locations of ours that feed it
/// (`[[channels.shopify.location_map]]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyLocationMap {
    /// Shopify location id (number, as in `gid://shopify/Location/N`).
    pub shopify_location_id: u64,
    /// Our locations whose stock is listed at this Shopify location, in routing order (the
    /// first one takes restocks and POS sales when several feed it).
    pub feeds: Vec<String>,
    /// A display name (dashboard, logs); the id when absent.
    #[serde(default)]
    pub name: Option<String>,
}

/// One Shopify location of a channel, resolved from either config form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShopifyLocation {
    /// Shopify location id.
    pub id: u64,
    /// Our locations feeding it, in routing order.
    pub feeds: Vec<String>,
    /// Display name.
    pub name: String,
}

impl ShopifyConfig {
    /// The channel's Shopify locations: the map's entries in config order, or, in the
    /// one-location form, `location_id` fed by every location in `channel_locations` (the
    /// channel's own `locations`). Empty when neither form is given (refused by [`validate`]).
    pub fn shopify_locations(&self, channel_locations: &[String]) -> Vec<ShopifyLocation> {
        if !self.location_map.is_empty() {
            return self
                .location_map
                .iter()
                .map(|entry| ShopifyLocation {
                    id: entry.shopify_location_id,
                    feeds: entry.feeds.clone(),
                    name: entry
                        .name
                        .clone()
                        .unwrap_or_else(|| entry.shopify_location_id.to_string()),
                })
                .collect();
        }
        self.location_id
            .map(|id| ShopifyLocation {
                id,
                feeds: channel_locations.to_vec(),
                name: id.to_string(),
            })
            .into_iter()
            .collect()
    }

    /// True when the channel writes to more than one Shopify location (then its listings are
    /// per (SKU, Shopify location), see `channels::shopify`).
    pub fn is_multi_location(&self) -> bool {
        self.location_map.len() > 1
    }

    /// Our locations that feed Shopify location `shopify_location`, in routing order; empty
    /// when the channel does not map it.
    pub fn feeds_of(&self, channel_locations: &[String], shopify_location: u64) -> Vec<String> {
        self.shopify_locations(channel_locations)
            .into_iter()
            .find(|entry| entry.id == shopify_location)
            .map(|entry| entry.feeds)
            .unwrap_or_default()
    }

    /// The first Shopify location (the one-location form's only one): where a single-location
    /// read goes. `None` when neither form is given.
    pub fn primary_location_id(&self) -> Option<u64> {
        self.location_map
            .first()
            .map(|entry| entry.shopify_location_id)
            .or(self.location_id)
    }
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

/// Checks a `[channels.shopify]` section of channel `id` whose feeding locations are
/// `channel_locations`; pushes one string per problem.
pub fn validate(
    id: &str,
    config: &ShopifyConfig,
    channel_locations: &[String],
    problems: &mut Vec<String>,
) {
    match (config.location_id, config.location_map.is_empty()) {
        (None, true) => problems.push(format!(
            "channel {id}: shopify needs location_id or at least one [[channels.shopify.location_map]] entry"
        )),
        (Some(_), false) => problems.push(format!(
            "channel {id}: shopify.location_id and shopify.location_map are two forms of one setting; give one"
        )),
        _ => {}
    }
    if config.location_map.len() > MAX_SHOPIFY_LOCATIONS {
        problems.push(format!(
            "channel {id}: shopify.location_map has {} entries (at most {MAX_SHOPIFY_LOCATIONS})",
            config.location_map.len()
        ));
    }
    let mut shopify_ids = HashSet::new();
    let mut fed: HashSet<&str> = HashSet::new();
    for entry in &config.location_map {
        let shopify_id = entry.shopify_location_id;
        if !shopify_ids.insert(shopify_id) {
            problems.push(format!(
                "channel {id}: Shopify location {shopify_id} appears twice in shopify.location_map"
            ));
        }
        if entry.feeds.is_empty() {
            problems.push(format!(
                "channel {id}: Shopify location {shopify_id} has no feeds (name the locations of ours whose stock it lists)"
            ));
        }
        for feed in &entry.feeds {
            if !channel_locations.iter().any(|location| location == feed) {
                problems.push(format!(
                    "channel {id}: Shopify location {shopify_id} is fed by {feed}, which is not one of the channel's locations"
                ));
            }
            if !fed.insert(feed.as_str()) {
                problems.push(format!(
                    "channel {id}: location {feed} feeds more than one Shopify location (a location feeds at most one per channel)"
                ));
            }
        }
    }
    if !config.location_map.is_empty() {
        for location in channel_locations {
            if !fed.contains(location.as_str()) {
                problems.push(format!(
                    "channel {id}: location {location} feeds the channel but no Shopify location; add it to one shopify.location_map entry's feeds"
                ));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn section(location_id: Option<u64>, map: &[(u64, &[&str])]) -> ShopifyConfig {
        ShopifyConfig {
            shop_url: "https://shop.example".to_owned(),
            api_version: default_shopify_api_version(),
            access_token: "t".to_owned(),
            webhook_secret: "w".to_owned(),
            location_id,
            location_map: map
                .iter()
                .map(|(id, feeds)| ShopifyLocationMap {
                    shopify_location_id: *id,
                    feeds: feeds.iter().map(|feed| (*feed).to_owned()).collect(),
                    name: None,
                })
                .collect(),
            use_rest: false,
            listings: Vec::new(),
            listings_csv: None,
            orders_poll_interval_secs: 0,
            orders_poll_on_conflict: true,
            orders_poll_lookback_secs: 3600,
        }
    }

    fn problems(config: &ShopifyConfig, channel_locations: &[&str]) -> Vec<String> {
        let locations: Vec<String> = channel_locations.iter().map(|l| (*l).to_owned()).collect();
        let mut problems = Vec::new();
        validate("shop", config, &locations, &mut problems);
        problems
    }

    #[test]
    fn the_one_location_form_is_every_feeding_location_at_one_shopify_location() {
        let config = section(Some(5), &[]);
        assert!(problems(&config, &["WH", "STORE"]).is_empty());
        let locations = config.shopify_locations(&["WH".into(), "STORE".into()]);
        assert_eq!(locations.len(), 1);
        assert_eq!(locations[0].id, 5);
        assert_eq!(locations[0].feeds, vec!["WH", "STORE"]);
        assert!(!config.is_multi_location());
        assert_eq!(config.primary_location_id(), Some(5));
        assert_eq!(config.feeds_of(&["WH".into()], 5), vec!["WH"]);
    }

    #[test]
    fn a_map_names_each_shopify_location_with_its_feeds() {
        let config = section(None, &[(100, &["WH"]), (200, &["STORE", "BACK"])]);
        assert!(problems(&config, &["WH", "STORE", "BACK"]).is_empty());
        assert!(config.is_multi_location());
        assert_eq!(config.primary_location_id(), Some(100));
        let channel: Vec<String> = vec!["WH".into(), "STORE".into(), "BACK".into()];
        assert!(config.feeds_of(&channel, 200).contains(&"BACK".to_owned()));
        assert!(
            config
                .shopify_locations(&channel)
                .iter()
                .all(|location| !location.feeds.contains(&"ELSEWHERE".to_owned()))
        );
        assert_eq!(config.feeds_of(&channel, 200), vec!["STORE", "BACK"]);
        assert!(config.feeds_of(&channel, 999).is_empty());
    }

    #[test]
    fn a_map_that_misses_doubles_or_invents_locations_is_refused_with_reasons() {
        let neither = problems(&section(None, &[]), &["WH"]);
        assert!(neither[0].contains("needs location_id"), "{neither:?}");
        let both = problems(&section(Some(1), &[(100, &["WH"])]), &["WH"]);
        assert!(both[0].contains("two forms"), "{both:?}");
        let twice = problems(
            &section(None, &[(100, &["WH"]), (100, &["STORE"])]),
            &["WH", "STORE"],
        );
        assert!(
            twice.iter().any(|p| p.contains("appears twice")),
            "{twice:?}"
        );
        let shared = problems(&section(None, &[(100, &["WH"]), (200, &["WH"])]), &["WH"]);
        assert!(
            shared
                .iter()
                .any(|p| p.contains("more than one Shopify location")),
            "{shared:?}"
        );
        let unknown = problems(&section(None, &[(100, &["WH", "ATTIC"])]), &["WH"]);
        assert!(unknown.iter().any(|p| p.contains("ATTIC")), "{unknown:?}");
        let unfed = problems(&section(None, &[(100, &["WH"])]), &["WH", "STORE"]);
        assert!(
            unfed
                .iter()
                .any(|p| p.contains("STORE feeds the channel but no Shopify location")),
            "{unfed:?}"
        );
        let empty = problems(&section(None, &[(100, &[])]), &["WH"]);
        assert!(
            empty.iter().any(|p| p.contains("has no feeds")),
            "{empty:?}"
        );
    }
}
