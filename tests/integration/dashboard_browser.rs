//! The dashboard as a person sees it: the whole engine (`App`) on 127.0.0.1:0 with stock
//! and a Shopify channel (the in-process simulator), opened in headless Chromium (Debian's
//! `chromium`, installed by `scripts/test.sh`). The page must find a SKU through its search
//! and show that SKU's per-location and per-channel numbers; a screenshot must be written.
//!
//! Also the read endpoints the page uses: SKU paging with a prefix, recent events, channel
//! health, `/readyz` (200, and 503 naming an unreachable channel) and the live stream.

use std::path::{Path, PathBuf};
use std::time::Duration;
use stocksync::app::App;
use stocksync::config::Config;
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION};
use stocksync::sandbox::shopify::{self, ShopifySimulator, ShopifySimulatorOptions};

const CHANNEL: &str = "shop-lantern";
const SHOP_LOCATION: u64 = 3;
const SKUS: [(&str, u64); 3] = [
    ("LANTERN-BRASS", 7001),
    ("LANTERN-COPPER", 7002),
    ("KETTLE-ENAMEL", 7003),
];

async fn simulator() -> ShopifySimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    shopify::start(
        ShopifySimulatorOptions {
            auto_create_levels: true,
            ..ShopifySimulatorOptions::default()
        },
        listener,
    )
    .await
    .unwrap()
}

/// A config with the simulator channel and, if given, a second channel whose shop is not
/// listening (every push fails with a transport error).
fn config(dir: &Path, sim: &ShopifySimulator, offline_shop: Option<&str>) -> Config {
    let config = Config::from_toml(&config_text(dir, sim, offline_shop)).expect("config parses");
    config.validate().expect("config is valid");
    config
}

/// The text of [`config`].
fn config_text(dir: &Path, sim: &ShopifySimulator, offline_shop: Option<&str>) -> String {
    let listings: String = SKUS
        .iter()
        .map(|(sku, item)| {
            format!("[[channels.shopify.listings]]\nsku = \"{sku}\"\ninventory_item_id = {item}\n")
        })
        .collect();
    let offline = offline_shop
        .map(|url| {
            format!(
                r#"
[[channels]]
id = "shop-offline"
kind = "shopify"
locations = ["WH-NORTH"]
[channels.retry]
initial_backoff_ms = 50
max_backoff_ms = 200
[channels.shopify]
shop_url = "{url}"
access_token = "token-offline"
webhook_secret = "secret-offline"
location_id = 9
[[channels.shopify.listings]]
sku = "LANTERN-BRASS"
inventory_item_id = 9001
"#
            )
        })
        .unwrap_or_default();
    let text = format!(
        r#"
[store]
path = "{db}"
[http]
listen = "127.0.0.1:0"
[[locations]]
id = "WH-NORTH"
name = "North warehouse"
[[locations]]
id = "SHOP-HARBOUR"
name = "Harbour shop"
[[channels]]
id = "{CHANNEL}"
kind = "shopify"
locations = ["WH-NORTH", "SHOP-HARBOUR"]
safety_stock = 2
[channels.rate_limit]
requests_per_sec = 50.0
burst = 20
[channels.shopify]
shop_url = "{url}"
access_token = "{token}"
webhook_secret = "{secret}"
location_id = {SHOP_LOCATION}
{listings}
{offline}
"#,
        db = dir.join("dashboard.db").display(),
        url = sim.base_url(),
        token = sim.options().access_token,
        secret = sim.options().webhook_secret,
    );
    text
}

fn receipt(sku: &str, key: &str, location: &str, quantity: u64) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: key.to_owned(),
        source: "wms-test".to_owned(),
        occurred_at_ms: Some(stocksync::clock::Clock::now_ms(
            &stocksync::clock::SystemClock,
        )),
        kind: MovementKind::Receipt {
            location: location.into(),
            quantity,
        },
    }
}

