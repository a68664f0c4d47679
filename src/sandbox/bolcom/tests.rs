//! Behaviour tests of the bol.com simulator against PLATFORMS.md §3, over real HTTP on
//! 127.0.0.1:0.

use super::*;
use serde_json::{Value, json};

async fn sim(options: BolcomSimulatorOptions) -> BolcomSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(options, listener).await.unwrap()
}

fn offer(id: &str, sku: &str) -> SimOffer {
    SimOffer {
        offer_id: id.to_owned(),
        reference: sku.to_owned(),
        ean: format!("87100000{id}"),
        amount: 0,
    }
}

async fn token(client: &reqwest::Client, sim: &BolcomSimulator) -> String {
    let basic = BASE64.encode("sandbox-client:sandbox-secret");
    let answer: Value = client
        .post(sim.token_url())
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["expires_in"], 299);
    assert_eq!(answer["token_type"], "Bearer");
    answer["access_token"].as_str().unwrap().to_owned()
}

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

async fn put_stock(
    client: &reqwest::Client,
    sim: &BolcomSimulator,
    token: &str,
    offer: &str,
    amount: i64,
    managed: bool,
) -> reqwest::Response {
    client
        .put(format!("{}/retailer/offers/{offer}/stock", sim.base_url()))
        .bearer_auth(token)
        .header("accept", MEDIA_TYPE)
        .header("content-type", MEDIA_TYPE)
        .body(json!({"amount": amount, "managedByRetailer": managed}).to_string())
        .send()
        .await
        .unwrap()
}

