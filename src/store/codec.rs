//! The stored encoding of movements and snapshots: a format byte first, then a compact body.
//!
//! Owns: [`encode_movement`] / [`decode_movement`] (our own small codec for
//! [`Movement`]), [`encode_state`] / [`decode_state`] (CBOR for [`SkuState`]), and
//! [`CodecError`].
//!
//! Format bytes never collide with JSON text, which always starts with `{` (0x7B) as
//! stored by layouts before the binary one: a row that starts with `{` is decoded as JSON,
//! so old rows keep loading without a migration.
//!
//! Movement body ([`MOVEMENT_V2`]; [`MOVEMENT_V1`] rows still read): the SKU and the idempotency key are not repeated (the
//! event row carries both as columns); then `schema_version` (varint), `source` (string),
//! `occurred_at_ms` (option of zigzag varint), the kind's tag byte and the kind's fields in
//! declaration order. Strings are a varint byte length and UTF-8 bytes; options a 0/1
//! byte and the value; lists a varint count and the items. Chosen over a serde format
//! because `MovementKind` is internally tagged (non-self-describing formats cannot read
//! it) and a self-describing one repeats every field name (BENCHMARKS.md, `cargo bench
//! --bench store`).
//!
//! Snapshot body ([`STATE_CBOR_V1`]): the state in CBOR through serde, which follows every
//! change of the state's serde shape (defaults, skipped empty fields) as JSON did.
//!
//! May depend on: `domain`.

use crate::domain::{CountBasis, LocationId, Movement, MovementKind, Sku, SkuState};

/// Format byte of a movement in the compact binary body described in the module docs, as
/// written before the order-lifecycle fields (read only).
pub const MOVEMENT_V1: u8 = 0x01;

/// Format byte of a movement in the body described in the module docs with the
/// order-lifecycle fields: a count's `on_hand` is an option followed by `basis` (byte: 0
/// physical, 1 book, 2 absent) and
/// `booked` (option of a string list); a cancellation ends with `write_off` (byte); a
/// fulfilment with its `location` option; a transfer receipt with `rejected` (varint),
/// `rejected_reason` and `quarantine` (options); a return's `location` is an option and it
/// ends with `restock` (byte); and the kinds `order_edit` and `reassign` exist.
pub const MOVEMENT_V2: u8 = 0x02;

/// Format byte of a snapshot whose body is the state in CBOR.
pub const STATE_CBOR_V1: u8 = 0x01;

/// The first byte of JSON text as stored by earlier layouts (an object).
const JSON_OBJECT: u8 = b'{';

/// A stored value that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value is empty.
    #[error("empty value")]
    Empty,
    /// The format byte is not one this build reads.
    #[error("unknown format byte {0:#04x}")]
    UnknownFormat(u8),
    /// The body ends before its last field.
    #[error("truncated at byte {at}")]
    Truncated {
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// Bytes are left after the last field.
    #[error("{left} unexpected trailing bytes")]
    Trailing {
        /// How many bytes were left.
        left: usize,
    },
    /// A varint is longer than 10 bytes or overflows 64 bits.
    #[error("bad varint at byte {at}")]
    Varint {
        /// Offset of the varint.
        at: usize,
    },
    /// A number does not fit its field.
    #[error("number out of range at byte {at}")]
    Range {
        /// Offset of the number.
        at: usize,
    },
    /// A string is not UTF-8.
    #[error("invalid UTF-8 at byte {at}")]
    Utf8 {
        /// Offset of the string.
        at: usize,
    },
    /// An option flag or a kind tag has an unknown value.
    #[error("unknown tag {tag} at byte {at}")]
    Tag {
        /// The tag read.
        tag: u8,
        /// Offset of the tag.
        at: usize,
    },
    /// JSON text (an earlier layout's row) does not parse.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// CBOR does not parse into the state.
    #[error("cbor: {0}")]
    Cbor(String),
}

// Kind tags: stable on disk, never reuse a number.
const RECEIPT: u8 = 1;
const ADJUSTMENT: u8 = 2;
const COUNT: u8 = 3;
const SALE: u8 = 4;
const RESERVATION: u8 = 5;
const CANCELLATION: u8 = 6;
const FULFILMENT: u8 = 7;
const INBOUND: u8 = 8;
const INBOUND_RECEIPT: u8 = 9;
const TRANSFER_DISPATCH: u8 = 10;
const TRANSFER_RECEIPT: u8 = 11;
const RETURN: u8 = 12;
const ORDER_EDIT: u8 = 13;
const REASSIGN: u8 = 14;

