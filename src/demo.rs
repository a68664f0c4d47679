//! `stocksync demo`: the engine on embedded defaults with in-process simulators of all four
//! platforms (Shopify, WooCommerce, Bol.com, Amazon) and a synthetic stream of receipts,
//! orders on every channel and cancellations.
//!
//! It shows the stock model at work: two locations feed the channels, the slower
//! marketplaces keep one unit of safety stock, the web shop may pre-sell inbound
//! purchase-order stock, and a gift kit is listed at what its components allow. It prints
//! what it does, then a summary comparing the ledger, each channel's ATP and what each
//! simulator lists, and keeps serving the API and dashboard until Ctrl-C (or exits when
//! asked).
//!
//! May depend on: app, clock, config, domain, sandbox.

use crate::app::App;
use crate::clock::{self, Clock};
use crate::config::Config;
use crate::domain::{Movement, MovementKind, SCHEMA_VERSION};
use crate::sandbox::amazon::{
    self, AmazonSimulator, AmazonSimulatorOptions, Fulfilment, SimListing,
};
use crate::sandbox::bolcom::{self, BolcomSimulator, BolcomSimulatorOptions, SimOffer};
use crate::sandbox::shopify::{self, ShopifySimulator, ShopifySimulatorOptions};
use crate::sandbox::woocommerce::{self, WoocommerceSimulator, WoocommerceSimulatorOptions};
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// What the demo does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// HTTP API address of the engine (`127.0.0.1:8080`).
    pub listen: String,
    /// Folder for the demo database (wiped at start).
    pub data_dir: PathBuf,
    /// Number of SKUs listed on every channel.
    pub skus: usize,
    /// How long the synthetic stream runs, in seconds.
    pub stream_secs: u64,
    /// Exit after the summary instead of serving until Ctrl-C.
    pub exit_after_summary: bool,
}

/// The demo's figures, also printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Receipts submitted to the ledger.
    pub receipts: u64,
    /// Orders taken by the simulated channels (each reaches the ledger by webhook,
    /// notification or polling).
    pub orders: u64,
    /// Orders cancelled on the simulated channels.
    pub cancellations: u64,
    /// Listings (SKU × channel, kit included) whose simulator quantity equals the ledger's
    /// ATP at the end.
    pub listings_in_sync: usize,
    /// Listings checked.
    pub listings_checked: usize,
}

/// The Shopify channel id in the demo config.
pub const SHOPIFY: &str = "shopify-main";
/// The WooCommerce channel id.
pub const WOOCOMMERCE: &str = "woo-main";
/// The Bol.com channel id.
pub const BOLCOM: &str = "bol-nl";
/// The Amazon channel id.
pub const AMAZON: &str = "amazon-nl";
/// The four channel ids, in config order.
pub const CHANNELS: [&str; 4] = [SHOPIFY, WOOCOMMERCE, BOLCOM, AMAZON];
/// The Shopify location the demo writes to.
pub const SHOP_LOCATION: u64 = 1;
const KIT: &str = "DEMO-KIT";
const KIT_ITEM: u64 = 1999;

/// The SKU with demo index `index` (`DEMO-0001` for 0).
pub fn sku_name(index: usize) -> String {
    format!("DEMO-{:04}", index + 1)
}

/// The Shopify inventory item of SKU `index`.
pub fn shopify_item(index: usize) -> u64 {
    1001 + index as u64
}

/// The WooCommerce product of SKU `index`.
pub fn woo_product(index: usize) -> u64 {
    2001 + index as u64
}

/// The Bol.com offer of SKU `index`.
pub fn bol_offer(index: usize) -> String {
    format!("0f1e2d3c-0000-4000-8000-{:012}", index + 1)
}

/// A tiny deterministic generator (xorshift), so the demo needs no randomness source.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides.max(1)
    }
}

/// The four simulated platforms, each listing SKUs `0..skus` (also a fixture for tests
/// that need every channel).
pub struct Platforms {
    /// Shopify.
    pub shopify: ShopifySimulator,
    /// WooCommerce.
    pub woocommerce: WoocommerceSimulator,
    /// Bol.com (stock updates processed after 200 ms).
    pub bolcom: BolcomSimulator,
    /// Amazon (listing patches applied after 300 ms).
    pub amazon: AmazonSimulator,
}

