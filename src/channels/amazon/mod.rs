//! The Amazon SP-API channel adapter (PLATFORMS.md §4).
//!
//! Owns: pushing MFN quantities as Listings Items `PATCH` with a `merge` of
//! `/attributes/fulfillment_availability` (DEFAULT channel, §4.1), bulk pushes as one
//! JSON_LISTINGS_FEED (§4.2), reading listings back, and the SKU → seller SKU mapping.
//!
//! Behaviour of one push (`max_batch` = `feed_max_messages`, ≤ 25,000):
//! - A SKU may have an MFN and an FBA listing at once; only the MFN one is pushed. FBA
//!   listings are never given a quantity (a DEFAULT quantity would flip the offer to MFN,
//!   §4.6): a SKU with only an FBA listing is not mapped for propagation, and if it reaches
//!   `push` it is `Rejected` (`FBA_SKU`) without a request. Unmapped SKUs are `Rejected`
//!   (`UNMAPPED_SKU`).
//! - A listing whose mapping changed from MFN to FBA gets one final DEFAULT 0, read back,
//!   and nothing after: [`fba`] (started by [`AmazonAdapter::start_fba_retirement`], which
//!   `channels::build_adapter` calls).
//! - At least `feed_min_items` sendable items, and a feed submission left in the
//!   `feeds_per_window` / `feed_window_secs` budget: one feed (createFeedDocument → PUT
//!   the document → createFeed), whose items come back `Submitted` under the feed id: the
//!   push returns at once and propagation pushes other listings while Amazon processes it.
//!   When propagation asks ([`ChannelAdapter::check_submitted`], every `feed_poll_ms`), one
//!   getFeed: still processing → `Submitted` again; DONE → the processing report, each
//!   message's ERROR issue becoming that item's `Rejected`, the others `Accepted`;
//!   FATAL/CANCELLED or no result within `feed_wait_ms` of createFeed → every item
//!   `Retryable` (a throttled or failed getFeed is asked again at the next check, never
//!   resubmitted). A feed that fails before createFeed accepted it gives its submission
//!   back to the budget.
//! - Otherwise one PATCH for the first sendable item and `Deferred` for the rest, so each
//!   push is exactly one patchListingsItem request and propagation's token bucket (5 req/s,
//!   burst 5 for the channel) is the pacing: `ACCEPTED` → `Accepted`, `INVALID` →
//!   `Rejected` with the first ERROR issue code, 429 → throttled (`x-amzn-RateLimit-Limit`
//!   gives the pause when there is no `Retry-After`), 5xx/transport → `Retryable`.
//! - `ACCEPTED` means queued, not applied (§4.1); Amazon applies it moments later, and a
//!   PATCH and a feed for one SKU may be applied out of order (§4.6), which is why a feed
//!   is only used when the queue is large. A newer value for a listing whose feed is still
//!   processing goes out at once (a PATCH or the next feed); propagation ignores the older
//!   feed's result for that listing, so it never overwrites the newer value's bookkeeping
//!   (and writes the newer value once more when Amazon applied the older feed, since the
//!   two may have been applied out of order).
//! - `PushReport.requests` is 1 per push: the channel's `rate_limit` models
//!   patchListingsItem; feed operations have their own limits and the feed budget.
//!
//! - No conditional write exists for `fulfillment_availability` (issue 9 §4): a PATCH or
//!   feed sets the quantity outright, so an MFN order Amazon took after our ledger read
//!   and before Amazon applied the update is counted again until it reaches the ledger.
//!   What bounds that window: the Orders poller's interval (or, with the notifications
//!   bridge, the ORDER_CHANGE delivery latency), after which the order's reservation
//!   lowers the ATP and queues a corrected push; Amazon's own asynchronous apply (seconds
//!   to minutes, §4.1) adds to it. FBA quantities are never written, so FBA sales are
//!   outside the window entirely.
//!
//! HTTP, the LWA token (one cache per credential, shared with the pollers), throttle
//! signals and status classification are the [`AmazonClient`]'s.
//!
//! May depend on: `channels`, `config`, `platforms`, `telemetry`. Never `ledger`, `ingest`
//! or `store`.

pub mod config;
pub mod fba;
pub mod request;
pub mod response;
#[cfg(test)]
mod tests;

