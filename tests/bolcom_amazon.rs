//! bol.com end to end against its simulator on 127.0.0.1:0 (PLATFORMS.md §3): the real
//! ledger over the embedded store in a temp dir, the real `Propagation` pushing ATP, and
//! the order poller turning bol orders, cancellations and returns into movements once.

use std::sync::Arc;
use std::time::Duration;
use stocksync::config::Config;
use stocksync::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku};
use stocksync::ingest::bolcom_poll::BolcomPollState;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::propagation::Propagation;
use stocksync::sandbox::bolcom::{
    self, BolcomSimulator, BolcomSimulatorOptions, SimOffer, SimOrderLine,
};
use stocksync::store::Store;
use stocksync::store::embedded::EmbeddedStore;

async fn simulator() -> BolcomSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = BolcomSimulatorOptions {
        offers: (0..3)
            .map(|n| SimOffer {
                offer_id: format!("offer-{n}"),
                reference: format!("SKU-{n}"),
                ean: format!("87100000000{n}"),
                amount: 0,
            })
            .collect(),
        process_delay_ms: 5,
        ..BolcomSimulatorOptions::default()
    };
    bolcom::start(options, listener).await.unwrap()
}

fn config(sim: &BolcomSimulator) -> Config {
    let listings: Vec<String> = (0..3)
        .map(|n| format!("{{ sku = \"SKU-{n}\", offer_id = \"offer-{n}\" }}"))
        .collect();
    let text = format!(
        r#"
        [[locations]]
        id = "WH-1"
        [[channels]]
        id = "bol-nl"
        kind = "bolcom"
        locations = ["WH-1"]
        [channels.rate_limit]
        requests_per_sec = 50.0
        burst = 10
        [channels.retry]
        initial_backoff_ms = 20
        max_backoff_ms = 200
        [channels.bolcom]
        api_url = "{api}"
        token_url = "{token}"
        client_id = "sandbox-client"
        client_secret = "sandbox-secret"
        order_poll_interval_ms = 0
        process_status_poll_ms = 2
        listings = [{listings}]
        "#,
        api = sim.base_url(),
        token = sim.token_url(),
        listings = listings.join(", "),
    );
    let config = Config::from_toml(&text).unwrap();
    config.validate().unwrap();
    config
}

fn receipt(sku: &str, quantity: u64) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: Sku(sku.to_owned()),
        idempotency_key: format!("test:receipt:{sku}:{quantity}"),
        source: "test".to_owned(),
        occurred_at_ms: None,
        kind: MovementKind::Receipt {
            location: "WH-1".into(),
            quantity,
        },
    }
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 3 s");
}

#[tokio::test]
async fn atp_reaches_bol_and_polled_orders_reach_the_ledger_exactly_once() {
    let sim = simulator().await;
    let config = config(&sim);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("s.db")).unwrap());
    let propagation = Propagation::start(&config, store.clone(), reqwest::Client::new())
        .await
        .unwrap();
    let ledger = Ledger::start(
        store,
        Arc::new(propagation.clone()),
        LedgerOptions::default(),
    );
    for n in 0..3 {
        ledger
            .submit(receipt(&format!("SKU-{n}"), 10))
            .await
            .unwrap();
    }
    wait_for(|| (0..3).all(|n| sim.offer(&format!("offer-{n}")).unwrap().amount == 10)).await;
    assert!(sim.offer("offer-0").unwrap().managed_by_retailer);

    let fbr = sim
        .place_order(
            "FBR",
            &[SimOrderLine {
                offer_id: "offer-1".into(),
                quantity: 3,
            }],
        )
        .unwrap();
    sim.place_order(
        "FBB",
        &[SimOrderLine {
            offer_id: "offer-2".into(),
            quantity: 4,
        }],
    )
    .unwrap();
    let mut poller = BolcomPollState::new(&config.channels[0], reqwest::Client::new()).unwrap();
    let stats = poller.poll_once(&ledger).await.unwrap();
    assert_eq!(
        (stats.applied, stats.duplicates),
        (1, 0),
        "one FBR sale, FBB ignored"
    );
    let again = poller.poll_once(&ledger).await.unwrap();
    assert_eq!(again.applied, 0, "an unchanged order is not fetched again");
    wait_for(|| sim.offer("offer-1").unwrap().amount == 7).await;
    assert_eq!(
        sim.offer("offer-2").unwrap().amount,
        10,
        "FBB never touches our stock"
    );
    assert_eq!(
        sim.offer("offer-1").unwrap().corrected_stock,
        7,
        "managedByRetailer: the ingested order is not subtracted twice"
    );

    sim.cancel_item(&fbr.order_item_ids[0], 1).unwrap();
    let cancelled = poller.poll_once(&ledger).await.unwrap();
    assert_eq!(cancelled.applied, 1);
    wait_for(|| sim.offer("offer-1").unwrap().amount == 8).await;

    // A fresh poller (a restart) re-reads everything harmlessly.
    let mut restarted = BolcomPollState::new(&config.channels[0], reqwest::Client::new()).unwrap();
    let replay = restarted.poll_once(&ledger).await.unwrap();
    assert_eq!((replay.applied, replay.duplicates), (0, 2));

    sim.cancel_item(&fbr.order_item_ids[0], 2).unwrap();
    poller.poll_once(&ledger).await.unwrap();
    let state = ledger.state(&Sku("SKU-1".into())).await.unwrap();
    assert_eq!(
        state.location(&"WH-1".into()).available(),
        10,
        "all units released"
    );

    sim.register_return(&fbr.order_item_ids[0], 2).unwrap();
    let returned = poller.poll_once(&ledger).await.unwrap();
    assert_eq!(returned.applied, 1);
    let state = ledger.state(&Sku("SKU-1".into())).await.unwrap();
    assert_eq!(state.location(&"WH-1".into()).on_hand, 12);
    assert_eq!(poller.poll_once(&ledger).await.unwrap().applied, 0);

    ledger.shutdown().await;
    propagation.flush(Duration::from_secs(5)).await.unwrap();
    propagation.shutdown().await;
    assert_eq!(sim.counters().overlapping_updates, 0);
}
