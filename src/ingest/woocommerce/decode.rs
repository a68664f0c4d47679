//! WooCommerce webhook and order decoder (PLATFORMS.md §2.3–2.4): IO-free.
//!
//! Owns: webhook header parsing ([`WebhookHeaders`]), the creation ping ([`is_ping`]),
//! signature verification in constant time ([`verify_signature`], [`verify`]), the
//! delivery dedupe key ([`delivery_key`]) and the translation of an order resource (webhook
//! body or a polled `GET /orders` entry) into ledger [`Movement`]s ([`decode_order`]).
//!
//! May depend on: `domain`, `config`. Does no I/O: the HTTP receiver ([`super::receiver`])
//! and the poller ([`super::poller`]) read bytes, call these functions and submit.
//!
//! Decisions (each one has a test below):
//! - Stock effect by status, as WooCommerce core applies it (§2.3):
//!   `processing`, `on-hold`, `completed` → one [`MovementKind::Sale`] per line (reservation
//!   `{channel}:{order}:{line}`); `cancelled` and `failed` → the same sale then a
//!   [`MovementKind::Cancellation`] of it (net zero whatever we saw before, and a late
//!   `processing` delivery is then a duplicate); `refunded` → the sale then a cancellation
//!   of its unshipped units (reason `refunded`, key `…:line:{line}:refunded`): a refund
//!   without restock must not keep the hold (issue 9 §2); shipped units stay shipped;
//!   `pending`, `checkout-draft`, `trash` and unknown statuses → nothing (core has not
//!   reduced stock yet, so neither do we).
//! - Order edits (issue 9 §1, [`decode_order_update`], used for `order.updated` and by the
//!   poller): WooCommerce changes a line's `quantity` in place, so after each line's sale
//!   comes one [`MovementKind::OrderEdit`] with the line's `quantity` as the absolute target
//!   and `version` = `date_modified_gmt` in milliseconds (key `{sale key}:edit:{version}`).
//!   Every line gets one on every update (an edit back to the sale's quantity must be seen
//!   too; the ledger ignores versions it has seen, so a late older delivery changes nothing;
//!   two edits within one second share a version and the second waits for the next update).
//!   A removed line vanishes from `line_items`: the caller passes the order's lines known
//!   from earlier payloads ([`KnownLine`], kept durably by the receiver in the store's
//!   order-line index) and each known line missing from the payload gets an edit to 0.
//!   Refunds do not change a line's `quantity` in WooCommerce, so the target needs no
//!   correction for them. No edits for `refunded`, `cancelled` or `failed` orders (their
//!   cancellation covers the line) nor without a parsable `date_modified_gmt`.
//! - The sale's idempotency key is `{channel}:order:{order}:line:{line}` whatever the status
//!   or topic, so `order.created`, `order.updated` and the poller deduplicate in the ledger.
//! - Refunds with restock: WooCommerce records restocked units on the order line as
//!   `_restock_refunded_items` (cumulative). Each restocked unit k becomes one movement of 1
//!   with key `…:line:{line}:restock:{k}`, so a later, larger count only adds the new units
//!   (at most [`MAX_RESTOCK_UNITS_PER_LINE`] per line): on a `processing` or `on-hold` order
//!   (not shipped yet) a [`MovementKind::Cancellation`] of one unit (the unit goes back on
//!   sale from the hold); on `completed` and `refunded` orders a [`MovementKind::Return`] at
//!   the channel's first feeding location (after the `refunded` cancellation, so a unit that
//!   never shipped is refused by the ledger as "returned would exceed shipped" and shows as
//!   rejected in the answer, while a shipped one is restocked). A refund without restock
//!   only releases through the `refunded` status.
//! - The SKU is the line's `sku`; when it is blank, the channel's inline listings map
//!   (product id, variation id) back to a SKU; otherwise the line is skipped.
//! - Deliveries are deduplicated on (webhook id, order id, `date_modified_gmt`, status)
//!   ([`delivery_key`]), never on `X-WC-Webhook-Delivery-ID`, which has second resolution
//!   (§2.4). That is a shortcut only: the movements' keys are the real dedupe.

use crate::config::ChannelConfig;
use crate::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku};
use serde::{Deserialize, Deserializer};

