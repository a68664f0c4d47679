//! Bundle and kit movements: the orchestration around the expansion that
//! [`crate::domain::BundleExpansion`] computes (the bill-of-materials maths lives in
//! `domain::bundle`; this module records expansions, submits the component movements and
//! combines their acknowledgements). The expansion is recorded so that later
//! cancellations, shipments and returns act on what was sold, even if the bill of
//! materials changed since.
//!
//! - A sale (channel order line) of `n` bundles becomes a sale of `n × quantity` of every
//!   component, each with the bundle line's reservation id; it always applies.
//! - A hold of a bundle is all or nothing: if any component does not fit, the components
//!   already held are released (`reason: "compensation"`) and the hold is refused.
//! - Cancellation, fulfilment, return and reassignment of a bundle line act on the
//!   recorded expansion (falling back to the current bill of materials when none was
//!   recorded, e.g. a cancellation or shipment that arrives before its sale); an order
//!   edit sets each component line's target by it, and records one when it adds the line.
//! - A reassignment is all or nothing like a hold: if one component line cannot move, the
//!   component lines already moved are moved back (`{key}:compensate#{component}`).
//! - The acknowledgement combines the components': `parked` when a component movement
//!   waits for its line, `ignored` when every component ignored it (an old edit version),
//!   `duplicate` when all were duplicates, else `applied`.
//! - Receipts, adjustments, counts, inbound and transfers of a bundle are refused: a
//!   bundle holds no stock of its own; move its components.
//!
//! The expansion record lives in the store's reservation records under
//! `bundle:{sku}:{reservation}` and is written in a group commit before the components move.

use super::{Ack, Ledger, LedgerError, PendingAck};
use crate::domain::{ApplyError, BundleExpansion, ExpansionBasis, Movement, MovementKind};
use crate::store::ReservationRecord;
use tokio::sync::oneshot;

fn record_id(movement: &Movement, reservation: &str) -> String {
    format!("bundle:{}:{reservation}", movement.sku)
}

/// Combines the acknowledgements of a bundle's component movements: the first refusal;
/// else `Parked` if any component waits, `Ignored` if every new one was ignored,
/// `Duplicate` if all were duplicates, `Applied` otherwise (with the highest seq).
fn combine(acks: Vec<Result<Ack, LedgerError>>) -> Result<Ack, LedgerError> {
    let (mut applied, mut parked, mut ignored) = (false, false, false);
    let mut highest = 0;
    for ack in acks {
        let ack = ack?;
        highest = highest.max(ack.seq());
        match ack {
            Ack::Applied { .. } => applied = true,
            Ack::Parked { .. } => parked = true,
            Ack::Ignored { .. } => ignored = true,
            Ack::Duplicate { .. } => {}
        }
    }
    Ok(match (parked, applied, ignored) {
        (true, _, _) => Ack::Parked { seq: highest },
        (false, true, _) => Ack::Applied { seq: highest },
        (false, false, true) => Ack::Ignored { seq: highest },
        (false, false, false) => Ack::Duplicate { seq: highest },
    })
}

impl Ledger {
    /// Replaces every bundle line of a reservation request by one line per leaf component
    /// (`quantity × units per bundle`, same location or route). The stored request then holds
    /// the expansion, so commit and release act on what was held.
    pub(crate) fn expand_request_bundles(
        &self,
        mut request: super::ReservationRequest,
    ) -> super::ReservationRequest {
        let rules = self.shared.options.rules.get();
        let bom = &rules.bom;
        if bom.is_empty() {
            return request;
        }
        request.lines = request
            .lines
            .into_iter()
            .flat_map(|line| match bom.component_units(&line.sku, line.quantity) {
                Some(components) => components
                    .map(|(sku, quantity)| super::ReservationLine {
                        sku: sku.clone(),
                        quantity,
                        location: line.location.clone(),
                        route: line.route.clone(),
                    })
                    .collect::<Vec<_>>(),
                None => vec![line],
            })
            .collect();
        request
    }

