//! Channel adapters: one trait ([`ChannelAdapter`]) for every sales platform and one
//! explicit registry function ([`build_adapter`]).
//!
//! Owns: the push/read contract between propagation and a platform, the per-item outcome
//! vocabulary ([`ItemOutcome`]), and the one error enum of the module ([`ChannelError`]):
//! configuration and listings problems, or a request-level [`PlatformError`] classified by
//! domain (user / external / internal) and retry hint as Arroyo does.
//!
//! Each platform's push side lives in its own folder with a fixed shape (`config` for the
//! listing map, `request`, `response`, `mod`, `tests`, after Vector's sinks): request
//! shaping and per-item outcomes only. HTTP, authentication and token caches, throttle
//! signals ([`ThrottleSignal`]) and status classification are the platform client's
//! (`crate::platforms::<name>`), shared with the ingest side.
//!
//! Invariants: [`ChannelAdapter::push`] returns exactly one [`ItemResult`] per input item, in
//! input order; an adapter never sleeps to honour a rate limit (pacing belongs to
//! propagation), it reports what the platform said; and it never waits for asynchronous
//! processing (an Amazon feed, a bol.com process status): it answers
//! [`ItemOutcome::Submitted`] and propagation asks [`ChannelAdapter::check_submitted`] when
//! due, so one slow submission never holds back another listing.
//!
//! May depend on: `config`, `platforms`, `telemetry`. Must NOT import `ledger`, `ingest` or
//! `store`.

pub mod amazon;
pub mod bolcom;
pub mod shopify;
pub mod woocommerce;

use crate::config::{ChannelConfig, ChannelKind, PlatformConfig};
use crate::platforms::PlatformClients;
pub use crate::platforms::http::{
    CostBudget, ErrorDomain, PlatformError, RetryHint, ThrottleSignal,
};
use async_trait::async_trait;
use serde::Serialize;
use std::path::PathBuf;

/// What a channel's listing id means to us (see [`ChannelAdapter::listing_sku`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingMatch {
    /// The listing is this SKU's.
    Sku(String),
    /// The listing is ours, but the level is for a location of the channel we do not write.
    OtherLocation,
    /// We have no listing with this id.
    Unmapped,
}

/// A location of the channel's own that lists stock separately (a Shopify location of a
/// multi-location channel): propagation then queues one listing per (SKU, location), keyed
/// `SKU@ID` (`propagation::split::listing_key`), and divides the channel's ATP across the
/// locations (`propagation::split`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingLocation {
    /// The channel's location id (Shopify: the location number).
    pub id: String,
    /// Our locations whose stock it lists, in routing order.
    pub feeds: Vec<String>,
    /// Display name.
    pub name: String,
}

/// The listing key of `sku` at a channel's own location `location` (`SKU@LOCATION`).
///
/// Location ids of channels that use keys are numbers (Shopify location ids), so the last
/// `@` separates them unambiguously ([`split_listing_key`]); used by channels with [`ChannelAdapter::listing_locations`].
pub fn listing_key(sku: &str, location: &str) -> String {
    format!("{sku}@{location}")
}

/// Splits a listing key into (SKU, channel location): the part after the last `@` when it is
/// a number, else the whole key is a SKU.
pub fn split_listing_key(key: &str) -> (&str, Option<&str>) {
    match key.rsplit_once('@') {
        Some((sku, location))
            if !sku.is_empty()
                && !location.is_empty()
                && location.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (sku, Some(location))
        }
        _ => (key, None),
    }
}

/// One listing's new quantity for a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushItem {
    /// Our SKU; the adapter maps it to the platform's listing.
    pub sku: String,
    /// The absolute quantity (ATP) to set, in base units.
    pub quantity: u64,
    /// The value we believe the channel holds now, for compare-and-set (Shopify
    /// `changeFromQuantity`, PLATFORMS.md §1.2); `None` opts out of the check.
    pub change_from: Option<i64>,
}

