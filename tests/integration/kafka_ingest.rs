//! The Kafka movements consumer against a real Kafka-protocol broker (tansu, on a loopback
//! port) and a real ledger over the embedded store; plus the movement JSON Schema checked
//! against the same example messages.
//!
//! Without tansu installed these tests fail and say to run `bash scripts/test.sh`.

use crate::support::{
    GatedStore, TansuBroker, TestLedger, TestProducer, committed_offsets, eventually, header,
    kafka_config, open_store, produce_with_python, read_topic, unique,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use stocksync::domain::{LocationId, Sku, SkuState};
use stocksync::ingest::kafka::{
    AtpOutput, AtpPublisher, AtpUpdate, HEADER_ERROR, HEADER_ERROR_REASON, HEADER_ORIGINAL_OFFSET,
    HEADER_ORIGINAL_PARTITION, HEADER_ORIGINAL_TOPIC, KafkaIngest, MessageOrigin, decode_movement,
};
use stocksync::ledger::Ledger;

const WAIT: Duration = Duration::from_secs(30);

/// Example movements that follow the contract (one per kind, plus optional fields and an
/// unknown field). Used by the schema test and, in part, by the Kafka tests.
const GOOD_EXAMPLES: &[&str] = &[
    r#"{"schema_version":1,"sku":"SKU-A","idempotency_key":"wms-1:rcpt-77:1","source":"wms-1","type":"receipt","location":"WH-1","quantity":10}"#,
    r#"{"sku":"SKU-A","idempotency_key":"wms-1:adj-1","type":"adjustment","location":"WH-1","delta":-2,"reason":"damaged"}"#,
    r#"{"sku":"SKU-A","idempotency_key":"wms-1:count-9","type":"count","location":"WH-1","on_hand":7,"watermark":1700000000000}"#,
    r#"{"sku":"SKU-A","idempotency_key":"shop:1001:1","source":"shopify:main","occurred_at_ms":1700000000000,"type":"sale","reservation":"shop:1001:1","quantity":1,"route":["WH-1","WH-2"]}"#,
    r#"{"sku":"SKU-A","idempotency_key":"b2b:h-1","type":"reservation","reservation":"b2b:h-1","quantity":2,"location":"WH-1"}"#,
    r#"{"sku":"SKU-A","idempotency_key":"shop:1001:1:cancel","type":"cancellation","reservation":"shop:1001:1"}"#,
    r#"{"sku":"SKU-A","idempotency_key":"b2b:h-1:ship","type":"fulfilment","reservation":"b2b:h-1","quantity":2}"#,
    r#"{"sku":"SKU-A","idempotency_key":"rma-5","type":"return","location":"WH-1","quantity":1,"reservation":"shop:1001:1","extra":{"anything":true}}"#,
    // Issue 9: the order-lifecycle kinds and fields, one example each.
    r#"{"sku":"SKU-A","idempotency_key":"shopify:7001:v2:L1","source":"shopify:main","type":"order_edit","reservation":"shopify:7001:L1","quantity":1,"version":2,"route":["WH-1"]}"#,
    r#"{"sku":"SKU-A","idempotency_key":"oms:7001:L1:move","source":"oms","type":"reassign","reservation":"shopify:7001:L1","to":"WH-2"}"#,
    r#"{"sku":"SKU-A","idempotency_key":"wms-1:ship-9:1","source":"wms-1","type":"fulfilment","reservation":"shopify:7001:L1","quantity":1,"location":"WH-1"}"#,
    r#"{"sku":"SKU-A","idempotency_key":"rma:RMA-1:1","source":"rma","type":"return","reservation":"shopify:7001:L1","quantity":1,"restock":false}"#,
    r#"{"sku":"SKU-A","idempotency_key":"amazon:402-1:cancel","source":"amazon:eu","type":"cancellation","reservation":"amazon:402-1:1","reason":"NoInventory","write_off":true}"#,
    r#"{"sku":"SKU-A","idempotency_key":"erp:count:88","source":"erp","type":"count","location":"WH-1","on_hand":5,"watermark":88,"basis":"book","booked":["shopify:7001:L1"]}"#,
    r#"{"sku":"SKU-A","idempotency_key":"erp:count:89","source":"erp","type":"count","location":"WH-1","on_hand":null,"watermark":89}"#,
    r#"{"sku":"SKU-A","idempotency_key":"wms-2:tr-5:rcv","source":"wms-2","type":"transfer_receipt","transfer":"TR-5","quantity":8,"rejected":2,"rejected_reason":"damaged","quarantine":"QUARANTINE"}"#,
];

/// Example values that break the contract, with the dead-letter reason the consumer gives.
const BAD_EXAMPLES: &[(&str, &str)] = &[
    (
        r#"{"idempotency_key":"k1","type":"receipt","location":"WH-1","quantity":1}"#,
        "invalid_movement",
    ),
    (
        r#"{"sku":"SKU-A","idempotency_key":"k2","type":"receipt","location":"WH-1","quantity":0}"#,
        "invalid_field",
    ),
    (
        r#"{"sku":"SKU-A","idempotency_key":"k3","type":"teleport","location":"WH-1","quantity":1}"#,
        "invalid_movement",
    ),
    (
        r#"{"sku":"SKU-A","idempotency_key":"k4","type":"sale","reservation":"r","quantity":1}"#,
        "invalid_field",
    ),
    (
        r#"{"sku":"SKU-A","idempotency_key":"k5","type":"adjustment","location":"WH-1","delta":0}"#,
        "invalid_field",
    ),
    (
        r#"{"schema_version":2,"sku":"SKU-A","idempotency_key":"k6","type":"receipt","location":"WH-1","quantity":1}"#,
        "invalid_field",
    ),
    (
        r#"{"sku":"","idempotency_key":"k7","type":"receipt","location":"WH-1","quantity":1}"#,
        "invalid_field",
    ),
];

fn receipt(sku: &str, key: &str, location: &str, quantity: u64) -> String {
    json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "test",
           "type": "receipt", "location": location, "quantity": quantity})
    .to_string()
}

