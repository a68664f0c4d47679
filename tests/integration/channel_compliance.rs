//! The channel compliance suite (issue 4): every adapter, driven by the real
//! `Propagation` against its platform simulator, must
//! - never exceed its rate budget by more than 5 % in any 10 s (and 5 s) window;
//! - honour 429 + `Retry-After` (no request inside the window);
//! - retry 5xx answers and timeouts with backoff;
//! - isolate a permanently failing item without blocking the rest of its batch;
//! - converge after an outage;
//! - emit its metrics.
//!
//! The harness and the targets live in `tests/integration/compliance/`; one line per target
//! below.

use crate::compliance::{ComplianceTarget, Harness, Pacing, max_in_window};
use std::time::Duration;

/// Pacing generous enough that only the behaviour under test spaces requests.
const FAST: Pacing = Pacing {
    requests_per_sec: 100.0,
    burst: 100,
};

/// Offers more work than the budget allows for 6 s and checks every window.
pub async fn rate_budget_is_never_exceeded<T: ComplianceTarget>() {
    let pacing = Pacing {
        requests_per_sec: 4.0,
        burst: 4,
    };
    let mut harness = Harness::<T>::start("rate", 8, &[], pacing).await;
    let started = tokio::time::Instant::now();
    let mut value = 1;
    while started.elapsed() < Duration::from_secs(6) {
        harness.publish([(value as usize) % 8], value);
        value += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    harness.flush(Duration::from_secs(20)).await;
    let log = harness.proxy.requests_log();
    assert!(
        log.len() >= 12,
        "{}: the offered load must saturate the budget ({} requests)",
        T::NAME,
        log.len()
    );
    for window_secs in [5.0_f64, 10.0] {
        let budget = f64::from(pacing.burst) + pacing.requests_per_sec * window_secs;
        let seen = max_in_window(&log, Duration::from_secs_f64(window_secs));
        assert!(
            seen as f64 <= budget * 1.05,
            "{}: {seen} requests in a {window_secs} s window, budget {budget}",
            T::NAME
        );
    }
    for n in 0..8 {
        assert!(harness.listed(n).is_some_and(|listed| listed > 0));
    }
    harness.stop().await;
}

/// A 429 with `Retry-After: 1` pauses the channel for a full second.
pub async fn retry_after_is_honoured<T: ComplianceTarget>() {
    let mut harness = Harness::<T>::start("retry-after", 3, &[], FAST).await;
    harness.proxy.fail_next(1, 429, Some(1));
    harness.publish(0..3, 9);
    harness.flush(Duration::from_secs(10)).await;
    for n in 0..3 {
        assert_eq!(harness.listed(n), Some(9), "{}", T::NAME);
    }
    let throttled = harness.proxy.throttled_at();
    assert_eq!(throttled.len(), 1);
    let after: Vec<_> = harness
        .proxy
        .requests_log()
        .into_iter()
        .filter(|at| *at > throttled[0])
        .collect();
    assert!(!after.is_empty());
    assert!(
        after
            .iter()
            .all(|at| *at >= throttled[0] + Duration::from_secs(1)),
        "{}: a request came inside the Retry-After window",
        T::NAME
    );
    assert_eq!(harness.proxy.retry_after_violations(), 0);
    assert_eq!(harness.status().throttled_total, 1);
    harness.stop().await;
}

/// Four 5xx answers and two timeouts are retried, spaced by backoff, until accepted.
pub async fn server_errors_and_timeouts_are_retried_with_backoff<T: ComplianceTarget>() {
    let mut harness = Harness::<T>::start("retry", 1, &[], FAST).await;
    harness.proxy.fail_next(2, 500, None);
    harness.proxy.fail_next(2, 503, None);
    harness.proxy.stall_next(2, 1_500);
    harness.publish([0], 5);
    harness.flush(Duration::from_secs(20)).await;
    assert_eq!(harness.listed(0), Some(5), "{}", T::NAME);
    let log = harness.proxy.requests_log();
    assert_eq!(
        log.len(),
        7,
        "{}: six failed attempts, one success, no duplicates",
        T::NAME
    );
    // Full-jitter backoff (100 ms doubling to 800 ms) over six failures: the chance that
    // the retries all land within 150 ms of each other is about 4e-6.
    let retry_span = log[6].duration_since(log[0]);
    assert!(
        retry_span >= Duration::from_millis(150),
        "{}: retries were not spaced by backoff ({retry_span:?})",
        T::NAME
    );
    assert!(harness.status().errors_total >= 6);
    harness.stop().await;
}

/// A refused item is isolated; the other nine of its batch are listed.
pub async fn a_permanently_failing_item_is_isolated<T: ComplianceTarget>() {
    let bad = 3;
    let mut harness = Harness::<T>::start("isolation", 10, &[bad], FAST).await;
    harness.publish(0..10, 6);
    harness.flush(Duration::from_secs(10)).await;
    // The isolated listing is retried alone, paced by backoff, for as long as the flush
    // takes, which on a slow machine is longer: its requests beyond the two the budget
    // allows (its first try and one retry alone) say nothing about the good items.
    let paths = harness.proxy.requests_paths();
    let bad_alone = paths
        .iter()
        .filter(|path| T::request_is_only_for(path, &harness.skus[bad]))
        .count();
    let first_round = paths.len() - bad_alone.saturating_sub(2);
    assert!(
        first_round <= T::good_items_request_budget(9),
        "{}: the nine good items needed {first_round} requests",
        T::NAME
    );
    for round in [6, 8] {
        if round == 8 {
            harness.publish(0..10, 8);
            harness.flush(Duration::from_secs(10)).await;
        }
        for n in (0..10).filter(|n| *n != bad) {
            assert_eq!(harness.listed(n), Some(round), "{} SKU {n}", T::NAME);
        }
    }
    assert_eq!(harness.listed(bad), Some(0));
    let status = harness.status();
    assert_eq!(status.isolated, 1, "{}", T::NAME);
    assert!(status.rejected_total >= 1);
    harness.stop().await;
}

/// During an outage nothing lands; afterwards the newest values do.
pub async fn the_adapter_converges_after_an_outage<T: ComplianceTarget>() {
    let mut harness = Harness::<T>::start("outage", 5, &[], FAST).await;
    harness.proxy.set_outage(true);
    harness.publish(0..5, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    harness.publish(0..5, 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    for n in 0..5 {
        assert_eq!(
            harness.listed(n),
            Some(0),
            "{}: nothing lands in an outage",
            T::NAME
        );
    }
    // Every request fails in an outage, including the uncounted steps (an Amazon feed
    // document, a bol.com process status), so count every attempt.
    assert!(harness.proxy.attempts() > 0, "it kept trying");
    harness.proxy.set_outage(false);
    harness.flush(Duration::from_secs(15)).await;
    for n in 0..5 {
        assert_eq!(harness.listed(n), Some(4), "{} SKU {n}", T::NAME);
    }
    harness.stop().await;
}

/// Pushes, lag, queue depth, throttling and errors are in the Prometheus output with the
/// channel label.
pub async fn metrics_are_emitted<T: ComplianceTarget>() {
    let mut harness = Harness::<T>::start("metrics", 2, &[], FAST).await;
    harness.proxy.fail_next(1, 429, Some(1));
    harness.proxy.fail_next(1, 500, None);
    harness.publish(0..2, 2);
    harness.flush(Duration::from_secs(15)).await;
    let text = stocksync::telemetry::prometheus().render();
    let channel = format!("channel=\"{}\"", harness.channel);
    for name in [
        "stocksync_propagation_pushes_total",
        "stocksync_propagation_queue_depth",
        "stocksync_propagation_lag_seconds",
        "stocksync_channel_throttled_total",
        "stocksync_channel_errors_total",
    ] {
        assert!(
            text.lines()
                .any(|line| line.starts_with(name) && line.contains(&channel)),
            "{}: no {name} for {channel}",
            T::NAME
        );
    }
    assert!(
        text.lines().any(
            |line| line.starts_with("stocksync_propagation_pushes_total")
                && line.contains(&channel)
                && line.contains("outcome=\"accepted\"")
        ),
        "{}: accepted pushes not counted",
        T::NAME
    );
    harness.stop().await;
}

/// One line per target: the full suite for that adapter.
macro_rules! compliance_suite {
    ($module:ident, $target:ty) => {
        mod $module {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rate_budget_is_never_exceeded() {
                super::rate_budget_is_never_exceeded::<$target>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retry_after_is_honoured() {
                super::retry_after_is_honoured::<$target>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_errors_and_timeouts_are_retried_with_backoff() {
                super::server_errors_and_timeouts_are_retried_with_backoff::<$target>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_permanently_failing_item_is_isolated() {
                super::a_permanently_failing_item_is_isolated::<$target>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_adapter_converges_after_an_outage() {
                super::the_adapter_converges_after_an_outage::<$target>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn metrics_are_emitted() {
                super::metrics_are_emitted::<$target>().await;
            }
        }
    };
}

compliance_suite!(shopify, crate::compliance::shopify::ShopifyTarget);
compliance_suite!(
    woocommerce,
    crate::compliance::woocommerce::WoocommerceTarget
);
compliance_suite!(amazon, crate::compliance::amazon::AmazonTarget);
compliance_suite!(bolcom, crate::compliance::bolcom::BolcomTarget);