async fn listener() -> anyhow::Result<tokio::net::TcpListener> {
    Ok(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
}

impl Platforms {
    /// Starts all four on `127.0.0.1:0` with listings for SKUs `0..skus` at 0 units.
    ///
    /// Errors: a simulator cannot bind.
    pub async fn start(skus: usize) -> anyhow::Result<Self> {
        let shopify = shopify::start(
            ShopifySimulatorOptions {
                auto_create_levels: true,
                ..Default::default()
            },
            listener().await?,
        )
        .await
        .context("starting the Shopify simulator")?;
        let woocommerce =
            woocommerce::start(WoocommerceSimulatorOptions::default(), listener().await?)
                .await
                .context("starting the WooCommerce simulator")?;
        for i in 0..skus {
            woocommerce.set_product(woo_product(i), &sku_name(i), Some(0));
        }
        let bolcom = bolcom::start(
            BolcomSimulatorOptions {
                process_delay_ms: 200,
                offers: (0..skus)
                    .map(|i| SimOffer {
                        offer_id: bol_offer(i),
                        reference: sku_name(i),
                        ean: format!("87{:011}", i + 1),
                        amount: 0,
                    })
                    .collect(),
                ..Default::default()
            },
            listener().await?,
        )
        .await
        .context("starting the Bol.com simulator")?;
        let amazon = amazon::start(
            AmazonSimulatorOptions {
                apply_delay_ms: 300,
                listings: (0..skus)
                    .map(|i| SimListing {
                        seller_sku: sku_name(i),
                        quantity: Some(0),
                        fba: false,
                        fba_fulfillable: 0,
                    })
                    .collect(),
                ..Default::default()
            },
            listener().await?,
        )
        .await
        .context("starting the Amazon simulator")?;
        Ok(Self {
            shopify,
            woocommerce,
            bolcom,
            amazon,
        })
    }

    /// What `channel` lists for SKU `index`.
    pub fn listed(&self, channel: &str, index: usize) -> Option<i64> {
        match channel {
            SHOPIFY => self.shopify.level(shopify_item(index), SHOP_LOCATION),
            WOOCOMMERCE => self.woocommerce.stock(woo_product(index), 0),
            BOLCOM => self
                .bolcom
                .offer(&bol_offer(index))
                .map(|offer| offer.amount as i64),
            _ => self.amazon.quantity(&sku_name(index)),
        }
    }

    /// Stops all four.
    pub async fn shutdown(self) {
        self.shopify.shutdown().await;
        self.woocommerce.shutdown().await;
        self.bolcom.shutdown().await;
        self.amazon.shutdown().await;
    }
}

/// The demo's config over `platforms`: locations WH-1 and STORE-1, the four channels (Bol.com
/// and Amazon with safety stock 1, Shopify with pre-orders, WooCommerce capped at 25), their
/// listings for SKUs `0..options.skus`, and the kit.
pub fn demo_config(options: &DemoOptions, platforms: &Platforms) -> Config {
    let shopify_listings: String = (0..options.skus)
        .map(|i| {
            format!(
                "{{ sku = \"{}\", inventory_item_id = {} }},",
                sku_name(i),
                shopify_item(i)
            )
        })
        .collect();
    let woo_listings: String = (0..options.skus)
        .map(|i| {
            format!(
                "{{ sku = \"{}\", product_id = {} }},",
                sku_name(i),
                woo_product(i)
            )
        })
        .collect();
    let bol_listings: String = (0..options.skus)
        .map(|i| {
            format!(
                "{{ sku = \"{}\", offer_id = \"{}\" }},",
                sku_name(i),
                bol_offer(i)
            )
        })
        .collect();
    let amazon_listings: String = (0..options.skus)
        .map(|i| format!("{{ sku = \"{}\" }},", sku_name(i)))
        .collect();
    let woo = platforms.woocommerce.options();
    let shop = platforms.shopify.options();
    let bol = platforms.bolcom.options();
    let amazon = platforms.amazon.options();
    let text = format!(
        r#"
[store]
path = "{db}"
[http]
listen = "{listen}"

[[locations]]
id = "WH-1"
name = "Main warehouse"
[[locations]]
id = "STORE-1"
name = "City store"

[[channels]]
id = "{SHOPIFY}"
kind = "shopify"
locations = ["WH-1", "STORE-1"]
preorder = {{ window_days = 14, cap = 5 }}
[channels.rate_limit]
requests_per_sec = 5.0
burst = 10
[channels.shopify]
shop_url = "{shop_url}"
access_token = "{shop_token}"
webhook_secret = "{shop_secret}"
location_id = {SHOP_LOCATION}
listings = [{shopify_listings} {{ sku = "{KIT}", inventory_item_id = {KIT_ITEM} }}]

[[channels]]
id = "{WOOCOMMERCE}"
kind = "woocommerce"
locations = ["WH-1"]
max_listed_quantity = 25
[channels.woocommerce]
site_url = "{woo_url}"
consumer_key = "{woo_key}"
consumer_secret = "{woo_secret}"
webhook_secret = "{woo_webhook}"
poll_interval_secs = 5
listings = [{woo_listings}]

[[channels]]
id = "{BOLCOM}"
kind = "bolcom"
locations = ["WH-1"]
safety_stock = 1
[channels.rate_limit]
requests_per_sec = 20.0
burst = 20
[channels.bolcom]
api_url = "{bol_url}"
token_url = "{bol_token}"
client_id = "{bol_client}"
client_secret = "{bol_secret}"
order_poll_interval_ms = 1000
process_status_poll_ms = 50
listings = [{bol_listings}]

[[channels]]
id = "{AMAZON}"
kind = "amazon"
locations = ["WH-1"]
safety_stock = 1
[channels.amazon]
api_url = "{amazon_url}"
token_url = "{amazon_token}"
client_id = "{amazon_client}"
client_secret = "{amazon_secret}"
refresh_token = "{amazon_refresh}"
seller_id = "{amazon_seller}"
marketplace_id = "{amazon_marketplace}"
order_poll_interval_ms = 1000
fba_poll_interval_ms = 0
listings = [{amazon_listings}]

[[bundles]]
sku = "{KIT}"
components = [{{ sku = "DEMO-0001", quantity = 2 }}, {{ sku = "DEMO-0002", quantity = 1 }}]
"#,
        db = options.data_dir.join("demo.db").display(),
        listen = options.listen,
        shop_url = platforms.shopify.base_url(),
        shop_token = shop.access_token,
        shop_secret = shop.webhook_secret,
        woo_url = platforms.woocommerce.base_url(),
        woo_key = woo.consumer_key,
        woo_secret = woo.consumer_secret,
        woo_webhook = woo.webhook_secret,
        bol_url = platforms.bolcom.base_url(),
        bol_token = platforms.bolcom.token_url(),
        amazon_url = platforms.amazon.base_url(),
        amazon_token = platforms.amazon.token_url(),
        bol_client = bol.client_id,
        bol_secret = bol.client_secret,
        amazon_client = amazon.client_id,
        amazon_secret = amazon.client_secret,
        amazon_refresh = amazon.refresh_token,
        amazon_seller = amazon.seller_id,
        amazon_marketplace = amazon.marketplace_id,
    );
    Config::from_toml(&text).expect("the demo config is valid TOML")
}

/// A movement from the demo WMS, occurring now on `clock`.
fn movement(clock: &dyn Clock, sku: &str, key: String, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key,
        source: "demo-wms".to_owned(),
        occurred_at_ms: Some(clock.now_ms()),
        kind,
    }
}

