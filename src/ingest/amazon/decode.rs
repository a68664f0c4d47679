//! Amazon order and FBA decoder (PLATFORMS.md §4.3, §4.4, §4.6): IO-free.
//!
//! Owns: the shapes of the ORDER_CHANGE notification (the SQS message body, or an SQS
//! message whose `Body` carries it), of Orders API v0 `getOrders` / `getOrderItems`, and of
//! FBA `getInventorySummaries`, and their translation into ledger [`Movement`]s with the
//! reservation ids and idempotency keys of Amazon order items. The HTTP receiver
//! ([`super::receiver`]), the Kafka bridge consumer and the pollers ([`super::poller`]) do the
//! I/O; notifications and polls of the same order yield the same keys, so redelivery (SQS is
//! at least once) and polling overlap are harmless.
//!
//! Decisions (each one has a test below):
//! - **AFN orders never touch our stock** (Amazon ships them from FBA): no movement.
//! - MFN items of an order in any live status (Pending, Unshipped, PartiallyShipped,
//!   Shipped, InvoiceUnconfirmed, PendingAvailability) → one [`MovementKind::Sale`] of
//!   `Quantity`, reservation `{channel}:{AmazonOrderId}:{OrderItemId}`, key
//!   `amazon:{channel}:{OrderItemId}:sale`, routed over the channel's locations (Amazon
//!   decrements MFN stock at order time, Pending included, §4.6).
//! - `Canceled`, or `IsBuyerRequestedCancel` on an item → the sale (same key) then a
//!   [`MovementKind::Cancellation`] of every unshipped unit, key
//!   `amazon:{channel}:{OrderItemId}:cancel`. A buyer-requested cancel is taken as a
//!   cancellation because on Amazon the seller must honour it before shipping.
//! - `QuantityShipped` = n → n [`MovementKind::Fulfilment`]s of one unit keyed
//!   `…:ship:1` … `…:ship:n`, so a later rise ships only the new units and none twice.
//! - `Unfulfillable` (an AFN status) → nothing.
//! - Partial seller cancellations (issue 9 §1): Amazon lowers the item's
//!   `QuantityOrdered` and keeps the order open. Not decoded into an
//!   [`MovementKind::OrderEdit`] yet: the item's sale key is fixed, so a sale first seen
//!   after the partial cancel already reserves only the remaining units, but a sale seen
//!   before keeps its original quantity until the order is cancelled or shipped. Emitting an
//!   edit (target `QuantityOrdered`, version = the notification's `EventTime` or the order's
//!   `LastUpdateDate`) on every notification would double the events of every Amazon order;
//!   the open question is how to tell a partial cancel from any other status change
//!   (`OrderItemStatus` is not read yet).
//! - The SKU is the one the channel maps to the `SellerSKU`, else the seller SKU itself.
//! - FBA summaries become [`MovementKind::Count`]s of `fulfillableQuantity` at the
//!   channel's FBA location with `lastUpdatedTime` as the watermark, key
//!   `amazon:{channel}:fba:{sellerSku}:{watermark}`.
//!
//! May depend on: `domain`, `config`.

use crate::config::ChannelConfig;
use crate::domain::{CountBasis, Movement, MovementKind, SCHEMA_VERSION, Sku};
use serde::Deserialize;
use serde_json::Value;

/// Why a body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not the JSON expected.
    #[error("body is not a valid Amazon {what}: {message}")]
    Payload {
        /// `notification`, `order list`, `order items`, `inventory summaries`.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
}

fn payload_error(what: &'static str, error: impl std::fmt::Display) -> DecodeError {
    DecodeError::Payload {
        what,
        message: error.to_string(),
    }
}

/// Fulfilment of an order (`FulfillmentType` / `FulfillmentChannel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fulfilment {
    /// Merchant fulfilled: our stock.
    Mfn,
    /// Fulfilled by Amazon: never our stock.
    Afn,
}

impl Fulfilment {
    fn parse(text: &str) -> Self {
        if text.eq_ignore_ascii_case("AFN") {
            Self::Afn
        } else {
            Self::Mfn
        }
    }
}

