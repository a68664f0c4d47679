//! The commands the README gives a new user, run as the real `stocksync` binary:
//! - `stocksync demo --exit-after-summary`: it prints where the engine and the four
//!   simulators listen, then a summary in which every listing (each SKU on each channel, and
//!   the kit) matches its ATP, and exits by itself;
//! - `stocksync sandbox`: the four simulators answer on the addresses it prints, with the
//!   credentials the example configs use, and Ctrl-C stops them;
//! - the README's "try it by hand": `stocksync run` on `config/stocksync.toml` against the
//!   sandbox, a receipt posted over HTTP, and the sandbox shop listing it.
//!
//! Every address is `127.0.0.1:0` (the commands print the ports they got) and every data
//! folder a temp dir, so these run in parallel with the other tests; every wait is bounded.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The package root: `config/` and the README's relative paths are resolved from here.
fn package_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One run of the `stocksync` binary: its standard output read line by line, its standard
/// error in a file (shown when an assertion fails). Killed when dropped.
struct Cli {
    name: &'static str,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
    stderr: PathBuf,
    // Holds the stderr file (and whatever else the caller puts there) until the end.
    _dir: tempfile::TempDir,
}

impl Cli {
    /// Starts `stocksync {args}` in the package root with `envs` set and the variables the
    /// example configs read removed (so the defaults the README relies on apply).
    fn start(name: &'static str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = dir.path().join(format!("{name}.stderr"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_stocksync"));
        command
            .args(args)
            .current_dir(package_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .kill_on_drop(true);
        for variable in [
            "STOCKSYNC_CONFIG",
            "STOCKSYNC_DATA",
            "STOCKSYNC_LISTEN",
            "SHOPIFY_SHOP_URL",
            "SHOPIFY_ACCESS_TOKEN",
            "SHOPIFY_WEBHOOK_SECRET",
        ] {
            command.env_remove(variable);
        }
        command.envs(envs.iter().copied());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: the stocksync binary does not start: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            name,
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
            stderr,
            _dir: dir,
        }
    }

    /// Everything printed so far, and the standard error, for failure messages.
    fn transcript(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr (last lines) ---\n{}",
            self.name,
            self.seen.join("\n"),
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The next line of output, or `None` at its end; panics after `within`.
    async fn next_line(&mut self, within: Duration) -> Option<String> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Ok(Ok(None)) => None,
            Ok(Err(error)) => panic!("{}: reading its output: {error}", self.name),
            Err(_) => panic!(
                "{}: no output line within {within:?}\n{}",
                self.name,
                self.transcript()
            ),
        }
    }

    /// Reads until a line starting with `prefix` and returns it; panics when the output
    /// ends first or the line does not come within `within`.
    async fn line_starting(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(line) if line.starts_with(prefix) => return line,
                Some(_) => {}
                None => panic!(
                    "{}: output ended without a line starting with {prefix:?}\n{}",
                    self.name,
                    self.transcript()
                ),
            }
        }
    }

    /// Reads the rest of the output and waits for the process to exit, at most `within`.
    async fn finish(&mut self, within: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next_line(left).await.is_none() {
                break;
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, self.child.wait()).await {
            Ok(status) => status.expect("wait for the process"),
            Err(_) => panic!(
                "{}: still running {within:?} later\n{}",
                self.name,
                self.transcript()
            ),
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    async fn interrupt(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -INT {pid} failed");
    }
}

/// The URL at the start of `rest` (up to the first space).
fn first_url(rest: &str) -> String {
    let url = rest.split_whitespace().next().unwrap_or("");
    assert!(url.starts_with("http://127.0.0.1:"), "not a URL: {rest:?}");
    let port: u16 = url["http://127.0.0.1:".len()..]
        .trim_end_matches('/')
        .split('/')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url:?}"));
    assert_ne!(port, 0, "{url}");
    url.trim_end_matches('/').to_owned()
}

