//! The ScyllaDB backend (`[store] backend = "scylla"`), on the `scylla` driver 1.x.
//!
//! Data model (the reasoning is in `docs/scylla.md`):
//! - `sku_log`, one partition per SKU: its recent events, its idempotency keys (`USING
//!   TTL`), its snapshots and a history marker. One group commit writes each SKU's part as
//!   one single-partition `UNLOGGED` batch (atomic and isolated in ScyllaDB), so a movement
//!   is never visible without its key or the reverse. Writing a snapshot range-deletes the
//!   events more than [`model::RETAINED_EVENTS_BELOW_SNAPSHOT`] below it, which bounds the
//!   partition (keys stay until their TTL).
//! - `sku_history` (per SKU, 65,536 events per partition) keeps every event for
//!   [`Store::events`] and per-SKU history; `history` (one partition per hour, clustered
//!   by a time-ordered cursor) serves the global history; `history_hours` lists the hours
//!   that have rows. Both are written after the SKU batches, idempotently; a crash in
//!   between is repaired when the SKU is next loaded (the history marker).
//! - `skus` and `hold_expiries` are sorted indexes (partition = first byte of the SKU), so
//!   both list ascending by SKU as the `Store` contract says; offsets, pushed values,
//!   reservations, order lines, push log (by day), config audit, dead letters and
//!   ownership (epochs and leases, with `ownership_scopes`, the index that lists them by
//!   prefix) have their own tables. No statement uses `ALLOW FILTERING`; only the
//!   ownership writes (`acquire_epoch`, `try_lease`, `release_lease`) use lightweight
//!   transactions, decided in [`model`] from the row read just before.
//!
//! Requests: prepared statements only (prepared at open), token-aware and
//! datacenter-aware load balancing, the configured consistency (serial: `LOCAL_SERIAL`), a
//! bounded retry policy, a client-side request timeout, and at most `max_in_flight`
//! requests from this instance (a semaphore around every request after open).
//!
//! All decisions that need no server (statement text, schema, planning, the replay
//! filter, conversions) live in [`cql`] and [`model`] and are unit-tested there; this
//! module only executes them.
//!
//! May depend on: `config`, the rest of `store` (calls are counted by `store::metered`,
//! which wraps every backend).

pub mod cql;
pub mod model;

use crate::config::{ScyllaConsistency, ScyllaStoreConfig};
use crate::store::lease::{self, LeaseDecision};
use crate::store::{
    BatchLoadedSku, CommitBatch, ConfigAuditRecord, DeadLetterQuery, DeadLetterRecord, EventQuery,
    EventRecord, HistoryEvent, HoldExpiryRecord, Lease, LeaseOutcome, LoadedSku, OffsetWatermark,
    OrderLineRecord, PushLogQuery, PushLogRecord, PushedRecord, ReservationRecord, Store,
    StoreError,
};
use async_trait::async_trait;
use cql::Stmt;
use model::{EventWithEpoch, LogRow, Values, Write};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::{RequestInfo, RetryDecision, RetryPolicy, RetrySession};
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Rows per page of a paged read.
const PAGE_ROWS: i32 = 1_000;
/// Attempts of the compare-and-set loops of [`Store::acquire_epoch`] and
/// [`Store::try_lease`].
const EPOCH_ATTEMPTS: usize = 32;
/// Most rows one history query reads before it returns what it found (a filter that
/// matches nothing must not scan the whole table).
const MAX_SCANNED_ROWS: usize = 1_000_000;

/// The ScyllaDB-backed [`Store`].
pub struct ScyllaStore {
    session: Session,
    statements: HashMap<Stmt, PreparedStatement>,
    /// Every request holds one permit while it runs (`max_in_flight`).
    in_flight: Arc<Semaphore>,
    /// This instance's id, written on every `sku_log` row (who wrote it, for operators).
    writer: String,
    /// The cursor time of the last batch planned, and which batch it was (a retry of the
    /// same batch reuses it, so the rewrite hits the same history rows).
    last_batch: std::sync::Mutex<LastBatch>,
    /// The newest `forget_before_ms` of [`Store::record_order_lines`]: rows seen before
    /// it are hidden at once (their TTL removes them later).
    order_lines_forget_before_ms: std::sync::atomic::AtomicI64,
}

/// What the store remembers of the last batch it planned (see [`model::assign_cursors`]).
#[derive(Default)]
struct LastBatch {
    /// Which batch it was.
    identity: Option<model::BatchIdentity>,
    /// The cursor time its cursors started after.
    previous_ms: i64,
    /// The latest cursor time handed out.
    last_ms: i64,
}

fn backend_error(operation: &'static str) -> impl Fn(String) -> StoreError {
    move |message| StoreError::Backend { operation, message }
}

/// The driver's consistency for the configured one.
pub fn consistency(configured: ScyllaConsistency) -> Consistency {
    match configured {
        ScyllaConsistency::LocalQuorum => Consistency::LocalQuorum,
        ScyllaConsistency::Quorum => Consistency::Quorum,
        ScyllaConsistency::EachQuorum => Consistency::EachQuorum,
        ScyllaConsistency::LocalOne => Consistency::LocalOne,
        ScyllaConsistency::One => Consistency::One,
        ScyllaConsistency::All => Consistency::All,
    }
}

/// The retry policy of [`model::retry_decision`] as the driver's [`RetryPolicy`].
#[derive(Debug)]
struct BoundedRetryPolicy {
    retries: u32,
}

struct BoundedRetrySession {
    retries: u32,
    done: u32,
}

impl RetryPolicy for BoundedRetryPolicy {
    fn new_session(&self) -> Box<dyn RetrySession> {
        Box::new(BoundedRetrySession {
            retries: self.retries,
            done: 0,
        })
    }
}

/// How a failed attempt counts for [`model::retry_decision`].
fn classify(error: &RequestAttemptError) -> model::Failure {
    use model::Failure;
    match error {
        RequestAttemptError::DbError(db_error, _) => match db_error {
            DbError::Unavailable { .. } => Failure::Unavailable,
            DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => Failure::Timeout,
            DbError::Overloaded | DbError::ServerError | DbError::IsBootstrapping => {
                Failure::Transient
            }
            _ => Failure::Permanent,
        },
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => Failure::Transient,
        _ => Failure::Permanent,
    }
}

impl RetrySession for BoundedRetrySession {
    fn decide_should_retry(&mut self, request_info: RequestInfo) -> RetryDecision {
        let decision = model::retry_decision(
            self.done,
            self.retries,
            request_info.is_idempotent,
            request_info.consistency.is_serial(),
            classify(request_info.error),
        );
        match decision {
            model::Retry::NextTarget => {
                self.done += 1;
                RetryDecision::RetryNextTarget(None)
            }
            model::Retry::GiveUp => RetryDecision::DontRetry,
        }
    }

    fn reset(&mut self) {
        self.done = 0;
    }
}

