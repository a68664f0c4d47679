//! The SKU state machine: `apply(movement) -> Result<Applied, ApplyError>`.

use super::movement::{Movement, MovementKind};
use super::{LocationId, Sku};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stock at one location. `available()` is derived, never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationStock {
    /// Units physically at the location (negative only when the source reports a debt).
    pub on_hand: i64,
    /// Units promised to open order lines and holds, not yet shipped.
    pub reserved: i64,
    /// Watermark of the last applied absolute count, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_count_watermark: Option<i64>,
}

impl LocationStock {
    /// on-hand − reserved; negative means a backorder debt or an oversell.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// An open order line or hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Where the units are reserved.
    pub location: LocationId,
    /// Units reserved in total.
    pub quantity: u64,
    /// Units shipped against it.
    pub fulfilled: u64,
    /// Units released by cancellation.
    pub released: u64,
    /// When an uncommitted hold lapses (milliseconds since the Unix epoch), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

impl Reservation {
    /// Units still reserved: quantity − fulfilled − released.
    pub fn open(&self) -> u64 {
        self.quantity - self.fulfilled - self.released
    }
}

/// One location's levels as published to propagation and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationLevel {
    /// The location.
    pub location: LocationId,
    /// Units on hand.
    pub on_hand: i64,
    /// Units reserved.
    pub reserved: i64,
}

impl LocationLevel {
    /// on-hand − reserved.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// The newest levels of one SKU after a durable change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityChange {
    /// The SKU.
    pub sku: Sku,
    /// Ledger sequence number of the last event included.
    pub seq: u64,
    /// Levels per location, sorted by location id.
    pub locations: Vec<LocationLevel>,
}

/// Why a movement was refused. Refused movements are not recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A hold asked for more than is available at every candidate location.
    #[error(
        "insufficient stock for reservation {reservation}: requested {requested}, best location has {available} available"
    )]
    InsufficientStock {
        /// The reservation id.
        reservation: String,
        /// Units requested.
        requested: u64,
        /// The most available units at any candidate location.
        available: i64,
    },
    /// A fulfilment or cancellation named a reservation that is not open.
    #[error("reservation {reservation} is not open")]
    UnknownReservation {
        /// The reservation id.
        reservation: String,
    },
    /// More units shipped than are still reserved on the line.
    #[error("reservation {reservation} has {open} open units, cannot ship {requested}")]
    OverFulfilment {
        /// The reservation id.
        reservation: String,
        /// Units still open on it.
        open: u64,
        /// Units the fulfilment asked to ship.
        requested: u64,
    },
    /// The movement itself is malformed (see [`Movement::validate`]).
    #[error("invalid movement: {0}")]
    Invalid(String),
    /// A movement for another SKU was sent to this state.
    #[error("movement for {got} applied to {expected}")]
    WrongSku {
        /// This state's SKU.
        expected: Sku,
        /// The movement's SKU.
        got: Sku,
    },
}

/// What applying a movement did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Whether any level changed (false for a stale count or a sale cancelled in advance).
    pub levels_changed: bool,
    /// Whether the movement left a location's available below zero (an oversell).
    pub oversold: bool,
}

/// Everything the ledger knows about one SKU, derived from its movement log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuState {
    /// The SKU.
    pub sku: Sku,
    /// Sequence number of the last applied movement (0 = none).
    pub seq: u64,
    /// Stock per location.
    pub locations: BTreeMap<LocationId, LocationStock>,
    /// Open reservations by id.
    pub reservations: BTreeMap<String, Reservation>,
    /// Reservation ids that were cancelled before their sale arrived, so the late sale
    /// reserves nothing (out-of-order deliveries, scenario S3).
    #[serde(default)]
    pub cancelled_in_advance: BTreeMap<String, u64>,
}

impl SkuState {
    /// An empty state: no locations, no reservations, seq 0.
    pub fn new(sku: Sku) -> Self {
        Self {
            sku,
            seq: 0,
            locations: BTreeMap::new(),
            reservations: BTreeMap::new(),
            cancelled_in_advance: BTreeMap::new(),
        }
    }

    /// The stock at `location`, zero if never seen.
    pub fn location(&self, location: &LocationId) -> LocationStock {
        self.locations.get(location).cloned().unwrap_or_default()
    }

    /// Levels per location, sorted by location id.
    pub fn levels(&self) -> Vec<LocationLevel> {
        self.locations
            .iter()
            .map(|(location, stock)| LocationLevel {
                location: location.clone(),
                on_hand: stock.on_hand,
                reserved: stock.reserved,
            })
            .collect()
    }

