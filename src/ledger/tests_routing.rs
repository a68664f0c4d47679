//! Issue 13: movements routed to their SKU's owner on another instance keep their
//! submission order per SKU (`route_order`), whatever each forward's latency or retries,
//! and movements of different SKUs do not wait for each other. Paused tokio time: the
//! delays below are virtual.

use super::ownership::{ForwardFuture, Forwarder, ForwarderHandle, Ownership, OwnershipHandle};
use super::*;
use crate::store::embedded::EmbeddedStore;
use std::collections::HashMap;
use std::sync::Mutex;

const OWNER_URL: &str = "http://owner.test";

struct NullSink;
impl AvailabilitySink for NullSink {
    fn publish(&self, _changes: &[crate::domain::AvailabilityChange]) {}
}

/// An ownership under which every SKU belongs to the instance at [`OWNER_URL`].
struct OwnedElsewhere;

impl Ownership for OwnedElsewhere {
    fn admit(&self, _sku: &str) -> Result<(), LedgerError> {
        Err(LedgerError::NotOwner {
            partition: 0,
            owner: Some(OWNER_URL.to_owned()),
        })
    }

    fn fence(&self, _sku: &str) -> Option<crate::store::Fence> {
        None
    }

    fn fenced(&self, _scope: &str, _epoch: u64) {}
}

/// The owner on the other side of the forwarder: takes `delays[key]` to answer a
/// forwarded movement, answers `NotOwner` to the first `refusals[key]` forwards of it, and
/// records the keys it applied, in the order they arrived.
#[derive(Clone, Default)]
struct RemoteOwner(Arc<Remote>);

#[derive(Default)]
struct Remote {
    delays_ms: HashMap<String, u64>,
    refusals: Mutex<HashMap<String, u32>>,
    applied: Mutex<Vec<String>>,
}

impl RemoteOwner {
    fn new(delays_ms: &[(&str, u64)], refusals: &[(&str, u32)]) -> Self {
        Self(Arc::new(Remote {
            delays_ms: delays_ms
                .iter()
                .map(|(key, ms)| ((*key).to_owned(), *ms))
                .collect(),
            refusals: Mutex::new(
                refusals
                    .iter()
                    .map(|(key, count)| ((*key).to_owned(), *count))
                    .collect(),
            ),
            applied: Mutex::default(),
        }))
    }

    fn applied(&self) -> Vec<String> {
        self.0.applied.lock().unwrap().clone()
    }
}

impl Forwarder for RemoteOwner {
    fn forward(&self, owner: String, movement: Movement) -> ForwardFuture {
        let remote = self.0.clone();
        Box::pin(async move {
            assert_eq!(owner, OWNER_URL);
            let key = movement.idempotency_key;
            let delay = remote.delays_ms.get(&key).copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if let Some(left) = remote.refusals.lock().unwrap().get_mut(&key)
                && *left > 0
            {
                *left -= 1;
                return Err(LedgerError::NotOwner {
                    partition: 0,
                    owner: None,
                });
            }
            let mut applied = remote.applied.lock().unwrap();
            applied.push(key);
            Ok(Ack::Applied {
                seq: applied.len() as u64,
            })
        })
    }
}

fn receipt(sku: &str, key: &str) -> Movement {
    super::tests::movement(sku, key, super::tests::receipt(1))
}

fn start(dir: &tempfile::TempDir, remote: &RemoteOwner) -> Ledger {
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("routing.db")).unwrap());
    Ledger::start(
        store,
        Arc::new(NullSink),
        LedgerOptions {
            shards: 2,
            ownership: Some(OwnershipHandle(Arc::new(OwnedElsewhere))),
            forwarder: Some(ForwarderHandle(Arc::new(remote.clone()))),
            ..LedgerOptions::default()
        },
    )
}

