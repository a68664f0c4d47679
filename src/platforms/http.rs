//! What every platform client does alike: sending on the one injected `reqwest::Client`
//! with a timeout, reading an answer with a cap on its size, `Retry-After` in both RFC 9110
//! forms, the status → error classification with its retry hint, throttle signals, one
//! token cache per credential, and percent-encoding.
//!
//! Owns: [`PlatformError`] (classified by [`ErrorDomain`] and [`RetryHint`], after
//! Arroyo), [`HttpAnswer`], [`HttpClient`], [`TokenCache`], [`ThrottleSignal`] and
//! [`CostBudget`].
//!
//! Invariants: an answer body is never read past [`HttpClient`]'s byte limit; a token
//! cache fetches at most one token at a time, and a caller whose token was refused only
//! fetches a new one when no other caller has done so meanwhile.
//!
//! May depend on: nothing else in the crate.

use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Longest body excerpt kept in an error message, in characters.
pub const MESSAGE_MAX_CHARS: usize = 300;
/// The default cap on how much of one answer is read, in bytes (16 MiB: an order list page
/// or a feed processing report fits with a wide margin).
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// Who is at fault for an error (Arroyo's classification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorDomain {
    /// Configuration or credentials: the merchant must fix it.
    User,
    /// The platform or the network.
    External,
    /// A bug on our side (a request the platform could not parse).
    Internal,
}

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryHint {
    /// Retrying the same request will fail the same way.
    NoRetry,
    /// Retry after a backoff.
    WithBackoff,
}

/// A request to a platform that failed as a whole; one enum for every platform client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The platform refused our credentials (HTTP 401/403).
    #[error("unauthorized (http {status}): {message}")]
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// The platform's message.
        message: String,
    },
    /// The platform throttled the request (HTTP 429 or GraphQL `THROTTLED`).
    #[error("throttled (retry after {retry_after_ms:?} ms)")]
    Throttled {
        /// `Retry-After` in milliseconds, when sent.
        retry_after_ms: Option<u64>,
    },
    /// The platform failed (HTTP 5xx).
    #[error("server error (http {status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The platform's message.
        message: String,
    },
    /// The request never got an HTTP answer (connect, timeout, TLS).
    #[error("transport error: {message}")]
    Transport {
        /// The client's message.
        message: String,
    },
    /// The platform refused the request as a whole (HTTP 4xx other than 401/403/429).
    #[error("request rejected (http {status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The platform's message.
        message: String,
    },
    /// GraphQL top-level `errors` other than throttling: the request was malformed.
    #[error("graphql error {code:?}: {message}")]
    GraphQl {
        /// `extensions.code`, when present.
        code: Option<String>,
        /// The first error's message.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("cannot decode the platform's answer: {message}")]
    Decode {
        /// What was wrong.
        message: String,
    },
    /// The answer was larger than the client reads.
    #[error("answer larger than {limit_bytes} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit_bytes: usize,
    },
}

impl PlatformError {
    /// Who is at fault.
    pub fn domain(&self) -> ErrorDomain {
        match self {
            Self::Unauthorized { .. } => ErrorDomain::User,
            Self::Throttled { .. }
            | Self::Server { .. }
            | Self::Transport { .. }
            | Self::Decode { .. }
            | Self::TooLarge { .. } => ErrorDomain::External,
            Self::Rejected { .. } | Self::GraphQl { .. } => ErrorDomain::Internal,
        }
    }

    /// Whether retrying can help.
    pub fn retry_hint(&self) -> RetryHint {
        match self {
            Self::Throttled { .. }
            | Self::Server { .. }
            | Self::Transport { .. }
            | Self::Decode { .. } => RetryHint::WithBackoff,
            Self::Unauthorized { .. }
            | Self::Rejected { .. }
            | Self::GraphQl { .. }
            | Self::TooLarge { .. } => RetryHint::NoRetry,
        }
    }

    /// A bounded metric label for the error type.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Throttled { .. } => "throttled",
            Self::Server { .. } => "server",
            Self::Transport { .. } => "transport",
            Self::Rejected { .. } => "rejected",
            Self::GraphQl { .. } => "graphql",
            Self::Decode { .. } => "decode",
            Self::TooLarge { .. } => "too_large",
        }
    }

    /// True for a throttled request.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Throttled { .. })
    }
}

/// A cost-based budget the platform reported (Shopify GraphQL `extensions.cost.throttleStatus`,
/// PLATFORMS.md §1.9; bol.com `x-ratelimit-*`, §3.7).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CostBudget {
    /// Points available now (`currentlyAvailable`).
    pub currently_available: f64,
    /// Bucket size (`maximumAvailable`).
    pub maximum_available: f64,
    /// Points restored per second (`restoreRate`).
    pub restore_rate_per_sec: f64,
    /// Cost of the next request of the same kind, estimated from the last one
    /// (`requestedQueryCost`).
    pub next_request_cost: f64,
}

