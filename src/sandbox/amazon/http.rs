//! The Amazon simulator's axum routes: LWA token, access-token check, per-operation token
//! buckets with `x-amzn-RateLimit-Limit`, and the JSON shapes of PLATFORMS.md §4.

use super::state::{Document, Feed, Operation, OrderCursor, SimState, SummaryCursor};
use super::{Fulfilment, Inner, SimListing, SimOrderLine, parse_iso8601};
use crate::sandbox::index::{SandboxMethod, SandboxRoutes};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

type Shared = State<Arc<Inner>>;
type Params = Query<HashMap<String, String>>;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/auth/o2/token", post(token))
        .route(
            "/listings/2021-08-01/items/{seller_id}/{sku}",
            get(get_listing).patch(patch_listing),
        )
        .route("/feeds/2021-06-30/documents", post(create_feed_document))
        .route("/feeds/2021-06-30/documents/{id}", get(get_feed_document))
        .route("/feeds/2021-06-30/feeds", post(create_feed))
        .route("/feeds/2021-06-30/feeds/{id}", get(get_feed))
        .route("/_upload/{id}", put(upload))
        .route("/_download/{id}", get(download))
        .route("/orders/v0/orders", get(get_orders))
        .route("/orders/v0/orders/{id}/orderItems", get(get_order_items))
        .route("/fba/inventory/v1/summaries", get(get_summaries))
        .merge(sandbox_routes().into_router())
        .with_state(inner)
}

/// Every `/_sandbox` endpoint, in the order `GET /_sandbox` lists them.
pub(crate) fn sandbox_routes() -> SandboxRoutes<Arc<Inner>> {
    use SandboxMethod::{Get, Post};
    SandboxRoutes::new("amazon")
        .add(Get, "/_sandbox/listings", "every listing with its quantities", None, sandbox_listings)
        .add(
            Post,
            "/_sandbox/listings",
            "add a listing (MFN with a DEFAULT quantity, or FBA with fulfillable units)",
            Some(r#"{"seller_sku": "SKU-A", "quantity": 5, "fba": false, "fba_fulfillable": 0}"#),
            sandbox_add_listing,
        )
        .add(Get, "/_sandbox/listings/{sku}", "one listing", None, sandbox_listing)
        .add(
            Post,
            "/_sandbox/listings/{sku}/fba",
            "set a listing's FBA fulfillable units",
            Some(r#"{"fulfillable": 7}"#),
            sandbox_set_fba,
        )
        .add(
            Post,
            "/_sandbox/orders",
            "place an order (Unshipped; MFN takes the listing's quantity); sends ORDER_CHANGE",
            Some(r#"{"fulfilment": "MFN", "lines": [{"seller_sku": "SKU-A", "quantity": 2}]}"#),
            sandbox_place_order,
        )
        .add(
            Post,
            "/_sandbox/orders/{id}/cancel",
            "seller cancel with a reason (NoInventory, BuyerCanceled, ShippingAddressUndeliverable, CustomerExchange, GeneralAdjustment, …) of the whole order, or of some units of some items; sends ORDER_CHANGE with OrderChangeTrigger.ChangeReason = reason",
            Some(r#"{"reason": "NoInventory", "items": [{"order_item_id": "00000001000003", "quantity": 1}]}"#),
            sandbox_cancel_order,
        )
        .add(Post, "/_sandbox/orders/{id}/ship", "ship every open unit; sends ORDER_CHANGE", None, sandbox_ship)
        .add(
            Get,
            "/_sandbox/notifications",
            "every ORDER_CHANGE notification sent",
            None,
            sandbox_notifications,
        )
        .add(Get, "/_sandbox/counters", "request and notification counters", None, sandbox_counters)
}

/// An SP-API error answer: `{"errors":[{code, message, details}]}`.
fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "message": message, "details": ""}]})),
    )
        .into_response()
}

fn with_rate(mut response: Response, rate: f64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("{rate}")) {
        response
            .headers_mut()
            .insert("x-amzn-ratelimit-limit", value);
    }
    response
}

