//! Issue 10 §2 over HTTP: the limits of a movement and of the ledger as the REST API answers
//! them — 422 with a pointer for a location that is not configured or an identifier that is
//! too long, 409 `idempotency-key-conflict` for a key reused for another movement, 503 with
//! `Retry-After` when the ledger is overloaded — and real SKUs with spaces, slashes and
//! accents working end to end.

use serde_json::{Value, json};
use std::sync::Arc;
use stocksync::config::Config;
use stocksync::domain::NullSink;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::embedded::EmbeddedStore;
use stocksync::web::{self, WebState};
use tokio::sync::oneshot;

struct Api {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

impl Api {
    /// A server over a ledger built from a config with locations WH-1 and WH-2, as the app
    /// builds it (`LedgerOptions::from_config`), with `tune` applied to the options.
    async fn start(tune: impl FnOnce(&mut LedgerOptions)) -> Self {
        let config = Config::from_toml(
            r#"
            [http]
            listen = "127.0.0.1:0"
            body_limit_bytes = 4194304
            [[locations]]
            id = "WH-1"
            [[locations]]
            id = "WH-2"
            "#,
        )
        .expect("test config parses");
        config.validate().expect("test config is valid");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("db")).expect("store opens");
        let mut options = LedgerOptions::from_config(&config);
        tune(&mut options);
        let ledger = Ledger::start(Arc::new(store), Arc::new(NullSink), options);
        let state = WebState::new(ledger.clone(), Arc::new(config));
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

    async fn post(&self, path: &str, body: &Value) -> (u16, Option<String>, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap_or_default().to_owned());
        (status, retry_after, response.json().await.expect("json"))
    }

    async fn on_hand(&self, sku: &str, location: &str) -> i64 {
        let state = self.ledger.state(&sku.into()).await.expect("state");
        state.location(&location.into()).on_hand
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ledger.shutdown().await;
    }
}

fn receipt(sku: &str, key: &str, location: &str, quantity: u64) -> Value {
    json!({"sku": sku, "idempotency_key": key, "source": "wms-1", "type": "receipt",
           "location": location, "quantity": quantity})
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["pointer"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_receipt_to_a_location_that_is_not_configured_is_422_and_creates_nothing() {
    let api = Api::start(|_| {}).await;
    let (status, _, problem) = api
        .post(
            "/api/v1/movements",
            &json!([
                receipt("SKU-LOC", "wms:r1", "WH-1", 5),
                receipt("SKU-LOC", "wms:r2", "NO-SUCH-LOC", 5),
            ]),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), ["#/1/location"], "{problem}");
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("NO-SUCH-LOC"),
        "{problem}"
    );
    let state = api.ledger.state(&"SKU-LOC".into()).await.unwrap();
    assert!(state.locations.is_empty(), "nothing of the batch applied");

    // The reservations API answers the same mistake as 422 unknown-location, not 409.
    let (status, _, problem) = api
        .post(
            "/api/v1/reservations",
            &json!({"id": "checkout-9", "lines": [
                {"sku": "SKU-LOC", "quantity": 1, "location": "NO-SUCH-LOC"}]}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("unknown-location"),
        "{problem}"
    );
    assert_eq!(pointers(&problem), ["#/lines/0/location"], "{problem}");
    api.stop().await;
}

#[tokio::test]
async fn real_skus_work_and_a_one_megabyte_sku_is_refused_with_a_pointer() {
    let api = Api::start(|_| {}).await;
    for sku in ["Tafel 120/80 eiken", "Größe-XL", "café crème"] {
        let (status, _, body) = api
            .post(
                "/api/v1/movements",
                &receipt(sku, &format!("wms:{sku}"), "WH-1", 3),
            )
            .await;
        assert_eq!(status, 201, "{sku}: {body}");
        assert_eq!(api.on_hand(sku, "WH-1").await, 3, "{sku}");
    }
    let huge = "X".repeat(1 << 20);
    let (status, _, problem) = api
        .post("/api/v1/movements", &receipt(&huge, "wms:huge", "WH-1", 1))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), ["#/sku"], "{problem}");
    api.stop().await;
}

#[tokio::test]
async fn a_key_reused_for_another_movement_is_409_and_the_same_key_on_another_sku_applies() {
    let api = Api::start(|_| {}).await;
    let (status, _, _) = api
        .post(
            "/api/v1/movements",
            &receipt("SKU-IK", "wms:rcpt-1", "WH-1", 10),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = api
        .post(
            "/api/v1/movements",
            &receipt("SKU-IK", "wms:rcpt-1", "WH-1", 10),
        )
        .await;
    assert_eq!(
        status, 200,
        "the same movement again is a duplicate: {body}"
    );
    assert_eq!(body["results"][0]["outcome"], "duplicate", "{body}");
    let (status, _, problem) = api
        .post(
            "/api/v1/movements",
            &json!([
                receipt("SKU-IK", "wms:rcpt-2", "WH-1", 1),
                receipt("SKU-IK", "wms:rcpt-1", "WH-1", 99),
            ]),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-key-conflict"),
        "{problem}"
    );
    assert_eq!(pointers(&problem), ["#/1/idempotency_key"], "{problem}");
    assert_eq!(
        api.on_hand("SKU-IK", "WH-1").await,
        11,
        "99 was not applied"
    );
    // Keys are scoped per SKU.
    let (status, _, body) = api
        .post(
            "/api/v1/movements",
            &receipt("SKU-IK2", "wms:rcpt-1", "WH-1", 99),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(api.on_hand("SKU-IK2", "WH-1").await, 99);
    api.stop().await;
}

#[tokio::test]
async fn an_overloaded_ledger_answers_503_with_retry_after() {
    // A bound of one waiting movement per shard: a batch of many movements for one SKU
    // overfills it at once (they are submitted before the shard runs).
    let api = Api::start(|options| {
        options.shards = 1;
        options.max_queued_per_shard = 1;
    })
    .await;
    let batch: Vec<Value> = (0..200)
        .map(|i| receipt("SKU-OV", &format!("wms:ov-{i}"), "WH-1", 1))
        .collect();
    let (status, retry_after, problem) = api.post("/api/v1/movements", &json!(batch)).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(retry_after.as_deref(), Some("1"), "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("overloaded"),
        "{problem}"
    );
    api.stop().await;
}
