//! Tests of the size limits (issue 10): quantities within [`MAX_QUANTITY`], identifiers
//! within [`MAX_ID_BYTES`] without control characters, and stock figures that never
//! overflow: a movement that would carry one past [`MAX_STOCK_LEVEL`] is an
//! [`ApplyError::Overflow`], never a panic or a wrap.

use super::*;
use proptest::prelude::*;

fn movement(kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: "SKU-L".into(),
        idempotency_key: "k".into(),
        source: "test".into(),
        occurred_at_ms: None,
        kind,
    }
}

fn receipt(quantity: u64) -> MovementKind {
    MovementKind::Receipt {
        location: "WH-1".into(),
        quantity,
    }
}

fn adjustment(delta: i64) -> MovementKind {
    MovementKind::Adjustment {
        location: "WH-1".into(),
        delta,
        reason: "correction".into(),
    }
}

/// The problems `validate` reports for `kind`.
fn problems(kind: MovementKind) -> Vec<String> {
    movement(kind).validate().err().unwrap_or_default()
}

#[test]
fn every_quantity_field_is_bounded() {
    let too_many = MAX_QUANTITY + 1;
    let kinds = [
        ("quantity", receipt(u64::MAX)),
        ("quantity", receipt(too_many)),
        ("delta", adjustment(i64::MAX)),
        ("delta", adjustment(i64::MIN)),
        ("delta", adjustment(-(MAX_QUANTITY as i64) - 1)),
        (
            "on_hand",
            MovementKind::Count {
                location: "WH-1".into(),
                on_hand: Some(u64::MAX),
                watermark: 1,
                basis: None,
                booked: None,
            },
        ),
        (
            "quantity",
            MovementKind::Sale {
                reservation: "o:1".into(),
                quantity: too_many,
                location: Some("WH-1".into()),
                route: vec![],
            },
        ),
        (
            "quantity",
            MovementKind::Reservation {
                reservation: "h:1".into(),
                quantity: u64::MAX,
                location: Some("WH-1".into()),
                route: vec![],
                expires_at_ms: None,
            },
        ),
        (
            "quantity",
            MovementKind::OrderEdit {
                reservation: "o:1".into(),
                quantity: too_many,
                version: 2,
                location: Some("WH-1".into()),
                route: vec![],
            },
        ),
        (
            "quantity",
            MovementKind::TransferDispatch {
                transfer: "t1".into(),
                from: "WH-1".into(),
                to: "WH-2".into(),
                quantity: too_many,
            },
        ),
        (
            "rejected",
            MovementKind::TransferReceipt {
                transfer: "t1".into(),
                quantity: 1,
                rejected: u64::MAX,
                rejected_reason: Some("damaged".into()),
                quarantine: None,
            },
        ),
        (
            "quantity",
            MovementKind::Inbound {
                purchase_order: "PO-1:1".into(),
                location: "WH-1".into(),
                quantity: too_many,
                expected_at_ms: 0,
            },
        ),
        (
            "quantity",
            MovementKind::Cancellation {
                reservation: "o:1".into(),
                quantity: Some(u64::MAX),
                reason: None,
                write_off: false,
            },
        ),
        (
            "quantity",
            MovementKind::Return {
                location: Some("WH-1".into()),
                quantity: too_many,
                reservation: None,
                restock: true,
            },
        ),
        (
            "quantity",
            MovementKind::InboundReceipt {
                purchase_order: "PO-1:1".into(),
                quantity: too_many,
            },
        ),
        (
            "quantity",
            MovementKind::Fulfilment {
                reservation: "o:1".into(),
                quantity: too_many,
                location: None,
            },
        ),
    ];
    for (field, kind) in kinds {
        let name = kind.name();
        let found = problems(kind);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(field) && p.contains("allowed")),
            "{name}: {found:?}"
        );
    }
}

#[test]
fn the_largest_quantity_and_delta_are_accepted() {
    assert_eq!(problems(receipt(MAX_QUANTITY)), Vec::<String>::new());
    assert_eq!(
        problems(adjustment(-(MAX_QUANTITY as i64))),
        Vec::<String>::new()
    );
    assert_eq!(
        problems(adjustment(MAX_QUANTITY as i64)),
        Vec::<String>::new()
    );
}

#[test]
fn real_skus_with_spaces_slashes_and_accents_are_valid() {
    for sku in [
        "Tafel 120/80 eiken",
        "Größe-XL",
        "café crème",
        "木製テーブル",
    ] {
        let mut m = movement(receipt(1));
        m.sku = sku.into();
        m.idempotency_key = format!("wms:{sku}:1");
        assert_eq!(m.validate(), Ok(()), "{sku}");
    }
}

#[test]
fn long_ids_and_control_characters_are_refused_with_the_field_first() {
    let mut m = movement(receipt(1));
    m.sku = "X".repeat(1 << 20).into();
    let found = m.validate().unwrap_err();
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("sku is 1048576 bytes long")),
        "{found:?}"
    );

    let mut m = movement(receipt(1));
    m.sku = "X".repeat(MAX_ID_BYTES).into();
    assert_eq!(m.validate(), Ok(()), "exactly the limit is fine");

    let mut m = movement(MovementKind::Sale {
        reservation: "o:\u{0}1".into(),
        quantity: 1,
        location: Some("WH\n1".into()),
        route: vec![],
    });
    m.idempotency_key = "k\u{7}".into();
    m.source = "s".repeat(MAX_ID_BYTES + 1);
    let found = m.validate().unwrap_err();
    for field in ["idempotency_key", "source", "reservation", "location"] {
        assert!(
            found.iter().any(|p| p.starts_with(field)),
            "{field}: {found:?}"
        );
    }
}

