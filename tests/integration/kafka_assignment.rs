//! Manual partition assignment (issue 13): consumers read the partitions of the movements
//! topic they are told to on a `watch` channel, not the ones the group's coordinator hands
//! out. On a real tansu broker, with each consumer's own ledger over its own embedded
//! store (so that a record applied by both would show in the sum).
//!
//! A record the ledger answers `NotOwner` for (the instance is losing the partition) is
//! neither dead-lettered nor committed: the partition is given up.
//!
//! Without tansu installed these tests fail and say to run `bash scripts/test.sh`.

use crate::support::{
    GatedStore, TansuBroker, TestLedger, TestProducer, committed_offsets, eventually, kafka_config,
    open_store, read_topic, unique, wh1_on_hand,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stocksync::domain::NullSink;
use stocksync::ingest::kafka::partitioner::partition_for_key;
use stocksync::ingest::kafka::{
    KafkaIngest, KafkaIngestOptions, PartitionAssignment, PartitionStart,
};
use stocksync::ledger::ownership::{Ownership, OwnershipHandle};
use stocksync::ledger::{Ledger, LedgerError, LedgerOptions};
use stocksync::store::Fence;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

/// One broker, a topic of `partitions` partitions, its dead-letter topic, one group.
struct Fixture {
    broker: TansuBroker,
    topic: String,
    dead_letters: String,
    group: String,
    partitions: i32,
    producer: TestProducer,
}

/// A record produced: its SKU (one SKU per record, received once at WH-1) and position.
#[derive(Clone, Debug)]
struct Record {
    sku: String,
    partition: i32,
    offset: i64,
}

impl Fixture {
    fn new(partitions: i32) -> Self {
        let broker = TansuBroker::start();
        let topic = unique("assigned");
        let dead_letters = format!("{topic}.dlq");
        broker.create_topic(&topic, partitions);
        broker.create_topic(&dead_letters, 1);
        let producer = TestProducer::new(&broker.bootstrap());
        Self {
            group: unique("group"),
            broker,
            topic,
            dead_letters,
            partitions,
            producer,
        }
    }

    /// Starts a consumer of the group reading what `target` says.
    fn start(&self, ledger: &Ledger, target: watch::Receiver<PartitionAssignment>) -> KafkaIngest {
        let config = kafka_config(
            &self.broker.bootstrap(),
            &self.group,
            &self.topic,
            &self.dead_letters,
        );
        let options = KafkaIngestOptions {
            assignment: Some(target),
            ..KafkaIngestOptions::default()
        };
        KafkaIngest::start_with_options(config, ledger.clone(), options)
            .expect("start kafka ingest")
    }

    /// Produces `per_partition` records to every partition, each for a SKU of its own that
    /// the producers' partitioner puts in that partition (named after `round`).
    async fn produce_round(&self, round: u32, per_partition: usize) -> Vec<Record> {
        let mut records = Vec::new();
        for partition in 0..self.partitions {
            let skus = (0..)
                .map(|i| format!("R{round}-{i}"))
                .filter(|sku| {
                    partition_for_key(sku.as_bytes(), self.partitions as u32)
                        == Some(partition as u32)
                })
                .take(per_partition);
            for sku in skus {
                let value = json!({"sku": sku, "idempotency_key": format!("{sku}:rcpt"),
                                   "type": "receipt", "location": "WH-1", "quantity": 1});
                let offset = self
                    .producer
                    .send(&self.topic, partition, Some(&sku), &value.to_string())
                    .await;
                records.push(Record {
                    sku,
                    partition,
                    offset,
                });
            }
        }
        records
    }

    async fn committed(&self) -> Vec<Option<i64>> {
        committed_offsets(
            &self.broker.bootstrap(),
            &self.group,
            &self.topic,
            self.partitions,
        )
        .await
    }

    async fn wait_committed(&self, expected: &[Option<i64>]) {
        eventually(
            &format!("offsets {expected:?} are committed"),
            WAIT,
            || async { self.committed().await == expected },
        )
        .await;
    }

    fn partitions_of(&self, numbers: &[i32]) -> Vec<(String, i32)> {
        numbers
            .iter()
            .map(|number| (self.topic.clone(), *number))
            .collect()
    }
}

/// An assignment of `(partition, epoch, start_offset)`s.
fn assignment(entries: &[(i32, u64, Option<i64>)]) -> PartitionAssignment {
    entries
        .iter()
        .map(|(partition, epoch, start_offset)| {
            (
                *partition,
                PartitionStart {
                    epoch: *epoch,
                    start_offset: *start_offset,
                },
            )
        })
        .collect()
}

async fn wait_assignment(ingest: &KafkaIngest, expected: &[(String, i32)]) {
    eventually(
        &format!("the consumer reads {expected:?}"),
        WAIT,
        || async { ingest.assignment() == expected },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manually_assigned_consumers_read_exactly_their_partitions_and_apply_every_record_once() {
    let fixture = Fixture::new(4);
    let a = TestLedger::start();
    let b = TestLedger::start();
    let mut records = fixture.produce_round(1, 2).await;

    // A reads {0, 1}: exactly their records, from the beginning (nothing committed).
    let (target_a, watch_a) = watch::channel(assignment(&[(0, 1, None), (1, 1, None)]));
    let ingest_a = fixture.start(&a.ledger, watch_a);
    fixture
        .wait_committed(&[Some(2), Some(2), None, None])
        .await;
    assert_eq!(ingest_a.assignment(), fixture.partitions_of(&[0, 1]));
    for record in &records {
        let expected = i64::from(record.partition < 2);
        assert_eq!(
            wh1_on_hand(&a.ledger, &record.sku).await,
            expected,
            "{record:?}"
        );
    }
    // The store's watermarks, written with the events, are where the next owner starts:
    // the settled position when each record was submitted, never past the committed 2.
    let mut watermarks: Vec<(i32, i64)> = a
        .store
        .offsets(&fixture.group)
        .await
        .unwrap()
        .into_iter()
        .filter(|watermark| watermark.topic == fixture.topic)
        .map(|watermark| (watermark.partition, watermark.next_offset))
        .collect();
    watermarks.sort();
    assert!(
        matches!(watermarks[..], [(0, 0..=2), (1, 0..=2)]),
        "{watermarks:?}"
    );

    // A moves to {1, 2}: partition 2 from the beginning, partition 0 no more.
    target_a.send_replace(assignment(&[(1, 1, None), (2, 1, None)]));
    wait_assignment(&ingest_a, &fixture.partitions_of(&[1, 2])).await;
    records.extend(fixture.produce_round(2, 2).await);
    fixture
        .wait_committed(&[Some(2), Some(4), Some(4), None])
        .await;

    // B, same group, reads {0, 3}. Partition 0: its start offset 3 is ahead of the
    // committed 2, so the record at offset 2 is skipped (the store's watermark says it is
    // done). Partition 3: no start offset and nothing committed, so from the beginning.
    let (target_b, watch_b) = watch::channel(assignment(&[(0, 2, Some(3)), (3, 1, None)]));
    let ingest_b = fixture.start(&b.ledger, watch_b);
    fixture
        .wait_committed(&[Some(4), Some(4), Some(4), Some(4)])
        .await;
    assert_eq!(ingest_b.assignment(), fixture.partitions_of(&[0, 3]));
    records.extend(fixture.produce_round(3, 2).await);
    fixture
        .wait_committed(&[Some(6), Some(6), Some(6), Some(6)])
        .await;

    // Partition 1 moves from A to B with a start offset behind the group's committed 6:
    // B starts at 6, applying none of A's records again.
    target_a.send_replace(assignment(&[(2, 1, None)]));
    wait_assignment(&ingest_a, &fixture.partitions_of(&[2])).await;
    target_b.send_replace(assignment(&[
        (0, 2, Some(3)),
        (1, 2, Some(0)),
        (3, 1, None),
    ]));
    wait_assignment(&ingest_b, &fixture.partitions_of(&[0, 1, 3])).await;
    records.extend(fixture.produce_round(4, 2).await);
    fixture
        .wait_committed(&[Some(8), Some(8), Some(8), Some(8)])
        .await;

    ingest_a.stop().await.expect("clean stop of A");
    ingest_b.stop().await.expect("clean stop of B");
    assert_eq!(records.len(), 32);
    // Who applies each record: every one exactly once (in A or in B) but the one skipped.
    let owner = |record: &Record| match (record.partition, record.offset) {
        (0, 0..=1) => Some('A'),
        (0, 2) => None,
        (0, _) => Some('B'),
        (1, 0..=5) => Some('A'),
        (1, _) => Some('B'),
        (2, _) => Some('A'),
        _ => Some('B'),
    };
    for record in &records {
        let in_a = wh1_on_hand(&a.ledger, &record.sku).await;
        let in_b = wh1_on_hand(&b.ledger, &record.sku).await;
        let expected = (
            i64::from(owner(record) == Some('A')),
            i64::from(owner(record) == Some('B')),
        );
        assert_eq!((in_a, in_b), expected, "(A, B) applied {record:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_taken_away_with_its_batch_in_flight_is_not_committed_and_is_read_again() {
    let fixture = Fixture::new(2);
    let dir = tempfile::tempdir().unwrap();
    let gate = GatedStore::new(Arc::new(open_store(dir.path())), false);
    let ledger = TestLedger::over(gate.clone(), dir);
    let records = fixture.produce_round(1, 1).await;
    let (target, watch) = watch::channel(assignment(&[(0, 1, None), (1, 1, None)]));
    let ingest = fixture.start(&ledger.ledger, watch);
    // Both records reach the ledger, which cannot make them durable: their batch is in
    // flight.
    for record in &records {
        eventually("the ledger has seen the record", WAIT, || async {
            wh1_on_hand(&ledger.ledger, &record.sku).await == 1
        })
        .await;
    }

    // Partition 0 is taken away while its batch is in flight: promptly.
    let asked = Instant::now();
    target.send_replace(assignment(&[(1, 1, None)]));
    wait_assignment(&ingest, &fixture.partitions_of(&[1])).await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Once durable, partition 1 is committed; partition 0 never by this consumer.
    gate.set_open(true);
    fixture.wait_committed(&[None, Some(1)]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fixture.committed().await, [None, Some(1)]);
    // Its record is durable all the same, written with the store's watermark at the
    // partition's settled position then: before it (nothing of the partition was settled).
    let watermarks: Vec<(i32, i64)> = ledger
        .store
        .offsets(&fixture.group)
        .await
        .unwrap()
        .into_iter()
        .filter(|watermark| watermark.topic == fixture.topic && watermark.partition == 0)
        .map(|watermark| (watermark.partition, watermark.next_offset))
        .collect();
    assert_eq!(watermarks, [(0, 0)]);

    // Handed back under a new epoch without a start offset: read again from the beginning
    // (nothing committed), a duplicate now, then committed.
    target.send_replace(assignment(&[(0, 2, None), (1, 1, None)]));
    wait_assignment(&ingest, &fixture.partitions_of(&[0, 1])).await;
    fixture.wait_committed(&[Some(1), Some(1)]).await;
    for record in &records {
        assert_eq!(
            wh1_on_hand(&ledger.ledger, &record.sku).await,
            1,
            "{record:?}"
        );
    }
    ingest.stop().await.expect("clean stop");
}

/// An ownership that refuses the SKUs of the partitions in `refused` (as the cluster does
/// for partitions this instance is losing), fencing every write at epoch 1.
struct PartitionOwnership {
    partitions: u32,
    refused: std::sync::Mutex<std::collections::BTreeSet<u32>>,
}

impl PartitionOwnership {
    fn partition(&self, sku: &str) -> u32 {
        partition_for_key(sku.as_bytes(), self.partitions).expect("partitions")
    }

    fn set_refused(&self, partitions: &[u32]) {
        *self.refused.lock().unwrap() = partitions.iter().copied().collect();
    }
}

impl Ownership for PartitionOwnership {
    fn admit(&self, sku: &str) -> Result<(), LedgerError> {
        let partition = self.partition(sku);
        if self.refused.lock().unwrap().contains(&partition) {
            return Err(LedgerError::NotOwner {
                partition,
                owner: None,
            });
        }
        Ok(())
    }

    fn fence(&self, sku: &str) -> Option<Fence> {
        let partition = self.partition(sku);
        (!self.refused.lock().unwrap().contains(&partition)).then(|| Fence {
            scope: format!("movements/{partition}"),
            epoch: 1,
        })
    }

    fn fenced(&self, _scope: &str, _epoch: u64) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_ledger_answers_not_owner_is_neither_dead_lettered_nor_committed() {
    let fixture = Fixture::new(2);
    let ownership = Arc::new(PartitionOwnership {
        partitions: 2,
        refused: Default::default(),
    });
    // This instance is losing partition 0: the ledger refuses its SKUs.
    ownership.set_refused(&[0]);
    let dir = tempfile::tempdir().unwrap();
    let options = LedgerOptions {
        ownership: Some(OwnershipHandle(ownership.clone())),
        ..LedgerOptions::default()
    };
    let ledger = Ledger::start(
        Arc::new(open_store(dir.path())),
        Arc::new(NullSink),
        options,
    );
    let records = fixture.produce_round(1, 2).await;
    let (target, watch) = watch::channel(assignment(&[(0, 1, None), (1, 1, None)]));
    let ingest = fixture.start(&ledger, watch);

    // Partition 1 is applied and committed; partition 0 is given up: not applied, nothing
    // committed, and the consumer stops reading it.
    fixture.wait_committed(&[None, Some(2)]).await;
    wait_assignment(&ingest, &fixture.partitions_of(&[1])).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fixture.committed().await, [None, Some(2)]);
    for record in &records {
        let expected = i64::from(record.partition == 1);
        assert_eq!(
            wh1_on_hand(&ledger, &record.sku).await,
            expected,
            "{record:?}"
        );
    }
    let dead = read_topic(
        &fixture.broker.bootstrap(),
        &fixture.dead_letters,
        1,
        1,
        Duration::from_secs(2),
    )
    .await;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    // Any change of the target reads it again (a partition lost and taken back under the
    // same lease must not stay given up); the ledger still refuses it, so it is given up
    // again with nothing applied, committed or dead-lettered.
    target.send_replace(assignment(&[(0, 1, None), (1, 1, None)]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_assignment(&ingest, &fixture.partitions_of(&[1])).await;
    assert_eq!(fixture.committed().await, [None, Some(2)]);
    for record in records.iter().filter(|record| record.partition == 0) {
        assert_eq!(wh1_on_hand(&ledger, &record.sku).await, 0, "{record:?}");
    }

    // The partition comes back under a new epoch, admitted by the ledger: its records are
    // read again from the committed offset (none: the beginning) and applied once.
    ownership.set_refused(&[]);
    target.send_replace(assignment(&[(0, 2, None), (1, 1, None)]));
    wait_assignment(&ingest, &fixture.partitions_of(&[0, 1])).await;
    fixture.wait_committed(&[Some(2), Some(2)]).await;
    for record in &records {
        assert_eq!(wh1_on_hand(&ledger, &record.sku).await, 1, "{record:?}");
    }
    ingest.stop().await.expect("clean stop");
}
