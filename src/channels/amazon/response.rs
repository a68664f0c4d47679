//! What Amazon's answers mean for pushed listings and level reads (PLATFORMS.md §4.1
//! listings answers, §4.2 feed statuses and processing reports); statuses, rate limits and
//! tokens are interpreted by the platform client ([`crate::platforms::amazon`]).

use crate::platforms::PlatformError;
use crate::platforms::amazon::status_error;
use crate::platforms::http::HttpAnswer;
use serde_json::Value;
use std::collections::HashMap;

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
pub fn decode_patch(answer: &HttpAnswer) -> Result<PatchAnswer, PlatformError> {
    if answer.status == 400 {
        let (code, message) = first_error(&answer.body["errors"])
            .unwrap_or_else(|| ("HTTP_400".to_owned(), answer.excerpt()));
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
        other => Err(PlatformError::Decode {
            message: format!("unknown listings status {other:?}"),
        }),
    }
}

/// The DEFAULT (merchant) quantity of a `getListingsItem` answer, `None` when absent.
pub fn decode_listing_quantity(answer: &HttpAnswer) -> Result<Option<i64>, PlatformError> {
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
pub fn decode_feed_status(answer: &HttpAnswer) -> Result<FeedStatus, PlatformError> {
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
        other => Err(PlatformError::Decode {
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

/// How a listing is fulfilled, as `getListingsItem` shows it (`fulfillmentAvailability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingFulfilment {
    /// The DEFAULT (merchant) entry's quantity, `None` when there is no such entry or it
    /// carries no quantity.
    pub default_quantity: Option<i64>,
    /// An Amazon fulfilment channel entry (`AMAZON_EU`, `AMAZON_NA`, …) is present: Amazon
    /// fulfils the offer.
    pub amazon_fulfilled: bool,
}

/// Decodes the fulfilment entries of a `getListingsItem` answer; `None` for a 404 (no such
/// listing). Request-level failures are errors.
pub fn decode_listing_fulfilment(
    answer: &HttpAnswer,
) -> Result<Option<ListingFulfilment>, PlatformError> {
    if answer.status == 404 {
        return Ok(None);
    }
    if let Some(error) = status_error(answer) {
        return Err(error);
    }
    let entries = answer.body["fulfillmentAvailability"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(Some(ListingFulfilment {
        default_quantity: entries
            .iter()
            .find(|entry| entry["fulfillmentChannelCode"] == "DEFAULT")
            .and_then(|entry| entry["quantity"].as_i64()),
        amazon_fulfilled: entries.iter().any(|entry| {
            entry["fulfillmentChannelCode"]
                .as_str()
                .is_some_and(|code| code.starts_with("AMAZON"))
        }),
    }))
}
