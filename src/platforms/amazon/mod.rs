//! The Amazon Selling Partner API client (PLATFORMS.md §4), shared by the channel adapter
//! and the Orders API and FBA inventory pollers of one selling partner.
//!
//! Owns: the regional base URL, the Login with Amazon (LWA) access token from the refresh
//! token (one [`TokenCache`] per `(token_url, client_id, refresh_token)`, cached for its
//! `expires_in` minus [`TOKEN_MARGIN`], fetched again once when a request answers 401/403),
//! the status → error classification with `x-amzn-RateLimit-Limit` as the pause of a 429
//! without `Retry-After` (§4.5), the calls both sides make (Listings Items, the feed flow,
//! the Orders API, FBA inventory summaries), and the config section ([`config`]).
//!
//! Request signing: SP-API no longer needs AWS SigV4; the LWA token in `x-amz-access-token`
//! is the only credential. Feed documents live behind pre-signed URLs and are sent with no
//! credential at all.
//!
//! May depend on: `platforms::http`.

pub mod config;

use crate::platforms::http::{
    self, HttpAnswer, HttpClient, PlatformError, ThrottleSignal, TokenCache, classify_status,
};
use config::AmazonConfig;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A token is fetched again this long before LWA says it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// The token lifetime assumed when LWA does not say, in seconds.
const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;
/// The Feeds API version path.
const FEEDS: &str = "/feeds/2021-06-30";

/// The key of one credential: token endpoint, client id and the selling partner's refresh
/// token.
pub fn credential_key(config: &AmazonConfig) -> (String, String, String) {
    (
        config.token_url.clone(),
        config.client_id.clone(),
        config.refresh_token.clone(),
    )
}

/// The LWA refresh-token form body.
pub fn token_body(client_id: &str, client_secret: &str, refresh_token: &str) -> String {
    format!(
        "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
        http::encode(refresh_token),
        http::encode(client_id),
        http::encode(client_secret)
    )
}

/// `/listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=…`.
pub fn listing_path(seller_id: &str, seller_sku: &str, marketplace: &str) -> String {
    format!(
        "/listings/2021-08-01/items/{}/{}?marketplaceIds={}",
        http::encode(seller_id),
        http::encode(seller_sku),
        http::encode(marketplace)
    )
}

/// The API client of one selling partner credential.
pub struct AmazonClient {
    http: HttpClient,
    api_url: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    token: Arc<TokenCache>,
}

