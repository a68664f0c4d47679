//! Channel actors against a fake all-or-nothing adapter and an in-memory store.

use super::*;
use crate::channels::{ItemOutcome, ItemResult, LevelsReport, PushItem, PushReport};
use crate::config::{PlatformConfig, RateLimitConfig, RetryConfig};
use crate::domain::LocationId;
use crate::store::{CommitBatch, EventRecord, LoadedSku, OffsetWatermark, PushedRecord};
use async_trait::async_trait;
use std::collections::HashSet;

/// A store that only keeps pushed values.
#[derive(Default)]
struct MemoryStore {
    pushed: Mutex<Vec<PushedRecord>>,
    push_log: Mutex<Vec<crate::store::PushLogRecord>>,
}

#[async_trait]
impl Store for MemoryStore {
    async fn commit(&self, _batch: CommitBatch) -> Result<(), StoreError> {
        Ok(())
    }
    async fn load_sku(&self, _sku: &str, _now_ms: i64) -> Result<LoadedSku, StoreError> {
        Ok(LoadedSku::default())
    }
    async fn events(
        &self,
        _sku: &str,
        _from_seq: u64,
        _limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn list_skus(
        &self,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    async fn offsets(&self, _group: &str) -> Result<Vec<OffsetWatermark>, StoreError> {
        Ok(Vec::new())
    }
    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError> {
        let mut pushed = self.pushed.lock().unwrap();
        for record in records {
            pushed.retain(|old| !(old.channel == record.channel && old.sku == record.sku));
            pushed.push(record.clone());
        }
        Ok(())
    }
    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError> {
        Ok(self
            .pushed
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.channel == channel)
            .cloned()
            .collect())
    }
    async fn expire_keys(&self, _now_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn query_events(
        &self,
        _query: &crate::store::EventQuery,
    ) -> Result<Vec<crate::store::HistoryEvent>, StoreError> {
        Ok(Vec::new())
    }
    async fn append_push_log(
        &self,
        records: &[crate::store::PushLogRecord],
    ) -> Result<(), StoreError> {
        self.push_log.lock().unwrap().extend_from_slice(records);
        Ok(())
    }
    async fn query_push_log(
        &self,
        _query: &crate::store::PushLogQuery,
    ) -> Result<Vec<crate::store::PushLogRecord>, StoreError> {
        Ok(self.push_log.lock().unwrap().clone())
    }
    async fn prune_push_log(&self, _before_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn record_config_change(
        &self,
        _record: &crate::store::ConfigAuditRecord,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn config_changes(
        &self,
        _limit: usize,
    ) -> Result<Vec<crate::store::ConfigAuditRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn hold_expiries(
        &self,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<crate::store::HoldExpiryRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn reservation(
        &self,
        _id: &str,
    ) -> Result<Option<crate::store::ReservationRecord>, StoreError> {
        Ok(None)
    }
}

/// An all-or-nothing channel with CAS, like Shopify's mutation.
#[derive(Default)]
struct FakeChannel {
    values: Mutex<HashMap<String, i64>>,
    rejects: HashSet<String>,
    calls: Mutex<Vec<Vec<PushItem>>>,
}

impl FakeChannel {
    fn calls(&self) -> Vec<Vec<PushItem>> {
        self.calls.lock().unwrap().clone()
    }
    fn value(&self, sku: &str) -> Option<i64> {
        self.values.lock().unwrap().get(sku).copied()
    }
}

#[async_trait]
impl ChannelAdapter for FakeChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Shopify
    }
    fn max_batch(&self) -> usize {
        250
    }
    fn is_mapped(&self, sku: &str) -> bool {
        !sku.starts_with("UNMAPPED")
    }
    fn listing_count(&self) -> usize {
        1000
    }
    async fn push(&self, items: &[PushItem]) -> PushReport {
        self.calls.lock().unwrap().push(items.to_vec());
        let mut values = self.values.lock().unwrap();
        let outcomes: Vec<Option<ItemOutcome>> = items
            .iter()
            .map(|item| {
                let current = values.get(&item.sku).copied();
                if self.rejects.contains(&item.sku) {
                    Some(ItemOutcome::Rejected {
                        code: "NON_MUTABLE_INVENTORY_ITEM".to_owned(),
                        message: "bundle".to_owned(),
                    })
                } else if item.change_from.is_some() && item.change_from != current {
                    Some(ItemOutcome::Conflict { current })
                } else {
                    None
                }
            })
            .collect();
        let all_ok = outcomes.iter().all(Option::is_none);
        let results = items
            .iter()
            .zip(outcomes)
            .map(|(item, outcome)| {
                let outcome = match outcome {
                    Some(outcome) => outcome,
                    None if all_ok => {
                        values.insert(item.sku.clone(), item.quantity as i64);
                        ItemOutcome::Accepted {
                            quantity: item.quantity,
                        }
                    }
                    None => ItemOutcome::Deferred,
                };
                ItemResult {
                    sku: item.sku.clone(),
                    outcome,
                }
            })
            .collect();
        PushReport {
            results,
            requests: 1,
            ..PushReport::default()
        }
    }
    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        Ok(LevelsReport {
            levels: skus
                .iter()
                .map(|sku| (sku.clone(), self.value(sku)))
                .collect(),
            ..LevelsReport::default()
        })
    }
}

fn channel_config() -> ChannelConfig {
    ChannelConfig {
        allocation: Default::default(),
        preorder: None,
        show_zero_below: 0,
        id: "fake".to_owned(),
        locations: vec![LocationId::from("WH-1")],
        safety_stock: 1,
        max_listed_quantity: None,
        rate_limit: RateLimitConfig {
            requests_per_sec: 1000.0,
            burst: 1000,
        },
        retry: RetryConfig {
            initial_backoff_ms: 20,
            max_backoff_ms: 40,
        },
        write_off_cancel_reasons: None,
        platform: PlatformConfig::SectionMissing(ChannelKind::Shopify),
    }
}

fn change(sku: &str, on_hand: i64) -> AvailabilityChange {
    AvailabilityChange {
        inbound: Vec::new(),
        sku: Sku::from(sku),
        seq: 1,
        locations: vec![LocationLevel {
            inbound: 0,
            in_transit: 0,
            location: LocationId::from("WH-1"),
            on_hand,
            reserved: 0,
        }],
    }
}

/// [`change`] with `reserved` units held for orders at WH-1.
fn change_reserved(sku: &str, on_hand: i64, reserved: i64) -> AvailabilityChange {
    let mut change = change(sku, on_hand);
    change.locations[0].reserved = reserved;
    change
}

/// Polls `condition` every 5 ms for up to 5 s.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}

async fn propagation(
    fake: Arc<FakeChannel>,
    store: Arc<MemoryStore>,
    options: PropagationOptions,
) -> Propagation {
    Propagation::start_with_adapters(
        vec![(channel_config(), fake as Arc<dyn ChannelAdapter>)],
        store,
        options,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn atp_reaches_the_channel_and_is_recorded_in_the_store() {
    let fake = Arc::new(FakeChannel::default());
    let store = Arc::new(MemoryStore::default());
    let propagation = propagation(
        Arc::clone(&fake),
        Arc::clone(&store),
        PropagationOptions::default(),
    )
    .await;
    propagation.publish(&[change("A", 10), change("B", 0), change("UNMAPPED-1", 5)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (fake.value("A"), fake.value("B")),
        (Some(9), Some(0)),
        "safety stock 1 is held back"
    );
    assert_eq!(fake.value("UNMAPPED-1"), None);
    assert_eq!(propagation.last_pushed("fake", "A"), Some(9));
    assert_eq!(store.pushed("fake").await.unwrap().len(), 2);
    let status = &propagation.channel_status()[0];
    assert_eq!((status.accepted_total, status.queue_depth), (2, 0));
    assert!(status.last_success_at_ms.is_some());
    propagation.shutdown().await;
}

#[tokio::test]
async fn a_restart_does_not_push_values_the_channel_already_has() {
    let fake = Arc::new(FakeChannel::default());
    fake.values.lock().unwrap().insert("A".to_owned(), 9);
    let store = Arc::new(MemoryStore::default());
    store
        .record_pushed(&[PushedRecord {
            channel: "fake".to_owned(),
            sku: "A".to_owned(),
            quantity: 9,
            pushed_at_ms: 0,
        }])
        .await
        .unwrap();
    let propagation = propagation(Arc::clone(&fake), store, PropagationOptions::default()).await;
    assert_eq!(propagation.last_pushed("fake", "A"), Some(9));
    propagation.publish(&[change("A", 10)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert!(
        fake.calls().is_empty(),
        "ATP 9 equals the acknowledged value"
    );
    propagation.publish(&[change("A", 4)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        fake.calls()[0][0].change_from,
        Some(9),
        "the stored value is the CAS expectation"
    );
    assert_eq!(fake.value("A"), Some(3));
    propagation.shutdown().await;
}

#[tokio::test]
async fn a_rejected_listing_is_isolated_and_retried_alone() {
    let fake = Arc::new(FakeChannel {
        rejects: HashSet::from(["BAD".to_owned()]),
        ..FakeChannel::default()
    });
    let propagation = propagation(
        Arc::clone(&fake),
        Arc::default(),
        PropagationOptions::default(),
    )
    .await;
    let changes: Vec<AvailabilityChange> = (0..9)
        .map(|n| change(&format!("OK-{n}"), 5))
        .chain([change("BAD", 5)])
        .collect();
    propagation.publish(&changes);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    for n in 0..9 {
        assert_eq!(fake.value(&format!("OK-{n}")), Some(4));
    }
    // More work arrives while BAD keeps failing: BAD never rides along again.
    propagation.publish(&[change("OK-0", 7), change("BAD", 6)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    let bad_calls = || {
        fake.calls()
            .iter()
            .filter(|call| call.iter().any(|item| item.sku == "BAD"))
            .count()
    };
    assert!(eventually(|| bad_calls() >= 3).await, "BAD is retried");
    let calls = fake.calls();
    assert_eq!(calls[0].len(), 10);
    for call in &calls[1..] {
        if call.iter().any(|item| item.sku == "BAD") {
            assert_eq!(call.len(), 1, "an isolated listing goes alone: {call:?}");
        }
    }
    assert_eq!(fake.value("OK-0"), Some(6));
    let status = &propagation.channel_status()[0];
    assert_eq!(status.isolated, 1);
    assert!(status.rejected_total >= 2);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("NON_MUTABLE_INVENTORY_ITEM")
    );
    propagation.shutdown().await;
}

#[tokio::test]
async fn a_conflict_holds_the_listing_then_pushes_over_the_value_read() {
    let fake = Arc::new(FakeChannel::default());
    let propagation = propagation(
        Arc::clone(&fake),
        Arc::default(),
        PropagationOptions {
            rules: None,
            cas_grace_ms: Some(1_000),
            atp_observer: None,
            ..PropagationOptions::default()
        },
    )
    .await;
    propagation.publish(&[change("A", 11)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(fake.value("A"), Some(10));
    // The channel sells 3 itself; our next change was computed before we saw that order.
    fake.values.lock().unwrap().insert("A".to_owned(), 7);
    propagation.publish(&[change("A", 13)]);
    assert!(eventually(|| propagation.channel_status()[0].conflicts_total == 1).await);
    assert_eq!(
        fake.value("A"),
        Some(7),
        "the channel's decrement is not overwritten"
    );
    // The order reaches the ledger within the grace period (3 units reserved).
    propagation.publish(&[change_reserved("A", 13, 3)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(fake.value("A"), Some(9));
    let last = fake.calls().last().cloned().unwrap();
    assert_eq!(
        last[0].change_from,
        Some(7),
        "the push expects the value read back"
    );
    propagation.shutdown().await;
}

/// The compare-and-set grace under tokio's paused clock, for a conflict where the channel
/// *raised* the value (a manual restock there): the listing waits the whole grace, then is
/// pushed over the value read.
#[tokio::test(start_paused = true)]
async fn a_conflicted_listing_is_pushed_over_only_when_the_grace_has_passed() {
    let fake = Arc::new(FakeChannel::default());
    let propagation = propagation(
        Arc::clone(&fake),
        Arc::default(),
        PropagationOptions {
            cas_grace_ms: Some(60_000),
            clock: Some(crate::clock::TokioClock::starting_at(1_700_000_000_000)),
            ..PropagationOptions::default()
        },
    )
    .await;
    propagation.publish(&[change("A", 11)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(fake.value("A"), Some(10));
    fake.values.lock().unwrap().insert("A".to_owned(), 15);
    propagation.publish(&[change("A", 13)]);
    assert!(eventually(|| propagation.channel_status()[0].conflicts_total == 1).await);
    let calls_after_conflict = fake.calls().len();

    tokio::time::advance(Duration::from_secs(59)).await;
    tokio::task::yield_now().await;
    assert_eq!(fake.value("A"), Some(15), "pushed over during the grace");
    assert_eq!(fake.calls().len(), calls_after_conflict);
    assert_eq!(propagation.held("fake", "A"), None, "a raise is not a hold");

    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(eventually(|| fake.value("A") == Some(12)).await);
    let last = fake.calls().last().cloned().unwrap();
    assert_eq!(
        last[0].change_from,
        Some(15),
        "the push expects the value read back"
    );
    propagation.shutdown().await;
}

/// Issue 9 §4 under tokio's paused clock: the channel sold 3 itself (10 → 7) while our ATP
/// rose to 12. However long the orders take, the listing never rises over 7; a decrease is
/// pushed at once; the orders' arrival explains the difference and the listing converges.
#[tokio::test(start_paused = true)]
async fn a_listing_the_channel_lowered_is_not_raised_until_the_ledger_explains_it() {
    let fake = Arc::new(FakeChannel::default());
    let propagation = propagation(
        Arc::clone(&fake),
        Arc::default(),
        PropagationOptions {
            cas_grace_ms: Some(60_000),
            clock: Some(crate::clock::TokioClock::starting_at(1_700_000_000_000)),
            ..PropagationOptions::default()
        },
    )
    .await;
    propagation.publish(&[change("A", 11)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(fake.value("A"), Some(10));
    fake.values.lock().unwrap().insert("A".to_owned(), 7);
    propagation.publish(&[change("A", 13)]);
    assert!(eventually(|| propagation.channel_status()[0].conflicts_total == 1).await);
    let held = propagation.held("fake", "A").expect("the listing is held");
    assert_eq!(
        (
            held.expected,
            held.observed,
            held.channel_value,
            held.unexplained
        ),
        (10, 7, 7, 3)
    );
    assert!(
        (1_700_000_000_000..1_700_000_001_000).contains(&held.since_ms),
        "the hold started at the conflict: {}",
        held.since_ms
    );
    propagation
        .flush(Duration::from_secs(1))
        .await
        .expect("a held listing is not pending");
    let calls_after_conflict = fake.calls().len();

    // Far past the grace: still not raised, nothing sent.
    tokio::time::advance(Duration::from_secs(600)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        fake.value("A"),
        Some(7),
        "never raised over the channel's 7"
    );
    assert_eq!(fake.calls().len(), calls_after_conflict);

    // A receipt of 5 (ATP 17) is an increase: it waits as well.
    propagation.publish(&[change("A", 18)]);
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(fake.value("A"), Some(7));
    assert_eq!(fake.calls().len(), calls_after_conflict);

    // A write-off (ATP 5, below the channel's 7) is a decrease: pushed at once, over 7.
    propagation.publish(&[change("A", 6)]);
    assert!(eventually(|| fake.value("A") == Some(5)).await);
    assert_eq!(fake.calls().last().unwrap()[0].change_from, Some(7));
    let held = propagation.held("fake", "A").expect("still held");
    assert_eq!(held.channel_value, 5);
    assert_eq!(
        held.unexplained, 3,
        "a write-off is no order: it explains none of the sales"
    );

    // Stock comes back (ATP 12): an increase over the channel's value, held.
    propagation.publish(&[change("A", 13)]);
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(fake.value("A"), Some(5));

    // The channel's 3 orders reach the ledger (reserved): 12 − 3 = 9, pushed over the 5.
    propagation.publish(&[change_reserved("A", 13, 3)]);
    assert!(eventually(|| fake.value("A") == Some(9)).await);
    assert_eq!(fake.calls().last().unwrap()[0].change_from, Some(5));
    assert_eq!(
        propagation.held("fake", "A"),
        None,
        "explained: the hold ended"
    );
    // Later increases go out as usual.
    propagation.publish(&[change_reserved("A", 18, 3)]);
    assert!(eventually(|| fake.value("A") == Some(14)).await);
    propagation.shutdown().await;
}

/// The orders that explain a channel's own sales may reach the ledger before the push that
/// conflicts (the webhook itself lowered our ATP): then nothing is held, and a receipt that
/// arrived meanwhile goes out at once over the channel's value.
#[tokio::test]
async fn a_conflict_the_ledger_already_explains_holds_nothing() {
    let fake = Arc::new(FakeChannel::default());
    let propagation = propagation(
        Arc::clone(&fake),
        Arc::default(),
        PropagationOptions {
            cas_grace_ms: Some(60_000),
            ..PropagationOptions::default()
        },
    )
    .await;
    propagation.publish(&[change("A", 11)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(fake.value("A"), Some(10));
    fake.values.lock().unwrap().insert("A".to_owned(), 7);
    // The order (3 reserved, ATP 7) and then a receipt of 2 (ATP 9) land in one
    // coalesced entry.
    propagation.publish(&[change_reserved("A", 11, 3)]);
    propagation.publish(&[change_reserved("A", 13, 3)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(fake.value("A"), Some(9));
    assert_eq!(propagation.channel_status()[0].conflicts_total, 1);
    assert_eq!(propagation.held("fake", "A"), None);
    propagation.shutdown().await;
}

#[tokio::test]
async fn the_observer_hears_each_new_atp_once() {
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, String, u64)>>);
    impl AtpObserver for Recorder {
        fn atp_changed(&self, channel: &str, sku: &Sku, atp: u64, _seq: u64) {
            self.0
                .lock()
                .unwrap()
                .push((channel.to_owned(), sku.to_string(), atp));
        }
    }
    let recorder = Arc::new(Recorder::default());
    let propagation = propagation(
        Arc::new(FakeChannel::default()),
        Arc::default(),
        PropagationOptions {
            rules: None,
            cas_grace_ms: None,
            atp_observer: Some(Arc::clone(&recorder) as Arc<dyn AtpObserver>),
            ..PropagationOptions::default()
        },
    )
    .await;
    propagation.publish(&[change("A", 3)]);
    propagation.publish(&[change("A", 3)]);
    propagation.publish(&[change("A", 5)]);
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("fake".to_owned(), "A".to_owned(), 2),
            ("fake".to_owned(), "A".to_owned(), 4)
        ]
    );
    let breakdown = propagation
        .atp_for("fake", &change("A", 5).locations)
        .unwrap();
    assert_eq!((breakdown.atp, breakdown.safety_stock), (4, 1));
    propagation.shutdown().await;
}
