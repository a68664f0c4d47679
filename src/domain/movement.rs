//! Movements: the only way stock changes. The JSON shape here is the Kafka and REST
//! contract described by `schemas/movement.schema.json`; [`FastMovementReader`] reads it on
//! the ingest hot paths without an intermediate `serde_json::Value`, deferring every text it
//! cannot vouch for to the derived deserializer (which explains refusals).

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
    /// Unique per business event and SKU: source, external id, line and version. Keys are
    /// scoped per SKU (the same key on another SKU is another movement). A second movement
    /// with the same key for the same SKU is acknowledged as a duplicate with no effect when
    /// it is the same movement, and refused as an idempotency-key conflict when it differs
    /// (see `ledger::keys::movement_hash`). At most [`MAX_ID_BYTES`] bytes.
    pub idempotency_key: String,
    /// Who produced it (`wms-1`, `erp`, `shopify:main`). Metrics name it only when it is a
    /// configured source (`[ledger] metric_sources`), else `other`.
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
    /// An absolute count from a WMS or ERP: on-hand := on_hand (physical basis), or the
    /// source's book figure turned into physical on-hand (book basis, see [`CountBasis`]).
    ///
    /// `watermark` is the source's sequence or time of the count; a count whose watermark is
    /// not newer than the last applied count at that location is stale and ignored.
    Count {
        /// Where the count was taken.
        location: LocationId,
        /// Units counted; `null` means the source has no figure for the SKU (not tracked
        /// there): the count is ignored and logged, never read as 0. The field must be
        /// present.
        #[serde(deserialize_with = "nullable")]
        on_hand: Option<u64>,
        /// Source sequence or time (milliseconds) of the count; higher is newer.
        watermark: i64,
        /// What the figure includes. Absent: the basis configured for the movement's source
        /// (`[ledger] count_basis`), else `physical`; the ledger records the basis it used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        basis: Option<CountBasis>,
        /// Book basis only: the reservation lines the source has already deducted (booked);
        /// absent means every open order line at the location.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        booked: Option<Vec<String>>,
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
        /// Why (`cancelled`, `expired`, `payment_failed`, `compensation`, or the channel's
        /// own reason such as `inventory` or `NoInventory`); free text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The units cannot be found (a seller-side cancel for missing stock): the released
        /// units are also written off (on-hand drops by as much), so they are not put back
        /// on sale. Set by the channel decoders from the configured reason list.
        #[serde(default, skip_serializing_if = "is_false")]
        write_off: bool,
    },
    /// Shipment of reserved units: on-hand -= quantity and reserved -= quantity at the
    /// reservation's location.
    Fulfilment {
        /// The reservation id being shipped.
        reservation: String,
        /// Units shipped (> 0).
        quantity: u64,
        /// The location the units left from, when the source knows it (a split line ships
        /// from the part at this location).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<LocationId>,
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
    /// A transfer arrives: in transit at the receiving location drops, on-hand rises by
    /// the accepted units; rejected units go to `quarantine` or are written off.
    TransferReceipt {
        /// The transfer id.
        transfer: String,
        /// Units accepted into stock (quantity + rejected is at least 1 and at most what is
        /// still in transit).
        quantity: u64,
        /// Units refused at receipt (damaged, wrong item); 0 when absent.
        #[serde(default, skip_serializing_if = "is_zero")]
        rejected: u64,
        /// Why the rejected units were refused; required when `rejected` > 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rejected_reason: Option<String>,
        /// Where rejected units are put (a location that feeds no channel); absent: they
        /// are written off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quarantine: Option<LocationId>,
    },
    /// Units returned by a customer. With `restock` (the default) on-hand += quantity; the
    /// line's returned count rises either way, and never above what it shipped.
    Return {
        /// Where the units are put back; absent: the location the returned line shipped
        /// from (then `reservation` is required).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<LocationId>,
        /// Units returned (> 0).
        quantity: u64,
        /// The order line they came from, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reservation: Option<String>,
        /// Whether the units go back to stock (true when absent); false records the return
        /// on the line without changing on-hand (damaged, kept by the customer).
        #[serde(default = "default_true", skip_serializing_if = "is_true")]
        restock: bool,
    },
    /// An edit of an order line: its quantity becomes `quantity` (absolute; 0 removes the
    /// line). The ledger reserves or releases the difference against the line's own
    /// reservation, never below what has shipped (the shortfall is reported as a
    /// discrepancy), and ignores an edit whose `version` is not newer than the line's.
    /// A line that does not exist yet is created like a sale.
    OrderEdit {
        /// Reservation id of the line: `channel:order:line`, as its sale.
        reservation: String,
        /// The line's new ordered quantity (0 = removed).
        quantity: u64,
        /// The edit's version (the order's edit sequence or update time in milliseconds);
        /// higher is newer.
        version: i64,
        /// The location to reserve at for an added line, when the source knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<LocationId>,
        /// Candidate locations for an added line, in priority order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        route: Vec<LocationId>,
    },
    /// Moves a reservation line's open units to another location: one atomic release and
    /// reserve, refused when the target cannot hold the full open quantity.
    Reassign {
        /// The reservation id.
        reservation: String,
        /// The new location.
        to: LocationId,
    },
}

/// What an absolute count's figure includes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountBasis {
    /// Units on the shelf, including those reserved for orders not yet shipped (a WMS).
    #[default]
    Physical,
    /// The source's book stock: it deducts an order when it books it, before it ships
    /// (many ERPs). The ledger adds back the open reservations the source has booked.
    Book,
}

impl CountBasis {
    /// Whether this is the default physical basis.
    pub fn is_physical(&self) -> bool {
        matches!(self, CountBasis::Physical)
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_true(value: &bool) -> bool {
    *value
}

fn default_true() -> bool {
    true
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Reads a field that must be present and may be `null`.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
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
            MovementKind::OrderEdit { .. } => "order_edit",
            MovementKind::Reassign { .. } => "reassign",
        }
    }
}

