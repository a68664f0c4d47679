//! The simulator's axum routes: auth, version resolution, rate buckets and the JSON shapes
//! of PLATFORMS.md §1.2, §1.4 and §1.9.

use super::state::{MutationResult, graphql_error, parse_gid};
use super::{Inner, SimOrderLine, SimulatorError};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::time::{Duration, Instant};

type Shared = State<Arc<Inner>>;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql))
        .route(
            "/admin/api/{version}/inventory_levels/set.json",
            post(rest_set),
        )
        .route(
            "/admin/api/{version}/inventory_levels.json",
            get(rest_levels),
        )
        .route("/admin/api/{version}/orders.json", get(rest_orders))
        .route(
            "/_sandbox/levels",
            get(sandbox_levels).post(sandbox_set_level),
        )
        .route("/_sandbox/orders", post(sandbox_place_order))
        .route(
            "/_sandbox/orders/{order_id}/cancel",
            post(sandbox_cancel_order),
        )
        .route("/_sandbox/counters", get(sandbox_counters))
        .with_state(inner)
}

/// `YYYY-MM` (or `unstable`); an unsupported old version falls forward to the oldest
/// supported one, as Shopify does. `None` for a malformed version (404).
fn resolve_version(minimum: &str, requested: &str) -> Option<String> {
    if requested == "unstable" {
        return Some(requested.to_owned());
    }
    let bytes = requested.as_bytes();
    let well_formed = bytes.len() == 7
        && bytes[4] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| index == 4 || byte.is_ascii_digit());
    if !well_formed {
        return None;
    }
    Some(
        if requested < minimum {
            minimum
        } else {
            requested
        }
        .to_owned(),
    )
}

fn with_header(mut response: Response, name: &'static str, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Counts the request, resolves the version and checks `X-Shopify-Access-Token`.
fn admit(inner: &Inner, version: &str, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let mut state = inner.lock();
    state.counters.requests += 1;
    let Some(version) = resolve_version(&inner.options.api_version_min, version) else {
        return Err(Box::new(
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "errors": "Not Found" })),
            )
                .into_response(),
        ));
    };
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|value| value.to_str().ok());
    if token != Some(inner.options.access_token.as_str()) {
        state.counters.unauthorized += 1;
        let body = json!({
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        });
        return Err(Box::new(
            (StatusCode::UNAUTHORIZED, Json(body)).into_response(),
        ));
    }
    Ok(version)
}

/// Finds `<marker>(` … `<argument>: $name` and returns `name`, or `"literal"` as a string.
fn argument(query: &str, marker: &str, argument: &str) -> Option<ArgumentValue> {
    let start = query.find(marker)? + marker.len();
    let rest = query[start..].trim_start().strip_prefix('(')?;
    let close = rest.find(')')?;
    let inside = &rest[..close];
    let after = &inside[inside.find(&format!("{argument}:"))? + argument.len() + 1..];
    let after = after.trim_start();
    if let Some(variable) = after.strip_prefix('$') {
        let name: String = variable
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        return Some(ArgumentValue::Variable(name));
    }
    let literal = after.strip_prefix('"')?;
    Some(ArgumentValue::Literal(
        literal[..literal.find('"')?].to_owned(),
    ))
}

enum ArgumentValue {
    Variable(String),
    Literal(String),
}

impl ArgumentValue {
    fn resolve(self, variables: &Value) -> Option<Value> {
        match self {
            Self::Variable(name) => variables.get(&name).cloned(),
            Self::Literal(text) => Some(Value::String(text)),
        }
    }
}

#[derive(Deserialize)]
struct GraphQlRequest {
    query: String,
    #[serde(default)]
    variables: Value,
}

