//! Several instances on one shared store: who owns which SKUs, and handing them over.
//!
//! Owns: the coordinator (one task per instance), the [`PartitionTable`] the ledger asks
//! before every write ([`crate::ledger::ownership::Ownership`]), the instance's view of the
//! cluster ([`ClusterStatus`]), and the partitions the Kafka consumer is told to read
//! ([`OwnedPartitions`]).
//!
//! The SKUs are divided into the partitions of the movements topic (a SKU's partition is
//! `murmur2(sku) mod partitions`, as Kafka's producers place records keyed by SKU). Each
//! partition has at most one owner at a time, decided by leases in the store
//! ([`crate::store::Store::try_lease`]), not by Kafka's group coordinator, so that a paused
//! or partitioned instance loses its partitions after `session_timeout_ms` whatever the
//! broker does. Every `heartbeat_ms` (and at once after a fenced write) the coordinator:
//! 1. renews its member lease `member/<member_id>` (payload: its advertised URL);
//! 2. reads the live members and the partition leases `movements/<p>`;
//! 3. divides the partitions among the live members ([`plan::desired_owner`]: sorted ids,
//!    `p mod n`) and, partition by partition ([`plan::plan`]): renews what it holds and
//!    keeps; takes what is free and its own (a new epoch when the holder changes), evicting
//!    any stale SKU state first and starting the Kafka consumer at the store's offset
//!    watermark or the group's committed offset, whichever is further on (see "Where a new
//!    owner starts reading"); hands over what another live member should own (stop
//!    admitting → the consumer drops the partition → evict, which flushes → release the
//!    lease); forgets what another owner took (evict);
//! 4. stops admitting and evicts, on its own, any partition whose lease it could not renew
//!    for `session_timeout_ms − heartbeat_ms` (the store unreachable): by then another
//!    instance may take it.
//!
//! Fencing: every group commit carries the epoch of each partition it writes
//! ([`PartitionTable`] as the ledger's ownership), checked by the store inside the write,
//! so a writer that lost a partition (paused past its session, then woken with a batch in
//! hand) writes nothing: the ledger refuses that partition's work, tells the table, and the
//! coordinator evicts it.
//!
//! Where a new owner starts reading a partition: at the greater of the store's offset
//! watermark for (group, topic, partition) and the group's committed offset; at the
//! committed offset when the store has no watermark (then where `auto.offset.reset` says,
//! earliest, when nothing is committed either). Both are contiguous: everything before
//! them is durable or dead-lettered. The committed offset is the first offset the consumer
//! has not settled; the watermark is the same settled position as the consumer knew it
//! when it submitted a record, written in the same durable (and fenced) write as that
//! record's event (see [`crate::ingest::kafka`]), so it lags behind the records written
//! with it but never passes one still in flight. (It used to be one past each record's
//! own offset, a high-water mark: group commits land in any order, so a commit could raise
//! it over a lower offset of another SKU still in flight, and the three-process test saw a
//! new owner that started there skip records.) Both being safe lower bounds, the greater one
//! reads the fewest records again: the watermark is ahead when the previous owner's last
//! Kafka commits were lost (it died within a commit interval, or the broker lost the
//! group's offsets), the committed offset when the watermark lags (a quiet partition's
//! last records carry the position before them). Records read again are duplicates,
//! answered by their idempotency keys.
//!
//! Channels (issue 13 §4, [`channels`]): in the same round, one lease per channel
//! (`channel/<id>`) gives each channel one leader, the only instance that pushes to it,
//! polls it and reconciles it ([`ChannelLeadership`], propagation's leadership); every
//! instance sends its own SKUs' availability changes to the instances that lead channels
//! ([`availability::ClusterSink`]).
//!
//! May depend on: `config`, `store`, `ledger`, `clock`, `telemetry`, the Kafka partitioner,
//! `propagation` (its public API), `domain`.

pub mod availability;
pub mod channels;
pub mod forward;
pub mod plan;
pub mod table;

pub use channels::{CHANNEL_SCOPE_PREFIX, ChannelLeaderStatus, ChannelLeadership, channel_scope};
pub use table::{PARTITION_SCOPE_PREFIX, PartitionTable, partition_scope};

