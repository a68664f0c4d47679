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
