//! Issue 10 §2: the ledger's limits. Quantities that would overflow, locations that are not
//! configured, an idempotency key reused for another movement, unbounded metric labels and
//! unbounded mailboxes are refused with a clear error, and the shard keeps serving.

use super::*;
use crate::domain::{
    ApplyError, LocationId, MovementKind, Rules, RulesCell, SCHEMA_VERSION, StockPolicy,
};
use crate::store::embedded::EmbeddedStore;

struct NullSink;
impl AvailabilitySink for NullSink {
    fn publish(&self, _changes: &[crate::domain::AvailabilityChange]) {}
}

fn movement(sku: &str, key: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.into(),
        source: "wms-1".into(),
        occurred_at_ms: None,
        kind,
    }
}

fn receipt(location: &str, quantity: u64) -> MovementKind {
    MovementKind::Receipt {
        location: location.into(),
        quantity,
    }
}

fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.path().join("limits.db")).unwrap())
}

fn start(dir: &tempfile::TempDir, options: LedgerOptions) -> Ledger {
    Ledger::start(store(dir), Arc::new(NullSink), options)
}

fn one_shard() -> LedgerOptions {
    LedgerOptions {
        shards: 1,
        ..LedgerOptions::default()
    }
}

fn on_hand(state: &SkuState, location: &str) -> i64 {
    state.location(&LocationId::from(location)).on_hand
}

#[tokio::test]
async fn a_receipt_near_two_to_the_63_is_refused_and_the_shard_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = start(&dir, one_shard());
    ledger
        .submit(movement("SKU-O", "r1", receipt("WH-1", 5)))
        .await
        .unwrap();
    for (key, kind) in [
        ("r2", receipt("WH-1", i64::MAX as u64)),
        ("r3", receipt("WH-1", u64::MAX)),
        (
            "a1",
            MovementKind::Adjustment {
                location: "WH-1".into(),
                delta: i64::MIN,
                reason: "x".into(),
            },
        ),
        (
            "a2",
            MovementKind::Adjustment {
                location: "WH-1".into(),
                delta: i64::MAX,
                reason: "x".into(),
            },
        ),
    ] {
        let refused = ledger.submit(movement("SKU-O", key, kind)).await;
        assert!(
            matches!(refused, Err(LedgerError::Rejected(ApplyError::Invalid(_)))),
            "{key}: {refused:?}"
        );
    }
    // The shard (the only one) still serves this SKU and every other.
    let next = ledger
        .submit(movement("SKU-O", "r4", receipt("WH-1", 1)))
        .await
        .unwrap();
    assert_eq!(next, Ack::Applied { seq: 2 });
    ledger
        .submit(movement("SKU-P", "r1", receipt("WH-1", 3)))
        .await
        .unwrap();
    let state = ledger.state(&"SKU-O".into()).await.unwrap();
    assert_eq!(on_hand(&state, "WH-1"), 6);
}

fn with_locations(locations: &[&str]) -> LedgerOptions {
    let rules = Rules {
        stock: StockPolicy {
            known_locations: locations.iter().map(|l| LocationId::from(*l)).collect(),
            ..StockPolicy::default()
        },
        ..Rules::default()
    };
    LedgerOptions {
        rules: Arc::new(RulesCell::new(rules)),
        ..one_shard()
    }
}

#[tokio::test]
async fn a_movement_to_a_location_that_is_not_configured_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = start(&dir, with_locations(&["WH-1", "WH-2"]));
    let refused = ledger
        .submit(movement("SKU-U", "r1", receipt("NO-SUCH-LOC", 5)))
        .await;
    assert_eq!(
        refused,
        Err(LedgerError::Rejected(ApplyError::UnknownLocation {
            field: "location".into(),
            location: "NO-SUCH-LOC".into(),
        }))
    );
    let routed = ledger
        .submit(movement(
            "SKU-U",
            "s1",
            MovementKind::Sale {
                reservation: "c:o:1".into(),
                quantity: 1,
                location: None,
                route: vec!["WH-1".into(), "ELSEWHERE".into()],
            },
        ))
        .await;
    assert_eq!(
        refused_field(&routed),
        Some("route/1".to_owned()),
        "{routed:?}"
    );
    let state = ledger.state(&"SKU-U".into()).await.unwrap();
    assert!(state.locations.is_empty(), "{:?}", state.locations);
    assert_eq!(state.seq, 0);
    // Configured locations keep working.
    ledger
        .submit(movement("SKU-U", "r2", receipt("WH-2", 5)))
        .await
        .unwrap();
}