fn receipt(clock: &dyn Clock, sku: &str, key: String, location: &str, quantity: u64) -> Movement {
    movement(
        clock,
        sku,
        key,
        MovementKind::Receipt {
            location: location.into(),
            quantity,
        },
    )
}

/// Places one order of `quantity` × SKU `index` on WooCommerce, Bol.com or Amazon (MFN) —
/// on the marketplaces only what the listing shows can be bought; returns a printable order
/// id, or why the channel refused.
pub fn place_order(
    platforms: &Platforms,
    channel: &str,
    index: usize,
    quantity: u64,
) -> Result<String, String> {
    let sku = sku_name(index);
    match channel {
        WOOCOMMERCE => platforms
            .woocommerce
            .place_order(
                &[woocommerce::SimOrderLine {
                    product_id: woo_product(index),
                    variation_id: 0,
                    quantity,
                }],
                "processing",
            )
            .map(|order| format!("woocommerce #{}", order.order_id))
            .map_err(|e| e.to_string()),
        BOLCOM => {
            // bol buyers can only buy what the offer shows.
            let shown = platforms
                .bolcom
                .offer(&bol_offer(index))
                .map_or(0, |o| o.amount);
            if shown < quantity {
                return Err(format!("bol.com shows {shown} of {sku}"));
            }
            platforms
                .bolcom
                .place_order(
                    "FBR",
                    &[bolcom::SimOrderLine {
                        offer_id: bol_offer(index),
                        quantity,
                    }],
                )
                .map(|order| format!("bol.com {}", order.order_id))
                .map_err(|e| e.to_string())
        }
        _ => {
            // Buyers can only buy what the listing shows.
            let shown = platforms.amazon.quantity(&sku).unwrap_or(0);
            if shown < quantity as i64 {
                return Err(format!("amazon shows {shown} of {sku}"));
            }
            platforms
                .amazon
                .place_order(
                    Fulfilment::Mfn,
                    &[amazon::SimOrderLine {
                        seller_sku: sku,
                        quantity,
                    }],
                )
                .map(|order| format!("amazon {}", order.amazon_order_id))
                .map_err(|e| e.to_string())
        }
    }
}

