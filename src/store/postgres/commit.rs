//! One [`CommitBatch`] as one PostgreSQL transaction: the fences read `FOR SHARE` first,
//! then one multi-row statement per table (`INSERT … SELECT … FROM UNNEST($1::text[], …)`,
//! whatever the batch's size), sent pipelined on the transaction's connection, then
//! `COMMIT` (durable with the server's default `synchronous_commit = on`).
//!
//! Rows of one table that share a key are merged here first, as the embedded backend's
//! row-by-row statements would leave them (one `INSERT … ON CONFLICT DO UPDATE` may not
//! touch a row twice).
//!
//! May depend on: `tokio_postgres`, `deadpool_postgres`, the rest of `store`.

use super::{StoreError, pg_error, to_i64};
use crate::store::{CommitBatch, EventRecord, Fence, codec};
use std::collections::HashMap;
use tokio_postgres::types::ToSql;

/// Events, their idempotency keys and the SKUs they introduce, in one statement: the input
/// arrays are read once (`input`, materialised), the events keep the batch's order
/// (`ORDER BY n`: their identity `id` is the history cursor), and a duplicate (sku, seq)
/// fails the statement and with it the transaction.
const INSERT_EVENTS: &str = "
WITH input AS MATERIALIZED (
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                         $6::bytea[], $7::text[], $8::text[], $9::bigint[])
        WITH ORDINALITY AS u(sku, seq, idempotency_key, key_expires_at_ms, recorded_at_ms,
                             movement, source, kind, movement_hash, n)
), inserted AS (
    INSERT INTO events (sku, seq, idempotency_key, key_expires_at_ms, recorded_at_ms,
                        movement, source, kind)
    SELECT sku, seq, idempotency_key, key_expires_at_ms, recorded_at_ms, movement, source, kind
    FROM input ORDER BY n
    RETURNING 1
), keys AS (
    INSERT INTO idempotency_keys (sku, idempotency_key, seq, expires_at_ms, movement_hash)
    SELECT sku, idempotency_key, seq, key_expires_at_ms, movement_hash FROM input
), new_skus AS (
    INSERT INTO skus (sku) SELECT DISTINCT sku FROM input WHERE seq = 1
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM inserted";

const UPSERT_SNAPSHOTS: &str = "
INSERT INTO snapshots (sku, seq, state)
SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])
ON CONFLICT (sku) DO UPDATE SET seq = excluded.seq, state = excluded.state
WHERE excluded.seq > snapshots.seq";

const UPSERT_OFFSETS: &str = "
INSERT INTO offsets (grp, topic, part, next_offset)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::integer[], $4::bigint[])
ON CONFLICT (grp, topic, part) DO UPDATE SET next_offset = excluded.next_offset
WHERE excluded.next_offset > offsets.next_offset";

const UPSERT_HOLD_EXPIRIES: &str = "
INSERT INTO hold_expiries (sku, next_expiry_ms)
SELECT * FROM UNNEST($1::text[], $2::bigint[])
ON CONFLICT (sku) DO UPDATE SET next_expiry_ms = excluded.next_expiry_ms";

const DELETE_HOLD_EXPIRIES: &str = "DELETE FROM hold_expiries WHERE sku = ANY($1::text[])";

const UPSERT_RESERVATIONS: &str = "
INSERT INTO reservations (id, request, refusal, created_at_ms)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
ON CONFLICT (id) DO UPDATE SET refusal = COALESCE(excluded.refusal, reservations.refusal)";

const UPSERT_OUTCOMES: &str = "
INSERT INTO event_outcomes (sku, seq, outcome)
SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[])
ON CONFLICT (sku, seq) DO UPDATE SET outcome = excluded.outcome";

const INSERT_DEAD_LETTERS: &str = "
INSERT INTO dead_letters (sku, parked_seq, expired_seq, idempotency_key, source, kind,
                          movement, reason, parked_at_ms, expired_at_ms, keep_until_ms)
SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[],
                     $11::bigint[])
ON CONFLICT (sku, parked_seq) DO NOTHING";

const PRUNE_DEAD_LETTERS: &str = "DELETE FROM dead_letters WHERE keep_until_ms < $1";