/// The most units any one quantity field of a movement may carry (receipts, holds, counts,
/// edits, transfers, inbound, cancellations, returns), and the largest magnitude of an
/// adjustment's `delta` in either direction: one thousand million whole units.
///
/// Why this figure: it is far above any real single business event (a pallet, a container,
/// a whole warehouse count), and low enough that a SKU's figures, summed over thousands of
/// movements, stay many orders of magnitude inside `i64` (see
/// [`MAX_STOCK_LEVEL`](super::MAX_STOCK_LEVEL)); a figure beyond it is a producer bug (a
/// price, a barcode or `u64::MAX` in the quantity field), refused before it reaches stock.
pub const MAX_QUANTITY: u64 = 1_000_000_000;

/// The longest identifier a movement may carry, in UTF-8 bytes: SKU, location, idempotency
/// key, source, reservation, purchase-order and transfer ids, and each booked line id.
/// Identifiers must also be free of control characters (Unicode category Cc); spaces,
/// slashes and non-ASCII letters are fine (`Tafel 120/80 eiken`, `Größe-XL`).
pub const MAX_ID_BYTES: usize = 255;

/// The longest free-text reason (adjustment, cancellation, rejected units), in UTF-8 bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Most entries in a count's `booked` list or a hold's `route`.
pub const MAX_LIST_ENTRIES: usize = 1024;

/// Whether `value` has a control character (Unicode category Cc: U+0000–U+001F and
/// U+007F–U+009F), as `value.chars().any(char::is_control)` says, without decoding: in
/// UTF-8 the first 33 are single bytes below 0x20 or 0x7F, the other 32 the two bytes
/// 0xC2 0x80–0x9F (and 0xC2 is only ever a lead byte).
fn has_control(value: &str) -> bool {
    let bytes = value.as_bytes();
    // Almost every identifier has none of these three bytes: one branch-free pass says so.
    let suspect = bytes.iter().fold(false, |suspect, &byte| {
        suspect | (byte < 0x20) | (byte == 0x7F) | (byte == 0xC2)
    });
    suspect
        && bytes.iter().enumerate().any(|(index, &byte)| {
            byte < 0x20
                || byte == 0x7F
                || (byte == 0xC2 && bytes.get(index + 1).is_some_and(|next| *next <= 0x9F))
        })
}

/// Checks one identifier: its length and that it has no control character. `field` is the
/// JSON field name used in the problem text (the API turns it into a pointer).
fn check_id(field: &str, value: &str, problems: &mut Vec<String>) {
    if value.len() > MAX_ID_BYTES {
        problems.push(format!(
            "{field} is {} bytes long, more than the {MAX_ID_BYTES} allowed",
            value.len()
        ));
    }
    if has_control(value) {
        problems.push(format!("{field} must not contain control characters"));
    }
}

/// Checks one quantity field against [`MAX_QUANTITY`].
fn check_quantity(field: &str, value: u64, problems: &mut Vec<String>) {
    if value > MAX_QUANTITY {
        problems.push(format!(
            "{field} {value} is more than the {MAX_QUANTITY} units allowed"
        ));
    }
}