/// Most restocked units turned into movements per line (one movement per unit).
pub const MAX_RESTOCK_UNITS_PER_LINE: u64 = 10_000;

/// Why a delivery is not authentic (§2.4). Answered with 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-WC-Webhook-Signature` header.
    #[error("missing X-WC-Webhook-Signature header")]
    Missing,
    /// The header is not standard base64.
    #[error("X-WC-Webhook-Signature header is not base64")]
    Malformed,
    /// The signature does not match the body under the channel's secret (or it is empty).
    #[error("X-WC-Webhook-Signature does not match the body")]
    Mismatch,
    /// The channel has no `[channels.woocommerce]` section.
    #[error("channel {channel} is not a woocommerce channel")]
    NotWoocommerce {
        /// The channel id.
        channel: String,
    },
}

/// Why a verified body could not be decoded. Answered with 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not an order resource.
    #[error("body is not a woocommerce order: {message}")]
    Payload {
        /// The JSON parser's message.
        message: String,
    },
    /// A restock needs a location, and the channel has none.
    #[error("channel {channel} has no feeding location to restock returns at")]
    NoLocation {
        /// The channel id.
        channel: String,
    },
}

/// The WooCommerce webhook headers (§2.4), matched case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookHeaders {
    /// `X-WC-Webhook-Source`: the site URL.
    pub source: Option<String>,
    /// `X-WC-Webhook-Topic`: `order.created`, `order.updated`, …
    pub topic: Option<String>,
    /// `X-WC-Webhook-Resource`: `order`.
    pub resource: Option<String>,
    /// `X-WC-Webhook-Event`: `created`, `updated`, …
    pub event: Option<String>,
    /// `X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the raw body.
    pub signature: Option<String>,
    /// `X-WC-Webhook-ID`: the webhook's post id.
    pub webhook_id: Option<String>,
    /// `X-WC-Webhook-Delivery-ID` (or the documented `X-WC-Delivery-ID`); weak, see §2.4.
    pub delivery_id: Option<String>,
}

impl WebhookHeaders {
    /// Collects the headers from `(name, value)` pairs; the first occurrence wins.
    pub fn from_pairs<'a, I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut headers = Self::default();
        for (name, value) in pairs {
            let slot = match name.to_ascii_lowercase().as_str() {
                "x-wc-webhook-source" => &mut headers.source,
                "x-wc-webhook-topic" => &mut headers.topic,
                "x-wc-webhook-resource" => &mut headers.resource,
                "x-wc-webhook-event" => &mut headers.event,
                "x-wc-webhook-signature" => &mut headers.signature,
                "x-wc-webhook-id" => &mut headers.webhook_id,
                "x-wc-webhook-delivery-id" | "x-wc-delivery-id" => &mut headers.delivery_id,
                _ => continue,
            };
            if slot.is_none()
                && let Ok(text) = std::str::from_utf8(value)
            {
                *slot = Some(text.trim().to_owned());
            }
        }
        headers
    }

    /// The topic as a bounded label: `order.created`, `order.updated`, `order.deleted`,
    /// `order.restored`, or `other`.
    pub fn topic_label(&self) -> &'static str {
        match self.topic.as_deref().map(str::trim) {
            Some("order.created") => "order.created",
            Some("order.updated") => "order.updated",
            Some("order.deleted") => "order.deleted",
            Some("order.restored") => "order.restored",
            _ => "other",
        }
    }

    /// True for topics whose body is an order to decode (created, updated, restored).
    pub fn carries_order(&self) -> bool {
        matches!(
            self.topic_label(),
            "order.created" | "order.updated" | "order.restored"
        )
    }
}

/// The creation ping (§2.4): a form-encoded `webhook_id=<id>` body without X-WC headers.
/// Returns the webhook id when this delivery is a ping.
pub fn is_ping(headers: &WebhookHeaders, body: &[u8]) -> Option<String> {
    if headers.signature.is_some() || headers.topic.is_some() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    let id = text.strip_prefix("webhook_id=")?;
    (!id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit())).then(|| id.to_owned())
}

/// base64(HMAC-SHA256(secret, body)), the `X-WC-Webhook-Signature` WooCommerce sends.
pub fn sign(secret: &str, body: &[u8]) -> String {
    crate::signing::sign(secret, body)
}

