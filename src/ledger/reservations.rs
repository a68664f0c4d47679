//! Multi-SKU, all-or-nothing reservations (DESIGN.md §2; issue 3 item 5): a saga over the
//! SKU actors with compensation.
//!
//! Owns: [`ReservationRequest`] and its answers, and the protocol behind
//! [`Ledger::reserve`], [`Ledger::commit_reservation`], [`Ledger::release_reservation`] and
//! [`Ledger::reservation`]. It changes stock only by submitting movements to the SKU actors
//! (one writer per SKU still holds) and records each request in the store's `reservations`
//! through the group committer.
//!
//! Protocol of [`Ledger::reserve`]:
//! 1. The request is recorded durably (first write wins; a later request with the same id
//!    but other lines or TTL is answered [`ReservationOutcome::Conflict`]). The hold expiry
//!    (`now + ttl_secs`) is fixed in that record, so a retry gets the same expiry.
//! 2. Line `i` becomes `MovementKind::Reservation { reservation: "{id}:{i}", .. }` with the
//!    idempotency key `"{id}:{i}:reserve"`, submitted to every SKU actor at once; each actor
//!    admits its line only if it fits in available stock (scenario S1: N concurrent requests
//!    against k units → exactly k succeed, available never below 0).
//! 3. If every line is held: [`ReservationOutcome::Reserved`] with the location each line was
//!    routed to. If a line is refused for insufficient stock: the refusal is recorded first,
//!    then every line that holds units is released with `Cancellation { reason:
//!    "compensation" }` (key `"{id}:{i}:compensate"`), and the answer is
//!    [`ReservationOutcome::InsufficientStock`] with requested and best available per short
//!    line.
//!
//! Semantics:
//! - All or nothing, eventually: between steps 2 and 3 other requests may see a line held
//!   that will be compensated (a saga, not a distributed lock); never a line held for a
//!   request that was answered "refused" once compensation completed.
//! - Retries are harmless and get the same answer: every movement key is derived from the
//!   request id and line index, and a recorded refusal is answered again as it was (its
//!   compensation is re-run, in case the process stopped in between).
//! - A crash between reserving and compensating leaves holds that the next retry of the
//!   same id compensates; holds with a TTL are in any case released by the reaper at expiry
//!   (`super::reaper`). A transient failure (store, actor start) answers an error without
//!   compensating, so the caller retries the same id to reach a decision.
//! - Requests with the same id are serialised within the process.
//!
//! May depend on: `domain`, `store`, the ledger's registry and committer.

use super::committer::CommitRequest;
use super::{Ack, Ledger, LedgerError};
use crate::domain::{
    ApplyError, LocationId, Movement, MovementKind, SCHEMA_VERSION, Sku, SkuState,
};
use crate::store::ReservationRecord;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The source of the movements this module submits (a bounded metric label).
pub const RESERVATIONS_SOURCE: &str = "reservations";

/// Most lines in one request.
pub const MAX_LINES: usize = 1_000;

/// Longest request id, in bytes.
pub const MAX_ID_BYTES: usize = 200;

/// Longest TTL accepted, in seconds (30 days).
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// A multi-line, multi-SKU hold. JSON: `{"id":"checkout-81","lines":[{"sku":"SKU-G",
/// "quantity":1,"route":["WH-NORTH","WH-SOUTH"]}],"ttl_secs":900}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReservationRequest {
    /// The caller's id for the request (a checkout or B2B order id): unique, at most
    /// [`MAX_ID_BYTES`] bytes, no whitespace. Retrying with the same id is harmless.
    pub id: String,
    /// What to hold; several SKUs and several lines per SKU are allowed.
    pub lines: Vec<ReservationLine>,
    /// Seconds until the holds lapse unless committed (1..=[`MAX_TTL_SECS`]); absent: they
    /// never lapse and must be committed or released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// One line of a [`ReservationRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReservationLine {
    /// The SKU to hold.
    #[schema(value_type = String)]
    pub sku: Sku,
    /// Units to hold (≥ 1, base units).
    pub quantity: u64,
    /// The location to hold at, when the caller knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub location: Option<LocationId>,
    /// Candidate locations in priority order when `location` is absent (the first with
    /// enough available stock is chosen, per the ledger's routing policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub route: Vec<LocationId>,
}

/// One problem with a request: `field` is a JSON pointer fragment (`lines/1/quantity`, or
/// empty for the whole request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestProblem {
    /// Where (`id`, `lines`, `lines/1/quantity`, `ttl_secs`).
    pub field: String,
    /// What is wrong, in lowercase prose.
    pub detail: String,
}

