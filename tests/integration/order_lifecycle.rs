//! The order lifecycle of issue 9 end to end: real HTTP from the Shopify and WooCommerce
//! simulators to stocksync's webhook receivers, the ledger, and propagation back to both
//! shops.
//! - §1 first example, for a Shopify order and for a WooCommerce order: edits lower,
//!   remove and add lines; a fulfilment; an edit below what shipped (reported, never
//!   restocked); a late older edit changes nothing; both channels list the result.
//! - §1 second example (SKU-S): an edit up counts the order's own units; an order re-sent
//!   after a payment retry has no effect.
//! - §2: a WooCommerce order that becomes `refunded` without restock releases its hold.
//! - §8: the webhook answer lists each movement with its outcome.

use serde_json::Value;
use std::time::Duration;
use stocksync::app::App;
use stocksync::config::Config;
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku};
use stocksync::ingest::shopify::decode as shopify_decoder;
use stocksync::sandbox::shopify::{
    EditAddLine, EditSetLine, FulfilLineRequest, OrderEditRequest, ShopifySimulator,
    ShopifySimulatorOptions, SimOrderLine,
};
use stocksync::sandbox::woocommerce::{
    self as woo_sim, LineChange, SimOrderLine as WooLine, WoocommerceSimulator,
    WoocommerceSimulatorOptions,
};

const SHOPIFY: &str = "shop-1";
const WOO: &str = "woo-1";
/// The Shopify location the simulated shop sells from.
const LOCATION: u64 = 61;
/// (SKU, Shopify inventory item, WooCommerce product).
const SKUS: [(&str, u64, u64); 4] = [
    ("SKU-P", 9001, 101),
    ("SKU-Q", 9002, 102),
    ("SKU-R", 9003, 103),
    ("SKU-S", 9004, 104),
];

fn item(sku: &str) -> u64 {
    SKUS.iter().find(|(s, _, _)| *s == sku).unwrap().1
}

fn product(sku: &str) -> u64 {
    SKUS.iter().find(|(s, _, _)| *s == sku).unwrap().2
}

struct Setup {
    app: App,
    shop: ShopifySimulator,
    woo: WoocommerceSimulator,
    _dir: tempfile::TempDir,
}

/// WH-1 feeds a Shopify and a WooCommerce channel, both wired to stocksync's receivers.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let shop = crate::support::shopify_simulator(ShopifySimulatorOptions {
        deny_oversell: false,
        allow_edit_below_fulfilled: true,
        ..ShopifySimulatorOptions::default()
    })
    .await;
    let woo = woo_sim::start(
        WoocommerceSimulatorOptions::default(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    for (sku, item, product) in SKUS {
        shop.set_level(item, LOCATION, 0);
        woo.set_product(product, sku, Some(0));
    }
    let shopify_listings: String = SKUS
        .iter()
        .map(|(sku, item, _)| format!("{{ sku = \"{sku}\", inventory_item_id = {item} }},"))
        .collect();
    let woo_listings: String = SKUS
        .iter()
        .map(|(sku, _, product)| format!("{{ sku = \"{sku}\", product_id = {product} }},"))
        .collect();
    let shop_options = shop.options().clone();
    let woo_options = woo.options().clone();
    let config = Config::from_toml(&format!(
        r#"
        [store]
        path = "{db}"
        [http]
        listen = "127.0.0.1:0"

        [[locations]]
        id = "WH-1"

        [[channels]]
        id = "{SHOPIFY}"
        kind = "shopify"
        locations = ["WH-1"]
        [channels.shopify]
        shop_url = "{shop_url}"
        access_token = "{token}"
        webhook_secret = "{shop_secret}"
        location_id = {LOCATION}
        listings = [{shopify_listings}]

        [[channels]]
        id = "{WOO}"
        kind = "woocommerce"
        locations = ["WH-1"]
        [channels.woocommerce]
        site_url = "{woo_url}"
        consumer_key = "{key}"
        consumer_secret = "{secret}"
        webhook_secret = "{woo_secret}"
        poll_interval_secs = 0
        listings = [{woo_listings}]
        "#,
        db = dir.path().join("stocksync.db").display(),
        shop_url = shop.base_url(),
        token = shop_options.access_token,
        shop_secret = shop_options.webhook_secret,
        woo_url = woo.base_url(),
        key = woo_options.consumer_key,
        secret = woo_options.consumer_secret,
        woo_secret = woo_options.webhook_secret,
    ))
    .unwrap();
    config.validate().unwrap();
    let app = App::start(config).await.unwrap();
    let api = format!("http://{}", app.http_addr());
    shop.set_webhook_url(Some(format!("{api}/webhooks/shopify/{SHOPIFY}")));
    woo.set_webhook_url(Some(format!("{api}/webhooks/woocommerce/{WOO}")));
    Setup {
        app,
        shop,
        woo,
        _dir: dir,
    }
}

fn movement(sku: &str, key: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.to_owned(),
        source: "wms".to_owned(),
        occurred_at_ms: None,
        kind,
    }
}

