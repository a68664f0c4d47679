//! What every webhook receiver shares (`ingest::<platform>::receiver`): the state a
//! receiver's router carries, the bounded memory of deliveries already processed, the 200
//! answer ([`WebhookReceipt`]) and the failures ([`ReceiverError`], answered as RFC 9457
//! problems).
//!
//! Each platform's receiver is an axum `Router` built by a function in its own folder; `web`
//! merely mounts it, so the HTTP layers of `web` (body limit, webhook activity tracking,
//! tracing, 404/405 fallbacks) wrap it like every other route.
//!
//! Invariant (DESIGN.md §3 rule 3): a receiver answers 2xx only after every movement of the
//! delivery is durable; otherwise it answers a problem and the sender retries (harmless:
//! every movement carries an idempotency key). The delivery memory is only a shortcut in
//! front of those keys.
//!
//! May depend on: `ledger`, `config`, `problem`, `telemetry`.

use crate::config::Config;
use crate::domain::Movement;
use crate::ledger::{Ack, Ledger, LedgerError};
use crate::problem::Problem;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Webhook deliveries remembered by default (each entry is one delivery key of one
/// receiver; the oldest are forgotten first).
pub const DEFAULT_DELIVERY_MEMORY: usize = 100_000;

/// The 200 answer to a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookReceipt {
    /// `processed`, `duplicate` when the delivery was already processed, or a platform's
    /// own (`ping`, `ignored`).
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
    /// Movements recorded without a stock effect (an order edit older than the line's).
    #[serde(default)]
    pub ignored: usize,
    /// Movements recorded to wait for their reservation line (applied when it gets there).
    #[serde(default)]
    pub parked: usize,
    /// Each movement of the delivery with its own outcome, in submission order (bounded by
    /// the delivery: one entry per decoded movement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub movements: Vec<MovementOutcome>,
    /// Why a delivery of a stock topic yielded no movement on purpose, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the ledger did with one movement of a delivery (issue 9 §8: an ignored edit or a
/// refused line says so, never a silent "duplicate").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WebhookMovementOutcome)]
pub struct MovementOutcome {
    /// The movement's idempotency key.
    pub idempotency_key: String,
    /// The SKU.
    pub sku: String,
    /// The movement's kind (`sale`, `order_edit`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// `applied`, `duplicate`, `ignored`, `parked` or `rejected`.
    pub outcome: String,
    /// The event sequence number that records it (absent when rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Why it was ignored, parked or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WebhookReceipt {
    /// A receipt with `status` and `topic` and every count at zero.
    pub fn new(status: &str, topic: &str) -> Self {
        Self {
            status: status.to_owned(),
            topic: topic.to_owned(),
            applied: 0,
            duplicates: 0,
            rejected: 0,
            skipped_lines: 0,
            ignored: 0,
            parked: 0,
            movements: Vec::new(),
            note: None,
        }
    }

    /// Counts and lists the ledger's answer to `movement`. Returns the failure when the
    /// movement is not durable (the delivery must then be answered with a problem so the
    /// sender retries); a refusal is an outcome, not a failure.
    pub fn record(
        &mut self,
        movement: &Movement,
        answer: Result<Ack, LedgerError>,
    ) -> Option<LedgerError> {
        let (outcome, seq, reason) = match answer {
            Ok(Ack::Applied { seq }) => {
                self.applied += 1;
                ("applied", Some(seq), None)
            }
            Ok(Ack::Duplicate { seq }) => {
                self.duplicates += 1;
                ("duplicate", Some(seq), None)
            }
            Ok(Ack::Ignored { seq }) => {
                self.ignored += 1;
                (
                    "ignored",
                    Some(seq),
                    Some("an order edit whose version is not newer than the line's".to_owned()),
                )
            }
            Ok(Ack::Parked { seq }) => {
                self.parked += 1;
                (
                    "parked",
                    Some(seq),
                    Some("waits for its order line; applied when the line gets there".to_owned()),
                )
            }
            Err(LedgerError::Rejected(error)) => {
                self.rejected += 1;
                ("rejected", None, Some(error.to_string()))
            }
            Err(error) => return Some(error),
        };
        self.movements.push(MovementOutcome {
            idempotency_key: movement.idempotency_key.clone(),
            sku: movement.sku.as_str().to_owned(),
            kind: movement.kind.name().to_owned(),
            outcome: outcome.to_owned(),
            seq,
            reason,
        });
        None
    }
}

/// A bounded memory of processed delivery keys (oldest forgotten first). A cheap handle:
/// clones share one memory. The app creates one and hands it to every receiver; keys
/// start with the channel id, so receivers never see each other's keys.
#[derive(Clone, Debug)]
pub struct DeliveryMemory {
    inner: Arc<MemoryInner>,
}

#[derive(Debug)]
struct MemoryInner {
    capacity: usize,
    keys: Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl DeliveryMemory {
    /// A memory of at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                capacity: capacity.max(1),
                keys: Mutex::new(Keys::default()),
            }),
        }
    }

    /// Whether any of `keys` was remembered (and not forgotten since).
    pub fn contains_any(&self, keys: &[String]) -> bool {
        let inner = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|key| inner.seen.contains(key))
    }

    /// Remembers `keys`, forgetting the oldest beyond the capacity.
    pub fn remember(&self, keys: Vec<String>) {
        let mut inner = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if inner.seen.insert(key.clone()) {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.inner.capacity {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.seen.remove(&oldest);
                }
            }
        }
    }
}

