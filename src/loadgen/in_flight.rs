//! The in-process driver without request batching: one submitter task hands every
//! movement to `Ledger::submit` as soon as it is due and passes the `PendingAck` to a
//! small set of ack-waiter tasks, so up to `max_in_flight` movements are outstanding at
//! once (the ledger's group commit, not an HTTP-like batch, decides what is committed
//! together).
//!
//! Two modes:
//! - open loop (`rate_per_sec` set): movement `k` is due `k / rate` seconds after the start;
//!   its latency counts from that due time (no coordinated omission: a ledger that falls
//!   behind is charged its queueing delay, including any wait for an in-flight slot);
//! - closed loop (`rate_per_sec` absent): the submitter keeps `max_in_flight` movements
//!   outstanding for `secs` seconds and the report gives the throughput it sustained;
//!   latency counts from each submit.
//!
//! Depends on `ledger` and `domain` through their public APIs, and on the workload.

use super::open_loop::{BatchOutcome, LatencySummary, OpenLoopOptions, RunReport};
use super::workload::Workload;
use crate::ledger::{Ack, Ledger, LedgerError, PendingAck};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

/// Highest latency recorded, in microseconds (one hour); longer is clamped.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;
/// Most movements one run may schedule.
pub const MAX_MOVEMENTS: u64 = 10_000_000_000;
/// Most movements in flight a run may ask for.
pub const MAX_IN_FLIGHT: usize = 10_000_000;
/// Tasks awaiting acknowledgements.
const ACK_WAITERS: usize = 4;
/// Pending acks queued towards one waiter before the submitter waits.
const WAITER_QUEUE: usize = 65_536;
/// The submitter yields to other tasks after this many submits in a row.
const SUBMITS_PER_YIELD: u32 = 512;

/// How hard and how long to drive the ledger.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct InFlightOptions {
    /// Offered movements per second; `None` runs closed loop (as fast as `max_in_flight`
    /// outstanding movements allow).
    pub rate_per_sec: Option<u64>,
    /// Length of the run, in seconds.
    pub secs: u64,
    /// Most movements submitted and not yet acknowledged.
    pub max_in_flight: usize,
}

/// One submitted movement on its way to an ack waiter.
struct InFlight {
    ack: PendingAck,
    /// When its latency starts (due time, or submit time in closed loop).
    from: Instant,
    /// Frees its in-flight slot when dropped (after the ack).
    slot: OwnedSemaphorePermit,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds")
}

/// When movement `index` is due at `rate_per_sec`, from the start of the run.
pub fn due_offset(index: u64, rate_per_sec: u64) -> Duration {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate_per_sec.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn count(outcome: &mut BatchOutcome, ack: &Result<Ack, LedgerError>) {
    match ack {
        Ok(Ack::Applied { .. } | Ack::Parked { .. } | Ack::Ignored { .. }) => outcome.applied += 1,
        Ok(Ack::Duplicate { .. }) => outcome.duplicate += 1,
        Err(LedgerError::Rejected(_)) => outcome.rejected += 1,
        Err(_) => outcome.errors += 1,
    }
}

async fn wait_acks(
    mut queue: mpsc::Receiver<InFlight>,
) -> (Histogram<u64>, BatchOutcome, Option<Instant>) {
    let mut histogram = new_histogram();
    let mut outcome = BatchOutcome::default();
    let mut last = None;
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            next = queue.recv(), if open => match next {
                Some(InFlight { ack, from, slot }) => pending.push(async move {
                    let result = ack.await;
                    drop(slot);
                    (result, from, Instant::now())
                }),
                None => open = false,
            },
            Some((result, from, answered)) = pending.next() => {
                count(&mut outcome, &result);
                let micros = (answered.saturating_duration_since(from).as_micros() as u64)
                    .clamp(1, MAX_LATENCY_MICROS);
                histogram.record(micros).expect("clamped into range");
                last = Some(last.map_or(answered, |l: Instant| l.max(answered)));
            },
            else => break,
        }
    }
    (histogram, outcome, last)
}