use crate::clock::SharedClock;
use crate::config::ClusterConfig;
use crate::ledger::Ledger;
use crate::store::{LeaseOutcome, Store, StoreError};
use plan::Step;
use serde::Serialize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The prefix of every member lease's scope (`member/<member_id>`).
pub const MEMBER_SCOPE_PREFIX: &str = "member/";

/// Most members and partition leases read in one round.
const MAX_LEASES_READ: usize = 4_096;

/// A partition the Kafka consumer should read, and where to start: its epoch, and the
/// store's offset watermark for it when there is one (the consumer starts at the greater of
/// it and the group's committed offset, see the module docs).
pub use crate::ingest::kafka::PartitionStart as OwnedPartition;

/// The partitions this instance owns (key: partition number), for the Kafka consumer.
pub type OwnedPartitions = crate::ingest::kafka::PartitionAssignment;

/// One instance as this one sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// Its member id.
    pub member_id: String,
    /// Its advertised base URL.
    pub url: String,
    /// Whether its member lease is unexpired.
    pub live: bool,
}

/// One partition as this instance sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    /// The partition number.
    pub partition: u32,
    /// The member id of its lease holder while the lease is unexpired.
    pub owner: Option<String>,
    /// The holder's advertised URL while the lease is unexpired.
    pub url: Option<String>,
    /// The lease's epoch (raised whenever the holder changes).
    pub epoch: u64,
    /// Whether this instance holds it.
    pub here: bool,
}

/// This instance's view of the cluster, refreshed every round (`/readyz`, dashboard).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterStatus {
    /// This instance's member id.
    pub member_id: String,
    /// Every member lease, live or not, by member id.
    pub members: Vec<MemberStatus>,
    /// Every partition, ascending.
    pub partitions: Vec<PartitionStatus>,
    /// Partitions this instance holds.
    pub owned: Vec<u32>,
    /// Partitions taken, handed over or lost by this instance since it started.
    pub rebalances: u64,
    /// Every channel with its leader, in config order.
    pub channels: Vec<ChannelLeaderStatus>,
    /// Channel leaderships taken, handed over or lost by this instance since it started.
    pub leadership_changes: u64,
    /// Wall time of the last round that reached the store, in ms since the Unix epoch.
    pub last_round_ms: Option<i64>,
    /// Why the last round failed (the store's error), or why this instance cannot join.
    pub error: Option<String>,
}

/// Where the Kafka consumer's offset watermarks are (group and movements topic): a
/// partition taken is read from its watermark in the store.
#[derive(Clone, Debug)]
pub struct KafkaSource {
    /// The consumer group id (`[kafka] group_id`).
    pub group: String,
    /// The movements topic.
    pub topic: String,
}

/// A running coordinator: started by [`Cluster::start`], left by [`Cluster::leave`].
pub struct Cluster {
    table: Arc<PartitionTable>,
    channels: Arc<ChannelLeadership>,
    status: Arc<RwLock<ClusterStatus>>,
    owned: watch::Receiver<OwnedPartitions>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<Coordinator>>>,
    config: ClusterConfig,
}

/// The default member id: `<host>-<pid>`, letters, digits, `-`, `_` and `.` only.
pub fn default_member_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "host".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// `session_timeout_ms − heartbeat_ms`, at least 1: how long after a renewal began an
/// instance may still act on the lease (after that another instance may take it).
fn fence_after_ms(config: &ClusterConfig) -> i64 {
    let session = i64::try_from(config.session_timeout_ms).unwrap_or(i64::MAX);
    let heartbeat = i64::try_from(config.heartbeat_ms).unwrap_or(i64::MAX);
    session.saturating_sub(heartbeat).max(1)
}

impl Cluster {
    /// The partition table for `config` (hand it to the ledger as its ownership before
    /// the ledger starts, then to [`Cluster::start`]).
    pub fn table(config: &ClusterConfig) -> Arc<PartitionTable> {
        Arc::new(PartitionTable::new(config.partitions))
    }

