//! `POST /api/v1/movements`: movements from any system that can speak HTTP.
//!
//! The body is one movement object or a JSON array of them (the contract of
//! `domain::Movement`, `schemas/movement.schema.json`), sent as `application/json`.
//! Every movement is parsed and validated first and all problems are reported at once
//! (422, nothing applied). Then all are submitted in array order (so movements of one SKU
//! apply in that order) and the answer waits until every one is durable:
//! - 201 when at least one was applied, else 200, with a [`MovementsResponse`]: per
//!   movement its index, key, outcome and seq (for a `duplicate`, the seq and recorded time
//!   of the original event, read from the store), and a summary of the outcomes;
//! - 503 problem when the store failed for any of them (retry the whole request: what was
//!   applied answers `duplicate` the second time);
//! - 400 (not JSON), 413 (over `http.body_limit_bytes`), 415 (not JSON media type),
//!   422 (invalid movements, or more than `http.max_movements_per_request`) problems
//!   otherwise.
//!
//! A batch is applied movement by movement, not as a transaction: after a crash in the
//! middle, a retry of the same body answers the part that was durable `duplicate` and the
//! rest `applied` (README "Batches and retries").
//!
//! Counted in `stocksync_ingest_rest_movements_total{outcome}`: one per movement answered
//! (`applied`, `duplicate`, `rejected`) and one per refused request (`invalid`,
//! `unavailable`).

use super::{FieldError, Problem, WebError, WebState, body_error};
use crate::domain::{FastMovementReader, Movement};
use crate::ledger::{Ack, LedgerError};
use crate::telemetry::INGEST_REST_MOVEMENTS_TOTAL;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Most movements accepted in one request whatever the config says (the ceiling of
/// `http.max_movements_per_request`, whose default is 5,000).
pub const MAX_BATCH_MOVEMENTS: usize = crate::config::MAX_MOVEMENTS_PER_REQUEST;

/// The answer to an accepted request: one result per movement, in request order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovementsResponse {
    /// One entry per movement sent.
    pub results: Vec<MovementResult>,
    /// How many results have each outcome. A retry of a batch that was partly durable
    /// before a crash answers the durable part `duplicate` and the rest `applied`.
    #[serde(default)]
    pub summary: BatchSummary,
}

/// Outcome counts of one request's results.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchSummary {
    /// Recorded now, with effect.
    pub applied: u64,
    /// Recorded before (by an earlier request or delivery): durable before this request.
    pub duplicate: u64,
    /// Recorded now; waiting for their order line.
    pub parked: u64,
    /// Recorded now without effect.
    pub ignored: u64,
    /// Refused by the state machine; nothing recorded.
    pub rejected: u64,
}

/// What happened to one movement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovementResult {
    /// Position in the request (0 for a single movement).
    pub index: usize,
    /// The movement's SKU.
    pub sku: String,
    /// The movement's idempotency key.
    pub idempotency_key: String,
    /// The outcome, flattened: `"outcome": "applied" | "parked" | "ignored" | "duplicate" |
    /// "rejected"`.
    #[serde(flatten)]
    pub outcome: MovementOutcome,
}

/// The ledger's answer for one movement, given once durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MovementOutcome {
    /// Recorded as event `seq` of its SKU.
    Applied {
        /// The event's sequence number within the SKU.
        seq: u64,
    },
    /// Recorded as event `seq`; its effect waits for its order line (a fulfilment before
    /// its sale, a return before its shipment) and applies when the line gets there.
    Parked {
        /// The event's sequence number within the SKU.
        seq: u64,
    },
    /// Recorded as event `seq` with no effect on purpose (an order edit whose version is
    /// not newer than the line's).
    Ignored {
        /// The event's sequence number within the SKU.
        seq: u64,
    },
    /// Its idempotency key was recorded before (as event `seq`, durable before this
    /// request was answered); nothing changed.
    Duplicate {
        /// The sequence number (within the SKU) of the event that first recorded the key.
        seq: u64,
        /// When that event was recorded, in milliseconds since the Unix epoch (absent when
        /// the store could not be read for it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recorded_at_ms: Option<i64>,
    },
    /// The state machine refused it (e.g. a hold larger than available); nothing recorded.
    Rejected {
        /// Why, in prose.
        reason: String,
    },
}

