//! The bol.com Retailer API v10 client (PLATFORMS.md §3), shared by the channel adapter and
//! the order poller of one credential.
//!
//! Owns: the base URL, the v10 media type, the OAuth2 client-credentials token (one
//! [`TokenCache`] per `(token_url, client_id)`, cached for its `expires_in` of 299 s minus
//! [`TOKEN_MARGIN`], fetched again once when a request answers 401), the `x-ratelimit-*` and
//! `Retry-After` throttle signals (§3.7), the calls both sides make (stock update, offer,
//! process status, open FBR orders, order detail, unhandled FBR returns), the process status
//! payload ([`payload`]) and the config section ([`config`]).
//!
//! bol.com signs nothing: the bearer token is the only authentication.
//!
//! May depend on: `platforms::http`.

pub mod config;
pub mod payload;

use crate::platforms::http::{
    self, CostBudget, HttpAnswer, HttpClient, PlatformError, RateLimitWindow, ThrottleSignal,
    TokenCache,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use config::BolcomConfig;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The media type of every Retailer API v10 call, sent as `Accept` (and `Content-Type`
/// with a body).
pub const MEDIA_TYPE: &str = "application/vnd.retailer.v10+json";
/// The client-credentials form body of `POST /token`.
pub const TOKEN_BODY: &str = "grant_type=client_credentials";
/// A token is fetched again this long before bol says it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// The token lifetime assumed when bol does not say (§3.1), in seconds.
const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 299;

/// The key of one credential: token endpoint and client id.
pub fn credential_key(config: &BolcomConfig) -> (String, String) {
    (config.token_url.clone(), config.client_id.clone())
}

/// The API client of one bol.com credential.
#[derive(Debug)]
pub struct BolcomClient {
    http: HttpClient,
    api_url: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    token: Arc<TokenCache>,
}

impl BolcomClient {
    /// A client for the section's credential on the shared `reqwest::Client`, with its own
    /// token cache (share one with [`with_token_cache`](Self::with_token_cache)).
    pub fn new(config: &BolcomConfig, client: reqwest::Client) -> Self {
        Self {
            http: HttpClient::new(client, Duration::from_millis(config.request_timeout_ms)),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
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

    /// The cached bearer token, or a fresh one when none is cached or `rejected` was refused.
    ///
    /// Errors: the token endpoint's status error, transport, or an answer without a token.
    pub async fn token(&self, rejected: Option<&str>) -> Result<String, PlatformError> {
        self.token
            .get(rejected, || async {
                let basic = BASE64.encode(format!("{}:{}", self.client_id, self.client_secret));
                let answer = self
                    .http
                    .send(
                        self.http
                            .client()
                            .post(&self.token_url)
                            .header("authorization", format!("Basic {basic}"))
                            .header("content-type", "application/x-www-form-urlencoded")
                            .header("accept", "application/json")
                            .body(TOKEN_BODY),
                    )
                    .await?;
                let token = http::decode_token(&answer, DEFAULT_TOKEN_LIFETIME_SECS)?;
                tracing::debug!(client_id = %self.client_id, expires_in = token.1.as_secs(), "bol.com token fetched");
                Ok(token)
            })
            .await
    }

    /// Sends one API request built on the shared client with the bearer and the media type;
    /// on 401 fetches a new token once and sends again.
    ///
    /// Errors: transport, a token failure, or an answer over the size cap. HTTP statuses
    /// are answers, not errors (classify them with [`HttpAnswer::status_error`]).
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
                        .bearer_auth(&token)
                        .header("accept", MEDIA_TYPE),
                )
                .await?;
            if answer.status == 401 && rejected.is_none() {
                rejected = Some(token);
                continue;
            }
            return Ok(answer);
        }
    }

    /// `GET {api}{path_and_query}` with the bearer (the generic read of the pollers).
    pub async fn get(&self, path_and_query: &str) -> Result<HttpAnswer, PlatformError> {
        let url = format!("{}{path_and_query}", self.api_url);
        self.send(|client| client.get(&url)).await
    }

    /// `PUT /retailer/offers/{offerId}/stock` with a stock body (§3.3).
    pub async fn put_stock(
        &self,
        offer_id: &str,
        body: &Value,
    ) -> Result<HttpAnswer, PlatformError> {
        let url = format!(
            "{}/retailer/offers/{}/stock",
            self.api_url,
            http::encode(offer_id)
        );
        self.send(|client| {
            client
                .put(&url)
                .header("content-type", MEDIA_TYPE)
                .json(body)
        })
        .await
    }

    /// `GET /retailer/offers/{offerId}`.
    pub async fn offer(&self, offer_id: &str) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!("/retailer/offers/{}", http::encode(offer_id)))
            .await
    }

    /// `GET /shared/process-status/{id}` (§3.4).
    pub async fn process_status(&self, id: &str) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!("/shared/process-status/{}", http::encode(id)))
            .await
    }

    /// One page (1-based) of open FBR orders (§3.5).
    pub async fn open_fbr_orders(&self, page: u32) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!(
            "/retailer/orders?fulfilment-method=FBR&status=OPEN&page={page}"
        ))
        .await
    }

    /// `GET /retailer/orders/{orderId}` (the order detail).
    pub async fn order(&self, order_id: &str) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!("/retailer/orders/{}", http::encode(order_id)))
            .await
    }

    /// One page (1-based) of unhandled FBR returns.
    pub async fn unhandled_fbr_returns(&self, page: u32) -> Result<HttpAnswer, PlatformError> {
        self.get(&format!(
            "/retailer/returns?handled=false&fulfilment-method=FBR&page={page}"
        ))
        .await
    }
}

