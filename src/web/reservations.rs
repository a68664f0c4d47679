//! The reservations API (issue 3 item 5): all-or-nothing holds across SKUs for a B2B portal
//! or the merchant's own checkout, over [`crate::ledger::Ledger::reserve`].
//!
//! Routes:
//! - `POST /api/v1/reservations` with `{"id":"checkout-81","lines":[{"sku":"SKU-G",
//!   "quantity":1,"location":"WH-1"?,"route":["WH-NORTH"]?}],"ttl_secs":900?}`:
//!   201 with a [`ReservationView`] (each line's chosen `location`), 200 with the same
//!   view when every line was already held under this id (a retry); 409 problem
//!   `insufficient-stock` with `lines: [{line, sku, requested, available}]` (nothing is
//!   held); 409 problem `reservation-id-conflict` when the id was used with other lines;
//!   422 problem `invalid-reservation` listing every problem with a JSON pointer.
//!   A line with neither `location` nor `route` is routed over every configured location in
//!   config order.
//! - `POST /api/v1/reservations/{id}/commit`, optional body `{"lines":[0,2]}`: ships every
//!   held unit of the lines (all by default); 200 view, 404, 409 `reservation-not-open`.
//! - `POST /api/v1/reservations/{id}/release`: releases what is still held; 200 view, 404.
//! - `GET /api/v1/reservations/{id}`: 200 view, 404.
//!
//! Every 2xx is sent after the movements are durable; store failures answer 503 (retry the
//! same request: every movement key derives from the id).
//!
//! May depend on: `ledger`, `domain`, `config` (through [`WebState`]).

use super::{FieldError, Problem, WebError, WebState, body_error};
use crate::domain::ApplyError;
use crate::ledger::{
    LedgerError, ReservationLine, ReservationOutcome, ReservationRequest, ReservationView,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The body of `POST /api/v1/reservations/{id}/commit` (optional).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct CommitBody {
    /// Line indexes to commit; absent: every line.
    #[serde(default)]
    pub lines: Option<Vec<usize>>,
}

#[utoipa::path(
    post,
    path = "/api/v1/reservations",
    tag = "reservations",
    security(("bearerAuth" = ["reserve"])),
    request_body(content = crate::ledger::ReservationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Every line is held.", body = ReservationView),
        (status = 200, description = "Every line was already held under this id (a retry).", body = ReservationView),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::UnprocessableEntity),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn post_reservation(
    State(state): State<WebState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let body = body.map_err(body_error)?;
    let request = match parse_request(&body, &state) {
        Ok(request) => request,
        Err(Reply::Problem(problem)) => return Ok(problem.into_response()),
        Err(Reply::Error(error)) => return Err(error),
    };
    match state.ledger().reserve(request).await {
        Ok(ReservationOutcome::Reserved { view, replayed }) => {
            let status = if replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(view)).into_response())
        }
        Ok(ReservationOutcome::InsufficientStock { id, lines }) => {
            let problem = Problem::new(
                StatusCode::CONFLICT,
                "insufficient-stock",
                "Insufficient stock",
                format!(
                    "reservation {id}: {} line(s) do not fit in available stock; nothing is held",
                    lines.len()
                ),
            );
            Ok(problem_with(problem, "lines", &lines))
        }
        Ok(ReservationOutcome::Conflict { id }) => Ok(Problem::new(
            StatusCode::CONFLICT,
            "reservation-id-conflict",
            "Reservation id already used",
            format!("reservation {id} was made before with other lines or another ttl_secs"),
        )
        .into_response()),
        Err(error) => Ok(ledger_problem(error)),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/reservations/{id}/commit",
    tag = "reservations",
    security(("bearerAuth" = ["reserve"])),
    params(("id" = String, Path, description = "The reservation request id.")),
    request_body(content = Option<CommitBody>, description = "Optional: the line indexes to commit (all by default).", content_type = "application/json"),
    responses(
        (status = 200, description = "The held units of the lines were shipped.", body = ReservationView),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 422, response = super::openapi::UnprocessableEntity),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn post_commit(
    State(state): State<WebState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let body = body.map_err(body_error)?;
    let commit: CommitBody = if body.iter().all(u8::is_ascii_whitespace) {
        CommitBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(commit) => commit,
            Err(error) => {
                return Ok(invalid(vec![FieldError::new("#", error.to_string())]).into_response());
            }
        }
    };
    let result = state
        .ledger()
        .commit_reservation(&id, commit.lines.as_deref())
        .await;
    Ok(view_reply(&id, result))
}

