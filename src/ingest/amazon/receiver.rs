//! `POST /webhooks/amazon/{channel_id}`: Amazon ORDER_CHANGE notifications (PLATFORMS.md
//! §4.3), as forwarded by an SQS bridge (the notification JSON, or the SQS message whose
//! `Body` carries it).
//!
//! Order of work, and the answer at each step:
//! 1. the channel must exist and have a `[channels.amazon]` section, else 404 problem;
//! 2. the raw body is read (413 problem over `http.body_limit_bytes`);
//! 3. it is decoded by [`super::decode::decode_notification`] (400 problem if it cannot
//!    be); other notification types are acknowledged with 200 `ignored`;
//! 4. a `NotificationId` already processed is answered 200 `duplicate` at once (SQS is at
//!    least once);
//! 5. the movements ([`super::decode::order_movements`]; none for AFN orders) are
//!    submitted; 200 only once all are durable, else 503 so the bridge leaves the message
//!    on the queue for redelivery.
//!
//! Authenticity: SQS notifications carry no signature (§4.3); trust comes from who can
//! reach this endpoint (the bridge on a private network), as with the queue's IAM policy.
//! The `NotificationId` memory is a shortcut; business dedupe is the movements' keys, which
//! the Orders API poller shares, so a redelivered or polled order is applied once.
//!
//! Owns: the [`router`] of this route, which `web` mounts. The `NotificationId` memory is
//! the app's ([`ReceiverState::deliveries`], keys prefixed by the channel id).
//!
//! May depend on: `config`, `ledger`, `telemetry`, `ingest::receiver`,
//! `ingest::amazon::decode`.

use super::decode::{self as amazon, Decoded};
use crate::config::ChannelConfig;
use crate::ingest::receiver::{ReceiverError, ReceiverState, WebhookReceipt, body_error};
use crate::ledger::LedgerError;
use crate::telemetry::{INGEST_WEBHOOKS_TOTAL, LEDGER_DEDUPE_HITS_TOTAL};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};

/// The topic label of every Amazon delivery.
const TOPIC: &str = "ORDER_CHANGE";

/// The router of `POST /webhooks/amazon/{channel_id}` (see the module docs). Mount it with
/// `Router::merge`.
pub fn router<S>(state: ReceiverState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/webhooks/amazon/{channel_id}", post(post_amazon))
        .with_state(state)
}

/// This receiver's operation in the OpenAPI contract (gathered by
/// [`crate::ingest::webhooks_openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(post_amazon))]
pub struct WebhookApi;

fn receipt(status: &str) -> WebhookReceipt {
    WebhookReceipt::new(status, TOPIC)
}

/// The handler of `POST /webhooks/amazon/{channel_id}` (see the module docs).
#[utoipa::path(
    post,
    path = "/webhooks/amazon/{channel_id}",
    tag = "webhooks",
    security(()),
    params(
        ("channel_id" = String, Path, description = "A configured channel id of this platform."),
    ),
    request_body(content = Object, description = "A notification relayed by the queue bridge (the notification, or the queue message whose Body carries it).", content_type = "application/json"),
    responses(
        (status = 200, description = "Processed (every movement durable), a duplicate delivery, or acknowledged without stock effect.", body = WebhookReceipt),
        (status = 400, response = crate::problem::openapi::BadRequest),
        (status = 404, response = crate::problem::openapi::NotFound),
        (status = 413, response = crate::problem::openapi::PayloadTooLarge),
        (status = 503, response = crate::problem::openapi::ServiceUnavailable),
    )
)]
async fn post_amazon(
    State(state): State<ReceiverState>,
    Path(channel_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookReceipt>, ReceiverError> {
    let Some(channel) = state
        .config
        .channel(&channel_id)
        .filter(|channel| channel.amazon().is_some())
    else {
        count("unknown", "unknown_channel");
        return Err(ReceiverError::NotFound {
            path: format!("/webhooks/amazon/{channel_id}"),
        });
    };
    let result = receive(&state, channel, body).await;
    let outcome = match &result {
        Ok(receipt) => match receipt.status.as_str() {
            "duplicate" => "duplicate",
            "ignored" => "ignored",
            _ => "processed",
        },
        Err(error) => error.outcome(),
    };
    count(&channel.id, outcome);
    result.map(Json)
}

fn count(channel: &str, outcome: &'static str) {
    metrics::counter!(
        INGEST_WEBHOOKS_TOTAL,
        "channel" => channel.to_owned(),
        "topic" => TOPIC,
        "outcome" => outcome
    )
    .increment(1);
}

async fn receive(
    state: &ReceiverState,
    channel: &ChannelConfig,
    body: Result<Bytes, BytesRejection>,
) -> Result<WebhookReceipt, ReceiverError> {
    let body = body.map_err(body_error)?;
    let notification = match amazon::decode_notification(&body) {
        Ok(Decoded::OrderChange(notification)) => notification,
        Ok(Decoded::Other(kind)) => {
            tracing::debug!(channel = %channel.id, notification_type = %kind, "amazon notification ignored");
            return Ok(receipt("ignored"));
        }
        Err(error) => {
            tracing::warn!(channel = %channel.id, error = %error, "amazon notification not decodable");
            return Err(ReceiverError::UndecodableWebhook {
                message: error.to_string(),
            });
        }
    };
    let key = format!("{}\u{1f}{}", channel.id, notification.notification_id);
    if state.deliveries.contains_any(std::slice::from_ref(&key)) {
        metrics::counter!(LEDGER_DEDUPE_HITS_TOTAL, "source" => amazon::source(channel))
            .increment(1);
        return Ok(receipt("duplicate"));
    }
    let decoded = amazon::order_movements(channel, &notification.order);
    let acks = futures::future::join_all(
        decoded
            .movements
            .iter()
            .map(|movement| state.ledger.submit(movement.clone())),
    )
    .await;
    let mut answer = receipt("processed");
    answer.skipped_lines = decoded.skipped.len();
    let mut failure = None;
    for (movement, ack) in decoded.movements.iter().zip(acks) {
        let refused = matches!(ack, Err(LedgerError::Rejected(_)));
        if let Some(error) = answer.record(movement, ack) {
            failure = Some(error);
        } else if refused {
            tracing::warn!(
                channel = %channel.id,
                key = %movement.idempotency_key,
                reason = ?answer.movements.last().and_then(|m| m.reason.as_deref()),
                "amazon movement rejected by the ledger"
            );
        }
    }
    if let Some(error) = failure {
        tracing::warn!(channel = %channel.id, error = %error, "amazon notification not durable; it will be redelivered");
        return Err(ReceiverError::Unavailable {
            message: error.to_string(),
        });
    }
    state.deliveries.remember(vec![key]);
    Ok(answer)
}
