//! `[[channels]]`: the channels that sell stock, each a platform (`kind`) with that
//! platform's own section.
//!
//! Owns: [`ChannelConfig`], [`PlatformConfig`] (the registry of platforms on the config
//! side: one variant per platform), [`ChannelKind`], the pacing and retry sections, and the
//! per-channel validation. The platform sections themselves live with their platforms
//! (`platforms::<name>::config`); they are re-exported from here (a registry: one line per
//! platform), and `config` re-exports them in turn, so `config/mod.rs` names no platform.
//!
//! May depend on: `domain`, `platforms::<name>::config`.

pub use crate::platforms::amazon::config::{AmazonConfig, AmazonListingConfig};
pub use crate::platforms::bolcom::config::{BolcomConfig, BolcomListingConfig};
pub use crate::platforms::shopify::config::{
    ShopifyConfig, ShopifyListingConfig, ShopifyLocation, ShopifyLocationMap,
};
pub use crate::platforms::woocommerce::config::{WoocommerceConfig, WoocommerceListingConfig};

use crate::domain::{ChannelStockRule, LocationId};
use crate::platforms;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The platform behind a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Shopify Admin API (GraphQL `inventorySetQuantities`).
    Shopify,
    /// bol.com Retailer API v10 (`PUT /retailer/offers/{id}/stock`, PLATFORMS.md §3).
    Bolcom,
    /// Amazon SP-API (Listings Items PATCH and JSON_LISTINGS_FEED, PLATFORMS.md §4).
    Amazon,
    /// WooCommerce REST API v3 (batch product/variation updates, PLATFORMS.md §2).
    Woocommerce,
}

/// `[[channels]]`: a channel's common settings and its platform's section.
///
/// Read and written through the TOML shape users know (`kind = "amazon"` plus a
/// `[channels.amazon]` table); a section of another platform than `kind` is a parse error,
/// so `kind` and the section can never disagree.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(try_from = "RawChannelConfig", into = "RawChannelConfig")]
pub struct ChannelConfig {
    /// Channel id (`shopify-main`); a bounded metric label.
    pub id: String,
    /// Locations that feed this channel, in routing priority order.
    pub locations: Vec<LocationId>,
    /// Units held back from this channel's ATP.
    pub safety_stock: u64,
    /// The most this channel may list, if capped.
    pub max_listed_quantity: Option<u64>,
    /// Below this ATP the channel is shown 0 (avoid selling the last, uncertain units).
    pub show_zero_below: u64,
    /// This channel's share of the pool: `{ kind = "all" }` (default), `{ kind = "share",
    /// percent = 40 }`, `{ kind = "fixed", quantity = 10 }` or `{ kind = "ring_fenced",
    /// quantity = 5 }` (exclusive: other channels do not see those units).
    pub allocation: crate::domain::Allocation,
    /// Sell inbound purchase-order stock expected within a window (pre-orders).
    pub preorder: Option<PreorderConfig>,
    /// Outbound pacing.
    pub rate_limit: RateLimitConfig,
    /// Retry policy for failed pushes.
    pub retry: RetryConfig,
    /// Cancel reasons (compared without case) that mean the units cannot be found: such a
    /// cancellation releases the hold and writes the units off. Absent: the platform's
    /// default (see [`default_write_off_cancel_reasons`]); empty: never write off.
    pub write_off_cancel_reasons: Option<Vec<String>>,
    /// `live` (default) pushes to the channel; `shadow` runs everything but the pushes,
    /// which are read and compared instead (`propagation::shadow`).
    pub mode: ChannelMode,
    /// The platform (`kind`) with its section.
    pub platform: PlatformConfig,
}

/// Whether propagation pushes to a channel (`[[channels]] mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelMode {
    /// Pushes go out.
    #[default]
    Live,
    /// Pushes are read back and compared with what the channel lists, never sent.
    Shadow,
}

impl ChannelMode {
    /// True for [`ChannelMode::Live`] (serde's `skip_serializing_if`).
    pub fn is_live(&self) -> bool {
        *self == Self::Live
    }
}