impl CostBudget {
    /// How long to wait, in milliseconds, before the next request fits the budget; 0 when it
    /// fits now.
    pub fn wait_ms(&self) -> u64 {
        let missing = self.next_request_cost - self.currently_available;
        if missing <= 0.0 || self.restore_rate_per_sec <= 0.0 {
            return 0;
        }
        (missing / self.restore_rate_per_sec * 1000.0).ceil() as u64
    }
}

/// Throttle signals of one or more answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ThrottleSignal {
    /// The platform refused the request for rate reasons (HTTP 429 or GraphQL `THROTTLED`).
    pub throttled: bool,
    /// `Retry-After`, in milliseconds, when the platform sent one.
    pub retry_after_ms: Option<u64>,
    /// The cost budget, when the platform reports one.
    pub budget: Option<CostBudget>,
}

impl ThrottleSignal {
    /// Keeps the strongest signal of two (used when one push made several requests).
    pub fn merge(&mut self, other: ThrottleSignal) {
        self.throttled |= other.throttled;
        self.retry_after_ms = match (self.retry_after_ms, other.retry_after_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if other.budget.is_some() {
            self.budget = other.budget;
        }
    }
}

/// An HTTP answer, read once (status, headers and at most the client's byte limit of body).
#[derive(Clone, Debug, Default)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// Every response header.
    pub headers: HeaderMap,
    /// `Retry-After` in milliseconds (delta-seconds or HTTP-date), when sent.
    pub retry_after_ms: Option<u64>,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
    /// The body as text (for decoders and error messages).
    pub text: String,
}

impl HttpAnswer {
    /// A header's value as text, trimmed; `None` when absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    }

    /// A numeric header (`x-amzn-RateLimit-Limit: 5.0`), finite and not negative.
    pub fn header_f64(&self, name: &str) -> Option<f64> {
        self.header(name)
            .and_then(|value| value.parse::<f64>().ok())
            .filter(|value| value.is_finite() && *value >= 0.0)
    }

    /// The first [`MESSAGE_MAX_CHARS`] characters of the body.
    pub fn excerpt(&self) -> String {
        excerpt(&self.text)
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The request-level error of the status with the body excerpt as message; `None` for
    /// 2xx.
    pub fn status_error(&self) -> Option<PlatformError> {
        classify_status(self.status, self.excerpt(), self.retry_after_ms)
    }
}

/// The first [`MESSAGE_MAX_CHARS`] characters of a text.
pub fn excerpt(text: &str) -> String {
    text.chars().take(MESSAGE_MAX_CHARS).collect()
}

/// The request-level error an HTTP status means, `None` for 2xx: 401/403 unauthorized,
/// 429 throttled (with `retry_after_ms`), 5xx server, any other status rejected.
pub fn classify_status(
    status: u16,
    message: String,
    retry_after_ms: Option<u64>,
) -> Option<PlatformError> {
    match status {
        200..=299 => None,
        401 | 403 => Some(PlatformError::Unauthorized { status, message }),
        429 => Some(PlatformError::Throttled { retry_after_ms }),
        500..=599 => Some(PlatformError::Server { status, message }),
        status => Some(PlatformError::Rejected { status, message }),
    }
}

/// Parses `Retry-After` into milliseconds from now, in both RFC 9110 §10.2.3 forms:
/// delta-seconds (`2`; decimals such as Shopify's `2.0` are accepted) and an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past means 0).
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    parse_retry_after_ms_at(value, SystemTime::now())
}

/// [`parse_retry_after_ms`] with an explicit "now" (for tests).
pub fn parse_retry_after_ms_at(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

/// The instant an HTTP-date `Retry-After` counts from: the answer's own `Date` header
/// when it sends a valid one (RFC 9110 §6.6.1: both come from the origin's clock, so a
/// skewed local clock neither shortens nor stretches the wait), the local clock otherwise.
pub fn answer_date(headers: &HeaderMap) -> SystemTime {
    headers
        .get("date")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value.trim()).ok())
        .unwrap_or_else(SystemTime::now)
}

/// The `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds)
/// headers, when all three are sent (bol.com, PLATFORMS.md §3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitWindow {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

impl RateLimitWindow {
    /// Reads the three headers; `None` unless all are present and numeric.
    pub fn from_answer(answer: &HttpAnswer) -> Option<Self> {
        Some(Self {
            limit: answer.header("x-ratelimit-limit")?.parse().ok()?,
            remaining: answer.header("x-ratelimit-remaining")?.parse().ok()?,
            reset_secs: answer.header("x-ratelimit-reset")?.parse().ok()?,
        })
    }
}

