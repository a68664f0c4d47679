//! Vocabulary types and the pure SKU state machine.
//!
//! Owns: [`Sku`], [`LocationId`], [`Movement`] and its kinds, [`SkuState`] (on-hand and
//! reserved per location, open reservations) and the ATP arithmetic used by propagation
//! and the API. Everything here is synchronous and free of I/O, so it can be driven by
//! property tests, replay and simulation.
//!
//! May depend on: nothing else in the crate.
//!
//! Invariants kept by [`SkuState::apply`]:
//! - quantities are whole base units (`i64`/`u64`), never floating point;
//! - `available = on_hand - reserved` for every location, derived, never stored;
//! - a reservation never has more shipped plus released units than it reserved;
//! - reserved is never negative and equals the open units of the lines at each location;
//! - every movement changes on-hand, reserved and in transit by exactly its effect;
//! - applying the same movement log in the same order always yields the same state.
//!
//! [`SkuState::check_invariants`] states them as code; debug builds run it, with the
//! per-movement effect check, after every transition.

mod atp;
mod bundle;
mod movement;
mod policy;
mod rules;
mod state;
pub mod vec_map;

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod proptests;

pub use atp::{
    Allocation, AllocationPolicy, AtpBreakdown, ChannelStockRule, allocate, channel_atp,
};
pub use bundle::{
    BillOfMaterials, BundleExpansion, Component, ComponentLevels, ExpansionBasis, bundle_levels,
};
#[cfg(test)]
pub(crate) use movement::strategies as movement_strategies;
pub use movement::{
    CountBasis, FastMovementReader, MAX_ID_BYTES, MAX_LIST_ENTRIES, MAX_QUANTITY, MAX_REASON_BYTES,
    Movement, MovementKind, SCHEMA_VERSION,
};
pub use policy::StockPolicy;
pub use rules::{Rules, RulesCell};
pub use state::{
    Applied, ApplyContext, ApplyError, AvailabilityChange, CountWatermark, InboundLevel,
    InboundLine, InvariantViolation, JOURNAL_LIMIT, LocationLevel, LocationStock,
    MAX_PARKED_PER_SKU, MAX_STOCK_LEVEL, ParkedList, ParkedMovement, Reservation, RoutingPolicy,
    SkuState, TransferLine,
};

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::fmt;

/// The merchant's stock-keeping unit: the key of the ledger and of Kafka messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(pub String);

/// A place that holds stock (warehouse, store, 3PL), as named in config.
///
/// Held inline (no heap allocation) up to 23 bytes, which every sensible location id fits;
/// a longer one is shared by reference count, so cloning never copies it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LocationId(pub SmolStr);

macro_rules! string_id {
    ($t:ty) => {
        impl From<&str> for $t {
            fn from(value: &str) -> Self {
                Self(value.into())
            }
        }
        impl From<String> for $t {
            fn from(value: String) -> Self {
                Self(value.into())
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $t {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}
string_id!(Sku);
string_id!(LocationId);

/// Receives availability changes after they are durable (implemented by propagation).
///
/// `publish` is called from the ledger's commit path once per committed batch with at most
/// one change per SKU (the newest). It must not block: implementations coalesce into
/// their own bounded structures.
pub trait AvailabilitySink: Send + Sync + 'static {
    /// Takes the newest per-location levels of every SKU changed by one durable batch.
    fn publish(&self, changes: &[AvailabilityChange]);
}

/// A sink that drops everything (for tools and benchmarks that do not propagate).
#[derive(Debug, Default)]
pub struct NullSink;

impl AvailabilitySink for NullSink {
    fn publish(&self, _changes: &[AvailabilityChange]) {}
}
