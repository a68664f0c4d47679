//! The Shopify channel adapter (PLATFORMS.md §1).
//!
//! Owns: pushing a channel's ATP as `available` with GraphQL `inventorySetQuantities`
//! (≤250 quantities per call, `changeFromQuantity` CAS, `@idempotent` key), or with REST
//! `inventory_levels/set.json` when `use_rest = true` (one level per call, no CAS); reading
//! levels back; the SKU → inventory item mapping.
//!
//! Locations (issue 16): with one Shopify location (`location_id`, or a `location_map` of
//! one entry) a listing is a SKU. With several `location_map` entries the adapter reports
//! them as [`ChannelAdapter::listing_locations`] and every listing is a key `SKU@LOCATION`
//! (`propagation::split`): propagation divides the channel's ATP across the locations,
//! and one `inventorySetQuantities` call sets levels at several locations at once (each
//! quantity names its `locationId`; still ≤250 quantities per call). Reads group the keys
//! by location (one levels query per location and chunk).
//!
//! Behaviour of one GraphQL push (the mutation is all-or-nothing):
//! - no user errors: every item is accepted;
//! - user errors naming quantity indexes: those items are isolated (`Rejected`, or
//!   `Conflict` with the value read back for `CHANGE_FROM_QUANTITY_STALE`), every other item
//!   comes back `Deferred` so propagation resends it at once without the failing ones;
//! - a request-level failure (transport, 5xx, `THROTTLED`, 401, top-level errors): every
//!   item is `Retryable` and the report carries the classified error.
//!
//! Idempotency keys: a fresh UUID per batch content; a retry of exactly the same content
//! after an unanswered or throttled attempt reuses the key, so a mutation that did apply is
//! not applied twice; CAS still guards us because keys may not deduplicate (§1.2 [3P]).
//!
//! HTTP, the access token, throttle signals and request-level failures are the
//! [`ShopifyClient`]'s.
//!
//! May depend on: `channels`, `config`, `platforms`. Never `ledger`, `ingest` or `store`.

pub mod config;
pub mod request;
pub mod response;
#[cfg(test)]
mod tests;

