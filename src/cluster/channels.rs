//! One pusher per channel (issue 13 §4): a lease per channel, `channel/<channel id>`, taken,
//! renewed, handed over and lost in the coordinator's round with the partitions' rules, and
//! the instance's view of who leads what ([`ChannelLeadership`]).
//!
//! Owns: [`ChannelLeadership`] (propagation's [`Leadership`] with `[cluster]`, and the
//! leaders' URLs the availability forwarding sends to), [`ChannelLeaderStatus`], and the
//! coordinator's channel steps.
//!
//! The leader of channel `i` (channels in config order) is the sorted live members'
//! `i mod n`-th ([`super::plan::plan_channels`]), so channels spread over the instances.
//! Taking a channel: hold the lease, then tell propagation ([`Propagation::channel_gained`]:
//! reload what the channel holds, rebuild the queue from the ledger, push what differs).
//! Giving it up (handover, loss, a lease not renewed in time): first stop pushing
//! ([`Propagation::channel_lost`]), then release the lease, so the next leader takes it
//! only once this one has stopped (a push already in flight may finish).
//!
//! May depend on: `store` leases, `propagation` (its public API), `telemetry`.

use super::{Coordinator, MAX_LEASES_READ, member_of, plan};
use crate::clock::SharedClock;
use crate::propagation::{Leadership, Propagation};
use crate::store::{LeaseOutcome, StoreError};
use plan::Step;
use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// How many heartbeats after taking a channel its new leader re-derives it from the ledger
/// once more ([`Propagation::resync`]): every instance refreshes its view of the leaders
/// once per heartbeat, so by then all send their changes to the new leader.
pub const RESYNC_AFTER_HEARTBEATS: i64 = 3;

/// The prefix of every channel lease's scope (`channel/<channel id>`).
pub const CHANNEL_SCOPE_PREFIX: &str = "channel/";

/// The scope of `channel`'s lease: `channel/<channel id>`.
pub fn channel_scope(channel: &str) -> String {
    format!("{CHANNEL_SCOPE_PREFIX}{channel}")
}

/// One channel as this instance sees it (`/readyz`, dashboard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelLeaderStatus {
    /// The channel id.
    pub channel: String,
    /// The member id of its leader while the lease is unexpired.
    pub leader: Option<String>,
    /// The leader's advertised URL while the lease is unexpired.
    pub url: Option<String>,
    /// The lease's epoch (raised whenever the leader changes); 0: never led.
    pub epoch: u64,
    /// Whether this instance leads it.
    pub here: bool,
}

/// Which channels this instance leads, at which epoch, and who leads the others. Written
/// only by the coordinator; read by propagation on every wake and batch (two atomic loads
/// and a clock read), by the pollers and reconciliation on every tick, and by the
/// availability forwarding.
///
/// Leading is bounded in time as well as by the coordinator's word: each take or renewal
/// of a channel's lease is good until `renewed + session_timeout_ms − heartbeat_ms` on the
/// injected clock (the same margin after which the coordinator gives the channel up), and
/// [`Leadership::leads`] says no after that even before the coordinator's next round has
/// run. An instance paused past its session (SIGSTOP, a long GC-like stall, a VM freeze)
/// therefore pushes nothing when it wakes up, whichever of its tasks runs first; only a
/// request already on the wire before the pause can still land.
pub struct ChannelLeadership {
    /// Channel ids, in config order (index: the channel's number in the division).
    ids: Vec<String>,
    /// Per channel: the epoch this instance leads it at (0: not led here).
    held: Box<[AtomicU64]>,
    /// Per channel: until when (clock ms, exclusive) the last take or renewal lets this
    /// instance lead it.
    valid_until_ms: Box<[AtomicI64]>,
    /// The clock [`ChannelLeadership::valid_until_ms`] is read on.
    clock: SharedClock,
    /// Per channel: the advertised URL of its leader when another instance leads it.
    leaders: RwLock<Vec<Option<Arc<str>>>>,
    /// Told when a channel is gained or lost (set once, by the app).
    propagation: OnceLock<Propagation>,
}

impl ChannelLeadership {
    /// A view of `channels` (ids in config order), none led; leadership expires on `clock`.
    pub fn new(channels: Vec<String>, clock: SharedClock) -> Self {
        let count = channels.len();
        Self {
            held: (0..count).map(|_| AtomicU64::new(0)).collect(),
            valid_until_ms: (0..count).map(|_| AtomicI64::new(i64::MIN)).collect(),
            clock,
            leaders: RwLock::new(vec![None; count]),
            ids: channels,
            propagation: OnceLock::new(),
        }
    }

    /// Hands in the propagation told when a channel is gained or lost (only the first call
    /// counts). Until then leadership changes only change [`Leadership::leads`].
    pub fn attach(&self, propagation: Propagation) {
        let _ = self.propagation.set(propagation);
    }

