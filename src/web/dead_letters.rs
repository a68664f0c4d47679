//! `GET /api/v1/dead-letters?sku=&limit=`: parked movements that waited longer than
//! `[ledger] parked_ttl_secs` for their order line and expired (issue 9 §2b), newest expiry
//! first, read straight from the store ([`crate::store::Store::dead_letters`]).
//!
//! `limit` is 1..=[`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]); an unknown parameter, a bad
//! number, a limit out of range or an empty `sku` answers a 400 problem; a store failure a
//! 503 problem.
//!
//! May depend on: `store`, the web module's problem and state types.

use super::{Problem, WebError, WebState};
use crate::store::{DeadLetterQuery, DeadLetterRecord};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Rows answered when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// The most rows one request may ask for.
pub const MAX_LIMIT: usize = 1_000;

/// Query parameters of `GET /api/v1/dead-letters`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this SKU.
    pub sku: Option<String>,
    /// Most rows (default [`DEFAULT_LIMIT`], 1..=[`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

/// One dead letter as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The SKU.
    pub sku: String,
    /// The event that recorded (and parked) the movement.
    pub parked_seq: u64,
    /// The event that expired it.
    pub expired_seq: u64,
    /// The movement's idempotency key.
    pub idempotency_key: String,
    /// The movement's source.
    pub source: String,
    /// The movement's kind (`fulfilment`, `return`, ...).
    pub kind: String,
    /// The movement's effect as recorded (JSON).
    #[schema(value_type = Value)]
    pub movement: serde_json::Value,
    /// Why it waited.
    pub reason: String,
    /// Its source time, in milliseconds since the Unix epoch (the TTL counted from here).
    pub parked_at_ms: i64,
    /// When it expired, in milliseconds since the Unix epoch.
    pub expired_at_ms: i64,
}

impl From<DeadLetterRecord> for DeadLetter {
    fn from(record: DeadLetterRecord) -> Self {
        Self {
            movement: serde_json::from_str(&record.movement_json)
                .unwrap_or(serde_json::Value::String(record.movement_json)),
            sku: record.sku,
            parked_seq: record.parked_seq,
            expired_seq: record.expired_seq,
            idempotency_key: record.idempotency_key,
            source: record.source,
            kind: record.kind,
            reason: record.reason,
            parked_at_ms: record.parked_at_ms,
            expired_at_ms: record.expired_at_ms,
        }
    }
}

/// The answer of `GET /api/v1/dead-letters`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    /// The dead letters, newest expiry first.
    pub dead_letters: Vec<DeadLetter>,
}

fn bad_request(detail: impl Into<String>) -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-query",
        "Invalid query parameters",
        detail.into(),
    )
    .into_response()
}

/// Checks the parameters and turns them into a store query.
fn query(params: DeadLetterParams) -> Result<DeadLetterQuery, String> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        ));
    }
    if params.sku.as_deref().is_some_and(str::is_empty) {
        return Err("sku must not be empty".to_owned());
    }
    Ok(DeadLetterQuery {
        sku: params.sku,
        limit,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    tag = "audit",
    security(("bearerAuth" = ["read"])),
    params(DeadLetterParams),
    responses(
        (status = 200, description = "Parked movements that expired, newest first.", body = DeadLetterPage),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_dead_letters(
    State(state): State<WebState>,
    params: Result<Query<DeadLetterParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let query = match query(params) {
        Ok(query) => query,
        Err(detail) => return bad_request(detail),
    };
    match state.ledger.store().dead_letters(&query).await {
        Ok(rows) => Json(DeadLetterPage {
            dead_letters: rows.into_iter().map(DeadLetter::from).collect(),
        })
        .into_response(),
        Err(error) => WebError::Unavailable {
            message: error.to_string(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded_and_an_empty_sku_is_refused() {
        let ok = query(DeadLetterParams::default()).unwrap();
        assert_eq!(ok.limit, DEFAULT_LIMIT);
        assert!(
            query(DeadLetterParams {
                limit: Some(0),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            query(DeadLetterParams {
                limit: Some(MAX_LIMIT + 1),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            query(DeadLetterParams {
                sku: Some(String::new()),
                ..Default::default()
            })
            .is_err()
        );
    }
}
