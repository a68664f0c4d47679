//! Wall-clock time in milliseconds since the Unix epoch, injected: the one place the crate
//! reads it.
//!
//! Owns: the [`Clock`] trait and its three implementations:
//! - [`SystemClock`]: the operating system's wall clock, for production;
//! - [`ManualClock`]: a clock that moves only when a test sets or advances it;
//! - [`TokioClock`]: a wall clock that follows tokio's clock, so a test under
//!   `#[tokio::test(start_paused = true)]` moves timers and wall time together with
//!   `tokio::time::advance`.
//!
//! Components take a [`SharedClock`] from `app` (or from a test) instead of reading the
//! system time themselves, so timer logic (hold expiry, backoff, compare-and-set grace,
//! poll intervals, reconcile settle) can be tested without real sleeps.
//!
//! May depend on: nothing but `std` and `tokio::time`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The clock handle components hold.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The operating system's wall clock (0 if it is set before 1970).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A clock that moves only when told to: [`set_ms`](Self::set_ms) and
/// [`advance_ms`](Self::advance_ms).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now_ms` (milliseconds since the Unix epoch).
    pub fn new(now_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now_ms: AtomicI64::new(now_ms),
        })
    }

    /// Sets the time to `now_ms`.
    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `delta_ms` (saturating).
    pub fn advance_ms(&self, delta_ms: i64) {
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(delta_ms))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Wall time that follows tokio's clock: the system time when created, plus the time tokio
/// says has passed since. Under paused time (`tokio::time::pause`, `start_paused = true`)
/// it moves only with `tokio::time::advance` or auto-advance, together with every tokio
/// timer. Create it inside the runtime whose clock it follows.
#[derive(Debug)]
pub struct TokioClock {
    origin_ms: i64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at the system's wall time now.
    pub fn new() -> Arc<Self> {
        Self::starting_at(system_now_ms())
    }

    /// A clock starting at `origin_ms` (milliseconds since the Unix epoch).
    pub fn starting_at(origin_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            origin_ms,
            origin: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.origin_ms.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance_ms(250);
        assert_eq!(clock.now_ms(), 1_250);
        clock.set_ms(5);
        assert_eq!(clock.now_ms(), 5);
        clock.set_ms(i64::MAX - 1);
        clock.advance_ms(10);
        assert_eq!(clock.now_ms(), i64::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::starting_at(10_000);
        assert_eq!(clock.now_ms(), 10_000);
        tokio::time::advance(std::time::Duration::from_millis(1_500)).await;
        assert_eq!(clock.now_ms(), 11_500);
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        assert_eq!(clock.now_ms(), 71_500);
    }

    #[test]
    fn system_clock_is_after_2020() {
        let shared = system();
        assert!(shared.now_ms() > 1_577_836_800_000);
    }
}