/// Checks `signature` against the raw `body` in constant time. Call it before parsing.
///
/// Errors: [`SignatureError::Missing`], [`SignatureError::Malformed`],
/// [`SignatureError::Mismatch`] (also for an empty secret).
pub fn verify_signature(
    secret: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    crate::signing::verify(secret, body, signature).map_err(|problem| match problem {
        crate::signing::SignatureProblem::Malformed => SignatureError::Malformed,
        crate::signing::SignatureProblem::Mismatch => SignatureError::Mismatch,
    })
}

/// Verifies a delivery for `channel` with its `woocommerce.webhook_secret`.
///
/// Errors: [`SignatureError::NotWoocommerce`] without a WooCommerce section, else as
/// [`verify_signature`].
pub fn verify(
    channel: &ChannelConfig,
    headers: &WebhookHeaders,
    body: &[u8],
) -> Result<(), SignatureError> {
    let woocommerce = channel
        .woocommerce()
        .ok_or_else(|| SignatureError::NotWoocommerce {
            channel: channel.id.clone(),
        })?;
    verify_signature(
        &woocommerce.webhook_secret,
        body,
        headers.signature.as_deref(),
    )
}

fn id_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::String(text) => text,
        serde_json::Value::Number(number) => number.to_string(),
        _ => String::new(),
    })
}

fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::Number(number) => number.as_u64().unwrap_or(0),
        serde_json::Value::String(text) => text.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::Number(number) => number.as_i64().unwrap_or(0),
        serde_json::Value::String(text) => text.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

/// The fields of an order resource this engine reads (§2.3); unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct OrderPayload {
    /// Order id.
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Status (`pending`, `processing`, …).
    #[serde(default)]
    pub status: String,
    /// Last change, `2025-01-31T10:00:00` (UTC, second resolution).
    #[serde(default)]
    pub date_modified_gmt: Option<String>,
    /// The lines.
    #[serde(default)]
    pub line_items: Vec<LineItemPayload>,
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LineItemPayload {
    /// Line id.
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Product id.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub product_id: u64,
    /// Variation id (0 for simple products).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub variation_id: u64,
    /// The product's SKU at order time.
    #[serde(default)]
    pub sku: Option<String>,
    /// Units ordered.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub quantity: i64,
    /// Line meta (`_reduced_stock`, `_restock_refunded_items`).
    #[serde(default)]
    pub meta_data: Vec<MetaPayload>,
}

/// One meta entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MetaPayload {
    /// Meta key.
    #[serde(default)]
    pub key: String,
    /// Meta value (WooCommerce stores numbers as strings).
    #[serde(default)]
    pub value: serde_json::Value,
}

impl LineItemPayload {
    /// Units put back in stock by refunds (`_restock_refunded_items`), 0 when absent.
    pub fn restocked(&self) -> u64 {
        self.meta_data
            .iter()
            .find(|meta| meta.key == "_restock_refunded_items")
            .and_then(|meta| {
                meta.value.as_u64().or_else(|| {
                    meta.value
                        .as_str()
                        .and_then(|text| text.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }
}

/// Why a line produced no movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// No SKU on the line and no inline listing for its product/variation.
    NoSku,
    /// Quantity 0 or negative.
    ZeroQuantity,
    /// The order status does not touch stock (`pending`, `checkout-draft`, `trash`, …).
    StatusWithoutStockEffect,
}

impl SkipReason {
    /// A bounded label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSku => "no_sku",
            Self::ZeroQuantity => "zero_quantity",
            Self::StatusWithoutStockEffect => "status_without_stock_effect",
        }
    }
}

/// A line that produced nothing, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// Line id.
    pub line_id: String,
    /// Why.
    pub reason: SkipReason,
}

/// The outcome of decoding one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Order id.
    pub order_id: String,
    /// Status decoded.
    pub status: String,
    /// Movements to submit, in this order (a line's sale before its cancellation).
    pub movements: Vec<Movement>,
    /// Lines that produced nothing.
    pub skipped: Vec<SkippedLine>,
    /// The stock lines of this payload, for the caller's order-line index.
    pub lines: Vec<KnownLine>,
    /// The payload's version (`date_modified_gmt` in milliseconds), when it parses.
    pub version: Option<i64>,
}

