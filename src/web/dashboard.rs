//! The operations dashboard, served by stocksync itself, and the read endpoints it uses.
//!
//! Owns: the page (`GET /` and `GET /dashboard`, plain HTML, vanilla JS and CSS embedded
//! in the binary with `include_str!`, no build step), SKU browsing
//! (`GET /api/v1/skus?after=&limit=&prefix=`), a SKU's recent store events
//! (`GET /api/v1/stock/{sku}/events?limit=`; a SKU never seen is a 404 `unknown-sku`
//! problem and loads nothing) and the live stream
//! (`GET /api/v1/events?sku=`, server-sent events).
//!
//! May depend on: `ledger` (state, SKU list, the store's events), the sibling handlers
//! [`super::stock`] and [`super::health`], `clock`. Never `propagation` or `channels`.
//!
//! The live stream checks every [`LIVE_PERIOD_MS`] and sends an event only when something
//! changed: `channels` (the `GET /api/v1/channels` body), and with `?sku=` also `stock`
//! (the `GET /api/v1/stock/{sku}` body). At most [`MAX_LIVE_STREAMS`] streams are open at
//! once; beyond that the answer is a 503 problem and the page falls back to polling.

use super::health::{ChannelsView, channel_health};
use super::{Problem, WebError, WebState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;

/// How often the live stream looks for changes, in milliseconds.
pub const LIVE_PERIOD_MS: u64 = 1_000;
/// Live streams open at once, at most.
pub const MAX_LIVE_STREAMS: usize = 64;
/// SKUs per page when `limit` is not given.
pub const DEFAULT_SKU_PAGE: usize = 50;
/// SKUs per page, at most.
pub const MAX_SKU_PAGE: usize = 500;
/// Events returned when `limit` is not given.
pub const DEFAULT_EVENTS: usize = 20;
/// Events returned, at most.
pub const MAX_EVENTS: usize = 200;

const INDEX_HTML: &str = include_str!("assets/index.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");

/// The dashboard's routes, merged into [`super::router`].
pub(super) fn routes() -> axum::Router<WebState> {
    axum::Router::new()
        .route("/", get(index))
        .route("/dashboard", get(index))
        .route("/dashboard/dashboard.js", get(script))
        .route("/dashboard/dashboard.css", get(stylesheet))
        .route("/api/v1/skus", get(get_skus))
        .route("/api/v1/stock/{sku}/events", get(get_sku_events))
        .route("/api/v1/events", get(get_live))
        .route("/api/v1/channels", get(super::health::get_channels))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

fn invalid_query(detail: impl Into<String>) -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-query",
        "Invalid query",
        detail,
    )
    .into_response()
}

/// `GET /api/v1/skus` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SkuQuery {
    /// Only SKUs after this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, 1..=[`MAX_SKU_PAGE`] (default [`DEFAULT_SKU_PAGE`]).
    pub limit: Option<usize>,
    /// Only SKUs starting with this text (case-sensitive).
    pub prefix: Option<String>,
}

/// A page of SKUs, ascending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkuPage {
    /// The SKUs.
    pub skus: Vec<String>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<String>,
}

/// The greatest practical string that sorts before every string starting with `prefix`
/// (stores compare SKUs byte-wise), so a listing can start right at the prefix.
fn before_prefix(prefix: &str) -> Option<String> {
    let mut chars = prefix.chars();
    let last = chars.next_back()?;
    let head = chars.as_str();
    let previous = (0..u32::from(last))
        .rev()
        .find_map(char::from_u32)
        .map(|c| format!("{head}{c}{}", "\u{10FFFF}".repeat(8)));
    Some(previous.unwrap_or_else(|| head.to_owned()))
}

#[utoipa::path(
    get,
    path = "/api/v1/skus",
    tag = "dashboard",
    security(("bearerAuth" = ["read"])),
    params(SkuQuery),
    responses(
        (status = 200, description = "A page of SKUs, ascending.", body = SkuPage),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
async fn get_skus(
    State(state): State<WebState>,
    query: Result<Query<SkuQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return invalid_query(rejection.body_text()),
    };
    let limit = query.limit.unwrap_or(DEFAULT_SKU_PAGE);
    if !(1..=MAX_SKU_PAGE).contains(&limit) {
        return invalid_query(format!("limit must be 1..={MAX_SKU_PAGE}"));
    }
    let prefix = query.prefix.unwrap_or_default();
    let start = before_prefix(&prefix);
    let after = match (query.after, start) {
        (Some(after), Some(start)) => Some(after.max(start)),
        (after, start) => after.or(start),
    };
    match sku_page(&state, after, limit, &prefix).await {
        Ok(page) => Json(page).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn sku_page(
    state: &WebState,
    after: Option<String>,
    limit: usize,
    prefix: &str,
) -> Result<SkuPage, WebError> {
    let mut skus = state
        .ledger
        .list_skus(after.as_deref(), limit + 1)
        .await
        .map_err(|error| WebError::Unavailable {
            message: error.to_string(),
        })?;
    // Skip the odd SKU between the computed start and the prefix, stop past the prefix.
    skus.retain(|sku| sku.as_str() >= prefix);
    if let Some(end) = skus.iter().position(|sku| !sku.starts_with(prefix)) {
        skus.truncate(end);
        return Ok(SkuPage {
            skus,
            next_after: None,
        });
    }
    let next_after = if skus.len() > limit {
        skus.truncate(limit);
        skus.last().cloned()
    } else {
        None
    };
    Ok(SkuPage { skus, next_after })
}

/// `GET /api/v1/stock/{sku}/events` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Most recent events to return, 1..=[`MAX_EVENTS`] (default [`DEFAULT_EVENTS`]).
    pub limit: Option<usize>,
}

/// One durable ledger event of a SKU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    /// The SKU's sequence number after this movement.
    pub seq: u64,
    /// When the event was made durable, in milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
    /// The movement's idempotency key.
    pub idempotency_key: String,
    /// The movement as recorded (`type`, `source`, quantities, …).
    #[schema(value_type = Object)]
    pub movement: serde_json::Value,
}

