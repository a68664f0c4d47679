//! The order-line lifecycle beyond sale, cancellation and shipment: order edits
//! (`order_edit`), moving a line's open units to another location (`reassign`), and
//! returns counted against what the line shipped.
//!
//! Order edit: the line's ordered units become max(target, shipped), at most once per
//! version (an edit whose version is not newer than the line's is recorded as ignored).
//! The open units are re-derived: a raise reserves more at the line's first part like a
//! sale (always applied, the sale already happened; the line's own units count towards it,
//! so it is never refused), a cut releases from the last part first. Units a cut puts below
//! what has shipped are reported as a discrepancy ([`Applied::discrepancy`]): they need a
//! return and are never restocked. Cancelled units are kept up to what the new ordered
//! quantity leaves; a line closed by its cancellation stays cancelled (a raise adds
//! cancelled units, it reserves nothing). A line not known yet is created like a sale.
//!
//! Reassign: every open unit of the line moves to the target location in one step,
//! refused when the target cannot hold them all (like a hold that does not fit). Parts
//! with shipped or cancelled history stay where they are; the open units join the line's
//! part at the target, an emptied part moved there, or a new part `{id}~n`. A later
//! cancellation then acts on the current holder (the last part first).
//!
//! Return: applied when returned + quantity ≤ shipped (returned rises; with `restock`,
//! on-hand rises at the return's location, absent: at the location each part shipped
//! from). A return beyond what shipped waits (parked) while the line may still ship
//! (open or cancelled units left, or the line not known yet); on a settled line it is
//! refused ("returned would exceed shipped"). A return naming no line restocks its location.

use super::{Applied, ApplyContext, ApplyError, Reservation, SkuState, to_i64};
use crate::domain::LocationId;

/// A line's totals over its parts.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    ordered: u64,
    shipped: u64,
    cancelled: u64,
    returned: u64,
    open: u64,
}

impl SkuState {
    fn totals(&self, ids: &[String]) -> Totals {
        ids.iter().filter_map(|id| self.reservations.get(id)).fold(
            Totals::default(),
            |totals, line| Totals {
                ordered: totals.ordered.saturating_add(line.quantity),
                shipped: totals.shipped.saturating_add(line.fulfilled),
                cancelled: totals.cancelled.saturating_add(line.released),
                returned: totals.returned.saturating_add(line.returned),
                open: totals.open.saturating_add(line.open()),
            },
        )
    }

    /// Applies an order edit (see the module docs).
    pub(super) fn edit_line(
        &mut self,
        reservation: &str,
        target: u64,
        version: i64,
        location: Option<&LocationId>,
        route: &[LocationId],
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
        let Some(line) = self.reservations.get(reservation) else {
            let applied = self.reserve(reservation, target, location, route, None, context)?;
            if let Some(line) = self.reservations.get_mut(reservation) {
                line.version = Some(version);
            }
            return Ok(applied);
        };
        if let Some(current) = line.version.filter(|current| *current >= version) {
            return Ok(Applied {
                ignored: Some(format!(
                    "edit version {version} is not newer than the line's version {current}"
                )),
                ..Self::unchanged()
            });
        }
        let ids = self.line_ids(reservation);
        let before = self.totals(&ids);
        let ordered = target.max(before.shipped);
        let room = ordered - before.shipped;
        let closed_by_cancel = before.open == 0 && before.cancelled > 0;
        let cancelled = match closed_by_cancel {
            true => room,
            false => before.cancelled.min(room),
        };
        let open = room - cancelled;
        // Cancelled units first: fewer when the new ordered quantity leaves no room for them
        // (they vanish from ordered, last part first), more on a cancelled line's raise.
        if cancelled < before.cancelled {
            let mut excess = before.cancelled - cancelled;
            for id in ids.iter().rev() {
                let Some(part) = self.reservations.get_mut(id) else {
                    continue;
                };
                let units = excess.min(part.released);
                part.released -= units;
                part.quantity -= units;
                excess -= units;
            }
        } else if cancelled > before.cancelled
            && let Some(first) = self.reservations.get_mut(reservation)
        {
            let units = cancelled - before.cancelled;
            first.released += units;
            first.quantity += units;
        }
        let mut applied = Self::unchanged();
        if open > before.open {
            let units = open - before.open;
            let first = self
                .reservations
                .get_mut(reservation)
                .expect("the line exists");
            first.quantity += units;
            first.closed_at_ms = None;
            let at = first.location.clone();
            self.stock_mut(&at).reserved += to_i64(units);
            let may_backorder = context.backorder_locations.contains(&at);
            applied = Applied {
                oversold: self.available_at(&at) < 0 && !may_backorder,
                ..self.changed(&at)
            };
        } else if open < before.open {
            let mut release = before.open - open;
            let mut last = None;
            for id in ids.iter().rev() {
                let Some(part) = self.reservations.get_mut(id) else {
                    continue;
                };
                let units = release.min(part.open());
                if units == 0 {
                    continue;
                }
                part.quantity -= units;
                release -= units;
                let at = part.location.clone();
                self.stock_mut(&at).reserved -= to_i64(units);
                last = Some(at);
            }
            if let Some(at) = last {
                applied = self.changed(&at);
            }
        }
        if let Some(first) = self.reservations.get_mut(reservation) {
            first.version = Some(version);
        }
        applied.discrepancy = before.shipped.saturating_sub(target);
        Ok(applied)
    }

