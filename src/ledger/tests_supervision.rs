//! Issue 10 §3 and §4: a store that refuses writes pauses the ledger without losing or
//! acknowledging anything early, and a shard that panics is restarted, its SKUs reloaded,
//! the live gauge kept right, and the movement that killed it refused after two deaths.

use super::*;
use crate::domain::{LocationId, MovementKind, SCHEMA_VERSION};
use crate::store::embedded::EmbeddedStore;
use crate::store::fault::FaultyStore;
use std::time::Duration;

struct NullSink;
impl AvailabilitySink for NullSink {
    fn publish(&self, _changes: &[crate::domain::AvailabilityChange]) {}
}

fn receipt(sku: &str, key: &str, quantity: u64) -> Movement {
    Movement {
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

fn embedded(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.path().join("ledger.db")).unwrap())
}

fn available(state: &SkuState) -> i64 {
    state.location(&LocationId::from("WH-1")).available()
}

/// Waits (polling, at most about 5 s) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1_000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Issue 12: a ledger writing under the store's ownership epoch stops writing once another
/// instance claimed the store: nothing is acknowledged, the ledger reports why, and the
/// store holds none of the stale instance's later movements.
#[tokio::test]
async fn a_ledger_whose_store_was_claimed_by_another_instance_writes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(&dir);
    let epoch = store.acquire_epoch(LEDGER_SCOPE, "first").await.unwrap();
    let ledger = Ledger::start(
        store.clone(),
        Arc::new(NullSink),
        LedgerOptions {
            fences: vec![crate::store::Fence {
                scope: LEDGER_SCOPE.to_owned(),
                epoch,
            }],
            ..LedgerOptions::default()
        },
    );
    assert_eq!(
        ledger.submit(receipt("SKU-F", "f1", 5)).await,
        Ok(Ack::Applied { seq: 1 })
    );
    // A second instance starts on the same store.
    assert_eq!(
        store.acquire_epoch(LEDGER_SCOPE, "second").await.unwrap(),
        epoch + 1
    );
    let pending = tokio::spawn(ledger.submit(receipt("SKU-F", "f2", 7)));
    eventually("the ledger reports the takeover", async || {
        ledger
            .unavailable_reason()
            .is_some_and(|reason| reason.contains("fenced"))
    })
    .await;
    assert!(!pending.is_finished(), "nothing acknowledged");
    assert_eq!(
        store.events("SKU-F", 1, 10).await.unwrap().len(),
        1,
        "the stale instance's movement is not in the store"
    );
    pending.abort();
}

