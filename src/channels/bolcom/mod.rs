//! The bol.com channel adapter (PLATFORMS.md §3, Retailer API v10).
//!
//! Owns: one `PUT /retailer/offers/{offerId}/stock` per offer (bol has no bulk stock
//! endpoint, §3.3), tracking each update's process status to SUCCESS / FAILURE / TIMEOUT
//! (§3.4), reading offers back, and the SKU → offer mapping. HTTP, the OAuth2 token (one
//! cache per credential, shared with the order poller), throttle signals and status
//! classification are the [`BolcomClient`]'s.
//!
//! Decisions:
//! - `managedByRetailer: true`. The amount we push is ATP: physical stock minus the orders
//!   we already ingested (bol orders included). With `false`, bol would subtract every open
//!   order again and undersell; with `true` it subtracts only orders placed after this
//!   update, which are exactly those we have not seen yet (§3.8).
//! - A push returns once bol answered the PUT: the item is `Submitted` under its process
//!   status id, and propagation reads the status when due
//!   ([`ChannelAdapter::check_submitted`], after `process_status_poll_ms`, then doubling up
//!   to 1 s), pushing other offers meanwhile.
//! - Updates are serialised per offer: the adapter remembers each offer's update until its
//!   process status leaves PENDING, and a push of that offer checks it first and sends
//!   nothing while it is pending; propagation does not push a listing whose update is in
//!   flight ([`ChannelAdapter::serialises_listings`]). Two updates of one offer are never in
//!   flight, so bol cannot apply them out of order (§3.8).
//! - Outcomes: SUCCESS → `Accepted`; FAILURE → `Rejected` (`PROCESS_STATUS_FAILURE`, the
//!   listing is isolated and retried alone); TIMEOUT or still PENDING
//!   `process_status_wait_ms` after the PUT → `Retryable`; 400/404 → `Rejected`; 401 (after one token
//!   refresh), 429, 5xx, transport → `Retryable` with the classified error.
//! - `amount` is capped at `max_amount` (999, §3.3 [?]) with a warning and the counter
//!   `stocksync_channel_bolcom_amount_capped_total`: bol refuses larger amounts with 400.
//! - Rate limits (§3.7): 429 + `Retry-After` becomes a throttle signal; the
//!   `x-ratelimit-*` headers become a budget so propagation waits for the window's reset
//!   when `remaining` hits 0. `PushReport.requests` counts stock PUTs only: the channel's
//!   `rate_limit` models bol's stock endpoint; process-status reads have their own limit.
//! - `max_batch` is 1: one PUT per push keeps the token bucket exact.
//! - No conditional write exists (issue 9 §4), and none is needed for the sales window:
//!   with `managedByRetailer: true` bol subtracts every order placed after an update from
//!   the amount we sent, so our value never overwrites bol's own sales; what bounds the
//!   remaining window (an order placed while our PUT is PENDING) is the order poller's
//!   `poll_interval_secs` plus the process-status wait, after which the ingested order
//!   lowers the ATP and queues a corrected push.
//!
//! May depend on: `channels`, `config`, `platforms`, `telemetry`. Never `ledger`, `ingest` or
//! `store`.

pub mod config;
pub mod request;
pub mod response;
#[cfg(test)]
mod tests;

use crate::channels::{
    ChannelAdapter, ChannelError, ItemOutcome, ItemResult, LevelsReport, PushItem, PushReport,
    ThrottleSignal,
};
use crate::config::{BolcomConfig, ChannelKind};
use crate::platforms::PlatformError;
use crate::platforms::bolcom::payload::{self, ProcessState};
use crate::platforms::bolcom::{self as platform, BolcomClient};
use async_trait::async_trait;
use config::OfferMap;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Counter of amounts capped at `max_amount`, labelled by channel.
pub const AMOUNT_CAPPED_TOTAL: &str = "stocksync_channel_bolcom_amount_capped_total";
/// Longest pause between two process-status polls.
const POLL_MAX: Duration = Duration::from_secs(1);

/// A stock update whose process status had not left PENDING when its push gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingUpdate {
    process_status_id: String,
    amount: u64,
    /// After this instant a PENDING status makes the push `Retryable` (the PUT plus
    /// `process_status_wait_ms`).
    deadline: Instant,
    /// The pause before the next status read, in milliseconds.
    pause_ms: u64,
}

/// The bol.com adapter of one channel.
#[derive(Debug)]
pub struct BolcomAdapter {
    channel: String,
    config: BolcomConfig,
    offers: OfferMap,
    client: Arc<BolcomClient>,
    /// Per offer: the lock that serialises its pushes, holding its unresolved update.
    offer_locks: DashMap<String, Arc<tokio::sync::Mutex<Option<PendingUpdate>>>>,
}

