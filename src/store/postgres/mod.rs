//! The PostgreSQL backend (`backend = "postgres"`, `[store.postgres]`): a store several
//! instances can share, on a server the merchant already runs.
//!
//! Owns: the connection pool (tokio-postgres + deadpool-postgres, `pool_size` connections,
//! `connect_timeout_ms` to get one, the server's `statement_timeout` and `search_path` set
//! on every connection at start-up), the schema and its embedded migrations
//! ([`schema`]), and every [`Store`] method as SQL.
//!
//! Layout (`migrations/0001_init.sql`): everything lives in the configured schema. The
//! event log `events` is keyed by an identity `id` (the history cursor, in append order)
//! with (sku, seq) unique; `source` and `kind` are copied out of the encoded movement at
//! write time (`commit::source_and_kind`) so that the history filters run in SQL.
//! Idempotency keys live in their own table (`idempotency_keys`), so
//! [`Store::expire_keys`] really deletes expired rows. Binary values are `bytea`; `u64`
//! sequence numbers and quantities are `bigint` (a value above `i64::MAX` is refused), a
//! `u64` movement hash is the `bigint` with the same 64 bits.
//!
//! Ownership (`ownership`, leases added by `migrations/0002_leases.sql`): `acquire_epoch` is
//! one upsert; `try_lease` is one transaction that reads the scope's row `FOR UPDATE`,
//! applies `store::lease::decide` and writes (a concurrent caller in any process waits for
//! the row lock, then reads the result); a row that did not exist is inserted `ON CONFLICT
//! DO NOTHING` and the attempt repeated when another caller inserted it first.
//!
//! A group commit is one transaction (`commit`): fences read `FOR SHARE` first, then one
//! multi-row statement per table, pipelined. A batch written again whose events are all
//! stored exactly as given is acknowledged (its first attempt committed, the
//! acknowledgement was lost on the network: the ledger's committer writes a failed batch
//! again until the store takes it); any other duplicate (sku, seq) fails the batch. Reads of many SKUs ([`Store::load_skus`])
//! are one statement (one round trip, one snapshot of the data).
//!
//! History cursor: ids come from one sequence and become visible at commit. Two commits
//! running at the same time (several instances, or shards of one) may become visible out
//! of id order, so a history page read at that instant can miss the slower commit's rows
//! past its cursor; the embedded store, with one writer, cannot. The history is an audit
//! view; nothing in the ledger pages it.
//!
//! TLS: connections are made without TLS (`NoTls`); a connection string asking for
//! `sslmode=require` fails to connect. Keep the server on a private network or a local
//! socket until TLS support is added.
//!
//! May depend on: `domain`, `telemetry`, `config`, the rest of `store`.

mod commit;
pub mod schema;
#[cfg(test)]
mod tests;

use super::lease::{self, LeaseDecision};
use super::{
    BatchLoadedSku, CommitBatch, ConfigAuditRecord, DeadLetterQuery, DeadLetterRecord, EventQuery,
    EventRecord, HistoryEvent, HoldExpiryRecord, IdempotencyKeyRecord, Lease, LeaseOutcome,
    LoadedSku, OffsetWatermark, OrderLineRecord, PushLogQuery, PushLogRecord, PushedRecord,
    ReservationRecord, SnapshotRecord, Store, StoreError,
};
use crate::config::PostgresStoreConfig;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

/// Most rows one statement of [`Store::expire_keys`] or [`Store::prune_push_log`] deletes;
/// they repeat until fewer are left, so no single statement runs into `statement_timeout`
/// or holds its locks for long.
const DELETE_CHUNK: i64 = 10_000;

/// Most lines [`Store::order_lines`] returns for one order (as the embedded backend).
const MAX_ORDER_LINES: i64 = 10_000;

/// Attempts of [`Store::try_lease`]: one more each time a concurrent caller created the
/// scope's row between this one's read and its insert (then the next read finds it).
const LEASE_ATTEMPTS: usize = 8;

/// PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    pool: Pool,
    /// How long getting a connection may take, for error messages.
    connect_timeout_ms: u64,
}

/// The server's message for a failed statement (severity, SQLSTATE, message and detail),
/// or the driver's for anything else (connecting, I/O) followed by its cause chain
/// ([`std::error::Error::source`], e.g. `Connection refused (os error 111)`). Neither ever
/// contains the connection password.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut message = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                message.push_str(" (");
                message.push_str(detail);
                message.push(')');
            }
            message
        }
        None => {
            let mut message = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                let text = inner.to_string();
                if !message.ends_with(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                cause = inner.source();
            }
            message
        }
    }
}

