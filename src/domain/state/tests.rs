//! Unit tests of the SKU state machine, one behaviour each.

use super::*;
use crate::domain::LocationId;
use crate::domain::SCHEMA_VERSION;
use crate::domain::movement::{Movement, MovementKind};
use smol_str::SmolStr;
use std::collections::BTreeSet;

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
            location: None,
        },
    )
    .unwrap();
    run(
        &mut state,
        MovementKind::Cancellation {
            reason: None,
            reservation: "o1:l1".into(),
            quantity: None,
            write_off: false,
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
            write_off: false,
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
            write_off: false,
        },
    )
    .unwrap();
    run(
        &mut state,
        MovementKind::Cancellation {
            reason: None,
            reservation: "o4".into(),
            quantity: Some(1),
            write_off: false,
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
fn a_return_on_a_line_with_open_units_waits_instead_of_shipping_them() {
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
            location: Some(wh()),
            quantity: 1,
            reservation: Some("o5".into()),
            restock: true,
        },
    )
    .unwrap();
    let stock = state.location(&wh());
    // Issue 9 §2b: a return against a line with open units no longer ships them (that
    // used up the open units and the real fulfilment was then refused): it waits.
    assert_eq!(
        (stock.on_hand, stock.reserved, stock.available()),
        (5, 2, 3)
    );
    assert_eq!(state.parked.len(), 1);
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
            location: None,
        },
        350,
    )
    .unwrap();
    run_at(
        &mut state,
        MovementKind::Count {
            location: wh(),
            on_hand: Some(9),
            watermark: 200,
            basis: crate::domain::CountBasis::Physical,
            booked: None,
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
            on_hand: Some(11),
            watermark: 500,
            basis: crate::domain::CountBasis::Physical,
            booked: None,
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
            quarantine: None,
            rejected: 0,
            rejected_reason: None,
        },
    )
    .unwrap();
    let over = run(
        &mut state,
        MovementKind::TransferReceipt {
            transfer: "T1".into(),
            quantity: 2,
            quarantine: None,
            rejected: 0,
            rejected_reason: None,
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
            location: None,
        },
    )
    .unwrap();
    assert_eq!(reserved(&state), (0, 2));
    let over = run(
        &mut state,
        MovementKind::Fulfilment {
            reservation: "h".into(),
            quantity: 3,
            location: None,
        },
    );
    // Issue 9: more than the line ordered unshipped waits (an edit may raise the line).
    assert!(over.unwrap().parked.is_some());
    assert_eq!(reserved(&state), (0, 2));
    state.parked.clear();
    run(
        &mut state,
        MovementKind::Cancellation {
            reservation: "h".into(),
            quantity: None,
            reason: None,
            write_off: false,
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
            location: None,
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
            write_off: false,
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
    let left: Vec<&SmolStr> = state.reservations.keys().collect();
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
            on_hand: Some(10),
            watermark: 5,
            basis: crate::domain::CountBasis::Physical,
            booked: None,
        },
    )
    .unwrap();
    let stale = run(
        &mut state,
        MovementKind::Count {
            location: wh(),
            on_hand: Some(3),
            watermark: 4,
            basis: crate::domain::CountBasis::Physical,
            booked: None,
        },
    )
    .unwrap();
    assert!(!stale.levels_changed);
    assert_eq!(state.location(&wh()).on_hand, 10);
}

#[test]
fn over_fulfilment_is_parked_and_changes_no_level() {
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
    // Issue 9: a fulfilment beyond the line's unshipped ordered units is parked (an edit
    // may still raise the line): recorded, levels and lines unchanged.
    let applied = state
        .apply(
            &movement(
                "x",
                MovementKind::Fulfilment {
                    reservation: "o9".into(),
                    quantity: 3,
                    location: None,
                },
            ),
            before.seq + 1,
        )
        .unwrap();
    assert!(applied.parked.is_some());
    assert!(!applied.levels_changed);
    assert_eq!(state.locations, before.locations);
    assert_eq!(state.reservations, before.reservations);
    assert_eq!(state.parked.len(), 1);
}

