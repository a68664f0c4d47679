//! Issue 17 (backup and restore): an online backup of the embedded store taken while Kafka
//! ingest writes to it holds a consistent prefix of the stream up to its offset watermark;
//! restored, with the consumer group set back to that watermark, the ledger catches up from
//! Kafka to exactly what was produced, nothing lost and nothing doubled.
//!
//! Without tansu installed this test fails and says to run `bash scripts/test.sh`.

use crate::support::{
    TansuBroker, TestLedger, TestProducer, committed_offsets, eventually, kafka_config,
    kafka_receipt, open_store, unique, wh1_on_hand,
};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use stocksync::ingest::kafka::{KafkaIngest, ensure_group_idle, set_committed_offsets};
use stocksync::store::Store;
use stocksync::store_admin::backup::{backup_embedded, restore_embedded};

const PARTITIONS: i32 = 2;
const RECORDS: usize = 4_000;
const SKUS: usize = 20;

fn sku(index: usize) -> String {
    format!("BK-{index:02}")
}

/// Every SKU's stored idempotency keys, in seq order.
async fn stored_keys(store: &dyn Store) -> HashMap<String, Vec<String>> {
    let mut keys = HashMap::new();
    for index in 0..SKUS {
        let events = store.events(&sku(index), 1, 10_000).await.unwrap();
        keys.insert(
            sku(index),
            events.into_iter().map(|e| e.idempotency_key).collect(),
        );
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_to_its_watermark_and_catches_up_from_kafka() {
    let broker = TansuBroker::start();
    let topic = unique("movements");
    let dead_letters = format!("{topic}.dlq");
    broker.create_topic(&topic, PARTITIONS);
    broker.create_topic(&dead_letters, 1);
    let bootstrap = broker.bootstrap();
    let producer = TestProducer::new(&bootstrap);
    let group = unique("group");
    let config = kafka_config(&bootstrap, &group, &topic, &dead_letters);

    let live_dir = tempfile::tempdir().unwrap();
    let live_db = live_dir.path().join("stocksync.db");
    let live = TestLedger::over(Arc::new(open_store(live_dir.path())), live_dir);
    let ingest = KafkaIngest::start(config.clone(), live.ledger.clone()).expect("start ingest");

    // Produce the stream in the background; each record's (partition, offset) is kept.
    let sent = Arc::new(AtomicUsize::new(0));
    let production = {
        let (topic, sent) = (topic.clone(), Arc::clone(&sent));
        tokio::spawn(async move {
            let producer = &producer;
            let topic = &topic;
            let sent = &sent;
            futures::stream::iter(0..RECORDS)
                .map(|n| async move {
                    let index = n % SKUS;
                    let key = format!("bk-{n}");
                    let quantity = (n % 4 + 1) as u64;
                    let partition = (index as i32) % PARTITIONS;
                    let body = kafka_receipt(&sku(index), &key, quantity);
                    let offset = producer
                        .send(topic, partition, Some(&sku(index)), &body)
                        .await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    (partition, offset, index, key, quantity)
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };

    // A third of the way in, back up while records keep coming.
    eventually(
        "a third of the records are applied",
        Duration::from_secs(60),
        || {
            let store = Arc::clone(&live.store);
            async move {
                stored_keys(store.as_ref())
                    .await
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
                    >= RECORDS / 3
            }
        },
    )
    .await;
    let backups = tempfile::tempdir().unwrap();
    let backup_file = backups.path().join("backup.db");
    let report = {
        let (from, to) = (live_db.clone(), backup_file.clone());
        tokio::task::spawn_blocking(move || backup_embedded(&from, &to, false, false))
            .await
            .unwrap()
            .expect("online backup")
    };
    let sent_after_backup = sent.load(Ordering::SeqCst);
    let records = production.await.unwrap();
    assert_eq!(records.len(), RECORDS);
    assert!(
        sent_after_backup < RECORDS,
        "the backup ran while records were still being produced"
    );

    let mut ends = vec![0_i64; PARTITIONS as usize];
    let mut totals = [0_i64; SKUS];
    for (partition, offset, index, _, quantity) in &records {
        ends[*partition as usize] = ends[*partition as usize].max(offset + 1);
        totals[*index] += *quantity as i64;
    }
    let all_committed = ends.iter().map(|end| Some(*end)).collect::<Vec<_>>();
    eventually(
        "every record is committed",
        Duration::from_secs(60),
        || async {
            committed_offsets(&bootstrap, &group, &topic, PARTITIONS).await == all_committed
        },
    )
    .await;
    for (index, total) in totals.iter().enumerate() {
        assert_eq!(wh1_on_hand(&live.ledger, &sku(index)).await, *total);
    }
    // While the engine runs, the group has a member: a restore refuses to touch it.
    {
        let config = config.clone();
        let refused = tokio::task::spawn_blocking(move || {
            ensure_group_idle(&config, Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("member")),
            "{refused:?}"
        );
    }
    ingest.stop().await.expect("clean stop");
    live.ledger.shutdown().await;

    // The backup holds a consistent prefix: every record below its watermark, nothing
    // produced after the backup ended, each key once, and the stream was cut in the middle.
    let watermarks: BTreeMap<i32, i64> = report
        .watermarks
        .iter()
        .filter(|mark| mark.group == group && mark.topic == topic)
        .map(|mark| (mark.partition, mark.next_offset))
        .collect();
    assert!(!watermarks.is_empty(), "{:?}", report.watermarks);
    let restored_dir = tempfile::tempdir().unwrap();
    let restored_db = restored_dir.path().join("stocksync.db");
    let restored_report = {
        let (from, to) = (backup_file.clone(), restored_db.clone());
        tokio::task::spawn_blocking(move || restore_embedded(&from, &to, false, false))
            .await
            .unwrap()
            .expect("restore")
    };
    assert_eq!(restored_report.events, report.events);
    assert_eq!(restored_report.watermarks, report.watermarks);
    let restored = TestLedger::over(Arc::new(open_store(restored_dir.path())), restored_dir);
    let keys = stored_keys(restored.store.as_ref()).await;
    let produced: HashSet<&str> = records.iter().map(|r| r.3.as_str()).collect();
    let mut restored_total = 0;
    for (index, sku_keys) in keys.iter() {
        let unique_keys: HashSet<&String> = sku_keys.iter().collect();
        assert_eq!(unique_keys.len(), sku_keys.len(), "{index}: a key twice");
        assert!(sku_keys.iter().all(|key| produced.contains(key.as_str())));
        restored_total += sku_keys.len();
    }
    assert_eq!(restored_total as u64, report.events);
    assert!(
        (1..RECORDS).contains(&restored_total),
        "the backup holds part of the stream: {restored_total}"
    );
    let restored_keys: HashSet<&str> = keys.values().flatten().map(String::as_str).collect();
    for (partition, offset, _, key, _) in &records {
        if *offset < watermarks.get(partition).copied().unwrap_or(0) {
            assert!(
                restored_keys.contains(key.as_str()),
                "{key} (partition {partition}, offset {offset}) is below the backup's watermark but not in it"
            );
        }
    }
    // The restored ledger's state is its events' sum (snapshots agree with the log).
    for (name, sku_keys) in &keys {
        let expected: i64 = records
            .iter()
            .filter(|r| sku_keys.contains(&r.3))
            .map(|r| r.4 as i64)
            .sum();
        assert_eq!(
            wh1_on_hand(&restored.ledger, name).await,
            expected,
            "{name}"
        );
    }

    // The group resumes at the backup's watermarks; the restored ledger catches up.
    let committed = {
        let (config, watermarks) = (config.clone(), watermarks.clone());
        tokio::task::spawn_blocking(move || {
            set_committed_offsets(&config, &watermarks, Duration::from_secs(10))
        })
        .await
        .unwrap()
        .expect("set the group's offsets")
    };
    assert_eq!(
        committed_offsets(&bootstrap, &group, &topic, PARTITIONS).await,
        committed.iter().map(|(_, o)| Some(*o)).collect::<Vec<_>>()
    );
    let ingest =
        KafkaIngest::start(config.clone(), restored.ledger.clone()).expect("start ingest again");
    eventually(
        "the restored ledger caught up",
        Duration::from_secs(60),
        || async {
            committed_offsets(&bootstrap, &group, &topic, PARTITIONS).await == all_committed
        },
    )
    .await;
    for (index, total) in totals.iter().enumerate() {
        assert_eq!(
            wh1_on_hand(&restored.ledger, &sku(index)).await,
            *total,
            "{}",
            sku(index)
        );
        let events = restored.store.events(&sku(index), 1, 10_000).await.unwrap();
        assert_eq!(
            events.len(),
            RECORDS / SKUS,
            "{}: one event per record",
            sku(index)
        );
    }
    ingest.stop().await.expect("clean stop");
}
