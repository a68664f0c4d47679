//! Several instances on one PostgreSQL store (issue 13): the partitions are divided among
//! the live instances by leases, a movement posted to any instance is applied by the SKU's
//! owner (forwarded with the cluster credential) with the answer one node would give, reads
//! answer on any instance, and when an instance leaves, the others take its partitions and
//! go on with nothing lost or doubled. A new owner of a movements partition starts reading
//! it at the store's offset watermark when the group's committed offset is behind (that
//! test needs tansu as well).
//!
//! Runs only when `STOCKSYNC_TEST_POSTGRES` is set (`bash scripts/test.sh` sets it);
//! otherwise it writes `skipped: postgres ...` to stderr and passes.

use crate::support;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stocksync::app::App;
use stocksync::cluster::{Cluster, KafkaSource};
use stocksync::config::{ClusterConfig, Config, StoreBackend, StoreConfig};
use stocksync::domain::{LocationId, NullSink, Sku};
use stocksync::ingest::kafka::partitioner::partition_for_key;
use stocksync::ingest::kafka::{KafkaIngest, KafkaIngestOptions, RecordDecoder, movement_decoder};
use stocksync::ledger::ownership::OwnershipHandle;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::Store;
use stocksync::store::conformance::{StoreFactory, store_toml};

const PARTITIONS: u32 = 6;
const TOKEN: &str = "cluster-test-token-0123456789abcdef";

/// `store` as these tests' instances use it: a paused instance's transaction ends well
/// within the session of 1 s (`check-config` requires it).
fn short_idle(store: &StoreConfig) -> StoreConfig {
    let mut store = store.clone();
    store.postgres.idle_in_transaction_timeout_ms = 500;
    store
}

fn config(store: &StoreConfig, member: &str) -> Config {
    let config = Config::from_toml(&format!(
        r#"
        [http]
        listen = "127.0.0.1:0"
        [cluster]
        member_id = "{member}"
        partitions = {PARTITIONS}
        heartbeat_ms = 100
        session_timeout_ms = 1000
        token = "{TOKEN}"
        [[locations]]
        id = "WH-1"
        {}
        "#,
        store_toml(&short_idle(store))
    ))
    .expect("test config parses");
    config.validate().expect("test config is valid");
    config
}

fn receipt(sku: &str, key: &str, quantity: u64) -> Value {
    json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "test",
           "type": "receipt", "location": "WH-1", "quantity": quantity})
}

async fn post(client: &reqwest::Client, app: &App, body: &Value) -> (u16, Value) {
    let response = client
        .post(format!("http://{}/api/v1/movements", app.http_addr()))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json answer"))
}