/// Encodes `movement` (without its SKU and idempotency key, which the event row carries)
/// as [`MOVEMENT_V2`].
pub fn encode_movement(movement: &Movement) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + movement.source.len());
    encode_movement_into(
        &mut out,
        movement.schema_version,
        &movement.source,
        movement.occurred_at_ms,
        &movement.kind,
    );
    out
}

/// Appends to `out` exactly the bytes [`encode_movement`] gives for a movement with these
/// `schema_version`, `source`, `occurred_at_ms` and `kind`, so a caller can encode a
/// movement with some header fields replaced without copying it (the ledger's movement
/// hash encodes its canonical form this way).
pub fn encode_movement_into(
    out: &mut Vec<u8>,
    schema_version: u32,
    source: &str,
    occurred_at_ms: Option<i64>,
    kind: &MovementKind,
) {
    out.push(MOVEMENT_V2);
    put_varint(out, u64::from(schema_version));
    put_str(out, source);
    put_option(out, occurred_at_ms, put_signed);
    match kind {
        MovementKind::Receipt { location, quantity } => {
            out.push(RECEIPT);
            put_str(out, location.as_str());
            put_varint(out, *quantity);
        }
        MovementKind::Adjustment {
            location,
            delta,
            reason,
        } => {
            out.push(ADJUSTMENT);
            put_str(out, location.as_str());
            put_signed(out, *delta);
            put_str(out, reason);
        }
        MovementKind::Count {
            location,
            on_hand,
            watermark,
            basis,
            booked,
        } => {
            out.push(COUNT);
            put_str(out, location.as_str());
            put_option(out, *on_hand, put_varint);
            put_signed(out, *watermark);
            out.push(match basis {
                Some(CountBasis::Physical) => 0,
                Some(CountBasis::Book) => 1,
                None => 2,
            });
            put_option(out, booked.as_deref(), put_strings);
        }
        MovementKind::Sale {
            reservation,
            quantity,
            location,
            route,
        } => {
            out.push(SALE);
            put_str(out, reservation);
            put_varint(out, *quantity);
            put_option(out, location.as_ref(), put_location);
            put_route(out, route);
        }
        MovementKind::Reservation {
            reservation,
            quantity,
            location,
            route,
            expires_at_ms,
        } => {
            out.push(RESERVATION);
            put_str(out, reservation);
            put_varint(out, *quantity);
            put_option(out, location.as_ref(), put_location);
            put_route(out, route);
            put_option(out, *expires_at_ms, put_signed);
        }
        MovementKind::Cancellation {
            reservation,
            quantity,
            reason,
            write_off,
        } => {
            out.push(CANCELLATION);
            put_str(out, reservation);
            put_option(out, *quantity, put_varint);
            put_option(out, reason.as_deref(), put_str);
            out.push(u8::from(*write_off));
        }
        MovementKind::Fulfilment {
            reservation,
            quantity,
            location,
        } => {
            out.push(FULFILMENT);
            put_str(out, reservation);
            put_varint(out, *quantity);
            put_option(out, location.as_ref(), put_location);
        }
        MovementKind::Inbound {
            purchase_order,
            location,
            quantity,
            expected_at_ms,
        } => {
            out.push(INBOUND);
            put_str(out, purchase_order);
            put_str(out, location.as_str());
            put_varint(out, *quantity);
            put_signed(out, *expected_at_ms);
        }
        MovementKind::InboundReceipt {
            purchase_order,
            quantity,
        } => {
            out.push(INBOUND_RECEIPT);
            put_str(out, purchase_order);
            put_varint(out, *quantity);
        }
        MovementKind::TransferDispatch {
            transfer,
            from,
            to,
            quantity,
        } => {
            out.push(TRANSFER_DISPATCH);
            put_str(out, transfer);
            put_str(out, from.as_str());
            put_str(out, to.as_str());
            put_varint(out, *quantity);
        }
        MovementKind::TransferReceipt {
            transfer,
            quantity,
            rejected,
            rejected_reason,
            quarantine,
        } => {
            out.push(TRANSFER_RECEIPT);
            put_str(out, transfer);
            put_varint(out, *quantity);
            put_varint(out, *rejected);
            put_option(out, rejected_reason.as_deref(), put_str);
            put_option(out, quarantine.as_ref(), put_location);
        }
        MovementKind::Return {
            location,
            quantity,
            reservation,
            restock,
        } => {
            out.push(RETURN);
            put_option(out, location.as_ref(), put_location);
            put_varint(out, *quantity);
            put_option(out, reservation.as_deref(), put_str);
            out.push(u8::from(*restock));
        }
        MovementKind::OrderEdit {
            reservation,
            quantity,
            version,
            location,
            route,
        } => {
            out.push(ORDER_EDIT);
            put_str(out, reservation);
            put_varint(out, *quantity);
            put_signed(out, *version);
            put_option(out, location.as_ref(), put_location);
            put_route(out, route);
        }
        MovementKind::Reassign { reservation, to } => {
            out.push(REASSIGN);
            put_str(out, reservation);
            put_str(out, to.as_str());
        }
    }
}

