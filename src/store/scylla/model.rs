//! The ScyllaDB backend's pure logic: cursors and buckets, TTLs, the fenced replay filter,
//! the plan of a group commit (which statements, in which single-partition batches, in
//! which order), the history repair, and row ↔ record conversion. No I/O: the backend
//! (`store::scylla`) only executes what these functions decide, so all of it is
//! unit-tested without a server.
//!
//! Owns: [`Write`], [`CommitPlan`], [`plan_commit`], [`replay_filter`], [`assemble_load`],
//! [`history_cursor`], the bucket functions, and the lightweight transactions of epochs and
//! leases ([`acquire_write`], [`lease_write`], [`release_write`]) with the listing of scopes
//! by prefix ([`scopes_with_prefix`]).
//!
//! May depend on: the rest of `store`, `store::scylla::cql`.

use super::cql::{Stmt, kind};
use crate::store::lease::{self, LeaseDecision};
use crate::store::{
    CommitBatch, EventRecord, HistoryEvent, IdempotencyKeyRecord, Lease, LoadedSku, SnapshotRecord,
    StoreError,
};
use scylla::value::{CqlValue, MaybeUnset};
use std::collections::{BTreeMap, BTreeSet};

/// Values bound to one statement, in its bind order; `Unset` leaves a column untouched
/// (no null is ever written, so no cell tombstones).
pub type Values = Vec<MaybeUnset<CqlValue>>;

/// One statement execution: which prepared statement, with which values.
#[derive(Clone, Debug)]
pub struct Write {
    /// The statement.
    pub stmt: Stmt,
    /// Its values.
    pub values: Values,
}

/// Low bits of a history cursor below the milliseconds (`cursor = ms << 20 | hash`).
pub const CURSOR_LOW_BITS: u32 = 20;
/// The largest `recorded_at_ms` a cursor can hold (2^43 − 1 ms, the year 2248); later
/// times are clamped to it.
pub const CURSOR_MAX_MS: i64 = (1 << (63 - CURSOR_LOW_BITS)) - 1;
/// Milliseconds per history partition (one hour).
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds per push-log partition (one day).
pub const DAY_MS: i64 = 86_400_000;
/// Events per `sku_history` partition of one SKU.
pub const SKU_HISTORY_BUCKET_EVENTS: u64 = 65_536;
/// Events kept in a SKU's `sku_log` partition below its newest snapshot (older ones are
/// range-deleted when a snapshot is written; `sku_history` keeps them all). Also the most
/// events a zombie writer may add after a takeover without hurting the new owner's log.
pub const RETAINED_EVENTS_BELOW_SNAPSHOT: u64 = 1_000;
/// ScyllaDB's largest TTL: 20 years, in seconds.
pub const MAX_TTL_SECS: i64 = 630_720_000;
/// The smallest TTL written: rows are filtered by their expiry column at read time, so a
/// TTL only collects garbage and is never shorter than an hour (a test clock or a clock
/// behind the cluster's never makes a row vanish early).
pub const MIN_TTL_SECS: i64 = 3_600;
/// Statements per single-partition batch.
pub const MAX_BATCH_STATEMENTS: usize = 200;
/// Estimated bytes per single-partition batch; below ScyllaDB's default
/// `batch_size_warn_threshold_in_kb` (128 KiB).
pub const MAX_BATCH_BYTES: usize = 100_000;

/// A history cursor: a time in milliseconds in the high bits and the event's index in
/// its batch in the low [`CURSOR_LOW_BITS`] (clamped). Fits a `bigint`.
pub fn history_cursor(ms: i64, index: usize) -> u64 {
    let ms = ms.clamp(0, CURSOR_MAX_MS) as u64;
    (ms << CURSOR_LOW_BITS) | (index as u64).min((1 << CURSOR_LOW_BITS) - 1)
}

/// The cursors of a batch's events, in order: each carries its event's `recorded_at_ms`,
/// raised where needed so that times never decrease along the batch and the first is
/// later than `previous_ms` (the last cursor time of this store's previous batch). So
/// cursors follow append order even when the clock stands still or steps back, order by
/// time across instances, and are never earlier than their event (a `from_ms` bound on
/// cursors never drops a row). Cursors are stored on the event's rows, so a rewrite
/// (retry, repair) reuses them.
pub fn assign_cursors(batch: &CommitBatch, previous_ms: i64) -> Vec<u64> {
    let mut floor = previous_ms.saturating_add(1);
    batch
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let ms = event.recorded_at_ms.max(floor).clamp(0, CURSOR_MAX_MS);
            floor = ms;
            history_cursor(ms, index)
        })
        .collect()
}

/// The time in milliseconds a cursor carries.
pub fn cursor_ms(cursor: u64) -> i64 {
    (cursor >> CURSOR_LOW_BITS) as i64
}

/// The hour partition of a time (milliseconds since the Unix epoch).
pub fn hour_of_ms(ms: i64) -> i64 {
    ms.clamp(0, CURSOR_MAX_MS).div_euclid(HOUR_MS)
}

/// The hour partition a cursor lives in.
pub fn hour_of_cursor(cursor: u64) -> i64 {
    hour_of_ms(cursor_ms(cursor))
}

/// The day partition of a push-log time.
pub fn day_of_ms(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The sorted-index partition of a SKU (`skus`, `hold_expiries`): its first byte, so that
/// reading the 256 partitions in order, each in clustering order, lists SKUs ascending by
/// bytes (the order of the `Store` contract and of SQLite's `BINARY` collation).
pub fn sku_bucket(sku: &str) -> i32 {
    sku.as_bytes().first().map_or(0, |byte| i32::from(*byte))
}

/// The `sku_history` partition of a seq (seq 1 is in bucket 0).
pub fn history_bucket(seq: u64) -> i64 {
    (seq.saturating_sub(1) / SKU_HISTORY_BUCKET_EVENTS) as i64
}

/// A TTL in seconds for a row kept until `until_ms`, counted from `from_ms` (the time it
/// was recorded), rounded up and clamped to [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].
pub fn ttl_secs(until_ms: i64, from_ms: i64) -> i32 {
    let remaining_ms = i128::from(until_ms) - i128::from(from_ms);
    let secs = (remaining_ms.max(0) + 999) / 1_000;
    secs.clamp(i128::from(MIN_TTL_SECS), i128::from(MAX_TTL_SECS)) as i32
}

/// What tells a retry of a batch from another batch: its event count and its first and
/// last events' (SKU, seq) (the ledger never writes a (SKU, seq) twice but in a retry).
pub type BatchIdentity = (usize, String, u64, String, u64);

/// The [`BatchIdentity`] of a batch with events.
pub fn batch_identity(batch: &CommitBatch) -> Option<BatchIdentity> {
    let first = batch.events.first()?;
    let last = batch.events.last()?;
    Some((
        batch.events.len(),
        first.sku.clone(),
        first.seq,
        last.sku.clone(),
        last.seq,
    ))
}

/// The epoch written on rows of a SKU no fence of its own covers (a single node): the
/// newest of the batch's fences (0 without fences).
pub fn batch_epoch(batch: &CommitBatch) -> u64 {
    batch
        .fences
        .iter()
        .map(|fence| fence.epoch)
        .max()
        .unwrap_or(0)
}

/// The epoch written on `sku`'s rows: the epoch of its own fence, its partition's
/// ([`CommitBatch::fence_of`]), else `fallback` ([`batch_epoch`]). The replay filter
/// compares these per SKU, so a SKU's rows must never carry another partition's epoch.
///
/// Errors: [`StoreError::Backend`] for an epoch above `i64::MAX`.
fn sku_epoch(batch: &CommitBatch, sku: &str, fallback: u64) -> Result<i64, StoreError> {
    let epoch = batch.fence_of(sku).map_or(fallback, |fence| fence.epoch);
    to_bigint(epoch, "epoch")
}

/// A `u64` as the `bigint` it is stored as.
///
/// Errors: [`StoreError::Backend`] above `i64::MAX`.
pub fn to_bigint(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend {
        operation: "commit",
        message: format!("{what} {value} does not fit a bigint"),
    })
}

fn text(value: &str) -> MaybeUnset<CqlValue> {
    MaybeUnset::Set(CqlValue::Text(value.to_owned()))
}
fn big(value: i64) -> MaybeUnset<CqlValue> {
    MaybeUnset::Set(CqlValue::BigInt(value))
}
fn int(value: i32) -> MaybeUnset<CqlValue> {
    MaybeUnset::Set(CqlValue::Int(value))
}
fn blob(value: &[u8]) -> MaybeUnset<CqlValue> {
    MaybeUnset::Set(CqlValue::Blob(value.to_vec()))
}
fn opt_text(value: Option<&str>) -> MaybeUnset<CqlValue> {
    value.map_or(MaybeUnset::Unset, text)
}

/// Values of one statement (a helper for the backend's reads).
pub fn values_text(items: &[&str]) -> Values {
    items.iter().map(|item| text(item)).collect()
}

/// Builds values from typed parts (a helper for the backend's reads).
pub fn value_big(value: i64) -> MaybeUnset<CqlValue> {
    big(value)
}
/// See [`value_big`].
pub fn value_int(value: i32) -> MaybeUnset<CqlValue> {
    int(value)
}
/// See [`value_big`].
pub fn value_text(value: &str) -> MaybeUnset<CqlValue> {
    text(value)
}
/// See [`value_big`].
pub fn value_opt_text(value: Option<&str>) -> MaybeUnset<CqlValue> {
    opt_text(value)
}

/// A rough size of a write's values in bytes, for batch sizing.
fn estimated_bytes(write: &Write) -> usize {
    write
        .values
        .iter()
        .map(|value| match value {
            MaybeUnset::Set(CqlValue::Text(text)) => text.len() + 4,
            MaybeUnset::Set(CqlValue::Blob(bytes)) => bytes.len() + 4,
            _ => 12,
        })
        .sum::<usize>()
        + 16
}

/// What one group commit writes, in order:
/// 1. `before`: idempotent rows that may exist without the events (the SKU index, hold
///    expiry upserts, reservation requests);
/// 2. `partitions`: per SKU, single-partition `UNLOGGED` batches of `sku_log` (events with
///    their keys and outcomes, the snapshot, the range deletes that bound the partition,
///    the history marker), executed concurrently across SKUs and in order within a SKU;
/// 3. `after`: rows that must not exist without the events (history rows, the history
///    hour index, offsets, hold expiry deletions, dead letters).
#[derive(Clone, Debug, Default)]
pub struct CommitPlan {
    /// Written first.
    pub before: Vec<Write>,
    /// One entry per SKU (ascending), each a list of batches (all of one partition).
    pub partitions: Vec<(String, Vec<Vec<Write>>)>,
    /// Written last.
    pub after: Vec<Write>,
}

