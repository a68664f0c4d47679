//! The WooCommerce REST API v3 client (PLATFORMS.md §2), shared by the channel adapter and
//! the order poller of one shop.
//!
//! Owns: the API base (`{site_url}/wp-json/wc/v3`), authentication with the consumer key and
//! secret (HTTP Basic, or query parameters for hosts that strip `Authorization`, §2 Auth),
//! the timeout, the status → error classification (WooCommerce's own `message` when it sends
//! one), the host/WAF throttle signals (§2.5), the calls both sides make (any API request,
//! the orders list by `modified_after`), and the config section ([`config`]).
//!
//! No token and no request signing: over HTTPS WooCommerce takes the key and secret as they
//! are (its OAuth 1.0a signing is only for plain HTTP, which we do not support).
//!
//! May depend on: `platforms::http`.

pub mod config;

use crate::platforms::http::{
    self, HttpAnswer, HttpClient, PlatformError, ThrottleSignal, classify_status,
};
use config::WoocommerceConfig;
use serde_json::Value;
use std::time::Duration;

/// The REST namespace under the site URL.
pub const API_PREFIX: &str = "/wp-json/wc/v3";
/// Orders per page of the orders list (the REST API's maximum).
pub const ORDERS_PER_PAGE: u32 = 100;

/// How the consumer key and secret travel (§2 Auth).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `consumer_key` (`ck_…`).
    pub consumer_key: String,
    /// `consumer_secret` (`cs_…`).
    pub consumer_secret: String,
    /// `true`: `?consumer_key=…&consumer_secret=…`; `false`: HTTP Basic.
    pub in_query: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("consumer_key", &self.consumer_key)
            .field("in_query", &self.in_query)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Starts a request to `url` carrying the credentials.
    pub fn apply(
        &self,
        url: &str,
        client: &reqwest::Client,
        method: reqwest::Method,
    ) -> reqwest::RequestBuilder {
        if self.in_query {
            let separator = if url.contains('?') { '&' } else { '?' };
            let url = format!(
                "{url}{separator}consumer_key={}&consumer_secret={}",
                http::encode(&self.consumer_key),
                http::encode(&self.consumer_secret)
            );
            client.request(method, url)
        } else {
            client
                .request(method, url)
                .basic_auth(&self.consumer_key, Some(&self.consumer_secret))
        }
    }
}

/// `{site}/wp-json/wc/v3{path}`; `path` starts with `/`.
pub fn api_url(site_url: &str, path: &str) -> String {
    format!("{site_url}{API_PREFIX}{path}")
}

/// The API client of one WooCommerce shop.
#[derive(Debug)]
pub struct WoocommerceClient {
    http: HttpClient,
    site_url: String,
    credentials: Credentials,
}

impl WoocommerceClient {
    /// A client for the section's shop on the shared `reqwest::Client`.
    pub fn new(config: &WoocommerceConfig, client: reqwest::Client) -> Self {
        Self {
            http: HttpClient::new(client, Duration::from_secs(config.timeout_secs.max(1))),
            site_url: config.site_url.trim_end_matches('/').to_owned(),
            credentials: Credentials {
                consumer_key: config.consumer_key.clone(),
                consumer_secret: config.consumer_secret.clone(),
                in_query: config.auth_in_query,
            },
        }
    }

    /// The same client reading at most `limit_bytes` of each answer (`[http]
    /// platform_response_limit_bytes`; a longer answer is a `TooLarge` error).
    pub fn with_response_limit(mut self, limit_bytes: usize) -> Self {
        self.http = self.http.with_body_limit(limit_bytes);
        self
    }

    /// The site URL without a trailing `/`.
    pub fn site_url(&self) -> &str {
        &self.site_url
    }

