//! A platform's request quota as one process sees it: the one place where every poller,
//! the reconciler's read-backs and the channel pusher learn how fast a platform lets them
//! call, and wait for it.
//!
//! Owns: [`Quota`] (a token bucket of `requests_per_sec` and `burst`, tightened by what the
//! platform says in its answers) and [`QuotaLimit`]. A quota is shared (`Arc`) by every
//! caller that the platform counts together; the platform clients hold one per budget the
//! platform keeps (PLATFORMS.md):
//! - Amazon SP-API: one per operation (§4.5; getOrders, getOrderItems and
//!   getInventorySummaries are separate from the listings and feeds the pusher uses);
//!   `x-amzn-RateLimit-Limit` (requests per second) replaces the configured rate, and a 429
//!   without `Retry-After` waits for one token of that rate;
//! - bol.com: one per endpoint group (§3.7); `x-ratelimit-remaining` 0 waits until
//!   `x-ratelimit-reset` (seconds);
//! - Shopify REST: the store's leaky bucket (§1.9); `X-Shopify-Shop-Api-Call-Limit: used/size`
//!   sets what is left;
//! - WooCommerce: one per store (§2.5, no limiter in core; hosts and WAFs answer 429/503).
//!
//! Every platform: `Retry-After` on a 429 (or a 503 that sends one), in delta-seconds or as
//! an HTTP-date ([`crate::platforms::http::parse_retry_after_ms`]), pauses the quota for
//! every caller. Callers that may wait (pollers, read-backs) call [`Quota::acquire`];
//! callers that must not block (the channel actor) ask [`Quota::wait`] and schedule.
//!
//! Time is tokio's clock (paused in tests). May depend on: `platforms::http`.

use super::http::{HttpAnswer, PlatformError};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The longest pause a platform's answer can impose (a longer `Retry-After` or reset is
/// cut to this), so one odd header cannot stop a channel for days.
pub const MAX_PAUSE: Duration = Duration::from_secs(60 * 60);

/// The part of a token a request that waits for the refill waits for beyond the one it
/// takes: the transit and clock margin (a twentieth of a token: 3 s at Amazon getOrders'
/// one per minute, 10 ms at 5 requests per second). Without it, a poller that refilled to
/// exactly one token met a 429 from the platform's bucket, a few milliseconds behind.
pub const TRANSIT_MARGIN_TOKENS: f64 = 0.05;

/// A request rate: `requests_per_sec` sustained, `burst` at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaLimit {
    /// Tokens restored per second (a fraction for slow operations: Amazon getOrders is
    /// 0.0167, one per minute).
    pub requests_per_sec: f64,
    /// Bucket size, in requests (at least 1).
    pub burst: u32,
}

impl QuotaLimit {
    /// A limit of `requests_per_sec` with `burst`.
    pub const fn new(requests_per_sec: f64, burst: u32) -> Self {
        Self {
            requests_per_sec,
            burst,
        }
    }
}

#[derive(Debug)]
struct State {
    rate_per_sec: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    /// A fixed window the platform reported: no request before `.1` once `.0` is 0.
    window: Option<(u32, Instant)>,
    /// 429 answers observed (a bounded counter, for tests and logs).
    throttled: u64,
}

impl State {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.capacity);
        self.last = self.last.max(now);
    }

    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let paused = self
            .paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        // A request that has to wait for the refill waits for a little more than one token,
        // so that it still finds a token at the platform, whose bucket refills by the time
        // the request arrives there, not by when it left here. A token already here goes.
        let missing = if self.tokens >= 1.0 {
            0.0
        } else {
            (1.0 + TRANSIT_MARGIN_TOKENS).min(self.capacity) - self.tokens
        };
        let refill =
            Duration::from_secs_f64((missing / self.rate_per_sec).min(MAX_PAUSE.as_secs_f64()));
        let window = match self.window {
            Some((0, reset_at)) => reset_at.saturating_duration_since(now),
            _ => Duration::ZERO,
        };
        paused.max(refill).max(window)
    }

    fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
        self.window = match self.window {
            Some((_, reset_at)) if now >= reset_at => None,
            Some((remaining, reset_at)) => Some((remaining.saturating_sub(1), reset_at)),
            None => None,
        };
    }

    fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(
            self.paused_until
                .map_or(until, |current| current.max(until)),
        );
    }
}

