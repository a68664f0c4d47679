//! Issue 17 (versioned storage): a store written by an older build is read by this one.
//! `tests/fixtures/stores/embedded-b31ce28.db` was written by commit b31ce28 (store layout
//! 1, movements in codec format V1, no movement hashes, no ownership table; see the
//! fixture's README) together with the figures that build answered. This build opens a
//! copy (opening migrates in place), and every SKU loads to the same seq and the same
//! on-hand and reserved per location, its stored events decode, a key the old build
//! stored still answers `duplicate`, and new movements append after the old ones.

use serde_json::Value;
use std::path::Path;
use stocksync::domain::{LocationId, Movement, MovementKind, SCHEMA_VERSION, Sku};
use stocksync::ledger::Ack;
use stocksync::store::embedded::EmbeddedStore;
use stocksync::store::{EventQuery, Store};

use crate::support::TestLedger;
use std::sync::Arc;

const FIXTURE: &str = "tests/fixtures/stores/embedded-b31ce28";

fn fixture(suffix: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{FIXTURE}{suffix}"))
}

fn receipt(sku: &str, key: &str, quantity: u64) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: Sku(sku.to_owned()),
        idempotency_key: key.to_owned(),
        source: "test".to_owned(),
        occurred_at_ms: None,
        kind: MovementKind::Receipt {
            location: "WH-1".into(),
            quantity,
        },
    }
}

#[tokio::test]
async fn a_store_written_by_the_previous_format_loads_to_the_same_figures() {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture(".expected.json")).unwrap()).unwrap();
    assert_eq!(expected["movement_format"], "V1");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stocksync.db");
    std::fs::copy(fixture(".db"), &db).unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&db).expect("this build opens it"));

    // The stored events decode, in seq order, with the keys the old build stored.
    let history = store
        .query_events(&EventQuery {
            limit: 1_000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        history.len() as u64,
        expected["total_events"].as_u64().unwrap(),
        "every event of the old store is in the history"
    );
    let skus = expected["skus"].as_object().unwrap();
    for (sku, figures) in skus {
        let events = store.events(sku, 1, 1_000).await.unwrap();
        let keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
        let want: Vec<&str> = figures["event_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, want, "{sku}");
        for event in &events {
            stocksync::store::codec::decode_movement(&event.movement, sku, &event.idempotency_key)
                .unwrap_or_else(|e| panic!("{sku} seq {}: {e}", event.seq));
        }
    }

    // Every SKU loads (snapshot + the events after it) to the old build's figures.
    let ledger = TestLedger::over(store.clone(), dir);
    for (sku, figures) in skus {
        let state = ledger.ledger.state(&Sku(sku.clone())).await.unwrap();
        assert_eq!(state.seq, figures["seq"].as_u64().unwrap(), "{sku} seq");
        for (location, level) in figures["locations"].as_object().unwrap() {
            let got = state.location(&LocationId::from(location.as_str()));
            assert_eq!(
                (got.on_hand, got.reserved),
                (
                    level["on_hand"].as_i64().unwrap(),
                    level["reserved"].as_i64().unwrap()
                ),
                "{sku} at {location}"
            );
        }
    }

    // A key the old build stored is still remembered; a new movement appends after.
    let (sku, figures) = skus.iter().next().unwrap();
    let old_key = figures["event_keys"][0].as_str().unwrap();
    let last_seq = figures["seq"].as_u64().unwrap();
    let outcome = ledger
        .ledger
        .submit(receipt(sku, old_key, 1))
        .await
        .unwrap();
    assert!(matches!(outcome, Ack::Duplicate { seq: 1 }), "{outcome:?}");
    let outcome = ledger
        .ledger
        .submit(receipt(sku, "test:after-upgrade:1", 2))
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ack::Applied { seq } if seq == last_seq + 1),
        "{outcome:?}"
    );
    let before = figures["locations"]["WH-1"]["on_hand"].as_i64().unwrap();
    let state = ledger.ledger.state(&Sku(sku.clone())).await.unwrap();
    assert_eq!(
        state.location(&LocationId::from("WH-1")).on_hand,
        before + 2
    );
}
