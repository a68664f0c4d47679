//! `POST /webhooks/shopify/{channel_id}`: Shopify deliveries (PLATFORMS.md §1.6–1.8).
//!
//! Order of work, and the answer at each step:
//! 1. the channel must exist and have a `[channels.shopify]` section, else 404 problem;
//! 2. the raw body is read (413 problem over `http.body_limit_bytes`);
//! 3. the HMAC signature is checked on the raw bytes before anything parses them, else
//!    401 problem and nothing changes;
//! 4. a delivery whose `X-Shopify-Webhook-Id`, or whose `X-Shopify-Event-Id` for the same
//!    topic, was already processed is answered 200 at once and counted in
//!    `stocksync_ledger_dedupe_hits_total{source="shopify:<channel>"}`;
//! 5. the body is decoded by [`super::decode::decode`] (400 problem if it cannot
//!    be: Shopify retries, which is harmless, and the failure is logged);
//! 6. for `fulfillment_orders/order_routing_complete` and `fulfillment_orders/moved` (thin
//!    payloads), each fulfillment order named is read back from the shop and turned into
//!    movements by [`super::fulfillment`] (503 problem when the shop cannot be read, so
//!    Shopify delivers again); a reassignment the ledger refuses is counted in
//!    `stocksync_ingest_reassign_refused_total{channel}` and logged;
//! 7. every movement is submitted and the answer waits until all are durable: 200 with a
//!    [`WebhookReceipt`], or a 503 problem (Shopify retries) if the store failed. Movements
//!    the state machine refuses are logged and counted; retrying would not change them.
//!
//! Delivery dedupe is only a shortcut: business dedupe comes from the movements'
//! idempotency keys in the ledger, so concurrent identical deliveries (which both miss the
//! delivery memory) still reserve once (scenario S2).
//!
//! Owns: the [`router`] of this route, which `web` mounts, and the
//! [`InventoryLevelObserver`] through which `inventory_levels/update` reaches
//! reconciliation (the app adapts it). The delivery memory is the app's
//! ([`ReceiverState::deliveries`], keys prefixed by the channel id).
//!
//! May depend on: `config`, `domain`, `ledger`, `telemetry`, `platforms` (the shared
//! clients, for read-backs), `ingest::receiver`, `ingest::shopify::decode` and
//! `ingest::shopify::fulfillment`.

use super::decode::{self as shopify, Decoded, WebhookHeaders, WebhookTopic};
use super::fulfillment;
use crate::config::ChannelConfig;
use crate::ingest::receiver::{ReceiverError, ReceiverState, WebhookReceipt, body_error};
use crate::ledger::LedgerError;
use crate::telemetry::{
    INGEST_REASSIGN_REFUSED_TOTAL, INGEST_WEBHOOKS_TOTAL, LEDGER_DEDUPE_HITS_TOTAL,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use std::sync::Arc;

pub use crate::ingest::receiver::InventoryLevelObserver;

/// The receiver's state: the shared receiver state and the optional level observer.
#[derive(Clone)]
struct Receiver {
    shared: ReceiverState,
    levels: Option<Arc<dyn InventoryLevelObserver>>,
}

/// The router of `POST /webhooks/shopify/{channel_id}` (see the module docs); `levels`
/// hears `inventory_levels/update` deliveries. Mount it with `Router::merge`.
pub fn router<S>(state: ReceiverState, levels: Option<Arc<dyn InventoryLevelObserver>>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/webhooks/shopify/{channel_id}", post(post_shopify))
        .with_state(Receiver {
            shared: state,
            levels,
        })
}

/// This receiver's operation in the OpenAPI contract (gathered by
/// [`crate::ingest::webhooks_openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(post_shopify))]
pub struct WebhookApi;

fn duplicate(topic: WebhookTopic) -> WebhookReceipt {
    WebhookReceipt::new("duplicate", topic.as_str())
}

/// The memory keys of a delivery: its webhook id, and its event id per topic.
fn delivery_keys(channel: &ChannelConfig, headers: &WebhookHeaders) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(id) = headers.webhook_id.as_deref().filter(|id| !id.is_empty()) {
        keys.push(format!("{}\u{1f}webhook\u{1f}{id}", channel.id));
    }
    if let Some(id) = headers.event_id.as_deref().filter(|id| !id.is_empty()) {
        let topic = headers.topic.as_deref().unwrap_or("");
        keys.push(format!("{}\u{1f}event\u{1f}{topic}\u{1f}{id}", channel.id));
    }
    keys
}

