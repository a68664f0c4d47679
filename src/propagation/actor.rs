//! One channel's actor: drains the coalescing queue through the adapter, paced by the token
//! bucket, and turns every item's outcome into the next step (see the module docs of
//! `propagation`). The actor never sleeps inside a message: waits become a timer `Wake`, so
//! `stop` is handled promptly. Work the platform processes asynchronously (an Amazon feed, a
//! bol.com process status) comes back [`ItemOutcome::Submitted`]: it is kept as a
//! [`Submission`] (at most [`MAX_SUBMISSIONS_IN_FLIGHT`]) whose status is checked when a
//! timer says it is due, while other listings go on being pushed.
//!
//! Ordering: every push of a listing gets a number, and only the result of the listing's
//! newest push updates its bookkeeping (believed value, last pushed value, holds); the
//! result of an older submission that a newer push overtook is dropped (`superseded`).
//! While a listing has a submission in flight its channel value counts as unknown, so a
//! newer value is never skipped as "unchanged"; unless the adapter serialises listings
//! (bol.com), that newer value goes out at once, decreases first as always.

use super::queue::Pending;
use super::rate::{TokenBucket, jittered_backoff};
use super::{ChannelShared, HeldListing, Hold, PROPAGATION_CAS_HOLDS_TOTAL};
use crate::channels::{ChannelError, ItemOutcome, PushItem, PushReport};
use crate::store::{PushLogRecord, PushedRecord};
use crate::telemetry;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Batches sent per message before yielding the mailbox (so `stop` is not starved).
const BATCHES_PER_MESSAGE: usize = 16;

/// Most submissions (feeds, process statuses) in flight per channel; at the bound the actor
/// takes no new batch until a submission has a result.
pub(crate) const MAX_SUBMISSIONS_IN_FLIGHT: usize = 32;

/// Work a push handed to the platform, whose result is not known yet.
struct Submission {
    /// The adapter's token (feed id, process status id).
    token: String,
    /// The number of the push that submitted it.
    push: u64,
    /// The items submitted, in push order: (SKU, its queue entry, what was sent).
    items: Vec<(String, Pending, PushItem)>,
    /// When to ask the adapter next.
    check_at: Instant,
}

/// Messages of a channel actor.
#[derive(Debug)]
pub(crate) enum ChannelMessage {
    /// Work may be ready: new ATP published, a timer fired, or `flush` nudged.
    Wake,
    /// Reconciliation found the channel at `channel_value`: push `atp` over it with
    /// compare-and-set on that value, even if we believed the channel already held `atp`.
    Repush {
        /// The SKU.
        sku: String,
        /// What the channel reported (`None`: unknown, push without the check).
        channel_value: Option<i64>,
        /// The ledger's ATP for the channel.
        atp: u64,
    },
    /// This instance has just become the channel's leader: reload what the channel holds
    /// from the store, drop the queue and have it rebuilt from the ledger, then push.
    Lead,
}

/// Start-up arguments.
pub(crate) struct ChannelArgs {
    pub shared: Arc<ChannelShared>,
    /// What the channel is believed to hold, from the store.
    pub believed: HashMap<String, i64>,
}

/// The actor's state.
pub(crate) struct ChannelState {
    shared: Arc<ChannelShared>,
    bucket: TokenBucket,
    /// What the channel holds as far as we know (last ack, or last read after a conflict):
    /// the `changeFromQuantity` of the next push and the "unchanged" test.
    believed: HashMap<String, i64>,
    /// Request-level failures in a row (throttling excluded), for the channel-wide backoff.
    consecutive_failures: u32,
    /// The earliest pending timer `Wake`.
    timer_at: Option<Instant>,
    /// The SKU's reserved units when the channel last acknowledged (or already held) our
    /// value, per listing: the starting point of a new hold's accounting.
    acked_reserved: HashMap<String, u64>,
    /// Holds started or grown by the push being handled (SKU, our ATP, the hold), for the
    /// push log.
    started_holds: Vec<(String, u64, HeldListing)>,
    /// Submissions in flight, by number; at most [`MAX_SUBMISSIONS_IN_FLIGHT`].
    submissions: HashMap<u64, Submission>,
    /// The number of the next submission.
    next_submission: u64,
    /// Per listing with a push or submission in flight: the number of its newest push.
    newest_push: HashMap<String, u64>,
    /// The number of the next push.
    next_push: u64,
    /// This actor has taken the channel over since this instance last followed: its
    /// values were reloaded and its queue rebuilt ([`ChannelMessage::Lead`], or a start
    /// while leading). Nothing is pushed before, so a queue coalesced while following is
    /// never pushed over what the previous leader pushed.
    taken_over: bool,
    /// The leadership epoch the takeover was for ([`crate::propagation::Leadership::lead_epoch`]).
    taken_over_epoch: u64,
}

