//! Shopify webhook decoder (PLATFORMS.md §1.6–1.8): IO-free.
//!
//! Owns: webhook header parsing ([`WebhookHeaders`]), HMAC signature verification
//! ([`verify_signature`], [`verify`]), topic names ([`WebhookTopic`]) and the translation of
//! order, cancellation and refund payloads into ledger [`Movement`]s ([`decode`]), including
//! the shapes of reservation ids and idempotency keys for Shopify order lines.
//!
//! May depend on: `domain`, `config`. Does no I/O: the HTTP receiver in `web` reads the
//! raw body and headers, calls [`verify`] *before* anything parses the body, dedupes
//! deliveries, then calls [`decode`] and submits the movements.
//!
//! Decisions (each one has a test below):
//! - Every order topic (`orders/create`, `orders/updated`, `orders/edited` when it carries an
//!   order, `orders/cancelled`) yields one [`MovementKind::Sale`] per stock line with the same
//!   reservation id and idempotency key, so whichever arrives first reserves and the others
//!   are duplicates (scenarios S2, S3). The sale's quantity is the line's original `quantity`
//!   (Shopify keeps it after edits; an added line's `quantity` is what the edit added).
//! - Order edits (issue 9 §1): `orders/updated` (and an order-shaped `orders/edited`) of an
//!   order that is not cancelled also yields, after each line's sale, one
//!   [`MovementKind::OrderEdit`] with the line's absolute target and `version` = the order's
//!   `updated_at` in milliseconds; key `{sale key}:edit:{version}`. Every line gets one on
//!   every update, not only the lines that differ from the sale: an edit back to the
//!   original quantity must be seen too, and a same-second edit that the ledger ignored
//!   (Shopify's `updated_at` has second resolution, so two edits in one second share a
//!   version) is healed by the next update of the order. The ledger ignores versions it has
//!   seen, so a late (older) `orders/updated` changes nothing.
//!   The target is `current_quantity` plus the units the order's `refunds` already took off
//!   the line with `restock_type` `cancel`, `return` or `legacy_restock`: Shopify lowers
//!   `current_quantity` for those as well, and the ledger counts them as cancelled or
//!   returned units of the same line (decoded from `refunds/create`), so subtracting them
//!   again would release twice. `no_restock` refunds are not added back (the ledger never
//!   saw them): open units refunded without restock are released by the edit. A payload
//!   without `updated_at` or without `current_quantity` yields no edit.
//! - An added line (present in an edited order, unknown to the ledger) is created by its
//!   sale with the channel's routing; a removed line has `current_quantity` 0 → edit to 0.
//! - An order that is cancelled (`orders/cancelled`, or any order payload with
//!   `cancelled_at` set) also yields one [`MovementKind::Cancellation`] per line with
//!   `quantity: None`, after the sale: only unshipped units are released (S4).
//! - `refunds/create`: `restock_type` `cancel` → `Cancellation { quantity: Some(q) }`;
//!   `return` and `legacy_restock` → `Return` at the location of ours mapped from the
//!   refund line's `location_id` (the first location feeding that Shopify location), or at
//!   the channel's first feeding location when the line names none or an unmapped one;
//!   `no_restock` lines and shipping-only refunds → nothing.
//! - POS orders (`source_name` `pos`, issue 16): the sale happened in the retail location
//!   `location_id`, so each line's sale reserves at the location of ours mapped from it and
//!   a [`MovementKind::Fulfilment`] of the whole line follows at once (key `{sale key}:pos`):
//!   on-hand drops, nothing stays held. A POS order at an unmapped location is routed like
//!   a web order and still shipped at once.
//! - `fulfillment_orders/order_routing_complete` and `fulfillment_orders/moved` carry only
//!   fulfillment order ids: [`Decoded::fulfillment_orders`] names them, and the receiver
//!   reads each back and decodes it with `ingest::shopify::fulfillment`.
//! - Lines are skipped (and reported in [`Decoded::skipped`]) when they have no SKU, are gift
//!   cards, have quantity 0, or have `variant_inventory_management: null` (the merchant told
//!   Shopify not to track stock for the variant: services, digital goods). A missing
//!   `variant_inventory_management` field is treated as tracked, so minimal payloads work.
//! - The real `orders/edited` body is an `order_edit` object (line ids and deltas, no SKUs);
//!   it yields nothing and [`Decoded::note`] says why: the `orders/updated` that Shopify
//!   sends with every committed edit carries the absolute quantities (a delta alone cannot
//!   be applied idempotently nor ordered against other edits).
//! - `inventory_levels/update` yields no movement; its fields are returned in
//!   [`Decoded::inventory_level`] for logging and, later, echo recognition (DESIGN.md §3.6).

use crate::config::ChannelConfig;
use crate::domain::{LocationId, Movement, MovementKind, SCHEMA_VERSION, Sku};
use serde::{Deserialize, Deserializer};

/// Why a webhook delivery is not authentic (PLATFORMS.md §1.7). Always answered with 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Shopify-Hmac-Sha256` (or `Shopify-Hmac-Sha256`) header.
    #[error("missing X-Shopify-Hmac-Sha256 header")]
    Missing,
    /// The header is not standard base64.
    #[error("X-Shopify-Hmac-Sha256 header is not base64")]
    Malformed,
    /// The signature does not match the body under the channel's secret (or the secret is empty).
    #[error("X-Shopify-Hmac-Sha256 does not match the body")]
    Mismatch,
}

/// Why a verified delivery could not be decoded. Answered with 400 (Shopify retries).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not the JSON resource expected for the topic.
    #[error("body is not a valid {topic} payload: {message}")]
    Payload {
        /// The topic (`orders/create`, …).
        topic: &'static str,
        /// The JSON parser's message (line and column included).
        message: String,
    },
    /// A restock needs a location, and the channel has none configured.
    #[error("channel {channel} has no feeding location to restock returns at")]
    NoLocation {
        /// The channel id.
        channel: String,
    },
}

/// Why a delivery could not be verified against a channel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The channel has no `[channels.shopify]` section, so no secret to verify with.
    #[error("channel {channel} is not a shopify channel")]
    NotShopify {
        /// The channel id.
        channel: String,
    },
    /// The signature is missing or wrong.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// The Shopify webhook headers this engine uses (PLATFORMS.md §1.7), looked up
/// case-insensitively, with or without the `X-` prefix (the "Events" product drops it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookHeaders {
    /// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body.
    pub hmac_sha256: Option<String>,
    /// `X-Shopify-Topic`, e.g. `orders/create`.
    pub topic: Option<String>,
    /// `X-Shopify-Webhook-Id`: one delivery (the same across retries of that delivery).
    pub webhook_id: Option<String>,
    /// `X-Shopify-Event-Id`: one event (the same across duplicate deliveries of it).
    pub event_id: Option<String>,
    /// `X-Shopify-Shop-Domain`.
    pub shop_domain: Option<String>,
    /// `X-Shopify-Triggered-At`.
    pub triggered_at: Option<String>,
    /// `X-Shopify-API-Version`.
    pub api_version: Option<String>,
}

