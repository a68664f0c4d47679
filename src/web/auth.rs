//! Who may use the API: bearer tokens with scopes, the loopback rule, the `Host`
//! allow-list (against DNS rebinding) and the optional CORS layer.
//!
//! Owns: [`Auth`] (built once from `[http]`), the [`guard`] middleware that every request
//! passes, [`Caller`] (the token's name, put in the request's extensions for handlers that
//! record an actor), [`required_access`] (the route → scope map), [`hash_token`] and
//! [`new_token`] (for `stocksync token new`).
//!
//! Rules, in order: `/healthz` and `/readyz` answer anyone; any other request whose `Host`
//! is not allowed gets 421; `/webhooks/…` keep their platform signatures (checked by the
//! receivers), except Amazon's unsigned SQS bridge route, which needs an `ingest` token; the OpenAPI contract is public; `/metrics` is open unless `metrics_token_hash` is set; every other route
//! needs a token with its scope (401 without a valid token, 403 without the scope). With no
//! token configured, every route is open to a server that listens on a loopback address
//! (or has `insecure_no_auth = true`); a non-loopback server without tokens (a config that
//! skipped validation) answers 401 to everything but health, metrics and webhooks.
//!
//! Tokens are compared as SHA-256 digests in constant time (`subtle`), against every
//! configured token, so neither the answer time nor the log says which one nearly matched.
//! No token or hash is ever logged.
//!
//! May depend on: `config` (`[http]`), `problem`.

use crate::config::{HttpConfig, Scope};
use crate::problem::Problem;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// The actor recorded when no token is configured (loopback mode).
pub const LOCAL_ACTOR: &str = "local";

/// The prefix of tokens made by [`new_token`], so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "ss_";

/// The caller a request was authenticated as; handlers read it from the extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's `name`, or [`LOCAL_ACTOR`] when no token is configured.
    pub name: Arc<str>,
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Health probes: anyone, any `Host`.
    Probe,
    /// Platform webhooks: authenticated by their signatures, not by a token.
    Webhook,
    /// The API contract (`GET /api/v1/openapi.json`): anyone whose `Host` is allowed.
    Contract,
    /// `/metrics`: open unless a metrics token is configured.
    Metrics,
    /// A token with one of these scopes.
    Scoped(&'static [Scope]),
    /// Instance-to-instance calls (`/internal/v1/cluster/…`): the `[cluster] token` only,
    /// whatever `Host` the caller used (it dialled the advertised URL).
    Cluster,
}

/// The access `method` on `path` needs. Any mutation not listed needs `operate`, so a new
/// route is never open by mistake.
pub fn required_access(method: &Method, path: &str) -> Access {
    const INGEST: &[Scope] = &[Scope::Ingest];
    const RESERVE: &[Scope] = &[Scope::Reserve];
    const RESERVE_OR_READ: &[Scope] = &[Scope::Reserve, Scope::Read];
    const OPERATE: &[Scope] = &[Scope::Operate];
    const READ: &[Scope] = &[Scope::Read];
    const READ_OR_OPERATE: &[Scope] = &[Scope::Read, Scope::Operate];
    let reading = matches!(*method, Method::GET | Method::HEAD);
    match path {
        "/healthz" | "/readyz" => Access::Probe,
        _ if path.starts_with("/internal/v1/cluster/") => Access::Cluster,
        "/metrics" => Access::Metrics,
        // Amazon ORDER_CHANGE notifications come from an SQS bridge and carry no platform
        // signature: the bridge authenticates with an `ingest` token like any producer.
        _ if path.starts_with("/webhooks/amazon/") => Access::Scoped(INGEST),
        _ if path.starts_with("/webhooks/") => Access::Webhook,
        "/api/v1/openapi.json" if reading => Access::Contract,
        "/api/v1/movements" if !reading => Access::Scoped(INGEST),
        _ if path == "/api/v1/reservations" || path.starts_with("/api/v1/reservations/") => {
            if reading {
                Access::Scoped(RESERVE_OR_READ)
            } else {
                Access::Scoped(RESERVE)
            }
        }
        "/api/v1/config/rules" if reading => Access::Scoped(READ_OR_OPERATE),
        _ if reading => Access::Scoped(READ),
        _ => Access::Scoped(OPERATE),
    }
}

struct Token {
    name: Arc<str>,
    scopes: Vec<Scope>,
    digest: [u8; 32],
}

/// The credentials and host rules in force, built once from `[http]`.
pub struct Auth {
    tokens: Vec<Token>,
    metrics_digest: Option<[u8; 32]>,
    /// No token configured and the server may be used without one (loopback or
    /// `insecure_no_auth`).
    open: bool,
    /// `None`: any host.
    allowed_hosts: Option<Vec<String>>,
    /// SHA-256 of `[cluster] token`; `None` without `[cluster]` (the internal routes are
    /// then closed to everyone).
    cluster_digest: Option<[u8; 32]>,
}