fn refused_field(outcome: &Result<Ack, LedgerError>) -> Option<String> {
    match outcome {
        Err(LedgerError::Rejected(ApplyError::UnknownLocation { field, .. })) => {
            Some(field.clone())
        }
        _ => None,
    }
}

#[tokio::test]
async fn a_hold_request_naming_an_unknown_location_is_refused_as_such_not_as_short_stock() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = start(&dir, with_locations(&["WH-1"]));
    ledger
        .submit(movement("SKU-R", "r1", receipt("WH-1", 5)))
        .await
        .unwrap();
    let request = ReservationRequest {
        id: "checkout-1".into(),
        lines: vec![
            ReservationLine {
                sku: "SKU-R".into(),
                quantity: 1,
                location: Some("WH-1".into()),
                route: vec![],
            },
            ReservationLine {
                sku: "SKU-R".into(),
                quantity: 1,
                location: Some("NO-SUCH-LOC".into()),
                route: vec![],
            },
        ],
        ttl_secs: None,
    };
    let refused = ledger.reserve(request).await;
    assert!(
        matches!(
            &refused,
            Err(LedgerError::Rejected(ApplyError::UnknownLocation { field, location }))
                if field == "lines/1/location" && location.as_str() == "NO-SUCH-LOC"
        ),
        "{refused:?}"
    );
    let state = ledger.state(&"SKU-R".into()).await.unwrap();
    assert!(state.reservations.is_empty(), "nothing was held");
}

#[tokio::test]
async fn a_key_reused_for_another_movement_is_a_conflict_in_flight_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = start(&dir, one_shard());
        // In flight: both reach the shard before the first is durable.
        let (first, second, again) = tokio::join!(
            ledger.submit(movement("SKU-K", "wms:rcpt-1", receipt("WH-1", 10))),
            ledger.submit(movement("SKU-K", "wms:rcpt-1", receipt("WH-1", 12))),
            ledger.submit(movement("SKU-K", "wms:rcpt-1", receipt("WH-1", 10))),
        );
        assert_eq!(first.unwrap(), Ack::Applied { seq: 1 });
        assert_eq!(
            second,
            Err(LedgerError::Rejected(ApplyError::IdempotencyConflict {
                key: "wms:rcpt-1".into(),
                seq: 1
            }))
        );
        assert_eq!(again.unwrap(), Ack::Duplicate { seq: 1 });
        ledger.shutdown().await;
    }
    // After a restart the key is confirmed in the store, with its hash.
    let ledger = start(&dir, one_shard());
    let conflict = ledger
        .submit(movement("SKU-K", "wms:rcpt-1", receipt("WH-2", 10)))
        .await;
    assert!(
        matches!(
            conflict,
            Err(LedgerError::Rejected(ApplyError::IdempotencyConflict {
                seq: 1,
                ..
            }))
        ),
        "{conflict:?}"
    );
    // A redelivery that differs only in its source time is the same movement.
    let mut redelivered = movement("SKU-K", "wms:rcpt-1", receipt("WH-1", 10));
    redelivered.occurred_at_ms = Some(1_700_000_000_000);
    assert_eq!(
        ledger.submit(redelivered).await.unwrap(),
        Ack::Duplicate { seq: 1 }
    );
    // Keys are scoped per SKU: the same key on another SKU is another movement.
    assert_eq!(
        ledger
            .submit(movement("SKU-K2", "wms:rcpt-1", receipt("WH-1", 12)))
            .await
            .unwrap(),
        Ack::Applied { seq: 1 }
    );
    let state = ledger.state(&"SKU-K".into()).await.unwrap();
    assert_eq!((state.seq, on_hand(&state, "WH-1")), (1, 10));
}

