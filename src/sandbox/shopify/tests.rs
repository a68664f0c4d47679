//! The simulator against PLATFORMS.md §1, over real HTTP on 127.0.0.1:0.

use super::*;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "shpat_sandbox_token";

async fn simulator(options: ShopifySimulatorOptions) -> ShopifySimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(options, listener).await.unwrap()
}

fn mutation_body(quantities: Value, key: Option<&str>) -> Value {
    let directive = if key.is_some() {
        " @idempotent(key: $key)"
    } else {
        ""
    };
    json!({
        "query": format!(
            "mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {{ inventorySetQuantities(input: $input){directive} {{ inventoryAdjustmentGroup {{ id }} userErrors {{ code field message }} }} }}"
        ),
        "variables": {
            "key": key,
            "input": { "name": "available", "reason": "correction", "quantities": quantities },
        },
    })
}

fn quantity(item: u64, location: u64, quantity: i64, change_from: Option<i64>) -> Value {
    json!({
        "inventoryItemId": format!("gid://shopify/InventoryItem/{item}"),
        "locationId": format!("gid://shopify/Location/{location}"),
        "quantity": quantity,
        "changeFromQuantity": change_from,
    })
}

async fn post_graphql(
    sim: &ShopifySimulator,
    version: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/admin/api/{version}/graphql.json",
            sim.base_url()
        ))
        .header("X-Shopify-Access-Token", token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_set_applies_and_reports_the_cost_of_every_call() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(10, 1, 5);
    let (status, body) = post_graphql(
        &sim,
        "2026-04",
        TOKEN,
        &mutation_body(json!([quantity(10, 1, 8, Some(5))]), Some("k1")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["inventorySetQuantities"]["userErrors"],
        json!([])
    );
    assert_eq!(sim.level(10, 1), Some(8));
    let throttle = &body["extensions"]["cost"]["throttleStatus"];
    assert_eq!(throttle["maximumAvailable"], json!(1000.0));
    assert!(throttle["currentlyAvailable"].as_f64().unwrap() <= 990.0);
    assert_eq!(sim.counters().mutations_applied, 1);
}

#[tokio::test]
async fn a_stale_change_from_quantity_is_a_user_error_naming_the_index_and_nothing_applies() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(10, 1, 5);
    sim.set_level(11, 1, 5);
    let quantities = json!([quantity(10, 1, 9, Some(5)), quantity(11, 1, 9, Some(4))]);
    let (status, body) = post_graphql(
        &sim,
        "2026-04",
        TOKEN,
        &mutation_body(quantities, Some("k2")),
    )
    .await;
    assert_eq!(status, 200, "a CAS mismatch is not an HTTP error");
    let errors = &body["data"]["inventorySetQuantities"]["userErrors"];
    assert_eq!(errors[0]["code"], "CHANGE_FROM_QUANTITY_STALE");
    assert_eq!(
        errors[0]["field"],
        json!(["input", "quantities", "1", "changeFromQuantity"])
    );
    assert_eq!(sim.level(10, 1), Some(5), "the mutation is all-or-nothing");
    assert_eq!(sim.counters().cas_stale, 1);
}

#[tokio::test]
async fn version_2026_04_requires_change_from_quantity_and_the_idempotent_directive() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(10, 1, 5);
    let (_, body) = post_graphql(
        &sim,
        "2026-04",
        TOKEN,
        &mutation_body(json!([quantity(10, 1, 9, None)]), None),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("@idempotent"),
        "{body}"
    );
    let mut without_change_from = quantity(10, 1, 9, None);
    without_change_from
        .as_object_mut()
        .unwrap()
        .remove("changeFromQuantity");
    let (_, body) = post_graphql(
        &sim,
        "2026-04",
        TOKEN,
        &mutation_body(json!([without_change_from.clone()]), Some("k3")),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changeFromQuantity"),
        "{body}"
    );
    assert_eq!(sim.level(10, 1), Some(5));
    // 2026-01: the key is optional and an omitted changeFromQuantity means no check.
    let (_, body) = post_graphql(
        &sim,
        "2026-01",
        TOKEN,
        &mutation_body(json!([without_change_from]), None),
    )
    .await;
    assert_eq!(
        body["data"]["inventorySetQuantities"]["userErrors"],
        json!([]),
        "{body}"
    );
    assert_eq!(sim.level(10, 1), Some(9));
}