/// The servers a connection config names, as `host:port` joined by `,` (a Unix socket as
/// its directory); never the user or password. libpq's default port 5432 when none is set.
fn endpoints(pg: &tokio_postgres::Config) -> String {
    let ports = pg.get_ports();
    let hosts = pg.get_hosts();
    if hosts.is_empty() {
        return "localhost (default)".to_owned();
    }
    hosts
        .iter()
        .enumerate()
        .map(|(at, host)| {
            let port = ports
                .get(at)
                .or(if ports.len() == 1 {
                    ports.first()
                } else {
                    None
                })
                .copied()
                .unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => {
                    format!("{}/.s.PGSQL.{port}", path.display())
                }
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Maps a driver error of `operation` to [`StoreError::Backend`].
pub(crate) fn pg_error(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |error| StoreError::Backend {
        operation,
        message: describe(&error),
    }
}

/// `value` as a `bigint`, or [`StoreError::Backend`] naming `what` when it does not fit.
pub(crate) fn to_i64(operation: &'static str, what: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend {
        operation,
        message: format!("{what} {value} is beyond PostgreSQL's bigint"),
    })
}

/// A `usize` limit as a `LIMIT` value.
fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `bigint` column read back as the `u64` it was written from.
fn to_u64(value: i64) -> u64 {
    value.max(0) as u64
}

/// `url` with the password of its user-info part (`postgres://user:secret@host/db`) and
/// any `password=…` pair (`host=db password=secret`, `password = 'a b'`, `?password=x`)
/// replaced by `<redacted>`; other text
/// is kept as it is. Used by the config audit, and wherever a connection string is shown.
pub fn redact_connection_string(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(scheme_end) = redacted.find("://") {
        let rest = scheme_end + 3;
        // The authority ends at the first '/', '?' or '#'; its user info at the last '@'.
        let authority_end = redacted[rest..]
            .find(['/', '?', '#'])
            .map_or(redacted.len(), |at| rest + at);
        if let Some(at) = redacted[rest..authority_end].rfind('@') {
            let user_info = &redacted[rest..rest + at];
            if let Some(colon) = user_info.find(':') {
                redacted.replace_range(rest + colon + 1..rest + at, "<redacted>");
            }
        }
    }
    // `password=` as a key=value pair (libpq allows blanks around `=` and a single-quoted
    // value with `\'` and `\\` escapes) or a URL query parameter.
    let lower = redacted.to_ascii_lowercase();
    let mut out = String::with_capacity(redacted.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("password").map(|at| search + at) {
        search = found + "password".len();
        let starts_pair = found == 0
            || lower[..found].ends_with(|c: char| c.is_ascii_whitespace() || c == '?' || c == '&');
        let after_key = lower[search..].trim_start();
        if !starts_pair || !after_key.starts_with('=') {
            continue;
        }
        let eq = lower.len() - after_key.len();
        let value_start = eq + 1 + (after_key.len() - 1 - after_key[1..].trim_start().len());
        let value = &redacted[value_start..];
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|(_, c)| {
                    let closes = !escaped && *c == '\'';
                    escaped = !escaped && *c == '\\';
                    closes
                })
                .map_or(value.len(), |(at, _)| at + 2)
        } else {
            value
                .find(|c: char| c.is_ascii_whitespace() || c == '&' || c == '#')
                .unwrap_or(value.len())
        };
        out.push_str(&redacted[copied..value_start]);
        out.push_str("<redacted>");
        copied = value_start + value_len;
        search = copied;
    }
    out.push_str(&redacted[copied..]);
    out
}