impl MovementOutcome {
    /// The metric labels, indexed by [`MovementOutcome::slot`].
    const LABELS: [&'static str; 5] = ["applied", "duplicate", "rejected", "parked", "ignored"];

    /// The outcome's index in [`MovementOutcome::LABELS`].
    fn slot(&self) -> usize {
        match self {
            MovementOutcome::Applied { .. } => 0,
            MovementOutcome::Duplicate { .. } => 1,
            MovementOutcome::Rejected { .. } => 2,
            MovementOutcome::Parked { .. } => 3,
            MovementOutcome::Ignored { .. } => 4,
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/movements",
    tag = "movements",
    security(("bearerAuth" = ["ingest"])),
    request_body(content = super::openapi::MovementsBody, description = "One movement or an array of them (the contract of `schemas/movement.schema.json`). Idempotency keys are scoped per SKU. A batch is applied movement by movement: a retry of the same body after a failure answers `duplicate` for what was durable before.", content_type = "application/json"),
    responses(
        (status = 201, description = "At least one movement was applied (or parked, or ignored); every one is durable.", body = MovementsResponse),
        (status = 200, description = "Nothing new was applied (duplicates or rejections only).", body = MovementsResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::UnprocessableEntity),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn post_movements(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let result = accept(&state, &headers, body).await;
    if let Err(error) = &result {
        let outcome = match error {
            WebError::Unavailable { .. } => "unavailable",
            _ => "invalid",
        };
        metrics::counter!(INGEST_REST_MOVEMENTS_TOTAL, "outcome" => outcome).increment(1);
        tracing::info!(status = %error.status(), error = %error, "movements request refused");
    }
    result
}

async fn accept(
    state: &WebState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    check_content_type(headers)?;
    let body = body.map_err(body_error)?;
    let movements = parse_movements_limited(&body, state.config.http.max_movements_per_request)?;
    // While the store refuses writes nothing submitted now could be acknowledged: answer
    // 503 with Retry-After at once instead of holding the request.
    if let Some(reason) = state.ledger.unavailable_reason() {
        return Err(WebError::Unavailable {
            message: format!(
                "the store refuses writes ({reason}); ingest is paused, retry the request later"
            ),
        });
    }
    check_locations(state, &body, &movements)?;
    let count = movements.len();
    // Submit the whole batch (in array order), keeping only what the answer names; the
    // acknowledgements are then awaited together.
    let mut named = Vec::with_capacity(count);
    let pending: Vec<_> = movements
        .into_iter()
        .map(|movement| {
            named.push((movement.sku.to_string(), movement.idempotency_key.clone()));
            state.ledger.submit(movement)
        })
        .collect();
    let acks = futures::future::join_all(pending).await;
    let mut results = Vec::with_capacity(count);
    let mut failures = Vec::new();
    let mut conflicts = Vec::new();
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let mut counts = [0_u64; MovementOutcome::LABELS.len()];
    for (index, ((sku, idempotency_key), ack)) in named.into_iter().zip(acks).enumerate() {
        let outcome = match ack {
            Ok(Ack::Applied { seq }) => MovementOutcome::Applied { seq },
            Ok(Ack::Duplicate { seq }) => MovementOutcome::Duplicate {
                seq,
                recorded_at_ms: None,
            },
            Ok(Ack::Parked { seq }) => MovementOutcome::Parked { seq },
            Ok(Ack::Ignored { seq }) => MovementOutcome::Ignored { seq },
            Err(LedgerError::Rejected(
                error @ crate::domain::ApplyError::IdempotencyConflict { .. },
            )) => {
                let pointer = if batch {
                    format!("#/{index}/idempotency_key")
                } else {
                    "#/idempotency_key".to_owned()
                };
                conflicts.push(FieldError::new(pointer, error.to_string()));
                MovementOutcome::Rejected {
                    reason: error.to_string(),
                }
            }
            Err(LedgerError::Rejected(error)) => MovementOutcome::Rejected {
                reason: error.to_string(),
            },
            Err(
                error @ (LedgerError::Store(_)
                | LedgerError::Unavailable(_)
                | LedgerError::Overloaded(_)
                | LedgerError::NotOwner { .. }),
            ) => {
                failures.push(format!("#{index}: {error}"));
                continue;
            }
        };
        counts[outcome.slot()] += 1;
        results.push(MovementResult {
            index,
            sku,
            idempotency_key,
            outcome,
        });
    }
    // One counter update per outcome and request, not one per movement.
    for (slot, label) in MovementOutcome::LABELS.iter().enumerate() {
        if counts[slot] > 0 {
            metrics::counter!(INGEST_REST_MOVEMENTS_TOTAL, "outcome" => *label)
                .increment(counts[slot]);
        }
    }
    if !failures.is_empty() {
        tracing::warn!(failed = failures.len(), first = %failures[0], "movements not durable");
        return Err(WebError::Unavailable {
            message: format!(
                "{} of {} movement(s) are not durable ({}); retry the request",
                failures.len(),
                count,
                failures.join("; ")
            ),
        });
    }
    original_times(state, &mut results).await;
    let summary = BatchSummary {
        applied: counts[0],
        duplicate: counts[1],
        rejected: counts[2],
        parked: counts[3],
        ignored: counts[4],
    };
    if !conflicts.is_empty() {
        return Ok(conflict_problem(count, conflicts).into_response());
    }
    let status = if results.iter().any(|r| {
        matches!(
            r.outcome,
            MovementOutcome::Applied { .. }
                | MovementOutcome::Parked { .. }
                | MovementOutcome::Ignored { .. }
        )
    }) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(MovementsResponse { results, summary })).into_response())
}

/// Most events read in one store call while looking up originals of duplicates.
const ORIGINALS_PAGE: usize = 512;

/// Fills in `recorded_at_ms` of every duplicate from the store: the original event is
/// durable (a duplicate is answered only then). Runs of consecutive seqs of one SKU (a
/// retried batch) are read in one call each. A store failure leaves the times out; the
/// outcome itself stays right.
async fn original_times(state: &WebState, results: &mut [MovementResult]) {
    let mut wanted: Vec<(String, u64, usize)> = results
        .iter()
        .enumerate()
        .filter_map(|(position, result)| match result.outcome {
            MovementOutcome::Duplicate { seq, .. } => Some((result.sku.clone(), seq, position)),
            _ => None,
        })
        .collect();
    wanted.sort();
    let store = state.ledger.store();
    let mut start = 0;
    while start < wanted.len() {
        let (sku, first_seq) = (wanted[start].0.clone(), wanted[start].1);
        let mut end = start + 1;
        while end < wanted.len()
            && wanted[end].0 == sku
            && wanted[end].1 <= wanted[end - 1].1 + 1
            && wanted[end].1 - first_seq < ORIGINALS_PAGE as u64
        {
            end += 1;
        }
        let span = (wanted[end - 1].1 - first_seq + 1) as usize;
        if let Ok(events) = store.events(&sku, first_seq, span).await {
            for (_, seq, position) in &wanted[start..end] {
                let at = events
                    .iter()
                    .find(|event| event.seq == *seq)
                    .map(|event| event.recorded_at_ms);
                if let MovementOutcome::Duplicate { recorded_at_ms, .. } =
                    &mut results[*position].outcome
                {
                    *recorded_at_ms = at;
                }
            }
        }
        start = end;
    }
}

/// 409 `idempotency-key-conflict`: a movement reused a key (of its SKU) that recorded a
/// different movement. The other movements of the request were processed as usual; sending
/// the request again answers them `duplicate` (or applies what was not durable yet).
fn conflict_problem(count: usize, conflicts: Vec<FieldError>) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "idempotency-key-conflict",
        "Idempotency key conflict",
        format!(
            "{} of {count} movement(s) reuse an idempotency key recorded for a different movement of the same sku; they were not applied. Keys are scoped per sku: give every business event (and every line of it) its own key. The other movements were processed; resend them to see their outcome",
            conflicts.len()
        ),
    )
    .with_errors(conflicts)
}

/// Refuses the whole request (422, nothing applied) when a movement names a location that
/// is not configured, with a pointer to each such field (`#/1/location`, `#/route/0`).
fn check_locations(state: &WebState, body: &[u8], movements: &[Movement]) -> Result<(), WebError> {
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let errors: Vec<FieldError> = movements
        .iter()
        .enumerate()
        .filter_map(|(index, movement)| {
            let (field, location) = state.ledger.unknown_location(movement)?;
            let pointer = if batch {
                format!("#/{index}/{field}")
            } else {
                format!("#/{field}")
            };
            Some(FieldError::new(
                pointer,
                format!("location {location} is not configured"),
            ))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(WebError::InvalidMovements { errors })
    }
}

/// Accepts `application/json` and any `application/*+json`, parameters ignored.
fn check_content_type(headers: &HeaderMap) -> Result<(), WebError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(WebError::UnsupportedMediaType {
            content_type: content_type.to_owned(),
        })
    }
}

