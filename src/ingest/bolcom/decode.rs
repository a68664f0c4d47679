//! bol.com order and return decoder (PLATFORMS.md §3.5): IO-free.
//!
//! Owns: the shapes of `GET /retailer/orders` (list), `GET /retailer/orders/{id}` (detail)
//! and `GET /retailer/returns`, and their translation into ledger [`Movement`]s with the
//! reservation ids and idempotency keys of bol order items. The poller
//! ([`super::poller`]) does the I/O.
//!
//! Decisions (each one has a test below):
//! - Only FBR items count: FBB items ship from bol's warehouse and never touch our stock.
//! - One [`MovementKind::Sale`] per FBR order item, reservation `{channel}:{orderId}:{orderItemId}`,
//!   key `bolcom:{channel}:{orderItemId}:sale`, routed over the channel's locations: every
//!   poll of the same order yields the same key, so re-polling is harmless.
//! - `quantityCancelled` = n yields n [`MovementKind::Cancellation`]s of one unit, keyed
//!   `…:cancel:1` … `…:cancel:n`: when bol cancels more units later only the new ones
//!   release stock, and none is released twice. A customer's `cancellationRequest` alone
//!   changes nothing (the retailer still decides). Partial cancels stay per-unit
//!   cancellations rather than an [`MovementKind::OrderEdit`] (issue 9 §1): bol reports
//!   the cumulative cancelled count beside an unchanged `quantity`, not a new ordered
//!   quantity with a version, and the cumulative count is already idempotent and
//!   order-independent without one.
//! - The SKU is the offer's `reference` (our SKU, §3.2), else the SKU the channel maps to
//!   the `offerId`; an item with neither is skipped and reported.
//! - A return yields one [`MovementKind::Return`] of `expectedQuantity` at the channel's
//!   first location, key `bolcom:{channel}:return:{rmaId}`. Returns carry only an EAN: the
//!   caller resolves it to the SKU and order item.
//!
//! May depend on: `domain`, `config`.

use crate::config::ChannelConfig;
use crate::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku};
use serde::Deserialize;

/// Why a body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not the JSON expected.
    #[error("body is not a valid bol.com {what}: {message}")]
    Payload {
        /// `order list`, `order`, `returns`.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
}

/// One entry of `GET /retailer/orders` (only the fields used).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    /// The order id.
    pub order_id: String,
    /// The order's items as listed.
    #[serde(default)]
    pub order_items: Vec<OrderSummaryItem>,
}

/// One item of an [`OrderSummary`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummaryItem {
    /// The order item id.
    pub order_item_id: String,
    /// When bol last changed the item.
    #[serde(default)]
    pub latest_changed_date_time: Option<String>,
    /// Units cancelled so far.
    #[serde(default)]
    pub quantity_cancelled: u64,
}

impl OrderSummary {
    /// A fingerprint of what can change (item changes and cancellations): a poll refetches
    /// the order only when it differs from the last one seen.
    pub fn fingerprint(&self) -> String {
        self.order_items
            .iter()
            .map(|item| {
                format!(
                    "{}@{}#{}",
                    item.order_item_id,
                    item.latest_changed_date_time.as_deref().unwrap_or(""),
                    item.quantity_cancelled
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Deserialize)]
struct OrderList {
    #[serde(default)]
    orders: Vec<OrderSummary>,
}

/// Decodes `GET /retailer/orders`; bol's empty page `{}` is an empty list.
pub fn decode_order_list(body: &[u8]) -> Result<Vec<OrderSummary>, DecodeError> {
    serde_json::from_slice::<OrderList>(body)
        .map(|list| list.orders)
        .map_err(|error| DecodeError::Payload {
            what: "order list",
            message: error.to_string(),
        })
}

/// `GET /retailer/orders/{id}` (only the fields used).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The order id.
    pub order_id: String,
    /// Its items.
    #[serde(default)]
    pub order_items: Vec<OrderItem>,
}

/// One item of an [`Order`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    /// The order item id.
    pub order_item_id: String,
    /// Units ordered.
    pub quantity: u64,
    /// Units shipped.
    #[serde(default)]
    pub quantity_shipped: u64,
    /// Units bol cancelled.
    #[serde(default)]
    pub quantity_cancelled: u64,
    /// The customer asked to cancel.
    #[serde(default)]
    pub cancellation_request: bool,
    /// The cancellation's `reasonCode` (`OUT_OF_STOCK`, `UNFINDABLE_ITEM`,
    /// `REQUESTED_BY_CUSTOMER`, `BAD_CONDITION`, …) when the payload carries it as
    /// `cancellationReason`: bol's order endpoint reports only `quantityCancelled`; the
    /// retailer's own cancellation (and the simulator) knows the code it sent.
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    /// `fulfilment.method`: `FBR` or `FBB`.
    #[serde(default)]
    pub fulfilment: Fulfilment,
    /// The offer sold.
    #[serde(default)]
    pub offer: OfferRef,
    /// The product.
    #[serde(default)]
    pub product: ProductRef,
}

/// `fulfilment` of an order item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Fulfilment {
    /// `FBR` or `FBB`.
    #[serde(default)]
    pub method: String,
}