impl ReservationRequest {
    /// Checks the request and reports every problem at once.
    pub fn validate(&self) -> Result<(), Vec<RequestProblem>> {
        let mut problems = Vec::new();
        let mut problem = |field: String, detail: &str| {
            problems.push(RequestProblem {
                field,
                detail: detail.to_owned(),
            })
        };
        if self.id.trim().is_empty() {
            problem("id".into(), "id must not be empty");
        } else if self.id.len() > MAX_ID_BYTES || self.id.chars().any(char::is_whitespace) {
            problem(
                "id".into(),
                "id must be at most 200 bytes and contain no whitespace",
            );
        }
        if self.lines.is_empty() {
            problem("lines".into(), "lines must not be empty");
        }
        if self.lines.len() > MAX_LINES {
            problem("lines".into(), "at most 1000 lines are accepted");
        }
        if self
            .ttl_secs
            .is_some_and(|ttl| ttl == 0 || ttl > MAX_TTL_SECS)
        {
            problem(
                "ttl_secs".into(),
                "ttl_secs must be between 1 and 2592000 (30 days)",
            );
        }
        for (index, line) in self.lines.iter().enumerate() {
            if line.sku.0.trim().is_empty() {
                problem(format!("lines/{index}/sku"), "sku must not be empty");
            }
            if line.quantity == 0 {
                problem(
                    format!("lines/{index}/quantity"),
                    "quantity must be at least 1",
                );
            }
            if line.location.is_none() && line.route.is_empty() {
                problem(
                    format!("lines/{index}/location"),
                    "either location or route must be given",
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Where one line stands now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// Units are held (some may already be shipped).
    Held,
    /// Every held unit was shipped or, after a partial shipment, released.
    Committed,
    /// Released without shipping (released, expired or compensated).
    Released,
    /// No hold exists for the line (it was refused).
    Missing,
}

/// One line of a reservation as the ledger holds it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReservationLineView {
    /// Index of the line in the request.
    pub line: usize,
    /// The ledger's reservation id of the line: `"{request id}:{line}"`.
    pub reservation: String,
    /// The SKU.
    #[schema(value_type = String)]
    pub sku: Sku,
    /// Units requested.
    pub quantity: u64,
    /// Where the units are held (the routed location), if a hold exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub location: Option<LocationId>,
    /// Units still held.
    pub open: u64,
    /// Units shipped (committed).
    pub fulfilled: u64,
    /// Units released (released, expired or compensated).
    pub released: u64,
    /// Summary of the above.
    pub status: LineStatus,
}

/// A reservation request and the state of each of its lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReservationView {
    /// The request id.
    pub id: String,
    /// When uncommitted holds lapse, in milliseconds since the Unix epoch (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Whether the request was refused (nothing is held for it then).
    pub refused: bool,
    /// One entry per request line, in request order.
    pub lines: Vec<ReservationLineView>,
}

/// A line that did not fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineShortage {
    /// Index of the line in the request.
    pub line: usize,
    /// The SKU.
    #[schema(value_type = String)]
    pub sku: Sku,
    /// Units requested.
    pub requested: u64,
    /// The most units available at any candidate location when it was refused.
    pub available: i64,
}

/// The answer to [`Ledger::reserve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReservationOutcome {
    /// Every line is held (or was: the view shows where each line stands now).
    Reserved {
        /// The reservation and its lines, with the location chosen for each.
        view: ReservationView,
        /// True when every line was already held under this id (a retry).
        replayed: bool,
    },
    /// At least one line did not fit; nothing is held for the request.
    InsufficientStock {
        /// The request id.
        id: String,
        /// The lines that did not fit, in request order.
        lines: Vec<LineShortage>,
    },
    /// The id was used before with other lines or another TTL; nothing changed.
    Conflict {
        /// The request id.
        id: String,
    },
}

/// The request as recorded in the store (`ReservationRecord::request_json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredRequest {
    lines: Vec<ReservationLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
}

/// Per-id mutexes that serialise reserve, commit and release of one request id.
#[derive(Default)]
pub(crate) struct Locks(DashMap<String, Arc<tokio::sync::Mutex<()>>>);

