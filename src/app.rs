//! The only place that wires everything together.
//!
//! Start order: store → propagation (channel actors) → ledger (publishing into
//! propagation; with `[cluster]`, through the `ClusterSink` that also sends the changes to
//! the instances leading channels) → cluster coordinator → HTTP API → Kafka ingest. With
//! `[cluster]`, propagation, pollers and reconciliation act on a channel only while this
//! instance leads it (`ChannelLeadership`); a single instance leads every channel. Shutdown order is the reverse of the flow:
//! stop ingest, stop the HTTP listener, drain the ledger (every acknowledged movement is
//! durable and published), then flush and stop propagation.
//!
//! Builds every client: one `reqwest::Client` for the process, and on it the platform
//! clients ([`crate::platforms::PlatformClients`]) the channel adapters use.
//! Builds every poller ([`crate::ingest::poller`] handles, stopped first) and the per-app
//! handles that used to be process-global: the webhook delivery memory (handed to the
//! receivers through `WebState`) and the dead-letter broadcast (from Kafka ingest to the
//! alert monitor).
//!
//! May depend on every module.

use crate::cluster::availability::ClusterSink;
use crate::cluster::forward::HttpForwarder;
use crate::cluster::{Cluster, KafkaSource};
use crate::config::Config;
use crate::domain::Sku;
use crate::ingest::kafka::{AtpOutput, AtpPublisher, AtpUpdate, KafkaIngest, KafkaIngestOptions};
use crate::ingest::poller::PollerHandle;
use crate::ingest::receiver::{DEFAULT_DELIVERY_MEMORY, DeliveryMemory};
use crate::ledger::ownership::{ForwarderHandle, OwnershipHandle};
use crate::ledger::{Ledger, LedgerOptions};
use crate::propagation::{AtpObserver, Leadership, Propagation, PropagationOptions};
use crate::telemetry::DeadLetterBroadcast;
use crate::web::{self, ChannelView, WebState};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod ops;

/// How often expired idempotency keys are deleted from the store.
const KEY_EXPIRY_PERIOD_SECS: u64 = 3600;

/// Adapts propagation to the web layer's read-only view.
struct PropagationView(Propagation, Option<crate::reconcile::Reconciler>);

impl ChannelView for PropagationView {
    fn last_pushed(&self, channel: &str, sku: &str) -> Option<u64> {
        self.0.last_pushed(channel, sku)
    }

    fn channel_report(&self, channel: &str, sku: &str) -> Option<web::stock::ChannelReportView> {
        ops::channel_report(self.1.as_ref(), channel, sku)
    }

    fn listing_parts(
        &self,
        channel: &str,
        sku: &str,
        levels: &[crate::domain::LocationLevel],
        total: u64,
    ) -> Vec<web::stock::ListingPart> {
        self.0
            .listing_parts(channel, sku, levels, total)
            .into_iter()
            .map(|(location, listing, atp)| web::stock::ListingPart {
                location_id: location.id,
                name: location.name,
                feeds: location.feeds,
                listing,
                atp,
            })
            .collect()
    }

    fn shadow_report(
        &self,
        channel: &str,
        limit: usize,
    ) -> Option<web::channel_mode::ShadowReportView> {
        self.0
            .shadow_report(channel, limit)
            .map(|report| web::channel_mode::ShadowReportView {
                channel: report.channel,
                mode: report.mode.to_owned(),
                compared: report.compared,
                classes: report
                    .classes
                    .into_iter()
                    .map(|(class, count)| (class.as_str().to_owned(), count))
                    .collect(),
                units_over: report.units_over,
                units_under: report.units_under,
                differences: report
                    .differences
                    .into_iter()
                    .map(|entry| web::channel_mode::ShadowListing {
                        class: entry.class.as_str().to_owned(),
                        sku: entry.sku,
                        would_push: entry.would_push,
                        channel_value: entry.channel_value,
                        difference: entry.difference,
                        at_ms: entry.at_ms,
                    })
                    .collect(),
            })
    }

    fn set_channel_mode(&self, channel: &str, mode: crate::config::ChannelMode) -> Option<bool> {
        self.0.set_mode(channel, mode)
    }

    fn inventory_level_reported(
        &self,
        channel: &str,
        item: &str,
        location: &str,
        value: Option<i64>,
    ) {
        if let Some(reconciler) = &self.1 {
            reconciler.observe_level(channel, item, location, value);
        }
    }

