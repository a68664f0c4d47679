//! Amazon ORDER_CHANGE notifications bridged from SQS into Kafka (PLATFORMS.md §4.3): a
//! real tansu broker, the whole engine with an Amazon channel whose `notifications_topic`
//! is consumed, and notifications produced by the Amazon simulator.

use crate::support;

use serde_json::{Value, json};
use std::time::Duration;
use stocksync::config::Config;
use stocksync::sandbox::amazon::{
    self, AmazonSimulatorOptions, Fulfilment, SimListing, SimOrderLine,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_change_notifications_on_kafka_reach_the_ledger_once_and_bad_ones_are_dead_lettered()
{
    let broker = support::TansuBroker::start();
    let movements = support::unique("movements");
    let notifications = support::unique("amazon-notifications");
    let dlq = support::unique("dlq");
    for topic in [&movements, &notifications] {
        broker.create_topic(topic, 1);
    }
    broker.create_topic(&dlq, 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = amazon::start(
        AmazonSimulatorOptions {
            apply_delay_ms: 0,
            listings: vec![SimListing {
                seller_sku: "LAMP-1".into(),
                quantity: Some(10),
                fba: false,
                fba_fulfillable: 0,
            }],
            ..Default::default()
        },
        listener,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = sim.options().clone();
    let config = Config::from_toml(&format!(
        r#"
[store]
path = "{db}"
[http]
listen = "127.0.0.1:0"
[kafka]
brokers = "{bootstrap}"
group_id = "bridge-test"
movements_topic = "{movements}"
dead_letter_topic = "{dlq}"
[[locations]]
id = "WH-1"
[[channels]]
id = "amazon-nl"
kind = "amazon"
locations = ["WH-1"]
[channels.amazon]
api_url = "{api}"
token_url = "{token}"
client_id = "{client_id}"
client_secret = "{client_secret}"
refresh_token = "{refresh_token}"
seller_id = "{seller_id}"
marketplace_id = "{marketplace_id}"
order_poll_interval_ms = 0
fba_poll_interval_ms = 0
notifications_topic = "{notifications}"
listings = [{{ sku = "LAMP-1" }}]
"#,
        db = dir.path().join("bridge.db").display(),
        bootstrap = broker.bootstrap(),
        api = sim.base_url(),
        token = sim.token_url(),
        client_id = options.client_id,
        client_secret = options.client_secret,
        refresh_token = options.refresh_token,
        seller_id = options.seller_id,
        marketplace_id = options.marketplace_id,
    ))
    .unwrap();
    config.validate().unwrap();
    let app = stocksync::app::App::start(config).await.unwrap();
    app.ledger()
        .submit(stocksync::domain::Movement {
            schema_version: 1,
            sku: "LAMP-1".into(),
            idempotency_key: "r1".into(),
            source: "wms".into(),
            occurred_at_ms: None,
            kind: stocksync::domain::MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 10,
            },
        })
        .await
        .unwrap();

    // An MFN order of 2 units on the simulated marketplace.
    sim.place_order(
        Fulfilment::Mfn,
        &[SimOrderLine {
            seller_sku: "LAMP-1".into(),
            quantity: 2,
        }],
    )
    .unwrap();
    let notes: Vec<Value> = sim.notifications();
    assert!(!notes.is_empty(), "the simulator produced a notification");
    let producer = support::TestProducer::new(&broker.bootstrap());
    let envelope = notes.last().unwrap().to_string();
    // The same notification twice (SQS is at least once), once wrapped as an SQS message,
    // then a record that is not a notification at all.
    producer.send(&notifications, 0, None, &envelope).await;
    producer
        .send(
            &notifications,
            0,
            None,
            &json!({"MessageId": "m-1", "Body": envelope}).to_string(),
        )
        .await;
    producer
        .send(&notifications, 0, None, "{\"not\": \"a notification\"}")
        .await;

    let dead = support::read_topic(&broker.bootstrap(), &dlq, 1, 1, Duration::from_secs(15)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        support::header(&dead[0], "stocksync-error-reason").as_deref(),
        Some("invalid_record")
    );
    support::eventually(
        "the order is reserved once",
        Duration::from_secs(10),
        || {
            let ledger = app.ledger().clone();
            async move {
                let state = ledger.state(&"LAMP-1".into()).await.unwrap();
                state.location(&"WH-1".into()).reserved == 2
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = app.ledger().state(&"LAMP-1".into()).await.unwrap();
    assert_eq!(
        state.location(&"WH-1".into()).available(),
        8,
        "the duplicate changed nothing"
    );
    app.shutdown(Duration::from_secs(5)).await;
}
