//! Unit tests of the bol.com adapter against the simulator on 127.0.0.1:0: token caching
//! and refresh, process-status tracking, per-offer serialisation, the 999 cap, FAILURE
//! isolation and throttle signals.

use super::*;
use crate::config::BolcomListingConfig;
use crate::platforms::PlatformError;
use crate::sandbox::bolcom::{
    self as sim, BolcomSimulator, BolcomSimulatorOptions, EndpointLimit, ProcessOutcome, SimOffer,
};

async fn simulator(options: BolcomSimulatorOptions) -> BolcomSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim::start(options, listener).await.unwrap()
}

fn offers(count: usize) -> Vec<SimOffer> {
    (0..count)
        .map(|n| SimOffer {
            offer_id: format!("offer-{n}"),
            reference: format!("SKU-{n}"),
            ean: format!("871000000{n:04}"),
            amount: 0,
        })
        .collect()
}

fn adapter(sim: &BolcomSimulator, count: usize) -> BolcomAdapter {
    let config = BolcomConfig {
        api_url: sim.base_url(),
        token_url: sim.token_url(),
        client_id: "sandbox-client".to_owned(),
        client_secret: "sandbox-secret".to_owned(),
        order_poll_interval_ms: 0,
        poll_returns: false,
        process_status_wait_ms: 2_000,
        process_status_poll_ms: 5,
        request_timeout_ms: 2_000,
        max_amount: 999,
        listings: (0..count)
            .map(|n| BolcomListingConfig {
                sku: format!("SKU-{n}"),
                offer_id: format!("offer-{n}"),
                ean: None,
            })
            .collect(),
    };
    BolcomAdapter::new("bol-nl", &config, reqwest::Client::new()).unwrap()
}

fn item(sku: &str, quantity: u64) -> PushItem {
    PushItem {
        sku: sku.to_owned(),
        quantity,
        change_from: None,
    }
}

fn quick() -> BolcomSimulatorOptions {
    BolcomSimulatorOptions {
        offers: offers(3),
        process_delay_ms: 10,
        ..BolcomSimulatorOptions::default()
    }
}

#[tokio::test]
async fn a_push_waits_for_success_and_sets_managed_by_retailer() {
    let sim = simulator(quick()).await;
    let adapter = adapter(&sim, 3);
    let report = adapter.push_until_settled(&[item("SKU-1", 12)]).await;
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Accepted { quantity: 12 }
    );
    assert_eq!(report.requests, 1);
    let offer = sim.offer("offer-1").unwrap();
    assert_eq!((offer.amount, offer.managed_by_retailer), (12, true));
    assert!(
        report.throttle.budget.is_some(),
        "x-ratelimit-* became a budget"
    );
}

#[tokio::test]
async fn the_token_is_cached_and_fetched_again_once_after_a_401() {
    let sim = simulator(quick()).await;
    let adapter = adapter(&sim, 3);
    for n in 0..3 {
        adapter
            .push_until_settled(&[item(&format!("SKU-{n}"), 1)])
            .await;
    }
    assert_eq!(sim.counters().tokens_issued, 1);
    sim.expire_tokens();
    let report = adapter.push_until_settled(&[item("SKU-0", 2)]).await;
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Accepted { quantity: 2 }
    );
    assert_eq!(sim.counters().tokens_issued, 2);
}

#[tokio::test]
async fn amounts_above_999_are_capped() {
    let sim = simulator(quick()).await;
    let adapter = adapter(&sim, 3);
    let report = adapter.push_until_settled(&[item("SKU-0", 5_000)]).await;
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Accepted { quantity: 999 }
    );
    assert_eq!(sim.offer("offer-0").unwrap().amount, 999);
    assert_eq!(sim.counters().stock_updates_invalid, 0);
}

