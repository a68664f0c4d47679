//! bol.com payloads both sides read: the ProcessStatus of an asynchronous update
//! (PLATFORMS.md §3.3, §3.4).
//!
//! May depend on: `platforms::http`.

use crate::platforms::http::{HttpAnswer, PlatformError};

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
///
/// Errors: [`PlatformError::Decode`] without an id or with an unknown status.
pub fn decode_process_status(answer: &HttpAnswer) -> Result<(String, ProcessState), PlatformError> {
    let body = &answer.body;
    let id = body["processStatusId"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| body["processStatusId"].as_u64().map(|id| id.to_string()))
        .or_else(|| body["id"].as_u64().map(|id| id.to_string()))
        .or_else(|| body["id"].as_str().map(str::to_owned))
        .ok_or_else(|| PlatformError::Decode {
            message: format!("no processStatusId in {}", answer.excerpt()),
        })?;
    let description = body["description"].as_str().unwrap_or_default().to_owned();
    let state = match body["status"].as_str() {
        Some("PENDING") => ProcessState::Pending,
        Some("SUCCESS") => ProcessState::Success,
        Some("FAILURE") => ProcessState::Failure(description),
        Some("TIMEOUT") => ProcessState::Timeout(description),
        other => {
            return Err(PlatformError::Decode {
                message: format!("unknown process status {other:?}"),
            });
        }
    };
    Ok((id, state))
}
