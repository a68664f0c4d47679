//! The durable index of a WooCommerce order's known lines (issue 9 §1): WooCommerce drops
//! a removed line from the order's `line_items`, so the only way to notice the removal is
//! to remember which stock lines earlier payloads of the order carried.
//!
//! Owns: reading the index before an `order.updated` (or a polled order) is decoded
//! ([`known_lines`]) and writing it once the delivery's movements are durable
//! ([`remember_lines`]). The rows live in the store ([`Store::order_lines`], one row per
//! channel, order and line, with the last version seen); rows not seen for
//! [`ORDER_LINE_RETENTION_MS`] are forgotten at each write, which bounds the table by the
//! orders touched within that window. An order edited after its rows were forgotten still
//! gets edits for every line it lists; only a removal then goes unnoticed (logged nowhere,
//! documented here).
//!
//! May depend on: `store`, `ingest::woocommerce::decode`.

use super::decode::{Decoded, KnownLine};
use crate::store::{OrderLineRecord, Store, StoreError};

/// How long an order's lines are remembered after the order was last seen, in
/// milliseconds (30 days: beyond WooCommerce's usual edit and refund window).
pub const ORDER_LINE_RETENTION_MS: i64 = 30 * 24 * 3_600 * 1_000;

/// The stock lines earlier payloads of `order_id` carried on `channel`.
///
/// Errors: the store's, when the index cannot be read (the delivery is then answered with
/// a problem and retried by the poller).
pub async fn known_lines(
    store: &dyn Store,
    channel: &str,
    order_id: &str,
) -> Result<Vec<KnownLine>, StoreError> {
    Ok(store
        .order_lines(channel, order_id)
        .await?
        .into_iter()
        .map(|record| KnownLine {
            line_id: record.line_id,
            sku: record.sku,
        })
        .collect())
}

/// Records the stock lines of a decoded payload (nothing when it had none), forgetting rows
/// older than the retention.
///
/// Errors: the store's.
pub async fn remember_lines(
    store: &dyn Store,
    channel: &str,
    decoded: &Decoded,
    now_ms: i64,
) -> Result<(), StoreError> {
    if decoded.lines.is_empty() {
        return Ok(());
    }
    let version = decoded.version.unwrap_or(0);
    let records: Vec<OrderLineRecord> = decoded
        .lines
        .iter()
        .map(|line| OrderLineRecord {
            channel: channel.to_owned(),
            order_id: decoded.order_id.clone(),
            line_id: line.line_id.clone(),
            sku: line.sku.clone(),
            version,
            seen_at_ms: now_ms,
        })
        .collect();
    store
        .record_order_lines(&records, now_ms.saturating_sub(ORDER_LINE_RETENTION_MS))
        .await
}
