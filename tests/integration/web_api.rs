//! Integration tests of the HTTP API over a real ledger and embedded store: REST movements,
//! signed Shopify webhooks (scenarios S2, S3, S4), stock read-out, problems, `/metrics`.
//!
//! Each test starts its own ledger on a temporary database and its own server on
//! `127.0.0.1:0`, so the tests run in parallel.

use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use stocksync::config::Config;
use stocksync::domain::NullSink;
use stocksync::ingest::shopify::decode as shopify;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::embedded::EmbeddedStore;
use stocksync::web::{self, WebState};
use tokio::sync::oneshot;

const SECRET: &str = "integration-test-secret";
const CHANNEL: &str = "shop-main";

struct Harness {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with("").await
    }

    /// [`start`](Self::start) with `extra` appended to the config (bundles, rules).
    async fn start_with(extra: &str) -> Self {
        let config = Config::from_toml(&format!(
            r#"
            [http]
            listen = "127.0.0.1:0"
            body_limit_bytes = 65536
            [[locations]]
            id = "WH-1"
            [[locations]]
            id = "WH-2"
            [[channels]]
            id = "{CHANNEL}"
            kind = "shopify"
            locations = ["WH-1", "WH-2"]
            safety_stock = 1
            [channels.shopify]
            shop_url = "http://127.0.0.1:9"
            access_token = "unused"
            webhook_secret = "{SECRET}"
            location_id = 61000000001
            {extra}
            "#
        ))
        .expect("test config parses");
        config.validate().expect("test config is valid");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("db")).expect("store opens");
        let ledger = Ledger::start(
            Arc::new(store),
            Arc::new(NullSink),
            LedgerOptions::default(),
        );
        let state = WebState::new(ledger.clone(), Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(web::serve(listener, web::router(state), async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            ledger,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
        self.ledger.shutdown().await;
    }

    async fn post_movements(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/movements", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json answer"))
    }

    async fn receive(&self, sku: &str, location: &str, quantity: u64) {
        let (status, body) = self
            .post_movements(&movement(
                sku,
                &format!("test:receipt:{sku}:{location}:{quantity}"),
                json!({"type": "receipt", "location": location, "quantity": quantity}),
            ))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    async fn stock(&self, sku: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/api/v1/stock/{sku}", self.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("json answer")
    }

    /// (on_hand, reserved, available) at `location`, zeros when absent.
    async fn level(&self, sku: &str, location: &str) -> (i64, i64, i64) {
        let stock = self.stock(sku).await;
        stock["locations"]
            .as_array()
            .expect("locations")
            .iter()
            .find(|level| level["location"] == location)
            .map(|level| {
                (
                    level["on_hand"].as_i64().unwrap(),
                    level["reserved"].as_i64().unwrap(),
                    level["available"].as_i64().unwrap(),
                )
            })
            .unwrap_or((0, 0, 0))
    }

    /// Delivers a webhook signed with the channel's secret.
    async fn deliver(&self, delivery: &Delivery) -> (u16, Value) {
        let signature = shopify::sign(SECRET, &delivery.body);
        self.deliver_signed(delivery, Some(&signature), &delivery.body)
            .await
    }

    async fn deliver_signed(
        &self,
        delivery: &Delivery,
        signature: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/webhooks/shopify/{CHANNEL}", self.base))
            .header("Content-Type", "application/json")
            .header("X-Shopify-Topic", delivery.topic)
            .header("X-Shopify-Shop-Domain", "invented-shop.myshopify.com")
            .header("X-Shopify-Webhook-Id", &delivery.webhook_id)
            .header("X-Shopify-Event-Id", &delivery.event_id)
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Shopify-Hmac-Sha256", signature);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json answer"))
    }

    async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4"
        );
        response.text().await.expect("text")
    }
}

fn movement(sku: &str, key: &str, kind: Value) -> Value {
    let mut movement =
        json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "test"});
    movement
        .as_object_mut()
        .unwrap()
        .extend(kind.as_object().unwrap().clone());
    movement
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/shopify")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture is JSON")
}

/// One webhook delivery: topic, ids, raw body.
#[derive(Clone)]
struct Delivery {
    topic: &'static str,
    webhook_id: String,
    event_id: String,
    body: Vec<u8>,
}

impl Delivery {
    /// A copy as another delivery of the same event (another webhook id, same event id).
    fn redelivered_as(&self, webhook_id: &str) -> Self {
        Self {
            webhook_id: webhook_id.to_owned(),
            ..self.clone()
        }
    }
}

