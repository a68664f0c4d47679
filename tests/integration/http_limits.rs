//! Limits on what outside traffic can make the engine hold (issue 10 §2): reads of SKUs
//! never seen load nothing, a rules change walks the store in pages, the HTTP server closes
//! connections that never finish their headers, refuses connections and sheds requests
//! beyond its limits (503 with `Retry-After`), bounds a request's time, body and movement
//! count, and platform answers are read up to a cap.
//!
//! Each test starts its own ledger on a temporary database and its own server on
//! `127.0.0.1:0`, with short limits in its config.

use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stocksync::config::Config;
use stocksync::domain::{AvailabilityChange, AvailabilitySink, NullSink};
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::embedded::EmbeddedStore;
use stocksync::web::{self, WebState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

struct Server {
    base: String,
    address: std::net::SocketAddr,
    client: reqwest::Client,
    ledger: Ledger,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server whose `[http]` section has `http` (after `listen`).
    async fn start(http: &str) -> Self {
        let config = Config::from_toml(&format!(
            r#"
            [http]
            listen = "127.0.0.1:0"
            {http}
            [[locations]]
            id = "WH-1"
            "#
        ))
        .expect("test config parses");
        config.validate().expect("test config is valid");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("db")).expect("store opens");
        let ledger = Ledger::start(
            Arc::new(store),
            Arc::new(NullSink),
            LedgerOptions::default(),
        );
        let http = config.http.clone();
        let state = WebState::new(ledger.clone(), Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(web::serve_with(
            listener,
            web::router(state),
            http,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            base: format!("http://{address}"),
            address,
            // No pooled connections: a server with a short header timeout closes an idle
            // keep-alive connection after it, and a request that picked that connection up
            // as it closed would fail (`IncompleteMessage`) for a reason that is not the test's.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            ledger,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the server stops")
                .expect("server task")
                .expect("server ran");
        }
        self.ledger.shutdown().await;
    }

    async fn get(&self, path: &str) -> (u16, Option<String>, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        (
            status,
            retry_after,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn post_movements(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/movements", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json answer"))
    }

    /// A raw connection that sent `bytes` and then holds.
    async fn raw(&self, bytes: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(self.address).await.expect("connects");
        if !bytes.is_empty() {
            stream.write_all(bytes).await.expect("writes");
        }
        stream
    }
}

fn receipt(sku: &str, key: &str, quantity: u64) -> Value {
    json!({"sku": sku, "idempotency_key": key, "type": "receipt", "location": "WH-1",
           "quantity": quantity})
}

/// Reads until the peer closes; `Some(bytes read)` if it closed within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut read = Vec::new();
    let until_closed = async {
        let mut buffer = [0_u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, until_closed).await.ok()?;
    Some(read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_reads_of_unseen_skus_load_no_sku_and_answer_404() {
    let server = Server::start("").await;
    let reads = futures::stream::iter(0..10_000_u32)
        .map(|n| {
            let server = &server;
            async move {
                // Random-looking, never-seen SKUs, through both read routes.
                let sku = format!("NEVER-{:08x}", n.wrapping_mul(2_654_435_761));
                let path = if n % 2 == 0 {
                    format!("/api/v1/stock/{sku}")
                } else {
                    format!("/api/v1/stock/{sku}/events")
                };
                let (status, _, body) = server.get(&path).await;
                (status, body)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(reads.len(), 10_000);
    for (status, body) in &reads {
        assert_eq!(*status, 404, "{body}");
        assert_eq!(body["type"], "urn:stocksync:problem:unknown-sku", "{body}");
    }
    assert_eq!(
        server.ledger.live_actors(),
        0,
        "reads of unseen SKUs must not bring SKUs into memory"
    );
    // A SKU with a durable movement still reads, and a bundle-less unknown stays 404.
    let (status, _) = server
        .post_movements(&receipt("KNOWN-1", "k-known-1", 3))
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = server.get("/api/v1/stock/KNOWN-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["locations"][0]["on_hand"], 3);
    let (status, _, body) = server.get("/api/v1/stock/KNOWN-1/events").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    server.stop().await;
}

/// Records, at every publish, how many SKUs the ledger holds in memory.
struct LiveProbe {
    ledger: Ledger,
    published: AtomicU64,
    live_max: AtomicU64,
    on_hand: Mutex<u64>,
}

impl AvailabilitySink for LiveProbe {
    fn publish(&self, changes: &[AvailabilityChange]) {
        self.published
            .fetch_add(changes.len() as u64, Ordering::SeqCst);
        self.live_max
            .fetch_max(self.ledger.live_actors(), Ordering::SeqCst);
        let units: i64 = changes
            .iter()
            .flat_map(|change| change.locations.iter())
            .map(|level| level.on_hand)
            .sum();
        *self.on_hand.lock().unwrap() += units as u64;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_change_republishes_every_sku_without_loading_them_into_the_ledger() {
    const SKUS: u64 = 3 * stocksync::web::rules::REPUBLISH_PAGE as u64 + 17;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("db")).unwrap();
    let ledger = Ledger::start(
        Arc::new(store),
        Arc::new(NullSink),
        LedgerOptions::default(),
    );
    let pending: Vec<_> = (0..SKUS)
        .map(|n| {
            let movement: stocksync::domain::Movement =
                serde_json::from_value(receipt(&format!("PAGE-{n:05}"), &format!("k{n}"), 2))
                    .unwrap();
            ledger.submit(movement)
        })
        .collect();
    for ack in futures::future::join_all(pending).await {
        ack.expect("durable");
    }
    // Passivate everything: what is live before the walk is 0.
    ledger.shutdown().await;
    assert_eq!(ledger.live_actors(), 0);
    let probe = Arc::new(LiveProbe {
        ledger: ledger.clone(),
        published: AtomicU64::new(0),
        live_max: AtomicU64::new(0),
        on_hand: Mutex::new(0),
    });
    stocksync::web::rules::republish(ledger.clone(), probe.clone()).await;
    assert_eq!(probe.published.load(Ordering::SeqCst), SKUS);
    assert_eq!(*probe.on_hand.lock().unwrap(), 2 * SKUS);
    assert_eq!(
        probe.live_max.load(Ordering::SeqCst),
        0,
        "the walk must not bring SKUs into the ledger's memory"
    );
    assert_eq!(ledger.live_actors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed_and_healthz_still_answers() {
    let server = Server::start("header_read_timeout_ms = 400\nmax_connections = 256").await;
    let mut held = Vec::new();
    for n in 0..100 {
        held.push(
            server
                .raw(format!("GET /api/v1/skus HTTP/1.1\r\nHost: 127.0.0.1\r\nX-N: {n}").as_bytes())
                .await,
        );
    }
    // A silent connection counts too.
    held.push(server.raw(b"").await);
    let (status, _, body) = server.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    for stream in &mut held {
        assert!(
            closed_within(stream, Duration::from_secs(5))
                .await
                .is_some(),
            "a connection without a whole header must be closed after the timeout"
        );
    }
    let (status, _, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let server = Server::start("max_connections = 4\nheader_read_timeout_ms = 30000").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(server.raw(b"GET /healthz HTTP/1.1\r\n").await);
    }
    // Let the server accept the four before the fifth arrives.
    tokio::task::yield_now().await;
    let mut fifth = server.raw(b"").await;
    assert!(
        closed_within(&mut fifth, Duration::from_secs(5))
            .await
            .is_some(),
        "the fifth connection must be closed"
    );
    for stream in &mut held {
        assert!(
            closed_within(stream, Duration::from_millis(100))
                .await
                .is_none(),
            "connections within the limit stay open"
        );
    }
    drop(held);
    // The slots come back once the server sees the four close.
    let mut answered = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if let Ok(response) = server
            .client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            && response.status() == 200
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        answered,
        "a connection is accepted again once the others closed"
    );
    server.stop().await;
}

/// A `POST /api/v1/movements` whose body never completes: it holds a request slot.
async fn stalled_post(server: &Server) -> TcpStream {
    server
        .raw(
            b"POST /api/v1/movements HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n[{\"sku\":",
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_limit_are_shed_with_503_and_retry_after() {
    let server = Server::start(
        "max_concurrent_requests = 1\nretry_after_secs = 7\nrequest_timeout_ms = 30000",
    )
    .await;
    let mut stalled = stalled_post(&server).await;
    // Wait until the stalled request holds the slot: on a loaded machine (2 cores running
    // every test binary) that can take seconds, so the wait is bounded by a deadline, not
    // a count of tries.
    let mut shed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let answer = server.get("/api/v1/skus").await;
        if answer.0 == 503 {
            shed = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, retry_after, body) = shed.expect("a request beyond the limit is shed");
    assert_eq!(retry_after.as_deref(), Some("7"));
    assert_eq!(body["type"], "urn:stocksync:problem:overloaded", "{body}");
    assert_eq!(body["status"], 503);
    // Health, readiness and metrics are not limited.
    assert_eq!(server.get("/healthz").await.0, 200);
    let (_, _, ready) = server.get("/readyz").await;
    assert_ne!(ready["type"], "urn:stocksync:problem:overloaded", "{ready}");
    let metrics = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // Once the stalled request ends, requests are served again.
    stalled.shutdown().await.ok();
    drop(stalled);
    let mut served = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if server.get("/api/v1/skus").await.0 == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_not_answered_in_time_gets_a_503_problem_with_retry_after() {
    let server = Server::start(
        "request_timeout_ms = 300\nretry_after_secs = 2\nheader_read_timeout_ms = 1000",
    )
    .await;
    let mut stalled = stalled_post(&server).await;
    let answer = closed_within(&mut stalled, Duration::from_secs(10))
        .await
        .expect("the timed-out request is answered and its connection closed or kept");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 2"),
        "{text}"
    );
    assert!(text.contains("request-timeout"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_movement_limit_is_refused_whole() {
    let server = Server::start("max_movements_per_request = 3").await;
    let batch: Vec<Value> = (0..4)
        .map(|n| receipt("LIMIT-1", &format!("limit-{n}"), 1))
        .collect();
    let (status, body) = server.post_movements(&json!(batch)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "#");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{body}"
    );
    assert_eq!(server.get("/api/v1/stock/LIMIT-1").await.0, 404);
    let (status, body) = server.post_movements(&json!(batch[..3])).await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_on_every_route_with_a_problem() {
    let server = Server::start("body_limit_bytes = 1024").await;
    let big = vec![b' '; 4096];
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/skus"),
        (reqwest::Method::PUT, "/api/v1/config/rules"),
        (reqwest::Method::POST, "/api/v1/reservations"),
        (reqwest::Method::POST, "/api/v1/movements"),
    ] {
        let response = server
            .client
            .request(method.clone(), format!("{}{path}", server.base))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            web::PROBLEM_CONTENT_TYPE,
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], 413, "{method} {path}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_answer_longer_than_the_configured_cap_is_a_too_large_error() {
    // A platform that answers with an endless body.
    let endless = axum::Router::new().fallback(|| async {
        let chunk = axum::body::Bytes::from(vec![b'x'; 8192]);
        axum::body::Body::from_stream(futures::stream::repeat_with(move || {
            Ok::<_, std::convert::Infallible>(chunk.clone())
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let platform = tokio::spawn(async move { axum::serve(listener, endless).await });
    let config = Config::from_toml(&format!(
        r#"
        [http]
        platform_response_limit_bytes = 65536
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "shop"
        kind = "shopify"
        locations = ["WH-1"]
        [channels.shopify]
        shop_url = "http://{address}"
        access_token = "unused"
        webhook_secret = "unused"
        location_id = 1
        "#
    ))
    .unwrap();
    let clients = stocksync::platforms::PlatformClients::build_with_limit(
        &config.channels,
        reqwest::Client::new(),
        config.http.platform_response_limit_bytes,
    );
    let section = config.channel("shop").unwrap().shopify().unwrap().clone();
    let shopify = clients.shopify("shop", &section);
    let answer = tokio::time::timeout(Duration::from_secs(20), shopify.rest_get("/shop.json"))
        .await
        .expect("reading stops at the cap instead of following the endless body");
    assert_eq!(
        answer.unwrap_err(),
        stocksync::platforms::PlatformError::TooLarge {
            limit_bytes: 65_536
        }
    );
    platform.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_forever_for_a_server_sent_event_stream() {
    let server = Server::start("request_timeout_ms = 500").await;
    let mut stream = server
        .client
        .get(format!("{}/api/v1/events", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The first event (channel health) arrives at once; the stream then stays open.
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("the first event arrives")
        .unwrap();
    assert!(first.is_some());
    let started = std::time::Instant::now();
    // `stop` fails the test if the server is not done within 10 s.
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(stream);
}