use crate::channels::{
    ChannelAdapter, ChannelError, ItemOutcome, ItemResult, LevelsReport, PushItem, PushReport,
};
use crate::config::{AmazonConfig, ChannelKind};
use crate::platforms::PlatformError;
use crate::platforms::amazon::{self as platform, AmazonClient};
use async_trait::async_trait;
use config::{ListingMap, SkuListings};
use fba::{FbaDefaultReport, FbaRetirement};
use response::{FeedStatus, MessageOutcome, PatchAnswer};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Counter of JSON_LISTINGS_FEED submissions, labelled by channel and outcome.
pub const FEEDS_TOTAL: &str = "stocksync_channel_amazon_feeds_total";
/// Most submitted feeds whose result is tracked at once (Amazon's budget allows 5 per
/// 5 minutes; propagation bounds its own submissions well below this).
const MAX_FEEDS_TRACKED: usize = 64;
/// The content type of feed documents.
const FEED_CONTENT_TYPE: &str = "application/json; charset=UTF-8";

/// The Amazon adapter of one channel.
#[derive(Debug)]
pub struct AmazonAdapter {
    channel: String,
    config: AmazonConfig,
    listings: ListingMap,
    client: Arc<AmazonClient>,
    /// When recent feeds were submitted (for the 5-per-5-min budget).
    feeds: Mutex<VecDeque<Instant>>,
    /// Submitted feeds whose result propagation has not had yet: feed id and the instant
    /// after which it counts as failed (`feed_wait_ms` after createFeed); at most
    /// [`MAX_FEEDS_TRACKED`].
    in_flight: Mutex<VecDeque<(String, Instant)>>,
    /// The DEFAULT entries of the FBA listings (MFN → FBA, [`fba`]).
    fba: Arc<FbaRetirement>,
    /// The background task settling them, aborted when the adapter is dropped.
    fba_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for AmazonAdapter {
    fn drop(&mut self) {
        if let Some(task) = self
            .fba_task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl AmazonAdapter {
    /// Builds the adapter with a client of its own on `http` (see
    /// [`with_client`](Self::with_client) to share one).
    ///
    /// Errors: [`ChannelError::InvalidConfig`] for an unusable URL or a duplicate mapping.
    pub fn new(
        channel: &str,
        config: &AmazonConfig,
        http: reqwest::Client,
    ) -> Result<Self, ChannelError> {
        Self::with_client(channel, config, Arc::new(AmazonClient::new(config, http)))
    }

    /// Builds the adapter on the credential's shared platform client.
    ///
    /// Errors: [`ChannelError::InvalidConfig`] for an unusable URL or a duplicate mapping.
    pub fn with_client(
        channel: &str,
        config: &AmazonConfig,
        client: Arc<AmazonClient>,
    ) -> Result<Self, ChannelError> {
        for url in [&config.api_url, &config.token_url] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(ChannelError::InvalidConfig {
                    channel: channel.to_owned(),
                    message: format!("{url:?} must start with http:// or https://"),
                });
            }
        }
        let listings = ListingMap::from_config(channel, config)?;
        let fba = Arc::new(FbaRetirement::new(
            channel,
            config,
            Arc::clone(&client),
            listings
                .fba_listings()
                .into_iter()
                .map(|(sku, listing)| (sku.to_owned(), listing.seller_sku.clone())),
        ));
        Ok(Self {
            channel: channel.to_owned(),
            listings,
            config: config.clone(),
            client,
            feeds: Mutex::new(VecDeque::new()),
            in_flight: Mutex::new(VecDeque::new()),
            fba,
            fba_task: Mutex::new(None),
        })
    }

    /// One pass over the FBA listings whose DEFAULT entry is not settled yet (a listing
    /// moved from MFN to FBA gets its final 0 here, see [`fba`]); returns every FBA
    /// listing's state, sorted by seller SKU.
    pub async fn retire_fba_defaults(&self) -> Vec<FbaDefaultReport> {
        self.fba.run_pass().await
    }

    /// Starts the background task that runs [`retire_fba_defaults`](Self::retire_fba_defaults)
    /// now and every [`fba::RETRY_MS`] until every FBA listing is settled. Does nothing
    /// without FBA listings, when already started, or outside a tokio runtime.
    pub fn start_fba_retirement(&self) {
        if self.listings.fba_listings().is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut task = self
            .fba_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if task.is_some() {
            return;
        }
        let fba = Arc::clone(&self.fba);
        *task = Some(runtime.spawn(async move {
            loop {
                fba.run_pass().await;
                if !fba.pending().await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(fba::RETRY_MS)).await;
            }
        }));
    }

    /// The SKU → listing mapping.
    pub fn listings(&self) -> &ListingMap {
        &self.listings
    }