/// One order item as the engine needs it, from a notification or the Orders API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderItem {
    /// `OrderItemId`.
    pub order_item_id: String,
    /// `SellerSKU`.
    pub seller_sku: String,
    /// Units ordered (`Quantity` / `QuantityOrdered`).
    pub quantity: u64,
    /// Units shipped (`QuantityShipped`).
    pub quantity_shipped: u64,
    /// `IsBuyerRequestedCancel`.
    pub buyer_requested_cancel: bool,
}

/// One order's state as the engine needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderState {
    /// `AmazonOrderId`.
    pub amazon_order_id: String,
    /// `OrderStatus` (`Pending`, `Unshipped`, `PartiallyShipped`, `Shipped`, `Canceled`, …).
    pub order_status: String,
    /// MFN or AFN.
    pub fulfilment: Fulfilment,
    /// The items.
    pub items: Vec<OrderItem>,
    /// When the change happened, in ms since the epoch, if known.
    pub changed_at_ms: Option<i64>,
    /// The seller's cancel reason (`NoInventory`, `BuyerCanceled`, …; `NO_INVENTORY`, … in
    /// `cancelOrder`), when the payload carries one as `CancelReason`: the Orders API does
    /// not return it, a relay of the order acknowledgement feed or the simulator does.
    pub cancel_reason: Option<String>,
}

/// A decoded ORDER_CHANGE notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// `NotificationMetadata.NotificationId`: the delivery dedupe key.
    pub notification_id: String,
    /// The order as of the notification.
    pub order: OrderState,
}

/// What a notification body turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An ORDER_CHANGE.
    OrderChange(Notification),
    /// Another notification type (acknowledged and ignored); its `NotificationType`.
    Other(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(default)]
    notification_type: String,
    #[serde(default)]
    event_time: Option<String>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    notification_metadata: Metadata,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    #[serde(default)]
    notification_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderChange {
    amazon_order_id: String,
    summary: Summary,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Summary {
    #[serde(default)]
    order_status: String,
    #[serde(default)]
    cancel_reason: Option<String>,
    #[serde(default)]
    fulfillment_type: String,
    #[serde(default)]
    order_items: Vec<ChangeItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeItem {
    order_item_id: String,
    #[serde(rename = "SellerSKU", default)]
    seller_sku: String,
    #[serde(default)]
    quantity: u64,
    #[serde(default)]
    quantity_shipped: u64,
    #[serde(default)]
    is_buyer_requested_cancel: bool,
}

/// Milliseconds since the epoch of an SP-API date (`2030-01-01T10:00:00Z`).
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|elapsed| elapsed.as_millis() as i64)
}

/// Decodes a notification body: the notification JSON itself, or an SQS message whose
/// `Body` (or `body`) string carries it.
///
/// Errors: [`DecodeError::Payload`] when it is not JSON, has no `NotificationId`, or is an
/// ORDER_CHANGE without `AmazonOrderId` / `Summary`.
pub fn decode_notification(body: &[u8]) -> Result<Decoded, DecodeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| payload_error("notification", error))?;
    let inner = ["Body", "body"]
        .iter()
        .find_map(|key| value[*key].as_str())
        .map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|error| payload_error("notification", error))?;
    let envelope: Envelope = serde_json::from_value(inner.unwrap_or(value))
        .map_err(|error| payload_error("notification", error))?;
    if envelope.notification_metadata.notification_id.is_empty() {
        return Err(payload_error(
            "notification",
            "NotificationMetadata.NotificationId is missing",
        ));
    }
    if envelope.notification_type != "ORDER_CHANGE" {
        return Ok(Decoded::Other(envelope.notification_type));
    }
    let change: OrderChange =
        serde_json::from_value(envelope.payload["OrderChangeNotification"].clone())
            .map_err(|error| payload_error("notification", error))?;
    Ok(Decoded::OrderChange(Notification {
        notification_id: envelope.notification_metadata.notification_id,
        order: OrderState {
            amazon_order_id: change.amazon_order_id,
            order_status: change.summary.order_status,
            fulfilment: Fulfilment::parse(&change.summary.fulfillment_type),
            items: change
                .summary
                .order_items
                .into_iter()
                .map(|item| OrderItem {
                    order_item_id: item.order_item_id,
                    seller_sku: item.seller_sku,
                    quantity: item.quantity,
                    quantity_shipped: item.quantity_shipped,
                    buyer_requested_cancel: item.is_buyer_requested_cancel,
                })
                .collect(),
            changed_at_ms: envelope.event_time.as_deref().and_then(parse_time_ms),
            cancel_reason: change.summary.cancel_reason,
        },
    }))
}