impl WebhookHeaders {
    /// Collects the Shopify headers from `(name, value)` pairs. Names are matched
    /// case-insensitively; values that are not UTF-8 are ignored; the first occurrence wins.
    pub fn from_pairs<'a, I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut headers = Self::default();
        for (name, value) in pairs {
            let name = name.to_ascii_lowercase();
            let name = name.strip_prefix("x-").unwrap_or(&name);
            let slot = match name {
                "shopify-hmac-sha256" => &mut headers.hmac_sha256,
                "shopify-topic" => &mut headers.topic,
                "shopify-webhook-id" => &mut headers.webhook_id,
                "shopify-event-id" => &mut headers.event_id,
                "shopify-shop-domain" => &mut headers.shop_domain,
                "shopify-triggered-at" => &mut headers.triggered_at,
                "shopify-api-version" => &mut headers.api_version,
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

    /// The topic header parsed; [`WebhookTopic::Other`] when absent or unknown.
    pub fn topic(&self) -> WebhookTopic {
        self.topic
            .as_deref()
            .map(WebhookTopic::parse)
            .unwrap_or(WebhookTopic::Other)
    }
}

/// Webhook topics this engine understands (PLATFORMS.md §1.6). The string form is a bounded
/// metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookTopic {
    /// `orders/create`.
    OrdersCreate,
    /// `orders/updated`.
    OrdersUpdated,
    /// `orders/edited`.
    OrdersEdited,
    /// `orders/cancelled`.
    OrdersCancelled,
    /// `refunds/create`.
    RefundsCreate,
    /// `inventory_levels/update`.
    InventoryLevelsUpdate,
    /// `fulfillment_orders/order_routing_complete`: Shopify assigned a new order's units.
    FulfillmentOrdersRoutingComplete,
    /// `fulfillment_orders/moved`: a fulfillment order moved to another location.
    FulfillmentOrdersMoved,
    /// Any other topic (acknowledged, ignored).
    Other,
}

impl WebhookTopic {
    /// Parses a `X-Shopify-Topic` value; unknown topics become [`WebhookTopic::Other`].
    pub fn parse(topic: &str) -> Self {
        match topic.trim() {
            "orders/create" => Self::OrdersCreate,
            "orders/updated" => Self::OrdersUpdated,
            "orders/edited" => Self::OrdersEdited,
            "orders/cancelled" => Self::OrdersCancelled,
            "refunds/create" => Self::RefundsCreate,
            "inventory_levels/update" => Self::InventoryLevelsUpdate,
            "fulfillment_orders/order_routing_complete" => Self::FulfillmentOrdersRoutingComplete,
            "fulfillment_orders/moved" => Self::FulfillmentOrdersMoved,
            _ => Self::Other,
        }
    }

    /// The topic as Shopify writes it (`other` for unknown topics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrdersCreate => "orders/create",
            Self::OrdersUpdated => "orders/updated",
            Self::OrdersEdited => "orders/edited",
            Self::OrdersCancelled => "orders/cancelled",
            Self::RefundsCreate => "refunds/create",
            Self::InventoryLevelsUpdate => "inventory_levels/update",
            Self::FulfillmentOrdersRoutingComplete => "fulfillment_orders/order_routing_complete",
            Self::FulfillmentOrdersMoved => "fulfillment_orders/moved",
            Self::Other => "other",
        }
    }
}

/// Why a payload line produced no movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The line has no (or a blank) SKU.
    NoSku,
    /// The line is a gift card.
    GiftCard,
    /// `variant_inventory_management` is null: Shopify does not track stock for it.
    NotTracked,
    /// The line's quantity is 0.
    ZeroQuantity,
    /// A refund line with `restock_type: no_restock` (money back, goods not restocked).
    NoRestock,
    /// A refund line with a missing or unknown `restock_type`.
    UnknownRestockType,
}

impl SkipReason {
    /// A bounded label (`no_sku`, `gift_card`, …) for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSku => "no_sku",
            Self::GiftCard => "gift_card",
            Self::NotTracked => "not_tracked",
            Self::ZeroQuantity => "zero_quantity",
            Self::NoRestock => "no_restock",
            Self::UnknownRestockType => "unknown_restock_type",
        }
    }
}

/// A payload line that produced no movement, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// The Shopify id of the order line (or refund line).
    pub line_id: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// An `inventory_levels/update` payload (PLATFORMS.md §1.6): Shopify's own stock figure.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct InventoryLevelUpdate {
    /// Shopify InventoryItem id.
    #[serde(deserialize_with = "id_string")]
    pub inventory_item_id: String,
    /// Shopify location id.
    #[serde(deserialize_with = "id_string")]
    pub location_id: String,
    /// Units available at Shopify (may be null for untracked items; may be negative).
    #[serde(default)]
    pub available: Option<i64>,
    /// When Shopify changed it (RFC 3339 text as sent).
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// The outcome of decoding one verified delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The topic decoded.
    pub topic: WebhookTopic,
    /// Movements to submit, in this order (a line's sale before its cancellation).
    pub movements: Vec<Movement>,
    /// Lines that produced nothing, with the reason.
    pub skipped: Vec<SkippedLine>,
    /// The stock figure of an `inventory_levels/update`, otherwise `None`.
    pub inventory_level: Option<InventoryLevelUpdate>,
    /// Why a delivery of a stock topic yielded nothing on purpose (shown in the answer).
    pub note: Option<String>,
    /// Fulfillment orders named by a `fulfillment_orders/*` delivery, to be read back
    /// (thin payloads carry no lines; see `ingest::shopify::fulfillment`).
    pub fulfillment_orders: Vec<u64>,
}

/// `source` of every movement decoded for `channel`: `shopify:{channel id}` (a bounded label).
pub fn source_label(channel: &ChannelConfig) -> String {
    format!("shopify:{}", channel.id)
}

/// Reservation id of an order line: `{channel}:{order_id}:{line_id}`.
pub fn reservation_id(channel: &ChannelConfig, order_id: &str, line_id: &str) -> String {
    format!("{}:{order_id}:{line_id}", channel.id)
}

/// Idempotency key of an order line's sale: `{channel}:order:{order_id}:line:{line_id}`.
/// The same from every order topic, so redeliveries and `orders/updated` deduplicate.
pub fn sale_key(channel: &ChannelConfig, order_id: &str, line_id: &str) -> String {
    format!("{}:order:{order_id}:line:{line_id}", channel.id)
}

/// Idempotency key of an order line's cancellation: `{sale_key}:cancel`.
pub fn cancellation_key(channel: &ChannelConfig, order_id: &str, line_id: &str) -> String {
    format!("{}:cancel", sale_key(channel, order_id, line_id))
}

/// Idempotency key of an order line's edit at `version` (the order's `updated_at` in
/// milliseconds): `{sale_key}:edit:{version}`.
pub fn edit_key(channel: &ChannelConfig, order_id: &str, line_id: &str, version: i64) -> String {
    format!("{}:edit:{version}", sale_key(channel, order_id, line_id))
}

/// Idempotency key of a refund line: `{channel}:refund:{refund_id}:line:{refund_line_id}`.
pub fn refund_key(channel: &ChannelConfig, refund_id: &str, refund_line_id: &str) -> String {
    format!("{}:refund:{refund_id}:line:{refund_line_id}", channel.id)
}

/// Computes the signature Shopify sends: base64(HMAC-SHA256(secret, body)). Used by the
/// simulators and tests to sign deliveries.
pub fn sign(secret: &str, body: &[u8]) -> String {
    crate::signing::sign(secret, body)
}

/// Checks `signature` (the `X-Shopify-Hmac-Sha256` value) against the raw `body` in
/// constant time (PLATFORMS.md §1.7). Call it before parsing the body.
///
/// Errors: [`SignatureError::Missing`] without a header, [`SignatureError::Malformed`] when
/// it is not base64, [`SignatureError::Mismatch`] otherwise (also for an empty secret).
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

