//! The Shopify target of the compliance suite: the GraphQL adapter against the Shopify
//! simulator; a permanently refused SKU is a non-mutable inventory item (PLATFORMS.md §1.2).

use super::{ComplianceTarget, Knobs};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::Path;
use stocksync::sandbox::shopify::{self, ShopifySimulator, ShopifySimulatorOptions};

const SHOP_LOCATION: u64 = 7;
const FIRST_ITEM: u64 = 50_000;

/// The Shopify simulator with one inventory item per SKU at one location.
pub struct ShopifyTarget {
    sim: ShopifySimulator,
    items: HashMap<String, u64>,
}

#[async_trait]
impl ComplianceTarget for ShopifyTarget {
    const NAME: &'static str = "shopify";

    async fn start(knobs: &Knobs) -> Self {
        let items: HashMap<String, u64> = knobs
            .skus
            .iter()
            .enumerate()
            .map(|(n, sku)| (sku.clone(), FIRST_ITEM + n as u64))
            .collect();
        let options = ShopifySimulatorOptions {
            non_mutable_items: knobs.rejected.iter().map(|sku| items[sku]).collect(),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = shopify::start(options, listener).await.unwrap();
        for item in items.values() {
            sim.set_level(*item, SHOP_LOCATION, 0);
        }
        Self { sim, items }
    }

    fn base_url(&self) -> String {
        self.sim.base_url()
    }

    fn platform_toml(&self, platform_url: &str, _dir: &Path) -> String {
        let listings: Vec<String> = self
            .items
            .iter()
            .map(|(sku, item)| format!("{{ sku = \"{sku}\", inventory_item_id = {item} }}"))
            .collect();
        format!(
            r#"
            [channels.shopify]
            shop_url = "{platform_url}"
            api_version = "2026-04"
            access_token = "{token}"
            webhook_secret = "compliance-secret"
            location_id = {SHOP_LOCATION}
            listings = [{listings}]
            "#,
            token = self.sim.options().access_token,
            listings = listings.join(", "),
        )
    }

    fn listed(&self, sku: &str) -> Option<i64> {
        self.sim.level(*self.items.get(sku)?, SHOP_LOCATION)
    }
}