#[tokio::test]
async fn a_replayed_idempotency_key_returns_the_original_result() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(10, 1, 5);
    let body = mutation_body(json!([quantity(10, 1, 7, Some(5))]), Some("same-key"));
    let (_, first) = post_graphql(&sim, "2026-04", TOKEN, &body).await;
    let (_, second) = post_graphql(&sim, "2026-04", TOKEN, &body).await;
    assert_eq!(
        first["data"], second["data"],
        "the replay returns the original result, not a CAS error"
    );
    assert_eq!(sim.counters().idempotent_replays, 1);
    assert_eq!(sim.counters().mutations_applied, 1);
    let other = mutation_body(json!([quantity(10, 1, 3, Some(7))]), Some("same-key"));
    let (_, mismatch) = post_graphql(&sim, "2026-04", TOKEN, &other).await;
    assert_eq!(
        mismatch["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    );
}

#[tokio::test]
async fn a_wrong_token_gets_401() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    let (status, _) = post_graphql(
        &sim,
        "2026-04",
        "wrong",
        &mutation_body(json!([]), Some("k")),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(sim.counters().unauthorized, 1);
}

#[tokio::test]
async fn more_than_250_quantities_are_refused_as_a_whole() {
    let sim = simulator(ShopifySimulatorOptions {
        auto_create_levels: true,
        ..Default::default()
    })
    .await;
    let quantities: Vec<Value> = (0..251).map(|item| quantity(item, 1, 1, None)).collect();
    let (_, body) = post_graphql(
        &sim,
        "2026-04",
        TOKEN,
        &mutation_body(json!(quantities), Some("big")),
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "MAX_INPUT_SIZE_EXCEEDED"
    );
    assert!(sim.levels().is_empty());
}

#[tokio::test]
async fn non_mutable_and_unstocked_items_are_user_errors() {
    let sim = simulator(ShopifySimulatorOptions {
        non_mutable_items: vec![20],
        ..Default::default()
    })
    .await;
    sim.set_level(20, 1, 1);
    let quantities = json!([quantity(20, 1, 2, None), quantity(21, 1, 2, None)]);
    let (_, body) = post_graphql(
        &sim,
        "2026-04",
        TOKEN,
        &mutation_body(quantities, Some("nm")),
    )
    .await;
    let errors = &body["data"]["inventorySetQuantities"]["userErrors"];
    assert_eq!(errors[0]["code"], "NON_MUTABLE_INVENTORY_ITEM");
    assert_eq!(errors[1]["code"], "ITEM_NOT_STOCKED_AT_LOCATION");
    assert_eq!(errors[1]["field"][2], "1");
}

#[tokio::test]
async fn graphql_throttles_when_the_cost_bucket_is_empty_with_a_configurable_status() {
    for throttle_status in [200_u16, 429] {
        let sim = simulator(ShopifySimulatorOptions {
            graphql_bucket_size: 20.0,
            graphql_points_per_sec: 0.001,
            throttle_status,
            ..Default::default()
        })
        .await;
        sim.set_level(10, 1, 0);
        let mut statuses = Vec::new();
        let mut last = Value::Null;
        for attempt in 0..3 {
            let body = mutation_body(
                json!([quantity(10, 1, attempt, None)]),
                Some(&format!("t{attempt}")),
            );
            let (status, answer) = post_graphql(&sim, "2026-04", TOKEN, &body).await;
            statuses.push(status);
            last = answer;
        }
        assert_eq!(statuses, vec![200, 200, throttle_status]);
        assert_eq!(last["errors"][0]["extensions"]["code"], "THROTTLED");
        assert_eq!(last["extensions"]["cost"]["actualQueryCost"], Value::Null);
        assert_eq!(sim.counters().throttled, 1);
    }
}

#[tokio::test]
async fn rest_reports_the_call_limit_and_answers_429_with_retry_after() {
    let sim = simulator(ShopifySimulatorOptions {
        rest_bucket_size: 2,
        rest_leak_per_sec: 0.5,
        ..Default::default()
    })
    .await;
    sim.set_level(10, 1, 0);
    let client = reqwest::Client::new();
    let url = format!(
        "{}/admin/api/2026-04/inventory_levels/set.json",
        sim.base_url()
    );
    let mut answers = Vec::new();
    for available in 0..3 {
        let response = client
            .post(&url)
            .header("X-Shopify-Access-Token", TOKEN)
            .json(&json!({ "location_id": 1, "inventory_item_id": 10, "available": available }))
            .send()
            .await
            .unwrap();
        let limit = response
            .headers()
            .get("x-shopify-shop-api-call-limit")
            .map(|v| v.to_str().unwrap().to_owned());
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        answers.push((response.status().as_u16(), limit, retry_after));
    }
    assert_eq!(answers[0], (200, Some("1/2".to_owned()), None));
    assert_eq!(answers[2].0, 429);
    assert_eq!(answers[2].2.as_deref(), Some("2.0"));
    assert_eq!(sim.level(10, 1), Some(1));
    let response = client
        .get(format!(
            "{}/admin/api/2026-04/inventory_levels.json?inventory_item_ids=10",
            sim.base_url()
        ))
        .header("X-Shopify-Access-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        sim.counters().retry_after_violations,
        1,
        "asking again before Retry-After is counted"
    );
}

type Delivery = (axum::http::HeaderMap, Bytes);

/// A webhook receiver on 127.0.0.1:0: its URL and the deliveries it gets.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
    let app = axum::Router::new().route(
        "/hooks",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hooks"), rx)
}

#[tokio::test]
async fn orders_decrement_available_and_send_a_signed_webhook() {
    let (url, mut rx) = receiver().await;
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_webhook_url(Some(url));
    sim.set_level(10, 1, 5);
    let line = SimOrderLine {
        inventory_item_id: 10,
        sku: "SKU-10".to_owned(),
        quantity: 2,
    };
    let order = sim
        .place_order(1, std::slice::from_ref(&line))
        .await
        .unwrap();
    assert_eq!(order.webhook, WebhookOutcome::Answered { status: 200 });
    assert_eq!(sim.level(10, 1), Some(3));
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("x-shopify-topic"), "orders/create");
    assert!(verify_webhook_signature(
        "sandbox_webhook_secret",
        &body,
        &header("x-shopify-hmac-sha256")
    ));
    for name in [
        "x-shopify-shop-domain",
        "x-shopify-api-version",
        "x-shopify-webhook-id",
        "x-shopify-event-id",
        "x-shopify-triggered-at",
    ] {
        assert!(headers.contains_key(name), "missing {name}");
    }
    let order_json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(order_json["line_items"][0]["sku"], "SKU-10");
    assert_eq!(order_json["line_items"][0]["quantity"], 2);
    assert_eq!(order_json["name"], order.name);

    let too_much = SimOrderLine {
        quantity: 9,
        ..line
    };
    assert!(matches!(
        sim.place_order(1, &[too_much]).await,
        Err(SimulatorError::InsufficientStock { .. })
    ));
    sim.cancel_order(order.order_id, true).await.unwrap();
    assert_eq!(sim.level(10, 1), Some(5));
    let (headers, _) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(headers.get("x-shopify-topic").unwrap(), "orders/cancelled");
}

