//! The Shopify orders poller: reads the orders the shop changed since a cursor, so that an
//! order whose webhook is late or lost still reaches the ledger (issue 9 §4), and so that a
//! compare-and-set conflict (the shop sold units we have not ingested) is explained soon.
//!
//! Owns: one task per Shopify channel that reads
//! `GET {shop}/admin/api/{version}/orders.json?status=any&limit=250&order=updated_at+asc&updated_at_min=<cursor>`
//! and the following cursor pages (`Link: <…page_info=…>; rel="next"`), and submits each
//! order through the same decoder as the webhooks ([`super::decode::decode`] with
//! `orders/updated`), so a polled order and its webhook carry the same idempotency keys and
//! whichever arrives second is a duplicate. The task polls every
//! `orders_poll_interval_secs` (0: never on its own) and at once when its [`PollSignal`] is
//! woken (the app wakes it from propagation's conflict listener).
//!
//! Rate budget: every request goes through the channel's [`ShopifyClient`] (shared with the
//! adapter, so 429 and `Retry-After` are classified in one place); a poll reads at most
//! [`MAX_PAGES_PER_POLL`] pages and stops paging early when
//! `X-Shopify-Shop-Api-Call-Limit` shows the REST bucket [`BUDGET_STOP_PERCENT`] % full, leaving
//! the rest of the bucket to the adapter's pushes; the next poll goes on from the cursor.
//!
//! Cursor: starts `orders_poll_lookback_secs` before start; after a poll in which every
//! movement became durable it moves to the newest `updated_at` seen minus
//! [`CURSOR_OVERLAP_MS`] (pages come oldest change first). A failed poll keeps the cursor.
//! An order that cannot be decoded is logged and counted as refused, never retried for good.
//!
//! Multi-location channels (issue 16): for each open web order polled (at most
//! [`MAX_FULFILLMENT_ORDER_READS_PER_POLL`] per poll) the poller also reads the order's
//! fulfillment orders and applies them like their webhooks (`ingest::shopify::fulfillment`),
//! so a lost `fulfillment_orders/*` webhook is made good by the next poll.
//!
//! May depend on: `domain`, `config`, `ledger`, `telemetry`, `platforms`, `ingest::poller`,
//! `ingest::shopify::decode`.

use super::decode::{WebhookTopic, decode};
use super::fulfillment;
use crate::config::ChannelConfig;
use crate::ingest::poller::{
    self, Poll, PollFailure, PollSignal, PollStats, PollerHandle, PollerOptions, Retry, Watermark,
    submit_all,
};
use crate::ledger::Ledger;
use crate::platforms::PlatformClients;
use crate::platforms::PlatformError;
use crate::platforms::shopify::{self as platform, ShopifyClient};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Orders read by the poller; labels `channel`, `outcome` (`submitted`, `undecodable`,
/// `failed`).
pub const INGEST_SHOPIFY_POLLED_ORDERS_TOTAL: &str = "stocksync_ingest_shopify_polled_orders_total";

/// Most pages read in one poll (250 orders each); the rest waits for the next poll.
pub const MAX_PAGES_PER_POLL: u32 = 20;

/// Most orders whose fulfillment orders one poll reads back (multi-location channels; one
/// GraphQL query each, against the cost budget the pushes also use).
pub const MAX_FULFILLMENT_ORDER_READS_PER_POLL: usize = 50;

/// Orders per page (Shopify's cap).
pub const PAGE_LIMIT: u32 = 250;

/// Paging stops when the REST bucket is this full, in percent.
pub const BUDGET_STOP_PERCENT: u32 = 80;

/// How far the cursor trails the newest `updated_at` seen, in milliseconds (clocks and
/// visibility are not strictly ordered; re-reading is harmless).
pub const CURSOR_OVERLAP_MS: i64 = 2_000;

/// The interval used when the poller only runs when woken (a year).
const WAKE_ONLY_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Errors of one poll.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The answer was not `{"orders": [...]}`.
    #[error("channel {channel}: polling orders failed: {message}")]
    Decode {
        /// Channel id.
        channel: String,
        /// What is wrong.
        message: String,
    },
    /// The platform client failed: no answer, or an unexpected status (429 and 5xx back
    /// off, honouring `Retry-After`).
    #[error("channel {channel}: polling orders failed: {error}")]
    Platform {
        /// Channel id.
        channel: String,
        /// The client's classified error.
        #[source]
        error: PlatformError,
    },
    /// A movement could not be made durable; the window is polled again.
    #[error("channel {channel}: ledger unavailable: {message}")]
    Ledger {
        /// Channel id.
        channel: String,
        /// The ledger's message.
        message: String,
    },
}

