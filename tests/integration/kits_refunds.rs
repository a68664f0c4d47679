//! Kits through the order lifecycle and Shopify refunds in the order body (issue 9 §2),
//! end to end against a real Shopify simulator:
//! - order 14001 (a kit line, a line of the kit's component, another SKU) shipped,
//!   returned with and without restock, and shipped again, over REST: the component's
//!   levels, and the kit's derived levels and listed ATP;
//! - a Shopify refund (`restock_type` `cancel` and `return`) followed by the
//!   `orders/updated` that embeds it: the ledger counts the refund once.

use serde_json::{Value, json};
use std::time::Duration;
use stocksync::app::App;
use stocksync::config::Config;
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku};
use stocksync::ingest::shopify::decode as shopify_decoder;
use stocksync::sandbox::shopify::{
    FulfilLineRequest, RefundLineRequest, ShopifySimulator, ShopifySimulatorOptions, SimOrderLine,
};

const SHOPIFY: &str = "shop-kits";
/// The Shopify location the simulated shop sells from.
const LOCATION: u64 = 7;
/// (SKU, Shopify inventory item).
const SKUS: [(&str, u64); 5] = [
    ("COMP-B", 1),
    ("SKU-Z", 2),
    ("KIT-F", 3),
    ("SKU-P", 4),
    ("SKU-Q", 5),
];

fn item(sku: &str) -> u64 {
    SKUS.iter().find(|(s, _)| *s == sku).unwrap().1
}

struct Setup {
    app: App,
    shop: ShopifySimulator,
    api: String,
    _dir: tempfile::TempDir,
}

