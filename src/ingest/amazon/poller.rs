//! The Amazon pollers (PLATFORMS.md §4.3, §4.4): the Orders API backstop to ORDER_CHANGE
//! notifications (Amazon says to keep one), and the FBA inventory reader.
//!
//! Orders: every `order_poll_interval_ms`, `GET /orders/v0/orders?MarketplaceIds=…&LastUpdatedAfter=…`
//! (all `NextToken` pages) from a watermark that trails the newest `LastUpdateDate` seen by
//! [`ORDER_OVERLAP_MS`]; every MFN order whose `LastUpdateDate` changed since the last poll
//! gets `getOrderItems`, and its movements ([`super::decode::order_movements`]) are
//! submitted. AFN orders are skipped without reading their items (they never touch our
//! stock). The keys are the notification's, so an order seen by both is applied once. The
//! first poll looks back [`INITIAL_LOOKBACK_MS`].
//!
//! FBA: every `fba_poll_interval_ms`, `GET /fba/inventory/v1/summaries` (all `nextToken`
//! pages at once: they expire after 30 s), the first time in full, then with
//! `startDateTime` (changed summaries only) trailing the newest `lastUpdatedTime`; each
//! summary becomes a `Count` at the channel's FBA location (`fba_location`), watermarked by
//! `lastUpdatedTime`, so a repeated or stale summary changes nothing.
//!
//! Watermarks advance only after every movement of the poll is durable; a failure leaves
//! them for the next poll. A 429 ends the poll early; the shared loop then backs off.
//!
//! The loop around each poller (interval, backoff on 429/5xx honouring `Retry-After`,
//! statistics, stop) and the watermark type are the shared [`crate::ingest::poller`]; this
//! module holds only the Amazon requests, decoding and cursors.
//!
//! Every request goes through the channel's [`AmazonClient`] (`platforms::amazon`), the same
//! instance the channel adapter uses: one LWA token per credential for push and poll, and
//! the client's `Retry-After` and status classification ([`Retry::for_platform_error`]).
//!
//! May depend on: `domain`, `ledger`, `config`, `telemetry`, `platforms`, `ingest::poller`,
//! `ingest::amazon::decode`.

