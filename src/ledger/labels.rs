//! Bounded metric labels for movement sources.
//!
//! A movement's `source` comes from the producer (a Kafka payload, a REST body), so used as
//! a metric label straight away it would let any producer create unbounded label values.
//! [`SourceLabels`] keeps only the sources the operator configured (`[ledger]
//! metric_sources`, `{platform}:{channel id}` of every configured channel, the sources of
//! `[ledger] count_basis`) and reports every other one as [`OTHER`].
//!
//! May depend on: `config`.

use std::borrow::Cow;
use std::collections::HashSet;

/// The label value of every source that is not configured.
pub const OTHER: &str = "other";

/// The platforms whose decoders name their movements `{platform}:{channel id}`.
const CHANNEL_PLATFORMS: [&str; 4] = ["shopify", "woocommerce", "amazon", "bolcom"];

/// The movement sources the metrics name as themselves.
#[derive(Clone, Debug, Default)]
pub struct SourceLabels {
    known: HashSet<String>,
}

impl SourceLabels {
    /// Keeps exactly `sources`.
    pub fn new(sources: impl IntoIterator<Item = String>) -> Self {
        Self {
            known: sources.into_iter().collect(),
        }
    }

    /// `[ledger] metric_sources`, `{platform}:{channel id}` for every configured channel
    /// and platform, and the sources of `[ledger] count_basis`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let channels = config.channels.iter().flat_map(|channel| {
            CHANNEL_PLATFORMS
                .iter()
                .map(move |platform| format!("{platform}:{}", channel.id))
        });
        Self::new(
            config
                .ledger
                .metric_sources
                .iter()
                .cloned()
                .chain(channels)
                .chain(config.ledger.count_basis.keys().cloned()),
        )
    }

    /// The label for `source`: itself when configured, else [`OTHER`].
    pub fn label<'a>(&self, source: &'a str) -> &'a str {
        if self.known.contains(source) {
            source
        } else {
            OTHER
        }
    }

    /// Like [`SourceLabels::label`], taking the source by value: the source itself when
    /// configured (no copy), else the static [`OTHER`] (no allocation).
    pub fn label_owned(&self, source: String) -> Cow<'static, str> {
        if self.known.contains(&source) {
            Cow::Owned(source)
        } else {
            Cow::Borrowed(OTHER)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_sources_and_channels_are_kept_and_the_rest_is_other() {
        let config = crate::config::Config::from_toml(
            "[ledger]\nmetric_sources = [\"wms-1\"]\ncount_basis = { \"erp-1\" = \"book\" }\n",
        )
        .expect("config parses");
        let labels = SourceLabels::from_config(&config);
        assert_eq!(labels.label("wms-1"), "wms-1");
        assert_eq!(labels.label("erp-1"), "erp-1");
        assert_eq!(labels.label("wms-2"), OTHER);
        assert_eq!(labels.label("shopify:anything"), OTHER);
        assert_eq!(labels.label_owned("wms-1".to_owned()), "wms-1");
        assert!(matches!(
            labels.label_owned("wms-2".to_owned()),
            Cow::Borrowed(OTHER)
        ));
    }
}