    /// The channel leadership view of `channels` (channel ids in config order; hand it to
    /// propagation as its leadership before propagation starts, then to
    /// [`Cluster::start`]).
    /// Leading a channel lapses on `clock` when the lease was not renewed in time (see
    /// [`ChannelLeadership`]).
    pub fn leadership(channels: Vec<String>, clock: SharedClock) -> Arc<ChannelLeadership> {
        Arc::new(ChannelLeadership::new(channels, clock))
    }

    /// Starts the coordinator on the current tokio runtime; the first round runs at once.
    /// `advertise_url` is the base URL the other instances forward to (the config's, or the
    /// bound HTTP address); `channels` is the channel leadership view it keeps (see
    /// [`channels`]); `kafka` names where the offset watermarks are, when Kafka ingest runs.
    pub fn start(
        config: ClusterConfig,
        advertise_url: String,
        table: Arc<PartitionTable>,
        channels: Arc<ChannelLeadership>,
        store: Arc<dyn Store>,
        ledger: Ledger,
        kafka: Option<KafkaSource>,
    ) -> Self {
        let member_id = config.member_id.clone().unwrap_or_else(default_member_id);
        let token = format!("{member_id}#{:016x}", rand::random::<u64>());
        let (owned_sender, owned) = watch::channel(OwnedPartitions::new());
        let (stop, stopped) = watch::channel(false);
        let status = Arc::new(RwLock::new(ClusterStatus {
            member_id: member_id.clone(),
            ..ClusterStatus::default()
        }));
        let partitions = table.partitions() as usize;
        let coordinator = Coordinator {
            member_id,
            token,
            url: advertise_url.trim_end_matches('/').to_owned(),
            session_ms: i64::try_from(config.session_timeout_ms).unwrap_or(i64::MAX),
            table: table.clone(),
            store,
            ledger,
            kafka,
            owned: owned_sender,
            status: status.clone(),
            last_renewed_ms: vec![None; partitions],
            rebalances: 0,
            channel_renewed_ms: vec![None; channels.channels().len()],
            fence_after_ms: fence_after_ms(&config),
            heartbeat_ms: i64::try_from(config.heartbeat_ms).unwrap_or(i64::MAX),
            channel_resync_at_ms: vec![None; channels.channels().len()],
            channels: channels.clone(),
            leadership_changes: 0,
        };
        let heartbeat = Duration::from_millis(config.heartbeat_ms.max(1));
        let task = tokio::spawn(coordinator.run(heartbeat, stopped));
        Self {
            table,
            channels,
            status,
            owned,
            stop,
            task: Mutex::new(Some(task)),
            config,
        }
    }

    /// The partition table (shared with the ledger).
    pub fn partition_table(&self) -> &Arc<PartitionTable> {
        &self.table
    }

    /// The channel leadership view (shared with propagation).
    pub fn channel_leadership(&self) -> &Arc<ChannelLeadership> {
        &self.channels
    }

    /// The partitions owned now, updated as they move (for the Kafka consumer).
    pub fn owned(&self) -> watch::Receiver<OwnedPartitions> {
        self.owned.clone()
    }

    /// A copy of this instance's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The `[cluster]` settings it runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Stops the coordinator and hands every partition over at once: stops admitting,
    /// evicts (which flushes what is in flight), releases each lease, then every channel
    /// led here (pushing stops first) and the member lease,
    /// so the other instances take the partitions on their next round instead of after the
    /// session timeout. Call it after the Kafka consumer stopped, before the ledger shuts
    /// down. Store errors are logged: the leases then expire by themselves.
    pub async fn leave(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(task) = task else { return };
        match task.await {
            Ok(mut coordinator) => coordinator.leave().await,
            Err(error) => tracing::warn!(error = %error, "cluster coordinator failed"),
        }
    }
}

