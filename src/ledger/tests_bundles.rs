//! Kits through the order lifecycle (issue 9 §2): every movement of a kit line goes through
//! the real bundle expansion, and the kit's listed ATP is derived from the components'
//! published levels as propagation derives it.

use super::*;
use crate::domain::{
    AvailabilityChange, BillOfMaterials, Component, ComponentLevels, LocationId, MovementKind,
    Rules, RulesCell, SCHEMA_VERSION,
};
use crate::store::embedded::EmbeddedStore;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct RecordingSink(Mutex<Vec<AvailabilityChange>>);

impl AvailabilitySink for RecordingSink {
    fn publish(&self, changes: &[AvailabilityChange]) {
        self.0.lock().unwrap().extend_from_slice(changes);
    }
}

fn movement(sku: &str, key: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.into(),
        source: "test".into(),
        occurred_at_ms: None,
        kind,
    }
}

fn bom(bundles: &[(&str, &[(&str, u64)])]) -> BillOfMaterials {
    let direct: BTreeMap<Sku, Vec<Component>> = bundles
        .iter()
        .map(|(bundle, components)| {
            let components = components
                .iter()
                .map(|(sku, quantity)| Component {
                    sku: (*sku).into(),
                    quantity: *quantity,
                })
                .collect();
            (Sku::from(*bundle), components)
        })
        .collect();
    BillOfMaterials::new(&direct).unwrap()
}

fn start(dir: &tempfile::TempDir, bom: BillOfMaterials, sink: Arc<dyn AvailabilitySink>) -> Ledger {
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("ledger.db")).unwrap());
    let options = LedgerOptions {
        rules: Arc::new(RulesCell::new(Rules {
            bom,
            ..Rules::default()
        })),
        ..LedgerOptions::default()
    };
    Ledger::start(store, sink, options)
}

