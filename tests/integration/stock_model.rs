//! The stock model end to end: bundles propagate their derived ATP, allocation rules and
//! safety-stock precedence shape each channel's ATP, and the stock API explains it.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use stocksync::config::Config;
use stocksync::sandbox::shopify::{self as simulator, ShopifySimulatorOptions};

const SHOP_LOCATION: u64 = 1;

fn config(dir: &std::path::Path, shop_url: &str, extra: &str) -> Config {
    let text = format!(
        r#"
[store]
path = "{db}"
[http]
listen = "127.0.0.1:0"
[[locations]]
id = "WH-1"
[[locations]]
id = "WH-2"
[[channels]]
id = "web"
kind = "shopify"
locations = ["WH-1", "WH-2"]
[channels.rate_limit]
requests_per_sec = 20.0
burst = 20
[channels.shopify]
shop_url = "{shop_url}"
access_token = "shpat_sandbox_token"
webhook_secret = "sandbox_webhook_secret"
location_id = {SHOP_LOCATION}
listings = [
  {{ sku = "MUG", inventory_item_id = 1 }},
  {{ sku = "COASTER", inventory_item_id = 2 }},
  {{ sku = "MUG-SET", inventory_item_id = 3 }},
  {{ sku = "GIFT-BOX", inventory_item_id = 4 }},
]
{extra}
"#,
        db = dir.join("stock.db").display()
    );
    let config = Config::from_toml(&text).expect("parses");
    config.validate().expect("valid");
    config
}

async fn post(client: &reqwest::Client, base: &str, body: Value) -> Value {
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

fn receipt(sku: &str, key: &str, location: &str, quantity: u64) -> Value {
    json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "wms",
        "type": "receipt", "location": location, "quantity": quantity})
}

async fn start_shop() -> Arc<simulator::ShopifySimulator> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ShopifySimulatorOptions {
        auto_create_levels: true,
        ..Default::default()
    };
    Arc::new(simulator::start(options, listener).await.unwrap())
}

