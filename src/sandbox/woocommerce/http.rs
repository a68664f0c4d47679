//! The simulator's HTTP surface: the REST v3 routes, the auth / host-limit gate in front of
//! them, and the `/_sandbox` inspection routes (see the module docs of `woocommerce`).

use super::state::rest_error;
use super::{Inner, LOG_MAX, SandboxRequest, SimOrderLine, SimulatorError};
use crate::sandbox::index::{SandboxMethod, SandboxRoutes};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type Params = Query<HashMap<String, String>>;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let api = Router::new()
        .route("/products", get(list_products))
        .route("/products/batch", post(batch_products))
        .route("/products/{id}", get(get_product).put(put_product))
        .route("/products/{pid}/variations", get(list_variations))
        .route("/products/{pid}/variations/batch", post(batch_variations))
        .route(
            "/products/{pid}/variations/{id}",
            get(get_variation).put(put_variation),
        )
        .route("/orders", get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/refunds", get(get_refunds).post(create_refund))
        .layer(middleware::from_fn_with_state(Arc::clone(&inner), gate));
    Router::new()
        .nest("/wp-json/wc/v3", api)
        .merge(sandbox_routes().into_router())
        .with_state(inner)
}

/// Every `/_sandbox` endpoint, in the order `GET /_sandbox` lists them.
pub(crate) fn sandbox_routes() -> SandboxRoutes<Arc<Inner>> {
    use SandboxMethod::{Get, Post};
    SandboxRoutes::new("woocommerce")
        .add(Get, "/_sandbox/products", "every product and variation", None, sandbox_products)
        .add(Get, "/_sandbox/orders", "every order as the REST resource", None, sandbox_orders)
        .add(
            Post,
            "/_sandbox/orders",
            "take an order (stock is reduced when the status is processing, on-hold or completed); sends order.created",
            Some(r#"{"status": "processing", "lines": [{"product_id": 10, "variation_id": 0, "quantity": 2}]}"#),
            sandbox_place_order,
        )
        .add(
            Post,
            "/_sandbox/orders/{id}/status",
            "move an order to a status (refunded: an automatic refund without restock, stock stays reduced); sends order.updated",
            Some(r#"{"status": "refunded"}"#),
            sandbox_set_status,
        )
        .add(
            Post,
            "/_sandbox/orders/{id}/lines",
            "change line quantities (0 removes the line), add lines; stock follows; sends order.updated",
            Some(r#"{"line_items": [{"id": 7, "quantity": 1}, {"id": 8, "quantity": 0}, {"product_id": 12, "variation_id": 0, "quantity": 4}]}"#),
            sandbox_edit_lines,
        )
        .add(
            Post,
            "/_sandbox/orders/{id}/refunds",
            "refund line units (refused beyond what is left, as POST /wp-json/wc/v3/orders/{id}/refunds); sends order.updated",
            Some(r#"{"api_restock": true, "line_items": [{"id": 7, "quantity": 1}]}"#),
            sandbox_refund,
        )
        .add(Get, "/_sandbox/webhooks", "webhooks and their delivery log", None, sandbox_webhooks)
        .add(Post, "/_sandbox/webhooks/ping", "send every webhook's creation ping", None, sandbox_ping)
        .add(Post, "/_sandbox/webhooks/enable", "re-enable disabled webhooks", None, sandbox_enable)
        .add(
            Post,
            "/_sandbox/failures",
            "answer the next requests with a host/WAF status",
            Some(r#"{"status": 429, "count": 3, "retry_after_secs": 2}"#),
            sandbox_failures,
        )
        .add(Get, "/_sandbox/counters", "request and webhook counters", None, sandbox_counters)
        .add(Get, "/_sandbox/requests", "the request log", None, sandbox_requests)
}

fn error_response(error: Value) -> Response {
    let status = error["data"]["status"]
        .as_u64()
        .and_then(|status| StatusCode::from_u16(status as u16).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(error)).into_response()
}

/// Adds `Retry-After: secs` in delta-seconds, or, when `dated_now_ms` (the simulator's
/// wall clock) is given, as an HTTP-date `secs` after a `Date` header of that clock (both
/// to the whole second, RFC 9110 §10.2.3 and §6.6.1).
fn with_retry_after(
    mut response: Response,
    secs: Option<u64>,
    dated_now_ms: Option<i64>,
) -> Response {
    let Some(secs) = secs else {
        return response;
    };
    let value = match dated_now_ms {
        Some(now_ms) => {
            let now = std::time::UNIX_EPOCH + Duration::from_secs((now_ms.max(0) / 1000) as u64);
            if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
                response.headers_mut().insert(header::DATE, date);
            }
            httpdate::fmt_http_date(now + Duration::from_secs(secs))
        }
        None => secs.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// True when the request carries the consumer key and secret (HTTP Basic or query).
fn authorised(inner: &Inner, headers: &HeaderMap, query: Option<&str>) -> bool {
    let options = &inner.options;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| BASE64.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    if let Some(pair) = basic {
        return pair == format!("{}:{}", options.consumer_key, options.consumer_secret);
    }
    let params: HashMap<String, String> =
        query.and_then(serde_urlencoded_pairs).unwrap_or_default();
    params.get("consumer_key") == Some(&options.consumer_key)
        && params.get("consumer_secret") == Some(&options.consumer_secret)
}

/// Decodes `a=b&c=d` with percent-decoding (`+` as space).
fn serde_urlencoded_pairs(query: &str) -> Option<HashMap<String, String>> {
    let decode = |text: &str| -> Option<String> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'+' => out.push(b' '),
                b'%' if index + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    index += 2;
                }
                byte => out.push(byte),
            }
            index += 1;
        }
        String::from_utf8(out).ok()
    };
    let mut pairs = HashMap::new();
    for part in query.split('&').filter(|part| !part.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.insert(decode(name)?, decode(value)?);
    }
    Some(pairs)
}

enum Decision {
    Pass,
    Answer(Response),
}

/// Counts the request, applies latency, injected failures, the WAF limit and auth.
async fn gate(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let arrival = Instant::now();
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.to_string())
        .unwrap_or_default();
    if inner.options.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(inner.options.latency_ms)).await;
    }
    let decision = {
        let mut state = inner.lock();
        state.counters.requests += 1;
        if state.retry_after_until.is_some_and(|until| arrival < until) {
            state.counters.retry_after_violations += 1;
        }
        let injected = match state.injected.front_mut() {
            Some(injected) if injected.remaining > 0 => {
                injected.remaining -= 1;
                Some((injected.status, injected.retry_after_secs, injected.dated))
            }
            _ => None,
        };
        while state
            .injected
            .front()
            .is_some_and(|injected| injected.remaining == 0)
        {
            state.injected.pop_front();
        }
        let waf = inner.options.waf_requests_per_sec.and_then(|rate| {
            let elapsed = arrival
                .saturating_duration_since(state.waf_last)
                .as_secs_f64();
            state.waf_last = arrival;
            state.waf_tokens =
                (state.waf_tokens + elapsed * rate).min(f64::from(inner.options.waf_burst.max(1)));
            if state.waf_tokens >= 1.0 {
                state.waf_tokens -= 1.0;
                None
            } else {
                Some((
                    429,
                    Some(((1.0 - state.waf_tokens) / rate).ceil().max(1.0) as u64),
                    false,
                ))
            }
        });
        if let Some((status, retry_after, dated)) = injected.or(waf) {
            state.counters.throttled_or_failed += 1;
            if let Some(secs) = retry_after {
                state.retry_after_until = Some(arrival + Duration::from_secs(secs));
            }
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let body = code.canonical_reason().unwrap_or("Error").to_owned();
            let dated_now_ms = dated.then(|| inner.now_ms());
            Decision::Answer(with_retry_after(
                (code, body).into_response(),
                retry_after,
                dated_now_ms,
            ))
        } else if !authorised(&inner, request.headers(), request.uri().query()) {
            state.counters.unauthorized += 1;
            Decision::Answer(error_response(rest_error(
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
                401,
            )))
        } else {
            Decision::Pass
        }
    };
    let response = match decision {
        Decision::Answer(response) => response,
        Decision::Pass => next.run(request).await,
    };
    let mut state = inner.lock();
    if state.requests.len() >= LOG_MAX {
        state.requests.pop_front();
    }
    state.requests.push_back(SandboxRequest {
        at_ms: arrival
            .saturating_duration_since(inner.started)
            .as_secs_f64()
            * 1000.0,
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

/// The JSON body, or the REST error object for a body that is not JSON.
fn parse_body(body: &Bytes) -> Result<Value, Value> {
    serde_json::from_slice(body)
        .map_err(|_| rest_error("rest_invalid_json", "Invalid JSON body passed.", 400))
}

fn failing_error(id: u64) -> Value {
    rest_error(
        "woocommerce_rest_cannot_edit",
        &format!("Sandbox: product {id} is configured to refuse updates."),
        400,
    )
}

fn ids_param(params: &HashMap<String, String>) -> Option<Vec<u64>> {
    params.get("include").map(|include| {
        include
            .split(',')
            .filter_map(|id| id.trim().parse().ok())
            .collect()
    })
}

fn paginate(items: Vec<Value>, params: &HashMap<String, String>) -> Response {
    let per_page: usize = params
        .get("per_page")
        .and_then(|value| value.parse().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let page: usize = params
        .get("page")
        .and_then(|value| value.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let pages = total.div_ceil(per_page);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = Json(Value::Array(slice)).into_response();
    let headers = response.headers_mut();
    headers.insert("X-WP-Total", HeaderValue::from(total));
    headers.insert("X-WP-TotalPages", HeaderValue::from(pages));
    response
}

async fn list_products(State(inner): State<Arc<Inner>>, Query(params): Params) -> Response {
    let state = inner.lock();
    let include = ids_param(&params);
    let sku = params.get("sku");
    let items: Vec<Value> = state
        .shop
        .products
        .values()
        .filter(|product| include.as_ref().is_none_or(|ids| ids.contains(&product.id)))
        .filter(|product| sku.is_none_or(|sku| &product.sku == sku))
        .map(|product| state.shop.product_json(product))
        .collect();
    paginate(items, &params)
}

async fn get_product(State(inner): State<Arc<Inner>>, Path(id): Path<u64>) -> Response {
    let state = inner.lock();
    match state.shop.products.get(&id) {
        Some(product) => Json(state.shop.product_json(product)).into_response(),
        None => error_response(rest_error(
            "woocommerce_rest_product_invalid_id",
            "Invalid ID.",
            404,
        )),
    }
}

async fn put_product(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(error) => return error_response(error),
    };
    let mut state = inner.lock();
    if state.failing_items.contains(&id) {
        return error_response(failing_error(id));
    }
    match state.shop.update_product(id, &body, inner.now_ms()) {
        Ok(json) => {
            state.counters.puts_applied += 1;
            Json(json).into_response()
        }
        Err(error) => error_response(error),
    }
}

async fn list_variations(
    State(inner): State<Arc<Inner>>,
    Path(pid): Path<u64>,
    Query(params): Params,
) -> Response {
    let state = inner.lock();
    if !state.shop.products.contains_key(&pid) {
        return error_response(rest_error(
            "woocommerce_rest_product_invalid_id",
            "Invalid ID.",
            404,
        ));
    }
    let include = ids_param(&params);
    let items: Vec<Value> = state
        .shop
        .variations
        .values()
        .filter(|variation| variation.parent_id == pid)
        .filter(|variation| {
            include
                .as_ref()
                .is_none_or(|ids| ids.contains(&variation.id))
        })
        .map(|variation| state.shop.variation_json(variation))
        .collect();
    paginate(items, &params)
}

async fn get_variation(
    State(inner): State<Arc<Inner>>,
    Path((pid, id)): Path<(u64, u64)>,
) -> Response {
    let state = inner.lock();
    match state
        .shop
        .variations
        .get(&id)
        .filter(|variation| variation.parent_id == pid)
    {
        Some(variation) => Json(state.shop.variation_json(variation)).into_response(),
        None => error_response(rest_error(
            "woocommerce_rest_product_variation_invalid_id",
            "Invalid ID.",
            404,
        )),
    }
}

async fn put_variation(
    State(inner): State<Arc<Inner>>,
    Path((pid, id)): Path<(u64, u64)>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(error) => return error_response(error),
    };
    let mut state = inner.lock();
    if state.failing_items.contains(&id) {
        return error_response(failing_error(id));
    }
    match state.shop.update_variation(pid, id, &body, inner.now_ms()) {
        Ok(json) => {
            state.counters.puts_applied += 1;
            Json(json).into_response()
        }
        Err(error) => error_response(error),
    }
}

fn entry_id(entry: &Value) -> Option<u64> {
    entry
        .get("id")
        .and_then(|id| {
            id.as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
        })
        .or_else(|| entry.as_u64())
}

/// `POST …/batch`: the limit check over create+update+delete, then each item on its own.
fn batch(inner: &Inner, parent: Option<u64>, body: &Bytes) -> Response {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(error) => return error_response(error),
    };
    let list = |name: &str| body.get(name).and_then(Value::as_array).cloned();
    let (create, update, delete) = (list("create"), list("update"), list("delete"));
    let total = [&create, &update, &delete]
        .iter()
        .map(|list| list.as_ref().map_or(0, Vec::len))
        .sum::<usize>();
    let limit = inner.options.batch_limit;
    let mut state = inner.lock();
    if total > limit {
        state.counters.batches_too_large += 1;
        return error_response(rest_error(
            "woocommerce_rest_request_entity_too_large",
            &format!("Unable to accept more than {limit} items for this request."),
            413,
        ));
    }
    if let Some(pid) = parent
        && !state.shop.products.contains_key(&pid)
    {
        return error_response(rest_error(
            "woocommerce_rest_product_invalid_id",
            "Invalid ID.",
            404,
        ));
    }
    let now = inner.now_ms();
    let mut answer = serde_json::Map::new();
    let with_id = |id: u64, error: Value| json!({ "id": id, "error": error });
    if let Some(create) = create {
        let created: Vec<Value> = create
            .iter()
            .map(|entry| match parent {
                None => state.shop.create_product(entry, now),
                Some(pid) => state.shop.create_variation(pid, entry, now),
            })
            .collect();
        answer.insert("create".to_owned(), Value::Array(created));
    }
    if let Some(update) = update {
        let mut updated = Vec::with_capacity(update.len());
        for entry in &update {
            let Some(id) = entry_id(entry) else {
                updated.push(with_id(
                    0,
                    rest_error("woocommerce_rest_product_invalid_id", "Invalid ID.", 400),
                ));
                state.counters.batch_items_failed += 1;
                continue;
            };
            let result = if state.failing_items.contains(&id) {
                Err(failing_error(id))
            } else {
                match parent {
                    None => state.shop.update_product(id, entry, now),
                    Some(pid) => state.shop.update_variation(pid, id, entry, now),
                }
            };
            match result {
                Ok(json) => {
                    state.counters.batch_items_applied += 1;
                    updated.push(json);
                }
                Err(error) => {
                    state.counters.batch_items_failed += 1;
                    updated.push(with_id(id, error));
                }
            }
        }
        answer.insert("update".to_owned(), Value::Array(updated));
    }
    if let Some(delete) = delete {
        let deleted: Vec<Value> = delete
            .iter()
            .map(|entry| {
                let id = entry_id(entry).unwrap_or(0);
                let result = match parent {
                    None => state.shop.delete_product(id),
                    Some(pid) => state.shop.delete_variation(pid, id),
                };
                result.unwrap_or_else(|error| with_id(id, error))
            })
            .collect();
        answer.insert("delete".to_owned(), Value::Array(deleted));
    }
    state.counters.batches += 1;
    Json(Value::Object(answer)).into_response()
}

async fn batch_products(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    batch(&inner, None, &body)
}

async fn batch_variations(
    State(inner): State<Arc<Inner>>,
    Path(pid): Path<u64>,
    body: Bytes,
) -> Response {
    batch(&inner, Some(pid), &body)
}

async fn list_orders(State(inner): State<Arc<Inner>>, Query(params): Params) -> Response {
    let after_secs = params
        .get("modified_after")
        .and_then(|text| super::state::parse_gmt(text))
        .map(|ms| ms / 1000);
    let state = inner.lock();
    let mut orders: Vec<&super::state::Order> = state
        .shop
        .orders
        .values()
        .filter(|order| after_secs.is_none_or(|after| order.date_modified_ms / 1000 >= after))
        .filter(|order| {
            params
                .get("status")
                .is_none_or(|status| &order.status == status)
        })
        .collect();
    orders.sort_by_key(|order| (order.date_modified_ms / 1000, order.id));
    let items = orders
        .into_iter()
        .map(|order| state.shop.order_json(order, &inner.site_url))
        .collect();
    paginate(items, &params)
}

async fn get_order(State(inner): State<Arc<Inner>>, Path(id): Path<u64>) -> Response {
    let state = inner.lock();
    match state.shop.orders.get(&id) {
        Some(order) => Json(state.shop.order_json(order, &inner.site_url)).into_response(),
        None => error_response(rest_error(
            "woocommerce_rest_shop_order_invalid_id",
            "Invalid ID.",
            404,
        )),
    }
}

async fn get_refunds(State(inner): State<Arc<Inner>>, Path(id): Path<u64>) -> Response {
    let state = inner.lock();
    match state.shop.orders.get(&id) {
        Some(order) => Json(Value::Array(state.shop.refunds_json(order))).into_response(),
        None => error_response(rest_error(
            "woocommerce_rest_shop_order_invalid_id",
            "Invalid ID.",
            404,
        )),
    }
}

async fn sandbox_products(State(inner): State<Arc<Inner>>) -> Response {
    let state = inner.lock();
    let products: Vec<Value> = state
        .shop
        .products
        .values()
        .map(|product| state.shop.product_json(product))
        .collect();
    let variations: Vec<Value> = state
        .shop
        .variations
        .values()
        .map(|variation| state.shop.variation_json(variation))
        .collect();
    Json(json!({ "products": products, "variations": variations })).into_response()
}

async fn sandbox_orders(State(inner): State<Arc<Inner>>) -> Response {
    let state = inner.lock();
    let orders: Vec<Value> = state
        .shop
        .orders
        .values()
        .map(|order| state.shop.order_json(order, &inner.site_url))
        .collect();
    Json(Value::Array(orders)).into_response()
}

/// The REST error WooCommerce gives when `wc_create_refund` fails: the controller wraps
/// the message in `woocommerce_rest_cannot_create_order_refund` with status 500.
fn refund_refused() -> Response {
    error_response(rest_error(
        "woocommerce_rest_cannot_create_order_refund",
        "Invalid refund amount.",
        500,
    ))
}

fn simulator_error(error: &SimulatorError) -> Response {
    if matches!(error, SimulatorError::RefundExceedsLine { .. }) {
        return refund_refused();
    }
    let status = match error {
        SimulatorError::UnknownOrder { .. } => StatusCode::NOT_FOUND,
        SimulatorError::InsufficientStock { .. } => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, Json(json!({ "error": error.to_string() }))).into_response()
}

/// `POST /_sandbox/orders` body.
#[derive(Deserialize)]
struct PlaceOrder {
    lines: Vec<SimOrderLine>,
    #[serde(default = "default_status")]
    status: String,
}

fn default_status() -> String {
    "processing".to_owned()
}

async fn sandbox_place_order(
    State(inner): State<Arc<Inner>>,
    Json(body): Json<PlaceOrder>,
) -> Response {
    match inner.place_order(&body.lines, &body.status) {
        Ok(order) => (StatusCode::CREATED, Json(order)).into_response(),
        Err(error) => simulator_error(&error),
    }
}

/// `POST /_sandbox/orders/{id}/status` body.
#[derive(Deserialize)]
struct SetStatus {
    status: String,
}

async fn sandbox_set_status(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<u64>,
    Json(body): Json<SetStatus>,
) -> Response {
    match inner.set_order_status(id, &body.status) {
        Ok(order) => Json(order).into_response(),
        Err(error) => simulator_error(&error),
    }
}

/// `POST /_sandbox/orders/{id}/refunds` body: `line_items[{id, quantity}]`, `api_restock`.
#[derive(Deserialize)]
struct RefundBody {
    line_items: Vec<RefundLine>,
    #[serde(default)]
    api_restock: Option<bool>,
}

#[derive(Deserialize)]
struct RefundLine {
    id: u64,
    quantity: u64,
}

async fn sandbox_refund(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<u64>,
    Json(body): Json<RefundBody>,
) -> Response {
    let lines: Vec<(u64, u64)> = body
        .line_items
        .iter()
        .map(|line| (line.id, line.quantity))
        .collect();
    match inner.refund(id, &lines, body.api_restock) {
        Ok(refund_id) => (StatusCode::CREATED, Json(json!({ "id": refund_id }))).into_response(),
        Err(error) => simulator_error(&error),
    }
}

/// `POST /_sandbox/orders/{id}/lines` body.
#[derive(Deserialize)]
struct EditLinesBody {
    line_items: Vec<super::LineChange>,
}

async fn sandbox_edit_lines(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<u64>,
    Json(body): Json<EditLinesBody>,
) -> Response {
    match inner.edit_lines(id, &body.line_items) {
        Ok(order) => Json(order).into_response(),
        Err(error) => simulator_error(&error),
    }
}

/// `POST /wp-json/wc/v3/orders/{id}/refunds` body (the fields the sandbox reads).
#[derive(Deserialize)]
struct CreateRefundBody {
    #[serde(default)]
    amount: Option<Value>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    api_restock: Option<bool>,
    #[serde(default)]
    line_items: Vec<RefundLine>,
}

/// Creates a refund as the REST v3 controller does: items not on the order are skipped
/// (core loops over the order's items), an amount or quantity beyond what is left is
/// refused with `woocommerce_rest_cannot_create_order_refund`. Answers 201 with the refund.
async fn create_refund(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    let body: CreateRefundBody = match parse_body(&body).and_then(|value| {
        serde_json::from_value(value).map_err(|error| {
            rest_error(
                "rest_invalid_param",
                &format!("Invalid parameter(s): {error}"),
                400,
            )
        })
    }) {
        Ok(body) => body,
        Err(error) => return error_response(error),
    };
    let amount = body.amount.as_ref().and_then(|amount| {
        amount
            .as_f64()
            .or_else(|| amount.as_str().and_then(|text| text.parse().ok()))
    });
    if amount.is_some_and(|amount| amount < 0.0) {
        return error_response(rest_error(
            "woocommerce_rest_invalid_order_refund",
            "Refund amount must be greater than zero.",
            400,
        ));
    }
    let lines: Vec<(u64, u64)> = {
        let state = inner.lock();
        let Some(order) = state.shop.orders.get(&id) else {
            return error_response(rest_error(
                "woocommerce_rest_invalid_order_id",
                "Invalid order ID.",
                404,
            ));
        };
        let left_units: u64 = order
            .lines
            .iter()
            .map(|line| line.quantity.saturating_sub(order.refunded_units(line.id)))
            .sum();
        if amount.is_some_and(|amount| amount > (left_units * 10) as f64 + 1e-9) {
            return refund_refused();
        }
        body.line_items
            .iter()
            .filter(|line| line.quantity > 0 && order.lines.iter().any(|known| known.id == line.id))
            .map(|line| (line.id, line.quantity))
            .collect()
    };
    let reason = body.reason.as_deref().unwrap_or("");
    match inner.refund_with_reason(id, &lines, body.api_restock, reason) {
        Ok(refund_id) => {
            let state = inner.lock();
            let refund = state.shop.orders.get(&id).and_then(|order| {
                state
                    .shop
                    .refunds_json(order)
                    .into_iter()
                    .find(|refund| refund["id"] == refund_id)
            });
            (StatusCode::CREATED, Json(refund.unwrap_or(Value::Null))).into_response()
        }
        Err(SimulatorError::RefundExceedsLine { .. }) => refund_refused(),
        Err(error) => simulator_error(&error),
    }
}

async fn sandbox_webhooks(State(inner): State<Arc<Inner>>) -> Response {
    let deliveries: Vec<_> = inner.lock().deliveries.iter().cloned().collect();
    Json(json!({ "webhooks": inner.webhooks(), "deliveries": deliveries })).into_response()
}

async fn sandbox_ping(State(inner): State<Arc<Inner>>) -> Response {
    let answers: Vec<Value> = inner
        .ping()
        .await
        .into_iter()
        .map(|(id, result)| match result {
            Ok(status) => json!({ "webhook_id": id, "status": status }),
            Err(error) => json!({ "webhook_id": id, "error": error }),
        })
        .collect();
    Json(Value::Array(answers)).into_response()
}

async fn sandbox_enable(State(inner): State<Arc<Inner>>) -> Response {
    inner.enable_webhooks();
    Json(inner.webhooks()).into_response()
}

/// `POST /_sandbox/failures` body.
#[derive(Deserialize)]
struct FailuresBody {
    status: u16,
    count: u32,
    #[serde(default)]
    retry_after_secs: Option<u64>,
}

async fn sandbox_failures(
    State(inner): State<Arc<Inner>>,
    Json(body): Json<FailuresBody>,
) -> Response {
    inner.inject_failures(body.status, body.count, body.retry_after_secs, false);
    StatusCode::NO_CONTENT.into_response()
}

async fn sandbox_counters(State(inner): State<Arc<Inner>>) -> Response {
    Json(inner.lock().counters.clone()).into_response()
}

async fn sandbox_requests(State(inner): State<Arc<Inner>>) -> Response {
    let requests: Vec<SandboxRequest> = inner.lock().requests.iter().cloned().collect();
    Json(requests).into_response()
}