/// A state that touched every part: stock at two locations, an open and a shipped line, a
/// split line, a transfer in flight, a purchase-order line and a count.
fn busy_state() -> SkuState {
    let mut state = SkuState::new("SKU-E".into());
    let context = ApplyContext {
        max_split_locations: 2,
        ..ApplyContext::strict()
    };
    let kinds = [
        MovementKind::Receipt {
            location: wh(),
            quantity: 10,
        },
        MovementKind::Receipt {
            location: "B".into(),
            quantity: 4,
        },
        MovementKind::Sale {
            reservation: "open".into(),
            quantity: 3,
            location: Some(wh()),
            route: vec![],
        },
        MovementKind::Sale {
            reservation: "shipped".into(),
            quantity: 2,
            location: Some(wh()),
            route: vec![],
        },
        MovementKind::Fulfilment {
            reservation: "shipped".into(),
            quantity: 2,
            location: None,
        },
        MovementKind::Reservation {
            reservation: "split".into(),
            quantity: 8,
            location: None,
            route: vec![wh(), "B".into()],
            expires_at_ms: None,
        },
        MovementKind::TransferDispatch {
            transfer: "T1".into(),
            from: "B".into(),
            to: "C".into(),
            quantity: 1,
        },
        MovementKind::Inbound {
            purchase_order: "PO-1:1".into(),
            location: wh(),
            quantity: 6,
            expected_at_ms: 1_000,
        },
        MovementKind::Count {
            location: wh(),
            on_hand: Some(8),
            watermark: 5,
            basis: crate::domain::CountBasis::Physical,
            booked: None,
        },
    ];
    for kind in kinds {
        let seq = state.seq + 1;
        state
            .apply_with(&movement(&format!("k{seq}"), kind), seq, &context)
            .unwrap();
    }
    state
}

#[test]
fn a_state_built_by_movements_satisfies_every_invariant() {
    let state = busy_state();
    assert!(
        state.reservations.contains_key("split~2"),
        "the line was split"
    );
    assert_eq!(state.location(&"C".into()).in_transit, 1);
    assert_eq!(state.check_invariants(), Ok(()));
}

#[test]
fn reserved_below_zero_is_detected() {
    let mut state = SkuState::new("SKU-E".into());
    state.locations.entry(wh()).or_default().reserved = -1;
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::NegativeReserved {
            location: wh(),
            reserved: -1
        })
    );
}

#[test]
fn reserved_units_that_no_open_line_holds_are_detected() {
    let mut state = busy_state();
    let at = state.location(&wh());
    state.locations.get_mut(&wh()).unwrap().reserved += 1;
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::ReservedMismatch {
            location: wh(),
            reserved: at.reserved + 1,
            open: i128::from(at.reserved),
        })
    );
    // A line at a location the state holds no stock entry for is caught too.
    let mut state = busy_state();
    state.reservations.get_mut("open").unwrap().location = "NOWHERE".into();
    assert!(matches!(
        state.check_invariants(),
        Err(InvariantViolation::ReservedMismatch { .. })
    ));
}

#[test]
fn a_line_with_more_shipped_and_released_than_reserved_is_detected() {
    let mut state = busy_state();
    state.reservations.get_mut("open").unwrap().released = 2;
    state.reservations.get_mut("open").unwrap().fulfilled = 2;
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::OverclosedLine {
            reservation: "open".into(),
            quantity: 3,
            fulfilled: 2,
            released: 2,
        })
    );
}

#[test]
fn a_closed_line_with_open_units_is_detected() {
    let mut state = busy_state();
    state.reservations.get_mut("open").unwrap().closed_at_ms = Some(0);
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::ClosedLineOpen {
            reservation: "open".into(),
            open: 3
        })
    );
}

#[test]
fn a_line_both_known_and_cancelled_in_advance_is_detected() {
    let mut state = busy_state();
    state.cancelled_in_advance.insert("open".into(), 1);
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::CancelledInAdvanceAndKnown {
            reservation: "open".into()
        })
    );
}

