//! Ledger tests against the real embedded store.

use super::*;
use crate::domain::{AvailabilityChange, LocationId, MovementKind, SCHEMA_VERSION};
use crate::store::embedded::EmbeddedStore;
use std::sync::Mutex;

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

fn receipt(quantity: u64) -> MovementKind {
    MovementKind::Receipt {
        location: "WH-1".into(),
        quantity,
    }
}

fn hold(reservation: &str) -> MovementKind {
    MovementKind::Reservation {
        expires_at_ms: None,
        reservation: reservation.into(),
        quantity: 1,
        location: None,
        route: vec!["WH-1".into()],
    }
}

#[derive(Default)]
struct RecordingSink(Mutex<Vec<AvailabilityChange>>);

impl AvailabilitySink for RecordingSink {
    fn publish(&self, changes: &[AvailabilityChange]) {
        self.0.lock().unwrap().extend_from_slice(changes);
    }
}

fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.path().join("ledger.db")).unwrap())
}

fn available(state: &SkuState) -> i64 {
    state.location(&LocationId::from("WH-1")).available()
}

#[tokio::test]
async fn duplicates_are_acknowledged_without_effect_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::start(
            open(&dir),
            Arc::new(NullSinkForTests),
            LedgerOptions::default(),
        );
        let first = ledger
            .submit(movement("SKU-C", "r1", receipt(10)))
            .await
            .unwrap();
        assert_eq!(first, Ack::Applied { seq: 1 });
        // Scenario S2: the same key concurrently and again later.
        let (a, b) = tokio::join!(
            ledger.submit(movement(
                "SKU-C",
                "o1",
                MovementKind::Sale {
                    reservation: "c1:o1:l1".into(),
                    quantity: 1,
                    location: Some("WH-1".into()),
                    route: vec![]
                }
            )),
            ledger.submit(movement(
                "SKU-C",
                "o1",
                MovementKind::Sale {
                    reservation: "c1:o1:l1".into(),
                    quantity: 1,
                    location: Some("WH-1".into()),
                    route: vec![]
                }
            )),
        );
        assert_eq!(a.unwrap(), Ack::Applied { seq: 2 });
        assert_eq!(b.unwrap(), Ack::Duplicate { seq: 2 });
        ledger.shutdown().await;
    }
    let ledger = Ledger::start(
        open(&dir),
        Arc::new(NullSinkForTests),
        LedgerOptions::default(),
    );
    let again = ledger
        .submit(movement(
            "SKU-C",
            "o1",
            MovementKind::Sale {
                reservation: "c1:o1:l1".into(),
                quantity: 1,
                location: Some("WH-1".into()),
                route: vec![],
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        again,
        Ack::Duplicate { seq: 2 },
        "keys are durable across restarts"
    );
    let state = ledger.state(&"SKU-C".into()).await.unwrap();
    assert_eq!((state.seq, available(&state)), (2, 9));
}

struct NullSinkForTests;
impl AvailabilitySink for NullSinkForTests {
    fn publish(&self, _changes: &[AvailabilityChange]) {}
}

#[tokio::test]
async fn concurrent_holds_on_the_last_units_exactly_k_succeed() {
    // Scenario S1 generalised: N concurrent reservations against stock k.
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(
        open(&dir),
        Arc::new(NullSinkForTests),
        LedgerOptions::default(),
    );
    let k = 7;
    ledger
        .submit(movement("SKU-A", "stock", receipt(k)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                ledger
                    .submit(movement("SKU-A", &format!("h{i}"), hold(&format!("h{i}"))))
                    .await
            })
        })
        .collect();
    let mut succeeded = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Ack::Applied { .. }) => succeeded += 1,
            Err(LedgerError::Rejected(crate::domain::ApplyError::InsufficientStock { .. })) => {
                refused += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((succeeded, refused), (k, 50 - k));
    assert_eq!(available(&ledger.state(&"SKU-A".into()).await.unwrap()), 0);
}

