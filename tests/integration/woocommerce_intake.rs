//! WooCommerce order intake end to end (PLATFORMS.md §2.3–2.4): the simulator's signed
//! webhooks reach `POST /webhooks/woocommerce/{channel}` and become ledger movements; the
//! ping is answered 200, a bad signature 401; when webhooks are lost (disabled), the
//! poller recovers the orders, and overlap with webhooks is harmless.

use std::sync::Arc;
use std::time::Duration;
use stocksync::config::Config;
use stocksync::domain::{NullSink, Sku};
use stocksync::ingest::woocommerce::decode as decoder;
use stocksync::ingest::woocommerce::poller::OrderPoller;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::sandbox::woocommerce::{
    self, SimOrderLine, WoocommerceSimulator, WoocommerceSimulatorOptions,
};
use stocksync::store::embedded::EmbeddedStore;
use stocksync::web::{self, WebState};

const CHANNEL: &str = "woo-main";

struct Setup {
    sim: WoocommerceSimulator,
    ledger: Ledger,
    config: Config,
    hook_url: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = woocommerce::start(WoocommerceSimulatorOptions::default(), listener)
        .await
        .unwrap();
    sim.set_product(10, "MUG-BLUE", Some(20));
    sim.set_variation(20, 21, "TEE-RED-M", Some(5));
    let options = sim.options();
    let config = Config::from_toml(&format!(
        r#"
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "{CHANNEL}"
        kind = "woocommerce"
        locations = ["WH-1"]
        [channels.woocommerce]
        site_url = "{site}"
        consumer_key = "{key}"
        consumer_secret = "{secret}"
        webhook_secret = "{webhook}"
        poll_interval_secs = 0
        listings = [{{ sku = "MUG-BLUE", product_id = 10 }}, {{ sku = "TEE-RED-M", product_id = 20, variation_id = 21 }}]
        "#,
        site = sim.base_url(),
        key = options.consumer_key,
        secret = options.consumer_secret,
        webhook = options.webhook_secret,
    ))
    .unwrap();
    config.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("db")).unwrap();
    let ledger = Ledger::start(
        Arc::new(store),
        Arc::new(NullSink),
        LedgerOptions::default(),
    );
    let state = WebState::new(ledger.clone(), Arc::new(config.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!(
        "http://{}/webhooks/woocommerce/{CHANNEL}",
        listener.local_addr().unwrap()
    );
    tokio::spawn(web::serve(
        listener,
        web::router(state),
        std::future::pending(),
    ));
    Setup {
        sim,
        ledger,
        config,
        hook_url,
        _dir: dir,
    }
}

async fn reserved(ledger: &Ledger, sku: &str) -> i64 {
    let state = ledger.state(&Sku::from(sku)).await.unwrap();
    state.locations.values().map(|level| level.reserved).sum()
}

#[tokio::test]
async fn webhooks_become_movements_and_the_ping_and_bad_signatures_are_answered_as_required() {
    let setup = setup().await;
    setup.sim.set_webhook_url(Some(setup.hook_url.clone()));
    let pings = setup.sim.ping().await;
    assert!(
        pings.iter().all(|(_, answer)| answer == &Ok(200)),
        "{pings:?}"
    );

    let client = reqwest::Client::new();
    let forged = client
        .post(&setup.hook_url)
        .header("X-WC-Webhook-Topic", "order.created")
        .header("X-WC-Webhook-Signature", decoder::sign("wrong", b"{}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let lines = [
        SimOrderLine {
            product_id: 10,
            variation_id: 0,
            quantity: 3,
        },
        SimOrderLine {
            product_id: 20,
            variation_id: 21,
            quantity: 1,
        },
    ];
    let pending = setup.sim.place_order(&lines, "pending").unwrap();
    assert!(setup.sim.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(
        reserved(&setup.ledger, "MUG-BLUE").await,
        0,
        "pending reduces nothing"
    );
    setup
        .sim
        .set_order_status(pending.order_id, "processing")
        .unwrap();
    assert!(setup.sim.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(reserved(&setup.ledger, "MUG-BLUE").await, 3);
    assert_eq!(reserved(&setup.ledger, "TEE-RED-M").await, 1);
    assert_eq!(setup.sim.counters().webhooks_delivered, 2);

    // The same delivery again (same webhook, order, modified date and status) is a
    // duplicate at once; another webhook's copy reaches the ledger, which dedupes it.
    let body = serde_json::to_vec(&setup.sim.order(pending.order_id).unwrap().body).unwrap();
    let replay = |body: Vec<u8>, webhook_id: &'static str| {
        client
            .post(&setup.hook_url)
            .header("X-WC-Webhook-Topic", "order.updated")
            .header("X-WC-Webhook-ID", webhook_id)
            .header(
                "X-WC-Webhook-Signature",
                decoder::sign(&setup.sim.options().webhook_secret, &body),
            )
            .body(body)
            .send()
    };
    let same: serde_json::Value = replay(body.clone(), "12")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(same["status"], "duplicate");
    let other: serde_json::Value = replay(body, "99").await.unwrap().json().await.unwrap();
    assert_eq!(other["status"], "processed");
    // Both sales, and both lines' edits of this version (issue 9 §1: an `order.updated`
    // carries one `order_edit` per line).
    assert_eq!(
        other["duplicates"], 4,
        "the ledger already had both sales and both edits"
    );

    setup
        .sim
        .set_order_status(pending.order_id, "cancelled")
        .unwrap();
    assert!(setup.sim.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(
        reserved(&setup.ledger, "MUG-BLUE").await,
        0,
        "cancelled releases"
    );
}

#[tokio::test]
async fn the_poller_recovers_orders_whose_webhooks_were_lost() {
    let setup = setup().await;
    // The receiver is down: deliveries fail and WooCommerce never retries them.
    setup
        .sim
        .set_webhook_url(Some("http://127.0.0.1:9/unreachable".to_owned()));
    let line = SimOrderLine {
        product_id: 10,
        variation_id: 0,
        quantity: 2,
    };
    let order = setup
        .sim
        .place_order(std::slice::from_ref(&line), "processing")
        .unwrap();
    let line_id = order.line_ids[0];
    assert!(setup.sim.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(setup.sim.counters().webhooks_failed, 1);
    assert_eq!(reserved(&setup.ledger, "MUG-BLUE").await, 0);

    let channel = setup.config.channel(CHANNEL).unwrap().clone();
    let mut poller =
        OrderPoller::new(channel, setup.ledger.clone(), reqwest::Client::new()).unwrap();
    let report = poller.poll_once().await.unwrap();
    assert_eq!(report.orders_fetched, 1);
    assert_eq!(
        report.applied, 2,
        "the sale and its line's edit (issue 9 §1)"
    );
    assert_eq!(reserved(&setup.ledger, "MUG-BLUE").await, 2);

    // A restocking refund, then an overlapping poll: only the new unit is applied (and
    // the line's edit at the refund's modification time: one second later, as
    // `date_modified_gmt` has second resolution).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    setup
        .sim
        .refund(order.order_id, &[(line_id, 1)], Some(true))
        .unwrap();
    let again = poller.poll_once().await.unwrap();
    assert_eq!(
        again.applied, 2,
        "one restocked unit and the line's edit: {again:?}"
    );
    assert_eq!(again.duplicates, 1, "the sale was already recorded");
    // The restocked unit of an order not shipped yet (`processing`) is released from the
    // hold: one unit leaves `reserved`, so available grows by one.
    assert_eq!(reserved(&setup.ledger, "MUG-BLUE").await, 1);
}

#[test]
fn woocommerce_sections_are_validated_with_every_problem_reported() {
    let config = Config::from_toml(
        r#"
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "woo-bad"
        kind = "woocommerce"
        locations = ["WH-1"]
        [channels.woocommerce]
        site_url = "shop.example.invalid"
        consumer_key = ""
        consumer_secret = "cs"
        webhook_secret = ""
        batch_limit = 0
        listings = [{ sku = "A", product_id = 1 }, { sku = "A", product_id = 2 }]
        [[channels]]
        id = "woo-missing"
        kind = "woocommerce"
        locations = ["WH-1"]
        "#,
    )
    .unwrap();
    let error = config.validate().unwrap_err().to_string();
    for expected in [
        "woocommerce.site_url must start with http",
        "consumer_key and consumer_secret must not be empty",
        "woocommerce.webhook_secret must not be empty",
        "woocommerce.batch_limit must be at least 1",
        "SKU A is mapped twice",
        "channel woo-missing is kind woocommerce but has no [woocommerce] section",
    ] {
        assert!(
            error.contains(expected),
            "{expected:?} missing from {error}"
        );
    }
}