impl Auth {
    /// The rules of `http`. A token whose hash cannot be read is left out (config
    /// validation reports it), so a broken config fails closed.
    pub fn new(http: &HttpConfig) -> Self {
        let tokens: Vec<Token> = http
            .auth
            .tokens
            .iter()
            .filter_map(|token| {
                Some(Token {
                    name: Arc::from(token.name.as_str()),
                    scopes: token.scopes.clone(),
                    digest: token.digest().ok()?,
                })
            })
            .collect();
        let open = http.auth.tokens.is_empty()
            && (http.auth.insecure_no_auth || http.listens_on_loopback());
        let hosts = http.effective_allowed_hosts();
        let allowed_hosts = (!hosts.iter().any(|host| host == "*")).then_some(hosts);
        Self {
            tokens,
            metrics_digest: http
                .auth
                .metrics_token_hash
                .as_deref()
                .and_then(|hash| crate::config::http_hash(hash.trim())),
            open,
            allowed_hosts,
            cluster_digest: None,
        }
    }

    /// Whether `host` (a `Host` header value, with or without port) is allowed.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        let name = host_name(host).to_ascii_lowercase();
        allowed.contains(&name)
    }

    /// The token presented in `headers` (`Authorization: Bearer T`, or `Basic` with `T` as
    /// the password, which is what a browser sends for the dashboard), matched in constant
    /// time against every configured token.
    fn authenticate(&self, headers: &HeaderMap) -> Option<&Token> {
        let presented = presented_token(headers)?;
        let digest = sha256(presented.as_bytes());
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (position, token) in self.tokens.iter().enumerate() {
            let equal = digest[..].ct_eq(&token.digest[..]);
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            index = u32::conditional_select(&index, &position, equal);
            found |= equal;
        }
        if bool::from(found) {
            self.tokens.get(usize::try_from(index).ok()?)
        } else {
            None
        }
    }

    /// Also accepts the `[cluster] token` on the instance-to-instance routes.
    pub fn with_cluster_token(mut self, token: Option<&str>) -> Self {
        self.cluster_digest = token.map(|token| sha256(token.as_bytes()));
        self
    }

    /// Whether `headers` carry the cluster token (compared as digests in constant time).
    fn cluster_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.cluster_digest else {
            return false;
        };
        let Some(presented) = presented_token(headers) else {
            return false;
        };
        bool::from(sha256(presented.as_bytes())[..].ct_eq(&expected[..]))
    }

    fn metrics_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.metrics_digest else {
            return true;
        };
        let Some(presented) = presented_token(headers) else {
            return false;
        };
        let digest = sha256(presented.as_bytes());
        bool::from(digest[..].ct_eq(&expected[..]))
            || self
                .authenticate(headers)
                .is_some_and(|token| token.scopes.contains(&Scope::Metrics))
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(bytes));
    out
}

/// The host part of a `Host` value: `[::1]:8080` → `[::1]`, `example.com:80` → `example.com`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_user, token)| token.to_owned());
    }
    None
}

/// The middleware: host check, then the access the route needs (see the module docs). On
/// success the request carries a [`Caller`] when a token (or loopback mode) identified it.
pub async fn guard(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let access = required_access(request.method(), request.uri().path());
    if access != Access::Probe && access != Access::Cluster {
        let host = request
            .uri()
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if !auth.host_allowed(&host) {
            return Problem::new(
                StatusCode::MISDIRECTED_REQUEST,
                "host-not-allowed",
                "Host not allowed",
                "this server does not answer for the Host named in the request; \
                 add it to http.allowed_hosts",
            )
            .into_response();
        }
    }
    match access {
        Access::Probe | Access::Webhook | Access::Contract => {}
        Access::Cluster => {
            if !auth.cluster_allowed(request.headers()) {
                return unauthenticated();
            }
        }
        Access::Metrics => {
            if !auth.metrics_allowed(request.headers()) {
                return unauthenticated();
            }
        }
        Access::Scoped(scopes) => {
            if auth.open {
                request.extensions_mut().insert(Caller {
                    name: Arc::from(LOCAL_ACTOR),
                });
            } else {
                let Some(token) = auth.authenticate(request.headers()) else {
                    return unauthenticated();
                };
                if !scopes.iter().any(|scope| token.scopes.contains(scope)) {
                    let needed: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
                    return Problem::new(
                        StatusCode::FORBIDDEN,
                        "insufficient-scope",
                        "Token lacks the scope",
                        format!(
                            "token {:?} may not do this; it needs the scope {}",
                            &*token.name,
                            needed.join(" or ")
                        ),
                    )
                    .into_response();
                }
                request.extensions_mut().insert(Caller {
                    name: token.name.clone(),
                });
            }
        }
    }
    next.run(request).await
}

fn unauthenticated() -> Response {
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "A valid token is required",
        "send Authorization: Bearer <token> with a token from [http.auth]",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"stocksync\", Basic realm=\"stocksync\""),
    );
    response
}

/// The CORS layer for `origins` (`[http] cors_allowed_origins`), or `None` when empty (no
/// CORS header is then sent). Origins that are not valid header values are skipped
/// (validation reports them).
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim_end_matches('/')).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// The SHA-256 of `token` as 64 lower-case hex digits (what `[http.auth]` stores).
pub fn hash_token(token: &str) -> String {
    sha256_hex(token)
}