/// A few movements that show the rest of the stock model: a transfer between locations, a
/// WMS count that arrives after movements it had not seen, and a checkout hold that lapses.
async fn show_stock_model(app: &App, skus: usize, clock: &dyn Clock) -> anyhow::Result<()> {
    let ledger = app.ledger();
    let second = sku_name(1.min(skus - 1));
    ledger
        .submit(movement(
            clock,
            &second,
            "demo:transfer-1:dispatch".to_owned(),
            MovementKind::TransferDispatch {
                transfer: "TR-1".to_owned(),
                from: "WH-1".into(),
                to: "STORE-1".into(),
                quantity: 4,
            },
        ))
        .await?;
    println!(
        "demo: transfer TR-1 sends 4 × {second} from WH-1 to STORE-1 (in transit, not available)"
    );
    ledger
        .submit(movement(
            clock,
            &second,
            "demo:transfer-1:receipt".to_owned(),
            MovementKind::TransferReceipt {
                transfer: "TR-1".to_owned(),
                quantity: 4,
            },
        ))
        .await?;
    println!("demo: STORE-1 receives TR-1: 4 × {second} now available there");
    // The WMS counted WH-1 before the receipt below reached us: the count adds it back.
    let counted_at = clock.now_ms();
    let third = sku_name(2.min(skus - 1));
    ledger
        .submit(Movement {
            occurred_at_ms: Some(counted_at + 1),
            ..receipt(clock, &third, "demo:late-receipt".to_owned(), "WH-1", 5)
        })
        .await?;
    ledger
        .submit(Movement {
            occurred_at_ms: Some(counted_at + 2),
            ..movement(
                clock,
                &third,
                "demo:count-1".to_owned(),
                MovementKind::Count {
                    location: "WH-1".into(),
                    on_hand: 18,
                    watermark: counted_at,
                },
            )
        })
        .await?;
    let on_hand = ledger
        .state(&third.as_str().into())
        .await?
        .location(&"WH-1".into())
        .on_hand;
    println!(
        "demo: the WMS counted 18 × {third} at WH-1 before a receipt of 5 reached it: on-hand is {on_hand}, nothing counted twice"
    );
    let outcome = ledger
        .reserve(crate::ledger::ReservationRequest {
            id: "demo-checkout-1".to_owned(),
            lines: vec![crate::ledger::ReservationLine {
                sku: sku_name(0).into(),
                quantity: 2,
                location: None,
                route: vec!["WH-1".into(), "STORE-1".into()],
            }],
            ttl_secs: Some(5),
        })
        .await?;
    if let crate::ledger::ReservationOutcome::Reserved { .. } = outcome {
        println!(
            "demo: a checkout holds 2 × {} for 5 s (API: POST /api/v1/reservations); unpaid, it lapses",
            sku_name(0)
        );
    }
    Ok(())
}