/// What a receiver's router carries: where movements go, the channels it serves, and the
/// delivery memory. Cheap to clone.
#[derive(Clone)]
pub struct ReceiverState {
    /// The ledger movements are submitted to.
    pub ledger: Ledger,
    /// The configuration (channels and their secrets).
    pub config: Arc<Config>,
    /// Deliveries already processed.
    pub deliveries: DeliveryMemory,
    /// The platform clients, for deliveries that must be read back (Shopify's thin
    /// fulfillment-order webhooks); `None`: such deliveries are answered 503.
    pub platforms: Option<Arc<crate::platforms::PlatformClients>>,
}

impl ReceiverState {
    /// State over `ledger`, `config` and `deliveries`, without platform clients.
    pub fn new(ledger: Ledger, config: Arc<Config>, deliveries: DeliveryMemory) -> Self {
        Self {
            ledger,
            config,
            deliveries,
            platforms: None,
        }
    }

    /// Reads back what thin webhooks name through `platforms` (the app's shared clients).
    pub fn with_platforms(
        mut self,
        platforms: Option<Arc<crate::platforms::PlatformClients>>,
    ) -> Self {
        self.platforms = platforms;
        self
    }
}

/// Every way a webhook delivery fails. [`IntoResponse`] maps each to its status and
/// problem (the same `type`s the API uses for the shared ones).
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// No channel with this id takes Shopify webhooks (404, `unknown-channel`).
    #[error("no shopify channel with id {channel}")]
    UnknownChannel {
        /// The id from the URL.
        channel: String,
    },
    /// No channel of the receiver's platform has this id (404, `not-found`).
    #[error("no route for {path}")]
    NotFound {
        /// The path requested.
        path: String,
    },
    /// The body could not be read: too large (413) or broken (400), per `status`.
    #[error("request body could not be read: {message}")]
    Body {
        /// 413 when over `http.body_limit_bytes`, else 400.
        status: StatusCode,
        /// Why.
        message: String,
    },
    /// The webhook signature is missing or wrong (401); nothing changed.
    #[error("webhook signature rejected: {reason}")]
    Unauthorized {
        /// Why.
        reason: String,
    },
    /// A verified webhook could not be decoded (400); the platform will retry.
    #[error("webhook could not be decoded: {message}")]
    UndecodableWebhook {
        /// The decoder's message.
        message: String,
    },
    /// The ledger or its store failed; nothing is acknowledged and a retry is safe (503).
    #[error("the ledger is unavailable: {message}")]
    Unavailable {
        /// The ledger's message.
        message: String,
    },
}

