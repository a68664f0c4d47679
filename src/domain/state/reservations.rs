//! Reservations and routing: open order lines and holds ([`Reservation`]), which location
//! a line without one is routed to ([`RoutingPolicy`]), splitting a line across locations,
//! cancellation (also before the sale arrives), shipment, hold expiry, and forgetting
//! closed lines after the retention.
//!
//! Per-line accounting: a line counts its ordered units (`quantity`), shipped
//! (`fulfilled`), cancelled (`released`) and returned units; its open (reserved) units are
//! ordered − shipped − cancelled. Always: cancelled + shipped ≤ ordered, returned ≤
//! shipped. A split line's counts are the sums over its parts.
//!
//! Shipment: a fulfilment ships the line's open units (first part first, or the part at
//! the location it names); units beyond the open ones are taken from the cancelled ones (a
//! cancellation that raced the shipment loses: a shipment is a physical fact), and a
//! fulfilment of more than ordered − shipped, or of a line not known yet, is parked (an
//! edit or the sale may still arrive, see `parking`).

use super::{Applied, ApplyContext, ApplyError, SkuState, to_i64};
use crate::domain::LocationId;
use crate::domain::movement::MovementKind;
use serde::{Deserialize, Serialize};

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
    /// Units returned by the customer (never more than `fulfilled`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub returned: u64,
    /// The version of the last order edit applied to the line (first part only), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// When an uncommitted hold lapses (milliseconds since the Unix epoch), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// When the line was split across locations: the ids of its other parts
    /// (`{id}~2`, `{id}~3`, …), each a reservation of its own at another location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// When the line's last unit was shipped or released (source time, ms); closed lines
    /// are forgotten once older than the context's retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<i64>,
}

