//! Outgoing webhooks, signed exactly like Shopify's (PLATFORMS.md §1.6–§1.8), and the REST
//! resource bodies they carry.

use super::state::{OrderSource, SimLineRecord, SimOrderRecord};
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// Delivery timeout (Shopify: 1 s to connect, 5 s in total, PLATFORMS.md §1.8).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// `X-Shopify-Hmac-Sha256` for a body: base64(HMAC-SHA256(key = secret, msg = raw body))
/// (PLATFORMS.md §1.7).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    crate::signing::sign(secret, body)
}

/// Checks an `X-Shopify-Hmac-Sha256` header against the raw body in constant time.
/// Returns false for a header that is not base64.
pub fn verify_webhook_signature(secret: &str, body: &[u8], header: &str) -> bool {
    crate::signing::verify(secret, body, header).is_ok()
}

/// RFC 3339 UTC timestamp with milliseconds for epoch milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// One event to deliver to the webhook URL.
#[derive(Clone, Debug)]
pub(crate) struct WebhookEvent {
    pub topic: &'static str,
    pub body: Vec<u8>,
    pub event_id: String,
    pub triggered_at_ms: i64,
}

impl WebhookEvent {
    pub fn new(topic: &'static str, body: &Value, triggered_at_ms: i64) -> Self {
        Self {
            topic,
            body: serde_json::to_vec(body).expect("a JSON value always serialises"),
            event_id: uuid::Uuid::new_v4().to_string(),
            triggered_at_ms,
        }
    }
}

/// Who signs and where from.
#[derive(Clone, Debug)]
pub(crate) struct Sender {
    pub secret: String,
    pub shop_domain: String,
    pub api_version: String,
}

/// Posts one delivery (a fresh `X-Shopify-Webhook-Id`, the event's `X-Shopify-Event-Id`).
/// Returns the HTTP status, or the transport error's message.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    url: &str,
    sender: &Sender,
    event: &WebhookEvent,
) -> Result<u16, String> {
    let signature = webhook_signature(&sender.secret, &event.body);
    let response = client
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .header("Content-Type", "application/json")
        .header("X-Shopify-Topic", event.topic)
        .header("X-Shopify-Hmac-Sha256", signature)
        .header("X-Shopify-Shop-Domain", &sender.shop_domain)
        .header("X-Shopify-API-Version", &sender.api_version)
        .header("X-Shopify-Webhook-Id", uuid::Uuid::new_v4().to_string())
        .header("X-Shopify-Event-Id", &event.event_id)
        .header("X-Shopify-Triggered-At", rfc3339(event.triggered_at_ms))
        .body(event.body.clone())
        .send()
        .await
        .map_err(|error| error.to_string())?;
    Ok(response.status().as_u16())
}

/// One line item as the REST order resource shows it (also inside refund and fulfilment
/// bodies): `quantity` is the ordered quantity, `current_quantity` what is left after edits
/// and refunds, `fulfillable_quantity` what is left to ship (0 once cancelled).
pub(crate) fn line_json(order: &SimOrderRecord, line: &SimLineRecord) -> Value {
    let cancelled = order.cancelled_at_ms.is_some();
    let current = if cancelled {
        line.current_quantity().min(line.fulfilled)
    } else {
        line.current_quantity()
    };
    let fulfillable = if cancelled { 0 } else { line.fulfillable() };
    let status = if line.fulfilled == 0 {
        Value::Null
    } else if fulfillable == 0 {
        json!("fulfilled")
    } else {
        json!("partial")
    };
    json!({
        "id": line.id,
        "admin_graphql_api_id": format!("gid://shopify/LineItem/{}", line.id),
        "variant_id": line.item,
        "product_id": line.item,
        "sku": line.sku,
        "title": line.sku,
        "quantity": line.quantity,
        "current_quantity": current,
        "fulfillable_quantity": fulfillable,
        "fulfillment_status": status,
        "fulfillment_service": "manual",
        "variant_inventory_management": "shopify",
        "gift_card": false,
        "requires_shipping": true,
    })
}

/// An order as Shopify's REST order resource (the `orders/create`, `orders/updated` and
/// `orders/cancelled` webhook body, PLATFORMS.md §1.6), with its `refunds` embedded (each
/// as the `refunds/create` body) and its `source_name` (`web`, or `pos` with the store's
/// `location_id`). The sandbox uses the inventory item id as variant id.
pub(crate) fn order_json(order: &SimOrderRecord) -> Value {
    let line_items: Vec<Value> = order
        .lines
        .iter()
        .map(|line| line_json(order, line))
        .collect();
    let fulfilled: u64 = order.lines.iter().map(|line| line.fulfilled).sum();
    let open: u64 = order.lines.iter().map(SimLineRecord::fulfillable).sum();
    let fulfillment_status = match (fulfilled, open) {
        (0, _) => Value::Null,
        (_, 0) => json!("fulfilled"),
        _ => json!("partial"),
    };
    json!({
        "id": order.id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{}", order.id),
        "name": format!("#{}", order.number),
        "order_number": order.number,
        "created_at": rfc3339(order.created_at_ms),
        "updated_at": rfc3339(order.updated_at_ms),
        "cancelled_at": order.cancelled_at_ms.map(rfc3339),
        "cancel_reason": order.cancel_reason,
        "fulfillment_status": fulfillment_status,
        "source_name": order.source.as_str(),
        // Legacy and null for web orders (their stock location is the fulfillment order's);
        // a POS order names the store it was sold in.
        "location_id": match order.source {
            OrderSource::Web => Value::Null,
            OrderSource::Pos => json!(order.location_id),
        },
        "line_items": line_items,
        "refunds": order.refunds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_base64_of_hmac_sha256_over_the_raw_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let signature = webhook_signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(signature, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
        assert!(verify_webhook_signature(
            "Jefe",
            b"what do ya want for nothing?",
            &signature
        ));
        assert!(!verify_webhook_signature(
            "Jefe",
            b"what do ya want for nothing!",
            &signature
        ));
        assert!(!verify_webhook_signature("Jefe", b"x", "not base64 !!"));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
