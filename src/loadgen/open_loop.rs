//! The open-loop driver: batches are due at fixed times (`k × batch / rate` after the
//! start), whatever the target's speed, and each movement's latency is measured from the
//! time its batch was *due*, not from when it could actually be sent. A target that falls
//! behind therefore shows its whole queueing delay (no coordinated omission), the way wrk2
//! measures.
//!
//! `connections` workers take the next due batch in order, wait for its time, send it,
//! and record the ack latency in an HDR histogram (microseconds, 3 significant digits).
//!
//! Depends on `domain` and the workload; targets come in through [`Target`].

use super::workload::Workload;
use crate::domain::Movement;
use async_trait::async_trait;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Highest latency the histograms record, in microseconds (one hour); longer is clamped.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;
/// Most batches one run may schedule.
pub const MAX_BATCHES: u64 = 100_000_000;

/// What a target answered for one batch, counted per movement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    /// Recorded as new events.
    pub applied: u64,
    /// Acknowledged as duplicates of an earlier movement.
    pub duplicate: u64,
    /// Refused by the state machine (answered, nothing recorded).
    pub rejected: u64,
    /// Movements in requests answered with a status other than 2xx.
    pub non_2xx: u64,
    /// Movements in requests that failed without an answer (connection, timeout, store).
    pub errors: u64,
}

impl BatchOutcome {
    /// Movements acknowledged as durable (applied or duplicate).
    pub fn acknowledged(&self) -> u64 {
        self.applied + self.duplicate
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &BatchOutcome) {
        self.applied += other.applied;
        self.duplicate += other.duplicate;
        self.rejected += other.rejected;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
    }
}

/// Somewhere movements can be sent and acknowledged.
#[async_trait]
pub trait Target: Send + Sync {
    /// Sends one batch, due at `due` (its latency counts from then), and waits for its
    /// answer.
    async fn send(&self, batch: Vec<Movement>, due: Instant) -> BatchOutcome;
}

/// How hard and how long to drive.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct OpenLoopOptions {
    /// Offered movements per second.
    pub rate_per_sec: u64,
    /// Length of the run, in seconds.
    pub secs: u64,
    /// Movements per request.
    pub batch: usize,
    /// Concurrent senders (HTTP connections).
    pub connections: usize,
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Reads the percentiles of a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// The result of one open-loop run at one rate.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// What was driven (`rest`, `in-process`).
    pub target: String,
    /// The schedule.
    pub options: OpenLoopOptions,
    /// Movements sent.
    pub sent: u64,
    /// Movements acknowledged as durable.
    pub acknowledged: u64,
    /// Answers per kind.
    pub outcome: BatchOutcome,
    /// First due time to last answer, in seconds.
    pub wall_secs: f64,
    /// Acknowledged movements per second of wall time.
    pub throughput_per_sec: f64,
    /// Ack latency from each batch's due time.
    pub latency: LatencySummary,
    /// Longest delay between a batch's due time and its actual send, in milliseconds
    /// (large values mean the target, or the generator, could not keep the rate).
    pub send_lag_ms_max: f64,
    /// Movement → channel push latency (`loadgen rest --push` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<super::push::PushReport>,
}

