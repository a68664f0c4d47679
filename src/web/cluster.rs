//! `POST /internal/v1/cluster/apply`: movements another instance forwarded to this one
//! because this one owns their SKUs (several instances, see `crate::cluster`), and
//! `POST /internal/v1/cluster/availability`: availability changes of another instance's SKUs,
//! sent here because this instance leads a channel.
//!
//! Owns: the receiving ends of [`crate::cluster::forward`] and
//! [`crate::cluster::availability`]. The availability route publishes into this
//! instance's propagation only (never forwarded again) and answers 204; propagation's
//! sequence filter drops a change older than one it has.
//!
//! Both are authenticated with the `[cluster] token` only (`auth::Access::Cluster`). Each
//! forwarded movement is applied here and
//! never forwarded again ([`crate::ledger::Ledger::submit_owned`]); the answer is 200 with
//! one `Result` per movement, in order, each given once durable (or refused), exactly as
//! the ledger gave it, so the forwarding instance hands its caller the same answer.
//!
//! May depend on: `ledger`, `domain`, `cluster::forward` and `cluster::availability` (wire
//! types), `web` errors.

use super::{WebError, WebState, body_error};
use crate::cluster::availability::{AvailabilityRequest, MAX_CHANGES_PER_REQUEST};
use crate::cluster::forward::{ApplyRequest, ApplyResponse, MAX_FORWARDED_MOVEMENTS};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};

/// Applies forwarded movements (see the module docs).
///
/// Errors: 400 problem when the body is not an [`ApplyRequest`] or names more than
/// [`MAX_FORWARDED_MOVEMENTS`] movements.
pub(super) async fn post_apply(
    State(state): State<WebState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let body = body.map_err(body_error)?;
    let request: ApplyRequest =
        serde_json::from_slice(&body).map_err(|error| WebError::MalformedJson {
            message: format!("not a forwarded-movements body: {error}"),
        })?;
    if request.movements.len() > MAX_FORWARDED_MOVEMENTS {
        return Err(WebError::Body {
            status: axum::http::StatusCode::BAD_REQUEST,
            message: format!(
                "{} movements forwarded at once; at most {MAX_FORWARDED_MOVEMENTS}",
                request.movements.len()
            ),
        });
    }
    let pending: Vec<_> = request
        .movements
        .into_iter()
        .map(|movement| state.ledger.submit_owned(movement, None))
        .collect();
    let results = futures::future::join_all(pending).await;
    Ok(Json(ApplyResponse { results }).into_response())
}

/// Publishes availability changes another instance sent (see the module docs).
///
/// Errors: 400 problem when the body is not an [`AvailabilityRequest`] or holds more than
/// [`MAX_CHANGES_PER_REQUEST`] changes; 404 when this instance runs without `[cluster]`.
pub(super) async fn post_availability(
    State(state): State<WebState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let body = body.map_err(body_error)?;
    let Some(sink) = state.cluster_availability.clone() else {
        return Err(WebError::Body {
            status: axum::http::StatusCode::NOT_FOUND,
            message: "this instance runs without [cluster]".to_owned(),
        });
    };
    let request: AvailabilityRequest =
        serde_json::from_slice(&body).map_err(|error| WebError::MalformedJson {
            message: format!("not an availability body: {error}"),
        })?;
    if request.changes.len() > MAX_CHANGES_PER_REQUEST {
        return Err(WebError::Body {
            status: axum::http::StatusCode::BAD_REQUEST,
            message: format!(
                "{} availability changes at once; at most {MAX_CHANGES_PER_REQUEST}",
                request.changes.len()
            ),
        });
    }
    sink.publish(&request.changes);
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
