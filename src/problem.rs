//! RFC 9457 problem details (`application/problem+json`): the wire shape of every error
//! answer the HTTP surface sends, whether from the API (`web`) or from a webhook receiver
//! (`ingest::<platform>::receiver`).
//!
//! Owns: [`Problem`], [`FieldError`] (one entry of its `errors` array), the problems that
//! several answerers share ([`Problem::body`], [`Problem::unavailable`], [`Problem::not_found`]),
//! and the media type.
//!
//! May depend on: nothing else in the crate (a leaf, so `web` and `ingest` can both use it
//! without depending on each other).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of problem answers (RFC 9457 §3).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One problem with one part of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

    /// A request body that could not be read: `body-too-large` for 413 (over
    /// `http.body_limit_bytes`), else `unreadable-body`, with `status`.
    pub fn body(status: StatusCode, detail: impl Into<String>) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, "body-too-large", "Request body too large", detail)
        } else {
            Self::new(
                status,
                "unreadable-body",
                "Request body could not be read",
                detail,
            )
        }
    }

    /// The ledger or its store failed (503, `unavailable`): nothing was acknowledged and a
    /// retry is safe. Send it with [`Problem::into_response_retry_after`].
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Ledger unavailable",
            detail,
        )
    }

    /// No such route or resource (404, `not-found`).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// The answer with a `Retry-After: {seconds}` header, for problems a retry may solve.
    pub fn into_response_retry_after(self, seconds: u32) -> Response {
        let mut response = self.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        response
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

/// The problem answers of the OpenAPI contract (`components/responses`), shared by the API
/// handlers and the webhook receivers: each names the `Problem` schema as
/// `application/problem+json`.
pub mod openapi {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::response::ResponseBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
    use utoipa::openapi::{RefOr, Response as OpenApiResponse};

    /// A problem answer with `description`, optionally naming `Retry-After`.
    fn problem_response(description: &str, retry_after: bool) -> OpenApiResponse {
        let mut builder = ResponseBuilder::new().description(description).content(
            super::PROBLEM_CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
        if retry_after {
            builder = builder.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0)),
                    )
                    .description(Some("Seconds to wait before retrying."))
                    .build(),
            );
        }
        builder.build()
    }

    macro_rules! problem_responses {
        ($($name:ident => ($description:expr, $retry_after:expr);)*) => {$(
            #[doc = concat!("Shared answer: ", $description)]
            pub struct $name;

            impl<'s> utoipa::ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<OpenApiResponse>) {
                    (stringify!($name), problem_response($description, $retry_after).into())
                }
            }
        )*};
    }

    problem_responses! {
        BadRequest => ("The request is malformed (not JSON, bad query parameters).", false);
        Unauthorized => ("No valid bearer token (`WWW-Authenticate: Bearer`).", false);
        Forbidden => ("The token lacks the scope this operation needs.", false);
        NotFound => ("No such resource.", false);
        Conflict => ("The request conflicts with the state (insufficient stock, an id or \
                      idempotency key reused with other content: `idempotency-key-conflict`).", false);
        PayloadTooLarge => ("The body is over the limit (bytes or movements per request).", false);
        UnsupportedMediaType => ("The body is not `application/json`.", false);
        UnprocessableEntity => ("The body is JSON but not valid (every problem listed in `errors` \
                                 with a JSON pointer; an unknown location); nothing was applied.", false);
        ServiceUnavailable => ("The store is unavailable or the server sheds load; nothing was \
                                acknowledged and a retry after `Retry-After` seconds is safe.", true);
        WebhookUnauthorized => ("The platform signature is missing or wrong; nothing changed.", false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_problems_keep_their_types_and_retry_after() {
        assert_eq!(
            Problem::body(StatusCode::PAYLOAD_TOO_LARGE, "x").problem_type,
            "urn:stocksync:problem:body-too-large"
        );
        assert_eq!(
            Problem::body(StatusCode::BAD_REQUEST, "x").problem_type,
            "urn:stocksync:problem:unreadable-body"
        );
        assert_eq!(Problem::not_found("x").status, 404);
        let response = Problem::unavailable("down").into_response_retry_after(1);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
    }
}