    /// Takes a feed submission from the budget if one is left.
    fn take_feed_slot(&self) -> bool {
        let mut feeds = self
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let window = Duration::from_secs(self.config.feed_window_secs);
        while feeds
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            feeds.pop_front();
        }
        if feeds.len() >= self.config.feeds_per_window as usize {
            return false;
        }
        feeds.push_back(now);
        true
    }

    async fn patch(&self, seller_sku: &str, quantity: u64, report: &mut PushReport) -> ItemOutcome {
        let body = request::patch_body(&self.config.product_type, quantity);
        report.requests += 1;
        let answer = match self
            .client
            .patch_listing(
                &self.config.seller_id,
                seller_sku,
                &self.config.marketplace_id,
                &body,
            )
            .await
        {
            Ok(answer) => answer,
            Err(error) => return retryable(report, error.into()),
        };
        report.throttle.merge(platform::throttle(&answer));
        match response::decode_patch(&answer) {
            Ok(PatchAnswer::Accepted) => ItemOutcome::Accepted { quantity },
            Ok(PatchAnswer::Invalid(code, message)) => ItemOutcome::Rejected { code, message },
            Err(error) => retryable(report, error.into()),
        }
    }

    /// Gives back the slot taken by [`take_feed_slot`](Self::take_feed_slot) when the feed
    /// never reached createFeed (Amazon counts submissions, not attempts).
    fn release_feed_slot(&self) {
        self.feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_back();
    }

    /// Submits `items` (seller SKU, quantity) as one JSON_LISTINGS_FEED and returns each
    /// item's outcome: `Submitted` under the feed id once createFeed accepted it (the
    /// processing report is read by [`check_feed`](Self::check_feed) when propagation asks),
    /// `Retryable` when the submission failed.
    async fn submit_feed(
        &self,
        items: &[(String, u64)],
        report: &mut PushReport,
    ) -> Vec<ItemOutcome> {
        report.requests += 1;
        let mut submitted = false;
        let result = self.run_submission(items, &mut submitted).await;
        match result {
            Ok(feed_id) => {
                self.track_feed(&feed_id);
                items
                    .iter()
                    .map(|_| ItemOutcome::Submitted {
                        token: feed_id.clone(),
                        check_after_ms: self.config.feed_poll_ms,
                    })
                    .collect()
            }
            Err(error) => {
                if !submitted {
                    self.release_feed_slot();
                }
                metrics::counter!(FEEDS_TOTAL, "channel" => self.channel.clone(), "outcome" => "failed")
                    .increment(1);
                feed_failed(items.len(), error, report)
            }
        }
    }

    /// Remembers when a submitted feed's result is due at the latest (`feed_wait_ms`);
    /// at most [`MAX_FEEDS_TRACKED`], the oldest forgotten first.
    fn track_feed(&self, feed_id: &str) {
        let deadline = Instant::now() + Duration::from_millis(self.config.feed_wait_ms);
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while in_flight.len() >= MAX_FEEDS_TRACKED {
            in_flight.pop_front();
        }
        in_flight.push_back((feed_id.to_owned(), deadline));
    }

    /// The deadline of a tracked feed, and whether it is still tracked.
    fn feed_deadline(&self, feed_id: &str) -> Option<Instant> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(id, _)| id == feed_id)
            .map(|(_, deadline)| *deadline)
    }

    fn forget_feed(&self, feed_id: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(id, _)| id != feed_id);
    }

    /// One getFeed for a submitted feed: the processing report's outcomes once DONE (each
    /// message's ERROR issue becoming that item's `Rejected`, the others `Accepted`),
    /// `Submitted` again while it processes (a throttled or failed status read too: the
    /// feed is polled again, never resubmitted), every item `Retryable` on FATAL/CANCELLED
    /// or when `feed_wait_ms` passed since createFeed.
    async fn check_feed(
        &self,
        feed_id: &str,
        items: &[(String, u64)],
        report: &mut PushReport,
    ) -> Vec<ItemOutcome> {
        let Some(deadline) = self.feed_deadline(feed_id) else {
            let error = PlatformError::Transport {
                message: format!(
                    "feed {feed_id} is not tracked (restarted, or too many feeds in flight)"
                ),
            };
            return feed_failed(items.len(), error, report);
        };
        let result = match self.client.feed(feed_id).await {
            Ok(answer) => match response::decode_feed_status(&answer) {
                Ok(FeedStatus::Done(document)) => self
                    .read_processing_report(document, items.len())
                    .await
                    .map(Some),
                Ok(FeedStatus::Failed(status)) => Err(PlatformError::Server {
                    status: 200,
                    message: format!("feed {feed_id} ended {status}"),
                }),
                Ok(FeedStatus::Processing)
                | Err(PlatformError::Throttled { .. })
                | Err(PlatformError::Server { .. })
                | Err(PlatformError::Transport { .. }) => Ok(None),
                Err(error) => Err(error),
            },
            Err(PlatformError::Throttled { .. })
            | Err(PlatformError::Server { .. })
            | Err(PlatformError::Transport { .. }) => Ok(None),
            Err(error) => Err(error),
        };
        let result = match result {
            Ok(None) if Instant::now() >= deadline => Err(PlatformError::Transport {
                message: format!("feed {feed_id} not processed within feed_wait_ms"),
            }),
            other => other,
        };
        match result {
            Ok(None) => items
                .iter()
                .map(|_| ItemOutcome::Submitted {
                    token: feed_id.to_owned(),
                    check_after_ms: self.config.feed_poll_ms,
                })
                .collect(),
            Ok(Some(outcomes)) => {
                self.forget_feed(feed_id);
                metrics::counter!(FEEDS_TOTAL, "channel" => self.channel.clone(), "outcome" => "done")
                    .increment(1);
                outcomes
                    .into_iter()
                    .zip(items)
                    .map(|(outcome, (_, quantity))| match outcome {
                        MessageOutcome::Accepted => ItemOutcome::Accepted {
                            quantity: *quantity,
                        },
                        MessageOutcome::Rejected(code, message) => {
                            ItemOutcome::Rejected { code, message }
                        }
                    })
                    .collect()
            }
            Err(error) => {
                self.forget_feed(feed_id);
                metrics::counter!(FEEDS_TOTAL, "channel" => self.channel.clone(), "outcome" => "failed")
                    .increment(1);
                feed_failed(items.len(), error, report)
            }
        }
    }

    /// The submission part of the feed flow of §4.2 (createFeedDocument → PUT the document
    /// → createFeed); `submitted` turns true once createFeed accepted the feed.
    async fn run_submission(
        &self,
        items: &[(String, u64)],
        submitted: &mut bool,
    ) -> Result<String, PlatformError> {
        let answer = self.client.create_feed_document(FEED_CONTENT_TYPE).await?;
        if let Some(error) = platform::status_error(&answer) {
            return Err(error);
        }
        let (Some(document_id), Some(upload_url)) = (
            answer.body["feedDocumentId"].as_str().map(str::to_owned),
            answer.body["url"].as_str().map(str::to_owned),
        ) else {
            return Err(PlatformError::Decode {
                message: "createFeedDocument answer without feedDocumentId/url".to_owned(),
            });
        };
        let document =
            request::feed_document(&self.config.seller_id, &self.config.product_type, items);
        let upload = self
            .client
            .upload_document(&upload_url, FEED_CONTENT_TYPE, document.to_string())
            .await?;
        if let Some(error) = platform::status_error(&upload) {
            return Err(error);
        }
        let create = json!({
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": [self.config.marketplace_id],
            "inputFeedDocumentId": document_id,
        });
        let answer = self.client.create_feed(&create).await?;
        if let Some(error) = platform::status_error(&answer) {
            return Err(error);
        }
        let feed_id = answer.body["feedId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| PlatformError::Decode {
                message: "createFeed answer without feedId".to_owned(),
            })?;
        *submitted = true;
        tracing::info!(channel = %self.channel, feed_id = %feed_id, messages = items.len(), "JSON_LISTINGS_FEED submitted");
        Ok(feed_id)
    }

    /// Reads a DONE feed's processing report (`None`: Amazon gave no report, every message
    /// accepted).
    async fn read_processing_report(
        &self,
        result_document: Option<String>,
        messages: usize,
    ) -> Result<Vec<MessageOutcome>, PlatformError> {
        let Some(result_document) = result_document else {
            return Ok(vec![MessageOutcome::Accepted; messages]);
        };
        let answer = self.client.feed_document(&result_document).await?;
        if let Some(error) = platform::status_error(&answer) {
            return Err(error);
        }
        let report_url = answer.body["url"]
            .as_str()
            .ok_or_else(|| PlatformError::Decode {
                message: "getFeedDocument answer without url".to_owned(),
            })?
            .to_owned();
        let report = self.client.download_document(&report_url).await?;
        if let Some(error) = platform::status_error(&report) {
            return Err(error);
        }
        Ok(response::map_processing_report(&report.body, messages))
    }
}

