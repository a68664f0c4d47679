//! Error answers as RFC 9457 problem details (`application/problem+json`).
//!
//! Owns: [`Problem`] (the wire shape), [`FieldError`] (one entry of its `errors` array) and
//! [`WebError`] (every way a request can fail, mapped to a status in one place).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of problem answers (RFC 9457 §3).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One problem with one part of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer into the request body, as a URI fragment (`#/2/quantity`; `#` for the
    /// whole body).
    pub pointer: String,
    /// What is wrong, in lowercase prose.
    pub detail: String,
}

impl FieldError {
    /// A problem at `pointer` (`#/0/sku`).
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// An RFC 9457 problem details object.
///
/// JSON: `{"type":"urn:stocksync:problem:invalid-movements","title":"…","status":422,
/// "detail":"…","errors":[{"pointer":"#/0/quantity","detail":"…"}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A URN naming the kind of problem (`urn:stocksync:problem:<slug>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary that is the same for every occurrence of the type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Every problem with the request body, when there are several (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem of kind `slug` with `status`, `title` and `detail` and no field errors.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("urn:stocksync:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// Adds field errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        response
    }
}

/// Every way an API request fails. [`IntoResponse`] maps each to its status and problem.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The body is not JSON (400).
    #[error("request body is not valid JSON: {message}")]
    MalformedJson {
        /// The parser's message.
        message: String,
    },
    /// The body was not `application/json` (415).
    #[error("content type {content_type:?} is not supported; send application/json")]
    UnsupportedMediaType {
        /// The content type received (empty if absent).
        content_type: String,
    },
    /// The body could not be read: too large (413) or broken (400), per `status`.
    #[error("request body could not be read: {message}")]
    Body {
        /// 413 when over `http.body_limit_bytes`, else 400.
        status: StatusCode,
        /// Why.
        message: String,
    },
    /// One or more movements are invalid; nothing was applied (422).
    #[error("{} movement problem(s); nothing was applied", errors.len())]
    InvalidMovements {
        /// Every problem found, with its JSON pointer.
        errors: Vec<FieldError>,
    },
    /// No channel with this id takes Shopify webhooks (404).
    #[error("no shopify channel with id {channel}")]
    UnknownChannel {
        /// The id from the URL.
        channel: String,
    },
    /// The webhook signature is missing or wrong (401); nothing changed.
    #[error("webhook signature rejected: {reason}")]
    Unauthorized {
        /// Why.
        reason: String,
    },
    /// A verified webhook could not be decoded (400); the platform will retry.
    #[error("webhook could not be decoded: {message}")]
    UndecodableWebhook {
        /// The decoder's message.
        message: String,
    },
    /// The ledger or its store failed; nothing is acknowledged and a retry is safe (503).
    #[error("the ledger is unavailable: {message}")]
    Unavailable {
        /// The ledger's message.
        message: String,
    },
    /// No such route (404).
    #[error("no route for {path}")]
    NotFound {
        /// The path requested.
        path: String,
    },
    /// The route exists but not for this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl WebError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::MalformedJson { .. } | WebError::UndecodableWebhook { .. } => {
                StatusCode::BAD_REQUEST
            }
            WebError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::Body { status, .. } => *status,
            WebError::InvalidMovements { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::UnknownChannel { .. } | WebError::NotFound { .. } => StatusCode::NOT_FOUND,
            WebError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            WebError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            WebError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (slug, title) = match self {
            WebError::MalformedJson { .. } => ("malformed-json", "Request body is not valid JSON"),
            WebError::UnsupportedMediaType { .. } => {
                ("unsupported-media-type", "Unsupported media type")
            }
            WebError::Body { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                ("body-too-large", "Request body too large")
            }
            WebError::Body { .. } => ("unreadable-body", "Request body could not be read"),
            WebError::InvalidMovements { .. } => ("invalid-movements", "Invalid movements"),
            WebError::UnknownChannel { .. } => ("unknown-channel", "Unknown channel"),
            WebError::Unauthorized { .. } => ("invalid-signature", "Webhook signature rejected"),
            WebError::UndecodableWebhook { .. } => (
                "undecodable-webhook",
                "Webhook payload could not be decoded",
            ),
            WebError::Unavailable { .. } => ("unavailable", "Ledger unavailable"),
            WebError::NotFound { .. } => ("not-found", "Not found"),
            WebError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
        };
        let problem = Problem::new(status, slug, title, self.to_string());
        match self {
            WebError::InvalidMovements { errors } => problem.with_errors(errors.clone()),
            _ => problem,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut response = self.problem().into_response();
        if matches!(self, WebError::Unavailable { .. }) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_serialise_as_rfc_9457() {
        let error = WebError::InvalidMovements {
            errors: vec![FieldError::new(
                "#/1/quantity",
                "quantity must be at least 1",
            )],
        };
        let json = serde_json::to_value(error.problem()).unwrap();
        assert_eq!(json["type"], "urn:stocksync:problem:invalid-movements");
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"][0]["pointer"], "#/1/quantity");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
    }

    #[test]
    fn an_oversized_body_is_413() {
        let error = WebError::Body {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "length limit exceeded".into(),
        };
        assert_eq!(
            error.problem().problem_type,
            "urn:stocksync:problem:body-too-large"
        );
        assert_eq!(
            error.into_response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