/// A state whose on-hand at WH-1 is `on_hand`.
fn state_with(on_hand: i64) -> SkuState {
    let mut state = SkuState::new("SKU-L".into());
    state
        .locations
        .get_or_insert_with(&LocationId::from("WH-1"), || {
            (LocationId::from("WH-1"), LocationStock::default())
        })
        .on_hand = on_hand;
    state
}

fn apply(state: &mut SkuState, kind: MovementKind) -> Result<Applied, ApplyError> {
    let seq = state.seq + 1;
    let mut m = movement(kind);
    m.idempotency_key = format!("k{seq}");
    state.apply(&m, seq)
}

#[test]
fn receipts_summing_past_the_limit_are_refused_and_change_nothing() {
    let mut state = state_with(MAX_STOCK_LEVEL - 2 * MAX_QUANTITY as i64);
    apply(&mut state, receipt(MAX_QUANTITY)).unwrap();
    apply(&mut state, receipt(MAX_QUANTITY)).unwrap();
    assert_eq!(state.location(&"WH-1".into()).on_hand, MAX_STOCK_LEVEL);
    let before = state.clone();
    let refused = apply(&mut state, receipt(1)).unwrap_err();
    assert_eq!(
        refused,
        ApplyError::Overflow {
            figure: "on_hand",
            location: "WH-1".into(),
            value: MAX_STOCK_LEVEL + 1,
            limit: MAX_STOCK_LEVEL,
        }
    );
    assert_eq!(state, before, "a refused movement changes nothing");
    // A decrease near the limit still applies.
    apply(&mut state, adjustment(-5)).unwrap();
    assert_eq!(state.location(&"WH-1".into()).on_hand, MAX_STOCK_LEVEL - 5);
}

#[test]
fn negative_figures_are_bounded_too() {
    let mut state = state_with(-MAX_STOCK_LEVEL);
    assert!(matches!(
        apply(&mut state, adjustment(-1)),
        Err(ApplyError::Overflow {
            figure: "on_hand",
            ..
        })
    ));
    apply(&mut state, adjustment(1)).unwrap();
}

#[test]
fn a_receipt_near_two_to_the_63_onto_stock_is_an_error_not_a_wrap() {
    // Today's failure: on-hand 5, a receipt of 2^63 - 1 wrapped on-hand negative (release)
    // or panicked the shard (debug).
    let mut state = state_with(5);
    let refused = apply(&mut state, receipt(i64::MAX as u64)).unwrap_err();
    assert!(matches!(refused, ApplyError::Invalid(_)), "{refused:?}");
    assert_eq!(state.location(&"WH-1".into()).on_hand, 5);
    // Replaying a recorded event skips the live limits but never wraps either.
    let mut m = movement(receipt(u64::MAX));
    m.idempotency_key = "old".into();
    let replayed = state.apply_with(&m, 1, &ApplyContext::replay());
    assert!(
        matches!(replayed, Err(ApplyError::Invalid(_))),
        "{replayed:?}"
    );
    assert_eq!(state.location(&"WH-1".into()).on_hand, 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any quantity and any delta, from any starting on-hand within the limit: the state
    /// machine answers (applied or refused), never panics, and on-hand stays within the
    /// limit.
    #[test]
    fn no_quantity_panics_or_leaves_the_limit(
        start in -MAX_STOCK_LEVEL..=MAX_STOCK_LEVEL,
        steps in proptest::collection::vec(
            prop_oneof![
                any::<u64>().prop_map(receipt),
                (0..=MAX_QUANTITY).prop_map(receipt),
                any::<i64>().prop_map(adjustment),
                (-(MAX_QUANTITY as i64)..=MAX_QUANTITY as i64).prop_map(adjustment),
            ],
            1..40,
        ),
    ) {
        let mut state = state_with(start);
        for kind in steps {
            let _ = apply(&mut state, kind);
            let on_hand = state.location(&"WH-1".into()).on_hand;
            prop_assert!(on_hand.abs() <= MAX_STOCK_LEVEL, "on-hand {on_hand}");
        }
    }
}

/// The JSON Schema states the same limits as `validate`: both accept or both refuse.
#[test]
fn the_schema_and_validate_agree_on_the_limits() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/movement.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
    let base = |sku: &str, kind: serde_json::Value| {
        let mut value = serde_json::json!({"sku": sku, "idempotency_key": "k", "source": "wms-1"});
        for (field, field_value) in kind.as_object().unwrap() {
            value[field] = field_value.clone();
        }
        value
    };
    let receipt = |quantity: u64| serde_json::json!({"type": "receipt", "location": "WH-1", "quantity": quantity});
    let adjustment =
        |delta: i64| serde_json::json!({"type": "adjustment", "location": "WH-1", "delta": delta});
    let cases = [
        (base("Größe-XL", receipt(MAX_QUANTITY)), true),
        (base("Tafel 120/80 eiken", receipt(1)), true),
        (base("café crème", adjustment(-(MAX_QUANTITY as i64))), true),
        (base("A", receipt(MAX_QUANTITY + 1)), false),
        (base("A", receipt(u64::MAX)), false),
        (base("A", adjustment(i64::MIN)), false),
        (base("A", adjustment(MAX_QUANTITY as i64 + 1)), false),
        (base("A\u{1}B", receipt(1)), false),
        (base(&"X".repeat(300), receipt(1)), false),
    ];
    for (value, valid) in cases {
        let movement: Movement = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(validator.is_valid(&value), valid, "schema on {value}");
        assert_eq!(movement.validate().is_ok(), valid, "validate on {value}");
    }
}
