//! Starts and stops the order pollers of the marketplace channels (bol.com §3.5, and the
//! Amazon backstops of §4.3/§4.4 when configured), for the app.
//!
//! May depend on: `config`, `ledger`, the pollers of `ingest`.

use super::bolcom_poll::{self, PollerHandle};
use crate::config::Config;
use crate::ledger::Ledger;

/// Starts one poller per bol.com channel with polling enabled, and the Amazon Orders API
/// and FBA pollers of each Amazon channel whose interval is not 0.
pub fn start(config: &Config, ledger: &Ledger) -> Vec<PollerHandle> {
    let client = reqwest::Client::new();
    config
        .channels
        .iter()
        .flat_map(|channel| {
            [
                bolcom_poll::start(channel, ledger.clone(), client.clone()),
                super::amazon_poll::start_orders(channel, ledger.clone(), client.clone()),
                super::amazon_poll::start_fba(channel, ledger.clone(), client.clone()),
            ]
        })
        .flatten()
        .collect()
}

/// Stops every poller and waits for them.
pub async fn stop(pollers: Vec<PollerHandle>) {
    for poller in pollers {
        poller.stop().await;
    }
}
