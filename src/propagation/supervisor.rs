//! The supervisor of one channel's actor: spawns it linked, and when it fails (a panic in
//! its handler, or an error) logs it, counts it (`stocksync_actor_restarts_total{actor =
//! "propagator"}`), and starts a fresh actor after a backoff, with what the channel holds
//! reloaded from the store and its queue rebuilt from the ledger through the
//! [`QueueRebuilder`] (every listing's ATP re-derived, as at startup).
//!
//! The queue itself lives in [`ChannelShared`] and survives the failure; what the failed
//! actor had taken out of it (the batch being pushed, submissions in flight) is what the
//! rebuild restores. A clean stop (shutdown) is not restarted.
//!
//! The same reload-and-rebuild runs when this instance becomes a channel's leader (several
//! instances, see `Propagation::channel_gained`); the [`QueueRebuilder`] serves both.

use super::actor::{ChannelActor, ChannelArgs};
use super::{ChannelShared, PropagationError};
use crate::telemetry;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// The first pause before a restart, in milliseconds; it doubles with every failure in a
/// row, up to [`RESTART_BACKOFF_MAX_MS`].
pub(crate) const RESTART_BACKOFF_MS: u64 = 100;
/// The longest pause before a restart, in milliseconds.
const RESTART_BACKOFF_MAX_MS: u64 = 30_000;
/// An actor that ran this long before failing starts the backoff afresh, in milliseconds.
const HEALTHY_RUN_MS: u64 = 60_000;

/// Re-derives every listing's ATP for one channel from the ledger and publishes it into
/// that channel's queue ([`super::Propagation::publish_to`]). The app provides it (the
/// ledger is upstream of propagation); called from the supervisor, so it must not block
/// (spawn the work).
pub trait QueueRebuilder: Send + Sync + 'static {
    /// Rebuilds `channel`'s queue.
    fn rebuild(&self, channel: &str);
}

/// Messages of the supervisor.
#[derive(Debug)]
pub(crate) enum SupervisorMessage {
    /// Start a fresh channel actor (after a failure's backoff).
    Restart,
}

/// The supervisor's state.
pub(crate) struct SupervisorState {
    shared: Arc<ChannelShared>,
    /// Failures in a row (reset by a run longer than [`HEALTHY_RUN_MS`]).
    failures: u32,
    /// When the current actor started.
    started_at: Instant,
}

/// Supervises one channel actor.
pub(crate) struct ChannelSupervisor;

impl ChannelSupervisor {
    /// Spawns the channel actor linked to `myself` with `believed` values and publishes its
    /// reference in `shared`.
    async fn spawn_child(
        myself: &ActorRef<SupervisorMessage>,
        shared: &Arc<ChannelShared>,
        believed: HashMap<String, i64>,
    ) -> Result<(), PropagationError> {
        let args = ChannelArgs {
            shared: Arc::clone(shared),
            believed,
        };
        let (actor, _handle) = Actor::spawn_linked(None, ChannelActor, args, myself.get_cell())
            .await
            .map_err(|error| PropagationError::Spawn {
                channel: shared.id.clone(),
                message: error.to_string(),
            })?;
        shared.set_actor(Some(actor));
        Ok(())
    }
}

impl Actor for ChannelSupervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = (Arc<ChannelShared>, HashMap<String, i64>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (shared, believed): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Self::spawn_child(&myself, &shared, believed).await?;
        Ok(SupervisorState {
            shared,
            failures: 0,
            started_at: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::Restart => {
                let shared = Arc::clone(&state.shared);
                let believed = match shared.load_believed().await {
                    Ok(believed) => believed,
                    Err(error) => {
                        tracing::warn!(channel = %shared.id, error = %error, "cannot reload pushed values; restarting with none");
                        HashMap::new()
                    }
                };
                shared.in_flight.store(0, Ordering::Release);
                shared.submitted.store(0, Ordering::Release);
                shared
                    .in_flight_values
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
                shared.wake_queued.store(false, Ordering::Release);
                Self::spawn_child(&myself, &shared, believed).await?;
                state.started_at = Instant::now();
                tracing::info!(channel = %shared.id, "channel actor restarted; rebuilding its queue from the ledger");
                if let Some(rebuilder) = shared.rebuilder.get() {
                    rebuilder.rebuild(&shared.id);
                }
                shared.wake();
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(_, error) = event else {
            return Ok(());
        };
        let shared = &state.shared;
        shared.set_actor(None);
        if state.started_at.elapsed() >= Duration::from_millis(HEALTHY_RUN_MS) {
            state.failures = 0;
        }
        state.failures = state.failures.saturating_add(1);
        let backoff_ms = RESTART_BACKOFF_MS
            .saturating_mul(1u64 << state.failures.saturating_sub(1).min(20))
            .min(RESTART_BACKOFF_MAX_MS);
        tracing::error!(channel = %shared.id, error = %error, failures = state.failures, backoff_ms, "channel actor failed; restarting it");
        metrics::counter!(telemetry::ACTOR_RESTARTS_TOTAL, "actor" => "propagator").increment(1);
        shared.status().restarts_total += 1;
        // The timer task is detached; a `Restart` to a stopped supervisor is dropped.
        drop(myself.send_after(Duration::from_millis(backoff_ms), || {
            SupervisorMessage::Restart
        }));
        Ok(())
    }
}