fn ok(status: StatusCode, body: Value, rate: f64) -> Response {
    with_rate((status, Json(body)).into_response(), rate)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Counts the request and checks outage, access token and the operation's bucket; gives
/// the bucket's rate for `x-amzn-RateLimit-Limit`.
fn admit(
    state: &mut SimState,
    headers: &HeaderMap,
    operation: Operation,
) -> Result<f64, Box<Response>> {
    state.counters.requests += 1;
    let now = Instant::now();
    if state.outage {
        return Err(Box::new(errors(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The sandbox is in a simulated outage.",
        )));
    }
    match header(headers, "x-amz-access-token") {
        None => {
            state.counters.unauthorized += 1;
            return Err(Box::new(errors(
                StatusCode::FORBIDDEN,
                "Unauthorized",
                "Access to requested resource is denied.",
            )));
        }
        Some(token) if !state.token_valid(token.trim(), now) => {
            state.counters.unauthorized += 1;
            return Err(Box::new(errors(
                StatusCode::FORBIDDEN,
                "Unauthorized",
                "The access token you provided is revoked, malformed, invalid or has expired.",
            )));
        }
        Some(_) => {}
    }
    if operation == Operation::PatchListingsItem {
        state.record_patch_request(now);
    }
    let Some(bucket) = state.buckets.get_mut(&operation) else {
        return Ok(0.0);
    };
    let rate = bucket.limit.requests_per_sec;
    if !bucket.admit(now) {
        state.counters.throttled += 1;
        return Err(Box::new(with_rate(
            errors(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceeded",
                "You exceeded your quota for the requested resource.",
            ),
            rate,
        )));
    }
    Ok(rate)
}

/// Sleeps the configured response delay (outside the lock).
async fn delay(inner: &Inner) {
    let delay_ms = inner.lock().response_delay_ms;
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (decode(key), decode(value)))
        .collect()
}

/// Percent-decodes a form value (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn token(State(inner): Shared, body: Bytes) -> Response {
    let mut state = inner.lock();
    state.counters.requests += 1;
    if state.outage {
        return errors(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The sandbox is in a simulated outage.",
        );
    }
    let fields = form(&body);
    let options = &inner.options;
    let field = |name: &str| fields.get(name).map(String::as_str);
    if field("client_id") != Some(options.client_id.as_str())
        || field("client_secret") != Some(options.client_secret.as_str())
    {
        state.counters.unauthorized += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "Client authentication failed"})),
        )
            .into_response();
    }
    if field("grant_type") != Some("refresh_token")
        || field("refresh_token") != Some(options.refresh_token.as_str())
    {
        state.counters.unauthorized += 1;
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "The request has an invalid grant parameter : refresh_token"})),
        )
            .into_response();
    }
    let ttl = Duration::from_secs(options.token_ttl_secs);
    let access_token = state.issue_token(ttl, Instant::now());
    Json(json!({
        "access_token": access_token,
        "refresh_token": options.refresh_token,
        "token_type": "bearer",
        "expires_in": options.token_ttl_secs,
    }))
    .into_response()
}

fn marketplace_ok(inner: &Inner, ids: Option<&String>) -> bool {
    ids.is_some_and(|ids| ids.split(',').any(|id| id == inner.options.marketplace_id))
}

