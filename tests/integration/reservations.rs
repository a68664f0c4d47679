//! Multi-SKU reservations over HTTP and the ledger: all-or-nothing with compensation
//! (S1 generalised), retries, TTL expiry by the reaper (S5, also for passivated SKUs and
//! across a restart), commit and release, and routing across locations (S7).
//!
//! Each test starts its own ledger on a temporary database and, where it speaks HTTP, its
//! own server on `127.0.0.1:0`, so the tests run in parallel.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use stocksync::config::Config;
use stocksync::domain::{Movement, MovementKind, NullSink, SCHEMA_VERSION, Sku};
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::Store;
use stocksync::store::embedded::EmbeddedStore;
use stocksync::web::{self, WebState};
use tokio::sync::oneshot;

const EXPIRED_METRIC: &str = "stocksync_ledger_reservations_expired_total";

struct Harness {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

fn config(locations: &[&str]) -> Config {
    let mut text = String::from("[http]\nlisten = \"127.0.0.1:0\"\n");
    for location in locations {
        text.push_str(&format!("[[locations]]\nid = \"{location}\"\n"));
    }
    Config::from_toml(&text).expect("test config parses")
}

impl Harness {
    async fn start(locations: &[&str], options: LedgerOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("db")).expect("store opens");
        let ledger = Ledger::start(Arc::new(store), Arc::new(NullSink), options);
        let state = WebState::new(ledger.clone(), Arc::new(config(locations)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(web::serve(listener, web::router(state), async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            stop: Some(stop),
            ledger,
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn metric(&self, name: &str) -> f64 {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("request");
        let text = response.text().await.expect("metrics text");
        metric_value(&text, name)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ledger.shutdown().await;
    }
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn movement(sku: &str, key: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.to_owned(),
        source: "test".to_owned(),
        occurred_at_ms: None,
        kind,
    }
}

async fn receive(ledger: &Ledger, sku: &str, location: &str, quantity: u64) {
    ledger
        .submit(movement(
            sku,
            &format!("receipt:{sku}:{location}"),
            MovementKind::Receipt {
                location: location.into(),
                quantity,
            },
        ))
        .await
        .expect("receipt is durable");
}

/// (on-hand, reserved, available) of `sku` at `location`.
async fn levels(ledger: &Ledger, sku: &str, location: &str) -> (i64, i64, i64) {
    let state = ledger.state(&Sku::from(sku)).await.expect("state");
    let stock = state.location(&location.into());
    (stock.on_hand, stock.reserved, stock.available())
}

async fn wait_for_available(ledger: &Ledger, sku: &str, location: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, available) = levels(ledger, sku, location).await;
        if available == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sku} at {location}: available {available}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_concurrent_requests_against_k_units_exactly_k_succeed() {
    // Scenario S1, generalised: 12 requests for 1 unit each against 4 units.
    let harness = Harness::start(&["WH-1"], LedgerOptions::default()).await;
    receive(&harness.ledger, "SKU-A", "WH-1", 4).await;
    let requests = (0..12).map(|n| {
        let body = json!({"id": format!("s1-{n}"), "lines": [{"sku": "SKU-A", "quantity": 1}]});
        let harness = &harness;
        async move { harness.post("/api/v1/reservations", Some(&body)).await }
    });
    let answers = futures::future::join_all(requests).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 409)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created, 4, "{answers:?}");
    assert_eq!(refused.len(), 8, "{answers:?}");
    for body in refused {
        assert_eq!(body["type"], "urn:stocksync:problem:insufficient-stock");
        assert_eq!(body["lines"][0]["requested"], 1);
        assert_eq!(body["lines"][0]["available"], 0);
    }
    assert_eq!(levels(&harness.ledger, "SKU-A", "WH-1").await, (4, 4, 0));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_second_sku_refuses_everything_and_a_retry_gets_the_same_answer() {
    let harness = Harness::start(&["WH-1"], LedgerOptions::default()).await;
    receive(&harness.ledger, "SKU-P", "WH-1", 5).await;
    receive(&harness.ledger, "SKU-Q", "WH-1", 1).await;
    let body = json!({"id": "two-sku", "lines": [
        {"sku": "SKU-P", "quantity": 2, "location": "WH-1"},
        {"sku": "SKU-P", "quantity": 1, "location": "WH-1"},
        {"sku": "SKU-Q", "quantity": 3, "route": ["WH-1"]}
    ]});
    let (status, first) = harness.post("/api/v1/reservations", Some(&body)).await;
    assert_eq!(status, 409, "{first}");
    assert_eq!(first["type"], "urn:stocksync:problem:insufficient-stock");
    assert_eq!(
        first["lines"],
        json!([{"line": 2, "sku": "SKU-Q", "requested": 3, "available": 1}])
    );
    // The first SKU's holds were compensated: all of its stock is available again.
    assert_eq!(levels(&harness.ledger, "SKU-P", "WH-1").await, (5, 0, 5));
    assert_eq!(levels(&harness.ledger, "SKU-Q", "WH-1").await, (1, 0, 1));
    let state = harness.ledger.state(&Sku::from("SKU-P")).await.unwrap();
    assert_eq!(state.reservations["two-sku:0"].released, 2);

    // Even once stock arrives, the same id gets the same answer and holds nothing.
    receive(&harness.ledger, "SKU-Q", "WH-2", 10).await;
    let (status, again) = harness.post("/api/v1/reservations", Some(&body)).await;
    assert_eq!((status, &again), (409, &first));
    assert_eq!(levels(&harness.ledger, "SKU-P", "WH-1").await, (5, 0, 5));

    // The id with other lines is a conflict, not a new request.
    let other =
        json!({"id": "two-sku", "lines": [{"sku": "SKU-P", "quantity": 1, "location": "WH-1"}]});
    let (status, conflict) = harness.post("/api/v1/reservations", Some(&other)).await;
    assert_eq!(status, 409);
    assert_eq!(
        conflict["type"],
        "urn:stocksync:problem:reservation-id-conflict"
    );
    let (status, view) = harness.get("/api/v1/reservations/two-sku").await;
    assert_eq!(status, 200);
    assert_eq!(view["refused"], true);
    assert_eq!(view["lines"][2]["status"], "missing");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_gets_the_same_answer_without_a_second_hold() {
    let harness = Harness::start(&["WH-1", "WH-2"], LedgerOptions::default()).await;
    receive(&harness.ledger, "SKU-R", "WH-2", 5).await;
    receive(&harness.ledger, "SKU-S", "WH-1", 5).await;
    let body = json!({"id": "retry-1", "ttl_secs": 600, "lines": [
        {"sku": "SKU-R", "quantity": 2},
        {"sku": "SKU-S", "quantity": 1}
    ]});
    let (status, first) = harness.post("/api/v1/reservations", Some(&body)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["lines"][0]["location"], "WH-2");
    assert_eq!(first["lines"][1]["location"], "WH-1");
    assert_eq!(first["lines"][0]["status"], "held");
    assert!(first["expires_at_ms"].as_i64().unwrap() > now_ms());
    let (status, again) = harness.post("/api/v1/reservations", Some(&body)).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(levels(&harness.ledger, "SKU-R", "WH-2").await, (5, 2, 3));
    assert_eq!(levels(&harness.ledger, "SKU-S", "WH-1").await, (5, 1, 4));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_ships_and_release_returns_stock() {
    let harness = Harness::start(&["WH-1"], LedgerOptions::default()).await;
    receive(&harness.ledger, "SKU-C", "WH-1", 10).await;
    let hold = |id: &str, quantity: u64| json!({"id": id, "ttl_secs": 600, "lines": [{"sku": "SKU-C", "quantity": quantity}]});
    let (status, _) = harness
        .post("/api/v1/reservations", Some(&hold("ship-me", 3)))
        .await;
    assert_eq!(status, 201);
    let (status, view) = harness
        .post("/api/v1/reservations/ship-me/commit", None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["lines"][0]["status"], "committed");
    assert_eq!(view["lines"][0]["fulfilled"], 3);
    assert_eq!(levels(&harness.ledger, "SKU-C", "WH-1").await, (7, 0, 7));
    // A committed hold no longer lapses.
    let state = harness.ledger.state(&Sku::from("SKU-C")).await.unwrap();
    assert_eq!(state.next_expiry_ms(), None);
    // Committing again is harmless.
    let (status, _) = harness
        .post(
            "/api/v1/reservations/ship-me/commit",
            Some(&json!({"lines": [0]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(levels(&harness.ledger, "SKU-C", "WH-1").await, (7, 0, 7));

    let (status, _) = harness
        .post("/api/v1/reservations", Some(&hold("let-go", 2)))
        .await;
    assert_eq!(status, 201);
    assert_eq!(levels(&harness.ledger, "SKU-C", "WH-1").await, (7, 2, 5));
    let (status, view) = harness
        .post("/api/v1/reservations/let-go/release", None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["lines"][0]["status"], "released");
    assert_eq!(levels(&harness.ledger, "SKU-C", "WH-1").await, (7, 0, 7));
    // A released hold cannot be shipped; unknown ids are 404.
    let (status, problem) = harness
        .post("/api/v1/reservations/let-go/commit", None)
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:stocksync:problem:reservation-not-open"
    );
    let (status, _) = harness
        .post("/api/v1/reservations/nope/release", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = harness.get("/api/v1/reservations/nope").await;
    assert_eq!(status, 404);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_routed_to_the_location_that_stocks_each_sku() {
    // Scenario S7.
    let harness = Harness::start(&["WH-NORTH", "WH-SOUTH"], LedgerOptions::default()).await;
    receive(&harness.ledger, "SKU-G", "WH-NORTH", 5).await;
    receive(&harness.ledger, "SKU-H", "WH-SOUTH", 5).await;
    let body = json!({"id": "s7", "lines": [
        {"sku": "SKU-G", "quantity": 1, "route": ["WH-NORTH", "WH-SOUTH"]},
        {"sku": "SKU-H", "quantity": 1, "route": ["WH-NORTH", "WH-SOUTH"]},
        {"sku": "SKU-H", "quantity": 1}
    ]});
    let (status, view) = harness.post("/api/v1/reservations", Some(&body)).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["lines"][0]["location"], "WH-NORTH");
    assert_eq!(view["lines"][1]["location"], "WH-SOUTH");
    assert_eq!(view["lines"][2]["location"], "WH-SOUTH");
    assert_eq!(
        levels(&harness.ledger, "SKU-G", "WH-NORTH").await,
        (5, 1, 4)
    );
    assert_eq!(
        levels(&harness.ledger, "SKU-H", "WH-SOUTH").await,
        (5, 2, 3)
    );
    assert_eq!(
        levels(&harness.ledger, "SKU-H", "WH-NORTH").await,
        (0, 0, 0)
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_list_every_problem() {
    let harness = Harness::start(&[], LedgerOptions::default()).await;
    let body = json!({"id": "", "ttl_secs": 0, "lines": [
        {"sku": "SKU-A", "quantity": 0, "location": "WH-1"},
        {"sku": "SKU-A", "quantity": 1}
    ]});
    let (status, problem) = harness.post("/api/v1/reservations", Some(&body)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:stocksync:problem:invalid-reservation");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        vec![
            "#/id",
            "#/ttl_secs",
            "#/lines/0/quantity",
            "#/lines/1/location"
        ]
    );
    let (status, _) = harness
        .post("/api/v1/reservations", Some(&json!({"lines": "x"})))
        .await;
    assert_eq!(status, 422);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_is_released_at_its_ttl_and_counted() {
    // Scenario S5 over HTTP: a one-second hold pending payment.
    let harness = Harness::start(&["WH-1"], LedgerOptions::default()).await;
    receive(&harness.ledger, "SKU-F", "WH-1", 5).await;
    let before = harness.metric(EXPIRED_METRIC).await;
    let body =
        json!({"id": "pending-payment", "ttl_secs": 1, "lines": [{"sku": "SKU-F", "quantity": 1}]});
    let (status, view) = harness.post("/api/v1/reservations", Some(&body)).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(levels(&harness.ledger, "SKU-F", "WH-1").await, (5, 1, 4));
    let expires_at_ms = view["expires_at_ms"].as_i64().unwrap();
    wait_for_available(&harness.ledger, "SKU-F", "WH-1", 5).await;
    assert!(now_ms() >= expires_at_ms, "released before its expiry");
    let (_, view) = harness.get("/api/v1/reservations/pending-payment").await;
    assert_eq!(view["lines"][0]["status"], "released");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while harness.metric(EXPIRED_METRIC).await < before + 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "expiry not counted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    harness.stop().await;
}

fn hold(sku: &str, id: &str, expires_at_ms: i64) -> Movement {
    movement(
        sku,
        &format!("hold:{id}"),
        MovementKind::Reservation {
            reservation: id.to_owned(),
            quantity: 1,
            location: Some("WH-1".into()),
            route: vec![],
            expires_at_ms: Some(expires_at_ms),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passivated_sku_is_woken_to_release_its_hold() {
    let options = LedgerOptions {
        idle_passivate_secs: 0,
        ..LedgerOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let ledger = Ledger::start(store, Arc::new(NullSink), options);
    receive(&ledger, "SKU-F", "WH-1", 5).await;
    ledger
        .submit(hold("SKU-F", "pay-1", now_ms() + 700))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
    while ledger.live_actors() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SKU actor did not passivate"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Reading the state would wake the actor, so wait for the reaper to do it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_available(&ledger, "SKU-F", "WH-1", 5).await;
    let state = ledger.state(&Sku::from("SKU-F")).await.unwrap();
    assert_eq!(state.reservations["pay-1"].released, 1);
    assert_eq!(state.next_expiry_ms(), None);
    ledger.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_released_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Arc::new(EmbeddedStore::open(&path).unwrap());
        let ledger = Ledger::start(store.clone(), Arc::new(NullSink), LedgerOptions::default());
        receive(&ledger, "SKU-F", "WH-1", 5).await;
        receive(&ledger, "SKU-K", "WH-1", 5).await;
        // One hold lapses while the process is down, one after it is back.
        ledger
            .submit(hold("SKU-F", "lapses-while-down", now_ms() + 400))
            .await
            .unwrap();
        ledger
            .submit(hold("SKU-K", "lapses-later", now_ms() + 1_500))
            .await
            .unwrap();
        ledger.shutdown().await;
        let rows = store.hold_expiries(None, 10).await.unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = Arc::new(EmbeddedStore::open(&path).unwrap());
    let ledger = Ledger::start(store.clone(), Arc::new(NullSink), LedgerOptions::default());
    // Give the reaper time without reading the SKUs (a read would load them anyway).
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for_available(&ledger, "SKU-F", "WH-1", 5).await;
    let (_, reserved, _) = levels(&ledger, "SKU-K", "WH-1").await;
    assert_eq!(reserved, 1, "the later hold is still held");
    wait_for_available(&ledger, "SKU-K", "WH-1", 5).await;
    ledger.shutdown().await;
    // Nothing is left for the reaper to find at the next start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !store.hold_expiries(None, 10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "expiry rows remain");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
