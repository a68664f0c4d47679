//! Store metrics: [`MeteredStore`], the wrapper [`super::open`] puts around every backend.
//!
//! Owns: counting each [`Store`] call (`stocksync_store_calls_total`), its errors by kind
//! (`stocksync_store_errors_total`) and its latency (`stocksync_store_latency_seconds`),
//! all labelled by `backend` and `method`, so one set of metric names serves the embedded,
//! PostgreSQL and ScyllaDB backends alike. Retries are counted by the caller that retries
//! (`stocksync_store_retries_total`, see [`record_retry`]), since only it knows a call is
//! a second attempt.
//!
//! Labels are bounded: the backend names and the trait's method names are fixed strings.
//!
//! May depend on: `telemetry`, the `store` types.

use super::{
    BatchLoadedSku, CommitBatch, ConfigAuditRecord, DeadLetterQuery, DeadLetterRecord, EventQuery,
    EventRecord, HistoryEvent, HoldExpiryRecord, Lease, LeaseOutcome, LoadedSku, OffsetWatermark,
    OrderLineRecord, PushLogQuery, PushLogRecord, PushedRecord, ReservationRecord, Store,
    StoreError,
};
use crate::telemetry::{
    STORE_CALLS_TOTAL, STORE_ERRORS_TOTAL, STORE_LATENCY_SECONDS, STORE_RETRIES_TOTAL,
};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Every `kind` label of `stocksync_store_errors_total`.
pub const ERROR_KINDS: [&str; 4] = ["backend", "corrupt", "poisoned", "fenced"];

/// The `kind` label of `stocksync_store_errors_total` for an error: its variant.
pub fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Backend { .. } => "backend",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::Poisoned(_) => "poisoned",
        StoreError::Fenced { .. } => "fenced",
    }
}

/// Counts one retry of `method` on `backend` (`stocksync_store_retries_total`): called by
/// a caller that makes a failed call again (the ledger's committer).
pub fn record_retry(backend: &'static str, method: &'static str) {
    metrics::counter!(STORE_RETRIES_TOTAL, "backend" => backend, "method" => method).increment(1);
}

/// A [`Store`] that forwards every call to `inner` and records its metrics.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    backend: &'static str,
}

