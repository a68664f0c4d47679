//! The stock rules in force — channel allocation, backorder and routing policy, bills of
//! materials — behind one cell that can be swapped at runtime (the config API) while the
//! ledger, propagation and the API keep reading it.

use super::{AllocationPolicy, BillOfMaterials, StockPolicy};
use std::sync::{Arc, RwLock};

/// One consistent set of stock rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// How each channel's ATP is derived.
    pub allocation: AllocationPolicy,
    /// Backorders and routing, applied when movements are admitted.
    pub stock: StockPolicy,
    /// Bundles and kits.
    pub bom: BillOfMaterials,
}

/// The current [`Rules`]; readers take a cheap snapshot ([`RulesCell::get`]), a change
/// replaces the whole set at once ([`RulesCell::set`]), so nobody sees half a change.
#[derive(Debug, Default)]
pub struct RulesCell(RwLock<Arc<Rules>>);

impl RulesCell {
    /// A cell holding `rules`.
    pub fn new(rules: Rules) -> Self {
        Self(RwLock::new(Arc::new(rules)))
    }

    /// The rules in force now.
    pub fn get(&self) -> Arc<Rules> {
        self.0
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Replaces the rules.
    pub fn set(&self, rules: Rules) {
        *self.0.write().unwrap_or_else(|poison| poison.into_inner()) = Arc::new(rules);
    }
}
