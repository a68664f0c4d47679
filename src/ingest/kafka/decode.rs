//! The IO-free decoder of Kafka movement messages: key and value bytes → [`Movement`].
//!
//! Rules (DESIGN.md §5):
//! - the value is a JSON object following `schemas/movement.schema.json`; unknown fields are
//!   tolerated;
//! - the message key must be present and equal to the movement's SKU (the topic is keyed by
//!   SKU so that one partition carries every movement of a SKU, in order);
//! - a movement without `idempotency_key` (absent or `null`) gets the fallback key
//!   `kafka:{topic}:{partition}:{offset}` ([`fallback_idempotency_key`]): a redelivery of
//!   the same record is then a duplicate, while the producer sending the same business
//!   event twice (two records) is not detected. An empty key is a validation error;
//! - [`Movement::validate`] must pass.

use crate::domain::{FastMovementReader, Movement};

/// Where a Kafka record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageOrigin<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

/// Why a record could not be turned into a movement. Such records go to the dead-letter
/// topic; retrying them unchanged can never succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value (a tombstone).
    #[error("message has no value")]
    MissingValue,
    /// The value is not JSON.
    #[error("value is not valid JSON: {0}")]
    InvalidJson(String),
    /// The value is JSON but not an object.
    #[error("value must be a JSON object")]
    NotAnObject,
    /// The object does not match the movement contract (missing field, wrong type,
    /// unknown `type`).
    #[error("value is not a movement: {0}")]
    InvalidMovement(String),
    /// The movement parsed but breaks the rules of [`Movement::validate`].
    #[error("movement is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The record has no key; the movements topic is keyed by SKU.
    #[error("message has no key; movements must be keyed by sku {sku}")]
    MissingKey {
        /// The movement's SKU.
        sku: String,
    },
    /// A record of another contract (e.g. an Amazon ORDER_CHANGE notification) could not
    /// be decoded.
    #[error("record is not a valid {what}: {message}")]
    Foreign {
        /// What the record should have been (`notification`).
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The record's key is not the movement's SKU.
    #[error("message key {key:?} does not match sku {sku:?}")]
    KeyMismatch {
        /// The key, lossily decoded as UTF-8.
        key: String,
        /// The movement's SKU.
        sku: String,
    },
}

impl DecodeError {
    /// A short, bounded label for metrics and the `stocksync-error-reason` header:
    /// `missing_value`, `invalid_json`, `invalid_movement`, `invalid_field` or `key_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::MissingValue => "missing_value",
            DecodeError::InvalidJson(_) | DecodeError::NotAnObject => "invalid_json",
            DecodeError::InvalidMovement(_) => "invalid_movement",
            DecodeError::Invalid(_) => "invalid_field",
            DecodeError::MissingKey { .. } | DecodeError::KeyMismatch { .. } => "key_mismatch",
            DecodeError::Foreign { .. } => "invalid_record",
        }
    }
}

/// The idempotency key given to a movement that carries none:
/// `kafka:{topic}:{partition}:{offset}`.
pub fn fallback_idempotency_key(origin: &MessageOrigin<'_>) -> String {
    format!(
        "kafka:{}:{}:{}",
        origin.topic, origin.partition, origin.offset
    )
}

/// Decodes one Kafka record into a valid movement. See the module docs for the rules.
pub fn decode_movement(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    origin: &MessageOrigin<'_>,
) -> Result<Movement, DecodeError> {
    let value = value.ok_or(DecodeError::MissingValue)?;
    let movement =
        match FastMovementReader::movement_or_key(value, || Some(fallback_idempotency_key(origin)))
        {
            Some(movement) if movement.validate().is_ok() => movement,
            _ => decode_exact(value, origin)?,
        };
    check_key(key, movement)
}

/// The exact reading of a record's value: through `serde_json::Value` and the derived
/// [`Movement`] deserializer, for every value the fast reader does not vouch for (so for
/// every refused one, whose error it explains as before).
fn decode_exact(value: &[u8], origin: &MessageOrigin<'_>) -> Result<Movement, DecodeError> {
    let mut json: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    let object = json.as_object_mut().ok_or(DecodeError::NotAnObject)?;
    let has_key = object
        .get("idempotency_key")
        .is_some_and(|key| !key.is_null());
    if !has_key {
        object.insert(
            "idempotency_key".to_owned(),
            serde_json::Value::String(fallback_idempotency_key(origin)),
        );
    }
    let movement: Movement =
        serde_json::from_value(json).map_err(|e| DecodeError::InvalidMovement(e.to_string()))?;
    movement.validate().map_err(DecodeError::Invalid)?;
    Ok(movement)
}