/// One order of `getOrders` (only the fields used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedOrder {
    /// `AmazonOrderId`.
    pub amazon_order_id: String,
    /// `OrderStatus`.
    pub order_status: String,
    /// `FulfillmentChannel`.
    pub fulfilment: Fulfilment,
    /// `LastUpdateDate`, in ms since the epoch (0 when unreadable).
    pub last_update_ms: i64,
    /// `CancelReason`, when the payload carries one (see [`OrderState::cancel_reason`]).
    pub cancel_reason: Option<String>,
}

/// A page of `getOrders`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderPage {
    /// The orders.
    pub orders: Vec<ListedOrder>,
    /// `NextToken`, when more pages follow.
    pub next_token: Option<String>,
}

/// Decodes `getOrders` (`{"payload":{"Orders":[…],"NextToken":…}}`).
///
/// Errors: [`DecodeError::Payload`] when it is not that shape.
pub fn decode_order_page(body: &[u8]) -> Result<OrderPage, DecodeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| payload_error("order list", error))?;
    let payload = &value["payload"];
    let Some(orders) = payload["Orders"].as_array() else {
        return Err(payload_error("order list", "payload.Orders is missing"));
    };
    let orders = orders
        .iter()
        .filter_map(|order| {
            Some(ListedOrder {
                amazon_order_id: order["AmazonOrderId"].as_str()?.to_owned(),
                order_status: order["OrderStatus"].as_str().unwrap_or_default().to_owned(),
                fulfilment: Fulfilment::parse(
                    order["FulfillmentChannel"].as_str().unwrap_or("MFN"),
                ),
                last_update_ms: order["LastUpdateDate"]
                    .as_str()
                    .and_then(parse_time_ms)
                    .unwrap_or(0),
                cancel_reason: order["CancelReason"].as_str().map(str::to_owned),
            })
        })
        .collect();
    Ok(OrderPage {
        orders,
        next_token: payload["NextToken"].as_str().map(str::to_owned),
    })
}

/// Decodes `getOrderItems` into the items of `order`.
///
/// Errors: [`DecodeError::Payload`] when it is not that shape.
pub fn decode_order_items(order: &ListedOrder, body: &[u8]) -> Result<OrderState, DecodeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| payload_error("order items", error))?;
    let Some(items) = value["payload"]["OrderItems"].as_array() else {
        return Err(payload_error(
            "order items",
            "payload.OrderItems is missing",
        ));
    };
    let truthy = |value: &Value| value.as_bool().unwrap_or(false) || value == "true";
    Ok(OrderState {
        amazon_order_id: order.amazon_order_id.clone(),
        order_status: order.order_status.clone(),
        fulfilment: order.fulfilment,
        items: items
            .iter()
            .filter_map(|item| {
                Some(OrderItem {
                    order_item_id: item["OrderItemId"].as_str()?.to_owned(),
                    seller_sku: item["SellerSKU"].as_str().unwrap_or_default().to_owned(),
                    quantity: item["QuantityOrdered"].as_u64().unwrap_or(0),
                    quantity_shipped: item["QuantityShipped"].as_u64().unwrap_or(0),
                    buyer_requested_cancel: truthy(
                        &item["BuyerRequestedCancel"]["IsBuyerRequestedCancel"],
                    ),
                })
            })
            .collect(),
        changed_at_ms: Some(order.last_update_ms).filter(|ms| *ms > 0),
        cancel_reason: order.cancel_reason.clone(),
    })
}

