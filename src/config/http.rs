//! `[http]`: the listener for the API, webhooks, dashboard and `/metrics`, its limits, and
//! the cap on answers read from platform APIs.
//!
//! Owns: [`HttpConfig`] and the bounds its limits are checked against.
//!
//! May depend on: nothing but serde.

use serde::{Deserialize, Serialize};

/// Most movements `max_movements_per_request` may allow (the REST reader's own ceiling).
pub const MAX_MOVEMENTS_PER_REQUEST: usize = 10_000;

/// `[http]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (`127.0.0.1:8080`; port 0 picks a free one).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes (413 problem beyond it, on every route).
    #[serde(default = "default_body_limit_bytes")]
    pub body_limit_bytes: usize,
    /// A connection must send a request's whole header within this time, in milliseconds,
    /// or it is closed. Also bounds how long an idle keep-alive connection is kept.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A request not answered within this time, in milliseconds, is answered with a 503
    /// problem (`request-timeout`, with `Retry-After`). Body streams (server-sent events)
    /// are not bounded by it once their answer started.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Most connections open at once; a connection beyond it is accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most requests handled at once (`/healthz`, `/readyz` and `/metrics` not counted);
    /// a request beyond it is shed with a 503 problem (`overloaded`) and `Retry-After`.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// The `Retry-After` sent with a shed or timed-out request, in seconds.
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u64,
    /// Most movements in one `POST /api/v1/movements` (422 problem beyond it), at most
    /// [`MAX_MOVEMENTS_PER_REQUEST`].
    #[serde(default = "default_max_movements_per_request")]
    pub max_movements_per_request: usize,
    /// Largest answer body read from a platform API (orders pages, feed reports), in bytes;
    /// a longer answer fails the request with a `too_large` platform error.
    #[serde(default = "default_platform_response_limit_bytes")]
    pub platform_response_limit_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit_bytes: default_body_limit_bytes(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            max_connections: default_max_connections(),
            max_concurrent_requests: default_max_concurrent_requests(),
            retry_after_secs: default_retry_after_secs(),
            max_movements_per_request: default_max_movements_per_request(),
            platform_response_limit_bytes: default_platform_response_limit_bytes(),
        }
    }
}

impl HttpConfig {
    /// Appends one line per limit out of range to `problems`.
    pub fn limit_problems(&self, problems: &mut Vec<String>) {
        let mut positive = |name: &str, value: u64| {
            if value == 0 {
                problems.push(format!("http.{name} must be at least 1"));
            }
        };
        positive("body_limit_bytes", self.body_limit_bytes as u64);
        positive("header_read_timeout_ms", self.header_read_timeout_ms);
        positive("request_timeout_ms", self.request_timeout_ms);
        positive("max_connections", self.max_connections as u64);
        positive(
            "max_concurrent_requests",
            self.max_concurrent_requests as u64,
        );
        positive(
            "platform_response_limit_bytes",
            self.platform_response_limit_bytes as u64,
        );
        if !(1..=MAX_MOVEMENTS_PER_REQUEST).contains(&self.max_movements_per_request) {
            problems.push(format!(
                "http.max_movements_per_request must be 1..={MAX_MOVEMENTS_PER_REQUEST}"
            ));
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_body_limit_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_max_connections() -> usize {
    1_024
}
fn default_max_concurrent_requests() -> usize {
    256
}
fn default_retry_after_secs() -> u64 {
    1
}
fn default_max_movements_per_request() -> usize {
    5_000
}
fn default_platform_response_limit_bytes() -> usize {
    16 * 1024 * 1024
}
