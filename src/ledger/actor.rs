//! The SKU actor: the single writer of one SKU's state.
//!
//! It loads the SKU in `pre_start` (snapshot, later events, unexpired idempotency keys),
//! then handles messages one at a time: duplicates are answered once the original is
//! durable, new movements are applied to the pure [`SkuState`] and handed to the committer,
//! which answers the caller after the durable write.

use super::committer::CommitRequest;
use super::{Ack, LedgerError, Shared};
use crate::domain::{Movement, Sku, SkuState};
use crate::store::{EventRecord, HoldExpiryRecord, OffsetWatermark, SnapshotRecord};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::oneshot;

/// Counters shared between a registry slot and its actor.
#[derive(Debug, Default)]
pub(crate) struct SlotCounters {
    /// Messages sent to the actor (incremented under the registry entry's lock).
    pub(crate) sent: AtomicU64,
    /// Last time the actor handled a movement or read, in milliseconds since the epoch.
    pub(crate) last_activity_ms: AtomicI64,
}

/// A registry entry: the live actor of one SKU and its counters.
pub(crate) struct SkuSlot {
    pub(crate) actor: ActorRef<SkuMessage>,
    pub(crate) counters: Arc<SlotCounters>,
}

impl SkuSlot {
    pub(crate) fn last_activity_ms(&self) -> i64 {
        self.counters.last_activity_ms.load(Ordering::Relaxed)
    }
}

/// Messages a SKU actor handles.
pub(crate) enum SkuMessage {
    /// Apply a movement; answer on `reply` once durable.
    Apply {
        movement: Box<Movement>,
        origin: Option<OffsetWatermark>,
        reply: oneshot::Sender<Result<Ack, LedgerError>>,
    },
    /// Answer with a copy of the current state.
    Read {
        reply: oneshot::Sender<Result<SkuState, LedgerError>>,
    },
    /// Stop if idle (or `force`), nothing is in flight, and nothing more was sent.
    Passivate { force: bool },
    /// Release every hold whose TTL has passed (sent by the reaper, `super::reaper`).
    Reap,
}