    /// The channel ids, in config order.
    pub fn channels(&self) -> &[String] {
        &self.ids
    }

    /// The epoch this instance leads channel number `index` at (0: not led here).
    pub fn held_epoch(&self, index: usize) -> u64 {
        self.held
            .get(index)
            .map_or(0, |held| held.load(Ordering::Acquire))
    }

    /// The channels led here, in config order.
    pub fn led(&self) -> Vec<String> {
        self.ids
            .iter()
            .enumerate()
            .filter(|(index, _)| self.held_epoch(*index) > 0)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The advertised URL of `channel`'s leader when another live instance leads it.
    pub fn leader_url(&self, channel: &str) -> Option<Arc<str>> {
        let index = self.index_of(channel)?;
        self.leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
            .cloned()
            .flatten()
    }

    /// The distinct URLs of the other instances that lead a channel now (where this
    /// instance's availability changes must also go), ascending.
    pub fn remote_leaders(&self) -> Vec<Arc<str>> {
        let mut urls: Vec<Arc<str>> = self
            .leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flatten()
            .cloned()
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    fn index_of(&self, channel: &str) -> Option<usize> {
        self.ids.iter().position(|id| id == channel)
    }

    /// The channel number a lease scope names, if it is one of these channels.
    pub fn index_of_scope(&self, scope: &str) -> Option<usize> {
        self.index_of(scope.strip_prefix(CHANNEL_SCOPE_PREFIX)?)
    }

    /// Leads channel `index` at `epoch` until `valid_until_ms` (clock ms, exclusive).
    fn hold(&self, index: usize, epoch: u64, valid_until_ms: i64) {
        let _ = self.extend(index, valid_until_ms);
        if let Some(held) = self.held.get(index) {
            held.store(epoch, Ordering::Release);
        }
    }

    /// A renewal: channel `index` stays led until `valid_until_ms`. Returns the limit it
    /// replaced.
    fn extend(&self, index: usize, valid_until_ms: i64) -> i64 {
        self.valid_until_ms.get(index).map_or(i64::MAX, |until| {
            until.swap(valid_until_ms, Ordering::AcqRel)
        })
    }

    fn release(&self, index: usize) {
        if let Some(held) = self.held.get(index) {
            held.store(0, Ordering::Release);
        }
    }

    fn set_leader_urls(&self, urls: Vec<Option<Arc<str>>>) {
        *self.leaders.write().unwrap_or_else(|e| e.into_inner()) = urls;
    }
}

impl Leadership for ChannelLeadership {
    fn lead_epoch(&self, channel: &str) -> u64 {
        self.index_of(channel)
            .map_or(0, |index| self.held_epoch(index))
    }

    fn leads(&self, channel: &str) -> bool {
        self.index_of(channel).is_some_and(|index| {
            self.held_epoch(index) > 0
                && self
                    .valid_until_ms
                    .get(index)
                    .is_some_and(|until| self.clock.now_ms() < until.load(Ordering::Acquire))
        })
    }
}

impl Coordinator {
    /// The channel part of a round: reads the channel leases, takes, renews, hands over and
    /// forgets channels as [`plan::plan_channels`] says, and returns what it sees.
    pub(super) async fn channel_round(
        &mut self,
        now_ms: i64,
        live: &[String],
    ) -> Result<Vec<ChannelLeaderStatus>, StoreError> {
        let count = self.channels.channels().len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut leases = vec![None; count];
        for lease in self
            .store
            .leases(CHANNEL_SCOPE_PREFIX, MAX_LEASES_READ)
            .await?
        {
            if let Some(index) = self.channels.index_of_scope(&lease.scope) {
                leases[index] = Some(lease);
            }
        }
        let held: Vec<u64> = (0..count)
            .map(|index| self.channels.held_epoch(index))
            .collect();
        for step in plan::plan_channels(&self.member_id, &self.token, now_ms, live, &leases, &held)
        {
            match step {
                Step::Renew(index) => self.renew_channel(index as usize, now_ms).await?,
                Step::Acquire(index) => self.acquire_channel(index as usize, now_ms).await?,
                Step::HandOver(index) => self.hand_over_channel(index as usize).await?,
                Step::Lost(index) => self.lose_channel(index as usize, "taken over"),
            }
        }
        // A few heartbeats after taking a channel, every instance's view names this one as
        // its leader: re-derive the channel from the ledger once more, for changes an owner
        // sent to the previous leader meanwhile.
        for index in 0..count {
            if let Some(at) = self.channel_resync_at_ms[index]
                && now_ms >= at
            {
                self.channel_resync_at_ms[index] = None;
                if self.channels.held_epoch(index) > 0
                    && let Some(propagation) = self.channels.propagation.get()
                {
                    propagation.resync(&self.channels.channels()[index]);
                }
            }
        }
        let mut urls = vec![None; count];
        let mut statuses = Vec::with_capacity(count);
        for (index, lease) in leases.iter().enumerate() {
            let here = self.channels.held_epoch(index) > 0;
            let live_lease = lease.as_ref().filter(|lease| lease.expires_at_ms > now_ms);
            if !here
                && let Some(lease) = live_lease
                && lease.owner != self.token
            {
                urls[index] = Some(Arc::from(lease.payload.as_str()));
            }
            let leader = if here {
                Some(self.member_id.clone())
            } else {
                live_lease
                    .filter(|lease| lease.owner != self.token)
                    .map(|lease| member_of(&lease.owner).to_owned())
            };
            statuses.push(ChannelLeaderStatus {
                channel: self.channels.channels()[index].clone(),
                url: if here {
                    Some(self.url.clone())
                } else {
                    urls[index].as_deref().map(str::to_owned)
                },
                leader,
                epoch: lease.as_ref().map_or(0, |lease| lease.epoch),
                here,
            });
            metrics::gauge!(crate::telemetry::CLUSTER_CHANNEL_LEADER, "channel" => self.channels.channels()[index].clone())
                .set(if here { 1.0 } else { 0.0 });
        }
        self.channels.set_leader_urls(urls);
        Ok(statuses)
    }

    async fn renew_channel(&mut self, index: usize, now_ms: i64) -> Result<(), StoreError> {
        let scope = channel_scope(&self.channels.channels()[index]);
        match self
            .store
            .try_lease(&scope, &self.token, &self.url, now_ms, self.session_ms)
            .await?
        {
            LeaseOutcome::Granted(lease) if lease.epoch == self.channels.held_epoch(index) => {
                let channel = self.channels.channels()[index].clone();
                // Renewed late (a pause shorter than the session): leading had lapsed, so
                // propagation stopped. Nobody led meanwhile (same epoch): pushing goes on.
                // Whether it lapsed is decided by the limit the extension replaced, so an
                // actor that saw the limit pass just before is counted.
                self.channel_renewed_ms[index] = Some(now_ms);
                let replaced = self
                    .channels
                    .extend(index, now_ms.saturating_add(self.fence_after_ms));
                let lapsed = replaced <= self.channels.clock.now_ms();
                if lapsed && self.channel_resync_at_ms[index].is_none() {
                    // While the lease looked expired in the store, owners found no leader
                    // for the channel and sent their changes nowhere: re-derive it from the
                    // ledger once every owner sees the lease again, as after a takeover
                    // (the process test lost the last changes of a leader that kept
                    // renewing late). One pending at a time: a leader late on every round
                    // re-derives every few heartbeats, not never.
                    self.channel_resync_at_ms[index] =
                        Some(now_ms.saturating_add(
                            self.heartbeat_ms.saturating_mul(RESYNC_AFTER_HEARTBEATS),
                        ));
                }
                // Woken after every renewal, not only when this round saw a lapse: the
                // actor may have seen the old limit pass between the check above and the
                // extension, and stopped with changes queued (a stalled queue the process
                // test found). A wake with nothing to do costs one message.
                if let Some(propagation) = self.channels.propagation.get() {
                    propagation.wake_channel(&channel);
                }
                if lapsed {
                    tracing::info!(channel = %channel, epoch = lease.epoch, "leading channel again after a late renewal");
                }
            }
            LeaseOutcome::Granted(lease) => {
                // Someone led it in between: take it over afresh.
                self.lose_channel(index, "epoch moved");
                self.take_channel(index, lease.epoch, now_ms);
            }
            LeaseOutcome::Held(_) => self.lose_channel(index, "taken over"),
        }
        Ok(())
    }

    async fn acquire_channel(&mut self, index: usize, now_ms: i64) -> Result<(), StoreError> {
        let scope = channel_scope(&self.channels.channels()[index]);
        if let LeaseOutcome::Granted(lease) = self
            .store
            .try_lease(&scope, &self.token, &self.url, now_ms, self.session_ms)
            .await?
        {
            self.take_channel(index, lease.epoch, now_ms);
        }
        Ok(())
    }

    /// Starts leading channel `index` at `epoch`: leads from now on, then propagation takes
    /// the channel over (reload, rebuild, push).
    fn take_channel(&mut self, index: usize, epoch: u64, now_ms: i64) {
        self.channels
            .hold(index, epoch, now_ms.saturating_add(self.fence_after_ms));
        self.channel_renewed_ms[index] = Some(now_ms);
        self.channel_resync_at_ms[index] =
            Some(now_ms.saturating_add(self.heartbeat_ms.saturating_mul(RESYNC_AFTER_HEARTBEATS)));
        let channel = self.channels.channels()[index].clone();
        if let Some(propagation) = self.channels.propagation.get() {
            propagation.channel_gained(&channel);
        }
        self.count_channel(&channel, "acquired");
        tracing::info!(channel = %channel, epoch, "leading channel");
    }

    /// Hands channel `index` over: stops pushing, then releases the lease so that the
    /// division's leader takes it on its next round.
    async fn hand_over_channel(&mut self, index: usize) -> Result<(), StoreError> {
        let epoch = self.channels.held_epoch(index);
        let channel = self.channels.channels()[index].clone();
        self.stop_leading(index);
        self.store
            .release_lease(&channel_scope(&channel), &self.token, epoch)
            .await?;
        self.count_channel(&channel, "released");
        tracing::info!(channel = %channel, epoch, "handed channel over");
        Ok(())
    }

    /// Forgets channel `index` after another instance took it (or its lease could not be
    /// renewed in time).
    pub(super) fn lose_channel(&mut self, index: usize, why: &'static str) {
        let channel = self.channels.channels()[index].clone();
        self.stop_leading(index);
        self.count_channel(&channel, "lost");
        tracing::warn!(channel = %channel, why, "lost channel leadership");
    }

    fn stop_leading(&mut self, index: usize) {
        self.channels.release(index);
        self.channel_renewed_ms[index] = None;
        self.channel_resync_at_ms[index] = None;
        if let Some(propagation) = self.channels.propagation.get() {
            propagation.channel_lost(&self.channels.channels()[index]);
        }
    }

    /// Stops leading every channel whose lease could not be renewed for `limit_ms` (the
    /// store unreachable): another instance may take it once the lease expires.
    pub(super) fn self_fence_channels(&mut self, now_ms: i64, limit_ms: i64) {
        for index in 0..self.channels.channels().len() {
            if let Some(renewed) = self.channel_renewed_ms[index]
                && now_ms.saturating_sub(renewed) >= limit_ms
            {
                self.lose_channel(index, "lease not renewed in time");
            }
        }
    }

    /// Hands every channel led here over (leaving the cluster).
    pub(super) async fn leave_channels(&mut self) {
        for index in 0..self.channels.channels().len() {
            if self.channels.held_epoch(index) == 0 {
                continue;
            }
            if let Err(error) = self.hand_over_channel(index).await {
                tracing::warn!(channel = %self.channels.channels()[index], error = %error, "releasing a channel failed; its lease expires by itself");
            }
        }
    }

    fn count_channel(&mut self, channel: &str, event: &'static str) {
        self.leadership_changes += 1;
        metrics::counter!(crate::telemetry::CLUSTER_CHANNEL_CHANGES_TOTAL, "channel" => channel.to_owned(), "event" => event)
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_says_who_leads_and_where_the_others_are() {
        let clock = crate::clock::ManualClock::new(1_000);
        let view = ChannelLeadership::new(
            vec!["shop".into(), "bol".into(), "amz".into()],
            clock.clone(),
        );
        assert!(!view.leads("shop"));
        view.hold(0, 4, 2_000);
        assert!(view.leads("shop"));
        assert!(!view.leads("unknown"));
        assert_eq!(view.led(), vec!["shop".to_owned()]);
        view.set_leader_urls(vec![
            None,
            Some(Arc::from("http://b:8080")),
            Some(Arc::from("http://b:8080")),
        ]);
        assert_eq!(
            view.remote_leaders(),
            vec![Arc::<str>::from("http://b:8080")]
        );
        assert_eq!(view.leader_url("bol").as_deref(), Some("http://b:8080"));
        assert_eq!(view.index_of_scope("channel/amz"), Some(2));
        assert_eq!(view.index_of_scope("movements/2"), None);
        view.release(0);
        assert!(!view.leads("shop"));
    }

    #[test]
    fn leading_lapses_on_the_clock_without_waiting_for_the_coordinator() {
        let clock = crate::clock::ManualClock::new(10_000);
        let view = ChannelLeadership::new(vec!["shop".into()], clock.clone());
        view.hold(0, 3, 12_500);
        assert!(view.leads("shop"));
        clock.advance_ms(2_499);
        assert!(view.leads("shop"), "still inside the renewal's margin");
        // Paused past the margin: on waking, leading has lapsed although the coordinator
        // has not run and still holds the epoch.
        clock.advance_ms(1);
        assert!(!view.leads("shop"));
        assert_eq!(view.held_epoch(0), 3);
        assert_eq!(view.led(), vec!["shop".to_owned()]);
        // A renewal extends it again and says which limit it replaced, so the coordinator
        // sees the lapse (12,500 passed at 12,500) even if it looked just before.
        assert_eq!(view.extend(0, 15_000), 12_500);
        assert!(view.leads("shop"));
        assert_eq!(view.extend(0, 16_000), 15_000);
    }
}
