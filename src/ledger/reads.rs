//! Reads that must not bring SKUs into memory: a read of a SKU that was never seen (outside
//! input: any path segment) and the walk over every SKU after a rules change.
//!
//! - [`Ledger::known_state`] asks the store whether the SKU has a durable event before it
//!   asks the SKU's shard, so a SKU never seen creates no cell. A SKU whose first movement
//!   is applied but not yet durable reads as unknown until its group commit lands.
//! - [`Ledger::stored_states`] replays SKUs from the store off the shards (the same replay
//!   a shard's load task runs) without creating cells, for callers that walk the whole
//!   store in bounded pages.
//!
//! May depend on: the ledger's core (store, rules, clock) and its replay.

use super::{Ledger, LedgerError};
use crate::domain::{Sku, SkuState};

impl Ledger {
    /// The current state of `sku` if the store knows it (it has a durable event), else
    /// `None` without loading anything. See [`Ledger::state`] for a known SKU.
    ///
    /// Errors: [`LedgerError::Store`] when the store cannot answer; those of
    /// [`Ledger::state`].
    pub async fn known_state(&self, sku: &Sku) -> Result<Option<SkuState>, LedgerError> {
        let known = self
            .shared
            .store
            .sku_exists(sku.as_str())
            .await
            .map_err(|error| LedgerError::Store(error.to_string()))?;
        if !known {
            return Ok(None);
        }
        self.state(sku).await.map(Some)
    }

    /// The durable state of each of `skus` (at most one store call), replayed from the
    /// store without creating a cell in any shard. It does not include movements whose
    /// durable write is still in flight; those are published by their own commit.
    ///
    /// Errors: [`LedgerError::Store`] when the store fails or a SKU's log does not replay.
    pub async fn stored_states(&self, skus: &[String]) -> Result<Vec<SkuState>, LedgerError> {
        let store_error = |error: crate::store::StoreError| LedgerError::Store(error.to_string());
        let loaded = self
            .shared
            .store
            .load_skus(skus, self.shared.now_ms())
            .await
            .map_err(store_error)?;
        if loaded.len() != skus.len() {
            return Err(LedgerError::Store(format!(
                "store loaded {} SKUs of {}",
                loaded.len(),
                skus.len()
            )));
        }
        let rules = self.shared.options.rules.get();
        let retention_ms = rules.stock.retention_ms();
        let parked_ttl_ms = rules.stock.parked_ttl();
        skus.iter()
            .zip(&loaded)
            .map(|(sku, batch)| {
                super::actor::replay(
                    &Sku(sku.clone()),
                    &batch.loaded,
                    retention_ms,
                    parked_ttl_ms,
                )
                .map_err(store_error)
            })
            .collect()
    }
}
