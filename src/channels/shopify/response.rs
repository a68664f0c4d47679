//! The one place where Shopify's status codes, headers and bodies are interpreted
//! (PLATFORMS.md §1.2 user errors, §1.4 REST answers, §1.9 throttling).

use super::config::parse_gid;
use crate::channels::{ChannelError, CostBudget, ThrottleSignal};
use serde_json::Value;

/// Longest body excerpt kept in an error message.
const MESSAGE_MAX_CHARS: usize = 300;

/// An HTTP answer, read once.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in milliseconds (Shopify sends seconds as a float, `2.0`).
    pub retry_after_ms: Option<u64>,
    /// `X-Shopify-Shop-Api-Call-Limit` as (used, bucket size).
    pub call_limit: Option<(u32, u32)>,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
    /// The body as text (for error messages).
    pub text: String,
}

/// Maps a client error to [`ChannelError::Transport`].
pub fn transport_error(error: &reqwest::Error) -> ChannelError {
    ChannelError::Transport {
        message: error.to_string(),
    }
}

/// Parses `Retry-After` seconds (`2`, `2.0`) into milliseconds.
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64)
}

/// Parses `X-Shopify-Shop-Api-Call-Limit: 32/40`.
pub fn parse_call_limit(value: &str) -> Option<(u32, u32)> {
    let (used, size) = value.trim().split_once('/')?;
    Some((used.parse().ok()?, size.parse().ok()?))
}

/// Reads status, headers and body of a response.
pub async fn read_answer(response: reqwest::Response) -> Result<HttpAnswer, ChannelError> {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after_ms = header("retry-after")
        .as_deref()
        .and_then(parse_retry_after_ms);
    let call_limit = header("x-shopify-shop-api-call-limit")
        .as_deref()
        .and_then(parse_call_limit);
    let text = response
        .text()
        .await
        .map_err(|error| transport_error(&error))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(HttpAnswer {
        status,
        retry_after_ms,
        call_limit,
        body,
        text,
    })
}

fn excerpt(text: &str) -> String {
    text.chars().take(MESSAGE_MAX_CHARS).collect()
}

/// The request-level error an HTTP status means, `None` for 2xx. 422 is left to the caller
/// (an item-level refusal on REST).
pub fn status_error(answer: &HttpAnswer) -> Option<ChannelError> {
    let message = excerpt(&answer.text);
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

fn is_graphql_throttled(body: &Value) -> bool {
    body["errors"].as_array().is_some_and(|errors| {
        errors
            .iter()
            .any(|error| error["extensions"]["code"] == "THROTTLED")
    })
}

/// Throttle signals of a GraphQL answer: `THROTTLED` (status 200 or 429) and
/// `extensions.cost.throttleStatus`. `fallback_cost` estimates the next request's cost when
/// the answer does not say.
pub fn graphql_throttle(answer: &HttpAnswer, fallback_cost: f64) -> ThrottleSignal {
    let cost = &answer.body["extensions"]["cost"];
    let status = &cost["throttleStatus"];
    let budget = match (
        status["currentlyAvailable"].as_f64(),
        status["maximumAvailable"].as_f64(),
        status["restoreRate"].as_f64(),
    ) {
        (Some(currently_available), Some(maximum_available), Some(restore_rate_per_sec)) => {
            Some(CostBudget {
                currently_available,
                maximum_available,
                restore_rate_per_sec,
                next_request_cost: cost["requestedQueryCost"].as_f64().unwrap_or(fallback_cost),
            })
        }
        _ => None,
    };
    ThrottleSignal {
        throttled: answer.status == 429 || is_graphql_throttled(&answer.body),
        retry_after_ms: answer.retry_after_ms,
        budget,
    }
}

/// The request-level failure of a GraphQL answer (status, throttling, top-level errors).
fn graphql_failure(answer: &HttpAnswer) -> Option<ChannelError> {
    if answer.status == 429 || is_graphql_throttled(&answer.body) {
        return Some(ChannelError::Throttled {
            retry_after_ms: answer.retry_after_ms,
        });
    }
    if let Some(error) = status_error(answer) {
        return Some(error);
    }
    let first = answer.body["errors"]
        .as_array()
        .and_then(|errors| errors.first())?;
    Some(ChannelError::GraphQl {
        code: first["extensions"]["code"].as_str().map(str::to_owned),
        message: first["message"]
            .as_str()
            .unwrap_or("graphql error")
            .to_owned(),
    })
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
        return SetQuantitiesAnswer::Failed(ChannelError::Decode {
            message: format!(
                "no inventorySetQuantities.userErrors in {}",
                excerpt(&answer.text)
            ),
        });
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
    let nodes = answer.body["data"]["nodes"]
        .as_array()
        .ok_or_else(|| ChannelError::Decode {
            message: format!("no data.nodes in {}", excerpt(&answer.text)),
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
        None => RestSetAnswer::Failed(ChannelError::Decode {
            message: format!("no inventory_level.available in {}", excerpt(&answer.text)),
        }),
    }
}

/// Decodes a REST `inventory_levels.json` answer into `(inventory item, available)`.
pub fn decode_rest_levels(answer: &HttpAnswer) -> Result<Vec<(u64, i64)>, ChannelError> {
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    let levels =
        answer.body["inventory_levels"]
            .as_array()
            .ok_or_else(|| ChannelError::Decode {
                message: format!("no inventory_levels in {}", excerpt(&answer.text)),
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

/// Throttle signal of a REST answer (429 + `Retry-After`).
pub fn rest_throttle(answer: &HttpAnswer) -> ThrottleSignal {
    ThrottleSignal {
        throttled: answer.status == 429,
        retry_after_ms: answer.retry_after_ms,
        budget: None,
    }
}
