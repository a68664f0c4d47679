//! Pacing: a token bucket per channel (from `ChannelConfig.rate_limit`) that the platform's
//! own signals can slow down (429 + `Retry-After`, GraphQL `throttleStatus`), and the retry
//! backoff (exponential with full jitter, from `ChannelConfig.retry`).
//!
//! Budget sharing: where the platform counts the pusher's requests together with the
//! pollers' (a WooCommerce store, Shopify's REST bucket), the bucket is linked
//! ([`TokenBucket::linked`]) to the platform client's [`Quota`]: a push then also waits for
//! and takes from that quota, so pushes, polls and read-backs share one budget, and a
//! `Retry-After` told to any of them holds back the others. The bucket never blocks: it
//! only says how long to wait.

use crate::channels::CostBudget;
use crate::config::{RateLimitConfig, RetryConfig};
use crate::platforms::quota::Quota;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: `burst` tokens, refilled at `requests_per_sec`. One token per request.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    capacity: f64,
    rate_per_sec: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    /// The platform budget shared with the pollers, when the platform counts them together.
    linked: Option<Arc<Quota>>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(config: &RateLimitConfig, now: Instant) -> Self {
        let capacity = f64::from(config.burst.max(1));
        Self {
            capacity,
            rate_per_sec: config.requests_per_sec.max(f64::MIN_POSITIVE),
            tokens: capacity,
            last: now,
            paused_until: None,
            linked: None,
        }
    }

    /// The same bucket also waiting for and taking from `quota` (when given): the
    /// platform's budget this channel shares with its pollers.
    pub fn linked(mut self, quota: Option<Arc<Quota>>) -> Self {
        self.linked = quota;
        self
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.capacity);
        self.last = now;
    }

    /// How long until a request may go; zero when it may go now.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let paused = self
            .paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let missing = (1.0 - self.tokens).max(0.0);
        let refill = Duration::from_secs_f64(missing / self.rate_per_sec);
        let shared = self
            .linked
            .as_ref()
            .map_or(Duration::ZERO, |quota| quota.wait(now));
        paused.max(refill).max(shared)
    }

    /// Takes a token for a request that goes now (call after `wait` returned zero).
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
        if let Some(quota) = &self.linked {
            quota.take(now);
        }
    }

    /// Spends whatever the bucket holds: the next request waits one refill interval. A new
    /// channel leader starts so (several instances): the previous leader may have spent the
    /// burst just before handing over, and the budget is the channel's, not the instance's.
    pub fn empty(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
    }

    /// Charges extra requests one push made (a read after a conflict); may go into debt.
    pub fn charge(&mut self, requests: u32) {
        self.tokens -= f64::from(requests);
        if let Some(quota) = &self.linked {
            quota.charge(requests);
        }
    }

    /// Sends nothing before `until` (Retry-After, backoff of the whole channel).
    pub fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(
            self.paused_until
                .map_or(until, |current| current.max(until)),
        );
    }

    /// Follows a cost budget: when the next request does not fit, pause until it does.
    pub fn observe_budget(&mut self, budget: &CostBudget, now: Instant) {
        let wait_ms = budget.wait_ms();
        if wait_ms > 0 {
            self.pause_until(now + Duration::from_millis(wait_ms));
        }
    }
}

/// The delay before retry number `attempt` (1-based): uniform in
/// `0..=min(max_backoff_ms, initial_backoff_ms × 2^(attempt−1))` (full jitter).
/// `random(upper)` returns a number in `0..=upper`.
pub(crate) fn backoff_delay(
    retry: &RetryConfig,
    attempt: u32,
    random: impl FnOnce(u64) -> u64,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let ceiling = retry
        .initial_backoff_ms
        .saturating_mul(1_u64 << exponent)
        .min(retry.max_backoff_ms);
    Duration::from_millis(random(ceiling).min(ceiling))
}