impl Movement {
    /// Checks what the type system cannot: non-empty keys, positive quantities within
    /// [`MAX_QUANTITY`], identifiers within [`MAX_ID_BYTES`] without control characters, a
    /// known schema version. Returns every problem found, one string each, naming the
    /// field first.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        self.validate_with(true)
    }

    /// [`Movement::validate`] for a movement recorded in the log, possibly before these
    /// limits existed: replaying the log must give the state it gave then, so identifiers
    /// are not checked and a quantity may be up to
    /// [`MAX_STOCK_LEVEL`](super::MAX_STOCK_LEVEL) (which still keeps the arithmetic of one
    /// event far inside `i64`); only a larger one is refused.
    pub fn validate_recorded(&self) -> Result<(), Vec<String>> {
        self.validate_with(false)
    }

    fn validate_with(&self, live: bool) -> Result<(), Vec<String>> {
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
        if live {
            check_id("sku", self.sku.as_str(), &mut problems);
            check_id("idempotency_key", &self.idempotency_key, &mut problems);
            check_id("source", &self.source, &mut problems);
        }
        self.check_limits(live, &mut problems);
        let positive = |q: u64, problems: &mut Vec<String>| {
            if q == 0 {
                problems.push("quantity must be at least 1".to_owned());
            }
        };
        match &self.kind {
            MovementKind::Receipt { quantity, .. }
            | MovementKind::Fulfilment { quantity, .. }
            | MovementKind::InboundReceipt { quantity, .. } => positive(*quantity, &mut problems),
            MovementKind::Return {
                quantity,
                location,
                reservation,
                ..
            } => {
                positive(*quantity, &mut problems);
                if location.is_none() && reservation.is_none() {
                    problems.push(
                        "a return without location must name its reservation (it goes back where that line shipped from)"
                            .to_owned(),
                    );
                }
            }
            MovementKind::TransferReceipt {
                quantity,
                rejected,
                rejected_reason,
                ..
            } => {
                if *quantity == 0 && *rejected == 0 {
                    problems.push("quantity + rejected must be at least 1".to_owned());
                }
                if *rejected > 0
                    && rejected_reason
                        .as_deref()
                        .is_none_or(|r| r.trim().is_empty())
                {
                    problems.push("rejected_reason is required when rejected > 0".to_owned());
                }
            }
            MovementKind::OrderEdit {
                reservation,
                location,
                route,
                ..
            } => {
                if location.is_none() && route.is_empty() {
                    problems.push("either location or route must be given".to_owned());
                }
                if reservation.trim().is_empty() {
                    problems.push("reservation must not be empty".to_owned());
                }
            }
            MovementKind::Reassign { reservation, .. } => {
                if reservation.trim().is_empty() {
                    problems.push("reservation must not be empty".to_owned());
                }
            }
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

impl Movement {
    /// Every location the movement names, with its JSON field (`location`, `route/0`,
    /// `from`, `to`, `quarantine`), in field order.
    pub fn locations(&self) -> Vec<(String, &LocationId)> {
        let (named, route) = self.named_locations();
        named
            .into_iter()
            .flatten()
            .map(|(field, location)| (field.to_owned(), location))
            .chain(
                route
                    .iter()
                    .enumerate()
                    .map(|(index, location)| (format!("route/{index}"), location)),
            )
            .collect()
    }

    /// The first location of [`Movement::locations`] (same order, same field names) for
    /// which `wanted` holds. Allocates only the field name of the one found, so a check of
    /// every movement's locations costs no allocation when all pass.
    pub fn find_location(
        &self,
        mut wanted: impl FnMut(&LocationId) -> bool,
    ) -> Option<(String, &LocationId)> {
        let (named, route) = self.named_locations();
        if let Some((field, location)) = named
            .into_iter()
            .flatten()
            .find(|(_, location)| wanted(location))
        {
            return Some((field.to_owned(), location));
        }
        route
            .iter()
            .enumerate()
            .find(|(_, location)| wanted(location))
            .map(|(index, location)| (format!("route/{index}"), location))
    }

    /// The locations the kind names in fields of their own (at most two, in field order),
    /// then its route.
    fn named_locations(&self) -> ([Option<NamedLocation<'_>>; 2], &[LocationId]) {
        let mut named: [Option<NamedLocation<'_>>; 2] = [None, None];
        let mut route: &[LocationId] = &[];
        match &self.kind {
            MovementKind::Receipt { location, .. }
            | MovementKind::Adjustment { location, .. }
            | MovementKind::Count { location, .. }
            | MovementKind::Inbound { location, .. } => named[0] = Some(("location", location)),
            MovementKind::Sale {
                location, route: r, ..
            }
            | MovementKind::Reservation {
                location, route: r, ..
            }
            | MovementKind::OrderEdit {
                location, route: r, ..
            } => {
                named[0] = location.as_ref().map(|l| ("location", l));
                route = r;
            }
            MovementKind::Fulfilment { location, .. } | MovementKind::Return { location, .. } => {
                named[0] = location.as_ref().map(|l| ("location", l));
            }
            MovementKind::TransferDispatch { from, to, .. } => {
                named[0] = Some(("from", from));
                named[1] = Some(("to", to));
            }
            MovementKind::TransferReceipt { quarantine, .. } => {
                named[0] = quarantine.as_ref().map(|l| ("quarantine", l));
            }
            MovementKind::Reassign { to, .. } => named[0] = Some(("to", to)),
            MovementKind::Cancellation { .. } | MovementKind::InboundReceipt { .. } => {}
        }
        (named, route)
    }

    /// The limits of [`Movement::validate`] on every kind's identifiers, quantities and
    /// free text.
    ///
    /// `live`: a new movement (every limit); otherwise a recorded one (quantities up to
    /// [`MAX_STOCK_LEVEL`](super::MAX_STOCK_LEVEL) only, see
    /// [`Movement::validate_recorded`]).
    fn check_limits(&self, live: bool, problems: &mut Vec<String>) {
        let fields = self.limited_fields();
        if let Some(booked) = fields.booked
            && live
            && booked.len() > MAX_LIST_ENTRIES
        {
            problems.push(format!(
                "booked has {} entries, more than the {MAX_LIST_ENTRIES} allowed",
                booked.len()
            ));
        }
        if live && fields.route.len() > MAX_LIST_ENTRIES {
            problems.push(format!(
                "route has {} entries, more than the {MAX_LIST_ENTRIES} allowed",
                fields.route.len()
            ));
        }
        let quantities = fields.quantities.iter().flatten();
        if !live {
            let limit = super::MAX_STOCK_LEVEL.unsigned_abs();
            for &(field, value) in quantities {
                if value > limit {
                    problems.push(format!(
                        "{field} {value} is more than the {limit} units a stock figure may hold"
                    ));
                }
            }
            return;
        }
        let ids = fields.ids.iter().flatten().copied();
        let booked = fields
            .booked
            .unwrap_or_default()
            .iter()
            .map(|line| ("booked", line.as_str()));
        let route = fields
            .route
            .iter()
            .map(|location| ("route", location.as_str()));
        for (field, value) in ids.chain(booked).chain(route) {
            check_id(field, value, problems);
        }
        for &(field, value) in quantities {
            check_quantity(field, value, problems);
        }
        for &(field, value) in fields.texts.iter().flatten() {
            if value.len() > MAX_REASON_BYTES {
                problems.push(format!(
                    "{field} is {} bytes long, more than the {MAX_REASON_BYTES} allowed",
                    value.len()
                ));
            }
        }
    }

    /// The kind's fields that [`Movement::check_limits`] checks, named as in JSON and in
    /// the order the problems are reported. Fixed-size: no allocation per movement.
    fn limited_fields(&self) -> LimitedFields<'_> {
        let mut fields = LimitedFields::default();
        match &self.kind {
            MovementKind::Receipt { location, quantity } => {
                fields.ids[0] = Some(("location", location.as_str()));
                fields.quantities[0] = Some(("quantity", *quantity));
            }
            MovementKind::Adjustment {
                location,
                delta,
                reason,
            } => {
                fields.ids[0] = Some(("location", location.as_str()));
                fields.quantities[0] = Some(("delta", delta.unsigned_abs()));
                fields.texts[0] = Some(("reason", reason));
            }
            MovementKind::Count {
                location,
                on_hand,
                booked,
                ..
            } => {
                fields.ids[0] = Some(("location", location.as_str()));
                fields.quantities[0] = Some(("on_hand", on_hand.unwrap_or(0)));
                fields.booked = booked.as_deref();
            }
            MovementKind::Sale {
                reservation,
                quantity,
                location,
                route,
            }
            | MovementKind::Reservation {
                reservation,
                quantity,
                location,
                route,
                ..
            }
            | MovementKind::OrderEdit {
                reservation,
                quantity,
                location,
                route,
                ..
            } => {
                fields.ids[0] = Some(("reservation", reservation));
                fields.ids[1] = location_field("location", location);
                fields.quantities[0] = Some(("quantity", *quantity));
                fields.route = route;
            }
            MovementKind::Cancellation {
                reservation,
                quantity,
                reason,
                ..
            } => {
                fields.ids[0] = Some(("reservation", reservation));
                fields.quantities[0] = Some(("quantity", quantity.unwrap_or(0)));
                fields.texts[0] = reason.as_deref().map(|r| ("reason", r));
            }
            MovementKind::Fulfilment {
                reservation,
                quantity,
                location,
            } => {
                fields.ids[0] = Some(("reservation", reservation));
                fields.ids[1] = location_field("location", location);
                fields.quantities[0] = Some(("quantity", *quantity));
            }
            MovementKind::Inbound {
                purchase_order,
                location,
                quantity,
                ..
            } => {
                fields.ids[0] = Some(("purchase_order", purchase_order));
                fields.ids[1] = Some(("location", location.as_str()));
                fields.quantities[0] = Some(("quantity", *quantity));
            }
            MovementKind::InboundReceipt {
                purchase_order,
                quantity,
            } => {
                fields.ids[0] = Some(("purchase_order", purchase_order));
                fields.quantities[0] = Some(("quantity", *quantity));
            }
            MovementKind::TransferDispatch {
                transfer,
                from,
                to,
                quantity,
            } => {
                fields.ids[0] = Some(("transfer", transfer));
                fields.ids[1] = Some(("from", from.as_str()));
                fields.ids[2] = Some(("to", to.as_str()));
                fields.quantities[0] = Some(("quantity", *quantity));
            }
            MovementKind::TransferReceipt {
                transfer,
                quantity,
                rejected,
                rejected_reason,
                quarantine,
            } => {
                fields.ids[0] = Some(("transfer", transfer));
                fields.ids[1] = location_field("quarantine", quarantine);
                fields.quantities[0] = Some(("quantity", *quantity));
                fields.quantities[1] = Some(("rejected", *rejected));
                fields.texts[0] = rejected_reason.as_deref().map(|r| ("rejected_reason", r));
            }
            MovementKind::Return {
                location,
                quantity,
                reservation,
                ..
            } => {
                fields.ids[0] = location_field("location", location);
                fields.ids[1] = reservation.as_deref().map(|r| ("reservation", r));
                fields.quantities[0] = Some(("quantity", *quantity));
            }
            MovementKind::Reassign { reservation, to } => {
                fields.ids[0] = Some(("reservation", reservation));
                fields.ids[1] = Some(("to", to.as_str()));
            }
        }
        fields
    }
}

/// A location with the JSON field that names it.
type NamedLocation<'a> = (&'static str, &'a LocationId);

/// `(field, location)` for an optional location.
fn location_field<'a>(
    field: &'static str,
    location: &'a Option<LocationId>,
) -> Option<(&'static str, &'a str)> {
    location.as_ref().map(|location| (field, location.as_str()))
}

/// What [`Movement::check_limits`] checks of one movement: at most three identifiers, two
/// quantities and one free text per kind (absent ones `None`, present ones in field
/// order), then the `booked` and `route` lists.
#[derive(Default)]
struct LimitedFields<'a> {
    ids: [Option<(&'static str, &'a str)>; 3],
    booked: Option<&'a [String]>,
    route: &'a [LocationId],
    quantities: [Option<(&'static str, u64)>; 2],
    texts: [Option<(&'static str, &'a str)>; 1],
}

/// The value of `type`: which [`MovementKind`] a movement object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindTag {
    Receipt,
    Adjustment,
    Count,
    Sale,
    Reservation,
    Cancellation,
    Fulfilment,
    Return,
    Inbound,
    InboundReceipt,
    TransferDispatch,
    TransferReceipt,
    OrderEdit,
    Reassign,
}

/// A field read as absent (`None`), `null` (`Some(None)`) or a value (`Some(Some(v))`).
type Tri<T> = Option<Option<T>>;

/// Reads a present field, keeping `null` apart from absence (see [`Tri`]).
fn present<'de, D, T>(deserializer: D) -> Result<Tri<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Every field any kind of movement has, read flat from one JSON object in one pass.
///
/// The derived [`Movement`] deserializer (flattened, internally tagged) buffers the whole
/// object before reading it; this one reads each field straight into its final type.
#[derive(Default, Deserialize)]
struct FlatFields {
    #[serde(default, deserialize_with = "present")]
    schema_version: Tri<u32>,
    #[serde(default, deserialize_with = "present")]
    sku: Tri<Sku>,
    #[serde(default, deserialize_with = "present")]
    idempotency_key: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    source: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    occurred_at_ms: Tri<i64>,
    #[serde(default, rename = "type", deserialize_with = "present")]
    kind: Tri<KindTag>,
    #[serde(default, deserialize_with = "present")]
    location: Tri<LocationId>,
    #[serde(default, deserialize_with = "present")]
    quantity: Tri<u64>,
    #[serde(default, deserialize_with = "present")]
    delta: Tri<i64>,
    #[serde(default, deserialize_with = "present")]
    reason: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    on_hand: Tri<u64>,
    #[serde(default, deserialize_with = "present")]
    watermark: Tri<i64>,
    #[serde(default, deserialize_with = "present")]
    reservation: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    route: Tri<Vec<LocationId>>,
    #[serde(default, deserialize_with = "present")]
    expires_at_ms: Tri<i64>,
    #[serde(default, deserialize_with = "present")]
    purchase_order: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    expected_at_ms: Tri<i64>,
    #[serde(default, deserialize_with = "present")]
    transfer: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    from: Tri<LocationId>,
    #[serde(default, deserialize_with = "present")]
    to: Tri<LocationId>,
    #[serde(default, deserialize_with = "present")]
    basis: Tri<CountBasis>,
    #[serde(default, deserialize_with = "present")]
    booked: Tri<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    write_off: Tri<bool>,
    #[serde(default, deserialize_with = "present")]
    restock: Tri<bool>,
    #[serde(default, deserialize_with = "present")]
    rejected: Tri<u64>,
    #[serde(default, deserialize_with = "present")]
    rejected_reason: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    quarantine: Tri<LocationId>,
    #[serde(default, deserialize_with = "present")]
    version: Tri<i64>,
}

/// A required field: a value, not absent and not `null`.
fn required<T>(field: Tri<T>) -> Option<T> {
    field.flatten()
}

/// A field with a default: absent gives the default, `null` is refused.
fn defaulted<T>(field: Tri<T>, default: impl FnOnce() -> T) -> Option<T> {
    match field {
        None => Some(default()),
        Some(value) => value,
    }
}

/// An optional field: absent and `null` both give `None`.
fn optional<T>(field: Tri<T>) -> Option<T> {
    field.flatten()
}

impl FlatFields {
    /// The movement these fields describe, read as the derived [`Movement`] deserializer
    /// would; `None` when that deserializer would refuse them, or when the idempotency key
    /// is absent or `null` and `fallback_key` gives none.
    fn into_movement(self, fallback_key: impl FnOnce() -> Option<String>) -> Option<Movement> {
        let kind = match required(self.kind)? {
            KindTag::Receipt => MovementKind::Receipt {
                location: required(self.location)?,
                quantity: required(self.quantity)?,
            },
            KindTag::Adjustment => MovementKind::Adjustment {
                location: required(self.location)?,
                delta: required(self.delta)?,
                reason: defaulted(self.reason, String::new)?,
            },
            KindTag::Count => MovementKind::Count {
                location: required(self.location)?,
                on_hand: self.on_hand?,
                watermark: required(self.watermark)?,
                basis: optional(self.basis),
                booked: optional(self.booked),
            },
            KindTag::Sale => MovementKind::Sale {
                reservation: required(self.reservation)?,
                quantity: required(self.quantity)?,
                location: optional(self.location),
                route: defaulted(self.route, Vec::new)?,
            },
            KindTag::Reservation => MovementKind::Reservation {
                reservation: required(self.reservation)?,
                quantity: required(self.quantity)?,
                location: optional(self.location),
                route: defaulted(self.route, Vec::new)?,
                expires_at_ms: optional(self.expires_at_ms),
            },
            KindTag::Cancellation => MovementKind::Cancellation {
                reservation: required(self.reservation)?,
                quantity: optional(self.quantity),
                reason: optional(self.reason),
                write_off: defaulted(self.write_off, || false)?,
            },
            KindTag::Fulfilment => MovementKind::Fulfilment {
                reservation: required(self.reservation)?,
                quantity: required(self.quantity)?,
                location: optional(self.location),
            },
            KindTag::Return => MovementKind::Return {
                location: optional(self.location),
                quantity: required(self.quantity)?,
                reservation: optional(self.reservation),
                restock: defaulted(self.restock, default_true)?,
            },
            KindTag::Inbound => MovementKind::Inbound {
                purchase_order: required(self.purchase_order)?,
                location: required(self.location)?,
                quantity: required(self.quantity)?,
                expected_at_ms: required(self.expected_at_ms)?,
            },
            KindTag::InboundReceipt => MovementKind::InboundReceipt {
                purchase_order: required(self.purchase_order)?,
                quantity: required(self.quantity)?,
            },
            KindTag::TransferDispatch => MovementKind::TransferDispatch {
                transfer: required(self.transfer)?,
                from: required(self.from)?,
                to: required(self.to)?,
                quantity: required(self.quantity)?,
            },
            KindTag::TransferReceipt => MovementKind::TransferReceipt {
                transfer: required(self.transfer)?,
                quantity: required(self.quantity)?,
                rejected: defaulted(self.rejected, || 0)?,
                rejected_reason: optional(self.rejected_reason),
                quarantine: optional(self.quarantine),
            },
            KindTag::OrderEdit => MovementKind::OrderEdit {
                reservation: required(self.reservation)?,
                quantity: required(self.quantity)?,
                version: required(self.version)?,
                location: optional(self.location),
                route: defaulted(self.route, Vec::new)?,
            },
            KindTag::Reassign => MovementKind::Reassign {
                reservation: required(self.reservation)?,
                to: required(self.to)?,
            },
        };
        let idempotency_key = match self.idempotency_key {
            Some(Some(key)) => key,
            None | Some(None) => fallback_key()?,
        };
        Some(Movement {
            schema_version: defaulted(self.schema_version, default_schema_version)?,
            sku: required(self.sku)?,
            idempotency_key,
            source: defaulted(self.source, default_source)?,
            occurred_at_ms: optional(self.occurred_at_ms),
            kind,
        })
    }
}

/// The fast, strict reader of movement JSON (REST bodies and Kafka records).
///
/// It reads a movement object field by field straight into [`Movement`], without an
/// intermediate `serde_json::Value` and without the buffering of the derived (flattened,
/// internally tagged) deserializer. It is strict: it fails on anything the derived
/// deserializer might read differently or refuse — a duplicate field, `null` for a field
/// that is not optional, a field of another kind with a value of the wrong type, an array
/// instead of an object. Callers then read the same text with the derived deserializer,
/// which accepts or explains it exactly as before; the fast reader never accepts a text the
/// derived one refuses, and then yields the same movement.
///
/// Validation ([`Movement::validate`]) is not part of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastMovementReader;

impl FastMovementReader {
    /// One movement object from `json`; `None` when the fast reader cannot vouch for it
    /// (see the type's docs), including a missing or `null` idempotency key.
    pub fn movement(json: &[u8]) -> Option<Movement> {
        Self::movement_or_key(json, || None)
    }

    /// Like [`FastMovementReader::movement`], giving a movement whose idempotency key is
    /// absent or `null` the key `fallback_key` returns (`None`: refuse it).
    pub fn movement_or_key(
        json: &[u8],
        fallback_key: impl FnOnce() -> Option<String>,
    ) -> Option<Movement> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let fields = StrictObject::deserialize(&mut deserializer).ok()?.0;
        deserializer.end().ok()?;
        fields.into_movement(fallback_key)
    }

    /// A body holding one movement object (`Some((movements, false))`) or a non-empty array
    /// of at most `max` of them (`Some((movements, true))`); `None` when the fast reader
    /// cannot vouch for every movement, or the array is empty or longer than `max`.
    pub fn body(json: &[u8], max: usize) -> Option<(Vec<Movement>, bool)> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let body =
            serde::Deserializer::deserialize_any(&mut deserializer, BodyVisitor { max }).ok()?;
        deserializer.end().ok()?;
        if body.0.is_empty() {
            return None;
        }
        Some(body)
    }
}

