//! The SKU state machine: `apply(movement) -> Result<Applied, ApplyError>`.

use super::movement::{Movement, MovementKind};
use super::{LocationId, Sku};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Stock at one location. `available()` is derived, never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationStock {
    /// Units physically at the location (negative only when the source reports a debt).
    pub on_hand: i64,
    /// Units promised to open order lines and holds, not yet shipped.
    pub reserved: i64,
    /// Units dispatched to this location by transfers and not yet received (not available).
    #[serde(default)]
    pub in_transit: i64,
    /// Watermark of the last applied absolute count, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_count_watermark: Option<i64>,
    /// Recent on-hand changes as (source time in ms, delta), newest last, so that a count
    /// taken at watermark W can add back what happened after W (see [`MovementKind::Count`]).
    /// Entries at or before the last count's watermark are dropped; at most
    /// [`JOURNAL_LIMIT`] are kept.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub journal: VecDeque<(i64, i64)>,
}

/// Most recent on-hand changes remembered per location for count reconciliation; a count
/// whose watermark is older than the oldest kept entry treats everything before it as seen.
pub const JOURNAL_LIMIT: usize = 256;

impl LocationStock {
    fn change_on_hand(&mut self, at_ms: i64, delta: i64) {
        self.on_hand += delta;
        if self.journal.len() == JOURNAL_LIMIT {
            self.journal.pop_front();
        }
        self.journal.push_back((at_ms, delta));
    }
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

/// One location's levels as published to propagation and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationLevel {
    /// The location.
    pub location: LocationId,
    /// Units on hand.
    pub on_hand: i64,
    /// Units reserved.
    pub reserved: i64,
    /// Units in transit to this location (transfers dispatched, not yet received).
    #[serde(default)]
    pub in_transit: i64,
    /// Units expected on open purchase-order lines at this location.
    #[serde(default)]
    pub inbound: i64,
}

/// Outstanding purchase-order units at one location, by expected date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundLevel {
    /// Where the goods will arrive.
    pub location: LocationId,
    /// Units still expected.
    pub quantity: u64,
    /// Expected arrival, in milliseconds since the Unix epoch.
    pub expected_at_ms: i64,
}

/// An open purchase-order line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundLine {
    /// Where the goods will arrive.
    pub location: LocationId,
    /// Units still expected.
    pub quantity: u64,
    /// Expected arrival, in milliseconds since the Unix epoch.
    pub expected_at_ms: i64,
}

/// A transfer between two locations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLine {
    /// Sending location.
    pub from: LocationId,
    /// Receiving location.
    pub to: LocationId,
    /// Units dispatched.
    pub quantity: u64,
    /// Units received so far.
    pub received: u64,
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
    /// Open purchase-order units by location and expected date (for pre-order ATP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<InboundLevel>,
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
    /// A transfer receipt named a transfer that was never dispatched.
    #[error("transfer {transfer} is not known")]
    UnknownTransfer {
        /// The transfer id.
        transfer: String,
    },
    /// More units received than are still in transit on the transfer.
    #[error("transfer {transfer} has {in_transit} units in transit, cannot receive {requested}")]
    OverReceipt {
        /// The transfer id.
        transfer: String,
        /// Units still in transit on it.
        in_transit: u64,
        /// Units the receipt named.
        requested: u64,
    },
    /// A receipt against a purchase-order line that is not open.
    #[error("purchase order line {purchase_order} is not open")]
    UnknownPurchaseOrder {
        /// The purchase-order line id.
        purchase_order: String,
    },
    /// The transfer id was already used for another dispatch.
    #[error("transfer {transfer} was already dispatched")]
    DuplicateTransfer {
        /// The transfer id.
        transfer: String,
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
    /// The location a sale or hold was routed to when the movement named none; the ledger
    /// records it in the event, so replay never re-decides.
    pub routed_to: Option<LocationId>,
    /// When a line was split across locations, those locations in order; the ledger
    /// records them as the movement's route (and no location), and replay splits the same.
    pub split_across: Option<Vec<LocationId>>,
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

/// What a decision depends on besides the state: the time, where backorders are allowed,
/// and the routing policy. Recorded events are replayed with [`ApplyContext::replay`].
#[derive(Clone, Copy, Debug)]
pub struct ApplyContext<'a> {
    /// Now, in milliseconds since the Unix epoch (used when a movement has no source time).
    pub now_ms: i64,
    /// Locations where a hold may take available below zero (a backorder debt).
    pub backorder_locations: &'a BTreeSet<LocationId>,
    /// How holds and sales without a location are routed.
    pub routing: RoutingPolicy,
    /// Replaying recorded events: admission checks are skipped (they passed once).
    pub replay: bool,
    /// A line without a location that no single candidate can serve may be split across
    /// at most this many candidates (1: never split).
    pub max_split_locations: usize,
    /// Closed reservation lines older than this (ms, by source time) are forgotten, so a
    /// SKU's state does not grow with its order history; `i64::MAX` keeps them forever.
    /// The ledger uses the idempotency-key TTL: past it a redelivered line could not be
    /// recognised by its key either.
    pub closed_line_retention_ms: i64,
}