/// One budget of one platform account, shared by whoever the platform counts together.
#[derive(Debug)]
pub struct Quota {
    name: String,
    state: Mutex<State>,
}

impl Quota {
    /// A full bucket named `name` (in logs: `amazon:getOrders`, …) at `limit`.
    pub fn new(name: impl Into<String>, limit: QuotaLimit) -> Self {
        let capacity = f64::from(limit.burst.max(1));
        Self {
            name: name.into(),
            state: Mutex::new(State {
                rate_per_sec: positive_rate(limit.requests_per_sec),
                capacity,
                tokens: capacity,
                last: Instant::now(),
                paused_until: None,
                window: None,
                throttled: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sustained rate now in force, in requests per second (the configured one, or
    /// the one the platform last reported).
    pub fn requests_per_sec(&self) -> f64 {
        self.state().rate_per_sec
    }

    /// How many 429 answers this quota observed.
    pub fn throttled(&self) -> u64 {
        self.state().throttled
    }

    /// How long until one request may go; zero when it may go now.
    pub fn wait(&self, now: Instant) -> Duration {
        self.state().wait(now)
    }

    /// Takes a token for a request that goes now (after [`wait`](Self::wait) said zero);
    /// may go into debt.
    pub fn take(&self, now: Instant) {
        self.state().take(now);
    }

    /// Charges `requests` more requests (made by one call); may go into debt.
    pub fn charge(&self, requests: u32) {
        self.state().tokens -= f64::from(requests);
    }

    /// Sends nothing before `until` (a `Retry-After`, a backoff of the whole channel).
    pub fn pause_until(&self, until: Instant) {
        self.state()
            .pause_until(until.min(Instant::now() + MAX_PAUSE));
    }

    /// Waits (tokio time) until a request may go, then takes its token.
    pub async fn acquire(&self) {
        loop {
            let now = Instant::now();
            let wait = {
                let mut state = self.state();
                let wait = state.wait(now);
                if wait.is_zero() {
                    state.take(now);
                    return;
                }
                wait
            };
            tracing::debug!(quota = %self.name, wait_ms = wait.as_millis() as u64, "waiting for the platform's quota");
            tokio::time::sleep(wait).await;
        }
    }

    /// Learns from one answer of this budget: the rate (`x-amzn-RateLimit-Limit`), the
    /// window (`x-ratelimit-remaining` / `x-ratelimit-reset`), the bucket level
    /// (`X-Shopify-Shop-Api-Call-Limit`), and on a 429 (or a 503 with `Retry-After`) the
    /// pause: `Retry-After` when sent, else one token of the rate.
    pub fn observe(&self, answer: &HttpAnswer) {
        let now = Instant::now();
        let mut state = self.state();
        state.refill(now);
        if let Some(rate) = answer
            .header_f64("x-amzn-ratelimit-limit")
            .filter(|rate| *rate > 0.0)
        {
            state.rate_per_sec = positive_rate(rate);
        }
        if let Some(window) = super::http::RateLimitWindow::from_answer(answer) {
            let reset = Duration::from_secs(window.reset_secs).min(MAX_PAUSE);
            state.window = Some((window.remaining, now + reset));
        }
        if let Some((used, size)) = answer
            .header("x-shopify-shop-api-call-limit")
            .and_then(parse_call_limit)
            && size > 0
        {
            state.capacity = f64::from(size);
            state.tokens = state.tokens.min(f64::from(size.saturating_sub(used)));
        }
        let throttled =
            answer.status == 429 || (answer.status == 503 && answer.retry_after_ms.is_some());
        if throttled {
            state.throttled = state.throttled.saturating_add(1);
            match answer.retry_after_ms {
                Some(ms) => {
                    let pause = Duration::from_millis(ms).min(MAX_PAUSE);
                    state.pause_until(now + pause);
                }
                // No Retry-After (Amazon): the bucket is empty; wait for one token.
                None => state.tokens = state.tokens.min(0.0),
            }
            tracing::debug!(quota = %self.name, retry_after_ms = ?answer.retry_after_ms, "platform throttled a request");
        }
    }

    /// [`observe`](Self::observe) for a request's outcome (transport errors teach nothing).
    pub fn observe_result(&self, result: &Result<HttpAnswer, PlatformError>) {
        if let Ok(answer) = result {
            self.observe(answer);
        }
    }

    /// Waits for a token, runs `request`, and observes its answer: the way a poller or a
    /// read-back calls a platform.
    pub async fn paced<F>(&self, request: F) -> Result<HttpAnswer, PlatformError>
    where
        F: std::future::Future<Output = Result<HttpAnswer, PlatformError>>,
    {
        self.acquire().await;
        let result = request.await;
        self.observe_result(&result);
        result
    }
}

/// `used/size` of `X-Shopify-Shop-Api-Call-Limit` (PLATFORMS.md §1.9).
fn parse_call_limit(value: &str) -> Option<(u32, u32)> {
    let (used, size) = value.trim().split_once('/')?;
    Some((used.trim().parse().ok()?, size.trim().parse().ok()?))
}

fn positive_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        f64::MIN_POSITIVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn answer(
        status: u16,
        headers: &[(&'static str, &str)],
        retry_after_ms: Option<u64>,
    ) -> HttpAnswer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        HttpAnswer {
            status,
            headers: map,
            retry_after_ms,
            ..HttpAnswer::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_burst_goes_at_once_then_the_rate_and_the_platforms_rate_wins() {
        let quota = Quota::new("t", QuotaLimit::new(2.0, 3));
        let start = Instant::now();
        for _ in 0..3 {
            quota.acquire().await;
        }
        assert_eq!(Instant::now(), start, "the burst does not wait");
        // The refill: one token at 2/s plus the transit margin (a twentieth of a token).
        quota.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(525));
        // Amazon reports a slower rate: one request per 10 s from now on.
        quota.observe(&answer(200, &[("x-amzn-ratelimit-limit", "0.1")], None));
        assert_eq!(quota.requests_per_sec(), 0.1);
        quota.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(10_525));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_for_retry_after_or_one_token() {
        let quota = Quota::new("t", QuotaLimit::new(1.0, 5));
        let start = Instant::now();
        quota.observe(&answer(429, &[], Some(7_000)));
        assert_eq!(quota.wait(Instant::now()), Duration::from_secs(7));
        quota.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(7));
        // Without Retry-After (Amazon): the bucket is empty, one token of the rate (and the
        // transit margin).
        quota.observe(&answer(429, &[("x-amzn-ratelimit-limit", "0.5")], None));
        assert_eq!(quota.wait(Instant::now()), Duration::from_millis(2_100));
        assert_eq!(quota.throttled(), 2);
        // A Retry-After of a week is cut to the cap.
        quota.observe(&answer(429, &[], Some(7 * 86_400_000)));
        assert_eq!(quota.wait(Instant::now()), MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_window_waits_for_its_reset() {
        let quota = Quota::new("t", QuotaLimit::new(100.0, 100));
        quota.observe(&answer(
            200,
            &[
                ("x-ratelimit-limit", "25"),
                ("x-ratelimit-remaining", "1"),
                ("x-ratelimit-reset", "3"),
            ],
            None,
        ));
        let start = Instant::now();
        quota.acquire().await;
        assert_eq!(Instant::now(), start, "one request is left in the window");
        quota.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        quota.acquire().await;
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(3),
            "a new window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shopifys_call_limit_header_sets_what_is_left() {
        let quota = Quota::new("t", QuotaLimit::new(2.0, 40));
        quota.observe(&answer(
            200,
            &[("x-shopify-shop-api-call-limit", "40/40")],
            None,
        ));
        assert_eq!(quota.wait(Instant::now()), Duration::from_millis(525));
    }
}
