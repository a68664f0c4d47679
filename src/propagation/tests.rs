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
    /// Per-location listings (a multi-location Shopify channel); empty: one per SKU.
    locations: Vec<crate::channels::ListingLocation>,
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
    fn listing_locations(&self) -> &[crate::channels::ListingLocation] {
        &self.locations
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
        mode: Default::default(),
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

/// A receipt and the shop's own order can net out: the queued ATP equals what we last
/// pushed, so nothing is sent. That must not move the point from which reservations count,
/// or the next conflict finds the order's reservation "already counted" and holds the
/// listing below the ATP for good (found by the cluster process test).
#[tokio::test]
async fn an_order_netted_out_by_a_receipt_still_explains_the_next_conflict() {
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
    // The shop sells one unit (10 → 9); the ledger gets a receipt of one and the order's
    // reservation together: ATP 12 − 1 − 1 = 10, what we pushed, so nothing goes out.
    fake.values.lock().unwrap().insert("A".to_owned(), 9);
    propagation.publish(&[change_reserved("A", 12, 1)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(fake.calls().len(), 1, "an unchanged ATP sends nothing");
    // Two more units arrive (ATP 12): the push conflicts on the shop's 9, and the one
    // reserved unit explains the one the shop sold, so 12 goes out over 9.
    propagation.publish(&[change_reserved("A", 14, 1)]);
    assert!(
        eventually(|| fake.value("A") == Some(12)).await,
        "the listing stayed at {:?}, held: {:?}",
        fake.value("A"),
        propagation.held("fake", "A")
    );
    assert_eq!(propagation.held("fake", "A"), None);
    propagation.shutdown().await;
}

/// Shadow mode: nothing is pushed; each listing is read and compared, by class; going live
/// pushes what differs with compare-and-set on the values read.
#[tokio::test]
async fn a_shadow_channel_reads_and_compares_and_going_live_pushes_over_what_it_read() {
    use crate::propagation::shadow::ShadowClass;
    let fake = Arc::new(FakeChannel::default());
    {
        let mut values = fake.values.lock().unwrap();
        values.insert("A".to_owned(), 7);
        values.insert("B".to_owned(), 20);
        values.insert("D".to_owned(), 4);
    }
    let mut config = channel_config();
    config.mode = crate::config::ChannelMode::Shadow;
    let propagation = Propagation::start_with_adapters(
        vec![(config, Arc::clone(&fake) as Arc<dyn ChannelAdapter>)],
        Arc::new(MemoryStore::default()),
        PropagationOptions::default(),
    )
    .await
    .unwrap();
    // ATPs (safety stock 1): A 10, B 5, C 3 (not on the channel), D 4.
    propagation.publish(&[
        change("A", 11),
        change("B", 6),
        change("C", 4),
        change("D", 5),
    ]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert!(fake.calls().is_empty(), "nothing is pushed in shadow mode");
    assert_eq!((fake.value("A"), fake.value("B")), (Some(7), Some(20)));
    let report = propagation.shadow_report("fake", 10).unwrap();
    assert_eq!(report.mode, "shadow");
    assert_eq!(report.compared, 4);
    let count = |class| report.classes.get(&class).copied().unwrap_or(0);
    assert_eq!(
        (
            count(ShadowClass::InSync),
            count(ShadowClass::ChannelHigher),
            count(ShadowClass::ChannelLower),
            count(ShadowClass::Missing)
        ),
        (1, 1, 1, 1)
    );
    assert_eq!((report.units_over, report.units_under), (15, 3));
    let differences: Vec<(&str, i64)> = report
        .differences
        .iter()
        .map(|d| (d.sku.as_str(), d.difference))
        .collect();
    assert_eq!(differences, vec![("B", 15), ("A", -3), ("C", 0)]);
    assert_eq!(
        propagation
            .shadow_report("fake", 1)
            .unwrap()
            .differences
            .len(),
        1
    );
    // An ATP equal to what the channel lists is not read again.
    propagation.publish(&[change("D", 5)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(propagation.shadow_report("fake", 10).unwrap().compared, 4);

    // Live: A and B go out over the values read (compare-and-set on 7 and 20).
    assert_eq!(
        propagation.set_mode("fake", crate::config::ChannelMode::Live),
        Some(true)
    );
    assert_eq!(
        propagation.set_mode("fake", crate::config::ChannelMode::Live),
        Some(false)
    );
    propagation.publish(&[change("A", 11), change("B", 6)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!((fake.value("A"), fake.value("B")), (Some(10), Some(5)));
    let mut sent: Vec<(String, u64, Option<i64>)> = fake
        .calls()
        .concat()
        .into_iter()
        .map(|item| (item.sku, item.quantity, item.change_from))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![("A".to_owned(), 10, Some(7)), ("B".to_owned(), 5, Some(20))]
    );
    assert_eq!(propagation.shadow_report("fake", 10).unwrap().mode, "live");
    assert_eq!(
        propagation.set_mode("nope", crate::config::ChannelMode::Live),
        None
    );
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

// ---- Submissions in flight (issue 10 §4): an Amazon feed or a bol.com process status
// that the platform is still processing never holds back another listing. ----

/// The store of [`MemoryStore`] with `sku` already acknowledged at `quantity` on `channel`.
async fn store_with_pushed(channel: &str, pushed: &[(&str, u64)]) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::default());
    let records: Vec<PushedRecord> = pushed
        .iter()
        .map(|(sku, quantity)| PushedRecord {
            channel: channel.to_owned(),
            sku: (*sku).to_owned(),
            quantity: *quantity,
            pushed_at_ms: 0,
        })
        .collect();
    store.record_pushed(&records).await.unwrap();
    store
}

#[tokio::test]
async fn a_decrease_goes_out_while_an_amazon_feed_is_still_processing() {
    use crate::channels::amazon::AmazonAdapter;
    use crate::sandbox::amazon::{self as sim, AmazonSimulatorOptions, RateLimits, SimListing};
    let listing = |sku: &str, quantity: u64| SimListing {
        seller_sku: format!("{sku}-NL"),
        quantity: Some(quantity),
        fba: false,
        fba_fulfillable: 0,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let simulator = sim::start(
        AmazonSimulatorOptions {
            apply_delay_ms: 0,
            // The knob: Amazon takes 700 ms to process a feed.
            feed_processing_ms: 700,
            rate_limits: RateLimits::generous(1_000.0, 1_000),
            listings: vec![
                listing("A", 0),
                listing("B", 0),
                listing("C", 0),
                listing("D", 8),
            ],
            ..AmazonSimulatorOptions::default()
        },
        listener,
    )
    .await
    .unwrap();
    let options = simulator.options();
    let config: crate::config::AmazonConfig = toml::from_str(&format!(
        r#"
        api_url = "{api}"
        token_url = "{token}"
        client_id = "{client_id}"
        client_secret = "{client_secret}"
        refresh_token = "{refresh_token}"
        seller_id = "{seller_id}"
        marketplace_id = "{marketplace_id}"
        feed_min_items = 3
        feed_poll_ms = 20
        feed_wait_ms = 5000
        listings = [{{ sku = "A", seller_sku = "A-NL" }}, {{ sku = "B", seller_sku = "B-NL" }},
                    {{ sku = "C", seller_sku = "C-NL" }}, {{ sku = "D", seller_sku = "D-NL" }}]
        "#,
        api = simulator.base_url(),
        token = simulator.token_url(),
        client_id = options.client_id,
        client_secret = options.client_secret,
        refresh_token = options.refresh_token,
        seller_id = options.seller_id,
        marketplace_id = options.marketplace_id,
    ))
    .unwrap();
    let adapter = AmazonAdapter::new("fake", &config, reqwest::Client::new()).unwrap();
    let store = store_with_pushed("fake", &[("D", 8)]).await;
    let propagation = Propagation::start_with_adapters(
        vec![(
            channel_config(),
            Arc::new(adapter) as Arc<dyn ChannelAdapter>,
        )],
        store,
        PropagationOptions::default(),
    )
    .await
    .unwrap();
    propagation.publish(&[change("A", 6), change("B", 6), change("C", 6)]);
    assert!(
        eventually(|| simulator.counters().feeds_created == 1).await,
        "A, B and C go out as one feed"
    );
    // D falls from 8 to 2 while the feed is processing.
    propagation.publish(&[change("D", 3)]);
    assert!(
        eventually(|| simulator.quantity("D-NL") == Some(2)).await,
        "the decrease reached Amazon"
    );
    let a = propagation.listing_sync("fake", "A").unwrap();
    assert_eq!(
        (a.last_pushed, a.in_flight),
        (None, Some(5)),
        "D's decrease went out while A's feed was still processing"
    );
    assert_eq!(
        simulator.quantity("A-NL"),
        Some(0),
        "the feed is not applied yet"
    );
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(propagation.last_pushed("fake", "A"), Some(5));
    assert_eq!(propagation.last_pushed("fake", "D"), Some(2));
    assert_eq!(simulator.quantity("A-NL"), Some(5));
    propagation.shutdown().await;
}

#[tokio::test]
async fn a_decrease_goes_out_while_a_bolcom_process_status_is_pending() {
    use crate::channels::bolcom::BolcomAdapter;
    use crate::config::{BolcomConfig, BolcomListingConfig};
    use crate::sandbox::bolcom::{self as sim, BolcomSimulatorOptions, SimOffer};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let simulator = sim::start(
        BolcomSimulatorOptions {
            offers: (0..2)
                .map(|n| SimOffer {
                    offer_id: format!("offer-{n}"),
                    reference: format!("SKU-{n}"),
                    ean: format!("871000000{n:04}"),
                    amount: 8,
                })
                .collect(),
            // The knob: each stock update stays PENDING for 700 ms.
            process_delay_ms: 700,
            ..BolcomSimulatorOptions::default()
        },
        listener,
    )
    .await
    .unwrap();
    let config = BolcomConfig {
        api_url: simulator.base_url(),
        token_url: simulator.token_url(),
        client_id: "sandbox-client".to_owned(),
        client_secret: "sandbox-secret".to_owned(),
        order_poll_interval_ms: 0,
        poll_returns: false,
        process_status_wait_ms: 5_000,
        process_status_poll_ms: 20,
        request_timeout_ms: 2_000,
        max_amount: 999,
        listings: (0..2)
            .map(|n| BolcomListingConfig {
                sku: format!("SKU-{n}"),
                offer_id: format!("offer-{n}"),
                ean: None,
            })
            .collect(),
    };
    let adapter = BolcomAdapter::new("fake", &config, reqwest::Client::new()).unwrap();
    let store = store_with_pushed("fake", &[("SKU-0", 8), ("SKU-1", 8)]).await;
    let propagation = Propagation::start_with_adapters(
        vec![(
            channel_config(),
            Arc::new(adapter) as Arc<dyn ChannelAdapter>,
        )],
        store,
        PropagationOptions::default(),
    )
    .await
    .unwrap();
    propagation.publish(&[change("SKU-0", 6)]);
    assert!(eventually(|| simulator.counters().stock_updates_received == 1).await);
    // SKU-1 falls while SKU-0's update is PENDING; SKU-0 falls again too.
    propagation.publish(&[change("SKU-1", 3), change("SKU-0", 4)]);
    assert!(
        eventually(|| simulator.counters().stock_updates_received == 2).await,
        "SKU-1's decrease reached bol.com"
    );
    let first = propagation.listing_sync("fake", "SKU-0").unwrap();
    assert_eq!(
        (first.last_pushed, first.in_flight),
        (Some(8), Some(5)),
        "SKU-1's decrease went out while SKU-0's process status was PENDING"
    );
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(propagation.last_pushed("fake", "SKU-0"), Some(3));
    assert_eq!(propagation.last_pushed("fake", "SKU-1"), Some(2));
    assert_eq!(simulator.offer("offer-0").unwrap().amount, 3);
    assert_eq!(
        simulator.counters().overlapping_updates,
        0,
        "two updates of one offer are never in flight (PLATFORMS.md §3.8)"
    );
    propagation.shutdown().await;
}

/// A channel that processes every push asynchronously: each push is one submission whose
/// result the test decides.
#[derive(Default)]
struct SubmittingChannel {
    /// Per token: the pushed items, and the result once the test settled it.
    submissions: Mutex<Vec<(Vec<PushItem>, Option<bool>)>>,
}

impl SubmittingChannel {
    /// Settles submission `index`: accepted (true) or rejected.
    fn settle(&self, index: usize, accepted: bool) {
        self.submissions.lock().unwrap()[index].1 = Some(accepted);
    }
    fn count(&self) -> usize {
        self.submissions.lock().unwrap().len()
    }
    fn items(&self, index: usize) -> Vec<PushItem> {
        self.submissions.lock().unwrap()[index].0.clone()
    }
}

#[async_trait]
impl ChannelAdapter for SubmittingChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Amazon
    }
    fn max_batch(&self) -> usize {
        10
    }
    fn is_mapped(&self, _sku: &str) -> bool {
        true
    }
    fn listing_count(&self) -> usize {
        100
    }
    async fn push(&self, items: &[PushItem]) -> PushReport {
        let mut submissions = self.submissions.lock().unwrap();
        let token = submissions.len().to_string();
        submissions.push((items.to_vec(), None));
        PushReport {
            results: items
                .iter()
                .map(|item| ItemResult {
                    sku: item.sku.clone(),
                    outcome: ItemOutcome::Submitted {
                        token: token.clone(),
                        check_after_ms: 5,
                    },
                })
                .collect(),
            requests: 1,
            ..PushReport::default()
        }
    }
    async fn check_submitted(&self, token: &str, items: &[PushItem]) -> PushReport {
        let index: usize = token.parse().unwrap();
        let settled = self.submissions.lock().unwrap()[index].1;
        PushReport {
            results: items
                .iter()
                .map(|item| ItemResult {
                    sku: item.sku.clone(),
                    outcome: match settled {
                        None => ItemOutcome::Submitted {
                            token: token.to_owned(),
                            check_after_ms: 5,
                        },
                        Some(true) => ItemOutcome::Accepted {
                            quantity: item.quantity,
                        },
                        Some(false) => ItemOutcome::Rejected {
                            code: "ERROR".to_owned(),
                            message: "refused".to_owned(),
                        },
                    },
                })
                .collect(),
            ..PushReport::default()
        }
    }
    async fn read_levels(&self, _skus: &[String]) -> Result<LevelsReport, ChannelError> {
        Ok(LevelsReport::default())
    }
}

#[tokio::test]
async fn an_older_submission_never_overwrites_the_newer_values_bookkeeping() {
    let channel = Arc::new(SubmittingChannel::default());
    let store = store_with_pushed("fake", &[("A", 9)]).await;
    let propagation = Propagation::start_with_adapters(
        vec![(
            channel_config(),
            Arc::clone(&channel) as Arc<dyn ChannelAdapter>,
        )],
        Arc::clone(&store) as Arc<dyn Store>,
        PropagationOptions::default(),
    )
    .await
    .unwrap();
    propagation.publish(&[change("A", 6)]);
    assert!(eventually(|| channel.count() == 1).await);
    // A newer decrease while the first submission is in flight goes out at once.
    propagation.publish(&[change("A", 3)]);
    assert!(
        eventually(|| channel.count() == 2).await,
        "the newer decrease did not wait for the older submission"
    );
    assert_eq!(channel.items(1)[0].quantity, 2);
    // The newer one is processed first; the older one's result arrives afterwards.
    channel.settle(1, true);
    assert!(eventually(|| propagation.last_pushed("fake", "A") == Some(2)).await);
    channel.settle(0, true);
    // The older value was applied, maybe after the newer one: the newer one is written once
    // more, so it is the last write.
    assert!(eventually(|| channel.count() == 3).await);
    assert_eq!(channel.items(2)[0].quantity, 2);
    assert_eq!(
        propagation.last_pushed("fake", "A"),
        Some(2),
        "the older feed's result did not overwrite the newer value"
    );
    channel.settle(2, true);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(propagation.last_pushed("fake", "A"), Some(2));
    assert_eq!(store.pushed("fake").await.unwrap()[0].quantity, 2);
    assert_eq!(channel.count(), 3, "nothing else was pushed");

    // The other order: the older result (a refusal) arrives while the newer is in flight.
    propagation.publish(&[change("A", 5)]);
    assert!(eventually(|| channel.count() == 4).await);
    propagation.publish(&[change("A", 2)]);
    assert!(eventually(|| channel.count() == 5).await);
    channel.settle(3, false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(channel.count(), 5, "the overtaken refusal is not retried");
    assert_eq!(propagation.last_pushed("fake", "A"), Some(2));
    channel.settle(4, true);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(propagation.last_pushed("fake", "A"), Some(1));
    assert_eq!(propagation.channel_status()[0].isolated, 0);
    propagation.shutdown().await;
}

#[tokio::test]
async fn submissions_in_flight_are_bounded_per_channel() {
    let channel = Arc::new(SubmittingChannel::default());
    let store = Arc::new(MemoryStore::default());
    let propagation = Propagation::start_with_adapters(
        vec![(
            channel_config(),
            Arc::clone(&channel) as Arc<dyn ChannelAdapter>,
        )],
        store,
        PropagationOptions::default(),
    )
    .await
    .unwrap();
    // One listing per batch of 10: 40 batches' worth of listings.
    for round in 0..40 {
        let changes: Vec<AvailabilityChange> = (0..10)
            .map(|n| change(&format!("SKU-{round}-{n}"), 5))
            .collect();
        propagation.publish(&changes);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(channel.count(), actor::MAX_SUBMISSIONS_IN_FLIGHT);
    for index in 0..actor::MAX_SUBMISSIONS_IN_FLIGHT {
        channel.settle(index, true);
    }
    assert!(eventually(|| channel.count() == 40).await);
    propagation.shutdown().await;
}

// ---- Supervision (issue 10 §4) ----

/// A channel whose first push panics (test-only fault injection), then accepts.
#[derive(Default)]
struct PanicsOnce {
    panicked: AtomicBool,
    inner: FakeChannel,
}

#[async_trait]
impl ChannelAdapter for PanicsOnce {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Shopify
    }
    fn max_batch(&self) -> usize {
        250
    }
    fn is_mapped(&self, sku: &str) -> bool {
        self.inner.is_mapped(sku)
    }
    fn listing_count(&self) -> usize {
        1000
    }
    async fn push(&self, items: &[PushItem]) -> PushReport {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("injected fault in the channel adapter");
        }
        self.inner.push(items).await
    }
    async fn read_levels(&self, skus: &[String]) -> Result<LevelsReport, ChannelError> {
        self.inner.read_levels(skus).await
    }
}

/// Re-derives the channel's listings as the ledger would: publishes fixed changes.
struct FixedRebuilder {
    propagation: std::sync::OnceLock<Propagation>,
    changes: Vec<AvailabilityChange>,
    rebuilds: AtomicUsize,
}

impl QueueRebuilder for FixedRebuilder {
    fn rebuild(&self, channel: &str) {
        self.rebuilds.fetch_add(1, Ordering::SeqCst);
        if let Some(propagation) = self.propagation.get() {
            propagation.publish_to(channel, &self.changes);
        }
    }
}

#[tokio::test]
async fn a_panicking_channel_actor_is_restarted_and_its_listings_pushed_again() {
    let channel = Arc::new(PanicsOnce::default());
    let store = Arc::new(MemoryStore::default());
    let propagation = Propagation::start_with_adapters(
        vec![(
            channel_config(),
            Arc::clone(&channel) as Arc<dyn ChannelAdapter>,
        )],
        store,
        PropagationOptions::default(),
    )
    .await
    .unwrap();
    let rebuilder = Arc::new(FixedRebuilder {
        propagation: std::sync::OnceLock::new(),
        changes: vec![change("A", 10), change("B", 4)],
        rebuilds: AtomicUsize::new(0),
    });
    let _ = rebuilder.propagation.set(propagation.clone());
    propagation.set_rebuilder(Arc::clone(&rebuilder) as Arc<dyn QueueRebuilder>);
    // The batch A, B is taken out of the queue and the push panics.
    propagation.publish(&[change("A", 10), change("B", 4)]);
    assert!(
        eventually(|| channel.inner.value("A") == Some(9) && channel.inner.value("B") == Some(3))
            .await,
        "the restarted actor pushed the listings the failed one had taken"
    );
    assert_eq!(rebuilder.rebuilds.load(Ordering::SeqCst), 1);
    assert_eq!(propagation.channel_status()[0].restarts_total, 1);
    // The new actor keeps working.
    propagation.publish(&[change("A", 7)]);
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(channel.inner.value("A"), Some(6));
    propagation.shutdown().await;
}

/// Issue 16: a channel with two locations of its own gets one listing per (SKU, location);
/// safety stock and `max_listed_quantity` apply to the channel's total, which is divided by
/// the stock available at each location's feeds and never exceeds the single-location ATP.
#[tokio::test]
async fn a_multi_location_channel_divides_its_atp_by_the_stock_at_each_location() {
    let location = |id: &str, feeds: &[&str]| crate::channels::ListingLocation {
        id: id.to_owned(),
        feeds: feeds.iter().map(|feed| (*feed).to_owned()).collect(),
        name: id.to_owned(),
    };
    let fake = Arc::new(FakeChannel {
        locations: vec![location("100", &["WH-1"]), location("200", &["STORE-1"])],
        ..FakeChannel::default()
    });
    let mut config = channel_config();
    config.locations = vec![LocationId::from("WH-1"), LocationId::from("STORE-1")];
    config.max_listed_quantity = Some(10);
    let propagation = Propagation::start_with_adapters(
        vec![(config, Arc::clone(&fake) as Arc<dyn ChannelAdapter>)],
        Arc::new(MemoryStore::default()),
        PropagationOptions::default(),
    )
    .await
    .unwrap();
    let level = |location: &str, on_hand: i64, reserved: i64| LocationLevel {
        inbound: 0,
        in_transit: 0,
        location: LocationId::from(location),
        on_hand,
        reserved,
    };
    let change = AvailabilityChange {
        inbound: Vec::new(),
        sku: Sku::from("A"),
        seq: 1,
        locations: vec![level("STORE-1", 8, 2), level("WH-1", 12, 0)],
    };
    // One location: min(18 - 1 safety, 10 cap) = 10. Divided 12 : 6 → 6.67 / 3.33 → 7 / 3.
    let total = propagation.atp_for("fake", &change.locations).unwrap().atp;
    assert_eq!(total, 10);
    propagation.publish(std::slice::from_ref(&change));
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (fake.value("A@100"), fake.value("A@200")),
        (Some(7), Some(3))
    );
    assert_eq!(fake.value("A"), None, "the bare SKU is never pushed");
    let parts = propagation.listing_parts("fake", "A", &change.locations, total);
    assert_eq!(
        parts
            .iter()
            .map(|(location, key, part)| (location.id.as_str(), key.as_str(), *part))
            .collect::<Vec<_>>(),
        vec![("100", "A@100", 7), ("200", "A@200", 3)]
    );
    assert_eq!(parts.iter().map(|(_, _, part)| part).sum::<u64>(), total);
    assert_eq!(
        propagation.listing_atp("fake", "A@200", &change.locations),
        Some(3)
    );
    assert_eq!(
        propagation.listing_atp("fake", "A@300", &change.locations),
        None
    );
    assert_eq!(propagation.listing_key_sku("fake", "A@200"), "A");
    // The store sells out: its part goes to 0 and the warehouse lists the whole total.
    let sold_out = AvailabilityChange {
        seq: 2,
        locations: vec![level("STORE-1", 2, 2), level("WH-1", 12, 0)],
        ..change
    };
    propagation.publish(std::slice::from_ref(&sold_out));
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (fake.value("A@100"), fake.value("A@200")),
        (Some(10), Some(0))
    );
    propagation.shutdown().await;
}
