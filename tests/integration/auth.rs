//! Credentials and the network edge (issue 10 §1) and the log format (§9), against the
//! real server on `127.0.0.1:0` and, for logs and `token new`, the real binary:
//! - every API route needs a token with its scope once tokens are configured (401 with
//!   `WWW-Authenticate: Bearer`, 403 without the scope), health, metrics and webhooks
//!   excepted; the rules audit actor is the token's name, never a header;
//! - without tokens: open on loopback (actor `local`), refused at start elsewhere unless
//!   `insecure_no_auth`;
//! - `Host` allow-list and CORS only when configured;
//! - two concurrent rules changes both take effect;
//! - `stocksync token new` prints a token that its own config line accepts;
//! - secrets appear in neither the logs, the config audit nor the metrics; logs carry no
//!   ANSI codes when stderr is not a terminal, and `--log-format json` writes JSON lines.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use stocksync::config::Config;
use stocksync::sandbox::shopify::{self as simulator, ShopifySimulatorOptions};
use stocksync::web::auth::{hash_token, new_token};
use tokio::io::AsyncBufReadExt;

/// A config over `dir` listening on `listen`, one location, `extra` appended (tokens,
/// hosts, channels).
fn config_text(dir: &std::path::Path, listen: &str, extra: &str) -> String {
    format!(
        r#"
[store]
path = "{db}"
[http]
listen = "{listen}"
{extra}
[[locations]]
id = "WH-1"
"#,
        db = dir.join("auth.db").display()
    )
}

fn config(dir: &std::path::Path, extra: &str) -> Config {
    let config = Config::from_toml(&config_text(dir, "127.0.0.1:0", extra)).expect("parses");
    config.validate().expect("valid");
    config
}

/// `[[http.auth.tokens]]` entries for `(name, scopes, token)`, placed under `[http]`.
fn tokens(entries: &[(&str, &str, &str)]) -> String {
    entries
        .iter()
        .map(|(name, scopes, token)| {
            let scopes: Vec<String> = scopes.split(',').map(|s| format!("{s:?}")).collect();
            format!(
                "[[http.auth.tokens]]\nname = {name:?}\nscopes = [{}]\nhash = \"{}\"\n",
                scopes.join(", "),
                hash_token(token)
            )
        })
        .collect()
}

fn receipt(sku: &str, key: &str, quantity: u64) -> Value {
    json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "wms",
        "type": "receipt", "location": "WH-1", "quantity": quantity})
}