async fn graphql(
    State(inner): Shared,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = match admit(&inner, &version, &headers) {
        Ok(version) => version,
        Err(response) => return *response,
    };
    let request: GraphQlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "errors": format!("invalid JSON body: {error}") })),
            )
                .into_response();
        }
    };
    let is_mutation = request.query.contains("inventorySetQuantities");
    let is_levels = request.query.contains("inventoryLevel");
    let options = &inner.options;
    let cost = if is_mutation {
        options.mutation_cost
    } else {
        options.query_cost
    };
    let now = Instant::now();
    let now_ms = inner.now_ms();
    let (status, body, events) = {
        let mut state = inner.lock();
        if !state.graphql_bucket.try_take(cost, now) {
            state.counters.throttled += 1;
            let body = json!({
                "errors": [{
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }],
                "extensions": state.cost_extension(cost, None),
            });
            let status = StatusCode::from_u16(options.throttle_status).unwrap_or(StatusCode::OK);
            (status, body, Vec::new())
        } else if is_mutation {
            let input = argument(&request.query, "inventorySetQuantities", "input")
                .and_then(|argument| argument.resolve(&request.variables));
            let key = argument(&request.query, "@idempotent", "key")
                .and_then(|argument| argument.resolve(&request.variables))
                .and_then(|value| value.as_str().map(str::to_owned));
            let result =
                state.set_quantities(options, &version, input.as_ref(), key.as_deref(), now_ms);
            let extensions = state.cost_extension(cost, Some(cost));
            match result {
                MutationResult::Payload { payload, changed } => {
                    let events = inner.level_events(&state, &changed, now_ms);
                    let body = json!({
                        "data": { "inventorySetQuantities": payload },
                        "extensions": extensions,
                    });
                    (StatusCode::OK, body, events)
                }
                MutationResult::Errors(errors) => (
                    StatusCode::OK,
                    json!({ "errors": errors, "data": { "inventorySetQuantities": null }, "extensions": extensions }),
                    Vec::new(),
                ),
            }
        } else if is_levels {
            let data = read_levels(&state, &request.variables);
            let extensions = state.cost_extension(cost, Some(cost));
            (
                StatusCode::OK,
                json!({ "data": data, "extensions": extensions }),
                Vec::new(),
            )
        } else {
            let extensions = state.cost_extension(cost, Some(0.0));
            let errors = graphql_error(
                "the sandbox implements inventorySetQuantities and inventory-level reads only",
                "UNSUPPORTED_BY_SANDBOX",
                &[],
            );
            (
                StatusCode::OK,
                json!({ "errors": errors, "extensions": extensions }),
                Vec::new(),
            )
        }
    };
    inner.spawn_deliveries(events);
    with_header(
        (status, Json(body)).into_response(),
        "x-shopify-api-version",
        &version,
    )
}

/// `nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(...) } } }`.
fn read_levels(state: &super::state::SimState, variables: &Value) -> Value {
    let location = parse_gid(&variables["locationId"], "Location");
    let nodes: Vec<Value> = variables["ids"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|id| {
            let Some(item) = parse_gid(id, "InventoryItem") else {
                return Value::Null;
            };
            let level = location.and_then(|location| state.levels.get(&(item, location)));
            let known_item = state.levels.keys().any(|(known, _)| *known == item);
            if !known_item {
                return Value::Null;
            }
            json!({
                "id": id,
                "inventoryLevel": level.map(|level| json!({
                    "quantities": [
                        { "name": "available", "quantity": level.available },
                        { "name": "on_hand", "quantity": level.on_hand },
                    ],
                })),
            })
        })
        .collect();
    json!({ "nodes": nodes })
}

/// Takes one request from the REST bucket: `Ok(call-limit header)` or a 429 response.
fn take_rest_slot(inner: &Inner) -> Result<String, Box<Response>> {
    let now = Instant::now();
    let mut state = inner.lock();
    if state
        .rest_retry_after_until
        .is_some_and(|until| now < until)
    {
        state.counters.retry_after_violations += 1;
    }
    let capacity = state.rest_bucket.capacity;
    if state.rest_bucket.try_take(1.0, now) {
        let used = (capacity - state.rest_bucket.available).ceil().max(0.0);
        return Ok(format!("{used}/{capacity}"));
    }
    state.counters.throttled += 1;
    let retry_after_secs = state.rest_bucket.secs_until(1.0).ceil().max(1.0);
    state.rest_retry_after_until = Some(now + Duration::from_secs_f64(retry_after_secs));
    let body = json!({
        "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
    });
    let response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let response = with_header(response, "retry-after", &format!("{retry_after_secs:.1}"));
    Err(Box::new(with_header(
        response,
        "x-shopify-shop-api-call-limit",
        &format!("{capacity}/{capacity}"),
    )))
}

#[derive(Deserialize)]
struct RestSetBody {
    location_id: Option<u64>,
    inventory_item_id: Option<u64>,
    available: Option<i64>,
}