/// The actor of one channel.
pub(crate) struct ChannelActor;

impl Actor for ChannelActor {
    type Msg = ChannelMessage;
    type State = ChannelState;
    type Arguments = ChannelArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let bucket = TokenBucket::new(&args.shared.config.rate_limit, Instant::now())
            .linked(args.shared.adapter.push_quota());
        let taken_over = args.shared.leads();
        let taken_over_epoch = args.shared.lead_epoch();
        Ok(ChannelState {
            shared: args.shared,
            bucket,
            believed: args.believed,
            consecutive_failures: 0,
            timer_at: None,
            acked_reserved: HashMap::new(),
            started_holds: Vec::new(),
            submissions: HashMap::new(),
            next_submission: 0,
            newest_push: HashMap::new(),
            next_push: 0,
            taken_over,
            taken_over_epoch,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ChannelMessage::Wake => state.drain(&myself).await,
            ChannelMessage::Repush {
                sku,
                channel_value,
                atp,
            } => {
                match channel_value {
                    Some(value) => state.believed.insert(sku.clone(), value),
                    None => state.believed.remove(&sku),
                };
                let depth = {
                    let mut queue = state.shared.queue();
                    queue.upsert(&sku, atp, Instant::now());
                    queue.len()
                };
                state.shared.record_queue_depth(depth);
                state.drain(&myself).await;
            }
            ChannelMessage::Lead => state.lead(&myself).await,
        }
        Ok(())
    }
}

impl ChannelState {
    /// Takes over the channel (see [`ChannelMessage::Lead`]): the values the previous
    /// leader recorded become what the channel is believed to hold, the queue (what this
    /// instance coalesced while following, possibly older than what the leader pushed) is
    /// dropped and rebuilt from the ledger, whose store has every durable change.
    async fn lead(&mut self, myself: &ActorRef<ChannelMessage>) {
        let shared = Arc::clone(&self.shared);
        self.taken_over = true;
        self.taken_over_epoch = shared.lead_epoch();
        // The previous leader may have spent the burst just before handing over.
        self.bucket.empty(Instant::now());
        match shared.load_believed().await {
            Ok(believed) => {
                shared.pushed.retain(|sku, _| believed.contains_key(sku));
                for (sku, value) in &believed {
                    shared
                        .pushed
                        .insert(sku.clone(), u64::try_from(*value).unwrap_or(0));
                }
                self.believed = believed;
            }
            Err(error) => {
                tracing::warn!(channel = %shared.id, error = %error, "cannot reload pushed values; compare-and-set conflicts will correct what is believed");
            }
        }
        self.acked_reserved.clear();
        let depth = {
            let mut queue = shared.queue();
            queue.clear();
            queue.len()
        };
        shared.record_queue_depth(depth);
        if let Some(rebuilder) = shared.rebuilder.get() {
            rebuilder.rebuild(&shared.id);
        }
        self.drain(myself).await;
    }