impl Reservation {
    /// Units still reserved: quantity − fulfilled − released.
    pub fn open(&self) -> u64 {
        self.quantity - self.fulfilled - self.released
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// How a reservation without an explicit location picks one of its candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingPolicy {
    /// The first candidate, in the given order, with enough available units.
    #[default]
    Priority,
    /// The candidate with the most available units (ties: the earlier one).
    MostStock,
}

impl SkuState {
    /// Open holds whose expiry is at or before `now_ms`, with their expiry, oldest first.
    pub fn expired_reservations(&self, now_ms: i64) -> Vec<(String, i64)> {
        let mut expired: Vec<(String, i64)> = self
            .reservations
            .iter()
            .filter_map(|(id, line)| {
                line.expires_at_ms
                    .filter(|at| *at <= now_ms && line.open() > 0)
                    .map(|at| (id.to_string(), at))
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

    /// Stamps the closing time on the lines of `kind`'s reservation that have no open units
    /// and queues them for forgetting.
    pub(super) fn mark_closed_lines(&mut self, kind: &MovementKind, at_ms: i64) {
        let reservation = match kind {
            MovementKind::Sale { reservation, .. }
            | MovementKind::Reservation { reservation, .. }
            | MovementKind::Cancellation { reservation, .. }
            | MovementKind::Fulfilment { reservation, .. } => reservation.as_str(),
            MovementKind::Return {
                reservation: Some(reservation),
                ..
            } => reservation.as_str(),
            _ => return,
        };
        let parts = match self.reservations.get(reservation) {
            Some(line) if !line.parts.is_empty() => line.parts.clone(),
            Some(_) => Vec::new(),
            None => return,
        };
        for id in std::iter::once(reservation).chain(parts.iter().map(String::as_str)) {
            if let Some(line) = self.reservations.get_mut(id)
                && line.open() == 0
                && line.closed_at_ms.is_none()
            {
                line.closed_at_ms = Some(at_ms);
                self.closed_lines.push_back((at_ms, id.into()));
            }
        }
    }

    /// Forgets lines closed before `cutoff_ms`, oldest first (a split line's first part is
    /// kept while another part is still open). Costs nothing when none is due.
    pub(super) fn prune_closed_lines(&mut self, cutoff_ms: i64) {
        while let Some((closed_at, _)) = self.closed_lines.front() {
            if *closed_at >= cutoff_ms {
                break;
            }
            let (closed_at, id) = self.closed_lines.pop_front().expect("front exists");
            let Some(line) = self.reservations.get(&id) else {
                continue;
            };
            let parts_closed = line.parts.iter().all(|part| {
                self.reservations
                    .get(part)
                    .is_none_or(|part| part.closed_at_ms.is_some())
            });
            if line.closed_at_ms == Some(closed_at) && parts_closed {
                self.reservations.remove(&id);
            }
        }
    }

    /// Picks the location for a reservation: the explicit one; else, by `policy`, the first
    /// candidate with enough available (priority) or the one with the most available (most
    /// stock); else the first candidate.
    fn route(
        &self,
        quantity: u64,
        location: Option<&LocationId>,
        route: &[LocationId],
        policy: RoutingPolicy,
    ) -> LocationId {
        if let Some(location) = location {
            return location.clone();
        }
        let chosen = match policy {
            RoutingPolicy::Priority => route
                .iter()
                .find(|candidate| self.available_at(candidate) >= to_i64(quantity)),
            RoutingPolicy::MostStock => route
                .iter()
                .rev()
                .max_by_key(|candidate| self.available_at(candidate)),
        };
        chosen.unwrap_or(&route[0]).clone()
    }

    pub(super) fn reserve(
        &mut self,
        reservation: &str,
        quantity: u64,
        location: Option<&LocationId>,
        route: &[LocationId],
        hold: Option<Option<i64>>,
        context: &ApplyContext<'_>,
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
            .get(reservation)
            .copied()
            .unwrap_or(0)
            .min(quantity);
        let open = quantity - released;
        let chosen = self.route(open.max(1), location, route, context.routing);
        let available = self.available_at(&chosen);
        let plan = match location {
            None if open > 0 && available < to_i64(open) && context.max_split_locations > 1 => {
                self.split_plan(open, route, context.max_split_locations)
            }
            _ => None,
        };
        let may_backorder = context.backorder_locations.contains(&chosen);
        if plan.is_none()
            && must_fit
            && open > 0
            && !context.replay
            && !may_backorder
            && available < to_i64(open)
        {
            let best = std::iter::once(location.cloned())
                .flatten()
                .chain(route.iter().cloned())
                .map(|candidate| self.available_at(&candidate))
                .max()
                .unwrap_or(available);
            return Err(ApplyError::InsufficientStock {
                reservation: reservation.to_owned(),
                requested: quantity,
                available: best,
            });
        }
        // Admitted: only now may the state change.
        self.cancelled_in_advance.remove(reservation);
        if let Some(plan) = plan {
            return Ok(self.reserve_split(reservation, released, &plan, expires_at_ms));
        }
        self.reservations.insert(
            reservation.into(),
            Reservation {
                location: chosen.clone(),
                quantity,
                fulfilled: 0,
                released,
                returned: 0,
                version: None,
                expires_at_ms,
                parts: Vec::new(),
                closed_at_ms: None,
            },
        );
        let routed_to = location.is_none().then(|| chosen.clone());
        if open == 0 {
            return Ok(Applied {
                routed_to,
                ..Self::unchanged()
            });
        }
        self.stock_mut(&chosen).reserved += to_i64(open);
        Ok(Applied {
            routed_to,
            // A backorder within policy is a planned debt, not an oversell.
            oversold: self.available_at(&chosen) < 0 && !may_backorder,
            levels_changed: true,
            ..Self::unchanged()
        })
    }

    /// Units to take from each candidate, in route order, so that at most `max_parts`
    /// locations cover `open` units from what they have available; `None` if they cannot.
    fn split_plan(
        &self,
        open: u64,
        route: &[LocationId],
        max_parts: usize,
    ) -> Option<Vec<(LocationId, u64)>> {
        let mut remaining = open;
        let mut plan = Vec::new();
        for candidate in route {
            if remaining == 0 || plan.len() == max_parts {
                break;
            }
            let available = u64::try_from(self.available_at(candidate)).unwrap_or(0);
            let take = available.min(remaining);
            if take > 0 {
                plan.push((candidate.clone(), take));
                remaining -= take;
            }
        }
        (remaining == 0 && plan.len() > 1).then_some(plan)
    }

    /// Records a split line: the first part under `reservation`, the others as `{id}~2`, ….
    fn reserve_split(
        &mut self,
        reservation: &str,
        released: u64,
        plan: &[(LocationId, u64)],
        expires_at_ms: Option<i64>,
    ) -> Applied {
        let part_ids: Vec<String> = (2..=plan.len())
            .map(|n| format!("{reservation}~{n}"))
            .collect();
        for (index, (location, units)) in plan.iter().enumerate() {
            let (id, parts, released) = match index {
                0 => (reservation.to_owned(), part_ids.clone(), released),
                n => (part_ids[n - 1].clone(), Vec::new(), 0),
            };
            self.reservations.insert(
                id.into(),
                Reservation {
                    location: location.clone(),
                    quantity: units + released,
                    fulfilled: 0,
                    released,
                    returned: 0,
                    version: None,
                    expires_at_ms,
                    parts,
                    closed_at_ms: None,
                },
            );
            self.stock_mut(location).reserved += to_i64(*units);
        }
        Applied {
            levels_changed: true,
            oversold: false,
            routed_to: None,
            split_across: Some(plan.iter().map(|(location, _)| location.clone()).collect()),
            ..Self::unchanged()
        }
    }

    /// The reservation ids of one line: itself, then its split parts.
    pub(super) fn line_ids(&self, reservation: &str) -> Vec<String> {
        let mut ids = vec![reservation.to_owned()];
        if let Some(line) = self.reservations.get(reservation) {
            ids.extend(line.parts.iter().cloned());
        }
        ids
    }

    pub(super) fn cancel(&mut self, reservation: &str, quantity: Option<u64>) -> Applied {
        if !self.reservations.contains_key(reservation) {
            // A partial cancellation before its sale waits for it (how much of the line it
            // leaves depends on the sale); a full one is remembered and the sale reserves
            // nothing.
            if quantity.is_some() {
                return Self::parked_for(format!(
                    "partial cancellation waits for the sale of {reservation}"
                ));
            }
            let units = quantity.unwrap_or(u64::MAX);
            let pending = self
                .cancelled_in_advance
                .entry(reservation.into())
                .or_default();
            *pending = pending.saturating_add(units);
            return Self::unchanged();
        }
        // Split parts are released last part first.
        let mut remaining = quantity.unwrap_or(u64::MAX);
        let mut changed: Option<LocationId> = None;
        for id in self.line_ids(reservation).into_iter().rev() {
            let Some(line) = self.reservations.get_mut(&id) else {
                continue;
            };
            let release = remaining.min(line.open());
            if release == 0 {
                continue;
            }
            remaining -= release;
            line.released += release;
            let location = line.location.clone();
            self.stock_mut(&location).reserved -= to_i64(release);
            changed = Some(location);
        }
        match changed {
            Some(location) => self.changed(&location),
            None => Self::unchanged(),
        }
    }

    /// Ships `quantity` units of the line (see the module docs); parks when the line is not
    /// known yet or has not ordered that many unshipped units.
    ///
    /// Errors: [`ApplyError::NotHeldAt`] when `location` names no part of the line.
    pub(super) fn fulfil(
        &mut self,
        reservation: &str,
        quantity: u64,
        location: Option<&LocationId>,
        at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        if !self.reservations.contains_key(reservation) {
            return Ok(Self::parked_for(format!(
                "fulfilment waits for the sale of {reservation}"
            )));
        }
        let mut ids = self.line_ids(reservation);
        if let Some(location) = location {
            let at = ids.iter().position(|id| {
                self.reservations
                    .get(id)
                    .is_some_and(|line| &line.location == location)
            });
            match at {
                // The part at that location first, then the others in order.
                Some(at) => {
                    let part = ids.remove(at);
                    ids.insert(0, part);
                }
                None => {
                    return Err(ApplyError::NotHeldAt {
                        reservation: reservation.to_owned(),
                        location: location.clone(),
                    });
                }
            }
        }
        let (open, cancelled) = ids
            .iter()
            .filter_map(|id| self.reservations.get(id))
            .fold((0u64, 0u64), |(open, cancelled), line| {
                (open + line.open(), cancelled + line.released)
            });
        let shippable = open.saturating_add(cancelled);
        if quantity > shippable {
            return Ok(Self::parked_for(format!(
                "fulfilment of {quantity} exceeds the {shippable} unshipped units ordered on {reservation}"
            )));
        }
        // Open units first, then cancelled ones (the shipment won the race).
        let mut from_open = quantity.min(open);
        let taken_from_cancelled = quantity - from_open;
        let mut from_cancelled = taken_from_cancelled;
        let mut last = None;
        for id in ids {
            let Some(line) = self.reservations.get_mut(&id) else {
                continue;
            };
            // Shipping commits the hold: it no longer lapses.
            line.expires_at_ms = None;
            let open_units = from_open.min(line.open());
            let cancelled_units = from_cancelled.min(line.released);
            if open_units + cancelled_units == 0 {
                continue;
            }
            from_open -= open_units;
            from_cancelled -= cancelled_units;
            line.released -= cancelled_units;
            line.fulfilled += open_units + cancelled_units;
            let location = line.location.clone();
            let stock = self.stock_mut(&location);
            stock.change_on_hand(at_ms, -to_i64(open_units + cancelled_units));
            stock.reserved -= to_i64(open_units);
            last = Some(location);
        }
        let mut applied = match last {
            Some(location) => self.changed(&location),
            None => Self::unchanged(),
        };
        applied.from_cancelled = taken_from_cancelled;
        Ok(applied)
    }
}
