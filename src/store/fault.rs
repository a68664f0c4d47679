//! Test support: a [`Store`] wrapper that fails on demand.
//!
//! Owns: [`FaultyStore`], which delegates every call to an inner store and, while a flag
//! is set, fails commits ([`FaultyStore::fail_writes`]) or SKU loads
//! ([`FaultyStore::fail_loads`]), or the loads of one SKU only ([`FaultyStore::fail_sku`],
//! a SKU that can never be loaded again), with a [`StoreError::Backend`] before reaching
//! the inner store (so a failed commit writes nothing). Used by the tests of store outages (the
//! ledger's group-commit retry, Kafka ingest pausing and resuming); not used by the app.
//!
//! May depend on: the `store` types only.

use super::{
    BatchLoadedSku, CommitBatch, ConfigAuditRecord, DeadLetterQuery, DeadLetterRecord, EventQuery,
    EventRecord, HistoryEvent, HoldExpiryRecord, Lease, LeaseOutcome, LoadedSku, OffsetWatermark,
    OrderLineRecord, PushLogQuery, PushLogRecord, PushedRecord, ReservationRecord, Store,
    StoreError,
};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A store that fails commits or loads while told to, delegating everything else.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    fail_writes: AtomicBool,
    fail_loads: AtomicBool,
    fail_sku: Mutex<Option<String>>,
    failed_commits: AtomicU64,
    commits: AtomicU64,
}

impl FaultyStore {
    /// Wraps `inner`, failing nothing yet.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_writes: AtomicBool::new(false),
            fail_loads: AtomicBool::new(false),
            fail_sku: Mutex::new(None),
            failed_commits: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        })
    }

    /// While `fail` is true every commit fails (nothing of it is written).
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// While `fail` is true every SKU load and idempotency-key lookup fails.
    pub fn fail_loads(&self, fail: bool) {
        self.fail_loads.store(fail, Ordering::SeqCst);
    }

    /// From now on every load (or key lookup) that includes `sku` fails; `None`: none.
    pub fn fail_sku(&self, sku: Option<&str>) {
        *self.fail_sku.lock().unwrap_or_else(|e| e.into_inner()) = sku.map(str::to_owned);
    }

    /// Commits refused so far.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits.load(Ordering::SeqCst)
    }

    /// Commits written so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn injected(operation: &'static str) -> StoreError {
        StoreError::Backend {
            operation,
            message: "injected fault: the store is down".to_owned(),
        }
    }

    fn check_loads<'a>(
        &self,
        operation: &'static str,
        mut skus: impl Iterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        if self.fail_loads.load(Ordering::SeqCst) {
            return Err(Self::injected(operation));
        }
        let failing = self.fail_sku.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failing) = failing.as_deref()
            && skus.any(|sku| sku == failing)
        {
            return Err(StoreError::Backend {
                operation,
                message: format!("injected fault: {failing} cannot be loaded"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    async fn acquire_epoch(&self, scope: &str, owner: &str) -> Result<u64, StoreError> {
        self.inner.acquire_epoch(scope, owner).await
    }
    async fn current_epoch(&self, scope: &str) -> Result<Option<(u64, String)>, StoreError> {
        self.inner.current_epoch(scope).await
    }
    async fn try_lease(
        &self,
        scope: &str,
        owner: &str,
        payload: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        self.inner
            .try_lease(scope, owner, payload, now_ms, ttl_ms)
            .await
    }
    async fn release_lease(
        &self,
        scope: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<bool, StoreError> {
        self.inner.release_lease(scope, owner, epoch).await
    }
    async fn leases(&self, prefix: &str, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.inner.leases(prefix, limit).await
    }
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.commit_shared(Arc::new(batch)).await
    }
    async fn commit_shared(&self, batch: Arc<CommitBatch>) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            self.failed_commits.fetch_add(1, Ordering::SeqCst);
            return Err(Self::injected("commit"));
        }
        self.inner.commit_shared(batch).await?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn load_sku(&self, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError> {
        self.check_loads("load_sku", std::iter::once(sku))?;
        self.inner.load_sku(sku, now_ms).await
    }
    async fn load_skus(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<BatchLoadedSku>, StoreError> {
        self.check_loads("load_skus", skus.iter().map(String::as_str))?;
        self.inner.load_skus(skus, now_ms).await
    }
    async fn find_idempotency_key(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.check_loads("find_idempotency_key", std::iter::once(sku))?;
        self.inner.find_idempotency_key(sku, key, now_ms).await
    }
    async fn find_idempotency_key_hash(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(u64, Option<u64>)>, StoreError> {
        self.check_loads("find_idempotency_key", std::iter::once(sku))?;
        self.inner.find_idempotency_key_hash(sku, key, now_ms).await
    }
    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.events(sku, from_seq, limit).await
    }
    async fn list_skus(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list_skus(after, limit).await
    }
    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, StoreError> {
        self.inner.offsets(group).await
    }
    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError> {
        self.inner.record_pushed(records).await
    }
    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError> {
        self.inner.pushed(channel).await
    }
    async fn expire_keys(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.inner.expire_keys(now_ms).await
    }
    async fn query_events(&self, query: &EventQuery) -> Result<Vec<HistoryEvent>, StoreError> {
        self.inner.query_events(query).await
    }
    async fn append_push_log(&self, records: &[PushLogRecord]) -> Result<(), StoreError> {
        self.inner.append_push_log(records).await
    }
    async fn query_push_log(&self, query: &PushLogQuery) -> Result<Vec<PushLogRecord>, StoreError> {
        self.inner.query_push_log(query).await
    }
    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.prune_push_log(before_ms).await
    }
    async fn prune_events(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        self.inner.prune_events(before_ms, now_ms).await
    }
    async fn record_config_change(&self, record: &ConfigAuditRecord) -> Result<(), StoreError> {
        self.inner.record_config_change(record).await
    }
    async fn config_changes(&self, limit: usize) -> Result<Vec<ConfigAuditRecord>, StoreError> {
        self.inner.config_changes(limit).await
    }
    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HoldExpiryRecord>, StoreError> {
        self.inner.hold_expiries(after, limit).await
    }
    async fn reservation(&self, id: &str) -> Result<Option<ReservationRecord>, StoreError> {
        self.inner.reservation(id).await
    }
    async fn order_lines(
        &self,
        channel: &str,
        order_id: &str,
    ) -> Result<Vec<OrderLineRecord>, StoreError> {
        self.inner.order_lines(channel, order_id).await
    }
    async fn record_order_lines(
        &self,
        records: &[OrderLineRecord],
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner
            .record_order_lines(records, forget_before_ms)
            .await
    }
    async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.inner.dead_letters(query).await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
    async fn release_memory(&self) {
        self.inner.release_memory().await
    }
}
