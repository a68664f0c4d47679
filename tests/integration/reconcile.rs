//! Reconciliation, alerting and the audit log end to end (issue 5, DESIGN.md §3 rules 6–7):
//! the engine runs against the Shopify simulator with a small alert receiver, both on
//! 127.0.0.1:0. Stock edited behind the engine's back is detected as a manual edit, raised
//! as an alert and healed within the reconciliation interval; the echo of our own pushes
//! raises nothing; history, push log and config audit answer with the right rows, as JSON,
//! CSV and through the `stocksync history` CLI.

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stocksync::app::App;
use stocksync::config::Config;
use stocksync::sandbox::shopify::{self, ShopifySimulator, ShopifySimulatorOptions};

const CHANNEL: &str = "shop-orchard";
const LOCATION: u64 = 7;
const MANGO_ITEM: u64 = 51_001;
const KIWI_ITEM: u64 = 51_002;

type Received = Arc<Mutex<Vec<Value>>>;

/// An alert receiver collecting every POSTed body.
async fn alert_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/alerts",
            post(
                |State(store): State<Received>, Json(body): Json<Value>| async move {
                    store.lock().unwrap().push(body);
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/alerts"), received)
}

fn config_text(sim: &ShopifySimulator, dir: &Path, alerts_url: &str) -> String {
    format!(
        r#"
        [store]
        path = "{db}"
        [http]
        listen = "127.0.0.1:0"
        [audit]
        push_log_flush_ms = 50
        [reconcile]
        interval_ms = 300
        heal = true
        settle_ms = 100
        echo_window_ms = 30000
        [alerts]
        webhook_url = "{alerts_url}"
        check_interval_ms = 100
        dedupe_window_secs = 60

        [[locations]]
        id = "GROVE"

        [[channels]]
        id = "{CHANNEL}"
        kind = "shopify"
        locations = ["GROVE"]
        [channels.rate_limit]
        requests_per_sec = 50.0
        burst = 50
        [channels.shopify]
        shop_url = "{url}"
        access_token = "{token}"
        webhook_secret = "{secret}"
        location_id = {LOCATION}
        listings = [
            {{ sku = "MANGO-1", inventory_item_id = {MANGO_ITEM} }},
            {{ sku = "KIWI-2", inventory_item_id = {KIWI_ITEM} }},
        ]
        "#,
        db = dir.join("stocksync.db").display(),
        url = sim.base_url(),
        token = sim.options().access_token,
        secret = sim.options().webhook_secret,
    )
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let timeout = timeout * crate::support::SLOW_MACHINE_FACTOR;
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn movement(sku: &str, key: &str, source: &str, kind: Value) -> Value {
    let mut body = json!({"sku": sku, "idempotency_key": key, "source": source});
    body.as_object_mut()
        .unwrap()
        .extend(kind.as_object().unwrap().clone());
    body
}

fn discrepancy_alerts(received: &Received) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|alert| alert["kind"] == "discrepancy")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_edit_is_detected_alerted_and_healed_and_the_audit_log_answers() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = shopify::start(
        ShopifySimulatorOptions {
            emit_inventory_level_updates: true,
            default_location_id: LOCATION,
            ..ShopifySimulatorOptions::default()
        },
        listener,
    )
    .await
    .unwrap();
    sim.set_level(MANGO_ITEM, LOCATION, 0);
    sim.set_level(KIWI_ITEM, LOCATION, 0);
    let (alerts_url, received) = alert_receiver().await;
    let text = config_text(&sim, dir.path(), &alerts_url);
    let config_path = dir.path().join("stocksync.toml");
    std::fs::write(&config_path, &text).unwrap();
    let config = Config::load(&config_path).unwrap();
    let app = App::start(config).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    sim.set_webhook_url(Some(format!("{base}/webhooks/shopify/{CHANNEL}")));
    let client = reqwest::Client::new();

    // Stock arrives and propagates; every push echoes back as inventory_levels/update.
    let movements = json!([
        movement(
            "MANGO-1",
            "grove-wms:r1",
            "grove-wms",
            json!({"type": "receipt", "location": "GROVE", "quantity": 10})
        ),
        movement(
            "KIWI-2",
            "grove-wms:r2",
            "grove-wms",
            json!({"type": "receipt", "location": "GROVE", "quantity": 5})
        ),
        movement(
            "MANGO-1",
            "grove-audit:a1",
            "grove-audit",
            json!({"type": "adjustment", "location": "GROVE", "delta": -2, "reason": "bruised"})
        ),
    ]);
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .json(&movements)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    eventually("ATP on the shop", Duration::from_secs(10), || {
        sim.level(MANGO_ITEM, LOCATION) == Some(8) && sim.level(KIWI_ITEM, LOCATION) == Some(5)
    })
    .await;

    // The echoes of our own pushes, and two reconciliation passes, raise nothing.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(sim.counters().webhooks_delivered >= 2, "echoes were sent");
    assert!(
        discrepancy_alerts(&received).is_empty(),
        "echo raised an alert: {:?}",
        received.lock().unwrap()
    );
    let reconciler = app.reconciler().expect("reconcile is enabled");
    assert!(reconciler.discrepancies().is_empty());

    // A merchant edits the shop behind our back.
    let edited_at = tokio::time::Instant::now();
    sim.set_level(MANGO_ITEM, LOCATION, 25);
    eventually("the manual edit alert", Duration::from_secs(5), || {
        discrepancy_alerts(&received)
            .iter()
            .any(|alert| alert["sku"] == "MANGO-1" && alert["details"]["class"] == "manual_edit")
    })
    .await;
    eventually(
        "the shop healed to the ledger's ATP",
        Duration::from_secs(5),
        || sim.level(MANGO_ITEM, LOCATION) == Some(8),
    )
    .await;
    println!("healed {:?} after the manual edit", edited_at.elapsed());
    let alert = discrepancy_alerts(&received)
        .into_iter()
        .find(|alert| alert["sku"] == "MANGO-1")
        .unwrap();
    assert_eq!(alert["channel"], CHANNEL);
    assert_eq!(alert["details"]["channel_value"], 25);
    assert_eq!(alert["details"]["ledger_atp"], 8);
    assert!(alert["text"].as_str().unwrap().contains("manual edit"));
    assert!(alert["attachments"].is_array());
    assert_eq!(
        discrepancy_alerts(&received)
            .iter()
            .filter(|alert| alert["sku"] == "MANGO-1")
            .count(),
        1,
        "deduplicated per (kind, channel, sku)"
    );

    // The stock view shows the channel's own figure and the discrepancy.
    let stock: Value = client
        .get(format!("{base}/api/v1/stock/MANGO-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report = &stock["channels"][0]["channel_report"];
    assert!(report.is_object(), "{stock}");

    // A listing the shop has but we do not map is an unknown listing.
    sim.set_level(59_999, LOCATION, 3);
    eventually("the unknown listing alert", Duration::from_secs(5), || {
        discrepancy_alerts(&received)
            .iter()
            .any(|alert| alert["details"]["class"] == "unknown_listing")
    })
    .await;

    // History with filters, as JSON and CSV.
    let page: Value = client
        .get(format!(
            "{base}/api/v1/movements?sku=MANGO-1&source=grove-audit&kind=adjustment"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = page["movements"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{page}");
    assert_eq!(rows[0]["idempotency_key"], "grove-audit:a1");
    assert_eq!(rows[0]["levels_after"][0]["on_hand"], 8);
    let all: Value = client
        .get(format!("{base}/api/v1/movements?source=grove-wms"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["movements"].as_array().unwrap().len(), 2);
    let csv = client
        .get(format!("{base}/api/v1/movements?sku=MANGO-1"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("cursor,recorded_at_ms"));
    assert!(lines[2].contains("grove-audit:a1") && lines[2].contains("GROVE:8/0/8"));

    // Every push with the channel's answer; the config loaded at start.
    let mut pushes = Vec::new();
    for _ in 0..100 {
        let page: Value = client
            .get(format!(
                "{base}/api/v1/pushes?channel={CHANNEL}&sku=MANGO-1"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pushes = page.as_array().unwrap().clone();
        if pushes.iter().any(|p| p["change_from"] == 25) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        pushes
            .iter()
            .any(|p| p["outcome"] == "accepted" && p["quantity"] == 8),
        "{pushes:?}"
    );
    assert!(
        pushes.iter().any(|p| p["change_from"] == 25),
        "the heal pushed with compare-and-set on the reported value: {pushes:?}"
    );
    let audit: Value = client
        .get(format!("{base}/api/v1/audit/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit[0]["action"], "loaded");
    assert_eq!(audit[0]["config_hash"].as_str().unwrap().len(), 64);
    assert!(
        !audit[0]["config_json"]
            .as_str()
            .unwrap()
            .contains(&sim.options().webhook_secret)
    );

    // The CLI reads the same store.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stocksync"))
        .args(["history", "--config"])
        .arg(&config_path)
        .args(["--sku", "MANGO-1", "--kind", "adjustment", "--csv"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[1].contains("grove-audit:a1"));

    app.shutdown(Duration::from_secs(5)).await;
    sim.shutdown().await;
}
