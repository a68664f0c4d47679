//! Expanding a bundle movement into movements of its leaf components.
//!
//! - A sale or hold of `n` bundles becomes a sale or hold of `n × units` of every component,
//!   under the bundle line's reservation id. The expansion is recorded (its JSON is what
//!   the ledger stores), so that later movements of the line act on what was sold even if
//!   the bill of materials changed since.
//! - A cancellation, shipment, return or reassignment of a bundle line acts on the recorded
//!   expansion; a return that names no line expands by the current bill of materials.
//! - An order edit of a bundle line sets every component line's target to `target × units`,
//!   by the recorded expansion; an edit that adds the line records one like a sale.
//! - Receipts, adjustments, counts, inbound and transfers of a bundle are refused: a bundle
//!   holds no stock of its own; move its components.
//!
//! The all-or-nothing protocol for holds (release what was held when one component does not
//! fit) is the ledger's; the compensating movement it sends is derived here.

use super::BillOfMaterials;
use crate::domain::{ApplyError, Movement, MovementKind, Sku};
use serde::{Deserialize, Serialize};

/// What one bundle line was expanded into, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleExpansion {
    /// Bundles sold or held on the line.
    pub quantity: u64,
    /// Leaf components as (SKU, units per bundle).
    pub components: Vec<(String, u64)>,
}

/// Where the expansion a bundle movement acts on comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpansionBasis<'a> {
    /// A sale or hold: expand `quantity` bundles by the current bill of materials and
    /// record the expansion under `reservation` before any component moves.
    Record {
        /// The bundle line.
        reservation: &'a str,
        /// Bundles sold or held.
        quantity: u64,
    },
    /// A cancellation, shipment or return of a line: act on the expansion recorded for
    /// `reservation` (the current bill of materials if none was recorded, e.g. a
    /// cancellation that arrives before its sale).
    Recorded {
        /// The bundle line.
        reservation: &'a str,
    },
    /// An order edit: act on the expansion recorded for `reservation`; when none was
    /// recorded (the edit adds the line), expand `quantity` bundles by the current bill of
    /// materials and record that, like a sale.
    Edit {
        /// The bundle line.
        reservation: &'a str,
        /// The line's new quantity in bundles.
        quantity: u64,
    },
    /// A return that names no line: expand `quantity` bundles by the current bill of
    /// materials, recording nothing.
    Current {
        /// Bundles returned.
        quantity: u64,
    },
}

/// Units of a component for `bundles` bundles at `per_bundle` units each (saturating: more
/// than `u64::MAX` units is not physical).
fn units(bundles: u64, per_bundle: u64) -> u64 {
    bundles.saturating_mul(per_bundle)
}

impl BillOfMaterials {
    /// The units of every leaf component that `bundles` of `bundle` take, in component
    /// order; `None` if `bundle` is no bundle.
    pub fn component_units<'a>(
        &'a self,
        bundle: &Sku,
        bundles: u64,
    ) -> Option<impl Iterator<Item = (&'a Sku, u64)> + use<'a>> {
        let components = self.components(bundle)?;
        Some(
            components
                .iter()
                .map(move |component| (&component.sku, units(bundles, component.quantity))),
        )
    }

    /// The expansion of `quantity` bundles of `bundle` by the current bill of materials (no
    /// components if `bundle` is no bundle).
    pub fn expand(&self, bundle: &Sku, quantity: u64) -> BundleExpansion {
        BundleExpansion {
            quantity,
            components: self
                .components(bundle)
                .unwrap_or_default()
                .iter()
                .map(|component| (component.sku.to_string(), component.quantity))
                .collect(),
        }
    }
}