fn wh1() -> LocationId {
    "WH-1".into()
}

async fn state(ledger: &Ledger, sku: &str) -> SkuState {
    ledger.state(&Sku::from(sku)).await.expect("ledger state")
}

/// One broker, unique topics and group, a ledger and a producer.
struct Fixture {
    broker: TansuBroker,
    topic: String,
    dead_letters: String,
    group: String,
    producer: TestProducer,
}

impl Fixture {
    fn new(partitions: i32) -> Self {
        let broker = TansuBroker::start();
        let topic = unique("movements");
        let dead_letters = format!("{topic}.dlq");
        broker.create_topic(&topic, partitions);
        broker.create_topic(&dead_letters, 1);
        let producer = TestProducer::new(&broker.bootstrap());
        Self {
            group: unique("group"),
            broker,
            topic,
            dead_letters,
            producer,
        }
    }

    fn start_ingest(&self, ledger: &Ledger) -> KafkaIngest {
        let config = kafka_config(
            &self.broker.bootstrap(),
            &self.group,
            &self.topic,
            &self.dead_letters,
        );
        KafkaIngest::start(config, ledger.clone()).expect("start kafka ingest")
    }

    async fn send(&self, partition: i32, key: Option<&str>, value: &str) -> i64 {
        self.producer.send(&self.topic, partition, key, value).await
    }

    async fn committed(&self, partitions: i32) -> Vec<Option<i64>> {
        committed_offsets(
            &self.broker.bootstrap(),
            &self.group,
            &self.topic,
            partitions,
        )
        .await
    }