impl std::fmt::Debug for AmazonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmazonClient")
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl AmazonClient {
    /// A client for the section's credential on the shared `reqwest::Client`, with its own
    /// token cache (share one with [`with_token_cache`](Self::with_token_cache)).
    pub fn new(config: &AmazonConfig, client: reqwest::Client) -> Self {
        Self {
            http: HttpClient::new(client, Duration::from_millis(config.request_timeout_ms)),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            refresh_token: config.refresh_token.clone(),
            token: Arc::new(TokenCache::new(TOKEN_MARGIN)),
        }
    }

    /// The same client reading at most `limit_bytes` of each answer (`[http]
    /// platform_response_limit_bytes`; a longer answer is a `TooLarge` error).
    pub fn with_response_limit(mut self, limit_bytes: usize) -> Self {
        self.http = self.http.with_body_limit(limit_bytes);
        self
    }

    /// The same client using `token` (the cache of another client of the same credential).
    pub fn with_token_cache(mut self, token: Arc<TokenCache>) -> Self {
        self.token = token;
        self
    }

    /// The token cache of this credential.
    pub fn token_cache(&self) -> &Arc<TokenCache> {
        &self.token
    }

    /// The API base URL without a trailing `/`.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The cached LWA access token, or a fresh one when none is cached or `rejected` was
    /// refused.
    ///
    /// Errors: the token endpoint's status error, transport, or an answer without a token.
    pub async fn token(&self, rejected: Option<&str>) -> Result<String, PlatformError> {
        self.token
            .get(rejected, || async {
                let answer = self
                    .http
                    .send(
                        self.http
                            .client()
                            .post(&self.token_url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(token_body(
                                &self.client_id,
                                &self.client_secret,
                                &self.refresh_token,
                            )),
                    )
                    .await?;
                http::decode_token(&answer, DEFAULT_TOKEN_LIFETIME_SECS)
            })
            .await
    }

    /// Sends one SP-API request built on the shared client with `x-amz-access-token`; on
    /// 401/403 fetches a new token once and sends again.
    ///
    /// Errors: transport, a token failure, or an answer over the size cap; statuses are
    /// answers (classify them with [`status_error`]).
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<HttpAnswer, PlatformError> {
        let mut rejected: Option<String> = None;
        loop {
            let token = self.token(rejected.as_deref()).await?;
            let answer = self
                .http
                .send(
                    build(self.http.client())
                        .header("x-amz-access-token", &token)
                        .header("accept", "application/json"),
                )
                .await?;
            if matches!(answer.status, 401 | 403) && rejected.is_none() {
                rejected = Some(token);
                continue;
            }
            return Ok(answer);
        }
    }

    /// `GET {api}{path_and_query}` with the token (the generic read of the pollers).
    pub async fn get(&self, path_and_query: &str) -> Result<HttpAnswer, PlatformError> {
        let url = format!("{}{path_and_query}", self.api_url);
        self.send(|client| client.get(&url)).await
    }

    /// `PATCH` of one Listings Item (§4.1).
    pub async fn patch_listing(
        &self,
        seller_id: &str,
        seller_sku: &str,
        marketplace: &str,
        body: &Value,
    ) -> Result<HttpAnswer, PlatformError> {
        let url = format!(
            "{}{}",
            self.api_url,
            listing_path(seller_id, seller_sku, marketplace)
        );
        self.send(|client| client.patch(&url).json(body)).await
    }

    /// `GET` of one Listings Item with its `fulfillmentAvailability`.
    pub async fn listing_availability(
        &self,
        seller_id: &str,
        seller_sku: &str,
        marketplace: &str,
    ) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!(
            "{}&includedData=fulfillmentAvailability",
            listing_path(seller_id, seller_sku, marketplace)
        ))
        .await
    }

    /// `createFeedDocument` for documents of `content_type` (§4.2).
    pub async fn create_feed_document(
        &self,
        content_type: &str,
    ) -> Result<HttpAnswer, PlatformError> {
        let url = format!("{}{FEEDS}/documents", self.api_url);
        let body = json!({ "contentType": content_type });
        self.send(|client| client.post(&url).json(&body)).await
    }

    /// `createFeed` with a `{feedType, marketplaceIds, inputFeedDocumentId}` body.
    pub async fn create_feed(&self, body: &Value) -> Result<HttpAnswer, PlatformError> {
        let url = format!("{}{FEEDS}/feeds", self.api_url);
        self.send(|client| client.post(&url).json(body)).await
    }

    /// `getFeed`.
    pub async fn feed(&self, feed_id: &str) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!("{FEEDS}/feeds/{}", http::encode(feed_id)))
            .await
    }

    /// `getFeedDocument` (its pre-signed download URL).
    pub async fn feed_document(&self, document_id: &str) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!("{FEEDS}/documents/{}", http::encode(document_id)))
            .await
    }

    /// `PUT` of a feed document to its pre-signed upload URL (no credential).
    pub async fn upload_document(
        &self,
        url: &str,
        content_type: &str,
        document: String,
    ) -> Result<HttpAnswer, PlatformError> {
        self.http
            .send(
                self.http
                    .client()
                    .put(url)
                    .header("content-type", content_type)
                    .body(document),
            )
            .await
    }

    /// `GET` of a pre-signed document URL (no credential).
    pub async fn download_document(&self, url: &str) -> Result<HttpAnswer, PlatformError> {
        self.http.send(self.http.client().get(url)).await
    }

    /// The first page of `getOrders` updated after `after` (ISO 8601) in a marketplace
    /// (§4.3); later pages come from [`orders_page`](Self::orders_page).
    pub async fn orders_updated_after(
        &self,
        marketplace: &str,
        after: &str,
    ) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!(
            "/orders/v0/orders?MarketplaceIds={}&LastUpdatedAfter={}",
            http::encode(marketplace),
            http::encode(after)
        ))
        .await
    }

    /// The `getOrders` page of a `NextToken`.
    pub async fn orders_page(&self, next_token: &str) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!(
            "/orders/v0/orders?NextToken={}",
            http::encode(next_token)
        ))
        .await
    }

    /// `getOrderItems` of one order.
    pub async fn order_items(&self, order_id: &str) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!(
            "/orders/v0/orders/{}/orderItems",
            http::encode(order_id)
        ))
        .await
    }

    /// One page of FBA inventory summaries of a marketplace (§4.4), with details; only
    /// summaries changed since `start` (ISO 8601) when given; `next_token` reads the
    /// following page.
    pub async fn fba_summaries(
        &self,
        marketplace: &str,
        start: Option<&str>,
        next_token: Option<&str>,
    ) -> Result<HttpAnswer, PlatformError> {
        let marketplace = http::encode(marketplace);
        let mut path = format!(
            "/fba/inventory/v1/summaries?granularityType=Marketplace&granularityId={marketplace}&marketplaceIds={marketplace}&details=true"
        );
        if let Some(start) = start {
            path.push_str(&format!("&startDateTime={}", http::encode(start)));
        }
        if let Some(token) = next_token {
            path.push_str(&format!("&nextToken={}", http::encode(token)));
        }
        self.get(&path).await
    }
}