static NO_BACKORDERS: BTreeSet<LocationId> = BTreeSet::new();

impl ApplyContext<'static> {
    /// No backorders anywhere, priority routing, source time or 0.
    pub fn strict() -> Self {
        Self {
            now_ms: 0,
            backorder_locations: &NO_BACKORDERS,
            routing: RoutingPolicy::Priority,
            replay: false,
            max_split_locations: 1,
            closed_line_retention_ms: i64::MAX,
        }
    }

    /// For replaying recorded events (a recorded split is re-made over its recorded route).
    pub fn replay() -> Self {
        Self {
            replay: true,
            max_split_locations: usize::MAX,
            ..Self::strict()
        }
    }
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
    /// Open purchase-order lines by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inbound: BTreeMap<String, InboundLine>,
    /// Transfers by id (kept once fully received, for idempotent replays).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transfers: BTreeMap<String, TransferLine>,
    /// Closed reservation lines in closing order, (closed at ms, id): forgotten from the
    /// front once older than the retention.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub closed_lines: VecDeque<(i64, String)>,
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
            inbound: BTreeMap::new(),
            transfers: BTreeMap::new(),
            closed_lines: VecDeque::new(),
        }
    }

    /// The stock at `location`, zero if never seen.
    pub fn location(&self, location: &LocationId) -> LocationStock {
        self.locations.get(location).cloned().unwrap_or_default()
    }

    /// on-hand − reserved at `location` (0 if never seen), without copying its journal.
    pub fn available_at(&self, location: &LocationId) -> i64 {
        self.locations
            .get(location)
            .map_or(0, LocationStock::available)
    }

    /// Levels per location, sorted by location id.
    pub fn levels(&self) -> Vec<LocationLevel> {
        let mut levels: Vec<LocationLevel> = self
            .locations
            .iter()
            .map(|(location, stock)| LocationLevel {
                location: location.clone(),
                on_hand: stock.on_hand,
                reserved: stock.reserved,
                in_transit: stock.in_transit,
                inbound: 0,
            })
            .collect();
        for line in self.inbound.values() {
            match levels
                .iter_mut()
                .find(|level| level.location == line.location)
            {
                Some(level) => level.inbound += to_i64(line.quantity),
                None => levels.push(LocationLevel {
                    location: line.location.clone(),
                    on_hand: 0,
                    reserved: 0,
                    in_transit: 0,
                    inbound: to_i64(line.quantity),
                }),
            }
        }
        levels.sort_by(|a, b| a.location.cmp(&b.location));
        levels
    }

    /// Open purchase-order units by location and expected date.
    pub fn inbound_levels(&self) -> Vec<InboundLevel> {
        self.inbound
            .values()
            .filter(|line| line.quantity > 0)
            .map(|line| InboundLevel {
                location: line.location.clone(),
                quantity: line.quantity,
                expected_at_ms: line.expected_at_ms,
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
            inbound: self.inbound_levels(),
        }
    }

    /// Applies one movement as event number `seq` (must be `self.seq + 1`).
    ///
    /// On `Ok` the state has advanced to `seq` and the movement must be recorded; on `Err`
    /// nothing changed and nothing is recorded.
    pub fn apply(&mut self, movement: &Movement, seq: u64) -> Result<Applied, ApplyError> {
        self.apply_with(movement, seq, &ApplyContext::strict())
    }

    /// Applies one movement as event `seq` under `context` (time, backorder locations,
    /// routing policy, replay). Same contract as [`SkuState::apply`].
    pub fn apply_with(
        &mut self,
        movement: &Movement,
        seq: u64,
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
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
        let at_ms = movement.occurred_at_ms.unwrap_or(context.now_ms);
        let applied = self.apply_kind(&movement.kind, at_ms, context)?;
        self.seq = seq;
        // Only these can close a line: a shipment, a release, a return, or a sale or hold
        // that was cancelled before it arrived (it then changes no level).
        let may_close = match &movement.kind {
            MovementKind::Cancellation { .. }
            | MovementKind::Fulfilment { .. }
            | MovementKind::Return { .. } => true,
            MovementKind::Sale { .. } | MovementKind::Reservation { .. } => !applied.levels_changed,
            _ => false,
        };
        if may_close {
            self.mark_closed_lines(&movement.kind, at_ms);
        }
        self.prune_closed_lines(at_ms.saturating_sub(context.closed_line_retention_ms));
        Ok(applied)
    }

    /// Stamps the closing time on the lines of `kind`'s reservation that have no open units
    /// and queues them for forgetting.
    fn mark_closed_lines(&mut self, kind: &MovementKind, at_ms: i64) {
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
                self.closed_lines.push_back((at_ms, id.to_owned()));
            }
        }
    }

    /// Forgets lines closed before `cutoff_ms`, oldest first (a split line's first part is
    /// kept while another part is still open). Costs nothing when none is due.
    fn prune_closed_lines(&mut self, cutoff_ms: i64) {
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

    fn stock_mut(&mut self, location: &LocationId) -> &mut LocationStock {
        self.locations.entry(location.clone()).or_default()
    }

    fn changed(&self, location: &LocationId) -> Applied {
        Applied {
            levels_changed: true,
            oversold: self.available_at(location) < 0,
            routed_to: None,
            split_across: None,
        }
    }

    fn unchanged() -> Applied {
        Applied {
            levels_changed: false,
            oversold: false,
            routed_to: None,
            split_across: None,
        }
    }

    fn apply_kind(
        &mut self,
        kind: &MovementKind,
        at_ms: i64,
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
        match kind {
            MovementKind::Receipt { location, quantity } => {
                self.stock_mut(location)
                    .change_on_hand(at_ms, to_i64(*quantity));
                Ok(self.changed(location))
            }
            MovementKind::Adjustment {
                location, delta, ..
            } => {
                self.stock_mut(location).change_on_hand(at_ms, *delta);
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
                // What the counter could not have seen: on-hand changes after the watermark.
                stock.journal.retain(|(at, _)| at > watermark);
                let unseen: i64 = stock.journal.iter().map(|(_, delta)| delta).sum();
                stock.last_count_watermark = Some(*watermark);
                stock.on_hand = to_i64(*on_hand) + unseen;
                Ok(self.changed(location))
            }
            MovementKind::Inbound {
                purchase_order,
                location,
                quantity,
                expected_at_ms,
            } => {
                if *quantity == 0 {
                    let removed = self.inbound.remove(purchase_order).is_some();
                    return Ok(if removed {
                        self.changed(location)
                    } else {
                        Self::unchanged()
                    });
                }
                self.inbound.insert(
                    purchase_order.clone(),
                    InboundLine {
                        location: location.clone(),
                        quantity: *quantity,
                        expected_at_ms: *expected_at_ms,
                    },
                );
                Ok(self.changed(location))
            }
            MovementKind::InboundReceipt {
                purchase_order,
                quantity,
            } => {
                let Some(line) = self.inbound.get_mut(purchase_order) else {
                    return Err(ApplyError::UnknownPurchaseOrder {
                        purchase_order: purchase_order.clone(),
                    });
                };
                line.quantity = line.quantity.saturating_sub(*quantity);
                let location = line.location.clone();
                if line.quantity == 0 {
                    self.inbound.remove(purchase_order);
                }
                self.stock_mut(&location)
                    .change_on_hand(at_ms, to_i64(*quantity));
                Ok(self.changed(&location))
            }
            MovementKind::TransferDispatch {
                transfer,
                from,
                to,
                quantity,
            } => {
                if self.transfers.contains_key(transfer) {
                    return Err(ApplyError::DuplicateTransfer {
                        transfer: transfer.clone(),
                    });
                }
                self.stock_mut(from)
                    .change_on_hand(at_ms, -to_i64(*quantity));
                self.stock_mut(to).in_transit += to_i64(*quantity);
                self.transfers.insert(
                    transfer.clone(),
                    TransferLine {
                        from: from.clone(),
                        to: to.clone(),
                        quantity: *quantity,
                        received: 0,
                    },
                );
                Ok(self.changed(from))
            }
            MovementKind::TransferReceipt { transfer, quantity } => {
                let Some(line) = self.transfers.get_mut(transfer) else {
                    return Err(ApplyError::UnknownTransfer {
                        transfer: transfer.clone(),
                    });
                };
                let in_transit = line.quantity - line.received;
                if *quantity > in_transit {
                    return Err(ApplyError::OverReceipt {
                        transfer: transfer.clone(),
                        in_transit,
                        requested: *quantity,
                    });
                }
                line.received += quantity;
                let to = line.to.clone();
                let stock = self.stock_mut(&to);
                stock.in_transit -= to_i64(*quantity);
                stock.change_on_hand(at_ms, to_i64(*quantity));
                Ok(self.changed(&to))
            }
            MovementKind::Sale {
                reservation,
                quantity,
                location,
                route,
            } => self.reserve(
                reservation,
                *quantity,
                location.as_ref(),
                route,
                None,
                context,
            ),
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
                context,
            ),
            MovementKind::Cancellation {
                reservation,
                quantity,
                ..
            } => Ok(self.cancel(reservation, *quantity)),
            MovementKind::Fulfilment {
                reservation,
                quantity,
            } => self.fulfil(reservation, *quantity, at_ms),
            MovementKind::Return {
                location,
                quantity,
                reservation,
            } => {
                // A return against a line we still hold as reserved means the shipment
                // was never reported to us: count those units as shipped first, so they
                // leave `reserved` instead of staying promised twice.
                let ids = reservation
                    .as_deref()
                    .map(|id| self.line_ids(id))
                    .unwrap_or_default();
                let mut remaining = *quantity;
                for id in ids {
                    let Some(line) = self.reservations.get_mut(&id) else {
                        continue;
                    };
                    let units = line.open().min(remaining);
                    if units == 0 {
                        continue;
                    }
                    remaining -= units;
                    line.fulfilled += units;
                    let line_location = line.location.clone();
                    let stock = self.stock_mut(&line_location);
                    stock.change_on_hand(at_ms, -to_i64(units));
                    stock.reserved -= to_i64(units);
                }
                self.stock_mut(location)
                    .change_on_hand(at_ms, to_i64(*quantity));
                Ok(self.changed(location))
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

    fn reserve(
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
            reservation.to_owned(),
            Reservation {
                location: chosen.clone(),
                quantity,
                fulfilled: 0,
                released,
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
            split_across: None,
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
                id,
                Reservation {
                    location: location.clone(),
                    quantity: units + released,
                    fulfilled: 0,
                    released,
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
        }
    }

    /// The reservation ids of one line: itself, then its split parts.
    fn line_ids(&self, reservation: &str) -> Vec<String> {
        let mut ids = vec![reservation.to_owned()];
        if let Some(line) = self.reservations.get(reservation) {
            ids.extend(line.parts.iter().cloned());
        }
        ids
    }

    fn cancel(&mut self, reservation: &str, quantity: Option<u64>) -> Applied {
        if !self.reservations.contains_key(reservation) {
            let units = quantity.unwrap_or(u64::MAX);
            let pending = self
                .cancelled_in_advance
                .entry(reservation.to_owned())
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

    fn fulfil(
        &mut self,
        reservation: &str,
        quantity: u64,
        at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        if !self.reservations.contains_key(reservation) {
            return Err(ApplyError::UnknownReservation {
                reservation: reservation.to_owned(),
            });
        }
        let ids = self.line_ids(reservation);
        let open: u64 = ids
            .iter()
            .filter_map(|id| self.reservations.get(id))
            .map(Reservation::open)
            .sum();
        if quantity > open {
            return Err(ApplyError::OverFulfilment {
                reservation: reservation.to_owned(),
                open,
                requested: quantity,
            });
        }
        // Split parts are shipped first part first.
        let mut remaining = quantity;
        let mut last = None;
        for id in ids {
            let Some(line) = self.reservations.get_mut(&id) else {
                continue;
            };
            // Shipping commits the hold: it no longer lapses.
            line.expires_at_ms = None;
            let ship = remaining.min(line.open());
            if ship == 0 {
                continue;
            }
            remaining -= ship;
            line.fulfilled += ship;
            let location = line.location.clone();
            let stock = self.stock_mut(&location);
            stock.change_on_hand(at_ms, -to_i64(ship));
            stock.reserved -= to_i64(ship);
            last = Some(location);
        }
        Ok(match last {
            Some(location) => self.changed(&location),
            None => Self::unchanged(),
        })
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

    fn at(kind: MovementKind, occurred_at_ms: i64) -> Movement {
        Movement {
            occurred_at_ms: Some(occurred_at_ms),
            ..movement("k", kind)
        }
    }

    fn run_at(
        state: &mut SkuState,
        kind: MovementKind,
        occurred_at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let seq = state.seq + 1;
        state.apply(&at(kind, occurred_at_ms), seq)
    }

    #[test]
    fn a_count_adds_back_what_moved_after_its_watermark() {
        let mut state = SkuState::new("SKU-E".into());
        run_at(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 10,
            },
            100,
        )
        .unwrap();
        // The WMS counted 10 at t=200, but a receipt of 5 at t=300 and a shipment of 2 at
        // t=350 reached us before the count did.
        run_at(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 5,
            },
            300,
        )
        .unwrap();
        run_at(
            &mut state,
            MovementKind::Sale {
                reservation: "o1".into(),
                quantity: 2,
                location: Some(wh()),
                route: vec![],
            },
            320,
        )
        .unwrap();
        run_at(
            &mut state,
            MovementKind::Fulfilment {
                reservation: "o1".into(),
                quantity: 2,
            },
            350,
        )
        .unwrap();
        run_at(
            &mut state,
            MovementKind::Count {
                location: wh(),
                on_hand: 9,
                watermark: 200,
            },
            400,
        )
        .unwrap();
        // 9 counted + 5 received after + (−2) shipped after = 12; nothing counted twice.
        assert_eq!(state.location(&wh()).on_hand, 12);
        // A later count at t=500 sees everything: it sets on-hand as is.
        run_at(
            &mut state,
            MovementKind::Count {
                location: wh(),
                on_hand: 11,
                watermark: 500,
            },
            510,
        )
        .unwrap();
        assert_eq!(state.location(&wh()).on_hand, 11);
    }

    #[test]
    fn transfers_pass_through_in_transit_and_cannot_be_received_twice() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 10,
            },
        )
        .unwrap();
        let dispatch = MovementKind::TransferDispatch {
            transfer: "T1".into(),
            from: wh(),
            to: "STORE-1".into(),
            quantity: 4,
        };
        run(&mut state, dispatch.clone()).unwrap();
        assert!(matches!(
            run(&mut state, dispatch),
            Err(ApplyError::DuplicateTransfer { .. })
        ));
        let store = LocationId::from("STORE-1");
        assert_eq!(
            (
                state.location(&wh()).on_hand,
                state.location(&store).in_transit
            ),
            (6, 4)
        );
        assert_eq!(
            state.location(&store).available(),
            0,
            "in transit is not available"
        );
        run(
            &mut state,
            MovementKind::TransferReceipt {
                transfer: "T1".into(),
                quantity: 3,
            },
        )
        .unwrap();
        let over = run(
            &mut state,
            MovementKind::TransferReceipt {
                transfer: "T1".into(),
                quantity: 2,
            },
        );
        assert!(matches!(
            over,
            Err(ApplyError::OverReceipt { in_transit: 1, .. })
        ));
        let stock = state.location(&store);
        assert_eq!((stock.on_hand, stock.in_transit), (3, 1));
    }

    #[test]
    fn receiving_against_a_purchase_order_turns_inbound_into_on_hand() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Inbound {
                purchase_order: "PO-1:1".into(),
                location: wh(),
                quantity: 12,
                expected_at_ms: 1_000,
            },
        )
        .unwrap();
        assert_eq!(state.levels()[0].inbound, 12);
        assert_eq!(state.inbound_levels()[0].expected_at_ms, 1_000);
        run(
            &mut state,
            MovementKind::InboundReceipt {
                purchase_order: "PO-1:1".into(),
                quantity: 8,
            },
        )
        .unwrap();
        assert_eq!(
            (state.levels()[0].on_hand, state.levels()[0].inbound),
            (8, 4)
        );
        run(
            &mut state,
            MovementKind::InboundReceipt {
                purchase_order: "PO-1:1".into(),
                quantity: 5,
            },
        )
        .unwrap();
        assert_eq!(
            (state.levels()[0].on_hand, state.levels()[0].inbound),
            (13, 0)
        );
        assert!(matches!(
            run(
                &mut state,
                MovementKind::InboundReceipt {
                    purchase_order: "PO-1:1".into(),
                    quantity: 1
                }
            ),
            Err(ApplyError::UnknownPurchaseOrder { .. })
        ));
    }

    #[test]
    fn holds_may_backorder_only_where_the_policy_allows() {
        let mut state = SkuState::new("SKU-E".into());
        let allowed: BTreeSet<LocationId> = [LocationId::from("DROPSHIP")].into();
        let context = ApplyContext {
            backorder_locations: &allowed,
            ..ApplyContext::strict()
        };
        let hold = |r: &str, l: &str| MovementKind::Reservation {
            reservation: r.into(),
            quantity: 2,
            location: Some(l.into()),
            route: vec![],
            expires_at_ms: None,
        };
        let refused = state.apply_with(&movement("a", hold("h1", "WH-1")), 1, &context);
        assert!(matches!(refused, Err(ApplyError::InsufficientStock { .. })));
        let applied = state
            .apply_with(&movement("b", hold("h2", "DROPSHIP")), 1, &context)
            .unwrap();
        assert!(
            !applied.oversold,
            "a backorder within policy is not an oversell"
        );
        assert_eq!(state.location(&"DROPSHIP".into()).available(), -2);
        assert_eq!(
            state.location(&wh()).available(),
            0,
            "the debt never touches other locations"
        );
    }

    #[test]
    fn most_stock_routing_picks_the_fullest_location_and_records_it() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: "A".into(),
                quantity: 3,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Receipt {
                location: "B".into(),
                quantity: 9,
            },
        )
        .unwrap();
        let context = ApplyContext {
            routing: RoutingPolicy::MostStock,
            ..ApplyContext::strict()
        };
        let sale = MovementKind::Sale {
            reservation: "o1".into(),
            quantity: 1,
            location: None,
            route: vec!["A".into(), "B".into()],
        };
        let applied = state.apply_with(&movement("s", sale), 3, &context).unwrap();
        assert_eq!(applied.routed_to, Some("B".into()));
        assert_eq!(state.location(&"B".into()).reserved, 1);
    }

    #[test]
    fn replay_admits_recorded_holds_even_when_stock_no_longer_fits() {
        let mut state = SkuState::new("SKU-E".into());
        let hold = MovementKind::Reservation {
            reservation: "h".into(),
            quantity: 1,
            location: Some(wh()),
            route: vec![],
            expires_at_ms: None,
        };
        assert!(state.apply(&movement("h", hold.clone()), 1).is_err());
        state
            .apply_with(&movement("h", hold), 1, &ApplyContext::replay())
            .unwrap();
        assert_eq!(state.location(&wh()).reserved, 1);
    }

    #[test]
    fn a_split_line_ships_first_part_first_and_releases_last_part_first() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: "A".into(),
                quantity: 3,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Receipt {
                location: "B".into(),
                quantity: 4,
            },
        )
        .unwrap();
        let context = ApplyContext {
            max_split_locations: 2,
            ..ApplyContext::strict()
        };
        let hold = MovementKind::Reservation {
            reservation: "h".into(),
            quantity: 6,
            location: None,
            route: vec!["A".into(), "B".into()],
            expires_at_ms: None,
        };
        let applied = state
            .apply_with(&movement("h", hold.clone()), 3, &context)
            .unwrap();
        assert_eq!(applied.split_across, Some(vec!["A".into(), "B".into()]));
        let reserved = |s: &SkuState| {
            (
                s.location(&"A".into()).reserved,
                s.location(&"B".into()).reserved,
            )
        };
        assert_eq!(reserved(&state), (3, 3));
        // Replaying the recorded movement (route = the split, no location) splits the same.
        let mut replayed = SkuState::new("SKU-E".into());
        replayed
            .apply(
                &movement(
                    "a",
                    MovementKind::Receipt {
                        location: "A".into(),
                        quantity: 3,
                    },
                ),
                1,
            )
            .unwrap();
        replayed
            .apply(
                &movement(
                    "b",
                    MovementKind::Receipt {
                        location: "B".into(),
                        quantity: 4,
                    },
                ),
                2,
            )
            .unwrap();
        replayed
            .apply_with(&movement("h", hold), 3, &ApplyContext::replay())
            .unwrap();
        assert_eq!(replayed, state);
        // Ship 4: 3 from A, 1 from B; cancel the rest: B's last 2 units.
        run(
            &mut state,
            MovementKind::Fulfilment {
                reservation: "h".into(),
                quantity: 4,
            },
        )
        .unwrap();
        assert_eq!(reserved(&state), (0, 2));
        let over = run(
            &mut state,
            MovementKind::Fulfilment {
                reservation: "h".into(),
                quantity: 3,
            },
        );
        assert!(matches!(
            over,
            Err(ApplyError::OverFulfilment { open: 2, .. })
        ));
        run(
            &mut state,
            MovementKind::Cancellation {
                reservation: "h".into(),
                quantity: None,
                reason: None,
            },
        )
        .unwrap();
        assert_eq!(reserved(&state), (0, 0));
        assert_eq!(
            (
                state.location(&"A".into()).on_hand,
                state.location(&"B".into()).on_hand
            ),
            (0, 3)
        );
    }

    #[test]
    fn without_a_split_allowance_a_hold_no_location_can_serve_is_refused() {
        let mut state = SkuState::new("SKU-E".into());
        run(
            &mut state,
            MovementKind::Receipt {
                location: "A".into(),
                quantity: 3,
            },
        )
        .unwrap();
        run(
            &mut state,
            MovementKind::Receipt {
                location: "B".into(),
                quantity: 4,
            },
        )
        .unwrap();
        let hold = MovementKind::Reservation {
            reservation: "h".into(),
            quantity: 6,
            location: None,
            route: vec!["A".into(), "B".into()],
            expires_at_ms: None,
        };
        assert!(matches!(
            run(&mut state, hold),
            Err(ApplyError::InsufficientStock { available: 4, .. })
        ));
    }

    #[test]
    fn closed_lines_are_forgotten_after_the_retention_and_open_ones_never() {
        let day = 86_400_000;
        let mut state = SkuState::new("SKU-E".into());
        let context = ApplyContext {
            closed_line_retention_ms: 7 * day,
            ..ApplyContext::strict()
        };
        let mut at = 0;
        let apply = |state: &mut SkuState, kind: MovementKind, at: i64| {
            let seq = state.seq + 1;
            let movement = Movement {
                occurred_at_ms: Some(at),
                ..movement("k", kind)
            };
            state.apply_with(&movement, seq, &context).unwrap();
        };
        apply(
            &mut state,
            MovementKind::Receipt {
                location: wh(),
                quantity: 100,
            },
            at,
        );
        let sale = |r: &str| MovementKind::Sale {
            reservation: r.into(),
            quantity: 1,
            location: Some(wh()),
            route: vec![],
        };
        apply(&mut state, sale("shipped"), at);
        apply(
            &mut state,
            MovementKind::Fulfilment {
                reservation: "shipped".into(),
                quantity: 1,
            },
            at,
        );
        apply(&mut state, sale("cancelled"), at);
        apply(
            &mut state,
            MovementKind::Cancellation {
                reservation: "cancelled".into(),
                quantity: None,
                reason: None,
            },
            at,
        );
        apply(&mut state, sale("open"), at);
        assert_eq!(state.reservations["shipped"].closed_at_ms, Some(0));
        // Eight days later, the next movement forgets what closed more than 7 days ago.
        at += 8 * day;
        apply(
            &mut state,
            MovementKind::Adjustment {
                location: wh(),
                delta: 1,
                reason: "found".into(),
            },
            at,
        );
        let left: Vec<&String> = state.reservations.keys().collect();
        assert_eq!(left, vec!["open"]);
        assert_eq!(
            state.location(&wh()).reserved,
            1,
            "forgetting closed lines changes no level"
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