async fn patch_listing(
    State(inner): Shared,
    Path((seller_id, sku)): Path<(String, String)>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rate = {
        let mut state = inner.lock();
        let rate = match admit(&mut state, &headers, Operation::PatchListingsItem) {
            Ok(rate) => rate,
            Err(response) => return *response,
        };
        state.counters.patches_received += 1;
        if !state.fail_next.is_empty() {
            let status = state.fail_next.remove(0);
            state.counters.injected_failures += 1;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return with_rate(errors(status, "InternalFailure", "Injected failure."), rate);
        }
        rate
    };
    delay(&inner).await;
    let mut state = inner.lock();
    if seller_id != inner.options.seller_id || !marketplace_ok(&inner, query.get("marketplaceIds"))
    {
        state.counters.patches_invalid += 1;
        return with_rate(
            errors(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "Unknown sellerId or missing/unknown marketplaceIds.",
            ),
            rate,
        );
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        state.counters.patches_invalid += 1;
        return with_rate(
            errors(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "The request body is not valid JSON.",
            ),
            rate,
        );
    };
    let submission_id = uuid::Uuid::new_v4().simple().to_string();
    let checked = state.validate(
        &sku,
        parsed["productType"].as_str(),
        &parsed["patches"],
        &inner.options,
    );
    match checked {
        Err(issue) => {
            state.counters.patches_invalid += 1;
            ok(
                StatusCode::OK,
                json!({"sku": sku, "status": "INVALID", "submissionId": submission_id,
                       "issues": [issue.json()]}),
                rate,
            )
        }
        Ok(_) if query.get("mode").map(String::as_str) == Some("VALIDATION_PREVIEW") => ok(
            StatusCode::OK,
            json!({"sku": sku, "status": "VALID", "submissionId": submission_id, "issues": []}),
            rate,
        ),
        Ok(patches) => {
            state.counters.patches_accepted += 1;
            state.accept(&sku, patches, &inner.options, Instant::now());
            ok(
                StatusCode::OK,
                json!({"sku": sku, "status": "ACCEPTED", "submissionId": submission_id,
                       "issues": []}),
                rate,
            )
        }
    }
}

async fn get_listing(
    State(inner): Shared,
    Path((seller_id, sku)): Path<(String, String)>,
    Query(query): Params,
    headers: HeaderMap,
) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::GetListingsItem) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let state = inner.lock();
    if seller_id != inner.options.seller_id || !marketplace_ok(&inner, query.get("marketplaceIds"))
    {
        return with_rate(
            errors(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "Unknown sellerId or missing/unknown marketplaceIds.",
            ),
            rate,
        );
    }
    let Some(listing) = state.listings.get(&sku) else {
        return with_rate(
            errors(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("SKU '{sku}' not found in marketplace."),
            ),
            rate,
        );
    };
    let included = query
        .get("includedData")
        .map_or("summaries", String::as_str)
        .to_owned();
    let mut body = json!({ "sku": sku });
    for part in included.split(',') {
        match part {
            "summaries" => {
                body["summaries"] = json!([{
                    "marketplaceId": inner.options.marketplace_id,
                    "asin": listing.asin,
                    "productType": "PRODUCT",
                    "status": ["BUYABLE"],
                    "itemName": format!("Sandbox product {sku}"),
                }]);
            }
            "fulfillmentAvailability" => {
                let entries: Vec<Value> = listing
                    .attributes
                    .get(super::state::FULFILLMENT_AVAILABILITY)
                    .and_then(Value::as_array)
                    .map(|entries| {
                        entries
                            .iter()
                            .map(|entry| {
                                let mut shown = json!({
                                    "fulfillmentChannelCode": entry["fulfillment_channel_code"],
                                });
                                if let Some(quantity) = entry["quantity"].as_i64() {
                                    shown["quantity"] = json!(quantity);
                                }
                                shown
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                body["fulfillmentAvailability"] = Value::Array(entries);
            }
            "issues" => body["issues"] = json!([]),
            "attributes" => body["attributes"] = json!(listing.attributes),
            _ => {}
        }
    }
    ok(StatusCode::OK, body, rate)
}

async fn create_feed_document(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::CreateFeedDocument) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let mut state = inner.lock();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(content_type) = parsed["contentType"].as_str() else {
        return with_rate(
            errors(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "contentType is required.",
            ),
            rate,
        );
    };
    let id = format!("amzn1.tortuga.4.eu.{}", uuid::Uuid::new_v4().simple());
    state.documents.insert(
        id.clone(),
        Document {
            content_type: content_type.to_owned(),
            content: None,
        },
    );
    state.counters.feed_documents_created += 1;
    let url = format!(
        "{}/_upload/{id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=sandbox",
        inner.base_url
    );
    ok(
        StatusCode::CREATED,
        json!({"feedDocumentId": id, "url": url}),
        rate,
    )
}

fn same_content_type(a: &str, b: &str) -> bool {
    let normal = |text: &str| text.replace(' ', "").to_ascii_lowercase();
    normal(a) == normal(b)
}

/// The pre-signed upload URL (S3 in real life): no access token; the Content-Type must be
/// the one given to createFeedDocument, else 403 SignatureDoesNotMatch.
async fn upload(
    State(inner): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = inner.lock();
    let content_type = header(&headers, "content-type")
        .unwrap_or_default()
        .to_owned();
    let Some(document) = state.documents.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchKey</Code></Error>",
        )
            .into_response();
    };
    if !same_content_type(&document.content_type, &content_type) {
        return (
            StatusCode::FORBIDDEN,
            "<Error><Code>SignatureDoesNotMatch</Code></Error>",
        )
            .into_response();
    }
    document.content = Some(body.to_vec());
    state.counters.feed_documents_uploaded += 1;
    StatusCode::OK.into_response()
}

