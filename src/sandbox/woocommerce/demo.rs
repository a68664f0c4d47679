//! The WooCommerce simulator as a demo storefront: one product per SKU, capped listings.
//!
//! May depend on: `sandbox::demo` and this simulator.

use super::{SimOrderLine, WoocommerceSimulator, WoocommerceSimulatorOptions};
use crate::sandbox::demo::{DemoOrder, DemoShop, bind_any, in_context, sku_name};
use async_trait::async_trait;
use std::any::Any;

/// The WooCommerce channel id in the demo config.
pub const CHANNEL: &str = "woo-main";

/// The WooCommerce product of SKU `index`.
pub fn product(index: usize) -> u64 {
    2001 + index as u64
}

/// The demo storefront over a [`WoocommerceSimulator`].
pub struct DemoStore {
    simulator: WoocommerceSimulator,
}

impl DemoStore {
    /// Starts the simulator on `127.0.0.1:0` with a product for each of SKUs `0..skus` at 0.
    ///
    /// Errors: it cannot bind.
    pub async fn start(skus: usize) -> std::io::Result<Self> {
        let what = "starting the WooCommerce simulator";
        let simulator = super::start(
            WoocommerceSimulatorOptions::default(),
            bind_any(what).await?,
        )
        .await
        .map_err(|error| in_context(what, error))?;
        for i in 0..skus {
            simulator.set_product(product(i), &sku_name(i), Some(0));
        }
        Ok(Self { simulator })
    }
}

#[async_trait]
impl DemoShop for DemoStore {
    fn name(&self) -> &'static str {
        "WooCommerce"
    }

    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn rules(&self) -> &'static str {
        "WH-1, at most 25 listed"
    }

    fn base_url(&self) -> String {
        self.simulator.base_url()
    }

    fn channel_toml(&self, skus: usize) -> String {
        let listings: String = (0..skus)
            .map(|i| {
                format!(
                    "{{ sku = \"{}\", product_id = {} }},",
                    sku_name(i),
                    product(i)
                )
            })
            .collect();
        let options = self.simulator.options();
        format!(
            r#"
[[channels]]
id = "{CHANNEL}"
kind = "woocommerce"
locations = ["WH-1"]
max_listed_quantity = 25
[channels.woocommerce]
site_url = "{url}"
consumer_key = "{key}"
consumer_secret = "{secret}"
webhook_secret = "{webhook}"
poll_interval_secs = 5
listings = [{listings}]
"#,
            url = self.simulator.base_url(),
            key = options.consumer_key,
            secret = options.consumer_secret,
            webhook = options.webhook_secret,
        )
    }

    fn connect(&self, api: &str) {
        self.simulator
            .set_webhook_url(Some(format!("{api}/webhooks/woocommerce/{CHANNEL}")));
    }

    fn listed(&self, index: usize) -> Option<i64> {
        self.simulator.stock(product(index), 0)
    }

    async fn place_order(&self, index: usize, quantity: u64) -> Result<DemoOrder, String> {
        self.simulator
            .place_order(
                &[SimOrderLine {
                    product_id: product(index),
                    variation_id: 0,
                    quantity,
                }],
                "processing",
            )
            .map(|order| DemoOrder {
                label: format!("woocommerce #{}", order.order_id),
                cancellable: None,
            })
            .map_err(|e| e.to_string())
    }

    fn simulator(&self) -> &dyn Any {
        &self.simulator
    }

    async fn shutdown(self: Box<Self>) {
        self.simulator.shutdown().await;
    }
}
