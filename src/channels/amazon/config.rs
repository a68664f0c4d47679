//! The Amazon adapter's SKU → seller SKU mapping with FBA SKUs marked (PLATFORMS.md §4,
//! §4.6), from `AmazonConfig.listings`.
//!
//! A SKU has at most one merchant-fulfilled (MFN) listing and at most one FBA listing, each
//! under its own seller SKU (Amazon keeps an MFN and an FBA offer of one product apart by
//! seller SKU). Propagation pushes only the MFN listing; the FBA listing's stock is
//! Amazon's.

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

/// The listings of one SKU: an MFN one, an FBA one, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkuListings {
    /// The merchant-fulfilled listing (the one propagation pushes).
    pub mfn: Option<Listing>,
    /// The FBA listing (never given a quantity).
    pub fba: Option<Listing>,
}

/// SKU → listings, and seller SKU → SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingMap {
    by_sku: HashMap<String, SkuListings>,
    by_seller_sku: HashMap<String, String>,
}

impl ListingMap {
    /// Builds the map. A SKU may have one MFN and one FBA listing; a second listing of the
    /// same fulfilment for a SKU, or a seller SKU mapped twice, is
    /// [`ChannelError::InvalidConfig`].
    pub fn from_config(channel: &str, config: &AmazonConfig) -> Result<Self, ChannelError> {
        let mut map = Self::default();
        for listing in &config.listings {
            let seller_sku = listing.seller_sku().to_owned();
            let invalid = |message: String| ChannelError::InvalidConfig {
                channel: channel.to_owned(),
                message,
            };
            if let Some(other) = map.by_seller_sku.get(&seller_sku) {
                return Err(invalid(format!(
                    "seller SKU {seller_sku} is mapped twice (SKUs {other} and {})",
                    listing.sku
                )));
            }
            let entry = map.by_sku.entry(listing.sku.clone()).or_default();
            let slot = if listing.fba {
                &mut entry.fba
            } else {
                &mut entry.mfn
            };
            if let Some(existing) = slot {
                return Err(invalid(format!(
                    "SKU {} is mapped twice as {} (seller SKUs {} and {seller_sku}); a SKU may \
                     have one MFN and one FBA listing",
                    listing.sku,
                    if listing.fba { "FBA" } else { "MFN" },
                    existing.seller_sku
                )));
            }
            *slot = Some(Listing {
                seller_sku: seller_sku.clone(),
                fba: listing.fba,
            });
            map.by_seller_sku.insert(seller_sku, listing.sku.clone());
        }
        Ok(map)
    }

    /// The listing of a SKU that stands for it: the MFN listing, else the FBA one.
    pub fn listing(&self, sku: &str) -> Option<&Listing> {
        let listings = self.by_sku.get(sku)?;
        listings.mfn.as_ref().or(listings.fba.as_ref())
    }

    /// The MFN and FBA listings of a SKU.
    pub fn listings(&self, sku: &str) -> Option<&SkuListings> {
        self.by_sku.get(sku)
    }

    /// The merchant-fulfilled listing of a SKU (the one that is pushed).
    pub fn mfn(&self, sku: &str) -> Option<&Listing> {
        self.by_sku.get(sku)?.mfn.as_ref()
    }

    /// Every FBA listing, as (SKU, listing), sorted by seller SKU.
    pub fn fba_listings(&self) -> Vec<(&str, &Listing)> {
        let mut listings: Vec<(&str, &Listing)> = self
            .by_sku
            .iter()
            .filter_map(|(sku, listings)| Some((sku.as_str(), listings.fba.as_ref()?)))
            .collect();
        listings.sort_by(|a, b| a.1.seller_sku.cmp(&b.1.seller_sku));
        listings
    }

    /// Our SKU for a seller SKU.
    pub fn sku(&self, seller_sku: &str) -> Option<&str> {
        self.by_seller_sku.get(seller_sku).map(String::as_str)
    }

    /// Listings we push (SKUs with an MFN listing).
    pub fn pushable(&self) -> usize {
        self.by_sku
            .values()
            .filter(|listings| listings.mfn.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listings: &str) -> AmazonConfig {
        toml::from_str(&format!(
            r#"
            client_id = "c"
            client_secret = "s"
            refresh_token = "r"
            seller_id = "SELLER"
            marketplace_id = "M"
            listings = [{listings}]
            "#
        ))
        .unwrap()
    }

    #[test]
    fn a_sku_may_have_one_mfn_and_one_fba_listing() {
        let map = ListingMap::from_config(
            "amz",
            &config(
                r#"{ sku = "A", seller_sku = "A-MFN" }, { sku = "A", seller_sku = "A-FBA", fba = true },
                   { sku = "F", seller_sku = "F-FBA", fba = true }"#,
            ),
        )
        .unwrap();
        assert_eq!(map.mfn("A").unwrap().seller_sku, "A-MFN");
        assert_eq!(map.listing("A").unwrap().seller_sku, "A-MFN");
        assert_eq!(
            map.listings("A").unwrap().fba.as_ref().unwrap().seller_sku,
            "A-FBA"
        );
        assert_eq!(map.mfn("F"), None);
        assert_eq!(map.listing("F").unwrap().seller_sku, "F-FBA");
        assert_eq!(map.sku("A-FBA"), Some("A"));
        assert_eq!(map.sku("A-MFN"), Some("A"));
        assert_eq!(map.pushable(), 1);
        let fba: Vec<(&str, &str)> = map
            .fba_listings()
            .into_iter()
            .map(|(sku, listing)| (sku, listing.seller_sku.as_str()))
            .collect();
        assert_eq!(fba, vec![("A", "A-FBA"), ("F", "F-FBA")]);
    }

    #[test]
    fn real_duplicates_are_refused() {
        for listings in [
            r#"{ sku = "A", seller_sku = "A-1" }, { sku = "A", seller_sku = "A-2" }"#,
            r#"{ sku = "A", seller_sku = "A-1", fba = true }, { sku = "A", seller_sku = "A-2", fba = true }"#,
            r#"{ sku = "A", seller_sku = "X" }, { sku = "B", seller_sku = "X" }"#,
            r#"{ sku = "A", seller_sku = "X" }, { sku = "A", seller_sku = "X", fba = true }"#,
        ] {
            let error = ListingMap::from_config("amz", &config(listings)).unwrap_err();
            assert!(
                error.to_string().contains("mapped twice"),
                "{listings}: {error}"
            );
        }
    }
}
