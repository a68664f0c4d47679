//! The deployment files in `docker/` checked statically (Docker does not run here), and the
//! Grafana dashboard and Prometheus alert rules checked against a running engine: every
//! `stocksync_*` metric their queries use must appear in `GET /metrics`.
//!
//! The engine (`App`) runs on 127.0.0.1:0 with Kafka ingest on a real tansu broker, the
//! in-process Shopify simulator, a second simulated shop whose GraphQL cost bucket is
//! smaller than a mutation (so it always throttles), a third channel whose shop does not
//! listen (transport errors), and fast reconciliation.
//! The test drives receipts, a duplicate, an oversell, a shop order (a webhook), a message
//! that is dead-lettered and an edit behind stocksync's back (a discrepancy).

use crate::support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stocksync::config::{Config, StoreBackend};
use stocksync::sandbox::shopify::{self, ShopifySimulatorOptions, SimOrderLine};

const CHANNEL: &str = "shop-harbour";
const SHOP_LOCATION: u64 = 4;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
}

fn read(path: &str) -> String {
    let path = docker_dir().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// Every `stocksync_*` metric name in a PromQL expression, histogram and summary suffixes
/// stripped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("stocksync_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(base_name(&name).to_owned());
    }
    names
}

fn base_name(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The metric names in a Prometheus text exposition, suffixes stripped.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| base_name(name).to_owned())
        .collect()
}

/// The PromQL expressions of the Grafana dashboard's panels (checking its shape).
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(&read("grafana/dashboards/stocksync.json"))
        .expect("the Grafana dashboard is valid JSON");
    assert_eq!(dashboard["uid"], "stocksync");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "{title}"
        );
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "prometheus", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr").to_owned();
            assert!(!metric_names(&expr).is_empty(), "{title}: {expr}");
            queries.push(expr);
        }
    }
    queries
}

/// The queries of the panels under the dashboard's row titled `row` (down to the next row).
fn row_queries(row: &str) -> Vec<String> {
    let dashboard: Value =
        serde_json::from_str(&read("grafana/dashboards/stocksync.json")).expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let start = panels
        .iter()
        .position(|p| p["type"] == "row" && p["title"] == row)
        .unwrap_or_else(|| panic!("no row {row:?} in the dashboard"));
    panels[start + 1..]
        .iter()
        .take_while(|p| p["type"] != "row")
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

/// The alert rules (name, expression), checking the file's shape.
fn alert_rules() -> Vec<(String, String)> {
    let rules = yaml("prometheus/alerts.yml");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        assert!(group["name"].as_str().is_some());
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_owned();
            let expr = rule["expr"].as_str().expect("expr").to_owned();
            assert!(rule["labels"]["severity"].as_str().is_some(), "{name}");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
            out.push((name, expr));
        }
    }
    out
}

