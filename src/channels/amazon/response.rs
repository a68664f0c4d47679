//! The one place where Amazon's status codes, headers and bodies are interpreted
//! (PLATFORMS.md §4.1 listings answers, §4.2 feed statuses and processing reports, §4.5
//! rate limits).

use crate::channels::{ChannelError, ThrottleSignal};
use serde_json::Value;
use std::collections::HashMap;

/// Longest body excerpt kept in an error message.
const MESSAGE_MAX_CHARS: usize = 300;

/// An HTTP answer, read once.
#[derive(Clone, Debug, Default)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in milliseconds, if sent.
    pub retry_after_ms: Option<u64>,
    /// `x-amzn-RateLimit-Limit` (requests per second), if sent.
    pub rate_limit_per_sec: Option<f64>,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
    /// The body as text.
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
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    let retry_after_ms = header("retry-after").map(|secs| (secs * 1000.0).ceil() as u64);
    let rate_limit_per_sec = header("x-amzn-ratelimit-limit");
    let text = response
        .text()
        .await
        .map_err(|error| transport_error(&error))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(HttpAnswer {
        status,
        retry_after_ms,
        rate_limit_per_sec,
        body,
        text,
    })
}

fn excerpt(text: &str) -> String {
    text.chars().take(MESSAGE_MAX_CHARS).collect()
}

/// The request-level error an HTTP status means, `None` for 2xx.
pub fn status_error(answer: &HttpAnswer) -> Option<ChannelError> {
    let message = excerpt(&answer.text);
    match answer.status {
        200..=299 => None,
        401 | 403 => Some(ChannelError::Unauthorized {
            status: answer.status,
            message,
        }),
        429 => Some(ChannelError::Throttled {
            retry_after_ms: answer.retry_after_ms.or_else(|| {
                // No Retry-After from SP-API: wait one token of the applied rate (§4.5).
                answer
                    .rate_limit_per_sec
                    .filter(|rate| *rate > 0.0)
                    .map(|rate| (1000.0 / rate).ceil() as u64)
            }),
        }),
        500..=599 => Some(ChannelError::Server {
            status: answer.status,
            message,
        }),
        status => Some(ChannelError::Rejected { status, message }),
    }
}

/// Throttle signals of an answer: 429 (QuotaExceeded), with `Retry-After` or one token of
/// `x-amzn-RateLimit-Limit` as the pause.
pub fn throttle(answer: &HttpAnswer) -> ThrottleSignal {
    let retry_after_ms = match status_error(answer) {
        Some(ChannelError::Throttled { retry_after_ms }) => retry_after_ms,
        _ => None,
    };
    ThrottleSignal {
        throttled: answer.status == 429,
        retry_after_ms,
        budget: None,
    }
}

/// `(access_token, expires_in secs)` of an LWA answer.
pub fn decode_token(answer: &HttpAnswer) -> Result<(String, u64), ChannelError> {
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    let token = answer.body["access_token"]
        .as_str()
        .ok_or_else(|| ChannelError::Decode {
            message: format!("no access_token in {}", excerpt(&answer.text)),
        })?;
    Ok((
        token.to_owned(),
        answer.body["expires_in"].as_u64().unwrap_or(3600),
    ))
}

/// What a listings PATCH answer says about its SKU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchAnswer {
    /// `ACCEPTED`: queued for processing.
    Accepted,
    /// `INVALID` (or a 400): `(code, message)` of the first ERROR issue.
    Invalid(String, String),
}

fn first_error(issues: &Value) -> Option<(String, String)> {
    issues.as_array()?.iter().find_map(|issue| {
        (issue["severity"].as_str().unwrap_or("ERROR") == "ERROR").then(|| {
            (
                issue["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                issue["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// Decodes a Listings Items PATCH answer (§4.1). Request-level failures are errors.
pub fn decode_patch(answer: &HttpAnswer) -> Result<PatchAnswer, ChannelError> {
    if answer.status == 400 {
        let (code, message) = first_error(&answer.body["errors"])
            .unwrap_or_else(|| ("HTTP_400".to_owned(), excerpt(&answer.text)));
        return Ok(PatchAnswer::Invalid(code, message));
    }
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    match answer.body["status"].as_str() {
        Some("ACCEPTED") | Some("VALID") => Ok(PatchAnswer::Accepted),
        Some("INVALID") => {
            let (code, message) = first_error(&answer.body["issues"])
                .unwrap_or_else(|| ("INVALID".to_owned(), "listing patch invalid".to_owned()));
            Ok(PatchAnswer::Invalid(code, message))
        }
        other => Err(ChannelError::Decode {
            message: format!("unknown listings status {other:?}"),
        }),
    }
}

/// The DEFAULT (merchant) quantity of a `getListingsItem` answer, `None` when absent.
pub fn decode_listing_quantity(answer: &HttpAnswer) -> Result<Option<i64>, ChannelError> {
    if answer.status == 404 {
        return Ok(None);
    }
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    Ok(answer.body["fulfillmentAvailability"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|entry| entry["fulfillmentChannelCode"] == "DEFAULT")
        })
        .and_then(|entry| entry["quantity"].as_i64()))
}

/// A feed's processing status (§4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedStatus {
    /// `IN_QUEUE` or `IN_PROGRESS`.
    Processing,
    /// `DONE`, with the result document id.
    Done(Option<String>),
    /// `CANCELLED` or `FATAL`.
    Failed(String),
}

/// Decodes `getFeed`.
pub fn decode_feed_status(answer: &HttpAnswer) -> Result<FeedStatus, ChannelError> {
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    match answer.body["processingStatus"].as_str() {
        Some("IN_QUEUE") | Some("IN_PROGRESS") => Ok(FeedStatus::Processing),
        Some("DONE") => Ok(FeedStatus::Done(
            answer.body["resultFeedDocumentId"]
                .as_str()
                .map(str::to_owned),
        )),
        Some(other @ ("CANCELLED" | "FATAL")) => Ok(FeedStatus::Failed(other.to_owned())),
        other => Err(ChannelError::Decode {
            message: format!("unknown feed processingStatus {other:?}"),
        }),
    }
}

/// The outcome of one message of a processing report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    /// No ERROR issue: accepted (warnings ignored).
    Accepted,
    /// The first ERROR issue: `(code, message)`.
    Rejected(String, String),
}

/// Maps a JSON_LISTINGS_FEED processing report (`issues[]{messageId, code, severity,
/// message}`, `summary`) to an outcome per message id `1..=messages`.
pub fn map_processing_report(report: &Value, messages: usize) -> Vec<MessageOutcome> {
    let mut errors: HashMap<u64, (String, String)> = HashMap::new();
    if let Some(issues) = report["issues"].as_array() {
        for issue in issues {
            let Some(message_id) = issue["messageId"].as_u64() else {
                continue;
            };
            if issue["severity"].as_str() == Some("ERROR") {
                errors.entry(message_id).or_insert_with(|| {
                    (
                        issue["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                        issue["message"].as_str().unwrap_or_default().to_owned(),
                    )
                });
            }
        }
    }
    (1..=messages as u64)
        .map(|id| match errors.remove(&id) {
            Some((code, message)) => MessageOutcome::Rejected(code, message),
            None => MessageOutcome::Accepted,
        })
        .collect()
}
