//! The bol.com simulator's axum routes: token, bearer and media-type checks, per-endpoint
//! rate windows with `x-ratelimit-*` headers, and the JSON shapes of PLATFORMS.md §3.

use super::state::{
    Endpoint, RateAnswer, SimState, order_json, order_list_json, process_json, return_json,
};
use super::{Inner, MEDIA_TYPE, SimOffer, SimOrderLine, token_ttl};
use crate::sandbox::index::{SandboxMethod, SandboxRoutes};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

type Shared = State<Arc<Inner>>;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/token", post(token))
        .route("/retailer/offers/{offer_id}/stock", put(put_stock))
        .route("/retailer/offers/{offer_id}", get(get_offer))
        .route("/shared/process-status/{id}", get(get_process_status))
        .route("/retailer/orders", get(list_orders))
        .route("/retailer/orders/{order_id}", get(get_order))
        .route("/retailer/returns", get(list_returns))
        .merge(sandbox_routes().into_router())
        .with_state(inner)
}

/// Every `/_sandbox` endpoint, in the order `GET /_sandbox` lists them.
pub(crate) fn sandbox_routes() -> SandboxRoutes<Arc<Inner>> {
    use SandboxMethod::{Get, Post};
    SandboxRoutes::new("bolcom")
        .add(Get, "/_sandbox/offers", "every offer with its stock", None, sandbox_offers)
        .add(
            Post,
            "/_sandbox/offers",
            "add an offer",
            Some(r#"{"offer_id": "offer-1", "reference": "SKU-A", "ean": "8712345678906", "amount": 5}"#),
            sandbox_add_offer,
        )
        .add(
            Post,
            "/_sandbox/orders",
            "place an order (FBR takes the offer's stock)",
            Some(r#"{"fulfilment_method": "FBR", "lines": [{"offer_id": "offer-1", "quantity": 2}]}"#),
            sandbox_place_order,
        )
        .add(
            Post,
            "/_sandbox/order-items/{order_item_id}/cancel",
            "cancel units of an order item (quantityCancelled grows)",
            Some(r#"{"quantity": 1}"#),
            sandbox_cancel_item,
        )
        .add(
            Post,
            "/_sandbox/returns",
            "register a customer return of an order item",
            Some(r#"{"order_item_id": "1000001", "quantity": 1}"#),
            sandbox_register_return,
        )
        .add(Get, "/_sandbox/process-status", "every process status", None, sandbox_processes)
        .add(Get, "/_sandbox/counters", "request counters", None, sandbox_counters)
}

/// A bol problem answer (`application/vnd.retailer.v10+json` problem shape).
fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    problem_with(status, title, detail, Value::Null)
}

fn problem_with(status: StatusCode, title: &str, detail: &str, violations: Value) -> Response {
    let mut body = json!({
        "type": "https://api.bol.com/problems",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "host": "Instance-sandbox",
        "instance": "https://api.bol.com/sandbox",
    });
    if !violations.is_null() {
        body["violations"] = violations;
    }
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.retailer.v10+json"),
    );
    response
}

fn rate_headers(mut response: Response, rate: &RateAnswer) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", rate.limit.to_string()),
        ("x-ratelimit-remaining", rate.remaining.to_string()),
        ("x-ratelimit-reset", rate.reset_secs.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

fn ok_json(status: StatusCode, body: Value, rate: &RateAnswer) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(MEDIA_TYPE));
    rate_headers(response, rate)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Counts the request and checks outage, bearer, media types and the rate window.
fn admit(
    inner: &Inner,
    state: &mut SimState,
    headers: &HeaderMap,
    endpoint: Endpoint,
    has_body: bool,
) -> Result<RateAnswer, Box<Response>> {
    state.counters.requests += 1;
    let now = Instant::now();
    if state.outage {
        return Err(Box::new(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "The sandbox is in a simulated outage.",
        )));
    }
    let bearer = header(headers, "authorization").and_then(|value| value.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| state.token_valid(token.trim(), now)) {
        state.counters.unauthorized += 1;
        return Err(Box::new(problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Missing, invalid or expired access token.",
        )));
    }
    if inner.options.require_media_type {
        let accept = header(headers, "accept").unwrap_or_default();
        if !accept.contains(MEDIA_TYPE) {
            state.counters.media_type_errors += 1;
            return Err(Box::new(problem(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable",
                "Accept must be application/vnd.retailer.v10+json.",
            )));
        }
        let content_type = header(headers, "content-type").unwrap_or_default();
        if has_body && !content_type.starts_with(MEDIA_TYPE) {
            state.counters.media_type_errors += 1;
            return Err(Box::new(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                "Content-Type must be application/vnd.retailer.v10+json.",
            )));
        }
    }
    if endpoint == Endpoint::Stock {
        state.record_stock_request(now);
    }
    let SimState {
        windows, counters, ..
    } = state;
    let Some(window) = windows.get_mut(&endpoint) else {
        return Ok(RateAnswer {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_secs: 0,
        });
    };
    let rate = window.admit(now, counters);
    if !rate.allowed {
        let response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "Too many requests, retry later.",
        );
        let mut response = rate_headers(response, &rate);
        if let Ok(value) = HeaderValue::from_str(&rate.reset_secs.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
        return Err(Box::new(response));
    }
    Ok(rate)
}

