//! Acceptance scenario S8 of `shared/scenarios/README.md`, and an
//! index of where each one is tested (the `tests/*.rs` named below are in `tests/integration/`):
//! - S1 last unit, two channels: `src/ledger/tests.rs`
//!   (`concurrent_holds_on_the_last_units_exactly_k_succeed`) and `tests/reservations.rs`.
//! - S2 same order line twice: `tests/web_api.rs` and `src/ledger/tests.rs`.
//! - S3 webhooks out of order and duplicated: `tests/web_api.rs`.
//! - S4 partial shipment then cancellation: `src/domain/state.rs` and `tests/web_api.rs`.
//! - S5 hold expiry: `tests/reservations.rs`.
//! - S6 one bad item in a batch: `tests/shopify_propagation.rs`, `tests/channel_compliance.rs`.
//! - S7 one order, two locations: `src/domain/state.rs` and `tests/reservations.rs`.
//! - S8 units, not fractions: here.
//! - S9 three channels, two units: `tests/multichannel.rs` (all four simulators).

use serde_json::{Value, json};
use std::time::Duration;
use stocksync::config::Config;

async fn engine(extra: &str) -> (stocksync::app::App, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[locations]]\nid = \"WH-1\"\n{extra}",
        dir.path().join("s.db").display()
    );
    let config = Config::from_toml(&text).unwrap();
    config.validate().unwrap();
    let app = stocksync::app::App::start(config).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    (app, dir, base)
}

async fn stock(client: &reqwest::Client, base: &str, sku: &str) -> Value {
    client
        .get(format!("{base}/api/v1/stock/{sku}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_a_kit_reserves_whole_base_units_of_its_component() {
    // COMP-M arrives as 10 packs of 12: the producer converts at the edge and sends 120
    // pieces. KIT-M consumes 1 piece.
    let (app, _dir, base) =
        engine("[[bundles]]\nsku = \"KIT-M\"\ncomponents = [{ sku = \"COMP-M\", quantity = 1 }]\n")
            .await;
    let client = reqwest::Client::new();
    let receipt = json!({"schema_version": 1, "sku": "COMP-M", "idempotency_key": "po-9:1",
        "source": "erp", "type": "receipt", "location": "WH-1", "quantity": 10 * 12});
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .json(&receipt)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let reserve =
        json!({"id": "checkout-8", "lines": [{"sku": "KIT-M", "quantity": 1, "location": "WH-1"}]});
    let response = client
        .post(format!("{base}/api/v1/reservations"))
        .json(&reserve)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let view = stock(&client, &base, "COMP-M").await;
    let location = &view["locations"][0];
    assert_eq!(
        (
            location["reserved"].as_i64(),
            location["available"].as_i64()
        ),
        (Some(1), Some(119)),
        "{view}"
    );
    // A channel sale of two kits through the movements API expands the same way, and its
    // cancellation acts on the recorded expansion.
    let sale = json!({"schema_version": 1, "sku": "KIT-M", "idempotency_key": "shop:77:1", "source": "shop",
        "type": "sale", "reservation": "shop:77:1", "quantity": 2, "location": "WH-1"});
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .json(&sale)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    assert_eq!(
        stock(&client, &base, "COMP-M").await["locations"][0]["available"],
        117
    );
    let cancel = json!({"schema_version": 1, "sku": "KIT-M", "idempotency_key": "shop:77:cancel", "source": "shop",
        "type": "cancellation", "reservation": "shop:77:1"});
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .json(&cancel)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    assert_eq!(
        stock(&client, &base, "COMP-M").await["locations"][0]["available"],
        119
    );
    // A bundle holds no stock of its own: a receipt for it is refused with a clear reason.
    let bad = json!({"schema_version": 1, "sku": "KIT-M", "idempotency_key": "x", "source": "erp",
        "type": "receipt", "location": "WH-1", "quantity": 1});
    let answer: Value = client
        .post(format!("{base}/api/v1/movements"))
        .json(&bad)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["results"][0]["outcome"], "rejected", "{answer}");
    app.shutdown(Duration::from_secs(5)).await;
}
