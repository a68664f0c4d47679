//! `POST /webhooks/amazon/{channel_id}`: Amazon ORDER_CHANGE notifications (PLATFORMS.md
//! §4.3), as forwarded by an SQS bridge (the notification JSON, or the SQS message whose
//! `Body` carries it).
//!
//! Order of work, and the answer at each step:
//! 1. the channel must exist and have a `[channels.amazon]` section, else 404 problem;
//! 2. the raw body is read (413 problem over `http.body_limit_bytes`);
//! 3. it is decoded by [`crate::ingest::amazon::decode_notification`] (400 problem if it
//!    cannot be); other notification types are acknowledged with 200 `ignored`;
//! 4. a `NotificationId` already processed is answered 200 `duplicate` at once (SQS is at
//!    least once);
//! 5. the movements ([`crate::ingest::amazon::order_movements`]; none for AFN orders) are
//!    submitted; 200 only once all are durable, else 503 so the bridge leaves the message
//!    on the queue for redelivery.
//!
//! Authenticity: SQS notifications carry no signature (§4.3); trust comes from who can
//! reach this endpoint (the bridge on a private network), as with the queue's IAM policy.
//! The `NotificationId` memory is a shortcut; business dedupe is the movements' keys, which
//! the Orders API poller shares, so a redelivered or polled order is applied once.
//!
//! The memory lives in this module (bounded, keyed per app by its config) so that
//! `WebState` stays untouched.

use super::webhooks::WebhookReceipt;
use super::{WebError, WebState, body_error};
use crate::ingest::amazon::{self, Decoded};
use crate::ledger::{Ack, LedgerError};
use crate::telemetry::{INGEST_WEBHOOKS_TOTAL, LEDGER_DEDUPE_HITS_TOTAL};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// `NotificationId`s remembered per app.
const NOTIFICATION_MEMORY: usize = 100_000;
/// The topic label of every Amazon delivery.
const TOPIC: &str = "ORDER_CHANGE";

#[derive(Default)]
struct Memory {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

fn memory() -> &'static Mutex<HashMap<usize, Memory>> {
    static MEMORY: OnceLock<Mutex<HashMap<usize, Memory>>> = OnceLock::new();
    MEMORY.get_or_init(Mutex::default)
}

fn app_key(state: &WebState) -> usize {
    Arc::as_ptr(&state.config) as usize
}

fn seen(state: &WebState, key: &str) -> bool {
    let memory = memory().lock().unwrap_or_else(|p| p.into_inner());
    memory
        .get(&app_key(state))
        .is_some_and(|memory| memory.seen.contains(key))
}

fn remember(state: &WebState, key: String) {
    let mut memory = memory().lock().unwrap_or_else(|p| p.into_inner());
    let memory = memory.entry(app_key(state)).or_default();
    if memory.seen.insert(key.clone()) {
        memory.order.push_back(key);
    }
    while memory.order.len() > NOTIFICATION_MEMORY {
        if let Some(oldest) = memory.order.pop_front() {
            memory.seen.remove(&oldest);
        }
    }
}

fn receipt(status: &str) -> WebhookReceipt {
    WebhookReceipt {
        status: status.to_owned(),
        topic: TOPIC.to_owned(),
        applied: 0,
        duplicates: 0,
        rejected: 0,
        skipped_lines: 0,
    }
}

/// The handler of `POST /webhooks/amazon/{channel_id}` (see the module docs).
pub(super) async fn post_amazon(
    State(state): State<WebState>,
    Path(channel_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookReceipt>, WebError> {
    let Some(channel) = state
        .config
        .channel(&channel_id)
        .filter(|channel| channel.amazon.is_some())
    else {
        count("unknown", "unknown_channel");
        return Err(WebError::NotFound {
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
        Err(WebError::Body { .. }) => "unreadable",
        Err(WebError::UndecodableWebhook { .. }) => "undecodable",
        Err(WebError::Unavailable { .. }) => "unavailable",
        Err(_) => "error",
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
    state: &WebState,
    channel: &crate::config::ChannelConfig,
    body: Result<Bytes, BytesRejection>,
) -> Result<WebhookReceipt, WebError> {
    let body = body.map_err(body_error)?;
    let notification = match amazon::decode_notification(&body) {
        Ok(Decoded::OrderChange(notification)) => notification,
        Ok(Decoded::Other(kind)) => {
            tracing::info!(channel = %channel.id, notification_type = %kind, "amazon notification ignored");
            return Ok(receipt("ignored"));
        }
        Err(error) => {
            tracing::warn!(channel = %channel.id, error = %error, "amazon notification not decodable");
            return Err(WebError::UndecodableWebhook {
                message: error.to_string(),
            });
        }
    };
    let key = format!("{}\u{1f}{}", channel.id, notification.notification_id);
    if seen(state, &key) {
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
        match ack {
            Ok(Ack::Applied { .. }) => answer.applied += 1,
            Ok(Ack::Duplicate { .. }) => answer.duplicates += 1,
            Err(LedgerError::Rejected(error)) => {
                answer.rejected += 1;
                tracing::warn!(channel = %channel.id, key = %movement.idempotency_key, error = %error, "amazon movement rejected by the ledger");
            }
            Err(error) => failure = Some(error),
        }
    }
    if let Some(error) = failure {
        tracing::warn!(channel = %channel.id, error = %error, "amazon notification not durable; it will be redelivered");
        return Err(WebError::Unavailable {
            message: error.to_string(),
        });
    }
    remember(state, key);
    Ok(answer)
}