/// One movement object's fields, read only from a JSON object (never from an array, which
/// a derived struct deserializer would also take).
struct StrictObject(FlatFields);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
    type Value = StrictObject;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a movement object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let map = CheckUnknown {
            inner: map,
            unknown: false,
        };
        FlatFields::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(StrictObject)
    }
}

/// The JSON names of [`FlatFields`]. A name missing here is only checked twice (its
/// value then reaches its field as `()` and the fast reader defers), never let through.
const FLAT_FIELDS: &[&str] = &[
    "schema_version",
    "sku",
    "idempotency_key",
    "source",
    "occurred_at_ms",
    "type",
    "location",
    "quantity",
    "delta",
    "reason",
    "on_hand",
    "watermark",
    "reservation",
    "route",
    "expires_at_ms",
    "purchase_order",
    "expected_at_ms",
    "transfer",
    "from",
    "to",
    "basis",
    "booked",
    "write_off",
    "restock",
    "rejected",
    "rejected_reason",
    "quarantine",
    "version",
];

/// A movement object's map access that reads an unknown field's value as the derived
/// deserializer does (which buffers it: strings must be UTF-8 without lone surrogates,
/// numbers in `f64` range) instead of skipping it unchecked as serde_json's `IgnoredAny`
/// does; otherwise the fast reader would accept texts the derived one refuses (found by
/// fuzzing: `src/fuzzing.rs`).
struct CheckUnknown<A> {
    inner: A,
    /// Whether the key just read is not a [`FlatFields`] field.
    unknown: bool,
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for CheckUnknown<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::IntoDeserializer;
        let Some(key) = self.inner.next_key::<Key<'de>>()? else {
            return Ok(None);
        };
        let key: &str = match &key {
            Key::Borrowed(key) => key,
            Key::Owned(key) => key,
        };
        self.unknown = !FLAT_FIELDS.contains(&key);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        use serde::de::IntoDeserializer;
        if self.unknown {
            self.inner.next_value::<Checked>()?;
            seed.deserialize(().into_deserializer())
        } else {
            self.inner.next_value_seed(seed)
        }
    }
}