/// The cancellation of every unshipped unit of an item: the seller's `CancelReason` when
/// the order carries one (a write-off when the channel's `write_off_cancel_reasons`, by
/// default `NoInventory` and `NO_INVENTORY`, lists it), else `cancelled`, or
/// `buyer_requested_cancel` for a buyer's request (never a write-off).
fn cancellation(
    channel: &ChannelConfig,
    reservation: String,
    canceled: bool,
    order: &OrderState,
) -> MovementKind {
    let seller_reason = order
        .cancel_reason
        .as_deref()
        .map(str::trim)
        .filter(|reason| canceled && !reason.is_empty());
    let reason = match (seller_reason, canceled) {
        (Some(reason), _) => reason,
        (None, true) => "cancelled",
        (None, false) => "buyer_requested_cancel",
    };
    MovementKind::Cancellation {
        reservation,
        quantity: None,
        reason: Some(reason.to_owned()),
        write_off: seller_reason.is_some_and(|reason| channel.writes_off_on_cancel(reason)),
    }
}

/// One FBA inventory summary (only the fields used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FbaSummary {
    /// `sellerSku`.
    pub seller_sku: String,
    /// `inventoryDetails.fulfillableQuantity`: what Amazon can sell now; `None` when the
    /// summary has no figure (requested without details, or null): the count is then
    /// "not tracked", never 0.
    pub fulfillable: Option<u64>,
    /// `lastUpdatedTime` in ms since the epoch: the count's watermark.
    pub last_updated_ms: i64,
}

/// A page of `getInventorySummaries`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SummaryPage {
    /// The summaries (entries without a readable `lastUpdatedTime` are dropped).
    pub summaries: Vec<FbaSummary>,
    /// `pagination.nextToken` (expires after 30 s, §4.4).
    pub next_token: Option<String>,
}

/// Decodes `getInventorySummaries`.
///
/// Errors: [`DecodeError::Payload`] when it is not that shape.
pub fn decode_summaries(body: &[u8]) -> Result<SummaryPage, DecodeError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| payload_error("inventory summaries", error))?;
    let Some(entries) = value["payload"]["inventorySummaries"].as_array() else {
        return Err(payload_error(
            "inventory summaries",
            "payload.inventorySummaries is missing",
        ));
    };
    Ok(SummaryPage {
        summaries: entries
            .iter()
            .filter_map(|entry| {
                Some(FbaSummary {
                    seller_sku: entry["sellerSku"].as_str()?.to_owned(),
                    fulfillable: entry["inventoryDetails"]["fulfillableQuantity"].as_u64(),
                    last_updated_ms: parse_time_ms(entry["lastUpdatedTime"].as_str()?)?,
                })
            })
            .collect(),
        next_token: value["pagination"]["nextToken"].as_str().map(str::to_owned),
    })
}

/// Movements from one order, and what was skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderMovements {
    /// Per item: sale, then cancellation or fulfilments.
    pub movements: Vec<Movement>,
    /// Items skipped: `(order item id, why)`.
    pub skipped: Vec<(String, &'static str)>,
}

/// The source label of a channel's movements (`amazon:<channel>`).
pub fn source(channel: &ChannelConfig) -> String {
    format!("amazon:{}", channel.id)
}

/// The reservation id of an order item.
pub fn reservation(channel: &ChannelConfig, order_id: &str, order_item_id: &str) -> String {
    format!("{}:{order_id}:{order_item_id}", channel.id)
}

/// Our SKU for a seller SKU (the channel's mapping, else the seller SKU itself).
pub fn sku_of(channel: &ChannelConfig, seller_sku: &str) -> String {
    channel
        .amazon()
        .and_then(|amazon| {
            amazon
                .listings
                .iter()
                .find(|listing| listing.seller_sku() == seller_sku)
        })
        .map_or_else(|| seller_sku.to_owned(), |listing| listing.sku.clone())
}

