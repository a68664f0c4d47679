//! The bol.com order poller (PLATFORMS.md §3.5): bol pushes no orders in v10, so every
//! `order_poll_interval_ms` this task lists open FBR orders (all pages), fetches the detail
//! of every order that is new or changed since the last poll, and of every order that left
//! the open list (to see its final cancellations), then lists unhandled FBR returns, and
//! submits the decoded movements ([`super::decode`]) to the [`Ledger`].
//!
//! Idempotency keys make re-polling harmless: a restarted poller fetches every open order
//! again and the ledger answers duplicates. An order is remembered as seen only after all
//! of its movements are durable; a store failure leaves it to the next poll.
//!
//! Known gap (documented): an order cancelled entirely while the poller was down leaves the
//! open list before the poller ever saw it cancel; reconciliation catches that drift.
//!
//! The loop around it (interval, backoff on 429/5xx honouring `Retry-After`, statistics,
//! stop) is the shared [`crate::ingest::poller`]; this module holds only the bol.com
//! requests, decoding and memory of orders seen.
//!
//! May depend on: `domain`, `ledger`, `config`, `telemetry`, `ingest::poller`,
//! `ingest::bolcom::decode`.

use super::decode::{self as bolcom, Order};
use crate::config::{BolcomConfig, ChannelConfig};
use crate::ingest::poller::{
    self, Poll, PollFailure, PollStats, PollerHandle, PollerOptions, Retry, submit_all,
};
use crate::ledger::{Ledger, LedgerError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// Most pages read per list call (50 orders a page at bol).
const MAX_PAGES: u32 = 100;
/// The v10 media type.
const MEDIA_TYPE: &str = "application/vnd.retailer.v10+json";
/// Returns remembered as done before the memory is cleared (keys still dedupe).
const RETURNS_MEMORY: usize = 100_000;

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The platform answered with an unexpected status.
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
    Decode(#[from] bolcom::DecodeError),
    /// The ledger could not make a movement durable (retried next poll).
    #[error("ledger: {0}")]
    Ledger(LedgerError),
}

impl PollFailure for PollError {
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

/// The poller's memory and HTTP client (one per channel).
#[derive(Debug)]
pub struct BolcomPollState {
    channel: ChannelConfig,
    config: BolcomConfig,
    api_url: String,
    client: reqwest::Client,
    token: Option<(String, Instant)>,
    /// Open orders seen, with their list fingerprint.
    seen: HashMap<String, String>,
    /// Returns already restocked.
    returns_done: HashSet<String>,
}

impl BolcomPollState {
    /// A fresh state for a bol.com channel; `None` for other channels.
    pub fn new(channel: &ChannelConfig, client: reqwest::Client) -> Option<Self> {
        let config = channel.bolcom().cloned()?;
        Some(Self {
            channel: channel.clone(),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            config,
            client,
            token: None,
            seen: HashMap::new(),
            returns_done: HashSet::new(),
        })
    }

    async fn token(&mut self, force: bool) -> Result<String, PollError> {
        if !force
            && let Some((token, until)) = &self.token
            && Instant::now() + Duration::from_secs(10) < *until
        {
            return Ok(token.clone());
        }
        let basic = BASE64.encode(format!(
            "{}:{}",
            self.config.client_id, self.config.client_secret
        ));
        let (status, retry_after, body) = self
            .exchange(
                "token",
                self.client
                    .post(&self.config.token_url)
                    .header("authorization", format!("Basic {basic}"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body("grant_type=client_credentials"),
            )
            .await?;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let (200, Some(token)) = (status, value["access_token"].as_str()) else {
            return Err(http_error("token", status, retry_after, &body));
        };
        let ttl = Duration::from_secs(value["expires_in"].as_u64().unwrap_or(299));
        self.token = Some((token.to_owned(), Instant::now() + ttl));
        Ok(token.to_owned())
    }

    async fn exchange(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Option<Duration>, Vec<u8>), PollError> {
        let transport = |error: reqwest::Error| PollError::Transport {
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

    /// GET with the bearer and media type; one token refresh on 401.
    async fn get(&mut self, path: &str) -> Result<Option<Vec<u8>>, PollError> {
        let url = format!("{}{path}", self.api_url);
        let mut force = false;
        loop {
            let token = self.token(force).await?;
            let (status, retry_after, body) = self
                .exchange(
                    path,
                    self.client
                        .get(&url)
                        .bearer_auth(&token)
                        .header("accept", MEDIA_TYPE),
                )
                .await?;
            match status {
                200 => return Ok(Some(body)),
                404 => return Ok(None),
                401 if !force => force = true,
                _ => return Err(http_error(path, status, retry_after, &body)),
            }
        }
    }

    async fn order(&mut self, order_id: &str) -> Result<Option<Order>, PollError> {
        match self.get(&format!("/retailer/orders/{order_id}")).await? {
            Some(body) => Ok(Some(bolcom::decode_order(&body)?)),
            None => Ok(None),
        }
    }

    /// One poll: orders, then returns (when enabled).
    ///
    /// Errors: HTTP, decode or ledger failures; what was durable before stays remembered.
    pub async fn poll_once(&mut self, ledger: &Ledger) -> Result<PollStats, PollError> {
        let mut stats = PollStats::default();
        let mut open = HashMap::new();
        for page in 1..=MAX_PAGES {
            let path = format!("/retailer/orders?fulfilment-method=FBR&status=OPEN&page={page}");
            let Some(body) = self.get(&path).await? else {
                break;
            };
            let orders = bolcom::decode_order_list(&body)?;
            if orders.is_empty() {
                break;
            }
            for order in orders {
                let fingerprint = order.fingerprint();
                open.insert(order.order_id, fingerprint);
            }
        }
        let mut to_fetch: Vec<(String, Option<String>)> = open
            .iter()
            .filter(|(id, fingerprint)| self.seen.get(*id) != Some(*fingerprint))
            .map(|(id, fingerprint)| (id.clone(), Some(fingerprint.clone())))
            .collect();
        to_fetch.extend(
            self.seen
                .keys()
                .filter(|id| !open.contains_key(*id))
                .map(|id| (id.clone(), None)),
        );
        to_fetch.sort();
        for (order_id, fingerprint) in to_fetch {
            stats.orders_fetched += 1;
            let Some(order) = self.order(&order_id).await? else {
                self.seen.remove(&order_id);
                continue;
            };
            let decoded = bolcom::order_movements(&self.channel, &order);
            for (item, why) in &decoded.skipped {
                tracing::debug!(channel = %self.channel.id, order = %order_id, item = %item, why, "bol.com order item skipped");
            }
            submit_all(ledger, &self.channel.id, decoded.movements, &mut stats)
                .await
                .map_err(PollError::Ledger)?;
            match fingerprint {
                Some(fingerprint) => self.seen.insert(order_id, fingerprint),
                None => self.seen.remove(&order_id),
            };
        }
        if self.config.poll_returns {
            self.poll_returns(ledger, &mut stats).await?;
        }
        Ok(stats)
    }

    async fn poll_returns(
        &mut self,
        ledger: &Ledger,
        stats: &mut PollStats,
    ) -> Result<(), PollError> {
        let mut lines = Vec::new();
        for page in 1..=MAX_PAGES {
            let path = format!("/retailer/returns?handled=false&fulfilment-method=FBR&page={page}");
            let Some(body) = self.get(&path).await? else {
                break;
            };
            let page_lines = bolcom::decode_returns(&body)?;
            if page_lines.is_empty() {
                break;
            }
            lines.extend(page_lines);
        }
        if self.returns_done.len() > RETURNS_MEMORY {
            self.returns_done.clear();
        }
        let mut orders: HashMap<String, Option<Order>> = HashMap::new();
        for line in lines {
            if self.returns_done.contains(&line.rma_id) {
                continue;
            }
            if !orders.contains_key(&line.order_id) {
                let order = self.order(&line.order_id).await?;
                orders.insert(line.order_id.clone(), order);
            }
            let from_order = orders
                .get(&line.order_id)
                .and_then(Option::as_ref)
                .and_then(|order| bolcom::resolve_return(order, &line.ean));
            let from_config = || {
                self.config
                    .listings
                    .iter()
                    .find(|listing| listing.ean.as_deref() == Some(line.ean.as_str()))
                    .map(|listing| (listing.sku.as_str(), None))
            };
            let resolved = from_order
                .map(|(sku, item)| (sku, Some(item)))
                .or_else(from_config);
            let Some((sku, item)) = resolved else {
                tracing::warn!(channel = %self.channel.id, rma = %line.rma_id, ean = %line.ean, "bol.com return has no known SKU; skipped");
                self.returns_done.insert(line.rma_id.clone());
                continue;
            };
            let Some(movement) = bolcom::return_movement(&self.channel, &line, sku, item) else {
                continue;
            };
            submit_all(ledger, &self.channel.id, vec![movement], stats)
                .await
                .map_err(PollError::Ledger)?;
            self.returns_done.insert(line.rma_id.clone());
        }
        Ok(())
    }
}

fn http_error(what: &str, status: u16, retry_after: Option<Duration>, body: &[u8]) -> PollError {
    PollError::Http {
        what: what.to_owned(),
        status,
        retry_after,
        body: String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

/// The running poller of one channel: its state and the ledger it feeds.
struct BolcomPoller {
    state: BolcomPollState,
    ledger: Ledger,
}

impl Poll for BolcomPoller {
    type Error = PollError;

    async fn poll(&mut self) -> Result<PollStats, PollError> {
        self.state.poll_once(&self.ledger).await
    }
}

/// Starts the order poller of a bol.com channel on the shared poller loop
/// ([`crate::ingest::poller::spawn`]); `None` when the channel is not bol.com or polling is
/// disabled (`order_poll_interval_ms = 0`).
pub fn start(
    channel: &ChannelConfig,
    ledger: Ledger,
    client: reqwest::Client,
) -> Option<PollerHandle> {
    let interval = channel.bolcom()?.order_poll_interval_ms;
    if interval == 0 {
        return None;
    }
    let state = BolcomPollState::new(channel, client)?;
    Some(poller::spawn(
        PollerOptions::new(
            format!("bolcom:{}", channel.id),
            Duration::from_millis(interval),
        ),
        BolcomPoller { state, ledger },
    ))
}