impl Setup {
    async fn submit(&self, movement: Movement) {
        self.app.ledger().submit(movement).await.unwrap();
    }

    async fn receive(&self, sku: &str, quantity: u64) {
        self.submit(movement(
            sku,
            &format!("wms:receipt:{sku}"),
            MovementKind::Receipt {
                location: "WH-1".into(),
                quantity,
            },
        ))
        .await;
    }

    /// The WMS ships `quantity` units of reservation `reservation`.
    async fn ship(&self, sku: &str, reservation: &str, quantity: u64) {
        self.submit(movement(
            sku,
            &format!("wms:ship:{reservation}"),
            MovementKind::Fulfilment {
                reservation: reservation.to_owned(),
                quantity,
                location: None,
            },
        ))
        .await;
    }

    /// (on-hand, reserved, available) of `sku` over every location.
    async fn levels(&self, sku: &str) -> (i64, i64, i64) {
        let state = self.app.ledger().state(&Sku::from(sku)).await.unwrap();
        let on_hand: i64 = state.locations.values().map(|l| l.on_hand).sum();
        let reserved: i64 = state.locations.values().map(|l| l.reserved).sum();
        (on_hand, reserved, on_hand - reserved)
    }

    /// Waits until both channels list `expected` for `sku` (10 s at most).
    async fn both_list(&self, sku: &str, expected: i64) {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(10) * crate::support::SLOW_MACHINE_FACTOR;
        loop {
            let shopify = self.shop.level(item(sku), LOCATION);
            let woo = self.woo.stock(product(sku), 0);
            if shopify == Some(expected) && woo == Some(expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sku}: shopify lists {shopify:?}, woocommerce {woo:?}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts a signed Shopify delivery with fresh webhook and event ids; returns the answer.
    async fn post_shopify(&self, topic: &str, body: &Value, event: &str) -> Value {
        let bytes = serde_json::to_vec(body).unwrap();
        let signature = shopify_decoder::sign(&self.shop.options().webhook_secret, &bytes);
        reqwest::Client::new()
            .post(format!(
                "http://{}/webhooks/shopify/{SHOPIFY}",
                self.app.http_addr()
            ))
            .header("X-Shopify-Topic", topic)
            .header("X-Shopify-Hmac-Sha256", signature)
            .header("X-Shopify-Webhook-Id", format!("test-{event}"))
            .header("X-Shopify-Event-Id", format!("test-{event}"))
            .body(bytes)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The process-wide count of units order edits put below what had shipped (the
    /// discrepancy the ledger reports: a return is needed), from `GET /metrics`.
    async fn discrepancy_units(&self) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.app.http_addr()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with("stocksync_ledger_discrepancy_units_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The `orders/updated` bodies delivered so far for `order_id`, oldest first.
    fn shopify_updates(&self, order_id: u64) -> Vec<Value> {
        self.shop
            .deliveries()
            .into_iter()
            .filter(|d| d.topic == "orders/updated" && d.body["id"].as_u64() == Some(order_id))
            .map(|d| d.body)
            .collect()
    }
}

fn line_id(order: &Value, sku: &str) -> u64 {
    order["line_items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["sku"] == sku)
        .and_then(|line| line["id"].as_u64())
        .unwrap_or_else(|| panic!("no {sku} line in {order}"))
}

/// An edit of one line, with Shopify's own restock (the admin's default): the shop raises
/// its figure itself before the `orders/updated` arrives, and the listings still settle on
/// the ledger's ATP.
fn set(line_item_id: u64, quantity: u64) -> EditSetLine {
    EditSetLine {
        line_item_id,
        quantity,
        restock: true,
    }
}

/// Issue 9 §1, first example, for a Shopify order.
#[tokio::test]
async fn shopify_order_edits_fulfilment_below_shipped_and_a_late_edit_give_the_right_ledger() {
    let setup = setup().await;
    setup.receive("SKU-P", 50).await;
    setup.receive("SKU-Q", 10).await;
    setup.receive("SKU-R", 8).await;
    // Every listing settled before the shop takes an order: a listing's first push carries
    // no compare-and-set (nothing is believed yet), so an order taken while it is in
    // flight would be overwritten until reconciliation reads the listing back.
    setup.both_list("SKU-P", 50).await;
    setup.both_list("SKU-Q", 10).await;
    setup.both_list("SKU-R", 8).await;

    // v1: L1 P×3, L2 Q×2.
    let placed = setup
        .shop
        .place_order(
            LOCATION,
            &[
                SimOrderLine {
                    inventory_item_id: item("SKU-P"),
                    sku: "SKU-P".into(),
                    quantity: 3,
                },
                SimOrderLine {
                    inventory_item_id: item("SKU-Q"),
                    sku: "SKU-Q".into(),
                    quantity: 2,
                },
            ],
        )
        .await
        .unwrap();
    let order_id = placed.order_id;
    let l1 = line_id(&placed.body, "SKU-P");
    let l2 = line_id(&placed.body, "SKU-Q");
    assert_eq!(setup.levels("SKU-P").await, (50, 3, 47));
    assert_eq!(setup.levels("SKU-Q").await, (10, 2, 8));

    // v2: L1 → 1.
    let edit = |set_lines: Vec<EditSetLine>, add: Vec<EditAddLine>| OrderEditRequest {
        set: set_lines,
        add,
    };
    setup
        .shop
        .edit_order(order_id, &edit(vec![set(l1, 1)], vec![]))
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-P").await, (50, 1, 49));
    // v3: L2 removed.
    let v3 = setup
        .shop
        .edit_order(order_id, &edit(vec![set(l2, 0)], vec![]))
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-Q").await, (10, 0, 10));
    let v3_update = setup.shopify_updates(order_id).last().unwrap().clone();
    assert_eq!(v3_update, v3.order);
    // v4: L3 R×4 added.
    let v4 = setup
        .shop
        .edit_order(
            order_id,
            &edit(
                vec![],
                vec![EditAddLine {
                    inventory_item_id: item("SKU-R"),
                    sku: Some("SKU-R".into()),
                    quantity: 4,
                }],
            ),
        )
        .await
        .unwrap();
    let l3 = line_id(&v4.order, "SKU-R");
    assert_eq!(setup.levels("SKU-R").await, (8, 4, 4));

    // Fulfilment of L1×1 and L3×2 (the shop's, and the WMS's movements).
    setup
        .shop
        .fulfil(
            order_id,
            &[
                FulfilLineRequest {
                    id: l1,
                    quantity: Some(1),
                },
                FulfilLineRequest {
                    id: l3,
                    quantity: Some(2),
                },
            ],
        )
        .await
        .unwrap();
    let reservation = |line: u64| format!("{SHOPIFY}:{order_id}:{line}");
    setup.ship("SKU-P", &reservation(l1), 1).await;
    setup.ship("SKU-R", &reservation(l3), 2).await;
    assert_eq!(setup.levels("SKU-P").await, (49, 0, 49));
    assert_eq!(setup.levels("SKU-R").await, (6, 2, 4));

    // v5: L3 → 1, below the 2 already shipped: nothing is restocked, and the 1 unit is
    // reported as a discrepancy (the metric is process-wide: other tests may add to it).
    let discrepancy_before = setup.discrepancy_units().await;
    setup
        .shop
        .edit_order(order_id, &edit(vec![set(l3, 1)], vec![]))
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-R").await, (6, 0, 6));
    assert!(setup.discrepancy_units().await >= discrepancy_before + 1.0);

    // v3 delivered again after v5: the simulator's re-delivery (same event) and a copy
    // under a new event id both change nothing.
    let redelivery = setup
        .shop
        .deliveries()
        .into_iter()
        .rfind(|d| d.topic == "orders/updated" && d.body == v3_update)
        .unwrap();
    setup.shop.redeliver(redelivery.id).await.unwrap();
    let late = setup
        .post_shopify("orders/updated", &v3_update, "late-v3")
        .await;
    assert_eq!(late["status"], "processed", "{late}");
    assert_eq!(late["applied"], 0, "{late}");
    let outcomes: Vec<&str> = late["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes
            .iter()
            .all(|o| *o == "duplicate" || *o == "ignored"),
        "{late}"
    );

    assert_eq!(setup.levels("SKU-P").await, (49, 0, 49));
    assert_eq!(setup.levels("SKU-Q").await, (10, 0, 10));
    assert_eq!(setup.levels("SKU-R").await, (6, 0, 6));
    setup.both_list("SKU-P", 49).await;
    setup.both_list("SKU-Q", 10).await;
    setup.both_list("SKU-R", 6).await;
}

/// Issue 9 §1, first example, for a WooCommerce order.
#[tokio::test]
async fn woocommerce_order_edits_fulfilment_below_shipped_and_a_late_edit_give_the_right_ledger() {
    let setup = setup().await;
    setup.receive("SKU-P", 50).await;
    setup.receive("SKU-Q", 10).await;
    setup.receive("SKU-R", 8).await;
    setup.both_list("SKU-P", 50).await;
    setup.both_list("SKU-Q", 10).await;
    setup.both_list("SKU-R", 8).await;
    let wait = || setup.woo.wait_for_webhooks(Duration::from_secs(5));
    // WooCommerce's `date_modified_gmt` has second resolution: one edit per second.
    let next_second = || tokio::time::sleep(Duration::from_millis(1_100));

    let order = setup
        .woo
        .place_order(
            &[
                WooLine {
                    product_id: product("SKU-P"),
                    variation_id: 0,
                    quantity: 3,
                },
                WooLine {
                    product_id: product("SKU-Q"),
                    variation_id: 0,
                    quantity: 2,
                },
            ],
            "processing",
        )
        .unwrap();
    assert!(wait().await);
    let (l1, l2) = (order.line_ids[0], order.line_ids[1]);
    assert_eq!(setup.levels("SKU-P").await, (50, 3, 47));
    let change = |id: Option<u64>, product_id: Option<u64>, quantity: u64| LineChange {
        id,
        product_id,
        variation_id: 0,
        quantity,
    };

    next_second().await;
    setup
        .woo
        .edit_order_lines(order.order_id, &[change(Some(l1), None, 1)])
        .unwrap();
    assert!(wait().await);
    assert_eq!(setup.levels("SKU-P").await, (50, 1, 49));
    next_second().await;
    let v3 = setup
        .woo
        .edit_order_lines(order.order_id, &[change(Some(l2), None, 0)])
        .unwrap();
    assert!(wait().await);
    assert_eq!(
        setup.levels("SKU-Q").await,
        (10, 0, 10),
        "the vanished line"
    );
    next_second().await;
    let v4 = setup
        .woo
        .edit_order_lines(order.order_id, &[change(None, Some(product("SKU-R")), 4)])
        .unwrap();
    assert!(wait().await);
    let l3 = *v4.line_ids.last().unwrap();
    assert_eq!(setup.levels("SKU-R").await, (8, 4, 4));

    let reservation = |line: u64| format!("{WOO}:{}:{line}", order.order_id);
    setup.ship("SKU-P", &reservation(l1), 1).await;
    setup.ship("SKU-R", &reservation(l3), 2).await;
    assert_eq!(setup.levels("SKU-P").await, (49, 0, 49));
    assert_eq!(setup.levels("SKU-R").await, (6, 2, 4));
    next_second().await;
    let discrepancy_before = setup.discrepancy_units().await;
    setup
        .woo
        .edit_order_lines(order.order_id, &[change(Some(l3), None, 1)])
        .unwrap();
    assert!(wait().await);
    assert_eq!(setup.levels("SKU-R").await, (6, 0, 6));
    assert!(setup.discrepancy_units().await >= discrepancy_before + 1.0);

    // v3 again, signed as WooCommerce would, after v5.
    let body = serde_json::to_vec(&v3.body).unwrap();
    let late: Value = reqwest::Client::new()
        .post(format!(
            "http://{}/webhooks/woocommerce/{WOO}",
            setup.app.http_addr()
        ))
        .header("X-WC-Webhook-Topic", "order.updated")
        .header("X-WC-Webhook-ID", "late")
        .header(
            "X-WC-Webhook-Signature",
            stocksync::ingest::woocommerce::decode::sign(
                &setup.woo.options().webhook_secret,
                &body,
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(late["applied"], 0, "{late}");

    assert_eq!(setup.levels("SKU-P").await, (49, 0, 49));
    assert_eq!(setup.levels("SKU-Q").await, (10, 0, 10));
    assert_eq!(setup.levels("SKU-R").await, (6, 0, 6));
    setup.both_list("SKU-P", 49).await;
    setup.both_list("SKU-Q", 10).await;
    setup.both_list("SKU-R", 6).await;
}

/// Issue 9 §1, second example (SKU-S), on Shopify.
#[tokio::test]
async fn an_edit_up_counts_the_orders_own_units_and_a_resent_order_has_no_effect() {
    let setup = setup().await;
    setup.receive("SKU-S", 6).await;
    let line = SimOrderLine {
        inventory_item_id: item("SKU-S"),
        sku: "SKU-S".into(),
        quantity: 5,
    };
    let placed = setup
        .shop
        .place_order(LOCATION, std::slice::from_ref(&line))
        .await
        .unwrap();
    let l1 = line_id(&placed.body, "SKU-S");
    assert_eq!(setup.levels("SKU-S").await, (6, 5, 1));
    let up = setup
        .shop
        .edit_order(
            placed.order_id,
            &OrderEditRequest {
                set: vec![set(l1, 6)],
                add: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-S").await, (6, 6, 0));
    // The answer to the `orders/updated` of the edit lists the edit as applied.
    let update = setup
        .shopify_updates(placed.order_id)
        .last()
        .unwrap()
        .clone();
    assert_eq!(update, up.order);
    setup
        .shop
        .edit_order(
            placed.order_id,
            &OrderEditRequest {
                set: vec![set(l1, 2)],
                add: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-S").await, (6, 2, 4));
    // An older edit arriving now for the first time is recorded as ignored, and the
    // answer says so (never a silent duplicate).
    let mut stale = up.order.clone();
    stale["updated_at"] = Value::from("2001-01-01T00:00:00Z");
    let answer = setup.post_shopify("orders/updated", &stale, "stale").await;
    let edit = answer["movements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "order_edit")
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(edit["outcome"], "ignored", "{answer}");
    assert!(
        edit["reason"].as_str().unwrap().contains("version"),
        "{answer}"
    );
    assert_eq!(answer["ignored"], 1, "{answer}");
    assert_eq!(setup.levels("SKU-S").await, (6, 2, 4));
    // The same order re-sent after a payment retry (a new delivery of orders/create).
    let resent = setup
        .post_shopify("orders/create", &placed.body, "payment-retry")
        .await;
    assert_eq!(resent["applied"], 0, "{resent}");
    assert_eq!(resent["duplicates"], 1, "{resent}");
    assert_eq!(resent["movements"][0]["outcome"], "duplicate", "{resent}");
    assert_eq!(setup.levels("SKU-S").await, (6, 2, 4));
    // A second order of 4.
    setup
        .shop
        .place_order(
            LOCATION,
            &[SimOrderLine {
                quantity: 4,
                ..line
            }],
        )
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-S").await, (6, 6, 0));
    setup.shop_settles("SKU-S", 0).await;
}

/// Issue 9 §2: a WooCommerce order that becomes `refunded` without restock releases its
/// hold; and an orders/edited body (deltas only) says why it changed nothing.
#[tokio::test]
async fn a_woocommerce_order_refunded_without_restock_releases_its_hold() {
    let setup = setup().await;
    setup.receive("SKU-S", 6).await;
    setup.both_list("SKU-S", 6).await;
    let order = setup
        .woo
        .place_order(
            &[WooLine {
                product_id: product("SKU-S"),
                variation_id: 0,
                quantity: 2,
            }],
            "processing",
        )
        .unwrap();
    assert!(setup.woo.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(setup.levels("SKU-S").await, (6, 2, 4));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    setup
        .woo
        .set_order_status(order.order_id, "refunded")
        .unwrap();
    assert!(setup.woo.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(setup.levels("SKU-S").await, (6, 0, 6));

    let edited = serde_json::json!({"order_edit": {"id": 1, "order_id": 5,
        "line_items": {"additions": [], "removals": [{"id": 1, "delta": 1}]}}});
    let answer = setup
        .post_shopify("orders/edited", &edited, "edited-only")
        .await;
    assert_eq!(answer["status"], "processed", "{answer}");
    assert!(
        answer["note"].as_str().unwrap().contains("orders/updated"),
        "{answer}"
    );
}

impl Setup {
    /// Waits until the Shopify shop lists `expected` for `sku` and still does after the
    /// compare-and-set grace period (a listing that settles, not one passing by); the
    /// shop's figure is never negative on the way.
    async fn shop_settles(&self, sku: &str, expected: i64) {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(15) * crate::support::SLOW_MACHINE_FACTOR;
        let grace = Duration::from_millis(stocksync::propagation::DEFAULT_CAS_GRACE_MS + 500);
        loop {
            let listed = self.shop.level(item(sku), LOCATION);
            if listed == Some(expected) {
                tokio::time::sleep(grace).await;
                let after = self.shop.level(item(sku), LOCATION);
                if after == Some(expected) {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline && std::env::var("DUMP_PUSHES").is_ok() {
                let log = reqwest::get(format!(
                    "http://{}/api/v1/pushes?channel=shop-1",
                    self.app.http_addr()
                ))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
                eprintln!("PUSHLOG {log}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sku}: shopify lists {listed:?}, expected {expected}; history {:?}",
                self.shop.level_history(item(sku), LOCATION)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if std::env::var("DUMP_PUSHES").is_ok() {
            let log = reqwest::get(format!(
                "http://{}/api/v1/pushes?channel=shop-1",
                self.app.http_addr()
            ))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
            eprintln!("PUSHLOG {log}");
        }
    }
}

/// An edit that lowers and removes lines with Shopify's own restock: the shop raises its
/// figure itself before the `orders/updated` arrives; the listing settles on the ledger's
/// ATP (SKU-P 49, SKU-Q 10), never on the shop's figure plus the released units.
#[tokio::test]
async fn an_edit_with_shopify_restock_settles_the_listing_on_the_ledger() {
    let setup = setup().await;
    setup.receive("SKU-P", 50).await;
    setup.receive("SKU-Q", 10).await;
    setup.both_list("SKU-P", 50).await;
    setup.both_list("SKU-Q", 10).await;
    let placed = setup
        .shop
        .place_order(
            LOCATION,
            &[
                SimOrderLine {
                    inventory_item_id: item("SKU-P"),
                    sku: "SKU-P".into(),
                    quantity: 3,
                },
                SimOrderLine {
                    inventory_item_id: item("SKU-Q"),
                    sku: "SKU-Q".into(),
                    quantity: 2,
                },
            ],
        )
        .await
        .unwrap();
    let l1 = line_id(&placed.body, "SKU-P");
    let l2 = line_id(&placed.body, "SKU-Q");
    assert_eq!(setup.levels("SKU-Q").await, (10, 2, 8));
    setup.shop_settles("SKU-P", 47).await;
    setup.shop_settles("SKU-Q", 8).await;
    let restocked = |line_item_id, quantity| EditSetLine {
        line_item_id,
        quantity,
        restock: true,
    };
    setup
        .shop
        .edit_order(
            placed.order_id,
            &OrderEditRequest {
                set: vec![restocked(l1, 1), restocked(l2, 0)],
                add: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-P").await, (50, 1, 49));
    assert_eq!(setup.levels("SKU-Q").await, (10, 0, 10));
    setup.shop_settles("SKU-P", 49).await;
    setup.shop_settles("SKU-Q", 10).await;
    setup.both_list("SKU-Q", 10).await;
}

/// Issue 9 §1, second example (SKU-S), with Shopify's own restock on the edits: the shop
/// ends listing the ledger's ATP, 0, and never lists a negative figure.
#[tokio::test]
async fn the_sku_s_sequence_with_restock_ends_listing_the_ledgers_atp() {
    let setup = setup().await;
    setup.receive("SKU-S", 6).await;
    setup.both_list("SKU-S", 6).await;
    let line = SimOrderLine {
        inventory_item_id: item("SKU-S"),
        sku: "SKU-S".into(),
        quantity: 5,
    };
    let placed = setup
        .shop
        .place_order(LOCATION, std::slice::from_ref(&line))
        .await
        .unwrap();
    let l1 = line_id(&placed.body, "SKU-S");
    assert_eq!(setup.levels("SKU-S").await, (6, 5, 1));
    setup.shop_settles("SKU-S", 1).await;
    for (quantity, levels, listed) in [(6, (6, 6, 0), 0), (2, (6, 2, 4), 4)] {
        setup
            .shop
            .edit_order(
                placed.order_id,
                &OrderEditRequest {
                    set: vec![EditSetLine {
                        line_item_id: l1,
                        quantity,
                        restock: true,
                    }],
                    add: vec![],
                },
            )
            .await
            .unwrap();
        assert_eq!(setup.levels("SKU-S").await, levels, "edit to {quantity}");
        setup.shop_settles("SKU-S", listed).await;
    }
    setup
        .shop
        .place_order(
            LOCATION,
            &[SimOrderLine {
                quantity: 4,
                ..line
            }],
        )
        .await
        .unwrap();
    assert_eq!(setup.levels("SKU-S").await, (6, 6, 0));
    setup.shop_settles("SKU-S", 0).await;
    setup.both_list("SKU-S", 0).await;
}
