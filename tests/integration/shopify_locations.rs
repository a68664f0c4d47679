//! Shopify multi-location end to end (issue 16), against the Shopify simulator with two
//! Shopify locations: a warehouse (Shopify 100, fed by our `WH`) and a store (Shopify 200,
//! fed by our `STORE`). Step by step:
//! 1. a web order that Shopify routes to the store (`orders/create`, then
//!    `fulfillment_orders/order_routing_complete`, read back): reserved at `STORE`;
//! 2. the fulfillment order moved from the store to the warehouse
//!    (`fulfillment_orders/moved`): the reservation moves to `WH`;
//! 3. a POS sale at the store: sold and shipped at `STORE` in one step, nothing held;
//! 4. a refund of the web order restocked at the warehouse (after the warehouse shipped
//!    it): back on hand at `WH`;
//! 5. a receipt at the store.
//!
//! After each step: every location's on-hand / reserved / available in the ledger, and
//! every Shopify location's `available` in the simulator (each location's part of the
//! channel's ATP, written with compare-and-set). Then a manual edit at one Shopify location
//! is found by reconciliation for that location only, and healed.

use serde_json::{Value, json};
use std::time::Duration;
use stocksync::app::App;
use stocksync::config::Config;
use stocksync::sandbox::shopify::{
    self as shopify_sim, RefundLineRequest, ShopifySimulator, ShopifySimulatorOptions, SimOrderLine,
};

const CHANNEL: &str = "shop-two-sites";
const WAREHOUSE: u64 = 100;
const STORE: u64 = 200;
const TEE: &str = "TEE-M";
const TEE_ITEM: u64 = 31_001;

struct Setup {
    app: App,
    shop: ShopifySimulator,
    api: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_polling(0).await
}

/// [`setup`] with the orders poller running every `poll_secs` (0: only on conflicts).
async fn setup_polling(poll_secs: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let shop = crate::support::shopify_simulator(ShopifySimulatorOptions {
        deny_oversell: false,
        auto_create_levels: true,
        emit_inventory_level_updates: true,
        ..ShopifySimulatorOptions::default()
    })
    .await;
    shop.set_level(TEE_ITEM, WAREHOUSE, 0);
    shop.set_level(TEE_ITEM, STORE, 0);
    let options = shop.options().clone();
    let config = Config::from_toml(&format!(
        r#"
        [store]
        path = "{db}"
        [http]
        listen = "127.0.0.1:0"
        [reconcile]
        interval_ms = 300
        heal = true
        settle_ms = 100
        echo_window_ms = 30000

        [[locations]]
        id = "WH"
        [[locations]]
        id = "STORE"

        [[channels]]
        id = "{CHANNEL}"
        kind = "shopify"
        locations = ["WH", "STORE"]
        [channels.rate_limit]
        requests_per_sec = 50.0
        burst = 50
        [channels.shopify]
        shop_url = "{shop_url}"
        access_token = "{token}"
        webhook_secret = "{secret}"
        orders_poll_interval_secs = {poll_secs}
        listings = [{{ sku = "{TEE}", inventory_item_id = {TEE_ITEM} }}]
        [[channels.shopify.location_map]]
        shopify_location_id = {WAREHOUSE}
        name = "Warehouse"
        feeds = ["WH"]
        [[channels.shopify.location_map]]
        shopify_location_id = {STORE}
        name = "Store"
        feeds = ["STORE"]
        "#,
        db = dir.path().join("stocksync.db").display(),
        shop_url = shop.base_url(),
        token = options.access_token,
        secret = options.webhook_secret,
    ))
    .unwrap();
    config.validate().unwrap();
    let app = App::start(config).await.unwrap();
    let api = format!("http://{}", app.http_addr());
    shop.set_webhook_url(Some(format!("{api}/webhooks/shopify/{CHANNEL}")));
    Setup {
        app,
        shop,
        api,
        _dir: dir,
    }
}

/// What one step must leave behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    /// (on-hand, reserved, available) at WH.
    wh: (i64, i64, i64),
    /// (on-hand, reserved, available) at STORE.
    store: (i64, i64, i64),
    /// `available` at Shopify's warehouse and store.
    shopify: (i64, i64),
}