/// An object key, borrowed from the text unless it has escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(key))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(key.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value, read (and so checked) in full and then dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CheckedVisitor;
        impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
            type Value = Checked;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Checked, S::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Checked, M::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        deserializer.deserialize_any(CheckedVisitor)
    }
}

/// A REST body: one movement object or an array of them.
struct BodyVisitor {
    max: usize,
}

impl<'de> serde::de::Visitor<'de> for BodyVisitor {
    type Value = (Vec<Movement>, bool);

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a movement object or an array of them")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let fields = ObjectVisitor.visit_map(map)?.0;
        let movement = fields
            .into_movement(|| None)
            .ok_or_else(|| serde::de::Error::custom("not a movement"))?;
        Ok((vec![movement], false))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut movements = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(object) = seq.next_element::<StrictObject>()? {
            if movements.len() == self.max {
                return Err(serde::de::Error::custom("too many movements"));
            }
            let movement = object
                .0
                .into_movement(|| None)
                .ok_or_else(|| serde::de::Error::custom("not a movement"))?;
            movements.push(movement);
        }
        Ok((movements, true))
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
    fn the_byte_check_for_control_characters_agrees_with_char_is_control() {
        let mut controls = 0;
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            for text in [
                c.to_string(),
                format!("ab{c}"),
                format!("{c}é"),
                format!("x{c}\u{a0}"),
            ] {
                assert_eq!(
                    has_control(&text),
                    text.chars().any(char::is_control),
                    "{:?}",
                    text
                );
            }
            controls += usize::from(c.is_control());
        }
        // Sanity: Cc is the 65 code points U+0000–U+001F and U+007F–U+009F.
        assert_eq!(controls, 65);
        assert!(!has_control("Tafel 120/80 eiken Größe-XL\u{a0}"));
        assert!(has_control("line\u{85}break"));
    }

    #[test]
    fn find_location_names_the_same_first_location_as_locations() {
        let kinds = [
            MovementKind::Sale {
                reservation: "o-1".into(),
                quantity: 1,
                location: Some("WH-1".into()),
                route: vec!["WH-2".into(), "WH-3".into()],
            },
            MovementKind::TransferDispatch {
                transfer: "t-1".into(),
                from: "WH-2".into(),
                to: "WH-3".into(),
                quantity: 1,
            },
            MovementKind::Reservation {
                reservation: "o-2".into(),
                quantity: 1,
                location: None,
                route: vec!["WH-1".into(), "WH-3".into()],
                expires_at_ms: None,
            },
            MovementKind::Cancellation {
                reservation: "o-2".into(),
                quantity: None,
                reason: None,
                write_off: false,
            },
        ];
        for kind in kinds {
            let movement = Movement {
                schema_version: SCHEMA_VERSION,
                sku: "SKU-1".into(),
                idempotency_key: "k".into(),
                source: String::new(),
                occurred_at_ms: None,
                kind,
            };
            for unknown in ["WH-1", "WH-2", "WH-3", "WH-9"] {
                let expected = movement
                    .locations()
                    .into_iter()
                    .find(|(_, location)| location.as_str() == unknown);
                assert_eq!(
                    movement.find_location(|location| location.as_str() == unknown),
                    expected,
                    "{movement:?} {unknown}"
                );
            }
        }
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

#[cfg(test)]
mod fast_reader_tests {
    use super::*;
    use proptest::prelude::*;

    /// What the derived deserializer makes of `json` (through `serde_json::Value`, as the
    /// REST and Kafka paths did before the fast reader).
    fn exact(json: &str) -> Option<Movement> {
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        serde_json::from_value(value).ok()
    }

    /// Texts the fast reader must either read exactly as the derived deserializer or
    /// leave to it (`None`).
    const CORPUS: &[&str] = &[
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1,"x":[1,{"y":null}]}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1,"delta":"not a number"}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1,"route":null}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1,"quantity":2}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":null,"quantity":1}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","quantity":1}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":-1}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1.0}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":18446744073709551615}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":18446744073709551616}"#,
        r#"{"sku":"A","idempotency_key":null,"type":"receipt","location":"W","quantity":1}"#,
        r#"{"sku":"A","type":"receipt","location":"W","quantity":1}"#,
        r#"{"sku":null,"idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#,
        r#"{"schema_version":null,"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#,
        r#"{"schema_version":4294967296,"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#,
        r#"{"source":null,"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#,
        r#"{"occurred_at_ms":null,"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#,
        r#"{"s\u006bu":"A\n\u00e9","idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"teleport","location":"W","quantity":1}"#,
        r#"{"sku":"A","idempotency_key":"k","type":5,"location":"W","quantity":1}"#,
        r#"{"sku":"A","idempotency_key":"k","location":"W","quantity":1}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"adjustment","location":"W","delta":-3}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"adjustment","location":"W","delta":-3,"reason":null}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"count","location":"W","on_hand":3,"watermark":-9}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"sale","reservation":"r","quantity":1,"location":null,"route":["W","V"]}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"sale","reservation":"r","quantity":1,"route":null}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"reservation","reservation":"r","quantity":1,"location":"W","expires_at_ms":null}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"cancellation","reservation":"r","quantity":null,"reason":null}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"cancellation","reservation":"r","quantity":2,"reason":"x"}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"fulfilment","reservation":"r","quantity":2}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"return","location":"W","quantity":2,"reservation":null}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"inbound","purchase_order":"P","location":"W","quantity":0,"expected_at_ms":7}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"inbound_receipt","purchase_order":"P","quantity":3}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"transfer_dispatch","transfer":"T","from":"W","to":"V","quantity":3}"#,
        r#"{"sku":"A","idempotency_key":"k","type":"transfer_receipt","transfer":"T","quantity":3}"#,
        r#"["A","k","src",null,"receipt","W",1]"#,
        r#"[1,"A","k","src",null,"receipt","W",1]"#,
        r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1} x"#,
        r#"{}"#,
        r#"null"#,
    ];

    #[test]
    fn the_fast_reader_agrees_with_the_derived_deserializer_or_defers_to_it() {
        let mut read = 0;
        for json in CORPUS {
            let fast = FastMovementReader::movement(json.as_bytes());
            if fast.is_some() {
                read += 1;
                assert_eq!(fast, exact(json), "{json}");
            }
        }
        // The corpus's ordinary shapes are read by the fast path, not deferred.
        assert!(read >= 18, "only {read} read by the fast path");
    }

    #[test]
    fn a_missing_or_null_key_takes_the_fallback_only_when_one_is_given() {
        for json in [
            r#"{"sku":"A","type":"receipt","location":"W","quantity":1}"#,
            r#"{"sku":"A","idempotency_key":null,"type":"receipt","location":"W","quantity":1}"#,
        ] {
            assert_eq!(FastMovementReader::movement(json.as_bytes()), None);
            let movement =
                FastMovementReader::movement_or_key(json.as_bytes(), || Some("fb".to_owned()))
                    .unwrap();
            assert_eq!(movement.idempotency_key, "fb");
        }
    }

    /// Found by fuzzing (`cargo fuzz run kafka_movement`, `rest_movements`): an unknown
    /// field's value was skipped unchecked, so the fast reader accepted texts the derived
    /// deserializer refuses (the Kafka decoder then took a record it used to dead-letter).
    #[test]
    fn unknown_fields_are_checked_like_the_derived_deserializer_checks_them() {
        let movement =
            br#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1,"#;
        for unknown in [
            &b"\"x\":\"\xff\"}"[..],
            br#""x":"\ud800"}"#,
            br#""x":1e400}"#,
            br#""x":[{"y":"\udc00"}]}"#,
        ] {
            let text = [&movement[..], unknown].concat();
            assert!(serde_json::from_slice::<Movement>(&text).is_err());
            assert_eq!(FastMovementReader::movement(&text), None);
            let body = [b"[", &text[..], b"]"].concat();
            assert_eq!(FastMovementReader::body(&body, 2), None);
        }
        let fine = [
            &movement[..],
            br#""x":{"y":["\u00e9",1e300,-1,null]},"z":true}"#,
        ]
        .concat();
        let exact: Movement = serde_json::from_slice(&fine).unwrap();
        assert_eq!(FastMovementReader::movement(&fine), Some(exact));
    }

    #[test]
    fn bodies_are_an_object_or_a_bounded_non_empty_array() {
        let one =
            r#"{"sku":"A","idempotency_key":"k","type":"receipt","location":"W","quantity":1}"#;
        let (movements, batch) = FastMovementReader::body(one.as_bytes(), 2).unwrap();
        assert_eq!((movements.len(), batch), (1, false));
        let two = format!("[{one},{one}]");
        let (movements, batch) = FastMovementReader::body(two.as_bytes(), 2).unwrap();
        assert_eq!((movements.len(), batch), (2, true));
        assert_eq!(FastMovementReader::body(two.as_bytes(), 1), None);
        assert_eq!(FastMovementReader::body(b"[]", 2), None);
        assert_eq!(FastMovementReader::body(b"42", 2), None);
        let bad = format!("[{one},{{\"sku\":\"A\"}}]");
        assert_eq!(FastMovementReader::body(bad.as_bytes(), 2), None);
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof!["[a-zA-Z0-9:_-]{0,12}", any::<String>(),]
    }

    fn kind() -> impl Strategy<Value = MovementKind> {
        super::strategies::kind(text().boxed())
    }

    proptest! {
        #[test]
        fn every_serialised_movement_reads_back_through_the_fast_path(
            schema_version in any::<u32>(),
            sku in text(),
            idempotency_key in text(),
            source in text(),
            occurred_at_ms in proptest::option::of(any::<i64>()),
            kind in kind(),
        ) {
            let movement = Movement {
                schema_version,
                sku: Sku(sku),
                idempotency_key,
                source,
                occurred_at_ms,
                kind,
            };
            let json = serde_json::to_string(&movement).unwrap();
            prop_assert_eq!(FastMovementReader::movement(json.as_bytes()), Some(movement.clone()));
            prop_assert_eq!(exact(&json), Some(movement));
        }
    }
}