/// Decodes a stored movement: [`MOVEMENT_V2`] or [`MOVEMENT_V1`] (with `sku` and `idempotency_key` from the
/// event row) or JSON text of an earlier layout (which carries both itself).
///
/// Errors: [`CodecError`] naming what is wrong.
pub fn decode_movement(
    bytes: &[u8],
    sku: &str,
    idempotency_key: &str,
) -> Result<Movement, CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&JSON_OBJECT) => Ok(serde_json::from_slice(bytes)?),
        Some(&format @ (MOVEMENT_V1 | MOVEMENT_V2)) => {
            let mut reader = Reader {
                bytes,
                at: 1,
                v2: format == MOVEMENT_V2,
            };
            let movement = reader.movement(sku, idempotency_key)?;
            reader.finish()?;
            Ok(movement)
        }
        Some(&other) => Err(CodecError::UnknownFormat(other)),
    }
}

/// The movement as the JSON the history and dashboard show (the same value the JSON
/// layout stored).
///
/// Errors: as [`decode_movement`].
pub fn movement_json_value(
    bytes: &[u8],
    sku: &str,
    idempotency_key: &str,
) -> Result<serde_json::Value, CodecError> {
    if bytes.first() == Some(&JSON_OBJECT) {
        return Ok(serde_json::from_slice(bytes)?);
    }
    let movement = decode_movement(bytes, sku, idempotency_key)?;
    Ok(serde_json::to_value(&movement)?)
}

/// Whether a stored movement (either format) has the given `source` and kind name (`type`
/// in JSON), each only when given; reads no more of a binary body than its head.
///
/// Errors: as [`decode_movement`].
pub fn movement_matches(
    bytes: &[u8],
    source: Option<&str>,
    kind: Option<&str>,
) -> Result<bool, CodecError> {
    if source.is_none() && kind.is_none() {
        return Ok(true);
    }
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&JSON_OBJECT) => {
            /// The two fields the filter reads; the rest of the object is skipped.
            #[derive(serde::Deserialize)]
            struct Head {
                source: Option<String>,
                #[serde(rename = "type")]
                kind: Option<String>,
            }
            let head: Head = serde_json::from_slice(bytes)?;
            Ok(
                source.is_none_or(|wanted| head.source.as_deref() == Some(wanted))
                    && kind.is_none_or(|wanted| head.kind.as_deref() == Some(wanted)),
            )
        }
        Some(&format @ (MOVEMENT_V1 | MOVEMENT_V2)) => {
            let mut reader = Reader {
                bytes,
                at: 1,
                v2: format == MOVEMENT_V2,
            };
            reader.varint()?;
            let stored_source = reader.str_slice()?;
            reader.option(Reader::signed)?;
            let at = reader.at;
            let tag = reader.byte()?;
            let name = kind_name(tag).ok_or(CodecError::Tag { tag, at })?;
            Ok(source.is_none_or(|wanted| stored_source == wanted)
                && kind.is_none_or(|wanted| name == wanted))
        }
        Some(&other) => Err(CodecError::UnknownFormat(other)),
    }
}

/// The kind name (`MovementKind::name`) of a kind tag.
fn kind_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        RECEIPT => "receipt",
        ADJUSTMENT => "adjustment",
        COUNT => "count",
        SALE => "sale",
        RESERVATION => "reservation",
        CANCELLATION => "cancellation",
        FULFILMENT => "fulfilment",
        INBOUND => "inbound",
        INBOUND_RECEIPT => "inbound_receipt",
        TRANSFER_DISPATCH => "transfer_dispatch",
        TRANSFER_RECEIPT => "transfer_receipt",
        RETURN => "return",
        ORDER_EDIT => "order_edit",
        REASSIGN => "reassign",
        _ => return None,
    })
}