fn receipt(location: &str, quantity: u64) -> MovementKind {
    MovementKind::Receipt {
        location: location.into(),
        quantity,
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

fn ship(reservation: &str, quantity: u64, location: Option<&str>) -> MovementKind {
    MovementKind::Fulfilment {
        reservation: reservation.into(),
        quantity,
        location: location.map(LocationId::from),
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

fn edit(reservation: &str, quantity: u64, version: i64) -> MovementKind {
    MovementKind::OrderEdit {
        reservation: reservation.into(),
        quantity,
        version,
        location: None,
        route: vec!["WH-1".into()],
    }
}

/// (on-hand, reserved, available) of `sku` at `location`.
async fn levels(ledger: &Ledger, sku: &str, location: &str) -> (i64, i64, i64) {
    let state = ledger.state(&sku.into()).await.unwrap();
    let stock = state.location(&LocationId::from(location));
    (stock.on_hand, stock.reserved, stock.available())
}

/// (ordered, shipped, cancelled, returned) of a line of `sku`.
async fn line(ledger: &Ledger, sku: &str, reservation: &str) -> (u64, u64, u64, u64) {
    let state = ledger.state(&sku.into()).await.unwrap();
    let line = state
        .reservations
        .get(reservation)
        .unwrap_or_else(|| panic!("{sku} has no line {reservation}"));
    (line.quantity, line.fulfilled, line.released, line.returned)
}

/// The available units the propagation path derives for `bundle` at WH-1 from every
/// component change published so far.
fn bundle_available(sink: &RecordingSink, bom: &BillOfMaterials, bundle: &str) -> i64 {
    let changes = sink.0.lock().unwrap().clone();
    let mut components = ComponentLevels::default();
    let derived = components.derive(bom, &changes);
    let change = derived
        .iter()
        .find(|change| change.sku == Sku::from(bundle))
        .expect("the bundle is derived");
    change
        .locations
        .iter()
        .find(|level| level.location == LocationId::from("WH-1"))
        .map_or(0, |level| level.available())
}

async fn apply_all(ledger: &Ledger, steps: Vec<(&str, &str, MovementKind)>) {
    for (sku, key, kind) in steps {
        let ack = ledger.submit(movement(sku, key, kind)).await.unwrap();
        assert!(matches!(ack, Ack::Applied { .. }), "{key}: {ack:?}");
    }
}

#[tokio::test]
async fn issue_9_2_order_14001_with_a_kit_line_returns_the_shipped_units_only() {
    let dir = tempfile::tempdir().unwrap();
    let bom = bom(&[("KIT-F", &[("COMP-B", 1)])]);
    let sink = Arc::new(RecordingSink::default());
    let ledger = start(&dir, bom.clone(), sink.clone());
    apply_all(
        &ledger,
        vec![
            ("COMP-B", "erp:b", receipt("WH-1", 100)),
            ("SKU-Z", "erp:z", receipt("WH-1", 50)),
            ("KIT-F", "shop:14001:L1", sale("shop:14001:L1", 10)),
            ("COMP-B", "shop:14001:L2", sale("shop:14001:L2", 1)),
            ("SKU-Z", "shop:14001:L3", sale("shop:14001:L3", 1)),
        ],
    )
    .await;
    assert_eq!(levels(&ledger, "COMP-B", "WH-1").await, (100, 11, 89));
    assert_eq!(levels(&ledger, "SKU-Z", "WH-1").await, (50, 1, 49));
    apply_all(
        &ledger,
        vec![
            // The kit's shipment names its location; it travels to the component line.
            ("KIT-F", "wms:f1", ship("shop:14001:L1", 3, Some("WH-1"))),
            ("COMP-B", "wms:f2", ship("shop:14001:L2", 1, None)),
            ("SKU-Z", "wms:f3", ship("shop:14001:L3", 1, None)),
        ],
    )
    .await;
    assert_eq!(levels(&ledger, "COMP-B", "WH-1").await, (96, 7, 89));
    assert_eq!(levels(&ledger, "SKU-Z", "WH-1").await, (49, 0, 49));
    assert_eq!(bundle_available(&sink, &bom, "KIT-F"), 89);
    // Returns without location go back where the line shipped from; the kit's return
    // restocks the 3 shipped units and leaves the 7 open units reserved.
    apply_all(
        &ledger,
        vec![
            ("KIT-F", "rma:1:L1", give_back("shop:14001:L1", 3, true)),
            ("COMP-B", "rma:1:L2", give_back("shop:14001:L2", 1, true)),
            ("SKU-Z", "rma:1:L3", give_back("shop:14001:L3", 1, false)),
        ],
    )
    .await;
    assert_eq!(levels(&ledger, "COMP-B", "WH-1").await, (100, 7, 93));
    assert_eq!(levels(&ledger, "SKU-Z", "WH-1").await, (49, 0, 49));
    assert_eq!(
        line(&ledger, "COMP-B", "shop:14001:L1").await,
        (10, 3, 0, 3)
    );
    assert_eq!(line(&ledger, "SKU-Z", "shop:14001:L3").await, (1, 1, 0, 1));
    assert_eq!(bundle_available(&sink, &bom, "KIT-F"), 93);
    apply_all(
        &ledger,
        vec![("KIT-F", "wms:f4", ship("shop:14001:L1", 7, None))],
    )
    .await;
    assert_eq!(levels(&ledger, "COMP-B", "WH-1").await, (93, 0, 93));
    assert_eq!(levels(&ledger, "SKU-Z", "WH-1").await, (49, 0, 49));
    assert_eq!(
        line(&ledger, "COMP-B", "shop:14001:L1").await,
        (10, 10, 0, 3)
    );
    assert_eq!(bundle_available(&sink, &bom, "KIT-F"), 93);
    // A second return under a new RMA id beyond what shipped is refused, for the kit too.
    let refused = ledger
        .submit(movement(
            "KIT-F",
            "rma:2:L1",
            give_back("shop:14001:L1", 8, true),
        ))
        .await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::Rejected(
                ApplyError::ReturnExceedsShipped { .. }
            ))
        ),
        "{refused:?}"
    );
    assert_eq!(levels(&ledger, "COMP-B", "WH-1").await, (93, 0, 93));
    ledger.shutdown().await;
}

#[tokio::test]
async fn an_order_edit_of_a_kit_line_scales_the_target_per_component() {
    let dir = tempfile::tempdir().unwrap();
    let bom = bom(&[("KIT-G", &[("MUG", 2), ("CARD", 1)])]);
    let sink = Arc::new(RecordingSink::default());
    let ledger = start(&dir, bom.clone(), sink.clone());
    apply_all(
        &ledger,
        vec![
            ("MUG", "erp:m", receipt("WH-1", 20)),
            ("CARD", "erp:c", receipt("WH-1", 10)),
            ("KIT-G", "shop:1:L1", sale("shop:1:L1", 3)),
        ],
    )
    .await;
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (20, 6, 14));
    assert_eq!(levels(&ledger, "CARD", "WH-1").await, (10, 3, 7));
    apply_all(
        &ledger,
        vec![("KIT-G", "edit:L1:v2", edit("shop:1:L1", 1, 2))],
    )
    .await;
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (20, 2, 18));
    assert_eq!(levels(&ledger, "CARD", "WH-1").await, (10, 1, 9));
    assert_eq!(line(&ledger, "MUG", "shop:1:L1").await, (2, 0, 0, 0));
    // An older version delivered late is ignored by every component, and says so.
    let late = ledger
        .submit(movement("KIT-G", "edit:L1:v1", edit("shop:1:L1", 5, 1)))
        .await
        .unwrap();
    assert!(matches!(late, Ack::Ignored { .. }), "{late:?}");
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (20, 2, 18));
    // An edit that adds a kit line records its expansion like a sale.
    apply_all(
        &ledger,
        vec![("KIT-G", "edit:L2:v3", edit("shop:1:L2", 4, 3))],
    )
    .await;
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (20, 10, 10));
    assert_eq!(levels(&ledger, "CARD", "WH-1").await, (10, 5, 5));
    assert_eq!(bundle_available(&sink, &bom, "KIT-G"), 5);
    // Ship 2 kits of L2, then cut L2 to 1 kit: the component lines keep what shipped.
    apply_all(
        &ledger,
        vec![
            ("KIT-G", "wms:L2", ship("shop:1:L2", 2, Some("WH-1"))),
            ("KIT-G", "edit:L2:v4", edit("shop:1:L2", 1, 4)),
        ],
    )
    .await;
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (16, 2, 14));
    assert_eq!(levels(&ledger, "CARD", "WH-1").await, (8, 1, 7));
    assert_eq!(line(&ledger, "MUG", "shop:1:L2").await, (4, 4, 0, 0));
    assert_eq!(line(&ledger, "CARD", "shop:1:L2").await, (2, 2, 0, 0));
    assert_eq!(bundle_available(&sink, &bom, "KIT-G"), 7);
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_kit_shipment_before_its_sale_is_parked_and_applies_with_the_sale() {
    let dir = tempfile::tempdir().unwrap();
    let bom = bom(&[("KIT-G", &[("MUG", 2), ("CARD", 1)])]);
    let ledger = start(&dir, bom, Arc::new(RecordingSink::default()));
    apply_all(
        &ledger,
        vec![
            ("MUG", "erp:m", receipt("WH-1", 20)),
            ("CARD", "erp:c", receipt("WH-1", 10)),
        ],
    )
    .await;
    let parked = ledger
        .submit(movement("KIT-G", "wms:1", ship("shop:2:L1", 2, None)))
        .await
        .unwrap();
    assert!(matches!(parked, Ack::Parked { .. }), "{parked:?}");
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (20, 0, 20));
    apply_all(&ledger, vec![("KIT-G", "shop:2:L1", sale("shop:2:L1", 2))]).await;
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (16, 0, 16));
    assert_eq!(levels(&ledger, "CARD", "WH-1").await, (8, 0, 8));
    assert_eq!(line(&ledger, "MUG", "shop:2:L1").await, (4, 4, 0, 0));
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_kit_reassign_moves_every_component_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let bom = bom(&[("KIT-G", &[("MUG", 2), ("CARD", 1)])]);
    let ledger = start(&dir, bom, Arc::new(RecordingSink::default()));
    apply_all(
        &ledger,
        vec![
            ("MUG", "erp:m1", receipt("WH-1", 10)),
            ("CARD", "erp:c1", receipt("WH-1", 10)),
            ("MUG", "erp:m2", receipt("WH-2", 10)),
            ("CARD", "erp:c2", receipt("WH-2", 1)),
            ("KIT-G", "shop:3:L1", sale("shop:3:L1", 3)),
        ],
    )
    .await;
    let reassign = MovementKind::Reassign {
        reservation: "shop:3:L1".into(),
        to: "WH-2".into(),
    };
    // WH-2 holds the 6 mugs but only 1 of the 3 cards: nothing moves.
    let refused = ledger
        .submit(movement("KIT-G", "ops:move:1", reassign.clone()))
        .await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::Rejected(ApplyError::InsufficientStock { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (10, 6, 4));
    assert_eq!(levels(&ledger, "MUG", "WH-2").await, (10, 0, 10));
    assert_eq!(levels(&ledger, "CARD", "WH-1").await, (10, 3, 7));
    assert_eq!(levels(&ledger, "CARD", "WH-2").await, (1, 0, 1));
    apply_all(
        &ledger,
        vec![
            ("CARD", "erp:c3", receipt("WH-2", 2)),
            ("KIT-G", "ops:move:2", reassign),
        ],
    )
    .await;
    assert_eq!(levels(&ledger, "MUG", "WH-1").await, (10, 0, 10));
    assert_eq!(levels(&ledger, "MUG", "WH-2").await, (10, 6, 4));
    assert_eq!(levels(&ledger, "CARD", "WH-2").await, (3, 3, 0));
    // A later cancellation of the kit line acts on the current holder.
    apply_all(
        &ledger,
        vec![(
            "KIT-G",
            "shop:3:L1:cancel",
            MovementKind::Cancellation {
                reservation: "shop:3:L1".into(),
                quantity: Some(1),
                reason: None,
                write_off: false,
            },
        )],
    )
    .await;
    assert_eq!(levels(&ledger, "MUG", "WH-2").await, (10, 4, 6));
    assert_eq!(levels(&ledger, "CARD", "WH-2").await, (3, 2, 1));
    ledger.shutdown().await;
}
