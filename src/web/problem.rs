//! Error answers of the API as RFC 9457 problem details (`application/problem+json`).
//!
//! Owns: [`WebError`] (every way an API request can fail, mapped to a status in one place).
//! The wire shape, [`Problem`], lives in the leaf [`crate::problem`], shared with the webhook
//! receivers of `ingest` (whose own failures are `ingest::receiver::ReceiverError`).

pub use crate::problem::{FieldError, PROBLEM_CONTENT_TYPE, Problem};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

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
    /// The SKU has no durable movement (404 `unknown-sku`); nothing was loaded for it.
    #[error("SKU {sku:?} is unknown: no movement of it was ever recorded")]
    UnknownSku {
        /// The SKU asked for.
        sku: String,
    },
}

impl WebError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            WebError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::Body { status, .. } => *status,
            WebError::InvalidMovements { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::NotFound { .. } => StatusCode::NOT_FOUND,
            WebError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            WebError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebError::UnknownSku { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = self.to_string();
        let (slug, title) = match self {
            WebError::Body { status, .. } => return Problem::body(*status, detail),
            WebError::Unavailable { .. } => return Problem::unavailable(detail),
            WebError::NotFound { .. } => return Problem::not_found(detail),
            WebError::MalformedJson { .. } => ("malformed-json", "Request body is not valid JSON"),
            WebError::UnsupportedMediaType { .. } => {
                ("unsupported-media-type", "Unsupported media type")
            }
            WebError::InvalidMovements { .. } => ("invalid-movements", "Invalid movements"),
            WebError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            WebError::UnknownSku { .. } => ("unknown-sku", "Unknown SKU"),
        };
        let problem = Problem::new(status, slug, title, detail);
        match self {
            WebError::InvalidMovements { errors } => problem.with_errors(errors.clone()),
            _ => problem,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            // A retry is safe and may succeed once the store is back.
            WebError::Unavailable { .. } => self.problem().into_response_retry_after(1),
            _ => self.problem().into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

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