async fn token(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = inner.lock();
    state.counters.requests += 1;
    let now = Instant::now();
    let SimState {
        windows, counters, ..
    } = &mut *state;
    if let Some(window) = windows.get_mut(&Endpoint::Token) {
        let rate = window.admit(now, counters);
        if !rate.allowed {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": "too_many_requests"})),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&rate.reset_secs.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
            return response;
        }
    }
    let credentials = header(&headers, "authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| BASE64.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let expected = format!(
        "{}:{}",
        inner.options.client_id, inner.options.client_secret
    );
    let grant = String::from_utf8_lossy(&body).contains("grant_type=client_credentials");
    if credentials.as_deref() != Some(expected.as_str()) || !grant {
        state.counters.unauthorized += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "Bad client credentials"})),
        )
            .into_response();
    }
    let token = state.issue_token(token_ttl(&inner.options), now);
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": inner.options.token_ttl_secs,
        "scope": "RETAILER",
    }))
    .into_response()
}

async fn put_stock(
    State(inner): Shared,
    Path(offer_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (delay_ms, rate) = {
        let mut state = inner.lock();
        let rate = match admit(&inner, &mut state, &headers, Endpoint::Stock, true) {
            Ok(rate) => rate,
            Err(response) => return *response,
        };
        if let Some(status) = (!state.fail_next.is_empty()).then(|| state.fail_next.remove(0)) {
            state.counters.injected_failures += 1;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return rate_headers(
                problem(status, "Internal Server Error", "Injected failure."),
                &rate,
            );
        }
        (state.response_delay_ms, rate)
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let mut state = inner.lock();
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let Ok(parsed) = parsed else {
        state.counters.stock_updates_invalid += 1;
        return rate_headers(
            problem(StatusCode::BAD_REQUEST, "Bad Request", "Body is not JSON."),
            &rate,
        );
    };
    let amount = parsed["amount"].as_i64();
    let managed = parsed["managedByRetailer"].as_bool();
    let violation = match (amount, managed) {
        (None, _) => Some(("amount", "Must be an integer.".to_owned())),
        (Some(amount), _) if amount < 0 => {
            Some(("amount", "Must be greater than or equal to 0.".to_owned()))
        }
        (Some(amount), _) if amount as u64 > inner.options.max_amount => Some((
            "amount",
            format!(
                "Must be less than or equal to {}.",
                inner.options.max_amount
            ),
        )),
        (_, None) => Some(("managedByRetailer", "Must not be null.".to_owned())),
        _ => None,
    };
    if let Some((name, reason)) = violation {
        state.counters.stock_updates_invalid += 1;
        return rate_headers(
            problem_with(
                StatusCode::BAD_REQUEST,
                "Error validating request. Consult the bol.com API documentation for more information.",
                "Bad request",
                json!([{"name": name, "reason": reason}]),
            ),
            &rate,
        );
    }
    if !state.offers.contains_key(&offer_id) {
        return rate_headers(
            problem(
                StatusCode::NOT_FOUND,
                "Not Found",
                &format!("Offer {offer_id} does not exist."),
            ),
            &rate,
        );
    }
    let process = state.queue_stock_update(
        &offer_id,
        amount.unwrap_or(0) as u64,
        managed.unwrap_or(false),
        Duration::from_millis(inner.options.process_delay_ms),
        inner.options.process_outcome,
        inner.options.reorder_concurrent_updates,
        Instant::now(),
        inner.now_ms(),
    );
    ok_json(StatusCode::ACCEPTED, process_json(&process), &rate)
}

async fn get_offer(
    State(inner): Shared,
    Path(offer_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = inner.lock();
    let rate = match admit(&inner, &mut state, &headers, Endpoint::Reads, false) {
        Ok(rate) => rate,
        Err(response) => return *response,
    };
    match state.offers.get(&offer_id) {
        Some(offer) => ok_json(StatusCode::OK, state.offer_json(offer), &rate),
        None => rate_headers(
            problem(StatusCode::NOT_FOUND, "Not Found", "Offer does not exist."),
            &rate,
        ),
    }
}

async fn get_process_status(
    State(inner): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = inner.lock();
    let rate = match admit(&inner, &mut state, &headers, Endpoint::ProcessStatus, false) {
        Ok(rate) => rate,
        Err(response) => return *response,
    };
    state.counters.process_status_reads += 1;
    let process = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.processes.get(&id));
    match process {
        Some(process) => ok_json(StatusCode::OK, process_json(process), &rate),
        None => rate_headers(
            problem(
                StatusCode::NOT_FOUND,
                "Not Found",
                "Process status does not exist.",
            ),
            &rate,
        ),
    }
}

fn page_of<T: Clone>(items: Vec<T>, page: usize, size: usize) -> Vec<T> {
    items
        .into_iter()
        .skip(page.saturating_sub(1) * size)
        .take(size)
        .collect()
}

async fn list_orders(
    State(inner): Shared,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = inner.lock();
    let rate = match admit(&inner, &mut state, &headers, Endpoint::Reads, false) {
        Ok(rate) => rate,
        Err(response) => return *response,
    };
    state.counters.order_list_reads += 1;
    let method = query
        .get("fulfilment-method")
        .map_or("FBR", String::as_str)
        .to_owned();
    let status = query
        .get("status")
        .map_or("OPEN", String::as_str)
        .to_owned();
    let page: usize = query
        .get("page")
        .and_then(|page| page.parse().ok())
        .unwrap_or(1);
    let matching: Vec<Value> = state
        .orders
        .values()
        .filter(|order| status == "ALL" || SimState::order_is_open(order))
        .filter_map(|order| {
            let mut shown = order.clone();
            shown
                .items
                .retain(|item| method == "ALL" || item.method == method);
            (!shown.items.is_empty()).then(|| order_list_json(&shown))
        })
        .collect();
    let page = page_of(matching, page, inner.options.orders_page_size.max(1));
    // bol answers an empty page with an empty object, not an empty list.
    let body = if page.is_empty() {
        json!({})
    } else {
        json!({ "orders": page })
    };
    ok_json(StatusCode::OK, body, &rate)
}

async fn get_order(
    State(inner): Shared,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = inner.lock();
    let rate = match admit(&inner, &mut state, &headers, Endpoint::Reads, false) {
        Ok(rate) => rate,
        Err(response) => return *response,
    };
    match state.orders.get(&order_id) {
        Some(order) => ok_json(StatusCode::OK, order_json(order), &rate),
        None => rate_headers(
            problem(StatusCode::NOT_FOUND, "Not Found", "Order does not exist."),
            &rate,
        ),
    }
}

async fn list_returns(
    State(inner): Shared,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = inner.lock();
    let rate = match admit(&inner, &mut state, &headers, Endpoint::Reads, false) {
        Ok(rate) => rate,
        Err(response) => return *response,
    };
    state.counters.return_list_reads += 1;
    let handled = query.get("handled").is_some_and(|value| value == "true");
    let method = query
        .get("fulfilment-method")
        .map_or("FBR", String::as_str)
        .to_owned();
    let page: usize = query
        .get("page")
        .and_then(|page| page.parse().ok())
        .unwrap_or(1);
    let matching: Vec<Value> = state
        .returns
        .iter()
        .filter(|item| item.handled == handled && item.method == method)
        .map(return_json)
        .collect();
    let page = page_of(matching, page, inner.options.orders_page_size.max(1));
    let body = if page.is_empty() {
        json!({})
    } else {
        json!({ "returns": page })
    };
    ok_json(StatusCode::OK, body, &rate)
}

async fn sandbox_offers(State(inner): Shared) -> Response {
    let state = inner.lock();
    let offers: Vec<Value> = state
        .offers
        .values()
        .map(|offer| state.offer_json(offer))
        .collect();
    Json(json!({ "offers": offers })).into_response()
}

async fn sandbox_add_offer(State(inner): Shared, Json(offer): Json<SimOffer>) -> Response {
    let mut state = inner.lock();
    state.offers.insert(
        offer.offer_id.clone(),
        super::state::Offer {
            offer_id: offer.offer_id,
            reference: offer.reference,
            ean: offer.ean,
            amount: offer.amount,
            managed_by_retailer: false,
            updated_at_ms: 0,
            updated_seq: 0,
            history: Vec::new(),
        },
    );
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct PlaceOrderBody {
    #[serde(default = "default_method")]
    fulfilment_method: String,
    lines: Vec<SimOrderLine>,
}

fn default_method() -> String {
    "FBR".to_owned()
}

async fn sandbox_place_order(State(inner): Shared, Json(body): Json<PlaceOrderBody>) -> Response {
    match inner.place_order(&body.fulfilment_method, &body.lines) {
        Ok(order) => (StatusCode::CREATED, Json(order)).into_response(),
        Err(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct QuantityBody {
    quantity: u64,
}

async fn sandbox_cancel_item(
    State(inner): Shared,
    Path(order_item_id): Path<String>,
    Json(body): Json<QuantityBody>,
) -> Response {
    match inner.cancel_item(&order_item_id, body.quantity) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ReturnBody {
    order_item_id: String,
    quantity: u64,
}

async fn sandbox_register_return(State(inner): Shared, Json(body): Json<ReturnBody>) -> Response {
    match inner.register_return(&body.order_item_id, body.quantity) {
        Ok(rma_id) => (StatusCode::CREATED, Json(json!({ "rmaId": rma_id }))).into_response(),
        Err(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

async fn sandbox_processes(State(inner): Shared) -> Response {
    let state = inner.lock();
    let processes: Vec<Value> = state.processes.values().map(process_json).collect();
    Json(json!({ "processStatuses": processes })).into_response()
}

async fn sandbox_counters(State(inner): Shared) -> Response {
    Json(inner.lock().counters.clone()).into_response()
}
