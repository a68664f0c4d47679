//! `stocksync demo`: the engine on embedded defaults, an in-process Shopify simulator and a
//! synthetic stream of receipts, orders and cancellations.
//!
//! It prints what it does, then a summary comparing the ledger, each channel's ATP and
//! what the simulator holds, and keeps serving the API until Ctrl-C (or exits when asked).
//!
//! May depend on: app, config, domain, sandbox.

use crate::app::App;
use crate::config::Config;
use crate::domain::{Movement, MovementKind, SCHEMA_VERSION};
use crate::sandbox::shopify::{self as simulator, ShopifySimulatorOptions, SimOrderLine};
use anyhow::Context;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the demo does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// HTTP API address of the engine (`127.0.0.1:8080`).
    pub listen: String,
    /// Folder for the demo database (wiped at start).
    pub data_dir: PathBuf,
    /// Number of SKUs listed on the simulated shop.
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
    /// Orders the simulated shop took (each arrives as a signed webhook).
    pub orders: u64,
    /// Orders cancelled on the simulated shop.
    pub cancellations: u64,
    /// `inventorySetQuantities` calls the simulator applied.
    pub pushes_accepted: u64,
    /// SKUs whose simulator level equals the ledger's ATP at the end.
    pub skus_in_sync: usize,
    /// SKUs checked.
    pub skus_checked: usize,
}

const CHANNEL: &str = "shopify-main";
const SHOP_LOCATION: u64 = 1;

fn sku_name(index: usize) -> String {
    format!("DEMO-{:04}", index + 1)
}

fn item_id(index: usize) -> u64 {
    1001 + index as u64
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

fn demo_config(options: &DemoOptions, shop_url: String, sim: &ShopifySimulatorOptions) -> Config {
    let listings: String = (0..options.skus)
        .map(|i| {
            format!(
                "[[channels.shopify.listings]]\nsku = \"{}\"\ninventory_item_id = {}\n",
                sku_name(i),
                item_id(i)
            )
        })
        .collect();
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
id = "{CHANNEL}"
kind = "shopify"
locations = ["WH-1", "STORE-1"]
safety_stock = 1
max_listed_quantity = 500
[channels.rate_limit]
requests_per_sec = 5.0
burst = 10
[channels.shopify]
shop_url = "{shop_url}"
api_version = "2026-04"
access_token = "{token}"
webhook_secret = "{secret}"
location_id = {SHOP_LOCATION}
{listings}
"#,
        db = options.data_dir.join("demo.db").display(),
        listen = options.listen,
        token = sim.access_token,
        secret = sim.webhook_secret,
    );
    Config::from_toml(&text).expect("the demo config is valid TOML")
}

fn receipt(sku: String, key: String, location: &str, quantity: u64) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key,
        source: "demo-wms".to_owned(),
        occurred_at_ms: Some(crate::clock::now_ms()),
        kind: MovementKind::Receipt {
            location: location.into(),
            quantity,
        },
    }
}

