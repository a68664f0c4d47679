//! What bol.com's answers mean for one pushed offer (PLATFORMS.md §3.3 refusals) and for a
//! level read; statuses, throttling, tokens and the ProcessStatus payload are interpreted by
//! the platform client ([`crate::platforms::bolcom`]).

use crate::channels::ChannelError;
use crate::platforms::http::HttpAnswer;

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
            .map_or_else(|| answer.excerpt(), str::to_owned)
    });
    Some((format!("HTTP_{}", answer.status), message))
}

/// `stock.amount` of a `GET /retailer/offers/{id}` answer.
pub fn decode_offer_amount(answer: &HttpAnswer) -> Result<Option<i64>, ChannelError> {
    if answer.status == 404 {
        return Ok(None);
    }
    if let Some(error) = answer.status_error() {
        return Err(error.into());
    }
    Ok(answer.body["stock"]["amount"].as_i64())
}