/// Parses one movement or an array of them and validates every one, collecting every
/// problem with a JSON pointer (`#/2/quantity` in a batch, `#/quantity` for a single one).
///
/// A body the [`FastMovementReader`] reads and whose movements are all valid is taken as
/// it reads it (no intermediate `serde_json::Value`); any other body is read again by the
/// exact path below, which reports every problem as before.
pub fn parse_movements(body: &[u8]) -> Result<Vec<Movement>, WebError> {
    parse_movements_limited(body, MAX_BATCH_MOVEMENTS)
}

/// [`parse_movements`] accepting at most `max_movements` (clamped to
/// [`MAX_BATCH_MOVEMENTS`]); a larger batch is refused as a whole (422, pointer `#`).
pub fn parse_movements_limited(
    body: &[u8],
    max_movements: usize,
) -> Result<Vec<Movement>, WebError> {
    let max_movements = max_movements.min(MAX_BATCH_MOVEMENTS);
    if let Some((movements, _batch)) = FastMovementReader::body(body, max_movements)
        && movements.iter().all(|movement| movement.validate().is_ok())
    {
        return Ok(movements);
    }
    parse_movements_exact(body, max_movements)
}

/// The exact reading of a body: through `serde_json::Value` and the derived [`Movement`]
/// deserializer, every problem reported with its pointer. Used for every body the fast
/// reader does not vouch for (so for every refused one).
fn parse_movements_exact(body: &[u8], max_movements: usize) -> Result<Vec<Movement>, WebError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| WebError::MalformedJson {
            message: error.to_string(),
        })?;
    let (items, batch) = match value {
        serde_json::Value::Array(items) => (items, true),
        object @ serde_json::Value::Object(_) => (vec![object], false),
        _ => {
            return Err(WebError::InvalidMovements {
                errors: vec![FieldError::new(
                    "#",
                    "body must be a movement object or an array of movements",
                )],
            });
        }
    };
    if items.is_empty() {
        return Err(WebError::InvalidMovements {
            errors: vec![FieldError::new("#", "the batch is empty")],
        });
    }
    if items.len() > max_movements {
        return Err(WebError::InvalidMovements {
            errors: vec![FieldError::new(
                "#",
                format!(
                    "the batch has {} movements; at most {max_movements} are accepted \
                     (http.max_movements_per_request)",
                    items.len()
                ),
            )],
        });
    }
    let pointer = |index: usize, field: Option<&str>| {
        let mut pointer = String::from("#");
        if batch {
            pointer.push_str(&format!("/{index}"));
        }
        if let Some(field) = field {
            pointer.push('/');
            pointer.push_str(field);
        }
        pointer
    };
    let mut movements = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match serde_json::from_value::<Movement>(item) {
            Ok(movement) => {
                if let Err(problems) = movement.validate() {
                    for problem in problems {
                        let field = validation_field(&problem);
                        errors.push(FieldError::new(pointer(index, field), problem));
                    }
                }
                movements.push(movement);
            }
            Err(error) => {
                let message = error.to_string();
                let field = serde_field(&message);
                errors.push(FieldError::new(pointer(index, field), message));
            }
        }
    }
    if errors.is_empty() {
        Ok(movements)
    } else {
        Err(WebError::InvalidMovements { errors })
    }
}

