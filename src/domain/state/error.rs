//! Why a movement is refused ([`ApplyError`]) and what a broken invariant looks like
//! ([`InvariantViolation`]).

use crate::domain::{LocationId, Sku};

/// The figure name a forwarded [`ApplyError::Overflow`] reads back as: the name travels in
/// the message, not the field (a `'static` name cannot be borrowed from a network buffer).
fn forwarded_figure() -> &'static str {
    "a stock figure"
}

/// Why a movement was refused. Refused movements are not recorded. Serialisable: a
/// forwarded movement's refusal travels back from the instance that owns the SKU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// A return would take the line's returned units above what it shipped (the line has
    /// no open units left, so no later shipment can explain it).
    #[error(
        "returned would exceed shipped on reservation {reservation}: shipped {shipped}, returned {returned}, cannot return {requested} more"
    )]
    ReturnExceedsShipped {
        /// The reservation id.
        reservation: String,
        /// Units shipped on the line.
        shipped: u64,
        /// Units already returned on it.
        returned: u64,
        /// Units the return named.
        requested: u64,
    },
    /// A fulfilment named a location where the line holds no part.
    #[error("reservation {reservation} holds nothing at {location}")]
    NotHeldAt {
        /// The reservation id.
        reservation: String,
        /// The location the fulfilment named.
        location: LocationId,
    },
    /// A movement would have to wait for its line, but the SKU already keeps the most
    /// parked movements it may.
    #[error("too many movements parked for this sku (limit {limit}); this one cannot wait")]
    TooManyParked {
        /// The limit ([`MAX_PARKED_PER_SKU`](super::MAX_PARKED_PER_SKU)).
        limit: usize,
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
    /// Applying the movement would take a stock figure of the SKU (on-hand, reserved or in
    /// transit at a location, in either direction) beyond
    /// [`MAX_STOCK_LEVEL`](super::MAX_STOCK_LEVEL). Nothing changed.
    #[error(
        "applying this movement would take {figure} at {location} to {value}, beyond the {limit} units a stock figure may hold"
    )]
    Overflow {
        /// Which figure: `on_hand`, `reserved` or `in_transit`.
        #[serde(skip_deserializing, default = "forwarded_figure")]
        figure: &'static str,
        /// The location.
        location: LocationId,
        /// The figure the movement would have produced.
        value: i64,
        /// The limit ([`MAX_STOCK_LEVEL`](super::MAX_STOCK_LEVEL)).
        limit: i64,
    },
    /// The movement names a location that is not configured (`[[locations]]`); nothing is
    /// created for it.
    #[error("{field}: location {location} is not configured")]
    UnknownLocation {
        /// The JSON field naming it (`location`, `route/1`, `from`, `to`, `quarantine`).
        field: String,
        /// The location named.
        location: LocationId,
    },
    /// The idempotency key was recorded before for this SKU with a different movement
    /// (another quantity, location, type…): the key is reused by mistake, and the new
    /// movement is refused rather than answered `duplicate`. Raised by the ledger (which
    /// keeps a hash of each movement with its key), never by the state machine.
    #[error(
        "idempotency key {key} was already used for a different movement of this sku (event {seq})"
    )]
    IdempotencyConflict {
        /// The reused key.
        key: String,
        /// The event that recorded the key first.
        seq: u64,
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

/// A broken invariant of a SKU's state or of one transition (see
/// [`SkuState::check_invariants`](super::SkuState::check_invariants)). Finding one means a
/// bug in the state machine or a corrupted snapshot, never bad input: input problems are
/// [`ApplyError`]s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    /// A location has fewer than zero units reserved.
    #[error("reserved at {location} is negative: {reserved}")]
    NegativeReserved {
        /// The location.
        location: LocationId,
        /// Its reserved units.
        reserved: i64,
    },
    /// A location has fewer than zero units in transit to it.
    #[error("in transit to {location} is negative: {in_transit}")]
    NegativeInTransit {
        /// The location.
        location: LocationId,
        /// Its units in transit.
        in_transit: i64,
    },
    /// A location's reserved units differ from the open units of the lines held there.
    #[error("reserved at {location} is {reserved} but its open lines hold {open}")]
    ReservedMismatch {
        /// The location.
        location: LocationId,
        /// Its reserved units.
        reserved: i64,
        /// The open units of the reservation lines at it.
        open: i128,
    },
    /// A line has more units returned than it shipped.
    #[error("reservation {reservation} has {returned} returned of {fulfilled} shipped")]
    OverReturnedLine {
        /// The reservation id.
        reservation: String,
        /// Units shipped.
        fulfilled: u64,
        /// Units returned.
        returned: u64,
    },
    /// A SKU keeps more parked movements than the limit.
    #[error("{parked} movements parked, more than the limit")]
    TooManyParked {
        /// Parked movements kept.
        parked: usize,
    },
    /// A line has more units shipped plus released than it reserved.
    #[error(
        "reservation {reservation} has {fulfilled} shipped and {released} released of {quantity}"
    )]
    OverclosedLine {
        /// The reservation id.
        reservation: String,
        /// Units reserved on the line.
        quantity: u64,
        /// Units shipped.
        fulfilled: u64,
        /// Units released.
        released: u64,
    },
    /// A line marked closed still has open units.
    #[error("reservation {reservation} is marked closed with {open} open units")]
    ClosedLineOpen {
        /// The reservation id.
        reservation: String,
        /// Its open units.
        open: u64,
    },
    /// An id is both a known line and waiting as a cancellation that came first.
    #[error("reservation {reservation} is both open and cancelled in advance")]
    CancelledInAdvanceAndKnown {
        /// The reservation id.
        reservation: String,
    },
    /// A location's in-transit units differ from what its transfers have not yet delivered.
    #[error("in transit to {location} is {in_transit} but its transfers carry {expected}")]
    InTransitMismatch {
        /// The receiving location.
        location: LocationId,
        /// Its units in transit.
        in_transit: i64,
        /// Dispatched minus received units over the transfers to it.
        expected: i128,
    },
    /// A transfer received more units than were dispatched.
    #[error("transfer {transfer} received {received} of {quantity} dispatched")]
    OverReceivedTransfer {
        /// The transfer id.
        transfer: String,
        /// Units dispatched.
        quantity: u64,
        /// Units received.
        received: u64,
    },
    /// A purchase-order line with no units left is still kept open.
    #[error("purchase order line {purchase_order} is open with 0 units")]
    EmptyInboundLine {
        /// The purchase-order line id.
        purchase_order: String,
    },
    /// A location's count journal outgrew its limit.
    #[error("journal at {location} has {entries} entries")]
    JournalOverflow {
        /// The location.
        location: LocationId,
        /// Entries kept.
        entries: usize,
    },
    /// A movement changed a total (on-hand, reserved or in transit, summed over locations)
    /// by other than its effect.
    #[error("a {movement} changed {total} by {actual}, its effect is {expected}")]
    EffectMismatch {
        /// The movement kind.
        movement: &'static str,
        /// Which total: `on_hand`, `reserved` or `in_transit`.
        total: &'static str,
        /// The change its effect implies.
        expected: String,
        /// The change seen.
        actual: i128,
    },
    /// After a count, on-hand is not the counted units plus the changes after its watermark.
    #[error("count at {location}: on-hand {on_hand}, counted {counted} plus unseen {unseen}")]
    CountMismatch {
        /// The counted location.
        location: LocationId,
        /// On-hand after the count.
        on_hand: i64,
        /// Units counted.
        counted: u64,
        /// On-hand changes journaled after the count's watermark.
        unseen: i64,
    },
    /// A refused movement changed the state.
    #[error("a refused {movement} changed the state")]
    RefusedButChanged {
        /// The movement kind.
        movement: &'static str,
    },
}
