//! The Shopify adapter's settings and the SKU → inventory item mapping (PLATFORMS.md §1.1),
//! from `ShopifyConfig.listings` and the `listings_csv` file (header `sku,inventory_item_id`).

use crate::channels::ChannelError;
use crate::config::ShopifyConfig;
use std::collections::HashMap;
use std::path::Path;

/// The first Admin API version with `changeFromQuantity` (PLATFORMS.md §1.2).
pub const CHANGE_FROM_QUANTITY_MIN_VERSION: &str = "2026-01";

/// SKU ↔ Shopify inventory item id, both ways.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingMap {
    by_sku: HashMap<String, u64>,
    by_item: HashMap<u64, String>,
}

impl ListingMap {
    /// Builds the map; a SKU or inventory item mapped twice is an error naming both.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, u64)>,
        channel: &str,
    ) -> Result<Self, ChannelError> {
        let mut map = Self::default();
        for (sku, item) in pairs {
            if let Some(previous) = map.by_sku.insert(sku.clone(), item)
                && previous != item
            {
                return Err(ChannelError::InvalidConfig {
                    channel: channel.to_owned(),
                    message: format!(
                        "SKU {sku} is mapped to inventory items {previous} and {item}"
                    ),
                });
            }
            if let Some(previous) = map.by_item.insert(item, sku.clone())
                && previous != sku
            {
                return Err(ChannelError::InvalidConfig {
                    channel: channel.to_owned(),
                    message: format!(
                        "inventory item {item} is mapped to SKUs {previous} and {sku}"
                    ),
                });
            }
        }
        Ok(map)
    }

    /// The inventory item of a SKU.
    pub fn item(&self, sku: &str) -> Option<u64> {
        self.by_sku.get(sku).copied()
    }

    /// The SKU of an inventory item.
    pub fn sku(&self, item: u64) -> Option<&str> {
        self.by_item.get(&item).map(String::as_str)
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

/// Parses a listings CSV: header `sku,inventory_item_id` (column order free, extra columns
/// ignored), one mapping per row, blank SKUs refused. Errors name the 1-based line.
pub fn parse_listings_csv(text: &str, path: &Path) -> Result<Vec<(String, u64)>, ChannelError> {
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
    let (Some(sku_column), Some(item_column)) = (column("sku"), column("inventory_item_id")) else {
        return Err(error(
            1,
            "header must name the columns sku and inventory_item_id".to_owned(),
        ));
    };
    let mut pairs = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| error(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let sku = record.get(sku_column).unwrap_or_default();
        let item = record.get(item_column).unwrap_or_default();
        if sku.is_empty() {
            return Err(error(line, "empty sku".to_owned()));
        }
        let item = item
            .parse::<u64>()
            .map_err(|_| error(line, format!("inventory_item_id {item:?} is not a number")))?;
        pairs.push((sku.to_owned(), item));
    }
    Ok(pairs)
}

/// Loads every mapping of a channel: inline `listings` first, then the CSV file.
pub fn load_listings(channel: &str, config: &ShopifyConfig) -> Result<ListingMap, ChannelError> {
    let mut pairs: Vec<(String, u64)> = config
        .listings
        .iter()
        .map(|listing| (listing.sku.clone(), listing.inventory_item_id))
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

/// GraphQL id of an inventory item (`gid://shopify/InventoryItem/123`).
pub fn inventory_item_gid(item: u64) -> String {
    format!("gid://shopify/InventoryItem/{item}")
}

/// GraphQL id of a location (`gid://shopify/Location/456`).
pub fn location_gid(location: u64) -> String {
    format!("gid://shopify/Location/{location}")
}

/// The number in `gid://shopify/<kind>/<n>` (anything after `?` ignored).
pub fn parse_gid(gid: &str, kind: &str) -> Option<u64> {
    let rest = gid
        .strip_prefix("gid://shopify/")?
        .strip_prefix(kind)?
        .strip_prefix('/')?;
    rest.split(['?', '/']).next()?.parse().ok()
}