/// Connects to the cluster of `config` (token-aware and, with `local_dc`,
/// datacenter-aware load balancing; the configured consistency, `LOCAL_SERIAL` for
/// lightweight transactions, request timeout, retry policy and credentials).
///
/// Errors: [`StoreError::Backend`] when no node can be reached or authentication fails.
pub async fn connect(config: &ScyllaStoreConfig) -> Result<Session, StoreError> {
    let err = backend_error("open");
    if config.nodes.is_empty() {
        return Err(err(
            "[store.scylla] nodes is empty: list at least one contact point (host:port)".into(),
        ));
    }
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(datacenter) = &config.local_dc {
        policy = policy
            .prefer_datacenter(datacenter.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(consistency(config.consistency))
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(Duration::from_millis(
            config.request_timeout_ms.max(1),
        )))
        .load_balancing_policy(policy.build())
        .retry_policy(Arc::new(BoundedRetryPolicy {
            retries: config.retries,
        }))
        .build();
    let connect_timeout = Duration::from_millis(config.connect_timeout_ms.max(1));
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(connect_timeout)
        .schema_agreement_timeout(request_timeout(config))
        .default_execution_profile_handle(profile.into_handle());
    if let Some(username) = &config.username {
        builder = builder.user(username, config.password.clone().unwrap_or_default());
    }
    // The driver's connection timeout covers only the TCP connect: a node that accepts
    // and never answers the CQL handshake would hold `build` until the driver's own
    // keepalive gives up (about 60 s). The whole build is bounded here.
    match tokio::time::timeout(connect_timeout, builder.build()).await {
        Ok(session) => {
            session.map_err(|e| err(format!("cannot connect to {:?}: {e}", config.nodes)))
        }
        Err(_) => Err(err(format!(
            "cannot connect to {:?}: no session within connect_timeout_ms = {} (a node \
             accepted the connection but did not answer the CQL handshake, or none could \
             be reached)",
            config.nodes, config.connect_timeout_ms
        ))),
    }
}

/// One request's client-side bound, `request_timeout_ms`.
fn request_timeout(config: &ScyllaStoreConfig) -> Duration {
    Duration::from_millis(config.request_timeout_ms.max(1))
}

/// Runs one request made while opening the store under `bound`; past it the error names
/// the nodes and `what` was being done.
async fn bounded<T>(
    config: &ScyllaStoreConfig,
    operation: &'static str,
    what: &str,
    bound: Duration,
    request: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(bound, request).await {
        Ok(result) => result,
        Err(_) => Err(backend_error(operation)(format!(
            "{what}: no answer from {:?} within {} ms",
            config.nodes,
            bound.as_millis()
        ))),
    }
}

/// Creates the keyspace (with the configured replication) and every table when missing;
/// running it again changes nothing. `stocksync migrate` reaches it through
/// [`crate::store::open`] with `create_schema = true`.
///
/// Errors: [`StoreError::Backend`] for an invalid keyspace name or replication, or a
/// failed DDL statement.
pub async fn create_schema(
    session: &Session,
    config: &ScyllaStoreConfig,
) -> Result<(), StoreError> {
    let err = backend_error("create_schema");
    let statements = cql::schema(&config.keyspace, &config.replication).map_err(&err)?;
    // A DDL statement is one request, then the driver's wait for schema agreement (set to
    // `request_timeout_ms` in `connect`): bounded by twice the request timeout.
    let bound = request_timeout(config).saturating_mul(2);
    for statement in statements {
        bounded(config, "create_schema", &statement, bound, async {
            session
                .query_unpaged(statement.as_str(), ())
                .await
                .map_err(|e| err(format!("{e} (in: {statement})")))
        })
        .await?;
    }
    // Tables created by an earlier build lack the columns added since.
    let what = "reading the keyspace's columns";
    let present = bounded(config, "create_schema", what, bound, async {
        let rows = session
            .query_unpaged(cql::SELECT_COLUMNS, (config.keyspace.as_str(),))
            .await
            .map_err(|e| err(format!("{what}: {e}")))?
            .into_rows_result()
            .map_err(|e| err(format!("{what}: {e}")))?;
        rows.rows::<(String, String)>()
            .map_err(|e| err(format!("{what}: {e}")))?
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|e| err(format!("{what}: {e}")))
    })
    .await?;
    for statement in cql::missing_columns(&config.keyspace, &present) {
        bounded(config, "create_schema", &statement, bound, async {
            session
                .query_unpaged(statement.as_str(), ())
                .await
                .map_err(|e| err(format!("{e} (in: {statement})")))
        })
        .await?;
    }
    Ok(())
}

impl ScyllaStore {
    /// Connects, creates the schema (`create_schema = true`) or checks that every table is
    /// there, and prepares every statement.
    ///
    /// Errors: [`StoreError::Backend`] when the cluster cannot be reached, the schema
    /// cannot be created, tables are missing (the message names `stocksync migrate`), or a
    /// statement does not prepare.
    pub async fn open(config: &ScyllaStoreConfig) -> Result<Self, StoreError> {
        let err = backend_error("open");
        cql::validate_keyspace(&config.keyspace).map_err(&err)?;
        let session = connect(config).await?;
        if config.create_schema {
            create_schema(&session, config).await?;
        }
        // All statements are prepared at once (one round trip each, concurrently).
        let prepared = futures::future::try_join_all(Stmt::ALL.iter().map(|&stmt| {
            let (session, err) = (&session, &err);
            async move {
                let text = stmt.cql(&config.keyspace);
                let what = format!("preparing {text}");
                let preparing = bounded(config, "open", &what, request_timeout(config), async {
                    Ok(session.prepare(text.as_str()).await)
                });
                let mut prepared = match preparing.await? {
                    Ok(prepared) => prepared,
                    Err(e) if !config.create_schema => {
                        return Err(err(format!(
                            "{e}; is the schema missing? create it with `stocksync migrate` \
                             (or set [store.scylla] create_schema = true)"
                        )));
                    }
                    Err(e) => return Err(err(format!("cannot prepare {text}: {e}"))),
                };
                prepared.set_is_idempotent(!stmt.is_lwt());
                prepared.set_page_size(PAGE_ROWS);
                if config.consistency == ScyllaConsistency::EachQuorum && !is_write(stmt) {
                    // EACH_QUORUM is for writes; reads use LOCAL_QUORUM.
                    prepared.set_consistency(Consistency::LocalQuorum);
                }
                Ok((stmt, prepared))
            }
        }))
        .await?;
        let statements: HashMap<Stmt, PreparedStatement> = prepared.into_iter().collect();
        let store = Self {
            session,
            statements,
            in_flight: Arc::new(Semaphore::new(
                config.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            )),
            writer: uuid::Uuid::new_v4().to_string(),
            last_batch: std::sync::Mutex::new(LastBatch::default()),
            order_lines_forget_before_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        };
        if !config.create_schema {
            store.check_schema(&config.keyspace).await?;
        }
        Ok(store)
    }