    /// Open holds whose expiry is at or before `now_ms`, with their expiry, oldest first.
    pub fn expired_reservations(&self, now_ms: i64) -> Vec<(String, i64)> {
        let mut expired: Vec<(String, i64)> = self
            .reservations
            .iter()
            .filter_map(|(id, line)| {
                line.expires_at_ms
                    .filter(|at| *at <= now_ms && line.open() > 0)
                    .map(|at| (id.clone(), at))
            })
            .collect();
        expired.sort_by_key(|(_, at)| *at);
        expired
    }

    /// The earliest expiry among open holds, if any.
    pub fn next_expiry_ms(&self) -> Option<i64> {
        self.reservations
            .values()
            .filter(|line| line.open() > 0)
            .filter_map(|line| line.expires_at_ms)
            .min()
    }

    /// The change to publish for the current state.
    pub fn availability(&self) -> AvailabilityChange {
        AvailabilityChange {
            sku: self.sku.clone(),
            seq: self.seq,
            locations: self.levels(),
        }
    }

    /// Applies one movement as event number `seq` (must be `self.seq + 1`).
    ///
    /// On `Ok` the state has advanced to `seq` and the movement must be recorded; on `Err`
    /// nothing changed and nothing is recorded.
    pub fn apply(&mut self, movement: &Movement, seq: u64) -> Result<Applied, ApplyError> {
        debug_assert_eq!(seq, self.seq + 1, "events are applied in sequence");
        if movement.sku != self.sku {
            return Err(ApplyError::WrongSku {
                expected: self.sku.clone(),
                got: movement.sku.clone(),
            });
        }
        movement
            .validate()
            .map_err(|problems| ApplyError::Invalid(problems.join("; ")))?;
        let applied = self.apply_kind(&movement.kind)?;
        self.seq = seq;
        Ok(applied)
    }

    fn stock_mut(&mut self, location: &LocationId) -> &mut LocationStock {
        self.locations.entry(location.clone()).or_default()
    }

    fn changed(&self, location: &LocationId) -> Applied {
        Applied {
            levels_changed: true,
            oversold: self.location(location).available() < 0,
        }
    }

    fn unchanged() -> Applied {
        Applied {
            levels_changed: false,
            oversold: false,
        }
    }

    fn apply_kind(&mut self, kind: &MovementKind) -> Result<Applied, ApplyError> {
        match kind {
            MovementKind::Receipt { location, quantity } => {
                self.stock_mut(location).on_hand += to_i64(*quantity);
                Ok(self.changed(location))
            }
            MovementKind::Adjustment {
                location, delta, ..
            } => {
                self.stock_mut(location).on_hand += delta;
                Ok(self.changed(location))
            }
            MovementKind::Count {
                location,
                on_hand,
                watermark,
            } => {
                let stock = self.stock_mut(location);
                if stock.last_count_watermark.is_some_and(|w| *watermark <= w) {
                    return Ok(Self::unchanged());
                }
                stock.last_count_watermark = Some(*watermark);
                stock.on_hand = to_i64(*on_hand);
                Ok(self.changed(location))
            }
            MovementKind::Sale {
                reservation,
                quantity,
                location,
                route,
            } => self.reserve(reservation, *quantity, location.as_ref(), route, None),
            MovementKind::Reservation {
                reservation,
                quantity,
                location,
                route,
                expires_at_ms,
            } => self.reserve(
                reservation,
                *quantity,
                location.as_ref(),
                route,
                Some(*expires_at_ms),
            ),
            MovementKind::Cancellation {
                reservation,
                quantity,
                ..
            } => Ok(self.cancel(reservation, *quantity)),
            MovementKind::Fulfilment {
                reservation,
                quantity,
            } => self.fulfil(reservation, *quantity),
            MovementKind::Return {
                location,
                quantity,
                reservation,
            } => {
                // A return against a line we still hold as reserved means the shipment
                // was never reported to us: count those units as shipped first, so they
                // leave `reserved` instead of staying promised twice.
                let shipped_unreported = reservation
                    .as_deref()
                    .and_then(|id| self.reservations.get_mut(id))
                    .map(|line| {
                        let units = line.open().min(*quantity);
                        line.fulfilled += units;
                        (line.location.clone(), units)
                    });
                if let Some((line_location, units)) = shipped_unreported {
                    let stock = self.stock_mut(&line_location);
                    stock.on_hand -= to_i64(units);
                    stock.reserved -= to_i64(units);
                }
                self.stock_mut(location).on_hand += to_i64(*quantity);
                Ok(self.changed(location))
            }
        }
    }

    /// Picks the location for a reservation: the explicit one, else the first candidate with
    /// enough available, else the first candidate.
    fn route(
        &self,
        quantity: u64,
        location: Option<&LocationId>,
        route: &[LocationId],
    ) -> LocationId {
        if let Some(location) = location {
            return location.clone();
        }
        route
            .iter()
            .find(|candidate| self.location(candidate).available() >= to_i64(quantity))
            .unwrap_or(&route[0])
            .clone()
    }

