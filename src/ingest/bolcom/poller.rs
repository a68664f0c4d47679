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
//! Every request goes through the channel's [`BolcomClient`] (`platforms::bolcom`), the same
//! instance the channel adapter uses: one OAuth token per credential for push and poll, and
//! the client's `Retry-After` and status classification ([`Retry::for_platform_error`]).
//!
//! May depend on: `domain`, `ledger`, `config`, `telemetry`, `platforms`, `ingest::poller`,
//! `ingest::bolcom::decode`.

use super::decode::{self as bolcom, Order};
use crate::config::{BolcomConfig, ChannelConfig};
use crate::ingest::poller::{
    self, Poll, PollFailure, PollStats, PollerHandle, PollerOptions, Retry, submit_all,
};
use crate::ledger::{Ledger, LedgerError};
use crate::platforms::bolcom::BolcomClient;
use crate::platforms::{HttpAnswer, PlatformClients, PlatformError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Most pages read per list call (50 orders a page at bol).
const MAX_PAGES: u32 = 100;
/// Returns remembered as done before the memory is cleared (keys still dedupe).
const RETURNS_MEMORY: usize = 100_000;

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
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
    Decode(#[from] bolcom::DecodeError),
    /// The ledger could not make a movement durable (retried next poll).
    #[error("ledger: {0}")]
    Ledger(LedgerError),
}

impl PollFailure for PollError {
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

/// The body of a 2xx answer, `None` for 404, the status error otherwise.
fn body_of(
    what: &str,
    answer: Result<HttpAnswer, PlatformError>,
) -> Result<Option<String>, PollError> {
    let platform = |error| PollError::Platform {
        what: what.to_owned(),
        error,
    };
    let answer = answer.map_err(platform)?;
    if answer.status == 404 {
        return Ok(None);
    }
    match answer.status_error() {
        Some(error) => Err(platform(error)),
        None => Ok(Some(answer.text)),
    }
}

/// The poller's memory and its channel's bol.com client (one per channel).
#[derive(Debug)]
pub struct BolcomPollState {
    channel: ChannelConfig,
    config: BolcomConfig,
    client: Arc<BolcomClient>,
    /// Open orders seen, with their list fingerprint.
    seen: HashMap<String, String>,
    /// Returns already restocked.
    returns_done: HashSet<String>,
}

impl BolcomPollState {
    /// A fresh state for a bol.com channel on `client` (the channel's client from
    /// [`PlatformClients`], shared with its adapter); `None` for other channels.
    pub fn with_client(channel: &ChannelConfig, client: Arc<BolcomClient>) -> Option<Self> {
        let config = channel.bolcom().cloned()?;
        Some(Self {
            channel: channel.clone(),
            config,
            client,
            seen: HashMap::new(),
            returns_done: HashSet::new(),
        })
    }

    /// A fresh state for a bol.com channel with a client of its own on `http` (tools and
    /// tests; the app uses [`with_client`](Self::with_client)); `None` for other channels.
    pub fn new(channel: &ChannelConfig, http: reqwest::Client) -> Option<Self> {
        let client = Arc::new(BolcomClient::new(channel.bolcom()?, http));
        Self::with_client(channel, client)
    }

    async fn order(&mut self, order_id: &str) -> Result<Option<Order>, PollError> {
        let what = format!("/retailer/orders/{order_id}");
        match body_of(&what, self.client.order(order_id).await)? {
            Some(body) => Ok(Some(bolcom::decode_order(body.as_bytes())?)),
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
            let Some(body) = body_of("open orders", self.client.open_fbr_orders(page).await)?
            else {
                break;
            };
            let orders = bolcom::decode_order_list(body.as_bytes())?;
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
            let answer = self.client.unhandled_fbr_returns(page).await;
            let Some(body) = body_of("unhandled returns", answer)? else {
                break;
            };
            let page_lines = bolcom::decode_returns(body.as_bytes())?;
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
/// ([`crate::ingest::poller::spawn`]) with the channel's client from `clients` (the one its
/// adapter uses, so both share one token); `None` when the channel is not bol.com or
/// polling is disabled (`order_poll_interval_ms = 0`).
pub fn start(
    channel: &ChannelConfig,
    ledger: Ledger,
    clients: &PlatformClients,
    gate: poller::PollGate,
) -> Option<PollerHandle> {
    let section = channel.bolcom()?;
    let interval = section.order_poll_interval_ms;
    if interval == 0 {
        return None;
    }
    let state = BolcomPollState::with_client(channel, clients.bolcom(&channel.id, section))?;
    Some(poller::spawn(
        PollerOptions::new(
            format!("bolcom:{}", channel.id),
            Duration::from_millis(interval),
        )
        .gated(gate),
        BolcomPoller { state, ledger },
    ))
}

#[cfg(test)]
mod tests {
    //! The wiring of the app, against the bol.com simulator: the channel adapter (built by
    //! `channels::build_adapter`) and the poller (started by `ingest::start_pollers`) of one
    //! channel take the same client from one `PlatformClients`, so they share one token.
    //! Test-only use of `channels`: ingest itself never depends on it.

    use crate::channels::{ItemOutcome, PushItem, build_adapter};
    use crate::config::Config;
    use crate::domain::NullSink;
    use crate::ledger::{Ledger, LedgerOptions};
    use crate::platforms::PlatformClients;
    use crate::sandbox::bolcom::{self as sim, BolcomSimulatorOptions, SimOffer, SimOrderLine};
    use crate::store::embedded::EmbeddedStore;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn the_adapter_and_the_poller_of_a_channel_fetch_one_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = BolcomSimulatorOptions {
            offers: vec![SimOffer {
                offer_id: "offer-1".to_owned(),
                reference: "SKU-1".to_owned(),
                ean: "8710000000001".to_owned(),
                amount: 5,
            }],
            process_delay_ms: 5,
            ..BolcomSimulatorOptions::default()
        };
        let sim = sim::start(options, listener).await.unwrap();
        sim.place_order(
            "FBR",
            &[SimOrderLine {
                offer_id: "offer-1".into(),
                quantity: 1,
            }],
        )
        .unwrap();
        let config = Config::from_toml(&format!(
            r#"
            [[locations]]
            id = "WH-1"
            [[channels]]
            id = "bol-nl"
            kind = "bolcom"
            locations = ["WH-1"]
            [channels.bolcom]
            api_url = "{api}"
            token_url = "{token}"
            client_id = "sandbox-client"
            client_secret = "sandbox-secret"
            order_poll_interval_ms = 3600000
            process_status_poll_ms = 2
            listings = [{{ sku = "SKU-1", offer_id = "offer-1" }}]
            "#,
            api = sim.base_url(),
            token = sim.token_url(),
        ))
        .unwrap();
        let clients = PlatformClients::build(&config.channels, reqwest::Client::new());
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.db")).unwrap());
        let ledger = Ledger::start(store, Arc::new(NullSink), LedgerOptions::default());

        // Poll: the first poll runs at once.
        let pollers = crate::ingest::start_pollers(&config, &ledger, &clients);
        assert_eq!(pollers.len(), 1);
        let mut polled = false;
        for _ in 0..300 {
            if pollers[0].stats().polls >= 1 {
                polled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(polled, "the first poll did not end within 3 s");
        let stats = pollers[0].stats();
        assert_eq!(stats.failures, 0, "{:?}", stats.last_error);
        assert_eq!(stats.totals.orders_fetched, 1);

        // Push: the adapter of the same channel, from the same registry.
        let adapter = build_adapter(&config.channels[0], &clients).unwrap();
        let report = adapter
            .push_until_settled(&[PushItem {
                sku: "SKU-1".to_owned(),
                quantity: 4,
                change_from: None,
            }])
            .await;
        assert_eq!(
            report.results[0].outcome,
            ItemOutcome::Accepted { quantity: 4 },
            "{:?}",
            report.error
        );
        assert_eq!(sim.offer("offer-1").unwrap().amount, 4);

        assert_eq!(
            sim.counters().tokens_issued,
            1,
            "one token endpoint hit for a poll and a push"
        );
        let section = config.channels[0].bolcom().unwrap();
        assert_eq!(clients.bolcom("bol-nl", section).token_cache().fetches(), 1);
        for poller in pollers {
            poller.stop().await;
        }
    }
}
