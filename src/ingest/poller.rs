//! The shared poller: what every platform poller (`ingest::<platform>::poller`) does alike.
//!
//! Owns: the interval loop ([`spawn`], first poll at once, then one poll per interval
//! after the previous one ended), the backoff after a throttled or failing platform
//! ([`Retry`], [`next_delay`]: a ceiling doubling from the interval up to
//! [`PollerOptions::max_backoff`], with jitter ([`jittered_delay`]: uniform in the upper
//! half of the ceiling, so pollers that failed together do not come back together), never
//! sooner than the platform's `Retry-After`), the
//! cursor that trails the newest change seen ([`Watermark`]), the per-poll and running
//! statistics ([`PollStats`], [`PollerStats`]), submitting polled movements to the ledger
//! ([`submit_all`]) and the stop handle ([`PollerHandle`]).
//!
//! A platform poller implements [`Poll`]: one poll's fetch, decode and cursor logic, and
//! the [`Retry`] its failures call for. The platform's published rate is kept inside each
//! request, not here: the platform clients make every poller call wait for its
//! [`crate::platforms::quota::Quota`] (shared with the pusher and read-backs where the
//! platform counts them together), so a poll that pages or reads details never outruns
//! the quota, and a 429 answered to anyone pauses everyone. Timing uses tokio's clock only, so it is tested
//! with paused time (`start_paused` and `tokio::time::advance`), never with real sleeps.
//!
//! With several instances only a channel's leader polls it ([`PollGate`], checked before
//! every poll): a follower's poller idles, looking again every [`GATE_RECHECK`] at most.
//!
//! Invariant: a cursor advances only after every movement of the poll is durable; a failed
//! poll leaves it, so the next poll reads the same window again (harmless: every movement
//! carries an idempotency key).
//!
//! May depend on: `domain`, `ledger`, `telemetry`, `platforms` (its error type).

use crate::domain::Movement;
use crate::ledger::{Ack, Ledger, LedgerError};
use crate::platforms::PlatformError;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Counter of movements submitted by channel pollers, labelled `channel`, `outcome`
/// (`applied`, `duplicate`, `rejected`, `failed`).
pub const POLL_MOVEMENTS_TOTAL: &str = "stocksync_ingest_poll_movements_total";

/// The longest backoff by default (the interval, when that is longer).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The longest `Retry-After` honoured: a platform asking for more is polled after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// The longest a poller whose [`PollGate`] is closed waits before looking again.
pub const GATE_RECHECK: Duration = Duration::from_secs(1);

/// Whether a poller polls now: with several instances, whether this instance leads the
/// poller's channel (the app builds it from propagation's leadership); always open by
/// default. Asked before every poll, so it must be cheap and must not block.
#[derive(Clone, Default)]
pub struct PollGate(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl PollGate {
    /// A gate that is always open (a single instance).
    pub fn always() -> Self {
        Self(None)
    }

    /// A gate that is open while `open` says so.
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(open)))
    }

    /// Whether the poller may poll now.
    pub fn is_open(&self) -> bool {
        self.0.as_ref().is_none_or(|open| open())
    }
}

impl std::fmt::Debug for PollGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PollGate(leadership)"
        } else {
            "PollGate(always)"
        })
    }
}

impl PartialEq for PollGate {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for PollGate {}

/// What one poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Orders (or order details) read.
    pub orders_fetched: usize,
    /// Movements newly applied.
    pub applied: usize,
    /// Movements the ledger already had.
    pub duplicates: usize,
    /// Movements the ledger refused (logged).
    pub rejected: usize,
}

