//! The one place where bol.com's status codes, headers and bodies are interpreted
//! (PLATFORMS.md §3.1 tokens, §3.3 the 202 ProcessStatus, §3.4 statuses, §3.7 rate limits).

use crate::channels::{ChannelError, CostBudget, ThrottleSignal};
use serde_json::Value;

/// Longest body excerpt kept in an error message.
const MESSAGE_MAX_CHARS: usize = 300;

/// An HTTP answer, read once.
#[derive(Clone, Debug, Default)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in milliseconds (bol sends whole seconds).
    pub retry_after_ms: Option<u64>,
    /// `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset` (seconds).
    pub rate_limit: Option<(u32, u32, u64)>,
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

/// Reads status, headers and body of a response.
pub async fn read_answer(response: reqwest::Response) -> Result<HttpAnswer, ChannelError> {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().to_owned())
    };
    let retry_after_ms = header("retry-after")
        .and_then(|value| value.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| (secs * 1000.0).ceil() as u64);
    let rate_limit = match (
        header("x-ratelimit-limit").and_then(|v| v.parse().ok()),
        header("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
        header("x-ratelimit-reset").and_then(|v| v.parse().ok()),
    ) {
        (Some(limit), Some(remaining), Some(reset)) => Some((limit, remaining, reset)),
        _ => None,
    };
    let text = response
        .text()
        .await
        .map_err(|error| transport_error(&error))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(HttpAnswer {
        status,
        retry_after_ms,
        rate_limit,
        body,
        text,
    })
}

fn excerpt(text: &str) -> String {
    text.chars().take(MESSAGE_MAX_CHARS).collect()
}

/// The request-level error an HTTP status means, `None` for 2xx. 400 and 404 are left to
/// the caller (they refuse one offer, not the request path).
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

/// Throttle signals of an answer (§3.7): 429 with `Retry-After`, and the `x-ratelimit-*`
/// headers as a budget (one request per token; an empty window refills at its reset), so
/// propagation pauses before bol has to say 429.
pub fn throttle(answer: &HttpAnswer) -> ThrottleSignal {
    let budget = answer
        .rate_limit
        .map(|(limit, remaining, reset_secs)| CostBudget {
            currently_available: f64::from(remaining),
            maximum_available: f64::from(limit),
            restore_rate_per_sec: 1.0 / (reset_secs.max(1) as f64),
            next_request_cost: 1.0,
        });
    ThrottleSignal {
        throttled: answer.status == 429,
        retry_after_ms: answer.retry_after_ms,
        budget,
    }
}

/// The access token and its lifetime in seconds from a `POST /token` answer (§3.1).
pub fn decode_token(answer: &HttpAnswer) -> Result<(String, u64), ChannelError> {
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    let token = answer.body["access_token"]
        .as_str()
        .ok_or_else(|| ChannelError::Decode {
            message: format!("no access_token in {}", excerpt(&answer.text)),
        })?;
    let expires_in = answer.body["expires_in"].as_u64().unwrap_or(299);
    Ok((token.to_owned(), expires_in))
}

/// A process status's state (§3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Not processed yet.
    Pending,
    /// Applied.
    Success,
    /// Refused by bol; the message is the status's `description`.
    Failure(String),
    /// bol did not process it in time.
    Timeout(String),
}

/// Decodes a ProcessStatus body: its id (`processStatusId`, or `id` in pre-v10 bodies) and
/// state.
pub fn decode_process_status(answer: &HttpAnswer) -> Result<(String, ProcessState), ChannelError> {
    let body = &answer.body;
    let id = body["processStatusId"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| body["processStatusId"].as_u64().map(|id| id.to_string()))
        .or_else(|| body["id"].as_u64().map(|id| id.to_string()))
        .or_else(|| body["id"].as_str().map(str::to_owned))
        .ok_or_else(|| ChannelError::Decode {
            message: format!("no processStatusId in {}", excerpt(&answer.text)),
        })?;
    let description = body["description"].as_str().unwrap_or_default().to_owned();
    let state = match body["status"].as_str() {
        Some("PENDING") => ProcessState::Pending,
        Some("SUCCESS") => ProcessState::Success,
        Some("FAILURE") => ProcessState::Failure(description),
        Some("TIMEOUT") => ProcessState::Timeout(description),
        other => {
            return Err(ChannelError::Decode {
                message: format!("unknown process status {other:?}"),
            });
        }
    };
    Ok((id, state))
}

/// The refusal of a stock update for one offer (400 with violations, 404 unknown offer):
/// `(code, message)`.
pub fn offer_refusal(answer: &HttpAnswer) -> Option<(String, String)> {
    if !matches!(answer.status, 400 | 404 | 422) {
        return None;
    }
    let violations = answer.body["violations"]
        .as_array()
        .map(|violations| {
            violations
                .iter()
                .map(|violation| {
                    format!(
                        "{}: {}",
                        violation["name"].as_str().unwrap_or("?"),
                        violation["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|text| !text.is_empty());
    let message = violations.unwrap_or_else(|| {
        answer.body["detail"]
            .as_str()
            .map_or_else(|| excerpt(&answer.text), str::to_owned)
    });
    Some((format!("HTTP_{}", answer.status), message))
}

/// `stock.amount` of a `GET /retailer/offers/{id}` answer.
pub fn decode_offer_amount(answer: &HttpAnswer) -> Result<Option<i64>, ChannelError> {
    if answer.status == 404 {
        return Ok(None);
    }
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    Ok(answer.body["stock"]["amount"].as_i64())
}