/// Encodes a snapshot of `state` as [`STATE_CBOR_V1`].
pub fn encode_state(state: &SkuState) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(STATE_CBOR_V1);
    ciborium::into_writer(state, &mut out).expect("a state always serialises into memory");
    out
}

/// Decodes a stored snapshot: [`STATE_CBOR_V1`] or JSON text of an earlier layout.
///
/// Errors: [`CodecError`] naming what is wrong.
pub fn decode_state(bytes: &[u8]) -> Result<SkuState, CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&JSON_OBJECT) => Ok(serde_json::from_slice(bytes)?),
        Some(&STATE_CBOR_V1) => {
            ciborium::from_reader(&bytes[1..]).map_err(|e| CodecError::Cbor(e.to_string()))
        }
        Some(&other) => Err(CodecError::UnknownFormat(other)),
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_signed(out: &mut Vec<u8>, value: i64) {
    put_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

fn put_location(out: &mut Vec<u8>, value: &LocationId) {
    put_str(out, value.as_str());
}

fn put_option<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put(out, value);
        }
    }
}

fn put_strings(out: &mut Vec<u8>, items: &[String]) {
    put_varint(out, items.len() as u64);
    for item in items {
        put_str(out, item);
    }
}

fn put_route(out: &mut Vec<u8>, route: &[LocationId]) {
    put_varint(out, route.len() as u64);
    for location in route {
        put_location(out, location);
    }
}

/// A bounds-checked cursor over one encoded body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Reading [`MOVEMENT_V2`] (else [`MOVEMENT_V1`]).
    v2: bool,
}

impl<'a> Reader<'a> {
    fn movement(&mut self, sku: &str, idempotency_key: &str) -> Result<Movement, CodecError> {
        let schema_version = self.varint()?;
        let schema_version =
            u32::try_from(schema_version).map_err(|_| CodecError::Range { at: self.at })?;
        let source = self.string()?;
        let occurred_at_ms = self.option(Self::signed)?;
        let tag_at = self.at;
        let kind = match self.byte()? {
            RECEIPT => MovementKind::Receipt {
                location: self.location()?,
                quantity: self.varint()?,
            },
            ADJUSTMENT => MovementKind::Adjustment {
                location: self.location()?,
                delta: self.signed()?,
                reason: self.string()?,
            },
            COUNT => MovementKind::Count {
                location: self.location()?,
                on_hand: match self.v2 {
                    true => self.option(Self::varint)?,
                    false => Some(self.varint()?),
                },
                watermark: self.signed()?,
                basis: match self.v2 {
                    false => Some(CountBasis::Physical),
                    true => {
                        let at = self.at;
                        match self.byte()? {
                            0 => Some(CountBasis::Physical),
                            1 => Some(CountBasis::Book),
                            2 => None,
                            tag => return Err(CodecError::Tag { tag, at }),
                        }
                    }
                },
                booked: match self.v2 {
                    true => self.option(Self::strings)?,
                    false => None,
                },
            },
            SALE => MovementKind::Sale {
                reservation: self.string()?,
                quantity: self.varint()?,
                location: self.option(Self::location)?,
                route: self.route()?,
            },
            RESERVATION => MovementKind::Reservation {
                reservation: self.string()?,
                quantity: self.varint()?,
                location: self.option(Self::location)?,
                route: self.route()?,
                expires_at_ms: self.option(Self::signed)?,
            },
            CANCELLATION => MovementKind::Cancellation {
                reservation: self.string()?,
                quantity: self.option(Self::varint)?,
                reason: self.option(Self::string)?,
                write_off: self.v2 && self.flag()?,
            },
            FULFILMENT => MovementKind::Fulfilment {
                reservation: self.string()?,
                quantity: self.varint()?,
                location: match self.v2 {
                    true => self.option(Self::location)?,
                    false => None,
                },
            },
            INBOUND => MovementKind::Inbound {
                purchase_order: self.string()?,
                location: self.location()?,
                quantity: self.varint()?,
                expected_at_ms: self.signed()?,
            },
            INBOUND_RECEIPT => MovementKind::InboundReceipt {
                purchase_order: self.string()?,
                quantity: self.varint()?,
            },
            TRANSFER_DISPATCH => MovementKind::TransferDispatch {
                transfer: self.string()?,
                from: self.location()?,
                to: self.location()?,
                quantity: self.varint()?,
            },
            TRANSFER_RECEIPT => {
                let transfer = self.string()?;
                let quantity = self.varint()?;
                let (rejected, rejected_reason, quarantine) = match self.v2 {
                    true => (
                        self.varint()?,
                        self.option(Self::string)?,
                        self.option(Self::location)?,
                    ),
                    false => (0, None, None),
                };
                MovementKind::TransferReceipt {
                    transfer,
                    quantity,
                    rejected,
                    rejected_reason,
                    quarantine,
                }
            }
            RETURN => {
                let location = match self.v2 {
                    true => self.option(Self::location)?,
                    false => Some(self.location()?),
                };
                let quantity = self.varint()?;
                let reservation = self.option(Self::string)?;
                let restock = !self.v2 || self.flag()?;
                MovementKind::Return {
                    location,
                    quantity,
                    reservation,
                    restock,
                }
            }
            ORDER_EDIT if self.v2 => MovementKind::OrderEdit {
                reservation: self.string()?,
                quantity: self.varint()?,
                version: self.signed()?,
                location: self.option(Self::location)?,
                route: self.route()?,
            },
            REASSIGN if self.v2 => MovementKind::Reassign {
                reservation: self.string()?,
                to: self.location()?,
            },
            tag => return Err(CodecError::Tag { tag, at: tag_at }),
        };
        Ok(Movement {
            schema_version,
            sku: Sku::from(sku),
            idempotency_key: idempotency_key.to_owned(),
            source,
            occurred_at_ms,
            kind,
        })
    }