impl ExpansionBasis<'_> {
    /// The basis of `movement` (a movement of a bundle SKU), or the refusal for a kind a
    /// bundle cannot take.
    pub fn of(movement: &Movement) -> Result<ExpansionBasis<'_>, ApplyError> {
        match &movement.kind {
            MovementKind::Sale {
                reservation,
                quantity,
                ..
            }
            | MovementKind::Reservation {
                reservation,
                quantity,
                ..
            } => Ok(ExpansionBasis::Record {
                reservation,
                quantity: *quantity,
            }),
            MovementKind::OrderEdit {
                reservation,
                quantity,
                ..
            } => Ok(ExpansionBasis::Edit {
                reservation,
                quantity: *quantity,
            }),
            MovementKind::Cancellation { reservation, .. }
            | MovementKind::Fulfilment { reservation, .. }
            | MovementKind::Reassign { reservation, .. }
            | MovementKind::Return {
                reservation: Some(reservation),
                ..
            } => Ok(ExpansionBasis::Recorded { reservation }),
            MovementKind::Return {
                reservation: None,
                quantity,
                ..
            } => Ok(ExpansionBasis::Current {
                quantity: *quantity,
            }),
            other => Err(ApplyError::Invalid(format!(
                "{} is a bundle and holds no stock of its own: a {} must name its components",
                movement.sku,
                other.name()
            ))),
        }
    }
}

impl BundleExpansion {
    /// One movement per component for `bundle` (a sale, hold, order edit, cancellation,
    /// shipment, return or reassignment of a bundle SKU), in component order: the same kind,
    /// line, location, route, version and restock flag, `units per bundle ×` the bundle's
    /// quantity (an edit's target likewise), and the idempotency key
    /// `{bundle key}#{component}` so that each is deduplicated on its own.
    ///
    /// Errors: the refusal for a kind a bundle cannot take (see [`ExpansionBasis::of`]).
    pub fn component_movements(&self, bundle: &Movement) -> Result<Vec<Movement>, ApplyError> {
        ExpansionBasis::of(bundle)?;
        Ok(self
            .components
            .iter()
            .map(|(sku, per)| component_movement(bundle, sku, scale(&bundle.kind, *per)))
            .collect())
    }

    /// The release of a component held for the hold `bundle` when another component did
    /// not fit (all or nothing), keyed `{bundle key}:compensate#{component}`.
    pub fn compensation(bundle: &Movement, reservation: &str, component: &Sku) -> Movement {
        let compensation = Movement {
            idempotency_key: format!("{}:compensate", bundle.idempotency_key),
            ..bundle.clone()
        };
        component_movement(
            &compensation,
            component.as_str(),
            MovementKind::Cancellation {
                reservation: reservation.to_owned(),
                quantity: None,
                reason: Some("compensation".to_owned()),
                write_off: false,
            },
        )
    }
}

