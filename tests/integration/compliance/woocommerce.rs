//! The WooCommerce target of the compliance suite: the batch adapter against the
//! WooCommerce simulator; a permanently refused SKU is a product that fails inside every
//! batch (`{"id":…,"error":{…}}` in an HTTP 200, PLATFORMS.md §2.2). Listings come from a
//! CSV file, to cover that path too.

use super::{ComplianceTarget, Knobs};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::Path;
use stocksync::sandbox::woocommerce::{self, WoocommerceSimulator, WoocommerceSimulatorOptions};

const FIRST_PRODUCT: u64 = 7_000;

/// The WooCommerce simulator with one simple product per SKU, managing stock at 0.
pub struct WoocommerceTarget {
    sim: WoocommerceSimulator,
    products: HashMap<String, u64>,
}

#[async_trait]
impl ComplianceTarget for WoocommerceTarget {
    const NAME: &'static str = "woocommerce";

    async fn start(knobs: &Knobs) -> Self {
        let products: HashMap<String, u64> = knobs
            .skus
            .iter()
            .enumerate()
            .map(|(n, sku)| (sku.clone(), FIRST_PRODUCT + n as u64))
            .collect();
        let options = WoocommerceSimulatorOptions {
            failing_items: knobs.rejected.iter().map(|sku| products[sku]).collect(),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = woocommerce::start(options, listener).await.unwrap();
        for (sku, product) in &products {
            sim.set_product(*product, sku, Some(0));
        }
        Self { sim, products }
    }

    fn base_url(&self) -> String {
        self.sim.base_url()
    }

    fn platform_toml(&self, platform_url: &str, dir: &Path) -> String {
        let csv: String = std::iter::once("sku,product_id\n".to_owned())
            .chain(
                self.products
                    .iter()
                    .map(|(sku, product)| format!("{sku},{product}\n")),
            )
            .collect();
        let path = dir.join("woocommerce-listings.csv");
        std::fs::write(&path, csv).unwrap();
        let options = self.sim.options();
        format!(
            r#"
            [channels.woocommerce]
            site_url = "{platform_url}"
            consumer_key = "{key}"
            consumer_secret = "{secret}"
            webhook_secret = "{webhook}"
            poll_interval_secs = 0
            listings_csv = "{path}"
            "#,
            key = options.consumer_key,
            secret = options.consumer_secret,
            webhook = options.webhook_secret,
            path = path.display(),
        )
    }

    fn listed(&self, sku: &str) -> Option<i64> {
        self.sim.stock(*self.products.get(sku)?, 0)
    }
}