/// The movements of one order state (see the module docs for the rules).
pub fn order_movements(channel: &ChannelConfig, order: &OrderState) -> OrderMovements {
    let mut decoded = OrderMovements::default();
    let skip_all = |decoded: &mut OrderMovements, why: &'static str| {
        for item in &order.items {
            decoded.skipped.push((item.order_item_id.clone(), why));
        }
    };
    if order.fulfilment == Fulfilment::Afn {
        skip_all(&mut decoded, "fulfilled by Amazon (AFN)");
        return decoded;
    }
    if order.order_status == "Unfulfillable" {
        skip_all(&mut decoded, "unfulfillable");
        return decoded;
    }
    let canceled = order.order_status == "Canceled";
    let source = source(channel);
    for item in &order.items {
        if item.quantity == 0 || item.seller_sku.is_empty() {
            decoded
                .skipped
                .push((item.order_item_id.clone(), "no quantity or no SKU"));
            continue;
        }
        let sku = Sku(sku_of(channel, &item.seller_sku));
        let reservation = reservation(channel, &order.amazon_order_id, &item.order_item_id);
        let key = format!("{source}:{}", item.order_item_id);
        let movement = |suffix: String, kind: MovementKind| Movement {
            schema_version: SCHEMA_VERSION,
            sku: sku.clone(),
            idempotency_key: format!("{key}:{suffix}"),
            source: source.clone(),
            occurred_at_ms: order.changed_at_ms,
            kind,
        };
        decoded.movements.push(movement(
            "sale".to_owned(),
            MovementKind::Sale {
                reservation: reservation.clone(),
                quantity: item.quantity,
                location: None,
                route: channel.locations.clone(),
            },
        ));
        for unit in 1..=item.quantity_shipped.min(item.quantity) {
            decoded.movements.push(movement(
                format!("ship:{unit}"),
                MovementKind::Fulfilment {
                    reservation: reservation.clone(),
                    quantity: 1,
                    location: None,
                },
            ));
        }
        if canceled || item.buyer_requested_cancel {
            decoded.movements.push(movement(
                "cancel".to_owned(),
                cancellation(channel, reservation.clone(), canceled, order),
            ));
        }
    }
    decoded
}

/// The FBA count of one summary at `location`: on-hand := `fulfillableQuantity`, watermark
/// `lastUpdatedTime` (a stale or repeated summary is ignored by the ledger).
pub fn fba_count(channel: &ChannelConfig, location: &str, summary: &FbaSummary) -> Movement {
    let source = source(channel);
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: Sku(sku_of(channel, &summary.seller_sku)),
        idempotency_key: format!(
            "{source}:fba:{}:{}",
            summary.seller_sku, summary.last_updated_ms
        ),
        source,
        occurred_at_ms: Some(summary.last_updated_ms),
        kind: MovementKind::Count {
            location: location.into(),
            on_hand: summary.fulfillable,
            watermark: summary.last_updated_ms,
            basis: Some(CountBasis::Physical),
            booked: None,
        },
    }
}