impl MeteredStore {
    /// Wraps `inner`, labelling its metrics with `inner.backend_name()`.
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        let backend = inner.backend_name();
        Self::with_backend(inner, backend)
    }

    /// Wraps `inner`, labelling its metrics with `backend` (tests use a name of their own).
    /// The commit's error and retry series are registered at zero, so that dashboards and
    /// alerts see a rate of 0 (not "no data") until the first failure.
    pub fn with_backend(inner: Arc<dyn Store>, backend: &'static str) -> Arc<dyn Store> {
        for kind in ERROR_KINDS {
            metrics::counter!(STORE_ERRORS_TOTAL, "backend" => backend, "method" => "commit",
                "kind" => kind)
            .increment(0);
        }
        metrics::counter!(STORE_RETRIES_TOTAL, "backend" => backend, "method" => "commit")
            .increment(0);
        Arc::new(Self { inner, backend })
    }

    fn record(&self, method: &'static str, started: Instant, error: Option<&StoreError>) {
        let backend = self.backend;
        metrics::counter!(STORE_CALLS_TOTAL, "backend" => backend, "method" => method).increment(1);
        metrics::histogram!(STORE_LATENCY_SECONDS, "backend" => backend, "method" => method)
            .record(started.elapsed().as_secs_f64());
        if let Some(error) = error {
            metrics::counter!(STORE_ERRORS_TOTAL, "backend" => backend, "method" => method,
                "kind" => error_kind(error))
            .increment(1);
        }
    }

    async fn observe<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.record(method, started, result.as_ref().err());
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    fn backend_name(&self) -> &'static str {
        self.backend
    }
    async fn acquire_epoch(&self, scope: &str, owner: &str) -> Result<u64, StoreError> {
        self.observe("acquire_epoch", self.inner.acquire_epoch(scope, owner))
            .await
    }
    async fn current_epoch(&self, scope: &str) -> Result<Option<(u64, String)>, StoreError> {
        self.observe("current_epoch", self.inner.current_epoch(scope))
            .await
    }
    async fn try_lease(
        &self,
        scope: &str,
        owner: &str,
        payload: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        self.observe(
            "try_lease",
            self.inner.try_lease(scope, owner, payload, now_ms, ttl_ms),
        )
        .await
    }
    async fn release_lease(
        &self,
        scope: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<bool, StoreError> {
        self.observe(
            "release_lease",
            self.inner.release_lease(scope, owner, epoch),
        )
        .await
    }
    async fn leases(&self, prefix: &str, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.observe("leases", self.inner.leases(prefix, limit))
            .await
    }
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.observe("commit", self.inner.commit(batch)).await
    }
    /// Counted as `commit`: the same write, shared.
    async fn commit_shared(&self, batch: Arc<CommitBatch>) -> Result<(), StoreError> {
        self.observe("commit", self.inner.commit_shared(batch))
            .await
    }
    async fn load_sku(&self, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError> {
        self.observe("load_sku", self.inner.load_sku(sku, now_ms))
            .await
    }
    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.observe("events", self.inner.events(sku, from_seq, limit))
            .await
    }
    async fn list_skus(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.observe("list_skus", self.inner.list_skus(after, limit))
            .await
    }
    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, StoreError> {
        self.observe("offsets", self.inner.offsets(group)).await
    }
    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError> {
        self.observe("record_pushed", self.inner.record_pushed(records))
            .await
    }
    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError> {
        self.observe("pushed", self.inner.pushed(channel)).await
    }
    async fn expire_keys(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.observe("expire_keys", self.inner.expire_keys(now_ms))
            .await
    }
    async fn query_events(&self, query: &EventQuery) -> Result<Vec<HistoryEvent>, StoreError> {
        self.observe("query_events", self.inner.query_events(query))
            .await
    }
    async fn append_push_log(&self, records: &[PushLogRecord]) -> Result<(), StoreError> {
        self.observe("append_push_log", self.inner.append_push_log(records))
            .await
    }
    async fn query_push_log(&self, query: &PushLogQuery) -> Result<Vec<PushLogRecord>, StoreError> {
        self.observe("query_push_log", self.inner.query_push_log(query))
            .await
    }
    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.observe("prune_push_log", self.inner.prune_push_log(before_ms))
            .await
    }
    async fn prune_events(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        self.observe("prune_events", self.inner.prune_events(before_ms, now_ms))
            .await
    }
    async fn record_config_change(&self, record: &ConfigAuditRecord) -> Result<(), StoreError> {
        self.observe(
            "record_config_change",
            self.inner.record_config_change(record),
        )
        .await
    }
    async fn config_changes(&self, limit: usize) -> Result<Vec<ConfigAuditRecord>, StoreError> {
        self.observe("config_changes", self.inner.config_changes(limit))
            .await
    }
    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HoldExpiryRecord>, StoreError> {
        self.observe("hold_expiries", self.inner.hold_expiries(after, limit))
            .await
    }
    async fn reservation(&self, id: &str) -> Result<Option<ReservationRecord>, StoreError> {
        self.observe("reservation", self.inner.reservation(id))
            .await
    }
    async fn order_lines(
        &self,
        channel: &str,
        order_id: &str,
    ) -> Result<Vec<OrderLineRecord>, StoreError> {
        self.observe("order_lines", self.inner.order_lines(channel, order_id))
            .await
    }
    async fn record_order_lines(
        &self,
        records: &[OrderLineRecord],
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.observe(
            "record_order_lines",
            self.inner.record_order_lines(records, forget_before_ms),
        )
        .await
    }
    async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.observe("dead_letters", self.inner.dead_letters(query))
            .await
    }
    async fn load_skus(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<BatchLoadedSku>, StoreError> {
        self.observe("load_skus", self.inner.load_skus(skus, now_ms))
            .await
    }
    async fn find_idempotency_key(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.observe(
            "find_idempotency_key",
            self.inner.find_idempotency_key(sku, key, now_ms),
        )
        .await
    }
    async fn sku_exists(&self, sku: &str) -> Result<bool, StoreError> {
        self.observe("sku_exists", self.inner.sku_exists(sku)).await
    }
    async fn find_idempotency_key_hash(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(u64, Option<u64>)>, StoreError> {
        self.observe(
            "find_idempotency_key_hash",
            self.inner.find_idempotency_key_hash(sku, key, now_ms),
        )
        .await
    }
    async fn events_with_hashes(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.observe(
            "events_with_hashes",
            self.inner.events_with_hashes(sku, from_seq, limit),
        )
        .await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.observe("close", self.inner.close()).await
    }
    async fn release_memory(&self) {
        let started = Instant::now();
        self.inner.release_memory().await;
        self.record("release_memory", started, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::fault::FaultyStore;

    /// The value of the sample of `metric` whose labels include every `labels` pair, from
    /// the Prometheus text `text`; 0 when there is none.
    fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
        text.lines()
            .filter(|line| line.starts_with(&format!("{metric}{{")))
            .filter(|line| {
                labels
                    .iter()
                    .all(|(name, value)| line.contains(&format!("{name}=\"{value}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    #[tokio::test]
    async fn calls_errors_and_latency_are_counted_per_backend_and_method() {
        let handle = crate::telemetry::prometheus();
        let dir = tempfile::tempdir().unwrap();
        let embedded: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("metered.db")).unwrap());
        let faulty = FaultyStore::new(embedded);
        // A backend label no other test uses, so parallel tests cannot move these samples.
        let store = MeteredStore::with_backend(faulty.clone(), "metered-test");
        assert_eq!(store.backend_name(), "metered-test");
        let before = handle.render();
        let commit = [("backend", "metered-test"), ("method", "commit")];
        assert!(
            before
                .lines()
                .any(|line| line.starts_with(STORE_RETRIES_TOTAL)
                    && line.contains("backend=\"metered-test\"")
                    && line.ends_with(" 0")),
            "the retry series is registered at zero: {before}"
        );
        assert_eq!(sample(&before, STORE_CALLS_TOTAL, &commit), 0.0);

        assert!(store.pushed("web").await.unwrap().is_empty());
        assert!(store.pushed("web").await.unwrap().is_empty());
        faulty.fail_writes(true);
        let error = store.commit(CommitBatch::default()).await.unwrap_err();
        assert_eq!(error_kind(&error), "backend");
        record_retry("metered-test", "commit");

        let text = handle.render();
        let pushed = [("backend", "metered-test"), ("method", "pushed")];
        assert_eq!(sample(&text, STORE_CALLS_TOTAL, &pushed), 2.0, "{text}");
        assert_eq!(sample(&text, STORE_CALLS_TOTAL, &commit), 1.0, "{text}");
        assert_eq!(sample(&text, STORE_ERRORS_TOTAL, &pushed), 0.0, "{text}");
        assert_eq!(
            sample(
                &text,
                STORE_ERRORS_TOTAL,
                &[
                    ("backend", "metered-test"),
                    ("method", "commit"),
                    ("kind", "backend")
                ]
            ),
            1.0,
            "{text}"
        );
        assert_eq!(sample(&text, STORE_RETRIES_TOTAL, &commit), 1.0, "{text}");
        let latency_count = format!("{STORE_LATENCY_SECONDS}_count");
        assert_eq!(sample(&text, &latency_count, &pushed), 2.0, "{text}");
        // The store's own buckets (finer than the other `_seconds` histograms').
        assert!(
            text.lines().any(
                |line| line.starts_with(&format!("{STORE_LATENCY_SECONDS}_bucket{{"))
                    && line.contains("backend=\"metered-test\"")
                    && line.contains("le=\"0.0001\"")
            ),
            "{text}"
        );
    }

    #[test]
    fn every_error_variant_has_its_kind() {
        let kinds = [
            StoreError::Backend {
                operation: "commit",
                message: String::new(),
            },
            StoreError::Corrupt {
                sku: "A".into(),
                message: String::new(),
            },
            StoreError::Poisoned(String::new()),
            StoreError::Fenced {
                scope: "movements/0".into(),
                epoch: 1,
                current: 2,
            },
        ]
        .iter()
        .map(error_kind)
        .collect::<Vec<_>>();
        assert_eq!(kinds, ERROR_KINDS);
    }
}
