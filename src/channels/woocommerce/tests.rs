//! Adapter tests against the WooCommerce simulator on 127.0.0.1:0 (PLATFORMS.md §2.2).

use super::config::{Listing, parse_listings_csv};
use super::*;
use crate::config::WoocommerceListingConfig;
use crate::platforms::PlatformError;
use crate::sandbox::woocommerce::{self as sim, WoocommerceSimulator, WoocommerceSimulatorOptions};
use std::path::Path;

async fn simulator(options: WoocommerceSimulatorOptions) -> WoocommerceSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim::start(options, listener).await.unwrap()
}

fn config(
    sim: &WoocommerceSimulator,
    listings: &[(&str, u64, Option<u64>)],
    batch_limit: usize,
) -> WoocommerceConfig {
    WoocommerceConfig {
        site_url: sim.base_url(),
        consumer_key: sim.options().consumer_key.clone(),
        consumer_secret: sim.options().consumer_secret.clone(),
        auth_in_query: false,
        webhook_secret: "unused".to_owned(),
        batch_limit,
        poll_interval_secs: 0,
        poll_lookback_secs: 0,
        timeout_secs: 5,
        listings: listings
            .iter()
            .map(|(sku, product_id, variation_id)| WoocommerceListingConfig {
                sku: (*sku).to_owned(),
                product_id: *product_id,
                variation_id: *variation_id,
            })
            .collect(),
        listings_csv: None,
    }
}

fn item(sku: &str, quantity: u64) -> PushItem {
    PushItem {
        sku: sku.to_owned(),
        quantity,
        change_from: Some(123),
    }
}

#[tokio::test]
async fn simple_products_and_variations_are_set_with_manage_stock_through_their_batch_endpoints() {
    let sim = simulator(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", None);
    sim.set_variation(20, 21, "TEE-M", None);
    sim.set_product_stock(20, Some(9));
    let adapter = WoocommerceAdapter::new(
        "woo",
        &config(&sim, &[("MUG", 10, None), ("TEE-M", 20, Some(21))], 100),
        reqwest::Client::new(),
    )
    .unwrap();
    let report = adapter
        .push(&[item("MUG", 4), item("TEE-M", 2), item("NOPE", 1)])
        .await;
    assert_eq!(report.requests, 2, "one batch per endpoint");
    assert!(report.error.is_none());
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Accepted { quantity: 4 }
    );
    assert_eq!(
        report.results[1].outcome,
        ItemOutcome::Accepted { quantity: 2 }
    );
    assert!(
        matches!(&report.results[2].outcome, ItemOutcome::Rejected { code, .. } if code == "UNMAPPED_SKU")
    );
    assert_eq!(sim.stock(10, 0), Some(4), "manage_stock was switched on");
    assert_eq!(
        sim.stock(20, 21),
        Some(2),
        "the variation now manages its own stock"
    );
    assert_eq!(sim.stock(20, 0), Some(9), "the parent is untouched");
    let levels = adapter
        .read_levels(&["MUG".to_owned(), "TEE-M".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        levels.levels,
        vec![("MUG".to_owned(), Some(4)), ("TEE-M".to_owned(), Some(2))]
    );
}

#[tokio::test]
async fn a_413_splits_the_batch_and_the_smaller_limit_is_kept() {
    let sim = simulator(WoocommerceSimulatorOptions {
        batch_limit: 3,
        ..Default::default()
    })
    .await;
    let listings: Vec<(String, u64)> = (0..7).map(|n| (format!("S{n}"), 100 + n)).collect();
    for (sku, id) in &listings {
        sim.set_product(*id, sku, Some(0));
    }
    let refs: Vec<(&str, u64, Option<u64>)> = listings
        .iter()
        .map(|(sku, id)| (sku.as_str(), *id, None))
        .collect();
    let adapter =
        WoocommerceAdapter::new("woo", &config(&sim, &refs, 10), reqwest::Client::new()).unwrap();
    let items: Vec<PushItem> = listings.iter().map(|(sku, _)| item(sku, 6)).collect();
    let report = adapter.push(&items).await;
    assert!(
        report
            .results
            .iter()
            .all(|result| result.outcome == ItemOutcome::Accepted { quantity: 6 })
    );
    assert_eq!(report.requests, 4, "one 413, then 3 + 3 + 1");
    assert_eq!(adapter.max_batch(), 3);
    assert_eq!(sim.counters().batches_too_large, 1);
    for (_, id) in &listings {
        assert_eq!(sim.stock(*id, 0), Some(6));
    }
}

#[tokio::test]
async fn a_failed_item_is_isolated_and_throttling_is_reported() {
    let sim = simulator(WoocommerceSimulatorOptions {
        failing_items: vec![11],
        ..Default::default()
    })
    .await;
    for id in 10..13 {
        sim.set_product(id, &format!("S{id}"), Some(0));
    }
    let adapter = WoocommerceAdapter::new(
        "woo",
        &config(
            &sim,
            &[("A", 10, None), ("B", 11, None), ("C", 12, None)],
            100,
        ),
        reqwest::Client::new(),
    )
    .unwrap();
    let report = adapter
        .push(&[item("A", 1), item("B", 1), item("C", 1)])
        .await;
    assert_eq!(report.requests, 1);
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Accepted { quantity: 1 }
    );
    assert!(
        matches!(&report.results[1].outcome, ItemOutcome::Rejected { code, .. } if code == "woocommerce_rest_cannot_edit")
    );
    assert_eq!(
        report.results[2].outcome,
        ItemOutcome::Accepted { quantity: 1 }
    );

    sim.inject_failures(429, 1, Some(2));
    let throttled = adapter.push(&[item("A", 2)]).await;
    assert!(throttled.throttle.throttled);
    assert_eq!(throttled.throttle.retry_after_ms, Some(2000));
    assert!(matches!(
        throttled.error,
        Some(ChannelError::Platform(PlatformError::Throttled { .. }))
    ));
    assert!(matches!(
        throttled.results[0].outcome,
        ItemOutcome::Retryable { .. }
    ));

    sim.inject_failures(503, 1, Some(1));
    let waf = adapter.push(&[item("A", 2)]).await;
    assert!(
        waf.throttle.throttled,
        "503 with Retry-After pauses the channel"
    );
    assert!(matches!(
        waf.error,
        Some(ChannelError::Platform(PlatformError::Server {
            status: 503,
            ..
        }))
    ));
}