#[tokio::test]
async fn the_sandbox_endpoints_show_and_change_levels() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/_sandbox/levels", sim.base_url()))
        .json(&json!({ "inventory_item_id": 3, "location_id": 1, "available": 12 }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let response = client
        .post(format!("{}/_sandbox/orders", sim.base_url()))
        .json(&json!({ "line_items": [{ "inventory_item_id": 3, "sku": "S3", "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let levels: Vec<SandboxLevel> = client
        .get(format!("{}/_sandbox/levels", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(levels.len(), 1);
    assert_eq!((levels[0].inventory_item_id, levels[0].available), (3, 10));
}

#[tokio::test]
async fn every_level_change_emits_inventory_levels_update_when_enabled() {
    let (url, mut rx) = receiver().await;
    let sim = simulator(ShopifySimulatorOptions {
        emit_inventory_level_updates: true,
        webhook_url: Some(url),
        ..Default::default()
    })
    .await;
    sim.set_level(10, 1, 5);
    let (headers, _) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        headers.get("x-shopify-topic").unwrap(),
        "inventory_levels/update"
    );
    let body = mutation_body(json!([quantity(10, 1, 8, Some(5))]), Some("echo"));
    post_graphql(&sim, "2026-04", TOKEN, &body).await;
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        headers.get("x-shopify-topic").unwrap(),
        "inventory_levels/update"
    );
    let level: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            level["inventory_item_id"].as_u64(),
            level["available"].as_i64()
        ),
        (Some(10), Some(8))
    );
    assert!(
        level["admin_graphql_api_id"]
            .as_str()
            .unwrap()
            .starts_with("gid://shopify/InventoryLevel/1?")
    );
}