struct LockGuard<'a> {
    locks: &'a Locks,
    id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Locks {
    async fn lock(&self, id: &str) -> LockGuard<'_> {
        let mutex = self.0.entry(id.to_owned()).or_default().clone();
        let guard = mutex.lock_owned().await;
        LockGuard {
            locks: self,
            id: id.to_owned(),
            guard: Some(guard),
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map still holds the mutex: nobody waits for it, forget it.
        self.locks
            .0
            .remove_if(&self.id, |_, mutex| Arc::strong_count(mutex) == 1);
    }
}

/// The ledger reservation id of line `index` of request `id`.
pub fn line_reservation_id(id: &str, index: usize) -> String {
    format!("{id}:{index}")
}

fn movement(sku: &Sku, key: String, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.clone(),
        idempotency_key: key,
        source: RESERVATIONS_SOURCE.to_owned(),
        occurred_at_ms: None,
        kind,
    }
}

fn store_error(error: crate::store::StoreError) -> LedgerError {
    LedgerError::Store(error.to_string())
}

fn corrupt(id: &str, error: serde_json::Error) -> LedgerError {
    LedgerError::Store(format!("reservation {id} record is unreadable: {error}"))
}

impl Ledger {
    /// Holds every line of `request`, or none (see the module docs for the protocol).
    ///
    /// Errors: [`LedgerError::Rejected`] with [`ApplyError::Invalid`] for an invalid request
    /// (every problem, `; `-separated) or a line refused for another reason than stock;
    /// [`LedgerError::Store`] / [`LedgerError::Unavailable`] when the outcome is not decided
    /// yet (retry with the same id).
    pub async fn reserve(
        &self,
        request: ReservationRequest,
    ) -> Result<ReservationOutcome, LedgerError> {
        let request = self.expand_request_bundles(request);
        request.validate().map_err(|problems| {
            let text: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.detail))
                .collect();
            LedgerError::Rejected(ApplyError::Invalid(text.join("; ")))
        })?;
        self.check_line_locations(&request)?;
        let _guard = self.shared.reservation_locks.lock(&request.id).await;
        let id = request.id.clone();
        let stored = match self
            .shared
            .store
            .reservation(&id)
            .await
            .map_err(store_error)?
        {
            Some(record) => {
                let stored: StoredRequest =
                    serde_json::from_str(&record.request_json).map_err(|e| corrupt(&id, e))?;
                // A line stored with the location the single-location preference chose is
                // the same line as one sent again without a location.
                let same_lines = stored.lines.len() == request.lines.len()
                    && stored
                        .lines
                        .iter()
                        .zip(&request.lines)
                        .all(|(stored, sent)| {
                            stored.sku == sent.sku
                                && stored.quantity == sent.quantity
                                && stored.route == sent.route
                                && (sent.location.is_none() || stored.location == sent.location)
                        });
                if !same_lines || stored.ttl_secs != request.ttl_secs {
                    return Ok(ReservationOutcome::Conflict { id });
                }
                if let Some(refusal) = &record.refusal_json {
                    let lines: Vec<LineShortage> =
                        serde_json::from_str(refusal).map_err(|e| corrupt(&id, e))?;
                    self.compensate_held(&id, &stored.lines).await?;
                    return Ok(ReservationOutcome::InsufficientStock { id, lines });
                }
                stored
            }
            None => {
                let request = self.prefer_single_location(request).await;
                let now = self.shared.now_ms();
                let stored = StoredRequest {
                    lines: request.lines,
                    ttl_secs: request.ttl_secs,
                    expires_at_ms: request
                        .ttl_secs
                        .map(|ttl| now.saturating_add(ttl.saturating_mul(1000) as i64)),
                };
                self.record(ReservationRecord {
                    id: id.clone(),
                    request_json: serde_json::to_string(&stored)
                        .expect("requests always serialise"),
                    refusal_json: None,
                    created_at_ms: now,
                })
                .await?;
                stored
            }
        };
        self.reserve_lines(&id, &stored).await
    }

    /// Refuses a request naming a location that is not configured, with the field
    /// (`lines/0/location`, `lines/1/route/0`), before anything is recorded or held.
    fn check_line_locations(&self, request: &ReservationRequest) -> Result<(), LedgerError> {
        let rules = self.shared.options.rules.get();
        let known = &rules.stock.known_locations;
        if known.is_empty() {
            return Ok(());
        }
        for (index, line) in request.lines.iter().enumerate() {
            let named = line
                .location
                .iter()
                .map(|location| ("location".to_owned(), location))
                .chain(
                    line.route
                        .iter()
                        .enumerate()
                        .map(|(at, location)| (format!("route/{at}"), location)),
                );
            for (field, location) in named {
                if !known.contains(location) {
                    return Err(LedgerError::Rejected(ApplyError::UnknownLocation {
                        field: format!("lines/{index}/{field}"),
                        location: location.clone(),
                    }));
                }
            }
        }
        Ok(())
    }

    async fn reserve_lines(
        &self,
        id: &str,
        stored: &StoredRequest,
    ) -> Result<ReservationOutcome, LedgerError> {
        let pending: Vec<_> = stored
            .lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                self.submit(movement(
                    &line.sku,
                    format!("{id}:{index}:reserve"),
                    MovementKind::Reservation {
                        reservation: line_reservation_id(id, index),
                        quantity: line.quantity,
                        location: line.location.clone(),
                        route: line.route.clone(),
                        expires_at_ms: stored.expires_at_ms,
                    },
                ))
            })
            .collect();
        let acks = futures::future::join_all(pending).await;
        let mut held = Vec::new();
        let mut shortages = Vec::new();
        let mut other_refusal = None;
        let mut transient = None;
        let mut replayed = true;
        for (index, ack) in acks.into_iter().enumerate() {
            match ack {
                Ok(ack) => {
                    replayed &= matches!(ack, Ack::Duplicate { .. });
                    held.push(index);
                }
                Err(LedgerError::Rejected(ApplyError::InsufficientStock {
                    requested,
                    available,
                    ..
                })) => shortages.push(LineShortage {
                    line: index,
                    sku: stored.lines[index].sku.clone(),
                    requested,
                    available,
                }),
                Err(LedgerError::Rejected(error)) => other_refusal = Some(error),
                Err(error) => transient = Some(error),
            }
        }
        if let Some(error) = transient {
            // Undecided: the caller retries the same id (holds made so far are kept, found
            // again by their keys, and bounded by the TTL).
            return Err(error);
        }
        if let Some(error) = other_refusal {
            self.compensate(id, &stored.lines, &held).await?;
            return Err(LedgerError::Rejected(error));
        }
        if shortages.is_empty() {
            let view = self.view(id, stored, false).await?;
            return Ok(ReservationOutcome::Reserved { view, replayed });
        }
        // Record the refusal before compensating: a retry then answers the same and re-runs
        // the compensation, and a released line without a refusal is the caller's release.
        self.record(ReservationRecord {
            id: id.to_owned(),
            request_json: serde_json::to_string(stored).expect("requests always serialise"),
            refusal_json: Some(serde_json::to_string(&shortages).expect("shortages serialise")),
            created_at_ms: self.shared.now_ms(),
        })
        .await?;
        self.compensate(id, &stored.lines, &held).await?;
        Ok(ReservationOutcome::InsufficientStock {
            id: id.to_owned(),
            lines: shortages,
        })
    }

    /// Releases lines `indexes` of request `id` with `Cancellation { reason: "compensation" }`.
    async fn compensate(
        &self,
        id: &str,
        lines: &[ReservationLine],
        indexes: &[usize],
    ) -> Result<(), LedgerError> {
        let pending: Vec<_> = indexes
            .iter()
            .map(|&index| {
                self.submit(movement(
                    &lines[index].sku,
                    format!("{id}:{index}:compensate"),
                    MovementKind::Cancellation {
                        reservation: line_reservation_id(id, index),
                        quantity: None,
                        reason: Some("compensation".to_owned()),
                        write_off: false,
                    },
                ))
            })
            .collect();
        for ack in futures::future::join_all(pending).await {
            ack?;
        }
        Ok(())
    }

    /// Compensates every line of a refused request that still holds units.
    async fn compensate_held(
        &self,
        id: &str,
        lines: &[ReservationLine],
    ) -> Result<(), LedgerError> {
        let states = self.states(lines).await?;
        let held: Vec<usize> = (0..lines.len())
            .filter(|&index| {
                states[&lines[index].sku]
                    .reservations
                    .get(&line_reservation_id(id, index))
                    .is_some_and(|line| line.open() > 0)
            })
            .collect();
        self.compensate(id, lines, &held).await
    }

    /// Ships every open unit of lines `lines` (all lines when `None`) of request `id` with
    /// one `Fulfilment` per line (key `"{id}:{i}:commit"`): on-hand and reserved drop, and
    /// the hold no longer lapses. Lines already committed are left as they are.
    ///
    /// Returns `Ok(None)` for an unknown id, else the reservation as it is after the commit.
    /// Errors: [`LedgerError::Rejected`] with [`ApplyError::UnknownReservation`] when a
    /// chosen line holds nothing to ship (refused, released or expired; nothing is shipped
    /// then) or [`ApplyError::Invalid`] for a line index out of range; store and
    /// availability errors as for [`Ledger::submit`] (retry: the keys make it harmless).
    pub async fn commit_reservation(
        &self,
        id: &str,
        lines: Option<&[usize]>,
    ) -> Result<Option<ReservationView>, LedgerError> {
        let _guard = self.shared.reservation_locks.lock(id).await;
        let Some(stored) = self.stored(id).await? else {
            return Ok(None);
        };
        let chosen: Vec<usize> = match lines {
            Some(lines) => lines
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => (0..stored.lines.len()).collect(),
        };
        if let Some(bad) = chosen.iter().find(|&&index| index >= stored.lines.len()) {
            return Err(LedgerError::Rejected(ApplyError::Invalid(format!(
                "reservation {id} has no line {bad}"
            ))));
        }
        let states = self.states(&stored.lines).await?;
        let mut to_ship = Vec::new();
        for &index in &chosen {
            let reservation = line_reservation_id(id, index);
            let line = states[&stored.lines[index].sku]
                .reservations
                .get(&reservation);
            match line {
                Some(line) if line.open() > 0 => to_ship.push((index, line.open())),
                Some(line) if line.fulfilled > 0 => {}
                _ => {
                    return Err(LedgerError::Rejected(ApplyError::UnknownReservation {
                        reservation,
                    }));
                }
            }
        }
        let pending: Vec<_> = to_ship
            .iter()
            .map(|&(index, quantity)| {
                self.submit(movement(
                    &stored.lines[index].sku,
                    format!("{id}:{index}:commit"),
                    MovementKind::Fulfilment {
                        reservation: line_reservation_id(id, index),
                        quantity,
                        location: None,
                    },
                ))
            })
            .collect();
        for ack in futures::future::join_all(pending).await {
            ack?;
        }
        self.view(id, &stored, false).await.map(Some)
    }

    /// Releases every unit still held by request `id` with one `Cancellation { reason:
    /// "released" }` per line (key `"{id}:{i}:release"`); shipped units stay shipped.
    ///
    /// Returns `Ok(None)` for an unknown id, else the reservation after the release.
    /// Errors: store and availability errors as for [`Ledger::submit`] (retry).
    pub async fn release_reservation(
        &self,
        id: &str,
    ) -> Result<Option<ReservationView>, LedgerError> {
        let _guard = self.shared.reservation_locks.lock(id).await;
        let Some(stored) = self.stored(id).await? else {
            return Ok(None);
        };
        let states = self.states(&stored.lines).await?;
        let pending: Vec<_> = stored
            .lines
            .iter()
            .enumerate()
            .filter(|(index, line)| {
                states[&line.sku]
                    .reservations
                    .get(&line_reservation_id(id, *index))
                    .is_some_and(|held| held.open() > 0)
            })
            .map(|(index, line)| {
                self.submit(movement(
                    &line.sku,
                    format!("{id}:{index}:release"),
                    MovementKind::Cancellation {
                        reservation: line_reservation_id(id, index),
                        quantity: None,
                        reason: Some("released".to_owned()),
                        write_off: false,
                    },
                ))
            })
            .collect();
        for ack in futures::future::join_all(pending).await {
            ack?;
        }
        self.view(id, &stored, false).await.map(Some)
    }

    /// The reservation request `id` and where each of its lines stands, `None` if unknown.
    ///
    /// Errors: store and availability errors (the SKUs' states are read from their actors).
    pub async fn reservation(&self, id: &str) -> Result<Option<ReservationView>, LedgerError> {
        let Some(record) = self
            .shared
            .store
            .reservation(id)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let stored: StoredRequest =
            serde_json::from_str(&record.request_json).map_err(|e| corrupt(id, e))?;
        self.view(id, &stored, record.refusal_json.is_some())
            .await
            .map(Some)
    }

    async fn stored(&self, id: &str) -> Result<Option<StoredRequest>, LedgerError> {
        match self
            .shared
            .store
            .reservation(id)
            .await
            .map_err(store_error)?
        {
            Some(record) => serde_json::from_str(&record.request_json)
                .map(Some)
                .map_err(|e| corrupt(id, e)),
            None => Ok(None),
        }
    }

    /// Records a request (or its refusal) durably through the group committer.
    async fn record(&self, record: ReservationRecord) -> Result<(), LedgerError> {
        let (reply, receiver) = oneshot::channel();
        let mut request = CommitRequest::wait(Ack::Duplicate { seq: 0 }, None, reply);
        request.reservation = Some(record);
        self.shared.committer.send(request).await;
        receiver
            .await
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("committer stopped".to_owned())))
            .map(|_| ())
    }

    /// The current state of every distinct SKU of `lines`, read concurrently.
    async fn states(
        &self,
        lines: &[ReservationLine],
    ) -> Result<BTreeMap<Sku, SkuState>, LedgerError> {
        let skus: BTreeSet<&Sku> = lines.iter().map(|line| &line.sku).collect();
        let states = futures::future::join_all(skus.iter().map(|sku| self.state(sku))).await;
        skus.into_iter()
            .zip(states)
            .map(|(sku, state)| state.map(|state| (sku.clone(), state)))
            .collect()
    }

    async fn view(
        &self,
        id: &str,
        stored: &StoredRequest,
        refused: bool,
    ) -> Result<ReservationView, LedgerError> {
        let states = self.states(&stored.lines).await?;
        let lines = stored
            .lines
            .iter()
            .enumerate()
            .map(|(index, line)| line_view(id, index, line, &states[&line.sku]))
            .collect();
        Ok(ReservationView {
            id: id.to_owned(),
            expires_at_ms: stored.expires_at_ms,
            refused,
            lines,
        })
    }
}

