//! `[stock]`, `[[locations]]`, `[[sku_rules]]` and `[[bundles]]`: the stock rules.
//!
//! Owns: the location list, routing and backorder rules, per-SKU overrides, bills of
//! materials, and their translation into the ledger's [`Rules`](crate::domain::Rules)
//! ([`Config::rules`], [`Config::stock_policy`], [`Config::allocation_policy`],
//! [`Config::bill_of_materials`]).
//!
//! May depend on: `domain`, the sibling `channels` section.

use super::{ChannelConfig, Config, ConfigError};
use crate::domain::LocationId;
use serde::{Deserialize, Serialize};

/// `[[locations]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocationConfig {
    /// Location id used in movements (`WH-1`).
    pub id: LocationId,
    /// Human name for the dashboard.
    #[serde(default)]
    pub name: String,
    /// Whether holds may take this location below zero (a backorder debt that never cancels
    /// stock held elsewhere). Default: forbidden.
    #[serde(default)]
    pub allow_backorder: bool,
}

/// `[[bundles]]`: a SKU made of components (which may be bundles themselves).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// The bundle's SKU.
    pub sku: String,
    /// Its direct components.
    pub components: Vec<BundleComponentConfig>,
}

/// One component line of a bundle.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleComponentConfig {
    /// The component SKU (a plain SKU or another bundle).
    pub sku: String,
    /// Units of it per bundle, in base units (pieces, not packs).
    pub quantity: u64,
}

/// `[stock]`: how holds are routed and where backorders are allowed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StockConfig {
    /// `priority` (first location in the channel's order with enough available; default)
    /// or `most_stock` (the location with the most available).
    #[serde(default)]
    pub routing: crate::domain::RoutingPolicy,
    /// Per SKU × location backorder rules; they win over `locations[].allow_backorder`.
    #[serde(default)]
    pub backorders: Vec<BackorderRuleConfig>,
    /// A line that no single location can serve may be split across at most this many
    /// locations (default 1: never split).
    #[serde(default = "default_max_split_locations")]
    pub max_split_locations: usize,
    /// Multi-line reservations first try one location that has every line (fewer
    /// shipments); otherwise each line is routed on its own.
    #[serde(default)]
    pub prefer_single_location: bool,
}

fn default_max_split_locations() -> usize {
    1
}

impl Default for StockConfig {
    fn default() -> Self {
        Self {
            routing: crate::domain::RoutingPolicy::default(),
            backorders: Vec::new(),
            max_split_locations: default_max_split_locations(),
            prefer_single_location: false,
        }
    }
}

/// `[[stock.backorders]]`: whether holds of `sku` may take `location` below zero.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackorderRuleConfig {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: LocationId,
    /// `true`: a backorder debt is allowed; `false`: forbidden even if the location allows it.
    pub allow: bool,
}

/// `[[sku_rules]]`: a per-SKU override.
///
/// Safety-stock precedence (highest first): a rule naming this SKU and this channel, a rule
/// naming this SKU with no channel, then the channel's own `safety_stock`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SkuRuleConfig {
    /// The SKU.
    pub sku: String,
    /// The channel it applies to; absent means every channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// Units held back from the channel(s) for this SKU.
    pub safety_stock: u64,
}

impl Config {
    /// Backorder and routing rules for the ledger.
    pub fn stock_policy(&self) -> crate::domain::StockPolicy {
        let mut policy = crate::domain::StockPolicy {
            routing: self.stock.routing,
            max_split_locations: self.stock.max_split_locations,
            // Past the key TTL a redelivered line could not be recognised by its key either.
            closed_line_retention_ms: i64::try_from(
                self.ledger.idempotency_ttl_secs.saturating_mul(1000),
            )
            .unwrap_or(i64::MAX),
            prefer_single_location: self.stock.prefer_single_location,
            parked_ttl_ms: i64::try_from(self.ledger.parked_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            known_locations: self
                .locations
                .iter()
                .map(|location| location.id.clone())
                .collect(),
            backorder_locations: self
                .locations
                .iter()
                .filter(|location| location.allow_backorder)
                .map(|location| location.id.clone())
                .collect(),
            ..Default::default()
        };
        for rule in &self.stock.backorders {
            let set = policy
                .backorders_by_sku
                .entry(rule.sku.as_str().into())
                .or_insert_with(|| policy.backorder_locations.clone());
            if rule.allow {
                set.insert(rule.location.clone());
            } else {
                set.remove(&rule.location);
            }
        }
        policy
    }

    /// The bills of materials, flattened; errors list every problem (cycles, zero
    /// quantities, a bundle defined twice).
    pub fn bill_of_materials(&self) -> Result<crate::domain::BillOfMaterials, Vec<String>> {
        let mut direct = std::collections::BTreeMap::new();
        let mut problems = Vec::new();
        for bundle in &self.bundles {
            let components = bundle
                .components
                .iter()
                .map(|c| crate::domain::Component {
                    sku: c.sku.as_str().into(),
                    quantity: c.quantity,
                })
                .collect();
            if direct
                .insert(bundle.sku.as_str().into(), components)
                .is_some()
            {
                problems.push(format!("bundle {} is defined twice", bundle.sku));
            }
        }
        match crate::domain::BillOfMaterials::new(&direct) {
            Ok(bom) if problems.is_empty() => Ok(bom),
            Ok(_) => Err(problems),
            Err(mut more) => {
                problems.append(&mut more);
                Err(problems)
            }
        }
    }

    /// The stock rules this config describes (allocation, backorders and routing, bills of
    /// materials). Errors: the bill of materials is inconsistent (see [`Config::validate`]).
    pub fn rules(&self) -> Result<crate::domain::Rules, ConfigError> {
        Ok(crate::domain::Rules {
            allocation: self.allocation_policy(),
            stock: self.stock_policy(),
            bom: self.bill_of_materials().map_err(ConfigError::Invalid)?,
        })
    }

    /// Every channel's ATP rule plus the per-SKU safety-stock overrides.
    pub fn allocation_policy(&self) -> crate::domain::AllocationPolicy {
        crate::domain::AllocationPolicy {
            channels: self
                .channels
                .iter()
                .map(ChannelConfig::stock_rule)
                .collect(),
            safety_overrides: self
                .sku_rules
                .iter()
                .map(|rule| ((rule.sku.clone(), rule.channel.clone()), rule.safety_stock))
                .collect(),
        }
    }
}
