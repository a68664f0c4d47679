//! The simulator's axum routes: auth, version resolution, rate buckets and the JSON shapes
//! of PLATFORMS.md §1.2, §1.4 and §1.9.

use super::state::{MutationResult, OrderSource, graphql_error, parse_gid};
use super::{
    FulfilLineRequest, Inner, OrderEditRequest, RefundLineRequest, SimOrderLine, SimulatorError,
};
use crate::sandbox::index::{SandboxMethod, SandboxRoutes};
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
        .merge(sandbox_routes().into_router())
        .with_state(inner)
}

/// Every `/_sandbox` endpoint, in the order `GET /_sandbox` lists them.
pub(crate) fn sandbox_routes() -> SandboxRoutes<Arc<Inner>> {
    use SandboxMethod::{Get, Post};
    SandboxRoutes::new("shopify")
        .add(Get, "/_sandbox/levels", "every inventory level", None, sandbox_levels)
        .add(
            Post,
            "/_sandbox/levels",
            "set (and create) a level behind the engine's back; `sku` names the item for order edits",
            Some(r#"{"inventory_item_id": 10, "location_id": 1, "available": 5, "sku": "SKU-10"}"#),
            sandbox_set_level,
        )
        .add(
            Post,
            "/_sandbox/orders",
            "take an order: source_name web (default: commits at location_id under an open fulfillment order, sends orders/create then fulfillment_orders/order_routing_complete) or pos (sold and fulfilled in the store: on_hand and available drop, sends orders/create only)",
            Some(r#"{"location_id": 1, "source_name": "web", "line_items": [{"inventory_item_id": 10, "sku": "SKU-10", "quantity": 2}]}"#),
            sandbox_place_order,
        )
        .add(
            Get,
            "/_sandbox/orders/{order_id}",
            "the order as the REST resource (current_quantity, fulfillable_quantity, cancel_reason)",
            None,
            sandbox_order,
        )
        .add(
            Get,
            "/_sandbox/orders/{order_id}/fulfillment_orders",
            "the order's fulfillment orders (id, status, assigned_location_id, line_items with total and remaining quantity)",
            None,
            sandbox_fulfillment_orders,
        )
        .add(
            Post,
            "/_sandbox/fulfillment_orders/{fulfillment_order_id}/move",
            "move an open fulfillment order to another location (its open units are committed there); sends fulfillment_orders/moved",
            Some(r#"{"new_location_id": 2}"#),
            sandbox_move_fulfillment_order,
        )
        .add(
            Post,
            "/_sandbox/orders/{order_id}/cancel",
            "cancel an order (sends orders/cancelled); reason: customer, inventory, fraud, declined, staff, other",
            Some(r#"{"restock": true, "reason": "inventory"}"#),
            sandbox_cancel_order,
        )
        .add(
            Post,
            "/_sandbox/orders/{order_id}/edit",
            "edit an order as orderEditBegin/SetQuantity/AddVariant/Commit do (quantity 0 removes a line); sends orders/edited then orders/updated",
            Some(r#"{"set": [{"line_item_id": 550000100101, "quantity": 1, "restock": true}], "add": [{"inventory_item_id": 12, "sku": "SKU-R", "quantity": 4}]}"#),
            sandbox_edit_order,
        )
        .add(
            Post,
            "/_sandbox/orders/{order_id}/fulfillments",
            "fulfil lines (all fulfillable units when line_items is empty); sends fulfillments/create (when enabled) then orders/updated",
            Some(r#"{"line_items": [{"id": 550000100101, "quantity": 1}]}"#),
            sandbox_fulfil,
        )
        .add(
            Post,
            "/_sandbox/orders/{order_id}/refunds",
            "refund lines with restock_type no_restock | cancel | return; sends refunds/create then orders/updated",
            Some(r#"{"note": "damaged", "refund_line_items": [{"line_item_id": 550000100101, "quantity": 1, "restock_type": "return", "location_id": 1}]}"#),
            sandbox_refund,
        )
        .add(
            Get,
            "/_sandbox/webhooks",
            "every webhook event sent (last 1,000): id, topic, event_id, outcome, body",
            None,
            sandbox_webhooks,
        )
        .add(
            Post,
            "/_sandbox/webhooks/{delivery_id}/redeliver",
            "send a past delivery again (same topic, body and event id)",
            None,
            sandbox_redeliver,
        )
        .add(Get, "/_sandbox/counters", "request and webhook counters", None, sandbox_counters)
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
/// Every occurrence of `marker` is tried (an operation may be named like its field); an
/// argument name must not be preceded by a letter (`id:` does not match `lineItemId:`).
fn argument(query: &str, marker: &str, argument: &str) -> Option<ArgumentValue> {
    query
        .match_indices(marker)
        .find_map(|(start, _)| argument_at(&query[start + marker.len()..], argument))
}

fn argument_at(rest: &str, argument: &str) -> Option<ArgumentValue> {
    let rest = rest.trim_start().strip_prefix('(')?;
    let close = rest.find(')')?;
    let inside = &rest[..close];
    let pattern = format!("{argument}:");
    let at = inside
        .match_indices(&pattern)
        .map(|(at, _)| at)
        .find(|at| {
            inside[..*at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric() && c != '$' && c != '_')
        })?;
    let after = inside[at + pattern.len()..].trim_start();
    if let Some(variable) = after.strip_prefix('$') {
        let name: String = variable
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        return Some(ArgumentValue::Variable(name));
    }
    if let Some(literal) = after.strip_prefix('"') {
        return Some(ArgumentValue::Literal(Value::String(
            literal[..literal.find('"')?].to_owned(),
        )));
    }
    let word: String = after
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '-')
        .collect();
    match word.as_str() {
        "true" => Some(ArgumentValue::Literal(Value::Bool(true))),
        "false" => Some(ArgumentValue::Literal(Value::Bool(false))),
        number => number
            .parse::<i64>()
            .ok()
            .map(|number| ArgumentValue::Literal(Value::from(number))),
    }
}

/// Whether `field(` (whitespace allowed before the parenthesis) occurs in the query, so
/// `fulfillmentOrder(` matches and `fulfillmentOrders(` does not.
fn is_field_call(query: &str, field: &str) -> bool {
    query
        .match_indices(field)
        .any(|(start, _)| query[start + field.len()..].trim_start().starts_with('('))
}

enum ArgumentValue {
    Variable(String),
    Literal(Value),
}

impl ArgumentValue {
    fn resolve(self, variables: &Value) -> Option<Value> {
        match self {
            Self::Variable(name) => variables.get(&name).cloned(),
            Self::Literal(value) => Some(value),
        }
    }
}

/// The order-edit mutations, recognised by field name like `inventorySetQuantities`.
const ORDER_EDIT_MUTATIONS: [&str; 4] = [
    "orderEditCommit",
    "orderEditSetQuantity",
    "orderEditAddVariant",
    "orderEditBegin",
];

fn user_errors(error: &SimulatorError, field: &str) -> Value {
    json!([{ "field": [field], "message": error.to_string() }])
}

/// Runs one order-edit mutation. Returns `data`, and the committed order and
/// `orders/edited` body when it was `orderEditCommit`.
fn order_edit(
    inner: &Inner,
    state: &mut super::state::SimState,
    mutation: &str,
    request: &GraphQlRequest,
    now_ms: i64,
) -> (Value, Option<(super::state::SimOrderRecord, Value)>) {
    let arg = |name: &str| {
        argument(&request.query, mutation, name).and_then(|a| a.resolve(&request.variables))
    };
    let edit_id = arg("id").and_then(|id| parse_gid(&id, "CalculatedOrder"));
    let calculated = |id: u64| json!({ "id": format!("gid://shopify/CalculatedOrder/{id}") });
    match mutation {
        "orderEditBegin" => {
            let order_id = arg("id").and_then(|id| parse_gid(&id, "Order"));
            let result = order_id
                .ok_or(SimulatorError::Invalid {
                    message: "id must be a gid://shopify/Order/… id".to_owned(),
                })
                .and_then(|order_id| state.edit_begin(order_id, now_ms));
            let payload = match result {
                Ok(edit_id) => json!({
                    "calculatedOrder": state.calculated_order_json(edit_id),
                    "userErrors": [],
                }),
                Err(error) => {
                    json!({ "calculatedOrder": null, "userErrors": user_errors(&error, "id") })
                }
            };
            (json!({ mutation: payload }), None)
        }
        "orderEditSetQuantity" => {
            let line = arg("lineItemId").and_then(|id| parse_gid(&id, "CalculatedLineItem"));
            let quantity = arg("quantity").and_then(|q| q.as_u64());
            let restock = arg("restock").and_then(|r| r.as_bool()).unwrap_or(false);
            let result = match (edit_id, line, quantity) {
                (Some(edit_id), Some(line), Some(quantity)) => state.edit_set_quantity(
                    inner.options.allow_edit_below_fulfilled,
                    edit_id,
                    line,
                    quantity,
                    restock,
                ),
                _ => Err(SimulatorError::Invalid {
                    message: "id, lineItemId and quantity are required".to_owned(),
                }),
            };
            let payload = match result {
                Ok(line) => json!({
                    "calculatedOrder": edit_id.map(calculated),
                    "calculatedLineItem": line,
                    "userErrors": [],
                }),
                Err(error) => json!({
                    "calculatedOrder": null,
                    "calculatedLineItem": null,
                    "userErrors": user_errors(&error, "lineItemId"),
                }),
            };
            (json!({ mutation: payload }), None)
        }
        "orderEditAddVariant" => {
            let variant = arg("variantId").and_then(|id| parse_gid(&id, "ProductVariant"));
            let quantity = arg("quantity").and_then(|q| q.as_u64());
            let result = match (edit_id, variant, quantity) {
                (Some(edit_id), Some(variant), Some(quantity)) => {
                    state.edit_add_variant(edit_id, variant, None, quantity)
                }
                _ => Err(SimulatorError::Invalid {
                    message: "id, variantId and quantity are required".to_owned(),
                }),
            };
            let payload = match result {
                Ok(line) => json!({
                    "calculatedOrder": edit_id.map(calculated),
                    "calculatedLineItem": line,
                    "userErrors": [],
                }),
                Err(error) => json!({
                    "calculatedOrder": null,
                    "calculatedLineItem": null,
                    "userErrors": user_errors(&error, "variantId"),
                }),
            };
            (json!({ mutation: payload }), None)
        }
        _ => {
            let result = edit_id
                .ok_or(SimulatorError::Invalid {
                    message: "id must be a gid://shopify/CalculatedOrder/… id".to_owned(),
                })
                .and_then(|edit_id| {
                    state.edit_commit(inner.options.deny_oversell, edit_id, now_ms)
                });
            match result {
                Ok((order, edited)) => {
                    let payload = json!({
                        "order": { "id": format!("gid://shopify/Order/{}", order.id) },
                        "userErrors": [],
                    });
                    (json!({ mutation: payload }), Some((order, edited)))
                }
                Err(error) => (
                    json!({ mutation: { "order": null, "userErrors": user_errors(&error, "id") } }),
                    None,
                ),
            }
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
    let edit_mutation = ORDER_EDIT_MUTATIONS
        .into_iter()
        .find(|name| request.query.contains(name));
    let is_levels = request.query.contains("inventoryLevel");
    let is_fulfillment_order = is_field_call(&request.query, "fulfillmentOrder");
    let is_order_fulfillment_orders = is_field_call(&request.query, "fulfillmentOrders")
        && is_field_call(&request.query, "order");
    let options = &inner.options;
    let mut committed = None;
    let cost = if is_mutation || edit_mutation.is_some() {
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
        } else if let Some(mutation) = edit_mutation {
            let (data, commit) = order_edit(&inner, &mut state, mutation, &request, now_ms);
            committed = commit;
            let extensions = state.cost_extension(cost, Some(cost));
            (
                StatusCode::OK,
                json!({ "data": data, "extensions": extensions }),
                Vec::new(),
            )
        } else if is_order_fulfillment_orders {
            let id = argument(&request.query, "order", "id")
                .and_then(|argument| argument.resolve(&request.variables))
                .and_then(|id| parse_gid(&id, "Order"));
            let order = id.map_or(Value::Null, |id| state.order_fulfillment_orders_graphql(id));
            let extensions = state.cost_extension(cost, Some(cost));
            (
                StatusCode::OK,
                json!({ "data": { "order": order }, "extensions": extensions }),
                Vec::new(),
            )
        } else if is_fulfillment_order {
            let id = argument(&request.query, "fulfillmentOrder", "id")
                .and_then(|argument| argument.resolve(&request.variables))
                .and_then(|id| parse_gid(&id, "FulfillmentOrder"));
            let fulfillment_order =
                id.map_or(Value::Null, |id| state.fulfillment_order_graphql(id));
            let extensions = state.cost_extension(cost, Some(cost));
            (
                StatusCode::OK,
                json!({ "data": { "fulfillmentOrder": fulfillment_order }, "extensions": extensions }),
                Vec::new(),
            )
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
                "the sandbox implements inventorySetQuantities, the orderEdit* mutations, inventory-level reads, fulfillmentOrder(id:) and order(id:) { fulfillmentOrders } only",
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
    if let Some((order, edited)) = committed {
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            inner.announce_edit(&order, edited, now_ms).await;
        });
    }
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
    #[serde(default)]
    sku: Option<String>,
}

async fn sandbox_set_level(State(inner): Shared, Json(body): Json<SetLevelBody>) -> Response {
    inner.set_level(body.inventory_item_id, body.location_id, body.available);
    if let Some(sku) = body.sku {
        inner.lock().item_skus.insert(body.inventory_item_id, sku);
    }
    let level = inner
        .lock()
        .level_json(body.inventory_item_id, body.location_id);
    Json(level).into_response()
}

#[derive(Deserialize)]
struct PlaceOrderBody {
    location_id: Option<u64>,
    /// `web` (the default) or `pos`.
    #[serde(default)]
    source_name: Option<String>,
    line_items: Vec<SimOrderLine>,
}

fn simulator_error(error: SimulatorError) -> Response {
    let status = match error {
        SimulatorError::UnknownOrder { .. } | SimulatorError::UnknownFulfillmentOrder { .. } => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, Json(json!({ "errors": [error.to_string()] }))).into_response()
}

async fn sandbox_place_order(State(inner): Shared, Json(body): Json<PlaceOrderBody>) -> Response {
    let location = body
        .location_id
        .unwrap_or(inner.options.default_location_id);
    let source = match body.source_name.as_deref() {
        None | Some("web") => OrderSource::Web,
        Some("pos") => OrderSource::Pos,
        Some(other) => {
            return simulator_error(SimulatorError::Invalid {
                message: format!("source_name {other:?} is not one of web, pos"),
            });
        }
    };
    match inner.place_order(source, location, &body.line_items).await {
        Ok(order) => (StatusCode::CREATED, Json(order)).into_response(),
        Err(error) => simulator_error(error),
    }
}

async fn sandbox_fulfillment_orders(State(inner): Shared, Path(order_id): Path<u64>) -> Response {
    match inner.fulfillment_orders(order_id) {
        Some(orders) => Json(json!({ "fulfillment_orders": orders })).into_response(),
        None => simulator_error(SimulatorError::UnknownOrder { order_id }),
    }
}

#[derive(Deserialize)]
struct MoveBody {
    new_location_id: u64,
}

async fn sandbox_move_fulfillment_order(
    State(inner): Shared,
    Path(fulfillment_order_id): Path<u64>,
    Json(body): Json<MoveBody>,
) -> Response {
    match inner
        .move_fulfillment_order(fulfillment_order_id, body.new_location_id)
        .await
    {
        Ok(moved) => Json(moved).into_response(),
        Err(error) => simulator_error(error),
    }
}

#[derive(Deserialize)]
struct CancelBody {
    #[serde(default = "default_restock")]
    restock: bool,
    #[serde(default)]
    reason: Option<String>,
}

fn default_restock() -> bool {
    true
}

async fn sandbox_cancel_order(
    State(inner): Shared,
    Path(order_id): Path<u64>,
    body: Option<Json<CancelBody>>,
) -> Response {
    let (restock, reason) = body
        .map(|Json(body)| (body.restock, body.reason))
        .unwrap_or((true, None));
    let reason = reason.unwrap_or_else(|| "customer".to_owned());
    match inner.cancel_order(order_id, restock, &reason).await {
        Ok(order) => Json(order).into_response(),
        Err(error) => simulator_error(error),
    }
}

async fn sandbox_order(State(inner): Shared, Path(order_id): Path<u64>) -> Response {
    match inner.order_body(order_id) {
        Some(order) => Json(json!({ "order": order })).into_response(),
        None => simulator_error(SimulatorError::UnknownOrder { order_id }),
    }
}

async fn sandbox_edit_order(
    State(inner): Shared,
    Path(order_id): Path<u64>,
    Json(body): Json<OrderEditRequest>,
) -> Response {
    match inner.edit_order(order_id, &body).await {
        Ok(change) => Json(change).into_response(),
        Err(error) => simulator_error(error),
    }
}

#[derive(Deserialize)]
struct FulfilBody {
    #[serde(default)]
    line_items: Vec<FulfilLineRequest>,
}

async fn sandbox_fulfil(
    State(inner): Shared,
    Path(order_id): Path<u64>,
    body: Option<Json<FulfilBody>>,
) -> Response {
    let lines = body.map(|Json(body)| body.line_items).unwrap_or_default();
    match inner.fulfil(order_id, &lines).await {
        Ok(change) => (StatusCode::CREATED, Json(change)).into_response(),
        Err(error) => simulator_error(error),
    }
}

#[derive(Deserialize)]
struct RefundBody {
    #[serde(default)]
    note: Option<String>,
    refund_line_items: Vec<RefundLineRequest>,
}

async fn sandbox_refund(
    State(inner): Shared,
    Path(order_id): Path<u64>,
    Json(body): Json<RefundBody>,
) -> Response {
    match inner
        .refund(order_id, &body.refund_line_items, body.note.as_deref())
        .await
    {
        Ok(change) => (StatusCode::CREATED, Json(change)).into_response(),
        Err(error) => simulator_error(error),
    }
}

async fn sandbox_webhooks(State(inner): Shared) -> Response {
    Json(json!({ "deliveries": inner.deliveries() })).into_response()
}

async fn sandbox_redeliver(State(inner): Shared, Path(delivery_id): Path<u64>) -> Response {
    match inner.redeliver(delivery_id).await {
        Some(outcome) => Json(json!({ "id": delivery_id, "delivery": outcome })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "errors": [format!("delivery {delivery_id} does not exist")] })),
        )
            .into_response(),
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
        let numbers = r#"mutation { orderEditSetQuantity(id: $id, lineItemId: "gid://shopify/CalculatedLineItem/7", quantity: 3, restock: true) { userErrors { message } } }"#;
        let quantity = argument(numbers, "orderEditSetQuantity", "quantity")
            .and_then(|a| a.resolve(&variables));
        assert_eq!(quantity, Some(json!(3)));
        let restock = argument(numbers, "orderEditSetQuantity", "restock")
            .and_then(|a| a.resolve(&variables));
        assert_eq!(restock, Some(json!(true)));
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
