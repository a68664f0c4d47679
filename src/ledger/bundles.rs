//! Bundle and kit movements: a movement of a bundle SKU is expanded into movements of its
//! leaf components, and the expansion is recorded so that later cancellations, shipments
//! and returns act on what was sold, even if the bill of materials changed since.
//!
//! - A sale (channel order line) of `n` bundles becomes a sale of `n × quantity` of every
//!   component, each with the bundle line's reservation id; it always applies.
//! - A hold of a bundle is all or nothing: if any component does not fit, the components
//!   already held are released (`reason: "compensation"`) and the hold is refused.
//! - Cancellation, fulfilment and return of a bundle line act on the recorded expansion
//!   (falling back to the current bill of materials when none was recorded, e.g. a
//!   cancellation that arrives before its sale).
//! - Receipts, adjustments, counts, inbound and transfers of a bundle are refused: a
//!   bundle holds no stock of its own; move its components.
//!
//! The expansion record lives in the store's reservation records under
//! `bundle:{sku}:{reservation}` and is written in a group commit before the components move.

use super::{Ack, Ledger, LedgerError, PendingAck};
use crate::domain::{ApplyError, Component, Movement, MovementKind};
use crate::store::ReservationRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// What one bundle line was expanded into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Expansion {
    /// Bundles sold or held on the line.
    quantity: u64,
    /// Leaf components as (SKU, units per bundle).
    components: Vec<(String, u64)>,
}

fn record_id(movement: &Movement, reservation: &str) -> String {
    format!("bundle:{}:{reservation}", movement.sku)
}

fn component_movement(bundle: &Movement, component: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: bundle.schema_version,
        sku: component.into(),
        idempotency_key: format!("{}#{component}", bundle.idempotency_key),
        source: bundle.source.clone(),
        occurred_at_ms: bundle.occurred_at_ms,
        kind,
    }
}