fn line_view(
    id: &str,
    index: usize,
    line: &ReservationLine,
    state: &SkuState,
) -> ReservationLineView {
    let reservation = line_reservation_id(id, index);
    let held = state.reservations.get(&reservation);
    let status = match held {
        None => LineStatus::Missing,
        Some(held) if held.open() > 0 => LineStatus::Held,
        Some(held) if held.fulfilled > 0 => LineStatus::Committed,
        Some(_) => LineStatus::Released,
    };
    ReservationLineView {
        line: index,
        sku: line.sku.clone(),
        quantity: line.quantity,
        location: held.map(|held| held.location.clone()),
        open: held.map_or(0, |held| held.open()),
        fulfilled: held.map_or(0, |held| held.fulfilled),
        released: held.map_or(0, |held| held.released),
        status,
        reservation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u64) -> ReservationLine {
        ReservationLine {
            sku: sku.into(),
            quantity,
            location: None,
            route: vec!["WH-1".into()],
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        let request = ReservationRequest {
            id: "has space".into(),
            lines: vec![
                line("A", 0),
                ReservationLine {
                    route: vec![],
                    ..line("", 1)
                },
            ],
            ttl_secs: Some(0),
        };
        let fields: Vec<String> = request
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "id",
                "ttl_secs",
                "lines/0/quantity",
                "lines/1/sku",
                "lines/1/location"
            ]
        );
        let empty = ReservationRequest {
            id: String::new(),
            lines: vec![],
            ttl_secs: None,
        };
        assert_eq!(empty.validate().unwrap_err().len(), 2);
    }

    #[test]
    fn requests_parse_from_the_documented_json() {
        let request: ReservationRequest = serde_json::from_str(
            r#"{"id":"checkout-81","lines":[{"sku":"SKU-G","quantity":1,
                "route":["WH-NORTH","WH-SOUTH"]}],"ttl_secs":900}"#,
        )
        .unwrap();
        assert_eq!(request.lines[0].route.len(), 2);
        assert_eq!(request.ttl_secs, Some(900));
        assert!(request.validate().is_ok());
        assert_eq!(line_reservation_id("checkout-81", 3), "checkout-81:3");
    }

    #[test]
    fn a_line_view_summarises_the_hold() {
        let mut state = SkuState::new("A".into());
        state.reservations.insert(
            "r:0".into(),
            crate::domain::Reservation {
                location: "WH-1".into(),
                quantity: 3,
                fulfilled: 3,
                released: 0,
                returned: 0,
                version: None,
                expires_at_ms: None,
                parts: Vec::new(),
                closed_at_ms: None,
            },
        );
        let view = line_view("r", 0, &line("A", 3), &state);
        assert_eq!(view.status, LineStatus::Committed);
        assert_eq!(view.location, Some("WH-1".into()));
        let missing = line_view("r", 1, &line("A", 3), &state);
        assert_eq!(missing.status, LineStatus::Missing);
    }

    #[tokio::test]
    async fn locks_are_forgotten_once_released() {
        let locks = Locks::default();
        {
            let _a = locks.lock("x").await;
            assert_eq!(locks.0.len(), 1);
        }
        assert_eq!(locks.0.len(), 0);
    }
}
