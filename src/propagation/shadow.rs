//! Shadow mode (`[[channels]] mode = "shadow"`): everything runs except the pushes.
//!
//! Owns: [`ShadowAdapter`], the wrapper every channel's adapter is started in, and the
//! report of what would have been pushed ([`ShadowReport`]).
//!
//! While a channel is in shadow, a push reads the listings it would have set instead
//! (one [`ChannelAdapter::read_levels`] call per batch, within the same rate bucket as a
//! push) and records, per listing, what would have been sent next to what the channel
//! lists. It then answers each item `Accepted` at the channel's own value, so propagation
//! believes exactly what the channel lists: a later ledger change pushes (reads) again
//! only when the ATP differs from it, and switching to live ([`ShadowAdapter::set_live`],
//! then a re-derivation of every listing) sends each listing that differs once, with
//! compare-and-set on the value read. A listing the channel does not have is answered
//! `Accepted` at our value and reported as `missing`. Live, every call goes to the wrapped
//! adapter unchanged.
//!
//! The report lives in memory, one entry per listing (bounded by the channel's listing
//! count); after a restart it fills again as the start-up re-derivation reads every listing.
//!
//! May depend on: `channels`, `clock`, `config`.

use crate::channels::{
    ChannelAdapter, ChannelError, ItemOutcome, ItemResult, LevelsReport, ListingLocation,
    ListingMatch, PushItem, PushReport, ThrottleSignal,
};
use crate::config::ChannelKind;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How a listing the shadow compared stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowClass {
    /// The channel lists what we would push.
    InSync,
    /// The channel lists more than the ledger's ATP: units it could oversell.
    ChannelHigher,
    /// The channel lists less than the ATP: sales it could be missing.
    ChannelLower,
    /// The channel does not stock the listing (or did not say).
    Missing,
}

impl ShadowClass {
    /// The class as the API and the report name it (`in_sync`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InSync => "in_sync",
            Self::ChannelHigher => "channel_higher",
            Self::ChannelLower => "channel_lower",
            Self::Missing => "missing",
        }
    }
}

/// One listing as the shadow last compared it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShadowEntry {
    /// The listing key (the SKU, or `SKU@LOCATION` on a multi-location channel).
    pub sku: String,
    /// The quantity propagation would have pushed (whole units).
    pub would_push: u64,
    /// What the channel listed when read; `None` when it does not stock the listing.
    pub channel_value: Option<i64>,
    /// `channel_value − would_push` (0 when missing).
    pub difference: i64,
    /// The class of the difference.
    pub class: ShadowClass,
    /// When it was compared, ms since the Unix epoch.
    pub at_ms: i64,
}

/// What `GET /api/v1/channels/{channel}/shadow-report` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShadowReport {
    /// The channel.
    pub channel: String,
    /// `shadow` or `live`.
    pub mode: &'static str,
    /// Listings compared since the start (or since the channel went to shadow).
    pub compared: usize,
    /// Listings per class.
    pub classes: std::collections::BTreeMap<ShadowClass, usize>,
    /// Units listed over the ATP, summed over `channel_higher` listings.
    pub units_over: u64,
    /// Units missing under the ATP, summed over `channel_lower` listings.
    pub units_under: u64,
    /// The listings that differ (not `in_sync`), largest difference first, at most the
    /// `limit` asked for.
    pub differences: Vec<ShadowEntry>,
}

/// A channel adapter that, in shadow mode, reads instead of pushing (see the module docs).
pub struct ShadowAdapter {
    inner: Arc<dyn ChannelAdapter>,
    shadow: AtomicBool,
    entries: Mutex<HashMap<String, ShadowEntry>>,
    clock: crate::clock::SharedClock,
}