use crate::channels::{
    ChannelAdapter, ChannelError, ItemOutcome, ItemResult, LevelsReport, ListingLocation,
    ListingMatch, PushItem, PushReport, ThrottleSignal, listing_key, split_listing_key,
};
use crate::config::{ChannelKind, ShopifyConfig};
use crate::platforms::PlatformError;
use crate::platforms::http::HttpAnswer;
use crate::platforms::shopify::{self as platform, ShopifyClient};
use async_trait::async_trait;
use config::{CHANGE_FROM_QUANTITY_MIN_VERSION, ListingMap};
use request::SetQuantity;
use response::{RestSetAnswer, SetQuantitiesAnswer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most quantities in one `inventorySetQuantities` call (Admin API array cap, §1.2).
pub const GRAPHQL_MAX_BATCH: usize = 250;
/// Most inventory items in one REST level read.
const REST_READ_MAX_ITEMS: usize = 50;
/// Cost assumed for a mutation until Shopify reports one.
const DEFAULT_MUTATION_COST: f64 = 10.0;

/// The Shopify adapter of one channel.
#[derive(Debug)]
pub struct ShopifyAdapter {
    channel: String,
    /// The Shopify location of a one-location channel (and of bare SKUs).
    location_id: u64,
    /// Every Shopify location with its feeds when there are several; empty otherwise.
    locations: Vec<ListingLocation>,
    use_rest: bool,
    listings: ListingMap,
    client: Arc<ShopifyClient>,
    /// The last batch that got no definitive answer, with its key: (content, key).
    unanswered: Mutex<Option<(String, String)>>,
}

impl ShopifyAdapter {
    /// Builds the adapter with a client of its own on `http` and loads its listings (see
    /// [`with_client`](Self::with_client) to share a client).
    ///
    /// Errors: [`ChannelError::InvalidConfig`] for a GraphQL API version older than
    /// 2026-01 (no `changeFromQuantity`) or an unusable URL; [`ChannelError::Listings`] when
    /// the CSV cannot be read or parsed.
    pub fn new(
        channel: &str,
        config: &ShopifyConfig,
        http: reqwest::Client,
    ) -> Result<Self, ChannelError> {
        Self::with_client(channel, config, Arc::new(ShopifyClient::new(config, http)))
    }

    /// Builds the adapter on the shop's shared platform client and loads its listings.
    ///
    /// Errors: as [`new`](Self::new).
    pub fn with_client(
        channel: &str,
        config: &ShopifyConfig,
        client: Arc<ShopifyClient>,
    ) -> Result<Self, ChannelError> {
        let invalid = |message: String| ChannelError::InvalidConfig {
            channel: channel.to_owned(),
            message,
        };
        if !config.use_rest && config.api_version.as_str() < CHANGE_FROM_QUANTITY_MIN_VERSION {
            return Err(invalid(format!(
                "api_version {} has no changeFromQuantity; use {CHANGE_FROM_QUANTITY_MIN_VERSION} or later",
                config.api_version
            )));
        }
        if !config.shop_url.starts_with("http://") && !config.shop_url.starts_with("https://") {
            return Err(invalid(format!(
                "shop_url {:?} must start with http:// or https://",
                config.shop_url
            )));
        }
        let Some(location_id) = config.primary_location_id() else {
            return Err(invalid(
                "shopify needs location_id or a [[channels.shopify.location_map]] entry".to_owned(),
            ));
        };
        let locations = if config.is_multi_location() {
            config
                .shopify_locations(&[])
                .into_iter()
                .map(|location| ListingLocation {
                    id: location.id.to_string(),
                    feeds: location.feeds,
                    name: location.name,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            channel: channel.to_owned(),
            location_id,
            locations,
            use_rest: config.use_rest,
            listings: config::load_listings(channel, config)?,
            client,
            unanswered: Mutex::new(None),
        })
    }

    /// The SKU ↔ inventory item mapping.
    pub fn listings(&self) -> &ListingMap {
        &self.listings
    }

    /// The inventory item and Shopify location a listing (SKU or `SKU@LOCATION` key) is
    /// written to; `None` when it is not ours.
    fn resolve(&self, listing: &str) -> Option<(u64, u64)> {
        if self.locations.is_empty() {
            return Some((self.listings.item(listing)?, self.location_id));
        }
        let (sku, location) = split_listing_key(listing);
        let location = location?;
        if !self.locations.iter().any(|known| known.id == location) {
            return None;
        }
        Some((self.listings.item(sku)?, location.parse().ok()?))
    }

    /// The key for this content: the unanswered attempt's key when the content is the same.
    fn idempotency_key(&self, content: &str) -> String {
        let unanswered = self
            .unanswered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match unanswered.as_ref() {
            Some((previous, key)) if previous == content => key.clone(),
            _ => uuid::Uuid::new_v4().to_string(),
        }
    }

    fn remember_unanswered(&self, entry: Option<(String, String)>) {
        *self
            .unanswered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = entry;
    }

    async fn push_graphql(
        &self,
        items: &[PushItem],
        results: &mut [Option<ItemOutcome>],
    ) -> PushReport {
        let mut positions = Vec::new();
        let mut quantities = Vec::new();
        for (position, item) in items.iter().enumerate() {
            if let Some((inventory_item, location)) = self.resolve(&item.sku) {
                positions.push(position);
                quantities.push(SetQuantity {
                    item: inventory_item,
                    location,
                    quantity: item.quantity,
                    change_from: item.change_from,
                });
            }
        }
        let mut report = PushReport::default();
        if quantities.is_empty() {
            return report;
        }
        let content = format!("{quantities:?}");
        let key = self.idempotency_key(&content);
        let reference = format!("gid://stocksync/SyncJob/{key}");
        let body = request::set_quantities_body(&quantities, &key, &reference);
        report.requests = 1;
        let answer = match self.client.graphql(&body).await {
            Ok(answer) => answer,
            Err(error) => {
                self.remember_unanswered(Some((content, key)));
                return fail_positions(report, &positions, results, error.into());
            }
        };
        report.throttle = platform::graphql_throttle(&answer, DEFAULT_MUTATION_COST);
        let user_errors = match response::decode_set_quantities(&answer) {
            SetQuantitiesAnswer::Applied => {
                self.remember_unanswered(None);
                for (position, quantity) in positions.iter().zip(&quantities) {
                    results[*position] = Some(ItemOutcome::Accepted {
                        quantity: quantity.quantity,
                    });
                }
                return report;
            }
            SetQuantitiesAnswer::Failed(error) => {
                let retry_same = matches!(
                    error,
                    ChannelError::Platform(
                        PlatformError::Throttled { .. }
                            | PlatformError::Server { .. }
                            | PlatformError::Transport { .. }
                    )
                );
                self.remember_unanswered(retry_same.then_some((content, key)));
                return fail_positions(report, &positions, results, error);
            }
            SetQuantitiesAnswer::UserErrors(user_errors) => user_errors,
        };
        self.remember_unanswered(None);
        if let Some(general) = user_errors
            .iter()
            .find(|error| error.index.is_none_or(|i| i >= positions.len()))
        {
            let error = ChannelError::Platform(PlatformError::GraphQl {
                code: Some(general.code.clone()),
                message: general.message.clone(),
            });
            return fail_positions(report, &positions, results, error);
        }
        let mut stale = Vec::new();
        for error in &user_errors {
            let Some(index) = error.index else { continue };
            let position = positions[index];
            if error.is_stale() {
                stale.push(position);
            } else {
                results[position] = Some(ItemOutcome::Rejected {
                    code: error.code.clone(),
                    message: error.message.clone(),
                });
            }
        }
        for position in &positions {
            if results[*position].is_none() && !stale.contains(position) {
                results[*position] = Some(ItemOutcome::Deferred);
            }
        }
        if !stale.is_empty() {
            let skus: Vec<String> = stale
                .iter()
                .map(|position| items[*position].sku.clone())
                .collect();
            let read = self.read_levels(&skus).await;
            let current: HashMap<String, Option<i64>> = match read {
                Ok(levels) => {
                    report.requests += levels.requests;
                    report.reads += levels.requests;
                    let mutation_cost = report
                        .throttle
                        .budget
                        .map(|budget| budget.next_request_cost);
                    report.throttle.merge(levels.throttle);
                    // The next push is a mutation: keep its cost, not the read's.
                    if let (Some(budget), Some(cost)) =
                        (report.throttle.budget.as_mut(), mutation_cost)
                    {
                        budget.next_request_cost = cost;
                    }
                    levels.levels.into_iter().collect()
                }
                Err(error) => {
                    report.requests += 1;
                    report.reads += 1;
                    tracing::warn!(channel = %self.channel, error = %error, "cannot read levels after a compare-and-set conflict");
                    HashMap::new()
                }
            };
            for position in stale {
                let value = current.get(&items[position].sku).copied().flatten();
                results[position] = Some(ItemOutcome::Conflict { current: value });
            }
        }
        report
    }

    async fn push_rest(
        &self,
        items: &[PushItem],
        results: &mut [Option<ItemOutcome>],
    ) -> PushReport {
        let mut report = PushReport::default();
        for (position, item) in items.iter().enumerate() {
            let Some((inventory_item, location)) = self.resolve(&item.sku) else {
                continue;
            };
            if report.error.is_some() {
                results[position] = Some(ItemOutcome::Deferred);
                continue;
            }
            let body = request::rest_set_body(inventory_item, location, item.quantity);
            report.requests += 1;
            let answer = match self.client.rest_post(request::REST_SET_PATH, &body).await {
                Ok(answer) => answer,
                Err(error) => {
                    results[position] = Some(ItemOutcome::Retryable {
                        reason: error.to_string(),
                    });
                    report.error = Some(error.into());
                    continue;
                }
            };
            report.throttle.merge(platform::rest_throttle(&answer));
            results[position] = Some(match response::decode_rest_set(&answer) {
                RestSetAnswer::Accepted(available) => ItemOutcome::Accepted {
                    quantity: u64::try_from(available).unwrap_or(0),
                },
                RestSetAnswer::ItemRejected(message) => ItemOutcome::Rejected {
                    code: "HTTP_422".to_owned(),
                    message,
                },
                RestSetAnswer::Failed(error) => {
                    let outcome = ItemOutcome::Retryable {
                        reason: error.to_string(),
                    };
                    report.error = Some(error);
                    outcome
                }
            });
        }
        report
    }

    async fn read_graphql(
        &self,
        items: &[u64],
        location: u64,
    ) -> Result<(Vec<(u64, Option<i64>)>, ThrottleSignal, u32), ChannelError> {
        let mut levels = Vec::new();
        let mut throttle = ThrottleSignal::default();
        let mut requests = 0;
        for chunk in items.chunks(GRAPHQL_MAX_BATCH) {
            requests += 1;
            let answer: HttpAnswer = self
                .client
                .graphql(&request::levels_body(chunk, location))
                .await?;
            throttle.merge(platform::graphql_throttle(&answer, DEFAULT_MUTATION_COST));
            levels.extend(response::decode_levels(&answer)?);
        }
        Ok((levels, throttle, requests))
    }

    async fn read_rest(
        &self,
        items: &[u64],
        location: u64,
    ) -> Result<(Vec<(u64, Option<i64>)>, ThrottleSignal, u32), ChannelError> {
        let mut levels = Vec::new();
        let mut throttle = ThrottleSignal::default();
        let mut requests = 0;
        for chunk in items.chunks(REST_READ_MAX_ITEMS) {
            requests += 1;
            let path = request::rest_levels_path(chunk, location);
            let answer = self.client.rest_get(&path).await?;
            throttle.merge(platform::rest_throttle(&answer));
            levels.extend(
                response::decode_rest_levels(&answer)?
                    .into_iter()
                    .map(|(item, value)| (item, Some(value))),
            );
        }
        Ok((levels, throttle, requests))
    }
}

/// Marks every mapped position `Retryable` with the request-level error.
fn fail_positions(
    mut report: PushReport,
    positions: &[usize],
    results: &mut [Option<ItemOutcome>],
    error: ChannelError,
) -> PushReport {
    for position in positions {
        results[*position] = Some(ItemOutcome::Retryable {
            reason: error.to_string(),
        });
    }
    report.error = Some(error);
    report
}

#[async_trait]
impl ChannelAdapter for ShopifyAdapter {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Shopify
    }

    fn max_batch(&self) -> usize {
        if self.use_rest { 1 } else { GRAPHQL_MAX_BATCH }
    }

    fn is_mapped(&self, sku: &str) -> bool {
        self.listings.item(sku).is_some() || self.resolve(sku).is_some()
    }

    fn listing_count(&self) -> usize {
        self.listings
            .len()
            .saturating_mul(self.locations.len().max(1))
    }

    fn listing_locations(&self) -> &[ListingLocation] {
        &self.locations
    }

    fn listing_sku(&self, listing_id: &str, location_id: &str) -> ListingMatch {
        let ours = if self.locations.is_empty() {
            location_id == self.location_id.to_string()
        } else {
            self.locations.iter().any(|known| known.id == location_id)
        };
        if !ours {
            return ListingMatch::OtherLocation;
        }
        listing_id
            .parse::<u64>()
            .ok()
            .and_then(|item| self.listings.sku(item))
            .map_or(ListingMatch::Unmapped, |sku| {
                if self.locations.is_empty() {
                    ListingMatch::Sku(sku.to_owned())
                } else {
                    ListingMatch::Sku(listing_key(sku, location_id))
                }
            })
    }

    async fn push(&self, items: &[PushItem]) -> PushReport {
        debug_assert!(
            items.len() <= self.max_batch(),
            "propagation respects max_batch"
        );
        let mut results: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        for (position, item) in items.iter().enumerate() {
            if self.resolve(&item.sku).is_none() {
                let message = if self.locations.is_empty() {
                    format!(
                        "SKU {} has no Shopify inventory item on channel {}",
                        item.sku, self.channel
                    )
                } else {
                    format!(
                        "listing {} names no inventory item at a Shopify location of channel {} (expected SKU@LOCATION)",
                        item.sku, self.channel
                    )
                };
                results[position] = Some(ItemOutcome::Rejected {
                    code: "UNMAPPED_SKU".to_owned(),
                    message,
                });
            }
        }
        let mut report = if self.use_rest {
            self.push_rest(items, &mut results).await
        } else {
            self.push_graphql(items, &mut results).await
        };
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

    /// REST: the store's REST bucket (shared with the orders poll). GraphQL: the channel's
    /// own budget when the client has one, which the order polls and fulfillment-order
    /// read-backs also take from.
    fn push_quota(&self) -> Option<Arc<crate::platforms::quota::Quota>> {
        if self.use_rest {
            return Some(self.client.rest_quota().clone());
        }
        self.client.channel_budget().cloned()
    }

    fn read_quota(&self) -> Option<Arc<crate::platforms::quota::Quota>> {
        self.push_quota()
    }

    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        // Items grouped by location, locations in first-seen order.
        let mut by_location: Vec<(u64, Vec<u64>)> = Vec::new();
        for (item, location) in skus.iter().filter_map(|sku| self.resolve(sku)) {
            match by_location.iter_mut().find(|(known, _)| *known == location) {
                Some((_, items)) => {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                None => by_location.push((location, vec![item])),
            }
        }
        let mut throttle = ThrottleSignal::default();
        let mut requests = 0;
        let mut values: HashMap<(u64, u64), Option<i64>> = HashMap::new();
        for (location, items) in &by_location {
            let (levels, read_throttle, read_requests) = if self.use_rest {
                self.read_rest(items, *location).await?
            } else {
                self.read_graphql(items, *location).await?
            };
            throttle.merge(read_throttle);
            requests += read_requests;
            values.extend(
                levels
                    .into_iter()
                    .map(|(item, value)| ((item, *location), value)),
            );
        }
        Ok(LevelsReport {
            levels: skus
                .iter()
                .map(|sku| {
                    let value = self
                        .resolve(sku)
                        .and_then(|key| values.get(&key).copied().flatten());
                    (sku.clone(), value)
                })
                .collect(),
            throttle,
            requests,
        })
    }
}