    /// Moves every open unit of the line to `to` (see the module docs).
    ///
    /// Errors: [`ApplyError::UnknownReservation`] for a line not known;
    /// [`ApplyError::InsufficientStock`] when `to` cannot hold the open units.
    pub(super) fn reassign(
        &mut self,
        reservation: &str,
        to: &LocationId,
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
        if !self.reservations.contains_key(reservation) {
            return Err(ApplyError::UnknownReservation {
                reservation: reservation.to_owned(),
            });
        }
        let ids = self.line_ids(reservation);
        let moving: u64 = ids
            .iter()
            .filter_map(|id| self.reservations.get(id))
            .filter(|part| &part.location != to)
            .map(Reservation::open)
            .sum();
        if moving == 0 {
            return Ok(Self::unchanged());
        }
        if !context.replay
            && !context.backorder_locations.contains(to)
            && self.available_at(to) < to_i64(moving)
        {
            return Err(ApplyError::InsufficientStock {
                reservation: reservation.to_owned(),
                requested: moving,
                available: self.available_at(to),
            });
        }
        for id in &ids {
            let Some(part) = self.reservations.get_mut(id) else {
                continue;
            };
            if &part.location == to {
                continue;
            }
            let units = part.open();
            if units == 0 {
                continue;
            }
            part.quantity -= units;
            let from = part.location.clone();
            self.stock_mut(&from).reserved -= to_i64(units);
        }
        let holder = ids.iter().find(|id| {
            self.reservations
                .get(id.as_str())
                .is_some_and(|part| &part.location == to || part.quantity == 0)
        });
        match holder.cloned() {
            Some(id) => {
                let part = self.reservations.get_mut(&id).expect("found above");
                part.location = to.clone();
                part.quantity += moving;
                part.closed_at_ms = None;
            }
            None => {
                let first = self
                    .reservations
                    .get_mut(reservation)
                    .expect("the line exists");
                let id = format!("{reservation}~{}", first.parts.len() + 2);
                first.parts.push(id.clone());
                let expires_at_ms = first.expires_at_ms;
                self.reservations.insert(
                    id.into(),
                    Reservation {
                        location: to.clone(),
                        quantity: moving,
                        fulfilled: 0,
                        released: 0,
                        returned: 0,
                        version: None,
                        expires_at_ms,
                        parts: Vec::new(),
                        closed_at_ms: None,
                    },
                );
            }
        }
        self.stock_mut(to).reserved += to_i64(moving);
        Ok(self.changed(to))
    }

    /// Applies, parks or refuses a return (see the module docs).
    ///
    /// Errors: [`ApplyError::ReturnExceedsShipped`] on a settled line.
    pub(super) fn return_units(
        &mut self,
        location: Option<&LocationId>,
        quantity: u64,
        reservation: Option<&str>,
        restock: bool,
        at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let Some(reservation) = reservation else {
            // Validation requires a location when no line is named.
            let Some(location) = location else {
                return Err(ApplyError::Invalid(
                    "a return without location must name its reservation".to_owned(),
                ));
            };
            if !restock {
                return Ok(Self::unchanged());
            }
            self.stock_mut(location)
                .change_on_hand(at_ms, to_i64(quantity));
            return Ok(self.changed(location));
        };
        if !self.reservations.contains_key(reservation) {
            return Ok(Self::parked_for(format!(
                "return waits for the sale and shipment of {reservation}"
            )));
        }
        let ids = self.line_ids(reservation);
        let totals = self.totals(&ids);
        if totals.returned.saturating_add(quantity) > totals.shipped {
            if totals.open > 0 || totals.cancelled > 0 {
                return Ok(Self::parked_for(format!(
                    "return of {quantity} exceeds the {} shipped units not yet returned on {reservation}; waits for its shipment",
                    totals.shipped - totals.returned
                )));
            }
            return Err(ApplyError::ReturnExceedsShipped {
                reservation: reservation.to_owned(),
                shipped: totals.shipped,
                returned: totals.returned,
                requested: quantity,
            });
        }
        let mut remaining = quantity;
        let mut last = None;
        for id in ids {
            let Some(part) = self.reservations.get_mut(&id) else {
                continue;
            };
            let units = remaining.min(part.fulfilled - part.returned);
            if units == 0 {
                continue;
            }
            remaining -= units;
            part.returned += units;
            let at = location.unwrap_or(&part.location).clone();
            if restock {
                self.stock_mut(&at).change_on_hand(at_ms, to_i64(units));
                last = Some(at);
            }
        }
        Ok(match last {
            Some(at) => self.changed(&at),
            None => Self::unchanged(),
        })
    }
}
