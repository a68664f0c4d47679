//! The hold reaper: releases holds whose TTL has passed (scenario S5), also for SKUs whose
//! actor is passivated and after a restart.
//!
//! Owns: the expiry [`Schedule`] (the earliest open-hold expiry of every SKU that has one,
//! in memory) and the reaper task that wakes each SKU's actor when its earliest hold lapses.
//!
//! How a hold is released:
//! 1. When a movement changes a SKU's earliest TTL-hold expiry, the SKU actor reports the new
//!    value to the [`Schedule`] and writes it to the store's `hold_expiries` in the same group
//!    commit as the event. Only movements that touch a hold with a TTL do this
//!    ([`touches_ttl_hold`]), so the hot path (sales, receipts, holds without TTL) pays one map
//!    lookup and writes nothing extra.
//! 2. The reaper task sleeps until the earliest expiry in the schedule, then sends a `Reap`
//!    message to each due SKU's shard, which loads a passivated SKU on demand. SKUs may
//!    therefore passivate while they hold TTL reservations: the schedule costs a few dozen
//!    bytes per SKU.
//! 3. The shard applies `Cancellation { reason: "expired" }` for every lapsed hold with the
//!    deterministic idempotency key `expired:{reservation}` ([`expiry_movement`]), so a reap
//!    repeated after a crash is harmless, and reports its next expiry. Each expiry that was
//!    applied (not a duplicate) counts in `stocksync_ledger_reservations_expired_total` once
//!    durable.
//! 4. At start the task reads every SKU's row of `hold_expiries` ([`crate::store::Store::hold_expiries`])
//!    into the schedule, so holds made before a restart (or that lapsed while the process was
//!    down) are released at their expiry, or at once.
//!
//! Parked movements (issue 9 §2b) expire on the same schedule, so an idle SKU's waiting
//! movements reach the dead-letter store without another movement of that SKU: a SKU's
//! scheduled time (and its `hold_expiries` row) is the earlier of its next hold expiry and
//! the moment its oldest parked movement passes `[ledger] parked_ttl_secs`
//! ([`next_wake_ms`]). When that moment comes the shard applies a no-op movement
//! ([`parked_expiry_movement`]: a `count` without a figure, source `reaper`, key
//! `parked-expired:{seq of the oldest parked}`), and the state machine expires the parked
//! movements at that recorded event, as replay does too. Only movements that park, unpark or
//! expire a parked movement recompute the time (one branch on the hot path).
//!
//! A SKU that is due is rescheduled [`RETRY_MS`] later when it is woken, so a wake that fails
//! (store unavailable) is retried; the actor's report replaces that guess with the truth.
//!
//! May depend on: `domain`, `store`, `telemetry`, the ledger's shards.

use super::actor::ShardMessage;
use super::{Ack, LedgerError, Shared};
use crate::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku, SkuState};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// A woken SKU is rescheduled this much later until its actor reports its next expiry.
pub(crate) const RETRY_MS: i64 = 5_000;

/// The longest the reaper sleeps between checks, in milliseconds (it also notices the ledger
/// has shut down at this pace).
const MAX_SLEEP_MS: i64 = 1_000;

/// SKUs read per page from the store's `hold_expiries` at start.
const SCAN_PAGE: usize = 1_000;

/// The source of the movements the reaper applies (a bounded metric label).
pub(crate) const REAPER_SOURCE: &str = "reaper";

/// The earliest open-hold expiry of every SKU that has one (milliseconds since the epoch).
#[derive(Default)]
pub(crate) struct Schedule {
    inner: Mutex<ScheduleInner>,
    wake: Notify,
}

#[derive(Default)]
struct ScheduleInner {
    by_sku: HashMap<Sku, i64>,
    queue: BTreeSet<(i64, Sku)>,
}

impl Schedule {
    /// Records `sku`'s earliest open-hold expiry (`None`: it has none) and wakes the reaper
    /// when this moves the earliest expiry of all forward.
    pub(crate) fn set(&self, sku: &Sku, next_expiry_ms: Option<i64>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.by_sku.remove(sku) {
            inner.queue.remove(&(old, sku.clone()));
        }
        let Some(at_ms) = next_expiry_ms else { return };
        let earliest = inner.queue.first().is_none_or(|(first, _)| at_ms < *first);
        inner.by_sku.insert(sku.clone(), at_ms);
        inner.queue.insert((at_ms, sku.clone()));
        drop(inner);
        if earliest {
            self.wake.notify_one();
        }
    }

