//! The WooCommerce channel adapter (PLATFORMS.md §2).
//!
//! Owns: pushing a channel's ATP as `stock_quantity` through the batch endpoints
//! `POST /wp-json/wc/v3/products/batch` (simple products) and
//! `POST /wp-json/wc/v3/products/{product_id}/variations/batch` (variations), always with
//! `manage_stock: true` beside `stock_quantity` (the quantity is ignored otherwise, §2.2);
//! reading levels back with `GET /products?include=…` and `GET /products/{id}/variations?include=…`;
//! the SKU → product / (product, variation) mapping ([`config::ListingMap`]).
//!
//! Behaviour of one push:
//! - items are grouped by endpoint (simple products, then one group per parent product) and
//!   cut into requests of at most the batch limit (`batch_limit`, default 100, §2.2);
//! - a 413 `woocommerce_rest_request_entity_too_large` answer splits the request (to the
//!   limit named in "Unable to accept more than N items", else in halves), and the smaller
//!   limit is kept for later pushes ([`ChannelAdapter::max_batch`] follows it);
//! - the batch answer is HTTP 200 with one entry per item: a failed entry
//!   (`{"id":…,"error":{…}}`) isolates that item only (`Rejected`, or `Retryable` when its
//!   `data.status` is 429/5xx); every other item of the request is `Accepted`;
//! - a request-level failure (transport or timeout, 5xx, 401/403, host/WAF 429, or 503
//!   with `Retry-After`) makes that request's items `Retryable`, the requests not yet sent
//!   `Deferred`, and carries the error and `Retry-After` in the report.
//!
//! No compare-and-set exists on WooCommerce (§2.2: no ETag, no If-Match, no atomic
//! increment), so [`PushItem::change_from`] is ignored. DESIGN.md §3 rule 5 is met by
//! keeping the window short: pushes leave as soon as the token bucket allows, and every
//! ingested order lowers the ledger's ATP, which queues a fresh push of that listing
//! (the "re-push after each ingested order" of PLATFORMS.md §0).
//!
//! What bounds the overwrite window without a conditional write (issue 9 §4): an order the
//! shop took between our read of the ledger and the write is overwritten by a value that
//! still counts its units, for at most the time until that order reaches the ledger, which
//! is bounded by the webhook latency and, for a lost webhook, by the order poller's
//! `poll_interval_secs` (default 60 s; WooCommerce never retries webhooks); its ingestion
//! lowers the ATP and queues a corrected push at once. WooCommerce itself lowers
//! `stock_quantity` at checkout, so the overwrite can only raise the figure by the units
//! sold in that window, never sell stock the ledger does not have once the order arrives.
//!
//! HTTP, authentication, status classification and throttle signals are the
//! [`WoocommerceClient`]'s (shared with the order poller).
//!
//! May depend on: `channels`, `config`, `platforms`. Never `ledger`, `ingest` or `store`.

pub mod config;
pub mod request;
pub mod response;
#[cfg(test)]
mod tests;

use crate::channels::{
    ChannelAdapter, ChannelError, ItemOutcome, ItemResult, LevelsReport, PushItem, PushReport,
    ThrottleSignal,
};
use crate::config::{ChannelKind, WoocommerceConfig};
use crate::platforms::http::HttpAnswer;
use crate::platforms::woocommerce::{self as platform, WoocommerceClient};
use async_trait::async_trait;
use config::{Listing, ListingMap};
use response::ItemAnswer;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most ids in one `include=` list read (`per_page` maximum of the REST API).
const READ_MAX_ITEMS: usize = 100;

/// The WooCommerce adapter of one channel.
#[derive(Debug)]
pub struct WoocommerceAdapter {
    channel: String,
    /// The batch limit in force: the configured one, lowered by 413 answers.
    batch_limit: AtomicUsize,
    listings: ListingMap,
    client: Arc<WoocommerceClient>,
}

impl WoocommerceAdapter {
    /// Builds the adapter with a client of its own on `http` and loads its listings (see
    /// [`with_client`](Self::with_client) to share a client).
    ///
    /// Errors: [`ChannelError::InvalidConfig`] for a site URL that is not http(s), a batch
    /// limit of 0 or a SKU/listing mapped twice; [`ChannelError::Listings`] when the CSV
    /// cannot be read or parsed.
    pub fn new(
        channel: &str,
        config: &WoocommerceConfig,
        http: reqwest::Client,
    ) -> Result<Self, ChannelError> {
        Self::with_client(
            channel,
            config,
            Arc::new(WoocommerceClient::new(config, http)),
        )
    }