    /// A 0/1 byte.
    fn flag(&mut self) -> Result<bool, CodecError> {
        let at = self.at;
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(CodecError::Tag { tag, at }),
        }
    }

    /// A varint count and that many strings (at most one per remaining byte).
    fn strings(&mut self) -> Result<Vec<String>, CodecError> {
        let at = self.at;
        let count = self.varint()?;
        if count > (self.bytes.len() - self.at) as u64 {
            return Err(CodecError::Range { at });
        }
        let mut items = Vec::with_capacity(count as usize);
        for _ in 0..count {
            items.push(self.string()?);
        }
        Ok(items)
    }

    fn finish(&self) -> Result<(), CodecError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            left => Err(CodecError::Trailing { left }),
        }
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or(CodecError::Truncated { at: self.at })?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let start = self.at;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(CodecError::Varint { at: start });
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::Varint { at: start })
    }

    fn signed(&mut self) -> Result<i64, CodecError> {
        let raw = self.varint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn string(&mut self) -> Result<String, CodecError> {
        self.str_slice().map(str::to_owned)
    }

    fn str_slice(&mut self) -> Result<&'a str, CodecError> {
        let start = self.at;
        let len = usize::try_from(self.varint()?).map_err(|_| CodecError::Range { at: start })?;
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(CodecError::Truncated { at: self.at })?;
        let text = std::str::from_utf8(&self.bytes[self.at..end])
            .map_err(|_| CodecError::Utf8 { at: self.at })?;
        self.at = end;
        Ok(text)
    }

    fn location(&mut self) -> Result<LocationId, CodecError> {
        self.string().map(LocationId::from)
    }

    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        let at = self.at;
        match self.byte()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(CodecError::Tag { tag, at }),
        }
    }

    fn route(&mut self) -> Result<Vec<LocationId>, CodecError> {
        let count = self.varint()?;
        // Every entry takes at least one byte: never reserve more than what is left.
        let left = (self.bytes.len() - self.at) as u64;
        if count > left {
            return Err(CodecError::Truncated { at: self.at });
        }
        let mut route = Vec::with_capacity(count as usize);
        for _ in 0..count {
            route.push(self.location()?);
        }
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SCHEMA_VERSION;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-zA-Z0-9:_-]{1,24}",
            "\\PC{0,40}",
            "[a-z]{200,300}",
        ]
    }

    fn kind() -> impl Strategy<Value = MovementKind> {
        crate::domain::movement_strategies::kind(text().boxed())
    }

    fn movement() -> impl Strategy<Value = Movement> {
        (
            any::<u32>(),
            text(),
            text(),
            text(),
            proptest::option::of(any::<i64>()),
            kind(),
        )
            .prop_map(
                |(schema_version, sku, idempotency_key, source, occurred_at_ms, kind)| Movement {
                    schema_version,
                    sku: Sku::from(sku),
                    idempotency_key,
                    source,
                    occurred_at_ms,
                    kind,
                },
            )
    }

    proptest! {
        #[test]
        fn every_kind_round_trips(movement in movement()) {
            let bytes = encode_movement(&movement);
            prop_assert_eq!(bytes[0], MOVEMENT_V2);
            let back = decode_movement(&bytes, movement.sku.as_str(), &movement.idempotency_key)
                .unwrap();
            prop_assert_eq!(&back, &movement);
            let json = movement_json_value(&bytes, movement.sku.as_str(), &movement.idempotency_key)
                .unwrap();
            prop_assert_eq!(json, serde_json::to_value(&movement).unwrap());
            let name = movement.kind.name();
            prop_assert!(movement_matches(&bytes, Some(&movement.source), Some(name)).unwrap());
            let text = serde_json::to_vec(&movement).unwrap();
            prop_assert!(movement_matches(&text, Some(&movement.source), Some(name)).unwrap());
            let other = format!("{}x", movement.source);
            prop_assert!(!movement_matches(&bytes, Some(&other), None).unwrap());
            prop_assert!(!movement_matches(&text, Some(&other), None).unwrap());
            prop_assert!(!movement_matches(&bytes, None, Some("nothing")).unwrap());
        }

        #[test]
        fn every_truncation_is_an_error_not_a_panic(movement in movement()) {
            let bytes = encode_movement(&movement);
            for end in 0..bytes.len() {
                prop_assert!(decode_movement(&bytes[..end], "S", "k").is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(first) = bytes.first_mut() {
                *first = if first.is_multiple_of(2) { MOVEMENT_V1 } else { MOVEMENT_V2 };
            }
            let _ = decode_movement(&bytes, "S", "k");
        }
    }

    fn sample() -> Movement {
        Movement {
            schema_version: SCHEMA_VERSION,
            sku: "SKU-00042".into(),
            idempotency_key: "r1:m42".into(),
            source: "bench".into(),
            occurred_at_ms: Some(1_764_000_000_000),
            kind: MovementKind::Sale {
                reservation: "c:r1:o42".into(),
                quantity: 1,
                location: None,
                route: vec!["WH-1".into()],
            },
        }
    }

    #[test]
    fn json_rows_of_the_earlier_layout_still_decode() {
        let movement = sample();
        let json = serde_json::to_string(&movement).unwrap();
        assert_eq!(
            decode_movement(json.as_bytes(), "ignored", "ignored").unwrap(),
            movement
        );
        let mut state = SkuState::new("SKU-00042".into());
        state
            .apply(
                &Movement {
                    kind: MovementKind::Receipt {
                        location: "WH-1".into(),
                        quantity: 5,
                    },
                    ..movement.clone()
                },
                1,
            )
            .unwrap();
        let state_json = serde_json::to_string(&state).unwrap();
        assert_eq!(decode_state(state_json.as_bytes()).unwrap(), state);
        assert_eq!(decode_state(&encode_state(&state)).unwrap(), state);
    }

    #[test]
    fn the_binary_movement_is_much_smaller_than_json() {
        let movement = sample();
        let binary = encode_movement(&movement).len();
        let json = serde_json::to_string(&movement).unwrap().len();
        assert!(
            binary * 3 < json,
            "binary {binary} bytes, json {json} bytes"
        );
    }

    #[test]
    fn unknown_formats_and_tags_are_errors() {
        assert!(matches!(
            decode_movement(&[], "S", "k"),
            Err(CodecError::Empty)
        ));
        assert!(matches!(
            decode_movement(&[0x7f], "S", "k"),
            Err(CodecError::UnknownFormat(0x7f))
        ));
        let mut bytes = encode_movement(&sample());
        bytes.push(0);
        assert!(matches!(
            decode_movement(&bytes, "S", "k"),
            Err(CodecError::Trailing { left: 1 })
        ));
        assert!(matches!(
            decode_state(&[0x09]),
            Err(CodecError::UnknownFormat(9))
        ));
    }
}