/// `offer` of an order item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferRef {
    /// The offer id.
    #[serde(default)]
    pub offer_id: Option<String>,
    /// The retailer's reference: our SKU.
    #[serde(default)]
    pub reference: Option<String>,
}

/// `product` of an order item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ProductRef {
    /// EAN.
    #[serde(default)]
    pub ean: Option<String>,
}

/// Decodes `GET /retailer/orders/{id}`.
pub fn decode_order(body: &[u8]) -> Result<Order, DecodeError> {
    serde_json::from_slice(body).map_err(|error| DecodeError::Payload {
        what: "order",
        message: error.to_string(),
    })
}

/// One unhandled return item of `GET /retailer/returns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnLine {
    /// The return item id.
    pub rma_id: String,
    /// The order it came from.
    pub order_id: String,
    /// The product's EAN.
    pub ean: String,
    /// Units the customer sends back.
    pub quantity: u64,
}

#[derive(Deserialize)]
struct ReturnList {
    #[serde(default)]
    returns: Vec<ReturnEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReturnEntry {
    #[serde(default)]
    return_items: Vec<ReturnItemEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReturnItemEntry {
    rma_id: String,
    order_id: String,
    #[serde(default)]
    ean: String,
    #[serde(default)]
    expected_quantity: u64,
}

/// Decodes `GET /retailer/returns`; `{}` is an empty page.
pub fn decode_returns(body: &[u8]) -> Result<Vec<ReturnLine>, DecodeError> {
    let list: ReturnList = serde_json::from_slice(body).map_err(|error| DecodeError::Payload {
        what: "returns",
        message: error.to_string(),
    })?;
    Ok(list
        .returns
        .into_iter()
        .flat_map(|entry| entry.return_items)
        .filter(|item| item.expected_quantity > 0)
        .map(|item| ReturnLine {
            rma_id: item.rma_id,
            order_id: item.order_id,
            ean: item.ean,
            quantity: item.expected_quantity,
        })
        .collect())
}

/// Movements from one order, and what was skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Sales then cancellations, in item order.
    pub movements: Vec<Movement>,
    /// Items skipped: `(order item id, why)`.
    pub skipped: Vec<(String, &'static str)>,
}

/// The source label of a channel's movements (`bolcom:<channel>`).
pub fn source(channel: &ChannelConfig) -> String {
    format!("bolcom:{}", channel.id)
}

/// The reservation id of an order item.
pub fn reservation(channel: &ChannelConfig, order_id: &str, order_item_id: &str) -> String {
    format!("{}:{order_id}:{order_item_id}", channel.id)
}

fn sku_of(channel: &ChannelConfig, item: &OrderItem) -> Option<String> {
    if let Some(reference) = item.offer.reference.as_deref().filter(|r| !r.is_empty()) {
        return Some(reference.to_owned());
    }
    let offer_id = item.offer.offer_id.as_deref()?;
    channel
        .bolcom()?
        .listings
        .iter()
        .find(|listing| listing.offer_id == offer_id)
        .map(|listing| listing.sku.clone())
}

/// The movements of one order (see the module docs for the rules).
pub fn order_movements(channel: &ChannelConfig, order: &Order) -> Decoded {
    let mut decoded = Decoded::default();
    let source = source(channel);
    for item in &order.order_items {
        if item.fulfilment.method != "FBR" {
            decoded
                .skipped
                .push((item.order_item_id.clone(), "not fulfilled by retailer"));
            continue;
        }
        if item.quantity == 0 {
            decoded
                .skipped
                .push((item.order_item_id.clone(), "zero quantity"));
            continue;
        }
        let Some(sku) = sku_of(channel, item) else {
            decoded
                .skipped
                .push((item.order_item_id.clone(), "no SKU for the offer"));
            continue;
        };
        let reservation = reservation(channel, &order.order_id, &item.order_item_id);
        let key = format!("{source}:{}", item.order_item_id);
        decoded.movements.push(Movement {
            schema_version: SCHEMA_VERSION,
            sku: Sku(sku.clone()),
            idempotency_key: format!("{key}:sale"),
            source: source.clone(),
            occurred_at_ms: None,
            kind: MovementKind::Sale {
                reservation: reservation.clone(),
                quantity: item.quantity,
                location: None,
                route: channel.locations.clone(),
            },
        });
        for unit in 1..=item.quantity_cancelled.min(item.quantity) {
            decoded.movements.push(Movement {
                schema_version: SCHEMA_VERSION,
                sku: Sku(sku.clone()),
                idempotency_key: format!("{key}:cancel:{unit}"),
                source: source.clone(),
                occurred_at_ms: None,
                kind: unit_cancellation(channel, reservation.clone(), item),
            });
        }
    }
    decoded
}

/// The cancellation of one unit of `item`: reason its `cancellationReason` (else
/// `cancelled`), a write-off when the channel's `write_off_cancel_reasons` (by default
/// `OUT_OF_STOCK` and `UNFINDABLE_ITEM`) lists it.
fn unit_cancellation(
    channel: &ChannelConfig,
    reservation: String,
    item: &OrderItem,
) -> MovementKind {
    let reason = item
        .cancellation_reason
        .as_deref()
        .map(str::trim)
        .filter(|reason| !reason.is_empty());
    MovementKind::Cancellation {
        reservation,
        quantity: Some(1),
        reason: Some(reason.unwrap_or("cancelled").to_owned()),
        write_off: reason.is_some_and(|reason| channel.writes_off_on_cancel(reason)),
    }
}

/// The restock of one return; `sku` and `order_item_id` resolved by the caller. `None`
/// when the channel has no location to restock at.
pub fn return_movement(
    channel: &ChannelConfig,
    line: &ReturnLine,
    sku: &str,
    order_item_id: Option<&str>,
) -> Option<Movement> {
    let location = channel.locations.first()?.clone();
    let source = source(channel);
    Some(Movement {
        schema_version: SCHEMA_VERSION,
        sku: Sku(sku.to_owned()),
        idempotency_key: format!("{source}:return:{}", line.rma_id),
        source,
        occurred_at_ms: None,
        kind: MovementKind::Return {
            location: Some(location),
            quantity: line.quantity,
            reservation: order_item_id.map(|item| reservation(channel, &line.order_id, item)),
            restock: true,
        },
    })
}

/// The SKU and order item of a return's EAN within its order.
pub fn resolve_return<'a>(order: &'a Order, ean: &str) -> Option<(&'a str, &'a str)> {
    order
        .order_items
        .iter()
        .filter(|item| item.fulfilment.method == "FBR")
        .find(|item| item.product.ean.as_deref() == Some(ean))
        .and_then(|item| {
            Some((
                item.offer.reference.as_deref()?,
                item.order_item_id.as_str(),
            ))
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
            [[channels]]
            id = "bol-nl"
            kind = "bolcom"
            locations = ["WH-1"]
            [channels.bolcom]
            client_id = "id"
            client_secret = "secret"
            [[channels.bolcom.listings]]
            sku = "SKU-MAPPED"
            offer_id = "offer-9"
            "#,
        )
        .unwrap();
        config.channels[0].clone()
    }

    const ORDER: &str = r#"{"orderId":"A0001","orderPlacedDateTime":"2030-01-01T10:00:00+01:00",
      "orderItems":[
        {"orderItemId":"111","quantity":3,"quantityShipped":0,"quantityCancelled":2,
         "cancellationRequest":false,"fulfilment":{"method":"FBR"},
         "offer":{"offerId":"offer-1","reference":"SKU-A"},"product":{"ean":"8712345678901"}},
        {"orderItemId":"112","quantity":1,"fulfilment":{"method":"FBB"},
         "offer":{"offerId":"offer-2","reference":"SKU-B"}},
        {"orderItemId":"113","quantity":1,"fulfilment":{"method":"FBR"},
         "offer":{"offerId":"offer-9"}}
      ]}"#;