    /// Builds the adapter on the shop's shared platform client and loads its listings.
    ///
    /// Errors: as [`new`](Self::new).
    pub fn with_client(
        channel: &str,
        config: &WoocommerceConfig,
        client: Arc<WoocommerceClient>,
    ) -> Result<Self, ChannelError> {
        let invalid = |message: String| ChannelError::InvalidConfig {
            channel: channel.to_owned(),
            message,
        };
        if !config.site_url.starts_with("http://") && !config.site_url.starts_with("https://") {
            return Err(invalid(format!(
                "site_url {:?} must start with http:// or https://",
                config.site_url
            )));
        }
        if config.batch_limit == 0 {
            return Err(invalid("batch_limit must be at least 1".to_owned()));
        }
        Ok(Self {
            channel: channel.to_owned(),
            batch_limit: AtomicUsize::new(config.batch_limit),
            listings: config::load_listings(channel, config)?,
            client,
        })
    }

    /// The SKU ↔ listing mapping.
    pub fn listings(&self) -> &ListingMap {
        &self.listings
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<HttpAnswer, ChannelError> {
        Ok(self.client.send(method, path, body).await?)
    }

    /// Sends one group's items, splitting on 413; fills `results` for `positions`.
    async fn push_group(
        &self,
        group: Option<u64>,
        positions: Vec<usize>,
        items: &[PushItem],
        listings: &[Option<Listing>],
        results: &mut [Option<ItemOutcome>],
        report: &mut PushReport,
    ) {
        let limit = self.batch_limit.load(Ordering::Acquire).max(1);
        let mut pending: VecDeque<Vec<usize>> =
            positions.chunks(limit).map(<[usize]>::to_vec).collect();
        let path = request::batch_path(group);
        while let Some(chunk) = pending.pop_front() {
            if report.error.is_some() {
                set_all(results, &chunk, ItemOutcome::Deferred);
                continue;
            }
            let entries: Vec<(u64, u64)> = chunk
                .iter()
                .filter_map(|position| {
                    listings[*position]
                        .map(|listing| (listing.item_id(), items[*position].quantity))
                })
                .collect();
            let body = request::batch_update_body(&entries);
            report.requests += 1;
            let answer = match self.send(reqwest::Method::POST, &path, Some(&body)).await {
                Ok(answer) => answer,
                Err(error) => {
                    fail(results, &chunk, report, error);
                    continue;
                }
            };
            report.throttle.merge(platform::throttle(&answer));
            if let Some(named) = response::too_large_limit(&answer) {
                let smaller = if named > 0 && named < chunk.len() {
                    named
                } else {
                    chunk.len() / 2
                };
                if smaller == 0 {
                    set_all(
                        results,
                        &chunk,
                        ItemOutcome::Rejected {
                            code: response::TOO_LARGE_CODE.to_owned(),
                            message: "the shop refuses even a batch of one item".to_owned(),
                        },
                    );
                    continue;
                }
                self.batch_limit.fetch_min(smaller, Ordering::AcqRel);
                tracing::debug!(channel = %self.channel, limit = smaller, "batch over the shop's limit; splitting");
                for piece in chunk.chunks(smaller).rev() {
                    pending.push_front(piece.to_vec());
                }
                continue;
            }
            if let Some(error) = platform::status_error(&answer) {
                fail(results, &chunk, report, error.into());
                continue;
            }
            let answers = match response::decode_batch_update(&answer) {
                Ok(answers) => answers,
                Err(error) => {
                    fail(results, &chunk, report, error);
                    continue;
                }
            };
            for position in chunk {
                let Some(listing) = listings[position] else {
                    continue;
                };
                let sent = items[position].quantity;
                results[position] = Some(item_outcome(answers.get(&listing.item_id()), sent));
            }
        }
    }

    async fn read_group(
        &self,
        group: Option<u64>,
        ids: &[u64],
    ) -> Result<(Vec<(u64, Option<i64>)>, ThrottleSignal, u32), ChannelError> {
        let mut levels = Vec::new();
        let mut throttle = ThrottleSignal::default();
        let mut requests = 0;
        for chunk in ids.chunks(READ_MAX_ITEMS) {
            requests += 1;
            let answer = self
                .send(
                    reqwest::Method::GET,
                    &request::list_path(group, chunk),
                    None,
                )
                .await?;
            throttle.merge(platform::throttle(&answer));
            levels.extend(response::decode_list(&answer)?);
        }
        Ok((levels, throttle, requests))
    }
}

/// The outcome of one batch entry for an item pushed with quantity `sent`.
fn item_outcome(answer: Option<&ItemAnswer>, sent: u64) -> ItemOutcome {
    match answer {
        Some(ItemAnswer::Saved {
            manage_stock: true,
            stock_quantity: Some(quantity),
        }) if u64::try_from(*quantity).ok() == Some(sent) => {
            ItemOutcome::Accepted { quantity: sent }
        }
        Some(ItemAnswer::Saved {
            manage_stock,
            stock_quantity,
        }) => ItemOutcome::Rejected {
            code: "woocommerce_stock_not_applied".to_owned(),
            message: format!(
                "saved with manage_stock {manage_stock} and stock_quantity {stock_quantity:?}, not {sent}"
            ),
        },
        Some(ItemAnswer::Failed {
            code,
            message,
            status,
        }) => {
            if status.is_some_and(|status| status == 429 || status >= 500) {
                ItemOutcome::Retryable {
                    reason: format!("{code}: {message}"),
                }
            } else {
                ItemOutcome::Rejected {
                    code: code.clone(),
                    message: message.clone(),
                }
            }
        }
        None => ItemOutcome::Retryable {
            reason: "item missing from the batch answer".to_owned(),
        },
    }
}

fn set_all(results: &mut [Option<ItemOutcome>], positions: &[usize], outcome: ItemOutcome) {
    for position in positions {
        results[*position] = Some(outcome.clone());
    }
}

/// Marks a request's items `Retryable` and records the request-level error.
fn fail(
    results: &mut [Option<ItemOutcome>],
    positions: &[usize],
    report: &mut PushReport,
    error: ChannelError,
) {
    set_all(
        results,
        positions,
        ItemOutcome::Retryable {
            reason: error.to_string(),
        },
    );
    report.error = Some(error);
}

#[async_trait]
impl ChannelAdapter for WoocommerceAdapter {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Woocommerce
    }

