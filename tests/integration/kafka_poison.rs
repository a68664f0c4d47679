//! Issue 10 §3 (no poison) against a real Kafka-protocol broker (tansu): a store outage
//! pauses Kafka ingest (and `/readyz`, and REST) and it resumes by itself with every
//! movement applied exactly once; a movement the ledger can never take is dead-lettered
//! and the partition moves on.
//!
//! Without tansu installed these tests fail and say to run `bash scripts/test.sh`.

use crate::support::{
    TansuBroker, TestLedger, TestProducer, committed_offsets, eventually, header, kafka_config,
    open_store, read_topic, unique,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use stocksync::config::Config;
use stocksync::domain::{LocationId, Sku};
use stocksync::ingest::kafka::{
    HEADER_ERROR, HEADER_ERROR_REASON, HEADER_ORIGINAL_OFFSET, KafkaIngest, KafkaIngestOptions,
    REASON_UNAVAILABLE, RetryPolicy,
};
use stocksync::store::fault::FaultyStore;
use stocksync::web::{self, WebState};

const WAIT: Duration = Duration::from_secs(30);

fn receipt(sku: &str, key: &str, quantity: u64) -> String {
    json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "test",
           "type": "receipt", "location": "WH-1", "quantity": quantity})
    .to_string()
}

async fn on_hand(ledger: &stocksync::ledger::Ledger, sku: &str) -> i64 {
    ledger
        .state(&Sku::from(sku))
        .await
        .expect("ledger state")
        .location(&LocationId::from("WH-1"))
        .on_hand
}

