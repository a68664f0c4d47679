//! The WooCommerce order poller: the backstop for webhooks that WooCommerce never retries
//! and disables after repeated failures (PLATFORMS.md §2.3 polling fallback, §2.4).
//!
//! Owns: one task per WooCommerce channel that every `poll_interval_secs` reads
//! `GET {site}/wp-json/wc/v3/orders?modified_after=<cursor>&per_page=100&page=N&orderby=modified&order=asc`
//! and submits the same movements as the webhook receiver ([`super::decode::decode_order`]).
//! Overlap with webhooks, and between polls, is harmless: every movement carries the same
//! idempotency key whichever path brought it.
//!
//! Cursor: starts `poll_lookback_secs` before start; after a poll in which every movement
//! became durable it moves to the newest `date_modified_gmt` seen minus one second (the
//! field has second resolution and `modified_after` may be exclusive). A failed poll keeps
//! the cursor, so the next poll retries the same window.
//!
//! The loop around it (interval, backoff on 429/5xx honouring `Retry-After`, statistics,
//! stop) is the shared [`crate::ingest::poller`]; this module holds only the WooCommerce
//! request, decoding and cursor.
//!
//! May depend on: `domain`, `config`, `ledger`, `telemetry`, `ingest::poller`,
//! `ingest::woocommerce::decode`.

use super::decode::{decode_order, order_from_value};
use crate::config::ChannelConfig;
use crate::ingest::poller::{
    self, Poll, PollFailure, PollStats, PollerHandle, PollerOptions, Retry, Watermark, submit_all,
};
use crate::ledger::Ledger;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Orders read by the poller; labels `channel`, `outcome` (`submitted`, `failed`).
pub const INGEST_POLLED_ORDERS_TOTAL: &str = "stocksync_ingest_polled_orders_total";

/// Most pages read in one poll (100 orders each); the rest waits for the next poll.
const MAX_PAGES_PER_POLL: u32 = 50;

/// How far the cursor trails the newest `date_modified_gmt` seen, in milliseconds (the
/// field has second resolution and `modified_after` may be exclusive).
pub const CURSOR_OVERLAP_MS: i64 = 1_000;

/// Errors of one poll.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The answer was not a JSON array of orders, or an order could not be decoded.
    #[error("channel {channel}: polling orders failed: {message}")]
    Http {
        /// Channel id.
        channel: String,
        /// What went wrong (decode error).
        message: String,
    },
    /// The site answered with an unexpected status (429 and 5xx back off).
    #[error("channel {channel}: polling orders failed: http {status}")]
    Status {
        /// Channel id.
        channel: String,
        /// HTTP status.
        status: u16,
        /// The `Retry-After` sent with it.
        retry_after: Option<Duration>,
    },
    /// No answer (connect, timeout, TLS); backs off.
    #[error("channel {channel}: polling orders failed: {message}")]
    Transport {
        /// Channel id.
        channel: String,
        /// The client's message.
        message: String,
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
            Self::Status {
                status,
                retry_after,
                ..
            } => Retry::for_status(*status, *retry_after),
            Self::Transport { .. } => Retry::WithBackoff { retry_after: None },
            Self::Http { .. } | Self::Ledger { .. } => Retry::AfterInterval,
        }
    }
}

/// The poller of one channel (a cursor and the HTTP details).
#[derive(Clone)]
pub struct OrderPoller {
    channel: ChannelConfig,
    ledger: Ledger,
    client: reqwest::Client,
    /// `modified_after`, in milliseconds since the Unix epoch.
    cursor: Watermark,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters); ingest
/// may not use the channel adapter's copy.
fn encode_query_value(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `2025-01-31T10:00:00` for epoch milliseconds (UTC, seconds).
pub fn gmt(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .trim_end_matches('Z')
        .to_owned()
}

fn parse_gmt(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim().trim_end_matches('Z')).ok()?;
    i64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

impl std::fmt::Debug for OrderPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderPoller")
            .field("channel", &self.channel.id)
            .field("cursor_ms", &self.cursor_ms())
            .finish()
    }
}

impl OrderPoller {
    /// A poller for `channel` (which must have a `[channels.woocommerce]` section) whose
    /// first poll looks back `poll_lookback_secs`; `None` for other channels.
    pub fn new(channel: ChannelConfig, ledger: Ledger, client: reqwest::Client) -> Option<Self> {
        let lookback = channel.woocommerce()?.poll_lookback_secs;
        let cursor_ms = now_ms() - i64::try_from(lookback.saturating_mul(1000)).unwrap_or(0);
        Some(Self {
            channel,
            ledger,
            client,
            cursor: Watermark::at(cursor_ms, CURSOR_OVERLAP_MS),
        })
    }

