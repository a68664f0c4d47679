//! The things the open loop drives: the REST API (of a running stocksync or of an App
//! started in process on a temp dir) and the ledger directly on an embedded store; plus
//! the same-run baselines and the store prefill.
//!
//! Depends on `app`, `config`, `ledger`, `store` and `domain` through their public APIs.

use super::LoadgenError;
use super::open_loop::{BatchOutcome, Target};
use super::workload::{LOCATION, Workload};
use crate::domain::{Movement, MovementKind, NullSink, SCHEMA_VERSION, Sku};
use crate::ledger::{Ack, Ledger, LedgerError, LedgerOptions};
use crate::store::embedded::EmbeddedStore;
use crate::store::{CommitBatch, EventRecord, Store};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for one REST answer.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// Events per commit while prefilling the store.
const PREFILL_COMMIT_EVENTS: usize = 20_000;
/// Events per prefilled SKU (prefilled SKUs are never named by the workload).
const PREFILL_EVENTS_PER_SKU: u64 = 100;

/// `POST {base}/api/v1/movements` with a JSON array per batch.
pub struct RestTarget {
    client: reqwest::Client,
    url: String,
}

impl RestTarget {
    /// A target for the stocksync at `base_url` (`http://127.0.0.1:8080`), with a pool of
    /// up to `connections` kept-alive connections.
    pub fn new(base_url: &str, connections: usize) -> Result<Self, LoadgenError> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections.max(1))
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .build()
            .map_err(|e| LoadgenError::Http(e.to_string()))?;
        Ok(Self {
            client,
            url: format!("{}/api/v1/movements", base_url.trim_end_matches('/')),
        })
    }
}

#[derive(serde::Deserialize)]
struct RestAnswer {
    results: Vec<RestResult>,
}

#[derive(serde::Deserialize)]
struct RestResult {
    outcome: String,
}

#[async_trait]
impl Target for RestTarget {
    async fn send(&self, batch: Vec<Movement>, _due: tokio::time::Instant) -> BatchOutcome {
        let count = batch.len() as u64;
        let failed = |non_2xx: bool| BatchOutcome {
            non_2xx: if non_2xx { count } else { 0 },
            errors: if non_2xx { 0 } else { count },
            ..BatchOutcome::default()
        };
        let Ok(body) = serde_json::to_vec(&batch) else {
            return failed(false);
        };
        let response = match self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(_) => return failed(false),
        };
        if !response.status().is_success() {
            return failed(true);
        }
        let Ok(bytes) = response.bytes().await else {
            return failed(false);
        };
        let Ok(answer) = serde_json::from_slice::<RestAnswer>(&bytes) else {
            return failed(false);
        };
        let mut outcome = BatchOutcome::default();
        for result in answer.results {
            match result.outcome.as_str() {
                "applied" => outcome.applied += 1,
                "duplicate" => outcome.duplicate += 1,
                _ => outcome.rejected += 1,
            }
        }
        outcome
    }
}

/// `Ledger::submit` of every movement of a batch, then all acks awaited.
pub struct LedgerTarget(pub Ledger);

#[async_trait]
impl Target for LedgerTarget {
    async fn send(&self, batch: Vec<Movement>, _due: tokio::time::Instant) -> BatchOutcome {
        let pending: Vec<_> = batch.into_iter().map(|m| self.0.submit(m)).collect();
        let mut outcome = BatchOutcome::default();
        for ack in futures::future::join_all(pending).await {
            match ack {
                Ok(Ack::Applied { .. } | Ack::Parked { .. } | Ack::Ignored { .. }) => {
                    outcome.applied += 1
                }
                Ok(Ack::Duplicate { .. }) => outcome.duplicate += 1,
                Err(LedgerError::Rejected(_)) => outcome.rejected += 1,
                Err(_) => outcome.errors += 1,
            }
        }
        outcome
    }
}

/// The config of an in-process App: embedded store at `dir/loadgen.db`, HTTP on a free
/// loopback port, location `WH-1`, no channels, plus `extra` TOML appended.
pub fn app_config(dir: &Path, extra: &str) -> Result<crate::config::Config, LoadgenError> {
    let raw = format!(
        "[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\nbody_limit_bytes = 16777216\n\
         max_movements_per_request = 10000\nmax_concurrent_requests = 4096\n\
         [[locations]]\nid = \"{LOCATION}\"\n{extra}",
        dir.join("loadgen.db").display()
    );
    crate::config::Config::from_toml(&raw).map_err(|e| LoadgenError::Config(e.to_string()))
}

/// A ledger over a fresh embedded store in `dir`, publishing nowhere.
pub fn start_ledger(dir: &Path) -> Result<(Ledger, Arc<dyn Store>), LoadgenError> {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.join("loadgen.db"))?);
    let ledger = Ledger::start(store.clone(), Arc::new(NullSink), LedgerOptions::default());
    Ok((ledger, store))
}

/// Fills `store` with `events` receipts for SKUs the workload never names
/// (`PF-…`, 100 events each), committed directly in large batches. Returns events/s.
pub async fn prefill(store: &Arc<dyn Store>, events: u64) -> Result<f64, LoadgenError> {
    let started = Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let expires_ms = now_ms + 7 * 24 * 3600 * 1000;
    let mut written = 0u64;
    while written < events {
        let count = (events - written).min(PREFILL_COMMIT_EVENTS as u64);
        let mut batch = CommitBatch::default();
        batch.events.reserve(count as usize);
        for i in written..written + count {
            let sku = format!("PF-{:08}", i / PREFILL_EVENTS_PER_SKU);
            let movement = Movement {
                schema_version: SCHEMA_VERSION,
                sku: Sku(sku.clone()),
                idempotency_key: format!("prefill:{i}"),
                source: "prefill".to_owned(),
                occurred_at_ms: None,
                kind: MovementKind::Receipt {
                    location: LOCATION.into(),
                    quantity: 1,
                },
            };
            batch.events.push(EventRecord {
                sku,
                seq: i % PREFILL_EVENTS_PER_SKU + 1,
                idempotency_key: movement.idempotency_key.clone(),
                key_expires_at_ms: expires_ms,
                recorded_at_ms: now_ms,
                movement: crate::store::codec::encode_movement(&movement),
            });
        }
        store.commit(batch).await?;
        written += count;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// The same-run baseline of the in-process pipeline: `movements` movements of an identical
/// workload applied to a plain `HashMap` (as `benches/pipeline.rs` does). Returns movements/s.
pub fn hashmap_baseline(mut workload: Workload, movements: usize) -> f64 {
    let sample = workload.batch(movements);
    let started = Instant::now();
    let mut levels: HashMap<&str, i64> = HashMap::new();
    for movement in &sample {
        let delta = match &movement.kind {
            MovementKind::Receipt { quantity, .. } => *quantity as i64,
            MovementKind::Sale { quantity, .. } => -(*quantity as i64),
            MovementKind::Fulfilment { quantity, .. } => -(*quantity as i64),
            _ => 0,
        };
        *levels.entry(movement.sku.as_str()).or_default() += delta;
    }
    std::hint::black_box(&levels);
    sample.len() as f64 / started.elapsed().as_secs_f64().max(1e-9)
}
