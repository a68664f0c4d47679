//! The bol.com adapter's SKU ↔ offer id mapping (PLATFORMS.md §3.2), from
//! `BolcomConfig.listings`.

use crate::channels::ChannelError;
use crate::config::BolcomConfig;
use std::collections::HashMap;

/// SKU ↔ bol offer id, both ways.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferMap {
    by_sku: HashMap<String, String>,
    by_offer: HashMap<String, String>,
}

impl OfferMap {
    /// Builds the map; a SKU or offer mapped twice is [`ChannelError::InvalidConfig`].
    pub fn from_config(channel: &str, config: &BolcomConfig) -> Result<Self, ChannelError> {
        let mut map = Self::default();
        for listing in &config.listings {
            let duplicate = map
                .by_sku
                .insert(listing.sku.clone(), listing.offer_id.clone())
                .is_some()
                || map
                    .by_offer
                    .insert(listing.offer_id.clone(), listing.sku.clone())
                    .is_some();
            if duplicate {
                return Err(ChannelError::InvalidConfig {
                    channel: channel.to_owned(),
                    message: format!(
                        "SKU {} or offer {} is mapped twice",
                        listing.sku, listing.offer_id
                    ),
                });
            }
        }
        Ok(map)
    }

    /// The offer id of a SKU.
    pub fn offer(&self, sku: &str) -> Option<&str> {
        self.by_sku.get(sku).map(String::as_str)
    }

    /// The SKU of an offer id.
    pub fn sku(&self, offer: &str) -> Option<&str> {
        self.by_offer.get(offer).map(String::as_str)
    }

    /// Number of listings.
    pub fn len(&self) -> usize {
        self.by_sku.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_sku.is_empty()
    }
}