/// A SKU's most recent events, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventsPage {
    /// The SKU.
    pub sku: String,
    /// The events, newest first.
    pub events: Vec<EventView>,
}

#[utoipa::path(
    get,
    path = "/api/v1/stock/{sku}/events",
    tag = "dashboard",
    security(("bearerAuth" = ["read"])),
    params(("sku" = String, Path, description = "The SKU."), EventsQuery),
    responses(
        (status = 200, description = "The SKU's most recent events.", body = EventsPage),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
async fn get_sku_events(
    State(state): State<WebState>,
    Path(sku): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return invalid_query(rejection.body_text()),
    };
    let limit = query.limit.unwrap_or(DEFAULT_EVENTS);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return invalid_query(format!("limit must be 1..={MAX_EVENTS}"));
    }
    match recent_events(&state, sku, limit).await {
        Ok(page) => Json(page).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn recent_events(
    state: &WebState,
    sku: String,
    limit: usize,
) -> Result<EventsPage, WebError> {
    let unavailable = |message: String| WebError::Unavailable { message };
    let Some(known) = state
        .ledger
        .known_state(&sku.clone().into())
        .await
        .map_err(|error| unavailable(error.to_string()))?
    else {
        return Err(WebError::UnknownSku { sku });
    };
    let seq = known.seq;
    let from_seq = seq.saturating_sub(limit as u64 - 1).max(1);
    let records = state
        .ledger
        .store()
        .events(&sku, from_seq, limit)
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    let events = records
        .into_iter()
        .rev()
        .map(|record| EventView {
            movement: record.movement_json().unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&record.movement).into_owned())
            }),
            seq: record.seq,
            recorded_at_ms: record.recorded_at_ms,
            idempotency_key: record.idempotency_key,
        })
        .collect();
    Ok(EventsPage { sku, events })
}

/// `GET /api/v1/events` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Also stream this SKU's stock view.
    pub sku: Option<String>,
}

/// What one live stream last sent.
struct LiveCursor {
    state: WebState,
    sku: Option<String>,
    channels: String,
    stock: String,
    first: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl LiveCursor {
    /// Waits for the next period (not before the first), then returns the changed events.
    async fn next_events(&mut self) -> Vec<Event> {
        if !self.first {
            tokio::time::sleep(Duration::from_millis(LIVE_PERIOD_MS)).await;
        }
        self.first = false;
        let mut events = Vec::new();
        let channels = serde_json::to_string(&ChannelsView {
            channels: channel_health(&self.state),
        })
        .unwrap_or_default();
        if channels != self.channels {
            events.push(Event::default().event("channels").data(&channels));
            self.channels = channels;
        }
        if let Some(sku) = &self.sku {
            let stock =
                match super::stock::get_stock(State(self.state.clone()), Path(sku.clone())).await {
                    Ok(Json(view)) => serde_json::to_string(&view).unwrap_or_default(),
                    Err(error) => serde_json::to_string(&error.problem()).unwrap_or_default(),
                };
            if stock != self.stock {
                events.push(Event::default().event("stock").data(&stock));
                self.stock = stock;
            }
        }
        events
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "dashboard",
    security(("bearerAuth" = ["read"])),
    params(LiveQuery),
    responses(
        (status = 200, description = "Server-sent events: `channels` (a ChannelsView) and, with `sku`, `stock` (a StockView), each when it changes.", body = String, content_type = "text/event-stream"),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
async fn get_live(
    State(state): State<WebState>,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return invalid_query(rejection.body_text()),
    };
    let Ok(permit) = state.ops.live_streams.clone().try_acquire_owned() else {
        return WebError::Unavailable {
            message: format!("{MAX_LIVE_STREAMS} live streams are open; poll instead"),
        }
        .into_response();
    };
    let cursor = LiveCursor {
        state,
        sku: query.sku.filter(|sku| !sku.is_empty()),
        channels: String::new(),
        stock: String::new(),
        first: true,
        _permit: permit,
    };
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        let events = cursor.next_events().await;
        Some((events, cursor))
    })
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_before_a_prefix_sorts_below_it_and_above_smaller_strings() {
        let start = before_prefix("SKU-B").unwrap();
        assert!(start.as_str() < "SKU-B");
        assert!(start.as_str() < "SKU-B0");
        assert!(start.as_str() > "SKU-A");
        assert!(start.as_str() > "SKU-AZZZZ");
        assert_eq!(before_prefix(""), None);
        assert_eq!(before_prefix("A\0").as_deref(), Some("A"));
    }

    #[test]
    fn assets_are_embedded() {
        assert!(INDEX_HTML.contains("dashboard.js"));
        assert!(DASHBOARD_JS.contains("/api/v1/skus"));
        assert!(DASHBOARD_CSS.contains("body"));
    }
}