async fn rest_set(
    State(inner): Shared,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = match admit(&inner, &version, &headers) {
        Ok(version) => version,
        Err(response) => return *response,
    };
    let call_limit = match take_rest_slot(&inner) {
        Ok(call_limit) => call_limit,
        Err(response) => return *response,
    };
    let parsed: Result<RestSetBody, _> = serde_json::from_slice(&body);
    let (status, body, events) = match parsed {
        Ok(RestSetBody {
            location_id: Some(location),
            inventory_item_id: Some(item),
            available: Some(available),
        }) => {
            let now_ms = inner.now_ms();
            let mut state = inner.lock();
            match state.rest_set(&inner.options, item, location, available, now_ms) {
                Ok(changed) => {
                    let changed: Vec<(u64, u64)> = if changed {
                        vec![(item, location)]
                    } else {
                        Vec::new()
                    };
                    let events = inner.level_events(&state, &changed, now_ms);
                    let mut level = state.level_json(item, location).unwrap_or(Value::Null);
                    if let Some(object) = level.as_object_mut() {
                        object.remove("on_hand");
                    }
                    (StatusCode::OK, json!({ "inventory_level": level }), events)
                }
                Err(message) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "errors": [message] }),
                    Vec::new(),
                ),
            }
        }
        _ => (
            StatusCode::BAD_REQUEST,
            json!({ "errors": { "inventory_level": "Required parameter missing or invalid: location_id, inventory_item_id, available" } }),
            Vec::new(),
        ),
    };
    inner.spawn_deliveries(events);
    let response = with_header(
        (status, Json(body)).into_response(),
        "x-shopify-api-version",
        &version,
    );
    with_header(response, "x-shopify-shop-api-call-limit", &call_limit)
}

fn id_list(query: &str, name: &str) -> Option<Vec<u64>> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    Some(
        value
            .split([',', '%'])
            .filter_map(|part| {
                part.trim_start_matches("2C")
                    .trim_start_matches("2c")
                    .parse()
                    .ok()
            })
            .collect(),
    )
}

async fn rest_levels(
    State(inner): Shared,
    Path(version): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let version = match admit(&inner, &version, &headers) {
        Ok(version) => version,
        Err(response) => return *response,
    };
    let call_limit = match take_rest_slot(&inner) {
        Ok(call_limit) => call_limit,
        Err(response) => return *response,
    };
    let query = query.unwrap_or_default();
    let items = id_list(&query, "inventory_item_ids");
    let locations = id_list(&query, "location_ids");
    let (status, body) = if items.is_none() && locations.is_none() {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "errors": ["inventory_item_ids or location_ids is required"] }),
        )
    } else {
        let state = inner.lock();
        let levels: Vec<Value> = state
            .levels
            .keys()
            .filter(|(item, location)| {
                items.as_ref().is_none_or(|items| items.contains(item))
                    && locations
                        .as_ref()
                        .is_none_or(|locations| locations.contains(location))
            })
            .filter_map(|(item, location)| {
                let mut level = state.level_json(*item, *location)?;
                level.as_object_mut()?.remove("on_hand");
                Some(level)
            })
            .collect();
        (StatusCode::OK, json!({ "inventory_levels": levels }))
    };
    let response = with_header(
        (status, Json(body)).into_response(),
        "x-shopify-api-version",
        &version,
    );
    with_header(response, "x-shopify-shop-api-call-limit", &call_limit)
}

/// Most orders in one `GET orders.json` page (Shopify's cap).
const ORDERS_MAX_LIMIT: usize = 250;

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// `GET orders.json?updated_at_min=…&status=any&limit=N`, oldest change first, with
/// cursor pages (`Link: <…page_info=…>; rel="next"`); as on Shopify, a `page_info` request
/// carries only `limit`. The cursor is the last order's `updated_at` and id.
async fn rest_orders(
    State(inner): Shared,
    Path(version): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let version = match admit(&inner, &version, &headers) {
        Ok(version) => version,
        Err(response) => return *response,
    };
    let call_limit = match take_rest_slot(&inner) {
        Ok(call_limit) => call_limit,
        Err(response) => return *response,
    };
    let query = query.unwrap_or_default();
    let limit = query_value(&query, "limit")
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, ORDERS_MAX_LIMIT);
    let after: (i64, u64) = match query_value(&query, "page_info") {
        Some(cursor) => cursor
            .split_once('.')
            .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)))
            .unwrap_or((i64::MIN, 0)),
        None => {
            let min_ms = query_value(&query, "updated_at_min")
                .map(|value| value.replace("%3A", ":").replace("%2B", "+"))
                .and_then(|value| humantime::parse_rfc3339_weak(value.trim_end_matches('Z')).ok())
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|elapsed| i64::try_from(elapsed.as_millis()).ok())
                .unwrap_or(i64::MIN);
            // Inclusive of `updated_at_min`: start just before it.
            (min_ms.saturating_sub(1), u64::MAX)
        }
    };
    let (page, more) = {
        let state = inner.lock();
        let mut orders: Vec<&super::state::SimOrderRecord> = state
            .orders
            .values()
            .filter(|order| (order.updated_at_ms, order.id) > after)
            .collect();
        orders.sort_by_key(|order| (order.updated_at_ms, order.id));
        let more = orders.len() > limit;
        orders.truncate(limit);
        let page: Vec<(i64, u64, Value)> = orders
            .into_iter()
            .map(|order| {
                (
                    order.updated_at_ms,
                    order.id,
                    super::webhook::order_json(order),
                )
            })
            .collect();
        (page, more)
    };
    let next = page
        .last()
        .filter(|_| more)
        .map(|(at, id, _)| format!("{at}.{id}"));
    let body: Vec<Value> = page.into_iter().map(|(_, _, order)| order).collect();
    let mut response = with_header(
        (StatusCode::OK, Json(json!({ "orders": body }))).into_response(),
        "x-shopify-api-version",
        &version,
    );
    if let Some(cursor) = next {
        let host = headers
            .get("host")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("localhost");
        let link = format!(
            "<http://{host}/admin/api/{version}/orders.json?limit={limit}&page_info={cursor}>; rel=\"next\""
        );
        response = with_header(response, "link", &link);
    }
    with_header(response, "x-shopify-shop-api-call-limit", &call_limit)
}

