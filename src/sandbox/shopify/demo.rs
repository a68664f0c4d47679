//! The Shopify simulator as a demo storefront: two Shopify locations (the warehouse, fed by
//! WH-1, and the store, fed by STORE-1, with POS sales), pre-orders, and the kit.
//!
//! May depend on: `sandbox::demo` and this simulator.

use super::{ShopifySimulator, ShopifySimulatorOptions, SimOrderLine};
use crate::sandbox::demo::{DemoOrder, DemoShop, KIT, bind_any, in_context, sku_name};
use async_trait::async_trait;
use std::any::Any;

/// The Shopify channel id in the demo config.
pub const CHANNEL: &str = "shopify-main";
/// The demo shop's warehouse location (fed by WH-1; web orders are routed here).
pub const LOCATION: u64 = 1;
/// The demo shop's retail store location (fed by STORE-1; POS sales happen here).
pub const STORE_LOCATION: u64 = 2;
/// The inventory item of the demo's kit.
const KIT_ITEM: u64 = 1999;

/// The Shopify inventory item of SKU `index`.
pub fn item(index: usize) -> u64 {
    1001 + index as u64
}

/// The demo storefront over a [`ShopifySimulator`] (levels are created on first write).
pub struct DemoStore {
    simulator: ShopifySimulator,
    /// Orders placed so far: every third one is a POS sale in the store.
    orders: std::sync::atomic::AtomicU64,
}

impl DemoStore {
    /// Starts the simulator on `127.0.0.1:0`.
    ///
    /// Errors: it cannot bind.
    pub async fn start(_skus: usize) -> std::io::Result<Self> {
        let what = "starting the Shopify simulator";
        let options = ShopifySimulatorOptions {
            auto_create_levels: true,
            ..Default::default()
        };
        let simulator = super::start(options, bind_any(what).await?)
            .await
            .map_err(|error| in_context(what, error))?;
        Ok(Self {
            simulator,
            orders: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

impl DemoStore {
    /// The sum of an item's levels at the warehouse and the store; `None` when neither has one.
    fn listed_item(&self, inventory_item_id: u64) -> Option<i64> {
        let warehouse = self.simulator.level(inventory_item_id, LOCATION);
        let store = self.simulator.level(inventory_item_id, STORE_LOCATION);
        match (warehouse, store) {
            (None, None) => None,
            (warehouse, store) => Some(warehouse.unwrap_or(0) + store.unwrap_or(0)),
        }
    }
}

#[async_trait]
impl DemoShop for DemoStore {
    fn name(&self) -> &'static str {
        "Shopify"
    }

    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn rules(&self) -> &'static str {
        "warehouse (WH-1) + store (STORE-1, POS sales) as two Shopify locations, pre-orders up to 5 from POs due in 14 days"
    }

    fn preorder_cap(&self) -> Option<u64> {
        Some(5)
    }

    fn base_url(&self) -> String {
        self.simulator.base_url()
    }

    fn channel_toml(&self, skus: usize) -> String {
        let listings: String = (0..skus)
            .map(|i| {
                format!(
                    "{{ sku = \"{}\", inventory_item_id = {} }},",
                    sku_name(i),
                    item(i)
                )
            })
            .collect();
        let options = self.simulator.options();
        format!(
            r#"
[[channels]]
id = "{CHANNEL}"
kind = "shopify"
locations = ["WH-1", "STORE-1"]
preorder = {{ window_days = 14, cap = 5 }}
[channels.rate_limit]
requests_per_sec = 5.0
burst = 10
[channels.shopify]
shop_url = "{url}"
access_token = "{token}"
webhook_secret = "{secret}"
listings = [{listings} {{ sku = "{KIT}", inventory_item_id = {KIT_ITEM} }}]
[[channels.shopify.location_map]]
shopify_location_id = {LOCATION}
name = "Warehouse"
feeds = ["WH-1"]
[[channels.shopify.location_map]]
shopify_location_id = {STORE_LOCATION}
name = "Store"
feeds = ["STORE-1"]
"#,
            url = self.simulator.base_url(),
            token = options.access_token,
            secret = options.webhook_secret,
        )
    }

    fn connect(&self, api: &str) {
        self.simulator
            .set_webhook_url(Some(format!("{api}/webhooks/shopify/{CHANNEL}")));
    }

    /// What the shop lists in all: the warehouse's and the store's levels together.
    fn listed(&self, index: usize) -> Option<i64> {
        self.listed_item(item(index))
    }

    fn lists_kit(&self) -> bool {
        true
    }

    fn listed_kit(&self) -> Option<i64> {
        self.listed_item(KIT_ITEM)
    }

    async fn place_order(&self, index: usize, quantity: u64) -> Result<DemoOrder, String> {
        let line = SimOrderLine {
            inventory_item_id: item(index),
            sku: sku_name(index),
            quantity,
        };
        let placed = self
            .orders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if placed % 3 == 2 {
            // A sale at the store's till: shipped at once, nothing to cancel.
            return self
                .simulator
                .place_pos_order(STORE_LOCATION, std::slice::from_ref(&line))
                .await
                .map(|order| DemoOrder {
                    label: format!("shopify POS {} in the store", order.name),
                    cancellable: None,
                })
                .map_err(|e| e.to_string());
        }
        self.simulator
            .place_order(LOCATION, std::slice::from_ref(&line))
            .await
            .map(|order| DemoOrder {
                label: format!("shopify {}", order.name),
                cancellable: Some(order.order_id),
            })
            .map_err(|e| e.to_string())
    }

    async fn cancel_order(&self, order_id: u64) -> bool {
        self.simulator.cancel_order(order_id, true).await.is_ok()
    }

    fn simulator(&self) -> &dyn Any {
        &self.simulator
    }

    async fn shutdown(self: Box<Self>) {
        self.simulator.shutdown().await;
    }
}
