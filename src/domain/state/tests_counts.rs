//! Unit tests of the stock effects of write-off cancellations, count bases, late movements
//! inside a count, untracked counts and transfer receipts with rejected units (issue 9).

use super::*;
use crate::domain::movement::{CountBasis, Movement, MovementKind};
use crate::domain::{LocationId, SCHEMA_VERSION};

/// A time watermark: 2026-01-01T00:00:00Z in milliseconds.
const T: i64 = 1_767_225_600_000;

fn movement(sku: &str, key: &str, source: &str, at_ms: i64, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.into(),
        source: source.into(),
        occurred_at_ms: Some(at_ms),
        kind,
    }
}

fn run_from(
    state: &mut SkuState,
    source: &str,
    at_ms: i64,
    kind: MovementKind,
) -> Result<Applied, ApplyError> {
    let seq = state.seq + 1;
    let sku = state.sku.0.clone();
    state.apply(
        &movement(&sku, &format!("k{seq}"), source, at_ms, kind),
        seq,
    )
}

fn run(state: &mut SkuState, kind: MovementKind) -> Result<Applied, ApplyError> {
    run_from(state, "test", T - 1_000_000, kind)
}

fn wh(name: &str) -> LocationId {
    name.into()
}

/// (on-hand, reserved, available) at `location`.
fn levels(state: &SkuState, location: &str) -> (i64, i64, i64) {
    let stock = state.location(&wh(location));
    (stock.on_hand, stock.reserved, stock.available())
}

fn receipt(location: &str, quantity: u64) -> MovementKind {
    MovementKind::Receipt {
        location: wh(location),
        quantity,
    }
}

fn sale(reservation: &str, quantity: u64) -> MovementKind {
    MovementKind::Sale {
        reservation: reservation.into(),
        quantity,
        location: Some(wh("WH-1")),
        route: vec![],
    }
}

fn cancel(reservation: &str, reason: &str, write_off: bool) -> MovementKind {
    MovementKind::Cancellation {
        reservation: reservation.into(),
        quantity: None,
        reason: Some(reason.into()),
        write_off,
    }
}

fn ship(reservation: &str, quantity: u64) -> MovementKind {
    MovementKind::Fulfilment {
        reservation: reservation.into(),
        quantity,
        location: None,
    }
}

fn count(
    on_hand: Option<u64>,
    watermark: i64,
    basis: CountBasis,
    booked: Option<&[&str]>,
) -> MovementKind {
    MovementKind::Count {
        location: wh("WH-1"),
        on_hand,
        watermark,
        basis: Some(basis),
        booked: booked.map(|ids| ids.iter().map(|id| (*id).to_owned()).collect()),
    }
}

#[test]
fn a_buyer_cancel_releases_and_a_no_inventory_cancel_also_writes_off() {
    // Issue 9 §3: SKU-W 20; Shopify order ×5, Amazon order ×5.
    let mut state = SkuState::new("SKU-W".into());
    run(&mut state, receipt("WH-1", 20)).unwrap();
    run(&mut state, sale("shopify:main:1001:1", 5)).unwrap();
    run(&mut state, sale("amazon:eu:AMZ-1:1", 5)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (20, 10, 10));
    run(&mut state, cancel("shopify:main:1001:1", "customer", false)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (20, 5, 15));
    let applied = run(&mut state, cancel("amazon:eu:AMZ-1:1", "NoInventory", true)).unwrap();
    assert!(applied.levels_changed);
    assert_eq!(levels(&state, "WH-1"), (15, 0, 15));
    // The write-off is journaled with the cancellation's time (a later count adds it back
    // only when it happened after the count's watermark).
    assert_eq!(
        state.location(&wh("WH-1")).journal.back(),
        Some(&(T - 1_000_000, -5))
    );
    // Once: another cancellation of the same line (a new key) releases and writes off nothing.
    let again = run(&mut state, cancel("amazon:eu:AMZ-1:1", "NoInventory", true)).unwrap();
    assert!(!again.levels_changed);
    assert_eq!(levels(&state, "WH-1"), (15, 0, 15));
}

#[test]
fn a_write_off_cancel_writes_off_only_the_unshipped_units_it_releases() {
    let mut state = SkuState::new("SKU-W".into());
    run(&mut state, receipt("WH-1", 20)).unwrap();
    run(&mut state, sale("o1:l1", 5)).unwrap();
    run(&mut state, ship("o1:l1", 2)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (18, 3, 15));
    run(
        &mut state,
        MovementKind::Cancellation {
            reservation: "o1:l1".into(),
            quantity: Some(2),
            reason: Some("inventory".into()),
            write_off: true,
        },
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (16, 1, 15));
    run(&mut state, cancel("o1:l1", "inventory", true)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (15, 0, 15));
}