/// Verifies a delivery for `channel` with its `shopify.webhook_secret`.
///
/// Errors: [`WebhookError::NotShopify`] when the channel has no Shopify section,
/// [`WebhookError::Signature`] when the signature is missing or wrong.
pub fn verify(
    channel: &ChannelConfig,
    headers: &WebhookHeaders,
    body: &[u8],
) -> Result<(), WebhookError> {
    let shopify = channel.shopify().ok_or_else(|| WebhookError::NotShopify {
        channel: channel.id.clone(),
    })?;
    verify_signature(
        &shopify.webhook_secret,
        body,
        headers.hmac_sha256.as_deref(),
    )?;
    Ok(())
}

/// Decodes a *verified* delivery body of `topic` for `channel` into movements.
///
/// Order topics and refunds follow the rules in the module docs. `inventory_levels/update`
/// returns its figure in [`Decoded::inventory_level`]; other topics yield nothing.
///
/// Errors: [`DecodeError::Payload`] when the body is not the topic's JSON resource,
/// [`DecodeError::NoLocation`] when a restock has no location to go to.
pub fn decode(
    channel: &ChannelConfig,
    topic: WebhookTopic,
    body: &[u8],
) -> Result<Decoded, DecodeError> {
    let mut decoded = Decoded {
        topic,
        movements: Vec::new(),
        skipped: Vec::new(),
        inventory_level: None,
        note: None,
        fulfillment_orders: Vec::new(),
    };
    match topic {
        WebhookTopic::OrdersCreate => {
            let order: OrderPayload = parse(topic, body, Some("order"))?;
            decode_order(channel, &order, OrderTopic::Created, &mut decoded);
        }
        WebhookTopic::OrdersUpdated => {
            let order: OrderPayload = parse(topic, body, Some("order"))?;
            decode_order(channel, &order, OrderTopic::Updated, &mut decoded);
        }
        WebhookTopic::OrdersCancelled => {
            let order: OrderPayload = parse(topic, body, Some("order"))?;
            decode_order(channel, &order, OrderTopic::Cancelled, &mut decoded);
        }
        WebhookTopic::OrdersEdited => {
            // The real body is `{"order_edit": {...}}` with ids and deltas only; the
            // `orders/updated` that follows carries the lines. An order-shaped body is decoded.
            let value: serde_json::Value = parse(topic, body, None)?;
            if value
                .get("line_items")
                .is_some_and(serde_json::Value::is_array)
            {
                let order: OrderPayload = from_value(topic, value)?;
                decode_order(channel, &order, OrderTopic::Updated, &mut decoded);
            } else {
                decoded.note = Some(
                    "orders/edited carries line deltas only; the edit is applied from the orders/updated that follows it"
                        .to_owned(),
                );
            }
        }
        WebhookTopic::RefundsCreate => {
            let refund: RefundPayload = parse(topic, body, Some("refund"))?;
            decode_refund(channel, &refund, &mut decoded)?;
        }
        WebhookTopic::InventoryLevelsUpdate => {
            decoded.inventory_level = Some(parse(topic, body, Some("inventory_level"))?);
        }
        WebhookTopic::FulfillmentOrdersRoutingComplete => {
            let payload: RoutingCompletePayload = parse(topic, body, None)?;
            decoded.fulfillment_orders =
                fulfillment_order_ids(topic, [&payload.fulfillment_order])?;
        }
        WebhookTopic::FulfillmentOrdersMoved => {
            let payload: MovedPayload = parse(topic, body, None)?;
            decoded.fulfillment_orders = fulfillment_order_ids(
                topic,
                [
                    &payload.moved_fulfillment_order,
                    &payload.original_fulfillment_order,
                ],
            )?;
        }
        WebhookTopic::Other => {}
    }
    Ok(decoded)
}

/// Parses `body` as `T`, unwrapping a `{"<wrapper>": {...}}` envelope when present (the REST
/// API wraps resources; webhooks send them bare).
fn parse<T: serde::de::DeserializeOwned>(
    topic: WebhookTopic,
    body: &[u8],
    wrapper: Option<&str>,
) -> Result<T, DecodeError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| DecodeError::Payload {
            topic: topic.as_str(),
            message: error.to_string(),
        })?;
    if let Some(wrapper) = wrapper
        && let Some(object) = value.as_object_mut()
        && object.len() == 1
        && let Some(inner) = object.remove(wrapper)
    {
        value = inner;
    }
    from_value(topic, value)
}

fn from_value<T: serde::de::DeserializeOwned>(
    topic: WebhookTopic,
    value: serde_json::Value,
) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|error| DecodeError::Payload {
        topic: topic.as_str(),
        message: error.to_string(),
    })
}

/// True for an order rung up in a retail location (`source_name` `pos`).
pub(super) fn is_pos(source_name: Option<&str>) -> bool {
    source_name.is_some_and(|source| source.eq_ignore_ascii_case("pos"))
}

/// A movement decoded for `channel` (its source label, no source time).
pub(super) fn movement(
    channel: &ChannelConfig,
    key: String,
    sku: &str,
    kind: MovementKind,
) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: Sku::from(sku),
        idempotency_key: key,
        source: source_label(channel),
        occurred_at_ms: None,
        kind,
    }
}

/// The SKU of a line, or why it carries no stock.
fn stock_sku(line: &LineItemPayload) -> Result<&str, SkipReason> {
    if line.gift_card {
        return Err(SkipReason::GiftCard);
    }
    let sku = line.sku.as_deref().map(str::trim).unwrap_or("");
    if sku.is_empty() {
        return Err(SkipReason::NoSku);
    }
    if matches!(line.variant_inventory_management, Some(None)) {
        return Err(SkipReason::NotTracked);
    }
    Ok(sku)
}

/// Which order topic a payload came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OrderTopic {
    /// `orders/create`: sales only.
    Created,
    /// `orders/updated` or an order-shaped `orders/edited`: sales and edits.
    Updated,
    /// `orders/cancelled`: sales and cancellations.
    Cancelled,
}

fn decode_order(
    channel: &ChannelConfig,
    order: &OrderPayload,
    topic: OrderTopic,
    decoded: &mut Decoded,
) {
    let cancelled = topic == OrderTopic::Cancelled || order.cancelled_at.is_some();
    let version = match topic {
        OrderTopic::Updated if !cancelled => order
            .updated_at
            .as_deref()
            .and_then(crate::ingest::timestamp_ms),
        _ => None,
    };
    // A POS sale happened in a retail location: reserve there and ship at once.
    let pos = is_pos(order.source_name.as_deref());
    let pos_location = order
        .location_id
        .filter(|_| pos)
        .and_then(|id| our_location(channel, id));
    for line in &order.line_items {
        let sku = match stock_sku(line) {
            Ok(_) if line.quantity == 0 => Err(SkipReason::ZeroQuantity),
            other => other,
        };
        let sku = match sku {
            Ok(sku) => sku,
            Err(reason) => {
                decoded.skipped.push(SkippedLine {
                    line_id: line.id.clone(),
                    reason,
                });
                continue;
            }
        };
        let reservation = reservation_id(channel, &order.id, &line.id);
        let route = if pos_location.is_some() {
            Vec::new()
        } else {
            channel.locations.clone()
        };
        let location = pos_location.clone();
        decoded.movements.push(movement(
            channel,
            sale_key(channel, &order.id, &line.id),
            sku,
            MovementKind::Sale {
                reservation: reservation.clone(),
                quantity: line.quantity,
                location: location.clone(),
                route,
            },
        ));
        if pos {
            decoded.movements.push(movement(
                channel,
                pos_fulfilment_key(channel, &order.id, &line.id),
                sku,
                MovementKind::Fulfilment {
                    reservation: reservation.clone(),
                    quantity: line.quantity,
                    location,
                },
            ));
        }
        if let (Some(version), Some(current)) = (version, line.current_quantity) {
            let target = current.saturating_add(order.refunded_with_stock_effect(&line.id));
            decoded.movements.push(movement(
                channel,
                edit_key(channel, &order.id, &line.id, version),
                sku,
                MovementKind::OrderEdit {
                    reservation: reservation.clone(),
                    quantity: target,
                    version,
                    location: None,
                    route: channel.locations.clone(),
                },
            ));
        }
        if cancelled {
            decoded.movements.push(movement(
                channel,
                cancellation_key(channel, &order.id, &line.id),
                sku,
                order_cancellation(channel, reservation, order.cancel_reason.as_deref()),
            ));
        }
    }
}