/// A channel's platform with its own config section: the variant is `kind`, its content the
/// `[channels.<kind>]` table.
#[derive(Clone, Debug)]
pub enum PlatformConfig {
    /// `kind = "shopify"` with `[channels.shopify]`.
    Shopify(ShopifyConfig),
    /// `kind = "woocommerce"` with `[channels.woocommerce]`.
    Woocommerce(WoocommerceConfig),
    /// `kind = "bolcom"` with `[channels.bolcom]`.
    Bolcom(BolcomConfig),
    /// `kind = "amazon"` with `[channels.amazon]`.
    Amazon(AmazonConfig),
    /// `kind` names a platform but the file has no section for it. Parsing keeps the channel
    /// so that [`Config::validate`](super::Config::validate) reports this with every other
    /// problem at once; a validated config never holds it.
    SectionMissing(ChannelKind),
}

impl PlatformConfig {
    /// The platform.
    pub fn kind(&self) -> ChannelKind {
        match self {
            Self::Shopify(_) => ChannelKind::Shopify,
            Self::Woocommerce(_) => ChannelKind::Woocommerce,
            Self::Bolcom(_) => ChannelKind::Bolcom,
            Self::Amazon(_) => ChannelKind::Amazon,
            Self::SectionMissing(kind) => *kind,
        }
    }
}

impl ChannelKind {
    /// The name used as `kind` and as the section's table name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shopify => "shopify",
            Self::Woocommerce => "woocommerce",
            Self::Bolcom => "bolcom",
            Self::Amazon => "amazon",
        }
    }
}

impl ChannelConfig {
    /// The platform.
    pub fn kind(&self) -> ChannelKind {
        self.platform.kind()
    }

    /// The Shopify section, when this is a Shopify channel.
    pub fn shopify(&self) -> Option<&ShopifyConfig> {
        match &self.platform {
            PlatformConfig::Shopify(section) => Some(section),
            _ => None,
        }
    }

    /// The WooCommerce section, when this is a WooCommerce channel.
    pub fn woocommerce(&self) -> Option<&WoocommerceConfig> {
        match &self.platform {
            PlatformConfig::Woocommerce(section) => Some(section),
            _ => None,
        }
    }

    /// The bol.com section, when this is a bol.com channel.
    pub fn bolcom(&self) -> Option<&BolcomConfig> {
        match &self.platform {
            PlatformConfig::Bolcom(section) => Some(section),
            _ => None,
        }
    }

    /// The Amazon section, when this is an Amazon channel.
    pub fn amazon(&self) -> Option<&AmazonConfig> {
        match &self.platform {
            PlatformConfig::Amazon(section) => Some(section),
            _ => None,
        }
    }

    /// Whether a cancellation with the channel's `reason` writes the released units off:
    /// the reason is in `write_off_cancel_reasons` (or, when that is absent, the platform's
    /// default list), compared without case.
    pub fn writes_off_on_cancel(&self, reason: &str) -> bool {
        let reason = reason.trim();
        if reason.is_empty() {
            return false;
        }
        match &self.write_off_cancel_reasons {
            Some(reasons) => reasons
                .iter()
                .any(|listed| listed.trim().eq_ignore_ascii_case(reason)),
            None => default_write_off_cancel_reasons(self.kind())
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(reason)),
        }
    }

    /// The ATP rule this channel applies to SKUs without an override.
    pub fn stock_rule(&self) -> ChannelStockRule {
        ChannelStockRule {
            channel: self.id.clone(),
            locations: self.locations.clone(),
            safety_stock: self.safety_stock,
            max_listed_quantity: self.max_listed_quantity,
            show_zero_below: self.show_zero_below,
            allocation: self.allocation,
            preorder_window_ms: self.preorder.as_ref().map(|p| {
                i64::try_from(p.window_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX)
            }),
            preorder_cap: self.preorder.as_ref().map_or(0, |p| p.cap),
        }
    }
}

impl TryFrom<RawChannelConfig> for ChannelConfig {
    type Error = String;