async fn on_hand(client: &reqwest::Client, app: &App, sku: &str) -> i64 {
    let response = client
        .get(format!("http://{}/api/v1/stock/{sku}", app.http_addr()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200, "stock of {sku}");
    let stock: Value = response.json().await.expect("json");
    stock["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .filter(|level| level["location"] == "WH-1")
        .map(|level| level["on_hand"].as_i64().unwrap())
        .sum()
}

fn owned(app: &App) -> Vec<u32> {
    app.cluster().expect("cluster").status().owned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_divide_forward_and_take_over() {
    let Some(factory) = StoreFactory::for_test(
        &StoreBackend::Postgres,
        "cluster two_instances_divide_forward_and_take_over",
    ) else {
        return;
    };
    let store = factory.fresh_config();
    let a = App::start(config(&store, "node-a"))
        .await
        .expect("node a starts");
    let b = App::start(config(&store, "node-b"))
        .await
        .expect("node b starts");
    support::eventually(
        "each instance owns half the partitions",
        Duration::from_secs(10),
        || async { owned(&a).len() == 3 && owned(&b).len() == 3 },
    )
    .await;
    let (owned_a, owned_b) = (owned(&a), owned(&b));
    assert!(
        owned_a.iter().all(|p| !owned_b.contains(p)),
        "no partition has two owners: {owned_a:?} {owned_b:?}"
    );
    // Each instance names the other as the owner of its partitions (from its next round
    // on: a round's view is read before it acts).
    support::eventually(
        "node a sees node b's partitions as node b's",
        Duration::from_secs(5),
        || async {
            let status = a.cluster().unwrap().status();
            owned_b.iter().all(|partition| {
                let seen = &status.partitions[*partition as usize];
                seen.owner.as_deref() == Some("node-b") && !seen.here
            })
        },
    )
    .await;

    // 60 SKUs over all partitions, every receipt posted to node a: about half are
    // forwarded to node b, and the answers are what one node gives.
    let client = reqwest::Client::new();
    let skus: Vec<String> = (0..60).map(|i| format!("CLUSTER-{i:03}")).collect();
    let table = a.cluster().unwrap().partition_table().clone();
    let on_b = skus
        .iter()
        .filter(|sku| owned_b.contains(&table.partition_of(sku)))
        .count();
    assert!(
        on_b > 10,
        "the SKUs spread over both instances ({on_b} on b)"
    );
    let batch: Vec<Value> = skus
        .iter()
        .map(|sku| receipt(sku, &format!("first:{sku}"), 5))
        .collect();
    let (status, body) = post(&client, &a, &Value::Array(batch.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["summary"]["applied"], 60, "{body}");
    // The same batch again, this time to node b: every one a duplicate with its seq.
    let (status, again) = post(&client, &b, &Value::Array(batch)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["summary"]["duplicate"], 60, "{again}");
    for (first, second) in body["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["results"].as_array().unwrap())
    {
        assert_eq!(first["seq"], second["seq"], "{first} vs {second}");
    }
    // Reads answer on either instance.
    for sku in skus.iter().step_by(7) {
        assert_eq!(on_hand(&client, &a, sku).await, 5, "{sku} on a");
        assert_eq!(on_hand(&client, &b, sku).await, 5, "{sku} on b");
    }

    // Node b leaves (a clean stop hands its partitions over): node a takes all of them
    // and goes on applying, including for SKUs node b held in memory.
    b.shutdown(Duration::from_secs(5)).await;
    support::eventually(
        "node a owns every partition",
        Duration::from_secs(10),
        || async { owned(&a).len() == PARTITIONS as usize },
    )
    .await;
    let more: Vec<Value> = skus
        .iter()
        .map(|sku| receipt(sku, &format!("second:{sku}"), 2))
        .collect();
    let (status, body) = post(&client, &a, &Value::Array(more)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["summary"]["applied"], 60, "{body}");
    let mut levels = BTreeMap::new();
    for sku in &skus {
        levels.insert(sku.clone(), on_hand(&client, &a, sku).await);
    }
    assert!(
        levels.values().all(|&units| units == 7),
        "every SKU has 5 + 2 units, none lost or doubled: {levels:?}"
    );
    a.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_gets_its_share_without_waiting_for_a_session_timeout() {
    let Some(factory) = StoreFactory::for_test(
        &StoreBackend::Postgres,
        "cluster a_new_instance_gets_its_share",
    ) else {
        return;
    };
    let store = factory.fresh_config();
    let a = App::start(config(&store, "node-a"))
        .await
        .expect("node a starts");
    support::eventually(
        "node a owns everything",
        Duration::from_secs(10),
        || async { owned(&a).len() == PARTITIONS as usize },
    )
    .await;
    // A second instance arrives: node a hands half over without waiting for a timeout.
    let b = App::start(config(&store, "node-b"))
        .await
        .expect("node b starts");
    support::eventually(
        "the partitions are divided",
        Duration::from_secs(10),
        || async { owned(&a).len() == 3 && owned(&b).len() == 3 },
    )
    .await;
    let status = b.cluster().unwrap().status();
    assert!(status.rebalances >= 3, "{status:?}");
    assert_eq!(status.members.iter().filter(|m| m.live).count(), 2);
    // `/readyz` shows the cluster: a passing check and the partition owners.
    let ready: Value = reqwest::get(format!("http://{}/readyz", b.http_addr()))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    let check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "cluster")
        .expect("a cluster check")
        .clone();
    assert_eq!(check["ok"], true, "{ready}");
    assert!(
        check["detail"].as_str().unwrap().contains("owns 3 of 6"),
        "{check}"
    );
    assert_eq!(ready["cluster"]["member_id"], "node-b", "{ready}");
    assert_eq!(ready["cluster"]["owned"].as_array().unwrap().len(), 3);
    // The dashboard shows the cluster: both instances, live, with their partitions.
    use crate::dashboard_browser::{cell, element, row, run_chromium};
    let dom = run_chromium(
        &format!("http://{}/?live=poll", b.http_addr()),
        &["--dump-dom"],
    )
    .await;
    let members = element(&dom, "table", "cluster-members");
    for (member, mine) in [("node-a", owned(&a)), ("node-b", owned(&b))] {
        let member_row = row(members, "member", member);
        assert_eq!(cell(member_row, "live"), "yes", "{member_row}");
        let listed = mine
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            cell(member_row, "partitions"),
            format!("{} ({listed})", mine.len()),
            "{member_row}"
        );
    }
    assert!(
        cell(row(members, "member", "node-b"), "member").contains("this one"),
        "{members}"
    );
    assert!(
        element(&dom, "span", "cluster-summary").contains("2 live instance(s) · 6 partitions"),
        "{dom}"
    );
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

/// SKUs of the one-pusher test, each listed on the Shopify channel as inventory item i + 1.
const LISTED: usize = 40;
/// The Shopify location the simulated shop sells from.
const SHOP_LOCATION: u64 = 7;

fn listed_sku(index: usize) -> String {
    format!("CHAN-{index:03}")
}

/// Two instances' config with one Shopify channel listing [`LISTED`] SKUs.
fn channel_config(
    store: &StoreConfig,
    member: &str,
    shop: &stocksync::sandbox::shopify::ShopifySimulator,
) -> Config {
    let listings: String = (0..LISTED)
        .map(|index| {
            format!(
                "{{ sku = \"{}\", inventory_item_id = {} }},",
                listed_sku(index),
                index + 1
            )
        })
        .collect();
    let options = shop.options().clone();
    let config = Config::from_toml(&format!(
        r#"
        [http]
        listen = "127.0.0.1:0"
        [cluster]
        member_id = "{member}"
        partitions = {PARTITIONS}
        heartbeat_ms = 100
        session_timeout_ms = 1000
        token = "{TOKEN}"
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "shop"
        kind = "shopify"
        locations = ["WH-1"]
        [channels.rate_limit]
        requests_per_sec = 100.0
        burst = 100
        [channels.shopify]
        shop_url = "{shop_url}"
        access_token = "{token}"
        webhook_secret = "{secret}"
        location_id = {SHOP_LOCATION}
        listings = [{listings}]
        {store}
        "#,
        shop_url = shop.base_url(),
        token = options.access_token,
        secret = options.webhook_secret,
        store = store_toml(&short_idle(store)),
    ))
    .expect("test config parses");
    config.validate().expect("test config is valid");
    config
}

/// Whether `app` leads the channel `shop`, as its coordinator sees it.
fn leads(app: &App) -> bool {
    let status = app.cluster().expect("cluster").status();
    status.channels.iter().any(|channel| channel.here) && app.propagation().leads("shop")
}

/// Listings `app`'s propagation had acknowledged by the channel.
fn accepted(app: &App) -> u64 {
    app.propagation().channel_status()[0].accepted_total
}

/// The ledger's ATP of `sku` (WH-1 available; the channel has no safety stock).
async fn ledger_atp(app: &App, sku: &str) -> i64 {
    let state = app
        .ledger()
        .state(&stocksync::domain::Sku::from(sku))
        .await
        .expect("state");
    state
        .locations
        .values()
        .map(|level| level.on_hand - level.reserved)
        .sum::<i64>()
        .max(0)
}

/// Waits until every listing on the simulator equals the ledger's ATP, as `app` reads it,
/// and equals `expected(index)`.
async fn wait_listed(
    app: &App,
    shop: &stocksync::sandbox::shopify::ShopifySimulator,
    what: &str,
    expected: impl Fn(usize) -> i64,
) {
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(20) * support::SLOW_MACHINE_FACTOR;
    loop {
        let mut wrong = Vec::new();
        for index in 0..LISTED {
            let sku = listed_sku(index);
            let atp = ledger_atp(app, &sku).await;
            let listed = shop.level(index as u64 + 1, SHOP_LOCATION);
            if atp != expected(index) || listed != Some(atp) {
                wrong.push(format!("{sku}: ledger {atp}, shop {listed:?}"));
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} listing(s) differ: {wrong:?}",
            wrong.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_pushes_each_channel_and_another_takes_over() {
    let Some(factory) = StoreFactory::for_test(
        &StoreBackend::Postgres,
        "cluster one_instance_pushes_each_channel",
    ) else {
        return;
    };
    let store = factory.fresh_config();
    let shop = support::shopify_simulator(stocksync::sandbox::shopify::ShopifySimulatorOptions {
        deny_oversell: false,
        auto_create_levels: true,
        ..Default::default()
    })
    .await;
    let a = App::start(channel_config(&store, "node-a", &shop))
        .await
        .expect("node a starts");
    let b = App::start(channel_config(&store, "node-b", &shop))
        .await
        .expect("node b starts");
    support::eventually(
        "the partitions are divided and the channel has one leader",
        Duration::from_secs(10),
        || async { owned(&a).len() == 3 && owned(&b).len() == 3 && (leads(&a) != leads(&b)) },
    )
    .await;
    // The sorted members' 0th leads channel 0: node a.
    assert!(leads(&a) && !leads(&b), "node a leads the channel");
    let status = b.cluster().unwrap().status();
    assert_eq!(status.channels.len(), 1, "{status:?}");
    support::eventually(
        "node b sees node a lead",
        Duration::from_secs(5),
        || async {
            let status = b.cluster().unwrap().status();
            status.channels[0].leader.as_deref() == Some("node-a")
        },
    )
    .await;
    let table = a.cluster().unwrap().partition_table().clone();
    let owned_b = owned(&b);
    let on_b = (0..LISTED)
        .filter(|index| owned_b.contains(&table.partition_of(&listed_sku(*index))))
        .count();
    assert!(
        (5..=LISTED - 5).contains(&on_b),
        "the listed SKUs spread over both instances ({on_b} owned by node b)"
    );

    // Receipts posted to both instances (each forwards to the owner): every SKU's change
    // reaches node a's propagation, from its own ledger or from node b's.
    let client = reqwest::Client::new();
    for (round, units) in [(1, 0i64), (2, 1)] {
        let batch: Vec<Value> = (0..LISTED)
            .map(|index| {
                let sku = listed_sku(index);
                receipt(
                    &sku,
                    &format!("r{round}:{sku}"),
                    index as u64 + 1 + units as u64,
                )
            })
            .collect();
        let (to_a, to_b) = batch.split_at(LISTED / 2);
        for (app, part) in [(&a, to_a), (&b, to_b)] {
            let (status, body) = post(&client, app, &Value::Array(part.to_vec())).await;
            assert_eq!(status, 201, "{body}");
        }
    }
    // Round 1: i + 1 units, round 2: i + 2.
    wait_listed(
        &a,
        &shop,
        "both instances' SKUs listed by the leader",
        |index| 2 * index as i64 + 3,
    )
    .await;
    assert!(
        accepted(&a) >= LISTED as u64,
        "node a pushed: {}",
        accepted(&a)
    );
    assert_eq!(accepted(&b), 0, "node b follows and never pushes");
    assert!(
        !b.propagation().channel_status()[0].leading,
        "node b follows"
    );
    assert_eq!(
        b.propagation().pending(),
        0,
        "a follower has nothing to deliver"
    );

    // One more round to both, then the leader leaves: node b takes the channel over,
    // rebuilds its queue from the ledger and pushes what node a had not.
    let batch: Vec<Value> = (0..LISTED)
        .map(|index| {
            let sku = listed_sku(index);
            receipt(&sku, &format!("r3:{sku}"), 1)
        })
        .collect();
    let (to_a, to_b) = batch.split_at(LISTED / 2);
    for (app, part) in [(&b, to_b), (&a, to_a)] {
        let (status, body) = post(&client, app, &Value::Array(part.to_vec())).await;
        assert_eq!(status, 201, "{body}");
    }
    a.shutdown(Duration::from_secs(5)).await;
    support::eventually(
        "node b owns every partition and leads the channel",
        Duration::from_secs(10),
        || async { owned(&b).len() == PARTITIONS as usize && leads(&b) },
    )
    .await;
    let batch: Vec<Value> = (0..LISTED)
        .map(|index| {
            let sku = listed_sku(index);
            receipt(&sku, &format!("r4:{sku}"), 2)
        })
        .collect();
    let (status, body) = post(&client, &b, &Value::Array(batch)).await;
    assert_eq!(status, 201, "{body}");
    wait_listed(&b, &shop, "node b pushes after the failover", |index| {
        2 * index as i64 + 6
    })
    .await;
    assert!(accepted(&b) > 0, "node b pushes now");
    let status = b.cluster().unwrap().status();
    assert!(status.leadership_changes >= 1, "{status:?}");
    b.shutdown(Duration::from_secs(5)).await;
}

/// One instance of the store-watermark test: a ledger over the shared store, its
/// coordinator, and its Kafka consumer reading the partitions the coordinator owns, with
/// every `(partition, offset)` it decoded.
struct KafkaNode {
    ledger: stocksync::ledger::Ledger,
    cluster: Cluster,
    ingest: KafkaIngest,
    read: Arc<Mutex<Vec<(i32, i64)>>>,
}

/// The Kafka side of the store-watermark test: a broker, a topic of [`KAFKA_PARTITIONS`]
/// partitions, its dead-letter topic and one consumer group.
struct KafkaSide {
    broker: support::TansuBroker,
    topic: String,
    dead_letters: String,
    group: String,
    producer: support::TestProducer,
}

const KAFKA_PARTITIONS: i32 = 4;

impl KafkaSide {
    fn new() -> Self {
        let broker = support::TansuBroker::start();
        let topic = support::unique("watermark");
        let dead_letters = format!("{topic}.dlq");
        broker.create_topic(&topic, KAFKA_PARTITIONS);
        broker.create_topic(&dead_letters, 1);
        let producer = support::TestProducer::new(&broker.bootstrap());
        Self {
            group: support::unique("group"),
            broker,
            topic,
            dead_letters,
            producer,
        }
    }

    /// Starts instance `member` over `store`, as the app wires it with `[cluster]`.
    fn start(&self, store: &Arc<dyn Store>, member: &str) -> KafkaNode {
        let settings = ClusterConfig {
            member_id: Some(member.to_owned()),
            advertise_url: None,
            partitions: KAFKA_PARTITIONS as u32,
            session_timeout_ms: 1_000,
            heartbeat_ms: 100,
            token: TOKEN.to_owned(),
        };
        let table = Cluster::table(&settings);
        let ledger = Ledger::start(
            store.clone(),
            Arc::new(NullSink),
            LedgerOptions {
                ownership: Some(OwnershipHandle(table.clone())),
                ..LedgerOptions::default()
            },
        );
        let cluster = Cluster::start(
            settings,
            "http://127.0.0.1:9".to_owned(),
            table,
            Cluster::leadership(Vec::new(), stocksync::clock::system()),
            store.clone(),
            ledger.clone(),
            Some(KafkaSource {
                group: self.group.clone(),
                topic: self.topic.clone(),
            }),
        );
        let read = Arc::new(Mutex::new(Vec::new()));
        let decoder: RecordDecoder = {
            let (read, decode) = (read.clone(), movement_decoder());
            Arc::new(move |key, value, origin| {
                read.lock().unwrap().push((origin.partition, origin.offset));
                decode(key, value, origin)
            })
        };
        let config = support::kafka_config(
            &self.broker.bootstrap(),
            &self.group,
            &self.topic,
            &self.dead_letters,
        );
        let options = KafkaIngestOptions {
            decoder: Some(decoder),
            assignment: Some(cluster.owned()),
            ..KafkaIngestOptions::default()
        };
        let ingest = KafkaIngest::start_with_options(config, ledger.clone(), options)
            .expect("start kafka ingest");
        KafkaNode {
            ledger,
            cluster,
            ingest,
            read,
        }
    }

    /// Produces `per_partition` receipts to every partition, each for a SKU of its own
    /// that the producers' partitioner puts there (named after `round`).
    async fn produce_round(&self, round: u32, per_partition: usize) -> Vec<String> {
        let mut skus = Vec::new();
        for partition in 0..KAFKA_PARTITIONS {
            let names: Vec<String> = (0..)
                .map(|i| format!("WM{round}-{i}"))
                .filter(|sku| {
                    partition_for_key(sku.as_bytes(), KAFKA_PARTITIONS as u32)
                        == Some(partition as u32)
                })
                .take(per_partition)
                .collect();
            for sku in names {
                let value = receipt(&sku, &format!("{sku}:rcpt"), 1);
                self.producer
                    .send(&self.topic, partition, Some(&sku), &value.to_string())
                    .await;
                skus.push(sku);
            }
        }
        skus
    }

    async fn wait_committed(&self, expected: i64) {
        let expected = vec![Some(expected); KAFKA_PARTITIONS as usize];
        support::eventually(
            &format!("offsets {expected:?} are committed"),
            Duration::from_secs(30),
            || async {
                support::committed_offsets(
                    &self.broker.bootstrap(),
                    &self.group,
                    &self.topic,
                    KAFKA_PARTITIONS,
                )
                .await
                    == expected
            },
        )
        .await;
    }

    /// The store's offset watermark of every partition (`None` where there is none).
    async fn watermarks(&self, store: &Arc<dyn Store>) -> Vec<Option<i64>> {
        let marks = store.offsets(&self.group).await.expect("offsets");
        (0..KAFKA_PARTITIONS)
            .map(|partition| {
                marks
                    .iter()
                    .find(|mark| mark.topic == self.topic && mark.partition == partition)
                    .map(|mark| mark.next_offset)
            })
            .collect()
    }
}

impl KafkaNode {
    async fn wait_owns_all(&self) {
        support::eventually(
            "the instance owns every partition",
            Duration::from_secs(10),
            || async { self.cluster.status().owned.len() == KAFKA_PARTITIONS as usize },
        )
        .await;
    }

    /// A clean stop: the consumer, then the coordinator (hands every partition over),
    /// then the ledger.
    async fn stop(self) {
        self.ingest
            .stop()
            .await
            .expect("clean stop of the consumer");
        self.cluster.leave().await;
        self.ledger.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_starts_reading_at_the_stores_watermark_when_the_committed_offset_is_behind() {
    let Some(factory) = StoreFactory::for_test(
        &StoreBackend::Postgres,
        "cluster a_new_owner_starts_reading_at_the_stores_watermark",
    ) else {
        return;
    };
    let (_, store) = factory.open_fresh().await;
    let kafka = KafkaSide::new();

    // Node a owns every partition and applies two rounds, the second one produced once
    // the first is settled: the second's writes carry the store's watermark 3 or 4 (the
    // settled position when each was submitted; it lags behind the records).
    let a = kafka.start(&store, "node-a");
    a.wait_owns_all().await;
    let mut skus = kafka.produce_round(1, 3).await;
    kafka.wait_committed(3).await;
    skus.extend(kafka.produce_round(2, 2).await);
    kafka.wait_committed(5).await;
    a.stop().await;
    let watermarks = kafka.watermarks(&store).await;
    assert!(
        watermarks
            .iter()
            .all(|mark| mark.is_some_and(|mark| (3..=4).contains(&mark))),
        "{watermarks:?}"
    );

    // The group's committed offsets of partitions 0 and 1 fall behind (as if the last
    // commits were lost); 2 and 3 stay at 5, ahead of the store's watermark.
    support::commit_offsets(
        &kafka.broker.bootstrap(),
        &kafka.group,
        &kafka.topic,
        &[(0, 0), (1, 0)],
    )
    .await;

    // Node b takes every partition: it starts each at the greater of the store's
    // watermark and the committed offset, reads a third round, and applies every record
    // exactly once.
    let b = kafka.start(&store, "node-b");
    b.wait_owns_all().await;
    skus.extend(kafka.produce_round(3, 2).await);
    kafka.wait_committed(7).await;
    let read = b.read.lock().unwrap().clone();
    for partition in 0..KAFKA_PARTITIONS {
        let mut offsets: Vec<i64> = read
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| *offset)
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        let start = if partition < 2 {
            watermarks[partition as usize].expect("a watermark")
        } else {
            5
        };
        assert_eq!(
            offsets,
            (start..7).collect::<Vec<i64>>(),
            "partition {partition}: node b read again from {start} (store watermark {:?}), nothing before it, nothing skipped",
            watermarks[partition as usize]
        );
    }
    for sku in &skus {
        let events = store.events(sku, 1, 10).await.expect("events");
        assert_eq!(events.len(), 1, "{sku}: applied exactly once");
        let state = b
            .ledger
            .state(&Sku::from(sku.as_str()))
            .await
            .expect("state");
        assert_eq!(
            state.location(&LocationId::from("WH-1")).on_hand,
            1,
            "{sku}"
        );
    }
    b.stop().await;
}
