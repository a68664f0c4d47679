//! Supervision of the shard actors, and the poison watch.
//!
//! Owns: the table of running shard actors ([`ShardSlots`], read on every submit), the
//! supervisor actor every shard is linked to, and [`PoisonWatch`] (which movement each
//! shard is applying, and how many shard deaths each movement caused).
//!
//! A shard that panics (ractor catches the panic and reports `ActorFailed` to its
//! supervisor; the shard's state is dropped without `post_stop`) is handled here:
//! 1. logged and counted (`stocksync_actor_restarts_total{actor="shard"}`);
//! 2. its SKUs leave the live gauge (`Core::shard_live` knows how many it had);
//! 3. the movement it was applying, if any, gets one more death in [`PoisonWatch`]; from
//!    [`POISON_DEATHS`] deaths on, the shard refuses it (`LedgerError::Rejected`), so one
//!    bad movement cannot kill a shard forever while its producer retries;
//! 4. once everything the dead shard handed to the committer is durable (a committer
//!    flush; while the store is down this waits), a new shard starts in its slot with
//!    tickets after the durable one, and its SKUs reload from the store on demand.
//!
//! Messages sent to the dead shard before the new one is in its slot are answered
//! `LedgerError::Unavailable` (callers retry); messages it held died with it and their
//! callers see `Unavailable` too (a dropped answer channel). Nothing acknowledged is lost:
//! acknowledgements are only given for durable events.
//!
//! May depend on: `super` (core, shard actor, committer), `telemetry`.

use super::Core;
use super::actor::{ShardActor, ShardArgs, ShardMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// A movement that was being applied when its shard died this many times is refused.
pub(crate) const POISON_DEATHS: u32 = 2;

/// Most movements whose shard deaths are remembered; when full the memory is cleared (a
/// poison movement then gets [`POISON_DEATHS`] more tries).
const MAX_POISON_SUSPECTS: usize = 1_024;

/// The running actor of every shard, by index.
pub(crate) struct ShardSlots(Box<[RwLock<ActorRef<ShardMessage>>]>);

impl ShardSlots {
    /// How many shards there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The running actor of shard `index`.
    pub(crate) fn get(&self, index: usize) -> ActorRef<ShardMessage> {
        self.0[index]
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every shard's running actor, by index.
    pub(crate) fn all(&self) -> Vec<ActorRef<ShardMessage>> {
        (0..self.len()).map(|index| self.get(index)).collect()
    }

    fn set(&self, index: usize, actor: ActorRef<ShardMessage>) {
        *self.0[index].write().unwrap_or_else(|e| e.into_inner()) = actor;
    }

    fn index_of(&self, id: ractor::ActorId) -> Option<usize> {
        (0..self.len()).find(|&index| self.get(index).get_id() == id)
    }
}

/// Which movement each shard is applying, and the shard deaths each movement caused.
pub(crate) struct PoisonWatch {
    /// Per shard, the fingerprint of the movement being applied (0: none).
    applying: Box<[AtomicU64]>,
    /// Shard deaths by movement fingerprint.
    deaths: Mutex<HashMap<u64, u32>>,
    /// Whether any movement reached [`POISON_DEATHS`] (keeps the hot path to one load).
    any_refused: AtomicBool,
}

impl PoisonWatch {
    /// A watch over `shards` shards, with no suspect.
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            applying: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            deaths: Mutex::new(HashMap::new()),
            any_refused: AtomicBool::new(false),
        }
    }

    /// The fingerprint of the movement with idempotency key `key` on `sku` (never 0).
    pub(crate) fn fingerprint(sku: &str, key: &str) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        sku.hash(&mut hasher);
        key.hash(&mut hasher);
        hasher.finish().max(1)
    }

    /// Shard `shard` starts applying the movement `fingerprint`.
    pub(crate) fn applying(&self, shard: usize, fingerprint: u64) {
        self.applying[shard].store(fingerprint, Ordering::Relaxed);
    }

    /// Shard `shard` finished applying its movement.
    pub(crate) fn done(&self, shard: usize) {
        self.applying[shard].store(0, Ordering::Relaxed);
    }

    /// Whether the movement `fingerprint` killed shards [`POISON_DEATHS`] times.
    pub(crate) fn refused(&self, fingerprint: u64) -> bool {
        self.any_refused.load(Ordering::Relaxed)
            && self
                .deaths
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&fingerprint)
                .is_some_and(|deaths| *deaths >= POISON_DEATHS)
    }

    /// Shard `shard` died: counts a death for the movement it was applying, if any, and
    /// returns that movement's deaths so far.
    fn died(&self, shard: usize) -> Option<u32> {
        let fingerprint = self.applying[shard].swap(0, Ordering::Relaxed);
        if fingerprint == 0 {
            return None;
        }
        let mut deaths = self.deaths.lock().unwrap_or_else(|e| e.into_inner());
        if deaths.len() >= MAX_POISON_SUSPECTS && !deaths.contains_key(&fingerprint) {
            deaths.clear();
        }
        let count = deaths.entry(fingerprint).or_default();
        *count = count.saturating_add(1);
        if *count >= POISON_DEATHS {
            self.any_refused.store(true, Ordering::Relaxed);
        }
        Some(*count)
    }
}

