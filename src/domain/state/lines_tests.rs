//! The order-line lifecycle of issue 9 at the state level, with the issue's values written
//! out: order edits (§1), per-line accounting and returns (§2), arrival order and parking
//! (§2b), reassignment and fulfilment by location (§7).

use super::*;
use crate::domain::SCHEMA_VERSION;
use crate::domain::movement::{Movement, MovementKind};

fn movement(kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: "SKU".into(),
        idempotency_key: "k".into(),
        source: "test".into(),
        occurred_at_ms: None,
        kind,
    }
}

fn run(state: &mut SkuState, kind: MovementKind) -> Result<Applied, ApplyError> {
    let seq = state.seq + 1;
    state.apply(&movement(kind), seq)
}

fn state_with(location: &str, on_hand: u64) -> SkuState {
    let mut state = SkuState::new("SKU".into());
    run(&mut state, receipt(location, on_hand)).unwrap();
    state
}

fn receipt(location: &str, quantity: u64) -> MovementKind {
    MovementKind::Receipt {
        location: location.into(),
        quantity,
    }
}

fn sale(reservation: &str, quantity: u64, location: &str) -> MovementKind {
    MovementKind::Sale {
        reservation: reservation.into(),
        quantity,
        location: Some(location.into()),
        route: vec![],
    }
}

fn edit(reservation: &str, quantity: u64, version: i64) -> MovementKind {
    MovementKind::OrderEdit {
        reservation: reservation.into(),
        quantity,
        version,
        location: Some("WH-1".into()),
        route: vec![],
    }
}

fn ship(reservation: &str, quantity: u64) -> MovementKind {
    MovementKind::Fulfilment {
        reservation: reservation.into(),
        quantity,
        location: None,
    }
}

fn give_back(reservation: &str, quantity: u64, restock: bool) -> MovementKind {
    MovementKind::Return {
        location: None,
        quantity,
        reservation: Some(reservation.into()),
        restock,
    }
}

/// (on-hand, reserved, available) at `location`.
fn levels(state: &SkuState, location: &str) -> (i64, i64, i64) {
    let stock = state.location(&location.into());
    (stock.on_hand, stock.reserved, stock.available())
}

/// (ordered, shipped, cancelled, returned) of a line.
fn line(state: &SkuState, reservation: &str) -> (u64, u64, u64, u64) {
    let line = &state.reservations[reservation];
    (line.quantity, line.fulfilled, line.released, line.returned)
}

#[test]
fn issue_9_order_7001_edits_settle_each_sku_at_its_right_level() {
    // SKU-P 50, SKU-Q 10, SKU-R 8 at WH-1; order 7001 v1: L1 P×3, L2 Q×2.
    let mut p = state_with("WH-1", 50);
    let mut q = state_with("WH-1", 10);
    let mut r = state_with("WH-1", 8);
    run(&mut p, sale("shopify:7001:L1", 3, "WH-1")).unwrap();
    run(&mut q, sale("shopify:7001:L2", 2, "WH-1")).unwrap();
    // v2: L1 → 1.
    run(&mut p, edit("shopify:7001:L1", 1, 2)).unwrap();
    assert_eq!(levels(&p, "WH-1"), (50, 1, 49));
    // v3: L2 removed.
    run(&mut q, edit("shopify:7001:L2", 0, 3)).unwrap();
    assert_eq!(levels(&q, "WH-1"), (10, 0, 10));
    // v4: L3 R×4 added (a line not known yet is created like a sale).
    run(&mut r, edit("shopify:7001:L3", 4, 4)).unwrap();
    assert_eq!(levels(&r, "WH-1"), (8, 4, 4));
    // Fulfilment of L1×1 and L3×2.
    run(&mut p, ship("shopify:7001:L1", 1)).unwrap();
    run(&mut r, ship("shopify:7001:L3", 2)).unwrap();
    // v5: L3 → 1, below the 2 already shipped: 1 unit is a discrepancy, never restocked.
    let below = run(&mut r, edit("shopify:7001:L3", 1, 5)).unwrap();
    assert_eq!(below.discrepancy, 1);
    assert_eq!(line(&r, "shopify:7001:L3"), (2, 2, 0, 0));
    // v3 delivered again after v5: changes nothing, and says so.
    let late = run(&mut q, edit("shopify:7001:L2", 0, 3)).unwrap();
    assert!(late.ignored.is_some());
    let late_for_l3 = run(&mut r, edit("shopify:7001:L3", 4, 3)).unwrap();
    assert!(late_for_l3.ignored.is_some());
    assert_eq!(levels(&p, "WH-1"), (49, 0, 49));
    assert_eq!(levels(&q, "WH-1"), (10, 0, 10));
    assert_eq!(levels(&r, "WH-1"), (6, 0, 6));
}