/// The record's key must be the movement's SKU.
fn check_key(key: Option<&[u8]>, movement: Movement) -> Result<Movement, DecodeError> {
    match key {
        None => Err(DecodeError::MissingKey {
            sku: movement.sku.0.clone(),
        }),
        Some(key) if key != movement.sku.as_str().as_bytes() => Err(DecodeError::KeyMismatch {
            key: String::from_utf8_lossy(key).into_owned(),
            sku: movement.sku.0.clone(),
        }),
        Some(_) => Ok(movement),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MovementKind;

    const ORIGIN: MessageOrigin<'static> = MessageOrigin {
        topic: "stock.movements",
        partition: 3,
        offset: 42,
    };

    fn decode(key: &str, value: &str) -> Result<Movement, DecodeError> {
        decode_movement(Some(key.as_bytes()), Some(value.as_bytes()), &ORIGIN)
    }

    #[test]
    fn decodes_a_receipt_and_ignores_unknown_fields() {
        let movement = decode(
            "SKU-A",
            r#"{"schema_version":1,"sku":"SKU-A","idempotency_key":"wms-1:r-1:1",
                "source":"wms-1","type":"receipt","location":"WH-1","quantity":10,"x":1}"#,
        )
        .unwrap();
        assert_eq!(movement.idempotency_key, "wms-1:r-1:1");
        assert_eq!(
            movement.kind,
            MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 10
            }
        );
    }

    #[test]
    fn a_count_without_a_figure_is_untracked_and_its_basis_stays_unresolved() {
        let movement = decode(
            "SKU-A",
            r#"{"sku":"SKU-A","idempotency_key":"erp-1:c-1","source":"erp-1","type":"count",
                "location":"WH-1","on_hand":null,"watermark":1767225600000}"#,
        )
        .unwrap();
        assert_eq!(
            movement.kind,
            MovementKind::Count {
                location: "WH-1".into(),
                on_hand: None,
                watermark: 1_767_225_600_000,
                basis: None,
                booked: None,
            }
        );
        let book = decode(
            "SKU-A",
            r#"{"sku":"SKU-A","idempotency_key":"erp-1:c-2","source":"erp-1","type":"count",
                "location":"WH-1","on_hand":5,"watermark":2,"basis":"book","booked":["o1:l1"]}"#,
        )
        .unwrap();
        assert!(matches!(
            book.kind,
            MovementKind::Count {
                on_hand: Some(5),
                basis: Some(crate::domain::CountBasis::Book),
                booked: Some(ref booked),
                ..
            } if booked == &["o1:l1".to_owned()]
        ));
        // The figure must be present (null is "not tracked"; absent is a mistake).
        assert!(
            decode(
                "SKU-A",
                r#"{"sku":"SKU-A","idempotency_key":"k","type":"count","location":"WH-1","watermark":2}"#,
            )
            .is_err()
        );
    }

    #[test]
    fn a_missing_or_null_idempotency_key_falls_back_to_the_kafka_position() {
        for value in [
            r#"{"sku":"SKU-A","type":"receipt","location":"WH-1","quantity":1}"#,
            r#"{"sku":"SKU-A","idempotency_key":null,"type":"receipt","location":"WH-1","quantity":1}"#,
        ] {
            let movement = decode("SKU-A", value).unwrap();
            assert_eq!(movement.idempotency_key, "kafka:stock.movements:3:42");
        }
    }

    #[test]
    fn an_empty_idempotency_key_is_invalid() {
        let error = decode(
            "SKU-A",
            r#"{"sku":"SKU-A","idempotency_key":" ","type":"receipt","location":"WH-1","quantity":1}"#,
        )
        .unwrap_err();
        assert_eq!(error.reason(), "invalid_field");
    }

    #[test]
    fn bad_json_is_reported_as_invalid_json() {
        assert_eq!(
            decode("SKU-A", "{not json").unwrap_err().reason(),
            "invalid_json"
        );
        assert_eq!(
            decode("SKU-A", "[1,2]").unwrap_err(),
            DecodeError::NotAnObject
        );
    }

    #[test]
    fn a_tombstone_is_reported_as_missing_value() {
        let error = decode_movement(Some(b"SKU-A"), None, &ORIGIN).unwrap_err();
        assert_eq!(error, DecodeError::MissingValue);
        assert_eq!(error.reason(), "missing_value");
    }

    #[test]
    fn missing_required_fields_are_invalid_movements() {
        for value in [
            r#"{"idempotency_key":"k","type":"receipt","location":"WH-1","quantity":1}"#,
            r#"{"sku":"SKU-A","idempotency_key":"k","location":"WH-1","quantity":1}"#,
            r#"{"sku":"SKU-A","idempotency_key":"k","type":"receipt","quantity":1}"#,
            r#"{"sku":"SKU-A","idempotency_key":"k","type":"teleport","quantity":1}"#,
            r#"{"sku":"SKU-A","idempotency_key":"k","type":"receipt","location":"WH-1","quantity":-1}"#,
        ] {
            let error = decode("SKU-A", value).unwrap_err();
            assert_eq!(error.reason(), "invalid_movement", "{value}: {error}");
        }
    }

    #[test]
    fn validation_errors_are_reported_together() {
        let error = decode(
            "SKU-A",
            r#"{"schema_version":2,"sku":"SKU-A","idempotency_key":"k","type":"receipt",
                "location":"WH-1","quantity":0}"#,
        )
        .unwrap_err();
        let DecodeError::Invalid(problems) = &error else {
            panic!("expected a validation error, got {error:?}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            error.to_string().contains("quantity must be at least 1"),
            "{error}"
        );
    }

    #[test]
    fn the_key_must_be_the_sku() {
        let value = r#"{"sku":"SKU-A","idempotency_key":"k","type":"receipt","location":"WH-1","quantity":1}"#;
        let error = decode("SKU-B", value).unwrap_err();
        assert_eq!(
            error,
            DecodeError::KeyMismatch {
                key: "SKU-B".into(),
                sku: "SKU-A".into()
            }
        );
        let error = decode_movement(None, Some(value.as_bytes()), &ORIGIN).unwrap_err();
        assert_eq!(error.reason(), "key_mismatch");
    }

    #[test]
    fn values_the_fast_reader_defers_decode_or_fail_as_before() {
        // A duplicate field (the last wins) is left to the exact path, which accepts it.
        let movement = decode(
            "SKU-A",
            r#"{"sku":"SKU-A","idempotency_key":"k","type":"receipt","location":"WH-1","quantity":1,"quantity":4}"#,
        )
        .unwrap();
        assert_eq!(
            movement.kind,
            MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 4
            }
        );
        // A null sku, a mistyped quantity: the exact path's messages.
        assert_eq!(
            decode(
                "SKU-A",
                r#"{"sku":null,"idempotency_key":"k","type":"receipt","location":"WH-1","quantity":1}"#
            )
            .unwrap_err(),
            DecodeError::InvalidMovement("invalid type: null, expected a string".into())
        );
        assert_eq!(
            decode(
                "SKU-A",
                r#"{"sku":"SKU-A","type":"receipt","location":"WH-1","quantity":"1"}"#
            )
            .unwrap_err(),
            DecodeError::InvalidMovement("invalid type: string \"1\", expected u64".into())
        );
        // Trailing text after the object.
        assert_eq!(
            decode(
                "SKU-A",
                r#"{"sku":"SKU-A","type":"receipt","location":"WH-1","quantity":1} x"#
            )
            .unwrap_err()
            .reason(),
            "invalid_json"
        );
    }

    #[test]
    fn a_fast_read_movement_still_needs_its_key_and_validity() {
        let value = r#"{"sku":"SKU-A","type":"receipt","location":"WH-1","quantity":1}"#;
        assert_eq!(
            decode("SKU-B", value).unwrap_err(),
            DecodeError::KeyMismatch {
                key: "SKU-B".into(),
                sku: "SKU-A".into()
            }
        );
        let invalid = r#"{"sku":"SKU-A","type":"receipt","location":"WH-1","quantity":0}"#;
        assert_eq!(
            decode("SKU-A", invalid).unwrap_err(),
            DecodeError::Invalid(vec!["quantity must be at least 1".into()])
        );
    }

    #[test]
    fn skus_with_spaces_slashes_and_accents_decode_and_a_huge_one_is_refused() {
        for sku in ["Tafel 120/80 eiken", "Größe-XL", "café crème"] {
            let value = serde_json::json!({
                "sku": sku, "idempotency_key": format!("wms:{sku}:1"),
                "type": "receipt", "location": "WH-1", "quantity": 1,
            })
            .to_string();
            assert_eq!(decode(sku, &value).unwrap().sku.as_str(), sku);
        }
        let huge = "X".repeat(1 << 20);
        let value = serde_json::json!({
            "sku": huge, "idempotency_key": "k", "type": "receipt", "location": "WH-1",
            "quantity": 1,
        })
        .to_string();
        let error = decode(&huge, &value).unwrap_err();
        assert!(
            matches!(&error, DecodeError::Invalid(problems)
                if problems.iter().any(|p| p.starts_with("sku is 1048576 bytes long"))),
            "{error:?}"
        );
        assert_eq!(error.reason(), "invalid_field");
    }
}