/// The coordinator's state (one task).
struct Coordinator {
    member_id: String,
    /// The owner string of this process's leases: `<member_id>#<random>`.
    token: String,
    url: String,
    session_ms: i64,
    table: Arc<PartitionTable>,
    store: Arc<dyn Store>,
    ledger: Ledger,
    kafka: Option<KafkaSource>,
    owned: watch::Sender<OwnedPartitions>,
    status: Arc<RwLock<ClusterStatus>>,
    /// Per partition held: when its lease was last renewed (clock ms).
    last_renewed_ms: Vec<Option<i64>>,
    rebalances: u64,
    /// Which channels this instance leads (see [`channels`]).
    channels: Arc<ChannelLeadership>,
    /// Per channel led: when its lease was last renewed (clock ms).
    channel_renewed_ms: Vec<Option<i64>>,
    /// How long after a renewal began this instance may still act on a lease:
    /// `session_timeout_ms − heartbeat_ms` (at least 1).
    fence_after_ms: i64,
    /// `heartbeat_ms` of the config.
    heartbeat_ms: i64,
    /// Per channel led: when (clock ms) to re-derive it from the ledger once more after
    /// taking it (see [`channels::RESYNC_AFTER_HEARTBEATS`]).
    channel_resync_at_ms: Vec<Option<i64>>,
    leadership_changes: u64,
}

