//! Wiring of the audit log, reconciliation and alerting: the adapters that let
//! `reconcile` read the ledger and the web layer's webhook freshness without importing them,
//! and the config-loaded audit record.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::Sku;
use crate::ledger::Ledger;
use crate::propagation::Propagation;
use crate::reconcile::alerts::{self, Alerter, WebhookActivity};
use crate::reconcile::{LedgerAtp, LedgerReading, Reconciler};
use crate::store::{ConfigAuditRecord, Store};
use crate::telemetry::DeadLetterBroadcast;
use crate::web::{WebState, stock};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Reads a channel's ATP from the ledger for reconciliation.
struct LedgerAtpView {
    ledger: Ledger,
    propagation: Propagation,
}

#[async_trait]
impl LedgerAtp for LedgerAtpView {
    async fn atp(&self, channel: &str, sku: &str) -> Result<LedgerReading, String> {
        // `sku` is a listing: a SKU, or `SKU@LOCATION` on a channel that lists per location.
        let listing = sku;
        // A listing the ledger never saw has no stock; reading it loads nothing.
        let sku = Sku(self
            .propagation
            .listing_key_sku(channel, listing)
            .to_owned());
        let state = self
            .ledger
            .known_state(&sku)
            .await
            .map_err(|error| error.to_string())?
            .unwrap_or_else(|| crate::domain::SkuState::new(sku));
        let atp = self
            .propagation
            .listing_atp(channel, listing, &state.levels())
            .ok_or_else(|| format!("unknown channel {channel} or listing {listing}"))?;
        Ok(LedgerReading {
            atp,
            seq: state.seq,
        })
    }
}

/// The web layer's webhook freshness, for the "webhooks gone quiet" alert.
struct WebActivity(WebState);

impl WebhookActivity for WebActivity {
    fn last_webhook_at_ms(&self, channel: &str) -> Option<i64> {
        self.0.last_webhook_at_ms(channel)
    }
}

/// Reconciliation and alerting, started together and stopped together.
pub(super) struct Operations {
    pub reconciler: Option<Reconciler>,
    alerter: Alerter,
    clock: SharedClock,
    tasks: Vec<JoinHandle<()>>,
}

impl Operations {
    /// Starts the alerter and (when `reconcile.enabled`) the reconciler; both, and the
    /// monitor, read wall time from `clock`.
    pub fn start(
        config: &Config,
        ledger: &Ledger,
        propagation: &Propagation,
        store: Arc<dyn Store>,
        client: reqwest::Client,
        clock: SharedClock,
    ) -> Self {
        let (alerter, sender) = Alerter::start(&config.alerts, client);
        let reconciler = config.reconcile.enabled.then(|| {
            Reconciler::start(
                config,
                propagation.clone(),
                Arc::new(LedgerAtpView {
                    ledger: ledger.clone(),
                    propagation: propagation.clone(),
                }),
                store,
                alerter.clone(),
                clock.clone(),
            )
        });
        Self {
            reconciler,
            alerter,
            clock,
            tasks: sender.into_iter().collect(),
        }
    }

    /// Starts the health monitor (channel down, webhooks quiet, queue lag, and the dead
    /// letters announced on `dead_letters`).
    pub fn start_monitor(
        &mut self,
        config: &Config,
        propagation: &Propagation,
        web: WebState,
        dead_letters: DeadLetterBroadcast,
    ) {
        self.tasks.push(alerts::start_monitor(
            &config.alerts,
            self.alerter.clone(),
            propagation.clone(),
            Some(Arc::new(WebActivity(web))),
            dead_letters,
            self.clock.clone(),
        ));
    }