/// Starts the supervisor and `count` shards linked to it; returns the shard table and the
/// supervisor (stop it before the shards so that it restarts nothing).
pub(crate) fn start(core: Arc<Core>, count: usize) -> (Arc<ShardSlots>, ractor::ActorRef<()>) {
    let slots_cell: Arc<OnceLock<Arc<ShardSlots>>> = Arc::default();
    let (supervisor, _join) = ractor::ActorRuntime::spawn_instant(
        None,
        Supervisor,
        SupervisorState {
            core: core.clone(),
            slots: slots_cell.clone(),
        },
    )
    .expect("unnamed actors cannot clash");
    let shards: Box<[RwLock<ActorRef<ShardMessage>>]> = (0..count)
        .map(|index| {
            let args = ShardArgs {
                core: core.clone(),
                index,
                first_ticket: 1,
            };
            let (actor, _join) = ractor::ActorRuntime::spawn_linked_instant(
                None,
                ShardActor,
                args,
                supervisor.get_cell(),
            )
            .expect("unnamed actors cannot clash");
            RwLock::new(actor)
        })
        .collect();
    let slots = Arc::new(ShardSlots(shards));
    let _ = slots_cell.set(slots.clone());
    (slots, supervisor)
}

/// The supervisor's behaviour (its state is [`SupervisorState`]).
struct Supervisor;

/// What the supervisor needs to restart a shard.
struct SupervisorState {
    core: Arc<Core>,
    /// Set right after the shards are spawned.
    slots: Arc<OnceLock<Arc<ShardSlots>>>,
}

impl Actor for Supervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = SupervisorState;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        state: SupervisorState,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // A shard stopped on purpose (the ledger is going) is not restarted.
        let SupervisionEvent::ActorFailed(cell, reason) = event else {
            return Ok(());
        };
        let Some(slots) = state.slots.get() else {
            return Ok(());
        };
        let Some(index) = slots.index_of(cell.get_id()) else {
            return Ok(());
        };
        let core = &state.core;
        let lost = core.shard_live[index].swap(0, Ordering::Relaxed);
        core.live_skus.fetch_sub(lost, Ordering::Relaxed);
        core.publish_live_gauge();
        let deaths = core.poison.died(index);
        metrics::counter!(crate::telemetry::ACTOR_RESTARTS_TOTAL, "actor" => "shard").increment(1);
        tracing::error!(
            shard = index,
            reason = %reason,
            dropped_skus = lost,
            poison_deaths = deaths,
            "ledger shard failed; restarting it (its SKUs reload from the store)"
        );
        // Whatever the dead shard handed to the committer must be durable before any of
        // its SKUs is loaded again (else a reload could miss an event being written).
        core.committer.flush().await;
        let first_ticket = core.durable_tickets[index]
            .load(Ordering::Acquire)
            .saturating_add(1);
        let args = ShardArgs {
            core: core.clone(),
            index,
            first_ticket,
        };
        match ShardActor::spawn_linked(None, ShardActor, args, myself.get_cell()).await {
            Ok((actor, _join)) => slots.set(index, actor),
            Err(error) => {
                tracing::error!(shard = index, error = %error, "cannot restart ledger shard; its SKUs stay unavailable");
            }
        }
        Ok(())
    }
}