impl SkuMessage {
    /// Answers the caller with `error` (used when the message cannot be delivered).
    pub(crate) fn fail(self, error: LedgerError) {
        match self {
            SkuMessage::Apply { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            SkuMessage::Read { reply } => {
                let _ = reply.send(Err(error));
            }
            SkuMessage::Passivate { .. } | SkuMessage::Reap => {}
        }
    }
}

/// The actor behaviour (stateless; the state lives in [`SkuActorState`]).
pub(crate) struct SkuActor {
    pub(crate) shared: Weak<Shared>,
}

/// Startup arguments: which SKU and the counters shared with the registry slot.
pub(crate) struct SkuActorArgs {
    pub(crate) sku: Sku,
    pub(crate) counters: Arc<SlotCounters>,
}

pub(crate) struct SkuActorState {
    state: SkuState,
    /// Idempotency key → seq that recorded it.
    keys: HashMap<String, u64>,
    /// Highest seq known durable (raised by the committer).
    durable_seq: Arc<AtomicU64>,
    counters: Arc<SlotCounters>,
    processed: u64,
    events_since_snapshot: u64,
    /// Earliest expiry among open holds with a TTL, as last reported to the reaper.
    next_hold_expiry_ms: Option<i64>,
}

impl SkuActor {
    fn shared(&self) -> Result<Arc<Shared>, ActorProcessingErr> {
        self.shared
            .upgrade()
            .ok_or_else(|| ActorProcessingErr::from("ledger has shut down"))
    }
}

/// Rebuilds a SKU's state from its snapshot and later events.
pub(crate) fn replay(
    sku: &Sku,
    loaded: &crate::store::LoadedSku,
    closed_line_retention_ms: i64,
) -> Result<SkuState, crate::store::StoreError> {
    let context = crate::domain::ApplyContext {
        closed_line_retention_ms,
        ..crate::domain::ApplyContext::replay()
    };
    let corrupt = |message: String| crate::store::StoreError::Corrupt {
        sku: sku.to_string(),
        message,
    };
    let mut state = match &loaded.snapshot {
        Some(snapshot) => snapshot.state()?,
        None => SkuState::new(sku.clone()),
    };
    for event in &loaded.events_after {
        let movement: Movement = event.movement()?;
        if event.seq != state.seq + 1 {
            return Err(corrupt(format!(
                "gap in event log: state at {} but next event is {}",
                state.seq, event.seq
            )));
        }
        state
            .apply_with(&movement, event.seq, &context)
            .map_err(|e| corrupt(format!("event {} no longer applies: {e}", event.seq)))?;
    }
    Ok(state)
}

impl Actor for SkuActor {
    type Msg = SkuMessage;
    type State = SkuActorState;
    type Arguments = SkuActorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SkuActorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let shared = self.shared()?;
        let loaded = shared
            .store
            .load_sku(args.sku.as_str(), shared.now_ms())
            .await?;
        let retention_ms = shared.options.rules.get().stock.retention_ms();
        let state = replay(&args.sku, &loaded, retention_ms)?;
        let keys = loaded.idempotency_keys.into_iter().collect();
        args.counters
            .last_activity_ms
            .store(shared.now_ms(), Ordering::Relaxed);
        let next_hold_expiry_ms = state.next_expiry_ms();
        if next_hold_expiry_ms.is_some() {
            shared.reaper.set(&args.sku, next_hold_expiry_ms);
        }
        Ok(SkuActorState {
            next_hold_expiry_ms,
            durable_seq: Arc::new(AtomicU64::new(state.seq)),
            state,
            keys,
            counters: args.counters,
            processed: 0,
            events_since_snapshot: loaded.events_after.len() as u64,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        actor.processed += 1;
        let Some(shared) = self.shared.upgrade() else {
            message.fail(LedgerError::Unavailable("ledger has shut down".to_owned()));
            myself.stop(None);
            return Ok(());
        };
        match message {
            SkuMessage::Apply {
                movement,
                origin,
                reply,
            } => {
                actor.touch(shared.now_ms());
                apply(&shared, actor, *movement, origin, reply).await;
            }
            SkuMessage::Read { reply } => {
                actor.touch(shared.now_ms());
                let _ = reply.send(Ok(actor.state.clone()));
            }
            SkuMessage::Reap => reap(&shared, actor).await,
            SkuMessage::Passivate { force } => {
                let idle_ms = shared.options.idle_passivate_secs.saturating_mul(1000) as i64;
                let idle = shared.now_ms()
                    - actor.counters.last_activity_ms.load(Ordering::Relaxed)
                    >= idle_ms;
                let durable = actor.durable_seq.load(Ordering::Acquire) >= actor.state.seq;
                if (force || idle) && durable {
                    let me = myself.get_id();
                    let processed = actor.processed;
                    let removed = shared
                        .registry
                        .remove_if(&actor.state.sku, |_, slot| {
                            slot.actor.get_id() == me
                                && slot.counters.sent.load(Ordering::Acquire) == processed
                        })
                        .is_some();
                    if removed {
                        shared.live_actors.fetch_sub(1, Ordering::Relaxed);
                        metrics::gauge!(crate::telemetry::LEDGER_LIVE_SKU_ACTORS)
                            .set(shared.live_actors.load(Ordering::Relaxed) as f64);
                        metrics::counter!(crate::telemetry::LEDGER_PASSIVATIONS_TOTAL).increment(1);
                        myself.stop(None);
                    }
                }
            }
        }
        Ok(())
    }
}

impl SkuActorState {
    fn touch(&self, now_ms: i64) {
        self.counters
            .last_activity_ms
            .store(now_ms, Ordering::Relaxed);
    }
}

async fn apply(
    shared: &Shared,
    actor: &mut SkuActorState,
    mut movement: Movement,
    origin: Option<OffsetWatermark>,
    reply: oneshot::Sender<Result<Ack, LedgerError>>,
) {
    if let Some(&seq) = actor.keys.get(&movement.idempotency_key) {
        metrics::counter!(crate::telemetry::LEDGER_DEDUPE_HITS_TOTAL, "source" => movement.source.clone())
            .increment(1);
        // Answer after the original is durable (it may still be in the committer's queue);
        // the offset is still recorded so a redelivered partition moves on.
        let request = CommitRequest::wait(Ack::Duplicate { seq }, origin, reply);
        shared.committer.send(request).await;
        return;
    }
    let seq = actor.state.seq + 1;
    let touches_hold = super::reaper::touches_ttl_hold(&actor.state, &movement.kind);
    let now = shared.now_ms();
    let rules = shared.options.rules.get();
    let context = rules.stock.context(&actor.state.sku, now);
    let applied = match actor.state.apply_with(&movement, seq, &context) {
        Ok(applied) => applied,
        Err(error) => {
            metrics::counter!(crate::telemetry::LEDGER_REJECTED_TOTAL, "reason" => rejection_reason(&error))
                .increment(1);
            let _ = reply.send(Err(LedgerError::Rejected(error)));
            return;
        }
    };
    // Record the decisions, so replay never re-decides: the time used and the location a
    // hold or sale was routed to.
    movement.occurred_at_ms.get_or_insert(now);
    if let Some(split) = applied.split_across.clone() {
        record_split(&mut movement.kind, split);
    } else if let Some(routed) = applied.routed_to.clone() {
        record_route(&mut movement.kind, routed);
    }
    let ttl_ms = shared.options.idempotency_ttl_secs.saturating_mul(1000) as i64;
    let encoded = crate::store::codec::encode_movement(&movement);
    actor.keys.insert(movement.idempotency_key.clone(), seq);
    actor.events_since_snapshot += 1;
    let snapshot =
        (actor.events_since_snapshot >= shared.options.snapshot_every_events).then(|| {
            actor.events_since_snapshot = 0;
            SnapshotRecord {
                sku: actor.state.sku.0.clone(),
                seq,
                state: crate::store::codec::encode_state(&actor.state),
            }
        });
    let hold_expiry = touches_hold
        .then(|| actor.state.next_expiry_ms())
        .filter(|next| *next != actor.next_hold_expiry_ms)
        .map(|next| {
            actor.next_hold_expiry_ms = next;
            shared.reaper.set(&actor.state.sku, next);
            HoldExpiryRecord {
                sku: actor.state.sku.0.clone(),
                next_expiry_ms: next,
            }
        });
    let request = CommitRequest {
        hold_expiry,
        reservation: None,
        event: Some(EventRecord {
            sku: actor.state.sku.0.clone(),
            seq,
            idempotency_key: movement.idempotency_key,
            key_expires_at_ms: now.saturating_add(ttl_ms),
            recorded_at_ms: now,
            movement: encoded,
        }),
        snapshot,
        origin,
        reply: Some(reply),
        ack: Ack::Applied { seq },
        durable: Some((actor.durable_seq.clone(), seq)),
        availability: applied.levels_changed.then(|| actor.state.availability()),
        source: movement.source,
        kind: movement.kind.name(),
        oversold: applied.oversold,
    };
    shared.committer.send(request).await;
}

fn record_route(kind: &mut crate::domain::MovementKind, routed: crate::domain::LocationId) {
    use crate::domain::MovementKind;
    if let MovementKind::Sale { location, .. } | MovementKind::Reservation { location, .. } = kind {
        *location = Some(routed);
    }
}

/// Releases every lapsed hold (`Cancellation { reason: "expired" }`, see `super::reaper`) and
/// reports the SKU's next expiry to the reaper.
async fn reap(shared: &Shared, actor: &mut SkuActorState) {
    let mut acks = Vec::new();
    let now_ms = shared.now_ms();
    for (reservation, _) in actor.state.expired_reservations(now_ms) {
        let movement = super::reaper::expiry_movement(&actor.state.sku, reservation, now_ms);
        let (reply, receiver) = oneshot::channel();
        apply(shared, actor, movement, None, reply).await;
        acks.push(receiver);
    }
    actor.next_hold_expiry_ms = actor.state.next_expiry_ms();
    shared
        .reaper
        .set(&actor.state.sku, actor.next_hold_expiry_ms);
    if !acks.is_empty() {
        tokio::spawn(super::reaper::count_expired(actor.state.sku.clone(), acks));
    }
}

/// A split line is recorded with no location and exactly the locations it was split
/// across as its route: replay re-makes the same split from the same state.
fn record_split(kind: &mut crate::domain::MovementKind, split: Vec<crate::domain::LocationId>) {
    use crate::domain::MovementKind;
    if let MovementKind::Sale {
        location, route, ..
    }
    | MovementKind::Reservation {
        location, route, ..
    } = kind
    {
        *location = None;
        *route = split;
    }
}

fn rejection_reason(error: &crate::domain::ApplyError) -> &'static str {
    use crate::domain::ApplyError;
    match error {
        ApplyError::InsufficientStock { .. } => "insufficient_stock",
        ApplyError::UnknownReservation { .. } => "unknown_reservation",
        ApplyError::OverFulfilment { .. } => "over_fulfilment",
        ApplyError::Invalid(_) => "invalid",
        ApplyError::WrongSku { .. } => "wrong_sku",
        ApplyError::UnknownTransfer { .. } => "unknown_transfer",
        ApplyError::OverReceipt { .. } => "over_receipt",
        ApplyError::UnknownPurchaseOrder { .. } => "unknown_purchase_order",
        ApplyError::DuplicateTransfer { .. } => "duplicate_transfer",
    }
}