/// Throttle signals of an answer (§3.7): 429 with `Retry-After`, and the `x-ratelimit-*`
/// headers as a budget (one request per token; an empty window refills at its reset), so a
/// caller can pause before bol has to say 429.
pub fn throttle(answer: &HttpAnswer) -> ThrottleSignal {
    let budget = RateLimitWindow::from_answer(answer).map(|window| CostBudget {
        currently_available: f64::from(window.remaining),
        maximum_available: f64::from(window.limit),
        restore_rate_per_sec: 1.0 / (window.reset_secs.max(1) as f64),
        next_request_cost: 1.0,
    });
    ThrottleSignal {
        throttled: answer.status == 429,
        retry_after_ms: answer.retry_after_ms,
        budget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::bolcom::{self as sim, BolcomSimulatorOptions, SimOffer};

    fn config(sim: &sim::BolcomSimulator) -> BolcomConfig {
        toml::from_str(&format!(
            "api_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"sandbox-client\"\nclient_secret = \"sandbox-secret\"\n",
            sim.base_url(),
            sim.token_url()
        ))
        .unwrap()
    }

    async fn simulator() -> sim::BolcomSimulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = BolcomSimulatorOptions {
            offers: vec![SimOffer {
                offer_id: "offer-1".to_owned(),
                reference: "SKU-1".to_owned(),
                ean: "8710000000001".to_owned(),
                amount: 3,
            }],
            ..BolcomSimulatorOptions::default()
        };
        sim::start(options, listener).await.unwrap()
    }

    #[tokio::test]
    async fn two_callers_of_one_credential_share_one_token() {
        let sim = simulator().await;
        let client = Arc::new(BolcomClient::new(&config(&sim), reqwest::Client::new()));
        let (offer, orders) = tokio::join!(client.offer("offer-1"), client.open_fbr_orders(1));
        let (offer, orders) = (offer.unwrap(), orders.unwrap());
        assert_eq!(offer.status, 200, "{}", offer.text);
        assert_eq!(offer.body["stock"]["amount"], 3);
        assert_eq!(orders.status, 200, "{}", orders.text);
        assert!(throttle(&offer).budget.is_some(), "x-ratelimit-* read");
        assert_eq!(sim.counters().tokens_issued, 1);
        assert_eq!(client.token_cache().fetches(), 1);
    }

    #[tokio::test]
    async fn a_refused_token_is_fetched_again_once_for_every_client_sharing_it() {
        let sim = simulator().await;
        let adapter_side = BolcomClient::new(&config(&sim), reqwest::Client::new());
        let poller_side = BolcomClient::new(&config(&sim), reqwest::Client::new())
            .with_token_cache(adapter_side.token_cache().clone());
        assert_eq!(adapter_side.offer("offer-1").await.unwrap().status, 200);
        sim.expire_tokens();
        assert_eq!(adapter_side.offer("offer-1").await.unwrap().status, 200);
        assert_eq!(poller_side.open_fbr_orders(1).await.unwrap().status, 200);
        assert_eq!(sim.counters().tokens_issued, 2);
    }

    #[tokio::test]
    async fn unknown_offers_answer_404_and_wrong_secrets_are_unauthorized() {
        let sim = simulator().await;
        let client = BolcomClient::new(&config(&sim), reqwest::Client::new());
        assert_eq!(client.offer("nope").await.unwrap().status, 404);
        let mut wrong = config(&sim);
        wrong.client_secret = "wrong".to_owned();
        let error = BolcomClient::new(&wrong, reqwest::Client::new())
            .offer("offer-1")
            .await
            .unwrap_err();
        assert_eq!(error.domain(), http::ErrorDomain::User, "{error}");
    }
}
