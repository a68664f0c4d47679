//! Bundle ATP: a bundle's levels derived from its components' levels, per metric first
//! (available, on-hand, in transit, inbound, each divided by the component quantity and
//! rounded down), only then the minimum (DESIGN.md §2) — never by subtracting aggregated
//! minima. [`ComponentLevels`] remembers the newest levels of every component so that a
//! change of one component recomputes every bundle containing it.

use super::{BillOfMaterials, Component};
use crate::domain::{AvailabilityChange, LocationId, LocationLevel, Sku};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A bundle's levels per location from its components' levels: for each metric, each
/// component's figure divided by its quantity (rounded down, negatives as 0), then the
/// minimum over components. `reserved` is derived as on-hand − available so that the
/// bundle's available is exactly the per-metric minimum. A component without levels at a
/// location counts as 0 there.
pub fn bundle_levels(components: &[(&Component, &[LocationLevel])]) -> Vec<LocationLevel> {
    let locations: BTreeSet<&LocationId> = components
        .iter()
        .flat_map(|(_, levels)| levels.iter().map(|level| &level.location))
        .collect();
    locations
        .into_iter()
        .map(|location| {
            let per = |metric: fn(&LocationLevel) -> i64| {
                components
                    .iter()
                    .map(|(component, levels)| {
                        let figure = levels
                            .iter()
                            .find(|level| &level.location == location)
                            .map(metric)
                            .unwrap_or(0)
                            .max(0);
                        figure / i64::try_from(component.quantity.max(1)).unwrap_or(i64::MAX)
                    })
                    .min()
                    .unwrap_or(0)
            };
            let on_hand = per(|level| level.on_hand);
            let available = per(LocationLevel::available);
            LocationLevel {
                location: location.clone(),
                on_hand,
                reserved: on_hand - available,
                in_transit: per(|level| level.in_transit),
                inbound: per(|level| level.inbound),
            }
        })
        .collect()
}

/// The newest levels of every bundle component seen so far, from which bundle levels are
/// derived. Bounded by the number of component SKUs. Pure data: the caller decides where
/// it lives and how it is shared (propagation keeps one behind a mutex).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComponentLevels {
    latest: HashMap<Sku, AvailabilityChange>,
}

impl ComponentLevels {
    /// Takes in `changes` and returns the bundle changes they imply: each bundle containing
    /// a changed component once, with levels from its components' newest levels (a component
    /// not seen yet counts as 0 everywhere) and the highest seq among the changes that
    /// touched it. Changes of SKUs that are no bundle component are not remembered.
    pub fn derive(
        &mut self,
        bom: &BillOfMaterials,
        changes: &[AvailabilityChange],
    ) -> Vec<AvailabilityChange> {
        if bom.is_empty() {
            return Vec::new();
        }
        let mut affected = BTreeMap::new();
        for change in changes {
            let bundles: Vec<&Sku> = bom.bundles_containing(&change.sku).collect();
            if bundles.is_empty() {
                continue;
            }
            self.latest.insert(change.sku.clone(), change.clone());
            for bundle in bundles {
                let seq = affected.entry(bundle.clone()).or_insert(0);
                *seq = (*seq).max(change.seq);
            }
        }
        affected
            .into_iter()
            .filter_map(|(bundle, seq)| {
                let components = bom.components(&bundle)?;
                let empty = Vec::new();
                let inputs: Vec<(&Component, &[LocationLevel])> = components
                    .iter()
                    .map(|component| {
                        let levels = self
                            .latest
                            .get(&component.sku)
                            .map_or(&empty, |c| &c.locations);
                        (component, levels.as_slice())
                    })
                    .collect();
                Some(AvailabilityChange {
                    locations: bundle_levels(&inputs),
                    sku: bundle,
                    seq,
                    inbound: Vec::new(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(location: &str, on_hand: i64, reserved: i64) -> LocationLevel {
        LocationLevel {
            location: location.into(),
            on_hand,
            reserved,
            in_transit: 0,
            inbound: 0,
        }
    }

    #[test]
    fn bundle_availability_is_taken_per_metric_before_the_minimum() {
        // Component X: 10 on hand, 8 reserved → 2 available; Y: 3 on hand, 0 reserved.
        // Per metric: available min(2/1, 3/1) = 2; on-hand min(10, 3) = 3. Subtracting
        // aggregated minima (min on-hand 3 − min reserved 0) would wrongly give 3.
        let x = Component {
            sku: "X".into(),
            quantity: 1,
        };
        let y = Component {
            sku: "Y".into(),
            quantity: 1,
        };
        let levels = bundle_levels(&[(&x, &[level("W", 10, 8)]), (&y, &[level("W", 3, 0)])]);
        assert_eq!(levels[0].available(), 2);
        assert_eq!(levels[0].on_hand, 3);
    }

    #[test]
    fn a_kit_needing_two_of_a_component_rounds_down_and_ignores_negative_components() {
        let x = Component {
            sku: "X".into(),
            quantity: 2,
        };
        let y = Component {
            sku: "Y".into(),
            quantity: 1,
        };
        let levels = bundle_levels(&[
            (&x, &[level("W", 5, 0), level("V", 9, 0)]),
            (&y, &[level("W", -3, 0), level("V", 7, 0)]),
        ]);
        let by_location: Vec<(&str, i64)> = levels
            .iter()
            .map(|l| (l.location.as_str(), l.available()))
            .collect();
        assert_eq!(by_location, vec![("V", 4), ("W", 0)]);
    }

    fn change(sku: &str, seq: u64, levels: Vec<LocationLevel>) -> AvailabilityChange {
        AvailabilityChange {
            sku: sku.into(),
            seq,
            locations: levels,
            inbound: Vec::new(),
        }
    }

    #[test]
    fn a_component_change_recomputes_every_bundle_containing_it_from_the_newest_levels() {
        let bom = BillOfMaterials::new(
            &[
                (
                    Sku::from("KIT"),
                    vec![
                        Component {
                            sku: "X".into(),
                            quantity: 2,
                        },
                        Component {
                            sku: "Y".into(),
                            quantity: 1,
                        },
                    ],
                ),
                (
                    Sku::from("PAIR"),
                    vec![Component {
                        sku: "X".into(),
                        quantity: 2,
                    }],
                ),
            ]
            .into(),
        )
        .unwrap();
        let mut cache = ComponentLevels::default();
        // Y not seen yet: it counts as 0, so the kit has nothing; the pair has 4.
        let first = cache.derive(&bom, &[change("X", 3, vec![level("W", 9, 1)])]);
        let summary: Vec<(&str, u64, i64)> = first
            .iter()
            .map(|c| (c.sku.as_str(), c.seq, c.locations[0].available()))
            .collect();
        assert_eq!(summary, vec![("KIT", 3, 0), ("PAIR", 3, 4)]);
        // Y arrives; X's remembered levels are used for the kit.
        let second = cache.derive(
            &bom,
            &[
                change("Y", 7, vec![level("W", 3, 0)]),
                change("UNRELATED", 8, vec![level("W", 50, 0)]),
            ],
        );
        assert_eq!(
            second.len(),
            1,
            "only bundles containing a changed component"
        );
        assert_eq!((second[0].sku.as_str(), second[0].seq), ("KIT", 7));
        assert_eq!(second[0].locations[0].available(), 3);
        assert!(
            ComponentLevels::default()
                .derive(&BillOfMaterials::default(), &[change("X", 1, vec![])])
                .is_empty()
        );
    }
}