/// Runs the demo; returns its summary (after Ctrl-C unless `exit_after_summary`).
///
/// Errors: a simulator or the engine cannot start (port in use, data folder not writable).
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    for suffix in ["demo.db", "demo.db-wal", "demo.db-shm"] {
        let _ = std::fs::remove_file(options.data_dir.join(suffix));
    }
    let skus = options.skus.max(2);
    // The demo runs on the system clock; the simulators default to it too.
    let system_clock = clock::system();
    let clock: &dyn Clock = system_clock.as_ref();
    let platforms = Platforms::start(skus).await?;
    println!(
        "demo: simulators: Shopify {} | WooCommerce {} | Bol.com {} | Amazon {}",
        platforms.shopify.base_url(),
        platforms.woocommerce.base_url(),
        platforms.bolcom.base_url(),
        platforms.amazon.base_url()
    );
    let config = demo_config(
        &DemoOptions {
            skus,
            ..options.clone()
        },
        &platforms,
    );
    config.validate()?;
    let app = App::start(config.clone()).await?;
    let api = format!("http://{}", app.http_addr());
    platforms
        .shopify
        .set_webhook_url(Some(format!("{api}/webhooks/shopify/{SHOPIFY}")));
    platforms
        .woocommerce
        .set_webhook_url(Some(format!("{api}/webhooks/woocommerce/{WOOCOMMERCE}")));
    println!(
        "demo: engine API at {api} (try {api}/api/v1/stock/{})",
        sku_name(0)
    );
    println!(
        "demo: dashboard at {api}/ (live numbers; readiness at {api}/readyz, metrics at {api}/metrics)"
    );
    println!(
        "demo: channels: Shopify (WH-1 + STORE-1, pre-orders up to 5 from POs due in 14 days), WooCommerce (WH-1, at most 25 listed), Bol.com and Amazon (WH-1, safety stock 1); {KIT} = 2 × DEMO-0001 + 1 × DEMO-0002 on Shopify"
    );

    let mut summary = DemoSummary::default();
    println!("demo: receiving opening stock for {skus} SKUs at WH-1 and STORE-1");
    let mut pending = Vec::new();
    for i in 0..skus {
        let sku = sku_name(i);
        pending.push(app.ledger().submit(receipt(
            clock,
            &sku,
            format!("demo:open:{i}:wh"),
            "WH-1",
            20,
        )));
        pending.push(app.ledger().submit(receipt(
            clock,
            &sku,
            format!("demo:open:{i}:store"),
            "STORE-1",
            3,
        )));
    }
    let po_expected = clock.now_ms() + 7 * 86_400_000;
    pending.push(app.ledger().submit(movement(
        clock,
        &sku_name(0),
        "demo:po-1001:1".to_owned(),
        MovementKind::Inbound {
            purchase_order: "PO-1001:1".to_owned(),
            location: "WH-1".into(),
            quantity: 12,
            expected_at_ms: po_expected,
        },
    )));
    for ack in futures::future::join_all(pending).await {
        ack.context("opening stock")?;
        summary.receipts += 1;
    }
    println!(
        "demo: purchase order PO-1001 announces 12 × {} in 7 days (Shopify may pre-sell 5 of them)",
        sku_name(0)
    );
    show_stock_model(&app, skus, clock).await?;

    println!(
        "demo: streaming orders on all four channels, cancellations and receipts for {}s",
        options.stream_secs
    );
    let channels = CHANNELS;
    let mut dice = Dice(0x5eed_cafe_f00d);
    let mut shopify_orders = Vec::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    while started.elapsed() < Duration::from_secs(options.stream_secs) {
        tick.tick().await;
        let index = dice.roll(skus as u64) as usize;
        let quantity = 1 + dice.roll(2);
        match dice.roll(10) {
            0..=6 => {
                let channel = channels[dice.roll(4) as usize];
                let placed = if channel == SHOPIFY {
                    let line = shopify::SimOrderLine {
                        inventory_item_id: shopify_item(index),
                        sku: sku_name(index),
                        quantity,
                    };
                    platforms
                        .shopify
                        .place_order(SHOP_LOCATION, std::slice::from_ref(&line))
                        .await
                        .map(|order| {
                            shopify_orders.push(order.order_id);
                            format!("shopify {}", order.name)
                        })
                        .map_err(|e| e.to_string())
                } else {
                    place_order(&platforms, channel, index, quantity)
                };
                match placed {
                    Ok(order) => {
                        summary.orders += 1;
                        println!("demo: order {order} for {quantity} x {}", sku_name(index));
                    }
                    Err(reason) => println!(
                        "demo: {channel} refused an order for {}: {reason}",
                        sku_name(index)
                    ),
                }
            }
            7 if !shopify_orders.is_empty() => {
                let order_id =
                    shopify_orders.remove(dice.roll(shopify_orders.len() as u64) as usize);
                if platforms.shopify.cancel_order(order_id, true).await.is_ok() {
                    summary.cancellations += 1;
                    println!("demo: Shopify order {order_id} cancelled");
                }
            }
            _ => {
                let key = format!("demo:restock:{}", summary.receipts);
                app.ledger()
                    .submit(receipt(clock, &sku_name(index), key, "WH-1", quantity * 2))
                    .await?;
                summary.receipts += 1;
                println!(
                    "demo: received {} x {} at WH-1",
                    quantity * 2,
                    sku_name(index)
                );
            }
        }
    }

    // Let the pollers pick up the last orders, then the channels settle.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    app.propagation().flush(Duration::from_secs(15)).await.ok();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rules = config.allocation_policy();
    let now = clock.now_ms();
    println!("\ndemo: summary (ATP / what the channel lists)");
    println!(
        "  {:<10} {:>8} {:>9} {:>12} {:>12} {:>12} {:>12}",
        "SKU", "on-hand", "reserved", "Shopify", "WooCommerce", "Bol.com", "Amazon"
    );
    for i in 0..skus {
        let state = app.ledger().state(&sku_name(i).into()).await?;
        let levels = state.levels();
        let atps = rules.allocate(&state.availability(), now);
        let on_hand: i64 = levels.iter().map(|l| l.on_hand).sum();
        let reserved: i64 = levels.iter().map(|l| l.reserved).sum();
        let mut cells = Vec::new();
        for (channel, breakdown) in channels.iter().zip(&atps) {
            let listed = platforms.listed(channel, i);
            summary.listings_checked += 1;
            if listed == Some(breakdown.atp as i64) {
                summary.listings_in_sync += 1;
            }
            cells.push(format!(
                "{}/{}",
                breakdown.atp,
                listed.map_or("-".to_owned(), |q| q.to_string())
            ));
        }
        if i < 10 {
            println!(
                "  {:<10} {on_hand:>8} {reserved:>9} {:>12} {:>12} {:>12} {:>12}",
                sku_name(i),
                cells[0],
                cells[1],
                cells[2],
                cells[3]
            );
        }
    }
    // The kit's ATP: its levels derived from its components', then Shopify's rule.
    let bom = config.bill_of_materials().unwrap_or_default();
    let components = bom.components(&KIT.into()).unwrap_or_default().to_vec();
    let mut component_levels = Vec::new();
    for component in &components {
        component_levels.push(app.ledger().state(&component.sku).await?.levels());
    }
    let inputs: Vec<_> = components
        .iter()
        .zip(component_levels.iter().map(Vec::as_slice))
        .collect();
    let kit_change = crate::domain::AvailabilityChange {
        sku: KIT.into(),
        seq: 0,
        locations: crate::domain::bundle_levels(&inputs),
        inbound: Vec::new(),
    };
    let kit_atp = rules.allocate(&kit_change, now)[0].atp;
    let kit_listed = platforms.shopify.level(KIT_ITEM, SHOP_LOCATION);
    summary.listings_checked += 1;
    if kit_listed == Some(kit_atp as i64) {
        summary.listings_in_sync += 1;
    }
    println!(
        "  {KIT:<10} bundle: ATP {kit_atp} / Shopify lists {}",
        kit_listed.map_or("-".to_owned(), |q| q.to_string())
    );
    println!(
        "  receipts {} | orders {} | cancellations {} | listings in sync {}/{}",
        summary.receipts,
        summary.orders,
        summary.cancellations,
        summary.listings_in_sync,
        summary.listings_checked
    );
    if !options.exit_after_summary {
        println!("\ndemo: still serving {api} — press Ctrl-C to stop");
        tokio::signal::ctrl_c().await.ok();
    }
    app.shutdown(Duration::from_secs(5)).await;
    platforms.shutdown().await;
    Ok(summary)
}
