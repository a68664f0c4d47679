//! `GET /api/v1/stock/{sku}`: what the ledger knows about one SKU, and what each channel
//! may sell of it.
//!
//! The answer is a [`StockView`]: levels per location (on hand, reserved, available, in
//! transit, inbound on purchase orders), every configured channel's ATP with its explanation
//! ([`crate::domain::AllocationPolicy::allocate`] over every channel's rule) and the
//! quantity propagation last pushed, the open reservations, and the purchase-order units
//! still expected by location and date. A SKU never seen (no durable movement; the store is
//! asked first, so nothing is loaded for it) answers a 404 `unknown-sku` problem; a
//! configured bundle is always known. A ledger failure answers a 503 problem.
//!
//! A bundle (or kit) holds no stock of its own: its levels are derived from its components'
//! exactly as propagation derives them ([`crate::domain::bundle_levels`], per metric, then
//! the minimum; no pre-order units), so its ATP is the one pushed to the channels, and
//! `bundle` lists the components it was derived from.
//!
//! May depend on: `domain`, `ledger` (through [`WebState`]).

use super::{WebError, WebState};
use crate::domain::{AtpBreakdown, AvailabilityChange, Component, Sku, SkuState, bundle_levels};
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

/// One SKU's stock as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Purchase-order units still expected, by location and expected date (empty for a
    /// bundle).
    #[serde(default)]
    pub inbound: Vec<InboundView>,
    /// For a bundle: the components its levels are derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleView>,
}

/// Purchase-order units expected at one location on one date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboundView {
    /// Where the goods will arrive.
    pub location: String,
    /// Units still expected.
    pub quantity: u64,
    /// Expected arrival, in milliseconds since the Unix epoch.
    pub expected_at_ms: i64,
}

/// How a bundle's levels were derived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleView {
    /// The leaf components (nested kits flattened), sorted by SKU.
    pub components: Vec<ComponentView>,
}

/// One component of a bundle and its levels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentView {
    /// The component SKU.
    pub sku: String,
    /// Units of it in one bundle.
    pub quantity: u64,
    /// Sequence number of its last movement.
    pub seq: u64,
    /// Its levels per location, sorted by location id.
    pub locations: Vec<LocationView>,
}

/// Stock at one location, in base units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LocationView {
    /// The location id.
    pub location: String,
    /// Units physically there.
    pub on_hand: i64,
    /// Units promised to open order lines and holds.
    pub reserved: i64,
    /// on_hand − reserved (negative: a backorder debt or an oversell).
    pub available: i64,
    /// Units in transit to this location (transfers dispatched, not yet received).
    #[serde(default)]
    pub in_transit: i64,
    /// Units expected on open purchase-order lines at this location.
    #[serde(default)]
    pub inbound: i64,
}

/// One channel's available-to-promise for the SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelAtpView {
    /// The channel id.
    pub channel: String,
    /// Units the channel may sell now (the number propagation pushes).
    pub atp: u64,
    /// How `atp` was reached (feeding locations, safety stock, cap).
    #[schema(value_type = Object)]
    pub explanation: AtpBreakdown,
    /// The quantity last acknowledged by the channel, if known.
    pub last_pushed: Option<u64>,
    /// What the channel itself last reported (reconciliation), with any open discrepancy.
    #[serde(default)]
    pub channel_report: Option<ChannelReportView>,
    /// Per location of the channel's own (Shopify multi-location): how `atp` is divided,
    /// with each location's last pushed and reported values. Absent for channels that list
    /// one figure per SKU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<ChannelLocationView>,
}

/// One per-location listing of a channel, as a [`ChannelView`](super::ChannelView) gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingPart {
    /// The channel's location id (Shopify location number).
    pub location_id: String,
    /// Its display name.
    pub name: String,
    /// Our locations feeding it.
    pub feeds: Vec<String>,
    /// The listing key (`SKU@LOCATION`).
    pub listing: String,
    /// Its part of the channel's ATP.
    pub atp: u64,
}

/// One location of a multi-location channel in the stock view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelLocationView {
    /// The channel's location id (Shopify location number).
    pub location_id: String,
    /// Its display name.
    pub name: String,
    /// Our locations whose stock it lists.
    pub feeds: Vec<String>,
    /// The listing key propagation and reconciliation use (`SKU@LOCATION`).
    pub listing: String,
    /// Its part of the channel's ATP (the parts sum to the channel's `atp`).
    pub atp: u64,
    /// The quantity last acknowledged for this location, if known.
    pub last_pushed: Option<u64>,
    /// What the channel last reported for this location, with any open discrepancy.
    #[serde(default)]
    pub channel_report: Option<ChannelReportView>,
}

/// What a channel reported for a listing, as reconciliation read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = StockReservationView)]
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