    fn try_from(raw: RawChannelConfig) -> Result<Self, String> {
        let kind = raw.kind;
        let mut sections = Vec::new();
        if let Some(section) = raw.shopify {
            sections.push(PlatformConfig::Shopify(section));
        }
        if let Some(section) = raw.woocommerce {
            sections.push(PlatformConfig::Woocommerce(section));
        }
        if let Some(section) = raw.bolcom {
            sections.push(PlatformConfig::Bolcom(section));
        }
        if let Some(section) = raw.amazon {
            sections.push(PlatformConfig::Amazon(section));
        }
        let foreign: Vec<String> = sections
            .iter()
            .filter(|section| section.kind() != kind)
            .map(|section| format!("[channels.{}]", section.kind().name()))
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "channel {}: kind = \"{}\" cannot have a {} section (a channel has only its own platform's section)",
                raw.id,
                kind.name(),
                foreign.join(" or ")
            ));
        }
        let platform = sections
            .pop()
            .unwrap_or(PlatformConfig::SectionMissing(kind));
        Ok(Self {
            id: raw.id,
            locations: raw.locations,
            safety_stock: raw.safety_stock,
            max_listed_quantity: raw.max_listed_quantity,
            show_zero_below: raw.show_zero_below,
            allocation: raw.allocation,
            preorder: raw.preorder,
            rate_limit: raw.rate_limit,
            retry: raw.retry,
            write_off_cancel_reasons: raw.write_off_cancel_reasons,
            mode: raw.mode,
            platform,
        })
    }
}

impl From<ChannelConfig> for RawChannelConfig {
    fn from(channel: ChannelConfig) -> Self {
        let kind = channel.kind();
        let mut raw = Self {
            id: channel.id,
            kind,
            locations: channel.locations,
            safety_stock: channel.safety_stock,
            max_listed_quantity: channel.max_listed_quantity,
            show_zero_below: channel.show_zero_below,
            allocation: channel.allocation,
            preorder: channel.preorder,
            rate_limit: channel.rate_limit,
            retry: channel.retry,
            write_off_cancel_reasons: channel.write_off_cancel_reasons,
            mode: channel.mode,
            shopify: None,
            bolcom: None,
            amazon: None,
            woocommerce: None,
        };
        match channel.platform {
            PlatformConfig::Shopify(section) => raw.shopify = Some(section),
            PlatformConfig::Woocommerce(section) => raw.woocommerce = Some(section),
            PlatformConfig::Bolcom(section) => raw.bolcom = Some(section),
            PlatformConfig::Amazon(section) => raw.amazon = Some(section),
            PlatformConfig::SectionMissing(_) => {}
        }
        raw
    }
}

/// Most cancel reasons a channel may list in `write_off_cancel_reasons`.
pub const MAX_WRITE_OFF_CANCEL_REASONS: usize = 64;

/// The cancel reasons that write off by default, per platform: Shopify's order
/// `cancel_reason` `inventory`; Amazon's `NoInventory` (order acknowledgement feed) and
/// `NO_INVENTORY` (`cancelOrder`); bol.com's cancellation `reasonCode`s `OUT_OF_STOCK` and
/// `UNFINDABLE_ITEM`; none for WooCommerce (core records no cancel reason).
pub fn default_write_off_cancel_reasons(kind: ChannelKind) -> &'static [&'static str] {
    match kind {
        ChannelKind::Shopify => &["inventory"],
        ChannelKind::Amazon => &["NoInventory", "NO_INVENTORY"],
        ChannelKind::Bolcom => &["OUT_OF_STOCK", "UNFINDABLE_ITEM"],
        ChannelKind::Woocommerce => &[],
    }
}

