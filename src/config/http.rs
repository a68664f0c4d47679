//! `[http]`: the listener for the API, webhooks, dashboard and `/metrics`, its limits, the
//! cap on answers read from platform APIs, and who may use it (`[http.auth]` tokens,
//! allowed `Host` names, CORS origins).
//!
//! Owns: [`HttpConfig`] and the bounds its limits are checked against, [`AuthConfig`],
//! [`TokenConfig`], [`Scope`], and the loopback rule ([`HttpConfig::listens_on_loopback`]).
//! The tokens are checked by `web::auth`.
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
    /// Host names (without port) accepted in a request's `Host` header, against DNS
    /// rebinding. Empty (the default) means `localhost`, `127.0.0.1`, `[::1]` and the host
    /// of `listen`; `"*"` accepts any host. `/healthz` and `/readyz` answer any host.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://admin.example.com`) a browser may call the API from (CORS). Empty
    /// (the default): no CORS header is sent, so other origins cannot read answers.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    /// API credentials.
    #[serde(default)]
    pub auth: AuthConfig,
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
            allowed_hosts: Vec::new(),
            cors_allowed_origins: Vec::new(),
            auth: AuthConfig::default(),
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

impl HttpConfig {
    /// Whether `listen` is a loopback address (`127.0.0.0/8`, `::1`, or `localhost`); an
    /// address that does not parse counts as not loopback.
    pub fn listens_on_loopback(&self) -> bool {
        let host = listen_host(&self.listen);
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }

    /// The `Host` names accepted, lower case: [`HttpConfig::allowed_hosts`], or the default
    /// loopback names plus the host of `listen` when that list is empty.
    pub fn effective_allowed_hosts(&self) -> Vec<String> {
        if !self.allowed_hosts.is_empty() {
            return self
                .allowed_hosts
                .iter()
                .map(|host| host.to_ascii_lowercase())
                .collect();
        }
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .map(str::to_owned)
            .to_vec();
        let own = listen_host(&self.listen).to_ascii_lowercase();
        if !own.is_empty() && !hosts.contains(&own) {
            hosts.push(own);
        }
        hosts
    }
}

/// The host part of a `host:port` listen address (`[::1]` keeps its brackets).
fn listen_host(listen: &str) -> &str {
    match listen.rsplit_once(':') {
        Some((host, _port)) if !host.is_empty() => host,
        _ => listen,
    }
}

/// `[http.auth]`: bearer tokens with scopes.
///
/// Without any token, mutations are accepted only when `listen` is a loopback address; a
/// non-loopback `listen` without tokens is a config error unless `insecure_no_auth` is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Serve every route to anyone on a non-loopback address without tokens. Only for a
    /// network that is itself protected; logged as a warning at start.
    #[serde(default)]
    pub insecure_no_auth: bool,
    /// SHA-256 (hex) of a token that `/metrics` then requires (`Authorization: Bearer`);
    /// absent: `/metrics` is open. A token with the `metrics` scope is accepted too.
    #[serde(default)]
    pub metrics_token_hash: Option<String>,
    /// The API tokens (`[[http.auth.tokens]]`), at most [`MAX_TOKENS`].
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// Most tokens in `[http.auth]` (each request compares against all of them).
pub const MAX_TOKENS: usize = 64;

/// One API token: `stocksync token new NAME --scopes …` prints the token and this entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token; recorded as the actor of what it changes (the rules audit).
    pub name: String,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// SHA-256 of the token, 64 hex digits (may come from the environment with
    /// `${VAR}` interpolation). Exactly one of `hash` and `hash_file` is set.
    #[serde(default)]
    pub hash: Option<String>,
    /// A file holding the SHA-256 hex of the token (e.g. a Docker or Kubernetes secret);
    /// surrounding whitespace is ignored.
    #[serde(default)]
    pub hash_file: Option<std::path::PathBuf>,
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /api/v1/movements`.
    Ingest,
    /// The reservations endpoints.
    Reserve,
    /// `PUT /api/v1/config/rules` and anything that triggers heals or re-publishing.
    Operate,
    /// The dashboard, stock reads, history, dead letters, audit and the event streams.
    Read,
    /// `/metrics` when `metrics_token_hash` is set.
    Metrics,
}

impl Scope {
    /// Every scope, in documentation order.
    pub const ALL: [Scope; 5] = [
        Scope::Ingest,
        Scope::Reserve,
        Scope::Operate,
        Scope::Read,
        Scope::Metrics,
    ];

    /// The scope's name in the config (`ingest`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Reserve => "reserve",
            Scope::Operate => "operate",
            Scope::Read => "read",
            Scope::Metrics => "metrics",
        }
    }

    /// The scope named `name`, if any.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == name)
    }
}

impl TokenConfig {
    /// The token's SHA-256, from `hash` or `hash_file`. Errors: neither or both set, the
    /// file unreadable, or not 64 hex digits (the message never contains the value).
    pub fn digest(&self) -> Result<[u8; 32], String> {
        let text = match (&self.hash, &self.hash_file) {
            (Some(hash), None) => hash.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|error| {
                format!(
                    "http.auth token {:?}: cannot read hash_file {}: {error}",
                    self.name,
                    path.display()
                )
            })?,
            _ => {
                return Err(format!(
                    "http.auth token {:?} needs exactly one of hash and hash_file",
                    self.name
                ));
            }
        };
        parse_sha256_hex(text.trim()).ok_or_else(|| {
            format!(
                "http.auth token {:?}: the hash must be 64 hex digits (the SHA-256 of the token)",
                self.name
            )
        })
    }
}

/// 64 hex digits as 32 bytes, or `None`.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *slot = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listening(listen: &str) -> HttpConfig {
        HttpConfig {
            listen: listen.to_owned(),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for listen in [
            "127.0.0.1:8080",
            "127.0.0.2:0",
            "[::1]:8080",
            "localhost:80",
        ] {
            assert!(listening(listen).listens_on_loopback(), "{listen}");
        }
        for listen in ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:80", "example.com:80"] {
            assert!(!listening(listen).listens_on_loopback(), "{listen}");
        }
    }

    #[test]
    fn default_hosts_are_loopback_names_and_the_listen_host() {
        let hosts = listening("192.168.1.4:8080").effective_allowed_hosts();
        assert_eq!(hosts, ["localhost", "127.0.0.1", "[::1]", "192.168.1.4"]);
        let mut configured = listening("0.0.0.0:8080");
        configured.allowed_hosts = vec!["Stock.Example.com".to_owned()];
        assert_eq!(configured.effective_allowed_hosts(), ["stock.example.com"]);
    }
}