/// What happened to one item of a push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ItemOutcome {
    /// The channel now holds `quantity`.
    Accepted {
        /// The quantity the channel acknowledged.
        quantity: u64,
    },
    /// The compare-and-set failed: the channel changed the value itself (usually an order
    /// we have not ingested yet). `current` is what the channel holds now, if it could be read.
    Conflict {
        /// The channel's current value.
        current: Option<i64>,
    },
    /// The channel refused this item and will refuse it again (unknown listing,
    /// non-mutable item, …): isolate it.
    Rejected {
        /// Platform error code (`NON_MUTABLE_INVENTORY_ITEM`, `HTTP_422`, `UNMAPPED_SKU`).
        code: String,
        /// Human message.
        message: String,
    },
    /// Not applied because another item of the same all-or-nothing request failed; send
    /// again without delay (without the failing item).
    Deferred,
    /// Not applied because the request failed transiently (5xx, transport, throttled);
    /// send again after a backoff.
    Retryable {
        /// Why.
        reason: String,
    },
    /// Handed to the platform, which processes it asynchronously (an Amazon feed, a bol.com
    /// process status): the result is not known yet. Propagation keeps the item in flight
    /// and asks [`ChannelAdapter::check_submitted`] with `token` once `check_after_ms` has
    /// passed, pushing other listings meanwhile.
    Submitted {
        /// What identifies the submission to the adapter (feed id, process status id).
        token: String,
        /// How long to wait before the first (or next) check, in milliseconds.
        check_after_ms: u64,
    },
}

/// One item's outcome, keyed by SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemResult {
    /// The SKU of the pushed item.
    pub sku: String,
    /// What happened.
    pub outcome: ItemOutcome,
}

/// The answer to [`ChannelAdapter::push`].
#[derive(Clone, Debug, Default)]
pub struct PushReport {
    /// One result per pushed item, in input order.
    pub results: Vec<ItemResult>,
    /// What the platform said about rate limits.
    pub throttle: ThrottleSignal,
    /// HTTP requests made (a conflict costs an extra read); propagation charges its token
    /// bucket for all of them.
    pub requests: u32,
    /// Of `requests`, those that read levels back after a compare-and-set conflict (the
    /// push log gives them entries of their own).
    pub reads: u32,
    /// The request-level failure, when the whole request failed.
    pub error: Option<ChannelError>,
}

impl PushReport {
    /// A report where every item failed with the same request-level error.
    pub fn failed(
        items: &[PushItem],
        error: ChannelError,
        throttle: ThrottleSignal,
        requests: u32,
    ) -> Self {
        let reason = error.to_string();
        Self {
            results: items
                .iter()
                .map(|item| ItemResult {
                    sku: item.sku.clone(),
                    outcome: ItemOutcome::Retryable {
                        reason: reason.clone(),
                    },
                })
                .collect(),
            throttle,
            requests,
            reads: 0,
            error: Some(error),
        }
    }
}

/// The answer to [`ChannelAdapter::read_levels`].
#[derive(Clone, Debug, Default)]
pub struct LevelsReport {
    /// `(sku, value)` in input order; `None` when the channel does not stock the listing.
    pub levels: Vec<(String, Option<i64>)>,
    /// What the platform said about rate limits.
    pub throttle: ThrottleSignal,
    /// HTTP requests made.
    pub requests: u32,
}

/// Errors of the channel adapters; one enum for the module. Request-level failures are the
/// platform client's [`PlatformError`], classified there by domain and retry hint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The channel section of the config is unusable.
    #[error("channel {channel}: invalid configuration: {message}")]
    InvalidConfig {
        /// Channel id.
        channel: String,
        /// What is wrong.
        message: String,
    },
    /// A listings CSV file could not be read or parsed.
    #[error("listings file {}: line {line}: {message}", path.display())]
    Listings {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the file could not be read).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A request to the platform failed as a whole.
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl ChannelError {
    /// Who is at fault.
    pub fn domain(&self) -> ErrorDomain {
        match self {
            Self::InvalidConfig { .. } | Self::Listings { .. } => ErrorDomain::User,
            Self::Platform(error) => error.domain(),
        }
    }

    /// Whether retrying can help.
    pub fn retry_hint(&self) -> RetryHint {
        match self {
            Self::InvalidConfig { .. } | Self::Listings { .. } => RetryHint::NoRetry,
            Self::Platform(error) => error.retry_hint(),
        }
    }

    /// A bounded metric label for the error type.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid_config",
            Self::Listings { .. } => "listings",
            Self::Platform(error) => error.label(),
        }
    }

    /// True when the platform throttled the request.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Platform(error) if error.is_throttled())
    }

    /// The wait the platform asked for when it throttled the request (`Retry-After`), in
    /// milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::Platform(PlatformError::Throttled { retry_after_ms }) => *retry_after_ms,
            _ => None,
        }
    }
}