    #[test]
    fn fbr_items_become_sales_and_fbb_items_are_skipped() {
        let order = decode_order(ORDER.as_bytes()).unwrap();
        let decoded = order_movements(&channel(), &order);
        assert_eq!(
            decoded.skipped,
            vec![("112".to_owned(), "not fulfilled by retailer")]
        );
        let sales: Vec<&Movement> = decoded
            .movements
            .iter()
            .filter(|m| matches!(m.kind, MovementKind::Sale { .. }))
            .collect();
        assert_eq!(sales.len(), 2);
        assert_eq!(sales[0].sku.as_str(), "SKU-A");
        assert_eq!(sales[0].idempotency_key, "bolcom:bol-nl:111:sale");
        assert_eq!(
            sales[0].kind,
            MovementKind::Sale {
                reservation: "bol-nl:A0001:111".to_owned(),
                quantity: 3,
                location: None,
                route: vec!["WH-1".into()],
            }
        );
        assert_eq!(
            sales[1].sku.as_str(),
            "SKU-MAPPED",
            "offer id mapped by config"
        );
    }

    #[test]
    fn each_cancelled_unit_has_its_own_key_so_a_rise_releases_only_the_new_units() {
        let order = decode_order(ORDER.as_bytes()).unwrap();
        let keys: Vec<String> = order_movements(&channel(), &order)
            .movements
            .into_iter()
            .filter(|m| {
                matches!(
                    m.kind,
                    MovementKind::Cancellation {
                        quantity: Some(1),
                        ..
                    }
                )
            })
            .map(|m| m.idempotency_key)
            .collect();
        assert_eq!(
            keys,
            vec!["bolcom:bol-nl:111:cancel:1", "bolcom:bol-nl:111:cancel:2"]
        );
    }

