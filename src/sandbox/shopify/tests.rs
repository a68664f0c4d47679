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
    let (headers, _) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        headers.get("x-shopify-topic").unwrap(),
        "fulfillment_orders/order_routing_complete"
    );

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

/// The next delivery: (topic, event id, body).
async fn next_delivery(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Delivery>,
) -> (String, String, Value) {
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    (
        header("x-shopify-topic"),
        header("x-shopify-event-id"),
        serde_json::from_slice(&body).unwrap(),
    )
}

fn line(item: u64, sku: &str, quantity: u64) -> SimOrderLine {
    SimOrderLine {
        inventory_item_id: item,
        sku: sku.to_owned(),
        quantity,
    }
}

/// Order 7001 of issue 9: L1 P×3, L2 Q×2 at location 1 (P = item 1, Q = 2, R = 3).
async fn shop_with_order(
    options: ShopifySimulatorOptions,
) -> (
    ShopifySimulator,
    tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    u64,
    u64,
    u64,
) {
    let (url, mut rx) = receiver().await;
    let sim = simulator(ShopifySimulatorOptions {
        webhook_url: Some(url),
        ..options
    })
    .await;
    sim.set_level(1, 1, 50);
    sim.set_level(2, 1, 10);
    sim.set_level(3, 1, 8);
    let order = sim
        .place_order(1, &[line(1, "SKU-P", 3), line(2, "SKU-Q", 2)])
        .await
        .unwrap();
    assert_eq!(next_delivery(&mut rx).await.0, "orders/create");
    assert_eq!(
        next_delivery(&mut rx).await.0,
        "fulfillment_orders/order_routing_complete"
    );
    let lines = &order.body["line_items"];
    let (l1, l2) = (
        lines[0]["id"].as_u64().unwrap(),
        lines[1]["id"].as_u64().unwrap(),
    );
    (sim, rx, order.order_id, l1, l2)
}

fn on_hand(sim: &ShopifySimulator, item: u64) -> i64 {
    sim.levels()
        .iter()
        .find(|level| level.inventory_item_id == item && level.location_id == 1)
        .unwrap()
        .on_hand
}