#[tokio::test]
async fn a_full_shard_mailbox_refuses_new_movements_as_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = start(
        &dir,
        LedgerOptions {
            max_queued_per_shard: 2,
            ..one_shard()
        },
    );
    // The test runtime has one thread: the shard runs only once this task awaits, so all
    // five wait in its mailbox together.
    let pending: Vec<_> = (0..5)
        .map(|i| ledger.submit(movement("SKU-M", &format!("r{i}"), receipt("WH-1", 1))))
        .collect();
    let outcomes = futures::future::join_all(pending).await;
    let applied = outcomes.iter().filter(|o| o.is_ok()).count();
    let overloaded = outcomes
        .iter()
        .filter(|o| matches!(o, Err(LedgerError::Overloaded(_))))
        .count();
    assert_eq!((applied, overloaded), (2, 3), "{outcomes:?}");
    assert!(outcomes[4].as_ref().unwrap_err().is_transient());
    // Once the mailbox drained, movements are accepted again.
    ledger
        .submit(movement("SKU-M", "r9", receipt("WH-1", 1)))
        .await
        .unwrap();
    let state = ledger.state(&"SKU-M".into()).await.unwrap();
    assert_eq!(on_hand(&state, "WH-1"), 3);
}

#[tokio::test]
async fn a_full_sku_buffer_refuses_new_work_for_that_sku_as_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = start(
        &dir,
        LedgerOptions {
            max_buffered_per_sku: 2,
            ..one_shard()
        },
    );
    // The SKU is not in memory: its messages wait in its buffer while it loads.
    let pending: Vec<_> = (0..4)
        .map(|i| ledger.submit(movement("SKU-N", &format!("r{i}"), receipt("WH-1", 1))))
        .collect();
    let outcomes = futures::future::join_all(pending).await;
    let overloaded = outcomes
        .iter()
        .filter(|o| matches!(o, Err(LedgerError::Overloaded(_))))
        .count();
    assert_eq!(overloaded, 2, "{outcomes:?}");
    let state = ledger.state(&"SKU-N".into()).await.unwrap();
    assert_eq!(on_hand(&state, "WH-1"), 2);
}

#[tokio::test]
async fn metric_source_labels_stay_bounded_whatever_sources_producers_send() {
    let handle = crate::telemetry::prometheus();
    let dir = tempfile::tempdir().unwrap();
    let ledger = start(&dir, LedgerOptions::default());
    let pending: Vec<_> = (0..1_000)
        .map(|i| {
            let mut m = movement(
                &format!("SKU-S{}", i % 10),
                &format!("k{i}"),
                receipt("WH-1", 1),
            );
            m.source = format!("producer-{i}");
            ledger.submit(m)
        })
        .collect();
    for outcome in futures::future::join_all(pending).await {
        outcome.unwrap();
    }
    // One duplicate per source too (the dedupe counter is labelled by source).
    let mut m = movement("SKU-S0", "k0", receipt("WH-1", 1));
    m.source = "producer-0".into();
    ledger.submit(m).await.unwrap();
    let text = handle.render();
    let sources_of = |metric: &str| {
        let mut sources = std::collections::BTreeSet::new();
        for line in text.lines().filter(|line| line.starts_with(metric)) {
            if let Some(rest) = line.split("source=\"").nth(1) {
                sources.insert(rest.split('"').next().unwrap_or_default().to_owned());
            }
        }
        sources
    };
    let applied = sources_of(crate::telemetry::LEDGER_MOVEMENTS_TOTAL);
    let duplicates = sources_of(crate::telemetry::LEDGER_DEDUPE_HITS_TOTAL);
    assert!(applied.contains("other"), "{applied:?}");
    assert!(duplicates.contains("other"), "{duplicates:?}");
    for sources in [&applied, &duplicates] {
        assert!(
            !sources.iter().any(|s| s.starts_with("producer-")),
            "{sources:?}"
        );
    }
    // Only the ledger counts applied movements: the configured sources and `other`.
    let configured = crate::config::default_metric_sources().len();
    assert!(applied.len() <= configured + 1, "{applied:?}");
}