/// A stock line of an order as an earlier payload showed it (the order-line index entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownLine {
    /// Line id.
    pub line_id: String,
    /// The line's SKU.
    pub sku: String,
}

/// `source` of every movement decoded for `channel`: `woocommerce:{channel id}`.
pub fn source_label(channel: &ChannelConfig) -> String {
    format!("woocommerce:{}", channel.id)
}

/// Reservation id of an order line: `{channel}:{order}:{line}`.
pub fn reservation_id(channel: &ChannelConfig, order_id: &str, line_id: &str) -> String {
    format!("{}:{order_id}:{line_id}", channel.id)
}

/// Idempotency key of a line's sale: `{channel}:order:{order}:line:{line}`.
pub fn sale_key(channel: &ChannelConfig, order_id: &str, line_id: &str) -> String {
    format!("{}:order:{order_id}:line:{line_id}", channel.id)
}

/// The delivery dedupe key: (channel, webhook id, order id, `date_modified_gmt`, status),
/// because `X-WC-Webhook-Delivery-ID` repeats within a second (§2.4).
pub fn delivery_key(channel: &ChannelConfig, webhook_id: &str, order: &OrderPayload) -> String {
    format!(
        "{}\u{1f}wc\u{1f}{webhook_id}\u{1f}{}\u{1f}{}\u{1f}{}",
        channel.id,
        order.id,
        order.date_modified_gmt.as_deref().unwrap_or(""),
        order.status
    )
}

/// Parses an order resource (a webhook body).
///
/// Errors: [`DecodeError::Payload`] when the body is not an order.
pub fn parse_order(body: &[u8]) -> Result<OrderPayload, DecodeError> {
    serde_json::from_slice(body).map_err(|error| DecodeError::Payload {
        message: error.to_string(),
    })
}

/// Parses an order from a JSON value (a `GET /orders` entry).
///
/// Errors: [`DecodeError::Payload`] when the value is not an order.
pub fn order_from_value(value: serde_json::Value) -> Result<OrderPayload, DecodeError> {
    serde_json::from_value(value).map_err(|error| DecodeError::Payload {
        message: error.to_string(),
    })
}

fn movement(channel: &ChannelConfig, key: String, sku: &str, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: Sku::from(sku),
        idempotency_key: key,
        source: source_label(channel),
        occurred_at_ms: None,
        kind,
    }
}

fn line_sku(channel: &ChannelConfig, line: &LineItemPayload) -> Option<String> {
    let sku = line.sku.as_deref().map(str::trim).unwrap_or("");
    if !sku.is_empty() {
        return Some(sku.to_owned());
    }
    channel.woocommerce().and_then(|woocommerce| {
        woocommerce
            .listings
            .iter()
            .find(|listing| {
                listing.product_id == line.product_id
                    && listing.variation_id.unwrap_or(0) == line.variation_id
            })
            .map(|listing| listing.sku.clone())
    })
}

/// The cancellation of every unshipped unit of a line. WooCommerce core records no cancel
/// reason, so the reason is the status's (`cancelled`, `payment_failed`); a shop whose
/// cancelled orders mean lost stock lists it in `write_off_cancel_reasons` (empty by
/// default), and the released units are then written off.
fn order_cancellation(
    channel: &ChannelConfig,
    reservation: String,
    reason: Option<&str>,
) -> MovementKind {
    MovementKind::Cancellation {
        reservation,
        quantity: None,
        reason: reason.map(str::to_owned),
        write_off: reason.is_some_and(|reason| channel.writes_off_on_cancel(reason)),
    }
}

/// Decodes an order into movements following the module rules, without edits (an order
/// seen for the first time: `order.created`).
///
/// Errors: [`DecodeError::NoLocation`] when a restock has no location to go to.
pub fn decode_order(channel: &ChannelConfig, order: &OrderPayload) -> Result<Decoded, DecodeError> {
    decode(channel, order, None)
}

/// Decodes an updated order (`order.updated`, a polled order): the movements of
/// [`decode_order`] plus one [`MovementKind::OrderEdit`] per line, and an edit to 0 for
/// each line of `known` (the order's lines from earlier payloads) that the payload no longer
/// lists (module docs).
///
/// Errors: [`DecodeError::NoLocation`] when a restock has no location to go to.
pub fn decode_order_update(
    channel: &ChannelConfig,
    order: &OrderPayload,
    known: &[KnownLine],
) -> Result<Decoded, DecodeError> {
    decode(channel, order, Some(known))
}