#[test]
fn issue_9_sku_s_an_edit_counts_the_lines_own_units() {
    let mut s = state_with("WH-1", 6);
    run(&mut s, sale("shopify:8001:L1", 5, "WH-1")).unwrap();
    assert_eq!(levels(&s, "WH-1"), (6, 5, 1));
    let raised = run(&mut s, edit("shopify:8001:L1", 6, 1)).unwrap();
    assert!(!raised.oversold);
    assert_eq!(levels(&s, "WH-1"), (6, 6, 0));
    run(&mut s, edit("shopify:8001:L1", 2, 2)).unwrap();
    assert_eq!(levels(&s, "WH-1"), (6, 2, 4));
    // The same order re-sent after a payment retry: no effect.
    run(&mut s, sale("shopify:8001:L1", 5, "WH-1")).unwrap();
    assert_eq!(levels(&s, "WH-1"), (6, 2, 4));
    run(&mut s, sale("shopify:8002:L1", 4, "WH-1")).unwrap();
    assert_eq!(levels(&s, "WH-1"), (6, 6, 0));
}

#[test]
fn issue_9_sku_aa_a_second_return_beyond_shipped_is_refused() {
    let mut aa = state_with("WH-1", 10);
    run(&mut aa, sale("o:1:L1", 1, "WH-1")).unwrap();
    run(&mut aa, ship("o:1:L1", 1)).unwrap();
    run(&mut aa, give_back("o:1:L1", 1, true)).unwrap();
    assert_eq!(levels(&aa, "WH-1"), (10, 0, 10));
    let before = aa.clone();
    let second = run(&mut aa, give_back("o:1:L1", 1, true));
    assert_eq!(
        second,
        Err(ApplyError::ReturnExceedsShipped {
            reservation: "o:1:L1".into(),
            shipped: 1,
            returned: 1,
            requested: 1,
        })
    );
    assert!(
        second
            .unwrap_err()
            .to_string()
            .contains("returned would exceed shipped")
    );
    assert_eq!(aa, before);
    assert_eq!(levels(&aa, "WH-1"), (10, 0, 10));
}

#[test]
fn issue_9_order_14001_returns_restock_shipped_units_not_open_ones() {
    // COMP-B 100 (KIT-F = 1×COMP-B, expanded to its component line), SKU-Z 50.
    let mut b = state_with("WH-1", 100);
    let mut z = state_with("WH-1", 50);
    run(&mut b, sale("o:14001:L1", 10, "WH-1")).unwrap();
    run(&mut b, sale("o:14001:L2", 1, "WH-1")).unwrap();
    run(&mut z, sale("o:14001:L3", 1, "WH-1")).unwrap();
    run(&mut b, ship("o:14001:L1", 3)).unwrap();
    run(&mut b, ship("o:14001:L2", 1)).unwrap();
    run(&mut z, ship("o:14001:L3", 1)).unwrap();
    assert_eq!(levels(&b, "WH-1"), (96, 7, 89));
    run(&mut b, give_back("o:14001:L1", 3, true)).unwrap();
    run(&mut b, give_back("o:14001:L2", 1, true)).unwrap();
    run(&mut z, give_back("o:14001:L3", 1, false)).unwrap();
    assert_eq!(levels(&b, "WH-1"), (100, 7, 93));
    assert_eq!(levels(&z, "WH-1"), (49, 0, 49));
    run(&mut b, ship("o:14001:L1", 7)).unwrap();
    assert_eq!(levels(&b, "WH-1"), (93, 0, 93));
    assert_eq!(line(&b, "o:14001:L1"), (10, 10, 0, 3));
    assert_eq!(line(&z, "o:14001:L3"), (1, 1, 0, 1));
}