async fn wait_for_level(shop: &simulator::ShopifySimulator, item: u64, expected: i64) {
    for _ in 0..600 {
        if shop.level(item, SHOP_LOCATION) == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "item {item} is listed at {:?}, expected {expected}",
        shop.level(item, SHOP_LOCATION)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_bundles_are_listed_at_what_their_components_allow_and_follow_component_changes() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let bundles = r#"
[[bundles]]
sku = "GIFT-BOX"
components = [{ sku = "MUG-SET", quantity = 1 }, { sku = "COASTER", quantity = 2 }]
[[bundles]]
sku = "MUG-SET"
components = [{ sku = "MUG", quantity = 2 }, { sku = "COASTER", quantity = 4 }]
"#;
    let app = stocksync::app::App::start(config(dir.path(), &shop.base_url(), bundles))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    // MUG 9 at WH-1, COASTER 13 at WH-1 and 30 at WH-2 (but no mugs there).
    post(
        &client,
        &base,
        json!([
            receipt("MUG", "r1", "WH-1", 9),
            receipt("COASTER", "r2", "WH-1", 13),
            receipt("COASTER", "r3", "WH-2", 30),
        ]),
    )
    .await;
    // MUG-SET per location: WH-1 min(9/2, 13/4) = 3; WH-2 min(0, 30/4) = 0 → 3.
    // GIFT-BOX = MUG 2 + COASTER 6 per box: WH-1 min(9/2, 13/6) = 2 → 2.
    wait_for_level(&shop, 3, 3).await;
    wait_for_level(&shop, 4, 2).await;
    // A coaster sale at WH-1 lowers both bundles without any movement on them.
    post(&client, &base, json!({"schema_version": 1, "sku": "COASTER", "idempotency_key": "s1",
        "source": "pos", "type": "sale", "reservation": "pos:1:1", "quantity": 2, "location": "WH-1"}))
    .await;
    // COASTER available at WH-1 is 11: MUG-SET min(4, 2) = 2; GIFT-BOX min(4, 1) = 1.
    wait_for_level(&shop, 3, 2).await;
    wait_for_level(&shop, 4, 1).await;
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_api_explains_ring_fences_shares_and_safety_stock_precedence() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    // A second channel ("b2b") ring-fences 4 units; "web" gets 50 % of the rest with a
    // per-SKU safety stock override for MUG on web (3) over the SKU-wide one (1).
    let mut config = config(
        dir.path(),
        &shop.base_url(),
        r#"
[[sku_rules]]
sku = "MUG"
safety_stock = 1
[[sku_rules]]
sku = "MUG"
channel = "web"
safety_stock = 3
"#,
    );
    let mut b2b = config.channels[0].clone();
    b2b.id = "b2b".to_owned();
    b2b.locations = vec!["WH-1".into()];
    b2b.allocation = stocksync::domain::Allocation::RingFenced { quantity: 4 };
    config.channels[0].allocation = stocksync::domain::Allocation::Share { percent: 50 };
    config.channels.insert(0, b2b);
    config.validate().unwrap();
    let app = stocksync::app::App::start(config).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    post(
        &client,
        &base,
        json!([
            receipt("MUG", "r1", "WH-1", 10),
            receipt("MUG", "r2", "WH-2", 6)
        ]),
    )
    .await;
    let view: Value = client
        .get(format!("{base}/api/v1/stock/MUG"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channels = view["channels"].as_array().unwrap();
    let b2b = channels.iter().find(|c| c["channel"] == "b2b").unwrap();
    let web = channels.iter().find(|c| c["channel"] == "web").unwrap();
    // b2b: 4 fenced, minus the SKU-wide safety stock 1 → 3.
    assert_eq!(b2b["atp"], 3, "{b2b}");
    // web: pool 16 − 4 fenced = 12; 50 % → 6; minus its own override 3 → 3.
    assert_eq!(web["explanation"]["fenced_for_others"], 4, "{web}");
    assert_eq!(web["explanation"]["allocated"], 6, "{web}");
    assert_eq!(web["explanation"]["safety_stock"], 3, "{web}");
    assert_eq!(web["atp"], 3, "{web}");
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_changed_at_runtime_take_effect_are_propagated_and_audited() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let app = stocksync::app::App::start(config(dir.path(), &shop.base_url(), ""))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    post(&client, &base, json!(receipt("MUG", "r1", "WH-1", 10))).await;
    wait_for_level(&shop, 1, 10).await;

    // A bad change (a share over 100 % and an unknown channel) is refused as a whole.
    let bad = json!({"channels": [{"id": "web", "allocation": {"kind": "share", "percent": 150}},
        {"id": "nope"}]});
    let response = client
        .put(format!("{base}/api/v1/config/rules"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["errors"].as_array().unwrap().len(),
        1,
        "unknown channel reported first: {problem}"
    );
    let bad = json!({"channels": [{"id": "web", "allocation": {"kind": "share", "percent": 150}}]});
    let response = client
        .put(format!("{base}/api/v1/config/rules"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);

    // A valid change: safety stock 3 on web. It applies at once and every SKU is re-pushed.
    let change = json!({"channels": [{"id": "web", "safety_stock": 3}]});
    let response = client
        .put(format!("{base}/api/v1/config/rules"))
        .header("x-actor", "ops@example.test")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    wait_for_level(&shop, 1, 7).await;
    let rules: Value = client
        .get(format!("{base}/api/v1/config/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rules["channels"][0]["safety_stock"], 3, "{rules}");
    let view: Value = client
        .get(format!("{base}/api/v1/stock/MUG"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["channels"][0]["explanation"]["safety_stock"], 3,
        "{view}"
    );
    let audit: Value = client
        .get(format!("{base}/api/v1/audit/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    assert!(
        // Without tokens (loopback) the actor is `local`; a header never names it.
        text.contains("rules_changed")
            && text.contains("\"local\"")
            && !text.contains("ops@example.test"),
        "{audit}"
    );
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_split_across_locations_and_prefer_one_location_for_a_whole_order() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[stock]\nmax_split_locations = 2\nprefer_single_location = true\n";
    let app = stocksync::app::App::start(config(dir.path(), &shop.base_url(), extra))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    post(
        &client,
        &base,
        json!([
            receipt("MUG", "r1", "WH-1", 3),
            receipt("MUG", "r2", "WH-2", 4),
            receipt("COASTER", "r3", "WH-1", 2),
            receipt("COASTER", "r4", "WH-2", 2),
            receipt("CARD", "r5", "WH-2", 2),
        ]),
    )
    .await;
    let levels = |view: &Value| -> Vec<(String, i64)> {
        view["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["location"].as_str().unwrap().to_owned(),
                    l["reserved"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let route = json!(["WH-1", "WH-2"]);
    // 5 mugs: no location has 5, so the hold is split 3 + 2 across at most two locations.
    let request = json!({"id": "b2b-1", "lines": [{"sku": "MUG", "quantity": 5, "route": route}]});
    let response = client
        .post(format!("{base}/api/v1/reservations"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let view: Value = client
        .get(format!("{base}/api/v1/stock/MUG"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        levels(&view),
        vec![("WH-1".to_owned(), 3), ("WH-2".to_owned(), 2)],
        "{view}"
    );
    // A coaster and a card: WH-1 would do for the coaster, but only WH-2 has both.
    let request = json!({"id": "web-2", "lines": [
        {"sku": "COASTER", "quantity": 1, "route": route},
        {"sku": "CARD", "quantity": 1, "route": route}]});
    let response = client
        .post(format!("{base}/api/v1/reservations"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let view: Value = client
        .get(format!("{base}/api/v1/stock/COASTER"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        levels(&view),
        vec![("WH-1".to_owned(), 0), ("WH-2".to_owned(), 1)],
        "{view}"
    );
    // After a restart the split is replayed exactly as it was decided.
    app.shutdown(Duration::from_secs(5)).await;
    let app = stocksync::app::App::start(config(dir.path(), &shop.base_url(), ""))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let view: Value = client
        .get(format!("{base}/api/v1/stock/MUG"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        levels(&view),
        vec![("WH-1".to_owned(), 3), ("WH-2".to_owned(), 2)],
        "{view}"
    );
    // Releasing the request releases every part.
    let response = client
        .post(format!("{base}/api/v1/reservations/b2b-1/release"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let view: Value = client
        .get(format!("{base}/api/v1/stock/MUG"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        levels(&view),
        vec![("WH-1".to_owned(), 0), ("WH-2".to_owned(), 0)],
        "{view}"
    );
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_api_shows_a_bundle_at_the_atp_pushed_for_it() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let bundles = r#"
[[bundles]]
sku = "MUG-SET"
components = [{ sku = "MUG", quantity = 2 }, { sku = "COASTER", quantity = 1 }]
"#;
    let app = stocksync::app::App::start(config(dir.path(), &shop.base_url(), bundles))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    post(
        &client,
        &base,
        json!([
            receipt("MUG", "r1", "WH-1", 30),
            receipt("COASTER", "r2", "WH-1", 25),
            receipt("MUG", "r3", "WH-2", 9),
            receipt("COASTER", "r4", "WH-2", 3),
        ]),
    )
    .await;
    // WH-1 min(30/2, 25) = 15; WH-2 min(9/2, 3) = 3 → 18 listed. A sale of 2 mugs at WH-1:
    // min(28/2, 25) = 14 → 17.
    wait_for_level(&shop, 3, 18).await;
    post(&client, &base, json!({"schema_version": 1, "sku": "MUG", "idempotency_key": "s1",
        "source": "pos", "type": "sale", "reservation": "pos:1:1", "quantity": 2, "location": "WH-1"}))
    .await;
    wait_for_level(&shop, 3, 17).await;
    let mut view = Value::Null;
    for _ in 0..200 {
        view = client
            .get(format!("{base}/api/v1/stock/MUG-SET"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["channels"][0]["last_pushed"] == 17 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(view["channels"][0]["atp"], 17, "{view}");
    assert_eq!(view["channels"][0]["last_pushed"], 17, "{view}");
    assert_eq!(
        view["locations"],
        json!([
            {"location": "WH-1", "on_hand": 15, "reserved": 1, "available": 14, "in_transit": 0, "inbound": 0},
            {"location": "WH-2", "on_hand": 3, "reserved": 0, "available": 3, "in_transit": 0, "inbound": 0},
        ])
    );
    assert_eq!(shop.level(3, SHOP_LOCATION), Some(17));
    app.shutdown(Duration::from_secs(5)).await;
}
