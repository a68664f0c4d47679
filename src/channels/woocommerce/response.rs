//! What WooCommerce's answers mean for pushed items (PLATFORMS.md §2.2 batch answers and
//! the 413 limit) and level reads; statuses and throttling are interpreted by the platform
//! client ([`crate::platforms::woocommerce`]).

use crate::channels::{ChannelError, PlatformError};
use crate::platforms::http::HttpAnswer;
use crate::platforms::woocommerce::status_error;
use serde_json::Value;
use std::collections::HashMap;

/// The error code of a batch over the limit (§2.2, `check_batch_limit`).
pub const TOO_LARGE_CODE: &str = "woocommerce_rest_request_entity_too_large";

/// For a 413 `woocommerce_rest_request_entity_too_large` answer: `Some(limit)` with the
/// limit read from "Unable to accept more than N items for this request." (`0` when the
/// message does not say); `None` for any other answer.
pub fn too_large_limit(answer: &HttpAnswer) -> Option<usize> {
    if answer.status != 413 {
        return None;
    }
    let message = answer.body["message"].as_str().unwrap_or_default();
    let limit = message
        .split_whitespace()
        .skip_while(|word| *word != "than")
        .nth(1)
        .and_then(|word| word.parse().ok())
        .unwrap_or(0);
    Some(limit)
}

/// One entry of a batch answer's `update[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemAnswer {
    /// The object as saved: `manage_stock` (true only when the bool `true`) and `stock_quantity`.
    Saved {
        /// `manage_stock == true`.
        manage_stock: bool,
        /// `stock_quantity` (`None` for null).
        stock_quantity: Option<i64>,
    },
    /// `{"id":…, "error":{"code","message","data":{"status"}}}`.
    Failed {
        /// `error.code`.
        code: String,
        /// `error.message`.
        message: String,
        /// `error.data.status`, when present.
        status: Option<u16>,
    },
}

/// Decodes a 200 batch answer's `update[]` into answers by id.
///
/// Errors: [`PlatformError::Decode`] when there is no `update` array.
pub fn decode_batch_update(answer: &HttpAnswer) -> Result<HashMap<u64, ItemAnswer>, ChannelError> {
    let entries = answer.body["update"].as_array().ok_or_else(|| {
        ChannelError::Platform(PlatformError::Decode {
            message: format!("no update[] in batch answer {}", answer.excerpt()),
        })
    })?;
    let mut answers = HashMap::with_capacity(entries.len());
    for entry in entries {
        let Some(id) = entry["id"].as_u64() else {
            continue;
        };
        let error = &entry["error"];
        let item = if error.is_object() {
            ItemAnswer::Failed {
                code: error["code"].as_str().unwrap_or("unknown").to_owned(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
                status: error["data"]["status"]
                    .as_u64()
                    .and_then(|status| u16::try_from(status).ok()),
            }
        } else {
            ItemAnswer::Saved {
                manage_stock: entry["manage_stock"] == Value::Bool(true),
                stock_quantity: entry["stock_quantity"].as_i64(),
            }
        };
        answers.insert(id, item);
    }
    Ok(answers)
}

/// Decodes a product or variation list into `(id, stock)`: `Some(stock_quantity)` when
/// `manage_stock` is `true` on that object, else `None` (stock not managed there, or
/// `"parent"`).
///
/// Errors: the status error, or [`PlatformError::Decode`] when the body is not an array.
pub fn decode_list(answer: &HttpAnswer) -> Result<Vec<(u64, Option<i64>)>, ChannelError> {
    if let Some(error) = status_error(answer) {
        return Err(error.into());
    }
    let objects = answer.body.as_array().ok_or_else(|| {
        ChannelError::Platform(PlatformError::Decode {
            message: format!("expected a JSON array, got {}", answer.excerpt()),
        })
    })?;
    Ok(objects
        .iter()
        .filter_map(|object| {
            let id = object["id"].as_u64()?;
            let managed = object["manage_stock"] == Value::Bool(true);
            Some((
                id,
                managed.then(|| object["stock_quantity"].as_i64()).flatten(),
            ))
        })
        .collect())
}
