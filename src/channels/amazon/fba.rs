//! MFN → FBA: the final 0 on the DEFAULT (merchant) entry of a listing configured
//! `fba = true` (issue 9 §6, PLATFORMS.md §4.6).
//!
//! Owns: [`FbaRetirement`], the per-channel record of which FBA listings have had their
//! DEFAULT entry dealt with, and the pass that deals with them.
//!
//! How a change of mapping is detected: by reading the listing back from Amazon, not from
//! the stored last-pushed record. The read-back is what buyers see now; it catches a listing
//! that was switched in the config while stocksync was down, one whose merchant quantity was
//! set by hand or by another tool, and one whose last-pushed record is gone (a new store);
//! it also tells whether Amazon has converted the offer already, which the record cannot.
//! And the adapter never depends on the store.
//!
//! One pass, for every FBA listing not yet settled (`getListingsItem` with
//! `fulfillmentAvailability`):
//! - no DEFAULT quantity, or 0: nothing to do, settled ([`FbaDefault::Clear`]) — so a
//!   restart after the final 0 writes nothing;
//! - a DEFAULT quantity above 0 and no Amazon fulfilment entry (the offer is still merchant
//!   fulfilled at Amazon: the mapping changed here first): one PATCH of DEFAULT 0, then the
//!   listing is read back until it shows 0 ([`FbaDefault::Zeroed`]); not yet 0 after
//!   [`CONFIRM_READS`] reads leaves it pending (read again next pass, written again only if
//!   it still shows a merchant quantity);
//! - a DEFAULT quantity above 0 while Amazon already fulfils the offer: nothing is written
//!   (a DEFAULT write would flip the offer back to MFN) and a warning asks for the merchant
//!   quantity to be cleared in Seller Central ([`FbaDefault::AmazonFulfilled`]);
//! - 404: nothing to clear ([`FbaDefault::NotListed`]); a refused PATCH is settled
//!   ([`FbaDefault::Refused`]), a failed request or a throttle leaves it pending.
//!
//! A settled listing is never written again: pushes go to a SKU's MFN listing only, and a
//! SKU with only an FBA listing is answered `FBA_SKU` without a request.
//!
//! May depend on: `channels`, `config`, `platforms`. Never `ledger`, `ingest` or `store`.

use super::{request, response};
use crate::config::AmazonConfig;
use crate::platforms::PlatformError;
use crate::platforms::amazon::AmazonClient;
use response::{ListingFulfilment, PatchAnswer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Counter of FBA listings whose DEFAULT entry was settled, labelled by channel and outcome
/// (`zeroed`, `clear`, `not_listed`, `amazon_fulfilled`, `refused`).
pub const FBA_DEFAULTS_TOTAL: &str = "stocksync_channel_amazon_fba_defaults_total";
/// Reads of a listing after the final 0 before it stays pending for the next pass.
pub const CONFIRM_READS: u32 = 10;
/// Pause between those reads, in milliseconds (Amazon applies an accepted patch moments later).
pub const CONFIRM_PAUSE_MS: u64 = 500;
/// Pause between passes while some listing is pending, in milliseconds.
pub const RETRY_MS: u64 = 60_000;

/// What was done about one FBA listing's DEFAULT entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FbaDefault {
    /// The final 0 was written and read back.
    Zeroed {
        /// The merchant quantity it replaced, in whole units.
        previous: i64,
    },
    /// The DEFAULT entry had no quantity or 0: nothing written.
    Clear {
        /// The quantity read (`None`: no DEFAULT entry).
        quantity: Option<i64>,
    },
    /// Amazon has no such listing: nothing to clear.
    NotListed,
    /// Amazon fulfils the offer already but still shows a merchant quantity: not written
    /// (a DEFAULT write would flip the offer back to MFN); clear it in Seller Central.
    AmazonFulfilled {
        /// The merchant quantity shown, in whole units.
        quantity: i64,
    },
    /// Amazon refused the final 0 (it would refuse it again).
    Refused {
        /// Amazon's issue code.
        code: String,
        /// Amazon's message.
        message: String,
    },
    /// Not settled yet; tried again on the next pass.
    Pending {
        /// Why.
        reason: String,
    },
}

impl FbaDefault {
    /// Whether nothing more will be done about the listing.
    pub fn is_settled(&self) -> bool {
        !matches!(self, Self::Pending { .. })
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Zeroed { .. } => "zeroed",
            Self::Clear { .. } => "clear",
            Self::NotListed => "not_listed",
            Self::AmazonFulfilled { .. } => "amazon_fulfilled",
            Self::Refused { .. } => "refused",
            Self::Pending { .. } => "pending",
        }
    }
}

/// One FBA listing and what was done about its DEFAULT entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FbaDefaultReport {
    /// Our SKU.
    pub sku: String,
    /// The FBA listing's seller SKU.
    pub seller_sku: String,
    /// The state of its DEFAULT entry.
    pub state: FbaDefault,
}

