//! Tests of the Amazon adapter against the Amazon simulator on 127.0.0.1:0
//! (`crate::sandbox::amazon`, PLATFORMS.md §4): single PATCH, feed with a processing
//! report, FBA guard, token refresh, 429 and 5xx handling, feed budget.

use super::*;
use crate::channels::{ChannelAdapter, ItemOutcome, PushItem};
use crate::config::AmazonConfig;
use crate::platforms::PlatformError;
use crate::sandbox::amazon::{
    self, AmazonSimulator, AmazonSimulatorOptions, RateLimit, RateLimits, SimListing,
};

async fn simulator(options: AmazonSimulatorOptions) -> AmazonSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    amazon::start(options, listener).await.unwrap()
}

fn options(skus: &[&str], fba: &[&str]) -> AmazonSimulatorOptions {
    AmazonSimulatorOptions {
        apply_delay_ms: 0,
        feed_processing_ms: 20,
        rate_limits: RateLimits::generous(1_000.0, 1_000),
        listings: skus
            .iter()
            .map(|sku| SimListing {
                seller_sku: format!("{sku}-NL"),
                quantity: Some(0),
                fba: false,
                fba_fulfillable: 0,
            })
            .chain(fba.iter().map(|sku| SimListing {
                seller_sku: format!("{sku}-NL"),
                quantity: None,
                fba: true,
                fba_fulfillable: 4,
            }))
            .collect(),
        ..AmazonSimulatorOptions::default()
    }
}

/// The adapter's config for the simulator: every SKU mapped to `<sku>-NL`.
fn config(sim: &AmazonSimulator, skus: &[&str], fba: &[&str], extra: &str) -> AmazonConfig {
    let options = sim.options();
    let listings: Vec<String> = skus
        .iter()
        .map(|sku| format!("{{ sku = \"{sku}\", seller_sku = \"{sku}-NL\" }}"))
        .chain(
            fba.iter()
                .map(|sku| format!("{{ sku = \"{sku}\", seller_sku = \"{sku}-NL\", fba = true }}")),
        )
        .collect();
    toml::from_str(&format!(
        r#"
        api_url = "{api}"
        token_url = "{token}"
        client_id = "{client_id}"
        client_secret = "{client_secret}"
        refresh_token = "{refresh_token}"
        seller_id = "{seller_id}"
        marketplace_id = "{marketplace_id}"
        feed_min_items = 3
        feed_poll_ms = 5
        feed_wait_ms = 5000
        {extra}
        listings = [{listings}]
        "#,
        api = sim.base_url(),
        token = sim.token_url(),
        client_id = options.client_id,
        client_secret = options.client_secret,
        refresh_token = options.refresh_token,
        seller_id = options.seller_id,
        marketplace_id = options.marketplace_id,
        listings = listings.join(", "),
    ))
    .unwrap()
}

fn adapter(config: &AmazonConfig) -> AmazonAdapter {
    AmazonAdapter::new("amazon-test", config, reqwest::Client::new()).unwrap()
}

fn items(skus: &[&str], quantity: u64) -> Vec<PushItem> {
    skus.iter()
        .map(|sku| PushItem {
            sku: (*sku).to_owned(),
            quantity,
            change_from: None,
        })
        .collect()
}

fn outcomes(report: &PushReport) -> Vec<ItemOutcome> {
    report
        .results
        .iter()
        .map(|result| result.outcome.clone())
        .collect()
}