const LOCK_FENCES: &str =
    "SELECT scope, epoch FROM ownership WHERE scope = ANY($1::text[]) FOR SHARE";

/// The source and kind of a stored movement, as the history filters compare them
/// (`codec::movement_matches`): a JSON row's `source` and `type` fields, a binary row's
/// decoded source and kind name. `None` for what cannot be read (such an event matches no
/// source or kind filter).
pub(super) fn source_and_kind(event: &EventRecord) -> (Option<String>, Option<String>) {
    if event.movement.first() == Some(&b'{') {
        /// The two fields the filters read; the rest of the object is skipped.
        #[derive(serde::Deserialize)]
        struct Head {
            source: Option<String>,
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        return match serde_json::from_slice::<Head>(&event.movement) {
            Ok(head) => (head.source, head.kind),
            Err(_) => (None, None),
        };
    }
    match codec::decode_movement(&event.movement, &event.sku, &event.idempotency_key) {
        Ok(movement) => (Some(movement.source), Some(movement.kind.name().to_owned())),
        Err(_) => (None, None),
    }
}

/// The events' columns.
#[derive(Default)]
struct Events<'b> {
    sku: Vec<&'b str>,
    seq: Vec<i64>,
    key: Vec<&'b str>,
    key_expires_at_ms: Vec<i64>,
    recorded_at_ms: Vec<i64>,
    movement: Vec<&'b [u8]>,
    source: Vec<Option<String>>,
    kind: Vec<Option<String>>,
    movement_hash: Vec<Option<i64>>,
}

/// The dead letters' columns (the first row per (sku, parked_seq)) and the newest expiry.
#[derive(Default)]
struct DeadLetters<'b> {
    sku: Vec<&'b str>,
    parked_seq: Vec<i64>,
    expired_seq: Vec<i64>,
    key: Vec<&'b str>,
    source: Vec<&'b str>,
    kind: Vec<&'b str>,
    movement: Vec<&'b str>,
    reason: Vec<&'b str>,
    parked_at_ms: Vec<i64>,
    expired_at_ms: Vec<i64>,
    keep_until_ms: Vec<i64>,
    newest_expired_at_ms: i64,
}

/// One row per reservation id: its first request and created_at_ms, its last refusal.
#[derive(Default)]
struct Reservations<'b> {
    id: Vec<&'b str>,
    request: Vec<&'b str>,
    refusal: Vec<Option<&'b str>>,
    created_at_ms: Vec<i64>,
}

/// Every column of a batch, merged per key, borrowed from the batch.
#[derive(Default)]
struct Rows<'b> {
    events: Events<'b>,
    /// Newest snapshot per SKU: (sku, seq, state).
    snapshots: (Vec<&'b str>, Vec<i64>, Vec<&'b [u8]>),
    /// Highest watermark per (group, topic, partition).
    offsets: (Vec<&'b str>, Vec<&'b str>, Vec<i32>, Vec<i64>),
    /// Last hold expiry per SKU that has one: (sku, next_expiry_ms).
    hold_upserts: (Vec<&'b str>, Vec<i64>),
    /// SKUs whose last hold-expiry change removes the row.
    hold_deletes: Vec<&'b str>,
    reservations: Reservations<'b>,
    /// Last outcome per (sku, seq).
    outcomes: (Vec<&'b str>, Vec<i64>, Vec<&'b str>),
    dead_letters: DeadLetters<'b>,
}

