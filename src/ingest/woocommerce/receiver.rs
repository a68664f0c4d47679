//! `POST /webhooks/woocommerce/{channel_id}`: WooCommerce deliveries (PLATFORMS.md §2.3–2.4).
//!
//! Order of work, and the answer at each step:
//! 1. the channel must exist and have a `[channels.woocommerce]` section, else 404 problem;
//! 2. the raw body is read (413 problem over `http.body_limit_bytes`);
//! 3. the creation ping (form-encoded `webhook_id=<id>`, no X-WC headers) is answered
//!    exactly HTTP 200, or WooCommerce's UI reports an error;
//! 4. the signature is checked on the raw bytes before anything parses them, else 401;
//! 5. topics without an order (`order.deleted`, others) are acknowledged with 200;
//! 6. a delivery whose (webhook id, order id, `date_modified_gmt`, status) was already
//!    processed is answered 200 at once (the delivery id is weak, §2.4);
//! 7. the order is decoded (400 problem if it cannot be): `order.created` by
//!    [`super::decode::decode_order`], every other order topic by
//!    [`super::decode::decode_order_update`] with the order's known lines from the store
//!    ([`super::lines`]), so edits and removed lines become `order_edit`s; every movement is
//!    submitted, then the order's lines are recorded; 200 only once all are durable, else
//!    503. The answer lists each movement with its outcome
//!    ([`crate::ingest::receiver::MovementOutcome`]).
//!
//! WooCommerce never retries (§2.4): a non-2xx answer only counts towards disabling the
//! webhook, and the poller ([`super::poller`]) is what recovers the order.
//!
//! Owns: the [`router`] of this route, which `web` mounts. The delivery memory is the
//! app's ([`ReceiverState::deliveries`], keys prefixed by the channel id); business dedupe
//! is the movements' idempotency keys.
//!
//! May depend on: `config`, `ledger`, `telemetry`, `ingest::receiver`,
//! `ingest::woocommerce::decode`.

use super::decode::{self as woocommerce, WebhookHeaders};
use crate::config::ChannelConfig;
use crate::ingest::receiver::{ReceiverError, ReceiverState, WebhookReceipt, body_error};
use crate::ledger::LedgerError;
use crate::telemetry::{INGEST_WEBHOOKS_TOTAL, LEDGER_DEDUPE_HITS_TOTAL};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

/// The router of `POST /webhooks/woocommerce/{channel_id}` (see the module docs). Mount it
/// with `Router::merge`.
pub fn router<S>(state: ReceiverState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/webhooks/woocommerce/{channel_id}", post(post_woocommerce))
        .with_state(state)
}

/// This receiver's operation in the OpenAPI contract (gathered by
/// [`crate::ingest::webhooks_openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(post_woocommerce))]
pub struct WebhookApi;

fn count(channel: &str, topic: &'static str, outcome: &'static str) {
    metrics::counter!(
        INGEST_WEBHOOKS_TOTAL,
        "channel" => channel.to_owned(),
        "topic" => topic,
        "outcome" => outcome
    )
    .increment(1);
}

fn receipt(status: &str, topic: &str) -> WebhookReceipt {
    WebhookReceipt::new(status, topic)
}

