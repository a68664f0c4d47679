//! The Shopify Admin API client (PLATFORMS.md §1), shared by the channel adapter and the
//! reconciler's reads of one shop.
//!
//! Owns: the API base (`{shop_url}/admin/api/{api_version}`), authentication (the static
//! `X-Shopify-Access-Token`, so no token cache), the timeout, the throttle signals
//! (GraphQL `THROTTLED` and `extensions.cost`, REST 429 with `Retry-After` and
//! `X-Shopify-Shop-Api-Call-Limit`, §1.9), the request-level GraphQL failure classification,
//! the GraphQL and REST calls, and the config section ([`config`]).
//!
//! Quota: the REST bucket of the store ([`ShopifyClient::rest_quota`], default
//! [`REST_LIMIT`]) is shared by every REST call of the client (the orders poller, the
//! pusher's REST writes and reads); the poller's reads wait for it.
//!
//! Shopify signs webhooks, not requests: the webhook HMAC is checked on the ingest side.
//!
//! May depend on: `platforms::http`, `platforms::quota`.

pub mod config;

use crate::platforms::http::{CostBudget, HttpAnswer, HttpClient, PlatformError, ThrottleSignal};
use crate::platforms::quota::{Quota, QuotaLimit};
use config::ShopifyConfig;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The REST Admin API's leaky bucket on a standard plan: 2 requests per second, bucket 40
/// (PLATFORMS.md §1.9); `X-Shopify-Shop-Api-Call-Limit` then says what is left.
pub const REST_LIMIT: QuotaLimit = QuotaLimit::new(2.0, 40);

/// The API client of one Shopify shop.
#[derive(Debug)]
pub struct ShopifyClient {
    rest: Arc<Quota>,
    /// The channel's own request budget (`[channels.rate_limit]`), when set with
    /// [`ShopifyClient::with_channel_budget`]: propagation's pushes take from it through
    /// their bucket, and every other call of this client that goes through a `_paced`
    /// method (order polls, fulfillment-order read-backs) waits for it, so the channel's
    /// budget covers all of them, on the one instance that leads the channel.
    budget: Option<Arc<Quota>>,
    http: HttpClient,
    shop_url: String,
    api_version: String,
    access_token: String,
}

impl ShopifyClient {
    /// A client for the section's shop on the shared `reqwest::Client`.
    pub fn new(config: &ShopifyConfig, client: reqwest::Client) -> Self {
        Self {
            rest: Arc::new(Quota::new("shopify:rest", REST_LIMIT)),
            budget: None,
            http: HttpClient::new(client, REQUEST_TIMEOUT),
            shop_url: config.shop_url.trim_end_matches('/').to_owned(),
            api_version: config.api_version.clone(),
            access_token: config.access_token.clone(),
        }
    }

    /// The same client reading at most `limit_bytes` of each answer (`[http]
    /// platform_response_limit_bytes`; a longer answer is a `TooLarge` error).
    pub fn with_response_limit(mut self, limit_bytes: usize) -> Self {
        self.http = self.http.with_body_limit(limit_bytes);
        self
    }

    /// The same client with the channel's request budget: `requests_per_sec` restored per
    /// second, bursts of `burst` (see the `budget` field).
    pub fn with_channel_budget(mut self, requests_per_sec: f64, burst: u32) -> Self {
        self.budget = Some(Arc::new(Quota::new(
            "shopify:channel",
            QuotaLimit::new(requests_per_sec, burst),
        )));
        self
    }

    /// The channel's request budget, when set ([`ShopifyClient::with_channel_budget`]).
    pub fn channel_budget(&self) -> Option<&Arc<Quota>> {
        self.budget.as_ref()
    }

    /// [`ShopifyClient::graphql`] after waiting for the channel's budget (when set): for
    /// calls outside propagation's pushes (read-backs of thin webhooks).
    ///
    /// Errors: see [`ShopifyClient::graphql`].
    pub async fn graphql_paced(&self, body: &Value) -> Result<HttpAnswer, PlatformError> {
        if let Some(budget) = &self.budget {
            budget.acquire().await;
        }
        self.graphql(body).await
    }

    /// The store's REST bucket: every REST call observes it, [`rest_get_paced`](Self::rest_get_paced)
    /// waits for it. (GraphQL has its own cost budget, read from `throttleStatus`.)
    pub fn rest_quota(&self) -> &Arc<Quota> {
        &self.rest
    }

    /// `{shop}/admin/api/{version}{path}`; `path` starts with `/`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}/admin/api/{}{path}", self.shop_url, self.api_version)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpAnswer, PlatformError> {
        self.http
            .send(request.header("X-Shopify-Access-Token", &self.access_token))
            .await
    }

    /// `POST /graphql.json` with a GraphQL body (`{query, variables}`).
    ///
    /// Errors: transport or an answer over the size cap; statuses and GraphQL errors are
    /// answers (see [`graphql_failure`]).
    pub async fn graphql(&self, body: &Value) -> Result<HttpAnswer, PlatformError> {
        let url = self.admin_url("/graphql.json");
        self.send(self.http.client().post(&url).json(body)).await
    }

    /// `GET {path}` of the REST Admin API (`/inventory_levels.json?…`).
    pub async fn rest_get(&self, path: &str) -> Result<HttpAnswer, PlatformError> {
        let url = self.admin_url(path);
        let result = self.send(self.http.client().get(&url)).await;
        self.rest.observe_result(&result);
        result
    }

    /// [`rest_get`](Self::rest_get) after waiting for the REST bucket (pollers, read-backs).
    pub async fn rest_get_paced(&self, path: &str) -> Result<HttpAnswer, PlatformError> {
        if let Some(budget) = &self.budget {
            budget.acquire().await;
        }
        self.rest.acquire().await;
        self.rest_get(path).await
    }

    /// `POST {path}` of the REST Admin API with a JSON body.
    pub async fn rest_post(&self, path: &str, body: &Value) -> Result<HttpAnswer, PlatformError> {
        let url = self.admin_url(path);
        let result = self.send(self.http.client().post(&url).json(body)).await;
        self.rest.observe_result(&result);
        result
    }
}