async fn problem(response: reqwest::Response) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_needs_a_token_with_its_scope() {
    let (ingest, reader, operator, reserver) = (new_token(), new_token(), new_token(), new_token());
    let dir = tempfile::tempdir().unwrap();
    let extra = tokens(&[
        ("erp", "ingest", &ingest),
        ("viewer", "read", &reader),
        ("ops-team", "operate,read", &operator),
        ("checkout", "reserve", &reserver),
    ]);
    let app = stocksync::app::App::start(config(dir.path(), &extra))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();

    // No token, a wrong token: 401 with a Bearer challenge; nothing applied.
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .json(&receipt("AUTH-MUG", "a1", 5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(problem(response).await["status"], 401);
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .bearer_auth(format!("{ingest}x"))
        .json(&receipt("AUTH-MUG", "a1", 5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The wrong scope: 403.
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .bearer_auth(&reader)
        .json(&receipt("AUTH-MUG", "a1", 5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(problem(response).await["status"], 403);

    // The right scope.
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .bearer_auth(&ingest)
        .json(&receipt("AUTH-MUG", "a1", 5))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());

    // Reads: read scope; no token is 401, the ingest token 403.
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(&ingest), StatusCode::FORBIDDEN),
        (Some(&reader), StatusCode::OK),
    ] {
        for path in [
            "/api/v1/stock/AUTH-MUG",
            "/api/v1/movements",
            "/api/v1/audit/config",
            "/api/v1/dead-letters",
            "/api/v1/skus",
            "/",
        ] {
            let mut request = client.get(format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            assert_eq!(request.send().await.unwrap().status(), status, "{path}");
        }
    }

    // Reservations: reserve scope.
    let hold = json!({"reservation_id": "auth-r1", "ttl_secs": 60,
        "lines": [{"sku": "AUTH-MUG", "location": "WH-1", "quantity": 1}]});
    for (token, status) in [
        (&ingest, StatusCode::FORBIDDEN),
        (&operator, StatusCode::FORBIDDEN),
    ] {
        let response = client
            .post(format!("{base}/api/v1/reservations"))
            .bearer_auth(token)
            .json(&hold)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }
    let response = client
        .post(format!("{base}/api/v1/reservations"))
        .bearer_auth(&reserver)
        .json(&hold)
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), StatusCode::UNAUTHORIZED);
    assert_ne!(response.status(), StatusCode::FORBIDDEN);

    // Rules: operate scope; the audit actor is the token's name whatever X-Actor says.
    let change = json!({"stock": {}});
    let response = client
        .put(format!("{base}/api/v1/config/rules"))
        .bearer_auth(&ingest)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = client
        .put(format!("{base}/api/v1/config/rules"))
        .bearer_auth(&operator)
        .header("x-actor", "mallory")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let audit = client
        .get(format!("{base}/api/v1/audit/config"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("\"ops-team\""), "{audit}");
    assert!(!audit.contains("mallory"), "{audit}");

    // Open: health probes and metrics; webhooks go to their signature check, not to ours.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let status = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{path}: {status}"
        );
    }
    let response = client
        .post(format!("{base}/webhooks/shopify/no-such-channel"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("www-authenticate").is_none());
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_dashboard_authenticates_with_basic_and_metrics_can_have_a_token() {
    let (reader, scraper) = (new_token(), new_token());
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[http.auth]\nmetrics_token_hash = \"{}\"\n{}",
        hash_token(&scraper),
        tokens(&[("viewer", "read", &reader)])
    );
    let app = stocksync::app::App::start(config(dir.path(), &extra))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{base}/api/v1/skus"))
        .basic_auth("anyone", Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = |token: Option<&str>| {
        let mut request = client.get(format!("{base}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(metrics(None).await.unwrap().status(), 401);
    assert_eq!(metrics(Some(reader.as_str())).await.unwrap().status(), 401);
    assert_eq!(metrics(Some(scraper.as_str())).await.unwrap().status(), 200);
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_only_a_loopback_server_starts_and_its_actor_is_local() {
    let dir = tempfile::tempdir().unwrap();
    // A non-loopback address without tokens: a config error and a refused start.
    let open = Config::from_toml(&config_text(dir.path(), "0.0.0.0:0", "")).unwrap();
    let error = open.validate().unwrap_err().to_string();
    assert!(error.contains("insecure_no_auth"), "{error}");
    let refused = stocksync::app::App::start(open).await;
    assert!(
        refused.is_err(),
        "a public server without tokens must not start"
    );
    let insecure = Config::from_toml(&config_text(
        dir.path(),
        "0.0.0.0:0",
        "[http.auth]\ninsecure_no_auth = true\n",
    ))
    .unwrap();
    insecure
        .validate()
        .expect("the explicit override is accepted");

    // Loopback without tokens: mutations accepted; the actor is `local`, never X-Actor.
    let app = stocksync::app::App::start(config(dir.path(), ""))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    let response = client
        .put(format!("{base}/api/v1/config/rules"))
        .header("x-actor", "mallory")
        .json(&json!({"stock": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let audit: Value = client
        .get(format!("{base}/api/v1/audit/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    assert!(
        text.contains("\"local\"") && !text.contains("mallory"),
        "{audit}"
    );
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_hosts_are_answered_and_cors_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let app = stocksync::app::App::start(config(dir.path(), ""))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1.
    let response = client
        .post(format!("{base}/api/v1/movements"))
        .header("host", "evil.example:8080")
        .json(&receipt("HOST-MUG", "h1", 5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(problem(response).await["status"], 421);
    let probe = client
        .get(format!("{base}/healthz"))
        .header("host", "pod-10-0-0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK, "probes answer any host");
    // No CORS header by default, even for a preflight.
    let response = client
        .get(format!("{base}/api/v1/skus"))
        .header("origin", "https://admin.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.shutdown(Duration::from_secs(5)).await;

    let dir = tempfile::tempdir().unwrap();
    let extra = "allowed_hosts = [\"stock.example\"]\n\
                 cors_allowed_origins = [\"https://admin.example\"]\n";
    let app = stocksync::app::App::start(config(dir.path(), extra))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let response = client
        .get(format!("{base}/api/v1/skus"))
        .header("host", "stock.example")
        .header("origin", "https://admin.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://admin.example"
    );
    let other = client
        .get(format!("{base}/api/v1/skus"))
        .header("host", "stock.example")
        .header("origin", "https://other.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let loopback = client
        .get(format!("{base}/api/v1/skus"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        loopback.status(),
        StatusCode::MISDIRECTED_REQUEST,
        "a configured list replaces the defaults"
    );
    app.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rules_changes_are_both_kept() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ShopifySimulatorOptions {
        auto_create_levels: true,
        ..Default::default()
    };
    let shop = Arc::new(simulator::start(options, listener).await.unwrap());
    let channel = |id: &str| {
        format!(
            "[[channels]]\nid = \"{id}\"\nkind = \"shopify\"\nlocations = [\"WH-1\"]\n\
             [channels.shopify]\nshop_url = \"{}\"\naccess_token = \"shpat_sandbox_token\"\n\
             webhook_secret = \"sandbox_webhook_secret\"\nlocation_id = 1\n\
             listings = [{{ sku = \"RULES-MUG\", inventory_item_id = 1 }}]\n",
            shop.base_url()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{}{}",
        config_text(dir.path(), "127.0.0.1:0", ""),
        channel("west"),
        channel("east")
    );
    let config = Config::from_toml(&text).unwrap();
    config.validate().unwrap();
    let app = stocksync::app::App::start(config).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    for round in 1..=8u64 {
        let put = |id: &'static str, safety: u64| {
            client
                .put(format!("{base}/api/v1/config/rules"))
                .json(&json!({"channels": [{"id": id, "safety_stock": safety}]}))
                .send()
        };
        let (west, east) = tokio::join!(put("west", round), put("east", round + 100));
        assert_eq!(west.unwrap().status(), StatusCode::OK);
        assert_eq!(east.unwrap().status(), StatusCode::OK);
        let rules: Value = client
            .get(format!("{base}/api/v1/config/rules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let safety = |id: &str| {
            rules["channels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == id)
                .unwrap()["safety_stock"]
                .clone()
        };
        assert_eq!(safety("west"), round, "round {round}: {rules}");
        assert_eq!(safety("east"), round + 100, "round {round}: {rules}");
    }
    app.shutdown(Duration::from_secs(5)).await;
}

/// Issue 17, shadow mode over HTTP on a running engine: the report needs `read`, the switch
/// `operate`; bad input and unknown channels are problems; in shadow nothing reaches the
/// shop, and the switch to live pushes the ledger's ATP over what the shop listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_is_reported_and_switched_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = Arc::new(
        simulator::start(ShopifySimulatorOptions::default(), listener)
            .await
            .unwrap(),
    );
    shop.set_level(1, 1, 9);
    let (ingest, reader, operator) = (new_token(), new_token(), new_token());
    let dir = tempfile::tempdir().unwrap();
    let extra = tokens(&[
        ("erp", "ingest", &ingest),
        ("viewer", "read", &reader),
        ("ops-team", "operate,read", &operator),
    ]);
    let text = format!(
        "{}[[channels]]\nid = \"shop\"\nkind = \"shopify\"\nlocations = [\"WH-1\"]\n\
         mode = \"shadow\"\n[channels.shopify]\nshop_url = \"{}\"\n\
         access_token = \"shpat_sandbox_token\"\nwebhook_secret = \"sandbox_webhook_secret\"\n\
         location_id = 1\nlistings = [{{ sku = \"SHADOW-MUG\", inventory_item_id = 1 }}]\n",
        config_text(dir.path(), "127.0.0.1:0", &extra),
        shop.base_url()
    );
    let config = Config::from_toml(&text).unwrap();
    config.validate().unwrap();
    let app = stocksync::app::App::start(config).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    let client = reqwest::Client::new();
    let posted = client
        .post(format!("{base}/api/v1/movements"))
        .bearer_auth(&ingest)
        .json(&receipt("SHADOW-MUG", "s1", 4))
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let report_url = format!("{base}/api/v1/channels/shop/shadow-report");
    let mut report = Value::Null;
    for _ in 0..200 {
        report = client
            .get(&report_url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if report["compared"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(report["mode"], "shadow", "{report}");
    assert_eq!(report["classes"]["channel_higher"], 1, "{report}");
    assert_eq!(report["units_over"], 5, "{report}");
    assert_eq!(report["differences"][0]["would_push"], 4, "{report}");
    assert_eq!(report["differences"][0]["channel_value"], 9, "{report}");
    assert_eq!(
        shop.level_history(1, 1),
        vec![9],
        "nothing written in shadow"
    );

    let mode_url = format!("{base}/api/v1/channels/shop/mode");
    let refused = client
        .put(&mode_url)
        .bearer_auth(&reader)
        .json(&json!({"mode": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let bad = client
        .put(&mode_url)
        .bearer_auth(&operator)
        .json(&json!({"mode": "loud"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        problem(bad).await["detail"]
            .as_str()
            .unwrap()
            .contains("loud")
    );
    let unknown = client
        .put(format!("{base}/api/v1/channels/nope/mode"))
        .bearer_auth(&operator)
        .json(&json!({"mode": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem(unknown).await["status"], 404);

    let live: Value = client
        .put(&mode_url)
        .bearer_auth(&operator)
        .json(&json!({"mode": "live"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (live["mode"].clone(), live["changed"].clone()),
        (json!("live"), json!(true))
    );
    let audit: Value = client
        .get(format!("{base}/api/v1/audit/config"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let switch = audit
        .as_array()
        .or_else(|| audit["changes"].as_array())
        .and_then(|changes| {
            changes
                .iter()
                .find(|change| change["action"] == "channel_mode_changed")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no channel_mode_changed in the audit: {audit}"));
    assert_eq!(switch["actor"], "ops-team", "{switch}");
    // Going live re-derives the listing and pushes the ATP over the 9 the shadow read.
    let mut listed = None;
    for _ in 0..200 {
        listed = shop.level(1, 1);
        if listed == Some(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed, Some(4), "history {:?}", shop.level_history(1, 1));
    app.shutdown(Duration::from_secs(5)).await;
}

/// Runs `stocksync {args}` with stderr captured and returns its stdout and stderr.
fn run_binary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stocksync"))
        .args(args)
        .env_remove("STOCKSYNC_LOG_FORMAT")
        .stdin(Stdio::null())
        .output()
        .expect("runs")
}

#[test]
fn token_new_prints_a_token_its_config_line_accepts() {
    let output = run_binary(&["token", "new", "erp", "--scopes", "ingest,read"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout
        .lines()
        .find(|line| line.starts_with("ss_"))
        .expect("the token is printed")
        .to_owned();
    let entry = &stdout[stdout.find("[[http.auth.tokens]]").expect("the entry")..];
    assert!(
        !entry.contains(&token),
        "the config line holds the hash only"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&config_text(dir.path(), "127.0.0.1:0", entry)).unwrap();
    config.validate().unwrap();
    let configured = &config.http.auth.tokens[0];
    assert_eq!(configured.name, "erp");
    assert_eq!(
        configured.scopes,
        [
            stocksync::config::Scope::Ingest,
            stocksync::config::Scope::Read
        ]
    );
    assert_eq!(
        configured.hash.as_deref(),
        Some(hash_token(&token).as_str())
    );
    let refused = run_binary(&["token", "new", "erp", "--scopes", "admin"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown scope"));
}

/// Starts `stocksync run` on `config` with `args` before `run`, stderr to a file; returns
/// the child, its base URL and the stderr path.
async fn start_binary(
    config: &std::path::Path,
    global: &[&str],
    stderr: &std::path::Path,
) -> (tokio::process::Child, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_stocksync"));
    command
        .args(global)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug")
        .env_remove("STOCKSYNC_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("starts within a minute")
        .unwrap()
        .unwrap_or_else(|| panic!("no address: {}", std::fs::read_to_string(stderr).unwrap()));
    let base = line
        .strip_prefix("stocksync listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_owned();
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_audit_or_metrics_and_logs_have_no_colour_codes() {
    let token = new_token();
    let access_token = "shpat_SECRET_access_4f1c9e";
    let webhook_secret = "whsec_SECRET_webhook_77ab02";
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}[[channels]]\nid = \"leaky\"\nkind = \"shopify\"\nlocations = [\"WH-1\"]\n\
         [channels.shopify]\nshop_url = \"http://127.0.0.1:1\"\naccess_token = \"{access_token}\"\n\
         webhook_secret = \"{webhook_secret}\"\nlocation_id = 1\n\
         listings = [{{ sku = \"LEAK-MUG\", inventory_item_id = 1 }}]\n",
        config_text(
            dir.path(),
            "127.0.0.1:0",
            &tokens(&[("erp", "ingest,read,operate", &token)])
        )
    );
    let config_path = dir.path().join("stocksync.toml");
    std::fs::write(&config_path, text).unwrap();
    let secrets = [
        token.as_str(),
        hash_token(&token).leak(),
        access_token,
        webhook_secret,
    ];

    for (format, global) in [("text", &[][..]), ("json", &["--log-format", "json"][..])] {
        let stderr = dir.path().join(format!("{format}.stderr"));
        let (mut child, base) = start_binary(&config_path, global, &stderr).await;
        let client = reqwest::Client::new();
        let key = format!("{format}-1");
        let response = client
            .post(format!("{base}/api/v1/movements"))
            .bearer_auth(&token)
            .json(
                &json!({"schema_version": 1, "sku": "LEAK-MUG", "idempotency_key": key,
                "source": "wms", "type": "receipt", "location": "WH-1", "quantity": 3}),
            )
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        // A wrong token that carries a secret, a rules change, a badly signed webhook.
        let wrong = client
            .get(format!("{base}/api/v1/skus"))
            .bearer_auth(webhook_secret)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let change = client
            .put(format!("{base}/api/v1/config/rules"))
            .bearer_auth(&token)
            .json(&json!({"channels": [{"id": "leaky", "safety_stock": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(change.status(), 200);
        let _ = client
            .post(format!("{base}/webhooks/shopify/leaky"))
            .header("x-shopify-hmac-sha256", access_token)
            .header("x-shopify-topic", "orders/create")
            .body("{}")
            .send()
            .await
            .unwrap();
        let audit = client
            .get(format!("{base}/api/v1/audit/config"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(audit.contains("rules_changed"), "{audit}");
        // The push to the unreachable shop fails (and is logged) before metrics are read.
        let metrics_url = format!("{base}/metrics");
        crate::support::eventually(
            "the push to the unreachable shop has failed",
            Duration::from_secs(20),
            || async {
                let text = reqwest::get(&metrics_url)
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                text.contains("stocksync_channel_errors_total{channel=\"leaky\"")
            },
        )
        .await;
        let metrics = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        child.start_kill().unwrap();
        let _ = child.wait().await;
        let logs = std::fs::read_to_string(&stderr).unwrap();
        assert!(logs.contains("stocksync started"), "{logs}");
        for secret in secrets {
            assert!(
                !logs.contains(secret),
                "{format} logs leak {secret}:\n{logs}"
            );
            assert!(!audit.contains(secret), "audit leaks {secret}: {audit}");
            assert!(!metrics.contains(secret), "metrics leak {secret}");
        }
        assert!(
            !logs.contains('\u{1b}'),
            "{format} logs to a file carry ANSI codes"
        );
        if format == "json" {
            for line in logs.lines().filter(|line| !line.trim().is_empty()) {
                let parsed: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(parsed["level"].is_string(), "{line}");
            }
        }
    }
}