#[test]
fn in_transit_that_no_transfer_carries_is_detected() {
    let mut state = busy_state();
    state
        .locations
        .get_mut(&LocationId::from("C"))
        .unwrap()
        .in_transit = 3;
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::InTransitMismatch {
            location: "C".into(),
            in_transit: 3,
            expected: 1,
        })
    );
    let mut state = busy_state();
    state
        .locations
        .get_mut(&LocationId::from("C"))
        .unwrap()
        .in_transit = -1;
    assert!(matches!(
        state.check_invariants(),
        Err(InvariantViolation::NegativeInTransit { in_transit: -1, .. })
    ));
    let mut state = busy_state();
    state.transfers.get_mut("T1").unwrap().received = 2;
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::OverReceivedTransfer {
            transfer: "T1".into(),
            quantity: 1,
            received: 2,
        })
    );
}

#[test]
fn an_emptied_purchase_order_line_left_open_is_detected() {
    let mut state = busy_state();
    state.inbound.get_mut("PO-1:1").unwrap().quantity = 0;
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::EmptyInboundLine {
            purchase_order: "PO-1:1".into()
        })
    );
}

#[test]
fn a_journal_beyond_its_limit_is_detected() {
    let mut state = busy_state();
    let stock = state.locations.get_mut(&wh()).unwrap();
    stock.journal = std::iter::repeat_n((0, 0), JOURNAL_LIMIT + 1).collect();
    assert_eq!(
        state.check_invariants(),
        Err(InvariantViolation::JournalOverflow {
            location: wh(),
            entries: JOURNAL_LIMIT + 1
        })
    );
}

/// Runs `kind` through the transition check with `tamper` standing in for a faulty state
/// machine: the state is changed by `tamper`, not by applying the movement.
fn check_tampered(
    kind: MovementKind,
    outcome: Result<Applied, ApplyError>,
    tamper: impl FnOnce(&mut SkuState),
) -> Result<(), InvariantViolation> {
    let mut state = busy_state();
    let before = super::invariants::Before::of(&state);
    tamper(&mut state);
    before.check(&state, &kind, outcome.as_ref())
}

fn applied() -> Applied {
    Applied {
        levels_changed: true,
        oversold: false,
        routed_to: None,
        split_across: None,
        ..Applied::default()
    }
}

#[test]
fn a_transition_that_moves_other_than_the_movements_effect_is_detected() {
    let receipt = MovementKind::Receipt {
        location: wh(),
        quantity: 5,
    };
    let one_too_many = check_tampered(receipt.clone(), Ok(applied()), |state| {
        let stock = state.locations.get_mut(&wh()).unwrap();
        stock.on_hand += 6;
        stock.journal.push_back((0, 6));
    });
    assert_eq!(
        one_too_many,
        Err(InvariantViolation::EffectMismatch {
            movement: "receipt",
            total: "on_hand",
            expected: "5".into(),
            actual: 6,
        })
    );
    let exact = check_tampered(receipt, Ok(applied()), |state| {
        state.locations.get_mut(&wh()).unwrap().on_hand += 5;
    });
    assert_eq!(exact, Ok(()));
    // A shipment takes its units from on-hand and reserved together.
    let shipment = MovementKind::Fulfilment {
        reservation: "open".into(),
        quantity: 1,
        location: None,
    };
    let kept_reserved = check_tampered(shipment, Ok(applied()), |state| {
        state.locations.get_mut(&wh()).unwrap().on_hand -= 1;
        state.reservations.get_mut("open").unwrap().fulfilled += 1;
    });
    assert!(matches!(
        kept_reserved,
        Err(InvariantViolation::EffectMismatch {
            total: "reserved",
            ..
        })
    ));
    // A transfer dispatch moves on-hand into transit, never creates stock.
    let dispatch = MovementKind::TransferDispatch {
        transfer: "T2".into(),
        from: wh(),
        to: "B".into(),
        quantity: 2,
    };
    let no_transit = check_tampered(dispatch, Ok(applied()), |state| {
        state.locations.get_mut(&wh()).unwrap().on_hand -= 2;
    });
    assert!(matches!(
        no_transit,
        Err(InvariantViolation::EffectMismatch {
            total: "in_transit",
            ..
        })
    ));
}