/// A client without a connection pool, for paused-time tests: with no timer pending, tokio
/// cannot auto-advance the clock while a request is on the wire (a pool's 90 s idle timer
/// would be one it could jump to whenever the runtime found nothing ready).
fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Under tokio's paused clock: the update stays PENDING until exactly `process_delay_ms` has
/// passed, and its timestamps come from the injected clock.
#[tokio::test(start_paused = true)]
async fn a_stock_update_is_accepted_pending_and_applied_after_the_delay() {
    let sim = sim(BolcomSimulatorOptions {
        offers: vec![offer("o-1", "SKU-A")],
        process_delay_ms: 30,
        clock: crate::clock::TokioClock::starting_at(1_700_000_000_000),
        ..BolcomSimulatorOptions::default()
    })
    .await;
    let client = unpooled_client();
    let token = token(&client, &sim).await;
    let answer = put_stock(&client, &sim, &token, "o-1", 7, true).await;
    assert_eq!(answer.status(), 202);
    assert!(answer.headers().contains_key("x-ratelimit-remaining"));
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["eventType"], "UPDATE_OFFER_STOCK");
    assert_eq!(body["entityId"], "o-1");
    assert_eq!(body["createTimestamp"], "2023-11-14T22:13:20.000Z");
    assert_eq!(sim.offer("o-1").unwrap().amount, 0, "not applied yet");
    let id = body["processStatusId"].as_str().unwrap();
    let process_status = || async {
        client
            .get(format!("{}/shared/process-status/{id}", sim.base_url()))
            .bearer_auth(&token)
            .header("accept", MEDIA_TYPE)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    tokio::time::advance(Duration::from_millis(29)).await;
    assert_eq!(process_status().await["status"], "PENDING");
    assert_eq!(
        sim.offer("o-1").unwrap().amount,
        0,
        "not applied before the delay"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let status = process_status().await;
    assert_eq!(status["status"], "SUCCESS");
    let offer = sim.offer("o-1").unwrap();
    assert_eq!((offer.amount, offer.managed_by_retailer), (7, true));
}

#[tokio::test]
async fn missing_bearer_media_type_and_amounts_over_999_are_refused() {
    let sim = sim(BolcomSimulatorOptions {
        offers: vec![offer("o-1", "SKU-A")],
        ..BolcomSimulatorOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let no_token = put_stock(&client, &sim, "nope", "o-1", 1, true).await;
    assert_eq!(no_token.status(), 401);
    let token = token(&client, &sim).await;
    let no_media = client
        .put(format!("{}/retailer/offers/o-1/stock", sim.base_url()))
        .bearer_auth(&token)
        .json(&json!({"amount": 1, "managedByRetailer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_media.status(), 406);
    let too_many = put_stock(&client, &sim, &token, "o-1", 1000, true).await;
    assert_eq!(too_many.status(), 400);
    let body: Value = too_many.json().await.unwrap();
    assert_eq!(body["violations"][0]["name"], "amount");
    let unknown = put_stock(&client, &sim, &token, "o-404", 1, true).await;
    assert_eq!(unknown.status(), 404);
    sim.expire_tokens();
    assert_eq!(
        put_stock(&client, &sim, &token, "o-1", 1, true)
            .await
            .status(),
        401
    );
    let counters = sim.counters();
    assert_eq!(counters.unauthorized, 2);
    assert_eq!(counters.media_type_errors, 1);
    assert_eq!(counters.stock_updates_invalid, 1);
}

#[tokio::test]
async fn the_stock_endpoint_answers_429_with_retry_after_over_its_window() {
    let sim = sim(BolcomSimulatorOptions {
        offers: vec![offer("o-1", "SKU-A")],
        stock_limit: EndpointLimit {
            requests: 2,
            window_ms: 60_000,
        },
        ..BolcomSimulatorOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    for _ in 0..2 {
        assert_eq!(
            put_stock(&client, &sim, &token, "o-1", 1, true)
                .await
                .status(),
            202
        );
    }
    let throttled = put_stock(&client, &sim, &token, "o-1", 1, true).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["x-ratelimit-remaining"], "0");
    assert!(throttled.headers().contains_key("retry-after"));
    put_stock(&client, &sim, &token, "o-1", 1, true).await;
    let counters = sim.counters();
    assert_eq!(counters.throttled, 2);
    assert_eq!(counters.retry_after_violations, 1);
    assert_eq!(
        counters.overlapping_updates, 1,
        "two updates of o-1 were pending at once"
    );
}

#[tokio::test]
async fn corrected_stock_follows_managed_by_retailer() {
    let sim = sim(BolcomSimulatorOptions {
        offers: vec![offer("o-1", "SKU-A")],
        process_delay_ms: 0,
        ..BolcomSimulatorOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    sim.place_order(
        "FBR",
        &[SimOrderLine {
            offer_id: "o-1".into(),
            quantity: 2,
        }],
    )
    .unwrap();
    sim.place_order(
        "FBB",
        &[SimOrderLine {
            offer_id: "o-1".into(),
            quantity: 5,
        }],
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    put_stock(&client, &sim, &token, "o-1", 10, false).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        sim.offer("o-1").unwrap().corrected_stock,
        8,
        "false: every open FBR order"
    );
    put_stock(&client, &sim, &token, "o-1", 10, true).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        sim.offer("o-1").unwrap().corrected_stock,
        10,
        "true: only later orders"
    );
    sim.place_order(
        "FBR",
        &[SimOrderLine {
            offer_id: "o-1".into(),
            quantity: 1,
        }],
    )
    .unwrap();
    assert_eq!(sim.offer("o-1").unwrap().corrected_stock, 9);
}

#[tokio::test]
async fn orders_are_listed_by_fulfilment_method_and_cancellations_show() {
    let sim = sim(BolcomSimulatorOptions {
        offers: vec![offer("o-1", "SKU-A")],
        ..BolcomSimulatorOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    let fbr = sim
        .place_order(
            "FBR",
            &[SimOrderLine {
                offer_id: "o-1".into(),
                quantity: 2,
            }],
        )
        .unwrap();
    sim.place_order(
        "FBB",
        &[SimOrderLine {
            offer_id: "o-1".into(),
            quantity: 1,
        }],
    )
    .unwrap();
    sim.cancel_item(&fbr.order_item_ids[0], 1).unwrap();
    let get = |path: String| {
        let client = client.clone();
        let token = token.clone();
        async move {
            client
                .get(path)
                .bearer_auth(token)
                .header("accept", MEDIA_TYPE)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let list = get(format!(
        "{}/retailer/orders?fulfilment-method=FBR&status=OPEN",
        sim.base_url()
    ))
    .await;
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
    assert_eq!(list["orders"][0]["orderItems"][0]["quantityCancelled"], 1);
    let detail = get(format!(
        "{}/retailer/orders/{}",
        sim.base_url(),
        fbr.order_id
    ))
    .await;
    assert_eq!(detail["orderItems"][0]["offer"]["reference"], "SKU-A");
    assert_eq!(detail["orderItems"][0]["fulfilment"]["method"], "FBR");
    let empty = get(format!(
        "{}/retailer/orders?fulfilment-method=FBR&page=2",
        sim.base_url()
    ))
    .await;
    assert_eq!(empty, json!({}));
    sim.register_return(&fbr.order_item_ids[0], 1).unwrap();
    let returns = get(format!(
        "{}/retailer/returns?handled=false&fulfilment-method=FBR",
        sim.base_url()
    ))
    .await;
    assert_eq!(
        returns["returns"][0]["returnItems"][0]["expectedQuantity"],
        1
    );
}

#[tokio::test]
async fn the_sandbox_index_lists_every_control_endpoint_from_the_route_table() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = start(BolcomSimulatorOptions::default(), listener)
        .await
        .unwrap();
    let index: serde_json::Value = reqwest::get(format!("{}/_sandbox", sim.base_url()))
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
    assert_eq!(index["simulator"], "bolcom");
    for endpoint in index["endpoints"].as_array().unwrap() {
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