/// Checks one channel (locations, pacing, retry, and its platform's section); pushes one
/// string per problem. `has_kafka` says whether `[kafka]` is configured.
pub(super) fn validate_channel(
    channel: &ChannelConfig,
    location_ids: &HashSet<LocationId>,
    has_kafka: bool,
    problems: &mut Vec<String>,
) {
    let id = &channel.id;
    if channel.locations.is_empty() {
        problems.push(format!("channel {id} has no locations feeding it"));
    }
    for location in &channel.locations {
        if !location_ids.contains(location) {
            problems.push(format!("channel {id} names unknown location {location}"));
        }
    }
    if channel.rate_limit.requests_per_sec.is_nan() || channel.rate_limit.requests_per_sec <= 0.0 {
        problems.push(format!(
            "channel {id}: rate_limit.requests_per_sec must be > 0"
        ));
    }
    if channel.rate_limit.burst == 0 {
        problems.push(format!("channel {id}: rate_limit.burst must be at least 1"));
    }
    if channel.retry.initial_backoff_ms == 0
        || channel.retry.max_backoff_ms < channel.retry.initial_backoff_ms
    {
        problems.push(format!(
            "channel {id}: retry needs 0 < initial_backoff_ms <= max_backoff_ms"
        ));
    }
    if let Some(reasons) = &channel.write_off_cancel_reasons {
        if reasons.len() > MAX_WRITE_OFF_CANCEL_REASONS {
            problems.push(format!(
                "channel {id}: write_off_cancel_reasons lists {} reasons (at most {MAX_WRITE_OFF_CANCEL_REASONS})",
                reasons.len()
            ));
        }
        if reasons.iter().any(|reason| reason.trim().is_empty()) {
            problems.push(format!(
                "channel {id}: write_off_cancel_reasons must not contain an empty reason"
            ));
        }
    }
    match &channel.platform {
        PlatformConfig::Shopify(section) => platforms::shopify::config::validate(
            id,
            section,
            &channel
                .locations
                .iter()
                .map(|location| location.as_str().to_owned())
                .collect::<Vec<_>>(),
            problems,
        ),
        PlatformConfig::Woocommerce(section) => {
            platforms::woocommerce::config::validate(id, section, problems)
        }
        PlatformConfig::Bolcom(section) => {
            platforms::bolcom::config::validate(id, section, problems)
        }
        PlatformConfig::Amazon(section) => {
            platforms::amazon::config::validate(id, section, has_kafka, problems)
        }
        PlatformConfig::SectionMissing(kind) => problems.push(format!(
            "channel {id} is kind {kind} but has no [{kind}] section",
            kind = kind.name()
        )),
    }
}

/// `[[channels]]` as written: `kind` plus at most one platform section. Converted to and
/// from [`ChannelConfig`], so the TOML keeps its shape while the typed config cannot hold a
/// section of another platform.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawChannelConfig {
    /// Channel id (`shopify-main`); a bounded metric label.
    id: String,
    /// The platform.
    kind: ChannelKind,
    /// Locations that feed this channel, in routing priority order.
    locations: Vec<LocationId>,
    /// Units held back from this channel's ATP.
    #[serde(default)]
    safety_stock: u64,
    /// The most this channel may list, if capped.
    #[serde(default)]
    max_listed_quantity: Option<u64>,
    /// Below this ATP the channel is shown 0 (avoid selling the last, uncertain units).
    #[serde(default)]
    show_zero_below: u64,
    /// This channel's share of the pool: `{ kind = "all" }` (default), `{ kind = "share",
    /// percent = 40 }`, `{ kind = "fixed", quantity = 10 }` or `{ kind = "ring_fenced",
    /// quantity = 5 }` (exclusive: other channels do not see those units).
    #[serde(default)]
    allocation: crate::domain::Allocation,
    /// Sell inbound purchase-order stock expected within a window (pre-orders).
    #[serde(default)]
    preorder: Option<PreorderConfig>,
    /// Outbound pacing.
    #[serde(default)]
    rate_limit: RateLimitConfig,
    /// Retry policy for failed pushes.
    #[serde(default)]
    retry: RetryConfig,
    /// Cancel reasons that write the released units off (absent: the platform's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_off_cancel_reasons: Option<Vec<String>>,
    /// `live` (default) or `shadow`.
    #[serde(default, skip_serializing_if = "ChannelMode::is_live")]
    mode: ChannelMode,
    /// Shopify settings; required when `kind = "shopify"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shopify: Option<ShopifyConfig>,
    /// bol.com settings; required when `kind = "bolcom"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bolcom: Option<BolcomConfig>,
    /// Amazon SP-API settings; required when `kind = "amazon"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amazon: Option<AmazonConfig>,
    /// WooCommerce settings; required when `kind = "woocommerce"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    woocommerce: Option<WoocommerceConfig>,
}

/// `[channels.preorder]`: inbound stock a channel may sell ahead of arrival.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PreorderConfig {
    /// Purchase-order lines expected within this many days count.
    pub window_days: u64,
    /// At most this many inbound units are added to the channel's ATP.
    pub cap: u64,
}

/// `[channels.rate_limit]`: a token bucket; the platform's own signals can lower it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second sustained.
    #[serde(default = "default_requests_per_sec")]
    pub requests_per_sec: f64,
    /// Requests allowed in a burst.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_sec: default_requests_per_sec(),
            burst: default_burst(),
        }
    }
}

fn default_requests_per_sec() -> f64 {
    2.0
}
fn default_burst() -> u32 {
    4
}

