//! The Amazon adapter's SKU → seller SKU mapping with FBA SKUs marked (PLATFORMS.md §4,
//! §4.6), from `AmazonConfig.listings`.

use crate::channels::ChannelError;
use crate::config::AmazonConfig;
use std::collections::HashMap;

/// One mapped listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The seller SKU at Amazon.
    pub seller_sku: String,
    /// Fulfilled by Amazon: never pushed.
    pub fba: bool,
}

/// SKU → listing, and seller SKU → SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingMap {
    by_sku: HashMap<String, Listing>,
    by_seller_sku: HashMap<String, String>,
}

impl ListingMap {
    /// Builds the map; a SKU or seller SKU mapped twice is [`ChannelError::InvalidConfig`].
    pub fn from_config(channel: &str, config: &AmazonConfig) -> Result<Self, ChannelError> {
        let mut map = Self::default();
        for listing in &config.listings {
            let seller_sku = listing.seller_sku().to_owned();
            let duplicate = map
                .by_sku
                .insert(
                    listing.sku.clone(),
                    Listing {
                        seller_sku: seller_sku.clone(),
                        fba: listing.fba,
                    },
                )
                .is_some()
                || map
                    .by_seller_sku
                    .insert(seller_sku.clone(), listing.sku.clone())
                    .is_some();
            if duplicate {
                return Err(ChannelError::InvalidConfig {
                    channel: channel.to_owned(),
                    message: format!(
                        "SKU {} or seller SKU {seller_sku} is mapped twice",
                        listing.sku
                    ),
                });
            }
        }
        Ok(map)
    }

    /// The listing of a SKU.
    pub fn listing(&self, sku: &str) -> Option<&Listing> {
        self.by_sku.get(sku)
    }

    /// Our SKU for a seller SKU.
    pub fn sku(&self, seller_sku: &str) -> Option<&str> {
        self.by_seller_sku.get(seller_sku).map(String::as_str)
    }

    /// Listings we push (FBA excluded).
    pub fn pushable(&self) -> usize {
        self.by_sku.values().filter(|listing| !listing.fba).count()
    }
}
