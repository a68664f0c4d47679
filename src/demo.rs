//! `stocksync demo`: the engine on embedded defaults with every platform's demo storefront
//! (an in-process simulator, see [`crate::sandbox::demo::DemoShop`]) and a synthetic stream
//! of receipts, orders on every channel and cancellations. It names no platform: it
//! iterates over [`crate::sandbox::demo_shops`].
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
use crate::domain::{CountBasis, Movement, MovementKind, SCHEMA_VERSION};
use crate::sandbox::demo::DemoShop;
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

const KIT: &str = crate::sandbox::demo::KIT;

pub use crate::sandbox::demo::sku_name;

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

/// Every platform's demo storefront ([`crate::sandbox::demo_shops`]), each listing SKUs
/// `0..skus` (also a fixture for tests that need every channel).
pub struct Platforms {
    shops: Vec<Box<dyn DemoShop>>,
}

impl Platforms {
    /// Starts them all on `127.0.0.1:0` with listings for SKUs `0..skus` at 0 units.
    ///
    /// Errors: a simulator cannot bind.
    pub async fn start(skus: usize) -> anyhow::Result<Self> {
        Ok(Self {
            shops: crate::sandbox::demo_shops(skus).await?,
        })
    }

    /// The storefronts, in the config's channel order.
    pub fn shops(&self) -> impl Iterator<Item = &dyn DemoShop> {
        self.shops.iter().map(Box::as_ref)
    }

    /// The storefront of `channel`.
    pub fn shop(&self, channel: &str) -> Option<&dyn DemoShop> {
        self.shops().find(|shop| shop.channel() == channel)
    }

    /// The simulator of type `T` (for tests that drive one platform directly).
    pub fn simulator<T: 'static>(&self) -> Option<&T> {
        self.shops()
            .find_map(|shop| shop.simulator().downcast_ref::<T>())
    }

    /// What `channel` lists for SKU `index`.
    pub fn listed(&self, channel: &str, index: usize) -> Option<i64> {
        self.shop(channel)?.listed(index)
    }

    /// Stops them all.
    pub async fn shutdown(self) {
        for shop in self.shops {
            shop.shutdown().await;
        }
    }
}