/// An order payload (shaped like the fixtures) with one line.
fn order_delivery(
    topic: &'static str,
    order_id: u64,
    line_id: u64,
    sku: &str,
    quantity: u64,
) -> Delivery {
    let fixture_name = match topic {
        "orders/cancelled" => "orders_cancelled.json",
        "orders/updated" => "orders_updated.json",
        _ => "orders_create.json",
    };
    let mut order = fixture(fixture_name);
    let mut line = order["line_items"][0].clone();
    line["id"] = json!(line_id);
    line["sku"] = json!(sku);
    line["quantity"] = json!(quantity);
    order["id"] = json!(order_id);
    order["line_items"] = json!([line]);
    Delivery {
        topic,
        webhook_id: format!("wh-{topic}-{order_id}"),
        event_id: format!("ev-{topic}-{order_id}"),
        body: serde_json::to_vec(&order).unwrap(),
    }
}

fn reservation(order_id: u64, line_id: u64) -> String {
    format!("{CHANNEL}:{order_id}:{line_id}")
}

fn open_reservations(stock: &Value) -> usize {
    stock["reservations"]
        .as_array()
        .expect("reservations")
        .len()
}

#[tokio::test]
async fn a_receipt_shows_in_stock_with_channel_atp() {
    let harness = Harness::start().await;
    let (status, body) = harness
        .post_movements(&movement(
            "SKU-A",
            "wms-1:rcpt-1:1",
            json!({"type": "receipt", "location": "WH-1", "quantity": 10}),
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][0]["outcome"], "applied");
    assert_eq!(body["results"][0]["seq"], 1);
    let stock = harness.stock("SKU-A").await;
    assert_eq!(
        stock["locations"],
        json!([{"location": "WH-1", "on_hand": 10, "reserved": 0, "available": 10,
            "in_transit": 0, "inbound": 0}])
    );
    let channel = &stock["channels"][0];
    assert_eq!(channel["channel"], CHANNEL);
    assert_eq!(channel["atp"], 9, "safety stock 1 is held back");
    assert_eq!(channel["explanation"]["pooled_available"], 10);
    assert_eq!(channel["explanation"]["safety_stock"], 1);
    assert_eq!(channel["last_pushed"], Value::Null);
    harness.stop().await;
}

#[tokio::test]
async fn a_batch_with_three_invalid_movements_is_refused_whole() {
    let harness = Harness::start().await;
    let batch = json!([
        movement(
            "SKU-B",
            "b:1",
            json!({"type": "receipt", "location": "WH-1", "quantity": 4})
        ),
        movement(
            "SKU-B",
            "b:2",
            json!({"type": "receipt", "location": "WH-1", "quantity": 0})
        ),
        movement(
            "SKU-B2",
            "",
            json!({"type": "receipt", "location": "WH-1", "quantity": 2})
        ),
        movement(
            "SKU-B",
            "b:4",
            json!({"type": "adjustment", "location": "WH-1", "delta": 0})
        ),
        movement(
            "SKU-B3",
            "b:5",
            json!({"type": "receipt", "location": "WH-2", "quantity": 1})
        ),
    ]);
    let response = harness
        .client
        .post(format!("{}/api/v1/movements", harness.base))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 422);
    assert_eq!(problem["type"], "urn:stocksync:problem:invalid-movements");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        vec!["#/1/quantity", "#/2/idempotency_key", "#/3/delta"]
    );
    // Untouched: no movement of them was ever recorded (issue 10: a SKU never seen is a
    // 404 `unknown-sku` problem, not an empty view).
    for sku in ["SKU-B", "SKU-B2", "SKU-B3"] {
        let response = harness
            .client
            .get(format!("{}/api/v1/stock/{sku}", harness.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{sku} must be untouched");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:stocksync:problem:unknown-sku");
    }
    harness.stop().await;
}

