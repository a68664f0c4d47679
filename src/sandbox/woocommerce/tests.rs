//! Simulator tests: the awkward parts of PLATFORMS.md §2 are reproduced.

use super::*;
use axum::extract::State as AxumState;
use axum::routing::post;
use serde_json::json;
use std::sync::Mutex as StdMutex;

async fn sim(options: WoocommerceSimulatorOptions) -> WoocommerceSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(options, listener).await.unwrap()
}

fn api(sim: &WoocommerceSimulator, path: &str) -> String {
    format!("{}/wp-json/wc/v3{path}", sim.base_url())
}

fn authed(sim: &WoocommerceSimulator, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let options = sim.options();
    request.basic_auth(&options.consumer_key, Some(&options.consumer_secret))
}

/// One received webhook: headers of interest and the body.
#[derive(Clone, Debug)]
struct Received {
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

/// A receiver on 127.0.0.1:0 answering `status` and recording every delivery.
async fn receiver(status: u16) -> (String, Arc<StdMutex<Vec<Received>>>) {
    let received: Arc<StdMutex<Vec<Received>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                move |AxumState(log): AxumState<Arc<StdMutex<Vec<Received>>>>,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| async move {
                    log.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    axum::http::StatusCode::from_u16(status).unwrap()
                },
            ),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received)
}

