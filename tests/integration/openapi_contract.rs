//! The HTTP API answers as its OpenAPI contract (`GET /api/v1/openapi.json`) says: each
//! test sends requests that once got answers outside the contract (found by schemathesis,
//! `scripts/schemathesis.sh`) and checks the status, the content type and the body against
//! the operation's documented responses.

use serde_json::{Value, json};
use std::sync::Arc;
use stocksync::config::Config;
use stocksync::domain::NullSink;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::embedded::EmbeddedStore;
use stocksync::web::{self, WebState};
use tokio::sync::oneshot;

struct Server {
    base: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let config = Config::from_toml(
        r#"
        [http]
        listen = "127.0.0.1:0"
        body_limit_bytes = 65536
        [[locations]]
        id = "WH-1"
        "#,
    )
    .expect("test config parses");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("db")).expect("store opens");
    let ledger = Ledger::start(
        Arc::new(store),
        Arc::new(NullSink),
        LedgerOptions::default(),
    );
    let state = WebState::new(ledger, Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(web::serve(listener, web::router(state), async move {
        let _ = stopped.await;
    }));
    Server {
        base: format!("http://{address}"),
        client: reqwest::Client::new(),
        _stop: stop,
        _dir: dir,
    }
}

/// Checks `response` against the documented answers of `method path` (`path` as in the
/// contract, e.g. `/api/v1/stock/{sku}`): the status is documented, with the content type
/// received, and the body validates against that content's schema. Returns the body.
async fn conforms(method: &str, path: &str, response: reqwest::Response) -> Value {
    let document = web::openapi::document();
    let status = response.status().as_u16().to_string();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let text = response.text().await.expect("body");
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let mut answer = &operation["responses"][status.as_str()];
    assert!(
        answer.is_object(),
        "{method} {path} answered {status}, which is not documented: {text}"
    );
    if let Some(target) = answer["$ref"].as_str() {
        answer = document.pointer(&target[1..]).expect("response reference");
    }
    let schema = &answer["content"][content_type.as_str()]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} answered {status} as {content_type:?}, not documented: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{method} {path}: not JSON ({error}): {text}"));
    let rooted = json!({"allOf": [schema], "components": document["components"]});
    if let Err(error) = jsonschema::validate(&rooted, &body) {
        panic!("{method} {path} {status}: {error} in {body}");
    }
    body
}

#[tokio::test]
async fn rules_bodies_that_are_not_rules_documents_answer_documented_problems() {
    let server = start().await;
    let url = format!("{}/api/v1/config/rules", server.base);
    // Not JSON as a media type: 415 (was a text/plain rejection from the extractor).
    let response = server
        .client
        .put(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let problem = conforms("put", "/api/v1/config/rules", response).await;
    assert_eq!(
        problem["type"],
        "urn:stocksync:problem:unsupported-media-type"
    );
    // Not JSON: 400.
    let response = server
        .client
        .put(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem = conforms("put", "/api/v1/config/rules", response).await;
    assert_eq!(problem["type"], "urn:stocksync:problem:malformed-json");
    // JSON, but not a rules document: 422 with the reason at `#`.
    let response = server
        .client
        .put(&url)
        .json(&json!({"channels": 5, "unknown": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem = conforms("put", "/api/v1/config/rules", response).await;
    assert_eq!(problem["type"], "urn:stocksync:problem:invalid-rules");
    assert_eq!(problem["errors"][0]["pointer"], "#");
}

#[tokio::test]
async fn the_contract_is_served_and_documents_itself() {
    let server = start().await;
    let response = server
        .client
        .get(format!("{}/api/v1/openapi.json", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served = conforms("get", "/api/v1/openapi.json", response).await;
    assert_eq!(&served, web::openapi::document());
    // The answers of an ordinary read conform too.
    let response = server
        .client
        .get(format!("{}/api/v1/skus?limit=5", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    conforms("get", "/api/v1/skus", response).await;
}