#[tokio::test]
async fn bad_requests_answer_problems() {
    let harness = Harness::start().await;
    let text = harness
        .client
        .post(format!("{}/api/v1/movements", harness.base))
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    let not_json = harness
        .client
        .post(format!("{}/api/v1/movements", harness.base))
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
    let too_large = harness
        .client
        .post(format!("{}/api/v1/movements", harness.base))
        .header("Content-Type", "application/json")
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status().as_u16(), 413);
    assert_eq!(
        too_large.headers()["content-type"],
        "application/problem+json"
    );
    let nowhere = harness
        .client
        .get(format!("{}/api/v1/nowhere", harness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status().as_u16(), 404);
    assert_eq!(
        nowhere.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = nowhere.json().await.unwrap();
    assert_eq!(problem["status"], 404);
    // GET /api/v1/movements is the history; DELETE exists nowhere.
    let wrong_method = harness
        .client
        .delete(format!("{}/api/v1/movements", harness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
    // The webhook receivers are mounted routers; the same 405 problem covers them.
    let wrong_webhook_method = harness
        .client
        .get(format!("{}/webhooks/shopify/shop-1", harness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_webhook_method.status().as_u16(), 405);
    assert_eq!(
        wrong_webhook_method.headers()["content-type"],
        "application/problem+json"
    );
    let health: Value = harness
        .client
        .get(format!("{}/healthz", harness.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    harness.stop().await;
}

#[tokio::test]
async fn a_duplicate_movement_is_acknowledged_and_changes_nothing() {
    let harness = Harness::start().await;
    let receipt = movement(
        "SKU-R",
        "wms-1:rcpt-9:1",
        json!({"type": "receipt", "location": "WH-1", "quantity": 7}),
    );
    let (first, _) = harness.post_movements(&receipt).await;
    assert_eq!(first, 201);
    let (second, body) = harness.post_movements(&receipt).await;
    assert_eq!(second, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "duplicate");
    assert_eq!(body["results"][0]["seq"], 1);
    assert_eq!(harness.level("SKU-R", "WH-1").await, (7, 0, 7));
    assert_eq!(harness.stock("SKU-R").await["seq"], 1);
    let metrics = harness.metrics().await;
    assert!(
        metrics.contains("stocksync_ledger_dedupe_hits_total"),
        "{metrics}"
    );
    assert!(metrics.contains("stocksync_ingest_rest_movements_total"));
    harness.stop().await;
}

#[tokio::test]
async fn a_signed_order_reserves_stock() {
    let harness = Harness::start().await;
    harness.receive("SKU-O", "WH-1", 5).await;
    let (status, receipt) = harness
        .deliver(&order_delivery("orders/create", 1001, 11, "SKU-O", 2))
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["applied"], 1);
    assert_eq!(harness.level("SKU-O", "WH-1").await, (5, 2, 3));
    let stock = harness.stock("SKU-O").await;
    assert_eq!(
        stock["reservations"][0]["reservation"],
        reservation(1001, 11)
    );
    assert_eq!(stock["reservations"][0]["open"], 2);
    assert_eq!(stock["channels"][0]["atp"], 2);
    harness.stop().await;
}

#[tokio::test]
async fn s2_the_same_line_delivered_twice_reserves_once() {
    let harness = Harness::start().await;
    harness.receive("SKU-C", "WH-1", 10).await;
    let delivery = order_delivery("orders/create", 2002, 21, "SKU-C", 1);
    let (first, second) = tokio::join!(harness.deliver(&delivery), harness.deliver(&delivery));
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    // Minutes later: a retry of the same delivery, and the same event via another
    // subscription; then the same line in a brand-new event (business dedupe only).
    let (retry, receipt) = harness.deliver(&delivery).await;
    assert_eq!(retry, 200);
    assert_eq!(receipt["status"], "duplicate");
    let (other, _) = harness.deliver(&delivery.redelivered_as("wh-other")).await;
    assert_eq!(other, 200);
    let mut new_event = delivery.redelivered_as("wh-new");
    new_event.event_id = "ev-new".to_owned();
    let (fresh, receipt) = harness.deliver(&new_event).await;
    assert_eq!(fresh, 200);
    assert_eq!(receipt["duplicates"], 1, "{receipt}");
    assert_eq!(harness.level("SKU-C", "WH-1").await, (10, 1, 9));
    let stock = harness.stock("SKU-C").await;
    assert_eq!(open_reservations(&stock), 1);
    assert_eq!(stock["seq"], 2, "one receipt and one sale event: {stock}");
    let metrics = harness.metrics().await;
    assert!(
        metrics.lines().any(
            |line| line.starts_with("stocksync_ledger_dedupe_hits_total")
                && line.contains("source=\"shopify:shop-main\"")
        ),
        "{metrics}"
    );
    assert!(metrics.contains("stocksync_ingest_webhooks_total"));
    harness.stop().await;
}

#[tokio::test]
async fn a_tampered_or_unsigned_webhook_changes_nothing() {
    let harness = Harness::start().await;
    harness.receive("SKU-T", "WH-1", 5).await;
    let delivery = order_delivery("orders/create", 3003, 31, "SKU-T", 1);
    let signature = shopify::sign(SECRET, &delivery.body);
    let tampered = String::from_utf8(delivery.body.clone())
        .unwrap()
        .replace("\"quantity\":1", "\"quantity\":5");
    assert_ne!(tampered.as_bytes(), delivery.body.as_slice());
    let (status, problem) = harness
        .deliver_signed(&delivery, Some(&signature), tampered.as_bytes())
        .await;
    assert_eq!(status, 401);
    assert_eq!(problem["type"], "urn:stocksync:problem:invalid-signature");
    let (status, _) = harness
        .deliver_signed(&delivery, None, &delivery.body)
        .await;
    assert_eq!(status, 401);
    let wrong_secret = shopify::sign("not-the-secret", &delivery.body);
    let (status, _) = harness
        .deliver_signed(&delivery, Some(&wrong_secret), &delivery.body)
        .await;
    assert_eq!(status, 401);
    assert_eq!(harness.level("SKU-T", "WH-1").await, (5, 0, 5));
    assert_eq!(harness.stock("SKU-T").await["seq"], 1);
    // The refused deliveries were not remembered: the genuine one is processed.
    let (status, receipt) = harness.deliver(&delivery).await;
    assert_eq!((status, receipt["applied"].clone()), (200, json!(1)));
    let unknown = harness
        .client
        .post(format!("{}/webhooks/shopify/no-such-channel", harness.base))
        .header("X-Shopify-Topic", "orders/create")
        .header("X-Shopify-Hmac-Sha256", signature)
        .body(delivery.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    harness.stop().await;
}

/// Every ordering of three items.
fn permutations<T: Clone>(items: [T; 3]) -> Vec<Vec<T>> {
    let [a, b, c] = items;
    vec![
        vec![a.clone(), b.clone(), c.clone()],
        vec![a.clone(), c.clone(), b.clone()],
        vec![b.clone(), a.clone(), c.clone()],
        vec![b.clone(), c.clone(), a.clone()],
        vec![c.clone(), a.clone(), b.clone()],
        vec![c, b, a],
    ]
}

#[tokio::test]
async fn s3_out_of_order_and_duplicated_order_webhooks_reserve_once_in_every_order() {
    let harness = Harness::start().await;
    for (index, arrival) in permutations(["orders/updated", "orders/create", "orders/create-again"])
        .into_iter()
        .enumerate()
    {
        let sku = format!("SKU-D{index}");
        let order_id = 4000 + index as u64;
        harness.receive(&sku, "WH-1", 5).await;
        let created = order_delivery("orders/create", order_id, 41, &sku, 1);
        for topic in arrival.iter().copied() {
            let delivery = match topic {
                "orders/create-again" => created.redelivered_as("wh-create-retry"),
                "orders/create" => created.clone(),
                _ => order_delivery("orders/updated", order_id, 41, &sku, 1),
            };
            let (status, receipt) = harness.deliver(&delivery).await;
            assert_eq!(status, 200, "{arrival:?}: {receipt}");
        }
        assert_eq!(
            harness.level(&sku, "WH-1").await,
            (5, 1, 4),
            "arrival order {arrival:?}"
        );
        assert_eq!(open_reservations(&harness.stock(&sku).await), 1);
    }
    harness.stop().await;
}

#[tokio::test]
async fn s3_a_cancellation_in_any_arrival_order_releases_the_order() {
    let harness = Harness::start().await;
    for (index, arrival) in permutations(["orders/cancelled", "orders/create", "orders/updated"])
        .into_iter()
        .enumerate()
    {
        let sku = format!("SKU-X{index}");
        let order_id = 5000 + index as u64;
        harness.receive(&sku, "WH-1", 5).await;
        for topic in arrival.iter().copied() {
            let (status, receipt) = harness
                .deliver(&order_delivery(topic, order_id, 51, &sku, 1))
                .await;
            assert_eq!(status, 200, "{arrival:?}: {receipt}");
        }
        assert_eq!(
            harness.level(&sku, "WH-1").await,
            (5, 0, 5),
            "arrival order {arrival:?}"
        );
        assert_eq!(open_reservations(&harness.stock(&sku).await), 0);
    }
    harness.stop().await;
}

#[tokio::test]
async fn s4_partial_shipment_then_cancellation_releases_only_unshipped_units() {
    let harness = Harness::start().await;
    harness.receive("SKU-E", "WH-1", 100).await;
    let (status, _) = harness
        .deliver(&order_delivery("orders/create", 6006, 61, "SKU-E", 10))
        .await;
    assert_eq!(status, 200);
    let (status, body) = harness
        .post_movements(&movement(
            "SKU-E",
            "wms-1:shipment-77:1",
            json!({"type": "fulfilment", "reservation": reservation(6006, 61), "quantity": 7}),
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(harness.level("SKU-E", "WH-1").await, (93, 3, 90));
    let (status, _) = harness
        .deliver(&order_delivery("orders/cancelled", 6006, 61, "SKU-E", 10))
        .await;
    assert_eq!(status, 200);
    assert_eq!(harness.level("SKU-E", "WH-1").await, (93, 0, 93));
    harness.stop().await;
}

#[tokio::test]
async fn refunds_and_inventory_updates_are_accepted() {
    let harness = Harness::start().await;
    harness.receive("SKU-D", "WH-1", 5).await;
    harness.receive("SKU-K", "WH-1", 5).await;
    let order = fixture("orders_create.json");
    let body = serde_json::to_vec(&order).unwrap();
    let created = Delivery {
        topic: "orders/create",
        webhook_id: "wh-r-1".into(),
        event_id: "ev-r-1".into(),
        body,
    };
    let (status, receipt) = harness.deliver(&created).await;
    assert_eq!(status, 200);
    assert_eq!(receipt["applied"], 2);
    assert_eq!(receipt["skipped_lines"], 1, "the gift card");
    assert_eq!(harness.level("SKU-K", "WH-1").await, (5, 2, 3));
    let refund = Delivery {
        topic: "refunds/create",
        webhook_id: "wh-r-2".into(),
        event_id: "ev-r-2".into(),
        body: serde_json::to_vec(&fixture("refunds_create.json")).unwrap(),
    };
    let (status, receipt) = harness.deliver(&refund).await;
    assert_eq!(status, 200, "{receipt}");
    // One teapot cancelled before shipping; one mug returned and restocked. The mug's
    // shipment has not been reported yet, so its return waits (issue 9 §2b: it no longer
    // counts the open unit as shipped); the shipment then arrives and the return applies
    // with it: the reservation is released and on-hand ends where it started.
    assert_eq!(harness.level("SKU-K", "WH-1").await, (5, 1, 4));
    assert_eq!(harness.level("SKU-D", "WH-1").await, (5, 1, 4));
    let (status, body) = harness
        .post_movements(&movement(
            "SKU-D",
            "wms-1:shipment-mug:1",
            json!({"type": "fulfilment", "reservation": reservation(5872300001001, 14000000000101), "quantity": 1}),
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(harness.level("SKU-D", "WH-1").await, (5, 0, 5));
    let level = Delivery {
        topic: "inventory_levels/update",
        webhook_id: "wh-r-3".into(),
        event_id: "ev-r-3".into(),
        body: serde_json::to_vec(&fixture("inventory_levels_update.json")).unwrap(),
    };
    let (status, receipt) = harness.deliver(&level).await;
    assert_eq!(status, 200);
    assert_eq!(receipt["applied"], 0);
    harness.stop().await;
}

#[tokio::test]
async fn the_stock_api_shows_in_transit_and_inbound_units_per_location() {
    let harness = Harness::start().await;
    harness.receive("SKU-T", "WH-1", 10).await;
    for (key, kind) in [
        (
            "tr-1",
            json!({"type": "transfer_dispatch", "transfer": "TR-1", "from": "WH-1", "to": "WH-2", "quantity": 4}),
        ),
        (
            "po-1",
            json!({"type": "inbound", "purchase_order": "PO-1", "location": "WH-2", "quantity": 6, "expected_at_ms": 1_900_000_000_000_i64}),
        ),
        (
            "po-2",
            json!({"type": "inbound", "purchase_order": "PO-2", "location": "WH-1", "quantity": 3, "expected_at_ms": 1_900_000_000_000_i64}),
        ),
        (
            "po-3",
            json!({"type": "inbound", "purchase_order": "PO-3", "location": "WH-2", "quantity": 2, "expected_at_ms": 1_950_000_000_000_i64}),
        ),
    ] {
        let (status, body) = harness.post_movements(&movement("SKU-T", key, kind)).await;
        assert_eq!(status, 201, "{body}");
    }
    let stock = harness.stock("SKU-T").await;
    assert_eq!(
        stock["locations"],
        json!([
            {"location": "WH-1", "on_hand": 6, "reserved": 0, "available": 6, "in_transit": 0, "inbound": 3},
            {"location": "WH-2", "on_hand": 0, "reserved": 0, "available": 0, "in_transit": 4, "inbound": 8},
        ])
    );
    assert_eq!(
        stock["inbound"],
        json!([
            {"location": "WH-1", "quantity": 3, "expected_at_ms": 1_900_000_000_000_i64},
            {"location": "WH-2", "quantity": 6, "expected_at_ms": 1_900_000_000_000_i64},
            {"location": "WH-2", "quantity": 2, "expected_at_ms": 1_950_000_000_000_i64},
        ])
    );
    assert_eq!(
        stock["channels"][0]["atp"], 5,
        "in-transit and inbound units are not sellable without a pre-order window: 6 − 1"
    );
    // The transfer arrives and one purchase order is received.
    for (key, kind) in [
        (
            "tr-1-in",
            json!({"type": "transfer_receipt", "transfer": "TR-1", "quantity": 4}),
        ),
        (
            "po-1-in",
            json!({"type": "inbound_receipt", "purchase_order": "PO-1", "quantity": 6}),
        ),
    ] {
        let (status, body) = harness.post_movements(&movement("SKU-T", key, kind)).await;
        assert_eq!(status, 201, "{body}");
    }
    let stock = harness.stock("SKU-T").await;
    assert_eq!(
        stock["locations"],
        json!([
            {"location": "WH-1", "on_hand": 6, "reserved": 0, "available": 6, "in_transit": 0, "inbound": 3},
            {"location": "WH-2", "on_hand": 10, "reserved": 0, "available": 10, "in_transit": 0, "inbound": 2},
        ])
    );
    assert_eq!(stock["channels"][0]["atp"], 15);
    harness.stop().await;
}

#[tokio::test]
async fn a_bundle_shows_its_derived_levels_and_atp_not_zero() {
    // KIT-B = 2 × COMP-X + 1 × COMP-Y; PAIR = 1 × KIT-B + 1 × COMP-Y (nested).
    let harness = Harness::start_with(
        r#"
        [[bundles]]
        sku = "KIT-B"
        components = [{ sku = "COMP-X", quantity = 2 }, { sku = "COMP-Y", quantity = 1 }]
        [[bundles]]
        sku = "PAIR"
        components = [{ sku = "KIT-B", quantity = 1 }, { sku = "COMP-Y", quantity = 1 }]
        "#,
    )
    .await;
    harness.receive("COMP-X", "WH-1", 41).await;
    harness.receive("COMP-Y", "WH-1", 25).await;
    harness.receive("COMP-X", "WH-2", 6).await;
    harness.receive("COMP-Y", "WH-2", 1).await;
    // 3 COMP-X reserved at WH-1: available 38.
    let (status, body) = harness
        .post_movements(&movement(
            "COMP-X",
            "pos:1:1",
            json!({"type": "sale", "reservation": "pos:1:1", "quantity": 3, "location": "WH-1"}),
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    let kit = harness.stock("KIT-B").await;
    // WH-1: on hand min(41/2, 25) = 20, available min(38/2, 25) = 19; WH-2: min(6/2, 1) = 1.
    assert_eq!(
        kit["locations"],
        json!([
            {"location": "WH-1", "on_hand": 20, "reserved": 1, "available": 19, "in_transit": 0, "inbound": 0},
            {"location": "WH-2", "on_hand": 1, "reserved": 0, "available": 1, "in_transit": 0, "inbound": 0},
        ])
    );
    assert_eq!(kit["channels"][0]["atp"], 19, "19 + 1 − safety stock 1");
    assert_eq!(kit["channels"][0]["explanation"]["pooled_available"], 20);
    assert_eq!(
        kit["bundle"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["sku"].as_str().unwrap(), c["quantity"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        vec![("COMP-X", 2), ("COMP-Y", 1)]
    );
    assert_eq!(
        kit["bundle"]["components"][0]["locations"][0],
        json!({"location": "WH-1", "on_hand": 41, "reserved": 3, "available": 38, "in_transit": 0, "inbound": 0})
    );
    assert_eq!(
        kit["seq"], 3,
        "the newest component movement (COMP-X: 2 receipts, 1 sale)"
    );
    // PAIR flattens to 2 × COMP-X + 2 × COMP-Y: WH-1 min(38/2, 25/2) = 12; WH-2 min(3, 0) = 0.
    let pair = harness.stock("PAIR").await;
    assert_eq!(pair["locations"][0]["available"], 12);
    assert_eq!(pair["locations"][1]["available"], 0);
    assert_eq!(pair["channels"][0]["atp"], 11);
    assert_eq!(
        pair["bundle"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["sku"].as_str().unwrap(), c["quantity"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        vec![("COMP-X", 2), ("COMP-Y", 2)]
    );
    // A component is no bundle: no `bundle` member.
    assert_eq!(harness.stock("COMP-Y").await.get("bundle"), None);
    harness.stop().await;
}

#[tokio::test]
async fn issue_9_a_fulfilment_before_its_sale_is_acknowledged_parked_then_applies() {
    let harness = Harness::start().await;
    harness.receive("SKU-PK", "WH-1", 10).await;
    let (status, body) = harness
        .post_movements(&movement(
            "SKU-PK",
            "wms-1:shipment-9101:1",
            json!({"type": "fulfilment", "reservation": reservation(9101, 1), "quantity": 3}),
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][0]["outcome"], "parked", "{body}");
    assert!(body["results"][0]["seq"].as_u64().is_some(), "{body}");
    assert_eq!(harness.level("SKU-PK", "WH-1").await, (10, 0, 10));
    let (status, _) = harness
        .deliver(&order_delivery("orders/create", 9101, 1, "SKU-PK", 3))
        .await;
    assert_eq!(status, 200);
    assert_eq!(harness.level("SKU-PK", "WH-1").await, (7, 0, 7));
    harness.stop().await;
}

/// Issue 9 §2b: the movement history shows a parked movement with its reason, and the
/// sale that later applied it; the dead-letter API answers a bounded list and refuses bad
/// parameters with a problem.
#[tokio::test]
async fn issue_9_history_shows_parked_and_unparked_outcomes_and_dead_letters_are_listed() {
    let harness = Harness::start().await;
    harness.receive("SKU-HO", "WH-1", 10).await;
    let (status, body) = harness
        .post_movements(&movement(
            "SKU-HO",
            "wms-1:shipment-9201:1",
            json!({"type": "fulfilment", "reservation": reservation(9201, 1), "quantity": 2}),
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][0]["outcome"], "parked", "{body}");
    let (status, _) = harness
        .deliver(&order_delivery("orders/create", 9201, 1, "SKU-HO", 2))
        .await;
    assert_eq!(status, 200);
    assert_eq!(harness.level("SKU-HO", "WH-1").await, (8, 0, 8));
    let get = |path: String| {
        let client = harness.client.clone();
        let url = format!("{}{path}", harness.base);
        async move {
            let response = client.get(url).send().await.expect("request");
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (status, kind, response.json::<Value>().await.expect("json"))
        }
    };
    let (status, _, page) = get("/api/v1/movements?sku=SKU-HO&levels=false".into()).await;
    assert_eq!(status, 200, "{page}");
    let rows = page["movements"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{page}");
    assert_eq!(rows[0]["outcome"], "applied");
    assert_eq!(rows[0].get("outcome_reason"), None);
    assert_eq!(rows[1]["outcome"], "parked", "{page}");
    assert!(
        rows[1]["outcome_reason"]
            .as_str()
            .unwrap()
            .contains(&reservation(9201, 1)),
        "{page}"
    );
    assert_eq!(rows[2]["kind"], "sale");
    assert_eq!(rows[2]["outcome"], "applied");
    assert_eq!(rows[2]["unparked"], 1, "{page}");

    let (status, _, letters) = get("/api/v1/dead-letters?sku=SKU-HO&limit=10".into()).await;
    assert_eq!(status, 200);
    assert_eq!(letters["dead_letters"], json!([]));
    for bad in ["limit=0", "limit=1001", "limit=x", "sku=", "colour=red"] {
        let (status, kind, problem) = get(format!("/api/v1/dead-letters?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(kind, "application/problem+json", "{bad}");
        assert_eq!(problem["status"], 400, "{bad}");
    }
    harness.stop().await;
}