/// Maps a client error to [`PlatformError::Transport`] (timeouts say so).
pub fn transport_error(error: &reqwest::Error) -> PlatformError {
    let kind = if error.is_timeout() { "timeout: " } else { "" };
    PlatformError::Transport {
        message: format!("{kind}{error}"),
    }
}

/// Reads status, headers and at most `limit_bytes` of body.
///
/// Errors: [`PlatformError::Transport`] when the body cannot be read,
/// [`PlatformError::TooLarge`] when it is longer than the limit.
pub async fn read_answer(
    mut response: reqwest::Response,
    limit_bytes: usize,
) -> Result<HttpAnswer, PlatformError> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let too_large = PlatformError::TooLarge { limit_bytes };
    if response
        .content_length()
        .is_some_and(|length| length > limit_bytes as u64)
    {
        return Err(too_large);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport_error(&error))?
    {
        if bytes.len() + chunk.len() > limit_bytes {
            return Err(too_large);
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    };
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    let retry_after_ms = headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after_ms_at(value, answer_date(&headers)));
    Ok(HttpAnswer {
        status,
        headers,
        retry_after_ms,
        body,
        text,
    })
}

/// Percent-encodes a path segment, query value or form value: every byte but the RFC 3986
/// unreserved characters (`A–Z a–z 0–9 - _ . ~`) becomes `%XX`.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The injected `reqwest::Client` with a platform's request timeout and body cap.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    body_limit_bytes: usize,
}

impl HttpClient {
    /// Wraps the shared client; every request gets `timeout` (at least 1 ms).
    pub fn new(client: reqwest::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout: timeout.max(Duration::from_millis(1)),
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
        }
    }

    /// The same client reading at most `limit_bytes` of each answer.
    pub fn with_body_limit(mut self, limit_bytes: usize) -> Self {
        self.body_limit_bytes = limit_bytes;
        self
    }

    /// The shared client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a request with the timeout and reads its answer (capped).
    ///
    /// Errors: [`PlatformError::Transport`] (no answer), [`PlatformError::TooLarge`].
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<HttpAnswer, PlatformError> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|error| transport_error(&error))?;
        read_answer(response, self.body_limit_bytes).await
    }
}

#[derive(Debug)]
struct CachedToken {
    value: String,
    until: Instant,
}

/// One access token per credential, shared by every caller that uses the credential (the
/// channel adapter and the pollers of a platform account).
#[derive(Debug)]
pub struct TokenCache {
    margin: Duration,
    slot: tokio::sync::Mutex<Option<CachedToken>>,
    fetched: AtomicU64,
}

impl TokenCache {
    /// An empty cache; a token is fetched again `margin` before it expires.
    pub fn new(margin: Duration) -> Self {
        Self {
            margin,
            slot: tokio::sync::Mutex::new(None),
            fetched: AtomicU64::new(0),
        }
    }