use super::decode::{self as amazon, Fulfilment, ListedOrder};
use crate::config::{AmazonConfig, ChannelConfig};
use crate::ingest::poller::{
    self, Poll, PollFailure, PollStats, PollerHandle, PollerOptions, Retry, Watermark, submit_all,
};
use crate::ledger::{Ledger, LedgerError};
use crate::platforms::amazon::{self as platform, AmazonClient};
use crate::platforms::{HttpAnswer, PlatformClients, PlatformError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How far the first order poll looks back, in milliseconds (1 day).
pub const INITIAL_LOOKBACK_MS: i64 = 86_400_000;
/// How far the order watermark trails the newest `LastUpdateDate` seen, in milliseconds
/// (Amazon's dates are not strictly ordered with their visibility).
pub const ORDER_OVERLAP_MS: i64 = 120_000;
/// How far the FBA `startDateTime` trails the newest `lastUpdatedTime` seen, in ms.
pub const FBA_OVERLAP_MS: i64 = 60_000;
/// Most pages read per list call.
const MAX_PAGES: u32 = 100;

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum AmazonPollError {
    /// The platform client failed: no answer, a refused token, or an unexpected status
    /// (429 with its `Retry-After` included).
    #[error("{what}: {error}")]
    Platform {
        /// What was requested.
        what: String,
        /// The client's classified error.
        #[source]
        error: PlatformError,
    },
    /// The answer could not be decoded.
    #[error(transparent)]
    Decode(#[from] amazon::DecodeError),
    /// The ledger could not make a movement durable (retried next poll).
    #[error("ledger: {0}")]
    Ledger(LedgerError),
}

impl PollFailure for AmazonPollError {
    fn retry(&self) -> Retry {
        match self {
            Self::Platform { error, .. } => Retry::for_platform_error(error),
            Self::Decode(_) | Self::Ledger(_) => Retry::AfterInterval,
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

/// The body of a 2xx answer, `None` for 404, the status error otherwise (a 429 without
/// `Retry-After` waits one token of `x-amzn-RateLimit-Limit`).
fn body_of(
    what: &str,
    answer: Result<HttpAnswer, PlatformError>,
) -> Result<Option<String>, AmazonPollError> {
    let platform = |error| AmazonPollError::Platform {
        what: what.to_owned(),
        error,
    };
    let answer = answer.map_err(platform)?;
    if answer.status == 404 {
        return Ok(None);
    }
    match platform::status_error(&answer) {
        Some(error) => Err(platform(error)),
        None => Ok(Some(answer.text)),
    }
}

fn iso8601(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The pollers' memory and its channel's Amazon client (one per Amazon channel).
#[derive(Debug)]
pub struct AmazonPollState {
    channel: ChannelConfig,
    config: AmazonConfig,
    client: Arc<AmazonClient>,
    /// `LastUpdatedAfter` of the next order poll; unset before the first.
    orders_after: Watermark,
    /// `(LastUpdateDate, OrderStatus)` of every order handled since the watermark (the
    /// date has whole seconds, so the status tells two changes in one second apart).
    orders_seen: HashMap<String, (i64, String)>,
    /// `startDateTime` of the next FBA poll; unset reads everything.
    fba_after: Watermark,
}

impl AmazonPollState {
    /// A fresh state for an Amazon channel on `client` (the channel's client from
    /// [`PlatformClients`], shared with its adapter); `None` for other channels.
    pub fn with_client(channel: &ChannelConfig, client: Arc<AmazonClient>) -> Option<Self> {
        let config = channel.amazon().cloned()?;
        Some(Self {
            channel: channel.clone(),
            config,
            client,
            orders_after: Watermark::unset(ORDER_OVERLAP_MS),
            orders_seen: HashMap::new(),
            fba_after: Watermark::unset(FBA_OVERLAP_MS),
        })
    }

    /// A fresh state for an Amazon channel with a client of its own on `http` (tools and
    /// tests; the app uses [`with_client`](Self::with_client)); `None` for other channels.
    pub fn new(channel: &ChannelConfig, http: reqwest::Client) -> Option<Self> {
        let client = Arc::new(AmazonClient::new(channel.amazon()?, http));
        Self::with_client(channel, client)
    }

    /// One Orders API poll (see the module docs).
    ///
    /// Errors: HTTP (429 included), decode or ledger failures; what was durable stays.
    pub async fn poll_orders(&mut self, ledger: &Ledger) -> Result<PollStats, AmazonPollError> {
        let mut stats = PollStats::default();
        let after_ms = self
            .orders_after
            .position_ms()
            .unwrap_or_else(|| ledger.clock().now_ms() - INITIAL_LOOKBACK_MS);
        let mut listed: Vec<ListedOrder> = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let answer = match &next_token {
                None => {
                    self.client
                        .orders_updated_after(&self.config.marketplace_id, &iso8601(after_ms))
                        .await
                }
                Some(token) => self.client.orders_page(token).await,
            };
            let Some(body) = body_of("getOrders", answer)? else {
                break;
            };
            let page = amazon::decode_order_page(body.as_bytes())?;
            listed.extend(page.orders);
            match page.next_token {
                Some(token) => next_token = Some(token),
                None => break,
            }
        }
        let mut newest = after_ms;
        for order in listed {
            newest = newest.max(order.last_update_ms);
            let fingerprint = (order.last_update_ms, order.order_status.clone());
            if self.orders_seen.get(&order.amazon_order_id) == Some(&fingerprint) {
                continue;
            }
            if order.fulfilment == Fulfilment::Mfn {
                stats.orders_fetched += 1;
                let answer = self.client.order_items(&order.amazon_order_id).await;
                let Some(body) = body_of("getOrderItems", answer)? else {
                    continue;
                };
                let state = amazon::decode_order_items(&order, body.as_bytes())?;
                let decoded = amazon::order_movements(&self.channel, &state);
                submit_all(ledger, &self.channel.id, decoded.movements, &mut stats)
                    .await
                    .map_err(AmazonPollError::Ledger)?;
            }
            self.orders_seen.insert(order.amazon_order_id, fingerprint);
        }
        let watermark = self.orders_after.advance(after_ms, newest);
        if watermark > after_ms {
            self.orders_seen
                .retain(|_, (updated, _)| *updated >= watermark);
        }
        Ok(stats)
    }

    /// One FBA inventory read into `fba_location` (see the module docs).
    ///
    /// Errors: HTTP (429 and an expired `nextToken` included), decode or ledger failures.
    pub async fn poll_fba(&mut self, ledger: &Ledger) -> Result<PollStats, AmazonPollError> {
        let mut stats = PollStats::default();
        let location = self.config.fba_location_id();
        let start = self.fba_after.position_ms().map(iso8601);
        let mut next_token: Option<String> = None;
        let mut summaries = Vec::new();
        for _ in 0..MAX_PAGES {
            let answer = self
                .client
                .fba_summaries(
                    &self.config.marketplace_id,
                    start.as_deref(),
                    next_token.as_deref(),
                )
                .await;
            let Some(body) = body_of("FBA inventory summaries", answer)? else {
                break;
            };
            let page = amazon::decode_summaries(body.as_bytes())?;
            summaries.extend(page.summaries);
            match page.next_token {
                Some(token) => next_token = Some(token),
                None => break,
            }
        }
        let newest = summaries
            .iter()
            .map(|summary| summary.last_updated_ms)
            .max();
        let movements = summaries
            .iter()
            .map(|summary| amazon::fba_count(&self.channel, &location, summary))
            .collect();
        submit_all(ledger, &self.channel.id, movements, &mut stats)
            .await
            .map_err(AmazonPollError::Ledger)?;
        if let Some(newest) = newest {
            self.fba_after.advance(i64::MIN, newest);
        }
        Ok(stats)
    }
}

/// Which Amazon poller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Orders,
    Fba,
}

/// One running Amazon poller: its state, the ledger it feeds, and which poll it runs.
struct AmazonPoller {
    state: AmazonPollState,
    ledger: Ledger,
    kind: Kind,
}

impl Poll for AmazonPoller {
    type Error = AmazonPollError;

    async fn poll(&mut self) -> Result<PollStats, AmazonPollError> {
        match self.kind {
            Kind::Orders => self.state.poll_orders(&self.ledger).await,
            Kind::Fba => self.state.poll_fba(&self.ledger).await,
        }
    }
}

fn spawn(
    channel: &ChannelConfig,
    ledger: Ledger,
    clients: &PlatformClients,
    kind: Kind,
    gate: poller::PollGate,
) -> Option<PollerHandle> {
    let config = channel.amazon()?;
    let interval = match kind {
        Kind::Orders => config.order_poll_interval_ms,
        Kind::Fba => config.fba_poll_interval_ms,
    };
    if interval == 0 {
        return None;
    }
    let state = AmazonPollState::with_client(channel, clients.amazon(&channel.id, config))?;
    let name = match kind {
        Kind::Orders => format!("amazon-orders:{}", channel.id),
        Kind::Fba => format!("amazon-fba:{}", channel.id),
    };
    Some(poller::spawn(
        PollerOptions::new(name, Duration::from_millis(interval)).gated(gate),
        AmazonPoller {
            state,
            ledger,
            kind,
        },
    ))
}

/// Starts the Orders API backstop of an Amazon channel on the shared poller loop; `None`
/// when the channel is not Amazon or `order_poll_interval_ms = 0`. The channel's client
/// comes from `clients` (the one its adapter uses).
pub fn start_orders(
    channel: &ChannelConfig,
    ledger: Ledger,
    clients: &PlatformClients,
    gate: poller::PollGate,
) -> Option<PollerHandle> {
    spawn(channel, ledger, clients, Kind::Orders, gate)
}

/// Starts the FBA inventory reader of an Amazon channel on the shared poller loop; `None`
/// when the channel is not Amazon or `fba_poll_interval_ms = 0`. The channel's client
/// comes from `clients` (the one its adapter uses).
pub fn start_fba(
    channel: &ChannelConfig,
    ledger: Ledger,
    clients: &PlatformClients,
    gate: poller::PollGate,
) -> Option<PollerHandle> {
    spawn(channel, ledger, clients, Kind::Fba, gate)
}