/// The default of `${variable:-default}` in the example config `file`.
fn config_default(file: &str, variable: &str) -> String {
    let text = std::fs::read_to_string(package_root().join("config").join(file))
        .unwrap_or_else(|e| panic!("config/{file}: {e}"));
    let marker = format!("${{{variable}:-");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("config/{file} does not read {variable}"))
        + marker.len();
    let end = start + text[start..].find('}').expect("closing brace");
    text[start..end].to_owned()
}

const SANDBOX_ON_FREE_PORTS: [&str; 9] = [
    "sandbox",
    "--shopify-listen",
    "127.0.0.1:0",
    "--woocommerce-listen",
    "127.0.0.1:0",
    "--bolcom-listen",
    "127.0.0.1:0",
    "--amazon-listen",
    "127.0.0.1:0",
];

/// The sandbox's four base URLs, read from what it prints: Shopify, WooCommerce, Bol.com,
/// Amazon; and every line it printed.
async fn sandbox_urls(sandbox: &mut Cli) -> ([String; 4], String) {
    let within = Duration::from_secs(30);
    sandbox.line_starting("platform simulators", within).await;
    let mut urls = Vec::new();
    let mut lines = Vec::new();
    for name in ["Shopify", "WooCommerce", "Bol.com", "Amazon"] {
        let line = sandbox.line_starting(name, within).await;
        urls.push(first_url(&line[name.len()..]));
        lines.push(line);
    }
    (urls.try_into().expect("four URLs"), lines.join("\n"))
}