/// WH-1 feeds one Shopify channel; KIT-F is one COMP-B.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let shop = crate::support::shopify_simulator(ShopifySimulatorOptions {
        deny_oversell: false,
        auto_create_levels: true,
        ..ShopifySimulatorOptions::default()
    })
    .await;
    let listings: String = SKUS
        .iter()
        .map(|(sku, item)| format!("{{ sku = \"{sku}\", inventory_item_id = {item} }},"))
        .collect();
    let options = shop.options().clone();
    let config = Config::from_toml(&format!(
        r#"
        [store]
        path = "{db}"
        [http]
        listen = "127.0.0.1:0"

        [[locations]]
        id = "WH-1"

        [[bundles]]
        sku = "KIT-F"
        components = [{{ sku = "COMP-B", quantity = 1 }}]

        [[channels]]
        id = "{SHOPIFY}"
        kind = "shopify"
        locations = ["WH-1"]
        [channels.shopify]
        shop_url = "{shop_url}"
        access_token = "{token}"
        webhook_secret = "{secret}"
        location_id = {LOCATION}
        listings = [{listings}]
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
    shop.set_webhook_url(Some(format!("{api}/webhooks/shopify/{SHOPIFY}")));
    Setup {
        app,
        shop,
        api,
        _dir: dir,
    }
}

impl Setup {
    /// Posts movements to `POST /api/v1/movements`; every one must be applied.
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

    /// `GET /api/v1/stock/{sku}`.
    async fn stock(&self, sku: &str) -> Value {
        reqwest::get(format!("{}/api/v1/stock/{sku}", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// (on-hand, reserved, available) at WH-1 as the stock API shows them.
    async fn levels(&self, sku: &str) -> (i64, i64, i64) {
        let view = self.stock(sku).await;
        let wh1 = view["locations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|level| level["location"] == "WH-1")
            .unwrap_or_else(|| panic!("{sku} has no WH-1 level: {view}"))
            .clone();
        let figure = |name: &str| wh1[name].as_i64().unwrap();
        (figure("on_hand"), figure("reserved"), figure("available"))
    }

    /// (on-hand, reserved, available) of `sku` in the ledger over every location.
    async fn ledger_levels(&self, sku: &str) -> (i64, i64, i64) {
        let state = self.app.ledger().state(&Sku::from(sku)).await.unwrap();
        let on_hand: i64 = state.locations.values().map(|l| l.on_hand).sum();
        let reserved: i64 = state.locations.values().map(|l| l.reserved).sum();
        (on_hand, reserved, on_hand - reserved)
    }

    /// Waits until the shop lists `expected` for `sku` and the stock API shows it as the
    /// channel's ATP and last push (10 s at most).
    async fn listed(&self, sku: &str, expected: i64) {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(10) * crate::support::SLOW_MACHINE_FACTOR;
        loop {
            let listed = self.shop.level(item(sku), LOCATION);
            let view = self.stock(sku).await;
            let channel = &view["channels"][0];
            if listed == Some(expected)
                && channel["atp"] == expected
                && channel["last_pushed"] == expected
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sku}: shop lists {listed:?}, stock API {channel}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts a signed Shopify delivery with fresh webhook and event ids; returns the answer.
    async fn post_shopify(&self, topic: &str, body: &Value, event: &str) -> Value {
        let bytes = serde_json::to_vec(body).unwrap();
        let signature = shopify_decoder::sign(&self.shop.options().webhook_secret, &bytes);
        reqwest::Client::new()
            .post(format!("{}/webhooks/shopify/{SHOPIFY}", self.api))
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
}

fn movement(sku: &str, key: &str, kind: Value) -> Value {
    let mut movement = json!({"schema_version": 1, "sku": sku, "idempotency_key": key,
        "source": "test"});
    let fields = movement.as_object_mut().unwrap();
    for (name, value) in kind.as_object().unwrap() {
        fields.insert(name.clone(), value.clone());
    }
    movement
}

/// Issue 9 §2, order 14001, over REST: the kit line's movements go through the bundle
/// expansion; the returns act on the shipped units only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_14001_with_a_kit_line_over_rest_returns_the_shipped_units_only() {
    let setup = setup().await;
    let line = |n: u32| format!("web:14001:L{n}");
    setup
        .post(json!([
            movement(
                "COMP-B",
                "wms:r:b",
                json!({"type": "receipt", "location": "WH-1", "quantity": 100})
            ),
            movement(
                "SKU-Z",
                "wms:r:z",
                json!({"type": "receipt", "location": "WH-1", "quantity": 50})
            ),
            movement(
                "KIT-F",
                "web:14001:L1",
                json!({"type": "sale", "reservation": line(1), "quantity": 10, "location": "WH-1"})
            ),
            movement(
                "COMP-B",
                "web:14001:L2",
                json!({"type": "sale", "reservation": line(2), "quantity": 1, "location": "WH-1"})
            ),
            movement(
                "SKU-Z",
                "web:14001:L3",
                json!({"type": "sale", "reservation": line(3), "quantity": 1, "location": "WH-1"})
            ),
        ]))
        .await;
    assert_eq!(setup.levels("COMP-B").await, (100, 11, 89));
    assert_eq!(setup.levels("SKU-Z").await, (50, 1, 49));
    setup.listed("KIT-F", 89).await;

    // Ship L1×3 (the kit's shipment names its location), L2×1, L3×1.
    setup
        .post(json!([
            movement("KIT-F", "wms:f:L1:1", json!({"type": "fulfilment", "reservation": line(1), "quantity": 3, "location": "WH-1"})),
            movement("COMP-B", "wms:f:L2", json!({"type": "fulfilment", "reservation": line(2), "quantity": 1})),
            movement("SKU-Z", "wms:f:L3", json!({"type": "fulfilment", "reservation": line(3), "quantity": 1})),
        ]))
        .await;
    assert_eq!(setup.levels("COMP-B").await, (96, 7, 89));
    assert_eq!(setup.levels("SKU-Z").await, (49, 0, 49));

    // Return L1×3 and L2×1 with restock, L3×1 without; no location: back where each shipped.
    setup
        .post(json!([
            movement(
                "KIT-F",
                "rma:1:L1",
                json!({"type": "return", "reservation": line(1), "quantity": 3})
            ),
            movement(
                "COMP-B",
                "rma:1:L2",
                json!({"type": "return", "reservation": line(2), "quantity": 1, "restock": true})
            ),
            movement(
                "SKU-Z",
                "rma:1:L3",
                json!({"type": "return", "reservation": line(3), "quantity": 1, "restock": false})
            ),
        ]))
        .await;
    assert_eq!(setup.levels("COMP-B").await, (100, 7, 93));
    assert_eq!(setup.levels("SKU-Z").await, (49, 0, 49));
    setup.listed("KIT-F", 93).await;

    // Ship the kit line's other 7.
    setup
        .post(json!([movement(
            "KIT-F",
            "wms:f:L1:2",
            json!({"type": "fulfilment", "reservation": line(1), "quantity": 7})
        )]))
        .await;
    assert_eq!(setup.levels("COMP-B").await, (93, 0, 93));
    assert_eq!(setup.levels("SKU-Z").await, (49, 0, 49));
    assert_eq!(setup.ledger_levels("COMP-B").await, (93, 0, 93));
    setup.listed("KIT-F", 93).await;
    setup.listed("COMP-B", 93).await;
    setup.listed("SKU-Z", 49).await;
    // The kit's derived levels in the stock API: one COMP-B per kit.
    let kit = setup.stock("KIT-F").await;
    assert_eq!(
        kit["locations"],
        json!([{"location": "WH-1", "on_hand": 93, "reserved": 0, "available": 93,
            "in_transit": 0, "inbound": 0}]),
        "{kit}"
    );
    setup.app.shutdown(Duration::from_secs(5)).await;
}

/// Issue 9 §2: the simulator's order body embeds its `refunds` as Shopify's does, so the
/// `orders/updated` after a refund (restock_type `cancel` and `return`) does not release
/// or cut the refunded units a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopify_refund_then_orders_updated_is_counted_once() {
    let setup = setup().await;
    for (sku, key) in [("SKU-P", "wms:r:p"), ("SKU-Q", "wms:r:q")] {
        setup
            .post(json!([movement(
                sku,
                key,
                json!({"type": "receipt", "location": "WH-1", "quantity": 10})
            )]))
            .await;
    }
    setup.listed("SKU-P", 10).await;
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
    let line_of = |sku: &str| {
        placed.body["line_items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["sku"] == sku)
            .and_then(|line| line["id"].as_u64())
            .unwrap()
    };
    let (l1, l2) = (line_of("SKU-P"), line_of("SKU-Q"));
    assert_eq!(placed.body["refunds"], json!([]));
    assert_eq!(setup.ledger_levels("SKU-P").await, (10, 3, 7));
    assert_eq!(setup.ledger_levels("SKU-Q").await, (10, 2, 8));

    // L2 ships (the shop's fulfilment, and the WMS's movement).
    setup
        .shop
        .fulfil(
            order_id,
            &[FulfilLineRequest {
                id: l2,
                quantity: Some(2),
            }],
        )
        .await
        .unwrap();
    let reservation = |line: u64| format!("{SHOPIFY}:{order_id}:{line}");
    setup
        .app
        .ledger()
        .submit(Movement {
            schema_version: SCHEMA_VERSION,
            sku: "SKU-Q".into(),
            idempotency_key: "wms:ship:q".into(),
            source: "wms".into(),
            occurred_at_ms: None,
            kind: MovementKind::Fulfilment {
                reservation: reservation(l2),
                quantity: 2,
                location: None,
            },
        })
        .await
        .unwrap();
    assert_eq!(setup.ledger_levels("SKU-Q").await, (8, 0, 8));

    // One refund: 1 open unit of L1 cancelled back to stock, 1 shipped unit of L2 returned.
    let refund = |line_item_id: u64, restock_type: &str| RefundLineRequest {
        line_item_id,
        quantity: 1,
        restock_type: restock_type.into(),
        location_id: Some(LOCATION),
    };
    let refunded = setup
        .shop
        .refund(
            order_id,
            &[refund(l1, "cancel"), refund(l2, "return")],
            Some("changed mind"),
        )
        .await
        .unwrap();
    let topics: Vec<&str> = refunded.webhooks.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, ["refunds/create", "orders/updated"]);
    let refunds = refunded.order["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{}", refunded.order);
    assert_eq!(refunds[0], refunded.change);
    let embedded: Vec<(u64, u64, &str)> = refunds[0]["refund_line_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["line_item_id"].as_u64().unwrap(),
                line["quantity"].as_u64().unwrap(),
                line["restock_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(embedded, [(l1, 1, "cancel"), (l2, 1, "return")]);
    // Counted once: P releases 1 (10/2/8, not 10/1/9); Q restocks 1 (9/0/9).
    assert_eq!(setup.ledger_levels("SKU-P").await, (10, 2, 8));
    assert_eq!(setup.ledger_levels("SKU-Q").await, (9, 0, 9));

    // A second refund of L1 (cancel): the order body now embeds both refunds.
    let second = setup
        .shop
        .refund(order_id, &[refund(l1, "cancel")], None)
        .await
        .unwrap();
    assert_eq!(second.order["refunds"].as_array().unwrap().len(), 2);
    assert_eq!(setup.ledger_levels("SKU-P").await, (10, 1, 9));
    assert_eq!(setup.ledger_levels("SKU-Q").await, (9, 0, 9));

    // The latest orders/updated delivered again under a new event id changes nothing.
    let again = setup
        .post_shopify("orders/updated", &second.order, "refund-again")
        .await;
    assert_eq!(again["status"], "processed", "{again}");
    assert_eq!(setup.ledger_levels("SKU-P").await, (10, 1, 9));
    assert_eq!(setup.ledger_levels("SKU-Q").await, (9, 0, 9));
    setup.app.shutdown(Duration::from_secs(5)).await;
}
