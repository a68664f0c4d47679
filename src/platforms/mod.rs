//! Platform API clients: one folder per sales platform, used by both sides of the flow
//! (the channel adapters that push stock and the ingest pollers that read orders).
//!
//! Owns, per platform (`shopify/`, `woocommerce/`, `bolcom/`, `amazon/`): the API client
//! (base URL, authentication with one token cache per credential, rate-limit headers,
//! status → error classification), the platform's payload types, and its config section.
//! What all four do alike lives in [`http`].
//!
//! [`PlatformClients`] is the registry of every client of the process: `app` builds it once
//! on the one `reqwest::Client`, and adapters and pollers take their channel's client from it,
//! so one credential has one token cache.
//!
//! May depend on: `config` (the channel list the registry is built from). The clients and
//! config sections use only [`http`]. `config`, `channels`, `ingest` and `app` depend on this
//! module.

pub mod amazon;
pub mod bolcom;
pub mod http;
pub mod quota;
pub mod shopify;
pub mod woocommerce;

pub use http::{
    CostBudget, ErrorDomain, HttpAnswer, HttpClient, PlatformError, RetryHint, ThrottleSignal,
    TokenCache,
};

use crate::config::{ChannelConfig, PlatformConfig};
use amazon::AmazonClient;
use amazon::config::AmazonConfig;
use bolcom::BolcomClient;
use bolcom::config::BolcomConfig;
use shopify::ShopifyClient;
use shopify::config::ShopifyConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use woocommerce::WoocommerceClient;
use woocommerce::config::WoocommerceConfig;

#[derive(Debug, Default)]
struct Registry {
    shopify: HashMap<String, Arc<ShopifyClient>>,
    woocommerce: HashMap<String, Arc<WoocommerceClient>>,
    bolcom: HashMap<String, Arc<BolcomClient>>,
    amazon: HashMap<String, Arc<AmazonClient>>,
    /// One token cache per bol.com credential, whichever channels use it.
    bolcom_tokens: HashMap<(String, String), Arc<TokenCache>>,
    /// One token cache per Amazon credential, whichever channels use it.
    amazon_tokens: HashMap<(String, String, String), Arc<TokenCache>>,
}

/// Every platform client of the process: one per channel, all on one `reqwest::Client`, with
/// one token cache per credential. The channel adapters and the pollers of a channel ask for
/// its client by channel id and get the same one.
#[derive(Debug)]
pub struct PlatformClients {
    http: reqwest::Client,
    /// Most bytes read of one answer, for every client made here.
    response_limit_bytes: usize,
    registry: Mutex<Registry>,
}