/// [`backoff_delay`] with the thread's random number generator.
pub(crate) fn jittered_backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    backoff_delay(retry, attempt, |upper| rand::random_range(0..=upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(requests_per_sec: f64, burst: u32) -> TokenBucket {
        TokenBucket::new(
            &RateLimitConfig {
                requests_per_sec,
                burst,
            },
            Instant::now(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = bucket(2.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.wait(Instant::now()), Duration::ZERO);
            bucket.take(Instant::now());
        }
        assert_eq!(bucket.wait(Instant::now()), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(bucket.wait(Instant::now()), Duration::ZERO);
        bucket.take(Instant::now());
        tokio::time::advance(Duration::from_secs(60)).await;
        let mut sent = 0;
        while bucket.wait(Instant::now()) == Duration::ZERO {
            bucket.take(Instant::now());
            sent += 1;
        }
        assert_eq!(sent, 3, "an idle bucket never holds more than its burst");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_and_budgets_pause_the_bucket() {
        let mut bucket = bucket(100.0, 100);
        bucket.pause_until(Instant::now() + Duration::from_secs(2));
        bucket.pause_until(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            bucket.wait(Instant::now()),
            Duration::from_secs(2),
            "the longest pause wins"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(bucket.wait(Instant::now()), Duration::ZERO);
        let budget = CostBudget {
            currently_available: 0.0,
            maximum_available: 100.0,
            restore_rate_per_sec: 50.0,
            next_request_cost: 10.0,
        };
        bucket.observe_budget(&budget, Instant::now());
        assert_eq!(bucket.wait(Instant::now()), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn an_emptied_bucket_waits_for_its_rate_without_a_burst() {
        let mut bucket = bucket(4.0, 8);
        let start = Instant::now();
        bucket.empty(start);
        assert_eq!(bucket.wait(start), Duration::from_millis(250));
        bucket.take(start + Duration::from_millis(250));
        assert_eq!(
            bucket.wait(start + Duration::from_millis(250)),
            Duration::from_millis(250),
            "no burst after emptying"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn extra_requests_are_charged_as_debt() {
        let mut bucket = bucket(1.0, 1);
        bucket.take(Instant::now());
        bucket.charge(2);
        assert_eq!(bucket.wait(Instant::now()), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_linked_bucket_shares_the_platform_quota_with_the_pollers() {
        use crate::platforms::quota::QuotaLimit;
        let quota = Arc::new(Quota::new("store", QuotaLimit::new(1.0, 2)));
        let mut bucket = bucket(100.0, 100).linked(Some(quota.clone()));
        // The poller spent the store's burst: the pusher waits for the store's rate.
        quota.acquire().await;
        quota.acquire().await;
        // One token of the store's rate, plus the transit margin.
        assert_eq!(bucket.wait(Instant::now()), Duration::from_millis(1_050));
        tokio::time::advance(Duration::from_millis(1_050)).await;
        assert_eq!(bucket.wait(Instant::now()), Duration::ZERO);
        bucket.take(Instant::now());
        bucket.charge(1);
        // The push's two requests count against the poller's budget too: from -0.95
        // tokens, 2 tokens to reach 1.05.
        assert_eq!(quota.wait(Instant::now()), Duration::from_secs(2));
        // A pause the platform imposed on anyone holds the pusher back.
        quota.pause_until(Instant::now() + Duration::from_secs(7));
        assert_eq!(bucket.wait(Instant::now()), Duration::from_secs(7));
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_full_jitter() {
        let retry = RetryConfig {
            initial_backoff_ms: 200,
            max_backoff_ms: 30_000,
        };
        let ceiling = |attempt| backoff_delay(&retry, attempt, |upper| upper);
        assert_eq!(ceiling(1), Duration::from_millis(200));
        assert_eq!(ceiling(2), Duration::from_millis(400));
        assert_eq!(ceiling(8), Duration::from_millis(25_600));
        assert_eq!(ceiling(9), Duration::from_millis(30_000));
        assert_eq!(ceiling(200), Duration::from_millis(30_000), "no overflow");
        assert_eq!(
            backoff_delay(&retry, 5, |_| 0),
            Duration::ZERO,
            "full jitter reaches zero"
        );
        for attempt in 1..20 {
            let delay = jittered_backoff(&retry, attempt);
            assert!(
                delay <= ceiling(attempt),
                "{delay:?} above the ceiling of attempt {attempt}"
            );
        }
    }
}