    /// The current `modified_after`, in milliseconds since the Unix epoch.
    pub fn cursor_ms(&self) -> i64 {
        self.cursor.position_ms().unwrap_or_default()
    }

    /// Polls once: every page of orders modified after the cursor, each decoded and
    /// submitted; the cursor advances only when every movement is durable.
    ///
    /// Errors: [`PollError::Http`], [`PollError::Ledger`].
    pub async fn poll_once(&mut self) -> Result<PollStats, PollError> {
        let Some(woocommerce) = self.channel.woocommerce().cloned() else {
            return Ok(PollStats::default());
        };
        let http_error = |message: String| PollError::Http {
            channel: self.channel.id.clone(),
            message,
        };
        let site = woocommerce.site_url.trim_end_matches('/');
        let start_ms = self.cursor_ms();
        let after = gmt(start_ms);
        let mut report = PollStats::default();
        let mut newest = start_ms;
        for page in 1..=MAX_PAGES_PER_POLL {
            let mut url = format!(
                "{site}/wp-json/wc/v3/orders?modified_after={after}&per_page=100&page={page}&orderby=modified&order=asc"
            );
            let request = if woocommerce.auth_in_query {
                url.push_str(&format!(
                    "&consumer_key={}&consumer_secret={}",
                    encode_query_value(&woocommerce.consumer_key),
                    encode_query_value(&woocommerce.consumer_secret)
                ));
                self.client.get(&url)
            } else {
                self.client.get(&url).basic_auth(
                    &woocommerce.consumer_key,
                    Some(&woocommerce.consumer_secret),
                )
            };
            let response = request
                .timeout(Duration::from_secs(woocommerce.timeout_secs.max(1)))
                .send()
                .await
                .map_err(|error| PollError::Transport {
                    channel: self.channel.id.clone(),
                    message: error.to_string(),
                })?;
            let status = response.status();
            let total_pages: u32 = response
                .headers()
                .get("x-wp-totalpages")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())
                .unwrap_or(page);
            if !status.is_success() {
                return Err(PollError::Status {
                    channel: self.channel.id.clone(),
                    status: status.as_u16(),
                    retry_after: response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok())
                        .and_then(poller::parse_retry_after),
                });
            }
            let orders: Vec<serde_json::Value> = response
                .json()
                .await
                .map_err(|error| http_error(error.to_string()))?;
            let empty = orders.is_empty();
            for value in orders {
                let order =
                    order_from_value(value).map_err(|error| http_error(error.to_string()))?;
                if let Some(modified) = order.date_modified_gmt.as_deref().and_then(parse_gmt) {
                    newest = newest.max(modified);
                }
                let decoded = decode_order(&self.channel, &order)
                    .map_err(|error| http_error(error.to_string()))?;
                report.orders_fetched += 1;
                if let Err(error) = submit_all(
                    &self.ledger,
                    &self.channel.id,
                    decoded.movements,
                    &mut report,
                )
                .await
                {
                    metrics::counter!(INGEST_POLLED_ORDERS_TOTAL, "channel" => self.channel.id.clone(), "outcome" => "failed").increment(1);
                    return Err(PollError::Ledger {
                        channel: self.channel.id.clone(),
                        message: error.to_string(),
                    });
                }
                metrics::counter!(INGEST_POLLED_ORDERS_TOTAL, "channel" => self.channel.id.clone(), "outcome" => "submitted").increment(1);
            }
            if empty || page >= total_pages {
                break;
            }
        }
        self.cursor.advance(start_ms, newest);
        Ok(report)
    }
}

impl Poll for OrderPoller {
    type Error = PollError;

    async fn poll(&mut self) -> Result<PollStats, PollError> {
        self.poll_once().await
    }
}

/// Starts polling `channel` every `poll_interval_secs` on the shared poller loop (first
/// poll at once); `None` when the channel is not WooCommerce or polling is off
/// (`poll_interval_secs = 0`).
pub fn start(
    channel: &ChannelConfig,
    ledger: Ledger,
    client: reqwest::Client,
) -> Option<PollerHandle> {
    let interval_secs = channel.woocommerce()?.poll_interval_secs;
    if interval_secs == 0 {
        return None;
    }
    let poller = OrderPoller::new(channel.clone(), ledger, client)?;
    Some(poller::spawn(
        PollerOptions::new(
            format!("woocommerce:{}", channel.id),
            Duration::from_secs(interval_secs),
        ),
        poller,
    ))
}