/// The cancellation of every unshipped unit of a line of an order cancelled with Shopify's
/// `cancel_reason`: recorded as the movement's reason, and a write-off when the channel's
/// `write_off_cancel_reasons` (default `inventory`) lists it.
fn order_cancellation(
    channel: &ChannelConfig,
    reservation: String,
    cancel_reason: Option<&str>,
) -> MovementKind {
    let reason = cancel_reason
        .map(str::trim)
        .filter(|reason| !reason.is_empty());
    MovementKind::Cancellation {
        reservation,
        quantity: None,
        reason: reason.map(str::to_owned),
        write_off: reason.is_some_and(|reason| channel.writes_off_on_cancel(reason)),
    }
}

fn decode_refund(
    channel: &ChannelConfig,
    refund: &RefundPayload,
    decoded: &mut Decoded,
) -> Result<(), DecodeError> {
    for refund_line in &refund.refund_line_items {
        let skip = |reason| SkippedLine {
            line_id: refund_line.id.clone(),
            reason,
        };
        let sku = match refund_line.line_item.as_ref().map(stock_sku) {
            Some(Ok(sku)) => sku,
            Some(Err(reason)) => {
                decoded.skipped.push(skip(reason));
                continue;
            }
            None => {
                decoded.skipped.push(skip(SkipReason::NoSku));
                continue;
            }
        };
        if refund_line.quantity == 0 {
            decoded.skipped.push(skip(SkipReason::ZeroQuantity));
            continue;
        }
        let reservation = reservation_id(channel, &refund.order_id, &refund_line.line_item_id);
        let key = refund_key(channel, &refund.id, &refund_line.id);
        let kind = match refund_line.restock_type.as_deref() {
            Some("cancel") => MovementKind::Cancellation {
                reason: None,
                reservation,
                quantity: Some(refund_line.quantity),
                write_off: false,
            },
            Some("return") | Some("legacy_restock") => MovementKind::Return {
                location: Some(restock_location(channel, refund_line.location_id)?),
                quantity: refund_line.quantity,
                reservation: Some(reservation),
                restock: true,
            },
            Some("no_restock") => {
                decoded.skipped.push(skip(SkipReason::NoRestock));
                continue;
            }
            _ => {
                decoded.skipped.push(skip(SkipReason::UnknownRestockType));
                continue;
            }
        };
        decoded.movements.push(movement(channel, key, sku, kind));
    }
    Ok(())
}

/// Where restocked units go: the location of ours mapped from the refund line's Shopify
/// `location_id` (the first that feeds it), else the channel's first feeding location.
fn restock_location(
    channel: &ChannelConfig,
    shopify_location: Option<u64>,
) -> Result<LocationId, DecodeError> {
    shopify_location
        .and_then(|id| our_location(channel, id))
        .or_else(|| channel.locations.first().cloned())
        .ok_or_else(|| DecodeError::NoLocation {
            channel: channel.id.clone(),
        })
}

/// The location of ours that takes stock effects at Shopify location `shopify_location`: the
/// first that feeds it (config order), `None` when the channel does not map it.
pub fn our_location(channel: &ChannelConfig, shopify_location: u64) -> Option<LocationId> {
    super::fulfillment::feeds(channel, shopify_location)
        .into_iter()
        .next()
}

/// Idempotency key of the fulfilment of a POS order line (shipped at the sale):
/// `{sale key}:pos`.
pub fn pos_fulfilment_key(channel: &ChannelConfig, order_id: &str, line_id: &str) -> String {
    format!("{}:pos", sale_key(channel, order_id, line_id))
}

/// The distinct FO ids of a `fulfillment_orders/*` payload's FO references, in order.
fn fulfillment_order_ids<'a>(
    topic: WebhookTopic,
    references: impl IntoIterator<Item = &'a Option<FulfillmentOrderRef>>,
) -> Result<Vec<u64>, DecodeError> {
    let mut ids = Vec::new();
    for reference in references.into_iter().flatten() {
        let id = crate::channels::shopify::config::parse_gid(&reference.id, "FulfillmentOrder")
            .or_else(|| reference.id.parse().ok())
            .ok_or_else(|| DecodeError::Payload {
                topic: topic.as_str(),
                message: format!("{:?} is not a fulfillment order id", reference.id),
            })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(DecodeError::Payload {
            topic: topic.as_str(),
            message: "no fulfillment order named".to_owned(),
        });
    }
    Ok(ids)
}

/// A fulfillment order as the thin `fulfillment_orders/*` payloads name it.
#[derive(Debug, Deserialize)]
struct FulfillmentOrderRef {
    /// `gid://shopify/FulfillmentOrder/N`.
    #[serde(deserialize_with = "id_string")]
    id: String,
}

#[derive(Debug, Deserialize)]
struct RoutingCompletePayload {
    #[serde(default)]
    fulfillment_order: Option<FulfillmentOrderRef>,
}

#[derive(Debug, Deserialize)]
struct MovedPayload {
    #[serde(default)]
    original_fulfillment_order: Option<FulfillmentOrderRef>,
    #[serde(default)]
    moved_fulfillment_order: Option<FulfillmentOrderRef>,
}

#[derive(Debug, Deserialize)]
struct OrderPayload {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(default)]
    cancelled_at: Option<String>,
    /// `customer`, `inventory`, `fraud`, `declined`, `staff`, `other` (or null).
    #[serde(default)]
    cancel_reason: Option<String>,
    /// Last change (RFC 3339); the version of the edits decoded from this payload.
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    line_items: Vec<LineItemPayload>,
    /// Where the order came from: `web`, `pos` (a sale in a retail location), an app's name.
    #[serde(default)]
    source_name: Option<String>,
    /// The order's location: legacy and often null for web orders; for POS orders the
    /// retail location of the sale (PLATFORMS.md §1.6).
    #[serde(default, deserialize_with = "optional_id")]
    location_id: Option<u64>,
    /// The order's refunds so far (Shopify's order resource embeds them).
    #[serde(default)]
    refunds: Vec<OrderRefundPayload>,
}

impl OrderPayload {
    /// Units of line `line_id` that refunds took off with a stock effect the ledger knows
    /// (`cancel`, `return`, `legacy_restock`): Shopify's `current_quantity` excludes them.
    fn refunded_with_stock_effect(&self, line_id: &str) -> u64 {
        self.refunds
            .iter()
            .flat_map(|refund| &refund.refund_line_items)
            .filter(|line| line.line_item_id == line_id)
            .filter(|line| {
                matches!(
                    line.restock_type.as_deref(),
                    Some("cancel" | "return" | "legacy_restock")
                )
            })
            .fold(0u64, |sum, line| sum.saturating_add(line.quantity))
    }
}