async fn download(State(inner): Shared, Path(id): Path<String>) -> Response {
    let state = inner.lock();
    match state.documents.get(&id) {
        Some(Document {
            content: Some(content),
            content_type,
        }) => {
            let mut response = content.clone().into_response();
            if let Ok(value) = HeaderValue::from_str(content_type) {
                response.headers_mut().insert("content-type", value);
            }
            response
        }
        _ => (
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchKey</Code></Error>",
        )
            .into_response(),
    }
}

async fn create_feed(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::CreateFeed) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let mut state = inner.lock();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let feed_type = parsed["feedType"].as_str().unwrap_or_default().to_owned();
    let document_id = parsed["inputFeedDocumentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let marketplaces_ok = parsed["marketplaceIds"]
        .as_array()
        .is_some_and(|ids| ids.iter().any(|id| id == &inner.options.marketplace_id));
    if feed_type.is_empty() || !marketplaces_ok || !state.documents.contains_key(&document_id) {
        return with_rate(
            errors(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "feedType, marketplaceIds and a known inputFeedDocumentId are required.",
            ),
            rate,
        );
    }
    let now = Instant::now();
    if feed_type == "JSON_LISTINGS_FEED" && !state.take_json_feed_slot(&inner.options, now) {
        state.counters.throttled += 1;
        state.counters.json_feed_quota_exceeded += 1;
        return with_rate(
            errors(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceeded",
                "You exceeded your quota of JSON_LISTINGS_FEED submissions.",
            ),
            rate,
        );
    }
    let feed_id = format!("{}", 50_000_000_000_u64 + state.next_id());
    state.feeds.insert(
        feed_id.clone(),
        Feed {
            feed_id: feed_id.clone(),
            feed_type,
            document_id,
            created: now,
            created_ms: inner.now_ms(),
            outcome: None,
            result_document_id: None,
            done_ms: None,
        },
    );
    state.counters.feeds_created += 1;
    ok(StatusCode::ACCEPTED, json!({ "feedId": feed_id }), rate)
}

async fn get_feed(State(inner): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::GetFeed) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let state = inner.lock();
    let Some(feed) = state.feeds.get(&id) else {
        return with_rate(
            errors(StatusCode::NOT_FOUND, "NotFound", "Feed not found."),
            rate,
        );
    };
    let status = state.feed_status(feed, &inner.options, Instant::now());
    let mut body = json!({
        "feedId": feed.feed_id,
        "feedType": feed.feed_type,
        "marketplaceIds": [inner.options.marketplace_id],
        "createdTime": super::iso8601(feed.created_ms),
        "processingStatus": status,
    });
    if let Some(done_ms) = feed.done_ms {
        body["processingEndTime"] = json!(super::iso8601(done_ms));
    }
    if let Some(document) = &feed.result_document_id {
        body["resultFeedDocumentId"] = json!(document);
    }
    ok(StatusCode::OK, body, rate)
}

async fn get_feed_document(
    State(inner): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::GetFeedDocument) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let state = inner.lock();
    if !state.documents.contains_key(&id) {
        return with_rate(
            errors(StatusCode::NOT_FOUND, "NotFound", "Document not found."),
            rate,
        );
    }
    ok(
        StatusCode::OK,
        json!({"feedDocumentId": id, "url": format!("{}/_download/{id}", inner.base_url)}),
        rate,
    )
}