    #[test]
    fn re_decoding_the_same_order_gives_the_same_keys() {
        let order = decode_order(ORDER.as_bytes()).unwrap();
        assert_eq!(
            order_movements(&channel(), &order),
            order_movements(&channel(), &order)
        );
    }

    #[test]
    fn an_empty_page_is_an_empty_object() {
        assert!(decode_order_list(b"{}").unwrap().is_empty());
        assert!(decode_returns(b"{}").unwrap().is_empty());
        assert!(decode_order_list(b"[").is_err());
    }

    #[test]
    fn an_out_of_stock_cancel_writes_off_and_a_customer_cancel_only_releases() {
        let cancellations = |channel: &ChannelConfig, body: &str| -> Vec<(Option<String>, bool)> {
            let order: Order = serde_json::from_str(body).unwrap();
            order_movements(channel, &order)
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
        let with = |reason: &str| {
            ORDER.replace(
                r#""cancellationRequest":false,"#,
                &format!(r#""cancellationRequest":false,"cancellationReason":"{reason}","#),
            )
        };
        let out_of_stock = (Some("OUT_OF_STOCK".to_owned()), true);
        assert_eq!(
            cancellations(&channel(), &with("OUT_OF_STOCK")),
            vec![out_of_stock.clone(), out_of_stock]
        );
        let customer = (Some("REQUESTED_BY_CUSTOMER".to_owned()), false);
        assert_eq!(
            cancellations(&channel(), &with("REQUESTED_BY_CUSTOMER")),
            vec![customer.clone(), customer]
        );
        let unknown = (Some("cancelled".to_owned()), false);
        assert_eq!(
            cancellations(&channel(), ORDER),
            vec![unknown.clone(), unknown]
        );
        let mut configured = channel();
        configured.write_off_cancel_reasons = Some(Vec::new());
        assert!(
            cancellations(&configured, &with("OUT_OF_STOCK"))
                .iter()
                .all(|(_, write_off)| !*write_off)
        );
    }

    #[test]
    fn the_fingerprint_changes_when_bol_cancels_units() {
        let list = r#"{"orders":[{"orderId":"A1","orderItems":[{"orderItemId":"1",
            "latestChangedDateTime":"2030-01-01T10:00:00Z","quantityCancelled":0}]}]}"#;
        let before = decode_order_list(list.as_bytes()).unwrap()[0].fingerprint();
        let after = decode_order_list(
            list.replace("\"quantityCancelled\":0", "\"quantityCancelled\":1")
                .as_bytes(),
        )
        .unwrap()[0]
            .fingerprint();
        assert_ne!(before, after);
    }

    #[test]
    fn returns_restock_at_the_first_location_with_the_rma_key() {
        let body = r#"{"returns":[{"returnId":"1","returnItems":[{"rmaId":"31","orderId":"A0001",
            "ean":"8712345678901","expectedQuantity":2,"handled":false}]}]}"#;
        let lines = decode_returns(body.as_bytes()).unwrap();
        let order = decode_order(ORDER.as_bytes()).unwrap();
        let (sku, item) = resolve_return(&order, &lines[0].ean).unwrap();
        let movement = return_movement(&channel(), &lines[0], sku, Some(item)).unwrap();
        assert_eq!(movement.idempotency_key, "bolcom:bol-nl:return:31");
        assert_eq!(
            movement.kind,
            MovementKind::Return {
                location: Some("WH-1".into()),
                quantity: 2,
                reservation: Some("bol-nl:A0001:111".to_owned()),
                restock: true,
            }
        );
    }
}
