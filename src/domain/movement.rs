//! Movements: the only way stock changes. The JSON shape here is the Kafka and REST
//! contract described by `schemas/movement.schema.json`.

use super::{LocationId, Sku};
use serde::{Deserialize, Serialize};

/// The version of the movement JSON contract this build writes and accepts.
pub const SCHEMA_VERSION: u32 = 1;

fn default_schema_version() -> u32 {
    SCHEMA_VERSION
}

/// One change to stock, with the idempotency key that makes redelivery harmless.
///
/// JSON shape (fields of [`MovementKind`] sit beside these, tagged by `type`):
/// `{"schema_version":1,"sku":"SKU-A","idempotency_key":"wms-1:rcpt-77:1","source":"wms-1",
///   "type":"receipt","location":"WH-1","quantity":10}`.
/// Unknown fields are ignored so producers may add their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Contract version; this build understands `1`.
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    /// The SKU the movement applies to.
    pub sku: Sku,
    /// Unique per business event: source, external id, line and version. A second movement
    /// with the same key is acknowledged and has no effect.
    pub idempotency_key: String,
    /// Who produced it (`wms-1`, `erp`, `shopify:main`); bounded cardinality, used as a metric label.
    #[serde(default = "default_source")]
    pub source: String,
    /// When the source says it happened, in milliseconds since the Unix epoch, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at_ms: Option<i64>,
    /// What happened.
    #[serde(flatten)]
    pub kind: MovementKind,
}

fn default_source() -> String {
    "unknown".to_owned()
}

/// The kinds of movement. Quantities are whole base units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MovementKind {
    /// Goods received at a location: on-hand += quantity.
    Receipt {
        /// Where the goods arrived.
        location: LocationId,
        /// Units received (> 0).
        quantity: u64,
    },
    /// A signed correction of on-hand with a reason (damage, shrinkage, found).
    Adjustment {
        /// Where the correction applies.
        location: LocationId,
        /// Units added (positive) or removed (negative); never 0.
        delta: i64,
        /// Why, free text (`damaged`, `shrinkage`, `correction`).
        #[serde(default)]
        reason: String,
    },
    /// An absolute physical count from a WMS or ERP: on-hand := on_hand.
    ///
    /// `watermark` is the source's sequence or time of the count; a count whose watermark is
    /// not newer than the last applied count at that location is stale and ignored.
    Count {
        /// Where the count was taken.
        location: LocationId,
        /// Units counted.
        on_hand: u64,
        /// Source sequence or time (milliseconds) of the count; higher is newer.
        watermark: i64,
    },
    /// A channel order line: reserves units that the channel has already sold.
    ///
    /// Always applied (the sale already happened); when it drives available below zero the
    /// movement is recorded as an oversell. With `location` absent, the first location in
    /// `route` with enough available stock is chosen, else the first one.
    Sale {
        /// Reservation id, unique per order line: `channel:order:line`.
        reservation: String,
        /// Units ordered (> 0).
        quantity: u64,
        /// The location to reserve at, when the source knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<LocationId>,
        /// Candidate locations in priority order when `location` is absent.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        route: Vec<LocationId>,
    },
    /// A hold that must fit in available stock (checkout, B2B portal); refused otherwise.
    Reservation {
        /// Reservation id, unique per hold line.
        reservation: String,
        /// Units held (> 0).
        quantity: u64,
        /// The location to hold at, when the caller knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<LocationId>,
        /// Candidate locations in priority order when `location` is absent.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        route: Vec<LocationId>,
        /// When the hold lapses unless committed (milliseconds since the Unix epoch); the
        /// ledger's reaper releases it then (scenario S5). Absent: no expiry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at_ms: Option<i64>,
    },
    /// Cancels an order line or hold: releases its unshipped units (all of them, or at
    /// most `quantity`). A cancellation that arrives before its sale is remembered, and the
    /// late sale then reserves nothing.
    Cancellation {
        /// The reservation id to cancel.
        reservation: String,
        /// Units to release; absent means every unshipped unit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity: Option<u64>,
        /// Why (`cancelled`, `expired`, `payment_failed`, `compensation`); free text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Shipment of reserved units: on-hand -= quantity and reserved -= quantity at the
    /// reservation's location.
    Fulfilment {
        /// The reservation id being shipped.
        reservation: String,
        /// Units shipped (> 0).
        quantity: u64,
    },
    /// Announces or updates a purchase-order line: `quantity` units still expected at
    /// `location` around `expected_at_ms` (absolute: replaces what was expected; 0 closes it).
    Inbound {
        /// Purchase-order line id (`PO-1001:1`).
        purchase_order: String,
        /// Where the goods will arrive.
        location: LocationId,
        /// Units still expected.
        quantity: u64,
        /// Expected arrival, in milliseconds since the Unix epoch.
        expected_at_ms: i64,
    },
    /// Goods received against a purchase-order line: on-hand += quantity at the line's
    /// location, and the line's outstanding inbound drops by as much (never below 0).
    InboundReceipt {
        /// The purchase-order line id.
        purchase_order: String,
        /// Units received (> 0).
        quantity: u64,
    },
    /// A transfer leaves `from`: on-hand there drops and the units are in transit to `to`.
    TransferDispatch {
        /// Transfer id, unique per transfer line.
        transfer: String,
        /// The sending location.
        from: LocationId,
        /// The receiving location.
        to: LocationId,
        /// Units sent (> 0).
        quantity: u64,
    },
    /// A transfer arrives: in transit at the receiving location drops, on-hand rises.
    TransferReceipt {
        /// The transfer id.
        transfer: String,
        /// Units received (> 0; at most what is still in transit).
        quantity: u64,
    },
    /// Units returned to stock (restock after a return or refund): on-hand += quantity.
    Return {
        /// Where the units are put back.
        location: LocationId,
        /// Units restocked (> 0).
        quantity: u64,
        /// The order line they came from, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reservation: Option<String>,
    },
}