#[tokio::test]
async fn an_order_edit_changes_current_quantity_and_sends_orders_edited_then_orders_updated() {
    let (sim, mut rx, order_id, l1, l2) = shop_with_order(Default::default()).await;
    let client = reqwest::Client::new();
    let edit = |body: Value| {
        let client = client.clone();
        let url = format!("{}/_sandbox/orders/{order_id}/edit", sim.base_url());
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    // v2: L1 → 1 (restock by default).
    let response = edit(json!({ "set": [{ "line_item_id": l1, "quantity": 1 }] })).await;
    assert_eq!(response.status().as_u16(), 200);
    let change: Value = response.json().await.unwrap();
    assert_eq!(change["webhooks"][0][0], "orders/edited");
    assert_eq!(change["webhooks"][1][0], "orders/updated");
    let (topic, _, edited) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/edited");
    let order_edit = &edited["order_edit"];
    assert_eq!(order_edit["order_id"], json!(order_id));
    assert_eq!(order_edit["line_items"]["additions"], json!([]));
    assert_eq!(
        order_edit["line_items"]["removals"],
        json!([{ "id": l1, "delta": 2 }])
    );
    assert!(order_edit["committed_at"].is_string());
    let (topic, _, order) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/updated");
    assert_eq!(
        order["line_items"][0]["quantity"], 3,
        "quantity stays the original"
    );
    assert_eq!(order["line_items"][0]["current_quantity"], 1);
    assert_eq!(order["line_items"][0]["fulfillable_quantity"], 1);
    assert!(order["updated_at"].as_str() >= order["created_at"].as_str());
    assert_eq!(sim.level(1, 1), Some(49));
    assert_eq!(on_hand(&sim, 1), 50);

    // v3: L2 removed; v4: L3 R×4 added (SKU remembered from the level's sku field).
    edit(json!({ "set": [{ "line_item_id": l2, "quantity": 0 }] })).await;
    let (_, _, edited) = next_delivery(&mut rx).await;
    assert_eq!(
        edited["order_edit"]["line_items"]["removals"],
        json!([{ "id": l2, "delta": 2 }])
    );
    let (_, _, order) = next_delivery(&mut rx).await;
    assert_eq!(order["line_items"][1]["current_quantity"], 0);
    assert_eq!(order["line_items"][1]["quantity"], 2);
    assert_eq!(sim.level(2, 1), Some(10));
    let response =
        edit(json!({ "add": [{ "inventory_item_id": 3, "sku": "SKU-R", "quantity": 4 }] })).await;
    assert_eq!(response.status().as_u16(), 200);
    let (_, _, edited) = next_delivery(&mut rx).await;
    let additions = &edited["order_edit"]["line_items"]["additions"];
    assert_eq!(additions[0]["delta"], 4);
    let (_, _, order) = next_delivery(&mut rx).await;
    assert_eq!(order["line_items"][2]["id"], additions[0]["id"]);
    assert_eq!(order["line_items"][2]["sku"], "SKU-R");
    assert_eq!(order["line_items"][2]["quantity"], 4);
    assert_eq!(order["line_items"][2]["current_quantity"], 4);
    assert_eq!(sim.level(3, 1), Some(4));

    // Over-committing an edit is refused as a whole, nothing sent.
    let response = edit(json!({ "set": [{ "line_item_id": l1, "quantity": 60 }] })).await;
    assert_eq!(response.status().as_u16(), 422);
    assert_eq!(sim.level(1, 1), Some(49));
    let response = edit(json!({ "set": [{ "line_item_id": 42, "quantity": 1 }] })).await;
    assert_eq!(response.status().as_u16(), 422);
    assert!(
        sim.inner.lock().edit_sessions.is_empty(),
        "failed edits leave no session"
    );
}

#[tokio::test]
async fn fulfilments_lower_fulfillable_quantity_and_edits_below_shipped_are_refused_unless_allowed()
{
    let (sim, mut rx, order_id, l1, _) = shop_with_order(ShopifySimulatorOptions {
        emit_fulfillment_webhooks: true,
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!(
            "{}/_sandbox/orders/{order_id}/fulfillments",
            sim.base_url()
        ))
        .json(&json!({ "line_items": [{ "id": l1, "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let (topic, _, fulfillment) = next_delivery(&mut rx).await;
    assert_eq!(topic, "fulfillments/create");
    assert_eq!(fulfillment["order_id"], json!(order_id));
    assert_eq!(fulfillment["status"], "success");
    assert_eq!(fulfillment["location_id"], 1);
    assert_eq!(fulfillment["line_items"][0]["id"], json!(l1));
    assert_eq!(fulfillment["line_items"][0]["quantity"], 2);
    let (topic, _, order) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/updated");
    assert_eq!(order["line_items"][0]["fulfillable_quantity"], 1);
    assert_eq!(order["line_items"][0]["current_quantity"], 3);
    assert_eq!(order["line_items"][0]["fulfillment_status"], "partial");
    assert_eq!(order["fulfillment_status"], "partial");
    assert_eq!((sim.level(1, 1), on_hand(&sim, 1)), (Some(47), 48));

    assert!(matches!(
        sim.fulfil(
            order_id,
            &[FulfilLineRequest {
                id: l1,
                quantity: Some(2)
            }]
        )
        .await,
        Err(SimulatorError::Invalid { .. })
    ));
    let below = OrderEditRequest {
        set: vec![EditSetLine {
            line_item_id: l1,
            quantity: 1,
            restock: true,
        }],
        add: Vec::new(),
    };
    assert!(matches!(
        sim.edit_order(order_id, &below).await,
        Err(SimulatorError::Invalid { .. })
    ));

    let (sim, mut rx, order_id, l1, _) = shop_with_order(ShopifySimulatorOptions {
        allow_edit_below_fulfilled: true,
        ..Default::default()
    })
    .await;
    let shipped = sim
        .fulfil(
            order_id,
            &[FulfilLineRequest {
                id: l1,
                quantity: Some(2),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        shipped.webhooks.len(),
        1,
        "no fulfillments/create unless enabled"
    );
    assert_eq!(next_delivery(&mut rx).await.0, "orders/updated");
    let edited = sim.edit_order(order_id, &below).await.unwrap();
    assert_eq!(
        edited.change["order_edit"]["line_items"]["removals"],
        json!([{ "id": l1, "delta": 2 }])
    );
    assert_eq!(edited.order["line_items"][0]["current_quantity"], 1);
    assert_eq!(edited.order["line_items"][0]["fulfillable_quantity"], 0);
    assert_eq!(
        (sim.level(1, 1), on_hand(&sim, 1)),
        (Some(48), 48),
        "only the one open unit is released; shipped units are not restocked"
    );
}

#[tokio::test]
async fn refunds_carry_restock_type_and_location_and_refuse_more_than_is_left() {
    let (sim, mut rx, order_id, l1, l2) = shop_with_order(Default::default()).await;
    sim.fulfil(
        order_id,
        &[FulfilLineRequest {
            id: l1,
            quantity: None,
        }],
    )
    .await
    .unwrap();
    next_delivery(&mut rx).await;
    assert_eq!((sim.level(1, 1), on_hand(&sim, 1)), (Some(47), 47));
    let client = reqwest::Client::new();
    let response = client
        .post(format!(
            "{}/_sandbox/orders/{order_id}/refunds",
            sim.base_url()
        ))
        .json(&json!({ "note": "damaged", "refund_line_items": [
            { "line_item_id": l1, "quantity": 2, "restock_type": "return", "location_id": 1 },
            { "line_item_id": l2, "quantity": 1, "restock_type": "cancel" },
        ] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let (topic, _, refund) = next_delivery(&mut rx).await;
    assert_eq!(topic, "refunds/create");
    assert_eq!(refund["order_id"], json!(order_id));
    assert_eq!(refund["restock"], true);
    let lines = &refund["refund_line_items"];
    assert_eq!(lines[0]["line_item_id"], json!(l1));
    assert_eq!(lines[0]["quantity"], 2);
    assert_eq!(lines[0]["restock_type"], "return");
    assert_eq!(lines[0]["location_id"], 1);
    assert_eq!(lines[0]["line_item"]["sku"], "SKU-P");
    assert_eq!(lines[1]["restock_type"], "cancel");
    let (topic, _, order) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/updated");
    assert_eq!(order["line_items"][0]["current_quantity"], 1);
    assert_eq!(order["line_items"][1]["current_quantity"], 1);
    assert_eq!(order["line_items"][1]["fulfillable_quantity"], 1);
    // The order embeds its refunds, as Shopify's order resource does.
    assert_eq!(order["refunds"], json!([refund]));
    assert_eq!((sim.level(1, 1), on_hand(&sim, 1)), (Some(49), 49));
    assert_eq!((sim.level(2, 1), on_hand(&sim, 2)), (Some(9), 10));

    // Only 1 shipped unit of L1 is left to return, and 1 open unit of L2 to cancel.
    for (line_item_id, restock_type) in [(l1, "return"), (l2, "cancel"), (l1, "sideways")] {
        let refused = sim
            .refund(
                order_id,
                &[RefundLineRequest {
                    line_item_id,
                    quantity: 2,
                    restock_type: restock_type.to_owned(),
                    location_id: None,
                }],
                None,
            )
            .await;
        assert!(
            matches!(refused, Err(SimulatorError::Invalid { .. })),
            "{restock_type}"
        );
    }
    let no_restock = sim
        .refund(
            order_id,
            &[RefundLineRequest {
                line_item_id: l1,
                quantity: 1,
                restock_type: "no_restock".to_owned(),
                location_id: None,
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(no_restock.change["restock"], false);
    assert_eq!(
        no_restock.order["refunds"],
        json!([refund, no_restock.change])
    );
    assert_eq!(
        no_restock.change["refund_line_items"][0]["location_id"],
        Value::Null
    );
    assert_eq!(sim.level(1, 1), Some(49));
}

#[tokio::test]
async fn graphql_order_edits_begin_stage_and_commit() {
    let (sim, mut rx, order_id, l1, _) = shop_with_order(Default::default()).await;
    let begin = json!({
        "query": "mutation orderEditBegin($id: ID!) { orderEditBegin(id: $id) { calculatedOrder { id lineItems(first: 10) { nodes { id quantity } } } userErrors { field message } } }",
        "variables": { "id": format!("gid://shopify/Order/{order_id}") },
    });
    let (_, body) = post_graphql(&sim, "2026-04", TOKEN, &begin).await;
    let calculated = body["data"]["orderEditBegin"]["calculatedOrder"].clone();
    let edit_id = calculated["id"].as_str().unwrap().to_owned();
    assert!(edit_id.starts_with("gid://shopify/CalculatedOrder/"));
    assert_eq!(calculated["lineItems"]["nodes"][0]["quantity"], 3);
    let set = json!({
        "query": "mutation s($id: ID!, $lineItemId: ID!, $quantity: Int!) { orderEditSetQuantity(id: $id, lineItemId: $lineItemId, quantity: $quantity, restock: true) { calculatedLineItem { id quantity } userErrors { field message } } }",
        "variables": { "id": edit_id, "lineItemId": format!("gid://shopify/CalculatedLineItem/{l1}"), "quantity": 1 },
    });
    let (_, body) = post_graphql(&sim, "2026-04", TOKEN, &set).await;
    assert_eq!(
        body["data"]["orderEditSetQuantity"]["userErrors"],
        json!([])
    );
    assert_eq!(
        body["data"]["orderEditSetQuantity"]["calculatedLineItem"]["quantity"],
        1
    );
    let add = json!({
        "query": "mutation a($id: ID!, $variantId: ID!) { orderEditAddVariant(id: $id, variantId: $variantId, quantity: 2) { calculatedLineItem { id } userErrors { field message } } }",
        "variables": { "id": edit_id, "variantId": "gid://shopify/ProductVariant/2" },
    });
    let (_, body) = post_graphql(&sim, "2026-04", TOKEN, &add).await;
    assert_eq!(body["data"]["orderEditAddVariant"]["userErrors"], json!([]));
    let unknown = json!({
        "query": "mutation a($id: ID!) { orderEditAddVariant(id: $id, variantId: \"gid://shopify/ProductVariant/77\", quantity: 1) { userErrors { field message } } }",
        "variables": { "id": edit_id },
    });
    let (_, body) = post_graphql(&sim, "2026-04", TOKEN, &unknown).await;
    assert_eq!(
        body["data"]["orderEditAddVariant"]["userErrors"][0]["field"],
        json!(["variantId"])
    );
    assert_eq!(
        sim.level(1, 1),
        Some(47),
        "nothing changes before the commit"
    );
    let commit = json!({
        "query": "mutation c($id: ID!) { orderEditCommit(id: $id, notifyCustomer: false) { order { id } userErrors { field message } } }",
        "variables": { "id": edit_id },
    });
    let (_, body) = post_graphql(&sim, "2026-04", TOKEN, &commit).await;
    assert_eq!(
        body["data"]["orderEditCommit"]["order"]["id"],
        json!(format!("gid://shopify/Order/{order_id}"))
    );
    let (topic, _, edited) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/edited");
    assert_eq!(
        edited["order_edit"]["line_items"]["removals"],
        json!([{ "id": l1, "delta": 2 }])
    );
    assert_eq!(
        edited["order_edit"]["line_items"]["additions"][0]["delta"],
        2
    );
    let (topic, _, order) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/updated");
    assert_eq!(order["line_items"][2]["sku"], "SKU-Q");
    assert_eq!((sim.level(1, 1), sim.level(2, 1)), (Some(49), Some(6)));
    let (_, body) = post_graphql(&sim, "2026-04", TOKEN, &commit).await;
    assert_eq!(
        body["data"]["orderEditCommit"]["order"],
        Value::Null,
        "a session commits once"
    );
}

#[tokio::test]
async fn a_past_delivery_can_be_sent_again_with_the_same_body_and_event_id() {
    let (sim, mut rx, order_id, l1, _) = shop_with_order(Default::default()).await;
    let edit = OrderEditRequest {
        set: vec![EditSetLine {
            line_item_id: l1,
            quantity: 1,
            restock: true,
        }],
        add: Vec::new(),
    };
    sim.edit_order(order_id, &edit).await.unwrap();
    let (_, first_event, first_body) = next_delivery(&mut rx).await;
    next_delivery(&mut rx).await;
    let client = reqwest::Client::new();
    let log: Value = client
        .get(format!("{}/_sandbox/webhooks", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 4);
    let edited = deliveries
        .iter()
        .find(|d| d["topic"] == "orders/edited")
        .unwrap();
    assert_eq!(edited["event_id"], json!(first_event));
    assert_eq!(edited["outcome"]["status"], 200);
    let id = edited["id"].as_u64().unwrap();
    let response = client
        .post(format!(
            "{}/_sandbox/webhooks/{id}/redeliver",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (topic, event, body) = next_delivery(&mut rx).await;
    assert_eq!((topic.as_str(), event), ("orders/edited", first_event));
    assert_eq!(body, first_body);
    let missing = client
        .post(format!(
            "{}/_sandbox/webhooks/999/redeliver",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn a_cancel_carries_its_reason() {
    let (sim, mut rx, order_id, _, _) = shop_with_order(Default::default()).await;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/orders/{order_id}/cancel",
            sim.base_url()
        ))
        .json(&json!({ "restock": false, "reason": "inventory" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (topic, _, order) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/cancelled");
    assert_eq!(order["cancel_reason"], "inventory");
    assert_eq!(order["line_items"][0]["current_quantity"], 0);
    assert_eq!(
        (sim.level(1, 1), on_hand(&sim, 1)),
        (Some(47), 47),
        "not restocked"
    );
}

#[tokio::test]
async fn the_sandbox_index_lists_every_control_endpoint_from_the_route_table() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    let index: Value = reqwest::get(format!("{}/_sandbox", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let table = http::sandbox_routes();
    assert_eq!(
        crate::sandbox::index::check_table(table.endpoints()),
        Ok(())
    );
    assert_eq!(index, table.index());
    let listed: Vec<(String, String)> = index["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("POST", "/_sandbox/orders/{order_id}/edit"),
        ("POST", "/_sandbox/orders/{order_id}/fulfillments"),
        ("POST", "/_sandbox/orders/{order_id}/refunds"),
        ("POST", "/_sandbox/webhooks/{delivery_id}/redeliver"),
        ("GET", "/_sandbox/levels"),
    ] {
        assert!(
            listed.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?}"
        );
    }
    for (method, path) in &listed {
        if method == "GET" && !path.contains('{') {
            let status = reqwest::get(format!("{}{path}", sim.base_url()))
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 200, "{path}");
        }
    }
}

/// Two locations: A (1) and B (2).
const A: u64 = 1;
const B: u64 = 2;

/// A shop with TEE-M (item 1) stocked at A (10) and B (6), webhooks to a receiver.
async fn two_location_shop(
    options: ShopifySimulatorOptions,
) -> (
    ShopifySimulator,
    tokio::sync::mpsc::UnboundedReceiver<Delivery>,
) {
    let (url, rx) = receiver().await;
    let sim = simulator(ShopifySimulatorOptions {
        webhook_url: Some(url),
        ..options
    })
    .await;
    sim.set_level(1, A, 10);
    sim.set_level(1, B, 6);
    (sim, rx)
}

/// (available, on_hand) of item 1 at `location`.
fn tee(sim: &ShopifySimulator, location: u64) -> (i64, i64) {
    let level = sim
        .levels()
        .into_iter()
        .find(|level| level.inventory_item_id == 1 && level.location_id == location)
        .unwrap();
    (level.available, level.on_hand)
}

/// The GraphQL `fulfillmentOrder(id:)` answer for `id` (a GID).
async fn query_fulfillment_order(sim: &ShopifySimulator, id: &str) -> Value {
    let query = json!({
        "query": "query FO($id: ID!) { fulfillmentOrder(id: $id) { id status updatedAt order { id legacyResourceId } assignedLocation { location { id legacyResourceId } } lineItems(first: 50) { nodes { id totalQuantity remainingQuantity lineItem { id sku quantity } } } } }",
        "variables": { "id": id },
    });
    let (status, body) = post_graphql(sim, "2026-04", TOKEN, &query).await;
    assert_eq!(status, 200);
    body
}

/// Topics of the delivery log, oldest first.
fn logged_topics(sim: &ShopifySimulator) -> Vec<String> {
    sim.deliveries().into_iter().map(|d| d.topic).collect()
}

#[tokio::test]
async fn a_web_order_gets_a_fulfillment_order_routed_after_orders_create_and_readable_over_graphql()
{
    let (sim, mut rx) = two_location_shop(Default::default()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/_sandbox/orders", sim.base_url()))
        .json(&json!({ "location_id": A, "line_items": [{ "inventory_item_id": 1, "sku": "TEE-M", "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let placed: Value = response.json().await.unwrap();
    let order_id = placed["order_id"].as_u64().unwrap();
    let fo_id = placed["fulfillment_order_id"].as_u64().unwrap();
    assert_eq!(fo_id, 7_700_000_001);
    assert_eq!(tee(&sim, A), (8, 10), "committed at A");
    assert_eq!(tee(&sim, B), (6, 6));

    let (topic, _, order) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/create");
    assert_eq!(order["source_name"], "web");
    assert_eq!(order["location_id"], Value::Null);
    let (topic, _, routed) = next_delivery(&mut rx).await;
    assert_eq!(topic, "fulfillment_orders/order_routing_complete");
    assert_eq!(
        routed,
        json!({ "fulfillment_order": {
            "id": format!("gid://shopify/FulfillmentOrder/{fo_id}"),
            "status": "open",
        } })
    );
    assert_eq!(
        logged_topics(&sim),
        ["orders/create", "fulfillment_orders/order_routing_complete"]
    );

    let body =
        query_fulfillment_order(&sim, &format!("gid://shopify/FulfillmentOrder/{fo_id}")).await;
    let fo = &body["data"]["fulfillmentOrder"];
    assert_eq!(fo["id"], format!("gid://shopify/FulfillmentOrder/{fo_id}"));
    assert_eq!(fo["status"], "OPEN");
    assert!(fo["updatedAt"].as_str().unwrap().ends_with('Z'), "{fo}");
    assert_eq!(
        fo["order"],
        json!({ "id": format!("gid://shopify/Order/{order_id}"), "legacyResourceId": order_id.to_string() })
    );
    assert_eq!(
        fo["assignedLocation"]["location"],
        json!({ "id": "gid://shopify/Location/1", "legacyResourceId": "1" })
    );
    let line_id = order["line_items"][0]["id"].as_u64().unwrap();
    assert_eq!(
        fo["lineItems"]["nodes"],
        json!([{
            "id": format!("gid://shopify/FulfillmentOrderLineItem/{}", fo_id * 1000 + 1),
            "totalQuantity": 2,
            "remainingQuantity": 2,
            "lineItem": { "id": format!("gid://shopify/LineItem/{line_id}"), "sku": "TEE-M", "quantity": 2, "currentQuantity": 2 },
        }])
    );
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 2.0);
    assert_eq!(body["extensions"]["cost"]["actualQueryCost"], 2.0);

    // The order's fulfillment orders, as the orders poller reads them back.
    let query = json!({
        "query": crate::ingest::shopify::fulfillment::ORDER_FULFILLMENT_ORDERS_QUERY,
        "variables": { "id": format!("gid://shopify/Order/{order_id}") },
    });
    let (status, by_order) = post_graphql(&sim, "2026-04", TOKEN, &query).await;
    assert_eq!(status, 200);
    assert_eq!(
        by_order["data"]["order"]["fulfillmentOrders"]["nodes"],
        json!([fo]),
        "{by_order}"
    );
    let (_, no_order) = post_graphql(
        &sim,
        "2026-04",
        TOKEN,
        &json!({ "query": crate::ingest::shopify::fulfillment::ORDER_FULFILLMENT_ORDERS_QUERY,
                 "variables": { "id": "gid://shopify/Order/1" } }),
    )
    .await;
    assert_eq!(no_order["data"], json!({ "order": null }));

    let unknown = query_fulfillment_order(&sim, "gid://shopify/FulfillmentOrder/42").await;
    assert_eq!(unknown["data"], json!({ "fulfillmentOrder": null }));
    let typed = sim.fulfillment_orders(order_id);
    assert_eq!(typed.len(), 1);
    assert_eq!(
        (typed[0].id, typed[0].status, typed[0].assigned_location_id),
        (fo_id, FulfillmentOrderStatus::Open, A)
    );
    let listed: Value = reqwest::get(format!(
        "{}/_sandbox/orders/{order_id}/fulfillment_orders",
        sim.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(listed["fulfillment_orders"][0]["status"], "OPEN");
    assert_eq!(
        listed["fulfillment_orders"][0]["line_items"][0]["remaining_quantity"],
        2
    );
}

#[tokio::test]
async fn moving_a_fulfillment_order_moves_the_committed_units_and_later_fulfilments_ship_from_there()
 {
    let (sim, _rx) = two_location_shop(ShopifySimulatorOptions {
        emit_inventory_level_updates: true,
        ..Default::default()
    })
    .await;
    let placed = sim.place_order(A, &[line(1, "TEE-M", 2)]).await.unwrap();
    let fo_id = placed.fulfillment_order_id;
    assert_eq!(tee(&sim, A), (8, 10));
    let client = reqwest::Client::new();
    let move_to = |location: u64| {
        let client = client.clone();
        let url = format!(
            "{}/_sandbox/fulfillment_orders/{fo_id}/move",
            sim.base_url()
        );
        async move {
            client
                .post(url)
                .json(&json!({ "new_location_id": location }))
                .send()
                .await
                .unwrap()
        }
    };
    let response = move_to(B).await;
    assert_eq!(response.status().as_u16(), 200);
    let moved: Value = response.json().await.unwrap();
    assert_eq!(
        (&moved["from_location_id"], &moved["to_location_id"]),
        (&json!(A), &json!(B))
    );
    assert_eq!(moved["order_id"], json!(placed.order_id));
    assert_eq!(moved["webhook"]["status"], 200);
    assert_eq!(tee(&sim, A), (10, 10), "A's committed units are released");
    assert_eq!(tee(&sim, B), (4, 6), "and committed at B");

    let body =
        query_fulfillment_order(&sim, &format!("gid://shopify/FulfillmentOrder/{fo_id}")).await;
    let fo = &body["data"]["fulfillmentOrder"];
    assert_eq!(
        fo["assignedLocation"]["location"]["id"],
        "gid://shopify/Location/2"
    );
    assert_eq!(fo["status"], "OPEN");
    assert_eq!(fo["lineItems"]["nodes"][0]["remainingQuantity"], 2);

    let fo_gid = format!("gid://shopify/FulfillmentOrder/{fo_id}");
    let log = sim.deliveries();
    let moved_delivery = log
        .iter()
        .find(|d| d.topic == "fulfillment_orders/moved")
        .unwrap();
    assert_eq!(
        moved_delivery.body,
        json!({
            "original_fulfillment_order": { "id": fo_gid, "status": "open", "assigned_location_id": "gid://shopify/Location/2" },
            "moved_fulfillment_order": { "id": fo_gid, "status": "open", "assigned_location_id": "gid://shopify/Location/2" },
            "destination_location_id": "gid://shopify/Location/2",
            "fulfillment_order_line_items_requested": [],
            "source_location": { "id": "gid://shopify/Location/1" },
        })
    );
    // Then inventory_levels/update for both changed levels (delivered in the background).
    let moved_at = moved_delivery.id;
    let expected = [(Some(A), Some(10)), (Some(B), Some(4))];
    let mut updated = Vec::new();
    for _ in 0..100 {
        updated = sim
            .deliveries()
            .into_iter()
            .filter(|d| d.id > moved_at && d.topic == "inventory_levels/update")
            .map(|d| (d.body["location_id"].as_u64(), d.body["available"].as_i64()))
            .collect();
        if expected.iter().all(|level| updated.contains(level)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        expected.iter().all(|level| updated.contains(level)),
        "{updated:?}"
    );

    // Refusals: the same location (HTTP 422), a location without the item, an unknown FO.
    assert_eq!(move_to(B).await.status().as_u16(), 422);
    assert_eq!(
        sim.move_fulfillment_order(fo_id, 3).await.unwrap_err(),
        SimulatorError::UnknownLevel {
            inventory_item_id: 1,
            location_id: 3
        }
    );
    assert_eq!(
        sim.move_fulfillment_order(42, A).await.unwrap_err(),
        SimulatorError::UnknownFulfillmentOrder {
            fulfillment_order_id: 42
        }
    );
    let unknown = client
        .post(format!(
            "{}/_sandbox/fulfillment_orders/42/move",
            sim.base_url()
        ))
        .json(&json!({ "new_location_id": A }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(
        (tee(&sim, A), tee(&sim, B)),
        ((10, 10), (4, 6)),
        "refusals change nothing"
    );

    // A fulfilment now ships from B and closes the FO, which can no longer move.
    let shipped = sim.fulfil(placed.order_id, &[]).await.unwrap();
    assert_eq!(shipped.change["location_id"], json!(B));
    assert_eq!(tee(&sim, B), (4, 4), "the units leave B's on-hand");
    assert_eq!(tee(&sim, A), (10, 10));
    assert_eq!(
        sim.fulfillment_orders(placed.order_id)[0].status,
        FulfillmentOrderStatus::Closed
    );
    let body = query_fulfillment_order(&sim, &fo_gid).await;
    assert_eq!(body["data"]["fulfillmentOrder"]["status"], "CLOSED");
    assert_eq!(
        body["data"]["fulfillmentOrder"]["lineItems"]["nodes"][0]["remainingQuantity"],
        0
    );
    let closed = sim.move_fulfillment_order(fo_id, A).await;
    assert!(
        matches!(&closed, Err(SimulatorError::Invalid { message }) if message.contains("closed")),
        "{closed:?}"
    );
    assert_eq!(tee(&sim, A), (10, 10));
}

#[tokio::test]
async fn a_pos_order_takes_units_off_the_store_shelf_at_once_and_sends_only_orders_create() {
    let (sim, mut rx) = two_location_shop(Default::default()).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/_sandbox/orders", sim.base_url()))
        .json(&json!({ "location_id": B, "source_name": "pos", "line_items": [{ "inventory_item_id": 1, "sku": "TEE-M", "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let placed: Value = response.json().await.unwrap();
    assert_eq!(tee(&sim, B), (4, 4), "on-hand and available drop at once");
    assert_eq!(tee(&sim, A), (10, 10));
    let (topic, _, order) = next_delivery(&mut rx).await;
    assert_eq!(topic, "orders/create");
    assert_eq!(order["source_name"], "pos");
    assert_eq!(order["location_id"], json!(B));
    assert_eq!(order["fulfillment_status"], "fulfilled");
    assert_eq!(order["line_items"][0]["fulfillable_quantity"], 0);
    assert_eq!(order, placed["body"]);
    assert_eq!(
        logged_topics(&sim),
        ["orders/create"],
        "no fulfillment-order webhooks"
    );

    let order_id = placed["order_id"].as_u64().unwrap();
    let fo = &sim.fulfillment_orders(order_id)[0];
    assert_eq!(
        (
            fo.status,
            fo.assigned_location_id,
            fo.line_items[0].remaining_quantity
        ),
        (FulfillmentOrderStatus::Closed, B, 0)
    );
    // deny_oversell refuses a POS sale beyond what is available, like a web order.
    assert_eq!(
        sim.place_pos_order(B, &[line(1, "TEE-M", 5)])
            .await
            .unwrap_err(),
        SimulatorError::InsufficientStock {
            inventory_item_id: 1,
            location_id: B,
            available: 4,
            requested: 5
        }
    );
    let direct = sim
        .place_pos_order(B, &[line(1, "TEE-M", 4)])
        .await
        .unwrap();
    assert_eq!(direct.body["source_name"], "pos");
    assert_eq!(tee(&sim, B), (0, 0));
    let unknown_source = client
        .post(format!("{}/_sandbox/orders", sim.base_url()))
        .json(&json!({ "location_id": A, "source_name": "mail", "line_items": [{ "inventory_item_id": 1, "sku": "TEE-M", "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_source.status().as_u16(), 422);
    assert_eq!(tee(&sim, A), (10, 10));
    assert_eq!(logged_topics(&sim), ["orders/create", "orders/create"]);
}

#[tokio::test]
async fn a_return_restocks_at_the_refund_lines_location_not_the_orders() {
    let (sim, mut rx) = two_location_shop(Default::default()).await;
    let placed = sim.place_order(B, &[line(1, "TEE-M", 3)]).await.unwrap();
    let line_id = placed.body["line_items"][0]["id"].as_u64().unwrap();
    sim.fulfil(
        placed.order_id,
        &[FulfilLineRequest {
            id: line_id,
            quantity: Some(2),
        }],
    )
    .await
    .unwrap();
    assert_eq!(tee(&sim, B), (3, 4), "one unit still committed at B");
    for _ in 0..3 {
        next_delivery(&mut rx).await; // orders/create, routing complete, orders/updated
    }
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/orders/{}/refunds",
            sim.base_url(),
            placed.order_id
        ))
        .json(&json!({ "refund_line_items": [
            { "line_item_id": line_id, "quantity": 1, "restock_type": "return", "location_id": A },
            { "line_item_id": line_id, "quantity": 1, "restock_type": "cancel", "location_id": A },
        ] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let (topic, _, refund) = next_delivery(&mut rx).await;
    assert_eq!(topic, "refunds/create");
    let lines = &refund["refund_line_items"];
    assert_eq!(
        (&lines[0]["restock_type"], &lines[0]["location_id"]),
        (&json!("return"), &json!(A))
    );
    assert_eq!(
        (&lines[1]["restock_type"], &lines[1]["location_id"]),
        (&json!("cancel"), &json!(A))
    );
    assert_eq!(tee(&sim, A), (12, 12), "both units are restocked at A");
    assert_eq!(
        tee(&sim, B),
        (3, 3),
        "B only loses the unit that was committed there"
    );
    assert_eq!(
        sim.fulfillment_orders(placed.order_id)[0].status,
        FulfillmentOrderStatus::Closed,
        "nothing is left to ship"
    );
}

#[tokio::test]
async fn cancelling_an_order_cancels_its_open_fulfillment_order() {
    let (sim, _rx) = two_location_shop(Default::default()).await;
    let placed = sim.place_order(A, &[line(1, "TEE-M", 2)]).await.unwrap();
    sim.cancel_order(placed.order_id, true).await.unwrap();
    assert_eq!(tee(&sim, A), (10, 10));
    let fo = &sim.fulfillment_orders(placed.order_id)[0];
    assert_eq!(
        (fo.status, fo.line_items[0].remaining_quantity),
        (FulfillmentOrderStatus::Cancelled, 0)
    );
    let body =
        query_fulfillment_order(&sim, &format!("gid://shopify/FulfillmentOrder/{}", fo.id)).await;
    assert_eq!(body["data"]["fulfillmentOrder"]["status"], "CANCELLED");
    let refused = sim.move_fulfillment_order(fo.id, B).await;
    assert!(
        matches!(&refused, Err(SimulatorError::Invalid { message }) if message.contains("cancelled")),
        "{refused:?}"
    );
    assert_eq!(tee(&sim, B), (6, 6));
    // A POS order's fulfillment order is closed and stays closed when the order is cancelled.
    let pos = sim
        .place_pos_order(B, &[line(1, "TEE-M", 1)])
        .await
        .unwrap();
    sim.cancel_order(pos.order_id, true).await.unwrap();
    assert_eq!(
        sim.fulfillment_orders(pos.order_id)[0].status,
        FulfillmentOrderStatus::Closed
    );
}