impl BolcomAdapter {
    /// Builds the adapter with a client of its own on `http` (see
    /// [`with_client`](Self::with_client) to share one).
    ///
    /// Errors: [`ChannelError::InvalidConfig`] for an unusable URL or a duplicate mapping.
    pub fn new(
        channel: &str,
        config: &BolcomConfig,
        http: reqwest::Client,
    ) -> Result<Self, ChannelError> {
        Self::with_client(channel, config, Arc::new(BolcomClient::new(config, http)))
    }

    /// Builds the adapter on the credential's shared platform client.
    ///
    /// Errors: [`ChannelError::InvalidConfig`] for an unusable URL or a duplicate mapping.
    pub fn with_client(
        channel: &str,
        config: &BolcomConfig,
        client: Arc<BolcomClient>,
    ) -> Result<Self, ChannelError> {
        for url in [&config.api_url, &config.token_url] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(ChannelError::InvalidConfig {
                    channel: channel.to_owned(),
                    message: format!("{url:?} must start with http:// or https://"),
                });
            }
        }
        Ok(Self {
            channel: channel.to_owned(),
            offers: OfferMap::from_config(channel, config)?,
            config: config.clone(),
            client,
            offer_locks: DashMap::new(),
        })
    }

    /// The SKU ↔ offer mapping.
    pub fn offers(&self) -> &OfferMap {
        &self.offers
    }

    fn offer_lock(&self, offer: &str) -> Arc<tokio::sync::Mutex<Option<PendingUpdate>>> {
        self.offer_locks
            .entry(offer.to_owned())
            .or_default()
            .value()
            .clone()
    }

    async fn read_process(
        &self,
        id: &str,
        report: &mut PushReport,
    ) -> Result<ProcessState, PlatformError> {
        let answer = self.client.process_status(id).await?;
        // Process-status reads have their own limit: only 429 counts, not the window.
        report.throttle.merge(ThrottleSignal {
            throttled: answer.status == 429,
            retry_after_ms: answer.retry_after_ms,
            budget: None,
        });
        if let Some(error) = answer.status_error() {
            return Err(error);
        }
        Ok(payload::decode_process_status(&answer)?.1)
    }

    /// Pushes one item to its offer, serialised with every other push of that offer.
    async fn push_one(&self, item: &PushItem, offer: &str, report: &mut PushReport) -> ItemOutcome {
        let lock = self.offer_lock(offer);
        let mut pending = lock.lock().await;
        let amount = if item.quantity > self.config.max_amount {
            tracing::warn!(channel = %self.channel, sku = %item.sku, atp = item.quantity, max_amount = self.config.max_amount,
                "ATP above bol.com's maximum amount; pushing the maximum");
            metrics::counter!(AMOUNT_CAPPED_TOTAL, "channel" => self.channel.clone()).increment(1);
            self.config.max_amount
        } else {
            item.quantity
        };
        if let Some(previous) = pending.clone() {
            match self.read_process(&previous.process_status_id, report).await {
                Ok(ProcessState::Pending) => {
                    return ItemOutcome::Retryable {
                        reason: format!(
                            "previous stock update {} of offer {offer} is still PENDING",
                            previous.process_status_id
                        ),
                    };
                }
                Ok(ProcessState::Success) if previous.amount == amount => {
                    *pending = None;
                    return ItemOutcome::Accepted { quantity: amount };
                }
                Ok(_) => *pending = None,
                Err(error) => return retryable(report, error),
            }
        }
        let body = request::stock_body(amount);
        report.requests += 1;
        let answer = match self.client.put_stock(offer, &body).await {
            Ok(answer) => answer,
            Err(error) => return retryable(report, error),
        };
        report.throttle.merge(platform::throttle(&answer));
        if let Some((code, message)) = response::offer_refusal(&answer) {
            return ItemOutcome::Rejected { code, message };
        }
        if let Some(error) = answer.status_error() {
            return retryable(report, error);
        }
        let id = match payload::decode_process_status(&answer) {
            Ok((id, _)) => id,
            Err(error) => return retryable(report, error),
        };
        // The update may apply at any time from now: remember it so nothing overtakes it.
        let first_pause_ms = self.config.process_status_poll_ms.max(1);
        *pending = Some(PendingUpdate {
            process_status_id: id.clone(),
            amount,
            deadline: Instant::now() + Duration::from_millis(self.config.process_status_wait_ms),
            pause_ms: first_pause_ms,
        });
        ItemOutcome::Submitted {
            token: id,
            check_after_ms: first_pause_ms,
        }
    }

    /// One process-status read of the update `token` of `offer`: SUCCESS → `Accepted`;
    /// FAILURE → `Rejected`; TIMEOUT → `Retryable`; still PENDING → `Submitted` again after
    /// a pause doubling up to [`POLL_MAX`], or `Retryable` once `process_status_wait_ms`
    /// passed since the PUT (the update stays remembered, so the offer's next push checks
    /// it first); a failed read → `Retryable`, the update remembered.
    async fn check_one(&self, offer: &str, token: &str, report: &mut PushReport) -> ItemOutcome {
        let lock = self.offer_lock(offer);
        let mut pending = lock.lock().await;
        let Some(update) = pending
            .clone()
            .filter(|update| update.process_status_id == token)
        else {
            return ItemOutcome::Retryable {
                reason: format!("process status {token} of offer {offer} is no longer tracked"),
            };
        };
        match self.read_process(token, report).await {
            Ok(ProcessState::Success) => {
                *pending = None;
                ItemOutcome::Accepted {
                    quantity: update.amount,
                }
            }
            Ok(ProcessState::Failure(message)) => {
                *pending = None;
                ItemOutcome::Rejected {
                    code: "PROCESS_STATUS_FAILURE".to_owned(),
                    message: format!("process status {token}: {message}"),
                }
            }
            Ok(ProcessState::Timeout(message)) => {
                *pending = None;
                ItemOutcome::Retryable {
                    reason: format!("process status {token} TIMEOUT: {message}"),
                }
            }
            Ok(ProcessState::Pending) if Instant::now() >= update.deadline => {
                ItemOutcome::Retryable {
                    reason: format!("process status {token} still PENDING"),
                }
            }
            Ok(ProcessState::Pending) => {
                let pause_ms = update
                    .pause_ms
                    .saturating_mul(2)
                    .min(u64::try_from(POLL_MAX.as_millis()).unwrap_or(u64::MAX));
                if let Some(update) = pending.as_mut() {
                    update.pause_ms = pause_ms;
                }
                ItemOutcome::Submitted {
                    token: token.to_owned(),
                    check_after_ms: pause_ms,
                }
            }
            Err(error) => {
                let outcome = ItemOutcome::Retryable {
                    reason: error.to_string(),
                };
                if !error.is_throttled() {
                    report.error = Some(error.into());
                }
                outcome
            }
        }
    }
}