    /// Sends ready batches while the bucket allows; schedules a timer for what waits.
    /// Nothing while another instance leads the channel: checked before every batch, so a
    /// lost leadership stops the pushes at once (the one in flight finishes).
    async fn drain(&mut self, myself: &ActorRef<ChannelMessage>) {
        self.shared.wake_queued.store(false, Ordering::Release);
        if !self.leading() {
            return;
        }
        let now = Instant::now();
        if self.timer_at.is_some_and(|at| at <= now) {
            self.timer_at = None;
        }
        self.check_due_submissions().await;
        if let Some(at) = self.submissions.values().map(|s| s.check_at).min() {
            self.schedule(myself, at);
        }
        for _ in 0..BATCHES_PER_MESSAGE {
            if !self.leading() {
                return;
            }
            if self.submissions.len() >= MAX_SUBMISSIONS_IN_FLIGHT {
                // The timer of the earliest check (above) wakes the actor again.
                return;
            }
            let now = Instant::now();
            let wait = self.bucket.wait(now);
            let (batch, next_ready, depth) = {
                let mut queue = self.shared.queue();
                if !wait.is_zero() {
                    let after_wait = now + wait;
                    let next = if queue.has_ready(now) {
                        Some(after_wait)
                    } else {
                        queue.next_ready_at().map(|at| at.max(after_wait))
                    };
                    drop(queue);
                    if let Some(at) = next {
                        self.schedule(myself, at);
                    }
                    return;
                }
                let believed = &self.believed;
                let newest_push = &self.newest_push;
                let serialises = self.shared.adapter.serialises_listings();
                let batch = {
                    let holds = self.shared.holds();
                    queue.take_batch_where(
                        now,
                        self.shared.adapter.max_batch(),
                        // A listing with a submission in flight may change under us: never
                        // "unchanged", so a newer value is not dropped.
                        |sku| {
                            if newest_push.contains_key(sku) {
                                None
                            } else {
                                believed.get(sku).copied()
                            }
                        },
                        |sku, pending| {
                            (serialises && newest_push.contains_key(sku))
                                || holds.get(sku).is_some_and(|hold| hold.blocks(pending))
                        },
                    )
                };
                self.shared
                    .in_flight
                    .store(batch.items.len(), Ordering::Release);
                (batch, queue.next_ready_at(), queue.len())
            };
            for (sku, pending) in &batch.unchanged {
                self.account_hold(sku, pending, None);
            }
            if !batch.unchanged.is_empty() {
                metrics::counter!(telemetry::PROPAGATION_PUSHES_TOTAL, "channel" => self.shared.id.clone(), "outcome" => "unchanged")
                    .increment(batch.unchanged.len() as u64);
            }
            self.shared.record_queue_depth(depth);
            if batch.items.is_empty() {
                if let Some(at) = next_ready {
                    self.schedule(myself, at);
                }
                return;
            }
            self.bucket.take(now);
            self.push(batch.items).await;
            if let Some(at) = self.submissions.values().map(|s| s.check_at).min() {
                self.schedule(myself, at);
            }
        }
        self.shared.wake();
    }

    /// True while this instance leads the channel under the epoch this actor took it
    /// over at; a lapse on the clock that a renewal under the same epoch ends resumes
    /// pushing, while leading under another epoch waits for the next
    /// [`ChannelMessage::Lead`].
    fn leading(&mut self) -> bool {
        self.taken_over && self.shared.leads() && self.shared.lead_epoch() == self.taken_over_epoch
    }

    /// Arranges a `Wake` at `at` unless an earlier timer is pending.
    fn schedule(&mut self, myself: &ActorRef<ChannelMessage>, at: Instant) {
        let now = Instant::now();
        if self
            .timer_at
            .is_some_and(|pending| pending > now && pending <= at)
        {
            return;
        }
        self.timer_at = Some(at);
        // The timer task is detached; a `Wake` to a stopped actor is dropped.
        drop(myself.send_after(at.saturating_duration_since(now), || ChannelMessage::Wake));
    }

    async fn push(&mut self, items: Vec<(String, Pending)>) {
        let request: Vec<PushItem> = items
            .iter()
            .map(|(sku, pending)| PushItem {
                sku: sku.clone(),
                quantity: pending.atp,
                change_from: self.believed.get(sku).copied(),
            })
            .collect();
        let push = self.next_push;
        self.next_push = self.next_push.wrapping_add(1);
        for item in &request {
            self.newest_push.insert(item.sku.clone(), push);
        }
        self.in_flight_values()
            .extend(request.iter().map(|item| (item.sku.clone(), item.quantity)));
        let shadow = self.shared.shadow.is_shadow();
        let report = self.shared.adapter.push(&request).await;
        if let Some(push_log) = &self.shared.push_log {
            let mut records = push_log_records(
                &self.shared.id,
                &request,
                &report,
                self.shared.clock.now_ms(),
            );
            if shadow {
                // Read and compared, never sent (propagation::shadow).
                for record in &mut records {
                    if record.outcome == "accepted" {
                        record.outcome = "shadow".to_owned();
                    }
                }
            }
            push_log.send(records);
        }
        let mut tokens: HashMap<String, (u64, u64)> = HashMap::new();
        let submitted_as: HashMap<&str, (&str, u64)> = report
            .results
            .iter()
            .filter_map(|result| match &result.outcome {
                ItemOutcome::Submitted {
                    token,
                    check_after_ms,
                } => Some((result.sku.as_str(), (token.as_str(), *check_after_ms))),
                _ => None,
            })
            .collect();
        let now = Instant::now();
        let mut finals = Vec::with_capacity(items.len());
        for ((sku, pending), item) in items.into_iter().zip(request) {
            let Some((token, check_after_ms)) = submitted_as.get(sku.as_str()).copied() else {
                self.settled(&sku, push);
                finals.push((sku, pending));
                continue;
            };
            let (number, _) = *tokens.entry(token.to_owned()).or_insert_with(|| {
                let number = self.next_submission;
                self.next_submission = self.next_submission.wrapping_add(1);
                (number, check_after_ms)
            });
            self.submissions
                .entry(number)
                .or_insert_with(|| Submission {
                    token: token.to_owned(),
                    push,
                    items: Vec::new(),
                    check_at: now + Duration::from_millis(check_after_ms),
                })
                .items
                .push((sku, pending, item));
        }
        drop(submitted_as);
        self.apply(finals, report).await;
        self.log_started_holds();
        self.record_submitted();
    }

