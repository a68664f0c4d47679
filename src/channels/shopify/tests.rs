//! The Shopify adapter: pure decoders, the listings CSV, and pushes against the simulator.

use super::config::{ListingMap, parse_listings_csv};
use super::response::{SetQuantitiesAnswer, UserError, decode_set_quantities};
use super::*;
use crate::config::ShopifyListingConfig;
use crate::platforms::PlatformError;
use crate::platforms::http::{HttpAnswer, parse_retry_after_ms};
use crate::platforms::shopify::graphql_throttle;
use crate::sandbox::shopify::{ShopifySimulator, ShopifySimulatorOptions, SimOrderLine};
use serde_json::json;
use std::path::Path;

const LOCATION: u64 = 7;

fn answer(status: u16, body: serde_json::Value) -> HttpAnswer {
    HttpAnswer {
        status,
        retry_after_ms: None,
        text: body.to_string(),
        body,
        ..HttpAnswer::default()
    }
}

#[test]
fn the_listings_csv_is_parsed_with_any_column_order_and_errors_name_the_line() {
    let pairs = parse_listings_csv(
        "inventory_item_id, sku\n# comment\n11, A-1\n12,B-2\n",
        Path::new("l.csv"),
    )
    .unwrap();
    assert_eq!(pairs, vec![("A-1".to_owned(), 11), ("B-2".to_owned(), 12)]);
    let error =
        parse_listings_csv("sku,inventory_item_id\nA,1\nB,x\n", Path::new("l.csv")).unwrap_err();
    assert!(
        matches!(error, ChannelError::Listings { line: 3, .. }),
        "{error}"
    );
    let error = parse_listings_csv("sku,item\nA,1\n", Path::new("l.csv")).unwrap_err();
    assert!(
        matches!(error, ChannelError::Listings { line: 1, .. }),
        "{error}"
    );
}

#[test]
fn a_sku_mapped_to_two_items_is_refused() {
    let error =
        ListingMap::from_pairs([("A".to_owned(), 1), ("A".to_owned(), 2)], "c").unwrap_err();
    assert!(matches!(error, ChannelError::InvalidConfig { .. }));
    let map = ListingMap::from_pairs([("A".to_owned(), 1), ("B".to_owned(), 2)], "c").unwrap();
    assert_eq!((map.item("B"), map.sku(1)), (Some(2), Some("A")));
}

#[test]
fn user_errors_name_their_quantity_index() {
    let body = json!({ "data": { "inventorySetQuantities": { "userErrors": [
        { "code": "CHANGE_FROM_QUANTITY_STALE", "field": ["input", "quantities", "2", "changeFromQuantity"], "message": "stale" },
        { "code": "INVALID_REASON", "field": ["input", "reason"], "message": "bad" },
    ] } } });
    let SetQuantitiesAnswer::UserErrors(errors) = decode_set_quantities(&answer(200, body)) else {
        panic!("expected user errors");
    };
    assert_eq!(
        errors[0],
        UserError {
            code: "CHANGE_FROM_QUANTITY_STALE".to_owned(),
            index: Some(2),
            message: "stale".to_owned()
        }
    );
    assert!(errors[0].is_stale());
    assert_eq!(errors[1].index, None);
}

#[test]
fn throttled_answers_are_recognised_with_status_200_or_429() {
    let body = json!({
        "errors": [{ "message": "Throttled", "extensions": { "code": "THROTTLED" } }],
        "extensions": { "cost": { "requestedQueryCost": 10, "actualQueryCost": null,
            "throttleStatus": { "maximumAvailable": 1000.0, "currentlyAvailable": 4, "restoreRate": 50.0 } } },
    });
    for status in [200, 429] {
        let answer = answer(status, body.clone());
        let signal = graphql_throttle(&answer, 1.0);
        assert!(signal.throttled);
        let budget = signal.budget.unwrap();
        assert_eq!(
            (budget.currently_available, budget.next_request_cost),
            (4.0, 10.0)
        );
        assert!(matches!(
            decode_set_quantities(&answer),
            SetQuantitiesAnswer::Failed(ChannelError::Platform(PlatformError::Throttled { .. }))
        ));
    }
    assert_eq!(parse_retry_after_ms("2.0"), Some(2000));
    assert_eq!(parse_retry_after_ms("1"), Some(1000));
    assert_eq!(parse_retry_after_ms("soon"), None);
}

