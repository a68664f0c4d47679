//! The bol.com order poller (PLATFORMS.md §3.5): bol pushes no orders in v10, so every
//! `order_poll_interval_ms` this task lists open FBR orders (all pages), fetches the detail
//! of every order that is new or changed since the last poll, and of every order that left
//! the open list (to see its final cancellations), then lists unhandled FBR returns, and
//! submits the decoded movements ([`crate::ingest::bolcom`]) to the [`Ledger`].
//!
//! Idempotency keys make re-polling harmless: a restarted poller fetches every open order
//! again and the ledger answers duplicates. An order is remembered as seen only after all
//! of its movements are durable; a store failure leaves it to the next poll.
//!
//! Known gap (documented): an order cancelled entirely while the poller was down leaves the
//! open list before the poller ever saw it cancel; reconciliation catches that drift.
//!
//! May depend on: `domain`, `ledger`, `config`, `telemetry`, `ingest::bolcom`.

use super::bolcom::{self, Order};
use crate::config::{BolcomConfig, ChannelConfig};
use crate::domain::Movement;
use crate::ledger::{Ack, Ledger, LedgerError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Counter of movements submitted by channel pollers, labelled `channel`, `outcome`
/// (`applied`, `duplicate`, `rejected`, `failed`).
pub const POLL_MOVEMENTS_TOTAL: &str = "stocksync_ingest_poll_movements_total";
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

/// What one poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Order details fetched.
    pub orders_fetched: usize,
    /// Movements newly applied.
    pub applied: usize,
    /// Movements the ledger already had.
    pub duplicates: usize,
    /// Movements the ledger refused (logged).
    pub rejected: usize,
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
        let config = channel.bolcom.clone()?;
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
        let (status, body) = self
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
            return Err(http_error("token", status, &body));
        };
        let ttl = Duration::from_secs(value["expires_in"].as_u64().unwrap_or(299));
        self.token = Some((token.to_owned(), Instant::now() + ttl));
        Ok(token.to_owned())
    }

    async fn exchange(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), PollError> {
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
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, body.to_vec()))
    }

    /// GET with the bearer and media type; one token refresh on 401.
    async fn get(&mut self, path: &str) -> Result<Option<Vec<u8>>, PollError> {
        let url = format!("{}{path}", self.api_url);
        let mut force = false;
        loop {
            let token = self.token(force).await?;
            let (status, body) = self
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
                _ => return Err(http_error(path, status, &body)),
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
            submit_all(ledger, &self.channel.id, decoded.movements, &mut stats).await?;
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
            submit_all(ledger, &self.channel.id, vec![movement], stats).await?;
            self.returns_done.insert(line.rma_id.clone());
        }
        Ok(())
    }
}

fn http_error(what: &str, status: u16, body: &[u8]) -> PollError {
    PollError::Http {
        what: what.to_owned(),
        status,
        body: String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

/// Submits movements in order and waits until each is durable (or refused).
///
/// Errors: [`PollError::Ledger`] on a store or availability failure.
pub async fn submit_all(
    ledger: &Ledger,
    channel: &str,
    movements: Vec<Movement>,
    stats: &mut PollStats,
) -> Result<(), PollError> {
    let pending: Vec<_> = movements
        .into_iter()
        .map(|movement| {
            let key = movement.idempotency_key.clone();
            (key, ledger.submit(movement))
        })
        .collect();
    let mut failure = None;
    for (key, ack) in pending {
        let outcome = match ack.await {
            Ok(Ack::Applied { .. }) => {
                stats.applied += 1;
                "applied"
            }
            Ok(Ack::Duplicate { .. }) => {
                stats.duplicates += 1;
                "duplicate"
            }
            Err(LedgerError::Rejected(error)) => {
                stats.rejected += 1;
                tracing::warn!(channel, key = %key, error = %error, "polled movement refused by the ledger");
                "rejected"
            }
            Err(error) => {
                failure.get_or_insert(error);
                "failed"
            }
        };
        metrics::counter!(POLL_MOVEMENTS_TOTAL, "channel" => channel.to_owned(), "outcome" => outcome)
            .increment(1);
    }
    match failure {
        Some(error) => Err(PollError::Ledger(error)),
        None => Ok(()),
    }
}

/// A running poller task; stop it with [`PollerHandle::stop`].
#[derive(Debug)]
pub struct PollerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PollerHandle {
    /// Runs `poll` every `interval` until stopped (the first poll at once).
    pub fn spawn<F, Fut>(name: String, interval: Duration, mut poll: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            tracing::info!(poller = %name, interval_ms = interval.as_millis() as u64, "poller started");
            loop {
                tokio::select! {
                    _ = poll() => {}
                    _ = stopped.changed() => break,
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => break,
                }
            }
            tracing::info!(poller = %name, "poller stopped");
        });
        Self { stop, task }
    }

    /// Stops the task (a poll in progress is abandoned; its durable part stays) and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the order poller of a bol.com channel; `None` when the channel is not bol.com or
/// polling is disabled (`order_poll_interval_ms = 0`).
pub fn start(
    channel: &ChannelConfig,
    ledger: Ledger,
    client: reqwest::Client,
) -> Option<PollerHandle> {
    let interval = channel.bolcom.as_ref()?.order_poll_interval_ms;
    if interval == 0 {
        return None;
    }
    let state = std::sync::Arc::new(tokio::sync::Mutex::new(BolcomPollState::new(
        channel, client,
    )?));
    let id = channel.id.clone();
    Some(PollerHandle::spawn(
        format!("bolcom:{id}"),
        Duration::from_millis(interval),
        move || {
            let state = state.clone();
            let ledger = ledger.clone();
            let id = id.clone();
            async move {
                let mut state = state.lock().await;
                match state.poll_once(&ledger).await {
                    Ok(stats) if stats.applied > 0 => {
                        tracing::info!(channel = %id, applied = stats.applied, orders = stats.orders_fetched, "bol.com poll applied movements")
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(channel = %id, error = %error, "bol.com poll failed")
                    }
                }
            }
        },
    ))
}