#[tokio::test]
async fn failure_is_rejected_and_timeout_is_retryable() {
    let sim = simulator(quick()).await;
    sim.set_offer_outcome("offer-1", Some(ProcessOutcome::Failure));
    sim.set_offer_outcome("offer-2", Some(ProcessOutcome::Timeout));
    let adapter = adapter(&sim, 3);
    let failed = adapter.push_until_settled(&[item("SKU-1", 3)]).await;
    assert!(
        matches!(&failed.results[0].outcome, ItemOutcome::Rejected { code, .. } if code == "PROCESS_STATUS_FAILURE"),
        "{failed:?}"
    );
    let timed_out = adapter.push_until_settled(&[item("SKU-2", 3)]).await;
    assert!(matches!(
        timed_out.results[0].outcome,
        ItemOutcome::Retryable { .. }
    ));
    let unmapped = adapter.push_until_settled(&[item("SKU-X", 3)]).await;
    assert!(
        matches!(&unmapped.results[0].outcome, ItemOutcome::Rejected { code, .. } if code == "UNMAPPED_SKU")
    );
    assert_eq!(unmapped.requests, 0);
}

#[tokio::test]
async fn pushes_of_one_offer_are_serialised_and_a_pending_update_blocks_the_next() {
    let sim = simulator(BolcomSimulatorOptions {
        offers: offers(1),
        process_delay_ms: 150,
        ..BolcomSimulatorOptions::default()
    })
    .await;
    let mut adapter = adapter(&sim, 1);
    adapter.config.process_status_wait_ms = 20;
    let adapter = Arc::new(adapter);
    let first = adapter.push_until_settled(&[item("SKU-0", 5)]).await;
    assert!(
        matches!(first.results[0].outcome, ItemOutcome::Retryable { .. }),
        "still PENDING"
    );
    let second = adapter.push_until_settled(&[item("SKU-0", 6)]).await;
    assert!(matches!(
        second.results[0].outcome,
        ItemOutcome::Retryable { .. }
    ));
    assert_eq!(
        second.requests, 0,
        "no PUT while the previous update is pending"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let same = adapter.push_until_settled(&[item("SKU-0", 5)]).await;
    assert_eq!(
        same.results[0].outcome,
        ItemOutcome::Accepted { quantity: 5 }
    );
    assert_eq!(
        same.requests, 0,
        "the pending update succeeded with the same amount"
    );
    // Concurrent pushes of one offer never overlap at bol.
    let (a, b) = tokio::join!(
        {
            let adapter = adapter.clone();
            async move { adapter.push_until_settled(&[item("SKU-0", 7)]).await }
        },
        {
            let adapter = adapter.clone();
            async move { adapter.push_until_settled(&[item("SKU-0", 8)]).await }
        }
    );
    assert_eq!(a.results.len() + b.results.len(), 2);
    assert_eq!(sim.counters().overlapping_updates, 0);
}

#[tokio::test]
async fn a_429_is_a_throttle_signal_with_retry_after() {
    let sim = simulator(BolcomSimulatorOptions {
        offers: offers(2),
        process_delay_ms: 0,
        stock_limit: EndpointLimit {
            requests: 1,
            window_ms: 60_000,
        },
        ..BolcomSimulatorOptions::default()
    })
    .await;
    let adapter = adapter(&sim, 2);
    let first = adapter.push_until_settled(&[item("SKU-0", 1)]).await;
    assert_eq!(
        first.results[0].outcome,
        ItemOutcome::Accepted { quantity: 1 }
    );
    let budget = first.throttle.budget.unwrap();
    assert!(budget.wait_ms() > 0, "remaining 0 means wait for the reset");
    let second = adapter.push_until_settled(&[item("SKU-1", 1)]).await;
    assert!(second.throttle.throttled);
    assert!(second.throttle.retry_after_ms.unwrap() >= 1_000);
    assert!(matches!(
        second.error,
        Some(ChannelError::Platform(PlatformError::Throttled { .. }))
    ));
}

#[tokio::test]
async fn read_levels_returns_the_offer_amount() {
    let sim = simulator(quick()).await;
    let adapter = adapter(&sim, 3);
    adapter.push_until_settled(&[item("SKU-2", 4)]).await;
    let levels = adapter
        .read_levels(&["SKU-2".to_owned(), "SKU-9".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        levels.levels,
        vec![("SKU-2".to_owned(), Some(4)), ("SKU-9".to_owned(), None)]
    );
}