    fn max_batch(&self) -> usize {
        self.batch_limit.load(Ordering::Acquire).max(1)
    }

    fn is_mapped(&self, sku: &str) -> bool {
        self.listings.listing(sku).is_some()
    }

    fn listing_count(&self) -> usize {
        self.listings.len()
    }

    async fn push(&self, items: &[PushItem]) -> PushReport {
        let mut results: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let listings: Vec<Option<Listing>> = items
            .iter()
            .map(|item| self.listings.listing(&item.sku))
            .collect();
        let mut groups: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
        for (position, listing) in listings.iter().enumerate() {
            match listing {
                Some(listing) => groups
                    .entry(listing.batch_group())
                    .or_default()
                    .push(position),
                None => {
                    results[position] = Some(ItemOutcome::Rejected {
                        code: "UNMAPPED_SKU".to_owned(),
                        message: format!(
                            "SKU {} has no WooCommerce product on channel {}",
                            items[position].sku, self.channel
                        ),
                    });
                }
            }
        }
        let mut report = PushReport::default();
        for (group, positions) in groups {
            self.push_group(
                group,
                positions,
                items,
                &listings,
                &mut results,
                &mut report,
            )
            .await;
        }
        report.results = items
            .iter()
            .zip(results)
            .map(|(item, outcome)| ItemResult {
                sku: item.sku.clone(),
                outcome: outcome.unwrap_or(ItemOutcome::Deferred),
            })
            .collect();
        report
    }

    fn push_quota(&self) -> Option<Arc<crate::platforms::quota::Quota>> {
        Some(self.client.store_quota().clone())
    }

    fn read_quota(&self) -> Option<Arc<crate::platforms::quota::Quota>> {
        Some(self.client.store_quota().clone())
    }

    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        let mut groups: BTreeMap<Option<u64>, Vec<u64>> = BTreeMap::new();
        for sku in skus {
            if let Some(listing) = self.listings.listing(sku) {
                groups
                    .entry(listing.batch_group())
                    .or_default()
                    .push(listing.item_id());
            }
        }
        let mut values: HashMap<(Option<u64>, u64), Option<i64>> = HashMap::new();
        let mut throttle = ThrottleSignal::default();
        let mut requests = 0;
        for (group, ids) in groups {
            let (levels, signal, made) = self.read_group(group, &ids).await?;
            throttle.merge(signal);
            requests += made;
            values.extend(levels.into_iter().map(|(id, value)| ((group, id), value)));
        }
        Ok(LevelsReport {
            levels: skus
                .iter()
                .map(|sku| {
                    let value = self.listings.listing(sku).and_then(|listing| {
                        values
                            .get(&(listing.batch_group(), listing.item_id()))
                            .copied()
                            .flatten()
                    });
                    (sku.clone(), value)
                })
                .collect(),
            throttle,
            requests,
        })
    }
}