#[tokio::test]
async fn a_single_patch_sets_the_default_quantity_and_defers_the_rest() {
    let sim = simulator(options(&["A", "B"], &[])).await;
    let adapter = adapter(&config(&sim, &["A", "B"], &[], ""));
    let report = adapter.push_until_settled(&items(&["A", "B"], 6)).await;
    assert_eq!(
        outcomes(&report),
        vec![ItemOutcome::Accepted { quantity: 6 }, ItemOutcome::Deferred]
    );
    assert_eq!(report.requests, 1);
    assert!(report.error.is_none());
    assert_eq!(sim.quantity("A-NL"), Some(6));
    assert_eq!(sim.quantity("B-NL"), Some(0));
    let entry = &sim.listing("A-NL").unwrap().fulfillment_availability[0];
    assert_eq!(entry["fulfillment_channel_code"], "DEFAULT");
    let levels = adapter
        .read_levels(&["A".to_owned(), "Z".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        levels.levels,
        vec![("A".to_owned(), Some(6)), ("Z".to_owned(), None)]
    );
}

#[tokio::test]
async fn a_feed_maps_its_processing_report_to_per_item_outcomes() {
    let mut sim_options = options(&["A", "B", "C"], &["F"]);
    sim_options.rejected_skus = vec!["B-NL".to_owned()];
    let sim = simulator(sim_options).await;
    let adapter = adapter(&config(&sim, &["A", "B", "C"], &["F"], ""));
    let report = adapter
        .push_until_settled(&items(&["A", "B", "C", "F", "NOPE"], 9))
        .await;
    let outcomes = outcomes(&report);
    assert_eq!(outcomes[0], ItemOutcome::Accepted { quantity: 9 });
    assert!(
        matches!(&outcomes[1], ItemOutcome::Rejected { code, .. } if code == "90220"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], ItemOutcome::Accepted { quantity: 9 });
    assert!(matches!(&outcomes[3], ItemOutcome::Rejected { code, .. } if code == "FBA_SKU"));
    assert!(matches!(&outcomes[4], ItemOutcome::Rejected { code, .. } if code == "UNMAPPED_SKU"));
    assert_eq!(report.requests, 1, "a feed is charged as one push");
    let counters = sim.counters();
    assert_eq!(counters.feeds_done, 1);
    assert_eq!(
        (
            counters.feed_messages_accepted,
            counters.feed_messages_invalid
        ),
        (2, 1)
    );
    assert_eq!(counters.patches_received, 0);
    assert_eq!(
        counters.fba_default_patches, 0,
        "the FBA SKU was never sent"
    );
    assert_eq!(sim.quantity("A-NL"), Some(9));
    assert_eq!(sim.quantity("B-NL"), Some(0));
}

#[tokio::test]
async fn fba_skus_are_never_mapped_nor_sent() {
    let sim = simulator(options(&["A"], &["F"])).await;
    let adapter = adapter(&config(&sim, &["A"], &["F"], ""));
    assert!(adapter.is_mapped("A"));
    assert!(!adapter.is_mapped("F"));
    assert_eq!(adapter.listing_count(), 1);
    let report = adapter.push_until_settled(&items(&["F"], 3)).await;
    assert!(
        matches!(&outcomes(&report)[0], ItemOutcome::Rejected { code, .. } if code == "FBA_SKU")
    );
    assert_eq!(report.requests, 0);
    assert_eq!(sim.counters().requests, 0, "not even a token was fetched");
    let listing = sim.listing("F-NL").unwrap();
    assert!(listing.fba);
    assert_eq!(listing.quantity, None);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_push_succeeds() {
    let sim = simulator(options(&["A"], &[])).await;
    let adapter = adapter(&config(&sim, &["A"], &[], ""));
    let first = adapter.push_until_settled(&items(&["A"], 1)).await;
    assert_eq!(outcomes(&first)[0], ItemOutcome::Accepted { quantity: 1 });
    sim.expire_tokens();
    let second = adapter.push_until_settled(&items(&["A"], 2)).await;
    assert_eq!(outcomes(&second)[0], ItemOutcome::Accepted { quantity: 2 });
    let counters = sim.counters();
    assert_eq!(counters.tokens_issued, 2);
    assert_eq!(counters.unauthorized, 1);
    assert_eq!(sim.quantity("A-NL"), Some(2));
}

#[tokio::test]
async fn a_throttled_patch_is_retryable_with_the_pause_of_the_rate_header() {
    let mut sim_options = options(&["A"], &[]);
    sim_options.rate_limits.patch_listings_item = RateLimit {
        requests_per_sec: 2.0,
        burst: 1,
    };
    let sim = simulator(sim_options).await;
    let adapter = adapter(&config(&sim, &["A"], &[], ""));
    adapter.push_until_settled(&items(&["A"], 1)).await;
    let throttled = adapter.push_until_settled(&items(&["A"], 2)).await;
    assert!(matches!(
        outcomes(&throttled)[0],
        ItemOutcome::Retryable { .. }
    ));
    assert!(throttled.throttle.throttled);
    assert_eq!(
        throttled.throttle.retry_after_ms,
        Some(500),
        "no Retry-After: one token of x-amzn-RateLimit-Limit"
    );
    assert_eq!(sim.counters().throttled, 1);
    assert_eq!(sim.quantity("A-NL"), Some(1));
}

#[tokio::test]
async fn server_errors_are_retryable_and_an_outage_converges() {
    let sim = simulator(options(&["A"], &[])).await;
    let adapter = adapter(&config(&sim, &["A"], &[], ""));
    sim.fail_next_patches(1, 503);
    let failed = adapter.push_until_settled(&items(&["A"], 4)).await;
    assert!(matches!(
        outcomes(&failed)[0],
        ItemOutcome::Retryable { .. }
    ));
    assert!(matches!(
        failed.error,
        Some(ChannelError::Platform(PlatformError::Server {
            status: 503,
            ..
        }))
    ));
    let again = adapter.push_until_settled(&items(&["A"], 4)).await;
    assert_eq!(outcomes(&again)[0], ItemOutcome::Accepted { quantity: 4 });
}

#[tokio::test]
async fn the_feed_budget_is_spent_on_submissions_only_then_single_patches_take_over() {
    let mut sim_options = options(&["A", "B", "C"], &[]);
    sim_options.json_feeds_per_window = 1;
    let sim = simulator(sim_options).await;
    let adapter = adapter(&config(&sim, &["A", "B", "C"], &[], "feeds_per_window = 1"));
    sim.set_outage(true);
    let failed = adapter
        .push_until_settled(&items(&["A", "B", "C"], 5))
        .await;
    assert!(
        outcomes(&failed)
            .iter()
            .all(|outcome| matches!(outcome, ItemOutcome::Retryable { .. }))
    );
    sim.set_outage(false);
    let fed = adapter
        .push_until_settled(&items(&["A", "B", "C"], 5))
        .await;
    assert!(
        outcomes(&fed)
            .iter()
            .all(|outcome| *outcome == ItemOutcome::Accepted { quantity: 5 }),
        "the failed attempt did not spend the one feed: {:?}",
        outcomes(&fed)
    );
    let patched = adapter
        .push_until_settled(&items(&["A", "B", "C"], 6))
        .await;
    assert_eq!(
        outcomes(&patched),
        vec![
            ItemOutcome::Accepted { quantity: 6 },
            ItemOutcome::Deferred,
            ItemOutcome::Deferred
        ]
    );
    assert_eq!(sim.counters().feeds_created, 1);
}

fn sim_listing(seller_sku: &str, quantity: Option<u64>, fba: bool) -> SimListing {
    SimListing {
        seller_sku: seller_sku.to_owned(),
        quantity,
        fba,
        fba_fulfillable: if fba { 5 } else { 0 },
    }
}

/// An adapter whose config maps `listings` (`(sku, seller SKU, fba)`) on the simulator.
fn mapped(sim: &AmazonSimulator, listings: &[(&str, &str, bool)]) -> AmazonAdapter {
    let listings: Vec<String> = listings
        .iter()
        .map(|(sku, seller_sku, fba)| {
            format!("{{ sku = \"{sku}\", seller_sku = \"{seller_sku}\", fba = {fba} }}")
        })
        .collect();
    let mut config = config(sim, &[], &[], "");
    config.listings = toml::from_str::<toml::Table>(&format!("l = [{}]", listings.join(", ")))
        .unwrap()["l"]
        .clone()
        .try_into()
        .unwrap();
    adapter(&config)
}

fn states(reports: &[FbaDefaultReport]) -> Vec<(&str, &str, fba::FbaDefault)> {
    reports
        .iter()
        .map(|report| {
            (
                report.sku.as_str(),
                report.seller_sku.as_str(),
                report.state.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_listing_moved_to_fba_gets_one_final_default_zero_read_back_and_nothing_after() {
    // A-NL was merchant fulfilled with 7 listed; its mapping is now FBA. SKU B has an MFN
    // listing (B-NL) and an FBA listing (B-FBA) at once.
    let mut sim_options = options(&[], &[]);
    sim_options.listings = vec![
        sim_listing("A-NL", Some(7), false),
        sim_listing("B-NL", Some(0), false),
        sim_listing("B-FBA", None, true),
    ];
    let sim = simulator(sim_options).await;
    let listings = [
        ("A", "A-NL", true),
        ("B", "B-NL", false),
        ("B", "B-FBA", true),
    ];
    let adapter = mapped(&sim, &listings);
    assert!(!adapter.is_mapped("A"));
    assert!(adapter.is_mapped("B"));
    assert_eq!(adapter.listing_count(), 1);
    let first = adapter.retire_fba_defaults().await;
    assert_eq!(
        states(&first),
        vec![
            ("A", "A-NL", fba::FbaDefault::Zeroed { previous: 7 }),
            ("B", "B-FBA", fba::FbaDefault::Clear { quantity: None }),
        ]
    );
    assert_eq!(sim.quantity("A-NL"), Some(0));
    assert_eq!(sim.listing("A-NL").unwrap().history, vec![0]);
    assert_eq!(sim.counters().patches_received, 1, "one final 0");
    // Amazon converts the offer; B's stock changes: only B's MFN listing is written.
    sim.add_listing(sim_listing("A-NL", Some(0), true));
    let report = adapter.push_until_settled(&items(&["A", "B"], 9)).await;
    let outcomes = outcomes(&report);
    assert!(
        matches!(&outcomes[0], ItemOutcome::Rejected { code, .. } if code == "FBA_SKU"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], ItemOutcome::Accepted { quantity: 9 });
    assert_eq!(sim.quantity("B-NL"), Some(9));
    assert_eq!(sim.quantity("B-FBA"), None);
    assert!(sim.listing("B-FBA").unwrap().fba);
    assert_eq!(
        adapter.read_levels(&["B".to_owned()]).await.unwrap().levels,
        vec![("B".to_owned(), Some(9))],
        "a SKU's level is its MFN listing's"
    );
    let requests = sim.counters().requests;
    assert_eq!(
        adapter.read_levels(&["A".to_owned()]).await.unwrap().levels,
        vec![("A".to_owned(), None)],
        "an FBA-only SKU has no merchant level of ours"
    );
    assert_eq!(sim.counters().requests, requests, "and is not read");
    // Settled listings are not read nor written again.
    let requests = sim.counters().requests;
    let again = adapter.retire_fba_defaults().await;
    assert_eq!(states(&again), states(&first));
    assert_eq!(sim.counters().requests, requests);
    // A restart reads the 0 back and writes nothing.
    let restarted = mapped(&sim, &listings);
    assert_eq!(
        states(&restarted.retire_fba_defaults().await),
        vec![
            ("A", "A-NL", fba::FbaDefault::Clear { quantity: Some(0) }),
            ("B", "B-FBA", fba::FbaDefault::Clear { quantity: None }),
        ]
    );
    let counters = sim.counters();
    assert_eq!(counters.patches_received, 2, "the final 0 and B's 9");
    assert_eq!(counters.fba_default_patches, 0);
    assert!(
        sim.listing("A-NL").unwrap().fba,
        "still fulfilled by Amazon"
    );
}

#[tokio::test]
async fn an_offer_amazon_already_fulfils_is_never_written_a_missing_one_is_skipped() {
    let mut sim_options = options(&[], &[]);
    sim_options.listings = vec![sim_listing("A-NL", Some(5), true)];
    let sim = simulator(sim_options).await;
    let adapter = mapped(&sim, &[("A", "A-NL", true), ("Z", "Z-NL", true)]);
    assert_eq!(
        states(&adapter.retire_fba_defaults().await),
        vec![
            (
                "A",
                "A-NL",
                fba::FbaDefault::AmazonFulfilled { quantity: 5 }
            ),
            ("Z", "Z-NL", fba::FbaDefault::NotListed),
        ]
    );
    let counters = sim.counters();
    assert_eq!(
        (counters.patches_received, counters.fba_default_patches),
        (0, 0)
    );
    assert!(sim.listing("A-NL").unwrap().fba);
}

#[tokio::test]
async fn a_failed_final_zero_stays_pending_and_is_written_on_the_next_pass() {
    let mut sim_options = options(&[], &[]);
    sim_options.listings = vec![sim_listing("A-NL", Some(3), false)];
    let sim = simulator(sim_options).await;
    let adapter = mapped(&sim, &[("A", "A-NL", true)]);
    sim.fail_next_patches(1, 503);
    let first = adapter.retire_fba_defaults().await;
    assert!(
        matches!(&first[0].state, fba::FbaDefault::Pending { .. }),
        "{first:?}"
    );
    assert_eq!(sim.quantity("A-NL"), Some(3));
    assert_eq!(
        states(&adapter.retire_fba_defaults().await),
        vec![("A", "A-NL", fba::FbaDefault::Zeroed { previous: 3 })]
    );
    assert_eq!(sim.quantity("A-NL"), Some(0));
}

#[tokio::test]
async fn the_adapter_built_for_propagation_settles_fba_listings_in_the_background() {
    let mut sim_options = options(&[], &[]);
    sim_options.listings = vec![sim_listing("A-NL", Some(4), false)];
    let sim = simulator(sim_options).await;
    let adapter = mapped(&sim, &[("A", "A-NL", true)]);
    adapter.start_fba_retirement();
    for _ in 0..200 {
        if sim.quantity("A-NL") == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.quantity("A-NL"), Some(0));
    assert_eq!(
        states(&adapter.retire_fba_defaults().await),
        vec![("A", "A-NL", fba::FbaDefault::Zeroed { previous: 4 })]
    );
}