/// Starts the engine with stock: LANTERN-BRASS 30 at WH-NORTH and 5 at SHOP-HARBOUR
/// (ATP 35 − 2 = 33), LANTERN-COPPER 4 at WH-NORTH (ATP 2), KETTLE-ENAMEL 1 (ATP 0), and
/// waits until the channel acknowledged them.
async fn engine(dir: &Path, sim: &ShopifySimulator, offline_shop: Option<&str>) -> App {
    let app = App::start(config(dir, sim, offline_shop)).await.unwrap();
    for (sku, key, location, quantity) in [
        ("LANTERN-BRASS", "rcpt-1", "WH-NORTH", 30),
        ("LANTERN-BRASS", "rcpt-2", "SHOP-HARBOUR", 5),
        ("LANTERN-COPPER", "rcpt-3", "WH-NORTH", 4),
        ("KETTLE-ENAMEL", "rcpt-4", "WH-NORTH", 1),
    ] {
        app.ledger()
            .submit(receipt(sku, key, location, quantity))
            .await
            .expect("receipt is durable");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.propagation().last_pushed(CHANNEL, "LANTERN-BRASS") != Some(33)
        || app.propagation().last_pushed(CHANNEL, "LANTERN-COPPER") != Some(2)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the channel did not acknowledge the stock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app
}

/// Debian's Chromium: `$CHROMIUM`, then `chromium` on PATH. Panics with instructions when
/// it is missing (the test must not pass silently).
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return path.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the dashboard browser test needs Debian's chromium (apt-get install -y chromium); \
                 `bash scripts/test.sh` installs it"
            )
        })
}

/// Runs headless Chromium on `url` with `extra` arguments and a fresh profile; returns
/// its standard output.
pub(crate) async fn run_chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=4000",
            "--timeout=20000",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The HTML of the element `<{tag} id="{id}"…>…</{tag}>` (first closing tag; tables here
/// are not nested).
pub(crate) fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let open = format!("<{tag} id=\"{id}\"");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in the DOM:\n{dom}"));
    let end = dom[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("{open} is not closed"));
    &dom[start..start + end]
}

/// The row `<tr data-{key}="{value}">…</tr>` inside `html`.
pub(crate) fn row<'a>(html: &'a str, key: &str, value: &str) -> &'a str {
    let open = format!("<tr data-{key}=\"{value}\"");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in:\n{html}"));
    let end = html[start..].find("</tr>").expect("row is closed");
    &html[start..start + end]
}

