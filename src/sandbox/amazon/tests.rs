//! Behaviour tests of the Amazon simulator against PLATFORMS.md §4, over real HTTP on
//! 127.0.0.1:0.

use super::*;
use serde_json::{Value, json};

async fn sim(options: AmazonSimulatorOptions) -> AmazonSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(options, listener).await.unwrap()
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

/// Wall time of the paused-time tests (2023-11-14T22:13:20Z).
const PAUSED_EPOCH_MS: i64 = 1_700_000_000_000;

fn listing(sku: &str, quantity: Option<u64>, fba: bool) -> SimListing {
    SimListing {
        seller_sku: sku.to_owned(),
        quantity,
        fba,
        fba_fulfillable: if fba { 12 } else { 0 },
    }
}

async fn token(client: &reqwest::Client, sim: &AmazonSimulator) -> String {
    let options = sim.options();
    let answer: Value = client
        .post(sim.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
            options.refresh_token.replace('|', "%7C"),
            options.client_id,
            options.client_secret
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["token_type"], "bearer");
    assert_eq!(answer["expires_in"], 3600);
    answer["access_token"].as_str().unwrap().to_owned()
}

fn listing_url(sim: &AmazonSimulator, sku: &str) -> String {
    format!(
        "{}/listings/2021-08-01/items/{}/{sku}?marketplaceIds={}",
        sim.base_url(),
        sim.options().seller_id,
        sim.options().marketplace_id
    )
}

async fn patch(
    client: &reqwest::Client,
    sim: &AmazonSimulator,
    token: &str,
    sku: &str,
    op: &str,
    value: Value,
) -> reqwest::Response {
    client
        .patch(listing_url(sim, sku))
        .header("x-amz-access-token", token)
        .json(&json!({"productType": "PRODUCT", "patches": [
            {"op": op, "path": "/attributes/fulfillment_availability", "value": value}]}))
        .send()
        .await
        .unwrap()
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 3 s");
}

