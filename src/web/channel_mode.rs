//! Shadow mode over HTTP: `GET /api/v1/channels/{channel}/shadow-report?limit=` (what
//! propagation would have pushed next to what the channel lists, by class) and
//! `PUT /api/v1/channels/{channel}/mode` (`{"mode": "live"|"shadow"}`: the switch; going
//! live pushes every listing that differs once, with compare-and-set where the channel has
//! it). Both go through the [`super::ChannelView`]; an unknown channel answers a 404
//! problem, a bad parameter or body a 400 problem.
//!
//! A switch that changed the mode is recorded in the config audit (`channel_mode_changed`,
//! with the caller's token name).
//!
//! May depend on: `store` (the config audit), the web module's problem and state types.

use super::{Problem, WebState};
use crate::config::ChannelMode;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Differences listed when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most differences one request may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// Query parameters of the shadow report.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShadowReportParams {
    /// Most differences listed (default 100, 1..=10000), largest first.
    pub limit: Option<usize>,
}

/// One listing the shadow compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShadowListing {
    /// The listing key (the SKU, or `SKU@LOCATION` on a multi-location channel).
    pub sku: String,
    /// What propagation would have pushed (whole units).
    pub would_push: u64,
    /// What the channel listed when read; absent when it does not stock the listing.
    pub channel_value: Option<i64>,
    /// `channel_value − would_push` (0 when missing).
    pub difference: i64,
    /// `in_sync`, `channel_higher` (could oversell), `channel_lower` (could undersell) or
    /// `missing`.
    pub class: String,
    /// When it was compared, ms since the Unix epoch.
    pub at_ms: i64,
}

/// The answer of `GET /api/v1/channels/{channel}/shadow-report`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShadowReportView {
    /// The channel.
    pub channel: String,
    /// `shadow` or `live` (on the instance that answered).
    pub mode: String,
    /// Listings compared since the start (or since the channel went to shadow).
    pub compared: usize,
    /// Listings per class (`in_sync`, `channel_higher`, `channel_lower`, `missing`).
    pub classes: std::collections::BTreeMap<String, usize>,
    /// Units listed over the ATP, summed over `channel_higher` listings.
    pub units_over: u64,
    /// Units missing under the ATP, summed over `channel_lower` listings.
    pub units_under: u64,
    /// The listings that differ, largest difference first.
    pub differences: Vec<ShadowListing>,
}

/// The body of `PUT /api/v1/channels/{channel}/mode`.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    /// `live` or `shadow`.
    #[schema(value_type = String)]
    pub mode: ChannelMode,
}

/// The answer of `PUT /api/v1/channels/{channel}/mode`.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ModeAnswer {
    /// The channel.
    pub channel: String,
    /// The mode now in force on the instance that answered (`live` or `shadow`).
    #[schema(value_type = String)]
    pub mode: ChannelMode,
    /// Whether this request changed it.
    pub changed: bool,
}

fn bad_request(kind: &str, detail: impl Into<String>) -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        kind,
        "Invalid request",
        detail.into(),
    )
    .into_response()
}

fn unknown_channel(channel: &str) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown-channel",
        "Unknown channel",
        format!("no channel {channel:?} is configured"),
    )
    .into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/channels/{channel}/shadow-report",
    tag = "operations",
    security(("bearerAuth" = ["read"])),
    params(("channel" = String, Path, description = "Channel id."), ShadowReportParams),
    responses(
        (status = 200, description = "What propagation would have pushed next to what the channel lists.", body = ShadowReportView),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_shadow_report(
    State(state): State<WebState>,
    Path(channel): Path<String>,
    params: Result<Query<ShadowReportParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return bad_request("invalid-query", rejection.body_text()),
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return bad_request(
            "invalid-query",
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        );
    }
    match state
        .channel_view
        .as_ref()
        .and_then(|view| view.shadow_report(&channel, limit))
    {
        Some(report) => Json(report).into_response(),
        None => unknown_channel(&channel),
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/channels/{channel}/mode",
    tag = "operations",
    security(("bearerAuth" = ["operate"])),
    params(("channel" = String, Path, description = "Channel id.")),
    request_body = ModeBody,
    responses(
        (status = 200, description = "The mode in force; going live pushes every listing that differs once.", body = ModeAnswer),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn put_mode(
    State(state): State<WebState>,
    Path(channel): Path<String>,
    caller: Option<axum::Extension<super::auth::Caller>>,
    body: Result<Json<ModeBody>, JsonRejection>,
) -> Response {
    let mode = match body {
        Ok(Json(body)) => body.mode,
        Err(rejection) => return bad_request("invalid-body", rejection.body_text()),
    };
    let Some(changed) = state
        .channel_view
        .as_ref()
        .and_then(|view| view.set_channel_mode(&channel, mode))
    else {
        return unknown_channel(&channel);
    };
    if changed {
        record_mode_change(&state, &channel, mode, &super::auth::actor_name(caller)).await;
    }
    Json(ModeAnswer {
        channel,
        mode,
        changed,
    })
    .into_response()
}

/// Records who switched which channel in the config audit, next to rules changes. The
/// switch is in force already; a store failure here is logged, not undone.
async fn record_mode_change(state: &WebState, channel: &str, mode: ChannelMode, actor: &str) {
    let json = serde_json::json!({"channel": channel, "mode": mode}).to_string();
    let record = crate::store::ConfigAuditRecord {
        at_ms: state.ledger.clock().now_ms(),
        action: "channel_mode_changed".to_owned(),
        actor: actor.to_owned(),
        config_hash: super::auth::sha256_hex(&json),
        config_json: json,
    };
    if let Err(error) = state.ledger.store().record_config_change(&record).await {
        tracing::warn!(channel, error = %error, "the mode change could not be recorded in the config audit");
    }
    tracing::info!(channel, ?mode, actor, "channel mode changed over the API");
}