    /// The cached token, or a fresh one from `fetch` (which answers the token and its
    /// lifetime) when none is cached, it is about to expire, or it is `rejected` (the token
    /// the platform just refused). Callers wait for one another, so concurrent callers share
    /// one fetch.
    ///
    /// Errors: whatever `fetch` fails with.
    pub async fn get<F, Fut>(
        &self,
        rejected: Option<&str>,
        fetch: F,
    ) -> Result<String, PlatformError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), PlatformError>>,
    {
        let mut slot = self.slot.lock().await;
        let now = Instant::now();
        if let Some(cached) = slot.as_ref()
            && now + self.margin < cached.until
            && rejected != Some(cached.value.as_str())
        {
            return Ok(cached.value.clone());
        }
        let (value, lifetime) = fetch().await?;
        *slot = Some(CachedToken {
            value: value.clone(),
            until: now + lifetime,
        });
        self.fetched.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// How many tokens this cache fetched.
    pub fn fetches(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

/// `access_token` and `expires_in` (seconds, `default_lifetime_secs` when absent) of an
/// OAuth2 token answer.
///
/// Errors: the status error, or [`PlatformError::Decode`] without `access_token`.
pub fn decode_token(
    answer: &HttpAnswer,
    default_lifetime_secs: u64,
) -> Result<(String, Duration), PlatformError> {
    if let Some(error) = answer.status_error() {
        return Err(error);
    }
    let token = answer.body["access_token"]
        .as_str()
        .ok_or_else(|| PlatformError::Decode {
            message: format!("no access_token in {}", answer.excerpt()),
        })?;
    let lifetime = answer.body["expires_in"]
        .as_u64()
        .unwrap_or(default_lifetime_secs);
    Ok((token.to_owned(), Duration::from_secs(lifetime)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_both_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after_ms_at("2", now), Some(2000));
        assert_eq!(parse_retry_after_ms_at(" 2.0 ", now), Some(2000));
        assert_eq!(parse_retry_after_ms_at("0.25", now), Some(250));
        assert_eq!(
            parse_retry_after_ms_at("Wed, 21 Oct 2015 07:28:05 GMT", now),
            Some(5000)
        );
        // RFC 850 and asctime are obsolete but must be accepted (RFC 9110 §5.6.7).
        assert_eq!(
            parse_retry_after_ms_at("Wednesday, 21-Oct-15 07:28:03 GMT", now),
            Some(3000)
        );
        assert_eq!(
            parse_retry_after_ms_at("Wed Oct 21 07:28:01 2015", now),
            Some(1000)
        );
        assert_eq!(
            parse_retry_after_ms_at("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after_ms_at("soon", now), None);
        assert_eq!(parse_retry_after_ms_at("-1", now), None);
    }

    #[test]
    fn statuses_are_classified_with_a_retry_hint() {
        let error = |status| classify_status(status, "m".to_owned(), Some(7));
        assert_eq!(error(204), None);
        let unauthorized = error(403).unwrap();
        assert_eq!(unauthorized.domain(), ErrorDomain::User);
        assert_eq!(unauthorized.retry_hint(), RetryHint::NoRetry);
        let throttled = error(429).unwrap();
        assert_eq!(
            throttled,
            PlatformError::Throttled {
                retry_after_ms: Some(7)
            }
        );
        assert_eq!(throttled.domain(), ErrorDomain::External);
        assert_eq!(throttled.retry_hint(), RetryHint::WithBackoff);
        assert_eq!(error(503).unwrap().retry_hint(), RetryHint::WithBackoff);
        let rejected = error(400).unwrap();
        assert_eq!(rejected.domain(), ErrorDomain::Internal);
        assert_eq!(rejected.retry_hint(), RetryHint::NoRetry);
        assert_eq!(rejected.label(), "rejected");
    }

    #[test]
    fn values_are_percent_encoded_except_unreserved_characters() {
        assert_eq!(encode("a b&c"), "a%20b%26c");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode("é/="), "%C3%A9%2F%3D");
    }

    #[test]
    fn cost_budget_wait_is_zero_when_the_next_request_fits() {
        let budget = CostBudget {
            currently_available: 50.0,
            maximum_available: 100.0,
            restore_rate_per_sec: 50.0,
            next_request_cost: 10.0,
        };
        assert_eq!(budget.wait_ms(), 0);
        let short = CostBudget {
            currently_available: 5.0,
            ..budget
        };
        assert_eq!(short.wait_ms(), 100);
    }

    #[test]
    fn throttle_signals_merge_to_the_strongest() {
        let mut signal = ThrottleSignal {
            throttled: false,
            retry_after_ms: Some(500),
            budget: None,
        };
        signal.merge(ThrottleSignal {
            throttled: true,
            retry_after_ms: Some(2000),
            budget: None,
        });
        assert!(signal.throttled);
        assert_eq!(signal.retry_after_ms, Some(2000));
    }

    #[tokio::test]
    async fn a_token_cache_fetches_once_for_many_callers_and_again_when_refused() {
        let cache = std::sync::Arc::new(TokenCache::new(Duration::from_secs(10)));
        let fetches = std::sync::Arc::new(AtomicU64::new(0));
        let fetch = |fetches: std::sync::Arc<AtomicU64>| async move {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            Ok((format!("token-{n}"), Duration::from_secs(300)))
        };
        let (a, b) = tokio::join!(
            cache.get(None, || fetch(fetches.clone())),
            cache.get(None, || fetch(fetches.clone()))
        );
        assert_eq!(
            (a.unwrap(), b.unwrap()),
            ("token-1".into(), "token-1".into())
        );
        // Two callers are refused with token-1: only the first fetches anew.
        let first = cache.get(Some("token-1"), || fetch(fetches.clone())).await;
        let second = cache.get(Some("token-1"), || fetch(fetches.clone())).await;
        assert_eq!(
            (first.unwrap(), second.unwrap()),
            ("token-2".into(), "token-2".into())
        );
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_fetched_again_within_the_margin_of_its_expiry() {
        let cache = TokenCache::new(Duration::from_secs(10));
        let fetch = || async { Ok(("t".to_owned(), Duration::from_secs(30))) };
        cache.get(None, fetch).await.unwrap();
        tokio::time::advance(Duration::from_secs(19)).await;
        cache.get(None, fetch).await.unwrap();
        assert_eq!(cache.fetches(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get(None, fetch).await.unwrap();
        assert_eq!(cache.fetches(), 2);
    }
}