impl<'b> Rows<'b> {
    fn of(batch: &'b CommitBatch) -> Result<Self, StoreError> {
        let mut rows = Rows::default();
        let events = &mut rows.events;
        for event in &batch.events {
            let (source, kind) = source_and_kind(event);
            events.sku.push(&event.sku);
            events.seq.push(to_i64("commit", "seq", event.seq)?);
            events.key.push(&event.idempotency_key);
            events.key_expires_at_ms.push(event.key_expires_at_ms);
            events.recorded_at_ms.push(event.recorded_at_ms);
            events.movement.push(&event.movement);
            events.source.push(source);
            events.kind.push(kind);
            // The u64 hash as the bigint with the same 64 bits.
            events
                .movement_hash
                .push(event.movement_hash.map(|hash| hash as i64));
        }
        let mut newest: HashMap<&str, usize> = HashMap::new();
        for snapshot in &batch.snapshots {
            let seq = to_i64("commit", "snapshot seq", snapshot.seq)?;
            let (skus, seqs, states) = &mut rows.snapshots;
            match newest.get(snapshot.sku.as_str()) {
                Some(&at) if seqs[at] >= seq => {}
                Some(&at) => (seqs[at], states[at]) = (seq, &snapshot.state),
                None => {
                    newest.insert(&snapshot.sku, skus.len());
                    skus.push(&snapshot.sku);
                    seqs.push(seq);
                    states.push(&snapshot.state);
                }
            }
        }
        let mut highest: HashMap<(&str, &str, i32), usize> = HashMap::new();
        for offset in &batch.offsets {
            let (groups, topics, parts, nexts) = &mut rows.offsets;
            let key = (
                offset.group.as_str(),
                offset.topic.as_str(),
                offset.partition,
            );
            match highest.get(&key) {
                Some(&at) => nexts[at] = nexts[at].max(offset.next_offset),
                None => {
                    highest.insert(key, groups.len());
                    groups.push(&offset.group);
                    topics.push(&offset.topic);
                    parts.push(offset.partition);
                    nexts.push(offset.next_offset);
                }
            }
        }
        let mut last_hold: HashMap<&str, Option<i64>> = HashMap::new();
        let mut hold_order: Vec<&str> = Vec::new();
        for record in &batch.hold_expiries {
            if last_hold
                .insert(&record.sku, record.next_expiry_ms)
                .is_none()
            {
                hold_order.push(&record.sku);
            }
        }
        for sku in hold_order {
            match last_hold[sku] {
                Some(at_ms) => {
                    rows.hold_upserts.0.push(sku);
                    rows.hold_upserts.1.push(at_ms);
                }
                None => rows.hold_deletes.push(sku),
            }
        }
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for record in &batch.reservations {
            let r = &mut rows.reservations;
            match by_id.get(record.id.as_str()) {
                Some(&at) => {
                    if let Some(refusal) = &record.refusal_json {
                        r.refusal[at] = Some(refusal);
                    }
                }
                None => {
                    by_id.insert(&record.id, r.id.len());
                    r.id.push(&record.id);
                    r.request.push(&record.request_json);
                    r.refusal.push(record.refusal_json.as_deref());
                    r.created_at_ms.push(record.created_at_ms);
                }
            }
        }
        let mut by_event: HashMap<(&str, u64), usize> = HashMap::new();
        for record in &batch.outcomes {
            let (skus, seqs, outcomes) = &mut rows.outcomes;
            match by_event.get(&(record.sku.as_str(), record.seq)) {
                Some(&at) => outcomes[at] = &record.outcome_json,
                None => {
                    by_event.insert((&record.sku, record.seq), skus.len());
                    skus.push(&record.sku);
                    seqs.push(to_i64("commit", "outcome seq", record.seq)?);
                    outcomes.push(&record.outcome_json);
                }
            }
        }
        let mut parked: HashMap<(&str, u64), ()> = HashMap::new();
        let letters = &mut rows.dead_letters;
        letters.newest_expired_at_ms = i64::MIN;
        for r in &batch.dead_letters {
            letters.newest_expired_at_ms = letters.newest_expired_at_ms.max(r.expired_at_ms);
            if parked.insert((&r.sku, r.parked_seq), ()).is_some() {
                continue;
            }
            letters.sku.push(&r.sku);
            letters
                .parked_seq
                .push(to_i64("commit", "parked seq", r.parked_seq)?);
            letters
                .expired_seq
                .push(to_i64("commit", "expired seq", r.expired_seq)?);
            letters.key.push(&r.idempotency_key);
            letters.source.push(&r.source);
            letters.kind.push(&r.kind);
            letters.movement.push(&r.movement_json);
            letters.reason.push(&r.reason);
            letters.parked_at_ms.push(r.parked_at_ms);
            letters.expired_at_ms.push(r.expired_at_ms);
            letters.keep_until_ms.push(r.keep_until_ms);
        }
        Ok(rows)
    }