/// The demo's config over `platforms`: locations WH-1 and STORE-1, every storefront's
/// channel (its own stock rules and listings for SKUs `0..options.skus`), and the kit.
pub fn demo_config(options: &DemoOptions, platforms: &Platforms) -> Config {
    let channels: String = platforms
        .shops()
        .map(|shop| shop.channel_toml(options.skus))
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
{channels}
[[bundles]]
sku = "{KIT}"
components = [{{ sku = "DEMO-0001", quantity = 2 }}, {{ sku = "DEMO-0002", quantity = 1 }}]
"#,
        db = options.data_dir.join("demo.db").display(),
        listen = options.listen,
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

/// Places one order of `quantity` × SKU `index` on `channel`'s storefront — on the
/// marketplaces only what the listing shows can be bought; returns a printable order id, or
/// why the channel refused.
pub async fn place_order(
    platforms: &Platforms,
    channel: &str,
    index: usize,
    quantity: u64,
) -> Result<String, String> {
    let shop = platforms
        .shop(channel)
        .ok_or_else(|| format!("the demo has no channel {channel}"))?;
    shop.place_order(index, quantity)
        .await
        .map(|order| order.label)
}

/// The storefronts' names joined for a sentence (`A`, `A and B`, `A, B and C`).
fn names(shops: &[&dyn DemoShop]) -> String {
    let names: Vec<_> = shops.iter().map(|shop| shop.name()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// The channels and their rules in words, storefronts with the same rules together.
fn describe_channels(platforms: &Platforms) -> String {
    let mut groups: Vec<Vec<&dyn DemoShop>> = Vec::new();
    for shop in platforms.shops() {
        match groups.last_mut() {
            Some(group) if group[0].rules() == shop.rules() => group.push(shop),
            _ => groups.push(vec![shop]),
        }
    }
    groups
        .iter()
        .map(|group| format!("{} ({})", names(group), group[0].rules()))
        .collect::<Vec<_>>()
        .join(", ")
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
                rejected: 0,
                rejected_reason: None,
                quarantine: None,
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
                    on_hand: Some(18),
                    watermark: counted_at,
                    basis: Some(CountBasis::Physical),
                    booked: None,
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
    let simulators: Vec<String> = platforms
        .shops()
        .map(|shop| format!("{} {}", shop.name(), shop.base_url()))
        .collect();
    println!("demo: simulators: {}", simulators.join(" | "));
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
    for shop in platforms.shops() {
        shop.connect(&api);
    }
    println!(
        "demo: engine API at {api} (try {api}/api/v1/stock/{})",
        sku_name(0)
    );
    println!(
        "demo: dashboard at {api}/ (live numbers; readiness at {api}/readyz, metrics at {api}/metrics)"
    );
    let kit_shops: Vec<_> = platforms.shops().filter(|shop| shop.lists_kit()).collect();
    println!(
        "demo: channels: {}; {KIT} = 2 × DEMO-0001 + 1 × DEMO-0002 on {}",
        describe_channels(&platforms),
        names(&kit_shops)
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
    let presellers: Vec<_> = platforms
        .shops()
        .filter(|shop| shop.preorder_cap().is_some())
        .collect();
    let presold: u64 = presellers
        .iter()
        .filter_map(|shop| shop.preorder_cap())
        .sum();
    println!(
        "demo: purchase order PO-1001 announces 12 × {} in 7 days ({} may pre-sell {presold} of them)",
        sku_name(0),
        names(&presellers)
    );
    show_stock_model(&app, skus, clock).await?;

    println!(
        "demo: streaming orders on all four channels, cancellations and receipts for {}s",
        options.stream_secs
    );
    let shops: Vec<&dyn DemoShop> = platforms.shops().collect();
    let mut dice = Dice(0x5eed_cafe_f00d);
    // Orders that can be cancelled: (storefront, order id).
    let mut cancellable: Vec<(&dyn DemoShop, u64)> = Vec::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    while started.elapsed() < Duration::from_secs(options.stream_secs) {
        tick.tick().await;
        let index = dice.roll(skus as u64) as usize;
        let quantity = 1 + dice.roll(2);
        match dice.roll(10) {
            0..=6 => {
                let shop = shops[dice.roll(shops.len() as u64) as usize];
                match shop.place_order(index, quantity).await {
                    Ok(order) => {
                        if let Some(order_id) = order.cancellable {
                            cancellable.push((shop, order_id));
                        }
                        summary.orders += 1;
                        println!(
                            "demo: order {} for {quantity} x {}",
                            order.label,
                            sku_name(index)
                        );
                    }
                    Err(reason) => println!(
                        "demo: {} refused an order for {}: {reason}",
                        shop.channel(),
                        sku_name(index)
                    ),
                }
            }
            7 if !cancellable.is_empty() => {
                let (shop, order_id) =
                    cancellable.remove(dice.roll(cancellable.len() as u64) as usize);
                if shop.cancel_order(order_id).await {
                    summary.cancellations += 1;
                    println!("demo: {} order {order_id} cancelled", shop.name());
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
    let mut header = format!("  {:<10} {:>8} {:>9}", "SKU", "on-hand", "reserved");
    for shop in &shops {
        header.push_str(&format!(" {:>12}", shop.name()));
    }
    println!("{header}");
    for i in 0..skus {
        let state = app.ledger().state(&sku_name(i).into()).await?;
        let levels = state.levels();
        let atps = rules.allocate(&state.availability(), now);
        let on_hand: i64 = levels.iter().map(|l| l.on_hand).sum();
        let reserved: i64 = levels.iter().map(|l| l.reserved).sum();
        let mut cells = Vec::new();
        for (shop, breakdown) in shops.iter().zip(&atps) {
            let listed = shop.listed(i);
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
            let mut row = format!("  {:<10} {on_hand:>8} {reserved:>9}", sku_name(i));
            for cell in &cells {
                row.push_str(&format!(" {cell:>12}"));
            }
            println!("{row}");
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
    let kit_atps = rules.allocate(&kit_change, now);
    for (shop, breakdown) in shops.iter().zip(&kit_atps) {
        if !shop.lists_kit() {
            continue;
        }
        let kit_atp = breakdown.atp;
        let kit_listed = shop.listed_kit();
        summary.listings_checked += 1;
        if kit_listed == Some(kit_atp as i64) {
            summary.listings_in_sync += 1;
        }
        println!(
            "  {KIT:<10} bundle: ATP {kit_atp} / {} lists {}",
            shop.name(),
            kit_listed.map_or("-".to_owned(), |q| q.to_string())
        );
    }
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
        crate::app::stop_signal().await.ok();
    }
    app.shutdown(Duration::from_secs(5)).await;
    platforms.shutdown().await;
    Ok(summary)
}