async fn get_orders(State(inner): Shared, Query(query): Params, headers: HeaderMap) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::GetOrders) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let mut state = inner.lock();
    state.counters.order_list_reads += 1;
    let cursor = match query.get("NextToken") {
        Some(token) => match state.order_cursors.remove(token) {
            Some(cursor) => cursor,
            None => {
                return with_rate(
                    errors(
                        StatusCode::BAD_REQUEST,
                        "InvalidInput",
                        "Invalid NextToken.",
                    ),
                    rate,
                );
            }
        },
        None => {
            let after = query
                .get("LastUpdatedAfter")
                .and_then(|text| parse_iso8601(text));
            if !marketplace_ok(&inner, query.get("MarketplaceIds")) || after.is_none() {
                return with_rate(
                    errors(
                        StatusCode::BAD_REQUEST,
                        "InvalidInput",
                        "MarketplaceIds and LastUpdatedAfter (ISO 8601) are required.",
                    ),
                    rate,
                );
            }
            OrderCursor {
                after_ms: after.unwrap_or(0),
                offset: 0,
            }
        }
    };
    let mut matching: Vec<_> = state
        .orders
        .values()
        .filter(|order| order.last_update_ms >= cursor.after_ms)
        .collect();
    matching.sort_by(|a, b| (a.last_update_ms, &a.order_id).cmp(&(b.last_update_ms, &b.order_id)));
    let size = inner.options.orders_page_size.max(1);
    let orders: Vec<Value> = matching
        .iter()
        .skip(cursor.offset)
        .take(size)
        .map(|order| state.order_json(order, &inner.options))
        .collect();
    let more = matching.len() > cursor.offset + size;
    let mut payload = json!({ "Orders": orders });
    if more {
        let token = uuid::Uuid::new_v4().simple().to_string();
        state.order_cursors.insert(
            token.clone(),
            OrderCursor {
                after_ms: cursor.after_ms,
                offset: cursor.offset + size,
            },
        );
        payload["NextToken"] = json!(token);
    }
    ok(StatusCode::OK, json!({ "payload": payload }), rate)
}

async fn get_order_items(
    State(inner): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::GetOrderItems) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let mut state = inner.lock();
    state.counters.order_item_reads += 1;
    match state.orders.get(&id) {
        Some(order) => ok(
            StatusCode::OK,
            json!({ "payload": state.order_items_json(order) }),
            rate,
        ),
        None => with_rate(
            errors(StatusCode::NOT_FOUND, "NotFound", "Order not found."),
            rate,
        ),
    }
}

async fn get_summaries(State(inner): Shared, Query(query): Params, headers: HeaderMap) -> Response {
    let rate = {
        let mut state = inner.lock();
        match admit(&mut state, &headers, Operation::GetInventorySummaries) {
            Ok(rate) => rate,
            Err(response) => return *response,
        }
    };
    delay(&inner).await;
    let mut state = inner.lock();
    state.counters.inventory_summary_reads += 1;
    let now = Instant::now();
    let options = &inner.options;
    let bad = |message: &str| {
        with_rate(
            errors(StatusCode::BAD_REQUEST, "InvalidInput", message),
            rate,
        )
    };
    if query.get("granularityType").map(String::as_str) != Some("Marketplace")
        || query.get("granularityId") != Some(&options.marketplace_id)
        || !marketplace_ok(&inner, query.get("marketplaceIds"))
    {
        return bad("granularityType=Marketplace, granularityId and marketplaceIds are required.");
    }
    let cursor = match query.get("nextToken") {
        Some(token) => match state.summary_cursors.remove(token) {
            Some(cursor)
                if now.saturating_duration_since(cursor.issued)
                    <= Duration::from_millis(options.next_token_ttl_ms) =>
            {
                cursor
            }
            _ => return bad("The nextToken is invalid or has expired."),
        },
        None => {
            let start_ms = match query.get("startDateTime") {
                Some(text) => match parse_iso8601(text) {
                    Some(ms) => Some(ms),
                    None => return bad("startDateTime must be ISO 8601."),
                },
                None => None,
            };
            // With startDateTime, sellerSkus is ignored (§4.4).
            let seller_skus = query
                .get("sellerSkus")
                .filter(|_| start_ms.is_none())
                .map(|skus| skus.split(',').map(str::to_owned).collect());
            SummaryCursor {
                issued: now,
                offset: 0,
                start_ms,
                seller_skus,
            }
        }
    };
    let matching: Vec<Value> = state
        .listings
        .values()
        .filter(|listing| {
            cursor
                .seller_skus
                .as_ref()
                .is_none_or(|skus| skus.contains(&listing.seller_sku))
        })
        .filter(|listing| {
            let updated = listing.fba_stock.as_ref().map_or(0, |s| s.updated_ms);
            cursor.start_ms.is_none_or(|start| updated >= start)
        })
        .filter_map(SimState::summary_json)
        .collect();
    let size = options.inventory_page_size.max(1);
    let page: Vec<Value> = matching
        .iter()
        .skip(cursor.offset)
        .take(size)
        .cloned()
        .collect();
    let mut body = json!({
        "payload": {
            "granularity": {"granularityType": "Marketplace", "granularityId": options.marketplace_id},
            "inventorySummaries": page,
        },
    });
    if matching.len() > cursor.offset + size {
        let token = uuid::Uuid::new_v4().simple().to_string();
        state.summary_cursors.insert(
            token.clone(),
            SummaryCursor {
                issued: now,
                offset: cursor.offset + size,
                ..cursor
            },
        );
        body["pagination"] = json!({ "nextToken": token });
    }
    ok(StatusCode::OK, body, rate)
}

