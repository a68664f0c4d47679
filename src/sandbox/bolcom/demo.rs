//! The Bol.com simulator as a demo storefront: one offer per SKU, stock updates processed
//! after 200 ms.
//!
//! May depend on: `sandbox::demo` and this simulator.

use super::{BolcomSimulator, BolcomSimulatorOptions, SimOffer, SimOrderLine};
use crate::sandbox::demo::{DemoOrder, DemoShop, bind_any, in_context, sku_name};
use async_trait::async_trait;
use std::any::Any;

/// The Bol.com channel id in the demo config.
pub const CHANNEL: &str = "bol-nl";

/// The Bol.com offer of SKU `index`.
pub fn offer(index: usize) -> String {
    format!("0f1e2d3c-0000-4000-8000-{:012}", index + 1)
}

/// The demo storefront over a [`BolcomSimulator`].
pub struct DemoStore {
    simulator: BolcomSimulator,
}

impl DemoStore {
    /// Starts the simulator on `127.0.0.1:0` with an offer for each of SKUs `0..skus` at 0.
    ///
    /// Errors: it cannot bind.
    pub async fn start(skus: usize) -> std::io::Result<Self> {
        let what = "starting the Bol.com simulator";
        let options = BolcomSimulatorOptions {
            process_delay_ms: 200,
            offers: (0..skus)
                .map(|i| SimOffer {
                    offer_id: offer(i),
                    reference: sku_name(i),
                    ean: format!("87{:011}", i + 1),
                    amount: 0,
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
        "Bol.com"
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
            .map(|i| {
                format!(
                    "{{ sku = \"{}\", offer_id = \"{}\" }},",
                    sku_name(i),
                    offer(i)
                )
            })
            .collect();
        let options = self.simulator.options();
        format!(
            r#"
[[channels]]
id = "{CHANNEL}"
kind = "bolcom"
locations = ["WH-1"]
safety_stock = 1
[channels.rate_limit]
requests_per_sec = 20.0
burst = 20
[channels.bolcom]
api_url = "{url}"
token_url = "{token}"
client_id = "{client}"
client_secret = "{secret}"
order_poll_interval_ms = 1000
process_status_poll_ms = 50
listings = [{listings}]
"#,
            url = self.simulator.base_url(),
            token = self.simulator.token_url(),
            client = options.client_id,
            secret = options.client_secret,
        )
    }

    fn listed(&self, index: usize) -> Option<i64> {
        self.simulator
            .offer(&offer(index))
            .map(|offer| offer.amount as i64)
    }

    async fn place_order(&self, index: usize, quantity: u64) -> Result<DemoOrder, String> {
        // bol buyers can only buy what the offer shows.
        let shown = self.simulator.offer(&offer(index)).map_or(0, |o| o.amount);
        if shown < quantity {
            return Err(format!("bol.com shows {shown} of {}", sku_name(index)));
        }
        self.simulator
            .place_order(
                "FBR",
                &[SimOrderLine {
                    offer_id: offer(index),
                    quantity,
                }],
            )
            .map(|order| DemoOrder {
                label: format!("bol.com {}", order.order_id),
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