    /// SKUs whose expiry is at or before `now_ms`; each is rescheduled at `now_ms + RETRY_MS`.
    fn take_due(&self, now_ms: i64) -> Vec<Sku> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        while let Some((at_ms, _)) = inner.queue.first() {
            if *at_ms > now_ms {
                break;
            }
            let (_, sku) = inner.queue.pop_first().expect("checked non-empty");
            due.push(sku);
        }
        for sku in &due {
            let retry_at = now_ms.saturating_add(RETRY_MS);
            inner.by_sku.insert(sku.clone(), retry_at);
            inner.queue.insert((retry_at, sku.clone()));
        }
        due
    }

    /// The earliest scheduled expiry, if any.
    fn next_ms(&self) -> Option<i64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.queue.first().map(|(at_ms, _)| *at_ms)
    }

    /// SKUs currently scheduled (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_sku
            .len()
    }
}

/// Whether applying `kind` to `state` may change the SKU's earliest TTL-hold expiry: a hold
/// with a TTL, or a movement naming a reservation that has one. One map lookup at most.
pub(crate) fn touches_ttl_hold(state: &SkuState, kind: &MovementKind) -> bool {
    let named = match kind {
        MovementKind::Reservation { expires_at_ms, .. } => return expires_at_ms.is_some(),
        MovementKind::Cancellation { reservation, .. }
        | MovementKind::Fulfilment { reservation, .. }
        | MovementKind::Sale { reservation, .. }
        | MovementKind::Return {
            reservation: Some(reservation),
            ..
        } => reservation,
        _ => return false,
    };
    state
        .reservations
        .get(named)
        .is_some_and(|line| line.expires_at_ms.is_some())
}

/// The cancellation that releases lapsed hold `reservation` of `sku`, with a deterministic
/// idempotency key (`expired:{reservation}`).
pub(crate) fn expiry_movement(sku: &Sku, reservation: String, now_ms: i64) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: sku.clone(),
        idempotency_key: format!("expired:{reservation}"),
        source: REAPER_SOURCE.to_owned(),
        occurred_at_ms: Some(now_ms),
        kind: MovementKind::Cancellation {
            reservation,
            quantity: None,
            reason: Some("expired".to_owned()),
            write_off: false,
        },
    }
}

/// When `state` next needs the reaper: the earlier of its next hold expiry and the moment
/// its oldest parked movement expires (source time + `parked_ttl_ms` + 1 ms, since a
/// parked movement expires strictly after its TTL); `parked_ttl_ms == i64::MAX` never
/// expires. At most [`crate::domain::MAX_PARKED_PER_SKU`] parked movements are looked at.
pub(crate) fn next_wake_ms(state: &SkuState, parked_ttl_ms: i64) -> Option<i64> {
    let holds = state.next_expiry_ms();
    if parked_ttl_ms == i64::MAX {
        return holds;
    }
    let parked = state
        .parked
        .iter()
        .map(|parked| parked.at_ms.saturating_add(parked_ttl_ms).saturating_add(1))
        .min();
    match (holds, parked) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The no-op movement that expires `state`'s parked movements past their TTL at `now_ms`,
/// if any is past it: a `count` without a figure (it changes no level), keyed by the seq of
/// the oldest parked movement so that a repeated reap is a duplicate.
pub(crate) fn parked_expiry_movement(
    state: &SkuState,
    parked_ttl_ms: i64,
    now_ms: i64,
) -> Option<Movement> {
    if parked_ttl_ms == i64::MAX {
        return None;
    }
    let cutoff = now_ms.saturating_sub(parked_ttl_ms);
    let oldest = state
        .parked
        .iter()
        .filter(|parked| parked.at_ms < cutoff)
        .map(|parked| parked.seq)
        .min()?;
    let location = state
        .levels()
        .into_iter()
        .next()
        .map_or_else(|| "-".into(), |level| level.location);
    Some(Movement {
        schema_version: SCHEMA_VERSION,
        sku: state.sku.clone(),
        idempotency_key: format!("parked-expired:{oldest}"),
        source: REAPER_SOURCE.to_owned(),
        occurred_at_ms: Some(now_ms),
        kind: MovementKind::Count {
            location,
            on_hand: None,
            watermark: 0,
            basis: None,
            booked: None,
        },
    })
}

/// Counts every expiry that became durable as applied (a duplicate was counted before).
pub(crate) async fn count_expired(
    sku: Sku,
    acks: Vec<oneshot::Receiver<Result<Ack, LedgerError>>>,
) {
    let mut expired = 0_u64;
    for ack in acks {
        match ack.await {
            Ok(Ok(Ack::Applied { .. })) => expired += 1,
            Ok(Ok(Ack::Duplicate { .. } | Ack::Parked { .. } | Ack::Ignored { .. })) => {}
            Ok(Err(error)) => {
                tracing::warn!(sku = %sku, error = %error, "expired hold not released")
            }
            Err(_) => tracing::warn!(sku = %sku, "expired hold: actor stopped before answering"),
        }
    }
    if expired > 0 {
        tracing::debug!(sku = %sku, expired, "released expired holds");
        metrics::counter!(crate::telemetry::LEDGER_RESERVATIONS_EXPIRED_TOTAL).increment(expired);
    }
}

/// Starts the reaper task: loads the store's hold expiries, then wakes due SKUs until the
/// ledger is dropped.
pub(crate) fn spawn(shared: Weak<Shared>, schedule: Arc<Schedule>) {
    tokio::spawn(async move {
        scan(&shared, &schedule, &|_: &str| true).await;
        loop {
            let Some(strong) = shared.upgrade() else {
                return;
            };
            let now = strong.now_ms();
            let due = schedule.take_due(now);
            let clock = strong.options.clock.clone();
            for sku in due {
                // Several instances: the SKU's owner reaps it; this one forgets it (the
                // owner rescans the store's expiries when it takes a partition).
                if let Some(ownership) = &strong.options.ownership
                    && ownership.admit(sku.as_str()).is_err()
                {
                    schedule.set(&sku, None);
                    continue;
                }
                strong.send(&sku.0.clone(), ShardMessage::Reap(sku));
            }
            drop(strong);
            let sleep_ms = schedule.next_ms().map_or(MAX_SLEEP_MS, |at| {
                (at - clock.now_ms()).clamp(0, MAX_SLEEP_MS)
            });
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                () = schedule.wake.notified() => {}
            }
        }
    });
}

