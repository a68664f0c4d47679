//! Ingest: every way a movement enters stocksync before it reaches the ledger.
//!
//! Layout (one folder per platform, plus what they share):
//! - [`shopify`], [`woocommerce`], [`bolcom`], [`amazon`]: each has `decode` (IO-free
//!   decoders: bytes → movements or a typed error, with unit tests beside them),
//!   `receiver` when the platform pushes webhooks (an axum `Router` that `web` merely
//!   mounts: Shopify, WooCommerce, Amazon) and `poller` when we poll it (bol.com, Amazon,
//!   WooCommerce, and Shopify's orders as a backstop that compare-and-set conflicts wake).
//! - [`receiver`]: what the webhook receivers share: their router state, the bounded
//!   delivery memory (created by the app and handed in), the receipt and the failures.
//! - [`poller`]: the shared poller loop the platform pollers are built on: interval,
//!   backoff on 429/5xx honouring `Retry-After`, cursor, statistics, stop handle.
//! - [`kafka`]: the movements consumer, its dead-letter producer and the ATP output
//!   producer.
//!
//! [`start_pollers`] is the one registry of pollers (a line per polled platform); the app
//! calls it ([`start_pollers_gated`]) with its platform clients and, with several
//! instances, a [`ChannelGate`]: a channel's pollers poll only on the channel's leader.
//!
//! The app starts every poller and consumer and hands the receivers their state; nothing
//! here keeps process-global state.
//!
//! Invariant (DESIGN.md §3 rule 3): a source is acknowledged (a Kafka offset committed, an
//! HTTP 2xx answered) only after the ledger says the movement is durable.
//!
//! May depend on: `domain`, `ledger`, `config`, `telemetry`, `store` types, `signing`,
//! `problem` and `platforms` (the API clients the pollers share with the adapters). Never on
//! `web`, `propagation` or `channels`.

pub mod amazon;
pub mod bolcom;
pub mod kafka;
pub mod poller;
pub mod receiver;
pub mod shopify;
pub mod woocommerce;

use std::sync::Arc;

/// The registry of webhook receivers: every platform's receiver router, merged, for `web`
/// to mount (one line per platform that pushes webhooks).
///
/// `levels` hears inventory levels a channel reports without a movement.
pub fn receivers<S>(
    state: receiver::ReceiverState,
    levels: Option<Arc<dyn receiver::InventoryLevelObserver>>,
) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::Router::new()
        .merge(shopify::receiver::router(state.clone(), levels))
        .merge(woocommerce::receiver::router(state.clone()))
        .merge(amazon::receiver::router(state))
}

/// The webhook receivers' operations for the OpenAPI contract (one line per platform that
/// pushes webhooks, as in [`receivers`]).
pub fn webhooks_openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut api = shopify::receiver::WebhookApi::openapi();
    api.merge(woocommerce::receiver::WebhookApi::openapi());
    api.merge(amazon::receiver::WebhookApi::openapi());
    api
}

use crate::config::Config;
use crate::ledger::Ledger;
use crate::platforms::PlatformClients;
use poller::PollerHandle;

/// The registry of notification consumers: channels whose platform pushes notifications
/// through a queue bridged into Kafka (Amazon's ORDER_CHANGE over SQS, PLATFORMS.md §4.6)
/// get one consumer each, in their own consumer group, with the `[kafka]` dead-letter topic.
/// Nothing without `[kafka]` (validation refuses such a setting without it).
///
/// Errors: [`kafka::IngestError`] when a consumer cannot be created, with its channel.
pub fn start_notification_consumers(
    config: &Config,
    ledger: &Ledger,
    dead_letters: &crate::telemetry::DeadLetterBroadcast,
) -> Result<Vec<kafka::KafkaIngest>, (String, kafka::IngestError)> {
    let Some(kafka_config) = &config.kafka else {
        return Ok(Vec::new());
    };
    let mut consumers = Vec::new();
    for channel in &config.channels {
        let started = amazon::bridge::start(channel, kafka_config, ledger, dead_letters)
            .map_err(|error| (channel.id.clone(), error))?;
        consumers.extend(started);
    }
    Ok(consumers)
}

/// The registry of pollers: starts every channel's pollers that its config enables, each on
/// its channel's client from `clients` (the one the channel adapter uses, so a credential
/// fetches one token for push and poll). One line per polled platform: the bol.com order
/// poller (§3.5), the Amazon Orders API and FBA pollers (§4.3, §4.4), and the WooCommerce
/// order poller (WooCommerce never retries webhooks, §2.4).
pub fn start_pollers(
    config: &Config,
    ledger: &Ledger,
    clients: &PlatformClients,
) -> Vec<PollerHandle> {
    start_pollers_with_signals(config, ledger, clients, &PollSignals::default())
}