#[test]
fn issue_9_2b_a_return_before_its_fulfilment_waits_in_every_order() {
    let movements = [
        sale("o:1:L1", 3, "WH-1"),
        give_back("o:1:L1", 1, true),
        ship("o:1:L1", 3),
    ];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let mut state = state_with("WH-1", 10);
        for index in order {
            run(&mut state, movements[index].clone()).unwrap();
        }
        assert_eq!(levels(&state, "WH-1"), (8, 0, 8), "order {order:?}");
        assert_eq!(line(&state, "o:1:L1"), (3, 3, 0, 1), "order {order:?}");
        assert!(state.parked.is_empty(), "order {order:?}");
    }
}

#[test]
fn a_parked_movement_applies_as_part_of_the_event_that_unblocks_it() {
    let mut state = state_with("WH-1", 10);
    let parked = run(&mut state, ship("o:1:L1", 2)).unwrap();
    assert!(parked.parked.is_some());
    assert_eq!(levels(&state, "WH-1"), (10, 0, 10));
    let unblocking = run(&mut state, sale("o:1:L1", 2, "WH-1")).unwrap();
    assert_eq!(unblocking.unparked, 1);
    assert_eq!(levels(&state, "WH-1"), (8, 0, 8));
    assert!(state.parked.is_empty());
    // Replaying the recorded events gives the same state (the parked list is state).
    let mut replayed = SkuState::new("SKU".into());
    for (seq, kind) in [
        receipt("WH-1", 10),
        ship("o:1:L1", 2),
        sale("o:1:L1", 2, "WH-1"),
    ]
    .into_iter()
    .enumerate()
    {
        replayed
            .apply_with(&movement(kind), seq as u64 + 1, &ApplyContext::replay())
            .unwrap();
    }
    assert_eq!(replayed, state);
}

#[test]
fn a_partial_cancellation_before_its_sale_waits_for_it() {
    let mut state = state_with("WH-1", 10);
    let cancel = MovementKind::Cancellation {
        reservation: "o:1:L1".into(),
        quantity: Some(2),
        reason: None,
        write_off: false,
    };
    assert!(run(&mut state, cancel).unwrap().parked.is_some());
    run(&mut state, sale("o:1:L1", 5, "WH-1")).unwrap();
    assert_eq!(levels(&state, "WH-1"), (10, 3, 7));
    assert_eq!(line(&state, "o:1:L1"), (5, 0, 2, 0));
}

#[test]
fn a_shipment_that_raced_a_cancellation_takes_the_cancelled_units() {
    let mut state = state_with("WH-1", 10);
    run(&mut state, sale("o:1:L1", 5, "WH-1")).unwrap();
    run(
        &mut state,
        MovementKind::Cancellation {
            reservation: "o:1:L1".into(),
            quantity: None,
            reason: None,
            write_off: false,
        },
    )
    .unwrap();
    let shipped = run(&mut state, ship("o:1:L1", 3)).unwrap();
    assert_eq!(shipped.from_cancelled, 3);
    assert_eq!(levels(&state, "WH-1"), (7, 0, 7));
    assert_eq!(line(&state, "o:1:L1"), (5, 3, 2, 0));
}

#[test]
fn a_return_without_location_goes_back_where_the_line_shipped_from() {
    let mut state = state_with("WH-1", 10);
    run(&mut state, receipt("WH-2", 4)).unwrap();
    run(&mut state, sale("o:1:L1", 2, "WH-2")).unwrap();
    run(&mut state, ship("o:1:L1", 2)).unwrap();
    assert_eq!(levels(&state, "WH-2"), (2, 0, 2));
    run(&mut state, give_back("o:1:L1", 1, true)).unwrap();
    assert_eq!(levels(&state, "WH-2"), (3, 0, 3));
    assert_eq!(levels(&state, "WH-1"), (10, 0, 10));
}