/// A refund embedded in an order resource: only what the edit target needs.
#[derive(Debug, Deserialize)]
struct OrderRefundPayload {
    #[serde(default)]
    refund_line_items: Vec<OrderRefundLinePayload>,
}

#[derive(Debug, Deserialize)]
struct OrderRefundLinePayload {
    #[serde(deserialize_with = "id_string")]
    line_item_id: String,
    #[serde(default)]
    quantity: u64,
    #[serde(default)]
    restock_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LineItemPayload {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    quantity: u64,
    /// The quantity after edits and refunds; absent in minimal payloads (then no edit).
    #[serde(default)]
    current_quantity: Option<u64>,
    #[serde(default)]
    gift_card: bool,
    /// `None`: field absent (treated as tracked); `Some(None)`: explicitly null (untracked).
    #[serde(default, deserialize_with = "present")]
    variant_inventory_management: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
struct RefundPayload {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(deserialize_with = "id_string")]
    order_id: String,
    #[serde(default)]
    refund_line_items: Vec<RefundLinePayload>,
}

#[derive(Debug, Deserialize)]
struct RefundLinePayload {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(deserialize_with = "id_string")]
    line_item_id: String,
    quantity: u64,
    #[serde(default)]
    restock_type: Option<String>,
    /// The Shopify location restocked units go to.
    #[serde(default, deserialize_with = "optional_id")]
    location_id: Option<u64>,
    #[serde(default)]
    line_item: Option<LineItemPayload>,
}

/// Shopify ids are JSON numbers (u64, beyond f64 precision) in REST payloads; accept strings
/// too so a simulator or proxy that quotes them still works.
fn id_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Number(number) => number.to_string(),
        Id::Text(text) => text,
    })
}

/// An optional Shopify id: absent or null → `None`; a number, a numeric string or a
/// `gid://shopify/Location/N` → `Some(N)`; anything else is an error.
fn optional_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Option::<Id>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Id::Number(number)) => Ok(Some(number)),
        Some(Id::Text(text)) => text
            .parse()
            .ok()
            .or_else(|| crate::channels::shopify::config::parse_gid(&text, "Location"))
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a Shopify id"))),
    }
}