impl PostgresStore {
    /// Connects (a pool of `pool_size`), then applies the embedded migrations to `schema`
    /// (`create_schema = true`, creating the schema when missing) or checks that it is at
    /// this build's version (`create_schema = false`).
    ///
    /// Errors: [`StoreError::Backend`] (operation `open`) when the schema name or the
    /// connection string is not valid, the server cannot be reached within
    /// `connect_timeout_ms` or refuses the login (the server's message, never the
    /// password), a migration fails, or the schema's version does not match this build.
    pub async fn open(config: &PostgresStoreConfig) -> Result<Self, StoreError> {
        let fail = |message: String| StoreError::Backend {
            operation: "open",
            message,
        };
        let schema_name = config.schema.as_str();
        if !schema::valid_schema_name(schema_name) {
            return Err(fail(format!(
                "store.postgres.schema {schema_name:?} must be lower-case ASCII letters, \
                 digits and _, not start with a digit, and be at most 63 bytes"
            )));
        }
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| {
            fail(format!(
                "store.postgres.url ({}) is not a valid connection string: {e}",
                redact_connection_string(&config.url)
            ))
        })?;
        if let Some(password) = &config.password {
            pg.password(password.as_str());
        }
        // Start-up options of every connection: the server applies them before the first
        // statement, so no connection ever runs outside the schema or without a timeout.
        // `client_min_messages=warning`: no NOTICE (`schema … already exists, skipping`)
        // reaches the driver, which would log each one at INFO.
        // `idle_in_transaction_session_timeout`: a paused instance's open transaction (and
        // the fence rows it holds FOR SHARE) ends on the server, so the instance taking its
        // partitions over is not blocked by it.
        let options = format!(
            "{} -c search_path={schema_name} -c statement_timeout={} \
             -c idle_in_transaction_session_timeout={} -c client_min_messages=warning",
            pg.get_options().unwrap_or_default(),
            config.statement_timeout_ms,
            config.idle_in_transaction_timeout_ms
        );
        pg.options(options.trim_start());
        let servers = endpoints(&pg);
        pg.connect_timeout(Duration::from_millis(config.connect_timeout_ms.max(1)));
        if pg.get_application_name().is_none() {
            pg.application_name("stocksync");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = Some(Duration::from_millis(config.connect_timeout_ms.max(1)));
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| fail(format!("cannot build the connection pool: {e}")))?;
        let store = Self {
            pool,
            connect_timeout_ms: config.connect_timeout_ms,
        };
        let mut client = store.client("open").await.map_err(|error| match error {
            StoreError::Backend { message, .. } => fail(format!(
                "cannot connect to PostgreSQL at {servers}: {message}"
            )),
            other => other,
        })?;
        if config.create_schema {
            let applied = schema::migrate(&mut client, schema_name).await?;
            if !applied.is_empty() {
                tracing::info!(schema = schema_name, versions = ?applied, "applied PostgreSQL store migrations");
            }
        } else {
            schema::check(&client, schema_name).await?;
        }
        drop(client);
        Ok(store)
    }

    /// A pooled connection.
    async fn client(
        &self,
        operation: &'static str,
    ) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|error| StoreError::Backend {
            operation,
            message: match error {
                PoolError::Backend(error) => describe(&error),
                PoolError::Timeout(_) => format!(
                    "no PostgreSQL connection within {} ms (pool of {})",
                    self.connect_timeout_ms,
                    self.pool.status().max_size
                ),
                PoolError::Closed => "the store is closed".to_owned(),
                other => other.to_string(),
            },
        })
    }

    /// Runs `sql` (prepared once per connection) and returns its rows.
    async fn rows(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let err = pg_error(operation);
        let client = self.client(operation).await?;
        let statement = client.prepare_cached(sql).await.map_err(&err)?;
        client.query(&statement, params).await.map_err(&err)
    }

    /// Runs `sql` (prepared once per connection) and returns the rows it changed.
    async fn execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let err = pg_error(operation);
        let client = self.client(operation).await?;
        let statement = client.prepare_cached(sql).await.map_err(&err)?;
        client.execute(&statement, params).await.map_err(&err)
    }

    /// Runs a `DELETE … LIMIT`-shaped statement (`sql` takes the bound as `$2`) until it
    /// deletes fewer than [`DELETE_CHUNK`] rows; returns how many it deleted in all.
    async fn delete_in_chunks(
        &self,
        operation: &'static str,
        sql: &str,
        bound: i64,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        loop {
            let chunk = self
                .execute(operation, sql, &[&bound, &DELETE_CHUNK])
                .await?;
            deleted = deleted.saturating_add(chunk);
            if chunk < DELETE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }

    async fn load_many(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<BatchLoadedSku>, StoreError> {
        let err = pg_error("load_skus");
        let wanted: Vec<&str> = skus.iter().map(String::as_str).collect();
        let mut loaded: Vec<BatchLoadedSku> = skus.iter().map(|_| Default::default()).collect();
        if wanted.is_empty() {
            return Ok(loaded);
        }
        let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
        for (at, sku) in wanted.iter().enumerate() {
            index.entry(sku).or_default().push(at);
        }
        let rows = self
            .rows("load_skus", LOAD_SKUS, &[&wanted, &now_ms])
            .await?;
        for row in rows {
            let part: i16 = row.try_get(0).map_err(&err)?;
            let sku: String = row.try_get(1).map_err(&err)?;
            let seq = to_u64(row.try_get(2).map_err(&err)?);
            let Some(targets) = index.get(sku.as_str()) else {
                continue;
            };
            for &at in targets {
                let target = &mut loaded[at];
                match part {
                    0 => {
                        target.loaded.snapshot = Some(SnapshotRecord {
                            sku: sku.clone(),
                            seq,
                            state: row.try_get(5).map_err(&err)?,
                        });
                    }
                    1 => target.loaded.events_after.push(EventRecord {
                        sku: sku.clone(),
                        seq,
                        idempotency_key: row.try_get(3).map_err(&err)?,
                        key_expires_at_ms: row.try_get(6).map_err(&err)?,
                        recorded_at_ms: row.try_get(4).map_err(&err)?,
                        movement: row.try_get(5).map_err(&err)?,
                        movement_hash: None,
                    }),
                    _ => target.keys.push(IdempotencyKeyRecord {
                        key: row.try_get(3).map_err(&err)?,
                        seq,
                        expires_at_ms: row.try_get(6).map_err(&err)?,
                    }),
                }
            }
        }
        Ok(loaded)
    }
}

/// Snapshots (part 0), events after each snapshot (part 1) and unexpired keys (part 2) of
/// the SKUs in `$1`, in one statement (one snapshot of the data), ordered by part, SKU and
/// seq.
const LOAD_SKUS: &str = "
WITH wanted AS (SELECT DISTINCT sku FROM UNNEST($1::text[]) AS w(sku)),
snap AS (SELECT s.sku, s.seq, s.state FROM snapshots s JOIN wanted w ON w.sku = s.sku)
SELECT 0::smallint AS part, sku, seq, NULL::text AS key, NULL::bigint AS at_ms,
       state AS bytes, NULL::bigint AS expires
FROM snap
UNION ALL
SELECT 1::smallint, e.sku, e.seq, e.idempotency_key, e.recorded_at_ms, e.movement,
       e.key_expires_at_ms
FROM wanted w LEFT JOIN snap ON snap.sku = w.sku
JOIN events e ON e.sku = w.sku AND e.seq > COALESCE(snap.seq, 0)
UNION ALL
SELECT 2::smallint, k.sku, k.seq, k.idempotency_key, NULL, NULL, k.expires_at_ms
FROM idempotency_keys k JOIN wanted w ON w.sku = k.sku
WHERE k.expires_at_ms > $2
ORDER BY 1, 2, 3";

/// Reads `sku, seq, idempotency_key, recorded_at_ms, movement, key_expires_at_ms`.
/// A lease from a row of `scope, owner, epoch, expires_at_ms, payload` (lease columns
/// never written read as an expired lease).
fn lease_of_row(row: &tokio_postgres::Row) -> Result<Lease, tokio_postgres::Error> {
    Ok(Lease {
        scope: row.try_get(0)?,
        owner: row.try_get(1)?,
        epoch: to_u64(row.try_get(2)?),
        expires_at_ms: row.try_get::<_, Option<i64>>(3)?.unwrap_or(0),
        payload: row.try_get::<_, Option<String>>(4)?.unwrap_or_default(),
    })
}

/// One attempt of [`Store::try_lease`], in one transaction: the scope's row is read
/// `FOR UPDATE` (a concurrent caller, in this process or another, waits until this
/// transaction ends and then reads what it wrote), decided by [`lease::decide`] and
/// written. `None` when nothing was written (there was no row and a concurrent caller
/// inserted one first): the caller tries again and finds the row.
async fn try_lease_once(
    client: &mut deadpool_postgres::Object,
    scope: &str,
    owner: &str,
    payload: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Option<LeaseOutcome>, StoreError> {
    let err = pg_error("try_lease");
    let tx = client.transaction().await.map_err(&err)?;
    let select = tx
        .prepare_cached(
            "SELECT scope, owner, epoch, expires_at_ms, payload FROM ownership
             WHERE scope = $1 FOR UPDATE",
        )
        .await
        .map_err(&err)?;
    let current = tx
        .query_opt(&select, &[&scope])
        .await
        .map_err(&err)?
        .as_ref()
        .map(lease_of_row)
        .transpose()
        .map_err(&err)?;
    let decision = lease::decide(current, scope, owner, payload, now_ms, ttl_ms)?;
    let epoch_of = |lease: &Lease| to_i64("try_lease", "epoch", lease.epoch);
    let written = match &decision {
        LeaseDecision::Held(_) => {
            tx.rollback().await.map_err(&err)?;
            return Ok(Some(decision.outcome()));
        }
        LeaseDecision::Insert(to) => {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO ownership (scope, epoch, owner, expires_at_ms, payload)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope) DO NOTHING",
                )
                .await
                .map_err(&err)?;
            let epoch = epoch_of(to)?;
            tx.execute(
                &statement,
                &[&to.scope, &epoch, &to.owner, &to.expires_at_ms, &to.payload],
            )
            .await
            .map_err(&err)?
        }
        LeaseDecision::Replace { from, to } => {
            // The row is locked until the transaction ends; the condition on the row as
            // read only restates that.
            let statement = tx
                .prepare_cached(
                    "UPDATE ownership SET epoch = $2, owner = $3, expires_at_ms = $4,
                         payload = $5
                     WHERE scope = $1 AND epoch = $6 AND owner = $7",
                )
                .await
                .map_err(&err)?;
            let (epoch, expected) = (epoch_of(to)?, epoch_of(from)?);
            tx.execute(
                &statement,
                &[
                    &to.scope,
                    &epoch,
                    &to.owner,
                    &to.expires_at_ms,
                    &to.payload,
                    &expected,
                    &from.owner,
                ],
            )
            .await
            .map_err(&err)?
        }
    };
    if written == 0 {
        tx.rollback().await.map_err(&err)?;
        return Ok(None);
    }
    tx.commit().await.map_err(&err)?;
    Ok(Some(decision.outcome()))
}