impl PlatformClients {
    /// An empty registry on the shared client; clients are made on first request.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            response_limit_bytes: http::DEFAULT_BODY_LIMIT_BYTES,
            registry: Mutex::new(Registry::default()),
        }
    }

    /// The same registry making clients that read at most `limit_bytes` of each answer
    /// (`[http] platform_response_limit_bytes`); only clients made afterwards take it.
    pub fn with_response_limit(mut self, limit_bytes: usize) -> Self {
        self.response_limit_bytes = limit_bytes;
        self
    }

    /// A registry holding the client of every channel (sections missing from the config
    /// get none), reading at most [`http::DEFAULT_BODY_LIMIT_BYTES`] of each answer.
    pub fn build(channels: &[ChannelConfig], http: reqwest::Client) -> Self {
        Self::build_with_limit(channels, http, http::DEFAULT_BODY_LIMIT_BYTES)
    }

    /// [`PlatformClients::build`] with every client reading at most
    /// `response_limit_bytes` of each answer.
    pub fn build_with_limit(
        channels: &[ChannelConfig],
        http: reqwest::Client,
        response_limit_bytes: usize,
    ) -> Self {
        let clients = Self::new(http).with_response_limit(response_limit_bytes);
        for channel in channels {
            let id = channel.id.as_str();
            match &channel.platform {
                PlatformConfig::Shopify(section) => {
                    drop(clients.shopify_with_budget(id, section, &channel.rate_limit))
                }
                PlatformConfig::Woocommerce(section) => drop(clients.woocommerce(id, section)),
                PlatformConfig::Bolcom(section) => drop(clients.bolcom(id, section)),
                PlatformConfig::Amazon(section) => drop(clients.amazon(id, section)),
                PlatformConfig::SectionMissing(_) => {}
            }
        }
        clients
    }

    /// The shared `reqwest::Client`.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Shopify client of `channel`, made from `config` the first time.
    pub fn shopify(&self, channel: &str, config: &ShopifyConfig) -> Arc<ShopifyClient> {
        self.shopify_entry(channel, config, None)
    }

    /// The Shopify client of `channel`, made from `config` the first time with the
    /// channel's `rate_limit` as its request budget (see
    /// [`ShopifyClient::with_channel_budget`]).
    pub fn shopify_with_budget(
        &self,
        channel: &str,
        config: &ShopifyConfig,
        rate_limit: &crate::config::RateLimitConfig,
    ) -> Arc<ShopifyClient> {
        self.shopify_entry(channel, config, Some(rate_limit))
    }

    fn shopify_entry(
        &self,
        channel: &str,
        config: &ShopifyConfig,
        rate_limit: Option<&crate::config::RateLimitConfig>,
    ) -> Arc<ShopifyClient> {
        self.registry()
            .shopify
            .entry(channel.to_owned())
            .or_insert_with(|| {
                let client = ShopifyClient::new(config, self.http.clone())
                    .with_response_limit(self.response_limit_bytes);
                Arc::new(match rate_limit {
                    Some(limit) => client.with_channel_budget(limit.requests_per_sec, limit.burst),
                    None => client,
                })
            })
            .clone()
    }

    /// The WooCommerce client of `channel`, made from `config` the first time.
    pub fn woocommerce(&self, channel: &str, config: &WoocommerceConfig) -> Arc<WoocommerceClient> {
        self.registry()
            .woocommerce
            .entry(channel.to_owned())
            .or_insert_with(|| {
                Arc::new(
                    WoocommerceClient::new(config, self.http.clone())
                        .with_response_limit(self.response_limit_bytes),
                )
            })
            .clone()
    }

    /// The bol.com client of `channel`, made from `config` the first time with the token
    /// cache of its credential.
    pub fn bolcom(&self, channel: &str, config: &BolcomConfig) -> Arc<BolcomClient> {
        let mut registry = self.registry();
        if let Some(client) = registry.bolcom.get(channel) {
            return client.clone();
        }
        let client = BolcomClient::new(config, self.http.clone())
            .with_response_limit(self.response_limit_bytes);
        let token = registry
            .bolcom_tokens
            .entry(bolcom::credential_key(config))
            .or_insert_with(|| client.token_cache().clone())
            .clone();
        let client = Arc::new(client.with_token_cache(token));
        registry.bolcom.insert(channel.to_owned(), client.clone());
        client
    }

    /// The Amazon client of `channel`, made from `config` the first time with the token
    /// cache of its credential.
    pub fn amazon(&self, channel: &str, config: &AmazonConfig) -> Arc<AmazonClient> {
        let mut registry = self.registry();
        if let Some(client) = registry.amazon.get(channel) {
            return client.clone();
        }
        let client = AmazonClient::new(config, self.http.clone())
            .with_response_limit(self.response_limit_bytes);
        let token = registry
            .amazon_tokens
            .entry(amazon::credential_key(config))
            .or_insert_with(|| client.token_cache().clone())
            .clone();
        let client = Arc::new(client.with_token_cache(token));
        registry.amazon.insert(channel.to_owned(), client.clone());
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_of_one_credential_share_a_token_cache_and_each_channel_has_one_client() {
        let config = crate::config::Config::from_toml(
            r#"
            [[locations]]
            id = "WH-1"
            [[channels]]
            id = "bol-nl"
            kind = "bolcom"
            locations = ["WH-1"]
            [channels.bolcom]
            client_id = "c"
            client_secret = "s"
            [[channels]]
            id = "bol-be"
            kind = "bolcom"
            locations = ["WH-1"]
            [channels.bolcom]
            client_id = "c"
            client_secret = "s"
            [[channels]]
            id = "bol-other"
            kind = "bolcom"
            locations = ["WH-1"]
            [channels.bolcom]
            client_id = "other"
            client_secret = "s"
            "#,
        )
        .unwrap();
        let clients = PlatformClients::build(&config.channels, reqwest::Client::new());
        let section = |id: &str| config.channel(id).unwrap().bolcom().unwrap().clone();
        let nl = clients.bolcom("bol-nl", &section("bol-nl"));
        let be = clients.bolcom("bol-be", &section("bol-be"));
        let other = clients.bolcom("bol-other", &section("bol-other"));
        assert!(Arc::ptr_eq(
            &nl,
            &clients.bolcom("bol-nl", &section("bol-nl"))
        ));
        assert!(!Arc::ptr_eq(&nl, &be), "one client per channel");
        assert!(Arc::ptr_eq(nl.token_cache(), be.token_cache()));
        assert!(!Arc::ptr_eq(nl.token_cache(), other.token_cache()));
    }
}