    /// The quantities being pushed or submitted, per SKU (echo recognition).
    fn in_flight_values(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.shared
            .in_flight_values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A result of push `push` for `sku` arrived: true (and the listing no longer in
    /// flight) when that push is the listing's newest, false when a newer push overtook it.
    fn settled(&mut self, sku: &str, push: u64) -> bool {
        if self.newest_push.get(sku) != Some(&push) {
            return false;
        }
        self.newest_push.remove(sku);
        self.in_flight_values().remove(sku);
        true
    }

    /// The platform applied an overtaken submission's older value for these listings, and
    /// may have applied it after the newer value (Amazon does not order feeds and PATCHes,
    /// PLATFORMS.md §4.6). A listing whose newer value was already acknowledged gets it
    /// written once more, now that the older one is applied, so the newest value is the
    /// last write; one whose newer value is still in flight is settled by that result.
    fn reassert(&mut self, skus: Vec<String>) {
        if skus.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut queue = self.shared.queue();
        for sku in skus {
            if self.newest_push.contains_key(&sku) {
                continue;
            }
            // Unknown channel value: never skipped as unchanged.
            self.believed.remove(&sku);
            if queue.atp_of(&sku).is_none()
                && let Some(value) = self.shared.pushed.get(&sku).map(|value| *value)
            {
                queue.upsert(&sku, value, now);
            }
        }
    }

    /// Publishes the number of submitted items for `pending` and the status.
    fn record_submitted(&self) {
        let submitted: usize = self.submissions.values().map(|s| s.items.len()).sum();
        self.shared.submitted.store(submitted, Ordering::Release);
    }

    /// Sends the holds started by the push just handled to the push log.
    fn log_started_holds(&mut self) {
        let started = std::mem::take(&mut self.started_holds);
        if let Some(push_log) = &self.shared.push_log
            && !started.is_empty()
        {
            let at_ms = self.shared.clock.now_ms();
            push_log.send(
                started
                    .into_iter()
                    .map(|(sku, quantity, view)| {
                        hold_record(&self.shared.id, sku, quantity, &view, at_ms)
                    })
                    .collect(),
            );
        }
    }

    /// Asks the adapter about every submission whose check is due (at most
    /// [`BATCHES_PER_MESSAGE`] per message): final results are handled like a push's, for
    /// the listings whose newest push it was; the rest are checked again later.
    async fn check_due_submissions(&mut self) {
        let now = Instant::now();
        let mut due: Vec<(Instant, u64)> = self
            .submissions
            .iter()
            .filter(|(_, submission)| submission.check_at <= now)
            .map(|(number, submission)| (submission.check_at, *number))
            .collect();
        due.sort_unstable();
        due.truncate(BATCHES_PER_MESSAGE);
        for (_, number) in due {
            let Some(submission) = self.submissions.remove(&number) else {
                continue;
            };
            let request: Vec<PushItem> = submission
                .items
                .iter()
                .map(|(_, _, item)| item.clone())
                .collect();
            let report = self
                .shared
                .adapter
                .check_submitted(&submission.token, &request)
                .await;
            let outcomes: HashMap<&str, &ItemOutcome> = report
                .results
                .iter()
                .map(|result| (result.sku.as_str(), &result.outcome))
                .collect();
            let now = Instant::now();
            let mut waiting = Vec::new();
            let mut check_after_ms = None;
            let mut finals = Vec::new();
            let mut final_request = Vec::new();
            let mut superseded = 0u64;
            let mut reassert = Vec::new();
            for (sku, pending, item) in submission.items {
                if let Some(ItemOutcome::Submitted {
                    check_after_ms: after,
                    ..
                }) = outcomes.get(sku.as_str())
                {
                    check_after_ms = Some(check_after_ms.map_or(*after, |ms: u64| ms.min(*after)));
                    waiting.push((sku, pending, item));
                    continue;
                }
                if self.settled(&sku, submission.push) {
                    final_request.push(item);
                    finals.push((sku, pending));
                } else {
                    tracing::debug!(channel = %self.shared.id, sku = %sku, quantity = item.quantity, token = %submission.token, "result of an overtaken submission ignored");
                    superseded += 1;
                    if matches!(
                        outcomes.get(sku.as_str()),
                        Some(ItemOutcome::Accepted { .. })
                    ) {
                        reassert.push(sku);
                    }
                }
            }
            drop(outcomes);
            self.reassert(reassert);
            if superseded > 0 {
                metrics::counter!(telemetry::PROPAGATION_PUSHES_TOTAL, "channel" => self.shared.id.clone(), "outcome" => "superseded")
                    .increment(superseded);
            }
            if !waiting.is_empty() {
                self.submissions.insert(
                    number,
                    Submission {
                        token: submission.token.clone(),
                        push: submission.push,
                        items: waiting,
                        check_at: now + Duration::from_millis(check_after_ms.unwrap_or(0)),
                    },
                );
            }
            if finals.is_empty() && report.error.is_none() && !report.throttle.throttled {
                continue;
            }
            if let Some(push_log) = &self.shared.push_log
                && !final_request.is_empty()
            {
                push_log.send(push_log_records(
                    &self.shared.id,
                    &final_request,
                    &report,
                    self.shared.clock.now_ms(),
                ));
            }
            self.apply(finals, report).await;
            self.log_started_holds();
        }
        self.record_submitted();
    }

    /// Handles one push report: pacing signals first, then each item's outcome.
    async fn apply(&mut self, items: Vec<(String, Pending)>, report: PushReport) {
        let now = Instant::now();
        let shared = Arc::clone(&self.shared);
        let channel = shared.id.clone();
        let throttled = report.throttle.throttled
            || report
                .error
                .as_ref()
                .is_some_and(ChannelError::is_throttled);
        self.bucket.charge(report.requests.saturating_sub(1));
        if let Some(budget) = &report.throttle.budget {
            self.bucket.observe_budget(budget, now);
        }
        if throttled {
            metrics::counter!(telemetry::CHANNEL_THROTTLED_TOTAL, "channel" => channel.clone())
                .increment(1);
            shared.status().throttled_total += 1;
            let pause = match report.throttle.retry_after_ms {
                Some(ms) => Duration::from_millis(ms),
                None if report.throttle.budget.is_some() => Duration::ZERO,
                None => jittered_backoff(&shared.config.retry, 1).max(Duration::from_millis(100)),
            };
            self.bucket.pause_until(now + pause);
        }
        match &report.error {
            Some(error) if error.is_throttled() => {}
            Some(error) => {
                self.consecutive_failures += 1;
                metrics::counter!(telemetry::CHANNEL_ERRORS_TOTAL, "channel" => channel.clone(), "error" => error.label())
                    .increment(1);
                tracing::warn!(channel = %channel, error = %error, domain = ?error.domain(), retry = ?error.retry_hint(), "push failed");
                {
                    let mut status = shared.status();
                    status.errors_total += 1;
                    status.last_error = Some(error.to_string());
                    status.last_error_at_ms = Some(shared.clock.now_ms());
                }
                let pause = jittered_backoff(&shared.config.retry, self.consecutive_failures);
                self.bucket.pause_until(now + pause);
            }
            None => self.consecutive_failures = 0,
        }
        shared.status().consecutive_failures = self.consecutive_failures;

        let mut outcomes: HashMap<String, ItemOutcome> = report
            .results
            .into_iter()
            .map(|result| (result.sku, result.outcome))
            .collect();
        let mut acknowledged = Vec::new();
        let mut counts = OutcomeCounts::default();
        let mut requeue = Vec::new();
        for (sku, mut pending) in items {
            let outcome = outcomes.remove(&sku).unwrap_or(ItemOutcome::Deferred);
            match outcome {
                ItemOutcome::Accepted { quantity } => {
                    counts.accepted += 1;
                    self.account_hold(
                        &sku,
                        &pending,
                        Some(i64::try_from(quantity).unwrap_or(i64::MAX)),
                    );
                    self.believed
                        .insert(sku.clone(), i64::try_from(quantity).unwrap_or(i64::MAX));
                    shared.pushed.insert(sku.clone(), quantity);
                    shared
                        .pushed_at_ms
                        .insert(sku.clone(), shared.clock.now_ms());
                    let lag = now
                        .saturating_duration_since(pending.published_at)
                        .as_secs_f64();
                    metrics::histogram!(telemetry::PROPAGATION_LAG_SECONDS, "channel" => channel.clone()).record(lag);
                    acknowledged.push(PushedRecord {
                        channel: channel.clone(),
                        sku,
                        quantity,
                        pushed_at_ms: shared.clock.now_ms(),
                    });
                }
                ItemOutcome::Conflict { current } => {
                    counts.conflicts += 1;
                    pending.isolated = false;
                    let expected = self.believed.get(&sku).copied();
                    match (expected, current) {
                        (Some(expected), Some(current)) if current < expected => {
                            tracing::debug!(channel = %channel, sku = %sku, expected, channel_value = current, ours = pending.atp, "channel lowered the value itself");
                            self.lowered(&sku, &mut pending, expected, current);
                            pending.not_before = None;
                        }
                        (Some(expected), Some(current)) if current > expected => {
                            self.raised(&sku, expected, current);
                            tracing::debug!(channel = %channel, sku = %sku, channel_value = current, ours = pending.atp, "channel raised the value itself; holding the listing for the grace period");
                            pending.not_before = Some(now + shared.cas_grace);
                        }
                        _ => {
                            tracing::debug!(channel = %channel, sku = %sku, channel_value = ?current, ours = pending.atp, "channel changed the value itself; holding the listing for the grace period");
                            pending.not_before = Some(now + shared.cas_grace);
                        }
                    }
                    if let Some(current) = current {
                        self.believed.insert(sku.clone(), current);
                    }
                    requeue.push((sku, pending));
                }
                ItemOutcome::Rejected { code, message } => {
                    counts.rejected += 1;
                    tracing::warn!(channel = %channel, sku = %sku, code = %code, message = %message, "channel refused the listing; isolating it");
                    {
                        let mut status = shared.status();
                        status.last_error = Some(format!("{sku}: {code}: {message}"));
                        status.last_error_at_ms = Some(shared.clock.now_ms());
                    }
                    pending.attempts += 1;
                    pending.isolated = true;
                    pending.not_before =
                        Some(now + jittered_backoff(&shared.config.retry, pending.attempts));
                    requeue.push((sku, pending));
                }
                // Submitted items are kept by `push` and never reach here; sent again at once
                // if one did.
                ItemOutcome::Deferred | ItemOutcome::Submitted { .. } => {
                    counts.deferred += 1;
                    requeue.push((sku, pending));
                }
                ItemOutcome::Retryable { .. } => {
                    counts.retried += 1;
                    if !throttled {
                        pending.attempts += 1;
                        // When the whole request failed, the channel-wide pause above
                        // spaces the retry; a backoff per item on top would let the items
                        // of one batch fall due at different times, so a backlog built up
                        // during an outage would go out one listing per request (and miss
                        // Amazon's feed). Only an item that failed on its own backs off.
                        if report.error.is_none() {
                            pending.not_before = Some(
                                now + jittered_backoff(&shared.config.retry, pending.attempts),
                            );
                        }
                    }
                    requeue.push((sku, pending));
                }
            }
        }
        let depth = {
            let mut queue = shared.queue();
            for (sku, pending) in requeue {
                queue.requeue(sku, pending);
            }
            shared.in_flight.store(0, Ordering::Release);
            queue.len()
        };
        shared.record_queue_depth(depth);
        counts.record(&channel);
        {
            let mut status = shared.status();
            status.accepted_total += counts.accepted;
            status.conflicts_total += counts.conflicts;
            status.rejected_total += counts.rejected;
            if counts.accepted > 0 {
                status.last_success_at_ms = Some(shared.clock.now_ms());
            }
        }
        if !acknowledged.is_empty()
            && let Err(error) = shared.store.record_pushed(&acknowledged).await
        {
            tracing::warn!(channel = %channel, error = %error, "cannot record pushed values; they stay in memory");
        }
    }
}

impl ChannelState {
    /// A conflict showed the channel at `current`, below the `expected` value: credits the
    /// units the ledger reserved since the hold's accounting point (or since our last
    /// acknowledged push) and holds the listing for the rest.
    fn lowered(&mut self, sku: &str, pending: &mut Pending, expected: i64, current: i64) {
        let shared = Arc::clone(&self.shared);
        let lowered_by = u64::try_from(expected.saturating_sub(current)).unwrap_or(0);
        let raises = i64::try_from(pending.atp).map_or(true, |atp| atp > current);
        let now_ms = shared.clock.now_ms();
        let (started, held) = {
            let mut holds = shared.holds();
            let base = match holds.get(sku) {
                Some(hold) => hold.base_reserved,
                None => self
                    .acked_reserved
                    .get(sku)
                    .copied()
                    .or(pending.first_reserved),
            };
            let credited = pending.reservations_since(base);
            let before = holds.get(sku).map_or(0, |hold| hold.view.unexplained);
            let unexplained = before.saturating_add(lowered_by).saturating_sub(credited);
            pending.reset_reservations();
            let started = if unexplained > 0 {
                let limit = shared.adapter.listing_count().max(1);
                if holds.contains_key(sku) || holds.len() < limit {
                    let hold = holds.entry(sku.to_owned()).or_insert_with(|| Hold {
                        view: HeldListing {
                            expected,
                            observed: current,
                            channel_value: current,
                            unexplained,
                            since_ms: now_ms,
                        },
                        base_reserved: pending.reserved,
                    });
                    hold.view.observed = current;
                    hold.view.channel_value = current;
                    hold.view.unexplained = unexplained;
                    hold.base_reserved = pending.reserved;
                    Some(hold.view.clone())
                } else {
                    None
                }
            } else {
                holds.remove(sku);
                None
            };
            (started, holds.len())
        };
        shared.record_held(held);
        if let Some(view) = started {
            if !raises {
                tracing::debug!(channel = %shared.id, sku = %sku, unexplained = view.unexplained, "our ATP is below the channel's value: pushed now, later increases wait");
            }
            tracing::debug!(channel = %shared.id, sku = %sku, unexplained = view.unexplained, channel_value = current, ours = pending.atp, "listing held: increases over the channel's own lowered value wait for the ledger");
            metrics::counter!(PROPAGATION_CAS_HOLDS_TOTAL, "channel" => shared.id.clone(), "outcome" => "held").increment(1);
            if let Some(listener) = &shared.listener {
                listener.channel_lowered(&shared.id, sku);
            }
            self.started_holds.push((sku.to_owned(), pending.atp, view));
        }
    }

    /// A conflict showed the channel at `current`, above the `expected` value: the channel
    /// put units back itself (Shopify's restock on an order edit, refund or cancel). Units
    /// it put back offset the units a hold is waiting for (a sale the channel made and then
    /// undid itself before its webhooks arrived is never reserved by the ledger, so it
    /// would never be explained); the hold ends when nothing is left unexplained.
    fn raised(&mut self, sku: &str, expected: i64, current: i64) {
        let shared = Arc::clone(&self.shared);
        let raised_by = u64::try_from(current.saturating_sub(expected)).unwrap_or(0);
        let (ended, held) = {
            let mut holds = shared.holds();
            let Some(hold) = holds.get_mut(sku) else {
                return;
            };
            hold.view.unexplained = hold.view.unexplained.saturating_sub(raised_by);
            hold.view.channel_value = current;
            let ended = hold.view.unexplained == 0;
            if ended {
                holds.remove(sku);
            }
            (ended, holds.len())
        };
        if ended {
            shared.record_held(held);
            tracing::debug!(channel = %shared.id, sku = %sku, channel_value = current, "the channel put the units back itself; hold ended");
            metrics::counter!(PROPAGATION_CAS_HOLDS_TOTAL, "channel" => shared.id.clone(), "outcome" => "explained").increment(1);
        }
    }

    /// After `pending` left the queue (acknowledged at `channel_value`, or unchanged):
    /// remembers its reserved units and credits the reservations since the hold's
    /// accounting point to the listing's hold, which ends once nothing is unexplained.
    fn account_hold(&mut self, sku: &str, pending: &Pending, channel_value: Option<i64>) {
        let shared = &self.shared;
        let (ended, held) = {
            let mut holds = shared.holds();
            // The point from which reservations explain a later conflict moves only when
            // the channel confirmed our value (an accepted push) or into a hold that took
            // the reservations into account. An entry that left the queue unchanged (a
            // receipt and the channel's own order netting out) confirmed nothing: moving
            // it there would count the order's reservation as already seen, and the next
            // conflict would hold the listing below the ATP for good.
            if (channel_value.is_some() || holds.contains_key(sku))
                && let Some(reserved) = pending.reserved
            {
                self.acked_reserved.insert(sku.to_owned(), reserved);
            }
            let Some(hold) = holds.get_mut(sku) else {
                return;
            };
            let credited = pending.reservations_since(hold.base_reserved);
            hold.view.unexplained = hold.view.unexplained.saturating_sub(credited);
            hold.base_reserved = pending.reserved.or(hold.base_reserved);
            if let Some(value) = channel_value {
                hold.view.channel_value = value;
            }
            let ended = hold.view.unexplained == 0;
            if ended {
                holds.remove(sku);
            }
            (ended, holds.len())
        };
        if ended {
            shared.record_held(held);
            tracing::debug!(channel = %shared.id, sku = %sku, atp = pending.atp, "the ledger explained the channel's own decrease; hold ended");
            metrics::counter!(PROPAGATION_CAS_HOLDS_TOTAL, "channel" => shared.id.clone(), "outcome" => "explained").increment(1);
        }
    }
}

/// The push-log entry of a decision that made no request: a listing held after a conflict.
fn hold_record(
    channel: &str,
    sku: String,
    quantity: u64,
    hold: &HeldListing,
    at_ms: i64,
) -> PushLogRecord {
    PushLogRecord {
        channel: channel.to_owned(),
        sku,
        quantity,
        change_from: Some(hold.channel_value),
        outcome: "held".to_owned(),
        detail: Some(format!(
            "channel lowered {} to {} itself; {} unit(s) not yet in the ledger, so increases over {} wait",
            hold.expected, hold.observed, hold.unexplained, hold.channel_value
        )),
        requests: 0,
        at_ms,
    }
}

/// The push-log entries of one push: one per listing per HTTP request, each with what that
/// request did. A compare-and-set conflict is two requests: the mutation that was refused
/// (`conflict`) and the read of the channel's value (`read`); a later request that writes
/// our value is its own entry (`accepted`). `requests` on an entry is the number of HTTP
/// requests it stands for.
fn push_log_records(
    channel: &str,
    request: &[PushItem],
    report: &PushReport,
    at_ms: i64,
) -> Vec<PushLogRecord> {
    let outcomes: HashMap<&str, &ItemOutcome> = report
        .results
        .iter()
        .map(|result| (result.sku.as_str(), &result.outcome))
        .collect();
    let writes = report.requests.saturating_sub(report.reads);
    let mut records = Vec::with_capacity(request.len());
    for item in request {
        let entry = |outcome: &str, detail: Option<String>| PushLogRecord {
            channel: channel.to_owned(),
            sku: item.sku.clone(),
            quantity: item.quantity,
            change_from: item.change_from,
            outcome: outcome.to_owned(),
            detail,
            requests: writes,
            at_ms,
        };
        match outcomes.get(item.sku.as_str()) {
            Some(ItemOutcome::Accepted { .. }) => records.push(entry("accepted", None)),
            Some(ItemOutcome::Conflict { current }) => {
                records.push(entry(
                    "conflict",
                    Some(match item.change_from {
                        Some(expected) => format!(
                            "not written: the channel no longer holds {expected} (changeFromQuantity stale)"
                        ),
                        None => "not written: the channel refused the compare-and-set".to_owned(),
                    }),
                ));
                if report.reads > 0 {
                    records.push(PushLogRecord {
                        channel: channel.to_owned(),
                        sku: item.sku.clone(),
                        quantity: current.map_or(0, |value| u64::try_from(value).unwrap_or(0)),
                        change_from: None,
                        outcome: "read".to_owned(),
                        detail: Some(match current {
                            Some(value) => format!("read back: the channel holds {value}"),
                            None => "read back failed: channel value unknown".to_owned(),
                        }),
                        requests: report.reads,
                        at_ms,
                    });
                }
            }
            Some(ItemOutcome::Rejected { code, message }) => {
                records.push(entry("rejected", Some(format!("{code}: {message}"))));
            }
            Some(ItemOutcome::Deferred) => records.push(entry("deferred", None)),
            Some(ItemOutcome::Submitted { token, .. }) => records.push(entry(
                "submitted",
                Some(format!(
                    "processed asynchronously as {token}; result checked later"
                )),
            )),
            Some(ItemOutcome::Retryable { reason }) => {
                records.push(entry("error", Some(reason.clone())));
            }
            None => records.push(entry(
                "error",
                report.error.as_ref().map(|error| error.to_string()),
            )),
        }
    }
    records
}

/// Outcomes of one push, counted once per batch.
#[derive(Default)]
struct OutcomeCounts {
    accepted: u64,
    conflicts: u64,
    rejected: u64,
    deferred: u64,
    retried: u64,
}

impl OutcomeCounts {
    fn record(&self, channel: &str) {
        for (outcome, count) in [
            ("accepted", self.accepted),
            ("conflict", self.conflicts),
            ("rejected", self.rejected),
            ("deferred", self.deferred),
            ("retry", self.retried),
        ] {
            if count > 0 {
                metrics::counter!(telemetry::PROPAGATION_PUSHES_TOTAL, "channel" => channel.to_owned(), "outcome" => outcome)
                    .increment(count);
            }
        }
        if self.conflicts > 0 {
            metrics::counter!(telemetry::CHANNEL_CAS_CONFLICTS_TOTAL, "channel" => channel.to_owned()).increment(self.conflicts);
        }
        if self.rejected > 0 {
            metrics::counter!(telemetry::CHANNEL_ERRORS_TOTAL, "channel" => channel.to_owned(), "error" => "rejected")
                .increment(self.rejected);
        }
    }
}