impl MovementKind {
    /// The snake_case name of the kind, as in the JSON `type` field (a bounded metric label).
    pub fn name(&self) -> &'static str {
        match self {
            MovementKind::Receipt { .. } => "receipt",
            MovementKind::Adjustment { .. } => "adjustment",
            MovementKind::Count { .. } => "count",
            MovementKind::Sale { .. } => "sale",
            MovementKind::Reservation { .. } => "reservation",
            MovementKind::Cancellation { .. } => "cancellation",
            MovementKind::Fulfilment { .. } => "fulfilment",
            MovementKind::Return { .. } => "return",
            MovementKind::Inbound { .. } => "inbound",
            MovementKind::InboundReceipt { .. } => "inbound_receipt",
            MovementKind::TransferDispatch { .. } => "transfer_dispatch",
            MovementKind::TransferReceipt { .. } => "transfer_receipt",
        }
    }
}

impl Movement {
    /// Checks what the type system cannot: non-empty keys, positive quantities, a known
    /// schema version. Returns every problem found, one string each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.schema_version != SCHEMA_VERSION {
            problems.push(format!(
                "schema_version {} is not supported (expected {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        if self.sku.0.trim().is_empty() {
            problems.push("sku must not be empty".to_owned());
        }
        if self.idempotency_key.trim().is_empty() {
            problems.push("idempotency_key must not be empty".to_owned());
        }
        let positive = |q: u64, problems: &mut Vec<String>| {
            if q == 0 {
                problems.push("quantity must be at least 1".to_owned());
            }
        };
        match &self.kind {
            MovementKind::Receipt { quantity, .. }
            | MovementKind::Fulfilment { quantity, .. }
            | MovementKind::InboundReceipt { quantity, .. }
            | MovementKind::TransferReceipt { quantity, .. }
            | MovementKind::Return { quantity, .. } => positive(*quantity, &mut problems),
            MovementKind::TransferDispatch {
                quantity, from, to, ..
            } => {
                positive(*quantity, &mut problems);
                if from == to {
                    problems.push("transfer from and to must differ".to_owned());
                }
            }
            MovementKind::Inbound { .. } => {}
            MovementKind::Sale {
                quantity,
                location,
                route,
                reservation,
            }
            | MovementKind::Reservation {
                quantity,
                location,
                route,
                reservation,
                ..
            } => {
                positive(*quantity, &mut problems);
                if location.is_none() && route.is_empty() {
                    problems.push("either location or route must be given".to_owned());
                }
                if reservation.trim().is_empty() {
                    problems.push("reservation must not be empty".to_owned());
                }
            }
            MovementKind::Adjustment { delta, .. } => {
                if *delta == 0 {
                    problems.push("delta must not be 0".to_owned());
                }
            }
            MovementKind::Cancellation {
                quantity: Some(0), ..
            } => problems.push("quantity must be at least 1".to_owned()),
            MovementKind::Cancellation { .. } | MovementKind::Count { .. } => {}
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape_and_ignores_unknown_fields() {
        let json = r#"{"schema_version":1,"sku":"SKU-A","idempotency_key":"wms-1:r-1:1",
            "source":"wms-1","type":"receipt","location":"WH-1","quantity":10,"extra":"x"}"#;
        let movement: Movement = serde_json::from_str(json).unwrap();
        assert_eq!(movement.sku.as_str(), "SKU-A");
        assert_eq!(
            movement.kind,
            MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 10
            }
        );
        assert!(movement.validate().is_ok());
    }

    #[test]
    fn validation_reports_every_problem() {
        let json = r#"{"schema_version":9,"sku":"","idempotency_key":"",
            "type":"sale","reservation":"","quantity":0}"#;
        let movement: Movement = serde_json::from_str(json).unwrap();
        let problems = movement.validate().unwrap_err();
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn round_trips_through_json() {
        let movement = Movement {
            schema_version: SCHEMA_VERSION,
            sku: "SKU-B".into(),
            idempotency_key: "k".into(),
            source: "erp".into(),
            occurred_at_ms: Some(5),
            kind: MovementKind::Sale {
                reservation: "shop:1:1".into(),
                quantity: 2,
                location: None,
                route: vec!["WH-1".into(), "WH-2".into()],
            },
        };
        let text = serde_json::to_string(&movement).unwrap();
        assert_eq!(serde_json::from_str::<Movement>(&text).unwrap(), movement);
    }
}