/// `GET url` answers 200 with JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_exits_after_a_summary_in_which_every_listing_is_right() {
    let data = tempfile::tempdir().unwrap();
    let skus = 3;
    let mut demo = Cli::start(
        "demo",
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.path().to_str().expect("UTF-8 temp path"),
            "--skus",
            &skus.to_string(),
            "--stream-secs",
            "2",
            "--exit-after-summary",
        ],
        &[],
    );
    let within = Duration::from_secs(60);
    let simulators = demo.line_starting("demo: simulators:", within).await;
    for name in ["Shopify", "WooCommerce", "Bol.com", "Amazon"] {
        let at = simulators
            .find(&format!("{name} "))
            .unwrap_or_else(|| panic!("{name} missing: {simulators}"));
        first_url(&simulators[at + name.len()..]);
    }
    let api = demo.line_starting("demo: engine API at", within).await;
    first_url(&api["demo: engine API at".len()..]);
    demo.line_starting("demo: dashboard at", within).await;
    demo.line_starting("demo: summary", within).await;
    let totals = demo.line_starting("  receipts ", within).await;
    let status = demo.finish(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", demo.transcript());
    let transcript = demo.transcript();
    assert!(!transcript.contains("still serving"), "{transcript}");

    // "  receipts R | orders O | cancellations C | listings in sync S/T"
    let figures: Vec<&str> = totals
        .split('|')
        .map(|part| part.split_whitespace().last().unwrap_or(""))
        .collect();
    assert_eq!(figures.len(), 4, "{totals}");
    let receipts: u64 = figures[0].parse().expect("receipts");
    let orders: u64 = figures[1].parse().expect("orders");
    let (in_sync, checked) = figures[3].split_once('/').expect("S/T");
    // Opening stock at two locations for every SKU, and one purchase order.
    assert!(receipts > 2 * skus, "{totals}");
    assert!(orders > 0, "no orders in two seconds of traffic: {totals}");
    // Every SKU on each of the four channels, and the kit on Shopify.
    assert_eq!(checked, (4 * skus + 1).to_string(), "{transcript}");
    assert_eq!(
        in_sync, checked,
        "a listing differs from its ATP:\n{transcript}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_serves_the_four_simulators_where_it_says_until_ctrl_c() {
    let mut sandbox = Cli::start("sandbox", &SANDBOX_ON_FREE_PORTS, &[]);
    let ([shopify, woocommerce, bolcom, amazon], printed) = sandbox_urls(&mut sandbox).await;

    // The credentials it prints are the example configs' defaults.
    for (file, variable) in [
        ("stocksync.toml", "SHOPIFY_ACCESS_TOKEN"),
        ("stocksync.toml", "SHOPIFY_WEBHOOK_SECRET"),
        ("woocommerce.toml", "WOOCOMMERCE_CONSUMER_KEY"),
        ("woocommerce.toml", "WOOCOMMERCE_CONSUMER_SECRET"),
        ("woocommerce.toml", "WOOCOMMERCE_WEBHOOK_SECRET"),
        ("bolcom.toml", "BOL_CLIENT_ID"),
        ("bolcom.toml", "BOL_CLIENT_SECRET"),
        ("amazon.toml", "AMAZON_SELLER_ID"),
    ] {
        let value = config_default(file, variable);
        assert!(
            printed.contains(&format!("{value:?}")),
            "config/{file} uses {variable} = {value:?}, the sandbox prints:\n{printed}"
        );
    }

    // Each answers its inspection endpoint where it said it listens.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let levels = get_json(&http, &format!("{shopify}/_sandbox/levels")).await;
    assert!(levels.is_array(), "{levels}");
    let products = get_json(&http, &format!("{woocommerce}/_sandbox/products")).await;
    assert!(products["products"].is_array(), "{products}");
    let offers = get_json(&http, &format!("{bolcom}/_sandbox/offers")).await;
    assert!(offers["offers"].is_array(), "{offers}");
    let listings = get_json(&http, &format!("{amazon}/_sandbox/listings")).await;
    assert!(listings["listings"].is_array(), "{listings}");

    // Ctrl-C stops all four, and the command exits cleanly.
    sandbox.interrupt().await;
    let status = sandbox.finish(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{}", sandbox.transcript());
    assert!(
        http.get(format!("{shopify}/_sandbox/levels"))
            .send()
            .await
            .is_err(),
        "the Shopify simulator still answers after Ctrl-C"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_lists_a_receipt_on_the_sandbox_shop() {
    // Terminal one: the simulators.
    let mut sandbox = Cli::start("sandbox", &SANDBOX_ON_FREE_PORTS, &[]);
    let ([shopify, ..], _) = sandbox_urls(&mut sandbox).await;

    // Terminal two: `stocksync run` on its default config/stocksync.toml, with the data
    // folder, address and shop URL the config lets the environment choose.
    let data = tempfile::tempdir().unwrap();
    let mut engine = Cli::start(
        "run",
        &["run"],
        &[
            (
                "STOCKSYNC_DATA",
                data.path().to_str().expect("UTF-8 temp path"),
            ),
            ("STOCKSYNC_LISTEN", "127.0.0.1:0"),
            ("SHOPIFY_SHOP_URL", &shopify),
        ],
    );
    let listening = engine
        .line_starting("stocksync listening on", Duration::from_secs(60))
        .await;
    let api = first_url(&listening["stocksync listening on".len()..]);

    // The README's three requests.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = http
        .post(format!("{api}/api/v1/movements"))
        .json(&json!({
            "schema_version": 1, "sku": "SKU-A", "idempotency_key": "wms-1:rcpt-1:1",
            "source": "wms-1", "type": "receipt", "location": "WH-1", "quantity": 10 }))
        .send()
        .await
        .expect("POST /api/v1/movements");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!((200..300).contains(&status), "{status}: {body}");
    let stock = get_json(&http, &format!("{api}/api/v1/stock/SKU-A")).await;
    assert!(stock.to_string().contains("WH-1"), "{stock}");
    // SKU-A is inventory item 1001 at Shopify location 1; the channel keeps one unit of
    // safety stock, so the shop lists 9 of the 10.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let levels = get_json(&http, &format!("{shopify}/_sandbox/levels")).await;
        let listed = levels
            .as_array()
            .into_iter()
            .flatten()
            .find(|level| level["inventory_item_id"] == 1001 && level["location_id"] == 1);
        if listed.is_some_and(|level| level["available"] == 9) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sandbox shop does not list 9 of SKU-A: {levels}\n{}",
            engine.transcript()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ctrl-C stops the engine (ingest, ledger, propagation) and then the sandbox.
    engine.interrupt().await;
    let status = engine.finish(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", engine.transcript());
    sandbox.interrupt().await;
    let status = sandbox.finish(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{}", sandbox.transcript());
}