fn read_event(row: &tokio_postgres::Row) -> Result<EventRecord, tokio_postgres::Error> {
    Ok(EventRecord {
        sku: row.try_get(0)?,
        seq: to_u64(row.try_get(1)?),
        idempotency_key: row.try_get(2)?,
        recorded_at_ms: row.try_get(3)?,
        movement: row.try_get(4)?,
        key_expires_at_ms: row.try_get(5)?,
        movement_hash: None,
    })
}

/// A SQL text with its parameters, built from the filters a query has.
#[derive(Default)]
struct Filtered<'q> {
    conditions: Vec<String>,
    params: Vec<&'q (dyn ToSql + Sync)>,
}

impl<'q> Filtered<'q> {
    /// Adds `column op $n` with `value` as the next parameter.
    fn and(&mut self, column: &str, op: &str, value: &'q (dyn ToSql + Sync)) {
        self.params.push(value);
        self.conditions
            .push(format!("{column} {op} ${}", self.params.len()));
    }

    /// The next parameter's placeholder, for `value`.
    fn bind(&mut self, value: &'q (dyn ToSql + Sync)) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn acquire_epoch(&self, scope: &str, owner: &str) -> Result<u64, StoreError> {
        async {
            let rows = self
                .rows(
                    "acquire_epoch",
                    "INSERT INTO ownership (scope, epoch, owner, expires_at_ms, payload)
                     VALUES ($1, 1, $2, $3, '')
                     ON CONFLICT (scope) DO UPDATE SET epoch = ownership.epoch + 1,
                         owner = excluded.owner, expires_at_ms = excluded.expires_at_ms,
                         payload = excluded.payload
                     RETURNING epoch",
                    &[&scope, &owner, &lease::ACQUIRED_EXPIRES_AT_MS],
                )
                .await?;
            let epoch: i64 = rows
                .first()
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(pg_error("acquire_epoch"))?
                .unwrap_or(0);
            Ok(to_u64(epoch))
        }
        .await
    }