/// The HTTP API over `ledger` on a loopback port; returns its base URL.
async fn serve(ledger: &stocksync::ledger::Ledger) -> String {
    let config = Config::from_toml(
        r#"
        [http]
        listen = "127.0.0.1:0"
        [[locations]]
        id = "WH-1"
        "#,
    )
    .expect("test config parses");
    let state = WebState::new(ledger.clone(), Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(web::serve(
        listener,
        web::router(state),
        std::future::pending(),
    ));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_pauses_kafka_ingest_and_it_resumes_by_itself_with_nothing_lost_or_doubled()
{
    let broker = TansuBroker::start();
    let topic = unique("movements");
    let dead_letters = format!("{topic}.dlq");
    broker.create_topic(&topic, 1);
    broker.create_topic(&dead_letters, 1);
    let producer = TestProducer::new(&broker.bootstrap());
    let group = unique("group");
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyStore::new(Arc::new(open_store(dir.path())));
    let ledger = TestLedger::over(faulty.clone(), dir);
    let base = serve(&ledger.ledger).await;
    let http = reqwest::Client::new();
    let config = kafka_config(&broker.bootstrap(), &group, &topic, &dead_letters);
    let ingest = KafkaIngest::start(config, ledger.ledger.clone()).expect("start kafka ingest");
    let bootstrap = broker.bootstrap();
    let committed = || committed_offsets(&bootstrap, &group, &topic, 1);

    producer
        .send(&topic, 0, Some("SKU-A"), &receipt("SKU-A", "r-0", 1))
        .await;
    eventually("the first receipt is committed", WAIT, || async {
        committed().await == [Some(1)]
    })
    .await;

    // The store goes down while movements keep coming.
    faulty.fail_writes(true);
    for n in 1..=10 {
        let sku = if n % 2 == 0 { "SKU-A" } else { "SKU-B" };
        producer
            .send(&topic, 0, Some(sku), &receipt(sku, &format!("r-{n}"), n))
            .await;
    }
    eventually("a group commit has failed", WAIT, || async {
        faulty.failed_commits() > 0
    })
    .await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body.to_string().contains("injected fault"),
        "/readyz names the reason: {body}"
    );
    let refused = http
        .post(format!("{base}/api/v1/movements"))
        .header("content-type", "application/json")
        .body(receipt("SKU-C", "rest-1", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    // Nothing is committed to Kafka that is not durable; the consumer stays in its group.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        committed().await,
        [Some(1)],
        "committed while the store was down"
    );
    assert!(!ingest.is_finished());
    assert_eq!(ingest.assignment(), [(topic.clone(), 0)]);

    // The store comes back: ingest resumes by itself.
    faulty.fail_writes(false);
    eventually("every record is committed", WAIT, || async {
        committed().await == [Some(11)]
    })
    .await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        on_hand(&ledger.ledger, "SKU-A").await,
        1 + 2 + 4 + 6 + 8 + 10
    );
    assert_eq!(on_hand(&ledger.ledger, "SKU-B").await, 1 + 3 + 5 + 7 + 9);
    // Exactly once: one event per record, in order.
    for (sku, keys) in [
        ("SKU-A", vec!["r-0", "r-2", "r-4", "r-6", "r-8", "r-10"]),
        ("SKU-B", vec!["r-1", "r-3", "r-5", "r-7", "r-9"]),
    ] {
        let events = ledger.store.events(sku, 1, 100).await.unwrap();
        let stored: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
        assert_eq!(stored, keys, "{sku}");
    }
    // The store's watermark lags behind the records written with it but never passes the
    // committed offset; r-0 was settled before the others were submitted.
    let watermark = ledger.store.offsets(&group).await.unwrap();
    assert_eq!(watermark.len(), 1);
    assert!(
        (1..=11).contains(&watermark[0].next_offset),
        "{watermark:?}"
    );
    ingest.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_movement_the_ledger_can_never_take_is_dead_lettered_and_the_partition_moves_on() {
    let broker = TansuBroker::start();
    let topic = unique("movements");
    let dead_letters = format!("{topic}.dlq");
    broker.create_topic(&topic, 1);
    broker.create_topic(&dead_letters, 1);
    let producer = TestProducer::new(&broker.bootstrap());
    let group = unique("group");
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyStore::new(Arc::new(open_store(dir.path())));
    let ledger = TestLedger::over(faulty.clone(), dir);
    let config = kafka_config(&broker.bootstrap(), &group, &topic, &dead_letters);
    let options = KafkaIngestOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 20,
            max_backoff_ms: 100,
        },
        ..KafkaIngestOptions::default()
    };
    let ingest = KafkaIngest::start_with_options(config, ledger.ledger.clone(), options)
        .expect("start kafka ingest");
    let bootstrap = broker.bootstrap();
    let committed = || committed_offsets(&bootstrap, &group, &topic, 1);

    producer
        .send(&topic, 0, Some("SKU-OK"), &receipt("SKU-OK", "ok-1", 2))
        .await;
    eventually("the first record is committed", WAIT, || async {
        committed().await == [Some(1)]
    })
    .await;
    // SKU-BAD can never be loaded (a corrupt record, say): the ledger answers unavailable
    // every time. The record must not block its partition.
    faulty.fail_sku(Some("SKU-BAD"));
    let bad = receipt("SKU-BAD", "bad-1", 1);
    producer.send(&topic, 0, Some("SKU-BAD"), &bad).await;
    producer
        .send(&topic, 0, Some("SKU-OK"), &receipt("SKU-OK", "ok-2", 3))
        .await;
    eventually("the partition moved past the bad record", WAIT, || async {
        committed().await == [Some(3)]
    })
    .await;
    assert_eq!(on_hand(&ledger.ledger, "SKU-OK").await, 5);
    let letters = read_topic(&broker.bootstrap(), &dead_letters, 1, 1, WAIT).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    {
        use rdkafka::Message;
        assert_eq!(letters[0].payload(), Some(bad.as_bytes()));
    }
    assert_eq!(
        header(&letters[0], HEADER_ERROR_REASON).as_deref(),
        Some(REASON_UNAVAILABLE)
    );
    assert_eq!(
        header(&letters[0], HEADER_ORIGINAL_OFFSET).as_deref(),
        Some("1")
    );
    let error = header(&letters[0], HEADER_ERROR).unwrap_or_default();
    assert!(error.contains("cannot be loaded"), "{error}");
    ingest.stop().await.expect("clean stop");
}
