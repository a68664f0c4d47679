//! The Amazon simulator as a demo storefront: one merchant-fulfilled listing per SKU,
//! listing patches applied after 300 ms.
//!
//! May depend on: `sandbox::demo` and this simulator.

use super::{AmazonSimulator, AmazonSimulatorOptions, Fulfilment, SimListing, SimOrderLine};
use crate::sandbox::demo::{DemoOrder, DemoShop, bind_any, in_context, sku_name};
use async_trait::async_trait;
use std::any::Any;

/// The Amazon channel id in the demo config.
pub const CHANNEL: &str = "amazon-nl";

/// The demo storefront over an [`AmazonSimulator`].
pub struct DemoStore {
    simulator: AmazonSimulator,
}

impl DemoStore {
    /// Starts the simulator on `127.0.0.1:0` with a listing for each of SKUs `0..skus` at 0.
    ///
    /// Errors: it cannot bind.
    pub async fn start(skus: usize) -> std::io::Result<Self> {
        let what = "starting the Amazon simulator";
        let options = AmazonSimulatorOptions {
            apply_delay_ms: 300,
            listings: (0..skus)
                .map(|i| SimListing {
                    seller_sku: sku_name(i),
                    quantity: Some(0),
                    fba: false,
                    fba_fulfillable: 0,
                })
                .collect(),
            ..Default::default()
        };
        let simulator = super::start(options, bind_any(what).await?)
            .await
            .map_err(|error| in_context(what, error))?;
        Ok(Self { simulator })
    }
}

#[async_trait]
impl DemoShop for DemoStore {
    fn name(&self) -> &'static str {
        "Amazon"
    }

    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn rules(&self) -> &'static str {
        "WH-1, safety stock 1"
    }

    fn base_url(&self) -> String {
        self.simulator.base_url()
    }

    fn channel_toml(&self, skus: usize) -> String {
        let listings: String = (0..skus)
            .map(|i| format!("{{ sku = \"{}\" }},", sku_name(i)))
            .collect();
        let options = self.simulator.options();
        format!(
            r#"
[[channels]]
id = "{CHANNEL}"
kind = "amazon"
locations = ["WH-1"]
safety_stock = 1
[channels.amazon]
api_url = "{url}"
token_url = "{token}"
client_id = "{client}"
client_secret = "{secret}"
refresh_token = "{refresh}"
seller_id = "{seller}"
marketplace_id = "{marketplace}"
order_poll_interval_ms = 1000
fba_poll_interval_ms = 0
listings = [{listings}]
"#,
            url = self.simulator.base_url(),
            token = self.simulator.token_url(),
            client = options.client_id,
            secret = options.client_secret,
            refresh = options.refresh_token,
            seller = options.seller_id,
            marketplace = options.marketplace_id,
        )
    }

    /// ORDER_CHANGE notifications go to the engine's Amazon receiver (as an SQS bridge
    /// would deliver them); the Orders API poll stays the backstop.
    fn connect(&self, api: &str) {
        self.simulator
            .set_notification_url(Some(format!("{api}/webhooks/amazon/{CHANNEL}")));
    }

    fn listed(&self, index: usize) -> Option<i64> {
        self.simulator.quantity(&sku_name(index))
    }

    async fn place_order(&self, index: usize, quantity: u64) -> Result<DemoOrder, String> {
        // Buyers can only buy what the listing shows.
        let sku = sku_name(index);
        let shown = self.simulator.quantity(&sku).unwrap_or(0);
        if shown < quantity as i64 {
            return Err(format!("amazon shows {shown} of {sku}"));
        }
        self.simulator
            .place_order(
                Fulfilment::Mfn,
                &[SimOrderLine {
                    seller_sku: sku,
                    quantity,
                }],
            )
            .map(|order| DemoOrder {
                label: format!("amazon {}", order.amazon_order_id),
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