#[test]
fn issue_9_7_reassign_moves_the_open_units_and_a_later_cancel_acts_on_the_holder() {
    let mut state = state_with("WH-1", 5);
    run(&mut state, receipt("WH-2", 5)).unwrap();
    run(&mut state, sale("o:1:L1", 3, "WH-1")).unwrap();
    run(&mut state, ship("o:1:L1", 1)).unwrap();
    run(
        &mut state,
        MovementKind::Reassign {
            reservation: "o:1:L1".into(),
            to: "WH-2".into(),
        },
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (4, 0, 4));
    assert_eq!(levels(&state, "WH-2"), (5, 2, 3));
    // A fulfilment may name its location: the part at WH-2 ships.
    let at_unknown = run(
        &mut state,
        MovementKind::Fulfilment {
            reservation: "o:1:L1".into(),
            quantity: 1,
            location: Some("WH-9".into()),
        },
    );
    assert!(matches!(at_unknown, Err(ApplyError::NotHeldAt { .. })));
    run(
        &mut state,
        MovementKind::Fulfilment {
            reservation: "o:1:L1".into(),
            quantity: 1,
            location: Some("WH-2".into()),
        },
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-2"), (4, 1, 3));
    run(
        &mut state,
        MovementKind::Cancellation {
            reservation: "o:1:L1".into(),
            quantity: None,
            reason: None,
            write_off: false,
        },
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (4, 0, 4));
    assert_eq!(levels(&state, "WH-2"), (4, 0, 4));
    // A return without location goes back to the part it shipped from.
    run(&mut state, give_back("o:1:L1", 2, true)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (5, 0, 5));
    assert_eq!(levels(&state, "WH-2"), (5, 0, 5));
}

#[test]
fn a_reassign_that_does_not_fit_at_the_target_is_refused() {
    let mut state = state_with("WH-1", 5);
    run(&mut state, receipt("WH-2", 2)).unwrap();
    run(&mut state, sale("o:1:L1", 3, "WH-1")).unwrap();
    let before = state.clone();
    let refused = run(
        &mut state,
        MovementKind::Reassign {
            reservation: "o:1:L1".into(),
            to: "WH-2".into(),
        },
    );
    assert!(matches!(
        refused,
        Err(ApplyError::InsufficientStock {
            requested: 3,
            available: 2,
            ..
        })
    ));
    assert_eq!(state, before);
}

#[test]
fn an_edit_of_a_cancelled_line_reserves_nothing() {
    let mut state = state_with("WH-1", 10);
    run(
        &mut state,
        MovementKind::Cancellation {
            reservation: "o:1:L1".into(),
            quantity: None,
            reason: None,
            write_off: false,
        },
    )
    .unwrap();
    run(&mut state, edit("o:1:L1", 4, 1)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (10, 0, 10));
    run(&mut state, edit("o:1:L1", 6, 2)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (10, 0, 10));
}

#[test]
fn a_parked_movement_expires_after_the_ttl() {
    let context = ApplyContext {
        parked_ttl_ms: 1_000,
        ..ApplyContext::strict()
    };
    let mut state = SkuState::new("SKU".into());
    let at = |kind: MovementKind, at_ms: i64| Movement {
        occurred_at_ms: Some(at_ms),
        ..movement(kind)
    };
    let parked = state
        .apply_with(&at(ship("o:1:L1", 1), 0), 1, &context)
        .unwrap();
    assert!(parked.parked.is_some());
    let still = state
        .apply_with(&at(receipt("WH-1", 1), 1_000), 2, &context)
        .unwrap();
    assert!(still.expired.is_empty());
    let later = state
        .apply_with(&at(receipt("WH-1", 1), 1_001), 3, &context)
        .unwrap();
    assert_eq!(later.expired.len(), 1);
    assert_eq!(later.expired[0].seq, 1);
    assert!(state.parked.is_empty());
}

#[test]
fn parking_is_bounded_per_sku() {
    let mut state = SkuState::new("SKU".into());
    for n in 0..MAX_PARKED_PER_SKU {
        run(&mut state, ship(&format!("o:{n}:L1"), 1)).unwrap();
    }
    let before = state.clone();
    assert_eq!(
        run(&mut state, ship("o:x:L1", 1)),
        Err(ApplyError::TooManyParked {
            limit: MAX_PARKED_PER_SKU
        })
    );
    assert_eq!(state, before);
}