/// Combines the acknowledgements of a bundle's component movements.
fn combine(acks: Vec<Result<Ack, LedgerError>>) -> Result<Ack, LedgerError> {
    let mut all_duplicates = true;
    let mut highest = 0;
    for ack in acks {
        match ack? {
            Ack::Applied { seq } => {
                all_duplicates = false;
                highest = highest.max(seq);
            }
            Ack::Duplicate { seq } => highest = highest.max(seq),
        }
    }
    Ok(if all_duplicates {
        Ack::Duplicate { seq: highest }
    } else {
        Ack::Applied { seq: highest }
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
            .flat_map(|line| match bom.components(&line.sku) {
                Some(components) => components
                    .iter()
                    .map(|component| super::ReservationLine {
                        sku: component.sku.clone(),
                        quantity: line.quantity.saturating_mul(component.quantity),
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
        PendingAck(receiver)
    }

    async fn apply_bundle(&self, movement: Movement) -> Result<Ack, LedgerError> {
        movement
            .validate()
            .map_err(|problems| LedgerError::Rejected(ApplyError::Invalid(problems.join("; "))))?;
        match movement.kind.clone() {
            MovementKind::Sale {
                reservation,
                quantity,
                location,
                route,
            } => {
                let expansion = self.expand_now(&movement, quantity);
                self.record_expansion(&movement, &reservation, &expansion)
                    .await?;
                let pending: Vec<_> = expansion
                    .components
                    .iter()
                    .map(|(sku, per)| {
                        self.submit(component_movement(
                            &movement,
                            sku,
                            MovementKind::Sale {
                                reservation: reservation.clone(),
                                quantity: quantity * per,
                                location: location.clone(),
                                route: route.clone(),
                            },
                        ))
                    })
                    .collect();
                combine(futures::future::join_all(pending).await)
            }
            MovementKind::Reservation {
                reservation,
                quantity,
                location,
                route,
                expires_at_ms,
            } => {
                let expansion = self.expand_now(&movement, quantity);
                self.record_expansion(&movement, &reservation, &expansion)
                    .await?;
                let pending: Vec<_> = expansion
                    .components
                    .iter()
                    .map(|(sku, per)| {
                        self.submit(component_movement(
                            &movement,
                            sku,
                            MovementKind::Reservation {
                                reservation: reservation.clone(),
                                quantity: quantity * per,
                                location: location.clone(),
                                route: route.clone(),
                                expires_at_ms,
                            },
                        ))
                    })
                    .collect();
                let acks = futures::future::join_all(pending).await;
                let refused = acks.iter().find_map(|ack| match ack {
                    Err(LedgerError::Rejected(error)) => Some(error.clone()),
                    _ => None,
                });
                if let Some(error) = refused {
                    // All or nothing: release the components that were held.
                    let held: Vec<_> = expansion
                        .components
                        .iter()
                        .zip(&acks)
                        .filter(|(_, ack)| ack.is_ok())
                        .map(|((sku, _), _)| {
                            let compensation = Movement {
                                idempotency_key: format!("{}:compensate", movement.idempotency_key),
                                ..movement.clone()
                            };
                            self.submit(component_movement(
                                &compensation,
                                sku,
                                MovementKind::Cancellation {
                                    reservation: reservation.clone(),
                                    quantity: None,
                                    reason: Some("compensation".to_owned()),
                                },
                            ))
                        })
                        .collect();
                    combine(futures::future::join_all(held).await)?;
                    return Err(LedgerError::Rejected(error));
                }
                combine(acks)
            }
            MovementKind::Cancellation {
                reservation,
                quantity,
                reason,
            } => {
                let expansion = self.recorded(&movement, &reservation).await?;
                self.submit_components(&movement, &expansion, |per| MovementKind::Cancellation {
                    reservation: reservation.clone(),
                    quantity: quantity.map(|q| q * per),
                    reason: reason.clone(),
                })
                .await
            }
            MovementKind::Fulfilment {
                reservation,
                quantity,
            } => {
                let expansion = self.recorded(&movement, &reservation).await?;
                self.submit_components(&movement, &expansion, |per| MovementKind::Fulfilment {
                    reservation: reservation.clone(),
                    quantity: quantity * per,
                })
                .await
            }
            MovementKind::Return {
                location,
                quantity,
                reservation,
            } => {
                let expansion = match &reservation {
                    Some(line) => self.recorded(&movement, line).await?,
                    None => self.expand_now(&movement, quantity),
                };
                self.submit_components(&movement, &expansion, |per| MovementKind::Return {
                    location: location.clone(),
                    quantity: quantity * per,
                    reservation: reservation.clone(),
                })
                .await
            }
            other => Err(LedgerError::Rejected(ApplyError::Invalid(format!(
                "{} is a bundle and holds no stock of its own: a {} must name its components",
                movement.sku,
                other.name()
            )))),
        }
    }

    async fn submit_components(
        &self,
        movement: &Movement,
        expansion: &Expansion,
        kind: impl Fn(u64) -> MovementKind,
    ) -> Result<Ack, LedgerError> {
        let pending: Vec<_> = expansion
            .components
            .iter()
            .map(|(sku, per)| self.submit(component_movement(movement, sku, kind(*per))))
            .collect();
        combine(futures::future::join_all(pending).await)
    }

    fn expand_now(&self, movement: &Movement, quantity: u64) -> Expansion {
        let rules = self.shared.options.rules.get();
        let components: &[Component] = rules.bom.components(&movement.sku).unwrap_or_default();
        Expansion {
            quantity,
            components: components
                .iter()
                .map(|component| (component.sku.to_string(), component.quantity))
                .collect(),
        }
    }

    /// The recorded expansion of a bundle line, or the current bill of materials.
    async fn recorded(
        &self,
        movement: &Movement,
        reservation: &str,
    ) -> Result<Expansion, LedgerError> {
        let record = self
            .shared
            .store
            .reservation(&record_id(movement, reservation))
            .await
            .map_err(|e| LedgerError::Store(e.to_string()))?;
        match record {
            Some(record) => serde_json::from_str(&record.request_json)
                .map_err(|e| LedgerError::Store(format!("corrupt bundle expansion record: {e}"))),
            None => Ok(self.expand_now(movement, 0)),
        }
    }

    /// Writes the expansion durably (a repeated write keeps the first one).
    async fn record_expansion(
        &self,
        movement: &Movement,
        reservation: &str,
        expansion: &Expansion,
    ) -> Result<(), LedgerError> {
        let (reply, receiver) = oneshot::channel();
        let mut request =
            super::committer::CommitRequest::wait(Ack::Duplicate { seq: 0 }, None, reply);
        request.reservation = Some(ReservationRecord {
            id: record_id(movement, reservation),
            request_json: serde_json::to_string(expansion).expect("expansions serialise"),
            refusal_json: None,
            created_at_ms: crate::clock::now_ms(),
        });
        self.shared.committer.send(request).await;
        receiver
            .await
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("committer stopped".to_owned())))
            .map(|_| ())
    }
}
