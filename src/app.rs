//! The only place that wires everything together.
//!
//! Start order: store → propagation (channel actors) → ledger (publishing into
//! propagation) → HTTP API → Kafka ingest. Shutdown order is the reverse of the flow:
//! stop ingest, stop the HTTP listener, drain the ledger (every acknowledged movement is
//! durable and published), then flush and stop propagation.
//!
//! May depend on every module.

use crate::config::Config;
use crate::ingest::kafka::KafkaIngest;
use crate::ledger::{Ledger, LedgerOptions};
use crate::propagation::Propagation;
use crate::web::{self, ChannelView, WebState};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often expired idempotency keys are deleted from the store.
const KEY_EXPIRY_PERIOD_SECS: u64 = 3600;

/// Adapts propagation to the web layer's read-only view.
struct PropagationView(Propagation);

impl ChannelView for PropagationView {
    fn last_pushed(&self, channel: &str, sku: &str) -> Option<u64> {
        self.0.last_pushed(channel, sku)
    }
}

/// A running engine: store, ledger, propagation, HTTP API and (if configured) Kafka ingest.
pub struct App {
    config: Arc<Config>,
    ledger: Ledger,
    propagation: Propagation,
    http_addr: SocketAddr,
    http_stop: oneshot::Sender<()>,
    http_task: JoinHandle<std::io::Result<()>>,
    kafka: Option<KafkaIngest>,
    housekeeping: JoinHandle<()>,
}

impl App {
    /// Starts everything the config describes on the current tokio runtime.
    ///
    /// Errors: the store cannot be opened, a channel adapter cannot be built (bad listings
    /// file), the HTTP address cannot be bound, or the Kafka client cannot be created.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let store = crate::store::open(&config.store).context("opening the store")?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let propagation = Propagation::start(&config, store.clone(), client)
            .await
            .context("starting propagation")?;
        let ledger = Ledger::start(
            store.clone(),
            Arc::new(propagation.clone()),
            LedgerOptions::from_config(&config),
        );
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| format!("binding http.listen {}", config.http.listen))?;
        let http_addr = listener.local_addr()?;
        let state = WebState::new(ledger.clone(), config.clone())
            .with_channel_view(Arc::new(PropagationView(propagation.clone())));
        let (http_stop, stopped) = oneshot::channel::<()>();
        let http_task = tokio::spawn(web::serve(listener, web::router(state), async move {
            let _ = stopped.await;
        }));
        let kafka = match &config.kafka {
            Some(kafka) => Some(
                KafkaIngest::start(kafka.clone(), ledger.clone()).context("starting Kafka ingest")?,
            ),
            None => None,
        };
        let housekeeping = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(KEY_EXPIRY_PERIOD_SECS));
            loop {
                interval.tick().await;
                match store.expire_keys(crate::clock::now_ms()).await {
                    Ok(removed) => tracing::debug!(removed, "expired idempotency keys removed"),
                    Err(error) => tracing::warn!(error = %error, "expiring idempotency keys failed"),
                }
            }
        });
        tracing::info!(http = %http_addr, channels = config.channels.len(),
            kafka = config.kafka.is_some(), "stocksync started");
        Ok(Self {
            config,
            ledger,
            propagation,
            http_addr,
            http_stop,
            http_task,
            kafka,
            housekeeping,
        })
    }

    /// The address the HTTP API listens on (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The ledger handle.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The propagation handle.
    pub fn propagation(&self) -> &Propagation {
        &self.propagation
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops ingest, then the HTTP API, drains the ledger, and flushes propagation (waiting
    /// at most `flush_timeout` for channels to accept what is queued).
    pub async fn shutdown(self, flush_timeout: Duration) {
        if let Some(kafka) = self.kafka
            && let Err(error) = kafka.stop().await
        {
            tracing::warn!(error = %error, "kafka ingest ended with an error");
        }
        let _ = self.http_stop.send(());
        let _ = self.http_task.await;
        self.ledger.shutdown().await;
        if let Err(error) = self.propagation.flush(flush_timeout).await {
            tracing::warn!(error = %error, "propagation did not drain before shutdown");
        }
        self.propagation.shutdown().await;
        self.housekeeping.abort();
        tracing::info!("stocksync stopped");
    }
}