/// Drives `ledger` with `workload` and reports. The report's `options` carry `batch = 1`,
/// `connections = max_in_flight` and, in closed loop, `rate_per_sec = 0`.
pub async fn run(ledger: Ledger, mut workload: Workload, options: InFlightOptions) -> RunReport {
    let max_in_flight = options.max_in_flight.clamp(1, MAX_IN_FLIGHT);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let (senders, waiters): (Vec<_>, Vec<_>) = (0..ACK_WAITERS)
        .map(|_| {
            let (sender, receiver) = mpsc::channel(WAITER_QUEUE);
            (sender, tokio::spawn(wait_acks(receiver)))
        })
        .unzip();
    let start = Instant::now();
    let end = start + Duration::from_secs(options.secs);
    let total = options.rate_per_sec.map_or(MAX_MOVEMENTS, |rate| {
        rate.saturating_mul(options.secs).clamp(1, MAX_MOVEMENTS)
    });
    let mut sent = 0u64;
    let mut lag_max = Duration::ZERO;
    let mut since_yield = 0u32;
    while sent < total {
        let from = match options.rate_per_sec {
            Some(rate) => {
                let due = start + due_offset(sent, rate);
                if due > Instant::now() {
                    tokio::time::sleep_until(due).await;
                    since_yield = 0;
                }
                due
            }
            None => {
                if Instant::now() >= end {
                    break;
                }
                Instant::now()
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let movement = workload.next_movement();
        let now = Instant::now();
        lag_max = lag_max.max(now.saturating_duration_since(from));
        let from = if options.rate_per_sec.is_some() {
            from
        } else {
            now
        };
        let ack = ledger.submit(movement);
        let waiter = &senders[(sent % ACK_WAITERS as u64) as usize];
        if waiter.send(InFlight { ack, from, slot }).await.is_err() {
            break;
        }
        sent += 1;
        since_yield += 1;
        if since_yield >= SUBMITS_PER_YIELD {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
    drop(senders);
    let mut histogram = new_histogram();
    let mut outcome = BatchOutcome::default();
    let mut last = start;
    for waiter in waiters {
        if let Ok((h, o, l)) = waiter.await {
            histogram.add(&h).expect("same bounds");
            outcome.add(&o);
            if let Some(l) = l {
                last = last.max(l);
            }
        }
    }
    let wall_secs = last.saturating_duration_since(start).as_secs_f64();
    RunReport {
        target: "in-process".to_owned(),
        options: OpenLoopOptions {
            rate_per_sec: options.rate_per_sec.unwrap_or(0),
            secs: options.secs,
            batch: 1,
            connections: max_in_flight,
        },
        sent,
        acknowledged: outcome.acknowledged(),
        outcome,
        wall_secs,
        throughput_per_sec: outcome.acknowledged() as f64 / wall_secs.max(1e-9),
        latency: LatencySummary::of(&histogram),
        send_lag_ms_max: if options.rate_per_sec.is_some() {
            lag_max.as_secs_f64() * 1000.0
        } else {
            0.0
        },
        push: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NullSink;
    use crate::ledger::LedgerOptions;
    use crate::store::embedded::EmbeddedStore;

    #[test]
    fn movements_are_due_at_fixed_times() {
        assert_eq!(due_offset(0, 1000), Duration::ZERO);
        assert_eq!(due_offset(3, 1000), Duration::from_millis(3));
        assert_eq!(due_offset(1, 3), Duration::from_nanos(333_333_333));
    }

    fn ledger(dir: &std::path::Path) -> Ledger {
        let store: Arc<dyn crate::store::Store> =
            Arc::new(EmbeddedStore::open(&dir.join("t.db")).unwrap());
        Ledger::start(store, Arc::new(NullSink), LedgerOptions::default())
    }

    fn workload() -> Workload {
        Workload::new(super::super::workload::WorkloadOptions {
            skus: 20,
            settle_movements: 100,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_acknowledges_every_scheduled_movement() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        let options = InFlightOptions {
            rate_per_sec: Some(2000),
            secs: 1,
            max_in_flight: 100,
        };
        let report = run(ledger.clone(), workload(), options).await;
        ledger.shutdown().await;
        assert_eq!(report.sent, 2000, "{report:?}");
        assert_eq!(report.acknowledged, 2000, "{report:?}");
        assert_eq!(report.outcome.rejected, 0, "{report:?}");
        assert_eq!(report.outcome.errors, 0, "{report:?}");
        assert_eq!(report.options.connections, 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_acknowledges_everything_it_sent() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        let options = InFlightOptions {
            rate_per_sec: None,
            secs: 1,
            max_in_flight: 500,
        };
        let report = run(ledger.clone(), workload(), options).await;
        ledger.shutdown().await;
        assert!(report.sent > 0, "{report:?}");
        assert_eq!(report.acknowledged, report.sent, "{report:?}");
        assert_eq!(report.outcome.errors, 0, "{report:?}");
        assert_eq!(report.options.rate_per_sec, 0);
    }
}