async fn simulator(options: ShopifySimulatorOptions) -> ShopifySimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    crate::sandbox::shopify::start(options, listener)
        .await
        .unwrap()
}

fn adapter(sim: &ShopifySimulator, skus: &[(&str, u64)], use_rest: bool) -> ShopifyAdapter {
    ShopifyAdapter::new(
        "shopify-test",
        &config(sim, skus, use_rest),
        reqwest::Client::new(),
    )
    .unwrap()
}

fn config(sim: &ShopifySimulator, skus: &[(&str, u64)], use_rest: bool) -> ShopifyConfig {
    ShopifyConfig {
        shop_url: sim.base_url(),
        api_version: "2026-04".to_owned(),
        access_token: sim.options().access_token.clone(),
        webhook_secret: "secret".to_owned(),
        location_id: Some(LOCATION),
        location_map: Vec::new(),
        use_rest,
        listings: skus
            .iter()
            .map(|(sku, item)| ShopifyListingConfig {
                sku: (*sku).to_owned(),
                inventory_item_id: *item,
            })
            .collect(),
        listings_csv: None,
        orders_poll_interval_secs: 0,
        orders_poll_on_conflict: true,
        orders_poll_lookback_secs: 3600,
    }
}

fn item(sku: &str, quantity: u64, change_from: Option<i64>) -> PushItem {
    PushItem {
        sku: sku.to_owned(),
        quantity,
        change_from,
    }
}

