//! `GET /api/v1/stock/{sku}`: what the ledger knows about one SKU, and what each channel
//! may sell of it.
//!
//! The answer is a [`StockView`]: levels per location, every configured channel's ATP with
//! its explanation ([`crate::domain::AllocationPolicy::allocate`] over every channel's rule) and the
//! quantity propagation last pushed, and the open reservations. A SKU never seen answers
//! 200 with no locations and ATP 0. A ledger failure answers a 503 problem.

use super::{WebError, WebState};
use crate::domain::{AtpBreakdown, Sku, SkuState};
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

/// One SKU's stock as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    /// The SKU.
    pub sku: String,
    /// Sequence number of the last movement applied (0 = none).
    pub seq: u64,
    /// Levels per location, sorted by location id.
    pub locations: Vec<LocationView>,
    /// One entry per configured channel, in config order.
    pub channels: Vec<ChannelAtpView>,
    /// Reservations with units still open, sorted by id.
    pub reservations: Vec<ReservationView>,
}

/// Stock at one location, in base units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationView {
    /// The location id.
    pub location: String,
    /// Units physically there.
    pub on_hand: i64,
    /// Units promised to open order lines and holds.
    pub reserved: i64,
    /// on_hand − reserved (negative: a backorder debt or an oversell).
    pub available: i64,
}

/// One channel's available-to-promise for the SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAtpView {
    /// The channel id.
    pub channel: String,
    /// Units the channel may sell now (the number propagation pushes).
    pub atp: u64,
    /// How `atp` was reached (feeding locations, safety stock, cap).
    pub explanation: AtpBreakdown,
    /// The quantity last acknowledged by the channel, if known.
    pub last_pushed: Option<u64>,
    /// What the channel itself last reported (reconciliation), with any open discrepancy.
    #[serde(default)]
    pub channel_report: Option<ChannelReportView>,
}

/// What a channel reported for a listing, as reconciliation read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelReportView {
    /// The channel's value (`None`: not stocked there).
    pub value: Option<i64>,
    /// When it was read or reported, in milliseconds since the Unix epoch.
    pub reported_at_ms: i64,
    /// `periodic` (read back) or `webhook`.
    pub source: String,
    /// The open discrepancy, if any.
    pub discrepancy: Option<DiscrepancyView>,
}

/// An open discrepancy between a channel and the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscrepancyView {
    /// `in_flight`, `manual_edit`, `lost_update` or `unknown_listing`.
    pub class: String,
    /// The channel's value when classified.
    pub channel_value: Option<i64>,
    /// The ledger's ATP when classified.
    pub ledger_atp: Option<u64>,
    /// When it was classified, in milliseconds since the Unix epoch.
    pub detected_at_ms: i64,
    /// A re-push was issued to heal it.
    pub heal_requested: bool,
}

/// An order line or hold with units still reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    /// The reservation id (`{channel}:{order}:{line}` for channel orders).
    pub reservation: String,
    /// Where the units are reserved.
    pub location: String,
    /// Units reserved in total.
    pub quantity: u64,
    /// Units shipped.
    pub fulfilled: u64,
    /// Units released by cancellations.
    pub released: u64,
    /// Units still reserved: quantity − fulfilled − released.
    pub open: u64,
}

pub(super) async fn get_stock(
    State(state): State<WebState>,
    Path(sku): Path<String>,
) -> Result<Json<StockView>, WebError> {
    let sku = Sku(sku);
    let sku_state = state
        .ledger
        .state(&sku)
        .await
        .map_err(|error| WebError::Unavailable {
            message: error.to_string(),
        })?;
    Ok(Json(view(&state, &sku_state)))
}

/// Builds the view of `sku_state` with every configured channel's ATP.
fn view(state: &WebState, sku_state: &SkuState) -> StockView {
    let levels = sku_state.levels();
    let sku = sku_state.sku.as_str();
    // All channels at once: a ring-fenced pool of one channel shrinks the others'.
    let allocations = state
        .allocation_policy()
        .allocate(&sku_state.availability(), state.ledger.clock().now_ms());
    let channels = state
        .config
        .channels
        .iter()
        .zip(allocations)
        .map(|(channel, explanation)| ChannelAtpView {
            channel: channel.id.clone(),
            atp: explanation.atp,
            last_pushed: state
                .channel_view
                .as_ref()
                .and_then(|view| view.last_pushed(&channel.id, sku)),
            channel_report: state
                .channel_view
                .as_ref()
                .and_then(|view| view.channel_report(&channel.id, sku)),
            explanation,
        })
        .collect();
    StockView {
        sku: sku.to_owned(),
        seq: sku_state.seq,
        locations: levels
            .iter()
            .map(|level| LocationView {
                location: level.location.to_string(),
                on_hand: level.on_hand,
                reserved: level.reserved,
                available: level.available(),
            })
            .collect(),
        channels,
        reservations: sku_state
            .reservations
            .iter()
            .filter(|(_, line)| line.open() > 0)
            .map(|(id, line)| ReservationView {
                reservation: id.to_string(),
                location: line.location.to_string(),
                quantity: line.quantity,
                fulfilled: line.fulfilled,
                released: line.released,
                open: line.open(),
            })
            .collect(),
    }
}
