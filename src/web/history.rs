//! The audit API, read straight from the store behind the ledger:
//! - `GET /api/v1/movements?sku=&from_ms=&to_ms=&source=&kind=&limit=&after=&levels=`:
//!   movement history ([`MovementPage`]: rows with the levels each left, and `next_after`
//!   for the next page); `Accept: text/csv` or `format=csv` exports the same rows as CSV
//!   (header in [`crate::store::history::write_csv`]).
//! - `GET /api/v1/pushes?channel=&sku=&from_ms=&to_ms=&limit=`: every push with the
//!   channel's answer, newest first.
//! - `GET /api/v1/audit/config?limit=`: configuration changes, newest first.
//!
//! Bad query parameters answer a 400 problem; a store failure a 503 problem.

use super::{Problem, WebError, WebState};
use crate::store::history::{MovementRow, movement_rows, write_csv};
use crate::store::{ConfigAuditRecord, EventQuery, PushLogQuery, PushLogRecord};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// Query parameters of `GET /api/v1/movements`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MovementParams {
    /// Only this SKU.
    pub sku: Option<String>,
    /// Recorded at or after, ms since the Unix epoch.
    pub from_ms: Option<i64>,
    /// Recorded before, ms since the Unix epoch.
    pub to_ms: Option<i64>,
    /// Only this source.
    pub source: Option<String>,
    /// Only this kind (`receipt`, `sale`, …).
    pub kind: Option<String>,
    /// Most rows (default 100, at most 10,000).
    pub limit: Option<usize>,
    /// The `next_after` of the previous page.
    pub after: Option<u64>,
    /// `csv` for CSV (same as `Accept: text/csv`).
    pub format: Option<String>,
    /// Replay the levels each movement left (default true).
    pub levels: Option<bool>,
}

/// One page of movement history.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovementPage {
    /// The rows, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub movements: Vec<MovementRow>,
    /// Pass as `after` for the next page; `None` when this page was not full.
    pub next_after: Option<u64>,
}

/// Query parameters of `GET /api/v1/pushes`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PushParams {
    /// Only this channel.
    pub channel: Option<String>,
    /// Only this SKU.
    pub sku: Option<String>,
    /// Answered at or after, ms since the Unix epoch.
    pub from_ms: Option<i64>,
    /// Answered before, ms since the Unix epoch.
    pub to_ms: Option<i64>,
    /// Most rows (default 100, at most 10,000).
    pub limit: Option<usize>,
}

/// Query parameters of `GET /api/v1/audit/config`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConfigAuditParams {
    /// Most rows (default 100, at most 10,000).
    pub limit: Option<usize>,
}

fn invalid_query(rejection: QueryRejection) -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-query",
        "Invalid query parameters",
        rejection.body_text(),
    )
    .into_response()
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    WebError::Unavailable {
        message: error.to_string(),
    }
    .into_response()
}

fn limit(requested: Option<usize>) -> usize {
    requested
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, crate::store::history::MAX_LIMIT)
}

fn wants_csv(params: &MovementParams, headers: &HeaderMap) -> bool {
    params
        .format
        .as_deref()
        .is_some_and(|format| format.eq_ignore_ascii_case("csv"))
        || headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv"))
}

#[utoipa::path(
    get,
    path = "/api/v1/movements",
    tag = "movements",
    security(("bearerAuth" = ["read"])),
    params(MovementParams),
    responses(
        (status = 200, description = "A page of movement history (CSV with `format=csv` or `Accept: text/csv`).", content((MovementPage = "application/json"), (String = "text/csv"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_movements(
    State(state): State<WebState>,
    headers: HeaderMap,
    params: Result<Query<MovementParams>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => return invalid_query(rejection),
    };
    let query = EventQuery {
        sku: params.sku.clone(),
        from_ms: params.from_ms,
        to_ms: params.to_ms,
        source: params.source.clone(),
        kind: params.kind.clone(),
        after: params.after,
        limit: limit(params.limit),
    };
    let rows = match movement_rows(
        state.ledger.store().as_ref(),
        &query,
        params.levels.unwrap_or(true),
    )
    .await
    {
        Ok(rows) => rows,
        Err(error) => return unavailable(error),
    };
    if wants_csv(&params, &headers) {
        let mut body = Vec::new();
        if let Err(error) = write_csv(&rows, &mut body) {
            return unavailable(error);
        }
        return (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"movements.csv\"",
                ),
            ],
            body,
        )
            .into_response();
    }
    let next_after = (rows.len() == query.limit)
        .then(|| rows.last().map(|row| row.cursor))
        .flatten();
    Json(MovementPage {
        movements: rows,
        next_after,
    })
    .into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/pushes",
    tag = "audit",
    security(("bearerAuth" = ["read"])),
    params(PushParams),
    responses(
        (status = 200, description = "Pushes with the channel's answer, newest first.", body = [Object]),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_pushes(
    State(state): State<WebState>,
    params: Result<Query<PushParams>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => return invalid_query(rejection),
    };
    let query = PushLogQuery {
        channel: params.channel,
        sku: params.sku,
        from_ms: params.from_ms,
        to_ms: params.to_ms,
        limit: limit(params.limit),
    };
    match state.ledger.store().query_push_log(&query).await {
        Ok(rows) => Json::<Vec<PushLogRecord>>(rows).into_response(),
        Err(error) => unavailable(error),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/config",
    tag = "audit",
    security(("bearerAuth" = ["read"])),
    params(ConfigAuditParams),
    responses(
        (status = 200, description = "Configuration changes, newest first (no secrets).", body = [Object]),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_config_audit(
    State(state): State<WebState>,
    params: Result<Query<ConfigAuditParams>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => return invalid_query(rejection),
    };
    match state
        .ledger
        .store()
        .config_changes(limit(params.limit))
        .await
    {
        Ok(rows) => Json::<Vec<ConfigAuditRecord>>(rows).into_response(),
        Err(error) => unavailable(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_chosen_by_format_or_accept_header() {
        let mut headers = HeaderMap::new();
        let json = MovementParams::default();
        assert!(!wants_csv(&json, &headers));
        let csv = MovementParams {
            format: Some("CSV".into()),
            ..MovementParams::default()
        };
        assert!(wants_csv(&csv, &headers));
        headers.insert(header::ACCEPT, "text/csv".parse().unwrap());
        assert!(wants_csv(&json, &headers));
        assert_eq!(limit(None), DEFAULT_LIMIT);
        assert_eq!(limit(Some(0)), 1);
    }
}
