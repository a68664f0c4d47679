//! What Shopify's answers mean for pushed items and level reads (PLATFORMS.md §1.2 user
//! errors, §1.4 REST answers); statuses, throttling and request-level GraphQL failures are
//! interpreted by the platform client ([`crate::platforms::shopify`]).

use super::config::parse_gid;
use crate::channels::{ChannelError, PlatformError};
use crate::platforms::http::HttpAnswer;
use crate::platforms::shopify as platform;
use serde_json::Value;

fn excerpt(text: &str) -> String {
    crate::platforms::http::excerpt(text)
}

/// The request-level failure of a GraphQL answer, as a channel error.
fn graphql_failure(answer: &HttpAnswer) -> Option<ChannelError> {
    platform::graphql_failure(answer).map(ChannelError::from)
}

/// The request-level error of a REST status (422 is checked first by the caller).
fn status_error(answer: &HttpAnswer) -> Option<ChannelError> {
    answer.status_error().map(ChannelError::from)
}

/// One `userErrors` entry of `inventorySetQuantities`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserError {
    /// `InventorySetQuantitiesUserErrorCode`.
    pub code: String,
    /// The quantity index named by `field` (`["input","quantities","3",…]`), if any.
    pub index: Option<usize>,
    /// Human message.
    pub message: String,
}

impl UserError {
    /// True for a compare-and-set failure (the channel changed the value).
    pub fn is_stale(&self) -> bool {
        self.code == "CHANGE_FROM_QUANTITY_STALE" || self.code == "COMPARE_QUANTITY_STALE"
    }
}

/// What one `inventorySetQuantities` answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetQuantitiesAnswer {
    /// Every quantity was applied.
    Applied,
    /// Nothing was applied (all-or-nothing); these quantities were refused.
    UserErrors(Vec<UserError>),
    /// The request failed as a whole.
    Failed(ChannelError),
}

/// Decodes an `inventorySetQuantities` answer.
pub fn decode_set_quantities(answer: &HttpAnswer) -> SetQuantitiesAnswer {
    if let Some(error) = graphql_failure(answer) {
        return SetQuantitiesAnswer::Failed(error);
    }
    let payload = &answer.body["data"]["inventorySetQuantities"];
    let Some(errors) = payload["userErrors"].as_array() else {
        return SetQuantitiesAnswer::Failed(ChannelError::Platform(PlatformError::Decode {
            message: format!(
                "no inventorySetQuantities.userErrors in {}",
                excerpt(&answer.text)
            ),
        }));
    };
    if errors.is_empty() {
        return SetQuantitiesAnswer::Applied;
    }
    let user_errors = errors
        .iter()
        .map(|error| {
            let field = error["field"].as_array();
            let index = field
                .filter(|field| {
                    field.first() == Some(&Value::from("input"))
                        && field.get(1) == Some(&Value::from("quantities"))
                })
                .and_then(|field| field.get(2))
                .and_then(|index| {
                    index
                        .as_str()
                        .and_then(|text| text.parse().ok())
                        .or(index.as_u64().map(|n| n as usize))
                });
            UserError {
                code: error["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                index,
                message: error["message"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    SetQuantitiesAnswer::UserErrors(user_errors)
}

/// Decodes a level read: `(inventory item, available)` per returned node; `None` when the
/// item is not stocked at the location.
pub fn decode_levels(answer: &HttpAnswer) -> Result<Vec<(u64, Option<i64>)>, ChannelError> {
    if let Some(error) = graphql_failure(answer) {
        return Err(error);
    }
    let nodes = answer.body["data"]["nodes"].as_array().ok_or_else(|| {
        ChannelError::Platform(PlatformError::Decode {
            message: format!("no data.nodes in {}", excerpt(&answer.text)),
        })
    })?;
    Ok(nodes
        .iter()
        .filter_map(|node| {
            let item = parse_gid(node["id"].as_str()?, "InventoryItem")?;
            let available =
                node["inventoryLevel"]["quantities"]
                    .as_array()
                    .and_then(|quantities| {
                        quantities
                            .iter()
                            .find(|quantity| quantity["name"] == "available")
                            .and_then(|quantity| quantity["quantity"].as_i64())
                    });
            Some((item, available))
        })
        .collect())
}

/// What one REST `set.json` answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestSetAnswer {
    /// The level now holds this `available`.
    Accepted(i64),
    /// 422: the platform refuses this level (not stocked, not tracked, not mutable).
    ItemRejected(String),
    /// The request failed as a whole.
    Failed(ChannelError),
}

/// Decodes a REST `inventory_levels/set.json` answer (PLATFORMS.md §1.4).
pub fn decode_rest_set(answer: &HttpAnswer) -> RestSetAnswer {
    if answer.status == 422 {
        return RestSetAnswer::ItemRejected(excerpt(&answer.text));
    }
    if let Some(error) = status_error(answer) {
        return RestSetAnswer::Failed(error);
    }
    match answer.body["inventory_level"]["available"].as_i64() {
        Some(available) => RestSetAnswer::Accepted(available),
        None => RestSetAnswer::Failed(ChannelError::Platform(PlatformError::Decode {
            message: format!("no inventory_level.available in {}", excerpt(&answer.text)),
        })),
    }
}

/// Decodes a REST `inventory_levels.json` answer into `(inventory item, available)`.
pub fn decode_rest_levels(answer: &HttpAnswer) -> Result<Vec<(u64, i64)>, ChannelError> {
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    let levels = answer.body["inventory_levels"].as_array().ok_or_else(|| {
        ChannelError::Platform(PlatformError::Decode {
            message: format!("no inventory_levels in {}", excerpt(&answer.text)),
        })
    })?;
    Ok(levels
        .iter()
        .filter_map(|level| {
            Some((
                level["inventory_item_id"].as_u64()?,
                level["available"].as_i64()?,
            ))
        })
        .collect())
}