fn decode(
    channel: &ChannelConfig,
    order: &OrderPayload,
    known: Option<&[KnownLine]>,
) -> Result<Decoded, DecodeError> {
    let status = order.status.trim();
    let (sells, cancels, reason) = match status {
        "processing" | "on-hold" | "completed" => (true, false, None),
        "refunded" => (true, true, Some("refunded")),
        "cancelled" => (true, true, Some("cancelled")),
        "failed" => (true, true, Some("payment_failed")),
        _ => (false, false, None),
    };
    let version = order
        .date_modified_gmt
        .as_deref()
        .and_then(crate::ingest::timestamp_ms);
    let edit_version = version.filter(|_| known.is_some() && sells && !cancels);
    let restock_cancels = matches!(status, "processing" | "on-hold");
    let mut decoded = Decoded {
        order_id: order.id.clone(),
        status: status.to_owned(),
        movements: Vec::new(),
        skipped: Vec::new(),
        lines: Vec::new(),
        version,
    };
    for line in &order.line_items {
        let skip = |reason| SkippedLine {
            line_id: line.id.clone(),
            reason,
        };
        if !sells {
            decoded
                .skipped
                .push(skip(SkipReason::StatusWithoutStockEffect));
            continue;
        }
        let Some(sku) = line_sku(channel, line) else {
            decoded.skipped.push(skip(SkipReason::NoSku));
            continue;
        };
        let Ok(quantity) = u64::try_from(line.quantity) else {
            decoded.skipped.push(skip(SkipReason::ZeroQuantity));
            continue;
        };
        if quantity == 0 {
            decoded.skipped.push(skip(SkipReason::ZeroQuantity));
            continue;
        }
        decoded.lines.push(KnownLine {
            line_id: line.id.clone(),
            sku: sku.clone(),
        });
        let reservation = reservation_id(channel, &order.id, &line.id);
        let key = sale_key(channel, &order.id, &line.id);
        decoded.movements.push(movement(
            channel,
            key.clone(),
            &sku,
            MovementKind::Sale {
                reservation: reservation.clone(),
                quantity,
                location: None,
                route: channel.locations.clone(),
            },
        ));
        if let Some(version) = edit_version {
            decoded
                .movements
                .push(edit(channel, &order.id, &line.id, &sku, quantity, version));
        }
        if cancels {
            let suffix = if status == "refunded" {
                "refunded"
            } else {
                "cancel"
            };
            decoded.movements.push(movement(
                channel,
                format!("{key}:{suffix}"),
                &sku,
                order_cancellation(channel, reservation.clone(), reason),
            ));
        }
        let restocked = line.restocked().min(MAX_RESTOCK_UNITS_PER_LINE);
        if restocked > 0 {
            let location =
                channel
                    .locations
                    .first()
                    .cloned()
                    .ok_or_else(|| DecodeError::NoLocation {
                        channel: channel.id.clone(),
                    })?;
            for unit in 1..=restocked {
                let kind = if restock_cancels {
                    MovementKind::Cancellation {
                        reservation: reservation.clone(),
                        quantity: Some(1),
                        reason: Some("refunded".to_owned()),
                        write_off: false,
                    }
                } else {
                    MovementKind::Return {
                        location: Some(location.clone()),
                        quantity: 1,
                        reservation: Some(reservation.clone()),
                        restock: true,
                    }
                };
                decoded.movements.push(movement(
                    channel,
                    format!("{key}:restock:{unit}"),
                    &sku,
                    kind,
                ));
            }
        }
    }
    if let (Some(version), Some(known)) = (edit_version, known) {
        // Known lines this payload no longer carries as stock lines (removed, or set to 0).
        let vanished: Vec<&KnownLine> = known
            .iter()
            .filter(|known| {
                !decoded
                    .lines
                    .iter()
                    .any(|line| line.line_id == known.line_id)
            })
            .collect();
        for vanished in vanished {
            decoded.movements.push(edit(
                channel,
                &order.id,
                &vanished.line_id,
                &vanished.sku,
                0,
                version,
            ));
        }
    }
    Ok(decoded)
}

