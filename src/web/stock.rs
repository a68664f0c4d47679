//! `GET /api/v1/stock/{sku}`: what the ledger knows about one SKU, and what each channel
//! may sell of it.
//!
//! The answer is a [`StockView`]: levels per location, every configured channel's ATP with
//! its explanation ([`crate::domain::channel_atp`] over the channel's stock rule) and the
//! quantity propagation last pushed, and the open reservations. A SKU never seen answers
//! 200 with no locations and ATP 0. A ledger failure answers a 503 problem.

use super::{WebError, WebState};
use crate::domain::{AtpBreakdown, Sku, SkuState, channel_atp};
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
    let channels = state
        .config
        .channels
        .iter()
        .map(|channel| {
            let explanation = channel_atp(&levels, &channel.stock_rule());
            ChannelAtpView {
                channel: channel.id.clone(),
                atp: explanation.atp,
                last_pushed: state
                    .channel_view
                    .as_ref()
                    .and_then(|view| view.last_pushed(&channel.id, sku)),
                explanation,
            }
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
                reservation: id.clone(),
                location: line.location.to_string(),
                quantity: line.quantity,
                fulfilled: line.fulfilled,
                released: line.released,
                open: line.open(),
            })
            .collect(),
    }
}