#[utoipa::path(
    post,
    path = "/api/v1/reservations/{id}/release",
    tag = "reservations",
    security(("bearerAuth" = ["reserve"])),
    params(("id" = String, Path, description = "The reservation request id.")),
    responses(
        (status = 200, description = "What was still held is released.", body = ReservationView),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 422, response = super::openapi::UnprocessableEntity),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn post_release(
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Response {
    let result = state.ledger().release_reservation(&id).await;
    view_reply(&id, result)
}

#[utoipa::path(
    get,
    path = "/api/v1/reservations/{id}",
    tag = "reservations",
    security(("bearerAuth" = ["read"])),
    params(("id" = String, Path, description = "The reservation request id.")),
    responses(
        (status = 200, description = "The reservation and its lines.", body = ReservationView),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_reservation(
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Response {
    let result = state.ledger().reservation(&id).await;
    view_reply(&id, result)
}

enum Reply {
    Problem(Problem),
    Error(WebError),
}

/// Parses and validates a reservation request, filling the route of lines that name no
/// location from the configured locations.
fn parse_request(body: &[u8], state: &WebState) -> Result<ReservationRequest, Reply> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
        Reply::Error(WebError::MalformedJson {
            message: error.to_string(),
        })
    })?;
    let mut request: ReservationRequest = serde_json::from_value(value)
        .map_err(|error| Reply::Problem(invalid(vec![FieldError::new("#", error.to_string())])))?;
    let configured: Vec<_> = state
        .config()
        .locations
        .iter()
        .map(|location| location.id.clone())
        .collect();
    for line in &mut request.lines {
        fill_route(line, &configured);
    }
    request.validate().map_err(|problems| {
        Reply::Problem(invalid(
            problems
                .into_iter()
                .map(|p| FieldError::new(format!("#/{}", p.field), p.detail))
                .collect(),
        ))
    })?;
    Ok(request)
}

/// A line without location or route is routed over every configured location, in order.
fn fill_route(line: &mut ReservationLine, configured: &[crate::domain::LocationId]) {
    if line.location.is_none() && line.route.is_empty() {
        line.route = configured.to_vec();
    }
}

fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-reservation",
        "Invalid reservation request",
        format!("{} problem(s); nothing was reserved", errors.len()),
    )
    .with_errors(errors)
}

/// A problem document with one extension member (RFC 9457 §3.2).
fn problem_with<T: serde::Serialize>(problem: Problem, member: &str, value: &T) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::CONFLICT);
    let mut json = serde_json::to_value(&problem).unwrap_or_default();
    if let Some(object) = json.as_object_mut() {
        object.insert(
            member.to_owned(),
            serde_json::to_value(value).unwrap_or_default(),
        );
    }
    let mut response = (status, Json(json)).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(super::PROBLEM_CONTENT_TYPE),
    );
    response
}

fn view_reply(id: &str, result: Result<Option<ReservationView>, LedgerError>) -> Response {
    match result {
        Ok(Some(view)) => (StatusCode::OK, Json(view)).into_response(),
        Ok(None) => Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-reservation",
            "Unknown reservation",
            format!("no reservation with id {id}"),
        )
        .into_response(),
        Err(error) => ledger_problem(error),
    }
}

fn ledger_problem(error: LedgerError) -> Response {
    match error {
        LedgerError::Rejected(ApplyError::Invalid(message)) => {
            invalid(vec![FieldError::new("#", message)]).into_response()
        }
        LedgerError::Rejected(ApplyError::UnknownLocation { field, location }) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-location",
            "Unknown location",
            format!("location {location} is not configured; nothing was reserved"),
        )
        .with_errors(vec![FieldError::new(
            format!("#/{field}"),
            format!("location {location} is not configured"),
        )])
        .into_response(),
        LedgerError::Rejected(error) => Problem::new(
            StatusCode::CONFLICT,
            "reservation-not-open",
            "Reservation not open",
            error.to_string(),
        )
        .into_response(),
        error @ (LedgerError::Store(_)
        | LedgerError::Unavailable(_)
        | LedgerError::Overloaded(_)
        | LedgerError::NotOwner { .. }) => WebError::Unavailable {
            message: error.to_string(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_location_or_route_use_the_configured_locations() {
        let mut line = ReservationLine {
            sku: "A".into(),
            quantity: 1,
            location: None,
            route: vec![],
        };
        fill_route(&mut line, &["WH-1".into(), "WH-2".into()]);
        assert_eq!(line.route, vec!["WH-1".into(), "WH-2".into()]);
        let mut pinned = ReservationLine {
            location: Some("WH-9".into()),
            route: vec![],
            ..line.clone()
        };
        fill_route(&mut pinned, &["WH-1".into()]);
        assert!(pinned.route.is_empty());
    }

    #[test]
    fn shortage_problems_carry_the_lines() {
        let problem = Problem::new(StatusCode::CONFLICT, "insufficient-stock", "t", "d");
        let lines = vec![crate::ledger::LineShortage {
            line: 1,
            sku: "B".into(),
            requested: 5,
            available: 2,
        }];
        let response = problem_with(problem, "lines", &lines);
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            super::super::PROBLEM_CONTENT_TYPE
        );
    }
}
