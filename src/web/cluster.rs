//! `POST /internal/v1/cluster/apply`: movements another instance forwarded to this one
//! because this one owns their SKUs (several instances, see `crate::cluster`),
//! `POST /internal/v1/cluster/availability`: availability changes of another instance's SKUs,
//! sent here because this instance leads a channel, and the passing of a channel's webhooks
//! to its leader ([`webhooks_to_leader`]).
//!
//! Webhooks: with several instances a platform may deliver to any of them, but handling a
//! delivery can call the platform (Shopify's thin fulfillment-order webhooks are read back,
//! PLATFORMS.md §1.6), and only the channel's leader spends the channel's rate budget. So an
//! instance that does not lead the channel passes the delivery on, unchanged (body and
//! headers, so the leader verifies the signature itself), to the leader's same path, marked
//! with [`FORWARDED_WEBHOOK_HEADER`], and hands the leader's answer back to the platform. A
//! marked delivery is never passed on again; one that cannot reach the leader (none known
//! during a failover, or unreachable) is handled here, which stays correct (every movement
//! carries an idempotency key) at the cost of a read outside the leader's budget.
//!
//! Owns: the receiving ends of [`crate::cluster::forward`] and
//! [`crate::cluster::availability`], and [`WebhookLeaders`]. The availability route publishes into this
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
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// The header that marks a webhook delivery one instance passed to a channel's leader; its
/// value is the passing instance's own advertised URL (for the logs).
pub const FORWARDED_WEBHOOK_HEADER: &str = "x-stocksync-forwarded-webhook";

/// How long an instance waits for the leader's answer to a delivery it passed on, in
/// milliseconds; then it handles the delivery itself.
pub const WEBHOOK_FORWARD_TIMEOUT_MS: u64 = 10_000;

/// Who handles a channel's webhooks when several instances run.
pub trait WebhookLeaders: Send + Sync {
    /// The base URL (`http://host:port`) of the instance that leads `channel` when that is
    /// another instance; `None` when this one leads it or no leader is known.
    fn elsewhere(&self, channel: &str) -> Option<Arc<str>>;
}

impl WebhookLeaders for crate::cluster::ChannelLeadership {
    fn elsewhere(&self, channel: &str) -> Option<Arc<str>> {
        if crate::propagation::Leadership::leads(self, channel) {
            return None;
        }
        self.leader_url(channel)
    }
}

/// Middleware on the webhook receivers: passes a delivery for a channel another instance
/// leads to that leader (see the module docs); handles it here otherwise.
pub(super) async fn webhooks_to_leader(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    let Some((leaders, client)) = state.webhook_leaders.clone() else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    let leader = match super::health::webhook_channel(&path) {
        Some(channel) if !request.headers().contains_key(FORWARDED_WEBHOOK_HEADER) => {
            leaders.elsewhere(channel)
        }
        _ => None,
    };
    let Some(leader) = leader else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    // The outer body limit layers bound what this reads.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return WebError::Body {
            status: axum::http::StatusCode::BAD_REQUEST,
            message: "the webhook body could not be read".to_owned(),
        }
        .into_response();
    };
    let target = format!(
        "{leader}{}",
        parts
            .uri
            .path_and_query()
            .map_or(path.as_str(), |path| path.as_str())
    );
    let mut forwarded = client
        .post(&target)
        .timeout(Duration::from_millis(WEBHOOK_FORWARD_TIMEOUT_MS))
        .header(FORWARDED_WEBHOOK_HEADER, "1")
        .body(bytes.clone());
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::CONNECTION {
            forwarded = forwarded.header(name, value);
        }
    }
    match forwarded.send().await {
        Ok(answer) => {
            metrics::counter!(crate::telemetry::CLUSTER_FORWARDS_TOTAL, "kind" => "webhook", "outcome" => "ok")
                .increment(1);
            let status = answer.status();
            let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        Err(error) => {
            metrics::counter!(crate::telemetry::CLUSTER_FORWARDS_TOTAL, "kind" => "webhook", "outcome" => "failed")
                .increment(1);
            tracing::info!(leader = %leader, path = %path, error = %error, "the channel's leader did not take the webhook; handling it here");
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

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