    fn channel_status(&self) -> Vec<web::health::ChannelStatusView> {
        self.0
            .channel_status()
            .into_iter()
            .map(|status| web::health::ChannelStatusView {
                channel: status.channel,
                kind: status.kind.and_then(|kind| {
                    serde_json::to_value(kind)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                }),
                listings: status.listings,
                queue_depth: status.queue_depth,
                in_flight: status.in_flight,
                isolated: status.isolated,
                accepted_total: status.accepted_total,
                conflicts_total: status.conflicts_total,
                rejected_total: status.rejected_total,
                errors_total: status.errors_total,
                throttled_total: status.throttled_total,
                last_success_at_ms: status.last_success_at_ms,
                last_error: status.last_error,
                last_error_at_ms: status.last_error_at_ms,
            })
            .collect()
    }
}

/// Adapts the Kafka consumer's assignment to the web layer's readiness check; filled once
/// Kafka ingest has started (the HTTP API starts first).
#[derive(Default)]
struct KafkaAssignmentView(std::sync::OnceLock<crate::ingest::kafka::AssignmentHandle>);

impl web::health::KafkaView for KafkaAssignmentView {
    fn assignment(&self) -> Vec<(String, i32)> {
        self.0
            .get()
            .map(|handle| handle.assignment())
            .unwrap_or_default()
    }
}

/// Adapts the cluster coordinator to the web layer's readiness check.
struct ClusterStatusView(Arc<Cluster>, crate::clock::SharedClock);

impl web::health::ClusterView for ClusterStatusView {
    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.0.status()).unwrap_or_default()
    }

    fn joined(&self) -> Result<String, String> {
        let status = self.0.status();
        let session_ms = i64::try_from(self.0.config().session_timeout_ms).unwrap_or(i64::MAX);
        let live = status.members.iter().filter(|member| member.live).count();
        let led: Vec<&str> = status
            .channels
            .iter()
            .filter(|channel| channel.here)
            .map(|channel| channel.channel.as_str())
            .collect();
        let detail = format!(
            "member {}: owns {} of {} partitions, leads {} of {} channel(s) [{}], {live} live instance(s), {} rebalance(s)",
            status.member_id,
            status.owned.len(),
            status.partitions.len(),
            led.len(),
            status.channels.len(),
            led.join(", "),
            status.rebalances
        );
        match (&status.error, status.last_round_ms) {
            (Some(error), _) => Err(format!("{detail}; last round failed: {error}")),
            (None, None) => Err(format!("{detail}; not joined yet")),
            (None, Some(at_ms))
                if self.0.partition_table().partitions() > 0
                    && self.1.now_ms() - at_ms > session_ms =>
            {
                Err(format!(
                    "{detail}; no round for more than the session timeout"
                ))
            }
            _ => Ok(detail),
        }
    }
}

/// ATP changes waiting for the Kafka ATP topic before new ones are dropped (and counted).
const ATP_OUTPUT_QUEUE: usize = 65_536;

/// Forwards every changed ATP to the Kafka ATP topic without blocking propagation: a
/// bounded queue and one task that produces in order.
struct KafkaAtpForwarder(mpsc::Sender<AtpUpdate>);

impl KafkaAtpForwarder {
    fn start(publisher: AtpPublisher) -> (Self, JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::channel::<AtpUpdate>(ATP_OUTPUT_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(update) = receiver.recv().await {
                if let Err(error) = publisher.publish(&update).await {
                    tracing::warn!(error = %error, channel = %update.channel, "ATP update not published");
                }
            }
        });
        (Self(sender), task)
    }
}

impl AtpObserver for KafkaAtpForwarder {
    fn atp_changed(&self, channel: &str, sku: &Sku, atp: u64, seq: u64) {
        let update = AtpUpdate {
            sku: sku.to_string(),
            channel: channel.to_owned(),
            atp,
            seq,
        };
        if self.0.try_send(update).is_err() {
            metrics::counter!(crate::telemetry::PROPAGATION_ATP_OUTPUT_DROPPED_TOTAL, "channel" => channel.to_owned())
                .increment(1);
        }
    }
}

/// SKUs read from the ledger per page when a channel's queue is rebuilt.
const REBUILD_PAGE: usize = 500;