impl PollFailure for PollError {
    fn retry(&self) -> Retry {
        match self {
            Self::Platform { error, .. } => Retry::for_platform_error(error),
            Self::Decode { .. } | Self::Ledger { .. } => Retry::AfterInterval,
        }
    }

    fn is_throttled(&self) -> bool {
        matches!(
            self,
            Self::Platform {
                error: PlatformError::Throttled { .. },
                ..
            }
        )
    }
}

/// The orders poller of one Shopify channel.
pub struct OrderPoller {
    channel: ChannelConfig,
    ledger: Ledger,
    client: Arc<ShopifyClient>,
    /// `updated_at_min`, in milliseconds since the Unix epoch.
    cursor: Watermark,
    signal: Arc<PollSignal>,
    /// The channel writes to several Shopify locations: read fulfillment orders too.
    multi_location: bool,
}

impl std::fmt::Debug for OrderPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderPoller")
            .field("channel", &self.channel.id)
            .field("cursor_ms", &self.cursor_ms())
            .finish()
    }
}

/// `2025-01-31T10:00:00.000Z` for epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// Epoch milliseconds of an RFC 3339 time with or without an offset (`…Z`, `…-05:00`).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let time = humantime::parse_rfc3339(text)
        .or_else(|_| humantime::parse_rfc3339_weak(text.trim_end_matches('Z')))
        .ok();
    let time = match time {
        Some(time) => time,
        None => {
            // An offset other than Z: humantime wants UTC, so shift by hand.
            let (local, sign, offset) = match text.rfind(['+', '-']) {
                Some(at) if at > 10 => (&text[..at], &text[at..at + 1], &text[at + 1..]),
                _ => return None,
            };
            let (hours, minutes) = offset.split_once(':')?;
            let shift_ms = (hours.parse::<i64>().ok()? * 60 + minutes.parse::<i64>().ok()?)
                * 60_000
                * if sign == "+" { 1 } else { -1 };
            let local_ms = parse_rfc3339(&format!("{local}Z"))?;
            return Some(local_ms - shift_ms);
        }
    };
    i64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// The `page_info` of a `Link` header's `rel="next"` entry.
pub fn next_page_info(link: &str) -> Option<String> {
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| part.split("page_info=").nth(1))
        .map(|rest| {
            rest.chars()
                .take_while(|c| !matches!(c, '&' | '>' | ';' | ' '))
                .collect::<String>()
        })
        .filter(|info| !info.is_empty())
}

/// Whether the REST bucket is so full that paging should stop for this poll.
fn budget_spent(answer: &crate::platforms::http::HttpAnswer) -> bool {
    platform::call_limit(answer).is_some_and(|(used, size)| {
        u64::from(used) * 100 >= u64::from(size) * u64::from(BUDGET_STOP_PERCENT)
    })
}

impl OrderPoller {
    /// A poller for `channel` (which must have a `[channels.shopify]` section) on `client`
    /// (the channel's client, shared with its adapter), recording its successes in
    /// `signal`; its first poll looks back `orders_poll_lookback_secs`. `None` for other
    /// channels.
    pub fn with_client(
        channel: ChannelConfig,
        ledger: Ledger,
        client: Arc<ShopifyClient>,
        signal: Arc<PollSignal>,
    ) -> Option<Self> {
        let section = channel.shopify()?;
        let lookback = section.orders_poll_lookback_secs;
        let multi_location = section.is_multi_location();
        let cursor_ms = ledger
            .clock()
            .now_ms()
            .saturating_sub(i64::try_from(lookback.saturating_mul(1000)).unwrap_or(i64::MAX));
        Some(Self {
            channel,
            ledger,
            client,
            cursor: Watermark::at(cursor_ms, CURSOR_OVERLAP_MS),
            signal,
            multi_location,
        })
    }

    /// The current `updated_at_min`, in milliseconds since the Unix epoch.
    pub fn cursor_ms(&self) -> i64 {
        self.cursor.position_ms().unwrap_or_default()
    }

