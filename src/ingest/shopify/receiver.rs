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
//! 5. the body is decoded by [`crate::ingest::shopify::decode`] (400 problem if it cannot
//!    be: Shopify retries, which is harmless, and the failure is logged);
//! 6. every movement is submitted and the answer waits until all are durable: 200 with a
//!    [`WebhookReceipt`], or a 503 problem (Shopify retries) if the store failed. Movements
//!    the state machine refuses are logged and counted; retrying would not change them.
//!
//! Delivery dedupe is only a shortcut: business dedupe comes from the movements'
//! idempotency keys in the ledger, so concurrent identical deliveries (which both miss the
//! delivery memory) still reserve once (scenario S2).

use super::{WebError, WebState, body_error};
use crate::config::ChannelConfig;
use crate::ingest::shopify::{self, WebhookHeaders, WebhookTopic};
use crate::ledger::{Ack, LedgerError};
use crate::telemetry::{INGEST_WEBHOOKS_TOTAL, LEDGER_DEDUPE_HITS_TOTAL};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// The 200 answer to a processed delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookReceipt {
    /// `processed`, or `duplicate` when the delivery was already processed.
    pub status: String,
    /// The topic as understood (`orders/create`, …, `other`).
    pub topic: String,
    /// Movements applied.
    pub applied: usize,
    /// Movements whose idempotency key was already recorded.
    pub duplicates: usize,
    /// Movements the state machine refused (logged).
    pub rejected: usize,
    /// Payload lines that carried no stock (no SKU, gift card, not tracked, no restock).
    pub skipped_lines: usize,
}

impl WebhookReceipt {
    fn duplicate(topic: WebhookTopic) -> Self {
        Self {
            status: "duplicate".to_owned(),
            topic: topic.as_str().to_owned(),
            applied: 0,
            duplicates: 0,
            rejected: 0,
            skipped_lines: 0,
        }
    }
}

/// A bounded memory of processed delivery ids (oldest forgotten first).
pub(super) struct DeliveryMemory {
    capacity: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl DeliveryMemory {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    fn contains_any(&self, keys: &[String]) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|key| inner.seen.contains(key))
    }

    fn remember(&self, keys: Vec<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if inner.seen.insert(key.clone()) {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.capacity {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.seen.remove(&oldest);
                }
            }
        }
    }
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

pub(super) async fn post_shopify(
    State(state): State<WebState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookReceipt>, WebError> {
    let webhook_headers = WebhookHeaders::from_pairs(
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let topic = webhook_headers.topic();
    let Some(channel) = state
        .config
        .channel(&channel_id)
        .filter(|channel| channel.shopify.is_some())
    else {
        // The label is fixed: the URL is not a bounded label.
        count("unknown", topic, "unknown_channel");
        return Err(WebError::UnknownChannel {
            channel: channel_id,
        });
    };
    let result = receive(&state, channel, &webhook_headers, topic, body).await;
    let outcome = match &result {
        Ok(receipt) if receipt.status == "duplicate" => "duplicate",
        Ok(_) => "processed",
        Err(WebError::Unauthorized { .. }) => "unauthorized",
        Err(WebError::Body { .. }) => "unreadable",
        Err(WebError::UndecodableWebhook { .. }) => "undecodable",
        Err(WebError::Unavailable { .. }) => "unavailable",
        Err(_) => "error",
    };
    count(&channel.id, topic, outcome);
    result.map(Json)
}

async fn receive(
    state: &WebState,
    channel: &ChannelConfig,
    headers: &WebhookHeaders,
    topic: WebhookTopic,
    body: Result<Bytes, BytesRejection>,
) -> Result<WebhookReceipt, WebError> {
    let body = body.map_err(body_error)?;
    if let Err(error) = shopify::verify(channel, headers, &body) {
        tracing::warn!(channel = %channel.id, topic = topic.as_str(), error = %error, "webhook refused");
        return Err(WebError::Unauthorized {
            reason: error.to_string(),
        });
    }
    let keys = delivery_keys(channel, headers);
    if state.deliveries.contains_any(&keys) {
        metrics::counter!(LEDGER_DEDUPE_HITS_TOTAL, "source" => shopify::source_label(channel))
            .increment(1);
        tracing::debug!(channel = %channel.id, topic = topic.as_str(), "duplicate delivery acknowledged");
        return Ok(WebhookReceipt::duplicate(topic));
    }
    if headers.topic.is_none() {
        return Err(WebError::UndecodableWebhook {
            message: "missing X-Shopify-Topic header".to_owned(),
        });
    }
    let decoded = shopify::decode(channel, topic, &body).map_err(|error| {
        tracing::warn!(channel = %channel.id, topic = topic.as_str(), error = %error, "webhook not decodable");
        WebError::UndecodableWebhook {
            message: error.to_string(),
        }
    })?;
    for skipped in &decoded.skipped {
        tracing::debug!(channel = %channel.id, line = %skipped.line_id, reason = skipped.reason.as_str(), "line carries no stock");
    }
    if let Some(level) = &decoded.inventory_level {
        tracing::info!(
            channel = %channel.id,
            inventory_item_id = %level.inventory_item_id,
            location_id = %level.location_id,
            available = ?level.available,
            "inventory level update received (no movement)"
        );
        if let Some(view) = &state.channel_view {
            view.inventory_level_reported(
                &channel.id,
                &level.inventory_item_id,
                &level.location_id,
                level.available,
            );
        }
    }
    if topic == WebhookTopic::Other {
        tracing::info!(channel = %channel.id, topic = ?headers.topic, "webhook topic ignored");
    }
    let pending: Vec<_> = decoded
        .movements
        .iter()
        .map(|movement| state.ledger.submit(movement.clone()))
        .collect();
    let acks = futures::future::join_all(pending).await;
    let mut receipt = WebhookReceipt {
        status: "processed".to_owned(),
        topic: topic.as_str().to_owned(),
        applied: 0,
        duplicates: 0,
        rejected: 0,
        skipped_lines: decoded.skipped.len(),
    };
    let mut failure = None;
    for (movement, ack) in decoded.movements.iter().zip(acks) {
        match ack {
            Ok(Ack::Applied { .. }) => receipt.applied += 1,
            Ok(Ack::Duplicate { .. }) => receipt.duplicates += 1,
            Err(LedgerError::Rejected(error)) => {
                receipt.rejected += 1;
                tracing::warn!(
                    channel = %channel.id,
                    key = %movement.idempotency_key,
                    error = %error,
                    "webhook movement rejected by the ledger"
                );
            }
            Err(error) => failure = Some(error),
        }
    }
    if let Some(error) = failure {
        tracing::warn!(channel = %channel.id, topic = topic.as_str(), error = %error, "webhook not durable; shopify will retry");
        return Err(WebError::Unavailable {
            message: error.to_string(),
        });
    }
    state.deliveries.remember(keys);
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_memory_is_bounded_and_forgets_the_oldest() {
        let memory = DeliveryMemory::new(2);
        memory.remember(vec!["a".into()]);
        memory.remember(vec!["b".into(), "c".into()]);
        assert!(!memory.contains_any(&["a".into()]));
        assert!(memory.contains_any(&["b".into()]));
        assert!(memory.contains_any(&["x".into(), "c".into()]));
        assert!(!memory.contains_any(&[]));
    }
}