/// One [`poller::PollSignal`] per channel whose poller can be woken early (Shopify's
/// orders poller, woken by compare-and-set conflicts); bounded by the configured channels.
/// The app creates it before the pollers exist, hands it to whoever wakes them, then to
/// [`start_pollers_with_signals`], which registers the signals.
#[derive(Debug, Default)]
pub struct PollSignals {
    signals: std::sync::Mutex<std::collections::HashMap<String, Arc<poller::PollSignal>>>,
}

impl PollSignals {
    /// Registers the signal of `channel`'s poller (one per channel: a second replaces it).
    pub fn insert(&self, channel: &str, signal: Arc<poller::PollSignal>) {
        self.signals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(channel.to_owned(), signal);
    }

    /// The signal of `channel` if its poller registered one.
    pub fn get(&self, channel: &str) -> Option<Arc<poller::PollSignal>> {
        self.signals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(channel)
            .cloned()
    }
}

/// [`start_pollers`], with the wake signals of the pollers that have one in `signals`.
pub fn start_pollers_with_signals(
    config: &Config,
    ledger: &Ledger,
    clients: &PlatformClients,
    signals: &PollSignals,
) -> Vec<PollerHandle> {
    start_pollers_gated(config, ledger, clients, signals, None)
}

/// Whether this instance polls a channel now (several instances: only the channel's
/// leader does); asked before every poll.
pub type ChannelGate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// [`start_pollers_with_signals`], each poller polling only while `gate` says so for its
/// channel (`None`: always).
pub fn start_pollers_gated(
    config: &Config,
    ledger: &Ledger,
    clients: &PlatformClients,
    signals: &PollSignals,
    gate: Option<ChannelGate>,
) -> Vec<PollerHandle> {
    let mut pollers = Vec::new();
    for channel in &config.channels {
        let gate = match &gate {
            Some(gate) => {
                let (gate, id) = (Arc::clone(gate), channel.id.clone());
                poller::PollGate::new(move || gate(&id))
            }
            None => poller::PollGate::always(),
        };
        let signal = Arc::new(poller::PollSignal::new());
        if let Some(handle) = shopify::poller::start(
            channel,
            ledger.clone(),
            clients,
            signal.clone(),
            gate.clone(),
        ) {
            signals.insert(&channel.id, signal);
            pollers.push(handle);
        }
        pollers.extend(bolcom::poller::start(
            channel,
            ledger.clone(),
            clients,
            gate.clone(),
        ));
        pollers.extend(amazon::poller::start_orders(
            channel,
            ledger.clone(),
            clients,
            gate.clone(),
        ));
        pollers.extend(amazon::poller::start_fba(
            channel,
            ledger.clone(),
            clients,
            gate.clone(),
        ));
        pollers.extend(woocommerce::poller::start(
            channel,
            ledger.clone(),
            clients,
            gate,
        ));
    }
    pollers
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp as the platforms send them:
/// `2026-03-14T10:25:40-04:00`, `2026-03-14T14:25:40.123Z`, or without a zone
/// (`2026-03-14T14:25:40`, read as UTC, WooCommerce's `*_gmt` fields). `None` when the text
/// is not such a timestamp. Used as the version of an order edit.
pub fn timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (local, offset_secs) = split_zone(text)?;
    let time = humantime::parse_rfc3339_weak(local).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    let local_ms = i64::try_from(since.as_millis()).ok()?;
    local_ms.checked_sub(offset_secs.checked_mul(1_000)?)
}

/// Splits `text` into the local date-time and the zone offset in seconds (0 for `Z` or none).
fn split_zone(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        return Some((local, 0));
    }
    // An offset is the last six characters `±HH:MM` after the time part.
    if text.len() > 6 && text.is_char_boundary(text.len() - 6) {
        let (local, zone) = text.split_at(text.len() - 6);
        let bytes = zone.as_bytes();
        if (bytes[0] == b'+' || bytes[0] == b'-') && bytes[3] == b':' && local.contains('T') {
            let hours: i64 = zone.get(1..3)?.parse().ok()?;
            let minutes: i64 = zone.get(4..6)?.parse().ok()?;
            let secs = hours * 3_600 + minutes * 60;
            return Some((local, if bytes[0] == b'-' { -secs } else { secs }));
        }
    }
    Some((text, 0))
}

#[cfg(test)]
mod quota_tests;

#[cfg(test)]
mod timestamp_tests {
    use super::timestamp_ms;

    #[test]
    fn zones_are_applied_and_a_missing_zone_is_utc() {
        let utc = timestamp_ms("2026-03-14T14:25:40Z").unwrap();
        assert_eq!(timestamp_ms("2026-03-14T10:25:40-04:00"), Some(utc));
        assert_eq!(timestamp_ms("2026-03-14T15:25:40+01:00"), Some(utc));
        assert_eq!(timestamp_ms("2026-03-14T14:25:40"), Some(utc));
        assert_eq!(timestamp_ms("2026-03-14T14:25:40.123Z"), Some(utc + 123));
        assert_eq!(utc, 1_773_498_340_000);
        assert_eq!(timestamp_ms("yesterday"), None);
        assert_eq!(timestamp_ms(""), None);
    }
}