    /// Polls once: the pages of orders changed since the cursor, each decoded and
    /// submitted; the cursor advances only when every movement is durable.
    ///
    /// Errors: [`PollError::Platform`], [`PollError::Decode`], [`PollError::Ledger`].
    pub async fn poll_once(&mut self) -> Result<PollStats, PollError> {
        let started_ms = self.ledger.clock().now_ms();
        let channel = self.channel.id.clone();
        let platform_error = |error: PlatformError| PollError::Platform {
            channel: channel.clone(),
            error,
        };
        let start_ms = self.cursor_ms();
        let mut path = format!(
            "/orders.json?status=any&limit={PAGE_LIMIT}&order=updated_at+asc&updated_at_min={}",
            crate::platforms::http::encode(&rfc3339(start_ms))
        );
        let mut report = PollStats::default();
        let mut newest = start_ms;
        let mut fulfillment_reads = 0usize;
        for _ in 0..MAX_PAGES_PER_POLL {
            let answer = self
                .client
                .rest_get_paced(&path)
                .await
                .map_err(platform_error)?;
            if let Some(error) = answer.status_error() {
                return Err(platform_error(error));
            }
            let orders = answer.body["orders"]
                .as_array()
                .ok_or_else(|| PollError::Decode {
                    channel: channel.clone(),
                    message: format!("no \"orders\" array: {}", answer.excerpt()),
                })?;
            for order in orders {
                if let Some(updated) = order["updated_at"].as_str().and_then(parse_rfc3339) {
                    newest = newest.max(updated);
                }
                report.orders_fetched += 1;
                let body = serde_json::to_vec(order).unwrap_or_default();
                let decoded = match decode(&self.channel, WebhookTopic::OrdersUpdated, &body) {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        report.rejected += 1;
                        tracing::warn!(channel = %channel, order = %order["id"], error = %error, "polled Shopify order cannot be decoded; skipped");
                        metrics::counter!(INGEST_SHOPIFY_POLLED_ORDERS_TOTAL, "channel" => channel.clone(), "outcome" => "undecodable").increment(1);
                        continue;
                    }
                };
                if let Err(error) =
                    submit_all(&self.ledger, &channel, decoded.movements, &mut report).await
                {
                    metrics::counter!(INGEST_SHOPIFY_POLLED_ORDERS_TOTAL, "channel" => channel.clone(), "outcome" => "failed").increment(1);
                    return Err(PollError::Ledger {
                        channel: channel.clone(),
                        message: error.to_string(),
                    });
                }
                metrics::counter!(INGEST_SHOPIFY_POLLED_ORDERS_TOTAL, "channel" => channel.clone(), "outcome" => "submitted").increment(1);
                if self.multi_location
                    && fulfillment_reads < MAX_FULFILLMENT_ORDER_READS_PER_POLL
                    && let Some(order_id) = open_web_order(order)
                {
                    fulfillment_reads += 1;
                    self.apply_fulfillment_orders(order_id, &mut report).await?;
                }
            }
            let next = answer.header("link").and_then(next_page_info);
            let Some(page_info) = next else { break };
            if budget_spent(&answer) {
                tracing::info!(channel = %channel, "REST bucket nearly full; the next orders page waits for the next poll");
                break;
            }
            path = format!("/orders.json?limit={PAGE_LIMIT}&page_info={page_info}");
        }
        self.cursor.advance(start_ms, newest);
        self.signal.record_success(started_ms);
        Ok(report)
    }
}

impl OrderPoller {
    /// Reads the fulfillment orders of `order_id` and submits their movements (the backstop
    /// for lost `fulfillment_orders/*` webhooks). A read that fails is logged and left to the
    /// next poll that sees the order; only a ledger failure fails the poll.
    async fn apply_fulfillment_orders(
        &self,
        order_id: u64,
        report: &mut PollStats,
    ) -> Result<(), PollError> {
        let channel = self.channel.id.clone();
        let fulfillment_orders = match fulfillment::fetch_for_order(&self.client, order_id).await {
            Ok(fulfillment_orders) => fulfillment_orders,
            Err(error) => {
                tracing::warn!(channel = %channel, order = order_id, error = %error, "fulfillment orders of a polled order not readable; skipped");
                return Ok(());
            }
        };
        let ledger_error = |message: String| PollError::Ledger {
            channel: channel.clone(),
            message,
        };
        for fo in &fulfillment_orders {
            let (movements, _) =
                fulfillment::movements_from_ledger(&self.ledger, &self.channel, fo)
                    .await
                    .map_err(|error| ledger_error(error.to_string()))?;
            submit_all(&self.ledger, &channel, movements, report)
                .await
                .map_err(|error| ledger_error(error.to_string()))?;
        }
        Ok(())
    }
}