#[tokio::test]
async fn passivated_skus_reload_from_snapshot_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let options = LedgerOptions {
        idle_passivate_secs: 0,
        snapshot_every_events: 3,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::start(open(&dir), Arc::new(NullSinkForTests), options);
    for i in 0..10 {
        ledger
            .submit(movement("SKU-P", &format!("r{i}"), receipt(1)))
            .await
            .unwrap();
    }
    for _ in 0..200 {
        if ledger.live_actors() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ledger.live_actors(), 0, "idle actor was not passivated");
    let duplicate = ledger
        .submit(movement("SKU-P", "r4", receipt(1)))
        .await
        .unwrap();
    assert_eq!(duplicate, Ack::Duplicate { seq: 5 });
    let state = ledger.state(&"SKU-P".into()).await.unwrap();
    assert_eq!(
        (state.seq, state.location(&"WH-1".into()).on_hand),
        (10, 10)
    );
}

#[tokio::test]
async fn availability_is_published_once_durable_with_the_newest_levels() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(RecordingSink::default());
    let ledger = Ledger::start(open(&dir), sink.clone(), LedgerOptions::default());
    let pending: Vec<_> = (0..5)
        .map(|i| ledger.submit(movement("SKU-Q", &format!("r{i}"), receipt(2))))
        .collect();
    for ack in futures::future::join_all(pending).await {
        ack.unwrap();
    }
    let changes = sink.0.lock().unwrap().clone();
    let last = changes.last().expect("published");
    assert_eq!((last.seq, last.locations[0].on_hand), (5, 10));
    assert!(
        changes.windows(2).all(|w| w[0].seq < w[1].seq),
        "published in order: {changes:?}"
    );
}

#[tokio::test]
async fn rejected_movements_are_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(
        open(&dir),
        Arc::new(NullSinkForTests),
        LedgerOptions::default(),
    );
    let error = ledger
        .submit(movement(
            "SKU-R",
            "f1",
            MovementKind::Fulfilment {
                reservation: "nope".into(),
                quantity: 1,
            },
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, LedgerError::Rejected(_)));
    ledger
        .submit(movement("SKU-R", "r1", receipt(1)))
        .await
        .unwrap();
    let events = ledger.store().events("SKU-R", 1, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].idempotency_key, "r1");
}

/// Hold expiry (scenario S5) under tokio's paused clock: the ledger reads wall time from an
/// injected [`crate::clock::TokioClock`], so advancing tokio's time moves the reaper's
/// timers and the hold's expiry together, and the test takes no real time.
#[tokio::test(start_paused = true)]
async fn a_ttl_hold_is_released_at_its_expiry_under_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::TokioClock::starting_at(1_700_000_000_000);
    let ledger = Ledger::start(
        open(&dir),
        Arc::new(NullSinkForTests),
        LedgerOptions {
            clock: clock.clone(),
            ..LedgerOptions::default()
        },
    );
    let sku = Sku::from("SKU-F");
    ledger
        .submit(movement("SKU-F", "r1", receipt(5)))
        .await
        .unwrap();
    let expires_at_ms = crate::clock::Clock::now_ms(clock.as_ref()) + 30 * 60 * 1000;
    ledger
        .submit(movement(
            "SKU-F",
            "hold-1",
            MovementKind::Reservation {
                expires_at_ms: Some(expires_at_ms),
                reservation: "pending-payment".into(),
                quantity: 2,
                location: None,
                route: vec!["WH-1".into()],
            },
        ))
        .await
        .unwrap();
    assert_eq!(available(&ledger.state(&sku).await.unwrap()), 3);

    // 29 minutes later the hold still stands.
    tokio::time::advance(Duration::from_secs(29 * 60)).await;
    let state = ledger.state(&sku).await.unwrap();
    assert_eq!(available(&state), 3, "released before its expiry");
    assert!(crate::clock::Clock::now_ms(clock.as_ref()) < expires_at_ms);

    // Two minutes more and the reaper releases it, within its one-second wake-up pace.
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    let mut released = None;
    for _ in 0..50 {
        let state = ledger.state(&sku).await.unwrap();
        if available(&state) == 5 {
            released = Some(state);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = released.expect("the lapsed hold was not released");
    assert_eq!(state.reservations["pending-payment"].released, 2);
    assert_eq!(state.next_expiry_ms(), None);
    ledger.shutdown().await;
}