    fn reserve(
        &mut self,
        reservation: &str,
        quantity: u64,
        location: Option<&LocationId>,
        route: &[LocationId],
        hold: Option<Option<i64>>,
    ) -> Result<Applied, ApplyError> {
        // `hold` is `Some(expiry)` for a hold that must fit, `None` for a channel sale.
        let must_fit = hold.is_some();
        let expires_at_ms = hold.flatten();
        if self.reservations.contains_key(reservation) {
            // The same line arriving under another idempotency key: never reserve twice.
            return Ok(Self::unchanged());
        }
        // A cancellation that came first releases its units up front (scenario S3).
        let released = self
            .cancelled_in_advance
            .remove(reservation)
            .unwrap_or(0)
            .min(quantity);
        let open = quantity - released;
        let chosen = self.route(open.max(1), location, route);
        let available = self.location(&chosen).available();
        if must_fit && available < to_i64(open) {
            let best = std::iter::once(location.cloned())
                .flatten()
                .chain(route.iter().cloned())
                .map(|candidate| self.location(&candidate).available())
                .max()
                .unwrap_or(available);
            return Err(ApplyError::InsufficientStock {
                reservation: reservation.to_owned(),
                requested: quantity,
                available: best,
            });
        }
        self.reservations.insert(
            reservation.to_owned(),
            Reservation {
                location: chosen.clone(),
                quantity,
                fulfilled: 0,
                released,
                expires_at_ms,
            },
        );
        if open == 0 {
            return Ok(Self::unchanged());
        }
        self.stock_mut(&chosen).reserved += to_i64(open);
        Ok(self.changed(&chosen))
    }

    fn cancel(&mut self, reservation: &str, quantity: Option<u64>) -> Applied {
        let Some(line) = self.reservations.get_mut(reservation) else {
            let units = quantity.unwrap_or(u64::MAX);
            let pending = self
                .cancelled_in_advance
                .entry(reservation.to_owned())
                .or_default();
            *pending = pending.saturating_add(units);
            return Self::unchanged();
        };
        let release = quantity.unwrap_or(u64::MAX).min(line.open());
        if release == 0 {
            return Self::unchanged();
        }
        line.released += release;
        let location = line.location.clone();
        self.stock_mut(&location).reserved -= to_i64(release);
        self.changed(&location)
    }

    fn fulfil(&mut self, reservation: &str, quantity: u64) -> Result<Applied, ApplyError> {
        let Some(line) = self.reservations.get_mut(reservation) else {
            return Err(ApplyError::UnknownReservation {
                reservation: reservation.to_owned(),
            });
        };
        if quantity > line.open() {
            return Err(ApplyError::OverFulfilment {
                reservation: reservation.to_owned(),
                open: line.open(),
                requested: quantity,
            });
        }
        line.fulfilled += quantity;
        // Shipping commits the hold: it no longer lapses.
        line.expires_at_ms = None;
        let location = line.location.clone();
        let stock = self.stock_mut(&location);
        stock.on_hand -= to_i64(quantity);
        stock.reserved -= to_i64(quantity);
        Ok(self.changed(&location))
    }
}

