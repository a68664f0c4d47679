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
//! May depend on: `domain`, `ledger`, `config`, `telemetry`, `ingest::poller`,
//! `ingest::amazon::decode`.

use super::decode::{self as amazon, Fulfilment, ListedOrder};
use crate::config::{AmazonConfig, ChannelConfig};
use crate::ingest::poller::{
    self, Poll, PollFailure, PollStats, PollerHandle, PollerOptions, Retry, Watermark, submit_all,
};
use crate::ledger::{Ledger, LedgerError};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

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
    /// The platform answered with an unexpected status (429 included).
    #[error("{what}: http {status}: {body}")]
    Http {
        /// What was requested.
        what: String,
        /// HTTP status.
        status: u16,
        /// The `Retry-After` sent with it.
        retry_after: Option<Duration>,
        /// Body excerpt.
        body: String,
    },
    /// No answer.
    #[error("{what}: {message}")]
    Transport {
        /// What was requested.
        what: String,
        /// The client's message.
        message: String,
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
            Self::Http {
                status,
                retry_after,
                ..
            } => Retry::for_status(*status, *retry_after),
            Self::Transport { .. } => Retry::WithBackoff { retry_after: None },
            Self::Decode(_) | Self::Ledger(_) => Retry::AfterInterval,
        }
    }
}

/// Percent-encodes a query or form value (RFC 3986 unreserved characters kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn iso8601(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The pollers' memory and HTTP client (one per Amazon channel).
#[derive(Debug)]
pub struct AmazonPollState {
    channel: ChannelConfig,
    config: AmazonConfig,
    api_url: String,
    client: reqwest::Client,
    token: Option<(String, Instant)>,
    /// `LastUpdatedAfter` of the next order poll; unset before the first.
    orders_after: Watermark,
    /// `(LastUpdateDate, OrderStatus)` of every order handled since the watermark (the
    /// date has whole seconds, so the status tells two changes in one second apart).
    orders_seen: HashMap<String, (i64, String)>,
    /// `startDateTime` of the next FBA poll; unset reads everything.
    fba_after: Watermark,
}

impl AmazonPollState {
    /// A fresh state for an Amazon channel; `None` for other channels.
    pub fn new(channel: &ChannelConfig, client: reqwest::Client) -> Option<Self> {
        let config = channel.amazon().cloned()?;
        Some(Self {
            channel: channel.clone(),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            config,
            client,
            token: None,
            orders_after: Watermark::unset(ORDER_OVERLAP_MS),
            orders_seen: HashMap::new(),
            fba_after: Watermark::unset(FBA_OVERLAP_MS),
        })
    }