/// One sales platform, as propagation sees it.
///
/// Implementations interpret status codes and headers in one place, never sleep for rate
/// limits, and return one result per item.
#[async_trait]
pub trait ChannelAdapter: Send + Sync + 'static {
    /// The platform.
    fn kind(&self) -> ChannelKind;

    /// Most items in one [`push`](Self::push) call (Shopify GraphQL: 250; REST: 1).
    fn max_batch(&self) -> usize;

    /// True when the SKU has a listing on this channel; unmapped SKUs are never queued.
    fn is_mapped(&self, sku: &str) -> bool;

    /// How many listings the channel has (bounds the propagation queue).
    fn listing_count(&self) -> usize;

    /// Which of our SKUs the channel's own listing id names at the channel's location
    /// `location_id` (for levels the channel reports by its ids, such as Shopify's
    /// `inventory_levels/update`: inventory item id and location id). Channels that report
    /// no levels by their own ids keep the default, [`ListingMatch::Unmapped`].
    fn listing_sku(&self, listing_id: &str, location_id: &str) -> ListingMatch {
        let _ = (listing_id, location_id);
        ListingMatch::Unmapped
    }

    /// The channel's own locations when it lists stock per location (see
    /// [`ListingLocation`]); empty (the default) when the channel lists one figure per SKU.
    /// With locations, [`is_mapped`](Self::is_mapped), [`push`](Self::push) and
    /// [`read_levels`](Self::read_levels) take listing keys `SKU@ID` as well as SKUs.
    fn listing_locations(&self) -> &[ListingLocation] {
        &[]
    }

    /// Sets absolute quantities; at most [`max_batch`](Self::max_batch) items.
    async fn push(&self, items: &[PushItem]) -> PushReport;

    /// Asks the platform once about work a push left [`ItemOutcome::Submitted`] under
    /// `token`; `items` are the items submitted under it, in the order they were pushed.
    /// Returns one result per item: final outcomes, or `Submitted` again (still processing,
    /// check again after its `check_after_ms`). Adapters that never submit keep the
    /// default, which answers `Retryable` for every item.
    async fn check_submitted(&self, token: &str, items: &[PushItem]) -> PushReport {
        let reason = format!("channel has no submitted work {token}");
        PushReport {
            results: items
                .iter()
                .map(|item| ItemResult {
                    sku: item.sku.clone(),
                    outcome: ItemOutcome::Retryable {
                        reason: reason.clone(),
                    },
                })
                .collect(),
            ..PushReport::default()
        }
    }

    /// True when two updates of one listing in flight at once may be applied out of order
    /// (bol.com, PLATFORMS.md §3.8): propagation then pushes a listing again only after its
    /// submitted update has a result. False (the default) lets a newer value go out at once.
    fn serialises_listings(&self) -> bool {
        false
    }

    /// [`push`](Self::push), then [`check_submitted`](Self::check_submitted) after each
    /// `check_after_ms` until every item has a final outcome: for callers without a
    /// propagation actor (tests, tools). Propagation never calls it, so that one slow
    /// submission never delays another listing.
    async fn push_until_settled(&self, items: &[PushItem]) -> PushReport {
        let mut report = self.push(items).await;
        loop {
            let mut waiting: Vec<(String, u64)> = Vec::new();
            for result in &report.results {
                if let ItemOutcome::Submitted {
                    token,
                    check_after_ms,
                } = &result.outcome
                    && !waiting.iter().any(|(known, _)| known == token)
                {
                    waiting.push((token.clone(), *check_after_ms));
                }
            }
            let Some((token, check_after_ms)) = waiting.into_iter().next() else {
                return report;
            };
            tokio::time::sleep(std::time::Duration::from_millis(check_after_ms)).await;
            let submitted: Vec<PushItem> = items
                .iter()
                .zip(&report.results)
                .filter(|(_, result)| {
                    matches!(&result.outcome, ItemOutcome::Submitted { token: t, .. } if *t == token)
                })
                .map(|(item, _)| item.clone())
                .collect();
            let checked = self.check_submitted(&token, &submitted).await;
            report.throttle.merge(checked.throttle.clone());
            report.requests = report.requests.saturating_add(checked.requests);
            if checked.error.is_some() {
                report.error = checked.error;
            }
            let mut answers = checked.results.into_iter();
            for result in &mut report.results {
                if matches!(&result.outcome, ItemOutcome::Submitted { token: t, .. } if *t == token)
                    && let Some(answer) = answers.next()
                {
                    result.outcome = answer.outcome;
                }
            }
        }
    }

    /// Reads the channel's current quantities for the SKUs (for conflicts and reconciliation).
    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError>;

    /// The platform quota the pushes count against together with the pollers (a
    /// WooCommerce store, Shopify's REST bucket when pushing over REST); `None` when the
    /// platform counts pushes on their own (bol.com's stock endpoint, Amazon's listings
    /// and feeds, Shopify GraphQL's cost budget).
    fn push_quota(&self) -> Option<std::sync::Arc<crate::platforms::quota::Quota>> {
        None
    }

    /// The platform quota [`read_levels`](Self::read_levels) counts against, for callers
    /// that may wait (the reconciler); `None` when the adapter knows none.
    fn read_quota(&self) -> Option<std::sync::Arc<crate::platforms::quota::Quota>> {
        None
    }
}