#[utoipa::path(
    get,
    path = "/api/v1/stock/{sku}",
    tag = "stock",
    security(("bearerAuth" = ["read"])),
    params(("sku" = String, Path, description = "The SKU (percent-encoded).")),
    responses(
        (status = 200, description = "Levels, reservations and per-channel ATP.", body = StockView),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_stock(
    State(state): State<WebState>,
    Path(sku): Path<String>,
) -> Result<Json<StockView>, WebError> {
    let sku = Sku(sku);
    let unavailable = |error: crate::ledger::LedgerError| WebError::Unavailable {
        message: error.to_string(),
    };
    let known = state.ledger.known_state(&sku).await.map_err(unavailable)?;
    let Some(components) = state.bundle_components(&sku) else {
        let Some(sku_state) = known else {
            return Err(WebError::UnknownSku { sku: sku.0 });
        };
        return Ok(Json(view(
            &state,
            &sku_state,
            sku_state.availability(),
            None,
        )));
    };
    let sku_state = known.unwrap_or_else(|| SkuState::new(sku.clone()));
    // Bounded by the configured bill of materials; a component never seen has no stock.
    let mut component_states = Vec::with_capacity(components.len());
    for component in &components {
        component_states.push(
            state
                .ledger
                .known_state(&component.sku)
                .await
                .map_err(unavailable)?
                .unwrap_or_else(|| SkuState::new(component.sku.clone())),
        );
    }
    Ok(Json(bundle_view(
        &state,
        &sku_state,
        &components,
        &component_states,
    )))
}

/// The view of a bundle: levels derived from `components` (whose states are
/// `component_states`, in the same order) as propagation derives them.
fn bundle_view(
    state: &WebState,
    bundle_state: &SkuState,
    components: &[Component],
    component_states: &[SkuState],
) -> StockView {
    let levels: Vec<Vec<crate::domain::LocationLevel>> =
        component_states.iter().map(SkuState::levels).collect();
    let inputs: Vec<(&Component, &[crate::domain::LocationLevel])> = components
        .iter()
        .zip(&levels)
        .map(|(component, levels)| (component, levels.as_slice()))
        .collect();
    let derived = AvailabilityChange {
        sku: bundle_state.sku.clone(),
        seq: component_states
            .iter()
            .map(|state| state.seq)
            .max()
            .unwrap_or(0)
            .max(bundle_state.seq),
        locations: bundle_levels(&inputs),
        inbound: Vec::new(),
    };
    let bundle = BundleView {
        components: components
            .iter()
            .zip(&levels)
            .zip(component_states)
            .map(|((component, levels), component_state)| ComponentView {
                sku: component.sku.to_string(),
                quantity: component.quantity,
                seq: component_state.seq,
                locations: levels.iter().map(location_view).collect(),
            })
            .collect(),
    };
    view(state, bundle_state, derived, Some(bundle))
}

fn location_view(level: &crate::domain::LocationLevel) -> LocationView {
    LocationView {
        location: level.location.to_string(),
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.available(),
        in_transit: level.in_transit,
        inbound: level.inbound,
    }
}

/// Builds the view of `sku_state` with levels and ATP from `availability` (the SKU's own,
/// or a bundle's derived levels) and every configured channel's ATP.
fn view(
    state: &WebState,
    sku_state: &SkuState,
    availability: AvailabilityChange,
    bundle: Option<BundleView>,
) -> StockView {
    let sku = sku_state.sku.as_str();
    // All channels at once: a ring-fenced pool of one channel shrinks the others'.
    let allocations = state
        .allocation_policy()
        .allocate(&availability, state.ledger.clock().now_ms());
    let channels = state
        .config
        .channels
        .iter()
        .zip(allocations)
        .map(|(channel, explanation)| ChannelAtpView {
            channel: channel.id.clone(),
            locations: state
                .channel_view
                .as_ref()
                .map(|view| {
                    view.listing_parts(&channel.id, sku, &availability.locations, explanation.atp)
                        .into_iter()
                        .map(|part| ChannelLocationView {
                            last_pushed: view.last_pushed(&channel.id, &part.listing),
                            channel_report: view.channel_report(&channel.id, &part.listing),
                            location_id: part.location_id,
                            name: part.name,
                            feeds: part.feeds,
                            listing: part.listing,
                            atp: part.atp,
                        })
                        .collect()
                })
                .unwrap_or_default(),
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
        seq: availability.seq,
        locations: availability.locations.iter().map(location_view).collect(),
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
        inbound: inbound_views(&availability),
        bundle,
    }
}

/// Expected purchase-order units summed per (location, expected date), in that order.
fn inbound_views(availability: &AvailabilityChange) -> Vec<InboundView> {
    let mut by_date: std::collections::BTreeMap<(String, i64), u64> = Default::default();
    for level in &availability.inbound {
        let units = by_date
            .entry((level.location.to_string(), level.expected_at_ms))
            .or_default();
        *units = units.saturating_add(level.quantity);
    }
    by_date
        .into_iter()
        .map(|((location, expected_at_ms), quantity)| InboundView {
            location,
            quantity,
            expected_at_ms,
        })
        .collect()
}
