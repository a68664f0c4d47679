//! The Amazon target of the compliance suite: the SP-API adapter against the Amazon
//! simulator (PLATFORMS.md §4). Small pushes are single Listings Items PATCHes, batches of
//! two or more listings go as one JSON_LISTINGS_FEED; a permanently refused SKU is an
//! `INVALID` patch / an ERROR issue of the feed's processing report.
//!
//! Budget: the channel's rate limit models patchListingsItem, and the adapter charges a
//! feed as one push, so the PATCHes and the createFeed calls count; feed documents and
//! status polls have their own limits and do not. The LWA token endpoint is reached
//! directly, not through the proxy. Patches apply at once (`apply_delay_ms = 0`) so that
//! what the adapter was told is `ACCEPTED` can be read back right after a flush; the
//! simulator's own buckets and feed budget are opened wide, faults come from the proxy.

use super::{ComplianceTarget, Knobs};
use async_trait::async_trait;
use std::path::Path;
use stocksync::sandbox::amazon::{
    self, AmazonSimulator, AmazonSimulatorOptions, RateLimits, SimListing,
};

/// The Amazon simulator with one merchant-fulfilled listing per SKU at 0.
pub struct AmazonTarget {
    sim: AmazonSimulator,
    skus: Vec<String>,
}

#[async_trait]
impl ComplianceTarget for AmazonTarget {
    const NAME: &'static str = "amazon";

    async fn start(knobs: &Knobs) -> Self {
        let options = AmazonSimulatorOptions {
            apply_delay_ms: 0,
            feed_processing_ms: 10,
            json_feeds_per_window: 10_000,
            rate_limits: RateLimits::generous(10_000.0, 10_000),
            rejected_skus: knobs.rejected.clone(),
            listings: knobs
                .skus
                .iter()
                .map(|sku| SimListing {
                    seller_sku: sku.clone(),
                    quantity: Some(0),
                    fba: false,
                    fba_fulfillable: 0,
                })
                .collect(),
            ..AmazonSimulatorOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = amazon::start(options, listener).await.unwrap();
        Self {
            sim,
            skus: knobs.skus.clone(),
        }
    }

    fn base_url(&self) -> String {
        self.sim.base_url()
    }

    fn platform_toml(&self, platform_url: &str, _dir: &Path) -> String {
        let options = self.sim.options();
        let listings: Vec<String> = self
            .skus
            .iter()
            .map(|sku| format!("{{ sku = \"{sku}\" }}"))
            .collect();
        format!(
            r#"
            [channels.amazon]
            api_url = "{platform_url}"
            token_url = "{token_url}"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            refresh_token = "{refresh_token}"
            seller_id = "{seller_id}"
            marketplace_id = "{marketplace_id}"
            feed_min_items = 2
            feeds_per_window = 10000
            feed_poll_ms = 5
            feed_wait_ms = 5000
            order_poll_interval_ms = 0
            fba_poll_interval_ms = 0
            listings = [{listings}]
            "#,
            token_url = self.sim.token_url(),
            client_id = options.client_id,
            client_secret = options.client_secret,
            refresh_token = options.refresh_token,
            seller_id = options.seller_id,
            marketplace_id = options.marketplace_id,
            listings = listings.join(", "),
        )
    }

    fn listed(&self, sku: &str) -> Option<i64> {
        self.sim.quantity(sku)
    }

    fn counts(method: &str, path: &str) -> bool {
        (method == "PATCH" && path.starts_with("/listings/"))
            || (method == "POST" && path == "/feeds/2021-06-30/feeds")
    }
}