/// The text of the cell with `data-field="{field}"` in `row_html`.
pub(crate) fn cell(row_html: &str, field: &str) -> String {
    let marker = format!("data-field=\"{field}\"");
    let at = row_html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in:\n{row_html}"));
    let text_start = at + row_html[at..].find('>').expect("tag end") + 1;
    let text_end = text_start + row_html[text_start..].find('<').expect("text end");
    row_html[text_start..text_end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_finds_a_sku_by_search_and_shows_its_channel_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator().await;
    let app = engine(dir.path(), &sim, None).await;
    let base = format!("http://{}", app.http_addr());

    // Search (prefix "LANTERN-B") through the page's own search box, which opens the
    // first match. `live=poll`: headless Chromium's virtual time does not advance while a
    // request is open, and a server-sent event stream never ends (the stream itself is
    // tested over HTTP below), so the page polls here.
    let dom = run_chromium(&format!("{base}/?q=LANTERN-B&live=poll"), &["--dump-dom"]).await;
    let list = element(&dom, "ul", "sku-list");
    assert!(list.contains("LANTERN-BRASS"), "search result list: {list}");
    assert!(
        !list.contains("KETTLE-ENAMEL"),
        "the prefix filters the list: {list}"
    );
    assert!(
        element(&dom, "span", "sku-title").contains("LANTERN-BRASS"),
        "the SKU is open"
    );

    let channels = element(&dom, "table", "channels-atp");
    let shop = row(channels, "channel", CHANNEL);
    assert_eq!(cell(shop, "atp"), "33", "{shop}");
    assert_eq!(cell(shop, "last_pushed"), "33", "{shop}");

    let locations = element(&dom, "table", "locations");
    let north = row(locations, "location", "WH-NORTH");
    assert_eq!(cell(north, "on_hand"), "30");
    assert_eq!(cell(north, "reserved"), "0");
    assert_eq!(cell(north, "available"), "30");
    assert_eq!(
        cell(row(locations, "location", "SHOP-HARBOUR"), "on_hand"),
        "5"
    );

    let health = element(&dom, "table", "channel-health");
    let shop_health = row(health, "channel", CHANNEL);
    assert_eq!(cell(shop_health, "state"), "ok", "{shop_health}");
    assert_eq!(cell(shop_health, "connected"), "yes");
    assert_eq!(cell(shop_health, "queue_depth"), "0");

    let movements = element(&dom, "table", "movements");
    assert!(movements.contains("rcpt-1") && movements.contains("rcpt-2"));
    assert!(element(&dom, "span", "readiness").contains("ready"));

    // A deep link to another SKU, then a screenshot of it.
    let dom = run_chromium(
        &format!("{base}/?live=poll#sku=LANTERN-COPPER"),
        &["--dump-dom"],
    )
    .await;
    let copper = row(element(&dom, "table", "channels-atp"), "channel", CHANNEL);
    assert_eq!(cell(copper, "atp"), "2");

    let shot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let shot = shot_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &format!("{base}/?sku=LANTERN-BRASS&live=poll"),
        &[&format!("--screenshot={}", shot.display())],
    )
    .await;
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 1000));
    // A blank page of that size compresses to a few kilobytes; a rendered one does not.
    assert!(png.len() > 30_000, "screenshot is only {} bytes", png.len());

    app.shutdown(Duration::from_secs(2)).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_endpoints_page_filter_and_report_health() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator().await;
    let app = engine(dir.path(), &sim, None).await;
    let base = format!("http://{}", app.http_addr());
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}"));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    };

    let (status, page) = get("/api/v1/skus?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        serde_json::json!({"skus": ["KETTLE-ENAMEL", "LANTERN-BRASS"], "next_after": "LANTERN-BRASS"})
    );
    let (_, page) = get("/api/v1/skus?limit=2&after=LANTERN-BRASS").await;
    assert_eq!(
        page,
        serde_json::json!({"skus": ["LANTERN-COPPER"], "next_after": null})
    );
    let (_, page) = get("/api/v1/skus?prefix=LANTERN-").await;
    assert_eq!(
        page["skus"],
        serde_json::json!(["LANTERN-BRASS", "LANTERN-COPPER"])
    );
    let (_, page) = get("/api/v1/skus?prefix=LANTERN-C").await;
    assert_eq!(page["skus"], serde_json::json!(["LANTERN-COPPER"]));
    let (status, problem) = get("/api/v1/skus?limit=0").await;
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "urn:stocksync:problem:invalid-query");

    let (status, events) = get("/api/v1/stock/LANTERN-BRASS/events?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    assert_eq!(events["events"][0]["seq"], 2, "newest first: {events}");
    assert_eq!(events["events"][0]["idempotency_key"], "rcpt-2");

    let (status, channels) = get("/api/v1/channels").await;
    assert_eq!(status, 200);
    let shop = &channels["channels"][0];
    assert_eq!(shop["channel"], CHANNEL);
    assert_eq!(shop["kind"], "shopify");
    assert_eq!(shop["state"], "ok");
    assert_eq!(shop["connected"], true);
    assert_eq!(shop["listings"], 3);
    assert!(shop["last_success_at_ms"].as_i64().is_some());

    let (status, ready) = get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["not_ready"], serde_json::json!([]));
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store", &format!("channel:{CHANNEL}")]);

    // The live stream sends the channel health and the SKU's stock at once.
    let mut live = http
        .get(format!("{base}/api/v1/events?sku=LANTERN-BRASS"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    while !(text.contains("event: channels") && text.contains("event: stock")) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), live.chunk())
            .await
            .expect("a live event within 5 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"sku\":\"LANTERN-BRASS\""), "{text}");
    drop(live);

    // The dashboard page and its assets are served by the engine itself.
    for (path, content_type) in [
        ("/", "text/html"),
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
    }

    app.shutdown(Duration::from_secs(2)).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_a_channel_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator().await;
    // A port nobody listens on: bind, read the port, close.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let app = engine(dir.path(), &sim, Some(&closed)).await;
    let url = format!("http://{}/readyz", app.http_addr());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let response = reqwest::get(&url).await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        if status == 503 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(
        body["not_ready"],
        serde_json::json!(["channel:shop-offline"])
    );
    let offline = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "channel:shop-offline")
        .unwrap();
    assert_eq!(offline["ok"], false);
    assert!(offline["detail"].as_str().unwrap().starts_with("down"));

    let channels: serde_json::Value =
        reqwest::get(format!("http://{}/api/v1/channels", app.http_addr()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let offline = &channels["channels"][1];
    assert_eq!(offline["state"], "down");
    assert_eq!(offline["connected"], false);
    assert!(offline["errors_total"].as_u64().unwrap() > 0);

    app.shutdown(Duration::from_millis(200)).await;
    sim.shutdown().await;
}

/// The row of the channel table whose `data-location` is `location` (a Shopify location of
/// a multi-location channel).
fn location_row<'a>(html: &'a str, location: &str) -> &'a str {
    let marker = format!("data-location=\"{location}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in:\n{html}"));
    let start = html[..at].rfind("<tr").expect("inside a row");
    let end = at + html[at..].find("</tr>").expect("row is closed");
    &html[start..end]
}