#[test]
fn a_write_off_cancel_of_a_split_line_writes_off_at_each_part_location() {
    let mut state = SkuState::new("SKU-W".into());
    run(&mut state, receipt("WH-1", 3)).unwrap();
    run(&mut state, receipt("WH-2", 4)).unwrap();
    let context = ApplyContext {
        max_split_locations: 2,
        ..ApplyContext::strict()
    };
    let seq = state.seq + 1;
    state
        .apply_with(
            &movement(
                "SKU-W",
                "split",
                "test",
                T - 1_000_000,
                MovementKind::Sale {
                    reservation: "o9:l1".into(),
                    quantity: 5,
                    location: None,
                    route: vec![wh("WH-1"), wh("WH-2")],
                },
            ),
            seq,
            &context,
        )
        .unwrap();
    assert_eq!(levels(&state, "WH-1"), (3, 3, 0));
    assert_eq!(levels(&state, "WH-2"), (4, 2, 2));
    run(&mut state, cancel("o9:l1", "NoInventory", true)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (0, 0, 0));
    assert_eq!(levels(&state, "WH-2"), (2, 0, 2));
}

#[test]
fn a_book_count_adds_back_the_booked_open_lines_and_a_physical_one_does_not() {
    // Issue 9 §5: SKU-M 10 on hand; orders of 3 and 2 (10/5/5); the ERP reports 5.
    for (basis, after_count, after_shipping) in [
        (CountBasis::Book, (10, 5, 5), (5, 0, 5)),
        (CountBasis::Physical, (5, 5, 0), (0, 0, 0)),
    ] {
        let mut state = SkuState::new("SKU-M".into());
        run(&mut state, receipt("WH-1", 10)).unwrap();
        run(&mut state, sale("o1:l1", 3)).unwrap();
        run(&mut state, sale("o2:l1", 2)).unwrap();
        assert_eq!(levels(&state, "WH-1"), (10, 5, 5));
        run_from(
            &mut state,
            "erp-1",
            T,
            count(Some(5), T, basis, Some(&["o1:l1", "o2:l1"])),
        )
        .unwrap();
        assert_eq!(levels(&state, "WH-1"), after_count, "{basis:?}");
        run_from(&mut state, "wms-1", T + 10, ship("o1:l1", 3)).unwrap();
        run_from(&mut state, "wms-1", T + 20, ship("o2:l1", 2)).unwrap();
        assert_eq!(levels(&state, "WH-1"), after_shipping, "{basis:?}");
    }
}

#[test]
fn a_book_count_adds_back_only_the_lines_it_names_or_every_committed_line() {
    let mut state = SkuState::new("SKU-M".into());
    run(&mut state, receipt("WH-1", 10)).unwrap();
    run(&mut state, sale("o1:l1", 3)).unwrap();
    run(&mut state, sale("o2:l1", 2)).unwrap();
    run(
        &mut state,
        MovementKind::Reservation {
            reservation: "cart-1".into(),
            quantity: 1,
            location: Some(wh("WH-1")),
            route: vec![],
            expires_at_ms: Some(T + 60_000),
        },
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (10, 6, 4));
    // Only o1 booked: 4 + 3.
    run_from(
        &mut state,
        "erp-1",
        T,
        count(Some(4), T, CountBasis::Book, Some(&["o1:l1"])),
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (7, 6, 1));
    // No list: every committed open line (o1 and o2), not the expiring checkout hold.
    run_from(
        &mut state,
        "erp-1",
        T + 1,
        count(Some(4), T + 1, CountBasis::Book, None),
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (9, 6, 3));
}

#[test]
fn a_movement_that_happened_before_a_count_by_its_source_is_inside_the_figure() {
    let mut state = SkuState::new("SKU-L".into());
    run(&mut state, receipt("WH-1", 10)).unwrap();
    run(&mut state, sale("o1:l1", 3)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (10, 3, 7));
    // The WMS shipped o1 at T − 10 and counted 7 at T; the shipment arrives after the count.
    run_from(
        &mut state,
        "wms-1",
        T,
        count(Some(7), T, CountBasis::Physical, None),
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (7, 3, 4));
    run_from(&mut state, "wms-1", T - 10, ship("o1:l1", 3)).unwrap();
    // The line is closed, on-hand is not taken a second time.
    assert_eq!(levels(&state, "WH-1"), (7, 0, 7));
    assert_eq!(
        state.reservations.get("o1:l1").map(|line| line.fulfilled),
        Some(3)
    );
    // A receipt, an adjustment and a return of the same source before the watermark: nothing.
    run_from(&mut state, "wms-1", T - 5, receipt("WH-1", 4)).unwrap();
    run_from(
        &mut state,
        "wms-1",
        T,
        MovementKind::Adjustment {
            location: wh("WH-1"),
            delta: -2,
            reason: "damaged".into(),
        },
    )
    .unwrap();
    run_from(
        &mut state,
        "wms-1",
        T - 1,
        MovementKind::Return {
            location: Some(wh("WH-1")),
            quantity: 1,
            reservation: None,
            restock: true,
        },
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (7, 0, 7));
    // Another source's receipt before the watermark is not the count's authority: applied.
    run_from(&mut state, "erp-1", T - 5, receipt("WH-1", 4)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (11, 0, 11));
    // The same source after the watermark: applied.
    run_from(&mut state, "wms-1", T + 1, receipt("WH-1", 1)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (12, 0, 12));
}