    async fn current_epoch(&self, scope: &str) -> Result<Option<(u64, String)>, StoreError> {
        async {
            let rows = self
                .rows(
                    "current_epoch",
                    "SELECT epoch, owner FROM ownership WHERE scope = $1",
                    &[&scope],
                )
                .await?;
            let err = pg_error("current_epoch");
            rows.first()
                .map(|row| {
                    Ok((
                        to_u64(row.try_get(0).map_err(&err)?),
                        row.try_get(1).map_err(&err)?,
                    ))
                })
                .transpose()
        }
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
        let mut client = self.client("try_lease").await?;
        for _ in 0..LEASE_ATTEMPTS {
            if let Some(outcome) =
                try_lease_once(&mut client, scope, owner, payload, now_ms, ttl_ms).await?
            {
                return Ok(outcome);
            }
        }
        Err(StoreError::Backend {
            operation: "try_lease",
            message: format!(
                "{scope}: lost the race to create the row {LEASE_ATTEMPTS} times in a row"
            ),
        })
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
        let released = self
            .execute(
                "release_lease",
                "UPDATE ownership SET expires_at_ms = 0
                 WHERE scope = $1 AND owner = $2 AND epoch = $3",
                &[&scope, &owner, &epoch],
            )
            .await?;
        Ok(released > 0)
    }