    /// Stops every task.
    pub fn shutdown(&mut self) {
        if let Some(reconciler) = &self.reconciler {
            reconciler.shutdown();
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// Adds what reconciliation knows to the stock view.
pub(super) fn channel_report(
    reconciler: Option<&Reconciler>,
    channel: &str,
    sku: &str,
) -> Option<stock::ChannelReportView> {
    let reconciler = reconciler?;
    let discrepancy = reconciler
        .discrepancy(channel, sku)
        .map(|d| stock::DiscrepancyView {
            class: d.class.label().to_owned(),
            channel_value: d.channel_value,
            ledger_atp: d.ledger_atp,
            detected_at_ms: d.detected_at_ms,
            heal_requested: d.heal_requested,
        });
    let report = reconciler.channel_report(channel, sku);
    if report.is_none() && discrepancy.is_none() {
        return None;
    }
    Some(stock::ChannelReportView {
        value: report.as_ref().and_then(|r| r.value),
        reported_at_ms: report.as_ref().map_or(0, |r| r.reported_at_ms),
        source: report
            .map(|r| {
                serde_json::to_value(r.source)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .unwrap_or_default(),
        discrepancy,
    })
}

/// Keys whose values never reach the audit log: any name containing `secret`, `token`,
/// `password` or `hash`, and any whose word (split at non-alphanumerics) ends in `key`
/// (`api_key`, `consumer_key`, `ApiKey`), except identifiers that are not credentials
/// (`idempotency_key`, `partition_key`, ...). `keyspace` is not a secret.
fn is_secret(key: &str) -> bool {
    const NOT_CREDENTIALS: [&str; 6] = [
        "idempotency",
        "partition",
        "routing",
        "sort",
        "primary",
        "foreign",
    ];
    let key = key.to_ascii_lowercase();
    if ["secret", "token", "password", "hash"]
        .iter()
        .any(|word| key.contains(word))
    {
        return true;
    }
    let words: Vec<&str> = key.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    words.iter().enumerate().any(|(at, word)| {
        word.ends_with("key")
            && !(at > 0 && NOT_CREDENTIALS.contains(&words[at - 1]))
            && !NOT_CREDENTIALS.iter().any(|kind| word.starts_with(kind))
    })
}

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                if is_secret(key) && !inner.is_null() {
                    *inner = serde_json::Value::String("<redacted>".to_owned());
                } else if let serde_json::Value::String(text) = inner
                    && key.to_ascii_lowercase().contains("url")
                {
                    // A connection URL may carry a password (`postgres://user:pw@host/db`).
                    *text = crate::store::postgres::redact_connection_string(text);
                } else {
                    redact(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The config's hex SHA-256 (over its canonical JSON, secrets included, so rotating one is
/// visible) and its JSON with secrets redacted.
pub(super) fn fingerprint(config: &Config) -> (String, String) {
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    let canonical = value.to_string();
    let hash = Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>();
    redact(&mut value);
    (hash, value.to_string())
}

/// Records the config loaded at start in the config audit log (a failure is only logged).
pub(super) async fn record_config_loaded(store: &dyn Store, config: &Config, at_ms: i64) {
    let (config_hash, config_json) = fingerprint(config);
    let record = ConfigAuditRecord {
        at_ms,
        action: "loaded".to_owned(),
        actor: "startup".to_owned(),
        config_hash,
        config_json,
    };
    if let Err(error) = store.record_config_change(&record).await {
        tracing::warn!(error = %error, "config audit record not written");
    } else {
        tracing::info!(config_hash = %record.config_hash, "config recorded in the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_with_the_config_and_hides_secrets() {
        let text = r#"
            [[locations]]
            id = "SHED"
            [[channels]]
            id = "stall-west"
            kind = "shopify"
            locations = ["SHED"]
            [channels.shopify]
            shop_url = "http://127.0.0.1:1"
            access_token = "tok-hidden"
            webhook_secret = "whsec-hidden"
            location_id = 3
        "#;
        let config = Config::from_toml(text).unwrap();
        let (hash, json) = fingerprint(&config);
        assert_eq!(hash.len(), 64);
        assert!(!json.contains("tok-hidden") && !json.contains("whsec-hidden"));
        assert!(json.contains("stall-west"));
        let other = Config::from_toml(&text.replace("location_id = 3", "location_id = 4")).unwrap();
        assert_ne!(fingerprint(&other).0, hash);
        assert_eq!(fingerprint(&config).0, hash, "deterministic");
    }

    #[test]
    fn a_password_inside_the_postgres_url_never_reaches_the_audit() {
        let text = r#"
            [store]
            backend = "postgres"
            [store.postgres]
            url = "postgres://ledger:url-pw-hidden@db.internal:5432/stocksync?sslmode=disable"
            password = "override-pw-hidden"
        "#;
        let (hash, json) = fingerprint(&Config::from_toml(text).unwrap());
        assert!(!json.contains("url-pw-hidden"), "{json}");
        assert!(!json.contains("override-pw-hidden"), "{json}");
        assert!(
            json.contains(
                "postgres://ledger:<redacted>@db.internal:5432/stocksync?sslmode=disable"
            ),
            "{json}"
        );
        // The hash still covers the secret, so rotating it shows in the audit.
        let rotated = Config::from_toml(&text.replace("url-pw-hidden", "url-pw-rotated")).unwrap();
        assert_ne!(fingerprint(&rotated).0, hash);
    }

    #[test]
    fn a_key_value_connection_string_with_blanks_or_quotes_hides_its_password() {
        for url in [
            "host=127.0.0.1 user=trial password = trialpw-hidden dbname=trial",
            "host=127.0.0.1 user=trial password='trialpw-hidden x' dbname=trial",
            "host=127.0.0.1 password\t=\t'a\\' trialpw-hidden' dbname=trial",
        ] {
            let text = format!(
                "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
                url.replace('\\', "\\\\").replace('\t', "\\t")
            );
            let (_, json) = fingerprint(&Config::from_toml(&text).unwrap());
            assert!(!json.contains("trialpw-hidden"), "{json}");
            assert!(json.contains("dbname=trial"), "{json}");
        }
    }

    #[test]
    fn the_scylla_keyspace_is_shown_and_keys_that_are_secrets_are_not() {
        let text = r#"
            [store]
            backend = "scylla"
            [store.scylla]
            nodes = ["127.0.0.1:9042"]
            keyspace = "stocksync_visible"
            password = "scylla-pw-hidden"
        "#;
        let (_, json) = fingerprint(&Config::from_toml(text).unwrap());
        assert!(json.contains("stocksync_visible"), "{json}");
        assert!(!json.contains("scylla-pw-hidden"), "{json}");
        for key in [
            "api_key",
            "consumer_key",
            "secret_key",
            "private_key",
            "ApiKey",
            "key",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in ["keyspace", "idempotency_key_header", "partition_keys"] {
            assert!(!is_secret(key), "{key}");
        }
    }
}