#[tokio::test]
async fn query_parameter_auth_works_and_bad_credentials_are_a_user_error() {
    let sim = simulator(WoocommerceSimulatorOptions::default()).await;
    sim.set_product(10, "MUG", Some(0));
    let mut query = config(&sim, &[("MUG", 10, None)], 100);
    query.auth_in_query = true;
    let adapter = WoocommerceAdapter::new("woo", &query, reqwest::Client::new()).unwrap();
    let report = adapter.push(&[item("MUG", 3)]).await;
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Accepted { quantity: 3 }
    );
    let mut wrong = config(&sim, &[("MUG", 10, None)], 100);
    wrong.consumer_secret = "cs_wrong".to_owned();
    let adapter = WoocommerceAdapter::new("woo", &wrong, reqwest::Client::new()).unwrap();
    let report = adapter.push(&[item("MUG", 5)]).await;
    let error = report.error.unwrap();
    assert!(matches!(
        error,
        ChannelError::Platform(PlatformError::Unauthorized { status: 401, .. })
    ));
    assert_eq!(error.domain(), crate::channels::ErrorDomain::User);
    assert_eq!(sim.stock(10, 0), Some(3));
}

#[test]
fn listings_csv_maps_simple_products_and_variations() {
    let text = "# comment\nsku,product_id,variation_id\nMUG,10,\nTEE-M,20,21\nPOSTER,30,0\n";
    let pairs = parse_listings_csv(text, Path::new("l.csv")).unwrap();
    assert_eq!(
        pairs,
        vec![
            ("MUG".to_owned(), Listing::Product { product_id: 10 }),
            (
                "TEE-M".to_owned(),
                Listing::Variation {
                    product_id: 20,
                    variation_id: 21
                }
            ),
            ("POSTER".to_owned(), Listing::Product { product_id: 30 }),
        ]
    );
    let error = parse_listings_csv("sku,product_id\nX,abc\n", Path::new("l.csv")).unwrap_err();
    assert!(
        matches!(error, ChannelError::Listings { line: 2, .. }),
        "{error}"
    );
    assert!(parse_listings_csv("sku,item\n", Path::new("l.csv")).is_err());
}

#[test]
fn the_413_message_names_the_limit() {
    let answer = HttpAnswer {
        status: 413,
        retry_after_ms: None,
        body: serde_json::json!({"code": response::TOO_LARGE_CODE, "message": "Unable to accept more than 25 items for this request."}),
        text: String::new(),
        ..HttpAnswer::default()
    };
    assert_eq!(response::too_large_limit(&answer), Some(25));
    assert_eq!(
        crate::platforms::http::parse_retry_after_ms("2"),
        Some(2000)
    );
    assert_eq!(crate::platforms::http::encode("a b&c"), "a%20b%26c");
}