/// Runs the demo; returns its summary (after Ctrl-C unless `exit_after_summary`).
///
/// Errors: the simulator or engine cannot start (port in use, data folder not writable).
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    if options.data_dir.join("demo.db").exists() {
        for suffix in ["demo.db", "demo.db-wal", "demo.db-shm"] {
            let _ = std::fs::remove_file(options.data_dir.join(suffix));
        }
    }
    let sim_options = ShopifySimulatorOptions {
        auto_create_levels: true,
        ..ShopifySimulatorOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shop = simulator::start(sim_options.clone(), listener)
        .await
        .context("starting the Shopify simulator")?;
    println!("demo: Shopify simulator listening at {}", shop.base_url());
    let config = demo_config(&options, shop.base_url(), &sim_options);
    config.validate()?;
    let app = App::start(config.clone()).await?;
    let api = format!("http://{}", app.http_addr());
    shop.set_webhook_url(Some(format!("{api}/webhooks/shopify/{CHANNEL}")));
    println!(
        "demo: engine API at {api} (try {api}/api/v1/stock/{})",
        sku_name(0)
    );
    println!("demo: dashboard at {api}/ (live numbers; readiness at {api}/readyz)");
    println!(
        "demo: Shopify levels at {}/_sandbox/levels, metrics at {api}/metrics",
        shop.base_url()
    );

    let mut summary = DemoSummary::default();
    println!(
        "demo: receiving opening stock for {} SKUs at WH-1 and STORE-1",
        options.skus
    );
    let mut pending = Vec::new();
    for i in 0..options.skus {
        pending.push(app.ledger().submit(receipt(
            sku_name(i),
            format!("demo:open:{i}:wh"),
            "WH-1",
            20,
        )));
        pending.push(app.ledger().submit(receipt(
            sku_name(i),
            format!("demo:open:{i}:store"),
            "STORE-1",
            3,
        )));
    }
    for ack in futures::future::join_all(pending).await {
        ack.context("opening stock")?;
        summary.receipts += 1;
    }

    println!(
        "demo: streaming orders (on the simulated shop, arriving as signed webhooks), cancellations and receipts for {}s",
        options.stream_secs
    );
    let mut dice = Dice(0x5eed_cafe_f00d);
    let mut orders = Vec::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    while started.elapsed() < Duration::from_secs(options.stream_secs) {
        tick.tick().await;
        let index = dice.roll(options.skus as u64) as usize;
        match dice.roll(10) {
            0..=6 => {
                let line = SimOrderLine {
                    inventory_item_id: item_id(index),
                    sku: sku_name(index),
                    quantity: 1 + dice.roll(2),
                };
                match shop
                    .place_order(SHOP_LOCATION, std::slice::from_ref(&line))
                    .await
                {
                    Ok(order) => {
                        summary.orders += 1;
                        orders.push(order.order_id);
                        println!(
                            "demo: order {} for {} x {} placed on Shopify",
                            order.name, line.quantity, line.sku
                        );
                    }
                    Err(error) => {
                        println!("demo: Shopify refused an order for {}: {error}", line.sku)
                    }
                }
            }
            7 if !orders.is_empty() => {
                let order_id = orders.remove(dice.roll(orders.len() as u64) as usize);
                if shop.cancel_order(order_id, true).await.is_ok() {
                    summary.cancellations += 1;
                    println!("demo: order {order_id} cancelled on Shopify");
                }
            }
            _ => {
                let quantity = 1 + dice.roll(5);
                let key = format!("demo:restock:{}", summary.receipts);
                app.ledger()
                    .submit(receipt(sku_name(index), key, "WH-1", quantity))
                    .await?;
                summary.receipts += 1;
                println!("demo: received {quantity} x {} at WH-1", sku_name(index));
            }
        }
    }

    app.propagation().flush(Duration::from_secs(10)).await.ok();
    let policy = config.allocation_policy();
    println!("\ndemo: summary");
    println!(
        "  {:<10} {:>8} {:>9} {:>10} {:>9}",
        "SKU", "on-hand", "reserved", "ATP", "Shopify"
    );
    for i in 0..options.skus {
        let state = app.ledger().state(&sku_name(i).into()).await?;
        let levels = state.levels();
        let atp = policy.allocate(&state.availability(), crate::clock::now_ms())[0].atp;
        let on_hand: i64 = levels.iter().map(|l| l.on_hand).sum();
        let reserved: i64 = levels.iter().map(|l| l.reserved).sum();
        let listed = shop.level(item_id(i), SHOP_LOCATION);
        summary.skus_checked += 1;
        if listed == Some(atp as i64) {
            summary.skus_in_sync += 1;
        }
        if i < 10 {
            let listed = listed.map_or("-".to_owned(), |q| q.to_string());
            println!(
                "  {:<10} {on_hand:>8} {reserved:>9} {atp:>10} {listed:>9}",
                sku_name(i)
            );
        }
    }
    summary.pushes_accepted = shop.counters().mutations_applied;
    println!(
        "  receipts {} | orders {} | cancellations {} | pushes accepted by Shopify {} | SKUs in sync {}/{}",
        summary.receipts,
        summary.orders,
        summary.cancellations,
        summary.pushes_accepted,
        summary.skus_in_sync,
        summary.skus_checked
    );
    if !options.exit_after_summary {
        println!("\ndemo: still serving {api} — press Ctrl-C to stop");
        tokio::signal::ctrl_c().await.ok();
    }
    app.shutdown(Duration::from_secs(5)).await;
    shop.shutdown().await;
    Ok(summary)
}