/// Rebuilds a restarted channel actor's queue: every SKU the ledger knows is read in pages
/// of [`REBUILD_PAGE`] and its availability published into that channel only, so every
/// listing's ATP is re-derived (what the failed actor had taken out of its queue is back).
struct LedgerQueueRebuilder {
    ledger: Ledger,
    propagation: Propagation,
}

impl crate::propagation::QueueRebuilder for LedgerQueueRebuilder {
    fn rebuild(&self, channel: &str) {
        let (ledger, propagation, channel) = (
            self.ledger.clone(),
            self.propagation.clone(),
            channel.to_owned(),
        );
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            let mut published = 0usize;
            loop {
                let skus = match ledger.list_skus(after.as_deref(), REBUILD_PAGE).await {
                    Ok(skus) => skus,
                    Err(error) => {
                        tracing::warn!(channel = %channel, error = %error, "rebuilding the channel queue stopped");
                        return;
                    }
                };
                let Some(last) = skus.last().cloned() else {
                    break;
                };
                // Replayed from the store page by page, never loaded into the ledger's
                // shards (as the re-publish after a rules change does).
                match ledger.stored_states(&skus).await {
                    Ok(states) => {
                        let changes: Vec<_> =
                            states.iter().map(|state| state.availability()).collect();
                        published += changes.len();
                        propagation.publish_to(&channel, &changes);
                    }
                    Err(error) => {
                        tracing::warn!(channel = %channel, error = %error, first = %skus[0], "a page of SKUs could not be re-published to the channel");
                    }
                }
                after = Some(last);
                tokio::task::yield_now().await;
            }
            tracing::info!(channel = %channel, skus = published, "channel queue rebuilt from the ledger");
        });
    }
}