    /// Sends one authenticated API request: `method` on `{site}/wp-json/wc/v3{path}`, with a
    /// JSON body when given.
    ///
    /// Errors: transport or an answer over the size cap; statuses are answers (classify them
    /// with [`status_error`]).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<HttpAnswer, PlatformError> {
        let url = api_url(&self.site_url, path);
        let mut request = self.credentials.apply(&url, self.http.client(), method);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.http.send(request).await
    }

    /// `GET {path}` (the generic authenticated read).
    pub async fn get(&self, path: &str) -> Result<HttpAnswer, PlatformError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// One page (1-based) of orders modified after `after_gmt` (`2025-01-31T10:00:00`),
    /// oldest change first (§2.3 polling fallback). [`total_pages`] reads how many pages
    /// there are.
    pub async fn orders_modified_after(
        &self,
        after_gmt: &str,
        page: u32,
    ) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!(
            "/orders?modified_after={}&per_page={ORDERS_PER_PAGE}&page={page}&orderby=modified&order=asc",
            http::encode(after_gmt)
        ))
        .await
    }
}

/// `X-WP-TotalPages` of a list answer.
pub fn total_pages(answer: &HttpAnswer) -> Option<u32> {
    answer.header("x-wp-totalpages")?.parse().ok()
}

/// The request-level error of an answer, `None` for 2xx; the message is WooCommerce's
/// `message` when the body has one (413 included as rejected: the batch caller looks at it
/// first).
pub fn status_error(answer: &HttpAnswer) -> Option<PlatformError> {
    let message = answer.body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.excerpt());
    classify_status(answer.status, message, answer.retry_after_ms)
}

/// Throttle signal of an answer: core WooCommerce has none (§2.5), but hosts and WAFs send
/// 429, or 503 with `Retry-After`; both mean "pause for `Retry-After`".
pub fn throttle(answer: &HttpAnswer) -> ThrottleSignal {
    let throttled =
        answer.status == 429 || (answer.status == 503 && answer.retry_after_ms.is_some());
    ThrottleSignal {
        throttled,
        retry_after_ms: if throttled {
            answer.retry_after_ms
        } else {
            None
        },
        budget: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::woocommerce::{self as sim, WoocommerceSimulatorOptions};

    async fn simulator() -> sim::WoocommerceSimulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        sim::start(WoocommerceSimulatorOptions::default(), listener)
            .await
            .unwrap()
    }

    fn config(sim: &sim::WoocommerceSimulator, in_query: bool) -> WoocommerceConfig {
        let options = sim.options();
        toml::from_str(&format!(
            "site_url = \"{}\"\nconsumer_key = \"{}\"\nconsumer_secret = \"{}\"\nwebhook_secret = \"w\"\nauth_in_query = {in_query}\n",
            sim.base_url(),
            options.consumer_key,
            options.consumer_secret
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn the_orders_list_is_read_with_either_authentication() {
        let sim = simulator().await;
        for in_query in [false, true] {
            let client = WoocommerceClient::new(&config(&sim, in_query), reqwest::Client::new());
            let answer = client
                .orders_modified_after("2020-01-01T00:00:00", 1)
                .await
                .unwrap();
            assert_eq!(answer.status, 200, "{}", answer.text);
            assert!(answer.body.is_array(), "{}", answer.text);
            assert_eq!(status_error(&answer), None);
        }
        let mut wrong = config(&sim, false);
        wrong.consumer_secret = "cs_wrong".to_owned();
        let answer = WoocommerceClient::new(&wrong, reqwest::Client::new())
            .get("/orders")
            .await
            .unwrap();
        assert!(matches!(
            status_error(&answer),
            Some(PlatformError::Unauthorized { status: 401, .. })
        ));
    }

    #[test]
    fn a_waf_503_with_retry_after_is_a_throttle() {
        let answer = HttpAnswer {
            status: 503,
            retry_after_ms: Some(1000),
            ..HttpAnswer::default()
        };
        assert!(throttle(&answer).throttled);
        assert!(matches!(
            status_error(&answer),
            Some(PlatformError::Server { status: 503, .. })
        ));
        let plain = HttpAnswer {
            status: 503,
            ..HttpAnswer::default()
        };
        assert!(!throttle(&plain).throttled);
    }
}