/// Issue 16: a channel that lists per Shopify location shows its total and one row per
/// location, with the location's part of the ATP and what was pushed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_row_per_shopify_location() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator().await;
    let text = config_text(dir.path(), &sim, None).replace(
        &format!("location_id = {SHOP_LOCATION}\n"),
        "[[channels.shopify.location_map]]\nshopify_location_id = 31\nname = \"North\"\nfeeds = [\"WH-NORTH\"]\n\
         [[channels.shopify.location_map]]\nshopify_location_id = 32\nname = \"Harbour\"\nfeeds = [\"SHOP-HARBOUR\"]\n",
    );
    let config = Config::from_toml(&text).expect("config parses");
    config.validate().expect("config is valid");
    let app = App::start(config).await.unwrap();
    for (key, location, quantity) in [("rcpt-1", "WH-NORTH", 30), ("rcpt-2", "SHOP-HARBOUR", 5)] {
        app.ledger()
            .submit(receipt("LANTERN-BRASS", key, location, quantity))
            .await
            .expect("receipt is durable");
    }
    // 35 − safety stock 2 = 33, divided 30 : 5 → 28.29 / 4.71 → 28 / 5.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.propagation().last_pushed(CHANNEL, "LANTERN-BRASS@31") != Some(28)
        || app.propagation().last_pushed(CHANNEL, "LANTERN-BRASS@32") != Some(5)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the locations did not acknowledge their parts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sim.level(7001, 31), Some(28));
    assert_eq!(sim.level(7001, 32), Some(5));
    let base = format!("http://{}", app.http_addr());
    let dom = run_chromium(
        &format!("{base}/?live=poll#sku=LANTERN-BRASS"),
        &["--dump-dom"],
    )
    .await;
    let channels = element(&dom, "table", "channels-atp");
    let total = row(channels, "channel", CHANNEL);
    assert_eq!(cell(total, "atp"), "33", "{total}");
    assert_eq!(cell(total, "last_pushed"), "per location", "{total}");
    let north = location_row(channels, "31");
    assert!(north.contains("North (31)"), "{north}");
    assert_eq!(cell(north, "atp"), "28", "{north}");
    assert_eq!(cell(north, "last_pushed"), "28", "{north}");
    let harbour = location_row(channels, "32");
    assert_eq!(cell(harbour, "atp"), "5", "{harbour}");
    assert_eq!(cell(harbour, "last_pushed"), "5", "{harbour}");
    assert!(harbour.contains("fed by SHOP-HARBOUR"), "{harbour}");
    app.shutdown(Duration::from_secs(5)).await;
}