/// Parses `X-Shopify-Shop-Api-Call-Limit: 32/40` into (used, bucket size).
pub fn parse_call_limit(value: &str) -> Option<(u32, u32)> {
    let (used, size) = value.trim().split_once('/')?;
    Some((used.parse().ok()?, size.parse().ok()?))
}

/// The REST call limit of an answer, when sent.
pub fn call_limit(answer: &HttpAnswer) -> Option<(u32, u32)> {
    parse_call_limit(answer.header("x-shopify-shop-api-call-limit")?)
}

fn is_graphql_throttled(body: &Value) -> bool {
    body["errors"].as_array().is_some_and(|errors| {
        errors
            .iter()
            .any(|error| error["extensions"]["code"] == "THROTTLED")
    })
}

/// Throttle signals of a GraphQL answer: `THROTTLED` (status 200 or 429) and
/// `extensions.cost.throttleStatus`. `fallback_cost` estimates the next request's cost when
/// the answer does not say.
pub fn graphql_throttle(answer: &HttpAnswer, fallback_cost: f64) -> ThrottleSignal {
    let cost = &answer.body["extensions"]["cost"];
    let status = &cost["throttleStatus"];
    let budget = match (
        status["currentlyAvailable"].as_f64(),
        status["maximumAvailable"].as_f64(),
        status["restoreRate"].as_f64(),
    ) {
        (Some(currently_available), Some(maximum_available), Some(restore_rate_per_sec)) => {
            Some(CostBudget {
                currently_available,
                maximum_available,
                restore_rate_per_sec,
                next_request_cost: cost["requestedQueryCost"].as_f64().unwrap_or(fallback_cost),
            })
        }
        _ => None,
    };
    ThrottleSignal {
        throttled: answer.status == 429 || is_graphql_throttled(&answer.body),
        retry_after_ms: answer.retry_after_ms,
        budget,
    }
}

/// The request-level failure of a GraphQL answer: throttling (status 429 or `THROTTLED`),
/// a failed status, or the first top-level error; `None` when the answer carries data.
pub fn graphql_failure(answer: &HttpAnswer) -> Option<PlatformError> {
    if answer.status == 429 || is_graphql_throttled(&answer.body) {
        return Some(PlatformError::Throttled {
            retry_after_ms: answer.retry_after_ms,
        });
    }
    if let Some(error) = answer.status_error() {
        return Some(error);
    }
    let first = answer.body["errors"]
        .as_array()
        .and_then(|errors| errors.first())?;
    Some(PlatformError::GraphQl {
        code: first["extensions"]["code"].as_str().map(str::to_owned),
        message: first["message"]
            .as_str()
            .unwrap_or("graphql error")
            .to_owned(),
    })
}

/// Throttle signal of a REST answer (429 + `Retry-After`).
pub fn rest_throttle(answer: &HttpAnswer) -> ThrottleSignal {
    ThrottleSignal {
        throttled: answer.status == 429,
        retry_after_ms: answer.retry_after_ms,
        budget: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::shopify::{self as sim, ShopifySimulatorOptions};
    use serde_json::json;

    #[test]
    fn call_limits_and_graphql_errors_are_read() {
        assert_eq!(parse_call_limit("32/40"), Some((32, 40)));
        assert_eq!(parse_call_limit("x"), None);
        let answer = HttpAnswer {
            status: 200,
            body: json!({"errors": [{"message": "parse", "extensions": {"code": "BAD"}}]}),
            ..HttpAnswer::default()
        };
        assert_eq!(
            graphql_failure(&answer),
            Some(PlatformError::GraphQl {
                code: Some("BAD".to_owned()),
                message: "parse".to_owned()
            })
        );
    }

    #[tokio::test]
    async fn graphql_reads_carry_the_token_and_a_cost_budget() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = sim::start(ShopifySimulatorOptions::default(), listener)
            .await
            .unwrap();
        let config: ShopifyConfig = toml::from_str(&format!(
            "shop_url = \"{}\"\naccess_token = \"{}\"\nwebhook_secret = \"w\"\nlocation_id = 1\n",
            sim.base_url(),
            sim.options().access_token
        ))
        .unwrap();
        let client = ShopifyClient::new(&config, reqwest::Client::new());
        let body = json!({
            "query": "query Levels($ids: [ID!]!, $locationId: ID!) { nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } } } } }",
            "variables": { "ids": ["gid://shopify/InventoryItem/1"], "locationId": "gid://shopify/Location/1" },
        });
        let answer = client.graphql(&body).await.unwrap();
        assert_eq!(graphql_failure(&answer), None, "{}", answer.text);
        assert!(
            graphql_throttle(&answer, 1.0).budget.is_some(),
            "{}",
            answer.text
        );
        let wrong = ShopifyClient::new(
            &ShopifyConfig {
                access_token: "wrong".to_owned(),
                ..config
            },
            reqwest::Client::new(),
        );
        let answer = wrong.graphql(&body).await.unwrap();
        assert!(matches!(
            graphql_failure(&answer),
            Some(PlatformError::Unauthorized { .. })
        ));
    }
}