    /// With `prefer_single_location`, places every line of a multi-line request at the first
    /// candidate location (in the first line's route order, among locations every line may
    /// use) that has enough available for all of them, so the order ships from one place.
    /// The check reads current levels; the holds themselves still must fit when they are
    /// made, so a race only means a line is refused or routed on its own.
    pub(crate) async fn prefer_single_location(
        &self,
        mut request: super::ReservationRequest,
    ) -> super::ReservationRequest {
        let rules = self.shared.options.rules.get();
        if !rules.stock.prefer_single_location
            || request.lines.len() < 2
            || request.lines.iter().any(|line| line.location.is_some())
        {
            return request;
        }
        let Some(first) = request.lines.iter().find(|line| !line.route.is_empty()) else {
            return request;
        };
        let candidates: Vec<crate::domain::LocationId> = first
            .route
            .iter()
            .filter(|candidate| {
                request
                    .lines
                    .iter()
                    .all(|line| line.route.is_empty() || line.route.contains(candidate))
            })
            .cloned()
            .collect();
        let mut needed: std::collections::BTreeMap<crate::domain::Sku, u64> = Default::default();
        for line in &request.lines {
            *needed.entry(line.sku.clone()).or_default() += line.quantity;
        }
        let mut states = Vec::new();
        for sku in needed.keys() {
            match self.state(sku).await {
                Ok(state) => states.push(state),
                Err(_) => return request,
            }
        }
        let fits_all = |candidate: &crate::domain::LocationId| {
            states.iter().all(|state| {
                let available = state.location(candidate).available();
                available >= i64::try_from(needed[&state.sku]).unwrap_or(i64::MAX)
            })
        };
        if let Some(location) = candidates.iter().find(|candidate| fits_all(candidate)) {
            for line in &mut request.lines {
                line.location = Some(location.clone());
            }
        }
        request
    }

    /// Whether `movement` names a bundle SKU (and so must be expanded).
    pub(crate) fn is_bundle_movement(&self, movement: &Movement) -> bool {
        self.shared.options.rules.get().bom.is_bundle(&movement.sku)
    }

    /// Expands a bundle movement into component movements (see the module docs).
    pub(crate) fn submit_bundle(&self, movement: Movement) -> PendingAck {
        let (reply, receiver) = oneshot::channel();
        let ledger = self.clone();
        tokio::spawn(async move {
            let _ = reply.send(ledger.apply_bundle(movement).await);
        });
        PendingAck::local(receiver)
    }

    async fn apply_bundle(&self, movement: Movement) -> Result<Ack, LedgerError> {
        movement
            .validate()
            .map_err(|problems| LedgerError::Rejected(ApplyError::Invalid(problems.join("; "))))?;
        let basis = ExpansionBasis::of(&movement).map_err(LedgerError::Rejected)?;
        let expansion = match basis {
            ExpansionBasis::Record {
                reservation,
                quantity,
            } => {
                let expansion = self.expand_now(&movement, quantity);
                self.record_expansion(&movement, reservation, &expansion)
                    .await?;
                expansion
            }
            ExpansionBasis::Recorded { reservation } => self
                .recorded(&movement, reservation)
                .await?
                .unwrap_or_else(|| self.expand_now(&movement, 0)),
            ExpansionBasis::Edit {
                reservation,
                quantity,
            } => match self.recorded(&movement, reservation).await? {
                Some(expansion) => expansion,
                None => {
                    let expansion = self.expand_now(&movement, quantity);
                    self.record_expansion(&movement, reservation, &expansion)
                        .await?;
                    expansion
                }
            },
            ExpansionBasis::Current { quantity } => self.expand_now(&movement, quantity),
        };
        let components = expansion
            .component_movements(&movement)
            .map_err(LedgerError::Rejected)?;
        if let MovementKind::Reassign { reservation, .. } = &movement.kind {
            return self
                .reassign_bundle(&movement, reservation, components)
                .await;
        }
        let skus: Vec<_> = components.iter().map(|c| c.sku.clone()).collect();
        let pending: Vec<_> = components
            .into_iter()
            .map(|component| self.submit(component))
            .collect();
        let acks = futures::future::join_all(pending).await;
        let MovementKind::Reservation { reservation, .. } = &movement.kind else {
            return combine(acks);
        };
        let refused = acks.iter().find_map(|ack| match ack {
            Err(LedgerError::Rejected(error)) => Some(error.clone()),
            _ => None,
        });
        if let Some(error) = refused {
            // All or nothing: release the components that were held.
            let held: Vec<_> = skus
                .iter()
                .zip(&acks)
                .filter(|(_, ack)| ack.is_ok())
                .map(|(sku, _)| {
                    self.submit(BundleExpansion::compensation(&movement, reservation, sku))
                })
                .collect();
            combine(futures::future::join_all(held).await)?;
            return Err(LedgerError::Rejected(error));
        }
        combine(acks)
    }