/// `kind` for one component at `per` units per bundle (a kind with no quantity to scale is
/// returned as is; [`ExpansionBasis::of`] refuses those first).
fn scale(kind: &MovementKind, per: u64) -> MovementKind {
    let mut kind = kind.clone();
    match &mut kind {
        MovementKind::Sale { quantity, .. }
        | MovementKind::Reservation { quantity, .. }
        | MovementKind::Fulfilment { quantity, .. }
        | MovementKind::OrderEdit { quantity, .. }
        | MovementKind::Return { quantity, .. } => *quantity = units(*quantity, per),
        MovementKind::Cancellation { quantity, .. } => {
            *quantity = quantity.map(|quantity| units(quantity, per));
        }
        _ => {}
    }
    kind
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Component, SCHEMA_VERSION};
    use std::collections::BTreeMap;

    fn gift_box() -> BillOfMaterials {
        let mut direct = BTreeMap::new();
        direct.insert(
            Sku::from("GIFT-BOX"),
            vec![
                Component {
                    sku: "MUG".into(),
                    quantity: 2,
                },
                Component {
                    sku: "CARD".into(),
                    quantity: 1,
                },
            ],
        );
        BillOfMaterials::new(&direct).unwrap()
    }

    fn bundle_movement(kind: MovementKind) -> Movement {
        Movement {
            schema_version: SCHEMA_VERSION,
            sku: "GIFT-BOX".into(),
            idempotency_key: "shop:o1:l1".into(),
            source: "shop".into(),
            occurred_at_ms: Some(42),
            kind,
        }
    }

    #[test]
    fn a_sale_of_bundles_becomes_a_sale_of_each_component_times_its_units() {
        let bom = gift_box();
        let sale = bundle_movement(MovementKind::Sale {
            reservation: "o1:l1".into(),
            quantity: 3,
            location: Some("WH-1".into()),
            route: vec![],
        });
        assert_eq!(
            ExpansionBasis::of(&sale),
            Ok(ExpansionBasis::Record {
                reservation: "o1:l1",
                quantity: 3
            })
        );
        let expansion = bom.expand(&sale.sku, 3);
        assert_eq!(
            expansion,
            BundleExpansion {
                quantity: 3,
                components: vec![("CARD".into(), 1), ("MUG".into(), 2)],
            }
        );
        let components = expansion.component_movements(&sale).unwrap();
        let summary: Vec<(&str, &str, u64)> = components
            .iter()
            .map(|m| match &m.kind {
                MovementKind::Sale { quantity, .. } => {
                    (m.sku.as_str(), m.idempotency_key.as_str(), *quantity)
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![("CARD", "shop:o1:l1#CARD", 3), ("MUG", "shop:o1:l1#MUG", 6)]
        );
        assert!(
            components
                .iter()
                .all(|m| m.occurred_at_ms == Some(42) && m.source == "shop")
        );
        // The same maths for reservation requests.
        let units: Vec<(&Sku, u64)> = bom
            .component_units(&"GIFT-BOX".into(), 3)
            .unwrap()
            .collect();
        assert_eq!(units, vec![(&"CARD".into(), 3), (&"MUG".into(), 6)]);
        assert!(bom.component_units(&"MUG".into(), 1).is_none());
    }

    #[test]
    fn a_write_off_cancel_of_a_kit_line_writes_off_its_components() {
        let recorded = BundleExpansion {
            quantity: 3,
            components: vec![("MUG".into(), 2), ("BOX".into(), 1)],
        };
        let cancel = bundle_movement(MovementKind::Cancellation {
            reservation: "o1:l1".into(),
            quantity: Some(3),
            reason: Some("NoInventory".into()),
            write_off: true,
        });
        let movements = recorded.component_movements(&cancel).unwrap();
        let effects: Vec<(&str, Option<u64>, bool)> = movements
            .iter()
            .map(|m| match &m.kind {
                MovementKind::Cancellation {
                    quantity,
                    write_off,
                    reason,
                    ..
                } => {
                    assert_eq!(reason.as_deref(), Some("NoInventory"));
                    (m.sku.as_str(), *quantity, *write_off)
                }
                other => panic!("not a cancellation: {other:?}"),
            })
            .collect();
        assert_eq!(
            effects,
            vec![("MUG", Some(6), true), ("BOX", Some(3), true)]
        );
    }

    #[test]
    fn later_movements_of_a_line_act_on_the_recorded_expansion() {
        // Recorded when the BOM said one mug per box; the BOM has changed since.
        let recorded = BundleExpansion {
            quantity: 4,
            components: vec![("MUG".into(), 1)],
        };
        let cancel = bundle_movement(MovementKind::Cancellation {
            reservation: "o1:l1".into(),
            quantity: Some(2),
            reason: None,
            write_off: false,
        });
        assert_eq!(
            ExpansionBasis::of(&cancel),
            Ok(ExpansionBasis::Recorded {
                reservation: "o1:l1"
            })
        );
        let movements = recorded.component_movements(&cancel).unwrap();
        assert_eq!(movements.len(), 1);
        assert!(matches!(
            &movements[0].kind,
            MovementKind::Cancellation {
                quantity: Some(2),
                ..
            }
        ));
        let full_cancel = bundle_movement(MovementKind::Cancellation {
            reservation: "o1:l1".into(),
            quantity: None,
            reason: None,
            write_off: false,
        });
        assert!(matches!(
            &recorded.component_movements(&full_cancel).unwrap()[0].kind,
            MovementKind::Cancellation { quantity: None, .. }
        ));
        let unnamed_return = bundle_movement(MovementKind::Return {
            location: Some("WH-1".into()),
            quantity: 2,
            reservation: None,
            restock: true,
        });
        assert_eq!(
            ExpansionBasis::of(&unnamed_return),
            Ok(ExpansionBasis::Current { quantity: 2 })
        );
    }

    #[test]
    fn an_edit_of_a_kit_line_scales_its_target_and_a_reassign_moves_every_component() {
        let recorded = BundleExpansion {
            quantity: 3,
            components: vec![("MUG".into(), 2), ("CARD".into(), 1)],
        };
        let edit = bundle_movement(MovementKind::OrderEdit {
            reservation: "o1:l1".into(),
            quantity: 4,
            version: 7,
            location: None,
            route: vec!["WH-1".into()],
        });
        assert_eq!(
            ExpansionBasis::of(&edit),
            Ok(ExpansionBasis::Edit {
                reservation: "o1:l1",
                quantity: 4
            })
        );
        let edits = recorded.component_movements(&edit).unwrap();
        let targets: Vec<(&str, u64, i64)> = edits
            .iter()
            .map(|m| match &m.kind {
                MovementKind::OrderEdit {
                    quantity, version, ..
                } => (m.sku.as_str(), *quantity, *version),
                other => panic!("not an edit: {other:?}"),
            })
            .collect();
        assert_eq!(targets, vec![("MUG", 8, 7), ("CARD", 4, 7)]);
        let reassign = bundle_movement(MovementKind::Reassign {
            reservation: "o1:l1".into(),
            to: "WH-2".into(),
        });
        assert_eq!(
            ExpansionBasis::of(&reassign),
            Ok(ExpansionBasis::Recorded {
                reservation: "o1:l1"
            })
        );
        let moves = recorded.component_movements(&reassign).unwrap();
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|m| m.kind
            == MovementKind::Reassign {
                reservation: "o1:l1".into(),
                to: "WH-2".into(),
            }));
        // A return without restock and location keeps both on every component.
        let kept = bundle_movement(MovementKind::Return {
            location: None,
            quantity: 2,
            reservation: Some("o1:l1".into()),
            restock: false,
        });
        let returns: Vec<MovementKind> = recorded
            .component_movements(&kept)
            .unwrap()
            .into_iter()
            .map(|m| m.kind)
            .collect();
        assert_eq!(
            returns[0],
            MovementKind::Return {
                location: None,
                quantity: 4,
                reservation: Some("o1:l1".into()),
                restock: false,
            }
        );
    }

    #[test]
    fn stock_movements_of_a_bundle_are_refused() {
        let receipt = bundle_movement(MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: 1,
        });
        let refusal = ApplyError::Invalid(
            "GIFT-BOX is a bundle and holds no stock of its own: a receipt must name its components"
                .into(),
        );
        assert_eq!(ExpansionBasis::of(&receipt), Err(refusal.clone()));
        assert_eq!(
            gift_box()
                .expand(&receipt.sku, 1)
                .component_movements(&receipt),
            Err(refusal)
        );
    }

    #[test]
    fn a_compensation_releases_the_whole_component_line() {
        let hold = bundle_movement(MovementKind::Reservation {
            reservation: "h1".into(),
            quantity: 1,
            location: None,
            route: vec!["WH-1".into()],
            expires_at_ms: None,
        });
        let release = BundleExpansion::compensation(&hold, "h1", &"MUG".into());
        assert_eq!(release.idempotency_key, "shop:o1:l1:compensate#MUG");
        assert_eq!(release.sku, Sku::from("MUG"));
        assert_eq!(
            release.kind,
            MovementKind::Cancellation {
                reservation: "h1".into(),
                quantity: None,
                reason: Some("compensation".into()),
                write_off: false,
            }
        );
    }

    #[test]
    fn the_recorded_expansion_keeps_its_stored_json_shape() {
        let json = r#"{"quantity":2,"components":[["CARD",1],["MUG",2]]}"#;
        let expansion: BundleExpansion = serde_json::from_str(json).unwrap();
        assert_eq!(expansion.components[1], ("MUG".into(), 2));
        assert_eq!(serde_json::to_string(&expansion).unwrap(), json);
    }
}