#[tokio::test]
async fn requests_without_credentials_get_401_and_both_auth_forms_work() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", Some(3));
    let client = reqwest::Client::new();
    let anonymous = client.get(api(&sim, "/products/10")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let basic = authed(&sim, client.get(api(&sim, "/products/10")))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let options = sim.options();
    let query = client
        .get(format!(
            "{}?consumer_key={}&consumer_secret={}",
            api(&sim, "/products/10"),
            options.consumer_key,
            options.consumer_secret
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let body: Value = query.json().await.unwrap();
    assert_eq!(body["stock_quantity"], 3);
    assert_eq!(sim.counters().unauthorized, 1);
}

#[tokio::test]
async fn stock_quantity_is_ignored_unless_manage_stock_is_true_on_that_object() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", None);
    let client = reqwest::Client::new();
    let put = |body: Value| authed(&sim, client.put(api(&sim, "/products/10"))).json(&body);
    let ignored: Value = put(json!({"stock_quantity": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ignored["manage_stock"], false);
    assert_eq!(ignored["stock_quantity"], Value::Null);
    assert_eq!(sim.stock(10, 0), None);
    let applied: Value = put(json!({"manage_stock": true, "stock_quantity": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(applied["stock_quantity"], 7);
    assert_eq!(applied["stock_status"], "instock");
    assert_eq!(sim.stock(10, 0), Some(7));
}

#[tokio::test]
async fn a_variation_with_parent_stock_sells_from_the_parent() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
    sim.set_variation(20, 21, "TEE-M", None);
    assert!(sim.set_product_stock(20, Some(5)));
    let client = reqwest::Client::new();
    let variation: Value = authed(&sim, client.get(api(&sim, "/products/20/variations/21")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(variation["manage_stock"], "parent");
    assert_eq!(variation["stock_quantity"], 5);
    let line = SimOrderLine {
        product_id: 20,
        variation_id: 21,
        quantity: 2,
    };
    sim.place_order(&[line], "processing").unwrap();
    assert_eq!(sim.stock(20, 21), Some(3));
    assert_eq!(sim.stock(20, 0), Some(3), "the parent's stock went down");
}

#[tokio::test]
async fn batches_over_the_limit_get_413_and_failed_items_come_back_inside_a_200() {
    let sim = sim(WoocommerceSimulatorOptions {
        batch_limit: 3,
        failing_items: vec![12],
        ..Default::default()
    })
    .await;
    for id in 10..14 {
        sim.set_product(id, &format!("P{id}"), Some(0));
    }
    let client = reqwest::Client::new();
    let update = |ids: &[u64]| {
        let entries: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "manage_stock": true, "stock_quantity": 4}))
            .collect();
        json!({ "update": entries })
    };
    let too_large = authed(&sim, client.post(api(&sim, "/products/batch")))
        .json(&update(&[10, 11, 13, 99]))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let error: Value = too_large.json().await.unwrap();
    assert_eq!(error["code"], "woocommerce_rest_request_entity_too_large");
    assert_eq!(
        error["message"],
        "Unable to accept more than 3 items for this request."
    );
    let answer: Value = authed(&sim, client.post(api(&sim, "/products/batch")))
        .json(&update(&[10, 12, 99]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = answer["update"].as_array().unwrap();
    assert_eq!(entries[0]["stock_quantity"], 4);
    assert_eq!(entries[1]["id"], 12);
    assert_eq!(entries[1]["error"]["data"]["status"], 400);
    assert_eq!(
        entries[2]["error"]["code"],
        "woocommerce_rest_product_invalid_id"
    );
    assert_eq!(sim.stock(10, 0), Some(4));
    assert_eq!(sim.stock(12, 0), Some(0));
    let counters = sim.counters();
    assert_eq!(counters.batches_too_large, 1);
    assert_eq!(counters.batch_items_applied, 1);
    assert_eq!(counters.batch_items_failed, 2);
}

#[tokio::test]
async fn order_statuses_reduce_and_restore_stock_like_core() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", Some(10));
    let line = SimOrderLine {
        product_id: 10,
        variation_id: 0,
        quantity: 3,
    };
    let order = sim
        .place_order(std::slice::from_ref(&line), "pending")
        .unwrap();
    assert_eq!(sim.stock(10, 0), Some(10), "pending does not reduce");
    sim.set_order_status(order.order_id, "processing").unwrap();
    assert_eq!(sim.stock(10, 0), Some(7));
    sim.set_order_status(order.order_id, "completed").unwrap();
    assert_eq!(sim.stock(10, 0), Some(7), "reduced once only");
    sim.set_order_status(order.order_id, "cancelled").unwrap();
    assert_eq!(sim.stock(10, 0), Some(10), "cancelled restores");

    let refunded = sim.place_order(&[line], "processing").unwrap();
    let line_id = refunded.line_ids[0];
    sim.refund(refunded.order_id, &[(line_id, 1)], Some(false))
        .unwrap();
    assert_eq!(sim.stock(10, 0), Some(7), "no restock without api_restock");
    sim.refund(refunded.order_id, &[(line_id, 2)], Some(true))
        .unwrap();
    assert_eq!(sim.stock(10, 0), Some(9));
    let body = sim.order(refunded.order_id).unwrap().body;
    assert_eq!(body["status"], "refunded");
    assert_eq!(body["refunds"].as_array().unwrap().len(), 2);
    let meta = &body["line_items"][0]["meta_data"];
    assert!(
        meta.as_array()
            .unwrap()
            .iter()
            .any(|m| m["key"] == "_restock_refunded_items" && m["value"] == "2"),
        "{meta}"
    );
    let oversold = SimOrderLine {
        product_id: 10,
        variation_id: 0,
        quantity: 50,
    };
    assert!(matches!(
        sim.place_order(&[oversold], "processing"),
        Err(SimulatorError::InsufficientStock { .. })
    ));
}

#[tokio::test]
async fn webhooks_are_signed_like_class_wc_webhook_and_the_ping_is_form_encoded() {
    let (url, received) = receiver(200).await;
    let sim = sim(WoocommerceSimulatorOptions {
        webhook_url: Some(url),
        ..Default::default()
    })
    .await;
    sim.set_product(10, "MUG", Some(10));
    let line = SimOrderLine {
        product_id: 10,
        variation_id: 0,
        quantity: 1,
    };
    let order = sim.place_order(&[line], "processing").unwrap();
    assert!(sim.wait_for_webhooks(Duration::from_secs(5)).await);
    let pings = sim.ping().await;
    assert_eq!(pings.len(), 2);
    assert!(pings.iter().all(|(_, answer)| answer == &Ok(200)));
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    let delivery = &received[0];
    let header = |name: &str| delivery.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("x-wc-webhook-topic"), "order.created");
    assert_eq!(header("x-wc-webhook-resource"), "order");
    assert_eq!(header("x-wc-webhook-event"), "created");
    assert_eq!(header("x-wc-webhook-id"), "11");
    assert_eq!(
        header("x-wc-webhook-source"),
        format!("{}/", sim.base_url())
    );
    assert_eq!(
        header("x-wc-webhook-signature"),
        webhook_signature(&sim.options().webhook_secret, &delivery.body)
    );
    assert_eq!(header("x-wc-webhook-delivery-id").len(), 32);
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["id"], order.order_id);
    let ping = &received[1];
    assert_eq!(ping.body, b"webhook_id=11");
    assert_eq!(
        ping.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert!(
        ping.headers
            .keys()
            .all(|name| !name.as_str().starts_with("x-wc-"))
    );
}

#[test]
fn the_delivery_id_has_second_resolution() {
    assert_eq!(
        delivery_id(11, 1_700_000_000),
        delivery_id(11, 1_700_000_000)
    );
    assert_ne!(
        delivery_id(11, 1_700_000_000),
        delivery_id(11, 1_700_000_001)
    );
    assert_ne!(
        delivery_id(11, 1_700_000_000),
        delivery_id(12, 1_700_000_000)
    );
    assert!(is_success(200) && is_success(301) && is_success(302));
    assert!(!is_success(303) && !is_success(500));
}

#[tokio::test]
async fn pending_deliveries_coalesce_and_the_payload_is_built_at_send_time() {
    let (url, received) = receiver(200).await;
    let sim = sim(WoocommerceSimulatorOptions {
        webhook_url: Some(url),
        webhook_delay_ms: 200,
        ..Default::default()
    })
    .await;
    sim.set_product(10, "MUG", Some(10));
    let line = SimOrderLine {
        product_id: 10,
        variation_id: 0,
        quantity: 1,
    };
    let order = sim.place_order(&[line], "processing").unwrap();
    sim.set_order_status(order.order_id, "on-hold").unwrap();
    sim.set_order_status(order.order_id, "cancelled").unwrap();
    assert!(sim.wait_for_webhooks(Duration::from_secs(5)).await);
    let received = received.lock().unwrap().clone();
    let updated: Vec<Value> = received
        .iter()
        .filter(|r| r.headers["x-wc-webhook-topic"] == "order.updated")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(updated.len(), 1, "the second update was coalesced");
    assert_eq!(updated[0]["status"], "cancelled", "on-hold was never seen");
    assert_eq!(sim.counters().webhooks_coalesced, 1);
    let created: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        created["status"], "cancelled",
        "built at send time, not at queue time"
    );
}

#[tokio::test]
async fn a_webhook_is_disabled_on_the_seventh_consecutive_failure_and_never_retried() {
    let (url, received) = receiver(500).await;
    let sim = sim(WoocommerceSimulatorOptions {
        webhook_url: Some(url),
        ..Default::default()
    })
    .await;
    sim.set_product(10, "MUG", Some(100));
    let line = SimOrderLine {
        product_id: 10,
        variation_id: 0,
        quantity: 1,
    };
    for _ in 0..8 {
        sim.place_order(std::slice::from_ref(&line), "processing")
            .unwrap();
        assert!(sim.wait_for_webhooks(Duration::from_secs(5)).await);
    }
    assert_eq!(
        received.lock().unwrap().len(),
        7,
        "seven attempts, no retries"
    );
    let created = &sim.webhooks()[0];
    assert_eq!(created.status, "disabled");
    assert_eq!(created.failure_count, 6);
    let counters = sim.counters();
    assert_eq!(counters.webhooks_failed, 7);
    assert_eq!(counters.webhooks_skipped_disabled, 1);
    sim.enable_webhooks();
    assert_eq!(sim.webhooks()[0].status, "active");
}

#[tokio::test]
async fn orders_can_be_polled_by_modified_date_with_injected_host_failures() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", Some(100));
    let line = SimOrderLine {
        product_id: 10,
        variation_id: 0,
        quantity: 1,
    };
    for _ in 0..3 {
        sim.place_order(std::slice::from_ref(&line), "processing")
            .unwrap();
    }
    let client = reqwest::Client::new();
    sim.inject_failures(429, 1, Some(1));
    let throttled = authed(&sim, client.get(api(&sim, "/orders")))
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    let early = authed(&sim, client.get(api(&sim, "/orders")))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 200);
    assert_eq!(sim.counters().retry_after_violations, 1);
    let page = authed(
        &sim,
        client.get(api(
            &sim,
            "/orders?modified_after=2000-01-01T00:00:00&per_page=2&page=1",
        )),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(page.headers()["x-wp-total"], "3");
    assert_eq!(page.headers()["x-wp-totalpages"], "2");
    let orders: Vec<Value> = page.json().await.unwrap();
    assert_eq!(orders.len(), 2);
    let future: Vec<Value> = authed(
        &sim,
        client.get(api(&sim, "/orders?modified_after=2999-01-01T00:00:00")),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(future.is_empty());
    assert!(sim.requests().len() >= 4);
}

fn sold(product_id: u64, quantity: u64) -> SimOrderLine {
    SimOrderLine {
        product_id,
        variation_id: 0,
        quantity,
    }
}

#[tokio::test]
async fn line_edits_adjust_reduced_stock_and_send_the_full_order_without_removed_lines() {
    let (url, received) = receiver(200).await;
    let sim = sim(WoocommerceSimulatorOptions {
        webhook_url: Some(url),
        ..Default::default()
    })
    .await;
    sim.set_product(10, "SKU-P", Some(50));
    sim.set_product(20, "SKU-Q", Some(10));
    sim.set_product(30, "SKU-R", Some(8));
    let order = sim
        .place_order(&[sold(10, 3), sold(20, 2)], "processing")
        .unwrap();
    assert!(sim.wait_for_webhooks(Duration::from_secs(5)).await);
    let created_modified = order.body["date_modified_gmt"].as_str().unwrap().to_owned();
    let (l1, l2) = (order.line_ids[0], order.line_ids[1]);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/orders/{}/lines",
            sim.base_url(),
            order.order_id
        ))
        .json(&json!({ "line_items": [
            { "id": l1, "quantity": 1 },
            { "id": l2, "quantity": 0 },
            { "product_id": 30, "quantity": 4 },
        ] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        (sim.stock(10, 0), sim.stock(20, 0), sim.stock(30, 0)),
        (Some(49), Some(10), Some(4))
    );
    assert!(sim.wait_for_webhooks(Duration::from_secs(5)).await);
    let received = received.lock().unwrap().clone();
    let updated: Value = received
        .iter()
        .rev()
        .find(|r| r.headers["x-wc-webhook-topic"] == "order.updated")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .expect("an order.updated delivery");
    let lines = updated["line_items"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "the removed line vanished: {updated}");
    assert_eq!(lines[0]["id"], json!(l1));
    assert_eq!(lines[0]["quantity"], 1);
    assert_eq!(lines[1]["sku"], "SKU-R");
    assert_eq!(lines[1]["quantity"], 4);
    assert!(updated["date_modified_gmt"].as_str().unwrap() > created_modified.as_str());

    // Raising beyond stock is refused as a whole; an unknown line too.
    let too_much = [LineChange {
        id: Some(l1),
        product_id: None,
        variation_id: 0,
        quantity: 60,
    }];
    assert!(matches!(
        sim.edit_order_lines(order.order_id, &too_much),
        Err(SimulatorError::InsufficientStock { .. })
    ));
    let unknown = [LineChange {
        id: Some(999_999),
        product_id: None,
        variation_id: 0,
        quantity: 1,
    }];
    assert!(matches!(
        sim.edit_order_lines(order.order_id, &unknown),
        Err(SimulatorError::UnknownLine { .. })
    ));
    assert_eq!(sim.stock(10, 0), Some(49));

    // A pending order has not reduced stock: its edits change no stock.
    let pending = sim.place_order(&[sold(10, 2)], "pending").unwrap();
    let raise = [LineChange {
        id: Some(pending.line_ids[0]),
        product_id: None,
        variation_id: 0,
        quantity: 5,
    }];
    let edited = sim.edit_order_lines(pending.order_id, &raise).unwrap();
    assert_eq!(edited.body["line_items"][0]["quantity"], 5);
    assert_eq!(sim.stock(10, 0), Some(49));
}

#[tokio::test]
async fn a_rest_refund_beyond_what_is_left_on_the_line_is_refused_as_woocommerce_does() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", Some(10));
    let order = sim.place_order(&[sold(10, 3)], "processing").unwrap();
    let line = order.line_ids[0];
    let url = api(&sim, &format!("/orders/{}/refunds", order.order_id));
    let client = reqwest::Client::new();
    let response = authed(&sim, client.post(&url))
        .json(&json!({ "amount": "20.00", "reason": "broken", "api_refund": false, "api_restock": true,
                       "line_items": [{ "id": line, "quantity": 2, "refund_total": 20 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let refund: Value = response.json().await.unwrap();
    assert_eq!(refund["reason"], "broken");
    assert_eq!(refund["api_restock"], true);
    assert_eq!(refund["line_items"][0]["quantity"], -2);
    assert_eq!(sim.stock(10, 0), Some(9));
    let response = authed(&sim, client.post(&url))
        .json(&json!({ "api_restock": true, "line_items": [{ "id": line, "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error,
        json!({
            "code": "woocommerce_rest_cannot_create_order_refund",
            "message": "Invalid refund amount.",
            "data": { "status": 500 },
        })
    );
    assert_eq!(sim.stock(10, 0), Some(9), "nothing restocked");
    // The sandbox endpoint refuses the same way; the last unit can still be refunded.
    let response = client
        .post(format!(
            "{}/_sandbox/orders/{}/refunds",
            sim.base_url(),
            order.order_id
        ))
        .json(&json!({ "line_items": [{ "id": line, "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    assert!(matches!(
        sim.refund(order.order_id, &[(line, 2)], Some(true)),
        Err(SimulatorError::RefundExceedsLine {
            requested: 2,
            remaining: 1,
            ..
        })
    ));
    sim.refund(order.order_id, &[(line, 1)], Some(false))
        .unwrap();
    assert_eq!(
        sim.order(order.order_id).unwrap().body["status"],
        "refunded"
    );
    let unauthenticated = client.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
}

#[tokio::test]
async fn an_order_set_to_refunded_by_hand_keeps_its_stock_reduced() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", Some(10));
    let order = sim.place_order(&[sold(10, 3)], "processing").unwrap();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/orders/{}/status",
            sim.base_url(),
            order.order_id
        ))
        .json(&json!({ "status": "refunded" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body = sim.order(order.order_id).unwrap().body;
    assert_eq!(body["status"], "refunded");
    assert_eq!(body["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(body["refunds"][0]["reason"], "Order fully refunded.");
    assert_eq!(sim.stock(10, 0), Some(7), "no restock");
    let meta = body["line_items"][0]["meta_data"].as_array().unwrap();
    assert!(
        meta.iter().all(|m| m["key"] != "_restock_refunded_items"),
        "{meta:?}"
    );
}

#[tokio::test]
async fn the_sandbox_index_lists_every_control_endpoint_from_the_route_table() {
    let sim = sim(WoocommerceSimulatorOptions::default()).await;
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
    let endpoints = index["endpoints"].as_array().unwrap();
    assert!(
        endpoints
            .iter()
            .any(|e| e["path"] == "/_sandbox/orders/{id}/lines" && e["method"] == "POST")
    );
    for endpoint in endpoints {
        let path = endpoint["path"].as_str().unwrap();
        if endpoint["method"] == "GET" && !path.contains('{') {
            let status = reqwest::get(format!("{}{path}", sim.base_url()))
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 200, "{path}");
        }
    }
}