async fn sandbox_levels(State(inner): Shared) -> Response {
    Json(inner.levels()).into_response()
}

#[derive(Deserialize)]
struct SetLevelBody {
    inventory_item_id: u64,
    location_id: u64,
    available: i64,
}

async fn sandbox_set_level(State(inner): Shared, Json(body): Json<SetLevelBody>) -> Response {
    inner.set_level(body.inventory_item_id, body.location_id, body.available);
    let level = inner
        .lock()
        .level_json(body.inventory_item_id, body.location_id);
    Json(level).into_response()
}

#[derive(Deserialize)]
struct PlaceOrderBody {
    location_id: Option<u64>,
    line_items: Vec<SimOrderLine>,
}

fn simulator_error(error: SimulatorError) -> Response {
    let status = match error {
        SimulatorError::UnknownOrder { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, Json(json!({ "errors": [error.to_string()] }))).into_response()
}

async fn sandbox_place_order(State(inner): Shared, Json(body): Json<PlaceOrderBody>) -> Response {
    let location = body
        .location_id
        .unwrap_or(inner.options.default_location_id);
    match inner.place_order(location, &body.line_items).await {
        Ok(order) => (StatusCode::CREATED, Json(order)).into_response(),
        Err(error) => simulator_error(error),
    }
}

#[derive(Deserialize)]
struct CancelBody {
    #[serde(default = "default_restock")]
    restock: bool,
}

fn default_restock() -> bool {
    true
}

async fn sandbox_cancel_order(
    State(inner): Shared,
    Path(order_id): Path<u64>,
    body: Option<Json<CancelBody>>,
) -> Response {
    let restock = body.map(|Json(body)| body.restock).unwrap_or(true);
    match inner.cancel_order(order_id, restock).await {
        Ok(order) => Json(order).into_response(),
        Err(error) => simulator_error(error),
    }
}

async fn sandbox_counters(State(inner): Shared) -> Response {
    Json(inner.lock().counters.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_versions_fall_forward_and_malformed_ones_are_refused() {
        assert_eq!(
            resolve_version("2025-07", "2024-01").as_deref(),
            Some("2025-07")
        );
        assert_eq!(
            resolve_version("2025-07", "2026-04").as_deref(),
            Some("2026-04")
        );
        assert_eq!(resolve_version("2025-07", "latest"), None);
    }

    #[test]
    fn arguments_are_found_as_variables_or_literals() {
        let query = r#"mutation M($input: InventorySetQuantitiesInput!, $key: String!) {
            inventorySetQuantities(input: $input) @idempotent(key: $key) { userErrors { code } } }"#;
        let variables = json!({ "input": { "name": "available" }, "key": "k-1" });
        let input =
            argument(query, "inventorySetQuantities", "input").and_then(|a| a.resolve(&variables));
        assert_eq!(input, Some(json!({ "name": "available" })));
        let key = argument(query, "@idempotent", "key").and_then(|a| a.resolve(&variables));
        assert_eq!(key, Some(json!("k-1")));
        let literal = r#"mutation { inventorySetQuantities(input: $input) @idempotent(key: "abc") { userErrors { code } } }"#;
        let key = argument(literal, "@idempotent", "key").and_then(|a| a.resolve(&variables));
        assert_eq!(key, Some(json!("abc")));
    }

    #[test]
    fn id_lists_accept_plain_and_encoded_commas() {
        assert_eq!(
            id_list(
                "inventory_item_ids=1,2&location_ids=3",
                "inventory_item_ids"
            ),
            Some(vec![1, 2])
        );
        assert_eq!(
            id_list("inventory_item_ids=1%2C2", "inventory_item_ids"),
            Some(vec![1, 2])
        );
        assert_eq!(id_list("location_ids=3", "inventory_item_ids"), None);
    }
}