impl PollStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &PollStats) {
        self.orders_fetched += other.orders_fetched;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// When to poll again after a failed poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// After the normal interval (the platform is fine; a decode or ledger failure).
    AfterInterval,
    /// After a backoff that doubles with every such failure in a row: the platform
    /// throttled (429), failed (5xx) or could not be reached. Never sooner than
    /// `retry_after` (the platform's `Retry-After`), when given.
    WithBackoff {
        /// The platform's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
}

impl Retry {
    /// The retry a platform client's error calls for: a backoff for a throttled
    /// (honouring its `Retry-After`), failing (5xx) or unreachable platform, the interval
    /// for anything else (refused credentials, a rejected request, an undecodable answer).
    pub fn for_platform_error(error: &PlatformError) -> Self {
        match error {
            PlatformError::Throttled { retry_after_ms } => Self::WithBackoff {
                retry_after: retry_after_ms.map(Duration::from_millis),
            },
            PlatformError::Server { .. } | PlatformError::Transport { .. } => {
                Self::WithBackoff { retry_after: None }
            }
            PlatformError::Unauthorized { .. }
            | PlatformError::Rejected { .. }
            | PlatformError::GraphQl { .. }
            | PlatformError::Decode { .. }
            | PlatformError::TooLarge { .. } => Self::AfterInterval,
        }
    }
}

/// A failed poll, as the shared loop needs to know it.
pub trait PollFailure: std::fmt::Display + Send {
    /// When to poll again.
    fn retry(&self) -> Retry;

    /// Whether the platform throttled the poll (429): expected under its rate limit and
    /// honoured by the backoff, so logged at info level rather than as a warning.
    fn is_throttled(&self) -> bool {
        false
    }
}

/// One platform poller: the fetch, decode and cursor logic of one poll.
pub trait Poll: Send + 'static {
    /// Why a poll failed.
    type Error: PollFailure;

    /// Polls once. What was durable before a failure stays; the cursor advances only when
    /// every movement is durable.
    fn poll(&mut self) -> impl Future<Output = Result<PollStats, Self::Error>> + Send;
}

/// How a poller is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollerOptions {
    /// The name in logs (`bolcom:{channel}`, …).
    pub name: String,
    /// The pause between the end of one poll and the start of the next.
    pub interval: Duration,
    /// The longest backoff after failures in a row (`Retry-After` may ask for more, up to
    /// [`MAX_RETRY_AFTER`]).
    pub max_backoff: Duration,
    /// Whether backoffs are jittered ([`jittered_delay`]); off only in tests that check
    /// exact times.
    pub jitter: bool,
    /// Whether to poll now (several instances: only the channel's leader polls).
    pub gate: PollGate,
}

impl PollerOptions {
    /// Options named `name`, polling every `interval`, backing off at most
    /// [`DEFAULT_MAX_BACKOFF`] (or `interval`, when longer).
    pub fn new(name: impl Into<String>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            interval,
            max_backoff: DEFAULT_MAX_BACKOFF.max(interval),
            jitter: true,
            gate: PollGate::always(),
        }
    }

    /// These options, polling only while `gate` is open.
    pub fn gated(mut self, gate: PollGate) -> Self {
        self.gate = gate;
        self
    }
}

/// The pause before the next poll, after `backoffs` failures in a row that called for a
/// backoff (0 after a success or an [`Retry::AfterInterval`] failure): the interval
/// doubled `backoffs` times, at most `max_backoff` (but never below the interval), and
/// never sooner than `retry_after` (itself at most [`MAX_RETRY_AFTER`]).
pub fn next_delay(
    options: &PollerOptions,
    backoffs: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let doubled = options
        .interval
        .saturating_mul(2u32.saturating_pow(backoffs.min(31)));
    let backoff = doubled.min(options.max_backoff).max(options.interval);
    let asked = retry_after.unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER);
    backoff.max(asked)
}

/// [`next_delay`] with jitter: the backoff ceiling (the interval doubled `backoffs` times,
/// at most `max_backoff`) scaled into its upper half by `fraction` (0.0 → half the
/// ceiling, 1.0 → the ceiling; clamped), never below the interval, and never sooner than
/// `retry_after` (at most [`MAX_RETRY_AFTER`]).
pub fn jittered_delay(
    options: &PollerOptions,
    backoffs: u32,
    retry_after: Option<Duration>,
    fraction: f64,
) -> Duration {
    let ceiling = next_delay(options, backoffs, None);
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let jittered = ceiling.mul_f64(0.5 + 0.5 * fraction).max(options.interval);
    let asked = retry_after.unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER);
    jittered.min(ceiling).max(asked)
}

