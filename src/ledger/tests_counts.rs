//! Ledger tests of count sources: the configured basis of a count without its own, recorded
//! with the event; untracked counts; write-off cancellations in the history.

use super::*;
use crate::domain::{CountBasis, LocationId, MovementKind, SCHEMA_VERSION};
use crate::store::embedded::EmbeddedStore;
use std::collections::BTreeMap;

/// Every movement's source time: 2026-01-01T00:00:00Z; the counts' watermarks follow it.
const T: i64 = 1_767_225_600_000;

struct NoSink;
impl AvailabilitySink for NoSink {
    fn publish(&self, _changes: &[crate::domain::AvailabilityChange]) {}
}

fn movement(sku: &str, key: &str, source: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.into(),
        source: source.into(),
        occurred_at_ms: Some(T),
        kind,
    }
}

fn sale(reservation: &str, quantity: u64) -> MovementKind {
    MovementKind::Sale {
        reservation: reservation.into(),
        quantity,
        location: Some("WH-1".into()),
        route: vec![],
    }
}

fn count(on_hand: Option<u64>, watermark: i64, basis: Option<CountBasis>) -> MovementKind {
    MovementKind::Count {
        location: "WH-1".into(),
        on_hand,
        watermark,
        basis,
        booked: None,
    }
}

fn levels(state: &SkuState) -> (i64, i64, i64) {
    let stock = state.location(&LocationId::from("WH-1"));
    (stock.on_hand, stock.reserved, stock.available())
}

#[tokio::test]
async fn a_count_without_basis_takes_its_sources_configured_basis_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("ledger.db")).unwrap());
    let options = LedgerOptions {
        shards: 1,
        count_basis: Arc::new(BTreeMap::from([("erp-1".to_owned(), CountBasis::Book)])),
        ..LedgerOptions::default()
    };
    let ledger = Ledger::start(store, Arc::new(NoSink), options);
    let sku: Sku = "SKU-M".into();
    let submit = |key: &str, source: &str, kind: MovementKind| {
        ledger.submit(movement("SKU-M", key, source, kind))
    };
    submit(
        "r1",
        "wms-1",
        MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: 10,
        },
    )
    .await
    .unwrap();
    submit("s1", "shop", sale("o1:l1", 3)).await.unwrap();
    submit("s2", "shop", sale("o2:l1", 2)).await.unwrap();
    // The ERP (book basis by config) reports 5: both orders are added back.
    submit("c1", "erp-1", count(Some(5), T + 100, None))
        .await
        .unwrap();
    assert_eq!(levels(&ledger.state(&sku).await.unwrap()), (10, 5, 5));
    // Its own field wins: the same source saying physical.
    submit(
        "c2",
        "erp-1",
        count(Some(6), T + 200, Some(CountBasis::Physical)),
    )
    .await
    .unwrap();
    assert_eq!(levels(&ledger.state(&sku).await.unwrap()), (6, 5, 1));
    // Another source without basis: physical.
    submit("c3", "wms-1", count(Some(7), T + 300, None))
        .await
        .unwrap();
    assert_eq!(levels(&ledger.state(&sku).await.unwrap()), (7, 5, 2));
    // Untracked: changes nothing.
    submit("c4", "wms-1", count(None, T + 400, None))
        .await
        .unwrap();
    assert_eq!(levels(&ledger.state(&sku).await.unwrap()), (7, 5, 2));
    // The recorded events carry the basis used, so replay does not depend on the config.
    let events = ledger.store().events("SKU-M", 1, 10).await.unwrap();
    let bases: Vec<Option<CountBasis>> = events
        .iter()
        .filter_map(|event| match event.movement().unwrap().kind {
            MovementKind::Count { basis, .. } => Some(basis),
            _ => None,
        })
        .collect();
    assert_eq!(
        bases,
        vec![
            Some(CountBasis::Book),
            Some(CountBasis::Physical),
            Some(CountBasis::Physical),
            Some(CountBasis::Physical)
        ]
    );
}

#[tokio::test]
async fn a_write_off_cancellation_is_shown_with_its_reason_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("ledger.db")).unwrap());
    let ledger = Ledger::start(
        store,
        Arc::new(NoSink),
        LedgerOptions {
            shards: 1,
            ..LedgerOptions::default()
        },
    );
    let sku: Sku = "SKU-W".into();
    let submit =
        |key: &str, kind: MovementKind| ledger.submit(movement("SKU-W", key, "test", kind));
    submit(
        "r1",
        MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: 20,
        },
    )
    .await
    .unwrap();
    submit("s1", sale("shopify:1:1", 5)).await.unwrap();
    submit("s2", sale("amazon:1:1", 5)).await.unwrap();
    let cancel = |reservation: &str, reason: &str, write_off: bool| MovementKind::Cancellation {
        reservation: reservation.into(),
        quantity: None,
        reason: Some(reason.into()),
        write_off,
    };
    submit("x1", cancel("shopify:1:1", "customer", false))
        .await
        .unwrap();
    assert_eq!(levels(&ledger.state(&sku).await.unwrap()), (20, 5, 15));
    submit("x2", cancel("amazon:1:1", "NoInventory", true))
        .await
        .unwrap();
    assert_eq!(levels(&ledger.state(&sku).await.unwrap()), (15, 0, 15));
    // Redelivered: a duplicate, written off once.
    let again = submit("x2", cancel("amazon:1:1", "NoInventory", true))
        .await
        .unwrap();
    assert!(matches!(again, Ack::Duplicate { .. }));
    assert_eq!(levels(&ledger.state(&sku).await.unwrap()), (15, 0, 15));
    let events = ledger.store().events("SKU-W", 1, 10).await.unwrap();
    let shown = events.last().unwrap().movement_json().unwrap();
    assert_eq!(shown["type"], "cancellation");
    assert_eq!(shown["reason"], "NoInventory");
    assert_eq!(shown["write_off"], true);
}