#[tokio::test(start_paused = true)]
async fn routed_movements_of_one_sku_reach_the_owner_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    // The first forward is the slowest: without an order per SKU the later ones overtake it.
    let remote = RemoteOwner::new(&[("a1", 300), ("a2", 100), ("a3", 0)], &[]);
    let ledger = start(&dir, &remote);
    let pending: Vec<_> = ["a1", "a2", "a3"]
        .into_iter()
        .map(|key| ledger.submit(receipt("A", key)))
        .collect();
    let answers = futures::future::join_all(pending).await;
    assert_eq!(
        answers,
        vec![
            Ok(Ack::Applied { seq: 1 }),
            Ok(Ack::Applied { seq: 2 }),
            Ok(Ack::Applied { seq: 3 })
        ]
    );
    assert_eq!(remote.applied(), ["a1", "a2", "a3"]);
    assert_eq!(
        ledger.shared.route_order.in_flight_skus(),
        0,
        "no entry left"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_routed_movement_is_not_overtaken_by_the_next_one_of_its_sku() {
    let dir = tempfile::tempdir().unwrap();
    // The owner answers the first forward of a1 `NotOwner` (its partition moving): a1 is
    // retried after the backoff, and a2, submitted after it, waits for it.
    let remote = RemoteOwner::new(&[], &[("a1", 2)]);
    let ledger = start(&dir, &remote);
    let first = ledger.submit(receipt("A", "a1"));
    let second = ledger.submit(receipt("A", "a2"));
    assert_eq!(second.await, Ok(Ack::Applied { seq: 2 }));
    assert_eq!(first.await, Ok(Ack::Applied { seq: 1 }));
    assert_eq!(remote.applied(), ["a1", "a2"]);
    assert_eq!(ledger.shared.route_order.in_flight_skus(), 0);
}

#[tokio::test(start_paused = true)]
async fn routed_movements_of_different_skus_do_not_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let remote = RemoteOwner::new(&[("a1", 1_000), ("a2", 10), ("b1", 10)], &[]);
    let ledger = start(&dir, &remote);
    let started = tokio::time::Instant::now();
    let a1 = ledger.submit(receipt("A", "a1"));
    let a2 = ledger.submit(receipt("A", "a2"));
    let b1 = ledger.submit(receipt("B", "b1"));
    assert!(b1.await.is_ok());
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "B waited for A: {:?}",
        started.elapsed()
    );
    assert_eq!(remote.applied(), ["b1"]);
    assert!(a2.await.is_ok());
    assert!(a1.await.is_ok());
    assert_eq!(remote.applied(), ["b1", "a1", "a2"]);
}

#[tokio::test(start_paused = true)]
async fn a_routed_movement_goes_even_when_the_one_before_it_is_dropped_unawaited() {
    let dir = tempfile::tempdir().unwrap();
    let remote = RemoteOwner::new(&[("a1", 200)], &[]);
    let ledger = start(&dir, &remote);
    // Dropping the answer does not withdraw the movement (as with a cast into a shard), and
    // the next one neither hangs nor overtakes it.
    drop(ledger.submit(receipt("A", "a1")));
    let second = ledger.submit(receipt("A", "a2"));
    assert_eq!(second.await, Ok(Ack::Applied { seq: 2 }));
    assert_eq!(remote.applied(), ["a1", "a2"]);
}

#[tokio::test(start_paused = true)]
async fn the_lines_of_a_reservation_on_one_sku_reach_its_owner_in_line_order() {
    let dir = tempfile::tempdir().unwrap();
    let remote = RemoteOwner::new(&[("r1:0:reserve", 300)], &[]);
    let ledger = start(&dir, &remote);
    let line = |sku: &str| ReservationLine {
        sku: sku.into(),
        quantity: 1,
        location: None,
        route: vec!["WH-1".into()],
    };
    // The saga submits its lines through `Ledger::submit`, so they are routed like any
    // movement; the answer itself (read back from this instance's store) does not matter.
    let _ = ledger
        .reserve(ReservationRequest {
            id: "r1".to_owned(),
            lines: vec![line("A"), line("A"), line("B")],
            ttl_secs: None,
        })
        .await;
    assert_eq!(
        remote.applied(),
        ["r1:2:reserve", "r1:0:reserve", "r1:1:reserve"]
    );
}