#[test]
fn a_sequence_watermark_says_nothing_about_when_a_late_movement_happened() {
    let mut state = SkuState::new("SKU-L".into());
    run_from(&mut state, "wms-1", 1, receipt("WH-1", 10)).unwrap();
    run_from(
        &mut state,
        "wms-1",
        5,
        count(Some(8), 500, CountBasis::Physical, None),
    )
    .unwrap();
    assert_eq!(levels(&state, "WH-1"), (8, 0, 8));
    run_from(&mut state, "wms-1", 400, receipt("WH-1", 2)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (10, 0, 10));
}

#[test]
fn a_count_without_a_figure_is_ignored_never_read_as_zero() {
    let mut state = SkuState::new("SKU-U".into());
    run(&mut state, receipt("WH-1", 10)).unwrap();
    let applied = run_from(
        &mut state,
        "amazon:fba",
        T,
        count(None, T, CountBasis::Physical, None),
    )
    .unwrap();
    assert!(!applied.levels_changed);
    assert_eq!(levels(&state, "WH-1"), (10, 0, 10));
    assert_eq!(state.location(&wh("WH-1")).last_count_watermark.get(), None);
    // A later receipt of the same source before that watermark is applied: nothing was counted.
    run_from(&mut state, "amazon:fba", T - 1, receipt("WH-1", 1)).unwrap();
    assert_eq!(levels(&state, "WH-1"), (11, 0, 11));
}

fn transfer_receipt(quantity: u64, rejected: u64, quarantine: Option<&str>) -> MovementKind {
    MovementKind::TransferReceipt {
        transfer: "TR-1".into(),
        quantity,
        rejected,
        rejected_reason: (rejected > 0).then(|| "damaged in transit".to_owned()),
        quarantine: quarantine.map(wh),
    }
}

#[test]
fn a_transfer_receipt_puts_rejected_units_in_quarantine_or_writes_them_off() {
    let mut state = SkuState::new("SKU-T".into());
    run(&mut state, receipt("WH-1", 10)).unwrap();
    run(
        &mut state,
        MovementKind::TransferDispatch {
            transfer: "TR-1".into(),
            from: wh("WH-1"),
            to: wh("WH-2"),
            quantity: 6,
        },
    )
    .unwrap();
    assert_eq!(state.location(&wh("WH-2")).in_transit, 6);
    // 4 accepted, 1 rejected to quarantine: 1 still in transit.
    run(&mut state, transfer_receipt(4, 1, Some("QUAR-1"))).unwrap();
    assert_eq!(levels(&state, "WH-1"), (4, 0, 4));
    assert_eq!(levels(&state, "WH-2"), (4, 0, 4));
    assert_eq!(state.location(&wh("WH-2")).in_transit, 1);
    assert_eq!(levels(&state, "QUAR-1"), (1, 0, 1));
    // More than is in transit (1 + 1 > 1): refused, nothing changes.
    let refused = run(&mut state, transfer_receipt(1, 1, None)).unwrap_err();
    assert!(matches!(
        refused,
        ApplyError::OverReceipt {
            in_transit: 1,
            requested: 2,
            ..
        }
    ));
    // Quarantine at the receiving location itself: refused.
    assert!(matches!(
        run(&mut state, transfer_receipt(0, 1, Some("WH-2"))),
        Err(ApplyError::Invalid(_))
    ));
    // The last unit rejected without a quarantine: written off.
    run(&mut state, transfer_receipt(0, 1, None)).unwrap();
    assert_eq!(levels(&state, "WH-2"), (4, 0, 4));
    assert_eq!(state.location(&wh("WH-2")).in_transit, 0);
    let line = state.transfers.get("TR-1").unwrap();
    assert_eq!((line.quantity, line.received, line.rejected), (6, 6, 2));
    state.check_invariants().unwrap();
}