    async fn wait_committed(&self, expected: &[Option<i64>]) {
        let partitions = expected.len() as i32;
        eventually(
            &format!("offsets {expected:?} are committed"),
            WAIT,
            || async { self.committed(partitions).await == expected },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movements_are_applied_and_offsets_committed_only_once_durable() {
    let fixture = Fixture::new(2);
    let dir = tempfile::tempdir().unwrap();
    let gate = GatedStore::new(Arc::new(open_store(dir.path())), false);
    let ledger = TestLedger::over(gate.clone(), dir);
    let ingest = fixture.start_ingest(&ledger.ledger);

    fixture
        .send(0, Some("SKU-A"), &receipt("SKU-A", "r-1", "WH-1", 10))
        .await;
    // The store holds every commit back: the movement reaches the ledger, but nothing may
    // be committed to Kafka while it is not durable.
    eventually("the ledger has seen the receipt", WAIT, || async {
        state(&ledger.ledger, "SKU-A")
            .await
            .location(&wh1())
            .on_hand
            == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fixture.committed(2).await,
        vec![None, None],
        "committed before durable"
    );
    assert!(
        ledger
            .store
            .offsets(&fixture.group)
            .await
            .unwrap()
            .is_empty()
    );
    gate.set_open(true);

    let sale = json!({"sku": "SKU-A", "idempotency_key": "shop:1:1", "type": "sale",
                      "reservation": "shop:1:1", "quantity": 3, "location": "WH-1"});
    fixture.send(0, Some("SKU-A"), &sale.to_string()).await;
    let adjustment = json!({"sku": "SKU-A", "idempotency_key": "adj-1", "type": "adjustment",
                            "location": "WH-1", "delta": -2, "reason": "damaged"});
    fixture
        .send(0, Some("SKU-A"), &adjustment.to_string())
        .await;
    fixture
        .send(1, Some("SKU-B"), &receipt("SKU-B", "r-2", "WH-1", 4))
        .await;
    fixture.wait_committed(&[Some(3), Some(1)]).await;

    let sku_a = state(&ledger.ledger, "SKU-A").await.location(&wh1());
    assert_eq!((sku_a.on_hand, sku_a.reserved), (8, 3));
    assert_eq!(
        state(&ledger.ledger, "SKU-B")
            .await
            .location(&wh1())
            .on_hand,
        4
    );
    let events = ledger.store.events("SKU-A", 1, 100).await.unwrap();
    let keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["r-1", "shop:1:1", "adj-1"]);
    // The offset watermark went into the store with the events: the settled position when
    // each record was submitted, so never past the committed offsets (it lags behind them).
    let mut watermarks: Vec<(i32, i64)> = ledger
        .store
        .offsets(&fixture.group)
        .await
        .unwrap()
        .into_iter()
        .filter(|w| w.topic == fixture.topic)
        .map(|w| (w.partition, w.next_offset))
        .collect();
    watermarks.sort();
    assert!(
        matches!(watermarks[..], [(0, 0..=3), (1, 0..=1)]),
        "{watermarks:?}"
    );

    ingest.stop().await.expect("clean stop");
}

/// The store's offset watermark of `fixture`'s partition 0, if any was written.
async fn stored_watermark(store: &dyn stocksync::store::Store, fixture: &Fixture) -> Option<i64> {
    store
        .offsets(&fixture.group)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.topic == fixture.topic && w.partition == 0)
        .map(|w| w.next_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_offset_watermark_never_passes_a_record_whose_write_is_held_back() {
    // One partition. Its first record's SKU cannot be loaded (so its movement waits in the
    // ledger, unwritten) while later records of other SKUs become durable, each write
    // carrying the store's offset watermark. A new owner starting at that watermark must
    // not skip the held record: the watermark stays at or below its offset.
    let fixture = Fixture::new(1);
    let dir = tempfile::tempdir().unwrap();
    let gate = GatedStore::new(Arc::new(open_store(dir.path())), true);
    gate.hold_loads_of(Some("HELD"));
    let ledger = TestLedger::over(gate.clone(), dir);
    let ingest = fixture.start_ingest(&ledger.ledger);

    let held = fixture
        .send(0, Some("HELD"), &receipt("HELD", "held-1", "WH-1", 1))
        .await;
    eventually("the held SKU's load waits", WAIT, || async {
        gate.held_loads() > 0
    })
    .await;
    // Four rounds of five records of other SKUs, each round durable before the next is
    // produced (so they go in batches of their own, submitted after earlier ones settled).
    let mut others = Vec::new();
    for round in 0..4 {
        let skus: Vec<String> = (0..5).map(|i| format!("OTHER-{round}-{i}")).collect();
        for sku in &skus {
            fixture
                .send(0, Some(sku), &receipt(sku, &format!("{sku}:1"), "WH-1", 1))
                .await;
        }
        for sku in &skus {
            eventually(&format!("{sku} is durable"), WAIT, || async {
                !ledger.store.events(sku, 1, 10).await.unwrap().is_empty()
            })
            .await;
        }
        others.extend(skus);
        let watermark = stored_watermark(ledger.store.as_ref(), &fixture).await;
        assert!(
            watermark.is_none_or(|watermark| watermark <= held),
            "round {round}: the store's watermark {watermark:?} passes the held record at {held}"
        );
    }
    assert!(ledger.store.events("HELD", 1, 10).await.unwrap().is_empty());
    assert_eq!(
        fixture.committed(1).await,
        [None],
        "committed past the held record"
    );

    // Released: everything settles, and the watermark never passes the committed offset.
    gate.hold_loads_of(None);
    let end = held + 1 + others.len() as i64;
    fixture.wait_committed(&[Some(end)]).await;
    let watermark = stored_watermark(ledger.store.as_ref(), &fixture).await;
    assert!(
        watermark.is_some_and(|watermark| watermark <= end),
        "{watermark:?}"
    );
    // One more record once everything before it is settled: it is written with the
    // position of everything before it.
    let last = fixture
        .send(0, Some("LAST"), &receipt("LAST", "last-1", "WH-1", 1))
        .await;
    assert_eq!(last, end);
    fixture.wait_committed(&[Some(end + 1)]).await;
    assert_eq!(
        stored_watermark(ledger.store.as_ref(), &fixture).await,
        Some(end)
    );
    for sku in others.iter().map(String::as_str).chain(["HELD", "LAST"]) {
        assert_eq!(
            state(&ledger.ledger, sku).await.location(&wh1()).on_hand,
            1,
            "{sku}"
        );
    }
    ingest.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_rejected_records_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let fixture = Fixture::new(1);
    let ledger = TestLedger::start();
    let ingest = fixture.start_ingest(&ledger.ledger);

    let hold = json!({"sku": "SKU-A", "idempotency_key": "b2b:h-1", "type": "reservation",
                      "reservation": "b2b:h-1", "quantity": 50, "location": "WH-1"});
    let mut sent: Vec<(Option<&str>, String, &str)> = vec![
        (Some("SKU-A"), receipt("SKU-A", "r-1", "WH-1", 5), "applied"),
        (Some("SKU-A"), "{not json".to_owned(), "invalid_json"),
        (Some("SKU-A"), hold.to_string(), "rejected"),
        (
            Some("SKU-Z"),
            receipt("SKU-A", "r-9", "WH-1", 1),
            "key_mismatch",
        ),
        (None, receipt("SKU-A", "r-8", "WH-1", 1), "key_mismatch"),
    ];
    for (value, reason) in BAD_EXAMPLES {
        sent.push((Some("SKU-A"), (*value).to_owned(), reason));
    }
    sent.push((Some("SKU-A"), receipt("SKU-A", "r-2", "WH-1", 2), "applied"));
    for (key, value, _) in &sent {
        fixture.send(0, *key, value).await;
    }

    let total = sent.len() as i64;
    fixture.wait_committed(&[Some(total)]).await;
    let stock = state(&ledger.ledger, "SKU-A").await.location(&wh1());
    assert_eq!((stock.on_hand, stock.reserved), (7, 0));

    // (offset, record) of every record that must be dead-lettered, in order.
    let expected: Vec<_> = sent
        .iter()
        .enumerate()
        .filter(|(_, (_, _, reason))| *reason != "applied")
        .collect();
    let bootstrap = fixture.broker.bootstrap();
    let letters = read_topic(&bootstrap, &fixture.dead_letters, 1, expected.len(), WAIT).await;
    assert_eq!(letters.len(), expected.len(), "dead letters: {letters:?}");
    for (letter, (offset, (key, value, reason))) in letters.iter().zip(&expected) {
        use rdkafka::Message;
        assert_eq!(
            header(letter, HEADER_ERROR_REASON).as_deref(),
            Some(*reason)
        );
        assert!(!header(letter, HEADER_ERROR).unwrap_or_default().is_empty());
        assert_eq!(
            header(letter, HEADER_ORIGINAL_TOPIC),
            Some(fixture.topic.clone())
        );
        assert_eq!(
            header(letter, HEADER_ORIGINAL_PARTITION).as_deref(),
            Some("0")
        );
        assert_eq!(
            header(letter, HEADER_ORIGINAL_OFFSET),
            Some(offset.to_string())
        );
        assert_eq!(letter.key(), key.map(str::as_bytes));
        assert_eq!(letter.payload(), Some(value.as_bytes()));
    }
    let rejected = &letters[1];
    let error = header(rejected, HEADER_ERROR).unwrap();
    assert!(error.contains("insufficient stock"), "{error}");

    ingest.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_idempotency_key_has_no_effect() {
    let fixture = Fixture::new(1);
    let ledger = TestLedger::start();
    let ingest = fixture.start_ingest(&ledger.ledger);

    let first = receipt("SKU-A", "wms-1:rcpt-1:1", "WH-1", 10);
    fixture.send(0, Some("SKU-A"), &first).await;
    fixture.wait_committed(&[Some(1)]).await;
    // The same business event again: later, and in one batch with itself.
    fixture.send(0, Some("SKU-A"), &first).await;
    fixture
        .send(
            0,
            Some("SKU-A"),
            &receipt("SKU-A", "wms-1:rcpt-1:1", "WH-1", 99),
        )
        .await;
    fixture
        .send(
            0,
            Some("SKU-A"),
            &receipt("SKU-A", "wms-1:rcpt-2:1", "WH-1", 1),
        )
        .await;
    fixture.wait_committed(&[Some(4)]).await;

    assert_eq!(
        state(&ledger.ledger, "SKU-A")
            .await
            .location(&wh1())
            .on_hand,
        11
    );
    let events = ledger.store.events("SKU-A", 1, 100).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let letters = read_topic(
        &fixture.broker.bootstrap(),
        &fixture.dead_letters,
        1,
        1,
        Duration::from_millis(500),
    )
    .await;
    assert!(
        letters.is_empty(),
        "duplicates are not dead letters: {letters:?}"
    );

    ingest.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_neither_reconsumes_nor_loses_movements() {
    let fixture = Fixture::new(2);

    // First run: five movements across both partitions, then a clean stop.
    let first = TestLedger::start();
    let ingest = fixture.start_ingest(&first.ledger);
    for n in 0..5 {
        let (sku, partition) = if n % 2 == 0 {
            ("SKU-A", 0)
        } else {
            ("SKU-B", 1)
        };
        fixture
            .send(
                partition,
                Some(sku),
                &receipt(sku, &format!("r-{n}"), "WH-1", 1),
            )
            .await;
    }
    fixture.wait_committed(&[Some(3), Some(2)]).await;
    ingest.stop().await.expect("clean stop");

    // While nobody consumes, five more arrive.
    for n in 5..10 {
        let (sku, partition) = if n % 2 == 0 {
            ("SKU-A", 0)
        } else {
            ("SKU-B", 1)
        };
        fixture
            .send(
                partition,
                Some(sku),
                &receipt(sku, &format!("r-{n}"), "WH-1", 1),
            )
            .await;
    }

    // Second run in the same group, over a fresh store: it must see exactly the five new
    // movements (a re-read would apply old ones here; a loss would miss new ones).
    let second = TestLedger::start();
    let ingest = fixture.start_ingest(&second.ledger);
    fixture.wait_committed(&[Some(5), Some(5)]).await;
    ingest.stop().await.expect("clean stop");

    let on_hand = |state: SkuState| state.location(&wh1()).on_hand;
    assert_eq!(on_hand(state(&first.ledger, "SKU-A").await), 3);
    assert_eq!(on_hand(state(&first.ledger, "SKU-B").await), 2);
    assert_eq!(on_hand(state(&second.ledger, "SKU-A").await), 2);
    assert_eq!(on_hand(state(&second.ledger, "SKU-B").await), 3);
    let keys = |events: Vec<stocksync::store::EventRecord>| -> Vec<String> {
        events.into_iter().map(|e| e.idempotency_key).collect()
    };
    assert_eq!(
        keys(second.store.events("SKU-A", 1, 100).await.unwrap()),
        ["r-6", "r-8"]
    );
    assert_eq!(
        keys(second.store.events("SKU-B", 1, 100).await.unwrap()),
        ["r-5", "r-7", "r-9"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_by_kafka_python_are_consumed() {
    let fixture = Fixture::new(1);
    let ledger = TestLedger::start();
    let ingest = fixture.start_ingest(&ledger.ledger);

    let topic = fixture.topic.as_str();
    let without_key = json!({"sku": "SKU-P", "type": "receipt", "location": "WH-1", "quantity": 3});
    let records = [
        json!({"topic": topic, "key": "SKU-P", "value": GOOD_EXAMPLES[0].replace("SKU-A", "SKU-P"),
               "headers": {"trace-id": "py-1"}}),
        json!({"topic": topic, "key": "SKU-P", "value": without_key.to_string()}),
        json!({"topic": topic, "key": "SKU-P", "value": "not json at all"}),
    ];
    let bootstrap = fixture.broker.bootstrap();
    let positions = tokio::task::spawn_blocking(move || produce_with_python(&bootstrap, &records))
        .await
        .unwrap();
    assert_eq!(positions, [(0, 0), (0, 1), (0, 2)]);

    fixture.wait_committed(&[Some(3)]).await;
    assert_eq!(
        state(&ledger.ledger, "SKU-P")
            .await
            .location(&wh1())
            .on_hand,
        13
    );
    let events = ledger.store.events("SKU-P", 1, 100).await.unwrap();
    let keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    let fallback = format!("kafka:{topic}:0:1");
    assert_eq!(keys, ["wms-1:rcpt-77:1", fallback.as_str()]);

    let letters = read_topic(
        &fixture.broker.bootstrap(),
        &fixture.dead_letters,
        1,
        1,
        WAIT,
    )
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        header(&letters[0], HEADER_ERROR_REASON).as_deref(),
        Some("invalid_json")
    );
    assert_eq!(
        header(&letters[0], HEADER_ORIGINAL_OFFSET).as_deref(),
        Some("2")
    );

    ingest.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atp_updates_are_published_keyed_by_sku() {
    let broker = TansuBroker::start();
    let topic = unique("atp");
    broker.create_topic(&topic, 1);
    let publisher = AtpPublisher::new(&broker.bootstrap(), &topic).expect("atp publisher");
    let output: &dyn AtpOutput = &publisher;
    let update = AtpUpdate {
        sku: "SKU-A".into(),
        channel: "shopify-main".into(),
        atp: 7,
        seq: 3,
    };
    output.publish(&update).await.expect("publish");

    let records = read_topic(&broker.bootstrap(), &topic, 1, 1, WAIT).await;
    assert_eq!(records.len(), 1);
    use rdkafka::Message;
    assert_eq!(records[0].key(), Some(&b"SKU-A"[..]));
    let value: AtpUpdate = serde_json::from_slice(records[0].payload().unwrap()).unwrap();
    assert_eq!(value, update);
}

fn movement_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/movement.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the schema"))
        .expect("the schema is JSON")
}

#[test]
fn the_schema_and_the_decoder_agree_on_the_examples() {
    let schema = movement_schema();
    let validator = jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema");
    let origin = MessageOrigin {
        topic: "t",
        partition: 0,
        offset: 0,
    };
    for example in GOOD_EXAMPLES {
        let value: Value = serde_json::from_str(example).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "schema refuses {example}: {errors:?}");
        decode_movement(Some(b"SKU-A"), Some(example.as_bytes()), &origin)
            .unwrap_or_else(|e| panic!("decoder refuses {example}: {e}"));
    }
    for (example, reason) in BAD_EXAMPLES {
        let value: Value = serde_json::from_str(example).unwrap();
        assert!(!validator.is_valid(&value), "schema accepts {example}");
        let error = decode_movement(Some(b"SKU-A"), Some(example.as_bytes()), &origin)
            .expect_err("decoder accepts a bad example");
        assert_eq!(error.reason(), *reason, "{example}: {error}");
    }
}

#[test]
fn the_schema_requires_an_idempotency_key_that_kafka_supplies_as_a_fallback() {
    let schema = movement_schema();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let value = json!({"sku": "SKU-A", "type": "receipt", "location": "WH-1", "quantity": 1});
    assert!(!validator.is_valid(&value));
    let origin = MessageOrigin {
        topic: "stock.movements",
        partition: 1,
        offset: 9,
    };
    let movement =
        decode_movement(Some(b"SKU-A"), Some(value.to_string().as_bytes()), &origin).unwrap();
    let mut filled = value.clone();
    filled["idempotency_key"] = json!(movement.idempotency_key);
    assert!(validator.is_valid(&filled), "{filled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_between_two_consumers_applies_every_movement_once() {
    let fixture = Fixture::new(4);
    let ledger = TestLedger::start();
    let first = fixture.start_ingest(&ledger.ledger);
    let mut sent_per_partition = [0i64; 4];
    let mut send_round = |round: usize| {
        let fixture = &fixture;
        let batch: Vec<(i32, String, String)> = (0..4)
            .map(|partition| {
                let sku = format!("SKU-{partition}");
                let key = format!("r-{round}-{partition}");
                (partition, sku.clone(), receipt(&sku, &key, "WH-1", 1))
            })
            .collect();
        for (partition, _, _) in &batch {
            sent_per_partition[*partition as usize] += 1;
        }
        async move {
            for (partition, sku, value) in &batch {
                fixture.send(*partition, Some(sku), value).await;
            }
        }
    };
    for round in 0..3 {
        send_round(round).await;
    }
    // A second instance joins: the partitions are split between the two (tansu tells the
    // first member at its next heartbeat, within seconds).
    let second = fixture.start_ingest(&ledger.ledger);
    let mut round = 3;
    eventually("both consumers own partitions", WAIT, || {
        let split = !first.assignment().is_empty() && !second.assignment().is_empty();
        let send = (!split).then(|| {
            round += 1;
            send_round(round - 1)
        });
        async move {
            if let Some(send) = send {
                send.await;
            }
            split
        }
    })
    .await;
    let owned = first.assignment().len() + second.assignment().len();
    assert_eq!(
        owned,
        4,
        "{:?} {:?}",
        first.assignment(),
        second.assignment()
    );
    for _ in 0..3 {
        send_round(round).await;
        round += 1;
    }
    // The first leaves: its partitions move to the second.
    first.stop().await.expect("clean stop");
    for _ in 0..2 {
        send_round(round).await;
        round += 1;
    }
    let expected: Vec<Option<i64>> = sent_per_partition.iter().map(|n| Some(*n)).collect();
    fixture.wait_committed(&expected).await;
    second.stop().await.expect("clean stop");

    for partition in 0..4 {
        let sku = format!("SKU-{partition}");
        let rounds = round as i64;
        assert_eq!(
            state(&ledger.ledger, &sku).await.location(&wh1()).on_hand,
            rounds,
            "{sku}"
        );
        let events = ledger.store.events(&sku, 1, 1000).await.unwrap();
        assert_eq!(events.len(), round, "{sku}: {events:?}");
    }
}
