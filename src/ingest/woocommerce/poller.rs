//! The WooCommerce order poller: the backstop for webhooks that WooCommerce never retries
//! and disables after repeated failures (PLATFORMS.md §2.3 polling fallback, §2.4).
//!
//! Owns: one task per WooCommerce channel that every `poll_interval_secs` reads
//! `GET {site}/wp-json/wc/v3/orders?modified_after=<cursor>&per_page=100&page=N&orderby=modified&order=asc`
//! and submits the same movements as the webhook receiver for `order.updated`
//! ([`super::decode::decode_order_update`], with the order's known lines from
//! [`super::lines`], recorded again once the movements are durable).
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
//! Every request goes through the channel's [`WoocommerceClient`] (`platforms::woocommerce`),
//! the same instance the channel adapter uses, with its authentication, `Retry-After` and
//! status classification ([`Retry::for_platform_error`]).
//!
//! May depend on: `domain`, `config`, `ledger`, `telemetry`, `platforms`, `ingest::poller`,
//! `ingest::woocommerce::decode`.

use super::decode::{Decoded, decode_order_update, order_from_value};
use crate::config::ChannelConfig;
use crate::ingest::poller::{
    self, Poll, PollFailure, PollStats, PollerHandle, PollerOptions, Retry, Watermark, submit_all,
};
use crate::ledger::Ledger;
use crate::platforms::woocommerce::{self as platform, WoocommerceClient};
use crate::platforms::{PlatformClients, PlatformError};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

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
            Self::Http { .. } | Self::Ledger { .. } => Retry::AfterInterval,
        }
    }

    fn is_throttled(&self) -> bool {
        matches!(
            self,
            Self::Platform {
                error: crate::platforms::PlatformError::Throttled { .. },
                ..
            }
        )
    }
}

/// The poller of one channel (a cursor and the channel's WooCommerce client).
#[derive(Clone)]
pub struct OrderPoller {
    channel: ChannelConfig,
    ledger: Ledger,
    client: Arc<WoocommerceClient>,
    /// `modified_after`, in milliseconds since the Unix epoch.
    cursor: Watermark,
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
    /// A poller for `channel` (which must have a `[channels.woocommerce]` section) on
    /// `client` (the channel's client from [`PlatformClients`], shared with its adapter)
    /// whose first poll looks back `poll_lookback_secs`; `None` for other channels.
    pub fn with_client(
        channel: ChannelConfig,
        ledger: Ledger,
        client: Arc<WoocommerceClient>,
    ) -> Option<Self> {
        let lookback = channel.woocommerce()?.poll_lookback_secs;
        let cursor_ms =
            ledger.clock().now_ms() - i64::try_from(lookback.saturating_mul(1000)).unwrap_or(0);
        Some(Self {
            channel,
            ledger,
            client,
            cursor: Watermark::at(cursor_ms, CURSOR_OVERLAP_MS),
        })
    }

    /// [`with_client`](Self::with_client) with a client of its own on `http` (tools and
    /// tests; the app shares the adapter's); `None` for other channels.
    pub fn new(channel: ChannelConfig, ledger: Ledger, http: reqwest::Client) -> Option<Self> {
        let client = Arc::new(WoocommerceClient::new(channel.woocommerce()?, http));
        Self::with_client(channel, ledger, client)
    }

    /// The current `modified_after`, in milliseconds since the Unix epoch.
    pub fn cursor_ms(&self) -> i64 {
        self.cursor.position_ms().unwrap_or_default()
    }

    /// Polls once: every page of orders modified after the cursor, each decoded and
    /// submitted; the cursor advances only when every movement is durable.
    ///
    /// Errors: [`PollError::Platform`], [`PollError::Http`] (undecodable), [`PollError::Ledger`].
    pub async fn poll_once(&mut self) -> Result<PollStats, PollError> {
        if self.channel.woocommerce().is_none() {
            return Ok(PollStats::default());
        }
        let http_error = |message: String| PollError::Http {
            channel: self.channel.id.clone(),
            message,
        };
        let platform_error = |error: PlatformError| PollError::Platform {
            channel: self.channel.id.clone(),
            error,
        };
        let start_ms = self.cursor_ms();
        let after = gmt(start_ms);
        let mut report = PollStats::default();
        let mut newest = start_ms;
        for page in 1..=MAX_PAGES_PER_POLL {
            let answer = self
                .client
                .orders_modified_after(&after, page)
                .await
                .map_err(platform_error)?;
            if let Some(error) = platform::status_error(&answer) {
                return Err(platform_error(error));
            }
            let total_pages = platform::total_pages(&answer).unwrap_or(page);
            let orders: Vec<serde_json::Value> = serde_json::from_str(&answer.text)
                .map_err(|error| http_error(error.to_string()))?;
            let empty = orders.is_empty();
            for value in orders {
                let order =
                    order_from_value(value).map_err(|error| http_error(error.to_string()))?;
                if let Some(modified) = order.date_modified_gmt.as_deref().and_then(parse_gmt) {
                    newest = newest.max(modified);
                }
                let store = self.ledger.store().clone();
                let known = super::lines::known_lines(store.as_ref(), &self.channel.id, &order.id)
                    .await
                    .map_err(|error| PollError::Ledger {
                        channel: self.channel.id.clone(),
                        message: error.to_string(),
                    })?;
                let decoded = decode_order_update(&self.channel, &order, &known)
                    .map_err(|error| http_error(error.to_string()))?;
                let lines = Decoded {
                    movements: Vec::new(),
                    ..decoded.clone()
                };
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
                let now_ms = self.ledger.clock().now_ms();
                super::lines::remember_lines(store.as_ref(), &self.channel.id, &lines, now_ms)
                    .await
                    .map_err(|error| PollError::Ledger {
                        channel: self.channel.id.clone(),
                        message: error.to_string(),
                    })?;
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
/// (`poll_interval_secs = 0`). The channel's client comes from `clients` (the one its
/// adapter uses).
pub fn start(
    channel: &ChannelConfig,
    ledger: Ledger,
    clients: &PlatformClients,
    gate: poller::PollGate,
) -> Option<PollerHandle> {
    let section = channel.woocommerce()?;
    let interval_secs = section.poll_interval_secs;
    if interval_secs == 0 {
        return None;
    }
    let client = clients.woocommerce(&channel.id, section);
    let poller = OrderPoller::with_client(channel.clone(), ledger, client)?;
    Some(poller::spawn(
        PollerOptions::new(
            format!("woocommerce:{}", channel.id),
            Duration::from_secs(interval_secs),
        )
        .gated(gate),
        poller,
    ))
}