/// The registry of channel adapters: builds the adapter for a channel's platform on that
/// channel's client from `clients`. One line per platform.
///
/// Errors: [`ChannelError::InvalidConfig`] when the platform section is missing or
/// unusable, [`ChannelError::Listings`] when the listings CSV cannot be read.
pub fn build_adapter(
    config: &ChannelConfig,
    clients: &PlatformClients,
) -> Result<Box<dyn ChannelAdapter>, ChannelError> {
    let id = config.id.as_str();
    Ok(match &config.platform {
        PlatformConfig::Shopify(section) => Box::new(shopify::ShopifyAdapter::with_client(
            id,
            section,
            clients.shopify(id, section),
        )?),
        PlatformConfig::Woocommerce(section) => {
            Box::new(woocommerce::WoocommerceAdapter::with_client(
                id,
                section,
                clients.woocommerce(id, section),
            )?)
        }
        PlatformConfig::Bolcom(section) => Box::new(bolcom::BolcomAdapter::with_client(
            id,
            section,
            clients.bolcom(id, section),
        )?),
        PlatformConfig::Amazon(section) => {
            let adapter =
                amazon::AmazonAdapter::with_client(id, section, clients.amazon(id, section))?;
            // Listings moved from MFN to FBA get their final DEFAULT 0 (amazon::fba).
            adapter.start_fba_retirement();
            Box::new(adapter)
        }
        PlatformConfig::SectionMissing(kind) => {
            return Err(ChannelError::InvalidConfig {
                channel: config.id.clone(),
                message: format!(
                    "kind = \"{kind}\" needs a [channels.{kind}] section",
                    kind = kind.name()
                ),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_domain_and_retry_hint() {
        let throttled = ChannelError::from(PlatformError::Throttled {
            retry_after_ms: Some(1000),
        });
        assert_eq!(throttled.domain(), ErrorDomain::External);
        assert_eq!(throttled.retry_hint(), RetryHint::WithBackoff);
        let unauthorized = ChannelError::from(PlatformError::Unauthorized {
            status: 401,
            message: "bad token".to_owned(),
        });
        assert_eq!(unauthorized.domain(), ErrorDomain::User);
        assert_eq!(unauthorized.retry_hint(), RetryHint::NoRetry);
        let graphql = ChannelError::from(PlatformError::GraphQl {
            code: None,
            message: "parse".to_owned(),
        });
        assert_eq!(graphql.domain(), ErrorDomain::Internal);
    }

    #[test]
    fn a_failed_report_has_one_retryable_result_per_item() {
        let items = vec![
            PushItem {
                sku: "A".to_owned(),
                quantity: 1,
                change_from: None,
            },
            PushItem {
                sku: "B".to_owned(),
                quantity: 2,
                change_from: Some(3),
            },
        ];
        let report = PushReport::failed(
            &items,
            ChannelError::from(PlatformError::Transport {
                message: "refused".to_owned(),
            }),
            ThrottleSignal::default(),
            1,
        );
        assert_eq!(report.results.len(), 2);
        assert!(matches!(
            report.results[1].outcome,
            ItemOutcome::Retryable { .. }
        ));
        assert_eq!(report.results[1].sku, "B");
    }
}
