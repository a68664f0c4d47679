//! The WooCommerce adapter's SKU → listing mapping (PLATFORMS.md §2.1): a simple product id,
//! or a (product id, variation id) pair, from `WoocommerceConfig.listings` and the
//! `listings_csv` file (header `sku,product_id[,variation_id]`).

use crate::channels::ChannelError;
use crate::config::WoocommerceConfig;
use std::collections::HashMap;
use std::path::Path;

/// A WooCommerce listing: the object whose `stock_quantity` holds a SKU's stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Listing {
    /// A simple product (`PUT /products/{id}`, `POST /products/batch`).
    Product {
        /// Product id.
        product_id: u64,
    },
    /// A variation (`PUT /products/{product_id}/variations/{id}`,
    /// `POST /products/{product_id}/variations/batch`).
    Variation {
        /// The parent product id.
        product_id: u64,
        /// The variation id.
        variation_id: u64,
    },
}

impl Listing {
    /// A listing from a product id and an optional variation id (`None` or 0: simple product).
    pub fn new(product_id: u64, variation_id: Option<u64>) -> Self {
        match variation_id {
            Some(variation_id) if variation_id != 0 => Self::Variation {
                product_id,
                variation_id,
            },
            _ => Self::Product { product_id },
        }
    }

    /// The id this listing carries in a batch `update[]` entry (product or variation id).
    pub fn item_id(&self) -> u64 {
        match self {
            Self::Product { product_id } => *product_id,
            Self::Variation { variation_id, .. } => *variation_id,
        }
    }

    /// The batch endpoint group: `None` for `/products/batch`, `Some(parent)` for
    /// `/products/{parent}/variations/batch`.
    pub fn batch_group(&self) -> Option<u64> {
        match self {
            Self::Product { .. } => None,
            Self::Variation { product_id, .. } => Some(*product_id),
        }
    }
}

/// SKU ↔ WooCommerce listing, both ways.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingMap {
    by_sku: HashMap<String, Listing>,
    by_listing: HashMap<Listing, String>,
}

impl ListingMap {
    /// Builds the map; a SKU or listing mapped twice (differently) is an error naming both.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, Listing)>,
        channel: &str,
    ) -> Result<Self, ChannelError> {
        let mut map = Self::default();
        let invalid = |message: String| ChannelError::InvalidConfig {
            channel: channel.to_owned(),
            message,
        };
        for (sku, listing) in pairs {
            if let Some(previous) = map.by_sku.insert(sku.clone(), listing)
                && previous != listing
            {
                return Err(invalid(format!(
                    "SKU {sku} is mapped to {previous:?} and {listing:?}"
                )));
            }
            if let Some(previous) = map.by_listing.insert(listing, sku.clone())
                && previous != sku
            {
                return Err(invalid(format!(
                    "{listing:?} is mapped to SKUs {previous} and {sku}"
                )));
            }
        }
        Ok(map)
    }

    /// The listing of a SKU.
    pub fn listing(&self, sku: &str) -> Option<Listing> {
        self.by_sku.get(sku).copied()
    }

    /// The SKU of a listing.
    pub fn sku(&self, listing: &Listing) -> Option<&str> {
        self.by_listing.get(listing).map(String::as_str)
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

/// Parses a listings CSV: header `sku,product_id` with an optional `variation_id` column
/// (column order free, extra columns ignored; an empty or 0 variation id means a simple
/// product). Errors name the 1-based line.
pub fn parse_listings_csv(text: &str, path: &Path) -> Result<Vec<(String, Listing)>, ChannelError> {
    let error = |line: u64, message: String| ChannelError::Listings {
        path: path.to_owned(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| error(1, e.to_string()))?
        .clone();
    let column = |name: &str| headers.iter().position(|header| header == name);
    let (Some(sku_column), Some(product_column)) = (column("sku"), column("product_id")) else {
        return Err(error(
            1,
            "header must name the columns sku and product_id (variation_id optional)".to_owned(),
        ));
    };
    let variation_column = column("variation_id");
    let mut pairs = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| error(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let sku = record.get(sku_column).unwrap_or_default();
        if sku.is_empty() {
            return Err(error(line, "empty sku".to_owned()));
        }
        let product = record.get(product_column).unwrap_or_default();
        let product_id = product
            .parse::<u64>()
            .ok()
            .filter(|id| *id != 0)
            .ok_or_else(|| {
                error(
                    line,
                    format!("product_id {product:?} is not a positive number"),
                )
            })?;
        let variation = variation_column
            .and_then(|column| record.get(column))
            .unwrap_or_default();
        let variation_id =
            if variation.is_empty() {
                None
            } else {
                Some(variation.parse::<u64>().map_err(|_| {
                    error(line, format!("variation_id {variation:?} is not a number"))
                })?)
            };
        pairs.push((sku.to_owned(), Listing::new(product_id, variation_id)));
    }
    Ok(pairs)
}

/// Loads every mapping of a channel: inline `listings` first, then the CSV file.
///
/// Errors: [`ChannelError::Listings`] for an unreadable or malformed CSV,
/// [`ChannelError::InvalidConfig`] for a SKU or listing mapped twice.
pub fn load_listings(
    channel: &str,
    config: &WoocommerceConfig,
) -> Result<ListingMap, ChannelError> {
    let mut pairs: Vec<(String, Listing)> = config
        .listings
        .iter()
        .map(|listing| {
            (
                listing.sku.clone(),
                Listing::new(listing.product_id, listing.variation_id),
            )
        })
        .collect();
    if let Some(path) = &config.listings_csv {
        let text = std::fs::read_to_string(path).map_err(|e| ChannelError::Listings {
            path: path.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        pairs.extend(parse_listings_csv(&text, path)?);
    }
    ListingMap::from_pairs(pairs, channel)
}
