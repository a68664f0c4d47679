//! The Bol.com target of the compliance suite: the Retailer API adapter against the Bol.com
//! simulator (PLATFORMS.md §3). There is no bulk stock endpoint, so every listing is one
//! `PUT /retailer/offers/{id}/stock` (202 with a process status); a permanently refused
//! offer is one whose process status ends in FAILURE.
//!
//! Budget: only the stock PUTs count towards the channel's rate budget; process-status
//! polls and the OAuth token endpoint have their own limits (the token URL bypasses the
//! proxy). Stock updates are processed after 10 ms so a flush can read them back.

use super::{ComplianceTarget, Knobs};
use async_trait::async_trait;
use std::path::Path;
use stocksync::sandbox::bolcom::{self, BolcomSimulator, BolcomSimulatorOptions, SimOffer};

/// The Bol.com simulator with one offer per SKU at 0 (offer id `offer-<sku>`).
pub struct BolcomTarget {
    sim: BolcomSimulator,
    skus: Vec<String>,
}

fn offer_id(sku: &str) -> String {
    format!("offer-{sku}")
}

#[async_trait]
impl ComplianceTarget for BolcomTarget {
    const NAME: &'static str = "bolcom";

    async fn start(knobs: &Knobs) -> Self {
        let options = BolcomSimulatorOptions {
            process_delay_ms: 10,
            failing_offers: knobs.rejected.iter().map(|sku| offer_id(sku)).collect(),
            offers: knobs
                .skus
                .iter()
                .enumerate()
                .map(|(n, sku)| SimOffer {
                    offer_id: offer_id(sku),
                    reference: sku.clone(),
                    ean: format!("{:013}", 8_700_000_000_000u64 + n as u64),
                    amount: 0,
                })
                .collect(),
            ..BolcomSimulatorOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = bolcom::start(options, listener).await.unwrap();
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
            .map(|sku| format!("{{ sku = \"{sku}\", offer_id = \"{}\" }}", offer_id(sku)))
            .collect();
        format!(
            r#"
            [channels.bolcom]
            api_url = "{platform_url}"
            token_url = "{token_url}"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            order_poll_interval_ms = 0
            process_status_wait_ms = 2000
            process_status_poll_ms = 5
            request_timeout_ms = 400
            listings = [{listings}]
            "#,
            token_url = self.sim.token_url(),
            client_id = options.client_id,
            client_secret = options.client_secret,
            listings = listings.join(", "),
        )
    }

    fn listed(&self, sku: &str) -> Option<i64> {
        self.sim
            .offer(&offer_id(sku))
            .map(|offer| offer.amount as i64)
    }

    fn counts(method: &str, path: &str) -> bool {
        method == "PUT" && path.starts_with("/retailer/offers/") && path.ends_with("/stock")
    }

    /// One offer per request: one stock PUT per good offer, the refused offer's first PUT,
    /// and its retry alone once it is isolated.
    fn good_items_request_budget(good_items: usize) -> usize {
        good_items + 2
    }

    fn request_is_only_for(path: &str, sku: &str) -> bool {
        path == format!("/retailer/offers/{}/stock", offer_id(sku))
    }
}