#[test]
fn a_refused_movement_that_changed_the_state_is_detected() {
    let refused = check_tampered(
        MovementKind::Fulfilment {
            reservation: "open".into(),
            quantity: 9,
            location: None,
        },
        Err(ApplyError::OverFulfilment {
            reservation: "open".into(),
            open: 3,
            requested: 9,
        }),
        |state| state.locations.get_mut(&wh()).unwrap().on_hand -= 9,
    );
    assert_eq!(
        refused,
        Err(InvariantViolation::RefusedButChanged {
            movement: "fulfilment"
        })
    );
}

#[test]
fn a_count_that_forgets_what_happened_after_its_watermark_is_detected() {
    let count = MovementKind::Count {
        location: wh(),
        on_hand: Some(7),
        watermark: 50,
        basis: crate::domain::CountBasis::Physical,
        booked: None,
    };
    let ignored_journal = check_tampered(count, Ok(applied()), |state| {
        let stock = state.locations.get_mut(&wh()).unwrap();
        stock.journal = [(60, 2)].into();
        stock.on_hand = 7;
    });
    assert_eq!(
        ignored_journal,
        Err(InvariantViolation::CountMismatch {
            location: wh(),
            on_hand: 7,
            counted: 7,
            unseen: 2,
        })
    );
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "invariant violated by receipt")]
fn applying_to_a_corrupted_state_panics_in_debug_builds() {
    let mut state = busy_state();
    state.locations.get_mut(&wh()).unwrap().reserved += 1;
    let _ = run(
        &mut state,
        MovementKind::Receipt {
            location: wh(),
            quantity: 1,
        },
    );
}

#[test]
fn a_snapshot_in_the_stored_json_shape_still_loads() {
    // A state as earlier builds wrote it (B-tree maps, the closed-line queue): a receipt of
    // 10, a line shipped and closed, an open hold, and a cancellation that came first.
    let json = r#"{"sku":"SKU-E","seq":5,
        "locations":{"WH-1":{"on_hand":9,"reserved":2,"in_transit":0,"journal":[[0,10],[0,-1]]}},
        "reservations":{
            "done":{"location":"WH-1","quantity":1,"fulfilled":1,"released":0,"closed_at_ms":0},
            "open":{"location":"WH-1","quantity":2,"fulfilled":0,"released":0,"expires_at_ms":99}},
        "cancelled_in_advance":{"early":1},
        "closed_lines":[[0,"done"]]}"#;
    let mut state: SkuState = serde_json::from_str(json).unwrap();
    assert_eq!(state.check_invariants(), Ok(()));
    assert_eq!(state.location(&wh()).available(), 7);
    assert_eq!(state.reservations["done"].closed_at_ms, Some(0));
    assert_eq!(state.next_expiry_ms(), Some(99));
    // What it writes reads back the same.
    let written = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<SkuState>(&written).unwrap(), state);
    // The closed line is still recognised, and so is the early cancellation.
    assert!(
        run(
            &mut state,
            MovementKind::Fulfilment {
                reservation: "done".into(),
                quantity: 1,
                location: None,
            },
        )
        .unwrap()
        .parked
        .is_some()
    );
    state.parked.clear();
    let late = run(
        &mut state,
        MovementKind::Sale {
            reservation: "early".into(),
            quantity: 1,
            location: Some(wh()),
            route: vec![],
        },
    )
    .unwrap();
    assert!(
        !late.levels_changed,
        "the sale was cancelled before it came"
    );
    let again = run(
        &mut state,
        MovementKind::Sale {
            reservation: "done".into(),
            quantity: 1,
            location: Some(wh()),
            route: vec![],
        },
    )
    .unwrap();
    assert!(
        !again.levels_changed,
        "a closed line is never reserved twice"
    );
    assert_eq!(state.location(&wh()).available(), 7);
}
