//! Issue 9 §2b: parked movements of an idle SKU expire into the dead-letter store through
//! the reaper, under tokio's paused clock (no real waiting).

use super::*;
use crate::domain::{LocationId, MovementKind, Rules, RulesCell, SCHEMA_VERSION, StockPolicy};
use crate::store::embedded::EmbeddedStore;
use crate::store::{DeadLetterQuery, EventQuery};

const TTL_MS: i64 = 60_000;

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

fn start(dir: &tempfile::TempDir, clock: crate::clock::SharedClock) -> Ledger {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("s.db")).unwrap());
    let rules = Rules {
        stock: StockPolicy {
            parked_ttl_ms: TTL_MS,
            ..StockPolicy::default()
        },
        ..Rules::default()
    };
    Ledger::start(
        store,
        Arc::new(NullSink),
        LedgerOptions {
            clock,
            rules: Arc::new(RulesCell::new(rules)),
            ..LedgerOptions::default()
        },
    )
}

fn on_hand(state: &SkuState) -> (i64, i64) {
    let stock = state.location(&LocationId::from("WH-1"));
    (stock.on_hand, stock.reserved)
}

#[tokio::test(start_paused = true)]
async fn a_parked_fulfilment_of_an_idle_sku_expires_into_the_dead_letter_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::TokioClock::starting_at(1_700_000_000_000);
    let sku = Sku::from("SKU-DL");
    {
        let ledger = start(&dir, clock.clone());
        let receipt = MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: 10,
        };
        assert_eq!(
            ledger
                .submit(movement("SKU-DL", "r1", receipt))
                .await
                .unwrap(),
            Ack::Applied { seq: 1 }
        );
        let ship = MovementKind::Fulfilment {
            reservation: "shop:4711:L1".into(),
            quantity: 3,
            location: None,
        };
        let parked = ledger
            .submit(movement("SKU-DL", "wms:ship-1", ship))
            .await
            .unwrap();
        assert_eq!(parked, Ack::Parked { seq: 2 });
        // Just before the TTL nothing happens.
        tokio::time::advance(Duration::from_millis(TTL_MS as u64 - 3_000)).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(ledger.state(&sku).await.unwrap().parked.len(), 1);
        // Past it, without any other movement of the SKU, the reaper expires it.
        tokio::time::advance(Duration::from_millis(2_000)).await;
        let mut state = ledger.state(&sku).await.unwrap();
        for _ in 0..50 {
            if state.parked.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            state = ledger.state(&sku).await.unwrap();
        }
        assert!(state.parked.is_empty(), "still parked: {:?}", state.parked);
        assert_eq!(state.seq, 3, "the expiry is one recorded event");
        assert_eq!(on_hand(&state), (10, 0));
        // A second wake finds nothing to expire.
        tokio::time::advance(Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(ledger.state(&sku).await.unwrap().seq, 3);
        ledger.shutdown().await;
    }
    // After a restart it stays expired (replay expires it at the same event), and the
    // dead letter is stored once.
    let ledger = start(&dir, clock.clone());
    let state = ledger.state(&sku).await.unwrap();
    assert!(state.parked.is_empty(), "re-parked: {:?}", state.parked);
    assert_eq!((state.seq, on_hand(&state)), (3, (10, 0)));
    let letters = ledger
        .store()
        .dead_letters(&DeadLetterQuery {
            sku: Some("SKU-DL".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (letter.parked_seq, letter.expired_seq, letter.kind.as_str()),
        (2, 3, "fulfilment")
    );
    assert_eq!(letter.idempotency_key, "wms:ship-1");
    assert_eq!(letter.source, "wms-1");
    assert!(letter.reason.contains("shop:4711:L1"), "{}", letter.reason);
    assert!(letter.movement_json.contains("shop:4711:L1"));
    assert!(letter.expired_at_ms > letter.parked_at_ms + TTL_MS);
    // The history shows the parked event with its reason and the expiring one.
    let history = ledger
        .store()
        .query_events(&EventQuery {
            sku: Some("SKU-DL".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let outcomes: Vec<Option<String>> = history.iter().map(|h| h.outcome.clone()).collect();
    assert_eq!(outcomes[0], None, "a plain event stores no outcome");
    assert!(outcomes[1].as_deref().unwrap().contains("\"parked\""));
    assert!(
        outcomes[2]
            .as_deref()
            .unwrap()
            .contains("\"dead_lettered\":1")
    );
    // The SKU has no reason left to be woken.
    let wakes = ledger.store().hold_expiries(None, 10).await.unwrap();
    assert!(wakes.is_empty(), "{wakes:?}");
    ledger.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_movement_is_found_again_by_the_reaper_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::TokioClock::starting_at(1_700_000_000_000);
    let sku = Sku::from("SKU-DR");
    {
        let ledger = start(&dir, clock.clone());
        let give_back = MovementKind::Return {
            location: Some("WH-1".into()),
            quantity: 1,
            reservation: Some("shop:4712:L1".into()),
            restock: true,
        };
        let parked = ledger
            .submit(movement("SKU-DR", "rma:1", give_back))
            .await
            .unwrap();
        assert_eq!(parked, Ack::Parked { seq: 1 });
        ledger.shutdown().await;
    }
    tokio::time::advance(Duration::from_millis(TTL_MS as u64 + 1_000)).await;
    // The new ledger never touches the SKU: the reaper finds it in the store at start.
    let ledger = start(&dir, clock.clone());
    let mut letters = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        letters = ledger
            .store()
            .dead_letters(&DeadLetterQuery {
                sku: None,
                limit: 10,
            })
            .await
            .unwrap();
        if !letters.is_empty() {
            break;
        }
    }
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, "return");
    assert!(ledger.state(&sku).await.unwrap().parked.is_empty());
    ledger.shutdown().await;
}
