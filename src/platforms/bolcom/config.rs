//! `[channels.bolcom]`: the settings of a bol.com Retailer API channel (PLATFORMS.md §3)
//! and their validation.
//!
//! Owns: [`BolcomConfig`], [`BolcomListingConfig`], their `default_*` functions and
//! [`validate`], which `Config::validate` calls for channels of this kind.
//!
//! May depend on: nothing else in the crate.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// `[channels.bolcom]` (PLATFORMS.md §3).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BolcomConfig {
    /// Base URL of the Retailer API (`https://api.bol.com`, or the simulator's
    /// `http://127.0.0.1:PORT`); `/retailer/…` and `/shared/…` are appended.
    #[serde(default = "default_bolcom_api_url")]
    pub api_url: String,
    /// The OAuth2 token endpoint (`https://login.bol.com/token`, §3.1).
    #[serde(default = "default_bolcom_token_url")]
    pub token_url: String,
    /// OAuth2 client id (sent with Basic auth to the token endpoint).
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: String,
    /// How often open FBR orders are polled, in milliseconds (bol suggests 5–15 min, §3.5);
    /// 0 disables order polling.
    #[serde(default = "default_bolcom_order_poll_interval_ms")]
    pub order_poll_interval_ms: u64,
    /// Whether unhandled FBR returns are polled too (with the orders), restocking them.
    #[serde(default = "default_true")]
    pub poll_returns: bool,
    /// How long one push waits for a stock update's process status to leave `PENDING`
    /// before reporting the item retryable, in milliseconds (§3.4).
    #[serde(default = "default_bolcom_process_status_wait_ms")]
    pub process_status_wait_ms: u64,
    /// First pause between process-status polls, in milliseconds (doubles up to 1 s).
    #[serde(default = "default_bolcom_process_status_poll_ms")]
    pub process_status_poll_ms: u64,
    /// Timeout of one HTTP request, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The largest `amount` bol accepts (999 commonly cited, §3.3 [?]); larger ATPs are
    /// capped with a warning.
    #[serde(default = "default_bolcom_max_amount")]
    pub max_amount: u64,
    /// SKU → offer id mappings.
    #[serde(default)]
    pub listings: Vec<BolcomListingConfig>,
}

fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_bolcom_api_url() -> String {
    "https://api.bol.com".to_owned()
}
fn default_bolcom_token_url() -> String {
    "https://login.bol.com/token".to_owned()
}
fn default_bolcom_order_poll_interval_ms() -> u64 {
    300_000
}
fn default_true() -> bool {
    true
}
fn default_bolcom_process_status_wait_ms() -> u64 {
    10_000
}
fn default_bolcom_process_status_poll_ms() -> u64 {
    250
}
fn default_bolcom_max_amount() -> u64 {
    999
}

/// One SKU → bol.com offer mapping (§3.2).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BolcomListingConfig {
    /// Our SKU (the offer's `reference` at bol).
    pub sku: String,
    /// The bol offer id (UUID).
    pub offer_id: String,
    /// The product's EAN, used to map returns (which carry only an EAN) to the SKU.
    #[serde(default)]
    pub ean: Option<String>,
}

fn check_url(problems: &mut Vec<String>, id: &str, field: &str, url: &str) {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        problems.push(format!(
            "channel {id}: {field} must start with http:// or https://"
        ));
    }
}

/// Checks a `[channels.bolcom]` section; pushes one string per problem.
pub fn validate(id: &str, config: &BolcomConfig, problems: &mut Vec<String>) {
    check_url(problems, id, "bolcom.api_url", &config.api_url);
    check_url(problems, id, "bolcom.token_url", &config.token_url);
    if config.client_id.is_empty() || config.client_secret.is_empty() {
        problems.push(format!(
            "channel {id}: bolcom.client_id and client_secret must not be empty"
        ));
    }
    if config.max_amount == 0 {
        problems.push(format!(
            "channel {id}: bolcom.max_amount must be at least 1"
        ));
    }
    if config.process_status_poll_ms == 0 {
        problems.push(format!(
            "channel {id}: bolcom.process_status_poll_ms must be at least 1"
        ));
    }
    let mut skus = HashSet::new();
    let mut offers = HashSet::new();
    for listing in &config.listings {
        if !skus.insert(listing.sku.as_str()) {
            problems.push(format!("channel {id}: SKU {} is mapped twice", listing.sku));
        }
        if listing.offer_id.trim().is_empty() || !offers.insert(listing.offer_id.as_str()) {
            problems.push(format!(
                "channel {id}: offer id {:?} is empty or mapped twice",
                listing.offer_id
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bolcom() -> BolcomConfig {
        toml::from_str(
            r#"
            client_id = "id"
            client_secret = "secret"
            [[listings]]
            sku = "A"
            offer_id = "o-1"
            [[listings]]
            sku = "A"
            offer_id = "o-1"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn bolcom_defaults_follow_the_platform_and_duplicates_are_reported() {
        let config = bolcom();
        assert_eq!(config.max_amount, 999);
        assert_eq!(config.api_url, "https://api.bol.com");
        let mut problems = Vec::new();
        validate("bol", &config, &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