#[tokio::test]
async fn a_graphql_push_sets_available_and_reports_the_budget() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(1, LOCATION, 0);
    sim.set_level(2, LOCATION, 3);
    let adapter = adapter(&sim, &[("A", 1), ("B", 2)], false);
    let report = adapter
        .push(&[item("A", 5, Some(0)), item("B", 4, None)])
        .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Accepted { quantity: 5 }
    );
    assert_eq!(
        (sim.level(1, LOCATION), sim.level(2, LOCATION)),
        (Some(5), Some(4))
    );
    assert!(report.throttle.budget.is_some());
    let levels = adapter
        .read_levels(&["A".to_owned(), "B".to_owned(), "Z".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        levels.levels,
        vec![
            ("A".to_owned(), Some(5)),
            ("B".to_owned(), Some(4)),
            ("Z".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn a_stale_item_becomes_a_conflict_with_the_channel_value_and_the_rest_is_deferred() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(1, LOCATION, 10);
    sim.set_level(2, LOCATION, 10);
    let line = SimOrderLine {
        inventory_item_id: 1,
        sku: "A".to_owned(),
        quantity: 3,
    };
    sim.place_order(LOCATION, &[line]).await.unwrap();
    let adapter = adapter(&sim, &[("A", 1), ("B", 2)], false);
    let report = adapter
        .push(&[item("A", 12, Some(10)), item("B", 12, Some(10))])
        .await;
    assert_eq!(
        report.results[0].outcome,
        ItemOutcome::Conflict { current: Some(7) }
    );
    assert_eq!(report.results[1].outcome, ItemOutcome::Deferred);
    assert_eq!(report.requests, 2, "the conflict costs one read");
    assert_eq!(
        sim.level(1, LOCATION),
        Some(7),
        "the channel's own decrement is kept"
    );
}

#[tokio::test]
async fn non_mutable_and_unmapped_items_are_rejected_alone() {
    let sim = simulator(ShopifySimulatorOptions {
        non_mutable_items: vec![2],
        ..Default::default()
    })
    .await;
    sim.set_level(1, LOCATION, 0);
    sim.set_level(2, LOCATION, 0);
    let adapter = adapter(&sim, &[("A", 1), ("B", 2)], false);
    let report = adapter
        .push(&[
            item("A", 1, None),
            item("B", 1, None),
            item("NOPE", 1, None),
        ])
        .await;
    assert_eq!(report.results[0].outcome, ItemOutcome::Deferred);
    assert!(
        matches!(&report.results[1].outcome, ItemOutcome::Rejected { code, .. } if code == "NON_MUTABLE_INVENTORY_ITEM")
    );
    assert!(
        matches!(&report.results[2].outcome, ItemOutcome::Rejected { code, .. } if code == "UNMAPPED_SKU")
    );
    let retry = adapter.push(&[item("A", 1, None)]).await;
    assert_eq!(
        retry.results[0].outcome,
        ItemOutcome::Accepted { quantity: 1 }
    );
}

#[tokio::test]
async fn a_wrong_token_is_a_user_error_without_retry() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    let wrong = ShopifyConfig {
        access_token: "wrong".to_owned(),
        ..config(&sim, &[("A", 1)], false)
    };
    let adapter = ShopifyAdapter::new("shopify-test", &wrong, reqwest::Client::new()).unwrap();
    let report = adapter.push(&[item("A", 1, None)]).await;
    let error = report.error.unwrap();
    assert_eq!(error.domain(), crate::channels::ErrorDomain::User);
    assert_eq!(error.retry_hint(), crate::channels::RetryHint::NoRetry);
}

#[tokio::test]
async fn a_throttled_batch_is_retried_with_the_same_idempotency_key() {
    let sim = simulator(ShopifySimulatorOptions {
        graphql_bucket_size: 15.0,
        graphql_points_per_sec: 0.001,
        ..Default::default()
    })
    .await;
    sim.set_level(1, LOCATION, 0);
    let adapter = adapter(&sim, &[("A", 1)], false);
    assert_eq!(
        adapter.push(&[item("A", 1, Some(0))]).await.results[0].outcome,
        ItemOutcome::Accepted { quantity: 1 }
    );
    let throttled = adapter.push(&[item("A", 2, Some(1))]).await;
    assert!(throttled.throttle.throttled);
    assert!(matches!(
        throttled.error,
        Some(ChannelError::Platform(PlatformError::Throttled { .. }))
    ));
    let key_after_throttle = adapter
        .unanswered
        .lock()
        .unwrap()
        .clone()
        .map(|(_, key)| key);
    assert_eq!(
        adapter.idempotency_key(&format!(
            "{:?}",
            [SetQuantity {
                item: 1,
                location: LOCATION,
                quantity: 2,
                change_from: Some(1)
            }]
        )),
        key_after_throttle.unwrap()
    );
    assert_ne!(
        adapter.idempotency_key("other content"),
        adapter.idempotency_key("other content")
    );
}

#[tokio::test]
async fn rest_pushes_one_level_per_call_and_reports_429() {
    let sim = simulator(ShopifySimulatorOptions {
        rest_bucket_size: 1,
        rest_leak_per_sec: 0.5,
        non_mutable_items: vec![3],
        ..Default::default()
    })
    .await;
    sim.set_level(1, LOCATION, 0);
    sim.set_level(3, LOCATION, 0);
    let adapter = adapter(&sim, &[("A", 1), ("C", 3)], true);
    assert_eq!(adapter.max_batch(), 1);
    let first = adapter.push(&[item("A", 4, None)]).await;
    assert_eq!(
        first.results[0].outcome,
        ItemOutcome::Accepted { quantity: 4 }
    );
    let second = adapter.push(&[item("C", 4, None)]).await;
    assert!(second.throttle.throttled);
    assert_eq!(second.throttle.retry_after_ms, Some(2000));
    assert!(matches!(
        second.results[0].outcome,
        ItemOutcome::Retryable { .. }
    ));
    assert_eq!(sim.level(1, LOCATION), Some(4));
}

/// The warehouse and the store of a two-location shop.
const WAREHOUSE: u64 = 100;
const STORE: u64 = 200;

fn two_locations(sim: &ShopifySimulator, skus: &[(&str, u64)], use_rest: bool) -> ShopifyAdapter {
    let mut config = config(sim, skus, use_rest);
    config.location_id = None;
    config.location_map = vec![
        crate::config::ShopifyLocationMap {
            shopify_location_id: WAREHOUSE,
            feeds: vec!["WH".to_owned()],
            name: Some("Warehouse".to_owned()),
        },
        crate::config::ShopifyLocationMap {
            shopify_location_id: STORE,
            feeds: vec!["STORE".to_owned(), "STORE-BACK".to_owned()],
            name: None,
        },
    ];
    ShopifyAdapter::new("shopify-test", &config, reqwest::Client::new()).unwrap()
}

#[tokio::test]
async fn a_multi_location_channel_lists_per_location_and_sets_them_in_one_call() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    for location in [WAREHOUSE, STORE] {
        sim.set_level(1, location, 0);
        sim.set_level(2, location, 0);
    }
    let adapter = two_locations(&sim, &[("A", 1), ("B", 2)], false);
    let locations = adapter.listing_locations();
    assert_eq!(locations.len(), 2);
    assert_eq!(locations[0].id, "100");
    assert_eq!(locations[0].name, "Warehouse");
    assert_eq!(locations[1].feeds, vec!["STORE", "STORE-BACK"]);
    assert_eq!(locations[1].name, "200", "the id names an unnamed location");
    assert!(adapter.is_mapped("A"), "a SKU is queued, then divided");
    assert!(adapter.is_mapped("A@100") && adapter.is_mapped("B@200"));
    assert!(
        !adapter.is_mapped("A@300"),
        "not one of the channel's locations"
    );
    assert!(!adapter.is_mapped("C@100"));
    assert_eq!(adapter.listing_count(), 4);

    let before = sim.counters().mutations_applied;
    let report = adapter
        .push(&[
            item("A@100", 5, Some(0)),
            item("A@200", 2, Some(0)),
            item("B@200", 7, None),
            item("A", 9, None),
        ])
        .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        sim.counters().mutations_applied - before,
        1,
        "one call for both locations"
    );
    let outcomes: Vec<&ItemOutcome> = report.results.iter().map(|r| &r.outcome).collect();
    assert_eq!(outcomes[0], &ItemOutcome::Accepted { quantity: 5 });
    assert_eq!(outcomes[1], &ItemOutcome::Accepted { quantity: 2 });
    assert_eq!(outcomes[2], &ItemOutcome::Accepted { quantity: 7 });
    assert!(
        matches!(outcomes[3], ItemOutcome::Rejected { code, .. } if code == "UNMAPPED_SKU"),
        "a bare SKU names no location: {:?}",
        outcomes[3]
    );
    assert_eq!(sim.level(1, WAREHOUSE), Some(5));
    assert_eq!(sim.level(1, STORE), Some(2));
    assert_eq!(sim.level(2, STORE), Some(7));
    assert_eq!(sim.level(2, WAREHOUSE), Some(0));

    // Read back per location, in the order asked.
    let levels = adapter
        .read_levels(&[
            "B@200".into(),
            "A@100".into(),
            "A@200".into(),
            "B@100".into(),
        ])
        .await
        .unwrap();
    assert_eq!(
        levels.levels,
        vec![
            ("B@200".to_owned(), Some(7)),
            ("A@100".to_owned(), Some(5)),
            ("A@200".to_owned(), Some(2)),
            ("B@100".to_owned(), Some(0)),
        ]
    );
    assert_eq!(levels.requests, 2, "one read per location");

    // Shopify's own level reports map back to the location's listing key.
    assert_eq!(
        adapter.listing_sku("1", "200"),
        ListingMatch::Sku("A@200".into())
    );
    assert_eq!(
        adapter.listing_sku("2", "100"),
        ListingMatch::Sku("B@100".into())
    );
    assert_eq!(adapter.listing_sku("1", "300"), ListingMatch::OtherLocation);
    assert_eq!(adapter.listing_sku("9", "100"), ListingMatch::Unmapped);
}

#[tokio::test]
async fn a_multi_location_channel_over_rest_sets_each_location() {
    let sim = simulator(ShopifySimulatorOptions::default()).await;
    sim.set_level(1, WAREHOUSE, 0);
    sim.set_level(1, STORE, 0);
    let adapter = two_locations(&sim, &[("A", 1)], true);
    for (key, quantity) in [("A@100", 3), ("A@200", 6)] {
        let report = adapter.push(&[item(key, quantity, None)]).await;
        assert_eq!(
            report.results[0].outcome,
            ItemOutcome::Accepted { quantity },
            "{key}"
        );
    }
    assert_eq!(sim.level(1, WAREHOUSE), Some(3));
    assert_eq!(sim.level(1, STORE), Some(6));
    let levels = adapter
        .read_levels(&["A@200".into(), "A@100".into()])
        .await
        .unwrap();
    assert_eq!(
        levels.levels,
        vec![("A@200".to_owned(), Some(6)), ("A@100".to_owned(), Some(3))]
    );
}