/// Every item `Retryable` after a feed failed as a whole; a throttled failure becomes the
/// report's throttle signal.
fn feed_failed(items: usize, error: PlatformError, report: &mut PushReport) -> Vec<ItemOutcome> {
    if let PlatformError::Throttled { retry_after_ms } = &error {
        report.throttle.throttled = true;
        report.throttle.retry_after_ms = *retry_after_ms;
    }
    let reason = error.to_string();
    report.error = Some(error.into());
    (0..items)
        .map(|_| ItemOutcome::Retryable {
            reason: reason.clone(),
        })
        .collect()
}

fn retryable(report: &mut PushReport, error: ChannelError) -> ItemOutcome {
    let outcome = ItemOutcome::Retryable {
        reason: error.to_string(),
    };
    report.error = Some(error);
    outcome
}

#[async_trait]
impl ChannelAdapter for AmazonAdapter {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Amazon
    }

    fn max_batch(&self) -> usize {
        self.config.feed_max_messages.max(1)
    }

    fn is_mapped(&self, sku: &str) -> bool {
        self.listings.mfn(sku).is_some()
    }

    fn listing_count(&self) -> usize {
        self.listings.pushable()
    }

    async fn push(&self, items: &[PushItem]) -> PushReport {
        let mut report = PushReport::default();
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let mut sendable = Vec::new();
        for (position, item) in items.iter().enumerate() {
            match self.listings.listings(&item.sku) {
                None => {
                    outcomes[position] = Some(ItemOutcome::Rejected {
                        code: "UNMAPPED_SKU".to_owned(),
                        message: format!(
                            "SKU {} has no Amazon listing on channel {}",
                            item.sku, self.channel
                        ),
                    })
                }
                Some(SkuListings {
                    mfn: Some(listing), ..
                }) => sendable.push((position, listing.seller_sku.clone())),
                Some(_) => {
                    outcomes[position] = Some(ItemOutcome::Rejected {
                        code: "FBA_SKU".to_owned(),
                        message: format!(
                            "SKU {} is fulfilled by Amazon; a DEFAULT quantity would flip it to MFN",
                            item.sku
                        ),
                    })
                }
            }
        }
        if sendable.len() >= self.config.feed_min_items && self.take_feed_slot() {
            let feed_items: Vec<(String, u64)> = sendable
                .iter()
                .map(|(position, seller_sku)| (seller_sku.clone(), items[*position].quantity))
                .collect();
            let feed_outcomes = self.submit_feed(&feed_items, &mut report).await;
            for ((position, _), outcome) in sendable.iter().zip(feed_outcomes) {
                outcomes[*position] = Some(outcome);
            }
        } else if let Some((position, seller_sku)) = sendable.first() {
            let outcome = self
                .patch(seller_sku, items[*position].quantity, &mut report)
                .await;
            outcomes[*position] = Some(outcome);
        }
        report.results = items
            .iter()
            .zip(outcomes)
            .map(|(item, outcome)| ItemResult {
                sku: item.sku.clone(),
                outcome: outcome.unwrap_or(ItemOutcome::Deferred),
            })
            .collect();
        report
    }

    async fn check_submitted(&self, token: &str, items: &[PushItem]) -> PushReport {
        let mut report = PushReport::default();
        let feed_items: Vec<(String, u64)> = items
            .iter()
            .map(|item| {
                let seller_sku = self
                    .listings
                    .mfn(&item.sku)
                    .map_or_else(|| item.sku.clone(), |listing| listing.seller_sku.clone());
                (seller_sku, item.quantity)
            })
            .collect();
        let outcomes = self.check_feed(token, &feed_items, &mut report).await;
        report.results = items
            .iter()
            .zip(outcomes)
            .map(|(item, outcome)| ItemResult {
                sku: item.sku.clone(),
                outcome,
            })
            .collect();
        report
    }

    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        let mut report = LevelsReport::default();
        for sku in skus {
            // Only the MFN listing carries our quantity; an FBA listing's is Amazon's.
            let Some(listing) = self.listings.mfn(sku) else {
                report.levels.push((sku.clone(), None));
                continue;
            };
            report.requests += 1;
            let answer = self
                .client
                .listing_availability(
                    &self.config.seller_id,
                    &listing.seller_sku,
                    &self.config.marketplace_id,
                )
                .await?;
            report.throttle.merge(platform::throttle(&answer));
            report
                .levels
                .push((sku.clone(), response::decode_listing_quantity(&answer)?));
        }
        Ok(report)
    }
}