/// The SHA-256 of `text` as 64 lower-case hex digits (token hashes, config audit hashes).
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The name a change is recorded under: the caller's token name, or [`LOCAL_ACTOR`] when
/// the request carried none (no tokens configured).
pub(crate) fn actor_name(caller: Option<axum::Extension<Caller>>) -> String {
    caller.map_or_else(
        || LOCAL_ACTOR.to_owned(),
        |axum::Extension(caller)| caller.name.to_string(),
    )
}

/// A new random token: [`TOKEN_PREFIX`] and 32 random bytes (256 bits from the OS-seeded
/// generator), base64url without padding.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What the server says at start about its credentials: the level and the sentence.
pub fn startup_notice(http: &HttpConfig) -> (tracing::Level, String) {
    let tokens = http.auth.tokens.len();
    if tokens > 0 {
        return (
            tracing::Level::INFO,
            format!("API: {tokens} token(s) configured; every API route needs one"),
        );
    }
    if http.listens_on_loopback() {
        return (
            tracing::Level::WARN,
            format!(
                "API: no tokens configured; accepting requests without credentials because \
                 {} is a loopback address (add [[http.auth.tokens]] before listening elsewhere)",
                http.listen
            ),
        );
    }
    if http.auth.insecure_no_auth {
        return (
            tracing::Level::WARN,
            format!(
                "API: no tokens and insecure_no_auth = true: anyone who reaches {} may change stock",
                http.listen
            ),
        );
    }
    (
        tracing::Level::ERROR,
        format!(
            "API: {} is not a loopback address and no token is configured",
            http.listen
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn with_token(scopes: Vec<Scope>) -> (Auth, String) {
        let token = new_token();
        let mut http = HttpConfig::default();
        http.auth.tokens.push(TokenConfig {
            name: "erp".to_owned(),
            scopes,
            hash: Some(hash_token(&token)),
            hash_file: None,
        });
        (Auth::new(&http), token)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[test]
    fn routes_need_their_scope_and_mutations_default_to_operate() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(
            required_access(&post, "/api/v1/movements"),
            Access::Scoped(&[Scope::Ingest])
        );
        assert_eq!(
            required_access(&post, "/api/v1/reservations/r1/commit"),
            Access::Scoped(&[Scope::Reserve])
        );
        assert_eq!(
            required_access(&Method::PUT, "/api/v1/config/rules"),
            Access::Scoped(&[Scope::Operate])
        );
        assert_eq!(
            required_access(&get, "/api/v1/audit/config"),
            Access::Scoped(&[Scope::Read])
        );
        assert_eq!(
            required_access(&Method::DELETE, "/api/v1/anything"),
            Access::Scoped(&[Scope::Operate])
        );
        assert_eq!(
            required_access(&post, "/webhooks/shopify/x"),
            Access::Webhook
        );
        assert_eq!(required_access(&get, "/healthz"), Access::Probe);
        assert_eq!(required_access(&get, "/metrics"), Access::Metrics);
        assert_eq!(
            required_access(&Method::POST, "/webhooks/amazon/amazon-eu"),
            Access::Scoped(&[Scope::Ingest])
        );
        assert_eq!(
            required_access(&Method::POST, "/webhooks/shopify/shop-main"),
            Access::Webhook
        );
        assert_eq!(
            required_access(&get, "/api/v1/openapi.json"),
            Access::Contract
        );
    }

    #[test]
    fn tokens_match_by_hash_and_nothing_else_does() {
        let (auth, token) = with_token(vec![Scope::Ingest]);
        assert_eq!(
            auth.authenticate(&bearer(&token)).map(|t| &*t.name),
            Some("erp")
        );
        assert!(auth.authenticate(&bearer(&format!("{token}x"))).is_none());
        assert!(auth.authenticate(&bearer(&hash_token(&token))).is_none());
        assert!(auth.authenticate(&HeaderMap::new()).is_none());
        let mut basic = HeaderMap::new();
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"));
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {credentials}")).unwrap(),
        );
        assert!(auth.authenticate(&basic).is_some(), "browsers send Basic");
    }

    #[test]
    fn new_tokens_are_prefixed_random_and_long() {
        let (a, b) = (new_token(), new_token());
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() >= 40, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_token("abc").len(), 64);
    }

    #[test]
    fn hosts_are_checked_without_their_port() {
        let auth = Auth::new(&HttpConfig::default());
        assert!(auth.host_allowed("127.0.0.1:8080"));
        assert!(auth.host_allowed("LOCALHOST"));
        assert!(auth.host_allowed("[::1]:9"));
        assert!(!auth.host_allowed("evil.example:8080"));
        assert!(!auth.host_allowed(""));
    }

    #[test]
    fn a_non_loopback_server_without_tokens_is_closed() {
        let http = HttpConfig {
            listen: "0.0.0.0:8080".to_owned(),
            ..HttpConfig::default()
        };
        assert!(!Auth::new(&http).open);
        assert_eq!(startup_notice(&http).0, tracing::Level::ERROR);
        assert!(Auth::new(&HttpConfig::default()).open);
    }
}
