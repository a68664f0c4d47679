//! `stocksync bench memory`: loads N SKUs into an in-process ledger, reports the resident
//! set size (RSS) before and after and the bytes per SKU, then passivates every SKU and
//! samples RSS once a second until it is at most 30 % of the peak (or the wait is over).
//!
//! RSS is read from `/proc/self/statm` (resident pages × page size), so this works on
//! Linux only; elsewhere it reports an error.
//!
//! Depends on `ledger`, `store` and `domain` through their public APIs.

use super::LoadgenError;
use super::targets::start_ledger;
use super::workload::LOCATION;
use crate::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Movements submitted before their acks are awaited.
const LOAD_CHUNK: usize = 10_000;
/// The page size assumed for `/proc/self/statm` (x86-64 and aarch64 Linux defaults).
const PAGE_BYTES: u64 = 4096;
/// RSS after passivation must fall to this share of the peak.
pub const TARGET_SHARE_OF_PEAK: f64 = 0.30;

/// What to load.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct MemoryOptions {
    /// SKUs to load.
    pub skus: usize,
    /// Movements per SKU (1 = one receipt each; more cycles receipt, sale, fulfilment,
    /// sale, cancellation).
    pub movements_per_sku: usize,
    /// Longest wait for RSS to fall after passivation, in seconds.
    pub wait_secs: u64,
}

/// The figures of one load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryReport {
    /// The options.
    pub options: MemoryOptions,
    /// RSS with the ledger started and nothing loaded, in bytes.
    pub rss_before_bytes: u64,
    /// RSS with every SKU loaded (the peak), in bytes.
    pub rss_loaded_bytes: u64,
    /// (loaded − before) ÷ SKUs.
    pub bytes_per_sku: f64,
    /// Live SKU actors when loaded.
    pub live_actors_loaded: u64,
    /// Seconds spent loading.
    pub load_secs: f64,
    /// RSS at the last sample after passivation, in bytes.
    pub rss_after_passivation_bytes: u64,
    /// Live SKU actors after passivation.
    pub live_actors_after: u64,
    /// Seconds from the passivation request until RSS ≤ 30 % of the peak; `None` if it
    /// did not get there within the wait.
    pub secs_to_30_percent: Option<f64>,
    /// (seconds since passivation, RSS bytes) samples.
    pub samples: Vec<(f64, u64)>,
}

/// The resident set size of this process, in bytes.
pub fn rss_bytes() -> Result<u64, LoadgenError> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse::<u64>().ok())
        .map(|pages| pages * PAGE_BYTES)
        .ok_or_else(|| LoadgenError::Encode("unreadable /proc/self/statm".to_owned()))
}

/// Movement `round` of SKU `index` in the memory workload.
pub fn memory_movement(index: usize, round: usize) -> Movement {
    let sku = format!("MEM-{index:08}");
    let reservation = |r: usize| format!("mem:{index}:{r}");
    let kind = match round % 5 {
        0 => MovementKind::Receipt {
            location: LOCATION.into(),
            quantity: 10,
        },
        1 | 3 => MovementKind::Sale {
            reservation: reservation(round),
            quantity: 1,
            location: Some(LOCATION.into()),
            route: Vec::new(),
        },
        2 => MovementKind::Fulfilment {
            reservation: reservation(round - 1),
            quantity: 1,
            location: None,
        },
        _ => MovementKind::Cancellation {
            reservation: reservation(round - 1),
            quantity: None,
            reason: Some("cancelled".to_owned()),
            write_off: false,
        },
    };
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: Sku(sku),
        idempotency_key: format!("mem:{index}:{round}:key"),
        source: "loadgen".to_owned(),
        occurred_at_ms: None,
        kind,
    }
}

/// Loads, measures, passivates and samples.
pub async fn run(options: MemoryOptions) -> Result<MemoryReport, LoadgenError> {
    let dir = tempfile::tempdir()?;
    let (ledger, _store) = start_ledger(dir.path())?;
    let rss_before_bytes = rss_bytes()?;
    let started = Instant::now();
    let mut errors = 0u64;
    for round in 0..options.movements_per_sku.max(1) {
        for chunk_start in (0..options.skus).step_by(LOAD_CHUNK) {
            let chunk_end = (chunk_start + LOAD_CHUNK).min(options.skus);
            let pending: Vec<_> = (chunk_start..chunk_end)
                .map(|index| ledger.submit(memory_movement(index, round)))
                .collect();
            errors += futures::future::join_all(pending)
                .await
                .iter()
                .filter(|ack| ack.is_err())
                .count() as u64;
        }
    }
    if errors > 0 {
        return Err(LoadgenError::App(format!(
            "{errors} movements were not acknowledged"
        )));
    }
    let load_secs = started.elapsed().as_secs_f64();
    let rss_loaded_bytes = rss_bytes()?;
    let live_actors_loaded = ledger.live_actors();
    let passivated = Instant::now();
    ledger.shutdown().await;
    let mut samples = Vec::new();
    let mut secs_to_30_percent = None;
    let threshold = (rss_loaded_bytes as f64 * TARGET_SHARE_OF_PEAK) as u64;
    loop {
        let rss = rss_bytes()?;
        let secs = passivated.elapsed().as_secs_f64();
        samples.push((secs, rss));
        if rss <= threshold {
            secs_to_30_percent = Some(secs);
            break;
        }
        if secs >= options.wait_secs as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(MemoryReport {
        options,
        rss_before_bytes,
        rss_loaded_bytes,
        bytes_per_sku: rss_loaded_bytes.saturating_sub(rss_before_bytes) as f64
            / options.skus.max(1) as f64,
        live_actors_loaded,
        load_secs,
        rss_after_passivation_bytes: samples.last().map(|s| s.1).unwrap_or(rss_loaded_bytes),
        live_actors_after: ledger.live_actors(),
        secs_to_30_percent,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SkuState;

    #[test]
    fn the_memory_cycle_is_accepted_by_the_state_machine() {
        let mut state = SkuState::new(Sku("MEM-00000007".to_owned()));
        for round in 0..100 {
            let movement = memory_movement(7, round);
            let seq = state.seq + 1;
            state
                .apply(&movement, seq)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert!(rss_bytes().unwrap() > 0);
    }
}
