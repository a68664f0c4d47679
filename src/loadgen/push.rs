//! Movement → channel push latency (`loadgen rest --push`): the in-process App gets a
//! Shopify channel pointing at the in-process Shopify simulator, with one listing per
//! workload SKU (inventory item `1000 + rank`, location 1), and the REST target is wrapped
//! in a [`PushRecorder`] that notes, for every acknowledged movement that changes the
//! available quantity (receipts, sales, cancellations; a fulfilment leaves it as it is),
//! its SKU, its batch's due time and its ack time.
//!
//! After the run, once the simulator has seen no new mutation for a while, each noted
//! movement is matched to the first level set the simulator received for its item at or
//! after the movement's ack (the simulator keeps each set's wall time,
//! `level_history_at_ms`); its push latency runs from the due time to that set. A set that
//! was already under way when the movement was acknowledged can be matched, so the figure
//! is a slight underestimate for such movements; movements with no later set (the
//! simulator keeps 1,000 sets per level) are counted as unmatched. Times are whole
//! milliseconds of the simulator's clock.
//!
//! The channel pushes at most [`PUSH_REQUESTS_PER_SEC`] mutations a second, as the
//! simulator's default GraphQL bucket allows (100 points/s, 10 per mutation), so the
//! figure includes the coalescing a real shop's rate limit forces.
//!
//! Depends on `sandbox` (its [`PushShop`]) and the workload's SKU names.

use super::LoadgenError;
use super::open_loop::{BatchOutcome, LatencySummary, Target};
use super::workload::{LOCATION, Workload};
use crate::domain::{Movement, MovementKind};
use crate::sandbox::PushShop;
use async_trait::async_trait;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Inventory item id of the SKU of rank 0; rank `r` is `FIRST_ITEM + r`.
pub const FIRST_ITEM: u64 = 1000;
/// The simulator's location id the channel pushes to.
pub const LOCATION_ID: u64 = 1;
/// Mutations per second the channel may send (the simulator's default GraphQL bucket).
pub const PUSH_REQUESTS_PER_SEC: u32 = 10;
/// Most SKUs a push run may list (each is a channel listing).
pub const MAX_PUSH_SKUS: usize = 100_000;
/// Most movements one run notes; later ones are not measured.
const MAX_NOTED: usize = 5_000_000;
/// The simulator counts as settled after this long without a new mutation.
const SETTLE_QUIET_MS: u64 = 2_000;
/// Longest wait for the simulator to settle after a run.
const SETTLE_MAX_SECS: u64 = 120;
/// Highest latency recorded, in microseconds (one hour).
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// Push latency of one run.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    /// Movements matched to a later level set.
    pub matched: u64,
    /// Movements noted but with no level set at or after their ack.
    pub unmatched: u64,
    /// Movements acknowledged but not noted (beyond the note limit).
    pub not_noted: u64,
    /// Due time → level set received by the simulator.
    pub latency: LatencySummary,
}

/// A noted movement: item, due and ack as wall-clock milliseconds.
#[derive(Clone, Copy)]
struct Noted {
    item: u64,
    due_ms: i64,
    ack_ms: i64,
}