/// Quantities beyond `i64::MAX` units are not physical; saturate rather than wrap.
fn to_i64(quantity: u64) -> i64 {
    i64::try_from(quantity).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SCHEMA_VERSION;

    fn movement(key: &str, kind: MovementKind) -> Movement {
        Movement {
            schema_version: SCHEMA_VERSION,
            sku: "SKU-E".into(),
            idempotency_key: key.into(),
            source: "test".into(),
            occurred_at_ms: None,
            kind,
        }
    }

    fn run(state: &mut SkuState, kind: MovementKind) -> Result<Applied, ApplyError> {
        let seq = state.seq + 1;
        state.apply(&movement(&format!("k{seq}"), kind), seq)
    }

    fn wh() -> LocationId {
        "WH-1".into()
    }

    #[test]
    fn partial_shipment_then_cancellation_releases_only_unshipped_units() {
        // Scenario S4.
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 100,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Sale {
                reservation: "o1:l1".into(),
                quantity: 10,
                location: Some(wh()),
                route: vec![],
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Fulfilment {
                reservation: "o1:l1".into(),
                quantity: 7,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Cancellation {
                reason: None,
                reservation: "o1:l1".into(),
                quantity: None,
            },
        )
        .unwrap();
        let stock = state.location(&wh());
        assert_eq!(
            (stock.on_hand, stock.reserved, stock.available()),
            (93, 0, 93)
        );
    }

    #[test]
    fn cancellation_before_sale_means_the_sale_reserves_nothing() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 5,
            },
        )
        .unwrap();
        let cancelled = run(
            &mut state,
            MovementKind::Cancellation {
                reason: None,
                reservation: "o2:l1".into(),
                quantity: None,
            },
        )
        .unwrap();
        assert!(!cancelled.levels_changed);
        run(
            &mut state,
            MovementKind::Sale {
                reservation: "o2:l1".into(),
                quantity: 1,
                location: None,
                route: vec![wh()],
            },
        )
        .unwrap();
        assert_eq!(state.location(&wh()).available(), 5);
        assert_eq!(state.reservations["o2:l1"].open(), 0);
    }

    #[test]
    fn the_same_line_under_two_keys_reserves_once() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 10,
            },
        )
        .unwrap();
        for _ in 0..2 {
            run(
                &mut state,
                MovementKind::Sale {
                    reservation: "o3:l1".into(),
                    quantity: 1,
                    location: Some(wh()),
                    route: vec![],
                },
            )
            .unwrap();
        }
        assert_eq!(state.location(&wh()).available(), 9);
    }

    #[test]
    fn holds_must_fit_but_sales_record_an_oversell() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 1,
            },
        )
        .unwrap();
        let hold = |r: &str| MovementKind::Reservation {
            expires_at_ms: None,
            reservation: r.into(),
            quantity: 1,
            location: None,
            route: vec![wh()],
        };
        run(&mut state, hold("h1")).unwrap();
        let refused = run(&mut state, hold("h2")).unwrap_err();
        assert!(matches!(
            refused,
            ApplyError::InsufficientStock { available: 0, .. }
        ));
        let sale = run(
            &mut state,
            MovementKind::Sale {
                reservation: "s1".into(),
                quantity: 1,
                location: None,
                route: vec![wh()],
            },
        )
        .unwrap();
        assert!(sale.oversold);
        assert_eq!(state.location(&wh()).available(), -1);
    }

    #[test]
    fn routing_picks_the_first_location_that_stocks_the_sku() {
        // Scenario S7's routing half.
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: "WH-SOUTH".into(),
                quantity: 5,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Sale {
                reservation: "o7:l2".into(),
                quantity: 1,
                location: None,
                route: vec!["WH-NORTH".into(), "WH-SOUTH".into()],
            },
        )
        .unwrap();
        assert_eq!(state.reservations["o7:l2"].location.as_str(), "WH-SOUTH");
        assert_eq!(state.location(&"WH-NORTH".into()).reserved, 0);
    }

    #[test]
    fn cancellations_that_arrive_first_add_up() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 5,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Cancellation {
                reason: None,
                reservation: "o4".into(),
                quantity: Some(1),
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Cancellation {
                reason: None,
                reservation: "o4".into(),
                quantity: Some(1),
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Sale {
                reservation: "o4".into(),
                quantity: 3,
                location: Some(wh()),
                route: vec![],
            },
        )
        .unwrap();
        assert_eq!(state.location(&wh()).reserved, 1);
    }

    #[test]
    fn a_return_on_a_line_never_reported_shipped_releases_the_reservation() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 5,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Sale {
                reservation: "o5".into(),
                quantity: 2,
                location: Some(wh()),
                route: vec![],
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Return {
                location: wh(),
                quantity: 1,
                reservation: Some("o5".into()),
            },
        )
        .unwrap();
        let stock = state.location(&wh());
        // One unit shipped (unreported) and came back; one unit is still reserved.
        assert_eq!(
            (stock.on_hand, stock.reserved, stock.available()),
            (5, 1, 4)
        );
    }

    #[test]
    fn stale_counts_are_ignored() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Count {
                location: wh(),
                on_hand: 10,
                watermark: 5,
            },
        )
        .unwrap();
        let stale = run(
            &mut state,
            MovementKind::Count {
                location: wh(),
                on_hand: 3,
                watermark: 4,
            },
        )
        .unwrap();
        assert!(!stale.levels_changed);
        assert_eq!(state.location(&wh()).on_hand, 10);
    }

    #[test]
    fn over_fulfilment_is_refused_and_changes_nothing() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 3,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Sale {
                reservation: "o9".into(),
                quantity: 2,
                location: Some(wh()),
                route: vec![],
            },
        )
        .unwrap();
        let before = state.clone();
        let error = state
            .apply(
                &movement(
                    "x",
                    MovementKind::Fulfilment {
                        reservation: "o9".into(),
                        quantity: 3,
                    },
                ),
                before.seq + 1,
            )
            .unwrap_err();
        assert!(matches!(error, ApplyError::OverFulfilment { open: 2, .. }));
        assert_eq!(state, before);
    }
}