fn count(channel: &str, topic: WebhookTopic, outcome: &'static str) {
    metrics::counter!(
        INGEST_WEBHOOKS_TOTAL,
        "channel" => channel.to_owned(),
        "topic" => topic.as_str(),
        "outcome" => outcome
    )
    .increment(1);
}

#[utoipa::path(
    post,
    path = "/webhooks/shopify/{channel_id}",
    tag = "webhooks",
    security(()),
    params(
        ("channel_id" = String, Path, description = "A configured channel id of this platform."),
        ("X-Shopify-Hmac-Sha256" = Option<String>, Header, description = "Base64 HMAC-SHA256 of the raw body with the channel's webhook secret."),
        ("X-Shopify-Topic" = Option<String>, Header, description = "The webhook topic."),
        ("X-Shopify-Webhook-Id" = Option<String>, Header, description = "The delivery id."),
    ),
    request_body(content = Object, description = "The platform's webhook payload.", content_type = "application/json"),
    responses(
        (status = 200, description = "Processed (every movement durable), a duplicate delivery, or acknowledged without stock effect.", body = WebhookReceipt),
        (status = 400, response = crate::problem::openapi::BadRequest),
        (status = 401, response = crate::problem::openapi::WebhookUnauthorized),
        (status = 404, response = crate::problem::openapi::NotFound),
        (status = 413, response = crate::problem::openapi::PayloadTooLarge),
        (status = 503, response = crate::problem::openapi::ServiceUnavailable),
    )
)]
async fn post_shopify(
    State(state): State<Receiver>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookReceipt>, ReceiverError> {
    let webhook_headers = WebhookHeaders::from_pairs(
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let topic = webhook_headers.topic();
    let Some(channel) = state
        .shared
        .config
        .channel(&channel_id)
        .filter(|channel| channel.shopify().is_some())
    else {
        // The label is fixed: the URL is not a bounded label.
        count("unknown", topic, "unknown_channel");
        return Err(ReceiverError::UnknownChannel {
            channel: channel_id,
        });
    };
    let result = receive(&state, channel, &webhook_headers, topic, body).await;
    let outcome = match &result {
        Ok(receipt) if receipt.status == "duplicate" => "duplicate",
        Ok(_) => "processed",
        Err(error) => error.outcome(),
    };
    count(&channel.id, topic, outcome);
    result.map(Json)
}

async fn receive(
    state: &Receiver,
    channel: &ChannelConfig,
    headers: &WebhookHeaders,
    topic: WebhookTopic,
    body: Result<Bytes, BytesRejection>,
) -> Result<WebhookReceipt, ReceiverError> {
    let body = body.map_err(body_error)?;
    if let Err(error) = shopify::verify(channel, headers, &body) {
        tracing::warn!(channel = %channel.id, topic = topic.as_str(), error = %error, "webhook refused");
        return Err(ReceiverError::Unauthorized {
            reason: error.to_string(),
        });
    }
    let keys = delivery_keys(channel, headers);
    if state.shared.deliveries.contains_any(&keys) {
        metrics::counter!(LEDGER_DEDUPE_HITS_TOTAL, "source" => shopify::source_label(channel))
            .increment(1);
        tracing::debug!(channel = %channel.id, topic = topic.as_str(), "duplicate delivery acknowledged");
        return Ok(duplicate(topic));
    }
    if headers.topic.is_none() {
        return Err(ReceiverError::UndecodableWebhook {
            message: "missing X-Shopify-Topic header".to_owned(),
        });
    }
    let decoded = shopify::decode(channel, topic, &body).map_err(|error| {
        tracing::warn!(channel = %channel.id, topic = topic.as_str(), error = %error, "webhook not decodable");
        ReceiverError::UndecodableWebhook {
            message: error.to_string(),
        }
    })?;
    for skipped in &decoded.skipped {
        tracing::debug!(channel = %channel.id, line = %skipped.line_id, reason = skipped.reason.as_str(), "line carries no stock");
    }
    if let Some(level) = &decoded.inventory_level {
        tracing::debug!(
            channel = %channel.id,
            inventory_item_id = %level.inventory_item_id,
            location_id = %level.location_id,
            available = ?level.available,
            "inventory level update received (no movement)"
        );
        if let Some(levels) = &state.levels {
            levels.inventory_level_reported(
                &channel.id,
                &level.inventory_item_id,
                &level.location_id,
                level.available,
            );
        }
    }
    if topic == WebhookTopic::Other {
        tracing::debug!(channel = %channel.id, topic = ?headers.topic, "webhook topic ignored");
    }
    let mut decoded = decoded;
    if !decoded.fulfillment_orders.is_empty() {
        read_fulfillment_orders(state, channel, &mut decoded).await?;
    }
    let pending: Vec<_> = decoded
        .movements
        .iter()
        .map(|movement| state.shared.ledger.submit(movement.clone()))
        .collect();
    let acks = futures::future::join_all(pending).await;
    let mut receipt = WebhookReceipt::new("processed", topic.as_str());
    receipt.skipped_lines = decoded.skipped.len();
    receipt.note = decoded.note.clone();
    let mut failure = None;
    for (movement, ack) in decoded.movements.iter().zip(acks) {
        let refused = matches!(ack, Err(LedgerError::Rejected(_)));
        if let Some(error) = receipt.record(movement, ack) {
            failure = Some(error);
        } else if refused
            && let crate::domain::MovementKind::Reassign { reservation, to } = &movement.kind
        {
            metrics::counter!(INGEST_REASSIGN_REFUSED_TOTAL, "channel" => channel.id.clone())
                .increment(1);
            tracing::warn!(
                channel = %channel.id,
                reservation = %reservation,
                to = %to,
                reason = ?receipt.movements.last().and_then(|m| m.reason.as_deref()),
                "shopify moved a fulfillment order, but the ledger cannot hold the line there: the reservation stays where it was (reconciliation will flag the channel's levels)"
            );
        } else if refused {
            tracing::warn!(
                channel = %channel.id,
                key = %movement.idempotency_key,
                reason = ?receipt.movements.last().and_then(|m| m.reason.as_deref()),
                "webhook movement rejected by the ledger"
            );
        }
    }
    if let Some(error) = failure {
        tracing::warn!(channel = %channel.id, topic = topic.as_str(), error = %error, "webhook not durable; shopify will retry");
        return Err(ReceiverError::Unavailable {
            message: error.to_string(),
        });
    }
    state.shared.deliveries.remember(keys);
    Ok(receipt)
}

/// Reads back every fulfillment order a `fulfillment_orders/*` delivery names and appends
/// its movements (see `ingest::shopify::fulfillment`); notes say why an FO yields nothing.
///
/// Errors: [`ReceiverError::Unavailable`] when the shop or the ledger cannot be read (Shopify
/// delivers again), or when no platform client is configured.
async fn read_fulfillment_orders(
    state: &Receiver,
    channel: &ChannelConfig,
    decoded: &mut Decoded,
) -> Result<(), ReceiverError> {
    let (Some(platforms), Some(section)) = (&state.shared.platforms, channel.shopify()) else {
        return Err(ReceiverError::Unavailable {
            message: "fulfillment orders cannot be read back: no Shopify client".to_owned(),
        });
    };
    let client = platforms.shopify(&channel.id, section);
    let mut notes = Vec::new();
    for id in decoded.fulfillment_orders.clone() {
        let fo = match fulfillment::fetch(&client, id).await {
            Ok(Some(fo)) => fo,
            Ok(None) => {
                notes.push(format!("fulfillment order {id} is unknown to the shop"));
                continue;
            }
            Err(error) => {
                tracing::warn!(channel = %channel.id, error = %error, "fulfillment order not readable; shopify will retry");
                return Err(ReceiverError::Unavailable {
                    message: error.to_string(),
                });
            }
        };
        let (movements, note) =
            fulfillment::movements_from_ledger(&state.shared.ledger, channel, &fo)
                .await
                .map_err(|error| ReceiverError::Unavailable {
                    message: error.to_string(),
                })?;
        tracing::debug!(channel = %channel.id, fulfillment_order = id, movements = movements.len(), "fulfillment order read back");
        decoded.movements.extend(movements);
        notes.extend(note);
    }
    if !notes.is_empty() {
        decoded.note = Some(notes.join("; "));
    }
    Ok(())
}