#[tokio::test]
async fn a_failed_group_commit_is_written_again_when_the_store_is_back_and_acknowledged_only_then()
{
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyStore::new(embedded(&dir));
    // Metered under a backend label of its own, so the retry count is this test's alone.
    let metrics = crate::telemetry::prometheus();
    let metered = crate::store::metered::MeteredStore::with_backend(faulty.clone(), "retry-test");
    let ledger = Ledger::start(metered, Arc::new(NullSink), LedgerOptions::default());
    assert_eq!(
        ledger.submit(receipt("SKU-S", "r1", 5)).await,
        Ok(Ack::Applied { seq: 1 })
    );
    faulty.fail_writes(true);
    let pending = tokio::spawn(ledger.submit(receipt("SKU-S", "r2", 7)));
    eventually("the committer has failed twice", async || {
        faulty.failed_commits() >= 2
    })
    .await;
    assert!(!ledger.is_healthy());
    let reason = ledger.unavailable_reason().expect("a reason while down");
    assert!(reason.contains("injected fault"), "{reason}");
    assert!(
        !pending.is_finished(),
        "nothing may be acknowledged (or refused) while its write is not durable"
    );
    faulty.fail_writes(false);
    let ack = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("answered once the store is back")
        .unwrap();
    assert_eq!(ack, Ok(Ack::Applied { seq: 2 }));
    // Every failed attempt was counted as an error and followed by one retry.
    let text = metrics.render();
    let value = |metric: &str, kind: &str| -> u64 {
        text.lines()
            .find(|line| {
                line.starts_with(&format!("{metric}{{"))
                    && line.contains("backend=\"retry-test\"")
                    && line.contains("method=\"commit\"")
                    && line.contains(kind)
            })
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let failed = faulty.failed_commits();
    assert_eq!(
        value(crate::telemetry::STORE_RETRIES_TOTAL, ""),
        failed,
        "{text}"
    );
    assert_eq!(
        value(crate::telemetry::STORE_ERRORS_TOTAL, "kind=\"backend\""),
        failed,
        "{text}"
    );
    assert!(ledger.is_healthy());
    assert_eq!(ledger.unavailable_reason(), None);
    // Writes go on without a restart.
    assert_eq!(
        ledger.submit(receipt("SKU-S", "r3", 1)).await,
        Ok(Ack::Applied { seq: 3 })
    );
    ledger.shutdown().await;
    drop(ledger);
    // Everything acknowledged is durable: a new ledger over the same file sees it.
    let reopened = Ledger::start(embedded(&dir), Arc::new(NullSink), LedgerOptions::default());
    let state = reopened.state(&"SKU-S".into()).await.unwrap();
    assert_eq!((state.seq, available(&state)), (3, 13));
}

/// A SKU other than `sku` on the same shard, and one on another shard.
fn neighbours(sku: &str, shards: usize) -> (String, String) {
    let home = keys::shard_of(sku, shards);
    let same = (0..)
        .map(|n| format!("SKU-N{n}"))
        .find(|candidate| keys::shard_of(candidate, shards) == home)
        .unwrap();
    let other = (0..)
        .map(|n| format!("SKU-O{n}"))
        .find(|candidate| keys::shard_of(candidate, shards) != home)
        .unwrap();
    (same, other)
}

#[tokio::test]
async fn a_panicking_shard_is_restarted_with_its_skus_reloaded_and_the_poison_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shards = 4;
    let ledger = Ledger::start(
        embedded(&dir),
        Arc::new(NullSink),
        LedgerOptions {
            shards,
            ..LedgerOptions::default()
        },
    );
    let (neighbour, elsewhere) = neighbours("SKU-P", shards);
    for (sku, key) in [
        ("SKU-P", "p1"),
        (neighbour.as_str(), "n1"),
        (elsewhere.as_str(), "e1"),
    ] {
        assert_eq!(
            ledger.submit(receipt(sku, key, 10)).await,
            Ok(Ack::Applied { seq: 1 })
        );
    }
    assert_eq!(ledger.live_actors(), 3);
    actor::test_faults::panic_on("poison-1");
    let poison = receipt("SKU-P", "poison-1", 1);

    // First death: the caller is told to retry; the shard's two SKUs leave the gauge.
    let first = ledger.submit(poison.clone()).await;
    assert!(
        matches!(first, Err(LedgerError::Unavailable(_))),
        "{first:?}"
    );
    // Other shards keep serving meanwhile.
    assert_eq!(
        ledger.submit(receipt(&elsewhere, "e2", 1)).await,
        Ok(Ack::Applied { seq: 2 })
    );
    eventually("the shard is back and SKU-P reloaded", async || {
        ledger.state(&"SKU-P".into()).await.is_ok()
    })
    .await;
    // SKU-P (reloaded) and the SKU of the other shard; the neighbour is not in memory.
    assert_eq!(ledger.live_actors(), 2);
    let state = ledger.state(&"SKU-P".into()).await.unwrap();
    assert_eq!(
        (state.seq, available(&state)),
        (1, 10),
        "what was acknowledged survives the restart, the poison left no trace"
    );

    // Second death.
    let second = ledger.submit(poison.clone()).await;
    assert!(
        matches!(second, Err(LedgerError::Unavailable(_))),
        "{second:?}"
    );
    eventually("the shard is back again", async || {
        ledger.state(&neighbour.as_str().into()).await.is_ok()
    })
    .await;

    // From now on the poison is refused, and the shard lives on.
    let third = ledger.submit(poison.clone()).await;
    assert!(
        matches!(&third, Err(LedgerError::Rejected(crate::domain::ApplyError::Invalid(message))) if message.contains("crashed")),
        "{third:?}"
    );
    assert_eq!(
        ledger.submit(receipt("SKU-P", "p2", 2)).await,
        Ok(Ack::Applied { seq: 2 })
    );
    let state = ledger.state(&neighbour.as_str().into()).await.unwrap();
    assert_eq!((state.seq, available(&state)), (1, 10));
    // SKU-P, the neighbour and the SKU of the other shard.
    assert_eq!(ledger.live_actors(), 3);
}