impl ShadowAdapter {
    /// Wraps `inner`; `shadow` says whether the channel starts in shadow mode.
    pub fn new(
        inner: Arc<dyn ChannelAdapter>,
        shadow: bool,
        clock: crate::clock::SharedClock,
    ) -> Self {
        Self {
            inner,
            shadow: AtomicBool::new(shadow),
            entries: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// True while the channel is in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.shadow.load(Ordering::Acquire)
    }

    /// Switches the mode: `true` pushes for real from the next push on, `false` goes back
    /// to shadow. Returns whether the mode changed.
    pub fn set_live(&self, live: bool) -> bool {
        self.shadow.swap(!live, Ordering::AcqRel) == live
    }

    /// The report: counts per class and the `limit` largest differences.
    pub fn report(&self, channel: &str, limit: usize) -> ShadowReport {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut classes = std::collections::BTreeMap::new();
        let (mut over, mut under) = (0_u64, 0_u64);
        let mut differences = Vec::new();
        for entry in entries.values() {
            *classes.entry(entry.class).or_insert(0) += 1;
            match entry.class {
                ShadowClass::ChannelHigher => {
                    over = over.saturating_add(entry.difference.unsigned_abs())
                }
                ShadowClass::ChannelLower => {
                    under = under.saturating_add(entry.difference.unsigned_abs())
                }
                _ => {}
            }
            if entry.class != ShadowClass::InSync {
                differences.push(entry.clone());
            }
        }
        differences.sort_by(|a, b| {
            b.difference
                .unsigned_abs()
                .cmp(&a.difference.unsigned_abs())
                .then_with(|| a.sku.cmp(&b.sku))
        });
        differences.truncate(limit);
        ShadowReport {
            channel: channel.to_owned(),
            mode: if self.is_shadow() { "shadow" } else { "live" },
            compared: entries.len(),
            classes,
            units_over: over,
            units_under: under,
            differences,
        }
    }

    /// Reads the listings `items` would set and records the comparison.
    async fn compare(&self, items: &[PushItem]) -> PushReport {
        let skus: Vec<String> = items.iter().map(|item| item.sku.clone()).collect();
        let levels = match self.inner.read_levels(&skus).await {
            Ok(levels) => levels,
            Err(error) => {
                let throttle = ThrottleSignal::default();
                return PushReport::failed(items, error, throttle, 1);
            }
        };
        let read: HashMap<&str, Option<i64>> = levels
            .levels
            .iter()
            .map(|(sku, value)| (sku.as_str(), *value))
            .collect();
        let now_ms = self.clock.now_ms();
        let mut results = Vec::with_capacity(items.len());
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for item in items {
                let channel_value = read.get(item.sku.as_str()).copied().flatten();
                let would_push = i64::try_from(item.quantity).unwrap_or(i64::MAX);
                let (difference, class) = match channel_value {
                    None => (0, ShadowClass::Missing),
                    Some(value) => {
                        let difference = value.saturating_sub(would_push);
                        let class = match difference.signum() {
                            0 => ShadowClass::InSync,
                            1 => ShadowClass::ChannelHigher,
                            _ => ShadowClass::ChannelLower,
                        };
                        (difference, class)
                    }
                };
                // Bounded: propagation only pushes mapped listings, one entry each.
                if entries.len() < self.inner.listing_count().max(1)
                    || entries.contains_key(&item.sku)
                {
                    entries.insert(
                        item.sku.clone(),
                        ShadowEntry {
                            sku: item.sku.clone(),
                            would_push: item.quantity,
                            channel_value,
                            difference,
                            class,
                            at_ms: now_ms,
                        },
                    );
                }
                let believed = channel_value
                    .and_then(|value| u64::try_from(value).ok())
                    .unwrap_or(item.quantity);
                results.push(ItemResult {
                    sku: item.sku.clone(),
                    outcome: ItemOutcome::Accepted { quantity: believed },
                });
            }
        }
        metrics::counter!(crate::telemetry::PROPAGATION_SHADOW_COMPARED_TOTAL)
            .increment(items.len() as u64);
        PushReport {
            results,
            throttle: levels.throttle,
            requests: levels.requests,
            reads: levels.requests,
            error: None,
        }
    }
}

#[async_trait]
impl ChannelAdapter for ShadowAdapter {
    fn kind(&self) -> ChannelKind {
        self.inner.kind()
    }
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    fn is_mapped(&self, sku: &str) -> bool {
        self.inner.is_mapped(sku)
    }
    fn listing_count(&self) -> usize {
        self.inner.listing_count()
    }
    fn listing_sku(&self, listing_id: &str, location_id: &str) -> ListingMatch {
        self.inner.listing_sku(listing_id, location_id)
    }
    fn listing_locations(&self) -> &[ListingLocation] {
        self.inner.listing_locations()
    }
    async fn push(&self, items: &[PushItem]) -> PushReport {
        if self.is_shadow() {
            self.compare(items).await
        } else {
            self.inner.push(items).await
        }
    }
    async fn check_submitted(&self, token: &str, items: &[PushItem]) -> PushReport {
        self.inner.check_submitted(token, items).await
    }
    fn serialises_listings(&self) -> bool {
        self.inner.serialises_listings()
    }
    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        self.inner.read_levels(skus).await
    }
    fn push_quota(&self) -> Option<Arc<crate::platforms::quota::Quota>> {
        self.inner.push_quota()
    }
    fn read_quota(&self) -> Option<Arc<crate::platforms::quota::Quota>> {
        self.inner.read_quota()
    }
}