/// The id of a polled order whose units Shopify may still route or move: a web order (not
/// POS) that is neither cancelled nor fully fulfilled.
fn open_web_order(order: &serde_json::Value) -> Option<u64> {
    let pos = super::decode::is_pos(order["source_name"].as_str());
    let closed = !order["cancelled_at"].is_null() || order["fulfillment_status"] == "fulfilled";
    if pos || closed {
        return None;
    }
    order["id"]
        .as_u64()
        .or_else(|| order["id"].as_str().and_then(|id| id.parse().ok()))
}

impl Poll for OrderPoller {
    type Error = PollError;

    async fn poll(&mut self) -> Result<PollStats, PollError> {
        self.poll_once().await
    }
}

/// Starts the orders poller of `channel` when it is a Shopify channel that polls on an
/// interval or on conflicts (`orders_poll_interval_secs`, `orders_poll_on_conflict`),
/// woken through `signal`; `None` otherwise. The channel's client comes from `clients`
/// (the one its adapter uses).
pub fn start(
    channel: &ChannelConfig,
    ledger: Ledger,
    clients: &PlatformClients,
    signal: Arc<PollSignal>,
    gate: poller::PollGate,
) -> Option<PollerHandle> {
    let section = channel.shopify()?;
    let interval = match section.orders_poll_interval_secs {
        0 if !section.orders_poll_on_conflict => return None,
        0 => WAKE_ONLY_INTERVAL,
        secs => Duration::from_secs(secs),
    };
    let client = clients.shopify(&channel.id, section);
    let poller = OrderPoller::with_client(channel.clone(), ledger, client, signal.clone())?;
    let woken = section.orders_poll_on_conflict.then_some(signal);
    Some(poller::spawn_woken(
        PollerOptions::new(format!("shopify:{}", channel.id), interval).gated(gate),
        poller,
        woken,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_web_orders_have_their_fulfillment_orders_read() {
        let order = |extra: serde_json::Value| {
            let mut order = serde_json::json!({"id": 5501, "source_name": "web",
                "cancelled_at": null, "fulfillment_status": null});
            order
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            order
        };
        assert_eq!(open_web_order(&order(serde_json::json!({}))), Some(5501));
        assert_eq!(
            open_web_order(&order(serde_json::json!({"fulfillment_status": "partial"}))),
            Some(5501)
        );
        assert_eq!(
            open_web_order(&order(serde_json::json!({"source_name": "pos"}))),
            None
        );
        assert_eq!(
            open_web_order(&order(
                serde_json::json!({"fulfillment_status": "fulfilled"})
            )),
            None
        );
        assert_eq!(
            open_web_order(&order(
                serde_json::json!({"cancelled_at": "2026-12-02T10:00:00Z"})
            )),
            None
        );
    }

    #[test]
    fn times_parse_with_any_offset() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1_000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.500Z"), Some(1_500));
        assert_eq!(parse_rfc3339("2024-01-01T10:00:01Z"), Some(1704103201000));
        assert_eq!(
            parse_rfc3339("2024-01-01T11:00:01+01:00"),
            Some(1704103201000)
        );
        assert_eq!(
            parse_rfc3339("2024-01-01T05:00:01-05:00"),
            Some(1704103201000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(
            parse_rfc3339(&rfc3339(1_700_000_000_123)),
            Some(1_700_000_000_123)
        );
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let link = "<https://shop/admin/api/2026-04/orders.json?limit=250&page_info=abc>; rel=\"previous\", <https://shop/admin/api/2026-04/orders.json?limit=250&page_info=def.1>; rel=\"next\"";
        assert_eq!(next_page_info(link).as_deref(), Some("def.1"));
        assert_eq!(
            next_page_info("<https://shop/orders.json?page_info=abc>; rel=\"previous\""),
            None
        );
    }
}