/// Plans `batch` (see [`CommitPlan`]); each SKU's epoch (its own fence's,
/// [`CommitBatch::fence_of`], else [`batch_epoch`]) and `writer` are written on its rows,
/// `cursors` ([`assign_cursors`]) on the events' rows;
/// `now_micros` (wall clock) orders reservation requests ([`first_write_wins_timestamp`]).
///
/// Errors: [`StoreError::Backend`] for a seq or quantity above `i64::MAX`.
pub fn plan_commit(
    batch: &CommitBatch,
    writer: &str,
    cursors: &[u64],
    now_micros: i64,
) -> Result<CommitPlan, StoreError> {
    if cursors.len() != batch.events.len() {
        return Err(StoreError::Backend {
            operation: "commit",
            message: format!(
                "{} cursors for {} events",
                cursors.len(),
                batch.events.len()
            ),
        });
    }
    let fallback = batch_epoch(batch);
    let mut plan = CommitPlan::default();
    let mut per_sku: BTreeMap<&str, Vec<Write>> = BTreeMap::new();
    let outcomes: BTreeMap<(&str, u64), &str> = batch
        .outcomes
        .iter()
        .map(|o| ((o.sku.as_str(), o.seq), o.outcome_json.as_str()))
        .collect();
    let mut first_seq: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (index, event) in batch.events.iter().enumerate() {
        let seq = to_bigint(event.seq, "seq")?;
        let epoch = sku_epoch(batch, &event.sku, fallback)?;
        let cursor = cursors[index];
        let outcome = outcomes.get(&(event.sku.as_str(), event.seq)).copied();
        let writes = per_sku.entry(event.sku.as_str()).or_default();
        writes.push(Write {
            stmt: Stmt::InsertEvent,
            values: vec![
                text(&event.sku),
                big(seq),
                big(epoch),
                text(writer),
                text(&event.idempotency_key),
                big(event.key_expires_at_ms),
                big(event.recorded_at_ms),
                blob(&event.movement),
                opt_text(outcome),
                big(cursor as i64),
            ],
        });
        writes.push(Write {
            stmt: Stmt::InsertKey,
            values: vec![
                text(&event.sku),
                text(&event.idempotency_key),
                big(seq),
                big(epoch),
                big(event.key_expires_at_ms),
                event
                    .movement_hash
                    .map_or(MaybeUnset::Unset, |hash| big(hash as i64)),
                int(ttl_secs(event.key_expires_at_ms, event.recorded_at_ms)),
            ],
        });
        let range = first_seq
            .entry(event.sku.as_str())
            .or_insert((event.seq, event.seq));
        range.0 = range.0.min(event.seq);
        range.1 = range.1.max(event.seq);
        if event.seq == 1 {
            plan.before.push(Write {
                stmt: Stmt::InsertSku,
                values: vec![int(sku_bucket(&event.sku)), text(&event.sku)],
            });
        }
        plan.after
            .extend(history_writes(event, epoch, writer, outcome, cursor)?);
    }
    let in_batch: BTreeSet<(&str, u64)> = batch
        .events
        .iter()
        .map(|e| (e.sku.as_str(), e.seq))
        .collect();
    for outcome in &batch.outcomes {
        if in_batch.contains(&(outcome.sku.as_str(), outcome.seq)) {
            continue;
        }
        // An outcome of an event written earlier: set on its row where it still is.
        let seq = to_bigint(outcome.seq, "seq")?;
        let epoch = sku_epoch(batch, &outcome.sku, fallback)?;
        per_sku
            .entry(outcome.sku.as_str())
            .or_default()
            .push(Write {
                stmt: Stmt::SetOutcome,
                values: vec![
                    text(&outcome.outcome_json),
                    text(&outcome.sku),
                    big(seq),
                    big(epoch),
                ],
            });
        plan.after.push(Write {
            stmt: Stmt::SetSkuHistoryOutcome,
            values: vec![
                text(&outcome.outcome_json),
                text(&outcome.sku),
                big(history_bucket(outcome.seq)),
                big(seq),
                big(epoch),
            ],
        });
    }
    let mut tails: BTreeMap<&str, Vec<Write>> = BTreeMap::new();
    for snapshot in &batch.snapshots {
        let seq = to_bigint(snapshot.seq, "seq")?;
        let epoch = sku_epoch(batch, &snapshot.sku, fallback)?;
        let floor = to_bigint(
            snapshot.seq.saturating_sub(RETAINED_EVENTS_BELOW_SNAPSHOT),
            "seq",
        )?;
        let tail = tails.entry(snapshot.sku.as_str()).or_default();
        tail.push(Write {
            stmt: Stmt::InsertSnapshot,
            values: vec![
                text(&snapshot.sku),
                big(seq),
                big(epoch),
                text(writer),
                blob(&snapshot.state),
            ],
        });
        if floor > 1 {
            for stmt in [Stmt::PruneEvents, Stmt::PruneSnapshots] {
                tail.push(Write {
                    stmt,
                    values: vec![text(&snapshot.sku), big(floor)],
                });
            }
        }
    }
    for (sku, (from, to)) in &first_seq {
        tails.entry(sku).or_default().push(Write {
            stmt: Stmt::SetMarker,
            values: vec![
                text(sku),
                big(to_bigint(*from, "seq")?),
                big(to_bigint(*to, "seq")?),
            ],
        });
    }
    for (sku, tail) in tails {
        per_sku.entry(sku).or_default().extend(tail);
    }
    plan.partitions = per_sku
        .into_iter()
        .map(|(sku, writes)| (sku.to_owned(), chunk_partition(writes)))
        .collect();
    plan_extras(batch, cursors, now_micros, &mut plan)?;
    Ok(plan)
}