/// A cursor that trails the newest change seen by an overlap (platform clocks and
/// visibility are not strictly ordered) and never moves back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    position_ms: Option<i64>,
    overlap_ms: i64,
}

impl Watermark {
    /// A cursor with no position yet (the first poll reads from where it chooses).
    pub fn unset(overlap_ms: i64) -> Self {
        Self {
            position_ms: None,
            overlap_ms,
        }
    }

    /// A cursor at `position_ms`.
    pub fn at(position_ms: i64, overlap_ms: i64) -> Self {
        Self {
            position_ms: Some(position_ms),
            overlap_ms,
        }
    }

    /// The position, in ms since the Unix epoch; `None` before the first advance.
    pub fn position_ms(&self) -> Option<i64> {
        self.position_ms
    }

    /// After a poll from `start_ms` that saw changes up to `newest_ms` and made every one
    /// durable: moves to `newest_ms` minus the overlap, but never before `start_ms` nor
    /// back. Returns the new position.
    pub fn advance(&mut self, start_ms: i64, newest_ms: i64) -> i64 {
        let next = newest_ms.saturating_sub(self.overlap_ms).max(start_ms);
        let position = self.position_ms.map_or(next, |current| current.max(next));
        self.position_ms = Some(position);
        position
    }
}

/// Submits movements in order and waits until each is durable (or refused), counting them
/// in `stats` and in [`POLL_MOVEMENTS_TOTAL`].
///
/// Errors: the first store or availability failure (after every ack was awaited).
pub async fn submit_all(
    ledger: &Ledger,
    channel: &str,
    movements: Vec<Movement>,
    stats: &mut PollStats,
) -> Result<(), LedgerError> {
    let pending: Vec<_> = movements
        .into_iter()
        .map(|movement| {
            let key = movement.idempotency_key.clone();
            (key, ledger.submit(movement))
        })
        .collect();
    let mut failure = None;
    for (key, ack) in pending {
        let outcome = match ack.await {
            Ok(Ack::Applied { .. } | Ack::Parked { .. } | Ack::Ignored { .. }) => {
                stats.applied += 1;
                "applied"
            }
            Ok(Ack::Duplicate { .. }) => {
                stats.duplicates += 1;
                "duplicate"
            }
            Err(LedgerError::Rejected(error)) => {
                stats.rejected += 1;
                tracing::warn!(channel, key = %key, error = %error, "polled movement refused by the ledger");
                "rejected"
            }
            Err(error) => {
                failure.get_or_insert(error);
                "failed"
            }
        };
        metrics::counter!(POLL_MOVEMENTS_TOTAL, "channel" => channel.to_owned(), "outcome" => outcome)
            .increment(1);
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// A running poller's statistics since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollerStats {
    /// Polls finished (successful or not).
    pub polls: u64,
    /// Polls that failed.
    pub failures: u64,
    /// Failures that called for a backoff.
    pub backoffs: u64,
    /// Backoff failures in a row now (0 after a success).
    pub backoffs_in_a_row: u32,
    /// The sums of every successful poll's [`PollStats`].
    pub totals: PollStats,
    /// The pause before the next poll.
    pub next_delay: Duration,
    /// The last failure's message, until a poll succeeds.
    pub last_error: Option<String>,
    /// Polls that panicked; the poller was restarted from its cursor after a backoff.
    pub restarts: u64,
}

/// A running poller task; stop it with [`PollerHandle::stop`].
#[derive(Debug)]
pub struct PollerHandle {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<Mutex<PollerStats>>,
}

impl PollerHandle {
    /// The poller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The statistics so far.
    pub fn stats(&self) -> PollerStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the task (a poll in progress is abandoned; its durable part stays and its
    /// cursor does not move) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A way to poll a channel *now* (a compare-and-set conflict showed the channel sold
/// units we have not ingested) and to learn whether a poll has succeeded since a time.
/// Shared by a poller ([`spawn_woken`]) and whoever wakes it; one per polled channel.
#[derive(Debug, Default)]
pub struct PollSignal {
    wake: tokio::sync::Notify,
    /// Wall time (ms since the Unix epoch) at which the newest successful poll started;
    /// `i64::MIN` before the first.
    last_success_started_ms: std::sync::atomic::AtomicI64,
}

impl PollSignal {
    /// A signal with no successful poll yet.
    pub fn new() -> Self {
        Self {
            wake: tokio::sync::Notify::new(),
            last_success_started_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// Ends the poller's pause at once (a wake while a poll runs starts the next one as
    /// soon as it ends). A backoff after throttling is cut short too, but the platform's
    /// quota is not: the woken poll's requests still wait for the `Retry-After` and rate
    /// their client's quota holds. Wakes are rare (one per conflict burst: `Notify` keeps at
    /// most one).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Records a successful poll that started at `started_ms` (wall time).
    pub fn record_success(&self, started_ms: i64) {
        self.last_success_started_ms
            .fetch_max(started_ms, std::sync::atomic::Ordering::AcqRel);
    }

    /// True when a poll that started at or after `since_ms` succeeded.
    pub fn succeeded_since(&self, since_ms: i64) -> bool {
        self.last_success_started_ms
            .load(std::sync::atomic::Ordering::Acquire)
            >= since_ms
    }
}

/// Runs `poller` on the current tokio runtime: a poll at once, then after every poll a
/// pause of [`next_delay`] (the interval, or a backoff), until stopped.
pub fn spawn<P: Poll>(options: PollerOptions, poller: P) -> PollerHandle {
    spawn_woken(options, poller, None)
}

/// [`spawn`], and a pause also ends when `signal` is woken ([`PollSignal::wake`]).
pub fn spawn_woken<P: Poll>(
    options: PollerOptions,
    mut poller: P,
    signal: Option<Arc<PollSignal>>,
) -> PollerHandle {
    let (stop, mut stopped) = watch::channel(false);
    let stats = Arc::new(Mutex::new(PollerStats {
        next_delay: options.interval,
        ..PollerStats::default()
    }));
    let shared = stats.clone();
    let name = options.name.clone();
    let task = tokio::spawn(async move {
        let name = &options.name;
        tracing::info!(poller = %name, interval_ms = options.interval.as_millis() as u64, "poller started");
        let mut panics_in_a_row = 0u32;
        loop {
            if !options.gate.is_open() {
                // Another instance leads the channel: idle, and look again soon.
                tokio::select! {
                    _ = tokio::time::sleep(options.interval.min(GATE_RECHECK)) => continue,
                    _ = stopped.changed() => break,
                }
            }
            // Supervision: a panic inside a poll abandons that poll (its durable part stays,
            // its cursor does not move, as after a failed poll) and the poller starts
            // again from its cursor after a backoff, instead of the task dying silently.
            let polled =
                futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(poller.poll()));
            let result = tokio::select! {
                result = polled => result,
                _ = stopped.changed() => break,
            };
            let delay = {
                let mut stats = shared.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(result) => {
                        panics_in_a_row = 0;
                        record(&options, &mut stats, result);
                    }
                    Err(panic) => {
                        panics_in_a_row = panics_in_a_row.saturating_add(1);
                        stats.restarts += 1;
                        stats.failures += 1;
                        stats.next_delay = panic_backoff(&options, panics_in_a_row);
                        let message = crate::telemetry::panic_message(panic.as_ref());
                        tracing::error!(poller = %name, panic = %message, retry_in_ms = stats.next_delay.as_millis() as u64, "poller panicked; restarting it from its cursor");
                        metrics::counter!(crate::telemetry::ACTOR_RESTARTS_TOTAL, "actor" => "poller").increment(1);
                        stats.last_error = Some(format!("panicked: {message}"));
                    }
                }
                stats.next_delay
            };
            let woken = async {
                match &signal {
                    Some(signal) => signal.wake.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = woken => tracing::debug!(poller = %name, "poll woken early"),
                _ = stopped.changed() => break,
            }
        }
        tracing::info!(poller = %name, "poller stopped");
    });
    PollerHandle {
        name,
        stop,
        task,
        stats,
    }
}

/// The first pause after a panicking poll; it doubles with every panic in a row, up to
/// the poller's `max_backoff`.
pub const PANIC_BACKOFF: Duration = Duration::from_secs(1);

/// The pause before restarting a poller after its `panics`-th panic in a row.
fn panic_backoff(options: &PollerOptions, panics: u32) -> Duration {
    let factor = 1u32 << panics.saturating_sub(1).min(16);
    PANIC_BACKOFF
        .saturating_mul(factor)
        .min(options.max_backoff.max(PANIC_BACKOFF))
}

/// Folds one poll's result into `stats`, logs it, and sets the pause before the next.
fn record<E: PollFailure>(
    options: &PollerOptions,
    stats: &mut PollerStats,
    result: Result<PollStats, E>,
) {
    let name = &options.name;
    stats.polls += 1;
    match result {
        Ok(poll) => {
            if poll.applied > 0 {
                tracing::info!(poller = %name, applied = poll.applied, duplicates = poll.duplicates, orders = poll.orders_fetched, "poll applied movements");
            }
            stats.totals.add(&poll);
            stats.backoffs_in_a_row = 0;
            stats.last_error = None;
            stats.next_delay = options.interval;
        }
        Err(error) => {
            stats.failures += 1;
            stats.next_delay = match error.retry() {
                Retry::AfterInterval => {
                    stats.backoffs_in_a_row = 0;
                    options.interval
                }
                Retry::WithBackoff { retry_after } => {
                    stats.backoffs += 1;
                    stats.backoffs_in_a_row = stats.backoffs_in_a_row.saturating_add(1);
                    if options.jitter {
                        let fraction = rand::random_range(0.0..=1.0);
                        jittered_delay(options, stats.backoffs_in_a_row, retry_after, fraction)
                    } else {
                        next_delay(options, stats.backoffs_in_a_row, retry_after)
                    }
                }
            };
            let retry_in_ms = stats.next_delay.as_millis() as u64;
            if error.is_throttled() {
                tracing::info!(poller = %name, error = %error, retry_in_ms, "poll throttled by the platform; waiting as it asks");
            } else {
                tracing::warn!(poller = %name, error = %error, retry_in_ms, "poll failed");
            }
            stats.last_error = Some(error.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::time::Instant;

    /// A scripted failure.
    #[derive(Debug)]
    struct Failure(Retry);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "scripted failure {:?}", self.0)
        }
    }

    impl PollFailure for Failure {
        fn retry(&self) -> Retry {
            self.0
        }
    }

    /// Answers from a script (then succeeds), recording when each poll started.
    struct Scripted {
        script: VecDeque<Result<PollStats, Failure>>,
        started: Arc<Mutex<Vec<Instant>>>,
    }

    impl Poll for Scripted {
        type Error = Failure;

        async fn poll(&mut self) -> Result<PollStats, Failure> {
            self.started.lock().unwrap().push(Instant::now());
            self.script.pop_front().unwrap_or(Ok(PollStats::default()))
        }
    }

    fn scripted(script: Vec<Result<PollStats, Failure>>) -> (Scripted, Arc<Mutex<Vec<Instant>>>) {
        let started = Arc::new(Mutex::new(Vec::new()));
        let poller = Scripted {
            script: script.into(),
            started: started.clone(),
        };
        (poller, started)
    }

    /// Lets the poller task run what is due at the current (paused) instant.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_idles_the_poller_until_it_opens() {
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gate = {
            let open = open.clone();
            PollGate::new(move || open.load(std::sync::atomic::Ordering::Acquire))
        };
        let (poller, started) = scripted(Vec::new());
        let handle = spawn(
            PollerOptions::new("gated", Duration::from_secs(10)).gated(gate),
            poller,
        );
        settle().await;
        for _ in 0..5 {
            tokio::time::advance(GATE_RECHECK).await;
            settle().await;
        }
        assert!(started.lock().unwrap().is_empty(), "a follower never polls");
        assert_eq!(handle.stats().polls, 0);
        // Leading now: the next check (within GATE_RECHECK) polls.
        open.store(true, std::sync::atomic::Ordering::Release);
        tokio::time::advance(GATE_RECHECK).await;
        settle().await;
        assert_eq!(started.lock().unwrap().len(), 1);
        // Following again: no poll after the interval.
        open.store(false, std::sync::atomic::Ordering::Release);
        tokio::time::advance(Duration::from_secs(30)).await;
        settle().await;
        assert_eq!(started.lock().unwrap().len(), 1);
        handle.stop().await;
    }

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_honours_retry_after() {
        let options = PollerOptions {
            name: "t".into(),
            interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            jitter: false,
            gate: PollGate::always(),
        };
        let delays: Vec<_> = (0..6).map(|n| next_delay(&options, n, None)).collect();
        assert_eq!(delays, secs(&[10, 20, 40, 60, 60, 60]));
        assert_eq!(
            next_delay(&options, 1, Some(Duration::from_secs(45))),
            Duration::from_secs(45),
            "retry-after beyond the backoff wins"
        );
        assert_eq!(
            next_delay(&options, 2, Some(Duration::from_secs(1))),
            Duration::from_secs(40),
            "a short retry-after never shortens the backoff"
        );
        assert_eq!(
            next_delay(&options, 1, Some(Duration::from_secs(10 * 3600))),
            MAX_RETRY_AFTER
        );
        assert_eq!(next_delay(&options, 40, None), Duration::from_secs(60));
        let long = PollerOptions::new("t", Duration::from_secs(3600));
        assert_eq!(long.max_backoff, Duration::from_secs(3600));
    }

    #[test]
    fn platform_errors_map_to_retries() {
        use crate::platforms::http::classify_status;
        let status = |status, retry_after_ms| {
            Retry::for_platform_error(&classify_status(status, "m".into(), retry_after_ms).unwrap())
        };
        let after = Some(Duration::from_secs(2));
        assert_eq!(
            status(429, Some(2000)),
            Retry::WithBackoff { retry_after: after }
        );
        assert_eq!(
            status(429, Some(1500)),
            Retry::WithBackoff {
                retry_after: Some(Duration::from_millis(1500))
            }
        );
        assert_eq!(status(503, None), Retry::WithBackoff { retry_after: None });
        assert_eq!(status(400, Some(2000)), Retry::AfterInterval);
        assert_eq!(status(404, None), Retry::AfterInterval);
        assert_eq!(status(401, None), Retry::AfterInterval);
        assert_eq!(
            Retry::for_platform_error(&PlatformError::Transport {
                message: "refused".into()
            }),
            Retry::WithBackoff { retry_after: None }
        );
        assert_eq!(
            Retry::for_platform_error(&PlatformError::Decode {
                message: "x".into()
            }),
            Retry::AfterInterval
        );
    }

    #[test]
    fn watermarks_trail_the_newest_change_and_never_move_back() {
        let mut cursor = Watermark::unset(1_000);
        assert_eq!(cursor.position_ms(), None);
        assert_eq!(cursor.advance(i64::MIN, 10_000), 9_000);
        assert_eq!(cursor.advance(9_000, 5_000), 9_000, "never back");
        let mut cursor = Watermark::at(50_000, 2_000);
        assert_eq!(
            cursor.advance(50_000, 50_500),
            50_000,
            "never before the start"
        );
        assert_eq!(cursor.advance(50_000, 60_000), 58_000);
        assert_eq!(cursor.position_ms(), Some(58_000));
    }

    #[tokio::test(start_paused = true)]
    async fn polls_run_on_the_interval_and_back_off_on_throttling() {
        let start = Instant::now();
        let applied = PollStats {
            applied: 2,
            ..PollStats::default()
        };
        let throttled = |after: Option<u64>| {
            Err(Failure(Retry::WithBackoff {
                retry_after: after.map(Duration::from_secs),
            }))
        };
        let (poller, started) = scripted(vec![
            Ok(applied.clone()),                // t=0
            throttled(None),                    // t=10: backoff 20
            throttled(Some(60)),                // t=30: backoff 40, retry-after 60
            Err(Failure(Retry::AfterInterval)), // t=90: the interval, streak reset
            throttled(None),                    // t=100: backoff 20 again
            Ok(PollStats::default()),           // t=120: the interval again
        ]);
        let options = PollerOptions {
            name: "scripted".into(),
            interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            jitter: false,
            gate: PollGate::always(),
        };
        let handle = spawn(options, poller);
        settle().await;
        assert_eq!(
            started.lock().unwrap().len(),
            1,
            "the first poll is at once"
        );
        // Nothing runs early: one second before each due time, the count has not moved.
        for due in [10, 30, 90, 100, 120, 130] {
            let now = Instant::now() - start;
            tokio::time::advance(Duration::from_secs(due) - now - Duration::from_secs(1)).await;
            settle().await;
            let before = started.lock().unwrap().len();
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
            assert_eq!(
                started.lock().unwrap().len(),
                before + 1,
                "a poll at t={due}s"
            );
        }
        let offsets: Vec<_> = started
            .lock()
            .unwrap()
            .iter()
            .map(|at| *at - start)
            .collect();
        assert_eq!(offsets, secs(&[0, 10, 30, 90, 100, 120, 130]));
        let stats = handle.stats();
        assert_eq!(stats.polls, 7);
        assert_eq!(stats.failures, 4);
        assert_eq!(stats.backoffs, 3);
        assert_eq!(stats.backoffs_in_a_row, 0);
        assert_eq!(stats.totals.applied, 2);
        assert_eq!(stats.last_error, None);
        assert_eq!(stats.next_delay, Duration::from_secs(10));
        handle.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_a_long_backoff_at_once() {
        let (poller, started) = scripted(vec![Err(Failure(Retry::WithBackoff {
            retry_after: Some(Duration::from_secs(600)),
        }))]);
        let handle = spawn(
            PollerOptions::new("stopped", Duration::from_secs(5)),
            poller,
        );
        settle().await;
        let stats = handle.stats();
        assert_eq!(stats.next_delay, Duration::from_secs(600));
        assert!(stats.last_error.unwrap().contains("scripted failure"));
        let before = Instant::now();
        handle.stop().await;
        assert_eq!(Instant::now(), before, "no timer had to fire");
        assert_eq!(started.lock().unwrap().len(), 1);
    }

    /// Panics on its first two polls (test-only fault injection), then succeeds.
    struct PanicsTwice {
        started: Arc<Mutex<Vec<Instant>>>,
    }

    impl Poll for PanicsTwice {
        type Error = Failure;

        async fn poll(&mut self) -> Result<PollStats, Failure> {
            let count = {
                let mut started = self.started.lock().unwrap();
                started.push(Instant::now());
                started.len()
            };
            if count <= 2 {
                panic!("injected fault in poll {count}");
            }
            Ok(PollStats::default())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_poller_is_restarted_with_backoff_and_keeps_polling() {
        let start = Instant::now();
        let started = Arc::new(Mutex::new(Vec::new()));
        let options = PollerOptions {
            name: "panicky".into(),
            interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            jitter: false,
            gate: PollGate::always(),
        };
        let handle = spawn(
            options,
            PanicsTwice {
                started: started.clone(),
            },
        );
        settle().await;
        // Restarts after 1 s, then 2 s (doubling), then the normal interval.
        for due in [1, 3, 13] {
            let now = Instant::now() - start;
            tokio::time::advance(Duration::from_secs(due) - now).await;
            settle().await;
        }
        let offsets: Vec<Duration> = started
            .lock()
            .unwrap()
            .iter()
            .map(|at| *at - start)
            .collect();
        assert_eq!(offsets, secs(&[0, 1, 3, 13]));
        let stats = handle.stats();
        assert_eq!((stats.restarts, stats.failures, stats.polls), (2, 2, 2));
        assert_eq!(
            stats.last_error, None,
            "the poll after the restarts succeeded"
        );
        handle.stop().await;
    }
}
