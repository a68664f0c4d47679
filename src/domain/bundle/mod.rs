//! Bundles and kits: a SKU made of component SKUs per a bill of materials (BOM). This module
//! owns all bill-of-materials maths; the ledger and propagation only call it.
//!
//! - Here: [`BillOfMaterials`] — kits may nest (a kit of kits); [`BillOfMaterials::new`]
//!   flattens every bundle to its leaf components with multiplied quantities, rejects
//!   cycles, and keeps the reverse index component → bundles containing it.
//! - `expansion`: a bundle movement (sale, hold, cancellation, shipment, return) expanded
//!   into component movements, and what is recorded of a bundle line ([`BundleExpansion`]).
//! - `levels`: bundle ATP — a bundle's levels derived from its components' per metric first,
//!   only then the minimum (DESIGN.md §2) — and [`ComponentLevels`], the newest component
//!   levels from which every affected bundle is recomputed.
//!
//! May depend on: the rest of `domain` (movements, levels), nothing else in the crate.

mod expansion;
mod levels;

pub use expansion::{BundleExpansion, ExpansionBasis};
pub use levels::{ComponentLevels, bundle_levels};

use super::Sku;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One component line of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// The component SKU.
    pub sku: Sku,
    /// Units of the component per bundle (> 0).
    pub quantity: u64,
}

/// The bills of materials of every bundle, flattened to leaf components.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BillOfMaterials {
    /// Bundle → leaf components (each with units per one bundle), sorted by SKU.
    flattened: HashMap<Sku, Vec<Component>>,
    /// Leaf component → bundles that contain it (directly or through nested kits).
    containing: HashMap<Sku, BTreeSet<Sku>>,
}

impl BillOfMaterials {
    /// Builds from direct component lists (a component may itself be a bundle).
    ///
    /// Errors: every problem found — a cycle (naming its path), a zero quantity, a bundle
    /// with no components.
    pub fn new(bundles: &BTreeMap<Sku, Vec<Component>>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        for (bundle, components) in bundles {
            if components.is_empty() {
                problems.push(format!("bundle {bundle} has no components"));
            }
            for component in components.iter().filter(|c| c.quantity == 0) {
                problems.push(format!(
                    "bundle {bundle}: component {} has quantity 0",
                    component.sku
                ));
            }
        }
        let mut flattened = HashMap::new();
        for bundle in bundles.keys() {
            let mut leaves: BTreeMap<Sku, u64> = BTreeMap::new();
            let mut path = vec![bundle.clone()];
            if let Err(cycle) = flatten(bundles, bundle, 1, &mut path, &mut leaves) {
                problems.push(cycle);
                continue;
            }
            let components = leaves
                .into_iter()
                .map(|(sku, quantity)| Component { sku, quantity })
                .collect::<Vec<_>>();
            flattened.insert(bundle.clone(), components);
        }
        if !problems.is_empty() {
            problems.sort();
            problems.dedup();
            return Err(problems);
        }
        let mut containing: HashMap<Sku, BTreeSet<Sku>> = HashMap::new();
        for (bundle, components) in &flattened {
            for component in components {
                containing
                    .entry(component.sku.clone())
                    .or_default()
                    .insert(bundle.clone());
            }
        }
        Ok(Self {
            flattened,
            containing,
        })
    }

    /// The leaf components of `bundle` (units per one bundle), or `None` if it is no bundle.
    pub fn components(&self, bundle: &Sku) -> Option<&[Component]> {
        self.flattened.get(bundle).map(Vec::as_slice)
    }

    /// Whether `sku` is a bundle.
    pub fn is_bundle(&self, sku: &Sku) -> bool {
        self.flattened.contains_key(sku)
    }

    /// Bundles that contain `component`, sorted.
    pub fn bundles_containing(&self, component: &Sku) -> impl Iterator<Item = &Sku> {
        self.containing.get(component).into_iter().flatten()
    }

    /// Every SKU that is a leaf component of some bundle.
    pub fn component_skus(&self) -> impl Iterator<Item = &Sku> {
        self.containing.keys()
    }

    /// Whether there are no bundles.
    pub fn is_empty(&self) -> bool {
        self.flattened.is_empty()
    }
}

fn flatten(
    bundles: &BTreeMap<Sku, Vec<Component>>,
    bundle: &Sku,
    multiplier: u64,
    path: &mut Vec<Sku>,
    leaves: &mut BTreeMap<Sku, u64>,
) -> Result<(), String> {
    for component in &bundles[bundle] {
        let units = multiplier.saturating_mul(component.quantity);
        if path.contains(&component.sku) {
            let names: Vec<String> = path.iter().map(Sku::to_string).collect();
            return Err(format!(
                "bundle cycle: {} -> {}",
                names.join(" -> "),
                component.sku
            ));
        }
        if bundles.contains_key(&component.sku) {
            path.push(component.sku.clone());
            flatten(bundles, &component.sku, units, path, leaves)?;
            path.pop();
        } else {
            *leaves.entry(component.sku.clone()).or_default() += units;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boms(entries: &[(&str, &[(&str, u64)])]) -> BTreeMap<Sku, Vec<Component>> {
        entries
            .iter()
            .map(|(bundle, components)| {
                (
                    (*bundle).into(),
                    components
                        .iter()
                        .map(|(sku, quantity)| Component {
                            sku: (*sku).into(),
                            quantity: *quantity,
                        })
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn nested_kits_flatten_with_multiplied_quantities() {
        let bom = BillOfMaterials::new(&boms(&[
            ("GIFT-BOX", &[("MUG-SET", 2), ("CARD", 1)]),
            ("MUG-SET", &[("MUG", 2), ("COASTER", 4)]),
        ]))
        .unwrap();
        let components = bom.components(&"GIFT-BOX".into()).unwrap();
        let flat: Vec<(&str, u64)> = components
            .iter()
            .map(|c| (c.sku.as_str(), c.quantity))
            .collect();
        assert_eq!(flat, vec![("CARD", 1), ("COASTER", 8), ("MUG", 4)]);
        let containing: Vec<&Sku> = bom.bundles_containing(&"MUG".into()).collect();
        assert_eq!(
            containing,
            vec![&Sku::from("GIFT-BOX"), &Sku::from("MUG-SET")]
        );
    }

    #[test]
    fn cycles_are_rejected_with_their_path() {
        let problems =
            BillOfMaterials::new(&boms(&[("A", &[("B", 1)]), ("B", &[("A", 1)])])).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("A -> B -> A")),
            "{problems:?}"
        );
    }
}