/// Splits one SKU's writes into batches of at most [`MAX_BATCH_STATEMENTS`] statements
/// and about [`MAX_BATCH_BYTES`], never between an event and its key (which follow each
/// other), so every batch that becomes visible shows each movement with its key.
pub fn chunk_partition(writes: Vec<Write>) -> Vec<Vec<Write>> {
    let mut chunks: Vec<Vec<Write>> = Vec::new();
    let mut current: Vec<Write> = Vec::new();
    let mut bytes = 0;
    let mut writes = writes.into_iter().peekable();
    while let Some(write) = writes.next() {
        let mut unit = vec![write];
        if unit[0].stmt == Stmt::InsertEvent
            && writes
                .peek()
                .is_some_and(|next| next.stmt == Stmt::InsertKey)
        {
            unit.extend(writes.next());
        }
        let unit_bytes: usize = unit.iter().map(estimated_bytes).sum();
        let full = !current.is_empty()
            && (current.len() + unit.len() > MAX_BATCH_STATEMENTS
                || bytes + unit_bytes > MAX_BATCH_BYTES);
        if full {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += unit_bytes;
        current.extend(unit);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The partition a write goes to, for the statements written in numbers (history rows);
/// `None` for the others (each is written on its own).
fn partition_of(write: &Write) -> Option<String> {
    let key = |count: usize| format!("{:?}{:?}", write.stmt, &write.values[..count]);
    match write.stmt {
        Stmt::InsertSkuHistory => Some(key(2)),
        Stmt::InsertHistory => Some(key(1)),
        _ => None,
    }
}

/// Groups writes that go to the same partition (history rows of one SKU bucket, or of one
/// hour), in their order, so each group can be written as single-partition batches
/// instead of one request per row; other writes stay alone.
pub fn group_by_partition(writes: Vec<Write>) -> Vec<Vec<Write>> {
    let mut groups: Vec<Vec<Write>> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for write in writes {
        match partition_of(&write) {
            Some(partition) => match index.get(&partition) {
                Some(&at) => groups[at].push(write),
                None => {
                    index.insert(partition, groups.len());
                    groups.push(vec![write]);
                }
            },
            None => groups.push(vec![write]),
        }
    }
    groups
}

/// The history rows of one event: its `sku_history` row and its global `history` row.
fn history_writes(
    event: &EventRecord,
    epoch: i64,
    writer: &str,
    outcome: Option<&str>,
    cursor: u64,
) -> Result<[Write; 2], StoreError> {
    let seq = to_bigint(event.seq, "seq")?;
    Ok([
        Write {
            stmt: Stmt::InsertSkuHistory,
            values: vec![
                text(&event.sku),
                big(history_bucket(event.seq)),
                big(seq),
                big(epoch),
                text(writer),
                text(&event.idempotency_key),
                big(event.key_expires_at_ms),
                big(event.recorded_at_ms),
                blob(&event.movement),
                opt_text(outcome),
                big(cursor as i64),
            ],
        },
        Write {
            stmt: Stmt::InsertHistory,
            values: vec![
                big(hour_of_cursor(cursor)),
                big(cursor as i64),
                text(&event.sku),
                big(seq),
                big(epoch),
                text(&event.idempotency_key),
                big(event.key_expires_at_ms),
                big(event.recorded_at_ms),
                blob(&event.movement),
                opt_text(outcome),
            ],
        },
    ])
}

/// The cross-partition rows besides history (see [`CommitPlan`] for before/after).
fn plan_extras(
    batch: &CommitBatch,
    cursors: &[u64],
    now_micros: i64,
    plan: &mut CommitPlan,
) -> Result<(), StoreError> {
    let hours: BTreeSet<i64> = cursors.iter().map(|c| hour_of_cursor(*c)).collect();
    for hour in hours {
        plan.after.push(Write {
            stmt: Stmt::InsertHistoryHour,
            values: vec![big(hour)],
        });
    }
    // The last change per SKU wins; an upsert goes before the events (a wake-up for a SKU
    // without the hold is harmless), a deletion after them (never lose a live hold's row).
    let mut last: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for record in &batch.hold_expiries {
        last.insert(record.sku.as_str(), record.next_expiry_ms);
    }
    for (sku, expiry) in last {
        let key = vec![int(sku_bucket(sku)), text(sku)];
        match expiry {
            Some(at_ms) => plan.before.push(Write {
                stmt: Stmt::UpsertHoldExpiry,
                values: [key, vec![big(at_ms)]].concat(),
            }),
            None => plan.after.push(Write {
                stmt: Stmt::DeleteHoldExpiry,
                values: key,
            }),
        }
    }
    for (position, record) in batch.reservations.iter().enumerate() {
        plan.before.push(Write {
            stmt: Stmt::SetReservationRequest,
            values: vec![
                big(first_write_wins_timestamp(now_micros, position)),
                text(&record.request_json),
                big(record.created_at_ms),
                text(&record.id),
            ],
        });
        if let Some(refusal) = &record.refusal_json {
            plan.before.push(Write {
                stmt: Stmt::SetReservationRefusal,
                values: vec![text(refusal), text(&record.id)],
            });
        }
    }
    for offset in &batch.offsets {
        plan.after.push(Write {
            stmt: Stmt::UpsertOffset,
            values: vec![
                text(&offset.group),
                text(&offset.topic),
                int(offset.partition),
                big(offset.next_offset),
                // The write timestamp is the offset: the highest offset wins whatever
                // order the writes arrive in (offsets only move forward).
                big(offset.next_offset.max(0)),
            ],
        });
    }
    for letter in &batch.dead_letters {
        plan.after.push(Write {
            stmt: Stmt::InsertDeadLetter,
            values: vec![
                big(letter.expired_at_ms),
                text(&letter.sku),
                big(to_bigint(letter.parked_seq, "seq")?),
                big(to_bigint(letter.expired_seq, "seq")?),
                text(&letter.idempotency_key),
                text(&letter.source),
                text(&letter.kind),
                text(&letter.movement_json),
                text(&letter.reason),
                big(letter.parked_at_ms),
                big(letter.keep_until_ms),
                int(ttl_secs(letter.keep_until_ms, letter.expired_at_ms)),
            ],
        });
    }
    Ok(())
}

/// A write timestamp that makes the first write of a cell win over later ones
/// (ScyllaDB keeps the cell with the highest timestamp): a constant far above wall-clock
/// microseconds, minus the time of the write (`now_micros`, plus the record's position in
/// its batch). Used for a reservation's request, which a later write with the same id must
/// keep (the `Store` contract) without a lightweight transaction.
pub fn first_write_wins_timestamp(now_micros: i64, position: usize) -> i64 {
    let position = i64::try_from(position).unwrap_or(i64::MAX);
    (1_i64 << 62)
        - now_micros
            .clamp(0, 1 << 60)
            .saturating_add(position.min(1 << 30))
}

/// Something with a seq and an epoch that the replay filter orders.
pub trait Fenced {
    /// The row's seq.
    fn seq(&self) -> u64;
    /// The epoch it was written under.
    fn epoch(&self) -> u64;
}

/// The fenced replay filter (after Akka Persistence Cassandra's): of rows of one SKU in
/// any order, keeps per seq the row of the highest epoch, then, walking up by seq, drops
/// every row whose epoch is lower than one already kept (a zombie writer's late row after
/// the new owner's), and stops at the first gap in seq (rows beyond it are unreachable).
/// The result is ascending by seq.
pub fn replay_filter<T: Fenced>(mut rows: Vec<T>) -> Vec<T> {
    rows.sort_by(|a, b| a.seq().cmp(&b.seq()).then(b.epoch().cmp(&a.epoch())));
    let mut kept: Vec<T> = Vec::with_capacity(rows.len());
    let mut highest = 0;
    for row in rows {
        if let Some(previous) = kept.last() {
            if previous.seq() == row.seq() {
                continue;
            }
            if row.seq() != previous.seq() + 1 {
                break;
            }
        }
        if row.epoch() < highest {
            break;
        }
        highest = row.epoch();
        kept.push(row);
    }
    kept
}

/// One row of `sku_log` as read by `SELECT` [`Stmt::SelectLog`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRow {
    /// [`kind`] of the row.
    pub kind: i32,
    /// The key for key rows, else empty.
    pub name: String,
    /// The seq.
    pub seq: u64,
    /// The writer's epoch.
    pub epoch: u64,
    /// The writing instance.
    pub writer: Option<String>,
    /// Event rows: the key.
    pub idempotency_key: Option<String>,
    /// Event and key rows: the key's expiry.
    pub key_expires_at_ms: Option<i64>,
    /// Event rows: the recording time.
    pub recorded_at_ms: Option<i64>,
    /// Event rows: the movement; snapshot rows: the state.
    pub body: Option<Vec<u8>>,
    /// Key rows: the movement hash.
    pub movement_hash: Option<u64>,
    /// Event rows: the outcome.
    pub outcome: Option<String>,
    /// Marker row: first seq of the SKU's last batch.
    pub history_from: Option<u64>,
    /// Marker row: last seq of the SKU's last batch.
    pub history_to: Option<u64>,
    /// Event rows: the history cursor.
    pub cursor: Option<u64>,
}

impl Fenced for LogRow {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Fenced for EventWithEpoch {
    fn seq(&self) -> u64 {
        self.event.seq
    }
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// An event with the epoch it was written under and its stored outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventWithEpoch {
    /// The event (`movement_hash` is `None`, as the `Store` contract reads it back).
    pub event: EventRecord,
    /// The writer's epoch.
    pub epoch: u64,
    /// The stored outcome, if any.
    pub outcome: Option<String>,
    /// The history cursor it was written with.
    pub cursor: u64,
}

impl EventWithEpoch {
    /// The event's row in the global history.
    pub fn into_history(self) -> HistoryEvent {
        HistoryEvent {
            cursor: self.cursor,
            event: self.event,
            outcome: self.outcome,
        }
    }
}

/// A SKU as read from its partition: what `load_sku` returns plus the history marker.
#[derive(Clone, Debug, Default)]
pub struct AssembledSku {
    /// Snapshot, later events and (in `keys`) unexpired keys.
    pub loaded: LoadedSku,
    /// Unexpired keys with their expiry.
    pub keys: Vec<IdempotencyKeyRecord>,
    /// Every retained event that survived the replay filter, ascending.
    pub retained: Vec<EventWithEpoch>,
    /// The seq range of the SKU's last batch (its history rows may be missing).
    pub marker: Option<(u64, u64)>,
}

/// Converts a retained event row.
fn event_of(sku: &str, row: &LogRow) -> Option<EventWithEpoch> {
    Some(EventWithEpoch {
        event: EventRecord {
            sku: sku.to_owned(),
            seq: row.seq,
            idempotency_key: row.idempotency_key.clone()?,
            key_expires_at_ms: row.key_expires_at_ms.unwrap_or(0),
            recorded_at_ms: row.recorded_at_ms.unwrap_or(0),
            movement: row.body.clone()?,
            movement_hash: None,
        },
        epoch: row.epoch,
        outcome: row.outcome.clone(),
        cursor: row.cursor.unwrap_or(0),
    })
}

/// Builds a SKU's state from all rows of its partition: events through the replay filter,
/// the newest snapshot consistent with them, the keys of kept (or pruned) events that are
/// unexpired at `now_ms`, and the history marker.
pub fn assemble_load(sku: &str, rows: &[LogRow], now_ms: i64) -> AssembledSku {
    // Rows with only an outcome (set on an event row already pruned) carry no body.
    let events: Vec<EventWithEpoch> = rows
        .iter()
        .filter(|row| row.kind == kind::EVENT)
        .filter_map(|row| event_of(sku, row))
        .collect();
    let retained = replay_filter(events);
    let epoch_at: BTreeMap<u64, u64> = retained
        .iter()
        .map(|event| (event.event.seq, event.epoch))
        .collect();
    let first_retained = retained.first().map(|e| e.event.seq);
    let last_retained = retained.last().map_or(0, |e| e.event.seq);
    // A snapshot is consistent with the kept events unless one of them at or below its
    // seq was written under a newer epoch (then the snapshot is a zombie's, built on
    // events the filter dropped). Kept epochs never decrease with seq.
    let consistent = |seq: u64, epoch: u64| {
        epoch_at
            .range(..=seq)
            .next_back()
            .is_none_or(|(_, kept)| *kept <= epoch)
    };
    let snapshot = rows
        .iter()
        .filter(|row| row.kind == kind::SNAPSHOT && row.body.is_some())
        .filter(|row| consistent(row.seq, row.epoch))
        .max_by_key(|row| (row.seq, row.epoch))
        .map(|row| SnapshotRecord {
            sku: sku.to_owned(),
            seq: row.seq,
            state: row.body.clone().unwrap_or_default(),
        });
    let after = snapshot.as_ref().map_or(0, |s| s.seq);
    let events_after = retained
        .iter()
        .filter(|e| e.event.seq > after)
        .map(|e| e.event.clone())
        .collect();
    let mut keys: Vec<IdempotencyKeyRecord> = rows
        .iter()
        .filter(|row| row.kind == kind::KEY)
        .filter(|row| row.key_expires_at_ms.is_some_and(|at| at > now_ms))
        .filter(|row| match epoch_at.get(&row.seq) {
            Some(kept) => *kept == row.epoch,
            None => first_retained.is_some_and(|first| row.seq < first),
        })
        .filter(|row| row.seq <= last_retained)
        .map(|row| IdempotencyKeyRecord {
            key: row.name.clone(),
            seq: row.seq,
            expires_at_ms: row.key_expires_at_ms.unwrap_or(i64::MAX),
        })
        .collect();
    keys.sort_by_key(|key| key.seq);
    let marker = rows
        .iter()
        .find(|row| row.kind == kind::MARKER)
        .and_then(|row| Some((row.history_from?, row.history_to?)));
    AssembledSku {
        loaded: LoadedSku {
            snapshot,
            events_after,
            idempotency_keys: keys.iter().map(|k| (k.key.clone(), k.seq)).collect(),
        },
        keys,
        retained,
        marker,
    }
}

/// The history rows to write again after a crash: the events of the marker's range that
/// are retained but missing from `sku_history` (`present` holds the seqs found there).
/// Writing them is idempotent (same keys and cursors).
pub fn plan_history_repair(
    assembled: &AssembledSku,
    present: &BTreeSet<u64>,
) -> Result<Vec<Write>, StoreError> {
    let Some((from, to)) = assembled.marker else {
        return Ok(Vec::new());
    };
    let mut writes = Vec::new();
    for event in &assembled.retained {
        let seq = event.event.seq;
        if seq < from || seq > to || present.contains(&seq) {
            continue;
        }
        let epoch = to_bigint(event.epoch, "epoch")?;
        let [per_sku, global] = history_writes(
            &event.event,
            epoch,
            "repair",
            event.outcome.as_deref(),
            event.cursor,
        )?;
        writes.push(per_sku);
        writes.push(global);
        writes.push(Write {
            stmt: Stmt::InsertHistoryHour,
            values: vec![big(hour_of_cursor(event.cursor))],
        });
    }
    Ok(writes)
}

/// The cursor range `(after, before)` (both exclusive) of a history query.
pub fn cursor_range(from_ms: Option<i64>, to_ms: Option<i64>, after: Option<u64>) -> (i64, i64) {
    let from = from_ms.map_or(-1, |ms| {
        ((ms.clamp(0, CURSOR_MAX_MS) as u64) << CURSOR_LOW_BITS) as i64 - 1
    });
    let after = after.map_or(-1, |cursor| cursor.min(i64::MAX as u64) as i64);
    // A cursor carries its batch's time, which may be later than an event's own
    // `recorded_at_ms` (the newest of the batch, or one past the previous batch): the
    // upper bound leaves an hour of slack and rows are filtered by their time exactly.
    let before = to_ms.map_or(i64::MAX, |ms| {
        let ms = ms.saturating_add(HOUR_MS);
        if ms <= 0 {
            0
        } else {
            ((ms.min(CURSOR_MAX_MS) as u64) << CURSOR_LOW_BITS) as i64
        }
    });
    (from.max(after), before)
}

/// The next retry of a failed request: whether to try again on the next replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Try the next replica.
    NextTarget,
    /// Give up and return the error.
    GiveUp,
}

/// How a request attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The coordinator had too few live replicas: nothing was written.
    Unavailable,
    /// Replicas did not answer in time; a write may have been applied.
    Timeout,
    /// The node was overloaded, bootstrapping, or the connection broke.
    Transient,
    /// Anything else (syntax, invalid, unauthorized, ...): retrying cannot help.
    Permanent,
}

/// The retry policy: up to `max_retries` retries on the next replica, for idempotent
/// requests (every statement of this backend except the lightweight transactions), or for
/// any request when the coordinator refused it as unavailable (nothing was applied).
/// Serial (LWT) requests are never retried here: `acquire_epoch` re-reads and loops.
pub fn retry_decision(
    retries_done: u32,
    max_retries: u32,
    idempotent: bool,
    serial: bool,
    failure: Failure,
) -> Retry {
    if retries_done >= max_retries || serial {
        return Retry::GiveUp;
    }
    match failure {
        Failure::Unavailable => Retry::NextTarget,
        Failure::Timeout | Failure::Transient if idempotent => Retry::NextTarget,
        _ => Retry::GiveUp,
    }
}

/// The writes of one order line (see [`crate::store::Store::record_order_lines`]): the
/// SKU, and the version and last-seen time each with the write timestamp set to its value
/// in microseconds, so the highest one wins whatever order writes arrive in (the embedded
/// store's `MAX`); all with a TTL of the retention (`seen_at_ms − forget_before_ms`).
pub fn order_line_writes(
    record: &crate::store::OrderLineRecord,
    forget_before_ms: i64,
) -> Vec<Write> {
    let ttl = int(ttl_secs(
        record
            .seen_at_ms
            .saturating_mul(2)
            .saturating_sub(forget_before_ms),
        record.seen_at_ms,
    ));
    let key = [
        text(&record.channel),
        text(&record.order_id),
        text(&record.line_id),
    ];
    let micros = |ms: i64| big(ms.clamp(0, i64::MAX / 1_000) * 1_000);
    vec![
        Write {
            stmt: Stmt::SetOrderLineSku,
            values: [vec![ttl.clone(), text(&record.sku)], key.to_vec()].concat(),
        },
        Write {
            stmt: Stmt::SetOrderLineVersion,
            values: [
                vec![ttl.clone(), micros(record.version), big(record.version)],
                key.to_vec(),
            ]
            .concat(),
        },
        Write {
            stmt: Stmt::SetOrderLineSeen,
            values: [
                vec![ttl, micros(record.seen_at_ms), big(record.seen_at_ms)],
                key.to_vec(),
            ]
            .concat(),
        },
    ]
}

/// A row of [`Stmt::SelectDeadLetters`].
pub type DeadLetterTuple = (
    i64,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// Converts a dead-letter row.
pub fn dead_letter_of(row: DeadLetterTuple) -> crate::store::DeadLetterRecord {
    let (
        expired_at_ms,
        sku,
        parked_seq,
        expired_seq,
        key,
        source,
        kind,
        movement,
        reason,
        parked,
        keep,
    ) = row;
    crate::store::DeadLetterRecord {
        sku,
        parked_seq: parked_seq.max(0) as u64,
        expired_seq: expired_seq.unwrap_or(0).max(0) as u64,
        idempotency_key: key.unwrap_or_default(),
        source: source.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        movement_json: movement.unwrap_or_default(),
        reason: reason.unwrap_or_default(),
        parked_at_ms: parked.unwrap_or(0),
        expired_at_ms,
        keep_until_ms: keep.unwrap_or(0),
    }
}

/// An `ownership` row as [`Stmt::SelectLease`] reads it: epoch, owner, expires_at_ms,
/// payload (lease columns are null on a row written before leases).
pub type OwnershipTuple = (Option<i64>, Option<String>, Option<i64>, Option<String>);

/// The scope's row as read for a lease decision: the lease (a null `expires_at_ms` reads as
/// 0, expired) and the stored `expires_at_ms` itself, which the compare-and-set must
/// expect exactly (null included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLease {
    /// The row as a lease.
    pub lease: Lease,
    /// `expires_at_ms` as stored.
    pub stored_expires_at_ms: Option<i64>,
}

/// Converts an `ownership` row of `scope`; `None` when it has no epoch (no row).
pub fn stored_lease_of(scope: &str, row: OwnershipTuple) -> Option<StoredLease> {
    let (epoch, owner, expires_at_ms, payload) = row;
    Some(StoredLease {
        lease: Lease {
            scope: scope.to_owned(),
            owner: owner.unwrap_or_default(),
            epoch: epoch?.max(0) as u64,
            expires_at_ms: expires_at_ms.unwrap_or(0),
            payload: payload.unwrap_or_default(),
        },
        stored_expires_at_ms: expires_at_ms,
    })
}

/// The lightweight transaction that carries out a lease decision ([`lease::decide`] on
/// `stored`'s lease); `None` for [`LeaseDecision::Held`] (nothing to write). The condition
/// expects the row exactly as read (epoch, owner and expiry; a row without an expiry
/// with [`Stmt::UpdateUnleased`]), so a concurrent change makes it not apply and the
/// backend reads again.
///
/// Errors: [`StoreError::Backend`] for an epoch above `i64::MAX`.
pub fn lease_write(
    decision: &LeaseDecision,
    stored: Option<&StoredLease>,
) -> Result<Option<Write>, StoreError> {
    let epoch = |value: u64| to_bigint(value, "epoch").map(big);
    match decision {
        LeaseDecision::Held(_) => Ok(None),
        LeaseDecision::Insert(to) => Ok(Some(Write {
            stmt: Stmt::InsertLease,
            values: vec![
                text(&to.scope),
                epoch(to.epoch)?,
                text(&to.owner),
                big(to.expires_at_ms),
                text(&to.payload),
            ],
        })),
        LeaseDecision::Replace { from, to } => {
            let mut values = vec![
                epoch(to.epoch)?,
                text(&to.owner),
                big(to.expires_at_ms),
                text(&to.payload),
                text(&to.scope),
                epoch(from.epoch)?,
                text(&from.owner),
            ];
            let stmt = match stored.and_then(|stored| stored.stored_expires_at_ms) {
                Some(expires) => {
                    values.push(big(expires));
                    Stmt::UpdateLease
                }
                None => Stmt::UpdateUnleased,
            };
            Ok(Some(Write { stmt, values }))
        }
    }
}

/// The lightweight transaction of [`crate::store::Store::release_lease`]; `None` for an
/// epoch no row can have (above `i64::MAX`).
pub fn release_write(scope: &str, owner: &str, epoch: u64) -> Option<Write> {
    let epoch = i64::try_from(epoch).ok()?;
    Some(Write {
        stmt: Stmt::ReleaseLease,
        values: vec![text(scope), text(owner), big(epoch)],
    })
}

/// The lightweight transaction of [`crate::store::Store::acquire_epoch`] for the scope's
/// epoch as read (`None`: no row) and the epoch it sets when it applies: insert epoch 1,
/// or raise the epoch read by one; either way `owner` holds the scope until
/// [`lease::ACQUIRED_EXPIRES_AT_MS`] and the payload is cleared.
///
/// Errors: [`StoreError::Backend`] when the epoch cannot grow.
pub fn acquire_write(
    scope: &str,
    owner: &str,
    current: Option<u64>,
) -> Result<(Write, u64), StoreError> {
    let expires = big(lease::ACQUIRED_EXPIRES_AT_MS);
    let Some(epoch) = current else {
        return Ok((
            Write {
                stmt: Stmt::InsertOwnership,
                values: vec![text(scope), text(owner), expires],
            },
            1,
        ));
    };
    let next = epoch.checked_add(1).ok_or_else(|| StoreError::Backend {
        operation: "acquire_epoch",
        message: format!("{scope}: the epoch {epoch} cannot grow"),
    })?;
    Ok((
        Write {
            stmt: Stmt::UpdateOwnership,
            values: vec![
                big(to_bigint(next, "epoch")?),
                text(owner),
                expires,
                text(scope),
                big(to_bigint(epoch, "epoch")?),
            ],
        },
        next,
    ))
}

/// The values of [`Stmt::SelectOwnershipScopes`]: scopes from `from` (inclusive), at most
/// `limit`.
pub fn scope_page_values(from: &str, limit: usize) -> Values {
    vec![
        text(from),
        int(i32::try_from(limit).unwrap_or(i32::MAX).max(1)),
    ]
}

/// Of `scopes`, read from the index in ascending order from `prefix` on with at most
/// `asked` rows, those that start with `prefix`, and whether the index has no more of them
/// (a scope past the prefix was read, or fewer rows than asked came back).
pub fn scopes_with_prefix(scopes: Vec<String>, prefix: &str, asked: usize) -> (Vec<String>, bool) {
    let read = scopes.len();
    let matching: Vec<String> = scopes
        .into_iter()
        .take_while(|scope| scope.starts_with(prefix))
        .collect();
    let done = matching.len() < read || read < asked;
    (matching, done)
}

/// The first scope after `scope` in the index's order (text sorts by its UTF-8 bytes, and
/// no string lies between `scope` and `scope` followed by U+0000).
pub fn scope_after(scope: &str) -> String {
    format!("{scope}\u{0}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        DeadLetterRecord, EventOutcomeRecord, Fence, HoldExpiryRecord, OffsetWatermark,
        ReservationRecord,
    };
    use proptest::prelude::*;

    /// A wall-clock time in microseconds (2025-12-01).
    const NOW_MICROS: i64 = 1_764_547_200_000_000;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Row(u64, u64);
    impl Fenced for Row {
        fn seq(&self) -> u64 {
            self.0
        }
        fn epoch(&self) -> u64 {
            self.1
        }
    }
    fn rows(pairs: &[(u64, u64)]) -> Vec<Row> {
        pairs.iter().map(|(s, e)| Row(*s, *e)).collect()
    }

    #[test]
    fn the_replay_filter_keeps_an_unfenced_log_as_it_is_in_seq_order() {
        let kept = replay_filter(rows(&[(3, 0), (1, 0), (2, 0)]));
        assert_eq!(kept, rows(&[(1, 0), (2, 0), (3, 0)]));
        assert!(replay_filter(Vec::<Row>::new()).is_empty());
    }

    #[test]
    fn the_replay_filter_keeps_the_highest_epoch_row_of_each_seq() {
        // The new owner (epoch 2) rewrote seqs 4 and 5 after the zombie (epoch 1) wrote them.
        let kept = replay_filter(rows(&[
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 1),
            (4, 2),
            (5, 1),
            (5, 2),
        ]));
        assert_eq!(kept, rows(&[(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]));
    }

    #[test]
    fn the_replay_filter_drops_a_lower_epoch_row_after_a_higher_one_and_all_after_it() {
        // The zombie's late rows 6 and 7 come after the new owner's seq 5.
        let kept = replay_filter(rows(&[(4, 2), (5, 2), (6, 1), (7, 1)]));
        assert_eq!(kept, rows(&[(4, 2), (5, 2)]));
        // Even when the new owner continues after them, a lower epoch in between ends the log.
        let kept = replay_filter(rows(&[(1, 3), (2, 2), (3, 3)]));
        assert_eq!(kept, rows(&[(1, 3)]));
    }

    #[test]
    fn the_replay_filter_stops_at_a_gap_but_may_start_anywhere() {
        let kept = replay_filter(rows(&[(10, 0), (11, 0), (13, 0)]));
        assert_eq!(kept, rows(&[(10, 0), (11, 0)]));
    }

    proptest! {
        #[test]
        fn the_replay_filter_output_is_contiguous_monotone_and_maximal(
            pairs in proptest::collection::vec((1u64..40, 0u64..4), 0..80)
        ) {
            let input = rows(&pairs);
            let kept = replay_filter(input.clone());
            for pair in kept.windows(2) {
                prop_assert_eq!(pair[1].0, pair[0].0 + 1);
                prop_assert!(pair[1].1 >= pair[0].1);
            }
            for row in &kept {
                let highest = input.iter().filter(|r| r.0 == row.0).map(|r| r.1).max();
                prop_assert_eq!(Some(row.1), highest);
            }
            if let Some(lowest) = input.iter().map(|r| r.0).min() {
                prop_assert_eq!(kept.first().map(|r| r.0), Some(lowest));
            }
        }
    }

    fn event(sku: &str, seq: u64, recorded_at_ms: i64) -> EventRecord {
        EventRecord {
            sku: sku.into(),
            seq,
            idempotency_key: format!("{sku}:{seq}"),
            key_expires_at_ms: recorded_at_ms + 7 * 86_400_000,
            recorded_at_ms,
            movement: vec![1, 2, 3],
            movement_hash: Some(u64::MAX - seq),
        }
    }

    fn log_event(seq: u64, epoch: u64) -> LogRow {
        LogRow {
            kind: kind::EVENT,
            seq,
            epoch,
            idempotency_key: Some(format!("k{seq}@{epoch}")),
            key_expires_at_ms: Some(1_000),
            recorded_at_ms: Some(seq as i64),
            body: Some(vec![seq as u8]),
            cursor: Some(history_cursor(5_000 + seq as i64, 0)),
            ..LogRow::default()
        }
    }
    fn log_key(seq: u64, epoch: u64, expires: i64) -> LogRow {
        LogRow {
            kind: kind::KEY,
            name: format!("k{seq}@{epoch}"),
            seq,
            epoch,
            key_expires_at_ms: Some(expires),
            ..LogRow::default()
        }
    }
    fn log_snapshot(seq: u64, epoch: u64) -> LogRow {
        LogRow {
            kind: kind::SNAPSHOT,
            seq,
            epoch,
            body: Some(vec![(seq % 100) as u8 + 100]),
            ..LogRow::default()
        }
    }

    #[test]
    fn loading_a_partition_picks_the_newest_snapshot_and_the_events_after_it() {
        let partition = vec![
            log_snapshot(2, 0),
            log_snapshot(3, 0),
            log_event(2, 0),
            log_event(3, 0),
            log_event(4, 0),
            log_key(2, 0, 1_000),
            log_key(3, 0, 1_000),
            log_key(4, 0, 10),
            LogRow {
                kind: kind::MARKER,
                history_from: Some(3),
                history_to: Some(4),
                ..LogRow::default()
            },
        ];
        let loaded = assemble_load("A", &partition, 500);
        assert_eq!(loaded.loaded.snapshot.as_ref().map(|s| s.seq), Some(3));
        let after: Vec<u64> = loaded.loaded.events_after.iter().map(|e| e.seq).collect();
        assert_eq!(after, vec![4]);
        assert_eq!(loaded.loaded.events_after[0].sku, "A");
        // seq 4's key expired at 10; seq 2's event is retained, seq 3's too.
        assert_eq!(
            loaded.loaded.idempotency_keys,
            vec![("k2@0".to_owned(), 2), ("k3@0".to_owned(), 3)]
        );
        assert_eq!(loaded.keys[0].expires_at_ms, 1_000);
        assert_eq!(loaded.marker, Some((3, 4)));
        assert_eq!(loaded.retained.len(), 3);
    }

    #[test]
    fn a_zombie_s_snapshot_keys_and_late_events_are_ignored_at_load() {
        // Old owner (epoch 1) wrote 1..=3 and a snapshot at 2; the new owner (epoch 2) took
        // over and wrote 3 and 4 again; the zombie still wrote 4 and 5, a snapshot at 4
        // and the keys of its events.
        let partition = vec![
            log_snapshot(2, 1),
            log_snapshot(4, 1),
            log_event(1, 1),
            log_event(2, 1),
            log_event(3, 1),
            log_event(3, 2),
            log_event(4, 2),
            log_event(4, 1),
            log_event(5, 1),
            log_key(1, 1, 1_000),
            log_key(3, 1, 1_000),
            log_key(3, 2, 1_000),
            log_key(4, 2, 1_000),
            log_key(5, 1, 1_000),
        ];
        let loaded = assemble_load("A", &partition, 0);
        assert_eq!(loaded.loaded.snapshot.as_ref().map(|s| s.seq), Some(2));
        let after: Vec<(u64, Vec<u8>)> = loaded
            .loaded
            .events_after
            .iter()
            .map(|e| (e.seq, e.movement.clone()))
            .collect();
        assert_eq!(after, vec![(3, vec![3]), (4, vec![4])]);
        assert_eq!(
            loaded.retained.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            vec![1, 1, 2, 2]
        );
        let keys: Vec<&str> = loaded.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, vec!["k1@1", "k3@2", "k4@2"]);
    }

    #[test]
    fn keys_of_pruned_events_stay_and_outcome_only_rows_are_no_events() {
        let partition = vec![
            log_snapshot(1_500, 0),
            log_event(600, 0),
            log_event(601, 0),
            LogRow {
                kind: kind::EVENT,
                seq: 10,
                outcome: Some("{}".into()),
                ..LogRow::default()
            },
            log_key(5, 0, 1_000),
            log_key(700, 0, 1_000),
        ];
        let loaded = assemble_load("A", &partition, 0);
        // Key 5's event was pruned (below the first retained, 600): still remembered.
        // Key 700 points past the retained log (a gap): not.
        assert_eq!(
            loaded.keys.iter().map(|k| k.seq).collect::<Vec<_>>(),
            vec![5]
        );
        assert_eq!(loaded.retained.first().map(|e| e.event.seq), Some(600));
        assert_eq!(loaded.loaded.snapshot.map(|s| s.seq), Some(1_500));
        assert!(loaded.loaded.events_after.is_empty());
    }

    fn batch_of(events: Vec<EventRecord>) -> CommitBatch {
        CommitBatch {
            events,
            ..CommitBatch::default()
        }
    }

    fn all_writes(plan: &CommitPlan) -> Vec<&Write> {
        plan.before
            .iter()
            .chain(plan.partitions.iter().flat_map(|(_, c)| c.iter().flatten()))
            .chain(plan.after.iter())
            .collect()
    }

    fn text_at(write: &Write, index: usize) -> String {
        match &write.values[index] {
            MaybeUnset::Set(CqlValue::Text(text)) => text.clone(),
            other => panic!("{other:?} is no text"),
        }
    }
    fn big_at(write: &Write, index: usize) -> i64 {
        match &write.values[index] {
            MaybeUnset::Set(CqlValue::BigInt(value)) => *value,
            other => panic!("{other:?} is no bigint"),
        }
    }

    fn full_batch() -> CommitBatch {
        CommitBatch {
            events: vec![event("A", 1, 10), event("B", 7, 20), event("A", 2, 30)],
            snapshots: vec![SnapshotRecord {
                sku: "A".into(),
                seq: 2,
                state: vec![9],
            }],
            offsets: vec![OffsetWatermark {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                next_offset: 44,
            }],
            hold_expiries: vec![
                HoldExpiryRecord {
                    sku: "A".into(),
                    next_expiry_ms: Some(5),
                },
                HoldExpiryRecord {
                    sku: "B".into(),
                    next_expiry_ms: Some(6),
                },
                HoldExpiryRecord {
                    sku: "B".into(),
                    next_expiry_ms: None,
                },
            ],
            reservations: vec![ReservationRecord {
                id: "r1".into(),
                request_json: "{}".into(),
                refusal_json: Some("[]".into()),
                created_at_ms: 3,
            }],
            dead_letters: vec![DeadLetterRecord {
                sku: "B".into(),
                parked_seq: 3,
                expired_seq: 7,
                idempotency_key: "p".into(),
                source: "wms".into(),
                kind: "fulfilment".into(),
                movement_json: "{}".into(),
                reason: "waits".into(),
                parked_at_ms: 1,
                expired_at_ms: 20,
                keep_until_ms: 20 + 86_400_000,
            }],
            outcomes: vec![
                EventOutcomeRecord {
                    sku: "B".into(),
                    seq: 7,
                    outcome_json: r#"{"outcome":"parked"}"#.into(),
                },
                EventOutcomeRecord {
                    sku: "A".into(),
                    seq: 1,
                    outcome_json: r#"{"outcome":"ignored"}"#.into(),
                },
                EventOutcomeRecord {
                    sku: "C".into(),
                    seq: 4,
                    outcome_json: r#"{"outcome":"applied"}"#.into(),
                },
            ],
            fences: Vec::new(),
            sku_fences: Default::default(),
        }
    }

    #[test]
    fn every_planned_write_binds_as_many_values_as_its_statement_has_markers() {
        let plan = plan_commit(
            &full_batch(),
            "w",
            &assign_cursors(&full_batch(), 1_000),
            NOW_MICROS,
        )
        .unwrap();
        for write in all_writes(&plan) {
            assert_eq!(
                write.values.len(),
                write.stmt.bind_count(),
                "{:?}",
                write.stmt
            );
            assert!(!write.stmt.is_lwt(), "no LWT on the commit path");
        }
        let line = crate::store::OrderLineRecord {
            channel: "woo".into(),
            order_id: "1".into(),
            line_id: "a".into(),
            sku: "A".into(),
            version: 5,
            seen_at_ms: 1_000_000,
        };
        for write in order_line_writes(&line, 0) {
            assert_eq!(
                write.values.len(),
                write.stmt.bind_count(),
                "{:?}",
                write.stmt
            );
        }
    }

    #[test]
    fn each_sku_s_events_keys_snapshot_and_outcomes_are_one_partition_batch() {
        let plan = plan_commit(
            &full_batch(),
            "w",
            &assign_cursors(&full_batch(), 1_000),
            NOW_MICROS,
        )
        .unwrap();
        let skus: Vec<&str> = plan.partitions.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(skus, vec!["A", "B", "C"]);
        for (sku, chunks) in &plan.partitions {
            assert_eq!(
                chunks.len(),
                1,
                "{sku}: a small batch is one statement batch"
            );
            for write in &chunks[0] {
                let index = usize::from(write.stmt == Stmt::SetOutcome);
                assert_eq!(&text_at(write, index), sku, "{:?}", write.stmt);
            }
        }
        let a: Vec<Stmt> = plan.partitions[0].1[0].iter().map(|w| w.stmt).collect();
        assert_eq!(
            a,
            vec![
                Stmt::InsertEvent,
                Stmt::InsertKey,
                Stmt::InsertEvent,
                Stmt::InsertKey,
                Stmt::InsertSnapshot,
                Stmt::SetMarker,
            ]
        );
        // The outcome of A/1 rides on its event row; C/4's event is not in the batch.
        let a1 = &plan.partitions[0].1[0][0];
        assert_eq!(text_at(a1, 8), r#"{"outcome":"ignored"}"#);
        assert!(matches!(
            plan.partitions[0].1[0][2].values[8],
            MaybeUnset::Unset
        ));
        let c: Vec<Stmt> = plan.partitions[2].1[0].iter().map(|w| w.stmt).collect();
        assert_eq!(c, vec![Stmt::SetOutcome]);
        let marker = &plan.partitions[0].1[0][5];
        assert_eq!((big_at(marker, 1), big_at(marker, 2)), (1, 2));
    }

    #[test]
    fn rows_that_must_not_outlive_the_events_are_written_after_them() {
        let plan = plan_commit(
            &full_batch(),
            "w",
            &assign_cursors(&full_batch(), 1_000),
            NOW_MICROS,
        )
        .unwrap();
        let before: Vec<Stmt> = plan.before.iter().map(|w| w.stmt).collect();
        assert_eq!(
            before,
            vec![
                Stmt::InsertSku,
                Stmt::UpsertHoldExpiry,
                Stmt::SetReservationRequest,
                Stmt::SetReservationRefusal,
            ]
        );
        // Only A/1 is a SKU's first event; B's last hold change (a deletion) wins.
        assert_eq!(text_at(&plan.before[0], 1), "A");
        assert_eq!(text_at(&plan.before[1], 1), "A");
        let after: BTreeSet<Stmt> = plan.after.iter().map(|w| w.stmt).collect();
        for stmt in [
            Stmt::InsertSkuHistory,
            Stmt::InsertHistory,
            Stmt::InsertHistoryHour,
            Stmt::DeleteHoldExpiry,
            Stmt::UpsertOffset,
            Stmt::InsertDeadLetter,
            Stmt::SetSkuHistoryOutcome,
        ] {
            assert!(after.contains(&stmt), "{stmt:?} not after");
        }
        let offset = plan
            .after
            .iter()
            .find(|w| w.stmt == Stmt::UpsertOffset)
            .unwrap();
        assert_eq!((big_at(offset, 3), big_at(offset, 4)), (44, 44));
        assert_eq!(
            plan.after
                .iter()
                .filter(|w| w.stmt == Stmt::InsertHistory)
                .count(),
            3
        );
    }

    #[test]
    fn history_rows_are_grouped_per_partition_and_other_writes_stay_alone() {
        let mut batch = full_batch();
        batch.events.push(EventRecord {
            seq: SKU_HISTORY_BUCKET_EVENTS + 1,
            ..event("A", 3, 40)
        });
        let plan = plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap();
        let total = plan.after.len();
        let groups = group_by_partition(plan.after);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), total);
        for group in &groups {
            let stmt = group[0].stmt;
            assert!(group.iter().all(|w| w.stmt == stmt), "{group:?}");
            match stmt {
                Stmt::InsertHistory => {
                    // All four events of the batch share one hour partition.
                    assert_eq!(group.len(), 4);
                }
                Stmt::InsertSkuHistory => {
                    let partition = |w: &Write| (text_at(w, 0), big_at(w, 1));
                    assert!(group.iter().all(|w| partition(w) == partition(&group[0])));
                }
                _ => assert_eq!(group.len(), 1, "{stmt:?}"),
            }
        }
        let sku_history: Vec<usize> = groups
            .iter()
            .filter(|g| g[0].stmt == Stmt::InsertSkuHistory)
            .map(Vec::len)
            .collect();
        // A: seqs 1 and 2 in bucket 0, 65537 in bucket 1; B: seq 7.
        assert_eq!(sku_history, vec![2, 1, 1]);
    }

    /// (SKU, seq) pairs.
    type Stored = BTreeSet<(String, i64)>;

    /// The (SKU, seq) pairs the applied writes stored as events and as keys.
    fn events_and_keys(applied: &[&Write]) -> (Stored, Stored) {
        let mut events = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for write in applied {
            match write.stmt {
                Stmt::InsertEvent => {
                    events.insert((text_at(write, 0), big_at(write, 1)));
                }
                Stmt::InsertKey => {
                    keys.insert((text_at(write, 0), big_at(write, 2)));
                }
                _ => {}
            }
        }
        (events, keys)
    }

    /// A crash at any point of a commit: the SKU batches run concurrently, so any set of
    /// them may have landed (within a SKU, a prefix of its batches); each landed batch is
    /// whole. Whatever landed shows every movement with its key and every key with its
    /// movement, and nothing of the `after` step (offsets, history) landed unless every
    /// SKU batch did.
    #[test]
    fn a_crash_anywhere_in_a_commit_never_leaves_a_movement_without_its_key() {
        let mut batch = full_batch();
        batch.events.extend((3..=600).map(|seq| EventRecord {
            movement: vec![1; 400],
            ..event("A", seq, 50)
        }));
        let plan = plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap();
        let chunks: Vec<usize> = plan.partitions.iter().map(|(_, c)| c.len()).collect();
        assert!(chunks[0] > 1, "A's part is split: {chunks:?}");
        // Every combination of per-SKU prefixes of landed batches.
        let mut landed = vec![0; chunks.len()];
        loop {
            let applied: Vec<&Write> = plan
                .before
                .iter()
                .chain(
                    plan.partitions
                        .iter()
                        .zip(&landed)
                        .flat_map(|((_, c), n)| c.iter().take(*n).flatten()),
                )
                .collect();
            let (events, keys) = events_and_keys(&applied);
            assert_eq!(events, keys, "landed: {landed:?}");
            // Within a SKU, the landed events are a prefix in seq order.
            let a: Vec<i64> = events.iter().filter(|e| e.0 == "A").map(|e| e.1).collect();
            assert!(
                a.iter().enumerate().all(|(i, seq)| *seq == i as i64 + 1),
                "{a:?}"
            );
            let mut position = 0;
            while position < landed.len() && landed[position] == chunks[position] {
                landed[position] = 0;
                position += 1;
            }
            if position == landed.len() {
                break;
            }
            landed[position] += 1;
        }
        for write in plan.before.iter() {
            assert!(
                !matches!(
                    write.stmt,
                    Stmt::UpsertOffset
                        | Stmt::InsertHistory
                        | Stmt::InsertSkuHistory
                        | Stmt::DeleteHoldExpiry
                        | Stmt::InsertDeadLetter
                ),
                "{:?} must wait for the events",
                write.stmt
            );
        }
    }

    #[test]
    fn planning_the_same_batch_twice_writes_the_same_rows() {
        let batch = full_batch();
        let first = format!(
            "{:?}",
            plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap()
        );
        let again = format!(
            "{:?}",
            plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap()
        );
        assert_eq!(first, again);
    }

    #[test]
    fn rows_carry_the_newest_fence_epoch_and_keys_a_ttl_from_their_expiry() {
        let batch = CommitBatch {
            fences: vec![
                Fence {
                    scope: "movements/0".into(),
                    epoch: 4,
                },
                Fence {
                    scope: "movements/1".into(),
                    epoch: 9,
                },
            ],
            ..batch_of(vec![event("A", 3, 1_000)])
        };
        let plan = plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap();
        let chunk = &plan.partitions[0].1[0];
        assert_eq!(big_at(&chunk[0], 2), 9, "event epoch");
        assert_eq!(big_at(&chunk[1], 3), 9, "key epoch");
        match &chunk[1].values[6] {
            MaybeUnset::Set(CqlValue::Int(ttl)) => assert_eq!(*ttl, 7 * 86_400),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            big_at(&chunk[1], 5),
            (u64::MAX - 3) as i64,
            "hash bits kept"
        );
    }

    #[test]
    fn each_sku_s_rows_carry_the_epoch_of_its_own_partition_s_fence() {
        let fence = |scope: &str, epoch: u64| Fence {
            scope: scope.into(),
            epoch,
        };
        let mut batch = full_batch();
        batch.events.push(event("D", 1, 40));
        // A and B in partitions at different epochs; C (an outcome only) at a lower one
        // than both; D covered by no fence of its own (a single node's rows).
        batch.fences = vec![
            fence("movements/0", 4),
            fence("movements/1", 9),
            fence("movements/2", 2),
        ];
        batch.sku_fences = [("A", 0), ("B", 1), ("C", 2)]
            .into_iter()
            .map(|(sku, index)| (sku.to_owned(), index))
            .collect();
        let expected = BTreeMap::from([("A", 4), ("B", 9), ("C", 2), ("D", 9)]);
        let plan = plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap();
        let mut stamped = BTreeSet::new();
        for write in all_writes(&plan) {
            let (sku, epoch) = match write.stmt {
                Stmt::InsertEvent | Stmt::InsertSnapshot => (text_at(write, 0), big_at(write, 2)),
                Stmt::InsertKey | Stmt::InsertSkuHistory => (text_at(write, 0), big_at(write, 3)),
                Stmt::SetOutcome => (text_at(write, 1), big_at(write, 3)),
                Stmt::SetSkuHistoryOutcome => (text_at(write, 1), big_at(write, 4)),
                Stmt::InsertHistory => (text_at(write, 2), big_at(write, 4)),
                _ => continue,
            };
            assert_eq!(epoch, expected[sku.as_str()], "{:?} of {sku}", write.stmt);
            stamped.insert(format!("{:?}", write.stmt));
            stamped.insert(sku);
        }
        assert_eq!(
            stamped.into_iter().collect::<Vec<_>>(),
            [
                "A",
                "B",
                "C",
                "D",
                "InsertEvent",
                "InsertHistory",
                "InsertKey",
                "InsertSkuHistory",
                "InsertSnapshot",
                "SetOutcome",
                "SetSkuHistoryOutcome"
            ],
            "every epoch-stamped row of every SKU was checked"
        );
    }

    #[test]
    fn a_snapshot_prunes_events_and_snapshots_below_the_retention_window() {
        let seq = RETAINED_EVENTS_BELOW_SNAPSHOT + 500;
        let batch = CommitBatch {
            snapshots: vec![SnapshotRecord {
                sku: "A".into(),
                seq,
                state: vec![1],
            }],
            ..batch_of(vec![event("A", seq, 5)])
        };
        let plan = plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap();
        let chunk = &plan.partitions[0].1[0];
        let prunes: Vec<(Stmt, i64)> = chunk
            .iter()
            .filter(|w| matches!(w.stmt, Stmt::PruneEvents | Stmt::PruneSnapshots))
            .map(|w| (w.stmt, big_at(w, 1)))
            .collect();
        assert_eq!(
            prunes,
            vec![(Stmt::PruneEvents, 500), (Stmt::PruneSnapshots, 500)]
        );
        // A young SKU prunes nothing.
        let young = CommitBatch {
            snapshots: vec![SnapshotRecord {
                sku: "A".into(),
                seq: 500,
                state: vec![1],
            }],
            ..CommitBatch::default()
        };
        let plan = plan_commit(&young, "w", &assign_cursors(&young, 1_000), NOW_MICROS).unwrap();
        assert!(
            plan.partitions[0].1[0]
                .iter()
                .all(|w| w.stmt == Stmt::InsertSnapshot)
        );
    }

    #[test]
    fn a_large_batch_of_one_sku_splits_into_bounded_batches_never_between_event_and_key() {
        let events: Vec<EventRecord> = (1..=1_500)
            .map(|seq| EventRecord {
                movement: vec![7; 300],
                ..event("HOT", seq, 1)
            })
            .collect();
        let batch = CommitBatch {
            snapshots: vec![SnapshotRecord {
                sku: "HOT".into(),
                seq: 1_500,
                state: vec![0; 1_000],
            }],
            ..batch_of(events)
        };
        let plan = plan_commit(&batch, "w", &assign_cursors(&batch, 1_000), NOW_MICROS).unwrap();
        let chunks = &plan.partitions[0].1;
        assert!(chunks.len() > 1);
        let mut seqs = Vec::new();
        for chunk in chunks {
            assert!(chunk.len() <= MAX_BATCH_STATEMENTS);
            let bytes: usize = chunk.iter().map(estimated_bytes).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
            for pair in chunk.chunks(2).filter(|p| p[0].stmt == Stmt::InsertEvent) {
                assert_eq!(pair[1].stmt, Stmt::InsertKey);
                assert_eq!(big_at(&pair[0], 1), big_at(&pair[1], 2));
                seqs.push(big_at(&pair[0], 1));
            }
        }
        assert_eq!(
            seqs,
            (1..=1_500).collect::<Vec<i64>>(),
            "in order, once each"
        );
        let last: Vec<Stmt> = chunks.last().unwrap().iter().map(|w| w.stmt).collect();
        assert_eq!(last.last(), Some(&Stmt::SetMarker), "{last:?}");
        assert!(last.contains(&Stmt::InsertSnapshot), "{last:?}");
    }

    #[test]
    fn history_cursors_follow_batches_and_their_order_and_fit_a_bigint() {
        let a = history_cursor(1_000, 0);
        let b = history_cursor(1_000, 1);
        let c = history_cursor(1_001, 0);
        assert!(a < b && b < c);
        assert_eq!(a >> CURSOR_LOW_BITS, 1_000);
        assert_eq!(
            history_cursor(1_000, usize::MAX),
            (1_000 << CURSOR_LOW_BITS) | ((1 << CURSOR_LOW_BITS) - 1)
        );
        let max = history_cursor(i64::MAX, 1);
        assert!(i64::try_from(max).is_ok());
        assert_eq!(max >> CURSOR_LOW_BITS, CURSOR_MAX_MS as u64);
        assert_eq!(history_cursor(-5, 1) >> CURSOR_LOW_BITS, 0);
        let now = 1_764_547_200_000;
        assert_eq!(hour_of_cursor(history_cursor(now, 3)), hour_of_ms(now));
        assert_eq!(hour_of_ms(now), now / HOUR_MS);
    }

    #[test]
    fn cursors_follow_append_order_and_are_never_earlier_than_their_event() {
        let ms = |cursors: Vec<u64>| cursors.into_iter().map(cursor_ms).collect::<Vec<_>>();
        let batch = batch_of(vec![event("A", 1, 500), event("B", 1, 700)]);
        assert_eq!(ms(assign_cursors(&batch, 0)), vec![500, 700]);
        assert_eq!(ms(assign_cursors(&batch, 600)), vec![601, 700]);
        // The clock stood still (or stepped back): times are raised, never lowered.
        assert_eq!(ms(assign_cursors(&batch, 900)), vec![901, 901]);
        let back = batch_of(vec![event("A", 1, 700), event("B", 1, 500)]);
        let cursors = assign_cursors(&back, 0);
        assert_eq!(ms(cursors.clone()), vec![700, 700]);
        assert!(cursors[0] < cursors[1]);
        // Far-apart times in one batch keep their own hours.
        let wide = batch_of(vec![event("A", 1, 100), event("A", 2, 10 * HOUR_MS)]);
        assert_eq!(ms(assign_cursors(&wide, 0)), vec![100, 10 * HOUR_MS]);
        let plan = plan_commit(&wide, "w", &assign_cursors(&wide, 0), NOW_MICROS).unwrap();
        let hours: Vec<i64> = plan
            .after
            .iter()
            .filter(|w| w.stmt == Stmt::InsertHistoryHour)
            .map(|w| big_at(w, 0))
            .collect();
        assert_eq!(hours, vec![0, 10]);
        assert!(plan_commit(&wide, "w", &[], NOW_MICROS).is_err());
    }

    #[test]
    fn a_retry_has_the_same_identity_and_cursors_are_stored_on_the_rows() {
        let batch = batch_of(vec![event("A", 1, 500), event("B", 1, 700)]);
        assert_eq!(batch_identity(&batch), batch_identity(&batch.clone()));
        let next = batch_of(vec![event("A", 2, 500), event("B", 1, 700)]);
        assert_ne!(batch_identity(&batch), batch_identity(&next));
        assert_eq!(batch_identity(&CommitBatch::default()), None);
        // The cursors of one batch follow its event order and are stored on the rows.
        let assigned = assign_cursors(&batch, 0);
        let plan = plan_commit(&batch, "w", &assigned, NOW_MICROS).unwrap();
        let cursors: Vec<i64> = plan
            .after
            .iter()
            .filter(|w| w.stmt == Stmt::InsertHistory)
            .map(|w| big_at(w, 1))
            .collect();
        assert_eq!(
            cursors,
            vec![history_cursor(500, 0) as i64, history_cursor(700, 1) as i64]
        );
        assert_eq!(big_at(&plan.partitions[0].1[0][0], 9), cursors[0]);
        assert_eq!(big_at(&plan.partitions[1].1[0][0], 9), cursors[1]);
    }

    #[test]
    fn the_cursor_range_combines_time_bounds_and_the_page_cursor() {
        assert_eq!(cursor_range(None, None, None), (-1, i64::MAX));
        let (after, before) = cursor_range(Some(100), Some(200), None);
        assert_eq!(after, (100 << CURSOR_LOW_BITS) - 1);
        assert_eq!(before, (200 + HOUR_MS) << CURSOR_LOW_BITS);
        assert!(history_cursor(100, 0) as i64 > after);
        assert!((history_cursor(99, 9) as i64) < after);
        assert!((history_cursor(199 + HOUR_MS, 1) as i64) < before);
        assert!((history_cursor(200 + HOUR_MS, 0) as i64) >= before);
        let page = history_cursor(150, 1);
        assert_eq!(cursor_range(Some(100), None, Some(page)).0, page as i64);
        assert_eq!(cursor_range(None, Some(-3 - HOUR_MS), None).1, 0);
    }

    #[test]
    fn sku_buckets_read_in_order_list_skus_in_byte_order() {
        let mut skus = vec![
            "b-2", "B-1", "a", "SKU-9", "SKU-10", "ärm", "0", "~", "Zed", "zed", "b",
        ];
        let mut by_bucket = skus.clone();
        by_bucket.sort_by_key(|sku| (sku_bucket(sku), sku.as_bytes().to_vec()));
        skus.sort();
        assert_eq!(by_bucket, skus);
        assert!((0..=255).contains(&sku_bucket("ÿ")));
    }

    #[test]
    fn ttls_round_up_and_stay_within_scylla_s_bounds() {
        assert_eq!(ttl_secs(1_000 + 7_200_001, 1_000), 7_201);
        assert_eq!(ttl_secs(10, 1_000), MIN_TTL_SECS as i32);
        assert_eq!(ttl_secs(i64::MAX, i64::MIN), MAX_TTL_SECS as i32);
        assert_eq!(history_bucket(1), 0);
        assert_eq!(history_bucket(SKU_HISTORY_BUCKET_EVENTS), 0);
        assert_eq!(history_bucket(SKU_HISTORY_BUCKET_EVENTS + 1), 1);
    }

    #[test]
    fn the_first_reservation_write_wins_by_timestamp() {
        let first = first_write_wins_timestamp(NOW_MICROS, 0);
        let same_batch_later = first_write_wins_timestamp(NOW_MICROS, 1);
        let next_batch = first_write_wins_timestamp(NOW_MICROS + 1_000, 0);
        assert!(first > same_batch_later && same_batch_later > next_batch);
        assert!(
            next_batch > NOW_MICROS * 100,
            "above any wall-clock timestamp"
        );
    }

    #[test]
    fn the_history_repair_rewrites_only_missing_rows_of_the_last_batch() {
        let partition = vec![
            log_event(1, 0),
            log_event(2, 0),
            log_event(3, 0),
            log_event(4, 0),
            LogRow {
                kind: kind::MARKER,
                history_from: Some(3),
                history_to: Some(4),
                ..LogRow::default()
            },
        ];
        let assembled = assemble_load("A", &partition, 0);
        let repair = plan_history_repair(&assembled, &BTreeSet::from([3])).unwrap();
        let stmts: Vec<Stmt> = repair.iter().map(|w| w.stmt).collect();
        assert_eq!(
            stmts,
            vec![
                Stmt::InsertSkuHistory,
                Stmt::InsertHistory,
                Stmt::InsertHistoryHour
            ]
        );
        assert_eq!(big_at(&repair[0], 2), 4);
        // The global row is the one the commit wrote (the cursor stored on the event).
        let cursor = history_cursor(5_004, 0) as i64;
        assert_eq!(big_at(&repair[1], 1), cursor);
        let none = plan_history_repair(&assembled, &BTreeSet::from([3, 4])).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn only_transient_failures_of_idempotent_requests_are_retried_up_to_the_limit() {
        use Failure::*;
        assert_eq!(
            retry_decision(0, 3, true, false, Timeout),
            Retry::NextTarget
        );
        assert_eq!(
            retry_decision(2, 3, true, false, Transient),
            Retry::NextTarget
        );
        assert_eq!(retry_decision(3, 3, true, false, Timeout), Retry::GiveUp);
        assert_eq!(retry_decision(0, 3, false, false, Timeout), Retry::GiveUp);
        assert_eq!(
            retry_decision(0, 3, false, false, Unavailable),
            Retry::NextTarget
        );
        assert_eq!(retry_decision(0, 3, true, false, Permanent), Retry::GiveUp);
        assert_eq!(retry_decision(0, 3, true, true, Unavailable), Retry::GiveUp);
        assert_eq!(
            retry_decision(0, 0, true, false, Unavailable),
            Retry::GiveUp
        );
    }

    #[test]
    fn order_line_versions_win_by_timestamp_and_rows_live_for_the_retention() {
        let line = crate::store::OrderLineRecord {
            channel: "woo".into(),
            order_id: "1".into(),
            line_id: "a".into(),
            sku: "A".into(),
            version: 5,
            seen_at_ms: 100 * 86_400_000,
        };
        let writes = order_line_writes(&line, 93 * 86_400_000);
        match &writes[0].values[0] {
            MaybeUnset::Set(CqlValue::Int(ttl)) => assert_eq!(*ttl, 7 * 86_400),
            other => panic!("{other:?}"),
        }
        assert_eq!(big_at(&writes[1], 1), 5_000);
        assert_eq!(big_at(&writes[2], 1), 100 * 86_400_000 * 1_000);
    }

    /// Values compared by their debug text (the driver's values have no `PartialEq`).
    fn shown(values: &[MaybeUnset<CqlValue>]) -> String {
        format!("{values:?}")
    }

    fn stored(owner: &str, epoch: i64, expires: Option<i64>) -> StoredLease {
        stored_lease_of(
            "channel/woo",
            (Some(epoch), Some(owner.into()), expires, Some("p".into())),
        )
        .unwrap()
    }

    fn decided(current: Option<&StoredLease>, owner: &str, now_ms: i64) -> LeaseDecision {
        lease::decide(
            current.map(|stored| stored.lease.clone()),
            "channel/woo",
            owner,
            "url",
            now_ms,
            100,
        )
        .unwrap()
    }

    #[test]
    fn an_ownership_row_without_lease_columns_reads_as_expired() {
        assert_eq!(stored_lease_of("s", (None, None, None, None)), None);
        let old = stored_lease_of("s", (Some(3), Some("a".into()), None, None)).unwrap();
        assert_eq!(old.lease.expires_at_ms, 0);
        assert_eq!(old.lease.payload, "");
        assert_eq!(old.stored_expires_at_ms, None);
        assert!(old.lease.expired_at(0));
    }

    #[test]
    fn lease_decisions_become_conditional_writes_that_expect_the_row_as_read() {
        // No row: insert if not exists, epoch 1.
        let insert = lease_write(&decided(None, "a", 1_000), None)
            .unwrap()
            .unwrap();
        assert_eq!(insert.stmt, Stmt::InsertLease);
        assert_eq!(insert.values.len(), Stmt::InsertLease.bind_count());
        assert_eq!(big_at(&insert, 1), 1);
        assert_eq!(big_at(&insert, 3), 1_100);
        // A takeover of an expired lease expects epoch, owner and expiry as read.
        let row = stored("a", 4, Some(900));
        let takeover = lease_write(&decided(Some(&row), "b", 1_000), Some(&row))
            .unwrap()
            .unwrap();
        assert_eq!(takeover.stmt, Stmt::UpdateLease);
        assert_eq!(takeover.values.len(), Stmt::UpdateLease.bind_count());
        assert_eq!(
            shown(&takeover.values),
            shown(&[
                big(5),
                text("b"),
                big(1_100),
                text("url"),
                text("channel/woo"),
                big(4),
                text("a"),
                big(900)
            ])
        );
        // A renewal keeps the epoch.
        let renewal = lease_write(&decided(Some(&row), "a", 1_000), Some(&row))
            .unwrap()
            .unwrap();
        assert_eq!((big_at(&renewal, 0), big_at(&renewal, 5)), (4, 4));
        // A row without an expiry is expected without one.
        let unleased = stored("a", 4, None);
        let write = lease_write(&decided(Some(&unleased), "b", 1_000), Some(&unleased))
            .unwrap()
            .unwrap();
        assert_eq!(write.stmt, Stmt::UpdateUnleased);
        assert_eq!(write.values.len(), Stmt::UpdateUnleased.bind_count());
        // Held: nothing is written.
        let live = stored("a", 4, Some(5_000));
        assert!(
            lease_write(&decided(Some(&live), "b", 1_000), Some(&live))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn release_and_acquire_writes_follow_their_bind_order() {
        let release = release_write("s", "a", 7).unwrap();
        assert_eq!(release.stmt, Stmt::ReleaseLease);
        assert_eq!(
            shown(&release.values),
            shown(&[text("s"), text("a"), big(7)])
        );
        assert!(release_write("s", "a", u64::MAX).is_none());
        let (insert, epoch) = acquire_write("s", "a", None).unwrap();
        assert_eq!((insert.stmt, epoch), (Stmt::InsertOwnership, 1));
        assert_eq!(insert.values.len(), Stmt::InsertOwnership.bind_count());
        assert_eq!(big_at(&insert, 2), lease::ACQUIRED_EXPIRES_AT_MS);
        let (update, epoch) = acquire_write("s", "b", Some(4)).unwrap();
        assert_eq!((update.stmt, epoch), (Stmt::UpdateOwnership, 5));
        assert_eq!(
            shown(&update.values),
            shown(&[
                big(5),
                text("b"),
                big(lease::ACQUIRED_EXPIRES_AT_MS),
                text("s"),
                big(4)
            ])
        );
        assert!(acquire_write("s", "b", Some(u64::MAX)).is_err());
    }

    #[test]
    fn listing_by_prefix_stops_at_the_first_scope_past_it() {
        let scopes = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        // `channel_` sorts after `channel/`: the index is read from the prefix on.
        let (found, done) = scopes_with_prefix(
            scopes(&["channel_a", "channel_b", "member/1"]),
            "channel_",
            10,
        );
        assert_eq!((found, done), (scopes(&["channel_a", "channel_b"]), true));
        let (found, done) = scopes_with_prefix(scopes(&["a/1", "a/2"]), "a/", 2);
        assert_eq!(
            (found, done),
            (scopes(&["a/1", "a/2"]), false),
            "maybe more"
        );
        let (found, done) = scopes_with_prefix(scopes(&["a/1"]), "a/", 2);
        assert_eq!((found, done), (scopes(&["a/1"]), true));
        let (found, done) = scopes_with_prefix(scopes(&["b"]), "a", 2);
        assert_eq!((found, done), (Vec::new(), true));
        assert!(scope_after("a/1").as_str() > "a/1");
        assert!(scope_after("a/1").as_str() < "a/1\u{1}");
        assert_eq!(
            shown(&scope_page_values("a", 20_000)[1..]),
            shown(&[int(20_000)])
        );
        assert_eq!(shown(&scope_page_values("a", 0)[1..]), shown(&[int(1)]));
    }
}