/// Bundles derive their levels from their components' newest levels, which propagation
/// learns from published changes. After a start it has seen none yet, so every component
/// is read once and published: each bundle's ATP is right from the first push.
async fn warm_bundles(config: &Config, ledger: &Ledger, propagation: &Propagation) {
    let Ok(bom) = config.bill_of_materials() else {
        return;
    };
    let mut changes = Vec::new();
    for component in bom.component_skus() {
        match ledger.state(component).await {
            Ok(state) => changes.push(state.availability()),
            Err(error) => {
                tracing::warn!(sku = %component, error = %error, "bundle component not loaded")
            }
        }
    }
    if !changes.is_empty() {
        crate::domain::AvailabilitySink::publish(propagation, &changes);
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
    /// Consumers of Amazon ORDER_CHANGE notifications bridged from SQS into Kafka.
    notification_bridges: Vec<KafkaIngest>,
    /// Every platform poller (bol.com, Amazon, WooCommerce).
    pollers: Vec<PollerHandle>,
    housekeeping: JoinHandle<()>,
    atp_output: Option<JoinHandle<()>>,
    operations: ops::Operations,
    /// Every platform client (the adapters' and, for the pollers, the same ones).
    platforms: Arc<crate::platforms::PlatformClients>,
    /// Several instances: the coordinator of this instance's partitions.
    cluster: Option<Arc<Cluster>>,
    /// Several instances: sends this instance's availability changes to the channel leaders.
    cluster_sink: Option<Arc<ClusterSink>>,
}

/// Propagation's [`crate::propagation::ConflictListener`]: a channel that lowered a listing
/// itself wakes that channel's orders poller, whose successes tell reconciliation whether
/// the orders were read since.
struct ConflictWakesPolls(Arc<crate::ingest::PollSignals>);

impl crate::propagation::ConflictListener for ConflictWakesPolls {
    fn channel_lowered(&self, channel: &str, sku: &str) {
        if let Some(signal) = self.0.get(channel) {
            tracing::debug!(channel, sku, "conflict: polling the channel's orders now");
            signal.wake();
        }
    }

    fn orders_polled_since(&self, channel: &str, since_ms: i64) -> Option<bool> {
        Some(self.0.get(channel)?.succeeded_since(since_ms))
    }
}

impl App {
    /// Starts everything the config describes on the current tokio runtime.
    ///
    /// Errors: the store cannot be opened, a channel adapter cannot be built (bad listings
    /// file), the HTTP address cannot be bound, the Kafka client cannot be created, or
    /// `http.listen` is not a loopback address while `[http.auth]` has no token (and no
    /// `insecure_no_auth = true`).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let (level, notice) = web::auth::startup_notice(&config.http);
        if level == tracing::Level::ERROR {
            anyhow::bail!(
                "{notice}: refusing to start; add [[http.auth.tokens]] \
                 (stocksync token new NAME --scopes ingest,read) or set \
                 http.auth.insecure_no_auth = true"
            );
        } else if level == tracing::Level::WARN {
            tracing::warn!("{notice}");
        } else {
            tracing::info!("{notice}");
        }
        let config = Arc::new(config);
        // The recorder first: the store registers its error and retry series at zero.
        crate::telemetry::prometheus();
        let store = crate::store::open(&config.store)
            .await
            .context("opening the store")?;
        // The one wall clock every component reads (tests inject their own).
        let clock = crate::clock::system();
        ops::record_config_loaded(store.as_ref(), &config, clock.now_ms()).await;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        // Every platform client, on that one HTTP client: one per channel, one token cache
        // per credential, shared by the adapters and (through `platform_clients`) the pollers.
        let platforms = Arc::new(crate::platforms::PlatformClients::build_with_limit(
            &config.channels,
            client.clone(),
            config.http.platform_response_limit_bytes,
        ));
        // One cell of stock rules shared by the ledger, propagation and the config API.
        let rules = Arc::new(crate::domain::RulesCell::new(
            config.rules().context("building the stock rules")?,
        ));
        // The wake signals of the pollers that a compare-and-set conflict wakes (Shopify's
        // orders poller); filled when the pollers start, read by propagation's listener.
        let poll_signals = Arc::new(crate::ingest::PollSignals::default());
        let mut options = PropagationOptions {
            rules: Some(rules.clone()),
            platforms: Some(platforms.clone()),
            clock: Some(clock.clone()),
            conflict_listener: Some(Arc::new(ConflictWakesPolls(poll_signals.clone()))),
            ..PropagationOptions::default()
        };
        let mut atp_output = None;
        if let Some(publisher) = config
            .kafka
            .as_ref()
            .map(AtpPublisher::from_config)
            .transpose()
            .context("creating the Kafka ATP producer")?
            .flatten()
        {
            let (forwarder, task) = KafkaAtpForwarder::start(publisher);
            options.atp_observer = Some(Arc::new(forwarder));
            atp_output = Some(task);
        }
        // Several instances: one leader per channel, the only one that pushes to it.
        let leadership = config.cluster.as_ref().map(|_| {
            Cluster::leadership(
                config.channels.iter().map(|c| c.id.clone()).collect(),
                clock.clone(),
            )
        });
        options.leadership = leadership
            .clone()
            .map(|leadership| leadership as Arc<dyn Leadership>);
        let propagation =
            Propagation::start_with_options(&config, store.clone(), client.clone(), options)
                .await
                .context("starting propagation")?;
        // The ledger publishes locally and, with several instances, to the channel leaders.
        let cluster_sink = match (&config.cluster, &leadership) {
            (Some(settings), Some(leadership)) => {
                leadership.attach(propagation.clone());
                Some(Arc::new(ClusterSink::new(
                    Arc::new(propagation.clone()),
                    leadership.clone(),
                    client.clone(),
                    settings.token.clone(),
                )))
            }
            _ => None,
        };
        let sink: Arc<dyn crate::domain::AvailabilitySink> = match &cluster_sink {
            Some(sink) => sink.clone(),
            None => Arc::new(propagation.clone()),
        };
        // One instance claims the whole store; several (`[cluster]`) divide it by
        // partition, each write fenced by its partition's epoch.
        let partition_table = config.cluster.as_ref().map(Cluster::table);
        let (fences, ownership, forwarder) = match (&config.cluster, &partition_table) {
            (Some(cluster), Some(table)) => (
                Vec::new(),
                Some(OwnershipHandle(table.clone())),
                Some(ForwarderHandle(Arc::new(HttpForwarder::new(
                    client.clone(),
                    cluster.token.clone(),
                )))),
            ),
            _ => (
                vec![claim_store(store.as_ref(), &config).await?],
                None,
                None,
            ),
        };
        let ledger = Ledger::start(
            store.clone(),
            sink,
            LedgerOptions {
                rules: rules.clone(),
                clock: clock.clone(),
                fences,
                ownership,
                forwarder,
                ..LedgerOptions::from_config(&config)
            },
        );

        propagation.set_rebuilder(Arc::new(LedgerQueueRebuilder {
            ledger: ledger.clone(),
            propagation: propagation.clone(),
        }));
        warm_bundles(&config, &ledger, &propagation).await;
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| format!("binding http.listen {}", config.http.listen))?;
        let http_addr = listener.local_addr()?;
        let cluster = match (&config.cluster, partition_table, &leadership) {
            (Some(settings), Some(table), Some(leadership)) => {
                let advertise_url = match &settings.advertise_url {
                    Some(url) => url.clone(),
                    None if http_addr.ip().is_unspecified() => anyhow::bail!(
                        "[cluster] advertise_url is needed: http.listen {} names no address the other instances can reach",
                        config.http.listen
                    ),
                    None => format!("http://{http_addr}"),
                };
                Some(Arc::new(Cluster::start(
                    settings.clone(),
                    advertise_url,
                    table,
                    leadership.clone(),
                    store.clone(),
                    ledger.clone(),
                    config.kafka.as_ref().map(|kafka| KafkaSource {
                        group: kafka.group_id.clone(),
                        topic: kafka.movements_topic.clone(),
                    }),
                )))
            }
            _ => None,
        };
        let kafka_view = Arc::new(KafkaAssignmentView::default());
        // Per app, never process-wide: the webhook delivery memory of every receiver, and
        // the dead-letter notices from Kafka ingest to the alert monitor.
        let deliveries = DeliveryMemory::new(DEFAULT_DELIVERY_MEMORY);
        let dead_letters = DeadLetterBroadcast::new();
        let mut operations = ops::Operations::start(
            &config,
            &ledger,
            &propagation,
            store.clone(),
            client.clone(),
            clock.clone(),
        );
        let mut state = WebState::new(ledger.clone(), config.clone());
        if let Some(cluster) = &cluster {
            state = state
                .with_cluster_view(Arc::new(ClusterStatusView(cluster.clone(), clock.clone())))
                .with_cluster_availability(Arc::new(propagation.clone()));
        }
        if let Some(leadership) = &leadership {
            state = state.with_webhook_leaders(leadership.clone(), client.clone());
        }
        let state = state
            .with_channel_view(Arc::new(PropagationView(
                propagation.clone(),
                operations.reconciler.clone(),
            )))
            .with_kafka_view(kafka_view.clone())
            .with_delivery_memory(deliveries)
            .with_platform_clients(platforms.clone())
            .with_runtime_rules(Arc::new(web::rules::RuntimeRules::new(
                (*config).clone(),
                rules,
                ledger.clone(),
                Arc::new(propagation.clone()),
                store.clone(),
            )));
        operations.start_monitor(&config, &propagation, state.clone(), dead_letters.clone());
        let (http_stop, stopped) = oneshot::channel::<()>();
        let http_task = tokio::spawn(web::serve_with(
            listener,
            web::router(state),
            config.http.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let kafka = match &config.kafka {
            Some(kafka) => Some(
                KafkaIngest::start_with_options(
                    kafka.clone(),
                    ledger.clone(),
                    KafkaIngestOptions {
                        decoder: None,
                        dead_letters: Some(dead_letters.clone()),
                        // Several instances: read exactly the partitions this one owns.
                        assignment: cluster.as_ref().map(|cluster| cluster.owned()),
                        ..KafkaIngestOptions::default()
                    },
                )
                .context("starting Kafka ingest")?,
            ),
            None => None,
        };
        if let Some(ingest) = &kafka {
            let _ = kafka_view.0.set(ingest.assignment_handle());
        }
        let notification_bridges =
            crate::ingest::start_notification_consumers(&config, &ledger, &dead_letters).map_err(
                |(channel, error)| {
                    anyhow::anyhow!(error)
                        .context(format!("starting the notification consumer of {channel}"))
                },
            )?;
        // Several instances: a channel's pollers poll only on its leader.
        let gate = leadership.map(|leadership| {
            Arc::new(move |channel: &str| leadership.leads(channel)) as crate::ingest::ChannelGate
        });
        let pollers =
            crate::ingest::start_pollers_gated(&config, &ledger, &platforms, &poll_signals, gate);
        let housekeeping_clock = clock.clone();
        let retention_ms = i64::from(config.store.event_retention_days).saturating_mul(86_400_000);
        let housekeeping = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(KEY_EXPIRY_PERIOD_SECS));
            loop {
                interval.tick().await;
                let now_ms = housekeeping_clock.now_ms();
                match store.expire_keys(now_ms).await {
                    Ok(removed) => tracing::debug!(removed, "expired idempotency keys removed"),
                    Err(error) => {
                        tracing::warn!(error = %error, "expiring idempotency keys failed")
                    }
                }
                if retention_ms > 0 {
                    match store
                        .prune_events(now_ms.saturating_sub(retention_ms), now_ms)
                        .await
                    {
                        Ok(pruned) => {
                            metrics::counter!(crate::telemetry::STORE_EVENTS_PRUNED_TOTAL)
                                .increment(pruned);
                            tracing::info!(pruned, "events past the retention pruned");
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "pruning events past the retention failed")
                        }
                    }
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
            notification_bridges,
            pollers,
            housekeeping,
            atp_output,
            operations,
            platforms,
            cluster,
            cluster_sink,
        })
    }

    /// The platform clients every adapter was built on (one per channel, one token cache per
    /// credential).
    pub fn platform_clients(&self) -> &Arc<crate::platforms::PlatformClients> {
        &self.platforms
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

    /// The reconciler, when `reconcile.enabled`.
    pub fn reconciler(&self) -> Option<&crate::reconcile::Reconciler> {
        self.operations.reconciler.as_ref()
    }

    /// The cluster coordinator, with `[cluster]`.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops ingest, then the HTTP API, drains the ledger, and flushes propagation (waiting
    /// at most `flush_timeout` for channels to accept what is queued).
    pub async fn shutdown(mut self, flush_timeout: Duration) {
        self.operations.shutdown();
        for poller in std::mem::take(&mut self.pollers) {
            poller.stop().await;
        }
        if let Some(kafka) = self.kafka
            && let Err(error) = kafka.stop().await
        {
            tracing::warn!(error = %error, "kafka ingest ended with an error");
        }
        for bridge in self.notification_bridges {
            if let Err(error) = bridge.stop().await {
                tracing::warn!(error = %error, "notification consumer ended with an error");
            }
        }
        // Hand every partition over now, so the other instances take them at once instead
        // of after the session timeout (a rolling restart loses no time).
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        let _ = self.http_stop.send(());
        let _ = self.http_task.await;
        self.ledger.shutdown().await;
        if let Err(error) = self.propagation.flush(flush_timeout).await {
            tracing::warn!(error = %error, "propagation did not drain before shutdown");
        }
        self.propagation.shutdown().await;
        if let Some(sink) = &self.cluster_sink {
            sink.shutdown();
        }
        if let Err(error) = self.ledger.store().close().await {
            tracing::warn!(error = %error, "store did not close cleanly");
        }
        self.housekeeping.abort();
        if let Some(task) = self.atp_output {
            task.abort();
        }
        tracing::info!("stocksync stopped");
    }
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `docker stop`, systemd and
/// Kubernetes send): either starts the same clean stop.
///
/// Errors: the signal handler could not be installed.
pub async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Claims the whole store for this instance ([`crate::ledger::LEDGER_SCOPE`]): raises its
/// ownership epoch and returns the fence every group commit carries. An instance started
/// later on the same shared store takes it over the same way, and this one's next commit
/// is then refused (`StoreError::Fenced`): it pauses ingest instead of writing SKU logs
/// another instance writes too. The owner recorded is `host:pid:listen`.
///
/// Errors: the store cannot record the claim.
async fn claim_store(
    store: &dyn crate::store::Store,
    config: &Config,
) -> anyhow::Result<crate::store::Fence> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".to_owned());
    let owner = format!("{host}:{}:{}", std::process::id(), config.http.listen);
    let scope = crate::ledger::LEDGER_SCOPE;
    let previous = store
        .current_epoch(scope)
        .await
        .context("reading the store's owner")?;
    let epoch = store
        .acquire_epoch(scope, &owner)
        .await
        .context("claiming the store for this instance")?;
    match previous {
        Some((_, previous_owner)) if previous_owner != owner => tracing::info!(
            epoch,
            previous_owner = %previous_owner,
            "claimed the store (an instance still running on it stops writing)"
        ),
        _ => tracing::info!(epoch, "claimed the store"),
    }
    Ok(crate::store::Fence {
        scope: scope.to_owned(),
        epoch,
    })
}