/// The Kafka decoder of a topic fed by an SQS bridge with ORDER_CHANGE notifications (raw
/// envelopes, or SQS messages with the envelope in `Body`) for `channel`: each record
/// becomes that order's movements ([`order_movements`]; none for AFN orders or other
/// notification types). Duplicated deliveries are harmless: the movements' idempotency
/// keys dedupe them.
pub fn notification_decoder(channel: ChannelConfig) -> crate::ingest::kafka::RecordDecoder {
    std::sync::Arc::new(move |_key, value, _origin| {
        let body = value.ok_or(crate::ingest::kafka::DecodeError::MissingValue)?;
        match decode_notification(body) {
            Ok(Decoded::OrderChange(notification)) => {
                Ok(order_movements(&channel, &notification.order).movements)
            }
            Ok(Decoded::Other(_)) => Ok(Vec::new()),
            Err(error) => Err(crate::ingest::kafka::DecodeError::Foreign {
                what: "Amazon ORDER_CHANGE notification",
                message: error.to_string(),
            }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn channel() -> ChannelConfig {
        let config = Config::from_toml(
            r#"
            [[locations]]
            id = "WH-1"
            [[locations]]
            id = "FBA-NL"
            [[channels]]
            id = "amazon-nl"
            kind = "amazon"
            locations = ["WH-1"]
            [channels.amazon]
            client_id = "c"
            client_secret = "s"
            refresh_token = "r"
            seller_id = "A2EXAMPLESELLER"
            marketplace_id = "A1805IZSGTT6HS"
            [[channels.amazon.listings]]
            sku = "SKU-B"
            seller_sku = "SKU-B-NL"
            "#,
        )
        .unwrap();
        config.channels[0].clone()
    }

    fn notification(status: &str, fulfilment: &str, shipped: u64, buyer_cancel: bool) -> String {
        notification_with_reason(status, fulfilment, shipped, buyer_cancel, None)
    }

    fn notification_with_reason(
        status: &str,
        fulfilment: &str,
        shipped: u64,
        buyer_cancel: bool,
        cancel_reason: Option<&str>,
    ) -> String {
        let cancel_reason = cancel_reason
            .map(|reason| format!(r#""CancelReason":"{reason}","#))
            .unwrap_or_default();
        format!(
            r#"{{"NotificationVersion":"1.0","NotificationType":"ORDER_CHANGE","PayloadVersion":"1.0",
            "EventTime":"2030-01-01T10:00:00Z",
            "Payload":{{"OrderChangeNotification":{{"NotificationLevel":"OrderLevel",
              "SellerId":"A2EXAMPLESELLER","AmazonOrderId":"402-0000001-0000001",
              "OrderChangeType":"OrderStatusChange",
              "OrderChangeTrigger":{{"TimeOfOrderChange":"2030-01-01T10:00:00Z","ChangeReason":"x"}},
              "Summary":{{"MarketplaceId":"A1805IZSGTT6HS","OrderStatus":"{status}",{cancel_reason}
                "FulfillmentType":"{fulfilment}","OrderType":"StandardOrder",
                "NumberOfItemsShipped":0,"NumberOfItemsUnshipped":3,
                "OrderItems":[
                  {{"OrderItemId":"11","SellerSKU":"SKU-B-NL","Quantity":3,"QuantityShipped":{shipped},
                    "IsBuyerRequestedCancel":{buyer_cancel}}},
                  {{"OrderItemId":"12","SellerSKU":"SKU-A","Quantity":1,"QuantityShipped":0,
                    "IsBuyerRequestedCancel":false}}]}}}}}},
            "NotificationMetadata":{{"ApplicationId":"app","SubscriptionId":"sub",
              "PublishTime":"2030-01-01T10:00:01Z","NotificationId":"n-1"}}}}"#
        )
    }

    fn decode(body: &str) -> Notification {
        match decode_notification(body.as_bytes()).unwrap() {
            Decoded::OrderChange(notification) => notification,
            Decoded::Other(kind) => panic!("not an order change: {kind}"),
        }
    }

    fn kinds(decoded: &OrderMovements) -> Vec<(String, &'static str)> {
        decoded
            .movements
            .iter()
            .map(|m| (m.idempotency_key.clone(), m.kind.name()))
            .collect()
    }

    #[test]
    fn an_unshipped_mfn_order_is_one_sale_per_item_with_business_keys() {
        let notification = decode(&notification("Unshipped", "MFN", 0, false));
        assert_eq!(notification.notification_id, "n-1");
        let decoded = order_movements(&channel(), &notification.order);
        assert_eq!(
            kinds(&decoded),
            vec![
                ("amazon:amazon-nl:11:sale".to_owned(), "sale"),
                ("amazon:amazon-nl:12:sale".to_owned(), "sale"),
            ]
        );
        let sale = &decoded.movements[0];
        assert_eq!(sale.sku.as_str(), "SKU-B", "seller SKU mapped by config");
        assert_eq!(
            decoded.movements[1].sku.as_str(),
            "SKU-A",
            "unmapped: as is"
        );
        assert_eq!(
            sale.kind,
            MovementKind::Sale {
                reservation: "amazon-nl:402-0000001-0000001:11".to_owned(),
                quantity: 3,
                location: None,
                route: vec!["WH-1".into()],
            }
        );
        assert_eq!(sale.occurred_at_ms, parse_time_ms("2030-01-01T10:00:00Z"));
    }

    #[test]
    fn afn_orders_never_touch_our_stock() {
        let notification = decode(&notification("Unshipped", "AFN", 0, false));
        let decoded = order_movements(&channel(), &notification.order);
        assert!(decoded.movements.is_empty());
        assert_eq!(decoded.skipped.len(), 2);
    }

    #[test]
    fn cancellations_and_buyer_cancel_requests_release_after_the_sale() {
        let canceled = order_movements(
            &channel(),
            &decode(&notification("Canceled", "MFN", 0, false)).order,
        );
        assert_eq!(
            kinds(&canceled)
                .into_iter()
                .map(|(_, kind)| kind)
                .collect::<Vec<_>>(),
            vec!["sale", "cancellation", "sale", "cancellation"]
        );
        let requested = order_movements(
            &channel(),
            &decode(&notification("Unshipped", "MFN", 0, true)).order,
        );
        assert_eq!(
            kinds(&requested)[1],
            ("amazon:amazon-nl:11:cancel".to_owned(), "cancellation")
        );
        assert_eq!(requested.movements.len(), 3, "only item 11 asked to cancel");
    }

    #[test]
    fn a_no_inventory_cancel_writes_off_and_a_buyer_cancel_only_releases() {
        let cancellations = |channel: &ChannelConfig, body: &str| -> Vec<(Option<String>, bool)> {
            order_movements(channel, &decode(body).order)
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
        let no_inventory =
            notification_with_reason("Canceled", "MFN", 0, false, Some("NoInventory"));
        let written_off = (Some("NoInventory".to_owned()), true);
        assert_eq!(
            cancellations(&channel(), &no_inventory),
            vec![written_off.clone(), written_off]
        );
        let buyer = notification_with_reason("Canceled", "MFN", 0, false, Some("BuyerCanceled"));
        let released = (Some("BuyerCanceled".to_owned()), false);
        assert_eq!(
            cancellations(&channel(), &buyer),
            vec![released.clone(), released]
        );
        // The cancelOrder spelling is a default too; a configured list replaces the defaults.
        let api = notification_with_reason("Canceled", "MFN", 0, false, Some("NO_INVENTORY"));
        assert!(cancellations(&channel(), &api).iter().all(|(_, w)| *w));
        let mut configured = channel();
        configured.write_off_cancel_reasons = Some(vec!["PricingError".into()]);
        assert!(
            cancellations(&configured, &no_inventory)
                .iter()
                .all(|(_, w)| !*w)
        );
        // Without a reason: `cancelled`, released only.
        assert_eq!(
            cancellations(&channel(), &notification("Canceled", "MFN", 0, false))[0],
            (Some("cancelled".to_owned()), false)
        );
    }

    #[test]
    fn an_fba_summary_without_a_figure_is_an_untracked_count() {
        let page = decode_summaries(
            br#"{"payload":{"inventorySummaries":[
                {"sellerSku":"SKU-B-NL","lastUpdatedTime":"2030-01-01T10:00:00Z","totalQuantity":0},
                {"sellerSku":"SKU-C","inventoryDetails":{"fulfillableQuantity":null},
                 "lastUpdatedTime":"2030-01-01T10:00:00Z"}]}}"#,
        )
        .unwrap();
        assert_eq!(page.summaries.len(), 2);
        for summary in &page.summaries {
            let count = fba_count(&channel(), "FBA-NL", summary);
            assert!(
                matches!(count.kind, MovementKind::Count { on_hand: None, .. }),
                "{count:?}"
            );
        }
    }

    #[test]
    fn shipped_units_are_fulfilments_keyed_per_unit() {
        let partly = order_movements(
            &channel(),
            &decode(&notification("PartiallyShipped", "MFN", 2, false)).order,
        );
        let ships: Vec<String> = kinds(&partly)
            .into_iter()
            .filter(|(_, kind)| *kind == "fulfilment")
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            ships,
            vec!["amazon:amazon-nl:11:ship:1", "amazon:amazon-nl:11:ship:2"]
        );
        let all = order_movements(
            &channel(),
            &decode(&notification("Shipped", "MFN", 3, false)).order,
        );
        assert_eq!(
            kinds(&all)
                .iter()
                .filter(|(_, kind)| *kind == "fulfilment")
                .count(),
            3,
            "a rise from 2 to 3 adds one new key"
        );
    }

    #[test]
    fn an_sqs_message_body_and_other_types_are_understood() {
        let inner = notification("Pending", "MFN", 0, false);
        let sqs = serde_json::json!({"MessageId": "m-1", "Body": inner}).to_string();
        assert_eq!(decode(&sqs).order.order_status, "Pending");
        let other = r#"{"NotificationType":"FEED_PROCESSING_FINISHED","Payload":{},
            "NotificationMetadata":{"NotificationId":"n-2"}}"#;
        assert_eq!(
            decode_notification(other.as_bytes()).unwrap(),
            Decoded::Other("FEED_PROCESSING_FINISHED".to_owned())
        );
        assert!(decode_notification(b"{").is_err());
        assert!(decode_notification(br#"{"NotificationType":"ORDER_CHANGE"}"#).is_err());
    }

    #[test]
    fn the_orders_api_gives_the_same_keys_as_the_notification() {
        let page = decode_order_page(
            br#"{"payload":{"Orders":[{"AmazonOrderId":"402-0000001-0000001",
                "LastUpdateDate":"2030-01-01T10:00:00Z","OrderStatus":"Unshipped",
                "FulfillmentChannel":"MFN"}],"NextToken":"t-2"}}"#,
        )
        .unwrap();
        assert_eq!(page.next_token.as_deref(), Some("t-2"));
        let order = decode_order_items(
            &page.orders[0],
            br#"{"payload":{"AmazonOrderId":"402-0000001-0000001","OrderItems":[
                {"OrderItemId":"11","SellerSKU":"SKU-B-NL","QuantityOrdered":3,"QuantityShipped":0},
                {"OrderItemId":"12","SellerSKU":"SKU-A","QuantityOrdered":1,"QuantityShipped":0,
                 "BuyerRequestedCancel":{"IsBuyerRequestedCancel":"false"}}]}}"#,
        )
        .unwrap();
        let polled = order_movements(&channel(), &order);
        let notified = order_movements(
            &channel(),
            &decode(&notification("Unshipped", "MFN", 0, false)).order,
        );
        assert_eq!(kinds(&polled), kinds(&notified));
        assert_eq!(polled.movements[0].kind, notified.movements[0].kind);
    }

    #[test]
    fn fba_summaries_become_counts_watermarked_by_their_update_time() {
        let page = decode_summaries(
            br#"{"pagination":{"nextToken":"n"},"payload":{"inventorySummaries":[
                {"sellerSku":"SKU-B-NL","inventoryDetails":{"fulfillableQuantity":7},
                 "lastUpdatedTime":"2030-01-01T10:00:00Z","totalQuantity":9}]}}"#,
        )
        .unwrap();
        assert_eq!(page.next_token.as_deref(), Some("n"));
        let count = fba_count(&channel(), "FBA-NL", &page.summaries[0]);
        let watermark = parse_time_ms("2030-01-01T10:00:00Z").unwrap();
        assert_eq!(count.sku.as_str(), "SKU-B");
        assert_eq!(
            count.kind,
            MovementKind::Count {
                location: "FBA-NL".into(),
                on_hand: Some(7),
                watermark,
                basis: Some(crate::domain::CountBasis::Physical),
                booked: None,
            }
        );
        assert_eq!(
            count.idempotency_key,
            format!("amazon:amazon-nl:fba:SKU-B-NL:{watermark}")
        );
    }
}