    /// The statements to run, in order, with their parameters (tables without rows in this
    /// batch are skipped).
    fn writes(&self) -> Vec<(&'static str, Vec<&(dyn ToSql + Sync)>)> {
        let mut writes: Vec<(&'static str, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
        let e = &self.events;
        if !e.sku.is_empty() {
            writes.push((
                INSERT_EVENTS,
                vec![
                    &e.sku,
                    &e.seq,
                    &e.key,
                    &e.key_expires_at_ms,
                    &e.recorded_at_ms,
                    &e.movement,
                    &e.source,
                    &e.kind,
                    &e.movement_hash,
                ],
            ));
        }
        let s = &self.snapshots;
        if !s.0.is_empty() {
            writes.push((UPSERT_SNAPSHOTS, vec![&s.0, &s.1, &s.2]));
        }
        let o = &self.offsets;
        if !o.0.is_empty() {
            writes.push((UPSERT_OFFSETS, vec![&o.0, &o.1, &o.2, &o.3]));
        }
        let h = &self.hold_upserts;
        if !h.0.is_empty() {
            writes.push((UPSERT_HOLD_EXPIRIES, vec![&h.0, &h.1]));
        }
        if !self.hold_deletes.is_empty() {
            writes.push((DELETE_HOLD_EXPIRIES, vec![&self.hold_deletes]));
        }
        let r = &self.reservations;
        if !r.id.is_empty() {
            writes.push((
                UPSERT_RESERVATIONS,
                vec![&r.id, &r.request, &r.refusal, &r.created_at_ms],
            ));
        }
        let o = &self.outcomes;
        if !o.0.is_empty() {
            writes.push((UPSERT_OUTCOMES, vec![&o.0, &o.1, &o.2]));
        }
        let d = &self.dead_letters;
        if !d.sku.is_empty() {
            writes.push((
                INSERT_DEAD_LETTERS,
                vec![
                    &d.sku,
                    &d.parked_seq,
                    &d.expired_seq,
                    &d.key,
                    &d.source,
                    &d.kind,
                    &d.movement,
                    &d.reason,
                    &d.parked_at_ms,
                    &d.expired_at_ms,
                    &d.keep_until_ms,
                ],
            ));
            writes.push((PRUNE_DEAD_LETTERS, vec![&d.newest_expired_at_ms]));
        }
        writes
    }
}

/// Reads the fences' scopes `FOR SHARE` inside the commit's transaction and refuses the
/// batch when one is older than its scope's epoch. The share lock makes a concurrent
/// [`crate::store::Store::acquire_epoch`] (an `UPDATE` of the row) wait for this commit,
/// or this read wait for it and then see its new epoch: either the whole batch is ordered
/// before the new epoch, or it is refused.
async fn check_fences(
    tx: &deadpool_postgres::Transaction<'_>,
    fences: &[Fence],
) -> Result<(), StoreError> {
    let err = pg_error("commit");
    let scopes: Vec<&str> = fences.iter().map(|fence| fence.scope.as_str()).collect();
    let statement = tx.prepare_cached(LOCK_FENCES).await.map_err(&err)?;
    let mut current: HashMap<String, i64> = HashMap::new();
    for row in tx.query(&statement, &[&scopes]).await.map_err(&err)? {
        current.insert(row.try_get(0).map_err(&err)?, row.try_get(1).map_err(&err)?);
    }
    for fence in fences {
        let stored = current.get(&fence.scope).copied().unwrap_or(0).max(0) as u64;
        if stored > fence.epoch {
            return Err(StoreError::Fenced {
                scope: fence.scope.clone(),
                epoch: fence.epoch,
                current: stored,
            });
        }
    }
    Ok(())
}

/// Counts the batch's events that are stored exactly as given (same sku, seq, key and
/// movement bytes).
const COUNT_STORED: &str = "
SELECT count(*) FROM events e
JOIN UNNEST($1::text[], $2::bigint[], $3::text[], $4::bytea[]) AS b(sku, seq, key, movement)
  ON e.sku = b.sku AND e.seq = b.seq AND e.idempotency_key = b.key AND e.movement = b.movement";

/// Writes `batch` in one transaction on `client` (see the module doc).
///
/// A batch whose every event is already stored exactly as given is acknowledged without
/// writing: that is the ledger writing a batch again after a commit whose acknowledgement
/// was lost (the connection failed after `COMMIT` was sent), and the first attempt wrote
/// it whole. Any other duplicate (sku, seq) fails the batch.
///
/// Errors: [`StoreError::Fenced`] when a fence is stale (nothing written);
/// [`StoreError::Backend`] (operation `commit`) with the server's message, e.g. for a
/// duplicate (sku, seq): the whole batch is rolled back.
pub(super) async fn write_batch(
    client: &mut deadpool_postgres::Object,
    batch: &CommitBatch,
) -> Result<(), StoreError> {
    let rows = Rows::of(batch)?;
    let failure = match write_rows(client, batch, &rows).await {
        Ok(()) => return Ok(()),
        Err(Failure::Store(error)) => return Err(error),
        Err(Failure::Sql(error)) => error,
    };
    let duplicate = failure.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION);
    if duplicate && already_stored(client, &rows).await {
        tracing::warn!(
            events = batch.events.len(),
            "a group commit written again was already stored whole (an acknowledgement was lost)"
        );
        return Ok(());
    }
    Err(pg_error("commit")(failure))
}