#[tokio::test]
async fn an_access_token_is_required_and_bad_credentials_are_refused() {
    let sim = sim(AmazonSimulatorOptions {
        listings: vec![listing("A", Some(1), false)],
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    let bad = client
        .post(sim.token_url())
        .body("grant_type=refresh_token&refresh_token=x&client_id=y&client_secret=z")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let none = client.get(listing_url(&sim, "A")).send().await.unwrap();
    assert_eq!(none.status(), 403);
    let token = token(&client, &sim).await;
    let fine = client
        .get(listing_url(&sim, "A"))
        .header("x-amz-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
    assert_eq!(fine.headers()["x-amzn-ratelimit-limit"], "5");
    sim.expire_tokens();
    let expired = client
        .get(listing_url(&sim, "A"))
        .header("x-amz-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 403);
    assert_eq!(sim.counters().unauthorized, 3);
}

#[tokio::test]
async fn an_accepted_patch_is_applied_later_and_merge_keeps_siblings() {
    let sim = sim(AmazonSimulatorOptions {
        apply_delay_ms: 150,
        listings: vec![listing("A", Some(1), false)],
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    let answer: Value = patch(&client, &sim, &token, "A", "replace",
        json!([{"fulfillment_channel_code": "DEFAULT", "quantity": 4, "lead_time_to_ship_max_days": 3}]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "ACCEPTED");
    assert_eq!(
        sim.quantity("A"),
        Some(1),
        "ACCEPTED is queued, not applied"
    );
    wait_for(|| sim.quantity("A") == Some(4)).await;
    patch(
        &client,
        &sim,
        &token,
        "A",
        "merge",
        json!([{"fulfillment_channel_code": "DEFAULT", "quantity": 9}]),
    )
    .await;
    wait_for(|| sim.quantity("A") == Some(9)).await;
    let shown = sim.listing("A").unwrap();
    assert_eq!(
        shown.fulfillment_availability[0]["lead_time_to_ship_max_days"],
        3
    );
    assert_eq!(shown.history, vec![4, 9]);
    let read: Value = client
        .get(format!(
            "{}&includedData=fulfillmentAvailability",
            listing_url(&sim, "A")
        ))
        .header("x-amz-access-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        read["fulfillmentAvailability"][0]["fulfillmentChannelCode"],
        "DEFAULT"
    );
    assert_eq!(read["fulfillmentAvailability"][0]["quantity"], 9);
    let nested = client
        .patch(listing_url(&sim, "A"))
        .header("x-amz-access-token", &token)
        .json(&json!({"productType": "PRODUCT", "patches": [
            {"op": "replace", "path": "/attributes/fulfillment_availability/0/quantity", "value": 1}]}))
        .send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(nested["status"], "INVALID", "only top-level attributes");
    let no_type = client
        .patch(listing_url(&sim, "A"))
        .header("x-amz-access-token", &token)
        .json(&json!({"patches": []}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(no_type["status"], "INVALID", "productType is required");
}

#[tokio::test]
async fn the_patch_bucket_throttles_with_the_rate_header() {
    let sim = sim(AmazonSimulatorOptions {
        apply_delay_ms: 0,
        listings: vec![listing("A", Some(0), false)],
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    let mut statuses = Vec::new();
    for n in 0..7 {
        let answer = patch(
            &client,
            &sim,
            &token,
            "A",
            "merge",
            json!([{"fulfillment_channel_code": "DEFAULT", "quantity": n}]),
        )
        .await;
        if answer.status() == 429 {
            assert_eq!(answer.headers()["x-amzn-ratelimit-limit"], "5");
            assert!(answer.headers().get("retry-after").is_none());
        }
        statuses.push(answer.status().as_u16());
    }
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    assert_eq!(sim.patch_request_offsets_ms().len(), 7);
}

#[tokio::test]
async fn fba_default_patches_flip_or_are_rejected_per_knob() {
    for mode in [FbaDefaultPatch::FlipToMfn, FbaDefaultPatch::Reject] {
        let sim = sim(AmazonSimulatorOptions {
            apply_delay_ms: 0,
            fba_default_patch: mode,
            listings: vec![listing("F", None, true)],
            ..Default::default()
        })
        .await;
        let client = reqwest::Client::new();
        let token = token(&client, &sim).await;
        let answer: Value = patch(
            &client,
            &sim,
            &token,
            "F",
            "merge",
            json!([{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]),
        )
        .await
        .json()
        .await
        .unwrap();
        let shown = sim.listing("F").unwrap();
        assert_eq!(sim.counters().fba_default_patches, 1);
        match mode {
            FbaDefaultPatch::FlipToMfn => {
                assert_eq!(answer["status"], "ACCEPTED");
                assert!(!shown.fba, "the offer became MFN");
                assert_eq!(sim.counters().fba_flipped_to_mfn, 1);
            }
            FbaDefaultPatch::Reject => {
                assert_eq!(answer["status"], "INVALID");
                assert!(shown.fba);
                assert_eq!(shown.quantity, None);
            }
        }
    }
}

/// Under tokio's paused clock: the feed walks IN_QUEUE → IN_PROGRESS → DONE as virtual time
/// passes, and its times come from the injected clock.
#[tokio::test(start_paused = true)]
async fn a_json_listings_feed_runs_to_a_processing_report() {
    let sim = sim(AmazonSimulatorOptions {
        feed_processing_ms: 60,
        json_feeds_per_window: 1,
        rejected_skus: vec!["B".to_owned()],
        listings: vec![listing("A", Some(0), false), listing("B", Some(0), false)],
        clock: crate::clock::TokioClock::starting_at(PAUSED_EPOCH_MS),
        ..Default::default()
    })
    .await;
    let client = unpooled_client();
    let token = token(&client, &sim).await;
    let base = sim.base_url();
    let created: Value = client
        .post(format!("{base}/feeds/2021-06-30/documents"))
        .header("x-amz-access-token", &token)
        .json(&json!({"contentType": "application/json; charset=UTF-8"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = created["url"].as_str().unwrap();
    let document = json!({"header": {"sellerId": "A2SANDBOXSELLER", "version": "2.0"},
        "messages": [
            {"messageId": 1, "sku": "A", "operationType": "PATCH", "productType": "PRODUCT",
             "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability",
                          "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 7}]}]},
            {"messageId": 2, "sku": "B", "operationType": "PATCH", "productType": "PRODUCT",
             "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability",
                          "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 8}]}]}]});
    let wrong_type = client
        .put(url)
        .header("content-type", "text/plain")
        .body(document.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong_type.status(),
        403,
        "the pre-signed URL fixes the content type"
    );
    let uploaded = client
        .put(url)
        .header("content-type", "application/json; charset=UTF-8")
        .body(document.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 200);
    let create = json!({"feedType": "JSON_LISTINGS_FEED", "marketplaceIds": ["A1805IZSGTT6HS"],
        "inputFeedDocumentId": created["feedDocumentId"]});
    let feed = client
        .post(format!("{base}/feeds/2021-06-30/feeds"))
        .header("x-amz-access-token", &token)
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 202);
    let feed_id = feed.json::<Value>().await.unwrap()["feedId"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = client
        .post(format!("{base}/feeds/2021-06-30/feeds"))
        .header("x-amz-access-token", &token)
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429, "one JSON feed per window here");
    let mut statuses = Vec::new();
    let done = loop {
        let status: Value = client
            .get(format!("{base}/feeds/2021-06-30/feeds/{feed_id}"))
            .header("x-amz-access-token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let processing = status["processingStatus"].as_str().unwrap().to_owned();
        if statuses.last() != Some(&processing) {
            statuses.push(processing.clone());
        }
        if processing == "DONE" {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(statuses, vec!["IN_QUEUE", "IN_PROGRESS", "DONE"]);
    assert_eq!(done["createdTime"], "2023-11-14T22:13:20Z");
    assert_eq!(done["processingEndTime"], "2023-11-14T22:13:20Z");
    let document: Value = client
        .get(format!(
            "{base}/feeds/2021-06-30/documents/{}",
            done["resultFeedDocumentId"].as_str().unwrap()
        ))
        .header("x-amz-access-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report: Value = client
        .get(document["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["summary"]["messagesAccepted"], 1);
    assert_eq!(report["summary"]["messagesInvalid"], 1);
    assert_eq!(report["issues"][0]["messageId"], 2);
    assert_eq!(report["issues"][0]["sku"], "B");
    assert_eq!(report["issues"][0]["severity"], "ERROR");
    assert_eq!(sim.quantity("A"), Some(7));
    assert_eq!(sim.quantity("B"), Some(0));
}

#[tokio::test]
async fn orders_decrement_mfn_stock_and_are_listed_with_their_items() {
    let sim = sim(AmazonSimulatorOptions {
        orders_page_size: 1,
        rate_limits: RateLimits::generous(100.0, 100),
        listings: vec![listing("A", Some(10), false), listing("F", None, true)],
        ..Default::default()
    })
    .await;
    let mfn = sim
        .place_order(
            Fulfilment::Mfn,
            &[SimOrderLine {
                seller_sku: "A".into(),
                quantity: 3,
            }],
        )
        .unwrap();
    sim.place_order(
        Fulfilment::Afn,
        &[SimOrderLine {
            seller_sku: "F".into(),
            quantity: 2,
        }],
    )
    .unwrap();
    assert_eq!(
        sim.quantity("A"),
        Some(7),
        "Amazon decrements MFN stock at order time"
    );
    assert_eq!(sim.listing("F").unwrap().fba_fulfillable, 10);
    sim.cancel_order(&mfn.amazon_order_id).unwrap();
    assert_eq!(sim.quantity("A"), Some(10));
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    let base = sim.base_url();
    let first: Value = client
        .get(format!("{base}/orders/v0/orders?MarketplaceIds=A1805IZSGTT6HS&LastUpdatedAfter=2020-01-01T00:00:00Z"))
        .header("x-amz-access-token", &token).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["payload"]["Orders"].as_array().unwrap().len(), 1);
    let next = first["payload"]["NextToken"].as_str().unwrap();
    let second: Value = client
        .get(format!("{base}/orders/v0/orders?NextToken={next}"))
        .header("x-amz-access-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let orders: Vec<&Value> = first["payload"]["Orders"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["payload"]["Orders"].as_array().unwrap())
        .collect();
    let canceled = orders
        .iter()
        .find(|o| o["AmazonOrderId"] == mfn.amazon_order_id.as_str())
        .unwrap();
    assert_eq!(canceled["OrderStatus"], "Canceled");
    assert_eq!(canceled["FulfillmentChannel"], "MFN");
    let items: Value = client
        .get(format!(
            "{base}/orders/v0/orders/{}/orderItems",
            mfn.amazon_order_id
        ))
        .header("x-amz-access-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(items["payload"]["OrderItems"][0]["SellerSKU"], "A");
    assert_eq!(items["payload"]["OrderItems"][0]["QuantityOrdered"], 3);
    let notifications = sim.notifications();
    assert_eq!(notifications.len(), 3);
    let summary = &notifications[2]["Payload"]["OrderChangeNotification"]["Summary"];
    assert_eq!(summary["OrderStatus"], "Canceled");
    assert_eq!(
        notifications[1]["Payload"]["OrderChangeNotification"]["Summary"]["FulfillmentType"],
        "AFN"
    );
}

/// Under tokio's paused clock: a `nextToken` is good for exactly `next_token_ttl_ms`.
#[tokio::test(start_paused = true)]
async fn fba_summaries_page_with_an_expiring_next_token() {
    let sim = sim(AmazonSimulatorOptions {
        inventory_page_size: 1,
        next_token_ttl_ms: 50,
        rate_limits: RateLimits::generous(100.0, 100),
        listings: vec![
            listing("F1", None, true),
            listing("F2", None, true),
            listing("M", Some(1), false),
        ],
        clock: crate::clock::TokioClock::starting_at(PAUSED_EPOCH_MS),
        ..Default::default()
    })
    .await;
    let client = unpooled_client();
    let token = token(&client, &sim).await;
    let url = format!(
        "{}/fba/inventory/v1/summaries?granularityType=Marketplace&granularityId=A1805IZSGTT6HS&marketplaceIds=A1805IZSGTT6HS&details=true",
        sim.base_url()
    );
    let first_page = || async {
        let first: Value = client
            .get(&url)
            .header("x-amz-access-token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let summary = &first["payload"]["inventorySummaries"][0];
        assert_eq!(summary["sellerSku"], "F1");
        assert_eq!(summary["inventoryDetails"]["fulfillableQuantity"], 12);
        first["pagination"]["nextToken"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let next_page = |next: String| {
        client
            .get(format!("{url}&nextToken={next}"))
            .header("x-amz-access-token", &token)
            .send()
    };

    let next = first_page().await;
    tokio::time::advance(std::time::Duration::from_millis(50)).await;
    let second = next_page(next).await.unwrap();
    assert_eq!(second.status(), 200, "nextToken still good at its TTL");
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        second["payload"]["inventorySummaries"][0]["sellerSku"],
        "F2"
    );

    let next = first_page().await;
    tokio::time::advance(std::time::Duration::from_millis(51)).await;
    let expired = next_page(next).await.unwrap();
    assert_eq!(expired.status(), 400, "nextToken expires");
}

#[tokio::test]
async fn notifications_are_posted_at_least_once() {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/sqs",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sqs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let sim = sim(AmazonSimulatorOptions {
        notification_url: Some(url),
        notification_copies: 2,
        listings: vec![listing("A", Some(5), false)],
        ..Default::default()
    })
    .await;
    sim.place_order(
        Fulfilment::Mfn,
        &[SimOrderLine {
            seller_sku: "A".into(),
            quantity: 1,
        }],
    )
    .unwrap();
    wait_for(|| received.lock().unwrap().len() == 2).await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received[0]["NotificationType"], "ORDER_CHANGE");
    assert_eq!(
        received[0]["NotificationMetadata"]["NotificationId"],
        received[1]["NotificationMetadata"]["NotificationId"],
        "a duplicate delivery carries the same NotificationId"
    );
    wait_for(|| sim.counters().notifications_delivered == 2).await;
}

#[tokio::test]
async fn a_seller_cancel_carries_its_reason_for_the_whole_order_or_some_units() {
    let sim = sim(AmazonSimulatorOptions {
        listings: vec![listing("W", Some(20), false), listing("V", Some(5), false)],
        ..Default::default()
    })
    .await;
    let order = sim
        .place_order(
            Fulfilment::Mfn,
            &[
                SimOrderLine {
                    seller_sku: "W".to_owned(),
                    quantity: 5,
                },
                SimOrderLine {
                    seller_sku: "V".to_owned(),
                    quantity: 2,
                },
            ],
        )
        .unwrap();
    assert_eq!((sim.quantity("W"), sim.quantity("V")), (Some(15), Some(3)));
    let (w_item, v_item) = (
        order.order_item_ids[0].clone(),
        order.order_item_ids[1].clone(),
    );
    let client = reqwest::Client::new();
    let cancel = |body: Value| {
        let client = client.clone();
        let url = format!(
            "{}/_sandbox/orders/{}/cancel",
            sim.base_url(),
            order.amazon_order_id
        );
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Two of the five W units cannot be found.
    let status = cancel(
        json!({ "reason": "NoInventory", "items": [{ "order_item_id": w_item, "quantity": 2 }] }),
    )
    .await;
    assert_eq!(status, 204);
    let notification = sim.notifications().last().cloned().unwrap();
    let change = &notification["Payload"]["OrderChangeNotification"];
    assert_eq!(change["OrderChangeType"], "OrderStatusChange");
    assert_eq!(change["OrderChangeTrigger"]["ChangeReason"], "NoInventory");
    assert_eq!(change["Summary"]["OrderStatus"], "Unshipped");
    assert_eq!(change["Summary"]["NumberOfItemsUnshipped"], 5);
    let items = change["Summary"]["OrderItems"].as_array().unwrap();
    assert_eq!(items[0]["OrderItemId"], json!(w_item));
    assert_eq!(items[0]["Quantity"], 3);
    assert_eq!(items[0]["OrderItemStatus"], "Unshipped");
    assert_eq!(items[1]["Quantity"], 2);
    assert_eq!(
        sim.quantity("W"),
        Some(17),
        "cancelled MFN units go back on the listing"
    );
    // More than is open is refused; then the whole order is cancelled, buyer's request.
    let status = cancel(
        json!({ "reason": "NoInventory", "items": [{ "order_item_id": v_item, "quantity": 3 }] }),
    )
    .await;
    assert_eq!(status, 422);
    sim.cancel_order_with_reason(&order.amazon_order_id, "BuyerCanceled", &[])
        .unwrap();
    let notification = sim.notifications().last().cloned().unwrap();
    let change = &notification["Payload"]["OrderChangeNotification"];
    assert_eq!(
        change["OrderChangeTrigger"]["ChangeReason"],
        "BuyerCanceled"
    );
    assert_eq!(change["Summary"]["OrderStatus"], "Canceled");
    assert_eq!(
        change["Summary"]["OrderItems"][1]["OrderItemStatus"],
        "Canceled"
    );
    assert_eq!((sim.quantity("W"), sim.quantity("V")), (Some(20), Some(5)));
    // Cancelling every unit item by item cancels the order too.
    let other = sim
        .place_order(
            Fulfilment::Mfn,
            &[SimOrderLine {
                seller_sku: "V".to_owned(),
                quantity: 1,
            }],
        )
        .unwrap();
    sim.cancel_order_with_reason(
        &other.amazon_order_id,
        "NoInventory",
        &[(other.order_item_ids[0].clone(), 1)],
    )
    .unwrap();
    let notification = sim.notifications().last().cloned().unwrap();
    let summary = &notification["Payload"]["OrderChangeNotification"]["Summary"];
    assert_eq!(summary["OrderStatus"], "Canceled");
    assert_eq!(summary["OrderItems"][0]["OrderItemStatus"], "Canceled");
    assert_eq!(summary["NumberOfItemsUnshipped"], 0);
    // A cancel without a body keeps the old shape (whole order, SellerCancelled).
    let third = sim
        .place_order(
            Fulfilment::Mfn,
            &[SimOrderLine {
                seller_sku: "V".to_owned(),
                quantity: 1,
            }],
        )
        .unwrap();
    let status = client
        .post(format!(
            "{}/_sandbox/orders/{}/cancel",
            sim.base_url(),
            third.amazon_order_id
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    let notification = sim.notifications().last().cloned().unwrap();
    assert_eq!(
        notification["Payload"]["OrderChangeNotification"]["OrderChangeTrigger"]["ChangeReason"],
        "SellerCancelled"
    );
}

#[tokio::test]
async fn the_sandbox_index_lists_every_control_endpoint_from_the_route_table() {
    let sim = sim(AmazonSimulatorOptions::default()).await;
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
    assert!(endpoints.iter().any(
        |e| e["path"] == "/_sandbox/orders/{id}/cancel" && e["body"]["reason"] == "NoInventory"
    ));
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

/// The client's quota ([`crate::platforms::quota::Quota`]) against the simulator's own
/// bucket for getOrders (one a minute, burst 20), with requests spending 40 ms and 1 ms on
/// the wire in turn: a request that has to wait for the refill must still find a token
/// at the platform. Without the transit margin, a request that travelled faster than the
/// one before it arrived a few milliseconds before the platform's token and met a 429.
#[tokio::test(start_paused = true)]
async fn the_clients_quota_never_outruns_the_platforms_bucket_with_uneven_transit() {
    use crate::platforms::quota::{Quota, QuotaLimit};
    let limit = RateLimits::default().get_orders;
    let quota = Quota::new(
        "amazon:getOrders",
        QuotaLimit::new(limit.requests_per_sec, limit.burst),
    );
    let mut platform = state::Bucket::new(limit, tokio::time::Instant::now());
    let mut refused = 0;
    for request in 0u64..60 {
        quota.acquire().await;
        let transit = std::time::Duration::from_millis(if request % 2 == 0 { 40 } else { 1 });
        tokio::time::advance(transit).await;
        if !platform.admit(tokio::time::Instant::now()) {
            refused += 1;
        }
    }
    assert_eq!(refused, 0, "requests refused by the platform's bucket");
}