/// Distinguishes a present-but-null field (`Some(None)`) from an absent one (`None`, via
/// `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PlatformConfig, ShopifyConfig};

    const SECRET: &str = "hush-test-secret";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/shopify/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn channel() -> ChannelConfig {
        ChannelConfig {
            allocation: Default::default(),
            preorder: None,
            show_zero_below: 0,
            id: "shop-main".into(),
            locations: vec!["WH-1".into(), "WH-2".into()],
            safety_stock: 0,
            max_listed_quantity: None,
            rate_limit: Default::default(),
            retry: Default::default(),
            write_off_cancel_reasons: None,
            mode: Default::default(),
            platform: PlatformConfig::Shopify(ShopifyConfig {
                shop_url: "http://127.0.0.1:1".into(),
                api_version: "2026-04".into(),
                access_token: "token".into(),
                webhook_secret: SECRET.into(),
                location_id: Some(61000000001),
                location_map: Vec::new(),
                use_rest: false,
                listings: Vec::new(),
                listings_csv: None,
                orders_poll_interval_secs: 0,
                orders_poll_on_conflict: true,
                orders_poll_lookback_secs: 3600,
            }),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> WebhookHeaders {
        WebhookHeaders::from_pairs(pairs.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    fn sale(key: &str, sku: &str, reservation: &str, quantity: u64) -> Movement {
        Movement {
            schema_version: SCHEMA_VERSION,
            sku: sku.into(),
            idempotency_key: key.into(),
            source: "shopify:shop-main".into(),
            occurred_at_ms: None,
            kind: MovementKind::Sale {
                reservation: reservation.into(),
                quantity,
                location: None,
                route: vec!["WH-1".into(), "WH-2".into()],
            },
        }
    }

    #[test]
    fn the_signature_matches_a_published_hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?",
        // HMAC-SHA256 5bdcc146…64ec3843, here in base64 as Shopify sends it.
        let signature = sign("Jefe", b"what do ya want for nothing?");
        assert_eq!(signature, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
        assert_eq!(
            verify_signature("Jefe", b"what do ya want for nothing?", Some(&signature)),
            Ok(())
        );
    }

    #[test]
    fn a_good_signature_verifies() {
        let body = fixture("orders_create.json");
        let signature = sign(SECRET, &body);
        let headers = headers(&[("X-Shopify-Hmac-Sha256", &signature)]);
        assert_eq!(verify(&channel(), &headers, &body), Ok(()));
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let body = fixture("orders_create.json");
        let signature = sign(SECRET, &body);
        let mut tampered = body.clone();
        let position = tampered.iter().position(|b| *b == b'1').unwrap();
        tampered[position] = b'9';
        assert_eq!(
            verify_signature(SECRET, &tampered, Some(&signature)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_refused() {
        let body = fixture("orders_create.json");
        let headers = headers(&[("X-Shopify-Topic", "orders/create")]);
        assert_eq!(
            verify(&channel(), &headers, &body),
            Err(WebhookError::Signature(SignatureError::Missing))
        );
    }

    #[test]
    fn a_signature_made_with_another_secret_is_refused() {
        let body = fixture("orders_create.json");
        let signature = sign("some-other-secret", &body);
        assert_eq!(
            verify_signature(SECRET, &body, Some(&signature)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("", &body, Some(&sign("", &body))),
            Err(SignatureError::Mismatch),
            "an empty secret never verifies"
        );
    }

    #[test]
    fn a_header_that_is_not_base64_is_malformed() {
        assert_eq!(
            verify_signature(SECRET, b"{}", Some("not base64!")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn header_names_are_case_insensitive_and_the_prefix_is_optional() {
        let body = fixture("orders_create.json");
        let signature = sign(SECRET, &body);
        for name in [
            "x-shopify-hmac-sha256",
            "X-SHOPIFY-HMAC-SHA256",
            "X-Shopify-Hmac-SHA256",
            "Shopify-Hmac-Sha256",
        ] {
            let headers = headers(&[(name, &signature), ("x-SHOPIFY-topic", "orders/create")]);
            assert_eq!(verify(&channel(), &headers, &body), Ok(()), "{name}");
            assert_eq!(headers.topic(), WebhookTopic::OrdersCreate);
        }
    }

    #[test]
    fn headers_are_collected() {
        let headers = headers(&[
            ("X-Shopify-Topic", "refunds/create"),
            (
                "X-Shopify-Webhook-Id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
            ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
            ("X-Shopify-Shop-Domain", "invented-shop.myshopify.com"),
            ("X-Shopify-Triggered-At", "2026-03-20T13:14:52.000000Z"),
            ("X-Shopify-API-Version", "2026-04"),
            ("Content-Type", "application/json"),
        ]);
        assert_eq!(headers.topic(), WebhookTopic::RefundsCreate);
        assert_eq!(
            headers.event_id.as_deref(),
            Some("98880550-7158-44d4-b7cd-2c97c8a091b5")
        );
        assert_eq!(
            headers.webhook_id.as_deref(),
            Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
        );
        assert_eq!(headers.api_version.as_deref(), Some("2026-04"));
        assert_eq!(headers.hmac_sha256, None);
    }

    #[test]
    fn orders_create_reserves_each_stock_line_and_skips_the_gift_card() {
        let decoded = decode(
            &channel(),
            WebhookTopic::OrdersCreate,
            &fixture("orders_create.json"),
        )
        .unwrap();
        assert_eq!(
            decoded.movements,
            vec![
                sale(
                    "shop-main:order:5872300001001:line:14000000000101",
                    "SKU-D",
                    "shop-main:5872300001001:14000000000101",
                    1
                ),
                sale(
                    "shop-main:order:5872300001001:line:14000000000102",
                    "SKU-K",
                    "shop-main:5872300001001:14000000000102",
                    2
                ),
            ]
        );
        assert_eq!(
            decoded.skipped,
            vec![SkippedLine {
                line_id: "14000000000103".into(),
                reason: SkipReason::GiftCard
            }]
        );
        for movement in &decoded.movements {
            assert_eq!(movement.validate(), Ok(()));
        }
    }

    #[test]
    fn orders_updated_yields_the_same_movements_as_orders_create() {
        let created = decode(
            &channel(),
            WebhookTopic::OrdersCreate,
            &fixture("orders_create.json"),
        )
        .unwrap();
        let updated = decode(
            &channel(),
            WebhookTopic::OrdersUpdated,
            &fixture("orders_updated.json"),
        )
        .unwrap();
        // The same sales (issue 9 §1 adds one edit per line after each sale).
        let sales: Vec<Movement> = updated
            .movements
            .iter()
            .filter(|m| m.kind.name() == "sale")
            .cloned()
            .collect();
        assert_eq!(created.movements, sales);
        let version = crate::ingest::timestamp_ms("2026-03-14T10:25:40-04:00").unwrap();
        let edits: Vec<(&str, &MovementKind)> = updated
            .movements
            .iter()
            .filter(|m| m.kind.name() == "order_edit")
            .map(|m| (m.idempotency_key.as_str(), &m.kind))
            .collect();
        assert_eq!(
            edits,
            vec![
                (
                    "shop-main:order:5872300001001:line:14000000000101:edit:1773498340000",
                    &edit("shop-main:5872300001001:14000000000101", 1, version)
                ),
                (
                    "shop-main:order:5872300001001:line:14000000000102:edit:1773498340000",
                    &edit("shop-main:5872300001001:14000000000102", 2, version)
                ),
            ]
        );
    }

    fn edit(reservation: &str, quantity: u64, version: i64) -> MovementKind {
        MovementKind::OrderEdit {
            reservation: reservation.into(),
            quantity,
            version,
            location: None,
            route: vec!["WH-1".into(), "WH-2".into()],
        }
    }

    /// Order 7001 of issue 9 §1 as Shopify sends it after edit v3 (L1 3 → 1, L2 removed)
    /// and edit v4 (L3 R×4 added), with the given `updated_at`, L3's current quantity and
    /// refunds.
    fn edited_order(updated_at: &str, l3_current: u64, refunds: &str) -> Vec<u8> {
        format!(
            r#"{{"id": 7001, "updated_at": "{updated_at}", "cancelled_at": null,
               "line_items": [
                 {{"id": 1, "sku": "SKU-P", "quantity": 3, "current_quantity": 1}},
                 {{"id": 2, "sku": "SKU-Q", "quantity": 2, "current_quantity": 0}},
                 {{"id": 3, "sku": "SKU-R", "quantity": 4, "current_quantity": {l3_current}}}
               ],
               "refunds": [{refunds}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn an_edited_order_yields_absolute_targets_versioned_by_updated_at() {
        let body = edited_order("2026-03-14T14:25:40.250Z", 1, "");
        let decoded = decode(&channel(), WebhookTopic::OrdersUpdated, &body).unwrap();
        let version = 1_773_498_340_250;
        let shapes: Vec<(&str, &str, &MovementKind)> = decoded
            .movements
            .iter()
            .map(|m| (m.sku.as_str(), m.idempotency_key.as_str(), &m.kind))
            .collect();
        assert_eq!(
            shapes,
            vec![
                (
                    "SKU-P",
                    "shop-main:order:7001:line:1",
                    &sale("k", "SKU-P", "shop-main:7001:1", 3).kind
                ),
                (
                    "SKU-P",
                    "shop-main:order:7001:line:1:edit:1773498340250",
                    &edit("shop-main:7001:1", 1, version)
                ),
                (
                    "SKU-Q",
                    "shop-main:order:7001:line:2",
                    &sale("k", "SKU-Q", "shop-main:7001:2", 2).kind
                ),
                (
                    "SKU-Q",
                    "shop-main:order:7001:line:2:edit:1773498340250",
                    &edit("shop-main:7001:2", 0, version)
                ),
                (
                    "SKU-R",
                    "shop-main:order:7001:line:3",
                    &sale("k", "SKU-R", "shop-main:7001:3", 4).kind
                ),
                (
                    "SKU-R",
                    "shop-main:order:7001:line:3:edit:1773498340250",
                    &edit("shop-main:7001:3", 1, version)
                ),
            ]
        );
        for movement in &decoded.movements {
            assert_eq!(movement.validate(), Ok(()));
        }
        // The same payload redelivered gives the same keys (duplicates in the ledger); a
        // later update gives new keys with a higher version.
        let again = decode(&channel(), WebhookTopic::OrdersUpdated, &body).unwrap();
        assert_eq!(again.movements, decoded.movements);
        let later = decode(
            &channel(),
            WebhookTopic::OrdersUpdated,
            &edited_order("2026-03-14T14:25:41Z", 1, ""),
        )
        .unwrap();
        assert!(matches!(
            later.movements[1].kind,
            MovementKind::OrderEdit {
                version: 1_773_498_341_000,
                ..
            }
        ));
    }

    #[test]
    fn units_refunded_with_a_stock_effect_are_added_back_to_the_target() {
        // L3: 4 ordered, 1 cancelled by a refund (restock_type cancel), 1 returned, 1
        // refunded without restock: current_quantity 1. The ledger counts the cancelled
        // and the returned unit itself, so the target is 1 + 1 + 1 = 3.
        let refunds = r#"{"id": 9, "refund_line_items": [
              {"id": 91, "line_item_id": 3, "quantity": 1, "restock_type": "cancel"},
              {"id": 92, "line_item_id": 3, "quantity": 1, "restock_type": "return"},
              {"id": 93, "line_item_id": 3, "quantity": 1, "restock_type": "no_restock"},
              {"id": 94, "line_item_id": 1, "quantity": 1, "restock_type": "cancel"}]}"#;
        let body = edited_order("2026-03-14T14:25:40Z", 1, refunds);
        let decoded = decode(&channel(), WebhookTopic::OrdersUpdated, &body).unwrap();
        let targets: Vec<(&str, u64)> = decoded
            .movements
            .iter()
            .filter_map(|m| match &m.kind {
                MovementKind::OrderEdit { quantity, .. } => Some((m.sku.as_str(), *quantity)),
                _ => None,
            })
            .collect();
        assert_eq!(targets, vec![("SKU-P", 2), ("SKU-Q", 0), ("SKU-R", 3)]);
    }

    #[test]
    fn created_cancelled_and_unversioned_orders_yield_no_edit() {
        let body = edited_order("2026-03-14T14:25:40Z", 1, "");
        for topic in [WebhookTopic::OrdersCreate, WebhookTopic::OrdersCancelled] {
            let decoded = decode(&channel(), topic, &body).unwrap();
            assert!(
                decoded
                    .movements
                    .iter()
                    .all(|m| m.kind.name() != "order_edit"),
                "{topic:?}"
            );
        }
        let cancelled = String::from_utf8(body).unwrap().replace(
            r#""cancelled_at": null"#,
            r#""cancelled_at": "2026-03-14T14:30:00Z""#,
        );
        let decoded = decode(
            &channel(),
            WebhookTopic::OrdersUpdated,
            cancelled.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            decoded
                .movements
                .iter()
                .filter(|m| m.kind.name() == "order_edit")
                .count(),
            0
        );
        assert_eq!(
            decoded
                .movements
                .iter()
                .filter(|m| m.kind.name() == "cancellation")
                .count(),
            3
        );
        let unversioned = edited_order("not a time", 1, "");
        let decoded = decode(&channel(), WebhookTopic::OrdersUpdated, &unversioned).unwrap();
        assert_eq!(decoded.movements.len(), 3);
    }

    #[test]
    fn orders_cancelled_cancels_every_line_after_its_sale() {
        let decoded = decode(
            &channel(),
            WebhookTopic::OrdersCancelled,
            &fixture("orders_cancelled.json"),
        )
        .unwrap();
        let kinds: Vec<(&str, &str)> = decoded
            .movements
            .iter()
            .map(|m| (m.kind.name(), m.idempotency_key.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("sale", "shop-main:order:5872300001001:line:14000000000101"),
                (
                    "cancellation",
                    "shop-main:order:5872300001001:line:14000000000101:cancel"
                ),
                ("sale", "shop-main:order:5872300001001:line:14000000000102"),
                (
                    "cancellation",
                    "shop-main:order:5872300001001:line:14000000000102:cancel"
                ),
            ]
        );
        // The order's `cancel_reason` is recorded; `customer` releases only.
        assert_eq!(
            decoded.movements[1].kind,
            MovementKind::Cancellation {
                reason: Some("customer".into()),
                reservation: "shop-main:5872300001001:14000000000101".into(),
                quantity: None,
                write_off: false
            }
        );
        // The ordered quantity, not `current_quantity` (0 after cancellation).
        assert!(matches!(
            decoded.movements[2].kind,
            MovementKind::Sale { quantity: 2, .. }
        ));
    }

    #[test]
    fn an_inventory_cancel_writes_off_and_the_reason_list_is_configurable() {
        let body = String::from_utf8(fixture("orders_cancelled.json"))
            .unwrap()
            .replace(
                r#""cancel_reason": "customer""#,
                r#""cancel_reason": "inventory""#,
            );
        let write_offs = |channel: &ChannelConfig| -> Vec<(Option<String>, bool)> {
            decode(channel, WebhookTopic::OrdersCancelled, body.as_bytes())
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
        let inventory = (Some("inventory".to_owned()), true);
        assert_eq!(write_offs(&channel()), vec![inventory.clone(), inventory]);
        // A channel that lists other reasons only releases.
        let mut configured = channel();
        configured.write_off_cancel_reasons = Some(vec!["fraud".into()]);
        let released = (Some("inventory".to_owned()), false);
        assert_eq!(write_offs(&configured), vec![released.clone(), released]);
    }

    #[test]
    fn an_updated_order_with_cancelled_at_also_cancels() {
        let decoded = decode(
            &channel(),
            WebhookTopic::OrdersUpdated,
            &fixture("orders_cancelled.json"),
        )
        .unwrap();
        assert_eq!(
            decoded
                .movements
                .iter()
                .filter(|m| m.kind.name() == "cancellation")
                .count(),
            2
        );
    }

    #[test]
    fn refunds_cancel_and_return_lines() {
        let decoded = decode(
            &channel(),
            WebhookTopic::RefundsCreate,
            &fixture("refunds_create.json"),
        )
        .unwrap();
        assert_eq!(decoded.skipped, vec![]);
        assert_eq!(decoded.movements.len(), 2);
        let returned = &decoded.movements[0];
        assert_eq!(returned.sku.as_str(), "SKU-D");
        assert_eq!(
            returned.idempotency_key,
            "shop-main:refund:929000000001:line:530000000001"
        );
        assert_eq!(
            returned.kind,
            MovementKind::Return {
                location: Some("WH-1".into()),
                quantity: 1,
                reservation: Some("shop-main:5872300001001:14000000000101".into()),
                restock: true
            }
        );
        let cancelled = &decoded.movements[1];
        assert_eq!(cancelled.sku.as_str(), "SKU-K");
        assert_eq!(
            cancelled.kind,
            MovementKind::Cancellation {
                reason: None,
                reservation: "shop-main:5872300001001:14000000000102".into(),
                quantity: Some(1),
                write_off: false
            }
        );
    }

    #[test]
    fn no_restock_yields_nothing_and_legacy_restock_returns() {
        let decoded = decode(
            &channel(),
            WebhookTopic::RefundsCreate,
            &fixture("refunds_create_no_restock.json"),
        )
        .unwrap();
        assert_eq!(
            decoded.skipped,
            vec![SkippedLine {
                line_id: "530000000003".into(),
                reason: SkipReason::NoRestock
            }]
        );
        assert_eq!(decoded.movements.len(), 1);
        assert!(matches!(
            &decoded.movements[0].kind,
            MovementKind::Return { quantity: 1, location, .. } if location.as_ref().map(|l| l.as_str()) == Some("WH-1")
        ));
    }

    #[test]
    fn a_shipping_only_refund_yields_nothing() {
        let decoded = decode(
            &channel(),
            WebhookTopic::RefundsCreate,
            &fixture("refunds_create_shipping_only.json"),
        )
        .unwrap();
        assert!(decoded.movements.is_empty());
        assert!(decoded.skipped.is_empty());
    }

    #[test]
    fn inventory_level_updates_are_read_but_yield_no_movement() {
        let decoded = decode(
            &channel(),
            WebhookTopic::InventoryLevelsUpdate,
            &fixture("inventory_levels_update.json"),
        )
        .unwrap();
        assert!(decoded.movements.is_empty());
        let level = decoded.inventory_level.unwrap();
        assert_eq!(level.inventory_item_id, "49000000000001");
        assert_eq!(level.location_id, "61000000001");
        assert_eq!(level.available, Some(4));
    }

    #[test]
    fn an_order_edit_body_yields_nothing() {
        let decoded = decode(
            &channel(),
            WebhookTopic::OrdersEdited,
            &fixture("orders_edited.json"),
        )
        .unwrap();
        assert!(decoded.movements.is_empty());
        assert!(decoded.note.as_deref().unwrap().contains("orders/updated"));
        let as_order = decode(
            &channel(),
            WebhookTopic::OrdersEdited,
            &fixture("orders_updated.json"),
        )
        .unwrap();
        // Two sales, each followed by its line's edit.
        assert_eq!(
            as_order
                .movements
                .iter()
                .filter(|m| m.kind.name() == "sale")
                .count(),
            2
        );
        assert_eq!(as_order.movements.len(), 4);
        assert_eq!(as_order.note, None);
    }

    #[test]
    fn untracked_blank_and_zero_lines_are_skipped_and_missing_tracking_is_tracked() {
        let body = br#"{"id": "77", "line_items": [
            {"id": 1, "sku": "SKU-X", "quantity": 1, "variant_inventory_management": null},
            {"id": 2, "sku": "  ", "quantity": 1, "variant_inventory_management": "shopify"},
            {"id": 3, "sku": "SKU-Y", "quantity": 0, "variant_inventory_management": "shopify"},
            {"id": 4, "sku": "SKU-Z", "quantity": 3}
        ]}"#;
        let decoded = decode(&channel(), WebhookTopic::OrdersCreate, body).unwrap();
        let reasons: Vec<SkipReason> = decoded.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            vec![
                SkipReason::NotTracked,
                SkipReason::NoSku,
                SkipReason::ZeroQuantity
            ]
        );
        assert_eq!(
            decoded.movements,
            vec![sale(
                "shop-main:order:77:line:4",
                "SKU-Z",
                "shop-main:77:4",
                3
            )]
        );
    }

    #[test]
    fn malformed_payloads_are_decode_errors() {
        for body in [
            &b"not json"[..],
            br#"{"line_items": []}"#,
            br#"{"id": 1, "line_items": [{"id": 2, "quantity": -1}]}"#,
        ] {
            let error = decode(&channel(), WebhookTopic::OrdersCreate, body).unwrap_err();
            assert!(
                matches!(
                    error,
                    DecodeError::Payload {
                        topic: "orders/create",
                        ..
                    }
                ),
                "{error}"
            );
        }
    }

    #[test]
    fn unknown_topics_yield_nothing() {
        assert_eq!(WebhookTopic::parse("products/update"), WebhookTopic::Other);
        let decoded = decode(&channel(), WebhookTopic::Other, b"not even json").unwrap();
        assert!(decoded.movements.is_empty());
    }

    #[test]
    fn wrapped_resources_are_unwrapped() {
        let inner = fixture("orders_create.json");
        let mut wrapped = b"{\"order\":".to_vec();
        wrapped.extend_from_slice(&inner);
        wrapped.push(b'}');
        let decoded = decode(&channel(), WebhookTopic::OrdersCreate, &wrapped).unwrap();
        assert_eq!(decoded.movements.len(), 2);
    }
}

#[cfg(test)]
mod location_tests {
    //! Issue 16: POS sales, refunds restocked where Shopify says, fulfillment-order topics.
    use super::*;

    fn channel() -> ChannelConfig {
        crate::ingest::shopify::fulfillment::two_location_channel()
    }

    fn order(source_name: &str, location_id: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": 5501, "source_name": source_name, "location_id": location_id,
            "line_items": [{"id": 11, "sku": "TEE-M", "quantity": 2}]
        }))
        .unwrap()
    }

    #[test]
    fn a_pos_sale_reserves_at_the_store_and_ships_at_once() {
        let channel = channel();
        let decoded = decode(
            &channel,
            WebhookTopic::OrdersCreate,
            &order("pos", 200.into()),
        )
        .unwrap();
        assert_eq!(decoded.movements.len(), 2, "{:?}", decoded.movements);
        assert_eq!(
            decoded.movements[0].kind,
            MovementKind::Sale {
                reservation: "shop:5501:11".into(),
                quantity: 2,
                location: Some("STORE".into()),
                route: Vec::new(),
            }
        );
        assert_eq!(
            decoded.movements[1].kind,
            MovementKind::Fulfilment {
                reservation: "shop:5501:11".into(),
                quantity: 2,
                location: Some("STORE".into()),
            }
        );
        assert_eq!(
            decoded.movements[1].idempotency_key,
            pos_fulfilment_key(&channel, "5501", "11")
        );
        assert_ne!(
            decoded.movements[0].idempotency_key,
            decoded.movements[1].idempotency_key
        );
        // orders/updated of the same POS order repeats the same keys (duplicates).
        let again = decode(
            &channel,
            WebhookTopic::OrdersUpdated,
            &order("pos", "gid://shopify/Location/200".into()),
        )
        .unwrap();
        assert_eq!(
            again.movements[0].idempotency_key,
            decoded.movements[0].idempotency_key
        );
        assert_eq!(
            again.movements[1].idempotency_key,
            decoded.movements[1].idempotency_key
        );
    }

    #[test]
    fn a_pos_sale_at_an_unmapped_location_is_routed_and_still_shipped() {
        let decoded = decode(
            &channel(),
            WebhookTopic::OrdersCreate,
            &order("pos", 999.into()),
        )
        .unwrap();
        assert!(matches!(
            &decoded.movements[0].kind,
            MovementKind::Sale { location: None, route, .. } if route.len() == 3
        ));
        assert!(matches!(
            decoded.movements[1].kind,
            MovementKind::Fulfilment {
                location: None,
                quantity: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_web_order_is_routed_by_the_channel_and_not_shipped() {
        let decoded = decode(
            &channel(),
            WebhookTopic::OrdersCreate,
            &order("web", serde_json::Value::Null),
        )
        .unwrap();
        assert_eq!(decoded.movements.len(), 1);
        assert!(matches!(
            &decoded.movements[0].kind,
            MovementKind::Sale { location: None, route, .. } if route[0].as_str() == "WH"
        ));
    }

    fn refund(location_id: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": 801, "order_id": 5501,
            "refund_line_items": [{"id": 9, "line_item_id": 11, "quantity": 1, "restock_type": "return",
                                   "location_id": location_id, "line_item": {"id": 11, "sku": "TEE-M", "quantity": 2}}]
        }))
        .unwrap()
    }

    #[test]
    fn a_refund_restocks_at_the_location_shopify_names() {
        let channel = channel();
        let at = |location_id: serde_json::Value| {
            let decoded =
                decode(&channel, WebhookTopic::RefundsCreate, &refund(location_id)).unwrap();
            match &decoded.movements[0].kind {
                MovementKind::Return { location, .. } => {
                    location.clone().unwrap().as_str().to_owned()
                }
                other => panic!("expected a return, got {other:?}"),
            }
        };
        assert_eq!(at(200.into()), "STORE", "the first feed of the store");
        assert_eq!(at(100.into()), "WH");
        assert_eq!(
            at(serde_json::Value::Null),
            "WH",
            "none named: the channel's first"
        );
        assert_eq!(at(999.into()), "WH", "unmapped: the channel's first");
    }

    #[test]
    fn fulfillment_order_topics_name_the_orders_to_read_back() {
        let channel = channel();
        let routed = decode(
            &channel,
            WebhookTopic::parse("fulfillment_orders/order_routing_complete"),
            br#"{"fulfillment_order": {"id": "gid://shopify/FulfillmentOrder/77", "status": "open"}}"#,
        )
        .unwrap();
        assert_eq!(routed.fulfillment_orders, vec![77]);
        assert!(routed.movements.is_empty());
        let moved = decode(
            &channel,
            WebhookTopic::parse("fulfillment_orders/moved"),
            br#"{"original_fulfillment_order": {"id": "gid://shopify/FulfillmentOrder/77", "status": "closed"},
                 "moved_fulfillment_order": {"id": "gid://shopify/FulfillmentOrder/78", "status": "open"},
                 "destination_location_id": "gid://shopify/Location/100",
                 "source_location": {"id": "gid://shopify/Location/200"}}"#,
        )
        .unwrap();
        assert_eq!(
            moved.fulfillment_orders,
            vec![78, 77],
            "the moved one first"
        );
        let empty = decode(&channel, WebhookTopic::FulfillmentOrdersMoved, b"{}");
        assert!(
            matches!(empty, Err(DecodeError::Payload { .. })),
            "{empty:?}"
        );
        let bad = decode(
            &channel,
            WebhookTopic::FulfillmentOrdersRoutingComplete,
            br#"{"fulfillment_order": {"id": "gid://shopify/Order/1"}}"#,
        );
        assert!(matches!(bad, Err(DecodeError::Payload { .. })), "{bad:?}");
    }
}
