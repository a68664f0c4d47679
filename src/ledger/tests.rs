//! Ledger tests against the real embedded store.

use super::*;
use crate::domain::{AvailabilityChange, LocationId, MovementKind, SCHEMA_VERSION};
use crate::store::embedded::EmbeddedStore;
use std::sync::Mutex;

pub(super) fn movement(sku: &str, key: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.into(),
        source: "test".into(),
        occurred_at_ms: None,
        kind,
    }
}

pub(super) fn receipt(quantity: u64) -> MovementKind {
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
    // (A fulfilment of an unknown line is parked since issue 9; a reassign of one is
    // still refused.)
    let error = ledger
        .submit(movement(
            "SKU-R",
            "f1",
            MovementKind::Reassign {
                reservation: "nope".into(),
                to: "WH-1".into(),
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

/// The embedded store with hooks: counts batched loads and key look-ups, can fail the
/// next load, and can hold commits until its gate opens.
struct HookedStore {
    inner: Arc<dyn Store>,
    load_calls: AtomicU64,
    largest_load: AtomicU64,
    key_lookups: AtomicU64,
    fail_next_load: std::sync::atomic::AtomicBool,
    gate: tokio::sync::watch::Sender<bool>,
}

impl HookedStore {
    fn over(dir: &tempfile::TempDir) -> Arc<Self> {
        Arc::new(Self {
            inner: open(dir),
            load_calls: AtomicU64::new(0),
            largest_load: AtomicU64::new(0),
            key_lookups: AtomicU64::new(0),
            fail_next_load: std::sync::atomic::AtomicBool::new(false),
            gate: tokio::sync::watch::channel(true).0,
        })
    }
}

#[async_trait::async_trait]
impl Store for HookedStore {
    async fn order_lines(
        &self,
        channel: &str,
        order_id: &str,
    ) -> Result<Vec<crate::store::OrderLineRecord>, crate::store::StoreError> {
        self.inner.order_lines(channel, order_id).await
    }
    async fn record_order_lines(
        &self,
        records: &[crate::store::OrderLineRecord],
        forget_before_ms: i64,
    ) -> Result<(), crate::store::StoreError> {
        self.inner
            .record_order_lines(records, forget_before_ms)
            .await
    }
    async fn commit(
        &self,
        batch: crate::store::CommitBatch,
    ) -> Result<(), crate::store::StoreError> {
        let mut open = self.gate.subscribe();
        let _ = open.wait_for(|open| *open).await;
        self.inner.commit(batch).await
    }
    async fn load_sku(
        &self,
        sku: &str,
        now_ms: i64,
    ) -> Result<crate::store::LoadedSku, crate::store::StoreError> {
        self.inner.load_sku(sku, now_ms).await
    }
    async fn load_skus(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<crate::store::BatchLoadedSku>, crate::store::StoreError> {
        self.load_calls.fetch_add(1, Ordering::SeqCst);
        self.largest_load
            .fetch_max(skus.len() as u64, Ordering::SeqCst);
        if self.fail_next_load.swap(false, Ordering::SeqCst) {
            return Err(crate::store::StoreError::Backend {
                operation: "load_skus",
                message: "injected failure".to_owned(),
            });
        }
        self.inner.load_skus(skus, now_ms).await
    }
    async fn find_idempotency_key(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, crate::store::StoreError> {
        self.key_lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_idempotency_key(sku, key, now_ms).await
    }
    async fn find_idempotency_key_hash(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(u64, Option<u64>)>, crate::store::StoreError> {
        self.key_lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_idempotency_key_hash(sku, key, now_ms).await
    }
    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<crate::store::EventRecord>, crate::store::StoreError> {
        self.inner.events(sku, from_seq, limit).await
    }
    async fn list_skus(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        self.inner.list_skus(after, limit).await
    }
    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, crate::store::StoreError> {
        self.inner.offsets(group).await
    }
    async fn record_pushed(
        &self,
        records: &[crate::store::PushedRecord],
    ) -> Result<(), crate::store::StoreError> {
        self.inner.record_pushed(records).await
    }
    async fn pushed(
        &self,
        channel: &str,
    ) -> Result<Vec<crate::store::PushedRecord>, crate::store::StoreError> {
        self.inner.pushed(channel).await
    }
    async fn expire_keys(&self, now_ms: i64) -> Result<u64, crate::store::StoreError> {
        self.inner.expire_keys(now_ms).await
    }
    async fn query_events(
        &self,
        query: &crate::store::EventQuery,
    ) -> Result<Vec<crate::store::HistoryEvent>, crate::store::StoreError> {
        self.inner.query_events(query).await
    }
    async fn append_push_log(
        &self,
        records: &[crate::store::PushLogRecord],
    ) -> Result<(), crate::store::StoreError> {
        self.inner.append_push_log(records).await
    }
    async fn query_push_log(
        &self,
        query: &crate::store::PushLogQuery,
    ) -> Result<Vec<crate::store::PushLogRecord>, crate::store::StoreError> {
        self.inner.query_push_log(query).await
    }
    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, crate::store::StoreError> {
        self.inner.prune_push_log(before_ms).await
    }
    async fn prune_events(
        &self,
        before_ms: i64,
        now_ms: i64,
    ) -> Result<u64, crate::store::StoreError> {
        self.inner.prune_events(before_ms, now_ms).await
    }
    async fn record_config_change(
        &self,
        record: &crate::store::ConfigAuditRecord,
    ) -> Result<(), crate::store::StoreError> {
        self.inner.record_config_change(record).await
    }
    async fn config_changes(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::store::ConfigAuditRecord>, crate::store::StoreError> {
        self.inner.config_changes(limit).await
    }
    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::store::HoldExpiryRecord>, crate::store::StoreError> {
        self.inner.hold_expiries(after, limit).await
    }
    async fn reservation(
        &self,
        id: &str,
    ) -> Result<Option<crate::store::ReservationRecord>, crate::store::StoreError> {
        self.inner.reservation(id).await
    }
}

fn one_shard() -> LedgerOptions {
    LedgerOptions {
        shards: 1,
        ..LedgerOptions::default()
    }
}

#[tokio::test]
async fn skus_missed_together_load_in_one_batch_and_their_messages_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = HookedStore::over(&dir);
    let ledger = Ledger::start(store.clone(), Arc::new(NullSinkForTests), one_shard());
    // Submitted before the shard runs (current-thread runtime): every SKU misses in the
    // same drain, and each SKU's three movements wait in its buffer while it loads.
    let mut pending = Vec::new();
    for round in 0..3 {
        for i in 0..200 {
            let sku = format!("SKU-B{i:03}");
            pending.push((
                round,
                ledger.submit(movement(&sku, &format!("r{round}"), receipt(1))),
            ));
        }
    }
    for (round, ack) in pending {
        assert_eq!(ack.await.unwrap(), Ack::Applied { seq: round + 1 });
    }
    assert_eq!(ledger.live_actors(), 200);
    let calls = store.load_calls.load(Ordering::SeqCst);
    assert!(calls <= 2, "200 SKUs took {calls} load calls");
    assert!(store.largest_load.load(Ordering::SeqCst) >= 100);
    let events = ledger.store().events("SKU-B007", 1, 10).await.unwrap();
    let keys: Vec<_> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["r0", "r1", "r2"]);
}

#[tokio::test]
async fn a_duplicate_after_passivation_is_confirmed_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = HookedStore::over(&dir);
    let ledger = Ledger::start(store.clone(), Arc::new(NullSinkForTests), one_shard());
    for key in ["r1", "r2"] {
        ledger
            .submit(movement("SKU-D", key, receipt(1)))
            .await
            .unwrap();
    }
    assert_eq!(ledger.sweep(true).await, 0);
    assert_eq!(ledger.live_actors(), 0);
    assert_eq!(store.key_lookups.load(Ordering::SeqCst), 0);
    let again = ledger
        .submit(movement("SKU-D", "r1", receipt(1)))
        .await
        .unwrap();
    assert_eq!(again, Ack::Duplicate { seq: 1 });
    assert_eq!(
        store.key_lookups.load(Ordering::SeqCst),
        1,
        "the fingerprint hit was confirmed in the store"
    );
    let fresh = ledger
        .submit(movement("SKU-D", "r3", receipt(1)))
        .await
        .unwrap();
    assert_eq!(fresh, Ack::Applied { seq: 3 });
    let state = ledger.state(&"SKU-D".into()).await.unwrap();
    assert_eq!(state.location(&"WH-1".into()).on_hand, 3);
}

#[tokio::test]
async fn a_fingerprint_collision_that_is_not_a_duplicate_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = HookedStore::over(&dir);
    let options = one_shard();
    // Every key has the same fingerprint: each new key collides with the earlier ones.
    let scheme = keys::KeyScheme::new(options.idempotency_ttl_secs).with_fingerprint_mask(0);
    let ledger = Ledger::start_with(store.clone(), Arc::new(NullSinkForTests), options, scheme);
    let acks: Vec<_> = ["r1", "r2", "r1", "r3"]
        .iter()
        .map(|key| ledger.submit(movement("SKU-X", key, receipt(1))))
        .collect();
    let acks: Vec<_> = futures::future::join_all(acks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        acks,
        [
            Ack::Applied { seq: 1 },
            Ack::Applied { seq: 2 },
            Ack::Duplicate { seq: 1 },
            Ack::Applied { seq: 3 },
        ]
    );
    assert!(store.key_lookups.load(Ordering::SeqCst) >= 1);
    let state = ledger.state(&"SKU-X".into()).await.unwrap();
    assert_eq!((state.seq, state.location(&"WH-1".into()).on_hand), (3, 3));
}

#[tokio::test]
async fn a_duplicate_of_an_in_flight_key_is_answered_only_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = HookedStore::over(&dir);
    let ledger = Ledger::start(store.clone(), Arc::new(NullSinkForTests), one_shard());
    ledger
        .submit(movement("SKU-I", "r0", receipt(1)))
        .await
        .unwrap();
    store.gate.send_replace(false);
    let mut first = ledger.submit(movement("SKU-I", "r1", receipt(1)));
    let mut second = ledger.submit(movement("SKU-I", "r1", receipt(1)));
    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Both are accepted by the shard, neither is durable: no answer yet.
    let state = ledger.state(&"SKU-I".into()).await.unwrap();
    assert_eq!(state.seq, 2);
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut second).is_pending());
    assert_eq!(store.key_lookups.load(Ordering::SeqCst), 0);
    store.gate.send_replace(true);
    assert_eq!(first.await.unwrap(), Ack::Applied { seq: 2 });
    assert_eq!(second.await.unwrap(), Ack::Duplicate { seq: 2 });
}

#[tokio::test(start_paused = true)]
async fn idle_skus_are_passivated_by_the_sweep_and_live_skus_fall() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::TokioClock::starting_at(1_700_000_000_000);
    let ledger = Ledger::start(
        open(&dir),
        Arc::new(NullSinkForTests),
        LedgerOptions {
            idle_passivate_secs: 60,
            shards: 3,
            clock: clock.clone(),
            ..LedgerOptions::default()
        },
    );
    for i in 0..10 {
        ledger
            .submit(movement(&format!("SKU-L{i}"), "r1", receipt(1)))
            .await
            .unwrap();
    }
    assert_eq!(ledger.live_actors(), 10);
    tokio::time::advance(Duration::from_secs(30)).await;
    ledger
        .submit(movement("SKU-L0", "r2", receipt(1)))
        .await
        .unwrap();
    // 31 s later the nine untouched SKUs have been idle for 61 s; SKU-L0 for 31 s.
    tokio::time::advance(Duration::from_secs(31)).await;
    let mut live = ledger.live_actors();
    for _ in 0..200 {
        live = ledger.live_actors();
        if live == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live, 1, "the idle SKUs were not passivated");
    tokio::time::advance(Duration::from_secs(61)).await;
    for _ in 0..200 {
        if ledger.live_actors() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ledger.live_actors(), 0);
    let state = ledger.state(&"SKU-L0".into()).await.unwrap();
    assert_eq!(state.location(&"WH-1".into()).on_hand, 2);
}