/// The field a serde error names: `missing field `sku`` → `sku`; an unknown `type`
/// variant → `type`; otherwise none (the pointer names the movement).
fn serde_field(message: &str) -> Option<&str> {
    if let Some(rest) = message.strip_prefix("missing field `") {
        return rest.split('`').next();
    }
    if message.starts_with("unknown variant") {
        return Some("type");
    }
    None
}

/// The field a `Movement::validate` message starts with (`quantity must be at least 1` →
/// `quantity`); `either location or route …` → `location`.
fn validation_field(problem: &str) -> Option<&str> {
    if problem.starts_with("either location or route") {
        return Some("location");
    }
    let first = problem.split_whitespace().next()?;
    first
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '_')
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(body: &str) -> Vec<FieldError> {
        match parse_movements(body.as_bytes()) {
            Err(WebError::InvalidMovements { errors }) => errors,
            other => panic!("expected invalid movements, got {other:?}"),
        }
    }

    #[test]
    fn a_single_movement_parses() {
        let movements = parse_movements(
            br#"{"sku":"SKU-A","idempotency_key":"k1","type":"receipt","location":"WH-1","quantity":5}"#,
        )
        .unwrap();
        assert_eq!(movements.len(), 1);
        assert_eq!(movements[0].sku.as_str(), "SKU-A");
    }

    #[test]
    fn every_problem_in_a_batch_is_reported_with_a_pointer() {
        let errors = errors(
            r#"[
            {"sku":"SKU-A","idempotency_key":"k1","type":"receipt","location":"WH-1","quantity":5},
            {"sku":"SKU-A","idempotency_key":"k2","type":"receipt","location":"WH-1","quantity":0},
            {"sku":"SKU-A","type":"receipt","location":"WH-1","quantity":1},
            {"sku":"SKU-A","idempotency_key":"k4","type":"teleport"},
            {"sku":"","idempotency_key":"k5","type":"sale","reservation":"r","quantity":1}
        ]"#,
        );
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            vec![
                "#/1/quantity",
                "#/2/idempotency_key",
                "#/3/type",
                "#/4/sku",
                "#/4/location"
            ]
        );
    }

    #[test]
    fn a_single_movement_has_pointers_without_an_index() {
        let errors = errors(
            r#"{"sku":"SKU-A","idempotency_key":"k","type":"adjustment","location":"W","delta":0}"#,
        );
        assert_eq!(
            errors,
            vec![FieldError::new("#/delta", "delta must not be 0")]
        );
    }

    #[test]
    fn empty_and_non_object_bodies_are_refused() {
        assert_eq!(errors("[]")[0].detail, "the batch is empty");
        assert_eq!(errors("42")[0].pointer, "#");
        assert!(matches!(
            parse_movements(b"{not json"),
            Err(WebError::MalformedJson { .. })
        ));
    }

    #[test]
    fn content_types_are_checked() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_err());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(check_content_type(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(check_content_type(&headers).is_ok());
        headers.insert(
            header::CONTENT_TYPE,
            "application/vnd.stocksync+json".parse().unwrap(),
        );
        assert!(check_content_type(&headers).is_ok());
    }

    #[test]
    fn results_serialise_flat() {
        let result = MovementResult {
            index: 0,
            sku: "SKU-A".into(),
            idempotency_key: "k".into(),
            outcome: MovementOutcome::Duplicate {
                seq: 3,
                recorded_at_ms: None,
            },
        };
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["outcome"], "duplicate");
        assert_eq!(json["seq"], 3);
        assert_eq!(
            serde_json::from_value::<MovementResult>(json).unwrap(),
            result
        );
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    const RECEIPT: &str =
        r#"{"sku":"SKU-A","idempotency_key":"k1","type":"receipt","location":"WH-1","quantity":5}"#;

    fn problems(body: &str) -> Vec<(String, String)> {
        match parse_movements(body.as_bytes()) {
            Err(WebError::InvalidMovements { errors }) => {
                errors.into_iter().map(|e| (e.pointer, e.detail)).collect()
            }
            other => panic!("expected invalid movements, got {other:?}"),
        }
    }

    #[test]
    fn bodies_the_fast_reader_defers_are_still_accepted_as_before() {
        // A duplicate field (the last one wins) and a field of another kind with a value
        // that kind could not take are left to the exact path, which accepts them.
        let body = format!(
            r#"[{RECEIPT},
            {{"sku":"SKU-A","idempotency_key":"k2","type":"receipt","location":"WH-1","quantity":1,"quantity":7}},
            {{"sku":"SKU-A","idempotency_key":"k3","type":"receipt","location":"WH-1","quantity":2,"delta":"x"}}]"#
        );
        let movements = parse_movements(body.as_bytes()).unwrap();
        assert_eq!(movements.len(), 3);
        assert_eq!(
            movements[1].kind,
            crate::domain::MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 7
            }
        );
        assert_eq!(
            parse_movements(body.as_bytes()).unwrap(),
            parse_movements_exact(body.as_bytes(), MAX_BATCH_MOVEMENTS).unwrap()
        );
    }

    #[test]
    fn problems_found_after_a_fast_read_are_reported_as_before() {
        // Valid JSON the fast reader reads, but failing validation.
        let body = format!(
            r#"[{RECEIPT},{{"sku":"SKU-A","idempotency_key":"k2","type":"receipt","location":"WH-1","quantity":0}}]"#
        );
        assert_eq!(
            problems(&body),
            vec![(
                "#/1/quantity".to_owned(),
                "quantity must be at least 1".to_owned()
            )]
        );
    }

    #[test]
    fn null_and_mistyped_fields_are_reported_with_pointers() {
        let body = format!(
            r#"[{RECEIPT},
            {{"sku":null,"idempotency_key":"k2","type":"receipt","location":"WH-1","quantity":1}},
            {{"sku":"SKU-A","idempotency_key":"k3","type":"receipt","location":"WH-1","quantity":"7"}},
            {{"sku":"SKU-A","idempotency_key":null,"type":"receipt","location":"WH-1","quantity":1}}]"#
        );
        assert_eq!(
            problems(&body),
            vec![
                (
                    "#/1".to_owned(),
                    "invalid type: null, expected a string".to_owned()
                ),
                (
                    "#/2".to_owned(),
                    "invalid type: string \"7\", expected u64".to_owned()
                ),
                (
                    "#/3".to_owned(),
                    "invalid type: null, expected a string".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_batch_cap_is_reported_as_before() {
        let body = format!("[{}]", vec![RECEIPT; MAX_BATCH_MOVEMENTS + 1].join(","));
        let problems = problems(&body);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "#");
        assert!(problems[0].1.contains("at most 10000"), "{problems:?}");
        let body = format!("[{}]", vec![RECEIPT; MAX_BATCH_MOVEMENTS].join(","));
        assert_eq!(
            parse_movements(body.as_bytes()).unwrap().len(),
            MAX_BATCH_MOVEMENTS
        );
    }

    #[test]
    fn skus_with_spaces_slashes_and_accents_parse_and_a_huge_one_has_a_pointer() {
        for sku in ["Tafel 120/80 eiken", "Größe-XL", "café crème"] {
            let body = serde_json::json!({
                "sku": sku, "idempotency_key": format!("wms:{sku}:1"),
                "type": "receipt", "location": "WH-1", "quantity": 1,
            })
            .to_string();
            let movements = parse_movements(body.as_bytes()).unwrap();
            assert_eq!(movements[0].sku.as_str(), sku);
        }
        let body = serde_json::json!([
            {"sku": "A", "idempotency_key": "k1", "type": "receipt", "location": "WH-1",
             "quantity": 1},
            {"sku": "X".repeat(1 << 20), "idempotency_key": "k2", "type": "receipt",
             "location": "WH-1", "quantity": 1},
            {"sku": "A", "idempotency_key": "k3", "type": "adjustment", "location": "WH-1",
             "delta": i64::MIN},
        ])
        .to_string();
        let problems = problems(&body);
        assert!(
            problems
                .iter()
                .any(|(pointer, detail)| pointer == "#/1/sku" && detail.contains("bytes long")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|(pointer, detail)| pointer == "#/2/delta" && detail.contains("allowed")),
            "{problems:?}"
        );
    }
}