/// Reads every SKU with an open TTL hold that `wanted` selects from the store into the
/// schedule; retries a failed page after a second (the reaper is then late, never wrong).
pub(crate) async fn scan(
    shared: &Weak<Shared>,
    schedule: &Schedule,
    wanted: &(dyn Fn(&str) -> bool + Send + Sync),
) {
    let mut after: Option<String> = None;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let page = strong
            .store
            .hold_expiries(after.as_deref(), SCAN_PAGE)
            .await;
        drop(strong);
        match page {
            Ok(rows) => {
                let last = rows.last().map(|row| row.sku.clone());
                let done = rows.len() < SCAN_PAGE;
                for row in rows.into_iter().filter(|row| wanted(&row.sku)) {
                    schedule.set(&Sku(row.sku), row.next_expiry_ms);
                }
                if done {
                    return;
                }
                after = last;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot read hold expiries; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(name: &str) -> Sku {
        Sku(name.to_owned())
    }

    #[test]
    fn due_skus_come_out_in_expiry_order_and_are_retried_later() {
        let schedule = Schedule::default();
        schedule.set(&sku("B"), Some(200));
        schedule.set(&sku("A"), Some(100));
        schedule.set(&sku("C"), Some(900));
        assert_eq!(schedule.next_ms(), Some(100));
        assert_eq!(schedule.take_due(250), vec![sku("A"), sku("B")]);
        assert_eq!(schedule.next_ms(), Some(900));
        assert_eq!(
            schedule.take_due(250 + RETRY_MS),
            vec![sku("C"), sku("A"), sku("B")]
        );
    }

    #[test]
    fn a_report_replaces_the_previous_expiry_and_none_removes_it() {
        let schedule = Schedule::default();
        schedule.set(&sku("A"), Some(100));
        schedule.set(&sku("A"), Some(500));
        assert_eq!(schedule.take_due(400), Vec::<Sku>::new());
        schedule.set(&sku("A"), None);
        assert_eq!(schedule.len(), 0);
        assert_eq!(schedule.next_ms(), None);
    }

    #[test]
    fn only_movements_on_ttl_holds_touch_the_schedule() {
        let mut state = SkuState::new(sku("S"));
        let apply = |state: &mut SkuState, key: &str, kind: MovementKind| {
            let movement = Movement {
                schema_version: SCHEMA_VERSION,
                sku: sku("S"),
                idempotency_key: key.to_owned(),
                source: "test".to_owned(),
                occurred_at_ms: None,
                kind,
            };
            let seq = state.seq + 1;
            state.apply(&movement, seq).unwrap();
        };
        let receipt = MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: 5,
        };
        assert!(!touches_ttl_hold(&state, &receipt));
        apply(&mut state, "r", receipt);
        let hold = |id: &str, expires_at_ms| MovementKind::Reservation {
            reservation: id.to_owned(),
            quantity: 1,
            location: Some("WH-1".into()),
            route: vec![],
            expires_at_ms,
        };
        assert!(!touches_ttl_hold(&state, &hold("plain", None)));
        assert!(touches_ttl_hold(&state, &hold("ttl", Some(10))));
        apply(&mut state, "h1", hold("plain", None));
        apply(&mut state, "h2", hold("ttl", Some(10)));
        let cancel = |id: &str| MovementKind::Cancellation {
            reservation: id.to_owned(),
            quantity: None,
            reason: None,
            write_off: false,
        };
        assert!(!touches_ttl_hold(&state, &cancel("plain")));
        assert!(touches_ttl_hold(&state, &cancel("ttl")));
        let expiry = expiry_movement(&sku("S"), "ttl".to_owned(), 1_000);
        assert_eq!(expiry.idempotency_key, "expired:ttl");
        assert!(expiry.validate().is_ok());
    }
}