#[tokio::test]
async fn a_failed_load_answers_unavailable_and_the_next_message_loads_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = HookedStore::over(&dir);
    let ledger = Ledger::start(store.clone(), Arc::new(NullSinkForTests), one_shard());
    store.fail_next_load.store(true, Ordering::SeqCst);
    let error = ledger
        .submit(movement("SKU-U", "r1", receipt(1)))
        .await
        .unwrap_err();
    assert!(matches!(error, LedgerError::Unavailable(_)), "{error:?}");
    assert_eq!(ledger.live_actors(), 0, "the failed cell was dropped");
    let retry = ledger
        .submit(movement("SKU-U", "r1", receipt(1)))
        .await
        .unwrap();
    assert_eq!(retry, Ack::Applied { seq: 1 });
    assert_eq!(store.load_calls.load(Ordering::SeqCst), 2);
}

#[test]
fn shard_messages_stay_small() {
    assert!(std::mem::size_of::<actor::ShardMessage>() <= 48);
}

fn on(location: &str, state: &SkuState) -> (i64, i64, i64) {
    let stock = state.location(&LocationId::from(location));
    (stock.on_hand, stock.reserved, stock.available())
}

#[tokio::test]
async fn issue_9_2b_a_fulfilment_before_its_sale_is_parked_durably_and_applies_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sale = MovementKind::Sale {
        reservation: "shop:9001:L1".into(),
        quantity: 3,
        location: Some("WH-1".into()),
        route: vec![],
    };
    {
        let ledger = Ledger::start(
            open(&dir),
            Arc::new(NullSinkForTests),
            LedgerOptions::default(),
        );
        ledger
            .submit(movement("SKU-2B", "erp:1", receipt(10)))
            .await
            .unwrap();
        let ship = MovementKind::Fulfilment {
            reservation: "shop:9001:L1".into(),
            quantity: 3,
            location: None,
        };
        let parked = ledger
            .submit(movement("SKU-2B", "wms:1", ship))
            .await
            .unwrap();
        assert_eq!(parked, Ack::Parked { seq: 2 });
        let give_back = MovementKind::Return {
            location: None,
            quantity: 1,
            reservation: Some("shop:9001:L1".into()),
            restock: true,
        };
        let parked = ledger
            .submit(movement("SKU-2B", "rma:1", give_back))
            .await
            .unwrap();
        assert_eq!(parked, Ack::Parked { seq: 3 });
        let state = ledger.state(&"SKU-2B".into()).await.unwrap();
        assert_eq!(on("WH-1", &state), (10, 0, 10));
        assert_eq!(state.parked.len(), 2);
        ledger.shutdown().await;
    }
    // The parked movements survive the restart (replayed from the log).
    let ledger = Ledger::start(
        open(&dir),
        Arc::new(NullSinkForTests),
        LedgerOptions::default(),
    );
    let state = ledger.state(&"SKU-2B".into()).await.unwrap();
    assert_eq!(state.parked.len(), 2);
    let applied = ledger
        .submit(movement("SKU-2B", "shop:1", sale))
        .await
        .unwrap();
    assert_eq!(applied, Ack::Applied { seq: 4 });
    let state = ledger.state(&"SKU-2B".into()).await.unwrap();
    assert_eq!(on("WH-1", &state), (8, 0, 8));
    assert!(state.parked.is_empty());
    ledger.shutdown().await;
}