/// The FBA listings of one channel and the state of their DEFAULT entries (bounded by the
/// configured listings).
#[derive(Debug)]
pub struct FbaRetirement {
    channel: String,
    config: AmazonConfig,
    client: Arc<AmazonClient>,
    /// Seller SKU → (SKU, state); one pass at a time holds the lock.
    listings: tokio::sync::Mutex<BTreeMap<String, (String, FbaDefault)>>,
}

impl FbaRetirement {
    /// Over `(SKU, seller SKU)` of every FBA listing, all pending.
    pub fn new(
        channel: &str,
        config: &AmazonConfig,
        client: Arc<AmazonClient>,
        fba_listings: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let listings = fba_listings
            .into_iter()
            .map(|(sku, seller_sku)| {
                (
                    seller_sku,
                    (
                        sku,
                        FbaDefault::Pending {
                            reason: "not read yet".to_owned(),
                        },
                    ),
                )
            })
            .collect();
        Self {
            channel: channel.to_owned(),
            config: config.clone(),
            client,
            listings: tokio::sync::Mutex::new(listings),
        }
    }

    /// One pass over the listings not yet settled (see the module docs); returns every FBA
    /// listing's state, sorted by seller SKU.
    pub async fn run_pass(&self) -> Vec<FbaDefaultReport> {
        let mut listings = self.listings.lock().await;
        for (seller_sku, (sku, state)) in listings.iter_mut() {
            if state.is_settled() {
                continue;
            }
            *state = self.settle(seller_sku).await;
            match state {
                FbaDefault::Pending { reason } => {
                    tracing::info!(channel = %self.channel, %sku, %seller_sku, %reason, "FBA listing's DEFAULT entry not settled yet");
                }
                FbaDefault::AmazonFulfilled { quantity } => {
                    tracing::warn!(channel = %self.channel, %sku, %seller_sku, quantity = *quantity, "FBA listing still shows a merchant (DEFAULT) quantity; not written, as that would flip the offer back to MFN: clear it in Seller Central");
                }
                FbaDefault::Refused { code, message } => {
                    tracing::warn!(channel = %self.channel, %sku, %seller_sku, %code, %message, "Amazon refused the final DEFAULT 0 of an FBA listing");
                }
                FbaDefault::Zeroed { previous } => {
                    tracing::info!(channel = %self.channel, %sku, %seller_sku, previous = *previous, "listing moved to FBA: final DEFAULT 0 written and read back");
                }
                FbaDefault::Clear { .. } | FbaDefault::NotListed => {}
            }
            if state.is_settled() {
                metrics::counter!(FBA_DEFAULTS_TOTAL, "channel" => self.channel.clone(), "outcome" => state.label())
                    .increment(1);
            }
        }
        listings
            .iter()
            .map(|(seller_sku, (sku, state))| FbaDefaultReport {
                sku: sku.clone(),
                seller_sku: seller_sku.clone(),
                state: state.clone(),
            })
            .collect()
    }

    /// Whether some listing is still pending.
    pub async fn pending(&self) -> bool {
        self.listings
            .lock()
            .await
            .values()
            .any(|(_, state)| !state.is_settled())
    }

    async fn read(&self, seller_sku: &str) -> Result<Option<ListingFulfilment>, PlatformError> {
        let answer = self
            .client
            .listing_availability(
                &self.config.seller_id,
                seller_sku,
                &self.config.marketplace_id,
            )
            .await?;
        response::decode_listing_fulfilment(&answer)
    }

    async fn settle(&self, seller_sku: &str) -> FbaDefault {
        let pending = |reason: String| FbaDefault::Pending { reason };
        let fulfilment = match self.read(seller_sku).await {
            Ok(Some(fulfilment)) => fulfilment,
            Ok(None) => return FbaDefault::NotListed,
            Err(error) => return pending(format!("read failed: {error}")),
        };
        let previous = match fulfilment.default_quantity {
            None | Some(0) => {
                return FbaDefault::Clear {
                    quantity: fulfilment.default_quantity,
                };
            }
            Some(quantity) if fulfilment.amazon_fulfilled => {
                return FbaDefault::AmazonFulfilled { quantity };
            }
            Some(quantity) => quantity,
        };
        let body = request::patch_body(&self.config.product_type, 0);
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
            Err(error) => return pending(format!("final 0 not sent: {error}")),
        };
        match response::decode_patch(&answer) {
            Ok(PatchAnswer::Accepted) => {}
            Ok(PatchAnswer::Invalid(code, message)) => {
                return FbaDefault::Refused { code, message };
            }
            Err(error) => return pending(format!("final 0 not accepted: {error}")),
        }
        for attempt in 0..CONFIRM_READS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(CONFIRM_PAUSE_MS)).await;
            }
            match self.read(seller_sku).await {
                Ok(Some(ListingFulfilment {
                    default_quantity: None | Some(0),
                    ..
                })) => return FbaDefault::Zeroed { previous },
                Ok(None) => return FbaDefault::NotListed,
                Ok(Some(_)) | Err(_) => {}
            }
        }
        pending("final 0 accepted but not read back yet".to_owned())
    }
}