/// The handler of `POST /webhooks/woocommerce/{channel_id}` (see the module docs).
#[utoipa::path(
    post,
    path = "/webhooks/woocommerce/{channel_id}",
    tag = "webhooks",
    security(()),
    params(
        ("channel_id" = String, Path, description = "A configured channel id of this platform."),
        ("X-WC-Webhook-Signature" = Option<String>, Header, description = "Base64 HMAC-SHA256 of the raw body with the webhook secret."),
        ("X-WC-Webhook-Topic" = Option<String>, Header, description = "The webhook topic."),
        ("X-WC-Webhook-Delivery-ID" = Option<String>, Header, description = "The delivery id."),
    ),
    request_body(content = Object, description = "The platform's webhook payload, or the form-encoded creation ping.", content_type = "application/json"),
    responses(
        (status = 200, description = "Processed (every movement durable), a duplicate delivery, or acknowledged without stock effect.", body = WebhookReceipt),
        (status = 400, response = crate::problem::openapi::BadRequest),
        (status = 401, response = crate::problem::openapi::WebhookUnauthorized),
        (status = 404, response = crate::problem::openapi::NotFound),
        (status = 413, response = crate::problem::openapi::PayloadTooLarge),
        (status = 503, response = crate::problem::openapi::ServiceUnavailable),
    )
)]
async fn post_woocommerce(
    State(state): State<ReceiverState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ReceiverError> {
    let wc_headers = WebhookHeaders::from_pairs(
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let topic = wc_headers.topic_label();
    let Some(channel) = state
        .config
        .channel(&channel_id)
        .filter(|channel| channel.woocommerce().is_some())
    else {
        count("unknown", topic, "unknown_channel");
        return Err(ReceiverError::NotFound {
            path: format!("/webhooks/woocommerce/{channel_id}"),
        });
    };
    let result = receive(&state, channel, &wc_headers, body).await;
    let outcome = match &result {
        Ok((_, receipt)) => match receipt.status.as_str() {
            "duplicate" => "duplicate",
            "ping" => "ping",
            "ignored" => "ignored",
            _ => "processed",
        },
        Err(error) => error.outcome(),
    };
    count(&channel.id, topic, outcome);
    result.map(|(status, receipt)| (status, Json(receipt)).into_response())
}

async fn receive(
    state: &ReceiverState,
    channel: &ChannelConfig,
    headers: &WebhookHeaders,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, WebhookReceipt), ReceiverError> {
    let body = body.map_err(body_error)?;
    let topic = headers.topic_label();
    if let Some(webhook_id) = woocommerce::is_ping(headers, &body) {
        tracing::info!(channel = %channel.id, webhook_id = %webhook_id, "woocommerce webhook ping");
        return Ok((StatusCode::OK, receipt("ping", "ping")));
    }
    if let Err(error) = woocommerce::verify(channel, headers, &body) {
        tracing::warn!(channel = %channel.id, topic, error = %error, "webhook refused");
        return Err(ReceiverError::Unauthorized {
            reason: error.to_string(),
        });
    }
    if !headers.carries_order() {
        tracing::debug!(channel = %channel.id, topic = ?headers.topic, "webhook topic ignored");
        return Ok((StatusCode::OK, receipt("ignored", topic)));
    }
    let order =
        woocommerce::parse_order(&body).map_err(|error| ReceiverError::UndecodableWebhook {
            message: error.to_string(),
        })?;
    let key =
        woocommerce::delivery_key(channel, headers.webhook_id.as_deref().unwrap_or(""), &order);
    if state.deliveries.contains_any(std::slice::from_ref(&key)) {
        metrics::counter!(LEDGER_DEDUPE_HITS_TOTAL, "source" => woocommerce::source_label(channel))
            .increment(1);
        return Ok((StatusCode::OK, receipt("duplicate", topic)));
    }
    let store = state.ledger.store().clone();
    let updated = headers.topic_label() != "order.created";
    let decoded = if updated {
        let known = super::lines::known_lines(store.as_ref(), &channel.id, &order.id)
            .await
            .map_err(|error| ReceiverError::Unavailable {
                message: error.to_string(),
            })?;
        woocommerce::decode_order_update(channel, &order, &known)
    } else {
        woocommerce::decode_order(channel, &order)
    }
    .map_err(|error| ReceiverError::UndecodableWebhook {
        message: error.to_string(),
    })?;
    let acks = futures::future::join_all(
        decoded
            .movements
            .iter()
            .map(|m| state.ledger.submit(m.clone())),
    )
    .await;
    let mut answer = receipt("processed", topic);
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
                "webhook movement rejected by the ledger"
            );
        }
    }
    if let Some(error) = failure {
        tracing::warn!(channel = %channel.id, topic, error = %error, "webhook not durable; the poller will recover it");
        return Err(ReceiverError::Unavailable {
            message: error.to_string(),
        });
    }
    let now_ms = state.ledger.clock().now_ms();
    if let Err(error) =
        super::lines::remember_lines(store.as_ref(), &channel.id, &decoded, now_ms).await
    {
        tracing::warn!(channel = %channel.id, topic, error = %error, "order lines not recorded; the poller will recover them");
        return Err(ReceiverError::Unavailable {
            message: error.to_string(),
        });
    }
    state.deliveries.remember(vec![key]);
    Ok((StatusCode::OK, answer))
}