/// A `Retryable` outcome for a request-level failure, recorded in the report.
fn retryable(report: &mut PushReport, error: PlatformError) -> ItemOutcome {
    let outcome = ItemOutcome::Retryable {
        reason: error.to_string(),
    };
    report.error = Some(error.into());
    outcome
}

#[async_trait]
impl ChannelAdapter for BolcomAdapter {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Bolcom
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn is_mapped(&self, sku: &str) -> bool {
        self.offers.offer(sku).is_some()
    }

    fn listing_count(&self) -> usize {
        self.offers.len()
    }

    async fn push(&self, items: &[PushItem]) -> PushReport {
        let mut report = PushReport::default();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let outcome = match self.offers.offer(&item.sku) {
                None => ItemOutcome::Rejected {
                    code: "UNMAPPED_SKU".to_owned(),
                    message: format!(
                        "SKU {} has no bol.com offer on channel {}",
                        item.sku, self.channel
                    ),
                },
                Some(_) if report.error.is_some() => ItemOutcome::Deferred,
                Some(offer) => {
                    let offer = offer.to_owned();
                    self.push_one(item, &offer, &mut report).await
                }
            };
            results.push(ItemResult {
                sku: item.sku.clone(),
                outcome,
            });
        }
        report.results = results;
        report
    }

    async fn check_submitted(&self, token: &str, items: &[PushItem]) -> PushReport {
        let mut report = PushReport::default();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let outcome = match self.offers.offer(&item.sku) {
                Some(offer) => {
                    let offer = offer.to_owned();
                    self.check_one(&offer, token, &mut report).await
                }
                None => ItemOutcome::Retryable {
                    reason: format!("SKU {} has no bol.com offer", item.sku),
                },
            };
            results.push(ItemResult {
                sku: item.sku.clone(),
                outcome,
            });
        }
        report.results = results;
        report
    }

    fn serialises_listings(&self) -> bool {
        true
    }

    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        let mut report = LevelsReport::default();
        for sku in skus {
            let Some(offer) = self.offers.offer(sku) else {
                report.levels.push((sku.clone(), None));
                continue;
            };
            report.requests += 1;
            let answer = self.client.offer(offer).await?;
            report.throttle.merge(platform::throttle(&answer));
            report
                .levels
                .push((sku.clone(), response::decode_offer_amount(&answer)?));
        }
        Ok(report)
    }
}