#[test]
fn the_deployment_files_are_consistent() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let images: Vec<String> = services
        .values()
        .filter_map(|service| service["image"].as_str().map(str::to_owned))
        .collect();
    for wanted in ["redpanda", "scylla", "prom/prometheus", "grafana/grafana"] {
        assert!(
            images.iter().any(|image| image.contains(wanted)),
            "no {wanted} image in compose.yaml: {images:?}"
        );
    }
    let stocksync = &compose["services"]["stocksync"];
    assert_eq!(stocksync["build"]["dockerfile"], "docker/Dockerfile");
    assert!(docker_dir().join("Dockerfile").is_file());
    let dockerfile = read("Dockerfile");
    for copied in ["docker/stocksync.toml", "docker/shopify-listings.csv"] {
        assert!(dockerfile.contains(copied), "{copied}");
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(copied).is_file());
    }
    // The container's config parses and validates with the compose environment.
    let text = read("stocksync.toml").replace(
        "/etc/stocksync/shopify-listings.csv",
        &docker_dir()
            .join("shopify-listings.csv")
            .display()
            .to_string(),
    );
    let config = Config::from_toml(&text).expect("docker/stocksync.toml parses");
    config.validate().expect("docker/stocksync.toml is valid");
    assert!(config.kafka.is_some());
    // The ledger lives in the compose file's ScyllaDB, which stocksync waits for.
    assert_eq!(config.store.backend, StoreBackend::Scylla);
    assert_eq!(config.store.scylla.nodes, ["scylla:9042"]);
    assert_eq!(config.store.scylla.replication.class, "SimpleStrategy");
    assert_eq!(config.store.scylla.replication.factor, 1);
    assert!(
        compose["services"]["scylla"]["healthcheck"]["test"]
            .as_array()
            .is_some_and(|test| !test.is_empty())
    );
    assert_eq!(
        stocksync["depends_on"]["scylla"]["condition"],
        "service_healthy"
    );
    // The PostgreSQL variant: the same config file with its backend switched by the
    // override's environment, a `postgres:16` service stocksync waits for, ScyllaDB off.
    let variant = yaml("compose.postgres.yaml");
    assert_eq!(variant["services"]["postgres"]["image"], "postgres:16");
    let environment = &variant["services"]["stocksync"]["environment"];
    assert_eq!(environment["STOCKSYNC_STORE_BACKEND"], "postgres");
    assert_eq!(
        variant["services"]["stocksync"]["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    assert!(variant["services"]["scylla"]["profiles"].is_array());
    let on_postgres = text
        .replace("${STOCKSYNC_STORE_BACKEND:-scylla}", "postgres")
        .replace(
            "${POSTGRES_URL:-postgres://stocksync@postgres:5432/stocksync}",
            environment["POSTGRES_URL"].as_str().expect("POSTGRES_URL"),
        );
    let config = Config::from_toml(&on_postgres).expect("the postgres variant parses");
    config.validate().expect("the postgres variant is valid");
    assert_eq!(config.store.backend, StoreBackend::Postgres);
    assert!(config.store.postgres.url.contains("@postgres:5432/"));

    // The three-instance variant: three services, each the same config plus
    // docker/cluster.toml with its own member id, on the ScyllaDB store.
    let cluster = yaml("compose.cluster.yaml");
    let members: Vec<&str> = ["stocksync", "stocksync-2", "stocksync-3"]
        .iter()
        .map(|name| {
            cluster["services"][*name]["environment"]["STOCKSYNC_MEMBER_ID"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has a member id"))
        })
        .collect();
    assert_eq!(members, ["stocksync", "stocksync-2", "stocksync-3"]);
    for member in members {
        let joined =
            format!("{text}\n{}", read("cluster.toml")).replace("${STOCKSYNC_MEMBER_ID}", member);
        let config = Config::from_toml(&joined).expect("the cluster variant parses");
        config.validate().expect("the cluster variant is valid");
        let settings = config.cluster.expect("[cluster]");
        assert_eq!(settings.partitions, 6, "the topic's partition count");
        assert_eq!(
            settings.advertise_url.as_deref(),
            Some(format!("http://{member}:8080").as_str())
        );
        assert_eq!(config.store.backend, StoreBackend::Scylla);
    }

    // The dashboard's Store row shows the store wrapper's metrics (the running-engine test
    // below checks that every name is really exposed).
    let store_row: BTreeSet<String> = row_queries("Store")
        .iter()
        .flat_map(|query| metric_names(query))
        .collect();
    for wanted in [
        stocksync::telemetry::STORE_LATENCY_SECONDS,
        stocksync::telemetry::STORE_ERRORS_TOTAL,
        stocksync::telemetry::STORE_RETRIES_TOTAL,
    ] {
        assert!(store_row.contains(wanted), "no {wanted} in the Store row");
    }

    for volume in compose["services"]["prometheus"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            compose["services"]["grafana"]["volumes"]
                .as_array()
                .unwrap(),
        )
    {
        let source = volume.as_str().unwrap().split(':').next().unwrap();
        if let Some(relative) = source.strip_prefix("./") {
            assert!(docker_dir().join(relative).exists(), "{source} is missing");
        }
    }

    let prometheus = yaml("prometheus/prometheus.yml");
    assert_eq!(prometheus["rule_files"][0], "/etc/prometheus/alerts.yml");
    let jobs = prometheus["scrape_configs"].as_array().unwrap();
    let stocksync_job = jobs
        .iter()
        .find(|job| job["job_name"] == "stocksync")
        .expect("a stocksync scrape job");
    assert_eq!(stocksync_job["metrics_path"], "/metrics");
    assert_eq!(
        stocksync_job["static_configs"][0]["targets"][0],
        "stocksync:8080"
    );

    let datasources = yaml("grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(datasources["datasources"][0]["uid"], "prometheus");
    assert_eq!(
        datasources["datasources"][0]["url"],
        "http://prometheus:9090"
    );
    let providers = yaml("grafana/provisioning/dashboards/stocksync.yaml");
    assert_eq!(
        providers["providers"][0]["options"]["path"],
        "/var/lib/grafana/dashboards"
    );

    let alerts = alert_rules();
    let names: BTreeSet<&str> = alerts.iter().map(|(name, _)| name.as_str()).collect();
    for wanted in [
        "StocksyncChannelDown",
        "StocksyncChannelErrorRateHigh",
        "StocksyncPropagationLagHigh",
        "StocksyncQueueDepthHigh",
        "StocksyncDeadLetters",
        "StocksyncDiscrepancies",
        "StocksyncStoreCommitSlow",
        "StocksyncStoreErrors",
        "StocksyncWebhooksQuiet",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}");
    }
}

fn config(
    dir: &Path,
    shop_url: &str,
    crowded_url: &str,
    offline_url: &str,
    bootstrap: &str,
    topic: &str,
) -> Config {
    let text = format!(
        r#"
[store]
path = "{db}"
[http]
listen = "127.0.0.1:0"
[kafka]
brokers = "{bootstrap}"
group_id = "{topic}-group"
movements_topic = "{topic}"
dead_letter_topic = "{topic}-dlq"
batch_wait_ms = 5
[reconcile]
interval_ms = 300
heal = true
settle_ms = 100
echo_window_ms = 100
[[locations]]
id = "WH-EAST"
[[channels]]
id = "{CHANNEL}"
kind = "shopify"
locations = ["WH-EAST"]
[channels.rate_limit]
requests_per_sec = 100.0
burst = 50
[channels.retry]
initial_backoff_ms = 20
max_backoff_ms = 200
[channels.shopify]
shop_url = "{shop_url}"
access_token = "shpat_sandbox_token"
webhook_secret = "sandbox_webhook_secret"
location_id = {SHOP_LOCATION}
[[channels.shopify.listings]]
sku = "ROPE-10M"
inventory_item_id = 8101
[[channels.shopify.listings]]
sku = "ROPE-20M"
inventory_item_id = 8102
[[channels.shopify.listings]]
sku = "ROPE-30M"
inventory_item_id = 8103

[[channels]]
id = "shop-crowded"
kind = "shopify"
locations = ["WH-EAST"]
[channels.retry]
initial_backoff_ms = 50
max_backoff_ms = 200
[channels.shopify]
shop_url = "{crowded_url}"
access_token = "shpat_sandbox_token"
webhook_secret = "sandbox_webhook_secret"
location_id = 1
[[channels.shopify.listings]]
sku = "ROPE-20M"
inventory_item_id = 8202

[[channels]]
id = "shop-unplugged"
kind = "shopify"
locations = ["WH-EAST"]
[channels.retry]
initial_backoff_ms = 50
max_backoff_ms = 200
[channels.shopify]
shop_url = "{offline_url}"
access_token = "token-unplugged"
webhook_secret = "secret-unplugged"
location_id = 1
[[channels.shopify.listings]]
sku = "ROPE-10M"
inventory_item_id = 9101
"#,
        db = dir.join("grafana.db").display(),
    );
    let config = Config::from_toml(&text).expect("config parses");
    config.validate().expect("config is valid");
    config
}

fn receipt(sku: &str, key: &str, quantity: u64) -> Value {
    json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "wms-east",
        "type": "receipt", "location": "WH-EAST", "quantity": quantity})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exposed() {
    let queries = dashboard_queries();
    let alerts = alert_rules();

    let broker = support::TansuBroker::start();
    let topic = support::unique("grafana-movements");
    broker.create_topic(&topic, 1);
    broker.create_topic(&format!("{topic}-dlq"), 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = shopify::start(
        ShopifySimulatorOptions {
            auto_create_levels: true,
            ..ShopifySimulatorOptions::default()
        },
        listener,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let crowded = shopify::start(
        ShopifySimulatorOptions {
            auto_create_levels: true,
            // A mutation costs more than the whole bucket: every push is throttled (429).
            graphql_bucket_size: 5.0,
            mutation_cost: 10.0,
            throttle_status: 429,
            ..ShopifySimulatorOptions::default()
        },
        listener,
    )
    .await
    .unwrap();
    let offline = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let app = stocksync::app::App::start(config(
        dir.path(),
        &sim.base_url(),
        &crowded.base_url(),
        &offline,
        &broker.bootstrap(),
        &topic,
    ))
    .await
    .unwrap();
    let base = format!("http://{}", app.http_addr());
    sim.set_webhook_url(Some(format!("{base}/webhooks/shopify/{CHANNEL}")));
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let request = http.post(format!("{base}/api/v1/movements")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{:?}",
                response.text().await
            );
        }
    };

    // Receipts for three listings at once (a burst the shop throttles), a duplicate, and
    // an oversell.
    post(json!([
        receipt("ROPE-10M", "east-1", 10),
        receipt("ROPE-20M", "east-2", 10),
        receipt("ROPE-30M", "east-3", 10)
    ]))
    .await;
    post(receipt("ROPE-10M", "east-1", 10)).await;
    post(
        json!({"schema_version": 1, "sku": "ROPE-30M", "idempotency_key": "web-1:1",
        "source": "web-shop", "type": "sale", "reservation": "web:1:1", "quantity": 15,
        "location": "WH-EAST"}),
    )
    .await;
    // An order taken by the shop arrives as a signed webhook.
    sim.place_order(
        SHOP_LOCATION,
        &[SimOrderLine {
            inventory_item_id: 8102,
            sku: "ROPE-20M".to_owned(),
            quantity: 1,
        }],
    )
    .await
    .expect("the shop takes the order");
    // A Kafka message that cannot be decoded goes to the dead-letter topic.
    support::TestProducer::new(&broker.bootstrap())
        .send(&topic, 0, Some("ROPE-10M"), "{not json")
        .await;
    // Once ROPE-10M is listed, someone edits it on the shop behind stocksync's back.
    support::eventually("ROPE-10M is listed", Duration::from_secs(60), || async {
        sim.level(8101, SHOP_LOCATION) == Some(10)
    })
    .await;
    sim.set_level(8101, SHOP_LOCATION, 3);

    let mut wanted: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    for (_, expr) in &alerts {
        wanted.extend(metric_names(expr));
    }
    let mut missing = wanted.clone();
    // Generous: on a loaded machine the Kafka consumer's group join alone can take tens of
    // seconds; the loop ends as soon as every name is there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !missing.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let names = exposed(&text);
        missing.retain(|name| !names.contains(name));
    }
    assert!(
        missing.is_empty(),
        "metrics used by docker/grafana or docker/prometheus/alerts.yml but not exposed: {missing:?}"
    );
    assert!(wanted.len() >= 12, "{wanted:?}");

    // The histograms the quantile panels use are real Prometheus histograms.
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for histogram in [
        "stocksync_propagation_lag_seconds_bucket",
        "stocksync_store_commit_seconds_bucket",
        "stocksync_store_latency_seconds_bucket{backend=\"embedded\",method=\"commit\"",
    ] {
        assert!(text.contains(histogram), "{histogram} is not exposed");
    }

    app.shutdown(Duration::from_millis(300)).await;
    sim.shutdown().await;
    crowded.shutdown().await;
}