/// The request-level error of an answer, `None` for 2xx; a 429 without `Retry-After`
/// waits one token of `x-amzn-RateLimit-Limit` (§4.5).
pub fn status_error(answer: &HttpAnswer) -> Option<PlatformError> {
    let retry_after_ms = answer.retry_after_ms.or_else(|| {
        answer
            .header_f64("x-amzn-ratelimit-limit")
            .filter(|rate| *rate > 0.0)
            .map(|rate| (1000.0 / rate).ceil() as u64)
    });
    classify_status(answer.status, answer.excerpt(), retry_after_ms)
}

/// Throttle signals of an answer: 429 (QuotaExceeded), with `Retry-After` or one token of
/// `x-amzn-RateLimit-Limit` as the pause.
pub fn throttle(answer: &HttpAnswer) -> ThrottleSignal {
    let retry_after_ms = match status_error(answer) {
        Some(PlatformError::Throttled { retry_after_ms }) => retry_after_ms,
        _ => None,
    };
    ThrottleSignal {
        throttled: answer.status == 429,
        retry_after_ms,
        budget: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::amazon::{self as sim, AmazonSimulatorOptions, SimListing};

    async fn simulator() -> sim::AmazonSimulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = AmazonSimulatorOptions {
            listings: vec![SimListing {
                seller_sku: "SKU-1".to_owned(),
                quantity: Some(4),
                fba: false,
                fba_fulfillable: 0,
            }],
            ..AmazonSimulatorOptions::default()
        };
        sim::start(options, listener).await.unwrap()
    }

    fn config(sim: &sim::AmazonSimulator) -> AmazonConfig {
        let options = sim.options();
        toml::from_str(&format!(
            "api_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrefresh_token = \"{}\"\nseller_id = \"{}\"\nmarketplace_id = \"{}\"\n",
            sim.base_url(),
            sim.token_url(),
            options.client_id,
            options.client_secret,
            options.refresh_token,
            options.seller_id,
            options.marketplace_id,
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn the_adapter_and_the_pollers_share_one_lwa_token() {
        let sim = simulator().await;
        let config = config(&sim);
        let client = Arc::new(AmazonClient::new(&config, reqwest::Client::new()));
        let after = "2020-01-01T00:00:00Z";
        let (listing, orders, fba) = tokio::join!(
            client.listing_availability(&config.seller_id, "SKU-1", &config.marketplace_id),
            client.orders_updated_after(&config.marketplace_id, after),
            client.fba_summaries(&config.marketplace_id, None, None)
        );
        for answer in [listing.unwrap(), orders.unwrap(), fba.unwrap()] {
            assert_eq!(status_error(&answer), None, "{}", answer.text);
        }
        assert_eq!(sim.counters().tokens_issued, 1);
        sim.expire_tokens();
        let answer = client.order_items("no-such-order").await.unwrap();
        assert_eq!(answer.status, 404, "{}", answer.text);
        assert_eq!(
            sim.counters().tokens_issued,
            2,
            "refreshed once after 401/403"
        );
    }

    #[test]
    fn a_429_without_retry_after_waits_one_token_of_the_rate_limit() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-amzn-ratelimit-limit", "5.0".parse().unwrap());
        let answer = HttpAnswer {
            status: 429,
            headers,
            ..HttpAnswer::default()
        };
        assert_eq!(
            status_error(&answer),
            Some(PlatformError::Throttled {
                retry_after_ms: Some(200)
            })
        );
        assert_eq!(throttle(&answer).retry_after_ms, Some(200));
        assert_eq!(
            listing_path("S 1", "a/b", "M"),
            "/listings/2021-08-01/items/S%201/a%2Fb?marketplaceIds=M"
        );
    }
}