/// Proptest strategies over every movement kind, shared by the tests of the decoders (in
/// this module) and of the store's codec (`store::codec`).
#[cfg(test)]
pub(crate) mod strategies {
    use super::{LocationId, MovementKind};
    use proptest::prelude::*;

    /// Any movement kind, its ids, reasons and locations drawn from `text`.
    pub(crate) fn kind(text: BoxedStrategy<String>) -> impl Strategy<Value = MovementKind> {
        let location = {
            let text = text.clone();
            move || text.clone().prop_map(LocationId::from)
        };
        prop_oneof![
            (location(), any::<u64>())
                .prop_map(|(location, quantity)| MovementKind::Receipt { location, quantity }),
            (location(), any::<i64>(), text.clone()).prop_map(|(location, delta, reason)| {
                MovementKind::Adjustment {
                    location,
                    delta,
                    reason,
                }
            }),
            (
                location(),
                proptest::option::of(any::<u64>()),
                any::<i64>(),
                proptest::option::of(any::<bool>()),
                proptest::option::of(proptest::collection::vec(text.clone(), 0..3))
            )
                .prop_map(|(location, on_hand, watermark, book, booked)| {
                    MovementKind::Count {
                        location,
                        on_hand,
                        watermark,
                        basis: match book {
                            Some(true) => Some(super::CountBasis::Book),
                            Some(false) => Some(super::CountBasis::Physical),
                            None => None,
                        },
                        booked,
                    }
                }),
            (
                text.clone(),
                any::<u64>(),
                proptest::option::of(location()),
                proptest::collection::vec(location(), 0..3)
            )
                .prop_map(|(reservation, quantity, location, route)| {
                    MovementKind::Sale {
                        reservation,
                        quantity,
                        location,
                        route,
                    }
                }),
            (
                text.clone(),
                any::<u64>(),
                proptest::option::of(location()),
                proptest::collection::vec(location(), 0..3),
                proptest::option::of(any::<i64>())
            )
                .prop_map(|(reservation, quantity, location, route, expires_at_ms)| {
                    MovementKind::Reservation {
                        reservation,
                        quantity,
                        location,
                        route,
                        expires_at_ms,
                    }
                }),
            (
                text.clone(),
                proptest::option::of(any::<u64>()),
                proptest::option::of(text.clone()),
                any::<bool>()
            )
                .prop_map(|(reservation, quantity, reason, write_off)| {
                    MovementKind::Cancellation {
                        reservation,
                        quantity,
                        reason,
                        write_off,
                    }
                }),
            (text.clone(), any::<u64>(), proptest::option::of(location())).prop_map(
                |(reservation, quantity, location)| MovementKind::Fulfilment {
                    reservation,
                    quantity,
                    location,
                }
            ),
            (
                proptest::option::of(location()),
                any::<u64>(),
                proptest::option::of(text.clone()),
                any::<bool>()
            )
                .prop_map(|(location, quantity, reservation, restock)| {
                    MovementKind::Return {
                        location,
                        quantity,
                        reservation,
                        restock,
                    }
                }),
            (
                text.clone(),
                any::<u64>(),
                any::<i64>(),
                proptest::option::of(location()),
                proptest::collection::vec(location(), 0..3)
            )
                .prop_map(|(reservation, quantity, version, location, route)| {
                    MovementKind::OrderEdit {
                        reservation,
                        quantity,
                        version,
                        location,
                        route,
                    }
                }),
            (text.clone(), location())
                .prop_map(|(reservation, to)| MovementKind::Reassign { reservation, to }),
            (text.clone(), location(), any::<u64>(), any::<i64>()).prop_map(
                |(purchase_order, location, quantity, expected_at_ms)| MovementKind::Inbound {
                    purchase_order,
                    location,
                    quantity,
                    expected_at_ms,
                }
            ),
            (text.clone(), any::<u64>()).prop_map(|(purchase_order, quantity)| {
                MovementKind::InboundReceipt {
                    purchase_order,
                    quantity,
                }
            }),
            (text.clone(), location(), location(), any::<u64>()).prop_map(
                |(transfer, from, to, quantity)| MovementKind::TransferDispatch {
                    transfer,
                    from,
                    to,
                    quantity,
                }
            ),
            (
                text.clone(),
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(text.clone()),
                proptest::option::of(location())
            )
                .prop_map(
                    |(transfer, quantity, rejected, rejected_reason, quarantine)| {
                        MovementKind::TransferReceipt {
                            transfer,
                            quantity,
                            rejected,
                            rejected_reason,
                            quarantine,
                        }
                    }
                ),
        ]
    }
}