/// The sources of the Dockerfile's `COPY` lines from the build context (not `--from` a stage),
/// as repository-relative paths without a trailing slash.
fn dockerfile_copy_sources(dockerfile: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        let args: Vec<&str> = args.split_whitespace().collect();
        if args.iter().any(|arg| arg.starts_with("--from")) {
            continue;
        }
        let args: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
        if let Some((_, from)) = args.split_last() {
            sources.extend(from.iter().map(|s| s.trim_end_matches('/').to_owned()));
        }
    }
    sources
}

/// `path` with `.` and `..` resolved lexically.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every file that an `include_str!`/`include_bytes!` in `src/` reads, repository-relative.
fn compile_time_includes(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = &text[at + macro_name.len()..];
                    let Some(end) = rest.find('"') else { continue };
                    let target = normalise(&path.parent().expect("parent").join(&rest[..end]));
                    let relative = target.strip_prefix(root).expect("inside the repository");
                    found.push(relative.to_path_buf());
                }
            }
        }
    }
    found
}

#[test]
fn the_dockerfile_copies_every_file_the_build_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = dockerfile_copy_sources(&read("Dockerfile"));
    let covered = |path: &Path| {
        sources
            .iter()
            .any(|source| path.starts_with(Path::new(source)))
    };
    let includes = compile_time_includes(root);
    // The scan finds the known ones (so it can fail if it stops finding anything).
    assert!(
        includes.contains(&PathBuf::from("schemas/movement.schema.json")),
        "{includes:?}"
    );
    assert!(
        includes.contains(&PathBuf::from("src/web/assets/index.html")),
        "{includes:?}"
    );
    for include in &includes {
        assert!(
            root.join(include).is_file(),
            "{} does not exist",
            include.display()
        );
        assert!(
            covered(include),
            "{} is read at compile time but docker/Dockerfile does not COPY it (COPY sources: {sources:?})",
            include.display()
        );
    }
    // Cargo.toml's explicit targets must exist in the image's build context too.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = toml::from_str(&manifest).expect("Cargo.toml parses");
    for kind in ["bench", "example", "test", "bin"] {
        let targets = manifest
            .get(kind)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        for target in targets {
            let path = match target.get("path").and_then(|p| p.as_str()) {
                Some(path) => PathBuf::from(path),
                None => {
                    let name = target["name"].as_str().expect("target name");
                    let dir = match kind {
                        "bench" => "benches",
                        "example" => "examples",
                        "test" => "tests",
                        _ => "src/bin",
                    };
                    PathBuf::from(format!("{dir}/{name}.rs"))
                }
            };
            assert!(
                covered(&path),
                "Cargo.toml {kind} target {} is not copied",
                path.display()
            );
        }
    }
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    for excluded in ["target/", ".git/", "fuzz/target/"] {
        assert!(
            ignore.lines().any(|line| line.trim() == excluded),
            "{excluded}"
        );
    }
}