async fn sandbox_listings(State(inner): Shared) -> Response {
    let state = inner.lock();
    let listings: Vec<_> = state
        .listings
        .keys()
        .filter_map(|sku| state.sandbox_listing(sku))
        .collect();
    Json(json!({ "listings": listings })).into_response()
}

async fn sandbox_listing(State(inner): Shared, Path(sku): Path<String>) -> Response {
    match inner.lock().sandbox_listing(&sku) {
        Some(listing) => Json(listing).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sandbox_add_listing(State(inner): Shared, Json(listing): Json<SimListing>) -> Response {
    inner.lock().add_listing(&listing, inner.now_ms());
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct FbaBody {
    fulfillable: u64,
}

async fn sandbox_set_fba(
    State(inner): Shared,
    Path(sku): Path<String>,
    Json(body): Json<FbaBody>,
) -> Response {
    match inner
        .lock()
        .set_fba_fulfillable(&sku, body.fulfillable, inner.now_ms())
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => unprocessable(&error),
    }
}

fn unprocessable(error: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": error })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct PlaceOrderBody {
    fulfilment: Fulfilment,
    lines: Vec<SimOrderLine>,
}

async fn sandbox_place_order(State(inner): Shared, Json(body): Json<PlaceOrderBody>) -> Response {
    match inner.place_order(body.fulfilment, &body.lines) {
        Ok(order) => (StatusCode::CREATED, Json(order)).into_response(),
        Err(error) => unprocessable(&error.to_string()),
    }
}

/// `POST /_sandbox/orders/{id}/cancel` body; absent: the whole order, no reason.
#[derive(Deserialize)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    items: Vec<CancelItem>,
}

#[derive(Deserialize)]
struct CancelItem {
    order_item_id: String,
    quantity: u64,
}

async fn sandbox_cancel_order(
    State(inner): Shared,
    Path(id): Path<String>,
    body: Option<Json<CancelBody>>,
) -> Response {
    let (reason, items) = match body {
        Some(Json(body)) => (
            body.reason,
            body.items
                .into_iter()
                .map(|item| (item.order_item_id, item.quantity))
                .collect::<Vec<_>>(),
        ),
        None => (None, Vec::new()),
    };
    match inner.cancel_order(&id, reason.as_deref(), &items) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => unprocessable(&error.to_string()),
    }
}

async fn sandbox_ship(State(inner): Shared, Path(id): Path<String>) -> Response {
    match inner.ship(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => unprocessable(&error.to_string()),
    }
}

async fn sandbox_notifications(State(inner): Shared) -> Response {
    Json(json!({ "notifications": inner.lock().notifications.clone() })).into_response()
}

async fn sandbox_counters(State(inner): Shared) -> Response {
    Json(inner.lock().counters.clone()).into_response()
}