#[tokio::test]
async fn issue_9_order_7001_edits_through_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(
        open(&dir),
        Arc::new(NullSinkForTests),
        LedgerOptions::default(),
    );
    let edit = |reservation: &str, quantity: u64, version: i64| MovementKind::OrderEdit {
        reservation: reservation.into(),
        quantity,
        version,
        location: None,
        route: vec!["WH-1".into()],
    };
    let sale = |reservation: &str, quantity: u64| MovementKind::Sale {
        reservation: reservation.into(),
        quantity,
        location: None,
        route: vec!["WH-1".into()],
    };
    let ship = |reservation: &str, quantity: u64| MovementKind::Fulfilment {
        reservation: reservation.into(),
        quantity,
        location: None,
    };
    let steps: Vec<(&str, &str, MovementKind)> = vec![
        ("SKU-P", "erp:p", receipt(50)),
        ("SKU-Q", "erp:q", receipt(10)),
        ("SKU-R", "erp:r", receipt(8)),
        ("SKU-P", "v1:L1", sale("shop:7001:L1", 3)),
        ("SKU-Q", "v1:L2", sale("shop:7001:L2", 2)),
        ("SKU-P", "v2:L1", edit("shop:7001:L1", 1, 2)),
        ("SKU-Q", "v3:L2", edit("shop:7001:L2", 0, 3)),
        ("SKU-R", "v4:L3", edit("shop:7001:L3", 4, 4)),
        ("SKU-P", "f:L1", ship("shop:7001:L1", 1)),
        ("SKU-R", "f:L3", ship("shop:7001:L3", 2)),
        ("SKU-R", "v5:L3", edit("shop:7001:L3", 1, 5)),
    ];
    for (sku, key, kind) in steps {
        let ack = ledger.submit(movement(sku, key, kind)).await.unwrap();
        assert!(matches!(ack, Ack::Applied { .. }), "{key}: {ack:?}");
    }
    // Edit v3 delivered again after v5 (another delivery id): recorded as ignored.
    let late = ledger
        .submit(movement("SKU-Q", "v3:L2:again", edit("shop:7001:L2", 0, 3)))
        .await
        .unwrap();
    assert!(matches!(late, Ack::Ignored { .. }));
    for (sku, expected) in [
        ("SKU-P", (49, 0, 49)),
        ("SKU-Q", (10, 0, 10)),
        ("SKU-R", (6, 0, 6)),
    ] {
        let state = ledger.state(&sku.into()).await.unwrap();
        assert_eq!(on("WH-1", &state), expected, "{sku}");
    }
    ledger.shutdown().await;
}