    /// The expansion of `quantity` bundles by the bill of materials in force now.
    fn expand_now(&self, movement: &Movement, quantity: u64) -> BundleExpansion {
        self.shared
            .options
            .rules
            .get()
            .bom
            .expand(&movement.sku, quantity)
    }

    /// Reassigns every component line of a bundle line, all or nothing: when one is
    /// refused, the component lines already moved go back to where their open units were
    /// (the first part with open units before the move) and the refusal is returned.
    async fn reassign_bundle(
        &self,
        movement: &Movement,
        reservation: &str,
        components: Vec<Movement>,
    ) -> Result<Ack, LedgerError> {
        let mut origins = Vec::with_capacity(components.len());
        for component in &components {
            let state = self.state(&component.sku).await?;
            let origin = state
                .reservations
                .iter()
                .filter(|(id, _)| {
                    id.as_str() == reservation
                        || id
                            .strip_prefix(reservation)
                            .is_some_and(|rest| rest.starts_with('~'))
                })
                .find(|(_, line)| line.open() > 0)
                .map(|(_, line)| line.location.clone());
            origins.push(origin);
        }
        let pending: Vec<_> = components
            .iter()
            .cloned()
            .map(|component| self.submit(component))
            .collect();
        let acks = futures::future::join_all(pending).await;
        let refused = acks.iter().find_map(|ack| match ack {
            Err(LedgerError::Rejected(error)) => Some(error.clone()),
            _ => None,
        });
        let Some(error) = refused else {
            return combine(acks);
        };
        let compensation = Movement {
            idempotency_key: format!("{}:compensate", movement.idempotency_key),
            ..movement.clone()
        };
        let back: Vec<_> = components
            .iter()
            .zip(&origins)
            .zip(&acks)
            .filter(|(_, ack)| matches!(ack, Ok(Ack::Applied { .. })))
            .filter_map(|((component, origin), _)| {
                let origin = origin.clone()?;
                let kind = MovementKind::Reassign {
                    reservation: reservation.to_owned(),
                    to: origin,
                };
                Some(self.submit(Movement {
                    sku: component.sku.clone(),
                    idempotency_key: format!("{}#{}", compensation.idempotency_key, component.sku),
                    kind,
                    ..compensation.clone()
                }))
            })
            .collect();
        combine(futures::future::join_all(back).await)?;
        Err(LedgerError::Rejected(error))
    }

    /// The recorded expansion of a bundle line, if one was recorded.
    async fn recorded(
        &self,
        movement: &Movement,
        reservation: &str,
    ) -> Result<Option<BundleExpansion>, LedgerError> {
        let record = self
            .shared
            .store
            .reservation(&record_id(movement, reservation))
            .await
            .map_err(|e| LedgerError::Store(e.to_string()))?;
        record
            .map(|record| {
                serde_json::from_str(&record.request_json).map_err(|e| {
                    LedgerError::Store(format!("corrupt bundle expansion record: {e}"))
                })
            })
            .transpose()
    }

    /// Writes the expansion durably (a repeated write keeps the first one).
    async fn record_expansion(
        &self,
        movement: &Movement,
        reservation: &str,
        expansion: &BundleExpansion,
    ) -> Result<(), LedgerError> {
        let (reply, receiver) = oneshot::channel();
        let mut request =
            super::committer::CommitRequest::wait(Ack::Duplicate { seq: 0 }, None, reply);
        request.reservation = Some(ReservationRecord {
            id: record_id(movement, reservation),
            request_json: serde_json::to_string(expansion).expect("expansions serialise"),
            refusal_json: None,
            created_at_ms: self.shared.now_ms(),
        });
        self.shared.committer.send(request).await;
        receiver
            .await
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("committer stopped".to_owned())))
            .map(|_| ())
    }
}