/// Wraps a target and notes every acknowledged movement that changes availability.
pub struct PushRecorder {
    inner: Arc<dyn Target>,
    items: HashMap<String, u64>,
    /// The same instant on both clocks, to turn `Instant`s into wall milliseconds.
    origin: (Instant, i64),
    noted: Mutex<(Vec<Noted>, u64)>,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl PushRecorder {
    /// A recorder around `inner` for the SKUs of ranks `0..skus`.
    pub fn new(inner: Arc<dyn Target>, skus: usize) -> Self {
        let items = (0..skus)
            .map(|rank| (Workload::sku_name(rank), FIRST_ITEM + rank as u64))
            .collect();
        Self {
            inner,
            items,
            origin: (Instant::now(), wall_ms()),
            noted: Mutex::new((Vec::new(), 0)),
        }
    }

    fn to_wall_ms(&self, at: Instant) -> i64 {
        let (instant, wall) = self.origin;
        let since = at.saturating_duration_since(instant).as_millis();
        wall.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }

    /// Waits until the simulator has seen no new mutation for a while, then matches every
    /// noted movement to its push and clears the notes.
    pub async fn settle_and_report(&self, simulator: &PushShop) -> PushReport {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_MAX_SECS);
        let mut last = simulator.counters().mutations_applied;
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline
            && quiet_since.elapsed() < Duration::from_millis(SETTLE_QUIET_MS)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = simulator.counters().mutations_applied;
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
        let (noted, not_noted) = {
            let mut guard = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut guard.0), std::mem::take(&mut guard.1))
        };
        let mut sets: HashMap<u64, Vec<i64>> = HashMap::new();
        let mut histogram =
            Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds");
        let (mut matched, mut unmatched) = (0u64, 0u64);
        for movement in noted {
            let times = sets
                .entry(movement.item)
                .or_insert_with(|| simulator.level_history_at_ms(movement.item, LOCATION_ID));
            let first = times.partition_point(|&at| at < movement.ack_ms);
            match times.get(first) {
                Some(&at) => {
                    matched += 1;
                    let micros = u64::try_from(at.saturating_sub(movement.due_ms))
                        .unwrap_or(0)
                        .saturating_mul(1000)
                        .clamp(1, MAX_LATENCY_MICROS);
                    histogram.record(micros).expect("clamped into range");
                }
                None => unmatched += 1,
            }
        }
        PushReport {
            matched,
            unmatched,
            not_noted,
            latency: LatencySummary::of(&histogram),
        }
    }
}

#[async_trait]
impl Target for PushRecorder {
    async fn send(&self, batch: Vec<Movement>, due: Instant) -> BatchOutcome {
        let changes: Vec<u64> = batch
            .iter()
            .filter(|m| {
                matches!(
                    m.kind,
                    MovementKind::Receipt { .. }
                        | MovementKind::Sale { .. }
                        | MovementKind::Cancellation { .. }
                )
            })
            .filter_map(|m| self.items.get(m.sku.as_str()).copied())
            .collect();
        let outcome = self.inner.send(batch, due).await;
        // Only a wholly acknowledged batch is noted (a partly failed one cannot be told
        // apart per movement here).
        if outcome.errors == 0 && outcome.non_2xx == 0 && outcome.rejected == 0 {
            let (due_ms, ack_ms) = (self.to_wall_ms(due), self.to_wall_ms(Instant::now()));
            let mut guard = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            for item in changes {
                if guard.0.len() < MAX_NOTED {
                    guard.0.push(Noted {
                        item,
                        due_ms,
                        ack_ms,
                    });
                } else {
                    guard.1 += 1;
                }
            }
        }
        outcome
    }
}

/// Starts the sandbox shop ([`PushShop`]) on a loopback port (levels created on first set).
pub async fn start_simulator() -> Result<PushShop, LoadgenError> {
    Ok(crate::sandbox::start_push_shop().await?)
}

/// The TOML of a Shopify channel to `shop_url` listing the SKUs of ranks `0..skus`.
pub fn channel_toml(shop_url: &str, skus: usize) -> String {
    // One literal per line: every line of this file reads as code or as a whole string.
    let mut toml = String::new();
    toml.push_str("[[channels]]\n");
    toml.push_str("id = \"shopify-loadgen\"\nkind = \"shopify\"\n");
    toml.push_str(&format!("locations = [\"{LOCATION}\"]\n"));
    toml.push_str("[channels.rate_limit]\n");
    toml.push_str(&format!(
        "requests_per_sec = {PUSH_REQUESTS_PER_SEC}.0\nburst = {PUSH_REQUESTS_PER_SEC}\n"
    ));
    toml.push_str("[channels.shopify]\n");
    toml.push_str(&format!("shop_url = \"{shop_url}\"\n"));
    toml.push_str("access_token = \"shpat_sandbox_token\"\n");
    toml.push_str("webhook_secret = \"sandbox_webhook_secret\"\n");
    toml.push_str(&format!("location_id = {LOCATION_ID}\n"));
    for rank in 0..skus {
        toml.push_str(&format!(
            "[[channels.shopify.listings]]\nsku = \"{}\"\ninventory_item_id = {}\n",
            Workload::sku_name(rank),
            FIRST_ITEM + rank as u64
        ));
    }
    toml
}