    async fn leases(&self, prefix: &str, limit: usize) -> Result<Vec<Lease>, StoreError> {
        lease::check_prefix(prefix)?;
        let pattern = lease::like_prefix_pattern(prefix);
        let rows = self
            .rows(
                "leases",
                "SELECT scope, owner, epoch, expires_at_ms, payload FROM ownership
                 WHERE scope LIKE $1 ESCAPE '\\' ORDER BY scope LIMIT $2",
                &[&pattern, &self::limit(lease::listed(limit))],
            )
            .await?;
        rows.iter()
            .map(lease_of_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pg_error("leases"))
    }

    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        async {
            // An empty batch with fences still checks them (as the embedded store does).
            if batch.is_empty() && batch.fences.is_empty() {
                return Ok(());
            }
            let mut client = self.client("commit").await?;
            commit::write_batch(&mut client, &batch).await
        }
        .await
    }

    async fn commit_shared(&self, batch: std::sync::Arc<CommitBatch>) -> Result<(), StoreError> {
        async {
            // An empty batch with fences still checks them (as the embedded store does).
            if batch.is_empty() && batch.fences.is_empty() {
                return Ok(());
            }
            let mut client = self.client("commit").await?;
            commit::write_batch(&mut client, &batch).await
        }
        .await
    }

    async fn load_sku(&self, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError> {
        async {
            let one = self
                .load_many(&[sku.to_owned()], now_ms)
                .await?
                .pop()
                .unwrap_or_default();
            let mut loaded = one.loaded;
            loaded.idempotency_keys = one.keys.into_iter().map(|k| (k.key, k.seq)).collect();
            Ok(loaded)
        }
        .await
    }

    async fn load_skus(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<BatchLoadedSku>, StoreError> {
        self.load_many(skus, now_ms).await
    }

    async fn find_idempotency_key_hash(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(u64, Option<u64>)>, StoreError> {
        async {
            let rows = self
                .rows(
                    "find_idempotency_key",
                    "SELECT seq, movement_hash FROM idempotency_keys
                     WHERE sku = $1 AND idempotency_key = $2 AND expires_at_ms > $3
                     ORDER BY seq LIMIT 1",
                    &[&sku, &key, &now_ms],
                )
                .await?;
            let err = pg_error("find_idempotency_key");
            rows.first()
                .map(|row| {
                    let seq: i64 = row.try_get(0).map_err(&err)?;
                    let hash: Option<i64> = row.try_get(1).map_err(&err)?;
                    // The bigint back to the u64 with the same 64 bits.
                    Ok((to_u64(seq), hash.map(|hash| hash as u64)))
                })
                .transpose()
        }
        .await
    }

    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit_rows: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        async {
            let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
            let rows = self
                .rows(
                    "events",
                    "SELECT sku, seq, idempotency_key, recorded_at_ms, movement, key_expires_at_ms
                     FROM events WHERE sku = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                    &[&sku, &from, &limit(limit_rows)],
                )
                .await?;
            rows.iter()
                .map(read_event)
                .collect::<Result<Vec<_>, _>>()
                .map_err(pg_error("events"))
        }
        .await
    }

    async fn list_skus(
        &self,
        after: Option<&str>,
        limit_rows: usize,
    ) -> Result<Vec<String>, StoreError> {
        async {
            let after = after.unwrap_or("");
            let rows = self
                .rows(
                    "list_skus",
                    "SELECT sku FROM skus WHERE sku > $1 ORDER BY sku LIMIT $2",
                    &[&after, &limit(limit_rows)],
                )
                .await?;
            rows.iter()
                .map(|row| row.try_get(0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(pg_error("list_skus"))
        }
        .await
    }

    async fn sku_exists(&self, sku: &str) -> Result<bool, StoreError> {
        async {
            let rows = self
                .rows(
                    "sku_exists",
                    "SELECT EXISTS (SELECT 1 FROM skus WHERE sku = $1)",
                    &[&sku],
                )
                .await?;
            rows.first()
                .map(|row| row.try_get(0))
                .transpose()
                .map(|found| found.unwrap_or(false))
                .map_err(pg_error("sku_exists"))
        }
        .await
    }

    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, StoreError> {
        async {
            let rows = self
                .rows(
                    "offsets",
                    "SELECT grp, topic, part, next_offset FROM offsets WHERE grp = $1
                     ORDER BY topic, part",
                    &[&group],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(OffsetWatermark {
                        group: row.try_get(0)?,
                        topic: row.try_get(1)?,
                        partition: row.try_get(2)?,
                        next_offset: row.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(pg_error("offsets"))
        }
        .await
    }

    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError> {
        async {
            if records.is_empty() {
                return Ok(());
            }
            // The last record per listing wins (one upsert may not touch a row twice).
            let mut at: HashMap<(&str, &str), usize> = HashMap::new();
            let (mut channels, mut skus, mut quantities, mut times) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for record in records {
                let quantity = to_i64("record_pushed", "quantity", record.quantity)?;
                match at.get(&(record.channel.as_str(), record.sku.as_str())) {
                    Some(&row) => {
                        quantities[row] = quantity;
                        times[row] = record.pushed_at_ms;
                    }
                    None => {
                        at.insert((&record.channel, &record.sku), channels.len());
                        channels.push(record.channel.as_str());
                        skus.push(record.sku.as_str());
                        quantities.push(quantity);
                        times.push(record.pushed_at_ms);
                    }
                }
            }
            self.execute(
                "record_pushed",
                "INSERT INTO pushed (channel, sku, quantity, pushed_at_ms)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                 ON CONFLICT (channel, sku) DO UPDATE
                 SET quantity = excluded.quantity, pushed_at_ms = excluded.pushed_at_ms",
                &[&channels, &skus, &quantities, &times],
            )
            .await
            .map(|_| ())
        }
        .await
    }

    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError> {
        async {
            let rows = self
                .rows(
                    "pushed",
                    "SELECT channel, sku, quantity, pushed_at_ms FROM pushed WHERE channel = $1
                     ORDER BY sku",
                    &[&channel],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(PushedRecord {
                        channel: row.try_get(0)?,
                        sku: row.try_get(1)?,
                        quantity: to_u64(row.try_get(2)?),
                        pushed_at_ms: row.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(pg_error("pushed"))
        }
        .await
    }

    /// Deletes the key rows whose expiry is at or before `now_ms` (exactly the keys that
    /// [`Store::load_sku`] no longer returns at `now_ms`), in chunks; returns how many.
    async fn expire_keys(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.delete_in_chunks(
            "expire_keys",
            "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM idempotency_keys WHERE expires_at_ms <= $1 LIMIT $2))",
            now_ms,
        )
        .await
    }

    async fn query_events(&self, query: &EventQuery) -> Result<Vec<HistoryEvent>, StoreError> {
        async {
            let after = query
                .after
                .map_or(0, |after| i64::try_from(after).unwrap_or(i64::MAX));
            let max_rows = limit(query.limit);
            let mut filter = Filtered::default();
            filter.and("e.id", ">", &after);
            let order = if let Some(sku) = &query.sku {
                // One SKU: walk its (sku, seq) index; seq order is append order there. The
                // cursor's seq bounds the walk from below.
                filter.and("e.sku", "=", sku);
                let sku_param = format!("${}", filter.params.len());
                let after_param = "$1";
                filter.conditions.push(format!(
                    "e.seq > COALESCE((SELECT c.seq FROM events c WHERE c.id = {after_param} \
                     AND c.sku = {sku_param}), 0)"
                ));
                "e.seq"
            } else {
                "e.id"
            };
            if let Some(from_ms) = &query.from_ms {
                filter.and("e.recorded_at_ms", ">=", from_ms);
            }
            if let Some(to_ms) = &query.to_ms {
                filter.and("e.recorded_at_ms", "<", to_ms);
            }
            if let Some(source) = &query.source {
                filter.and("e.source", "=", source);
            }
            if let Some(kind) = &query.kind {
                filter.and("e.kind", "=", kind);
            }
            let limit_param = filter.bind(&max_rows);
            let sql = format!(
                "SELECT e.id, e.sku, e.seq, e.idempotency_key, e.recorded_at_ms, e.movement,
                        e.key_expires_at_ms, o.outcome
                 FROM events e LEFT JOIN event_outcomes o ON o.sku = e.sku AND o.seq = e.seq
                 {} ORDER BY {order} LIMIT {limit_param}",
                filter.where_clause()
            );
            let rows = self.rows("query_events", &sql, &filter.params).await?;
            rows.iter()
                .map(|row| {
                    Ok(HistoryEvent {
                        cursor: to_u64(row.try_get(0)?),
                        event: EventRecord {
                            sku: row.try_get(1)?,
                            seq: to_u64(row.try_get(2)?),
                            idempotency_key: row.try_get(3)?,
                            recorded_at_ms: row.try_get(4)?,
                            movement: row.try_get(5)?,
                            key_expires_at_ms: row.try_get(6)?,
                            movement_hash: None,
                        },
                        outcome: row.try_get(7)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg_error("query_events"))
        }
        .await
    }

    async fn append_push_log(&self, records: &[PushLogRecord]) -> Result<(), StoreError> {
        async {
            if records.is_empty() {
                return Ok(());
            }
            let channels: Vec<&str> = records.iter().map(|r| r.channel.as_str()).collect();
            let skus: Vec<&str> = records.iter().map(|r| r.sku.as_str()).collect();
            let quantities = records
                .iter()
                .map(|r| to_i64("append_push_log", "quantity", r.quantity))
                .collect::<Result<Vec<_>, _>>()?;
            let change_from: Vec<Option<i64>> = records.iter().map(|r| r.change_from).collect();
            let outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
            let details: Vec<Option<&str>> = records.iter().map(|r| r.detail.as_deref()).collect();
            let requests: Vec<i64> = records.iter().map(|r| i64::from(r.requests)).collect();
            let times: Vec<i64> = records.iter().map(|r| r.at_ms).collect();
            self.execute(
                "append_push_log",
                "INSERT INTO push_log
                     (channel, sku, quantity, change_from, outcome, detail, requests, at_ms)
                 SELECT channel, sku, quantity, change_from, outcome, detail, requests, at_ms
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                             $5::text[], $6::text[], $7::bigint[], $8::bigint[])
                     WITH ORDINALITY AS u(channel, sku, quantity, change_from, outcome, detail,
                                          requests, at_ms, n)
                 ORDER BY n",
                &[
                    &channels,
                    &skus,
                    &quantities,
                    &change_from,
                    &outcomes,
                    &details,
                    &requests,
                    &times,
                ],
            )
            .await
            .map(|_| ())
        }
        .await
    }

    async fn query_push_log(&self, query: &PushLogQuery) -> Result<Vec<PushLogRecord>, StoreError> {
        async {
            let max_rows = limit(query.limit);
            let mut filter = Filtered::default();
            if let Some(channel) = &query.channel {
                filter.and("channel", "=", channel);
            }
            if let Some(sku) = &query.sku {
                filter.and("sku", "=", sku);
            }
            if let Some(from_ms) = &query.from_ms {
                filter.and("at_ms", ">=", from_ms);
            }
            if let Some(to_ms) = &query.to_ms {
                filter.and("at_ms", "<", to_ms);
            }
            let limit_param = filter.bind(&max_rows);
            let sql = format!(
                "SELECT channel, sku, quantity, change_from, outcome, detail, requests, at_ms
                 FROM push_log {} ORDER BY at_ms DESC, id DESC LIMIT {limit_param}",
                filter.where_clause()
            );
            let rows = self.rows("query_push_log", &sql, &filter.params).await?;
            rows.iter()
                .map(|row| {
                    Ok(PushLogRecord {
                        channel: row.try_get(0)?,
                        sku: row.try_get(1)?,
                        quantity: to_u64(row.try_get(2)?),
                        change_from: row.try_get(3)?,
                        outcome: row.try_get(4)?,
                        detail: row.try_get(5)?,
                        requests: u32::try_from(row.try_get::<_, i64>(6)?).unwrap_or(u32::MAX),
                        at_ms: row.try_get(7)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg_error("query_push_log"))
        }
        .await
    }

    async fn prune_events(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        // One statement per chunk: the events, then their outcomes and keys, in one
        // transaction (a statement with data-modifying CTEs is atomic).
        const PRUNE: &str = "WITH gone AS (
                DELETE FROM events WHERE id = ANY (ARRAY(
                    SELECT e.id FROM events e JOIN snapshots s ON s.sku = e.sku
                    WHERE e.recorded_at_ms < $1 AND e.key_expires_at_ms <= $2 AND e.seq <= s.seq
                    ORDER BY e.recorded_at_ms LIMIT $3))
                RETURNING sku, seq),
            outcomes AS (
                DELETE FROM event_outcomes o USING gone WHERE o.sku = gone.sku AND o.seq = gone.seq),
            keys AS (
                DELETE FROM idempotency_keys k USING gone WHERE k.sku = gone.sku AND k.seq = gone.seq)
            SELECT count(*) FROM gone";
        let mut deleted = 0_u64;
        loop {
            let rows = self
                .rows("prune_events", PRUNE, &[&before_ms, &now_ms, &DELETE_CHUNK])
                .await?;
            let chunk: i64 = rows
                .first()
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(pg_error("prune_events"))?
                .unwrap_or(0);
            let chunk = u64::try_from(chunk).unwrap_or(0);
            deleted = deleted.saturating_add(chunk);
            if chunk < DELETE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }

    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.delete_in_chunks(
            "prune_push_log",
            "DELETE FROM push_log WHERE id = ANY (ARRAY(
                     SELECT id FROM push_log WHERE at_ms < $1 LIMIT $2))",
            before_ms,
        )
        .await
    }

    async fn record_config_change(&self, record: &ConfigAuditRecord) -> Result<(), StoreError> {
        self.execute(
            "record_config_change",
            "INSERT INTO config_audit (at_ms, action, actor, config_hash, config_json)
                 VALUES ($1, $2, $3, $4, $5)",
            &[
                &record.at_ms,
                &record.action,
                &record.actor,
                &record.config_hash,
                &record.config_json,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn config_changes(
        &self,
        limit_rows: usize,
    ) -> Result<Vec<ConfigAuditRecord>, StoreError> {
        async {
            let rows = self
                .rows(
                    "config_changes",
                    "SELECT at_ms, action, actor, config_hash, config_json FROM config_audit
                     ORDER BY id DESC LIMIT $1",
                    &[&limit(limit_rows)],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(ConfigAuditRecord {
                        at_ms: row.try_get(0)?,
                        action: row.try_get(1)?,
                        actor: row.try_get(2)?,
                        config_hash: row.try_get(3)?,
                        config_json: row.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg_error("config_changes"))
        }
        .await
    }

    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit_rows: usize,
    ) -> Result<Vec<HoldExpiryRecord>, StoreError> {
        async {
            let after = after.unwrap_or("");
            let rows = self
                .rows(
                    "hold_expiries",
                    "SELECT sku, next_expiry_ms FROM hold_expiries WHERE sku > $1
                     ORDER BY sku LIMIT $2",
                    &[&after, &limit(limit_rows)],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(HoldExpiryRecord {
                        sku: row.try_get(0)?,
                        next_expiry_ms: Some(row.try_get(1)?),
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg_error("hold_expiries"))
        }
        .await
    }

    async fn reservation(&self, id: &str) -> Result<Option<ReservationRecord>, StoreError> {
        async {
            let rows = self
                .rows(
                    "reservation",
                    "SELECT id, request, refusal, created_at_ms FROM reservations WHERE id = $1",
                    &[&id],
                )
                .await?;
            rows.first()
                .map(|row| {
                    Ok(ReservationRecord {
                        id: row.try_get(0)?,
                        request_json: row.try_get(1)?,
                        refusal_json: row.try_get(2)?,
                        created_at_ms: row.try_get(3)?,
                    })
                })
                .transpose()
                .map_err(pg_error("reservation"))
        }
        .await
    }

    async fn order_lines(
        &self,
        channel: &str,
        order_id: &str,
    ) -> Result<Vec<OrderLineRecord>, StoreError> {
        async {
            let rows = self
                .rows(
                    "order_lines",
                    "SELECT channel, order_id, line_id, sku, version, seen_at_ms FROM order_lines
                     WHERE channel = $1 AND order_id = $2 ORDER BY line_id LIMIT $3",
                    &[&channel, &order_id, &MAX_ORDER_LINES],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(OrderLineRecord {
                        channel: row.try_get(0)?,
                        order_id: row.try_get(1)?,
                        line_id: row.try_get(2)?,
                        sku: row.try_get(3)?,
                        version: row.try_get(4)?,
                        seen_at_ms: row.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg_error("order_lines"))
        }
        .await
    }

    async fn record_order_lines(
        &self,
        records: &[OrderLineRecord],
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        async {
            let err = pg_error("record_order_lines");
            // Rows of one line merge as row-by-row upserts would leave them: the last SKU,
            // the highest version and last-seen time.
            let mut at: HashMap<(&str, &str, &str), usize> = HashMap::new();
            let (mut channels, mut orders, mut lines, mut skus, mut versions, mut seen) = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for r in records {
                let key = (r.channel.as_str(), r.order_id.as_str(), r.line_id.as_str());
                match at.get(&key) {
                    Some(&row) => {
                        skus[row] = r.sku.as_str();
                        versions[row] = r.version.max(versions[row]);
                        seen[row] = r.seen_at_ms.max(seen[row]);
                    }
                    None => {
                        at.insert(key, channels.len());
                        channels.push(key.0);
                        orders.push(key.1);
                        lines.push(key.2);
                        skus.push(r.sku.as_str());
                        versions.push(r.version);
                        seen.push(r.seen_at_ms);
                    }
                }
            }
            let mut client = self.client("record_order_lines").await?;
            let tx = client.transaction().await.map_err(&err)?;
            if !channels.is_empty() {
                let upsert = tx
                    .prepare_cached(
                        "INSERT INTO order_lines (channel, order_id, line_id, sku, version, seen_at_ms)
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                                              $5::bigint[], $6::bigint[])
                         ON CONFLICT (channel, order_id, line_id) DO UPDATE SET
                             sku = excluded.sku,
                             version = GREATEST(order_lines.version, excluded.version),
                             seen_at_ms = GREATEST(order_lines.seen_at_ms, excluded.seen_at_ms)",
                    )
                    .await
                    .map_err(&err)?;
                tx.execute(
                    &upsert,
                    &[&channels, &orders, &lines, &skus, &versions, &seen],
                )
                .await
                .map_err(&err)?;
            }
            let forget = tx
                .prepare_cached("DELETE FROM order_lines WHERE seen_at_ms < $1")
                .await
                .map_err(&err)?;
            tx.execute(&forget, &[&forget_before_ms])
                .await
                .map_err(&err)?;
            tx.commit().await.map_err(&err)
        }
        .await
    }

    async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        async {
            let max_rows = limit(query.limit);
            let mut filter = Filtered::default();
            if let Some(sku) = &query.sku {
                filter.and("sku", "=", sku);
            }
            let limit_param = filter.bind(&max_rows);
            let sql = format!(
                "SELECT sku, parked_seq, expired_seq, idempotency_key, source, kind, movement,
                        reason, parked_at_ms, expired_at_ms, keep_until_ms
                 FROM dead_letters {}
                 ORDER BY expired_at_ms DESC, sku, parked_seq LIMIT {limit_param}",
                filter.where_clause()
            );
            let rows = self.rows("dead_letters", &sql, &filter.params).await?;
            rows.iter()
                .map(|row| {
                    Ok(DeadLetterRecord {
                        sku: row.try_get(0)?,
                        parked_seq: to_u64(row.try_get(1)?),
                        expired_seq: to_u64(row.try_get(2)?),
                        idempotency_key: row.try_get(3)?,
                        source: row.try_get(4)?,
                        kind: row.try_get(5)?,
                        movement_json: row.try_get(6)?,
                        reason: row.try_get(7)?,
                        parked_at_ms: row.try_get(8)?,
                        expired_at_ms: row.try_get(9)?,
                        keep_until_ms: row.try_get(10)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg_error("dead_letters"))
        }
        .await
    }

    /// Closes the pool: idle connections end now, busy ones when they come back; later
    /// calls fail with "the store is closed". Nothing needs flushing (every commit was
    /// durable when it returned).
    async fn close(&self) -> Result<(), StoreError> {
        self.pool.close();
        Ok(())
    }
}
