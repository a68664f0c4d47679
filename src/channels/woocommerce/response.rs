//! The one place where WooCommerce's status codes, headers and bodies are interpreted
//! (PLATFORMS.md §2.2 batch answers and the 413 limit, §2.5 host/WAF 429/503).

use crate::channels::{ChannelError, ThrottleSignal};
use serde_json::Value;
use std::collections::HashMap;

/// Longest body excerpt kept in an error message.
const MESSAGE_MAX_CHARS: usize = 300;

/// The error code of a batch over the limit (§2.2, `check_batch_limit`).
pub const TOO_LARGE_CODE: &str = "woocommerce_rest_request_entity_too_large";

/// An HTTP answer, read once.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in milliseconds (delta-seconds, integer or decimal).
    pub retry_after_ms: Option<u64>,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
    /// The body as text (for error messages).
    pub text: String,
}

/// Maps a client error to [`ChannelError::Transport`] (timeouts included).
pub fn transport_error(error: &reqwest::Error) -> ChannelError {
    let kind = if error.is_timeout() { "timeout: " } else { "" };
    ChannelError::Transport {
        message: format!("{kind}{error}"),
    }
}

/// Parses `Retry-After` delta-seconds (`2`, `2.5`) into milliseconds.
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64)
}

/// Reads status, `Retry-After` and body of a response.
///
/// Errors: [`ChannelError::Transport`] when the body cannot be read.
pub async fn read_answer(response: reqwest::Response) -> Result<HttpAnswer, ChannelError> {
    let status = response.status().as_u16();
    let retry_after_ms = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after_ms);
    let text = response
        .text()
        .await
        .map_err(|error| transport_error(&error))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(HttpAnswer {
        status,
        retry_after_ms,
        body,
        text,
    })
}

fn excerpt(text: &str) -> String {
    text.chars().take(MESSAGE_MAX_CHARS).collect()
}

/// The request-level error of a status, `None` for 2xx (413 included as `Rejected`; callers
/// check [`too_large_limit`] first).
pub fn status_error(answer: &HttpAnswer) -> Option<ChannelError> {
    let message = answer.body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| excerpt(&answer.text));
    match answer.status {
        200..=299 => None,
        401 | 403 => Some(ChannelError::Unauthorized {
            status: answer.status,
            message,
        }),
        429 => Some(ChannelError::Throttled {
            retry_after_ms: answer.retry_after_ms,
        }),
        500..=599 => Some(ChannelError::Server {
            status: answer.status,
            message,
        }),
        status => Some(ChannelError::Rejected { status, message }),
    }
}

/// Throttle signal of an answer: core WooCommerce has none (§2.5), but hosts and WAFs send
/// 429, or 503 with `Retry-After`; both pause the channel for `Retry-After`.
pub fn throttle(answer: &HttpAnswer) -> ThrottleSignal {
    let throttled =
        answer.status == 429 || (answer.status == 503 && answer.retry_after_ms.is_some());
    ThrottleSignal {
        throttled,
        retry_after_ms: if throttled {
            answer.retry_after_ms
        } else {
            None
        },
        budget: None,
    }
}

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
/// Errors: [`ChannelError::Decode`] when there is no `update` array.
pub fn decode_batch_update(answer: &HttpAnswer) -> Result<HashMap<u64, ItemAnswer>, ChannelError> {
    let entries = answer.body["update"]
        .as_array()
        .ok_or_else(|| ChannelError::Decode {
            message: format!("no update[] in batch answer {}", excerpt(&answer.text)),
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
/// Errors: the status error, or [`ChannelError::Decode`] when the body is not an array.
pub fn decode_list(answer: &HttpAnswer) -> Result<Vec<(u64, Option<i64>)>, ChannelError> {
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    let objects = answer.body.as_array().ok_or_else(|| ChannelError::Decode {
        message: format!("expected a JSON array, got {}", excerpt(&answer.text)),
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