impl Coordinator {
    async fn run(mut self, heartbeat: Duration, mut stopped: watch::Receiver<bool>) -> Self {
        let mut interval = tokio::time::interval(heartbeat);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let table = self.table.clone();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = table.fenced.notified() => {}
                _ = stopped.changed() => return self,
            }
            if *stopped.borrow() {
                return self;
            }
            let now_ms = self.ledger.clock().now_ms();
            if let Err(error) = self.round(now_ms).await {
                tracing::warn!(error = %error, "cluster round failed; retrying next heartbeat");
                self.status.write().unwrap_or_else(|e| e.into_inner()).error =
                    Some(error.to_string());
                self.self_fence(now_ms).await;
            }
        }
    }

    /// One round (see the module docs).
    async fn round(&mut self, now_ms: i64) -> Result<(), StoreError> {
        // Partitions the ledger found fenced since the last round.
        for partition in 0..self.table.partitions() {
            if self.last_renewed_ms[partition as usize].is_some()
                && self.table.held_epoch(partition) == 0
            {
                self.lose(partition, "fenced").await;
            }
        }
        let member_scope = format!("{MEMBER_SCOPE_PREFIX}{}", self.member_id);
        match self
            .store
            .try_lease(
                &member_scope,
                &self.token,
                &self.url,
                now_ms,
                self.session_ms,
            )
            .await?
        {
            LeaseOutcome::Granted(_) => {}
            LeaseOutcome::Held(other) => {
                let message = format!(
                    "member id {} is in use by another live instance ({}); this one owns nothing until it expires",
                    self.member_id, other.owner
                );
                tracing::error!("{message}");
                self.status.write().unwrap_or_else(|e| e.into_inner()).error = Some(message);
                return Ok(());
            }
        }
        let members = self
            .store
            .leases(MEMBER_SCOPE_PREFIX, MAX_LEASES_READ)
            .await?;
        let mut live: Vec<String> = members
            .iter()
            .filter(|lease| lease.expires_at_ms > now_ms)
            .filter_map(|lease| lease.scope.strip_prefix(MEMBER_SCOPE_PREFIX))
            .map(str::to_owned)
            .collect();
        live.sort();
        live.dedup();
        let partitions = self.table.partitions() as usize;
        let mut leases = vec![None; partitions];
        for lease in self
            .store
            .leases(PARTITION_SCOPE_PREFIX, MAX_LEASES_READ)
            .await?
        {
            if let Some(partition) = self.table.partition_of_scope(&lease.scope) {
                leases[partition as usize] = Some(lease);
            }
        }
        let held: Vec<u64> = (0..partitions as u32)
            .map(|partition| self.table.held_epoch(partition))
            .collect();
        for step in plan::plan(&self.member_id, &self.token, now_ms, &live, &leases, &held) {
            match step {
                Step::Renew(partition) => self.renew(partition, now_ms).await?,
                Step::Acquire(partition) => self.acquire(partition, now_ms).await?,
                Step::HandOver(partition) => self.hand_over(partition).await?,
                Step::Lost(partition) => self.lose(partition, "taken over").await,
            }
        }
        let channels = self.channel_round(now_ms, &live).await?;
        // Owners' URLs for `NotOwner` answers, and the status.
        let mut urls = vec![None; partitions];
        let mut statuses = Vec::with_capacity(partitions);
        for (index, lease) in leases.iter().enumerate() {
            let partition = index as u32;
            let here = self.table.held_epoch(partition) > 0;
            let live_lease = lease.as_ref().filter(|lease| lease.expires_at_ms > now_ms);
            if let Some(lease) = live_lease
                && lease.owner != self.token
            {
                urls[index] = Some(Arc::from(lease.payload.as_str()));
            }
            statuses.push(PartitionStatus {
                partition,
                owner: if here {
                    Some(self.member_id.clone())
                } else {
                    live_lease.map(|lease| member_of(&lease.owner).to_owned())
                },
                url: if here {
                    Some(self.url.clone())
                } else {
                    live_lease.map(|lease| lease.payload.clone())
                },
                epoch: lease.as_ref().map_or(0, |lease| lease.epoch),
                here,
            });
        }
        self.table.set_owner_urls(urls);
        let owned: Vec<u32> = self.table.held().into_iter().map(|(p, _)| p).collect();
        metrics::gauge!(crate::telemetry::CLUSTER_PARTITIONS_OWNED).set(owned.len() as f64);
        metrics::gauge!(crate::telemetry::CLUSTER_MEMBERS).set(live.len() as f64);
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        status.members = members
            .iter()
            .filter_map(|lease| {
                Some(MemberStatus {
                    member_id: lease.scope.strip_prefix(MEMBER_SCOPE_PREFIX)?.to_owned(),
                    url: lease.payload.clone(),
                    live: lease.expires_at_ms > now_ms,
                })
            })
            .collect();
        status.partitions = statuses;
        status.owned = owned;
        status.rebalances = self.rebalances;
        status.channels = channels;
        status.leadership_changes = self.leadership_changes;
        status.last_round_ms = Some(now_ms);
        status.error = None;
        Ok(())
    }

    async fn renew(&mut self, partition: u32, now_ms: i64) -> Result<(), StoreError> {
        let scope = partition_scope(partition);
        match self
            .store
            .try_lease(&scope, &self.token, &self.url, now_ms, self.session_ms)
            .await?
        {
            LeaseOutcome::Granted(lease) if lease.epoch == self.table.held_epoch(partition) => {
                self.last_renewed_ms[partition as usize] = Some(now_ms);
            }
            LeaseOutcome::Granted(lease) => {
                // Someone held it in between: what is in memory may be stale.
                self.lose(partition, "epoch moved").await;
                self.take(partition, lease.epoch, now_ms).await?;
            }
            LeaseOutcome::Held(_) => self.lose(partition, "taken over").await,
        }
        Ok(())
    }

    async fn acquire(&mut self, partition: u32, now_ms: i64) -> Result<(), StoreError> {
        let scope = partition_scope(partition);
        if let LeaseOutcome::Granted(lease) = self
            .store
            .try_lease(&scope, &self.token, &self.url, now_ms, self.session_ms)
            .await?
        {
            self.take(partition, lease.epoch, now_ms).await?;
        }
        Ok(())
    }

    /// Starts owning `partition` at `epoch`: evicts any stale state of its SKUs, admits
    /// them, and tells the Kafka consumer to read it from the store's offset watermark for
    /// it, or from the group's committed offset when that is further on or the store has
    /// none (see the module docs).
    async fn take(&mut self, partition: u32, epoch: u64, now_ms: i64) -> Result<(), StoreError> {
        self.evict(partition).await;
        let watermark = match &self.kafka {
            Some(kafka) => self
                .store
                .offsets(&kafka.group)
                .await?
                .into_iter()
                .find(|mark| mark.topic == kafka.topic && mark.partition == partition as i32)
                .map(|mark| mark.next_offset),
            None => None,
        };
        self.table.hold(partition, epoch);
        self.last_renewed_ms[partition as usize] = Some(now_ms);
        self.owned.send_modify(|owned| {
            owned.insert(
                partition as i32,
                OwnedPartition {
                    epoch,
                    start_offset: watermark,
                },
            );
        });
        // Holds with a TTL that another instance made lapse here now.
        let (ledger, table) = (self.ledger.clone(), self.table.clone());
        tokio::spawn(async move {
            ledger
                .schedule_holds_where(Arc::new(move |sku: &str| {
                    table.partition_of(sku) == partition
                }))
                .await;
        });
        self.count("acquired");
        tracing::info!(partition, epoch, ?watermark, "took partition");
        Ok(())
    }

    async fn hand_over(&mut self, partition: u32) -> Result<(), StoreError> {
        let epoch = self.table.held_epoch(partition);
        self.table.stop_admitting(partition);
        self.owned.send_modify(|owned| {
            owned.remove(&(partition as i32));
        });
        self.evict(partition).await;
        self.table.drop_partition(partition);
        self.last_renewed_ms[partition as usize] = None;
        self.store
            .release_lease(&partition_scope(partition), &self.token, epoch)
            .await?;
        self.count("released");
        tracing::info!(partition, epoch, "handed partition over");
        Ok(())
    }

    /// Forgets `partition` after another owner took it (or the store fenced a write).
    async fn lose(&mut self, partition: u32, why: &'static str) {
        self.table.drop_partition(partition);
        self.last_renewed_ms[partition as usize] = None;
        self.owned.send_modify(|owned| {
            owned.remove(&(partition as i32));
        });
        self.evict(partition).await;
        self.count("lost");
        tracing::warn!(partition, why, "lost partition");
    }

    /// Stops owning every partition whose lease could not be renewed for almost a session:
    /// another instance may take it once the lease expires.
    async fn self_fence(&mut self, now_ms: i64) {
        let limit = self.fence_after_ms;
        for partition in 0..self.table.partitions() {
            if let Some(renewed) = self.last_renewed_ms[partition as usize]
                && now_ms.saturating_sub(renewed) >= limit
            {
                self.lose(partition, "lease not renewed in time").await;
            }
        }
        self.self_fence_channels(now_ms, limit);
    }

    async fn evict(&self, partition: u32) {
        let table = self.table.clone();
        let dropped = self
            .ledger
            .evict_where(Arc::new(move |sku: &str| {
                table.partition_of(sku) == partition
            }))
            .await;
        if dropped > 0 {
            tracing::debug!(partition, dropped, "evicted SKUs");
        }
    }

    fn count(&mut self, event: &'static str) {
        self.rebalances += 1;
        metrics::counter!(crate::telemetry::CLUSTER_PARTITION_CHANGES_TOTAL, "event" => event)
            .increment(1);
    }

    /// Hands everything over (see [`Cluster::leave`]).
    async fn leave(&mut self) {
        for (partition, _) in self.table.held() {
            if let Err(error) = self.hand_over(partition).await {
                tracing::warn!(partition, error = %error, "releasing a partition failed; its lease expires by itself");
            }
        }
        self.leave_channels().await;
        let member_scope = format!("{MEMBER_SCOPE_PREFIX}{}", self.member_id);
        let now_ms = self.ledger.clock().now_ms();
        // The member lease: renew it once to learn its epoch, then release it.
        match self
            .store
            .try_lease(
                &member_scope,
                &self.token,
                &self.url,
                now_ms,
                self.session_ms,
            )
            .await
        {
            Ok(LeaseOutcome::Granted(lease)) => {
                let _ = self
                    .store
                    .release_lease(&member_scope, &self.token, lease.epoch)
                    .await;
            }
            Ok(LeaseOutcome::Held(_)) => {}
            Err(error) => {
                tracing::warn!(error = %error, "leaving the cluster: the member lease expires by itself")
            }
        }
        tracing::info!(member = %self.member_id, "left the cluster");
    }
}

/// The member id in a lease owner string (`<member_id>#<random>`).
pub fn member_of(owner: &str) -> &str {
    owner.split_once('#').map_or(owner, |(member, _)| member)
}

#[cfg(test)]
mod tests;