/// When batch `index` is due, measured from the start of the run.
pub fn due_offset(index: u64, batch: usize, rate_per_sec: u64) -> Duration {
    let nanos = u128::from(index) * batch as u128 * 1_000_000_000 / u128::from(rate_per_sec.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The latency charged to a batch due at `start + due`: from its due time to `answered`,
/// whatever time it was actually sent. Zero if it was answered before it was due.
pub fn latency_from_due(start: Instant, due: Duration, answered: Instant) -> Duration {
    answered.saturating_duration_since(start + due)
}

/// How many batches a run schedules (at least one).
pub fn batch_count(options: &OpenLoopOptions) -> u64 {
    let movements = options.rate_per_sec.saturating_mul(options.secs);
    movements
        .div_ceil(options.batch.max(1) as u64)
        .clamp(1, MAX_BATCHES)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds")
}

struct Schedule {
    workload: Workload,
    next: u64,
}

/// Runs the schedule against `target` and reports.
pub async fn run(
    name: &str,
    target: Arc<dyn Target>,
    workload: Workload,
    options: OpenLoopOptions,
) -> RunReport {
    let total = batch_count(&options);
    let schedule = Arc::new(Mutex::new(Schedule { workload, next: 0 }));
    let start = Instant::now();
    let workers: Vec<_> = (0..options.connections.max(1))
        .map(|_| {
            let schedule = schedule.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                let mut outcome = BatchOutcome::default();
                let mut sent = 0u64;
                let mut lag_max = Duration::ZERO;
                loop {
                    let (index, batch) = {
                        let mut schedule = schedule.lock().expect("schedule lock");
                        if schedule.next >= total {
                            break;
                        }
                        let index = schedule.next;
                        schedule.next += 1;
                        (index, schedule.workload.batch(options.batch))
                    };
                    let due = due_offset(index, options.batch, options.rate_per_sec);
                    tokio::time::sleep_until(start + due).await;
                    lag_max = lag_max.max(Instant::now().saturating_duration_since(start + due));
                    let size = batch.len() as u64;
                    sent += size;
                    let answer = target.send(batch, start + due).await;
                    let latency = latency_from_due(start, due, Instant::now());
                    let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_MICROS);
                    histogram
                        .record_n(micros, answer.acknowledged().max(1))
                        .expect("clamped into range");
                    outcome.add(&answer);
                }
                (histogram, outcome, sent, lag_max)
            })
        })
        .collect();
    let mut histogram = new_histogram();
    let mut outcome = BatchOutcome::default();
    let mut sent = 0;
    let mut lag_max = Duration::ZERO;
    for worker in workers {
        if let Ok((h, o, s, l)) = worker.await {
            histogram.add(&h).expect("same bounds");
            outcome.add(&o);
            sent += s;
            lag_max = lag_max.max(l);
        }
    }
    let wall_secs = start.elapsed().as_secs_f64();
    RunReport {
        target: name.to_owned(),
        options,
        sent,
        acknowledged: outcome.acknowledged(),
        outcome,
        wall_secs,
        throughput_per_sec: outcome.acknowledged() as f64 / wall_secs.max(1e-9),
        latency: LatencySummary::of(&histogram),
        send_lag_ms_max: lag_max.as_secs_f64() * 1000.0,
        push: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_due_at_fixed_times() {
        assert_eq!(due_offset(0, 100, 1000), Duration::ZERO);
        assert_eq!(due_offset(3, 100, 1000), Duration::from_millis(300));
        assert_eq!(due_offset(1, 1, 3), Duration::from_nanos(333_333_333));
        let options = OpenLoopOptions {
            rate_per_sec: 1000,
            secs: 2,
            batch: 300,
            connections: 2,
        };
        assert_eq!(batch_count(&options), 7);
    }

    #[test]
    fn latency_counts_from_the_due_time_not_the_send_time() {
        let start = Instant::now();
        let due = due_offset(3, 100, 1000); // due at +300 ms
        let _actually_sent = start + Duration::from_millis(340);
        let answered = start + Duration::from_millis(350);
        assert_eq!(
            latency_from_due(start, due, answered),
            Duration::from_millis(50)
        );
        // Answered before due (cannot happen, but never negative).
        assert_eq!(
            latency_from_due(start, due, start + Duration::from_millis(100)),
            Duration::ZERO
        );
    }

    struct Slow;

    #[async_trait]
    impl Target for Slow {
        async fn send(&self, batch: Vec<Movement>, _due: Instant) -> BatchOutcome {
            tokio::time::sleep(Duration::from_millis(100)).await;
            BatchOutcome {
                applied: batch.len() as u64,
                ..BatchOutcome::default()
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_target_is_charged_its_queueing_delay() {
        let report = run(
            "slow",
            Arc::new(Slow),
            Workload::new(Default::default()).unwrap(),
            OpenLoopOptions {
                rate_per_sec: 100,
                secs: 1,
                batch: 10,
                connections: 1,
            },
        )
        .await;
        assert_eq!(report.sent, 100);
        assert_eq!(report.acknowledged, 100);
        // 10 batches due every 100 ms, answered in 100 ms: no queueing.
        assert!(report.latency.max_ms < 150.0, "{report:?}");
        let report = run(
            "slow",
            Arc::new(Slow),
            Workload::new(Default::default()).unwrap(),
            OpenLoopOptions {
                rate_per_sec: 100,
                secs: 1,
                batch: 1,
                connections: 1,
            },
        )
        .await;
        // 100 batches due every 10 ms, each takes 100 ms: the last is answered at 10 s,
        // due at 0.99 s.
        assert!(report.latency.max_ms > 9000.0, "{report:?}");
        assert!(report.send_lag_ms_max > 8000.0, "{report:?}");
    }
}