    async fn exchange(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Option<Duration>, Vec<u8>), AmazonPollError> {
        let transport = |error: reqwest::Error| AmazonPollError::Transport {
            what: what.to_owned(),
            message: error.to_string(),
        };
        let response = request
            .timeout(Duration::from_millis(self.config.request_timeout_ms.max(1)))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(poller::parse_retry_after);
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, retry_after, body.to_vec()))
    }

    async fn token(&mut self, force: bool) -> Result<String, AmazonPollError> {
        if !force
            && let Some((token, until)) = &self.token
            && Instant::now() + Duration::from_secs(60) < *until
        {
            return Ok(token.clone());
        }
        let body = format!(
            "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
            encode(&self.config.refresh_token),
            encode(&self.config.client_id),
            encode(&self.config.client_secret)
        );
        let (status, retry_after, answer) = self
            .exchange(
                "token",
                self.client
                    .post(&self.config.token_url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body),
            )
            .await?;
        let value: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        let (200, Some(token)) = (status, value["access_token"].as_str()) else {
            return Err(http_error("token", status, retry_after, &answer));
        };
        let ttl = Duration::from_secs(value["expires_in"].as_u64().unwrap_or(3600));
        self.token = Some((token.to_owned(), Instant::now() + ttl));
        Ok(token.to_owned())
    }

    /// GET with `x-amz-access-token`; one token refresh on 401/403. `None` on 404.
    async fn get(&mut self, path_and_query: &str) -> Result<Option<Vec<u8>>, AmazonPollError> {
        let url = format!("{}{path_and_query}", self.api_url);
        let mut force = false;
        loop {
            let token = self.token(force).await?;
            let (status, retry_after, body) = self
                .exchange(
                    path_and_query,
                    self.client
                        .get(&url)
                        .header("x-amz-access-token", &token)
                        .header("accept", "application/json"),
                )
                .await?;
            match status {
                200 => return Ok(Some(body)),
                404 => return Ok(None),
                401 | 403 if !force => force = true,
                _ => return Err(http_error(path_and_query, status, retry_after, &body)),
            }
        }
    }

    /// One Orders API poll (see the module docs).
    ///
    /// Errors: HTTP (429 included), decode or ledger failures; what was durable stays.
    pub async fn poll_orders(&mut self, ledger: &Ledger) -> Result<PollStats, AmazonPollError> {
        let mut stats = PollStats::default();
        let after_ms = self
            .orders_after
            .position_ms()
            .unwrap_or_else(|| now_ms() - INITIAL_LOOKBACK_MS);
        let mut listed: Vec<ListedOrder> = Vec::new();
        let mut path = format!(
            "/orders/v0/orders?MarketplaceIds={}&LastUpdatedAfter={}",
            encode(&self.config.marketplace_id),
            encode(&iso8601(after_ms))
        );
        for _ in 0..MAX_PAGES {
            let Some(body) = self.get(&path).await? else {
                break;
            };
            let page = amazon::decode_order_page(&body)?;
            listed.extend(page.orders);
            match page.next_token {
                Some(token) => path = format!("/orders/v0/orders?NextToken={}", encode(&token)),
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
                let items_path = format!(
                    "/orders/v0/orders/{}/orderItems",
                    encode(&order.amazon_order_id)
                );
                let Some(body) = self.get(&items_path).await? else {
                    continue;
                };
                let state = amazon::decode_order_items(&order, &body)?;
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
        let marketplace = encode(&self.config.marketplace_id);
        let mut base = format!(
            "/fba/inventory/v1/summaries?granularityType=Marketplace&granularityId={marketplace}&marketplaceIds={marketplace}&details=true"
        );
        if let Some(after) = self.fba_after.position_ms() {
            base.push_str(&format!("&startDateTime={}", encode(&iso8601(after))));
        }
        let mut path = base.clone();
        let mut summaries = Vec::new();
        for _ in 0..MAX_PAGES {
            let Some(body) = self.get(&path).await? else {
                break;
            };
            let page = amazon::decode_summaries(&body)?;
            summaries.extend(page.summaries);
            match page.next_token {
                Some(token) => path = format!("{base}&nextToken={}", encode(&token)),
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

fn http_error(
    what: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> AmazonPollError {
    AmazonPollError::Http {
        what: what.to_owned(),
        status,
        retry_after,
        body: String::from_utf8_lossy(body).chars().take(300).collect(),
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
    client: reqwest::Client,
    kind: Kind,
) -> Option<PollerHandle> {
    let config = channel.amazon()?;
    let interval = match kind {
        Kind::Orders => config.order_poll_interval_ms,
        Kind::Fba => config.fba_poll_interval_ms,
    };
    if interval == 0 {
        return None;
    }
    let state = AmazonPollState::new(channel, client)?;
    let name = match kind {
        Kind::Orders => format!("amazon-orders:{}", channel.id),
        Kind::Fba => format!("amazon-fba:{}", channel.id),
    };
    Some(poller::spawn(
        PollerOptions::new(name, Duration::from_millis(interval)),
        AmazonPoller {
            state,
            ledger,
            kind,
        },
    ))
}

/// Starts the Orders API backstop of an Amazon channel on the shared poller loop; `None`
/// when the channel is not Amazon or `order_poll_interval_ms = 0`.
pub fn start_orders(
    channel: &ChannelConfig,
    ledger: Ledger,
    client: reqwest::Client,
) -> Option<PollerHandle> {
    spawn(channel, ledger, client, Kind::Orders)
}

/// Starts the FBA inventory reader of an Amazon channel on the shared poller loop; `None`
/// when the channel is not Amazon or `fba_poll_interval_ms = 0`.
pub fn start_fba(
    channel: &ChannelConfig,
    ledger: Ledger,
    client: reqwest::Client,
) -> Option<PollerHandle> {
    spawn(channel, ledger, client, Kind::Fba)
}
