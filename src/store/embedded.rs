//! The embedded backend: one SQLite file (WAL, `synchronous=FULL`), zero set-up.
//!
//! Chosen over pure-Rust key-value stores because it gives atomic multi-table
//! transactions (events, snapshots, keys and offsets in one write), a single well-known
//! file format that operators can inspect with `sqlite3`, and measured group-commit
//! throughput well above the ledger's target (see BENCHMARKS.md).
//!
//! One writer connection serves [`Store::commit`] and `record_pushed` on a blocking
//! thread; a second connection serves reads so they never wait for a commit (WAL). The WAL
//! is checkpointed and truncated on the policy of `store::wal` (size, idle, close).
//! Movements and snapshots are stored in `store::codec`'s encoding; JSON rows of earlier
//! builds load as they are. `try_lease` reads and writes the scope's `ownership` row in one
//! `IMMEDIATE` transaction on the writer connection (the write lock is held from the read
//! on, also against another process on the same file).
//!
//! May depend on: `domain`, `telemetry`, the rest of `store`.

use super::lease::{self, LeaseDecision};
use super::wal::{Reason, WalOptions, WalPolicy};
use super::{
    BatchLoadedSku, CommitBatch, ConfigAuditRecord, DeadLetterQuery, DeadLetterRecord, EventQuery,
    EventRecord, HistoryEvent, HoldExpiryRecord, IdempotencyKeyRecord, Lease, LeaseOutcome,
    LoadedSku, OffsetWatermark, OrderLineRecord, PushLogQuery, PushLogRecord, PushedRecord,
    ReservationRecord, SnapshotRecord, Store, StoreError,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The layout version written to `PRAGMA user_version`.
pub(crate) const LAYOUT_VERSION: i64 = 1;

/// The event log is an append-only heap (rowid order = commit order), so a group commit
/// appends to its last pages. The only structure written at random places is one narrow
/// table, `event_index`, keyed by SKU and sequence number (which also makes a second
/// writer of the same sequence number fail), carrying each event's heap id, idempotency
/// key and key expiry: it serves both loading a SKU's later events and its unexpired keys.
/// Keeping the movement bodies out of SKU-ordered B-trees, and keys out of a second
/// one, cut the pages written per commit several times over (BENCHMARKS.md). `movement`
/// and `state` hold BLOBs in the binary layout (`store::codec`) and TEXT (JSON) in rows of
/// earlier builds; SQLite keeps each value's own type, so both load.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL, seq INTEGER NOT NULL, idempotency_key TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL, movement TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_index (
    sku TEXT NOT NULL, seq INTEGER NOT NULL, event_id INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL, key_expires_at_ms INTEGER NOT NULL,
    movement_hash INTEGER,
    PRIMARY KEY (sku, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    sku TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skus (sku TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pushed (
    channel TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, pushed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (channel, sku)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_recorded_at ON events (recorded_at_ms);
CREATE TABLE IF NOT EXISTS push_log (
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL,
    change_from INTEGER, outcome TEXT NOT NULL, detail TEXT, requests INTEGER NOT NULL,
    at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS push_log_at ON push_log (at_ms);
CREATE INDEX IF NOT EXISTS push_log_channel_at ON push_log (channel, at_ms);
CREATE INDEX IF NOT EXISTS push_log_sku_at ON push_log (sku, at_ms);
CREATE TABLE IF NOT EXISTS config_audit (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
    config_hash TEXT NOT NULL, config_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hold_expiries (
    sku TEXT PRIMARY KEY, next_expiry_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY, request TEXT NOT NULL, refusal TEXT, created_at_ms INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS order_lines (
    channel TEXT NOT NULL, order_id TEXT NOT NULL, line_id TEXT NOT NULL, sku TEXT NOT NULL,
    version INTEGER NOT NULL, seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (channel, order_id, line_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS order_lines_seen ON order_lines (seen_at_ms);
CREATE TABLE IF NOT EXISTS event_outcomes (
    sku TEXT NOT NULL, seq INTEGER NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (sku, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    sku TEXT NOT NULL, parked_seq INTEGER NOT NULL, expired_seq INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    movement TEXT NOT NULL, reason TEXT NOT NULL, parked_at_ms INTEGER NOT NULL,
    expired_at_ms INTEGER NOT NULL, keep_until_ms INTEGER NOT NULL,
    PRIMARY KEY (sku, parked_seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_letters_expired ON dead_letters (expired_at_ms);
CREATE INDEX IF NOT EXISTS dead_letters_keep ON dead_letters (keep_until_ms);
CREATE TABLE IF NOT EXISTS ownership (
    scope TEXT PRIMARY KEY, epoch INTEGER NOT NULL, owner TEXT NOT NULL,
    expires_at_ms INTEGER, payload TEXT) WITHOUT ROWID;
";

// Audit tables (DESIGN.md §3 rule 7, issue 5). `events_recorded_at` serves the history
// filters by time: `recorded_at_ms` only grows, so each group commit appends its entries
// (~14 bytes each, ~290 per page) to the right-most leaf — about one extra page per 290
// events, a few percent of what the event heap itself writes. Source and kind live inside
// the stored movement and are filtered on top of the SKU or time range (no index: an index on
// them would cost a second write per event on the hot path). `push_log` and `config_audit`
// are written off the hot path (in batches by propagation, once at start) and pruned by
// retention. `event_outcomes` (issue 9 §2b) holds a row only for an event that was not plain
// `applied` (parked, ignored, or one that applied or expired parked movements), so the hot
// path writes nothing there; `dead_letters` rows come with the event that expired them
// (`INSERT OR IGNORE` on (sku, parked_seq): a retried batch never duplicates one) and are
// forgotten past their `keep_until_ms` whenever new ones are written.

/// SQLite-backed [`Store`].
pub struct EmbeddedStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    /// When the WAL is checkpointed and truncated (`store::wal`).
    wal: Arc<WalPolicy>,
    /// The idle checker's thread, woken to end when the store is dropped.
    wal_checker: Option<std::thread::Thread>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.wal.stop();
        if let Some(thread) = &self.wal_checker {
            thread.unpark();
        }
    }
}

fn backend(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |error| StoreError::Backend {
        operation,
        message: error.to_string(),
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file and its parent folder, with the default
    /// WAL policy.
    ///
    /// Errors: [`StoreError::Backend`] when the folder or file cannot be created or opened.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, WalOptions::default())
    }

    /// Opens (creating if needed) the database file and its parent folder, checkpointing
    /// the WAL as `wal` says.
    ///
    /// Errors: [`StoreError::Backend`] when the folder or file cannot be created or opened,
    /// or the WAL checker thread cannot be started.
    pub fn open_with(path: &Path, wal: WalOptions) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Backend {
                operation: "open",
                message: format!("cannot create {}: {e}", parent.display()),
            })?;
        }
        let writer = Connection::open(path).map_err(backend("open"))?;
        // Page caches: 64 MiB for the writer, 16 MiB for the reader. Pages beyond them are
        // read back from the OS page cache (a copy, no disk IO); every MiB here is resident
        // and counts against the per-SKU memory budget (BENCHMARKS.md, ledger memory).
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
                 PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-65536;
                 PRAGMA temp_store=MEMORY;",
            )
            .map_err(backend("open"))?;
        let version: i64 = writer
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(backend("open"))?;
        let has_tables: bool = writer
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .map_err(backend("open"))?;
        if has_tables && version != LAYOUT_VERSION {
            return Err(StoreError::Backend {
                operation: "open",
                message: format!(
                    "{} has store layout {version}, this build reads layout {LAYOUT_VERSION}",
                    path.display()
                ),
            });
        }
        writer.execute_batch(SCHEMA).map_err(backend("open"))?;
        add_movement_hash_column(&writer).map_err(backend("open"))?;
        add_lease_columns(&writer).map_err(backend("open"))?;
        writer
            .execute_batch(&format!("PRAGMA user_version = {LAYOUT_VERSION};"))
            .map_err(backend("open"))?;
        let reader = Connection::open(path).map_err(backend("open"))?;
        reader
            .execute_batch("PRAGMA busy_timeout=5000; PRAGMA cache_size=-16384;")
            .map_err(backend("open"))?;
        let writer = Arc::new(Mutex::new(writer));
        let wal = Arc::new(WalPolicy::new(path, wal));
        let checker = wal
            .spawn_idle_checker(Arc::downgrade(&writer))
            .map_err(|e| StoreError::Backend {
                operation: "open",
                message: format!("cannot start the wal checker: {e}"),
            })?;
        Ok(Self {
            writer,
            reader: Arc::new(Mutex::new(reader)),
            wal,
            wal_checker: Some(checker.thread().clone()),
        })
    }

    /// The WAL file's current size in bytes.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.wal_bytes()
    }

    async fn blocking<T: Send + 'static>(
        connection: &Arc<Mutex<Connection>>,
        method: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = connection
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend {
            operation: method,
            message: format!("blocking task failed: {e}"),
        })?
    }
}

/// Events per multi-row `INSERT`: one statement execution writes this many events (and
/// one more this many index entries); 64 rows × 6 values stays far below SQLite's limit of
/// bound values per statement.
const ROWS_PER_INSERT: usize = 64;

/// `INSERT INTO table (columns) VALUES (?, …), …` for `rows` rows of `width` values.
fn multi_row_insert(head: &str, width: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(","));
    format!("{head} VALUES {}", vec![row; rows].join(","))
}

// `OR ROLLBACK`: a conflict (a second writer of a sequence number) fails the whole batch,
// which is what a failed commit means anyway; with the default `ABORT`, SQLite must keep a
// statement journal to undo just the failing statement, and copying every page a
// multi-row insert touches into it was ~8 % of the commit path (perf, `--bench store`).
const INSERT_EVENTS: &str =
    "INSERT OR ROLLBACK INTO events (id, sku, seq, idempotency_key, recorded_at_ms, movement)";
const INSERT_INDEX: &str = "INSERT OR ROLLBACK INTO event_index
    (sku, seq, event_id, idempotency_key, key_expires_at_ms, movement_hash)";

/// Values bound per `event_index` row.
const INDEX_WIDTH: usize = 6;

/// Adds `event_index.movement_hash` to a store created before it existed (issue 10); its
/// rows keep `NULL` there, and a key without a hash never conflicts.
fn add_movement_hash_column(connection: &Connection) -> rusqlite::Result<()> {
    let present: bool = connection.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('event_index') WHERE name = 'movement_hash'",
        [],
        |row| row.get(0),
    )?;
    if !present {
        connection.execute_batch("ALTER TABLE event_index ADD COLUMN movement_hash INTEGER")?;
    }
    Ok(())
}

/// Adds the lease columns `ownership.expires_at_ms` and `ownership.payload` to a store
/// created before leases (issue 13); its rows keep `NULL` there and read as expired
/// leases (`super::lease::decide`).
fn add_lease_columns(connection: &Connection) -> rusqlite::Result<()> {
    for (column, kind) in [("expires_at_ms", "INTEGER"), ("payload", "TEXT")] {
        let present: bool = connection.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('ownership') WHERE name = ?1",
            params![column],
            |row| row.get(0),
        )?;
        if !present {
            connection
                .execute_batch(&format!("ALTER TABLE ownership ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

/// The ownership row of `scope` as a lease (lease columns never written read as expired).
fn read_lease(connection: &Connection, scope: &str) -> rusqlite::Result<Option<Lease>> {
    connection
        .prepare_cached(
            "SELECT scope, owner, epoch, expires_at_ms, payload FROM ownership WHERE scope = ?1",
        )?
        .query_row(params![scope], lease_of_row)
        .optional()
}

/// A lease from a row of `scope, owner, epoch, expires_at_ms, payload`.
fn lease_of_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        scope: row.get(0)?,
        owner: row.get(1)?,
        epoch: row.get::<_, i64>(2)?.max(0) as u64,
        expires_at_ms: row.get::<_, Option<i64>>(3)?.unwrap_or(0),
        payload: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
    })
}

/// [`Store::try_lease`] in one `IMMEDIATE` transaction: the write lock is taken before the
/// row is read, so no other connection (of this or another process) can change the row
/// between the read and the write.
fn try_lease_in(
    connection: &mut Connection,
    scope: &str,
    owner: &str,
    payload: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<LeaseOutcome, StoreError> {
    let err = backend("try_lease");
    let tx = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&err)?;
    let current = read_lease(&tx, scope).map_err(&err)?;
    let decision = lease::decide(current, scope, owner, payload, now_ms, ttl_ms)?;
    let written = match &decision {
        LeaseDecision::Held(_) => return Ok(decision.outcome()),
        LeaseDecision::Insert(lease) => tx.execute(
            "INSERT INTO ownership (scope, epoch, owner, expires_at_ms, payload)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                lease.scope,
                lease.epoch as i64,
                lease.owner,
                lease.expires_at_ms,
                lease.payload
            ],
        ),
        LeaseDecision::Replace { from, to } => tx.execute(
            "UPDATE ownership SET epoch = ?2, owner = ?3, expires_at_ms = ?4, payload = ?5
             WHERE scope = ?1 AND epoch = ?6",
            params![
                to.scope,
                to.epoch as i64,
                to.owner,
                to.expires_at_ms,
                to.payload,
                from.epoch as i64
            ],
        ),
    }
    .map_err(&err)?;
    if written != 1 {
        return Err(StoreError::Backend {
            operation: "try_lease",
            message: format!("{scope}: the ownership row changed inside the transaction"),
        });
    }
    tx.commit().map_err(&err)?;
    Ok(decision.outcome())
}

/// Binds one event's heap row at `first` (6 values) and its index row at `first_index`
/// ([`INDEX_WIDTH`] values).
fn bind_event(
    events: &mut rusqlite::CachedStatement<'_>,
    index: &mut rusqlite::CachedStatement<'_>,
    (first, first_index): (usize, usize),
    id: i64,
    event: &EventRecord,
) -> rusqlite::Result<()> {
    let seq = event.seq as i64;
    events.raw_bind_parameter(first, id)?;
    events.raw_bind_parameter(first + 1, event.sku.as_str())?;
    events.raw_bind_parameter(first + 2, seq)?;
    events.raw_bind_parameter(first + 3, event.idempotency_key.as_str())?;
    events.raw_bind_parameter(first + 4, event.recorded_at_ms)?;
    events.raw_bind_parameter(first + 5, event.movement.as_slice())?;
    index.raw_bind_parameter(first_index, event.sku.as_str())?;
    index.raw_bind_parameter(first_index + 1, seq)?;
    index.raw_bind_parameter(first_index + 2, id)?;
    index.raw_bind_parameter(first_index + 3, event.idempotency_key.as_str())?;
    index.raw_bind_parameter(first_index + 4, event.key_expires_at_ms)?;
    // Stored as the signed integer with the same 64 bits.
    index.raw_bind_parameter(first_index + 5, event.movement_hash.map(|hash| hash as i64))
}

/// Appends the events to the heap and the index: whole groups of [`ROWS_PER_INSERT`] with
/// one statement each, the rest row by row. Heap ids are assigned here (after the current
/// highest) so that both tables can be written with multi-row statements.
fn write_events(tx: &rusqlite::Transaction<'_>, events: &[EventRecord]) -> rusqlite::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut next_id: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM events")?
        .query_row([], |row| row.get(0))?;
    let mut groups = events.chunks_exact(ROWS_PER_INSERT);
    if groups.len() > 0 {
        let mut heap = tx.prepare_cached(&multi_row_insert(INSERT_EVENTS, 6, ROWS_PER_INSERT))?;
        let mut index = tx.prepare_cached(&multi_row_insert(
            INSERT_INDEX,
            INDEX_WIDTH,
            ROWS_PER_INSERT,
        ))?;
        for group in &mut groups {
            for (row, event) in group.iter().enumerate() {
                bind_event(
                    &mut heap,
                    &mut index,
                    (row * 6 + 1, row * INDEX_WIDTH + 1),
                    next_id,
                    event,
                )?;
                next_id += 1;
            }
            heap.raw_execute()?;
            index.raw_execute()?;
        }
    }
    let rest = groups.remainder();
    if !rest.is_empty() {
        let mut heap = tx.prepare_cached(&multi_row_insert(INSERT_EVENTS, 6, 1))?;
        let mut index = tx.prepare_cached(&multi_row_insert(INSERT_INDEX, INDEX_WIDTH, 1))?;
        for event in rest {
            bind_event(&mut heap, &mut index, (1, 1), next_id, event)?;
            next_id += 1;
            heap.raw_execute()?;
            index.raw_execute()?;
        }
    }
    // A SKU becomes known with its first event: only those add a row to `skus` (instead
    // of one lookup per SKU and batch).
    let mut insert_sku = tx.prepare_cached("INSERT OR IGNORE INTO skus (sku) VALUES (?1)")?;
    for event in events.iter().filter(|event| event.seq == 1) {
        insert_sku.execute(params![event.sku])?;
    }
    Ok(())
}

/// Refuses the batch when one of its fences is older than the scope's stored epoch (read
/// inside the commit's transaction, so a concurrent [`Store::acquire_epoch`] is ordered
/// before or after the whole batch).
fn check_fences(tx: &rusqlite::Transaction<'_>, fences: &[super::Fence]) -> Result<(), StoreError> {
    let err = backend("commit");
    for fence in fences {
        let current: Option<i64> = tx
            .prepare_cached("SELECT epoch FROM ownership WHERE scope = ?1")
            .map_err(&err)?
            .query_row(params![fence.scope], |row| row.get(0))
            .optional()
            .map_err(&err)?;
        let current = current.unwrap_or(0) as u64;
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

fn write_batch(connection: &mut Connection, batch: &CommitBatch) -> Result<(), StoreError> {
    let err = backend("commit");
    let tx = connection.transaction().map_err(&err)?;
    check_fences(&tx, &batch.fences)?;
    {
        write_events(&tx, &batch.events).map_err(&err)?;
        let mut upsert_snapshot = tx
            .prepare_cached(
                "INSERT INTO snapshots (sku, seq, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sku) DO UPDATE SET seq = excluded.seq, state = excluded.state
                 WHERE excluded.seq > snapshots.seq",
            )
            .map_err(&err)?;
        for snapshot in &batch.snapshots {
            upsert_snapshot
                .execute(params![
                    snapshot.sku,
                    snapshot.seq as i64,
                    snapshot.state.as_slice()
                ])
                .map_err(&err)?;
        }
        let mut upsert_offset = tx
            .prepare_cached(
                "INSERT INTO offsets (grp, topic, part, next_offset) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (grp, topic, part) DO UPDATE SET next_offset = excluded.next_offset
                 WHERE excluded.next_offset > offsets.next_offset",
            )
            .map_err(&err)?;
        for offset in &batch.offsets {
            upsert_offset
                .execute(params![
                    offset.group,
                    offset.topic,
                    offset.partition,
                    offset.next_offset
                ])
                .map_err(&err)?;
        }
        write_reservation_rows(&tx, batch)?;
    }
    tx.commit().map_err(&err)
}

/// Hold expiries and reservation requests (`ledger::reaper`, `ledger::reservations`): rows
/// only for movements that touch a hold with a TTL and for API reservation requests, so a
/// batch of plain movements writes nothing here.
fn write_reservation_rows(
    tx: &rusqlite::Transaction<'_>,
    batch: &CommitBatch,
) -> Result<(), StoreError> {
    let err = backend("commit");
    if !batch.hold_expiries.is_empty() {
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO hold_expiries (sku, next_expiry_ms) VALUES (?1, ?2)
                 ON CONFLICT (sku) DO UPDATE SET next_expiry_ms = excluded.next_expiry_ms",
            )
            .map_err(&err)?;
        let mut delete = tx
            .prepare_cached("DELETE FROM hold_expiries WHERE sku = ?1")
            .map_err(&err)?;
        for record in &batch.hold_expiries {
            match record.next_expiry_ms {
                Some(at_ms) => upsert.execute(params![record.sku, at_ms]),
                None => delete.execute(params![record.sku]),
            }
            .map_err(&err)?;
        }
    }
    if !batch.reservations.is_empty() {
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO reservations (id, request, refusal, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET
                     refusal = COALESCE(excluded.refusal, reservations.refusal)",
            )
            .map_err(&err)?;
        for record in &batch.reservations {
            upsert
                .execute(params![
                    record.id,
                    record.request_json,
                    record.refusal_json,
                    record.created_at_ms
                ])
                .map_err(&err)?;
        }
    }
    write_dead_letters(tx, batch)
}

/// Event outcomes and dead letters (see the notes on the schema).
fn write_dead_letters(
    tx: &rusqlite::Transaction<'_>,
    batch: &CommitBatch,
) -> Result<(), StoreError> {
    let err = backend("commit");
    if !batch.outcomes.is_empty() {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO event_outcomes (sku, seq, outcome) VALUES (?1, ?2, ?3)",
            )
            .map_err(&err)?;
        for record in &batch.outcomes {
            insert
                .execute(params![record.sku, record.seq as i64, record.outcome_json])
                .map_err(&err)?;
        }
    }
    if !batch.dead_letters.is_empty() {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO dead_letters (sku, parked_seq, expired_seq,
                    idempotency_key, source, kind, movement, reason, parked_at_ms,
                    expired_at_ms, keep_until_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(&err)?;
        let mut newest = i64::MIN;
        for r in &batch.dead_letters {
            newest = newest.max(r.expired_at_ms);
            insert
                .execute(params![
                    r.sku,
                    r.parked_seq as i64,
                    r.expired_seq as i64,
                    r.idempotency_key,
                    r.source,
                    r.kind,
                    r.movement_json,
                    r.reason,
                    r.parked_at_ms,
                    r.expired_at_ms,
                    r.keep_until_ms
                ])
                .map_err(&err)?;
        }
        tx.prepare_cached("DELETE FROM dead_letters WHERE keep_until_ms < ?1")
            .map_err(&err)?
            .execute(params![newest])
            .map_err(&err)?;
    }
    Ok(())
}

/// The bytes of a stored movement or state: a BLOB (binary layout) or TEXT (JSON written
/// by an earlier layout).
fn stored_bytes(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Vec<u8>> {
    match row.get_ref(column)? {
        rusqlite::types::ValueRef::Blob(bytes) | rusqlite::types::ValueRef::Text(bytes) => {
            Ok(bytes.to_vec())
        }
        other => Err(rusqlite::Error::InvalidColumnType(
            column,
            "stored value".to_owned(),
            other.data_type(),
        )),
    }
}

/// Events deleted per transaction by [`Store::prune_events`].
const PRUNE_CHUNK: i64 = 1_000;

/// One transaction of [`Store::prune_events`]: up to [`PRUNE_CHUNK`] of the oldest events
/// recorded before `before_ms`, covered by their SKU's snapshot and with their key expired
/// at `now_ms`, deleted with their index rows and outcomes; returns how many.
fn prune_events_chunk(
    connection: &mut Connection,
    before_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    let tx = connection.transaction()?;
    let doomed: Vec<(i64, String, i64)> = {
        let mut select = tx.prepare_cached(
            "SELECT e.id, e.sku, e.seq FROM events e
             JOIN event_index i ON i.sku = e.sku AND i.seq = e.seq
             JOIN snapshots s ON s.sku = e.sku
             WHERE e.recorded_at_ms < ?1 AND i.key_expires_at_ms <= ?2 AND e.seq <= s.seq
             ORDER BY e.recorded_at_ms LIMIT ?3",
        )?;
        select
            .query_map(params![before_ms, now_ms, PRUNE_CHUNK], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?
    };
    {
        let mut events = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
        let mut index = tx.prepare_cached("DELETE FROM event_index WHERE sku = ?1 AND seq = ?2")?;
        let mut outcomes =
            tx.prepare_cached("DELETE FROM event_outcomes WHERE sku = ?1 AND seq = ?2")?;
        for (id, sku, seq) in &doomed {
            events.execute(params![id])?;
            index.execute(params![sku, seq])?;
            outcomes.execute(params![sku, seq])?;
        }
    }
    tx.commit()?;
    Ok(doomed.len() as u64)
}

/// Reads `sku, seq, idempotency_key, recorded_at_ms, movement, key_expires_at_ms`.
fn read_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        sku: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        idempotency_key: row.get(2)?,
        key_expires_at_ms: row.get(5)?,
        recorded_at_ms: row.get(3)?,
        movement: stored_bytes(row, 4)?,
        movement_hash: None,
    })
}

fn load(connection: &mut Connection, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError> {
    let (snapshot, events_after) = load_state(connection, sku)?;
    let idempotency_keys = unexpired_keys(connection, sku, now_ms)?
        .into_iter()
        .map(|record| (record.key, record.seq))
        .collect();
    Ok(LoadedSku {
        snapshot,
        events_after,
        idempotency_keys,
    })
}

/// A SKU's snapshot (if any) and its events after it, in order.
fn load_state(
    connection: &mut Connection,
    sku: &str,
) -> Result<(Option<SnapshotRecord>, Vec<EventRecord>), StoreError> {
    let err = backend("load_sku");
    let snapshot = connection
        .prepare_cached("SELECT seq, state FROM snapshots WHERE sku = ?1")
        .map_err(&err)?
        .query_row(params![sku], |row| {
            Ok(SnapshotRecord {
                sku: sku.to_owned(),
                seq: row.get::<_, i64>(0)? as u64,
                state: stored_bytes(row, 1)?,
            })
        })
        .optional()
        .map_err(&err)?;
    let after = snapshot.as_ref().map_or(0, |s| s.seq) as i64;
    let events_after = connection
        .prepare_cached(
            "SELECT i.sku, i.seq, i.idempotency_key, e.recorded_at_ms, e.movement, i.key_expires_at_ms
             FROM event_index i JOIN events e ON e.id = i.event_id
             WHERE i.sku = ?1 AND i.seq > ?2 ORDER BY i.seq",
        )
        .map_err(&err)?
        .query_map(params![sku, after], read_event)
        .map_err(&err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)?;
    Ok((snapshot, events_after))
}

/// The unexpired idempotency keys of `sku` at `now_ms`, with their seq and expiry.
fn unexpired_keys(
    connection: &mut Connection,
    sku: &str,
    now_ms: i64,
) -> Result<Vec<IdempotencyKeyRecord>, StoreError> {
    let err = backend("load_sku");
    connection
        .prepare_cached(
            "SELECT idempotency_key, seq, key_expires_at_ms FROM event_index
             WHERE sku = ?1 AND key_expires_at_ms > ?2",
        )
        .map_err(&err)?
        .query_map(params![sku, now_ms], |row| {
            Ok(IdempotencyKeyRecord {
                key: row.get(0)?,
                seq: row.get::<_, i64>(1)? as u64,
                expires_at_ms: row.get(2)?,
            })
        })
        .map_err(&err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)
}

/// Loads many SKUs on one connection (see [`Store::load_skus`]): each SKU's snapshot and
/// later events through [`load_state`], and its unexpired keys with their expiry.
fn load_many(
    connection: &mut Connection,
    skus: &[String],
    now_ms: i64,
) -> Result<Vec<BatchLoadedSku>, StoreError> {
    let mut loaded = Vec::with_capacity(skus.len());
    for sku in skus {
        let (snapshot, events_after) = load_state(connection, sku)?;
        let keys = unexpired_keys(connection, sku, now_ms)?;
        let one = LoadedSku {
            snapshot,
            events_after,
            idempotency_keys: Vec::new(),
        };
        loaded.push(BatchLoadedSku { loaded: one, keys });
    }
    Ok(loaded)
}

/// Reads `id, sku, seq, idempotency_key, recorded_at_ms, movement, key_expires_at_ms,
/// outcome`.
fn read_history_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEvent> {
    Ok(HistoryEvent {
        cursor: row.get::<_, i64>(0)? as u64,
        event: EventRecord {
            sku: row.get(1)?,
            seq: row.get::<_, i64>(2)? as u64,
            idempotency_key: row.get(3)?,
            recorded_at_ms: row.get(4)?,
            movement: stored_bytes(row, 5)?,
            key_expires_at_ms: row.get(6)?,
            movement_hash: None,
        },
        outcome: row.get(7)?,
    })
}

fn query_history(
    connection: &mut Connection,
    query: &EventQuery,
) -> Result<Vec<HistoryEvent>, StoreError> {
    let err = backend("query_events");
    // With a SKU, walk the SKU's index (seq order = append order); otherwise the heap in
    // append order, bounded by the time index when a range is given.
    let from = if query.sku.is_some() {
        "FROM event_index i JOIN events e ON e.id = i.event_id WHERE i.sku = ?1"
    } else {
        "FROM events e LEFT JOIN event_index i ON i.sku = e.sku AND i.seq = e.seq \
         WHERE (?1 IS NULL OR e.sku = ?1)"
    };
    // Source and kind are inside the stored movement (either format): rows are filtered
    // here as SQLite steps through them, and the scan stops at the limit.
    let sql = format!(
        "SELECT e.id, e.sku, e.seq, e.idempotency_key, e.recorded_at_ms, e.movement,
                COALESCE(i.key_expires_at_ms, 0),
                (SELECT o.outcome FROM event_outcomes o WHERE o.sku = e.sku AND o.seq = e.seq)
         {from}
           AND e.id > ?2 AND e.recorded_at_ms >= ?3 AND e.recorded_at_ms < ?4
         ORDER BY e.id"
    );
    let mut statement = connection.prepare_cached(&sql).map_err(&err)?;
    let mut rows = statement
        .query(params![
            query.sku,
            query.after.map_or(0, |after| after as i64),
            query.from_ms.unwrap_or(i64::MIN),
            query.to_ms.unwrap_or(i64::MAX),
        ])
        .map_err(&err)?;
    let mut found = Vec::new();
    while found.len() < query.limit {
        let Some(row) = rows.next().map_err(&err)? else {
            break;
        };
        let history = read_history_event(row).map_err(&err)?;
        let wanted = super::codec::movement_matches(
            &history.event.movement,
            query.source.as_deref(),
            query.kind.as_deref(),
        )
        .map_err(|e| StoreError::Corrupt {
            sku: history.event.sku.clone(),
            message: format!("event {}: {e}", history.event.seq),
        })?;
        if wanted {
            found.push(history);
        }
    }
    Ok(found)
}

fn query_pushes(
    connection: &mut Connection,
    query: &PushLogQuery,
) -> Result<Vec<PushLogRecord>, StoreError> {
    let err = backend("query_push_log");
    connection
        .prepare_cached(
            "SELECT channel, sku, quantity, change_from, outcome, detail, requests, at_ms
             FROM push_log
             WHERE (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR sku = ?2)
               AND at_ms >= ?3 AND at_ms < ?4
             ORDER BY at_ms DESC, id DESC LIMIT ?5",
        )
        .map_err(&err)?
        .query_map(
            params![
                query.channel,
                query.sku,
                query.from_ms.unwrap_or(i64::MIN),
                query.to_ms.unwrap_or(i64::MAX),
                query.limit as i64
            ],
            |row| {
                Ok(PushLogRecord {
                    channel: row.get(0)?,
                    sku: row.get(1)?,
                    quantity: row.get::<_, i64>(2)? as u64,
                    change_from: row.get(3)?,
                    outcome: row.get(4)?,
                    detail: row.get(5)?,
                    requests: row.get::<_, i64>(6)? as u32,
                    at_ms: row.get(7)?,
                })
            },
        )
        .map_err(&err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn acquire_epoch(&self, scope: &str, owner: &str) -> Result<u64, StoreError> {
        let (scope, owner) = (scope.to_owned(), owner.to_owned());
        Self::blocking(&self.writer, "acquire_epoch", move |c| {
            let err = backend("acquire_epoch");
            let epoch: i64 = c
                .query_row(
                    "INSERT INTO ownership (scope, epoch, owner, expires_at_ms, payload)
                     VALUES (?1, 1, ?2, ?3, '')
                     ON CONFLICT (scope) DO UPDATE SET epoch = ownership.epoch + 1,
                         owner = excluded.owner, expires_at_ms = excluded.expires_at_ms,
                         payload = excluded.payload
                     RETURNING epoch",
                    params![scope, owner, lease::ACQUIRED_EXPIRES_AT_MS],
                    |row| row.get(0),
                )
                .map_err(&err)?;
            Ok(epoch as u64)
        })
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
        lease::check_request(scope, owner, payload, ttl_ms)?;
        let (scope, owner, payload) = (scope.to_owned(), owner.to_owned(), payload.to_owned());
        Self::blocking(&self.writer, "try_lease", move |c| {
            try_lease_in(c, &scope, &owner, &payload, now_ms, ttl_ms)
        })
        .await
    }

    async fn release_lease(
        &self,
        scope: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<bool, StoreError> {
        lease::check_scope("release_lease", scope)?;
        lease::check_owner("release_lease", owner)?;
        let Ok(epoch) = i64::try_from(epoch) else {
            return Ok(false);
        };
        let (scope, owner) = (scope.to_owned(), owner.to_owned());
        Self::blocking(&self.writer, "release_lease", move |c| {
            let released = c
                .execute(
                    "UPDATE ownership SET expires_at_ms = 0
                     WHERE scope = ?1 AND owner = ?2 AND epoch = ?3",
                    params![scope, owner, epoch],
                )
                .map_err(backend("release_lease"))?;
            Ok(released > 0)
        })
        .await
    }

    async fn leases(&self, prefix: &str, limit: usize) -> Result<Vec<Lease>, StoreError> {
        lease::check_prefix(prefix)?;
        let (prefix, limit) = (prefix.to_owned(), lease::listed(limit) as i64);
        Self::blocking(&self.reader, "leases", move |c| {
            let err = backend("leases");
            // Not `LIKE`: SQLite's is case-insensitive for ASCII. A prefix compares as the
            // first bytes of the scope (BLOB casts: byte counts, not characters); the
            // `>=` lets the primary key find the first one.
            c.prepare_cached(
                "SELECT scope, owner, epoch, expires_at_ms, payload FROM ownership
                 WHERE scope >= ?1
                   AND substr(CAST(scope AS BLOB), 1, length(CAST(?1 AS BLOB)))
                       = CAST(?1 AS BLOB)
                 ORDER BY scope LIMIT ?2",
            )
            .map_err(&err)?
            .query_map(params![prefix, limit], lease_of_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    async fn current_epoch(&self, scope: &str) -> Result<Option<(u64, String)>, StoreError> {
        let scope = scope.to_owned();
        Self::blocking(&self.reader, "current_epoch", move |c| {
            c.query_row(
                "SELECT epoch, owner FROM ownership WHERE scope = ?1",
                params![scope],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(backend("current_epoch"))
        })
        .await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.commit_shared(Arc::new(batch)).await
    }

    async fn commit_shared(&self, batch: Arc<CommitBatch>) -> Result<(), StoreError> {
        let wal = self.wal.clone();
        Self::blocking(&self.writer, "commit", move |c| {
            write_batch(c, &batch)?;
            wal.after_commit(c);
            Ok(())
        })
        .await
    }

    /// Checkpoints the WAL into the database and truncates it, so that a clean stop leaves
    /// (nearly) nothing beside the database file.
    async fn release_memory(&self) {
        let connections = [self.reader.clone(), self.writer.clone()];
        let released = tokio::task::spawn_blocking(move || {
            for connection in connections {
                // Frees the page cache's unused pages; the cache refills from the OS page
                // cache on demand. A connection busy with a commit is simply skipped.
                if let Ok(connection) = connection.try_lock() {
                    let _ = connection.execute_batch("PRAGMA shrink_memory;");
                }
            }
            // SQLite allocates with the C allocator, which keeps freed pages for reuse;
            // `malloc_trim` hands the free ones back to the OS.
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: `malloc_trim` takes no pointers and may be called at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        })
        .await;
        if let Err(error) = released {
            tracing::debug!(error = %error, "releasing the store's cache memory failed");
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        let wal = self.wal.clone();
        Self::blocking(&self.writer, "close", move |c| {
            wal.checkpoint(c, Reason::Close);
            Ok(())
        })
        .await
    }

    async fn load_sku(&self, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError> {
        let sku = sku.to_owned();
        Self::blocking(&self.reader, "load_sku", move |c| load(c, &sku, now_ms)).await
    }

    async fn load_skus(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<BatchLoadedSku>, StoreError> {
        let skus = skus.to_vec();
        Self::blocking(&self.reader, "load_skus", move |c| {
            // One read transaction: one snapshot of the database and one lock for the batch.
            c.execute_batch("BEGIN").map_err(backend("load_skus"))?;
            let loaded = load_many(c, &skus, now_ms);
            let end = if loaded.is_ok() { "COMMIT" } else { "ROLLBACK" };
            c.execute_batch(end).map_err(backend("load_skus"))?;
            loaded
        })
        .await
    }

    async fn find_idempotency_key_hash(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(u64, Option<u64>)>, StoreError> {
        let (sku, key) = (sku.to_owned(), key.to_owned());
        Self::blocking(&self.reader, "find_idempotency_key", move |c| {
            c.prepare_cached(
                "SELECT seq, movement_hash FROM event_index
                 WHERE sku = ?1 AND idempotency_key = ?2 AND key_expires_at_ms > ?3
                 ORDER BY seq LIMIT 1",
            )
            .map_err(backend("find_idempotency_key"))?
            .query_row(params![sku, key, now_ms], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
            })
            .optional()
            .map(|found| found.map(|(seq, hash)| (seq as u64, hash.map(|hash| hash as u64))))
            .map_err(backend("find_idempotency_key"))
        })
        .await
    }

    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let sku = sku.to_owned();
        Self::blocking(&self.reader, "events", move |c| {
            let err = backend("events");
            c.prepare_cached(
                "SELECT i.sku, i.seq, i.idempotency_key, e.recorded_at_ms, e.movement, i.key_expires_at_ms
                 FROM event_index i JOIN events e ON e.id = i.event_id
                 WHERE i.sku = ?1 AND i.seq >= ?2 ORDER BY i.seq LIMIT ?3",
            )
            .map_err(&err)?
            .query_map(params![sku, from_seq as i64, limit as i64], read_event)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    async fn list_skus(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let after = after.unwrap_or("").to_owned();
        Self::blocking(&self.reader, "list_skus", move |c| {
            let err = backend("list_skus");
            c.prepare_cached("SELECT sku FROM skus WHERE sku > ?1 ORDER BY sku LIMIT ?2")
                .map_err(&err)?
                .query_map(params![after, limit as i64], |row| row.get(0))
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)
        })
        .await
    }

    async fn sku_exists(&self, sku: &str) -> Result<bool, StoreError> {
        let sku = sku.to_owned();
        Self::blocking(&self.reader, "sku_exists", move |c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM skus WHERE sku = ?1)")
                .map_err(backend("sku_exists"))?
                .query_row(params![sku], |row| row.get::<_, bool>(0))
                .map_err(backend("sku_exists"))
        })
        .await
    }

    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, StoreError> {
        let group = group.to_owned();
        Self::blocking(&self.reader, "offsets", move |c| {
            let err = backend("offsets");
            c.prepare_cached(
                "SELECT grp, topic, part, next_offset FROM offsets WHERE grp = ?1 ORDER BY topic, part",
            )
            .map_err(&err)?
            .query_map(params![group], |row| {
                Ok(OffsetWatermark {
                    group: row.get(0)?,
                    topic: row.get(1)?,
                    partition: row.get(2)?,
                    next_offset: row.get(3)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError> {
        let records = records.to_vec();
        Self::blocking(&self.writer, "record_pushed", move |c| {
            let err = backend("record_pushed");
            let tx = c.transaction().map_err(&err)?;
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO pushed (channel, sku, quantity, pushed_at_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (channel, sku) DO UPDATE
                         SET quantity = excluded.quantity, pushed_at_ms = excluded.pushed_at_ms",
                    )
                    .map_err(&err)?;
                for record in &records {
                    upsert
                        .execute(params![record.channel, record.sku, record.quantity as i64, record.pushed_at_ms])
                        .map_err(&err)?;
                }
            }
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError> {
        let channel = channel.to_owned();
        Self::blocking(&self.reader, "pushed", move |c| {
            let err = backend("pushed");
            c.prepare_cached(
                "SELECT channel, sku, quantity, pushed_at_ms FROM pushed WHERE channel = ?1 ORDER BY sku",
            )
            .map_err(&err)?
            .query_map(params![channel], |row| {
                Ok(PushedRecord {
                    channel: row.get(0)?,
                    sku: row.get(1)?,
                    quantity: row.get::<_, i64>(2)? as u64,
                    pushed_at_ms: row.get(3)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    /// The embedded log keeps every event with its key's expiry, and loads only unexpired
    /// keys, so there is nothing to delete: always `Ok(0)`.
    async fn expire_keys(&self, _now_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn query_events(&self, query: &EventQuery) -> Result<Vec<HistoryEvent>, StoreError> {
        let query = query.clone();
        Self::blocking(&self.reader, "query_events", move |c| {
            query_history(c, &query)
        })
        .await
    }

    async fn append_push_log(&self, records: &[PushLogRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.to_vec();
        Self::blocking(&self.writer, "append_push_log", move |c| {
            let err = backend("append_push_log");
            let tx = c.transaction().map_err(&err)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO push_log
                         (channel, sku, quantity, change_from, outcome, detail, requests, at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(&err)?;
                for record in &records {
                    insert
                        .execute(params![
                            record.channel,
                            record.sku,
                            record.quantity as i64,
                            record.change_from,
                            record.outcome,
                            record.detail,
                            i64::from(record.requests),
                            record.at_ms
                        ])
                        .map_err(&err)?;
                }
            }
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn query_push_log(&self, query: &PushLogQuery) -> Result<Vec<PushLogRecord>, StoreError> {
        let query = query.clone();
        Self::blocking(&self.reader, "query_push_log", move |c| {
            query_pushes(c, &query)
        })
        .await
    }

    async fn prune_events(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0_u64;
        loop {
            let chunk = Self::blocking(&self.writer, "prune_events", move |c| {
                prune_events_chunk(c, before_ms, now_ms).map_err(backend("prune_events"))
            })
            .await?;
            deleted = deleted.saturating_add(chunk);
            if chunk < PRUNE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }

    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        Self::blocking(&self.writer, "prune_push_log", move |c| {
            c.execute("DELETE FROM push_log WHERE at_ms < ?1", params![before_ms])
                .map(|deleted| deleted as u64)
                .map_err(backend("prune_push_log"))
        })
        .await
    }

    async fn record_config_change(&self, record: &ConfigAuditRecord) -> Result<(), StoreError> {
        let record = record.clone();
        Self::blocking(&self.writer, "record_config_change", move |c| {
            c.execute(
                "INSERT INTO config_audit (at_ms, action, actor, config_hash, config_json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    record.at_ms,
                    record.action,
                    record.actor,
                    record.config_hash,
                    record.config_json
                ],
            )
            .map(|_| ())
            .map_err(backend("record_config_change"))
        })
        .await
    }

    async fn config_changes(&self, limit: usize) -> Result<Vec<ConfigAuditRecord>, StoreError> {
        Self::blocking(&self.reader, "config_changes", move |c| {
            let err = backend("config_changes");
            c.prepare_cached(
                "SELECT at_ms, action, actor, config_hash, config_json FROM config_audit
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(&err)?
            .query_map(params![limit as i64], |row| {
                Ok(ConfigAuditRecord {
                    at_ms: row.get(0)?,
                    action: row.get(1)?,
                    actor: row.get(2)?,
                    config_hash: row.get(3)?,
                    config_json: row.get(4)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HoldExpiryRecord>, StoreError> {
        let after = after.unwrap_or("").to_owned();
        Self::blocking(&self.reader, "hold_expiries", move |c| {
            let err = backend("hold_expiries");
            c.prepare_cached(
                "SELECT sku, next_expiry_ms FROM hold_expiries WHERE sku > ?1
                 ORDER BY sku LIMIT ?2",
            )
            .map_err(&err)?
            .query_map(params![after, limit as i64], |row| {
                Ok(HoldExpiryRecord {
                    sku: row.get(0)?,
                    next_expiry_ms: Some(row.get(1)?),
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    async fn order_lines(
        &self,
        channel: &str,
        order_id: &str,
    ) -> Result<Vec<OrderLineRecord>, StoreError> {
        let (channel, order_id) = (channel.to_owned(), order_id.to_owned());
        Self::blocking(&self.reader, "order_lines", move |c| {
            let err = backend("order_lines");
            c.prepare_cached(
                "SELECT channel, order_id, line_id, sku, version, seen_at_ms FROM order_lines
                 WHERE channel = ?1 AND order_id = ?2 ORDER BY line_id LIMIT 10000",
            )
            .map_err(&err)?
            .query_map(params![channel, order_id], |row| {
                Ok(OrderLineRecord {
                    channel: row.get(0)?,
                    order_id: row.get(1)?,
                    line_id: row.get(2)?,
                    sku: row.get(3)?,
                    version: row.get(4)?,
                    seen_at_ms: row.get(5)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    async fn record_order_lines(
        &self,
        records: &[OrderLineRecord],
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        let records = records.to_vec();
        Self::blocking(&self.writer, "record_order_lines", move |c| {
            let err = backend("record_order_lines");
            let tx = c.transaction().map_err(&err)?;
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO order_lines (channel, order_id, line_id, sku, version, seen_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (channel, order_id, line_id) DO UPDATE SET
                           sku = excluded.sku,
                           version = MAX(order_lines.version, excluded.version),
                           seen_at_ms = MAX(order_lines.seen_at_ms, excluded.seen_at_ms)",
                    )
                    .map_err(&err)?;
                for r in &records {
                    upsert
                        .execute(params![
                            r.channel,
                            r.order_id,
                            r.line_id,
                            r.sku,
                            r.version,
                            r.seen_at_ms
                        ])
                        .map_err(&err)?;
                }
                tx.execute(
                    "DELETE FROM order_lines WHERE seen_at_ms < ?1",
                    params![forget_before_ms],
                )
                .map_err(&err)?;
            }
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let query = query.clone();
        Self::blocking(&self.reader, "dead_letters", move |c| {
            let err = backend("dead_letters");
            c.prepare_cached(
                "SELECT sku, parked_seq, expired_seq, idempotency_key, source, kind, movement,
                        reason, parked_at_ms, expired_at_ms, keep_until_ms
                 FROM dead_letters WHERE (?1 IS NULL OR sku = ?1)
                 ORDER BY expired_at_ms DESC, sku, parked_seq LIMIT ?2",
            )
            .map_err(&err)?
            .query_map(params![query.sku, query.limit as i64], |row| {
                Ok(DeadLetterRecord {
                    sku: row.get(0)?,
                    parked_seq: row.get::<_, i64>(1)? as u64,
                    expired_seq: row.get::<_, i64>(2)? as u64,
                    idempotency_key: row.get(3)?,
                    source: row.get(4)?,
                    kind: row.get(5)?,
                    movement_json: row.get(6)?,
                    reason: row.get(7)?,
                    parked_at_ms: row.get(8)?,
                    expired_at_ms: row.get(9)?,
                    keep_until_ms: row.get(10)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    /// One read: the hash is a column of the event's index row.
    async fn events_with_hashes(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let sku = sku.to_owned();
        Self::blocking(&self.reader, "events_with_hashes", move |c| {
            let err = backend("events_with_hashes");
            c.prepare_cached(
                "SELECT i.sku, i.seq, i.idempotency_key, e.recorded_at_ms, e.movement,
                        i.key_expires_at_ms, i.movement_hash
                 FROM event_index i JOIN events e ON e.id = i.event_id
                 WHERE i.sku = ?1 AND i.seq >= ?2 ORDER BY i.seq LIMIT ?3",
            )
            .map_err(&err)?
            .query_map(params![sku, from_seq as i64, limit as i64], |row| {
                let mut event = read_event(row)?;
                event.movement_hash = row.get::<_, Option<i64>>(6)?.map(|hash| hash as u64);
                Ok(event)
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)
        })
        .await
    }

    async fn reservation(&self, id: &str) -> Result<Option<ReservationRecord>, StoreError> {
        let id = id.to_owned();
        Self::blocking(&self.reader, "reservation", move |c| {
            let err = backend("reservation");
            c.prepare_cached(
                "SELECT id, request, refusal, created_at_ms FROM reservations WHERE id = ?1",
            )
            .map_err(&err)?
            .query_row(params![id], |row| {
                Ok(ReservationRecord {
                    id: row.get(0)?,
                    request_json: row.get(1)?,
                    refusal_json: row.get(2)?,
                    created_at_ms: row.get(3)?,
                })
            })
            .optional()
            .map_err(&err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sku: &str, seq: u64, key: &str) -> EventRecord {
        EventRecord {
            sku: sku.into(),
            seq,
            idempotency_key: key.into(),
            key_expires_at_ms: 1_000,
            recorded_at_ms: 10,
            movement: b"{}".to_vec(),
            movement_hash: None,
        }
    }

    #[tokio::test]
    async fn a_batch_is_visible_after_reopen_with_keys_snapshot_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store
                .commit(CommitBatch {
                    events: vec![
                        event("A", 1, "k1"),
                        event("A", 2, "k2"),
                        event("B", 1, "k3"),
                    ],
                    snapshots: vec![SnapshotRecord {
                        sku: "A".into(),
                        seq: 1,
                        state: b"s1".to_vec(),
                    }],
                    offsets: vec![OffsetWatermark {
                        group: "g".into(),
                        topic: "t".into(),
                        partition: 0,
                        next_offset: 7,
                    }],
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let loaded = store.load_sku("A", 500).await.unwrap();
        assert_eq!(loaded.snapshot.unwrap().seq, 1);
        assert_eq!(
            loaded
                .events_after
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            vec![2]
        );
        let mut keys = loaded.idempotency_keys;
        keys.sort();
        assert_eq!(keys, vec![("k1".to_owned(), 1), ("k2".to_owned(), 2)]);
        assert!(
            store
                .load_sku("A", 5_000)
                .await
                .unwrap()
                .idempotency_keys
                .is_empty()
        );
        assert_eq!(store.offsets("g").await.unwrap()[0].next_offset, 7);
        assert_eq!(store.list_skus(None, 10).await.unwrap(), vec!["A", "B"]);
        assert_eq!(store.list_skus(Some("A"), 10).await.unwrap(), vec!["B"]);
    }

    /// `n` events of `sku` from `first_seq` on, each with a movement of `bytes` bytes.
    fn bulky_events(sku: &str, first_seq: u64, n: u64, bytes: usize) -> Vec<EventRecord> {
        (first_seq..first_seq + n)
            .map(|seq| EventRecord {
                movement: vec![crate::store::codec::MOVEMENT_V1; bytes],
                ..event(sku, seq, &format!("{sku}:{seq}"))
            })
            .collect()
    }

    #[tokio::test]
    async fn the_wal_stays_under_its_threshold_plus_one_batch_and_close_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let options = WalOptions {
            checkpoint_bytes: 1024 * 1024,
            idle_checkpoint_secs: 3_600,
        };
        let store = EmbeddedStore::open_with(&path, options.clone()).unwrap();
        let mut largest = 0;
        let mut largest_batch_wal = 0;
        for batch in 0..60 {
            let before = store.wal_bytes();
            store
                .commit(CommitBatch {
                    events: bulky_events("A", batch * 100 + 1, 100, 600),
                    ..Default::default()
                })
                .await
                .unwrap();
            let after = store.wal_bytes();
            largest_batch_wal = largest_batch_wal.max(after.saturating_sub(before));
            largest = largest.max(after);
        }
        assert!(largest_batch_wal > 0);
        assert!(
            largest <= options.checkpoint_bytes + largest_batch_wal,
            "wal reached {largest} bytes; threshold {} plus one batch {largest_batch_wal}",
            options.checkpoint_bytes
        );
        store.close().await.unwrap();
        assert_eq!(store.wal_bytes(), 0);
        assert_eq!(store.events("A", 1, 10_000).await.unwrap().len(), 6_000);
    }

    #[tokio::test]
    async fn an_idle_wal_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(
            &dir.path().join("s.db"),
            WalOptions {
                checkpoint_bytes: 64 * 1024 * 1024,
                idle_checkpoint_secs: 1,
            },
        )
        .unwrap();
        store
            .commit(CommitBatch {
                events: bulky_events("A", 1, 50, 200),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(store.wal_bytes() > 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.wal_bytes() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle wal was not truncated"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(store.load_sku("A", 0).await.unwrap().events_after.len(), 50);
    }

    #[tokio::test]
    async fn a_store_without_movement_hashes_gains_the_column_and_its_old_keys_never_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            // The key table as written before issue 10: no movement_hash column.
            let connection = Connection::open(&path).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE event_index (
                        sku TEXT NOT NULL, seq INTEGER NOT NULL, event_id INTEGER NOT NULL,
                        idempotency_key TEXT NOT NULL, key_expires_at_ms INTEGER NOT NULL,
                        PRIMARY KEY (sku, seq)) WITHOUT ROWID;
                     INSERT INTO event_index VALUES ('A', 1, 1, 'old', 100);
                     PRAGMA user_version = 1;",
                )
                .unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store
                .find_idempotency_key_hash("A", "old", 0)
                .await
                .unwrap(),
            Some((1, None)),
            "a key recorded without a hash has none"
        );
        store
            .commit(CommitBatch {
                events: vec![EventRecord {
                    movement_hash: Some(u64::MAX - 1),
                    ..event("A", 2, "new")
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            store
                .find_idempotency_key_hash("A", "new", 0)
                .await
                .unwrap(),
            Some((2, Some(u64::MAX - 1))),
            "all 64 bits survive the signed column"
        );
        assert_eq!(
            store.find_idempotency_key("A", "new", 0).await.unwrap(),
            Some(2)
        );
        drop(store);
        // Opening again does not add the column twice.
        EmbeddedStore::open(&path).unwrap();
    }

    #[tokio::test]
    async fn a_store_without_lease_columns_gains_them_and_its_claims_read_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            // The ownership table as written before leases (issue 13, first step).
            let connection = Connection::open(&path).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE ownership (
                        scope TEXT PRIMARY KEY, epoch INTEGER NOT NULL, owner TEXT NOT NULL)
                        WITHOUT ROWID;
                     INSERT INTO ownership VALUES ('movements/0', 4, 'old');
                     PRAGMA user_version = 1;",
                )
                .unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store.current_epoch("movements/0").await.unwrap(),
            Some((4, "old".to_owned()))
        );
        assert_eq!(
            store.leases("", 10).await.unwrap(),
            vec![Lease {
                scope: "movements/0".into(),
                owner: "old".into(),
                epoch: 4,
                expires_at_ms: 0,
                payload: String::new(),
            }],
            "a claim without lease columns lists as expired"
        );
        let outcome = store
            .try_lease("movements/0", "new", "url", 1_000, 500)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            LeaseOutcome::Granted(Lease {
                scope: "movements/0".into(),
                owner: "new".into(),
                epoch: 5,
                expires_at_ms: 1_500,
                payload: "url".into(),
            })
        );
        drop(store);
        // Opening again adds nothing twice and keeps the lease.
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.leases("movements/", 10).await.unwrap().len(), 1);
        assert_eq!(
            store.current_epoch("movements/0").await.unwrap(),
            Some((5, "new".to_owned()))
        );
    }

    #[tokio::test]
    async fn rows_stored_as_json_text_load_beside_binary_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let movement = |quantity: u64| crate::domain::Movement {
            schema_version: crate::domain::SCHEMA_VERSION,
            sku: "A".into(),
            idempotency_key: format!("k{quantity}"),
            source: "wms".into(),
            occurred_at_ms: Some(7),
            kind: crate::domain::MovementKind::Receipt {
                location: "WH-1".into(),
                quantity,
            },
        };
        {
            // What the JSON layout wrote: TEXT values.
            let store = EmbeddedStore::open(&path).unwrap();
            store.commit(CommitBatch::default()).await.unwrap();
            let writer = store.writer.lock().unwrap();
            writer
                .execute(
                    "INSERT INTO events (sku, seq, idempotency_key, recorded_at_ms, movement)
                     VALUES ('A', 1, 'k1', 5, ?1)",
                    params![serde_json::to_string(&movement(1)).unwrap()],
                )
                .unwrap();
            writer
                .execute(
                    "INSERT INTO event_index (sku, seq, event_id, idempotency_key, key_expires_at_ms)
                     VALUES ('A', 1, last_insert_rowid(), 'k1', 100)",
                    [],
                )
                .unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .commit(CommitBatch {
                events: vec![EventRecord {
                    movement: crate::store::codec::encode_movement(&movement(2)),
                    ..event("A", 2, "k2")
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        let loaded = store.load_sku("A", 0).await.unwrap();
        let movements: Vec<_> = loaded
            .events_after
            .iter()
            .map(|event| event.movement().unwrap())
            .collect();
        assert_eq!(movements, vec![movement(1), movement(2)]);
        assert_eq!(
            loaded.events_after[0].movement_json().unwrap(),
            serde_json::to_value(movement(1)).unwrap()
        );
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_multi_row_insert_keeps_order_ids_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        let mut events = Vec::new();
        for seq in 1..=(ROWS_PER_INSERT as u64 * 2 + 7) {
            events.push(event("A", seq, &format!("a{seq}")));
            events.push(event("B", seq, &format!("b{seq}")));
        }
        store
            .commit(CommitBatch {
                events: events.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        store
            .commit(CommitBatch {
                events: vec![event("C", 1, "c1")],
                ..Default::default()
            })
            .await
            .unwrap();
        let history = store
            .query_events(&EventQuery {
                limit: 1_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let order: Vec<_> = history
            .iter()
            .map(|row| (row.event.sku.clone(), row.event.seq))
            .collect();
        let mut expected: Vec<_> = events.iter().map(|e| (e.sku.clone(), e.seq)).collect();
        expected.push(("C".to_owned(), 1));
        assert_eq!(order, expected);
        assert!(
            history
                .windows(2)
                .all(|pair| pair[0].cursor < pair[1].cursor)
        );
        let loaded = store.load_sku("B", 0).await.unwrap();
        assert_eq!(loaded.events_after.len(), ROWS_PER_INSERT * 2 + 7);
        assert!(
            loaded
                .events_after
                .iter()
                .all(|e| e.idempotency_key.starts_with('b'))
        );
        assert_eq!(loaded.idempotency_keys.len(), ROWS_PER_INSERT * 2 + 7);
        assert_eq!(
            store.list_skus(None, 10).await.unwrap(),
            vec!["A", "B", "C"]
        );
    }

    #[tokio::test]
    async fn a_duplicate_sequence_number_fails_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        store
            .commit(CommitBatch {
                events: vec![event("A", 1, "k1")],
                ..Default::default()
            })
            .await
            .unwrap();
        let error = store
            .commit(CommitBatch {
                events: vec![event("B", 1, "x"), event("A", 1, "k9")],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            StoreError::Backend {
                operation: "commit",
                ..
            }
        ));
        assert!(
            store
                .load_sku("B", 0)
                .await
                .unwrap()
                .events_after
                .is_empty(),
            "batch must be atomic"
        );
    }

    fn movement_event(sku: &str, seq: u64, at_ms: i64, source: &str, kind: &str) -> EventRecord {
        EventRecord {
            sku: sku.into(),
            seq,
            idempotency_key: format!("{source}:{sku}:{seq}"),
            key_expires_at_ms: 9_000,
            recorded_at_ms: at_ms,
            movement: format!(r#"{{"sku":"{sku}","source":"{source}","type":"{kind}"}}"#)
                .into_bytes(),
            movement_hash: None,
        }
    }

    #[tokio::test]
    async fn history_filters_by_sku_time_source_and_kind_and_pages_by_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        store
            .commit(CommitBatch {
                events: vec![
                    movement_event("PEAR-1", 1, 100, "wms-north", "receipt"),
                    movement_event("FIG-2", 1, 100, "wms-north", "receipt"),
                    movement_event("PEAR-1", 2, 200, "shop:alpha", "sale"),
                    movement_event("PEAR-1", 3, 300, "wms-north", "adjustment"),
                ],
                ..Default::default()
            })
            .await
            .unwrap();
        let all = store
            .query_events(&EventQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].event.key_expires_at_ms, 9_000);
        let pear = |query: EventQuery| {
            let store = &store;
            async move {
                store
                    .query_events(&query)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|row| (row.event.sku, row.event.seq))
                    .collect::<Vec<_>>()
            }
        };
        let base = EventQuery {
            sku: Some("PEAR-1".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(pear(base.clone()).await.len(), 3);
        let window = EventQuery {
            from_ms: Some(150),
            to_ms: Some(300),
            ..base.clone()
        };
        assert_eq!(pear(window).await, vec![("PEAR-1".to_owned(), 2)]);
        let by_source = EventQuery {
            sku: None,
            source: Some("wms-north".into()),
            ..base.clone()
        };
        assert_eq!(pear(by_source).await.len(), 3);
        let by_kind = EventQuery {
            kind: Some("adjustment".into()),
            ..base.clone()
        };
        assert_eq!(pear(by_kind).await, vec![("PEAR-1".to_owned(), 3)]);
        let first_page = store
            .query_events(&EventQuery {
                limit: 2,
                ..base.clone()
            })
            .await
            .unwrap();
        let next = EventQuery {
            after: Some(first_page[1].cursor),
            ..base
        };
        assert_eq!(pear(next).await, vec![("PEAR-1".to_owned(), 3)]);
    }

    #[tokio::test]
    async fn push_log_is_filtered_newest_first_and_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        let record = |channel: &str, sku: &str, at_ms: i64, outcome: &str| PushLogRecord {
            channel: channel.into(),
            sku: sku.into(),
            quantity: 4,
            change_from: Some(3),
            outcome: outcome.into(),
            detail: None,
            requests: 1,
            at_ms,
        };
        store
            .append_push_log(&[
                record("shop-a", "PEAR-1", 10, "accepted"),
                record("shop-a", "FIG-2", 20, "conflict"),
                record("shop-b", "PEAR-1", 30, "error"),
            ])
            .await
            .unwrap();
        let rows = store
            .query_push_log(&PushLogQuery {
                sku: Some("PEAR-1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
            vec![30, 10]
        );
        assert_eq!(rows[1].change_from, Some(3));
        assert_eq!(store.prune_push_log(25).await.unwrap(), 2);
        let left = store
            .query_push_log(&PushLogQuery {
                channel: Some("shop-b".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        store
            .record_config_change(&ConfigAuditRecord {
                at_ms: 5,
                action: "loaded".into(),
                actor: "startup".into(),
                config_hash: "abc".into(),
                config_json: "{}".into(),
            })
            .await
            .unwrap();
        assert_eq!(store.config_changes(5).await.unwrap()[0].config_hash, "abc");
    }

    #[tokio::test]
    async fn order_lines_are_upserted_read_per_order_and_forgotten_after_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("db")).unwrap();
        let line = |order: &str, line: &str, version: i64, seen: i64| OrderLineRecord {
            channel: "woo".into(),
            order_id: order.into(),
            line_id: line.into(),
            sku: format!("SKU-{line}"),
            version,
            seen_at_ms: seen,
        };
        store
            .record_order_lines(&[line("1", "a", 10, 100), line("1", "b", 10, 100)], 0)
            .await
            .unwrap();
        // An older version never lowers the stored one.
        store
            .record_order_lines(&[line("1", "a", 5, 200), line("2", "c", 7, 200)], 0)
            .await
            .unwrap();
        let lines = store.order_lines("woo", "1").await.unwrap();
        assert_eq!(
            lines,
            vec![line("1", "a", 10, 200), line("1", "b", 10, 100)]
        );
        assert_eq!(store.order_lines("other", "1").await.unwrap(), vec![]);
        store.record_order_lines(&[], 150).await.unwrap();
        assert_eq!(
            store.order_lines("woo", "1").await.unwrap(),
            vec![line("1", "a", 10, 200)]
        );
        drop(store);
        let reopened = EmbeddedStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(reopened.order_lines("woo", "2").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn dead_letters_are_written_once_and_forgotten_after_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        let letter = |sku: &str, parked_seq: u64, expired_at_ms: i64| DeadLetterRecord {
            sku: sku.into(),
            parked_seq,
            expired_seq: parked_seq + 1,
            idempotency_key: format!("k{parked_seq}"),
            source: "wms-1".into(),
            kind: "fulfilment".into(),
            movement_json: "{}".into(),
            reason: "waits for its sale".into(),
            parked_at_ms: 0,
            expired_at_ms,
            keep_until_ms: expired_at_ms + 1_000,
        };
        let batch = CommitBatch {
            dead_letters: vec![letter("A", 2, 100)],
            outcomes: vec![super::super::EventOutcomeRecord {
                sku: "A".into(),
                seq: 3,
                outcome_json: r#"{"outcome":"applied","dead_lettered":1}"#.into(),
            }],
            ..Default::default()
        };
        store.commit(batch.clone()).await.unwrap();
        // A retried batch (or replay) does not duplicate it.
        store.commit(batch).await.unwrap();
        let all = DeadLetterQuery {
            sku: None,
            limit: 10,
        };
        assert_eq!(store.dead_letters(&all).await.unwrap().len(), 1);
        store
            .commit(CommitBatch {
                dead_letters: vec![letter("B", 5, 500)],
                ..Default::default()
            })
            .await
            .unwrap();
        let rows = store.dead_letters(&all).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.sku.as_str()).collect::<Vec<_>>(),
            vec!["B", "A"],
            "newest first"
        );
        let only_a = DeadLetterQuery {
            sku: Some("A".into()),
            limit: 10,
        };
        assert_eq!(
            store.dead_letters(&only_a).await.unwrap(),
            vec![letter("A", 2, 100)]
        );
        // A row past its retention goes when newer ones are written.
        store
            .commit(CommitBatch {
                dead_letters: vec![letter("C", 7, 1_200)],
                ..Default::default()
            })
            .await
            .unwrap();
        let rows = store.dead_letters(&all).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.sku.as_str()).collect::<Vec<_>>(),
            vec!["C", "B"]
        );
    }

    #[tokio::test]
    async fn hold_expiries_upsert_and_delete_and_reservation_refusals_stick() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("db")).unwrap();
        let expiry = |sku: &str, at: Option<i64>| HoldExpiryRecord {
            sku: sku.into(),
            next_expiry_ms: at,
        };
        let record = |refusal: Option<&str>| ReservationRecord {
            id: "r1".into(),
            request_json: if refusal.is_some() { "later" } else { "first" }.into(),
            refusal_json: refusal.map(str::to_owned),
            created_at_ms: 5,
        };
        store
            .commit(CommitBatch {
                hold_expiries: vec![
                    expiry("A", Some(10)),
                    expiry("B", Some(20)),
                    expiry("A", Some(30)),
                ],
                reservations: vec![record(None)],
                ..Default::default()
            })
            .await
            .unwrap();
        store
            .commit(CommitBatch {
                hold_expiries: vec![expiry("B", None)],
                reservations: vec![record(Some("[]")), record(None)],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            store.hold_expiries(None, 10).await.unwrap(),
            vec![expiry("A", Some(30))]
        );
        assert!(store.hold_expiries(Some("A"), 10).await.unwrap().is_empty());
        let stored = store.reservation("r1").await.unwrap().unwrap();
        assert_eq!(stored.request_json, "first");
        assert_eq!(stored.refusal_json.as_deref(), Some("[]"));
        assert_eq!(store.reservation("r2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_commit_under_a_stale_epoch_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.current_epoch("movements/0").await.unwrap(), None);
        assert_eq!(store.acquire_epoch("movements/0", "a").await.unwrap(), 1);
        let fenced = |epoch, seq| CommitBatch {
            events: vec![event("A", seq, &format!("k{seq}"))],
            fences: vec![super::super::Fence {
                scope: "movements/0".to_owned(),
                epoch,
            }],
            ..CommitBatch::default()
        };
        store.commit(fenced(1, 1)).await.unwrap();
        assert_eq!(store.acquire_epoch("movements/0", "b").await.unwrap(), 2);
        let error = store.commit(fenced(1, 2)).await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Fenced {
                    epoch: 1,
                    current: 2,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(store.events("A", 1, 10).await.unwrap().len(), 1);
        store.commit(fenced(2, 2)).await.unwrap();
        assert_eq!(store.events("A", 1, 10).await.unwrap().len(), 2);
        assert_eq!(
            store.current_epoch("movements/0").await.unwrap(),
            Some((2, "b".to_owned()))
        );
    }

    #[tokio::test]
    async fn offsets_only_move_forward_and_pushed_values_upsert() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        for next_offset in [9, 4] {
            store
                .commit(CommitBatch {
                    offsets: vec![OffsetWatermark {
                        group: "g".into(),
                        topic: "t".into(),
                        partition: 1,
                        next_offset,
                    }],
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        assert_eq!(store.offsets("g").await.unwrap()[0].next_offset, 9);
        for quantity in [3, 5] {
            store
                .record_pushed(&[PushedRecord {
                    channel: "c".into(),
                    sku: "A".into(),
                    quantity,
                    pushed_at_ms: 1,
                }])
                .await
                .unwrap();
        }
        assert_eq!(store.pushed("c").await.unwrap()[0].quantity, 5);
    }
}