impl ReceiverError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownChannel { .. } | Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Body { status, .. } => *status,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::UndecodableWebhook { .. } => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = self.to_string();
        match self {
            Self::UnknownChannel { .. } => {
                Problem::new(status, "unknown-channel", "Unknown channel", detail)
            }
            Self::NotFound { .. } => Problem::not_found(detail),
            Self::Body { status, .. } => Problem::body(*status, detail),
            Self::Unauthorized { .. } => Problem::new(
                status,
                "invalid-signature",
                "Webhook signature rejected",
                detail,
            ),
            Self::UndecodableWebhook { .. } => Problem::new(
                status,
                "undecodable-webhook",
                "Webhook payload could not be decoded",
                detail,
            ),
            Self::Unavailable { .. } => Problem::unavailable(detail),
        }
    }

    /// The `outcome` label of `stocksync_ingest_webhooks_total` for this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Body { .. } => "unreadable",
            Self::UndecodableWebhook { .. } => "undecodable",
            Self::Unavailable { .. } => "unavailable",
            Self::UnknownChannel { .. } | Self::NotFound { .. } => "error",
        }
    }
}

impl IntoResponse for ReceiverError {
    fn into_response(self) -> Response {
        match self {
            // The sender retries; it may succeed once the store is back.
            Self::Unavailable { .. } => self.problem().into_response_retry_after(1),
            _ => self.problem().into_response(),
        }
    }
}

/// Maps a body-buffering rejection (over the limit, or a broken stream) to a failure.
pub fn body_error(rejection: BytesRejection) -> ReceiverError {
    ReceiverError::Body {
        status: rejection.status(),
        message: rejection.body_text(),
    }
}

/// Hears what a channel reports about its own inventory without a movement (Shopify's
/// `inventory_levels/update`), for reconciliation, which recognises our echo or flags a
/// discrepancy. The app adapts reconciliation to it (through `web`), so ingest never
/// imports reconciliation.
pub trait InventoryLevelObserver: Send + Sync + 'static {
    /// `channel` reports `available` units of its listing `listing_id` at the channel's
    /// `location_id`. Must not block.
    fn inventory_level_reported(
        &self,
        channel: &str,
        listing_id: &str,
        location_id: &str,
        available: Option<i64>,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

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

    #[test]
    fn clones_share_one_memory() {
        let memory = DeliveryMemory::new(10);
        memory.clone().remember(vec!["k".into()]);
        assert!(memory.contains_any(&["k".into()]));
        assert!(!DeliveryMemory::new(10).contains_any(&["k".into()]));
    }

    #[test]
    fn failures_answer_the_problems_they_always_did() {
        let cases = [
            (
                ReceiverError::UnknownChannel {
                    channel: "x".into(),
                },
                404,
                "unknown-channel",
            ),
            (
                ReceiverError::NotFound {
                    path: "/webhooks/woocommerce/x".into(),
                },
                404,
                "not-found",
            ),
            (
                ReceiverError::Unauthorized { reason: "r".into() },
                401,
                "invalid-signature",
            ),
            (
                ReceiverError::UndecodableWebhook {
                    message: "m".into(),
                },
                400,
                "undecodable-webhook",
            ),
            (
                ReceiverError::Body {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    message: "m".into(),
                },
                413,
                "body-too-large",
            ),
            (
                ReceiverError::Unavailable {
                    message: "m".into(),
                },
                503,
                "unavailable",
            ),
        ];
        for (error, status, slug) in cases {
            let problem = error.problem();
            assert_eq!(problem.status, status, "{error}");
            assert_eq!(
                problem.problem_type,
                format!("urn:stocksync:problem:{slug}")
            );
            assert_eq!(problem.detail, error.to_string());
            let unavailable = matches!(error, ReceiverError::Unavailable { .. });
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response.headers().contains_key(header::RETRY_AFTER),
                unavailable
            );
        }
    }
}