    async fn check_schema(&self, keyspace: &str) -> Result<(), StoreError> {
        let mut present = BTreeSet::new();
        let mut state = PagingState::start();
        loop {
            let (rows, next): (Vec<(String,)>, _) = self
                .page(
                    "open",
                    Stmt::SelectTables,
                    model::values_text(&[keyspace]),
                    state,
                )
                .await?;
            present.extend(rows.into_iter().map(|(name,)| name));
            match next {
                Some(more) => state = more,
                None => break,
            }
        }
        let missing: Vec<&str> = cql::TABLES
            .iter()
            .copied()
            .filter(|table| !present.contains(*table))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Backend {
                operation: "open",
                message: format!(
                    "keyspace {keyspace} lacks the tables {missing:?}: create them with \
                     `stocksync migrate` (or set [store.scylla] create_schema = true)"
                ),
            })
        }
    }

    /// The prepared statement (every statement of `Stmt::ALL` is prepared in `open`).
    fn prepared(&self, stmt: Stmt) -> Result<&PreparedStatement, StoreError> {
        self.statements
            .get(&stmt)
            .ok_or_else(|| StoreError::Backend {
                operation: "prepare",
                message: format!("{stmt:?} was not prepared (missing from Stmt::ALL)"),
            })
    }

    async fn permit(
        &self,
        operation: &'static str,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.in_flight
            .acquire()
            .await
            .map_err(|e| StoreError::Backend {
                operation,
                message: e.to_string(),
            })
    }

    /// Executes one write.
    async fn execute(&self, operation: &'static str, write: &Write) -> Result<(), StoreError> {
        let _permit = self.permit(operation).await?;
        self.session
            .execute_unpaged(self.prepared(write.stmt)?, &write.values)
            .await
            .map(|_| ())
            .map_err(|e| backend_error(operation)(format!("{:?}: {e}", write.stmt)))
    }

    /// Executes writes of one partition as one `UNLOGGED` batch.
    async fn batch(&self, operation: &'static str, writes: &[Write]) -> Result<(), StoreError> {
        if writes.len() == 1 {
            return self.execute(operation, &writes[0]).await;
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for write in writes {
            batch.append_statement(self.prepared(write.stmt)?.clone());
        }
        batch.set_is_idempotent(true);
        let values: Vec<&Values> = writes.iter().map(|write| &write.values).collect();
        let _permit = self.permit(operation).await?;
        self.session
            .batch(&batch, values)
            .await
            .map(|_| ())
            .map_err(|e| backend_error(operation)(format!("batch: {e}")))
    }

    /// Executes independent writes concurrently (bounded by the semaphore).
    async fn execute_all(
        &self,
        operation: &'static str,
        writes: &[Write],
    ) -> Result<(), StoreError> {
        futures::future::try_join_all(writes.iter().map(|write| self.execute(operation, write)))
            .await
            .map(|_| ())
    }

    /// Reads one page of `stmt`.
    async fn page<R>(
        &self,
        operation: &'static str,
        stmt: Stmt,
        values: Values,
        state: PagingState,
    ) -> Result<(Vec<R>, Option<PagingState>), StoreError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame>,
    {
        let err = backend_error(operation);
        let (result, next) = {
            let _permit = self.permit(operation).await?;
            self.session
                .execute_single_page(self.prepared(stmt)?, &values, state)
                .await
                .map_err(|e| err(format!("{stmt:?}: {e}")))?
        };
        let rows = result
            .into_rows_result()
            .map_err(|e| err(format!("{stmt:?}: {e}")))?;
        let decoded = rows
            .rows::<R>()
            .map_err(|e| err(format!("{stmt:?}: {e}")))?
            .collect::<Result<Vec<R>, _>>()
            .map_err(|e| err(format!("{stmt:?}: {e}")))?;
        let next = match next {
            PagingStateResponse::HasMorePages { .. } => match next.into_paging_control_flow() {
                ControlFlow::Continue(state) => Some(state),
                ControlFlow::Break(()) => None,
            },
            PagingStateResponse::NoMorePages => None,
        };
        Ok((decoded, next))
    }

    /// Reads every page of `stmt`, handing each row to `each` until it breaks.
    async fn scan<R>(
        &self,
        operation: &'static str,
        stmt: Stmt,
        values: Values,
        mut each: impl FnMut(R) -> ControlFlow<()>,
    ) -> Result<(), StoreError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame>,
    {
        let mut state = PagingState::start();
        loop {
            let (rows, next) = self
                .page::<R>(operation, stmt, values.clone(), state)
                .await?;
            for row in rows {
                if each(row).is_break() {
                    return Ok(());
                }
            }
            match next {
                Some(more) => state = more,
                None => return Ok(()),
            }
        }
    }

    /// Refuses the commit when a fence is already stale (a cheap read before the write;
    /// a takeover between this read and the write is caught by the replay filter).
    async fn check_fences(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        for fence in &batch.fences {
            let current = self
                .current_epoch_of("commit", &fence.scope)
                .await?
                .map_or(0, |(epoch, _)| epoch);
            if current > fence.epoch {
                return Err(StoreError::Fenced {
                    scope: fence.scope.clone(),
                    epoch: fence.epoch,
                    current,
                });
            }
        }
        Ok(())
    }

    /// Executes one lightweight transaction; whether it applied.
    async fn transact(&self, operation: &'static str, write: &Write) -> Result<bool, StoreError> {
        let result = {
            let _permit = self.permit(operation).await?;
            self.session
                .execute_unpaged(self.prepared(write.stmt)?, &write.values)
                .await
                .map_err(|e| backend_error(operation)(format!("{:?}: {e}", write.stmt)))?
        };
        applied(operation, result)
    }

    /// Writes `scope`'s entry in the index of scopes ([`Store::leases`] lists from it).
    async fn index_scope(&self, operation: &'static str, scope: &str) -> Result<(), StoreError> {
        self.execute(
            operation,
            &Write {
                stmt: Stmt::InsertOwnershipScope,
                values: model::values_text(&[scope]),
            },
        )
        .await
    }

    /// The `ownership` row of `scope` with its lease columns, if there is one.
    async fn stored_lease(
        &self,
        operation: &'static str,
        scope: &str,
    ) -> Result<Option<model::StoredLease>, StoreError> {
        let mut found = None;
        self.scan::<model::OwnershipTuple>(
            operation,
            Stmt::SelectLease,
            model::values_text(&[scope]),
            |row| {
                found = model::stored_lease_of(scope, row);
                ControlFlow::Break(())
            },
        )
        .await?;
        Ok(found)
    }

    async fn current_epoch_of(
        &self,
        operation: &'static str,
        scope: &str,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let mut found = None;
        self.scan::<(Option<i64>, Option<String>)>(
            operation,
            Stmt::SelectOwnership,
            model::values_text(&[scope]),
            |(epoch, owner)| {
                found = epoch.map(|epoch| (epoch.max(0) as u64, owner.unwrap_or_default()));
                ControlFlow::Break(())
            },
        )
        .await?;
        Ok(found)
    }

    async fn write_batch(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        self.check_fences(batch).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let cursors = {
            let mut last = self
                .last_batch
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let identity = model::batch_identity(batch);
            if identity.is_none() || identity != last.identity {
                // A new batch starts after the previous one's last cursor time; a retry
                // starts where its first attempt did, so it gets the same cursors.
                last.identity = identity;
                last.previous_ms = last.last_ms;
            }
            let cursors = model::assign_cursors(batch, last.previous_ms);
            if let Some(cursor) = cursors.last() {
                last.last_ms = last.last_ms.max(model::cursor_ms(*cursor));
            }
            cursors
        };
        let now_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
            });
        let plan = model::plan_commit(batch, &self.writer, &cursors, now_micros)?;
        self.execute_all("commit", &plan.before).await?;
        futures::future::try_join_all(plan.partitions.iter().map(|(_, chunks)| async move {
            for chunk in chunks {
                self.batch("commit", chunk).await?;
            }
            Ok::<(), StoreError>(())
        }))
        .await?;
        let groups = model::group_by_partition(plan.after);
        futures::future::try_join_all(
            groups
                .into_iter()
                .flat_map(model::chunk_partition)
                .map(|chunk| async move { self.batch("commit", &chunk).await }),
        )
        .await
        .map(|_| ())
    }

    /// Reads a SKU's partition, assembles it and repairs the history of its last batch.
    async fn assemble(&self, sku: &str, now_ms: i64) -> Result<model::AssembledSku, StoreError> {
        let mut rows = Vec::new();
        self.scan::<LogTuple>(
            "load_sku",
            Stmt::SelectLog,
            model::values_text(&[sku]),
            |row| {
                rows.push(log_row(row));
                ControlFlow::Continue(())
            },
        )
        .await?;
        let assembled = model::assemble_load(sku, &rows, now_ms);
        if let Some((from, to)) = assembled.marker {
            let present: BTreeSet<u64> = self
                .history_rows(sku, from, to.saturating_add(1), usize::MAX)
                .await?
                .into_iter()
                .map(|event| event.event.seq)
                .collect();
            let repair = model::plan_history_repair(&assembled, &present)?;
            if !repair.is_empty() {
                tracing::info!(
                    sku,
                    rows = repair.len(),
                    "rewriting history rows a crash left out"
                );
                self.execute_all("load_sku", &repair).await?;
            }
        }
        Ok(assembled)
    }

    /// `sku_history` rows of `sku` with seq in `from..to`, through the replay filter.
    async fn history_rows(
        &self,
        sku: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<EventWithEpoch>, StoreError> {
        let mut rows = Vec::new();
        let mut bucket = model::history_bucket(from.max(1));
        if from >= to {
            return Ok(rows);
        }
        loop {
            let before = rows.len();
            let values = vec![
                model::value_text(sku),
                model::value_big(bucket),
                model::value_big(model::to_bigint(from, "seq")?),
                model::value_big(model::to_bigint(to.min(i64::MAX as u64), "seq")?),
            ];
            self.scan::<EventTuple>("events", Stmt::SelectSkuHistory, values, |row| {
                rows.extend(event_row(sku, row));
                ControlFlow::Continue(())
            })
            .await?;
            let last_in_bucket = (bucket as u64 + 1) * model::SKU_HISTORY_BUCKET_EVENTS;
            // Seqs are dense: an empty bucket means there is nothing further.
            if rows.len() == before || rows.len() >= limit || last_in_bucket.saturating_add(1) >= to
            {
                break;
            }
            bucket += 1;
        }
        let mut kept = model::replay_filter(rows);
        kept.truncate(limit);
        Ok(kept)
    }

    /// Events of `sku` with seq `from_seq..`, at most `limit`: the retained ones from
    /// `sku_log`, older ones from `sku_history`.
    async fn sku_events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventWithEpoch>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from_seq = from_seq.max(1);
        let to_seq = from_seq.saturating_add(limit as u64).min(i64::MAX as u64);
        let mut rows = Vec::new();
        let values = vec![
            model::value_text(sku),
            model::value_big(model::to_bigint(from_seq, "seq")?),
            model::value_big(model::to_bigint(to_seq, "seq")?),
        ];
        self.scan::<EventTuple>("events", Stmt::SelectEventsFrom, values, |row| {
            rows.extend(event_row(sku, row));
            ControlFlow::Continue(())
        })
        .await?;
        let retained = model::replay_filter(rows);
        let first_retained = retained.first().map(|e| e.event.seq);
        if first_retained == Some(from_seq) {
            return Ok(retained);
        }
        // Older events were pruned from the partition: read them from the history.
        let older_until = first_retained.unwrap_or(to_seq);
        let mut events = self.history_rows(sku, from_seq, older_until, limit).await?;
        let contiguous = events
            .last()
            .is_none_or(|last| first_retained.is_none_or(|first| last.event.seq + 1 == first));
        if contiguous {
            events.extend(retained);
        }
        events.truncate(limit);
        Ok(events)
    }

    async fn sorted_index<R>(
        &self,
        operation: &'static str,
        stmt: Stmt,
        after: Option<&str>,
        limit: usize,
        mut each: impl FnMut(R) -> Option<String>,
    ) -> Result<(), StoreError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame>,
    {
        let mut remaining = limit;
        let first = after.map_or(0, model::sku_bucket);
        for bucket in first..=255 {
            if remaining == 0 {
                break;
            }
            let from = match after {
                Some(after) if bucket == first => after,
                _ => "",
            };
            let values = vec![
                model::value_int(bucket),
                model::value_text(from),
                model::value_int(i32::try_from(remaining).unwrap_or(i32::MAX)),
            ];
            self.scan::<R>(operation, stmt, values, |row| {
                if each(row).is_some() {
                    remaining -= 1;
                }
                if remaining == 0 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await?;
        }
        Ok(())
    }

    async fn query_global_history(
        &self,
        query: &EventQuery,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let (after, before) = model::cursor_range(query.from_ms, query.to_ms, query.after);
        let first_hour = if after < 0 {
            0
        } else {
            model::hour_of_cursor(after as u64)
        };
        let last_hour = model::hour_of_cursor(before.max(0) as u64);
        let mut hours = Vec::new();
        self.scan::<(i64,)>(
            "query_events",
            Stmt::SelectHistoryHours,
            vec![model::value_big(first_hour), model::value_big(last_hour)],
            |(hour,)| {
                hours.push(hour);
                ControlFlow::Continue(())
            },
        )
        .await?;
        let mut found = Vec::new();
        let mut scanned = 0;
        let mut failure = None;
        for hour in hours {
            if found.len() >= query.limit || scanned >= MAX_SCANNED_ROWS {
                break;
            }
            let values = vec![
                model::value_big(hour),
                model::value_big(after),
                model::value_big(before),
            ];
            self.scan::<HistoryTuple>("query_events", Stmt::SelectHistory, values, |row| {
                scanned += 1;
                let (cursor, sku, seq, _epoch, key, expires, recorded, movement, outcome) = row;
                let event = EventRecord {
                    sku,
                    seq: seq.max(0) as u64,
                    idempotency_key: key.unwrap_or_default(),
                    key_expires_at_ms: expires.unwrap_or(0),
                    recorded_at_ms: recorded.unwrap_or(0),
                    movement: movement.unwrap_or_default(),
                    movement_hash: None,
                };
                let history = HistoryEvent {
                    cursor: cursor.max(0) as u64,
                    event,
                    outcome,
                };
                match wanted(&history, query) {
                    Ok(true) => found.push(history),
                    Ok(false) => {}
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                if found.len() >= query.limit || scanned >= MAX_SCANNED_ROWS {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await?;
            if let Some(e) = failure.take() {
                return Err(e);
            }
        }
        Ok(found)
    }

    async fn query_sku_history(
        &self,
        sku: &str,
        query: &EventQuery,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let mut found = Vec::new();
        let mut next_seq = 1;
        let mut scanned = 0;
        while found.len() < query.limit && scanned < MAX_SCANNED_ROWS {
            let events = self.sku_events(sku, next_seq, PAGE_ROWS as usize).await?;
            let Some(last) = events.last() else { break };
            next_seq = last.event.seq + 1;
            scanned += events.len();
            for event in events {
                let history = event.into_history();
                if wanted(&history, query)? {
                    found.push(history);
                    if found.len() >= query.limit {
                        break;
                    }
                }
            }
        }
        found.sort_by_key(|row| row.cursor);
        Ok(found)
    }
}

/// Whether a history row passes the query's filters (cursor, time, SKU, source, kind).
fn wanted(history: &HistoryEvent, query: &EventQuery) -> Result<bool, StoreError> {
    let event = &history.event;
    if query.after.is_some_and(|after| history.cursor <= after)
        || query
            .from_ms
            .is_some_and(|from| event.recorded_at_ms < from)
        || query.to_ms.is_some_and(|to| event.recorded_at_ms >= to)
        || query.sku.as_ref().is_some_and(|sku| *sku != event.sku)
    {
        return Ok(false);
    }
    crate::store::codec::movement_matches(
        &event.movement,
        query.source.as_deref(),
        query.kind.as_deref(),
    )
    .map_err(|e| StoreError::Corrupt {
        sku: event.sku.clone(),
        message: format!("event {}: {e}", event.seq),
    })
}

fn is_write(stmt: Stmt) -> bool {
    !matches!(
        stmt,
        Stmt::SelectLog
            | Stmt::SelectEventsFrom
            | Stmt::SelectKey
            | Stmt::SelectEventAt
            | Stmt::SelectSkuHistory
            | Stmt::SelectHistory
            | Stmt::SelectHistoryHours
            | Stmt::SelectSkus
            | Stmt::SelectSku
            | Stmt::SelectHoldExpiries
            | Stmt::SelectOffsets
            | Stmt::SelectPushed
            | Stmt::SelectPushLogDays
            | Stmt::SelectPushLog
            | Stmt::CountPushLog
            | Stmt::SelectConfigAudit
            | Stmt::SelectReservation
            | Stmt::SelectOrderLines
            | Stmt::SelectDeadLetters
            | Stmt::SelectOwnership
            | Stmt::SelectLease
            | Stmt::SelectOwnershipScopes
            | Stmt::SelectTables
    )
}

/// A row of [`Stmt::SelectLog`].
type LogTuple = (
    i32,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A row of [`Stmt::SelectEventsFrom`] and [`Stmt::SelectSkuHistory`].
type EventTuple = (
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<String>,
    Option<i64>,
);

/// A row of [`Stmt::SelectHistory`].
type HistoryTuple = (
    i64,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<String>,
);

/// A stored `bigint` seq or epoch as `u64` (negative values never stored; read as 0).
fn unsigned(value: i64) -> u64 {
    value.max(0) as u64
}

fn log_row(row: LogTuple) -> LogRow {
    let (
        kind,
        name,
        seq,
        epoch,
        writer,
        key,
        expires,
        recorded,
        body,
        hash,
        outcome,
        from,
        to,
        cursor,
    ) = row;
    LogRow {
        kind,
        name,
        seq: unsigned(seq),
        epoch: unsigned(epoch),
        writer,
        idempotency_key: key,
        key_expires_at_ms: expires,
        recorded_at_ms: recorded,
        body,
        movement_hash: hash.map(|hash| hash as u64),
        outcome,
        history_from: from.map(unsigned),
        history_to: to.map(unsigned),
        cursor: cursor.map(unsigned),
    }
}

/// An event row (either table); `None` for a row without a movement (only an outcome).
fn event_row(sku: &str, row: EventTuple) -> Option<EventWithEpoch> {
    let (seq, epoch, _writer, key, expires, recorded, movement, outcome, cursor) = row;
    Some(EventWithEpoch {
        event: EventRecord {
            sku: sku.to_owned(),
            seq: unsigned(seq),
            idempotency_key: key?,
            key_expires_at_ms: expires.unwrap_or(0),
            recorded_at_ms: recorded.unwrap_or(0),
            movement: movement?,
            movement_hash: None,
        },
        epoch: unsigned(epoch),
        outcome,
        cursor: cursor.map_or(0, unsigned),
    })
}

/// The `[applied]` column of a lightweight transaction's answer.
fn applied(
    operation: &'static str,
    result: scylla::response::query_result::QueryResult,
) -> Result<bool, StoreError> {
    let err = backend_error(operation);
    let rows = result.into_rows_result().map_err(|e| err(e.to_string()))?;
    let row = rows
        .maybe_first_row::<scylla::value::Row>()
        .map_err(|e| err(e.to_string()))?;
    Ok(matches!(
        row.and_then(|row| row.columns.into_iter().next().flatten()),
        Some(scylla::value::CqlValue::Boolean(true))
    ))
}

#[async_trait]
impl Store for ScyllaStore {
    fn backend_name(&self) -> &'static str {
        "scylla"
    }

    async fn acquire_epoch(&self, scope: &str, owner: &str) -> Result<u64, StoreError> {
        const OPERATION: &str = "acquire_epoch";
        // The index entry first, so that a scope never exists unlisted (acquiring is rare;
        // writing it every time also lists scopes claimed before the index existed).
        self.index_scope(OPERATION, scope).await?;
        for _ in 0..EPOCH_ATTEMPTS {
            let current = self.current_epoch_of(OPERATION, scope).await?;
            let (write, next) = model::acquire_write(scope, owner, current.map(|(e, _)| e))?;
            if self.transact(OPERATION, &write).await? {
                return Ok(next);
            }
        }
        Err(backend_error(OPERATION)(format!(
            "{scope}: the epoch changed under {EPOCH_ATTEMPTS} attempts in a row"
        )))
    }

    async fn try_lease(
        &self,
        scope: &str,
        owner: &str,
        payload: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        const OPERATION: &str = "try_lease";
        lease::check_request(scope, owner, payload, ttl_ms)?;
        for _ in 0..EPOCH_ATTEMPTS {
            let stored = self.stored_lease(OPERATION, scope).await?;
            let decision = lease::decide(
                stored.as_ref().map(|stored| stored.lease.clone()),
                scope,
                owner,
                payload,
                now_ms,
                ttl_ms,
            )?;
            let Some(write) = model::lease_write(&decision, stored.as_ref())? else {
                return Ok(decision.outcome());
            };
            if matches!(decision, LeaseDecision::Insert(_)) {
                self.index_scope(OPERATION, scope).await?;
            }
            if self.transact(OPERATION, &write).await? {
                return Ok(decision.outcome());
            }
        }
        Err(backend_error(OPERATION)(format!(
            "{scope}: the lease changed under {EPOCH_ATTEMPTS} attempts in a row"
        )))
    }

    async fn release_lease(
        &self,
        scope: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "release_lease";
        lease::check_scope(OPERATION, scope)?;
        lease::check_owner(OPERATION, owner)?;
        match model::release_write(scope, owner, epoch) {
            Some(write) => self.transact(OPERATION, &write).await,
            None => Ok(false),
        }
    }

    async fn leases(&self, prefix: &str, limit: usize) -> Result<Vec<Lease>, StoreError> {
        const OPERATION: &str = "leases";
        lease::check_prefix(prefix)?;
        let wanted = lease::listed(limit);
        let mut found = Vec::new();
        let mut from = prefix.to_owned();
        while found.len() < wanted {
            let asked = wanted - found.len();
            let mut read = Vec::new();
            self.scan::<(String,)>(
                OPERATION,
                Stmt::SelectOwnershipScopes,
                model::scope_page_values(&from, asked),
                |(scope,)| {
                    read.push(scope);
                    ControlFlow::Continue(())
                },
            )
            .await?;
            let (scopes, done) = model::scopes_with_prefix(read, prefix, asked);
            if let Some(last) = scopes.last() {
                from = model::scope_after(last);
            }
            // An index entry without a row (its insert failed) is skipped.
            let rows = futures::future::try_join_all(
                scopes
                    .iter()
                    .map(|scope| self.stored_lease(OPERATION, scope)),
            )
            .await?;
            found.extend(rows.into_iter().flatten().map(|stored| stored.lease));
            if done {
                break;
            }
        }
        found.truncate(wanted);
        Ok(found)
    }

    async fn current_epoch(&self, scope: &str) -> Result<Option<(u64, String)>, StoreError> {
        self.current_epoch_of("current_epoch", scope).await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.write_batch(&batch).await
    }

    async fn commit_shared(&self, batch: Arc<CommitBatch>) -> Result<(), StoreError> {
        self.write_batch(&batch).await
    }

    async fn load_sku(&self, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError> {
        self.assemble(sku, now_ms).await.map(|a| a.loaded)
    }

    async fn load_skus(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<BatchLoadedSku>, StoreError> {
        futures::future::try_join_all(skus.iter().map(|sku| async move {
            let assembled = self.assemble(sku, now_ms).await?;
            let mut loaded = assembled.loaded;
            loaded.idempotency_keys.clear();
            Ok::<_, StoreError>(BatchLoadedSku {
                loaded,
                keys: assembled.keys,
            })
        }))
        .await
    }

    async fn find_idempotency_key_hash(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(u64, Option<u64>)>, StoreError> {
        async {
            let mut rows: Vec<(i64, i64, Option<i64>, Option<i64>)> = Vec::new();
            self.scan(
                "find_idempotency_key",
                Stmt::SelectKey,
                model::values_text(&[sku, key]),
                |row| {
                    rows.push(row);
                    ControlFlow::Continue(())
                },
            )
            .await?;
            // Lowest seq first (the embedded store's order), of the unexpired rows whose
            // event is the highest-epoch row of its seq (or already pruned).
            rows.sort_by_key(|row| (row.0, std::cmp::Reverse(row.1)));
            for (seq, epoch, expires, hash) in rows {
                if expires.is_none_or(|at| at <= now_ms) {
                    continue;
                }
                let mut highest: Option<i64> = None;
                self.scan::<(i64, Option<String>)>(
                    "find_idempotency_key",
                    Stmt::SelectEventAt,
                    vec![model::value_text(sku), model::value_big(seq)],
                    |(epoch, key)| {
                        if key.is_some() {
                            highest = Some(highest.map_or(epoch, |h| h.max(epoch)));
                        }
                        ControlFlow::Continue(())
                    },
                )
                .await?;
                if highest.is_none_or(|highest| highest == epoch) {
                    return Ok(Some((unsigned(seq), hash.map(|hash| hash as u64))));
                }
            }
            Ok(None)
        }
        .await
    }

    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.sku_events(sku, from_seq, limit)
            .await
            .map(|events| events.into_iter().map(|e| e.event).collect())
    }

    async fn list_skus(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut skus = Vec::new();
        let result = self
            .sorted_index::<(String,)>("list_skus", Stmt::SelectSkus, after, limit, |(sku,)| {
                skus.push(sku.clone());
                Some(sku)
            })
            .await;
        result.map(|()| skus)
    }

    async fn sku_exists(&self, sku: &str) -> Result<bool, StoreError> {
        let mut found = false;
        let result = self
            .scan::<(String,)>(
                "sku_exists",
                Stmt::SelectSku,
                vec![
                    model::value_int(model::sku_bucket(sku)),
                    model::value_text(sku),
                ],
                |_| {
                    found = true;
                    ControlFlow::Break(())
                },
            )
            .await;
        result.map(|()| found)
    }

    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, StoreError> {
        let mut offsets = Vec::new();
        let result = self
            .scan::<(String, String, i32, Option<i64>)>(
                "offsets",
                Stmt::SelectOffsets,
                model::values_text(&[group]),
                |(group, topic, partition, next)| {
                    if let Some(next_offset) = next {
                        offsets.push(OffsetWatermark {
                            group,
                            topic,
                            partition,
                            next_offset,
                        });
                    }
                    ControlFlow::Continue(())
                },
            )
            .await;
        result.map(|()| offsets)
    }

    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError> {
        let mut per_channel: BTreeMap<&str, Vec<Write>> = BTreeMap::new();
        for record in records {
            per_channel.entry(&record.channel).or_default().push(Write {
                stmt: Stmt::UpsertPushed,
                values: vec![
                    model::value_text(&record.channel),
                    model::value_text(&record.sku),
                    model::value_big(model::to_bigint(record.quantity, "quantity")?),
                    model::value_big(record.pushed_at_ms),
                ],
            });
        }
        futures::future::try_join_all(
            per_channel
                .into_values()
                .flat_map(model::chunk_partition)
                .map(|chunk| async move { self.batch("record_pushed", &chunk).await }),
        )
        .await
        .map(|_| ())
    }

    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError> {
        let mut pushed = Vec::new();
        let result = self
            .scan::<(String, String, Option<i64>, Option<i64>)>(
                "pushed",
                Stmt::SelectPushed,
                model::values_text(&[channel]),
                |(channel, sku, quantity, at)| {
                    pushed.push(PushedRecord {
                        channel,
                        sku,
                        quantity: unsigned(quantity.unwrap_or(0)),
                        pushed_at_ms: at.unwrap_or(0),
                    });
                    ControlFlow::Continue(())
                },
            )
            .await;
        result.map(|()| pushed)
    }

    /// Keys expire natively (`USING TTL`, and their expiry column is compared at read
    /// time), so there is nothing to delete: always `Ok(0)`.
    async fn expire_keys(&self, _now_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn query_events(&self, query: &EventQuery) -> Result<Vec<HistoryEvent>, StoreError> {
        match &query.sku {
            Some(sku) => self.query_sku_history(sku, query).await,
            None => self.query_global_history(query).await,
        }
    }

    async fn append_push_log(&self, records: &[PushLogRecord]) -> Result<(), StoreError> {
        let mut per_day: BTreeMap<i64, Vec<Write>> = BTreeMap::new();
        for record in records {
            let day = model::day_of_ms(record.at_ms);
            let id = uuid::Uuid::new_v4().as_u64_pair().0 as i64;
            per_day.entry(day).or_default().push(Write {
                stmt: Stmt::InsertPushLog,
                values: vec![
                    model::value_big(day),
                    model::value_big(record.at_ms),
                    model::value_big(id),
                    model::value_text(&record.channel),
                    model::value_text(&record.sku),
                    model::value_big(model::to_bigint(record.quantity, "quantity")?),
                    record
                        .change_from
                        .map_or(scylla::value::MaybeUnset::Unset, model::value_big),
                    model::value_text(&record.outcome),
                    model::value_opt_text(record.detail.as_deref()),
                    model::value_int(i32::try_from(record.requests).unwrap_or(i32::MAX)),
                ],
            });
        }
        let days: Vec<Write> = per_day
            .keys()
            .map(|day| Write {
                stmt: Stmt::InsertPushLogDay,
                values: vec![model::value_big(*day)],
            })
            .collect();
        async {
            self.execute_all("append_push_log", &days).await?;
            futures::future::try_join_all(
                per_day
                    .into_values()
                    .flat_map(model::chunk_partition)
                    .map(|chunk| async move { self.batch("append_push_log", &chunk).await }),
            )
            .await
            .map(|_| ())
        }
        .await
    }

    async fn query_push_log(&self, query: &PushLogQuery) -> Result<Vec<PushLogRecord>, StoreError> {
        let from = query.from_ms.unwrap_or(i64::MIN);
        let to = query.to_ms.unwrap_or(i64::MAX);
        async {
            let mut days = Vec::new();
            self.scan::<(i64,)>(
                "query_push_log",
                Stmt::SelectPushLogDays,
                vec![
                    model::value_big(model::day_of_ms(from)),
                    model::value_big(model::day_of_ms(to.saturating_sub(1))),
                ],
                |(day,)| {
                    days.push(day);
                    ControlFlow::Continue(())
                },
            )
            .await?;
            let mut found = Vec::new();
            for day in days.into_iter().rev() {
                if found.len() >= query.limit {
                    break;
                }
                self.scan::<PushLogTuple>(
                        "query_push_log",
                        Stmt::SelectPushLog,
                        vec![
                            model::value_big(day),
                            model::value_big(from),
                            model::value_big(to),
                        ],
                        |row| {
                            let (
                                channel,
                                sku,
                                quantity,
                                change_from,
                                outcome,
                                detail,
                                requests,
                                at_ms,
                            ) = row;
                            let matches = query.channel.as_ref().is_none_or(|c| *c == channel)
                                && query.sku.as_ref().is_none_or(|s| *s == sku);
                            if matches {
                                found.push(PushLogRecord {
                                    channel,
                                    sku,
                                    quantity: unsigned(quantity.unwrap_or(0)),
                                    change_from,
                                    outcome: outcome.unwrap_or_default(),
                                    detail,
                                    requests: requests.unwrap_or(0).max(0) as u32,
                                    at_ms,
                                });
                            }
                            if found.len() >= query.limit {
                                ControlFlow::Break(())
                            } else {
                                ControlFlow::Continue(())
                            }
                        },
                    )
                    .await?;
            }
            Ok(found)
        }
        .await
    }

    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        let last_day = model::day_of_ms(before_ms);
        async {
            let mut days = Vec::new();
            self.scan::<(i64,)>(
                "prune_push_log",
                Stmt::SelectPushLogDays,
                vec![model::value_big(i64::MIN), model::value_big(last_day)],
                |(day,)| {
                    days.push(day);
                    ControlFlow::Continue(())
                },
            )
            .await?;
            let mut deleted = 0u64;
            for day in days {
                let whole = day < last_day;
                let bound = if whole { i64::MAX } else { before_ms };
                let mut counted = 0u64;
                self.scan::<(i64,)>(
                    "prune_push_log",
                    Stmt::CountPushLog,
                    vec![model::value_big(day), model::value_big(bound)],
                    |(rows,)| {
                        counted = unsigned(rows);
                        ControlFlow::Break(())
                    },
                )
                .await?;
                let key = vec![model::value_big(day), model::value_big(bound)];
                self.execute(
                    "prune_push_log",
                    &Write {
                        stmt: Stmt::DeletePushLogBefore,
                        values: key,
                    },
                )
                .await?;
                if whole {
                    self.execute(
                        "prune_push_log",
                        &Write {
                            stmt: Stmt::DeletePushLogDay,
                            values: vec![model::value_big(day)],
                        },
                    )
                    .await?;
                }
                deleted = deleted.saturating_add(counted);
            }
            Ok(deleted)
        }
        .await
    }

    async fn record_config_change(&self, record: &ConfigAuditRecord) -> Result<(), StoreError> {
        let id = uuid::Uuid::new_v4().as_u64_pair().0 as i64;
        let write = Write {
            stmt: Stmt::InsertConfigAudit,
            values: vec![
                model::value_big(record.at_ms),
                model::value_big(id),
                model::value_text(&record.action),
                model::value_text(&record.actor),
                model::value_text(&record.config_hash),
                model::value_text(&record.config_json),
            ],
        };
        self.execute("record_config_change", &write).await
    }

    async fn config_changes(&self, limit: usize) -> Result<Vec<ConfigAuditRecord>, StoreError> {
        let mut changes = Vec::new();
        let result = self
            .scan::<(
                i64,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
            )>(
                "config_changes",
                Stmt::SelectConfigAudit,
                vec![model::value_int(i32::try_from(limit).unwrap_or(i32::MAX))],
                |(at_ms, action, actor, hash, json)| {
                    changes.push(ConfigAuditRecord {
                        at_ms,
                        action: action.unwrap_or_default(),
                        actor: actor.unwrap_or_default(),
                        config_hash: hash.unwrap_or_default(),
                        config_json: json.unwrap_or_default(),
                    });
                    ControlFlow::Continue(())
                },
            )
            .await;
        changes.truncate(limit);
        result.map(|()| changes)
    }

    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HoldExpiryRecord>, StoreError> {
        let mut expiries = Vec::new();
        let result = self
            .sorted_index::<(String, Option<i64>)>(
                "hold_expiries",
                Stmt::SelectHoldExpiries,
                after,
                limit,
                |(sku, at)| {
                    let at = at?;
                    expiries.push(HoldExpiryRecord {
                        sku: sku.clone(),
                        next_expiry_ms: Some(at),
                    });
                    Some(sku)
                },
            )
            .await;
        result.map(|()| expiries)
    }

    async fn reservation(&self, id: &str) -> Result<Option<ReservationRecord>, StoreError> {
        let mut found = None;
        let result = self
            .scan::<(String, Option<String>, Option<String>, Option<i64>)>(
                "reservation",
                Stmt::SelectReservation,
                model::values_text(&[id]),
                |(id, request, refusal, created)| {
                    found = request.map(|request_json| ReservationRecord {
                        id,
                        request_json,
                        refusal_json: refusal,
                        created_at_ms: created.unwrap_or(0),
                    });
                    ControlFlow::Break(())
                },
            )
            .await;
        result.map(|()| found)
    }

    async fn order_lines(
        &self,
        channel: &str,
        order_id: &str,
    ) -> Result<Vec<OrderLineRecord>, StoreError> {
        let mut lines = Vec::new();
        let forget_before_ms = self
            .order_lines_forget_before_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let result = self
            .scan::<(
                String,
                String,
                String,
                Option<String>,
                Option<i64>,
                Option<i64>,
            )>(
                "order_lines",
                Stmt::SelectOrderLines,
                model::values_text(&[channel, order_id]),
                |(channel, order_id, line_id, sku, version, seen)| {
                    if let (Some(sku), Some(version), Some(seen_at_ms)) = (sku, version, seen)
                        && seen_at_ms >= forget_before_ms
                    {
                        lines.push(OrderLineRecord {
                            channel,
                            order_id,
                            line_id,
                            sku,
                            version,
                            seen_at_ms,
                        });
                    }
                    ControlFlow::Continue(())
                },
            )
            .await;
        result.map(|()| lines)
    }

    async fn record_order_lines(
        &self,
        records: &[OrderLineRecord],
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.order_lines_forget_before_ms
            .fetch_max(forget_before_ms, std::sync::atomic::Ordering::Relaxed);
        let mut per_order: BTreeMap<(&str, &str), Vec<Write>> = BTreeMap::new();
        for record in records
            .iter()
            .filter(|record| record.seen_at_ms >= forget_before_ms)
        {
            per_order
                .entry((&record.channel, &record.order_id))
                .or_default()
                .extend(model::order_line_writes(record, forget_before_ms));
        }
        futures::future::try_join_all(
            per_order
                .into_values()
                .flat_map(model::chunk_partition)
                .map(|chunk| async move { self.batch("record_order_lines", &chunk).await }),
        )
        .await
        .map(|_| ())
    }

    async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let mut letters = Vec::new();
        // Rows are read newest expiry first: a row kept only until before the newest
        // expiry is past its retention (the embedded store deletes it then; here its TTL
        // removes it later, and it is hidden at once).
        let mut newest_expiry: Option<i64> = None;
        let result = self
            .scan::<model::DeadLetterTuple>(
                "dead_letters",
                Stmt::SelectDeadLetters,
                Vec::new(),
                |row| {
                    if letters.len() >= query.limit {
                        return ControlFlow::Break(());
                    }
                    let letter = model::dead_letter_of(row);
                    let newest = *newest_expiry.get_or_insert(letter.expired_at_ms);
                    if letter.keep_until_ms >= newest
                        && query.sku.as_ref().is_none_or(|sku| *sku == letter.sku)
                    {
                        letters.push(letter);
                    }
                    if letters.len() >= query.limit {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
            .await;
        result.map(|()| letters)
    }
}

/// A row of [`Stmt::SelectPushLog`].
type PushLogTuple = (
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i32>,
    i64,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StoreBackend, StoreConfig};

    fn config(nodes: Vec<String>) -> ScyllaStoreConfig {
        ScyllaStoreConfig {
            nodes,
            connect_timeout_ms: 2_000,
            ..ScyllaStoreConfig::default()
        }
    }

    fn open_error(result: Result<ScyllaStore, StoreError>) -> String {
        match result {
            Ok(_) => panic!("opened without a cluster"),
            Err(StoreError::Backend { operation, message }) => {
                assert_eq!(operation, "open");
                message
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn no_nodes_or_a_bad_keyspace_is_refused_before_connecting() {
        let message = open_error(ScyllaStore::open(&config(Vec::new())).await);
        assert!(message.contains("nodes is empty"), "{message}");
        let bad = ScyllaStoreConfig {
            keyspace: "stock-sync".into(),
            ..config(vec!["127.0.0.1:9042".into()])
        };
        let message = open_error(ScyllaStore::open(&bad).await);
        assert!(message.contains("keyspace"), "{message}");
    }

    #[tokio::test]
    async fn the_registry_opens_the_scylla_backend_and_reports_an_unreachable_cluster() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let node = format!("127.0.0.1:{port}");
        let store = StoreConfig {
            backend: StoreBackend::Scylla,
            scylla: config(vec![node.clone()]),
            ..StoreConfig::default()
        };
        let error = match crate::store::open(&store).await {
            Ok(_) => panic!("opened without a cluster"),
            Err(error) => error,
        };
        let message = error.to_string();
        assert!(
            message.contains("cannot connect") && message.contains(&node),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_node_that_accepts_and_never_answers_fails_within_the_connect_timeout() {
        // Accepts every connection and holds it open without a byte in reply.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = listener.local_addr().unwrap().to_string();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let unresponsive = ScyllaStoreConfig {
            connect_timeout_ms: 300,
            request_timeout_ms: 300,
            ..config(vec![node.clone()])
        };
        let started = std::time::Instant::now();
        let message = open_error(ScyllaStore::open(&unresponsive).await);
        let elapsed = started.elapsed();
        silent.abort();
        assert!(
            elapsed < Duration::from_secs(5),
            "took {elapsed:?}: {message}"
        );
        assert!(
            message.contains(&node) && message.contains("connect_timeout_ms = 300"),
            "{message}"
        );
    }

    #[test]
    fn configured_consistencies_map_to_the_driver_s() {
        assert_eq!(
            consistency(ScyllaConsistency::default()),
            Consistency::LocalQuorum
        );
        assert_eq!(
            consistency(ScyllaConsistency::EachQuorum),
            Consistency::EachQuorum
        );
        assert_eq!(
            consistency(ScyllaConsistency::LocalOne),
            Consistency::LocalOne
        );
        assert!(is_write(Stmt::InsertEvent) && !is_write(Stmt::SelectLog));
        for &stmt in Stmt::ALL {
            let select = stmt.cql("ks").starts_with("SELECT");
            assert_eq!(is_write(stmt), !select, "{stmt:?}");
        }
    }
}