impl Setup {
    /// Stock: 10 in the warehouse, 4 in the store; each Shopify location lists its own.
    async fn stock_up(&self) {
        self.post(json!([
            receipt("wms-north:r1", "WH", 10),
            receipt("wms-north:r2", "STORE", 4)
        ]))
        .await;
        self.expect(
            "receipts",
            Expected {
                wh: (10, 0, 10),
                store: (4, 0, 4),
                shopify: (10, 4),
            },
        )
        .await;
    }

    async fn post(&self, movements: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/movements", self.api))
            .json(&movements)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        for result in body["results"].as_array().unwrap() {
            assert_eq!(result["outcome"], "applied", "{movements}: {body}");
        }
    }

    async fn stock(&self) -> Value {
        reqwest::get(format!("{}/api/v1/stock/{TEE}", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn observed(&self) -> (Expected, Value) {
        let view = self.stock().await;
        let level = |location: &str| {
            view["locations"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|level| level["location"] == location)
                .map_or((0, 0, 0), |level| {
                    (
                        level["on_hand"].as_i64().unwrap(),
                        level["reserved"].as_i64().unwrap(),
                        level["available"].as_i64().unwrap(),
                    )
                })
        };
        let observed = Expected {
            wh: level("WH"),
            store: level("STORE"),
            shopify: (
                self.shop.level(TEE_ITEM, WAREHOUSE).unwrap_or(i64::MIN),
                self.shop.level(TEE_ITEM, STORE).unwrap_or(i64::MIN),
            ),
        };
        (observed, view)
    }

    /// Waits until the ledger and the shop show `expected`, then checks the stock API's
    /// per-location parts: they sum to the channel's ATP and equal what the shop lists.
    async fn expect(&self, step: &str, expected: Expected) {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(15) * crate::support::SLOW_MACHINE_FACTOR;
        let (mut observed, mut view) = self.observed().await;
        while observed != expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            (observed, view) = self.observed().await;
        }
        assert_eq!(
            observed,
            expected,
            "{step}: ledger and shop; stock view {view:#}\nwebhooks: {:#?}",
            self.shop
                .deliveries()
                .iter()
                .map(|delivery| (delivery.topic.clone(), delivery.outcome.clone()))
                .collect::<Vec<_>>()
        );
        let channel = view["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|channel| channel["channel"] == CHANNEL)
            .unwrap()
            .clone();
        let parts: Vec<(String, i64)> = channel["locations"]
            .as_array()
            .unwrap_or_else(|| panic!("{step}: no per-location parts: {channel:#}"))
            .iter()
            .map(|part| {
                (
                    part["location_id"].as_str().unwrap().to_owned(),
                    part["atp"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                (WAREHOUSE.to_string(), expected.shopify.0),
                (STORE.to_string(), expected.shopify.1)
            ],
            "{step}: {channel:#}"
        );
        assert_eq!(
            channel["atp"].as_i64().unwrap(),
            expected.shopify.0 + expected.shopify.1,
            "{step}: the parts sum to the single-location ATP"
        );
    }
}

fn tee(quantity: u64) -> SimOrderLine {
    SimOrderLine {
        inventory_item_id: TEE_ITEM,
        sku: TEE.to_owned(),
        quantity,
    }
}

fn receipt(key: &str, location: &str, quantity: u64) -> Value {
    json!({"sku": TEE, "idempotency_key": key, "source": "wms-north",
           "type": "receipt", "location": location, "quantity": quantity})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_moves_pos_sales_refunds_and_receipts_follow_shopify_locations() {
    let setup = setup().await;

    setup.stock_up().await;

    // 1. A web order of 2 that Shopify routes to the store: our routing would have taken
    // the warehouse (first in the channel's list), Shopify's fulfillment order says store.
    let order = setup.shop.place_order(STORE, &[tee(2)]).await.unwrap();
    setup
        .expect(
            "web order routed to the store",
            Expected {
                wh: (10, 0, 10),
                store: (4, 2, 2),
                shopify: (10, 2),
            },
        )
        .await;
    let stock = setup.stock().await;
    let reservation = format!(
        "{CHANNEL}:{}:{}",
        order.order_id, order.body["line_items"][0]["id"]
    );
    assert!(
        stock["reservations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line["reservation"] == reservation.as_str() && line["location"] == "STORE"),
        "{stock:#}"
    );

    // 2. Shopify moves the fulfillment order to the warehouse: the reservation follows.
    let fulfillment_orders = setup.shop.fulfillment_orders(order.order_id);
    let fulfillment_order = fulfillment_orders[0].id;
    setup
        .shop
        .move_fulfillment_order(fulfillment_order, WAREHOUSE)
        .await
        .unwrap();
    setup
        .expect(
            "fulfillment order moved to the warehouse",
            Expected {
                wh: (10, 2, 8),
                store: (4, 0, 4),
                shopify: (8, 4),
            },
        )
        .await;

    // 3. A POS sale of 1 in the store: sold and gone at once, nothing held.
    let pos = setup.shop.place_pos_order(STORE, &[tee(1)]).await.unwrap();
    assert_eq!(pos.body["source_name"], "pos");
    setup
        .expect(
            "POS sale in the store",
            Expected {
                wh: (10, 2, 8),
                store: (3, 0, 3),
                shopify: (8, 3),
            },
        )
        .await;

    // 4. The warehouse ships the web order (its WMS tells us), the customer returns one
    // unit, and Shopify restocks it at the warehouse.
    setup
        .post(
            json!([{"sku": TEE, "idempotency_key": "wms-north:ship-1", "source": "wms-north",
                       "type": "fulfilment", "reservation": reservation, "quantity": 2}]),
        )
        .await;
    setup
        .expect(
            "web order shipped from the warehouse",
            Expected {
                wh: (8, 0, 8),
                store: (3, 0, 3),
                shopify: (8, 3),
            },
        )
        .await;
    setup.shop.fulfil(order.order_id, &[]).await.unwrap();
    let line_item_id = order.body["line_items"][0]["id"].as_u64().unwrap();
    setup
        .shop
        .refund(
            order.order_id,
            &[RefundLineRequest {
                line_item_id,
                quantity: 1,
                restock_type: "return".into(),
                location_id: Some(WAREHOUSE),
            }],
            None,
        )
        .await
        .unwrap();
    setup
        .expect(
            "return restocked at the warehouse",
            Expected {
                wh: (9, 0, 9),
                store: (3, 0, 3),
                shopify: (9, 3),
            },
        )
        .await;

    // 5. A receipt at the store.
    setup
        .post(json!([receipt("wms-north:r3", "STORE", 5)]))
        .await;
    setup
        .expect(
            "receipt at the store",
            Expected {
                wh: (9, 0, 9),
                store: (8, 0, 8),
                shopify: (9, 8),
            },
        )
        .await;

    // A merchant edits the store's level by hand: reconciliation finds it for the store's
    // listing only, and heals it with the store's part.
    setup.shop.set_level(TEE_ITEM, STORE, 40);
    let reconciler = setup.app.reconciler().expect("reconcile is enabled");
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(10) * crate::support::SLOW_MACHINE_FACTOR;
    let store_listing = format!("{TEE}@{STORE}");
    let mut found = false;
    loop {
        let discrepancies = reconciler.discrepancies();
        assert!(
            discrepancies
                .iter()
                .all(|discrepancy| discrepancy.sku == store_listing),
            "only the store's listing drifted: {discrepancies:?}"
        );
        found |= discrepancies
            .iter()
            .any(|discrepancy| discrepancy.sku == store_listing);
        let healed = setup.shop.level(TEE_ITEM, STORE) == Some(8);
        if found && healed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "manual edit at the store not found and healed: {:?}, level {:?}",
            reconciler.discrepancies(),
            setup.shop.level(TEE_ITEM, STORE)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(setup.shop.level(TEE_ITEM, WAREHOUSE), Some(9));
    setup.app.shutdown(Duration::from_secs(5)).await;
}

/// Arrival order: the fulfillment order's webhook comes before `orders/create` (Shopify
/// does not promise an order across topics). Read back, it reserves the order at the
/// store at once; the late `orders/create` is then a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fulfillment_order_read_before_its_order_reserves_at_the_assigned_location() {
    let setup = setup().await;
    setup.stock_up().await;
    // The shop takes the order while our endpoint is unreachable, then delivers the
    // fulfillment order's webhook first.
    setup.shop.set_webhook_url(None);
    let order = setup.shop.place_order(STORE, &[tee(2)]).await.unwrap();
    setup
        .shop
        .set_webhook_url(Some(format!("{}/webhooks/shopify/{CHANNEL}", setup.api)));
    let deliveries = setup.shop.deliveries();
    let by_topic = |topic: &str| {
        deliveries
            .iter()
            .find(|delivery| delivery.topic == topic)
            .unwrap_or_else(|| panic!("no {topic} delivery: {deliveries:?}"))
            .id
    };
    let routed = setup
        .shop
        .redeliver(by_topic("fulfillment_orders/order_routing_complete"))
        .await;
    assert!(
        matches!(
            routed,
            Some(shopify_sim::WebhookOutcome::Answered { status: 200 })
        ),
        "{routed:?}"
    );
    setup
        .expect(
            "fulfillment order first",
            Expected {
                wh: (10, 0, 10),
                store: (4, 2, 2),
                shopify: (10, 2),
            },
        )
        .await;
    let created = setup.shop.redeliver(by_topic("orders/create")).await;
    assert!(
        matches!(
            created,
            Some(shopify_sim::WebhookOutcome::Answered { status: 200 })
        ),
        "{created:?}"
    );
    let stock = setup.stock().await;
    let reservations: Vec<&Value> = stock["reservations"].as_array().unwrap().iter().collect();
    assert_eq!(reservations.len(), 1, "reserved once: {stock:#}");
    assert_eq!(reservations[0]["location"], "STORE");
    assert_eq!(reservations[0]["open"], 2);
    assert_eq!(
        reservations[0]["reservation"],
        format!(
            "{CHANNEL}:{}:{}",
            order.order_id, order.body["line_items"][0]["id"]
        )
        .as_str()
    );
    setup
        .expect(
            "orders/create after it",
            Expected {
                wh: (10, 0, 10),
                store: (4, 2, 2),
                shopify: (10, 2),
            },
        )
        .await;
    setup.app.shutdown(Duration::from_secs(5)).await;
}

/// A move the ledger cannot follow: Shopify moves a fulfillment order of 6 to the store,
/// which has 4. The reservation stays in the warehouse (all or nothing), the refusal is
/// counted, and the delivery is still answered 200 (retrying would not change it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_a_location_that_cannot_hold_the_line_is_refused_and_counted() {
    let setup = setup().await;
    setup.stock_up().await;
    let order = setup.shop.place_order(WAREHOUSE, &[tee(6)]).await.unwrap();
    setup
        .expect(
            "web order in the warehouse",
            Expected {
                wh: (10, 6, 4),
                store: (4, 0, 4),
                shopify: (4, 4),
            },
        )
        .await;
    let fulfillment_order = setup.shop.fulfillment_orders(order.order_id)[0].id;
    let moved = setup
        .shop
        .move_fulfillment_order(fulfillment_order, STORE)
        .await
        .unwrap();
    assert!(
        matches!(
            moved.webhook,
            shopify_sim::WebhookOutcome::Answered { status: 200 }
        ),
        "{:?}",
        moved.webhook
    );
    let stock = setup.stock().await;
    let reservations = stock["reservations"].as_array().unwrap();
    assert_eq!(reservations.len(), 1, "{stock:#}");
    assert_eq!(reservations[0]["location"], "WH", "stays: {stock:#}");
    assert_eq!(reservations[0]["open"], 6);
    let metrics = reqwest::get(format!("{}/metrics", setup.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|line| line
            .starts_with("stocksync_ingest_reassign_refused_total{channel=\"shop-two-sites\"}")),
        "{}",
        metrics
            .lines()
            .filter(|line| line.contains("reassign"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    setup.app.shutdown(Duration::from_secs(5)).await;
}

/// A lost `fulfillment_orders/order_routing_complete`: the order reaches us (by its webhook)
/// and is reserved by the channel's routing in the warehouse; the next orders poll reads the
/// order's fulfillment orders and moves the reservation to the store Shopify assigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_poll_makes_good_a_lost_fulfillment_order_webhook() {
    let setup = setup_polling(1).await;
    setup.stock_up().await;
    setup.shop.set_webhook_url(None);
    setup.shop.place_order(STORE, &[tee(2)]).await.unwrap();
    setup
        .shop
        .set_webhook_url(Some(format!("{}/webhooks/shopify/{CHANNEL}", setup.api)));
    let created = setup
        .shop
        .deliveries()
        .iter()
        .find(|delivery| delivery.topic == "orders/create")
        .unwrap()
        .id;
    setup.shop.redeliver(created).await;
    setup
        .expect(
            "reserved at the store after the next poll",
            Expected {
                wh: (10, 0, 10),
                store: (4, 2, 2),
                shopify: (10, 2),
            },
        )
        .await;
    setup.app.shutdown(Duration::from_secs(5)).await;
}