/// Idempotency key of a line's edit at `version`: `{sale key}:edit:{version}`.
pub fn edit_key(channel: &ChannelConfig, order_id: &str, line_id: &str, version: i64) -> String {
    format!("{}:edit:{version}", sale_key(channel, order_id, line_id))
}

fn edit(
    channel: &ChannelConfig,
    order_id: &str,
    line_id: &str,
    sku: &str,
    quantity: u64,
    version: i64,
) -> Movement {
    movement(
        channel,
        edit_key(channel, order_id, line_id, version),
        sku,
        MovementKind::OrderEdit {
            reservation: reservation_id(channel, order_id, line_id),
            quantity,
            version,
            location: None,
            route: channel.locations.clone(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    const SECRET: &str = "wc-test-secret";

    fn channel() -> ChannelConfig {
        let config = Config::from_toml(&format!(
            r#"
            [[locations]]
            id = "WH-1"
            [[channels]]
            id = "woo"
            kind = "woocommerce"
            locations = ["WH-1"]
            [channels.woocommerce]
            site_url = "http://127.0.0.1:9"
            consumer_key = "ck"
            consumer_secret = "cs"
            webhook_secret = "{SECRET}"
            listings = [{{ sku = "TEE-M", product_id = 20, variation_id = 21 }}]
            "#
        ))
        .unwrap();
        config.validate().unwrap();
        config.channels[0].clone()
    }

    fn order(status: &str, restocked: Option<&str>) -> OrderPayload {
        let meta = restocked
            .map(|n| json!([{"id": 1, "key": "_restock_refunded_items", "value": n}]))
            .unwrap_or(json!([]));
        order_from_value(json!({
            "id": 501,
            "status": status,
            "date_modified_gmt": "2026-01-02T03:04:05",
            "line_items": [
                {"id": 7, "product_id": 10, "variation_id": 0, "sku": "MUG", "quantity": 2, "meta_data": meta},
                {"id": 8, "product_id": 20, "variation_id": 21, "sku": "", "quantity": 1, "meta_data": []},
                {"id": 9, "product_id": 30, "variation_id": 0, "sku": null, "quantity": 1},
            ],
            "refunds": [],
        }))
        .unwrap()
    }

    fn kinds(decoded: &Decoded) -> Vec<(&str, &str, &str)> {
        decoded
            .movements
            .iter()
            .map(|m| (m.sku.0.as_str(), m.kind.name(), m.idempotency_key.as_str()))
            .collect()
    }

    #[test]
    fn reducing_statuses_sell_every_line_with_stable_keys() {
        let channel = channel();
        for status in ["processing", "on-hold", "completed"] {
            let decoded = decode_order(&channel, &order(status, None)).unwrap();
            assert_eq!(
                kinds(&decoded),
                vec![
                    ("MUG", "sale", "woo:order:501:line:7"),
                    ("TEE-M", "sale", "woo:order:501:line:8"),
                ],
                "{status}: the blank SKU maps through the inline listing"
            );
            assert_eq!(decoded.skipped.len(), 1);
            assert_eq!(decoded.skipped[0].reason, SkipReason::NoSku);
            let MovementKind::Sale {
                reservation,
                quantity,
                route,
                ..
            } = &decoded.movements[0].kind
            else {
                panic!("not a sale");
            };
            assert_eq!(reservation, "woo:501:7");
            assert_eq!(*quantity, 2);
            assert_eq!(route.len(), 1);
            assert_eq!(decoded.movements[0].source, "woocommerce:woo");
        }
    }

    #[test]
    fn pending_orders_touch_nothing_and_cancelled_or_failed_ones_release() {
        let channel = channel();
        let pending = decode_order(&channel, &order("pending", None)).unwrap();
        assert!(pending.movements.is_empty());
        assert!(
            pending
                .skipped
                .iter()
                .all(|s| s.reason == SkipReason::StatusWithoutStockEffect)
        );
        for status in ["cancelled", "failed"] {
            let decoded = decode_order(&channel, &order(status, None)).unwrap();
            assert_eq!(
                kinds(&decoded)[..2],
                [
                    ("MUG", "sale", "woo:order:501:line:7"),
                    ("MUG", "cancellation", "woo:order:501:line:7:cancel"),
                ]
            );
        }
    }

    #[test]
    fn a_cancelled_order_writes_off_only_when_the_channel_lists_its_reason() {
        let write_offs = |channel: &ChannelConfig, status: &str| -> Vec<(Option<String>, bool)> {
            decode_order(channel, &order(status, None))
                .unwrap()
                .movements
                .into_iter()
                .filter_map(|m| match m.kind {
                    MovementKind::Cancellation {
                        reason, write_off, ..
                    } => Some((reason, write_off)),
                    _ => None,
                })
                .collect()
        };
        // By default WooCommerce cancellations only release (core records no reason).
        let released = (Some("cancelled".to_owned()), false);
        assert_eq!(
            write_offs(&channel(), "cancelled"),
            vec![released.clone(), released]
        );
        let mut configured = channel();
        configured.write_off_cancel_reasons = Some(vec!["cancelled".into()]);
        let written_off = (Some("cancelled".to_owned()), true);
        assert_eq!(
            write_offs(&configured, "cancelled"),
            vec![written_off.clone(), written_off]
        );
        let failed = (Some("payment_failed".to_owned()), false);
        assert_eq!(
            write_offs(&configured, "failed"),
            vec![failed.clone(), failed]
        );
    }

    #[test]
    fn restocked_refund_units_become_returns_with_one_key_per_unit() {
        let channel = channel();
        let first = decode_order(&channel, &order("refunded", Some("1"))).unwrap();
        let second = decode_order(&channel, &order("refunded", Some("2"))).unwrap();
        let returns = |decoded: &Decoded| -> Vec<String> {
            decoded
                .movements
                .iter()
                .filter(|m| m.kind.name() == "return")
                .map(|m| m.idempotency_key.clone())
                .collect()
        };
        assert_eq!(returns(&first), vec!["woo:order:501:line:7:restock:1"]);
        assert_eq!(
            returns(&second),
            vec![
                "woo:order:501:line:7:restock:1",
                "woo:order:501:line:7:restock:2"
            ],
            "a later count only adds the new unit"
        );
        let no_restock = decode_order(&channel, &order("refunded", None)).unwrap();
        assert!(returns(&no_restock).is_empty());
    }

    fn edit_of(movement: &Movement) -> Option<(&str, &str, u64, i64)> {
        match &movement.kind {
            MovementKind::OrderEdit {
                reservation,
                quantity,
                version,
                ..
            } => Some((
                movement.sku.0.as_str(),
                reservation.as_str(),
                *quantity,
                *version,
            )),
            _ => None,
        }
    }

    #[test]
    fn an_updated_order_edits_every_line_and_a_vanished_known_line_goes_to_zero() {
        let channel = channel();
        let version = crate::ingest::timestamp_ms("2026-01-02T03:04:05").unwrap();
        assert_eq!(version, 1_767_323_045_000);
        let known = vec![
            KnownLine {
                line_id: "7".into(),
                sku: "MUG".into(),
            },
            KnownLine {
                line_id: "6".into(),
                sku: "BOWL".into(),
            },
        ];
        let decoded = decode_order_update(&channel, &order("processing", None), &known).unwrap();
        assert_eq!(
            kinds(&decoded),
            vec![
                ("MUG", "sale", "woo:order:501:line:7"),
                (
                    "MUG",
                    "order_edit",
                    "woo:order:501:line:7:edit:1767323045000"
                ),
                ("TEE-M", "sale", "woo:order:501:line:8"),
                (
                    "TEE-M",
                    "order_edit",
                    "woo:order:501:line:8:edit:1767323045000"
                ),
                (
                    "BOWL",
                    "order_edit",
                    "woo:order:501:line:6:edit:1767323045000"
                ),
            ]
        );
        let edits: Vec<_> = decoded.movements.iter().filter_map(edit_of).collect();
        assert_eq!(
            edits,
            vec![
                ("MUG", "woo:501:7", 2, version),
                ("TEE-M", "woo:501:8", 1, version),
                ("BOWL", "woo:501:6", 0, version),
            ]
        );
        for movement in &decoded.movements {
            assert_eq!(movement.validate(), Ok(()));
        }
        assert_eq!(
            decoded.lines,
            vec![
                KnownLine {
                    line_id: "7".into(),
                    sku: "MUG".into()
                },
                KnownLine {
                    line_id: "8".into(),
                    sku: "TEE-M".into()
                },
            ]
        );
        assert_eq!(decoded.version, Some(version));
        // A created order has no edits; a cancelled or refunded one neither.
        let created = decode_order(&channel, &order("processing", None)).unwrap();
        assert!(created.movements.iter().all(|m| edit_of(m).is_none()));
        for status in ["cancelled", "refunded", "pending"] {
            let decoded = decode_order_update(&channel, &order(status, None), &known).unwrap();
            assert!(
                decoded.movements.iter().all(|m| edit_of(m).is_none()),
                "{status}"
            );
        }
    }

    #[test]
    fn a_refunded_order_releases_its_hold_even_without_restock() {
        let channel = channel();
        let decoded = decode_order(&channel, &order("refunded", None)).unwrap();
        assert_eq!(
            kinds(&decoded)[..2],
            [
                ("MUG", "sale", "woo:order:501:line:7"),
                ("MUG", "cancellation", "woo:order:501:line:7:refunded"),
            ]
        );
        assert_eq!(
            decoded.movements[1].kind,
            MovementKind::Cancellation {
                reservation: "woo:501:7".into(),
                quantity: None,
                reason: Some("refunded".into()),
                write_off: false,
            }
        );
        // With restock, the returns come after the release (a shipped unit is restocked).
        let restocked = decode_order(&channel, &order("refunded", Some("1"))).unwrap();
        assert_eq!(
            kinds(&restocked)[..3],
            [
                ("MUG", "sale", "woo:order:501:line:7"),
                ("MUG", "cancellation", "woo:order:501:line:7:refunded"),
                ("MUG", "return", "woo:order:501:line:7:restock:1"),
            ]
        );
    }

    #[test]
    fn restocked_units_of_an_unshipped_order_are_released_not_returned() {
        let channel = channel();
        let decoded = decode_order(&channel, &order("processing", Some("1"))).unwrap();
        assert_eq!(
            kinds(&decoded)[..2],
            [
                ("MUG", "sale", "woo:order:501:line:7"),
                ("MUG", "cancellation", "woo:order:501:line:7:restock:1"),
            ]
        );
        assert_eq!(
            decoded.movements[1].kind,
            MovementKind::Cancellation {
                reservation: "woo:501:7".into(),
                quantity: Some(1),
                reason: Some("refunded".into()),
                write_off: false,
            }
        );
    }

    #[test]
    fn signatures_are_checked_over_the_raw_body_and_the_ping_is_recognised() {
        let channel = channel();
        let body = br#"{"id":501}"#;
        let headers = WebhookHeaders::from_pairs([
            ("X-WC-Webhook-Signature", sign(SECRET, body).as_bytes()),
            ("X-WC-Webhook-Topic", b"order.updated".as_slice()),
            ("X-WC-Delivery-ID", b"abc".as_slice()),
        ]);
        assert_eq!(headers.delivery_id.as_deref(), Some("abc"));
        assert!(headers.carries_order());
        assert_eq!(verify(&channel, &headers, body), Ok(()));
        assert_eq!(
            verify(&channel, &headers, br#"{"id":502}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, body, Some("not base64!")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(SECRET, body, None),
            Err(SignatureError::Missing)
        );
        let none = WebhookHeaders::default();
        assert_eq!(is_ping(&none, b"webhook_id=11"), Some("11".to_owned()));
        assert_eq!(
            is_ping(&headers, b"webhook_id=11"),
            None,
            "signed: not a ping"
        );
        assert_eq!(is_ping(&none, b"{}"), None);
    }

    #[test]
    fn the_delivery_key_uses_modified_date_and_status_not_the_weak_delivery_id() {
        let channel = channel();
        let processing = order("processing", None);
        let cancelled = order("cancelled", None);
        assert_ne!(
            delivery_key(&channel, "11", &processing),
            delivery_key(&channel, "11", &cancelled),
            "same second, different status"
        );
        assert_eq!(
            delivery_key(&channel, "11", &processing),
            delivery_key(&channel, "11", &order("processing", None))
        );
        assert_ne!(
            delivery_key(&channel, "11", &processing),
            delivery_key(&channel, "12", &processing)
        );
    }
}