/// Why [`write_rows`] failed: a refusal of ours, or the server's error.
enum Failure {
    Store(StoreError),
    Sql(tokio_postgres::Error),
}

async fn write_rows(
    client: &mut deadpool_postgres::Object,
    batch: &CommitBatch,
    rows: &Rows<'_>,
) -> Result<(), Failure> {
    let writes = rows.writes();
    let tx = client.transaction().await.map_err(Failure::Sql)?;
    if !batch.fences.is_empty() {
        check_fences(&tx, &batch.fences)
            .await
            .map_err(Failure::Store)?;
    }
    // Prepared once per connection (the statement cache), then every statement is sent
    // before the first answer is awaited: one round trip for the writes.
    let statements =
        futures::future::try_join_all(writes.iter().map(|(sql, _)| tx.prepare_cached(sql)))
            .await
            .map_err(Failure::Sql)?;
    futures::future::try_join_all(
        statements
            .iter()
            .zip(&writes)
            .map(|(statement, (_, params))| tx.execute(statement, params)),
    )
    .await
    .map_err(Failure::Sql)?;
    tx.commit().await.map_err(Failure::Sql)
}

/// Whether every event of `rows` is stored exactly as given (the failed transaction was
/// rolled back first: its `ROLLBACK` is sent before this query on the same connection).
async fn already_stored(client: &deadpool_postgres::Object, rows: &Rows<'_>) -> bool {
    let e = &rows.events;
    if e.sku.is_empty() {
        return false;
    }
    let found = client
        .query_one(COUNT_STORED, &[&e.sku, &e.seq, &e.key, &e.movement])
        .await
        .and_then(|row| row.try_get::<_, i64>(0));
    matches!(found, Ok(count) if count == e.sku.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        DeadLetterRecord, EventOutcomeRecord, HoldExpiryRecord, OffsetWatermark, ReservationRecord,
        SnapshotRecord,
    };

    fn event(movement: Vec<u8>) -> EventRecord {
        EventRecord {
            sku: "A".into(),
            seq: 1,
            idempotency_key: "k".into(),
            key_expires_at_ms: 0,
            recorded_at_ms: 0,
            movement,
            movement_hash: None,
        }
    }

    #[test]
    fn source_and_kind_come_from_either_stored_format() {
        let movement = crate::domain::Movement {
            schema_version: crate::domain::SCHEMA_VERSION,
            sku: "A".into(),
            idempotency_key: "k".into(),
            source: "wms-north".into(),
            occurred_at_ms: None,
            kind: crate::domain::MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 3,
            },
        };
        assert_eq!(
            source_and_kind(&event(codec::encode_movement(&movement))),
            (Some("wms-north".into()), Some("receipt".into()))
        );
        assert_eq!(
            source_and_kind(&event(
                br#"{"sku":"A","source":"shop:alpha","type":"sale"}"#.to_vec()
            )),
            (Some("shop:alpha".into()), Some("sale".into()))
        );
        assert_eq!(source_and_kind(&event(b"{}".to_vec())), (None, None));
        assert_eq!(
            source_and_kind(&event(vec![codec::MOVEMENT_V1; 8])),
            (None, None)
        );
    }

    #[test]
    fn rows_of_one_key_merge_as_row_by_row_statements_would_leave_them() {
        let snapshot = |seq: u64, state: &[u8]| SnapshotRecord {
            sku: "A".into(),
            seq,
            state: state.to_vec(),
        };
        let offset = |next_offset| OffsetWatermark {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            next_offset,
        };
        let hold = |sku: &str, at| HoldExpiryRecord {
            sku: sku.into(),
            next_expiry_ms: at,
        };
        let reservation = |request: &str, refusal: Option<&str>| ReservationRecord {
            id: "r".into(),
            request_json: request.into(),
            refusal_json: refusal.map(str::to_owned),
            created_at_ms: request.len() as i64,
        };
        let outcome = |json: &str| EventOutcomeRecord {
            sku: "A".into(),
            seq: 2,
            outcome_json: json.into(),
        };
        let letter = |reason: &str, expired_at_ms| DeadLetterRecord {
            sku: "A".into(),
            parked_seq: 1,
            expired_seq: 2,
            idempotency_key: "k".into(),
            source: "s".into(),
            kind: "sale".into(),
            movement_json: "{}".into(),
            reason: reason.into(),
            parked_at_ms: 0,
            expired_at_ms,
            keep_until_ms: 9,
        };
        let batch = CommitBatch {
            snapshots: vec![
                snapshot(5, b"five"),
                snapshot(3, b"three"),
                snapshot(7, b"seven"),
            ],
            offsets: vec![offset(9), offset(4)],
            hold_expiries: vec![
                hold("A", Some(1)),
                hold("B", Some(2)),
                hold("A", None),
                hold("B", Some(3)),
            ],
            reservations: vec![
                reservation("first", None),
                reservation("second", Some("no")),
                reservation("third", None),
            ],
            outcomes: vec![outcome("one"), outcome("two")],
            dead_letters: vec![letter("first", 4), letter("second", 6)],
            ..CommitBatch::default()
        };
        let rows = Rows::of(&batch).unwrap();
        assert_eq!(rows.snapshots.0, vec!["A"]);
        assert_eq!(
            (rows.snapshots.1[0], rows.snapshots.2[0]),
            (7, &b"seven"[..])
        );
        assert_eq!(rows.offsets.3, vec![9]);
        assert_eq!(rows.hold_upserts, (vec!["B"], vec![3]));
        assert_eq!(rows.hold_deletes, vec!["A"]);
        assert_eq!(rows.reservations.request, vec!["first"]);
        assert_eq!(rows.reservations.refusal, vec![Some("no")]);
        assert_eq!(rows.reservations.created_at_ms, vec![5]);
        assert_eq!(rows.outcomes.2, vec!["two"]);
        assert_eq!(rows.dead_letters.reason, vec!["first"]);
        assert_eq!(rows.dead_letters.newest_expired_at_ms, 6);
        // Every table with rows gets its statement; the dead letters also their pruning.
        assert_eq!(rows.writes().len(), 8);
        assert!(
            Rows::of(&CommitBatch::default())
                .unwrap()
                .writes()
                .is_empty()
        );
    }

    #[test]
    fn a_sequence_number_beyond_bigint_is_refused_before_anything_is_sent() {
        let batch = CommitBatch {
            events: vec![EventRecord {
                seq: u64::MAX,
                ..event(b"{}".to_vec())
            }],
            ..CommitBatch::default()
        };
        assert!(matches!(
            Rows::of(&batch),
            Err(StoreError::Backend {
                operation: "commit",
                ..
            })
        ));
    }
}