/// `[channels.retry]`: exponential backoff with full jitter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff, in milliseconds.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest backoff, in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BOLCOM: &str = r#"
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "bol"
        kind = "bolcom"
        locations = ["WH-1"]
        [channels.bolcom]
        client_id = "c"
        client_secret = "s"
        "#;

    #[test]
    fn kind_and_section_become_one_variant() {
        let config = Config::from_toml(BOLCOM).unwrap();
        let channel = &config.channels[0];
        assert_eq!(channel.kind(), ChannelKind::Bolcom);
        assert!(matches!(channel.platform, PlatformConfig::Bolcom(_)));
        assert_eq!(channel.bolcom().unwrap().client_id, "c");
        assert!(channel.shopify().is_none() && channel.amazon().is_none());
        config.validate().unwrap();
    }

    #[test]
    fn a_section_of_another_platform_is_refused_when_parsing() {
        let text = format!(
            "{BOLCOM}\n[channels.shopify]\nshop_url = \"https://x\"\naccess_token = \"t\"\nwebhook_secret = \"w\"\nlocation_id = 1\n"
        );
        let error = Config::from_toml(&text).unwrap_err().to_string();
        assert!(
            error.contains(
                "channel bol: kind = \"bolcom\" cannot have a [channels.shopify] section"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_missing_section_is_reported_by_validation_with_the_other_problems() {
        let config = Config::from_toml(
            "[[channels]]\nid = \"amz\"\nkind = \"amazon\"\nlocations = [\"WH-9\"]\n",
        )
        .unwrap();
        assert!(matches!(
            config.channels[0].platform,
            PlatformConfig::SectionMissing(ChannelKind::Amazon)
        ));
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("channel amz names unknown location WH-9"),
            "{error}"
        );
        assert!(
            error.contains("channel amz is kind amazon but has no [amazon] section"),
            "{error}"
        );
    }

    #[test]
    fn every_file_in_config_writes_back_in_the_shape_it_was_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let written = toml::to_string(&config).unwrap();
            let again = Config::from_toml(&written)
                .unwrap_or_else(|e| panic!("{}: {e}\n{written}", path.display()));
            let shape = |config: &Config| -> Vec<(String, ChannelKind)> {
                config
                    .channels
                    .iter()
                    .map(|channel| (channel.id.clone(), channel.kind()))
                    .collect()
            };
            assert_eq!(shape(&config), shape(&again), "{}", path.display());
            let value = serde_json::to_value(&config).unwrap();
            for channel in value["channels"].as_array().into_iter().flatten() {
                let kind = channel["kind"].as_str().unwrap();
                assert!(channel[kind].is_object(), "{}: {channel}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod write_off_tests {
    use crate::config::Config;
    use crate::domain::CountBasis;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!(
            r#"
            [ledger]
            count_basis = {{ "erp-1" = "book", "wms-1" = "physical" }}
            [[locations]]
            id = "WH-1"
            [[channels]]
            id = "bol-nl"
            kind = "bolcom"
            locations = ["WH-1"]
            {extra}
            [channels.bolcom]
            client_id = "id"
            client_secret = "secret"
            "#
        ))
        .unwrap()
    }

    #[test]
    fn write_off_reasons_default_per_platform_and_are_configurable() {
        let defaults = config("");
        let channel = &defaults.channels[0];
        assert_eq!(channel.write_off_cancel_reasons, None);
        assert!(channel.writes_off_on_cancel("OUT_OF_STOCK"));
        assert!(channel.writes_off_on_cancel("out_of_stock"), "without case");
        assert!(!channel.writes_off_on_cancel("REQUESTED_BY_CUSTOMER"));
        assert!(!channel.writes_off_on_cancel(""));
        let configured = config(r#"write_off_cancel_reasons = ["BAD_CONDITION"]"#);
        let channel = &configured.channels[0];
        assert!(channel.writes_off_on_cancel("BAD_CONDITION"));
        assert!(!channel.writes_off_on_cancel("OUT_OF_STOCK"));
        assert_eq!(
            defaults.ledger.count_basis.get("erp-1"),
            Some(&CountBasis::Book)
        );
        assert_eq!(
            defaults.ledger.count_basis.get("wms-1"),
            Some(&CountBasis::Physical)
        );
        let problems = config(r#"write_off_cancel_reasons = [" "]"#)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(problems.contains("write_off_cancel_reasons"), "{problems}");
    }
}
