//! The cluster's fencing against a real (embedded) store: a ledger that still believes it
//! owns a partition another instance took writes nothing of it, answers `NotOwner`, and
//! goes on writing the partitions it still holds.

use super::*;
use crate::domain::{AvailabilitySink, MovementKind, SCHEMA_VERSION};
use crate::ledger::ownership::OwnershipHandle;
use crate::ledger::{Ack, LedgerError, LedgerOptions};
use crate::store::embedded::EmbeddedStore;

struct NullSink;
impl AvailabilitySink for NullSink {
    fn publish(&self, _changes: &[crate::domain::AvailabilityChange]) {}
}

fn receipt(sku: &str, key: &str, quantity: u64) -> crate::domain::Movement {
    crate::domain::Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.into(),
        source: "test".into(),
        occurred_at_ms: None,
        kind: MovementKind::Receipt {
            location: "WH-1".into(),
            quantity,
        },
    }
}

/// Two SKUs in different partitions of a 4-partition table.
fn two_skus(table: &PartitionTable) -> (String, String) {
    let first = "FENCE-0".to_owned();
    let other = (1..100)
        .map(|i| format!("FENCE-{i}"))
        .find(|sku| table.partition_of(sku) != table.partition_of(&first))
        .expect("some SKU lands in another partition");
    (first, other)
}

#[tokio::test]
async fn a_zombie_writes_nothing_of_a_partition_taken_over_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("ledger.db")).unwrap());
    let table = Arc::new(PartitionTable::new(4));
    let (lost_sku, kept_sku) = two_skus(&table);
    let (lost, kept) = (table.partition_of(&lost_sku), table.partition_of(&kept_sku));
    // This instance ("zombie") holds both partitions with leases expiring at 1,000.
    for partition in [lost, kept] {
        let LeaseOutcome::Granted(lease) = store
            .try_lease(&partition_scope(partition), "zombie#1", "", 0, 1_000)
            .await
            .unwrap()
        else {
            panic!("a free partition is granted");
        };
        table.hold(partition, lease.epoch);
    }
    let ledger = Ledger::start(
        store.clone(),
        Arc::new(NullSink),
        LedgerOptions {
            ownership: Some(OwnershipHandle(table.clone())),
            ..LedgerOptions::default()
        },
    );
    assert_eq!(
        ledger.submit(receipt(&lost_sku, "r1", 5)).await,
        Ok(Ack::Applied { seq: 1 })
    );
    // The zombie pauses; its lease on `lost` expires and another instance takes it.
    let LeaseOutcome::Granted(taken) = store
        .try_lease(
            &partition_scope(lost),
            "other#2",
            "http://other",
            2_000,
            1_000,
        )
        .await
        .unwrap()
    else {
        panic!("an expired lease is taken over");
    };
    assert_eq!(taken.epoch, table.held_epoch(lost) + 1);
    // Woken, the zombie still admits the SKU: its write is refused by the store.
    let answer = ledger.submit(receipt(&lost_sku, "r2", 7)).await;
    assert!(
        matches!(answer, Err(LedgerError::NotOwner { partition, .. }) if partition == lost),
        "{answer:?}"
    );
    assert_eq!(
        store.events(&lost_sku, 1, 10).await.unwrap().len(),
        1,
        "nothing of the zombie's later movement reached the store"
    );
    assert_eq!(table.held_epoch(lost), 0, "the table forgot the partition");
    assert!(ledger.submit(receipt(&lost_sku, "r3", 1)).await.is_err());
    // The partition it still holds is written as before.
    assert_eq!(
        ledger.submit(receipt(&kept_sku, "k1", 3)).await,
        Ok(Ack::Applied { seq: 1 })
    );
    assert_eq!(store.events(&kept_sku, 1, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn evicting_a_partition_drops_its_skus_and_reads_still_answer_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("ledger.db")).unwrap());
    let table = Arc::new(PartitionTable::new(4));
    let (sku, other) = two_skus(&table);
    let partition = table.partition_of(&sku);
    table.hold(partition, 1);
    table.hold(table.partition_of(&other), 1);
    let ledger = Ledger::start(
        store.clone(),
        Arc::new(NullSink),
        LedgerOptions {
            ownership: Some(OwnershipHandle(table.clone())),
            ..LedgerOptions::default()
        },
    );
    ledger.submit(receipt(&sku, "e1", 4)).await.unwrap();
    ledger.submit(receipt(&other, "e2", 2)).await.unwrap();
    assert_eq!(ledger.live_actors(), 2);
    table.stop_admitting(partition);
    let filter_table = table.clone();
    let dropped = ledger
        .evict_where(Arc::new(move |name: &str| {
            filter_table.partition_of(name) == partition
        }))
        .await;
    assert_eq!(dropped, 1);
    assert_eq!(
        ledger.live_actors(),
        1,
        "only the other partition's SKU stays"
    );
    // Not admitted: writes are refused, reads replay from the store without a cell.
    assert!(matches!(
        ledger.submit_owned(receipt(&sku, "e3", 1), None).await,
        Err(LedgerError::NotOwner { .. })
    ));
    let state = ledger
        .state(&crate::domain::Sku(sku.clone()))
        .await
        .unwrap();
    assert_eq!(state.location(&"WH-1".into()).on_hand, 4);
    assert_eq!(ledger.live_actors(), 1, "the read kept nothing in memory");
}
