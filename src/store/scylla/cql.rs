//! The CQL text of every statement and of the schema of the ScyllaDB backend, built from
//! the configured keyspace and replication; no I/O (the backend prepares them at open).
//!
//! Owns: [`Stmt`] (one variant per prepared statement, with its bind order), [`schema`]
//! (the DDL), [`TABLES`], [`validate_keyspace`] and [`replication_map`].
//!
//! May depend on: `config` (the replication settings).

use crate::config::ScyllaReplication;

/// Tables the backend needs (checked at open when the schema is not created).
pub const TABLES: &[&str] = &[
    "sku_log",
    "sku_history",
    "history",
    "history_hours",
    "skus",
    "hold_expiries",
    "offsets",
    "pushed",
    "push_log",
    "push_log_days",
    "config_audit",
    "reservations",
    "order_lines",
    "dead_letters",
    "ownership",
    "ownership_scopes",
];

/// Columns added to tables after their first layout, as (table, column, CQL type):
/// `CREATE TABLE IF NOT EXISTS` leaves an existing table as it is, so [`missing_columns`]
/// names the `ALTER TABLE … ADD` that a keyspace created earlier still needs.
pub const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("ownership", "expires_at_ms", "bigint"),
    ("ownership", "payload", "text"),
];

/// The query of the columns a keyspace's tables have (binds: keyspace name); its rows are
/// `(table_name, column_name)`.
pub const SELECT_COLUMNS: &str =
    "SELECT table_name, column_name FROM system_schema.columns WHERE keyspace_name = ?";

/// The `ALTER TABLE … ADD` statements of [`ADDED_COLUMNS`] missing from `present` (the
/// (table, column) pairs [`SELECT_COLUMNS`] found in keyspace `ks`), in list order.
pub fn missing_columns(
    ks: &str,
    present: &std::collections::BTreeSet<(String, String)>,
) -> Vec<String> {
    ADDED_COLUMNS
        .iter()
        .filter(|(table, column, _)| {
            !present.contains(&((*table).to_owned(), (*column).to_owned()))
        })
        .map(|(table, column, kind)| format!("ALTER TABLE {ks}.{table} ADD {column} {kind}"))
        .collect()
}

/// Row kinds of `sku_log` (its first clustering column).
pub mod kind {
    /// A snapshot: `(0, '', seq, epoch)`.
    pub const SNAPSHOT: i32 = 0;
    /// An event: `(1, '', seq, epoch)`.
    pub const EVENT: i32 = 1;
    /// An idempotency key: `(2, key, seq, epoch)`, written with a TTL.
    pub const KEY: i32 = 2;
    /// The history marker (`(3, '', 0, 0)`): the seq range of the SKU's last batch, whose
    /// history rows a crash may have left unwritten.
    pub const MARKER: i32 = 3;
}

/// Defines [`Stmt`] and `Stmt::ALL` from one list, so no statement can be left out of
/// `ALL` (the list the backend prepares at open).
macro_rules! statements {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$variant_meta:meta])* $variant:ident,)*
    }) => {
        $(#[$meta])* $vis enum $name { $($(#[$variant_meta])* $variant,)* }
        impl $name {
            /// Every statement, in declaration order (the order the backend prepares them in).
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
        }
    };
}

statements! {
/// One prepared statement. The comment of each variant gives its bind values in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stmt {
    /// sku, seq, epoch, writer, idempotency_key, key_expires_at_ms, recorded_at_ms, body,
    /// outcome, cursor.
    InsertEvent,
    /// sku, key, seq, epoch, key_expires_at_ms, movement_hash, ttl.
    InsertKey,
    /// sku, seq, epoch, writer, body.
    InsertSnapshot,
    /// outcome, sku, seq, epoch.
    SetOutcome,
    /// sku, seq (events below it are deleted).
    PruneEvents,
    /// sku, seq (snapshots below it are deleted).
    PruneSnapshots,
    /// sku, history_from, history_to.
    SetMarker,
    /// sku: the whole partition.
    SelectLog,
    /// sku, from seq (inclusive), to seq (exclusive): the SKU's retained events.
    SelectEventsFrom,
    /// sku, key: the key's rows.
    SelectKey,
    /// sku, seq: the event rows at one seq (all epochs), with their key (none on a row
    /// that only carries an outcome).
    SelectEventAt,
    /// sku, bucket, seq, epoch, writer, idempotency_key, key_expires_at_ms,
    /// recorded_at_ms, movement, outcome, cursor.
    InsertSkuHistory,
    /// outcome, sku, bucket, seq, epoch.
    SetSkuHistoryOutcome,
    /// sku, bucket, from seq (inclusive), to seq (exclusive).
    SelectSkuHistory,
    /// hour, cursor, sku, seq, epoch, idempotency_key, key_expires_at_ms, recorded_at_ms,
    /// movement, outcome.
    InsertHistory,
    /// hour, cursor after (exclusive), cursor before (exclusive).
    SelectHistory,
    /// hour.
    InsertHistoryHour,
    /// first hour, last hour (both inclusive).
    SelectHistoryHours,
    /// bucket, sku.
    InsertSku,
    /// bucket, sku after (exclusive), limit.
    SelectSkus,
    /// bucket, sku.
    SelectSku,
    /// bucket, sku, next_expiry_ms.
    UpsertHoldExpiry,
    /// bucket, sku.
    DeleteHoldExpiry,
    /// bucket, sku after (exclusive), limit.
    SelectHoldExpiries,
    /// grp, topic, part, next_offset, write timestamp (= next_offset).
    UpsertOffset,
    /// grp.
    SelectOffsets,
    /// channel, sku, quantity, pushed_at_ms.
    UpsertPushed,
    /// channel.
    SelectPushed,
    /// day, at_ms, id, channel, sku, quantity, change_from, outcome, detail, requests.
    InsertPushLog,
    /// day.
    InsertPushLogDay,
    /// first day, last day (both inclusive).
    SelectPushLogDays,
    /// day, at_ms from (inclusive), at_ms to (exclusive).
    SelectPushLog,
    /// day, at_ms before (exclusive).
    CountPushLog,
    /// day, at_ms before (exclusive).
    DeletePushLogBefore,
    /// day.
    DeletePushLogDay,
    /// at_ms, id, action, actor, config_hash, config_json.
    InsertConfigAudit,
    /// limit.
    SelectConfigAudit,
    /// write timestamp, request, created_at_ms, id.
    SetReservationRequest,
    /// refusal, id.
    SetReservationRefusal,
    /// id.
    SelectReservation,
    /// ttl, sku, channel, order_id, line_id.
    SetOrderLineSku,
    /// ttl, write timestamp (= version in µs), version, channel, order_id, line_id.
    SetOrderLineVersion,
    /// ttl, write timestamp (= seen_at_ms in µs), seen_at_ms, channel, order_id, line_id.
    SetOrderLineSeen,
    /// channel, order_id.
    SelectOrderLines,
    /// expired_at_ms, sku, parked_seq, expired_seq, idempotency_key, source, kind, movement,
    /// reason, parked_at_ms, keep_until_ms, ttl.
    InsertDeadLetter,
    /// (none): the newest first.
    SelectDeadLetters,
    /// scope, owner, expires_at_ms (lightweight transaction; epoch 1, empty payload).
    InsertOwnership,
    /// new epoch, owner, expires_at_ms, scope, expected epoch (lightweight transaction;
    /// empty payload).
    UpdateOwnership,
    /// scope.
    SelectOwnership,
    /// scope, epoch, owner, expires_at_ms, payload (lightweight transaction).
    InsertLease,
    /// epoch, owner, expires_at_ms, payload, scope, expected epoch, expected owner,
    /// expected expires_at_ms (lightweight transaction).
    UpdateLease,
    /// epoch, owner, expires_at_ms, payload, scope, expected epoch, expected owner: a row
    /// whose `expires_at_ms` was never written (lightweight transaction).
    UpdateUnleased,
    /// scope, owner, epoch (lightweight transaction): `expires_at_ms = 0`.
    ReleaseLease,
    /// scope: epoch, owner, expires_at_ms, payload.
    SelectLease,
    /// scope: its entry in the index of scopes.
    InsertOwnershipScope,
    /// from scope (inclusive), limit: the index of scopes, ascending.
    SelectOwnershipScopes,
    /// keyspace name: the tables present (reads `system_schema`).
    SelectTables,
}
}

impl Stmt {
    /// True for the lightweight transactions (serial consistency, never retried blindly).
    pub fn is_lwt(self) -> bool {
        matches!(
            self,
            Stmt::InsertOwnership
                | Stmt::UpdateOwnership
                | Stmt::InsertLease
                | Stmt::UpdateLease
                | Stmt::UpdateUnleased
                | Stmt::ReleaseLease
        )
    }

    /// The statement's CQL text for keyspace `ks` (already validated).
    pub fn cql(self, ks: &str) -> String {
        const LOG_COLUMNS: &str = "kind, name, seq, epoch, writer, idempotency_key, \
             key_expires_at_ms, recorded_at_ms, body, movement_hash, outcome, history_from, \
             history_to, cursor";
        const EVENT_COLUMNS: &str = "seq, epoch, writer, idempotency_key, key_expires_at_ms, \
             recorded_at_ms, body, outcome, cursor";
        const HISTORY_EVENT_COLUMNS: &str = "seq, epoch, writer, idempotency_key, \
             key_expires_at_ms, recorded_at_ms, movement, outcome, cursor";
        const DEAD_LETTER_COLUMNS: &str = "expired_at_ms, sku, parked_seq, expired_seq, \
             idempotency_key, source, kind, movement, reason, parked_at_ms, keep_until_ms";
        let event = kind::EVENT;
        match self {
            Stmt::InsertEvent => format!(
                "INSERT INTO {ks}.sku_log (sku, kind, name, seq, epoch, writer, idempotency_key, \
                 key_expires_at_ms, recorded_at_ms, body, outcome, cursor) \
                 VALUES (?, {event}, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            Stmt::InsertKey => format!(
                "INSERT INTO {ks}.sku_log (sku, kind, name, seq, epoch, key_expires_at_ms, \
                 movement_hash) VALUES (?, {}, ?, ?, ?, ?, ?) USING TTL ?",
                kind::KEY
            ),
            Stmt::InsertSnapshot => format!(
                "INSERT INTO {ks}.sku_log (sku, kind, name, seq, epoch, writer, body) \
                 VALUES (?, {}, '', ?, ?, ?, ?)",
                kind::SNAPSHOT
            ),
            Stmt::SetOutcome => format!(
                "UPDATE {ks}.sku_log SET outcome = ? \
                 WHERE sku = ? AND kind = {event} AND name = '' AND seq = ? AND epoch = ?"
            ),
            Stmt::PruneEvents => format!(
                "DELETE FROM {ks}.sku_log WHERE sku = ? AND kind = {event} AND name = '' AND seq < ?"
            ),
            Stmt::PruneSnapshots => format!(
                "DELETE FROM {ks}.sku_log WHERE sku = ? AND kind = {} AND name = '' AND seq < ?",
                kind::SNAPSHOT
            ),
            Stmt::SetMarker => format!(
                "INSERT INTO {ks}.sku_log (sku, kind, name, seq, epoch, history_from, history_to) \
                 VALUES (?, {}, '', 0, 0, ?, ?)",
                kind::MARKER
            ),
            Stmt::SelectLog => format!("SELECT {LOG_COLUMNS} FROM {ks}.sku_log WHERE sku = ?"),
            Stmt::SelectEventsFrom => format!(
                "SELECT {EVENT_COLUMNS} FROM {ks}.sku_log \
                 WHERE sku = ? AND kind = {event} AND name = '' AND seq >= ? AND seq < ?"
            ),
            Stmt::SelectKey => format!(
                "SELECT seq, epoch, key_expires_at_ms, movement_hash FROM {ks}.sku_log \
                 WHERE sku = ? AND kind = {} AND name = ?",
                kind::KEY
            ),
            Stmt::SelectEventAt => format!(
                "SELECT epoch, idempotency_key FROM {ks}.sku_log \
                 WHERE sku = ? AND kind = {event} AND name = '' AND seq = ?"
            ),
            Stmt::InsertSkuHistory => format!(
                "INSERT INTO {ks}.sku_history (sku, bucket, seq, epoch, writer, idempotency_key, \
                 key_expires_at_ms, recorded_at_ms, movement, outcome, cursor) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            Stmt::SetSkuHistoryOutcome => format!(
                "UPDATE {ks}.sku_history SET outcome = ? \
                 WHERE sku = ? AND bucket = ? AND seq = ? AND epoch = ?"
            ),
            Stmt::SelectSkuHistory => format!(
                "SELECT {HISTORY_EVENT_COLUMNS} FROM {ks}.sku_history \
                 WHERE sku = ? AND bucket = ? AND seq >= ? AND seq < ?"
            ),
            Stmt::InsertHistory => format!(
                "INSERT INTO {ks}.history (hour, cursor, sku, seq, epoch, idempotency_key, \
                 key_expires_at_ms, recorded_at_ms, movement, outcome) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            Stmt::SelectHistory => format!(
                "SELECT cursor, sku, seq, epoch, idempotency_key, key_expires_at_ms, \
                 recorded_at_ms, movement, outcome FROM {ks}.history \
                 WHERE hour = ? AND cursor > ? AND cursor < ?"
            ),
            Stmt::InsertHistoryHour => {
                format!("INSERT INTO {ks}.history_hours (shard, hour) VALUES (0, ?)")
            }
            Stmt::SelectHistoryHours => format!(
                "SELECT hour FROM {ks}.history_hours WHERE shard = 0 AND hour >= ? AND hour <= ?"
            ),
            Stmt::InsertSku => format!("INSERT INTO {ks}.skus (bucket, sku) VALUES (?, ?)"),
            Stmt::SelectSkus => {
                format!("SELECT sku FROM {ks}.skus WHERE bucket = ? AND sku > ? LIMIT ?")
            }
            Stmt::SelectSku => format!("SELECT sku FROM {ks}.skus WHERE bucket = ? AND sku = ?"),
            Stmt::UpsertHoldExpiry => format!(
                "INSERT INTO {ks}.hold_expiries (bucket, sku, next_expiry_ms) VALUES (?, ?, ?)"
            ),
            Stmt::DeleteHoldExpiry => {
                format!("DELETE FROM {ks}.hold_expiries WHERE bucket = ? AND sku = ?")
            }
            Stmt::SelectHoldExpiries => format!(
                "SELECT sku, next_expiry_ms FROM {ks}.hold_expiries \
                 WHERE bucket = ? AND sku > ? LIMIT ?"
            ),
            Stmt::UpsertOffset => format!(
                "INSERT INTO {ks}.offsets (grp, topic, part, next_offset) VALUES (?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ),
            Stmt::SelectOffsets => {
                format!("SELECT grp, topic, part, next_offset FROM {ks}.offsets WHERE grp = ?")
            }
            Stmt::UpsertPushed => format!(
                "INSERT INTO {ks}.pushed (channel, sku, quantity, pushed_at_ms) VALUES (?, ?, ?, ?)"
            ),
            Stmt::SelectPushed => format!(
                "SELECT channel, sku, quantity, pushed_at_ms FROM {ks}.pushed WHERE channel = ?"
            ),
            Stmt::InsertPushLog => format!(
                "INSERT INTO {ks}.push_log (day, at_ms, id, channel, sku, quantity, change_from, \
                 outcome, detail, requests) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            Stmt::InsertPushLogDay => {
                format!("INSERT INTO {ks}.push_log_days (shard, day) VALUES (0, ?)")
            }
            Stmt::SelectPushLogDays => format!(
                "SELECT day FROM {ks}.push_log_days WHERE shard = 0 AND day >= ? AND day <= ?"
            ),
            Stmt::SelectPushLog => format!(
                "SELECT channel, sku, quantity, change_from, outcome, detail, requests, at_ms \
                 FROM {ks}.push_log WHERE day = ? AND at_ms >= ? AND at_ms < ?"
            ),
            Stmt::CountPushLog => {
                format!("SELECT COUNT(*) FROM {ks}.push_log WHERE day = ? AND at_ms < ?")
            }
            Stmt::DeletePushLogBefore => {
                format!("DELETE FROM {ks}.push_log WHERE day = ? AND at_ms < ?")
            }
            Stmt::DeletePushLogDay => {
                format!("DELETE FROM {ks}.push_log_days WHERE shard = 0 AND day = ?")
            }
            Stmt::InsertConfigAudit => format!(
                "INSERT INTO {ks}.config_audit (shard, at_ms, id, action, actor, config_hash, \
                 config_json) VALUES (0, ?, ?, ?, ?, ?, ?)"
            ),
            Stmt::SelectConfigAudit => format!(
                "SELECT at_ms, action, actor, config_hash, config_json FROM {ks}.config_audit \
                 WHERE shard = 0 LIMIT ?"
            ),
            Stmt::SetReservationRequest => format!(
                "UPDATE {ks}.reservations USING TIMESTAMP ? SET request = ?, created_at_ms = ? \
                 WHERE id = ?"
            ),
            Stmt::SetReservationRefusal => {
                format!("UPDATE {ks}.reservations SET refusal = ? WHERE id = ?")
            }
            Stmt::SelectReservation => format!(
                "SELECT id, request, refusal, created_at_ms FROM {ks}.reservations WHERE id = ?"
            ),
            Stmt::SetOrderLineSku => format!(
                "UPDATE {ks}.order_lines USING TTL ? SET sku = ? \
                 WHERE channel = ? AND order_id = ? AND line_id = ?"
            ),
            Stmt::SetOrderLineVersion => format!(
                "UPDATE {ks}.order_lines USING TTL ? AND TIMESTAMP ? SET version = ? \
                 WHERE channel = ? AND order_id = ? AND line_id = ?"
            ),
            Stmt::SetOrderLineSeen => format!(
                "UPDATE {ks}.order_lines USING TTL ? AND TIMESTAMP ? SET seen_at_ms = ? \
                 WHERE channel = ? AND order_id = ? AND line_id = ?"
            ),
            Stmt::SelectOrderLines => format!(
                "SELECT channel, order_id, line_id, sku, version, seen_at_ms FROM {ks}.order_lines \
                 WHERE channel = ? AND order_id = ? LIMIT 10000"
            ),
            Stmt::InsertDeadLetter => format!(
                "INSERT INTO {ks}.dead_letters (shard, {DEAD_LETTER_COLUMNS}) \
                 VALUES (0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ),
            Stmt::SelectDeadLetters => {
                format!("SELECT {DEAD_LETTER_COLUMNS} FROM {ks}.dead_letters WHERE shard = 0")
            }
            Stmt::InsertOwnership => format!(
                "INSERT INTO {ks}.ownership (scope, epoch, owner, expires_at_ms, payload) \
                 VALUES (?, 1, ?, ?, '') IF NOT EXISTS"
            ),
            Stmt::UpdateOwnership => format!(
                "UPDATE {ks}.ownership SET epoch = ?, owner = ?, expires_at_ms = ?, payload = '' \
                 WHERE scope = ? IF epoch = ?"
            ),
            Stmt::SelectOwnership => {
                format!("SELECT epoch, owner FROM {ks}.ownership WHERE scope = ?")
            }
            Stmt::InsertLease => format!(
                "INSERT INTO {ks}.ownership (scope, epoch, owner, expires_at_ms, payload) \
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
            ),
            Stmt::UpdateLease => format!(
                "UPDATE {ks}.ownership SET epoch = ?, owner = ?, expires_at_ms = ?, payload = ? \
                 WHERE scope = ? IF epoch = ? AND owner = ? AND expires_at_ms = ?"
            ),
            Stmt::UpdateUnleased => format!(
                "UPDATE {ks}.ownership SET epoch = ?, owner = ?, expires_at_ms = ?, payload = ? \
                 WHERE scope = ? IF epoch = ? AND owner = ? AND expires_at_ms = null"
            ),
            Stmt::ReleaseLease => format!(
                "UPDATE {ks}.ownership SET expires_at_ms = 0 WHERE scope = ? \
                 IF owner = ? AND epoch = ?"
            ),
            Stmt::SelectLease => format!(
                "SELECT epoch, owner, expires_at_ms, payload FROM {ks}.ownership WHERE scope = ?"
            ),
            Stmt::InsertOwnershipScope => {
                format!("INSERT INTO {ks}.ownership_scopes (shard, scope) VALUES (0, ?)")
            }
            Stmt::SelectOwnershipScopes => format!(
                "SELECT scope FROM {ks}.ownership_scopes WHERE shard = 0 AND scope >= ? LIMIT ?"
            ),
            Stmt::SelectTables => {
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?".to_owned()
            }
        }
    }

    /// How many values the statement binds (its `?` markers).
    pub fn bind_count(self) -> usize {
        self.cql("ks").matches('?').count()
    }
}

/// Checks that `keyspace` is a plain CQL identifier (it is pasted into statement text):
/// 1 to 48 characters of `a-z`, `0-9` and `_`, starting with a letter (the rule is
/// [`crate::config::keyspace_problem`], shared with `check-config`).
///
/// Errors: a message naming the rule.
pub fn validate_keyspace(keyspace: &str) -> Result<(), String> {
    crate::config::keyspace_problem(keyspace).map_or(Ok(()), Err)
}

/// The keyspace's replication map as CQL text, e.g.
/// `{'class': 'NetworkTopologyStrategy', 'dc1': 3}`.
///
/// Errors: an unknown class, a factor of 0, a datacenter name that is not
/// `[A-Za-z0-9_.-]+`, or datacenters with `SimpleStrategy`.
pub fn replication_map(replication: &ScyllaReplication) -> Result<String, String> {
    let problems = replication.problems();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    if replication.class == "SimpleStrategy" {
        return Ok(format!(
            "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            replication.factor
        ));
    }
    if replication.datacenters.is_empty() {
        return Ok(format!(
            "{{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
            replication.factor
        ));
    }
    let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_owned()];
    for (datacenter, factor) in &replication.datacenters {
        parts.push(format!("'{datacenter}': {factor}"));
    }
    Ok(format!("{{{}}}", parts.join(", ")))
}

/// The schema: `CREATE KEYSPACE` with the configured replication, then every table, each
/// `IF NOT EXISTS` (running it again changes nothing).
///
/// Errors: see [`validate_keyspace`] and [`replication_map`].
pub fn schema(keyspace: &str, replication: &ScyllaReplication) -> Result<Vec<String>, String> {
    validate_keyspace(keyspace)?;
    let ks = keyspace;
    let map = replication_map(replication)?;
    Ok(vec![
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {map}"),
        // One partition per SKU: events (pruned below the snapshot), keys (TTL), snapshots
        // and the history marker, so that a SKU's part of a group commit is one
        // single-partition batch (docs/scylla.md).
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.sku_log (sku text, kind int, name text, seq bigint, \
             epoch bigint, writer text, idempotency_key text, key_expires_at_ms bigint, \
             recorded_at_ms bigint, body blob, movement_hash bigint, outcome text, \
             history_from bigint, history_to bigint, cursor bigint, \
             PRIMARY KEY ((sku), kind, name, seq, epoch))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.sku_history (sku text, bucket bigint, seq bigint, \
             epoch bigint, writer text, idempotency_key text, key_expires_at_ms bigint, \
             recorded_at_ms bigint, movement blob, outcome text, cursor bigint, \
             PRIMARY KEY ((sku, bucket), seq, epoch))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.history (hour bigint, cursor bigint, sku text, \
             seq bigint, epoch bigint, idempotency_key text, key_expires_at_ms bigint, \
             recorded_at_ms bigint, movement blob, outcome text, \
             PRIMARY KEY ((hour), cursor, sku, seq, epoch))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.history_hours (shard int, hour bigint, \
             PRIMARY KEY ((shard), hour))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.skus (bucket int, sku text, \
             PRIMARY KEY ((bucket), sku))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.hold_expiries (bucket int, sku text, \
             next_expiry_ms bigint, PRIMARY KEY ((bucket), sku))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.offsets (grp text, topic text, part int, \
             next_offset bigint, PRIMARY KEY ((grp), topic, part))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.pushed (channel text, sku text, quantity bigint, \
             pushed_at_ms bigint, PRIMARY KEY ((channel), sku))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.push_log (day bigint, at_ms bigint, id bigint, \
             channel text, sku text, quantity bigint, change_from bigint, outcome text, \
             detail text, requests int, PRIMARY KEY ((day), at_ms, id)) \
             WITH CLUSTERING ORDER BY (at_ms DESC, id DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.push_log_days (shard int, day bigint, \
             PRIMARY KEY ((shard), day))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.config_audit (shard int, at_ms bigint, id bigint, \
             action text, actor text, config_hash text, config_json text, \
             PRIMARY KEY ((shard), at_ms, id)) WITH CLUSTERING ORDER BY (at_ms DESC, id DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.reservations (id text PRIMARY KEY, request text, \
             refusal text, created_at_ms bigint)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.order_lines (channel text, order_id text, \
             line_id text, sku text, version bigint, seen_at_ms bigint, \
             PRIMARY KEY ((channel, order_id), line_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.dead_letters (shard int, expired_at_ms bigint, \
             sku text, parked_seq bigint, expired_seq bigint, idempotency_key text, \
             source text, kind text, movement text, reason text, parked_at_ms bigint, \
             keep_until_ms bigint, PRIMARY KEY ((shard), expired_at_ms, sku, parked_seq)) \
             WITH CLUSTERING ORDER BY (expired_at_ms DESC, sku ASC, parked_seq ASC)"
        ),
        // Ownership epochs and leases (written only with lightweight transactions).
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.ownership (scope text PRIMARY KEY, epoch bigint, \
             owner text, expires_at_ms bigint, payload text)"
        ),
        // The index of ownership scopes that lists them by prefix (one partition: a
        // cluster has a few hundred scopes at most).
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.ownership_scopes (shard int, scope text, \
             PRIMARY KEY ((shard), scope))"
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn all_cql() -> Vec<String> {
        let mut texts: Vec<String> = Stmt::ALL.iter().map(|s| s.cql("stocksync")).collect();
        texts.extend(schema("stocksync", &ScyllaReplication::default()).unwrap());
        texts
    }

    #[test]
    fn no_statement_or_ddl_uses_allow_filtering() {
        for text in all_cql() {
            assert!(
                !text.to_ascii_uppercase().contains("ALLOW FILTERING"),
                "{text}"
            );
        }
    }

    #[test]
    fn every_statement_is_listed_once_and_only_ownership_uses_lwt() {
        let mut seen = std::collections::BTreeSet::new();
        for stmt in Stmt::ALL {
            assert!(seen.insert(*stmt), "{stmt:?} listed twice");
        }
        for &stmt in Stmt::ALL {
            let text = stmt.cql("ks");
            let conditional = text.contains(" IF ");
            assert_eq!(conditional, stmt.is_lwt(), "{text}");
        }
    }

    #[test]
    fn every_statement_names_a_table_of_the_keyspace_or_the_schema_tables() {
        for &stmt in Stmt::ALL {
            let text = stmt.cql("inv_eu");
            let names_one = TABLES
                .iter()
                .any(|table| text.contains(&format!("inv_eu.{table} ")));
            assert!(names_one || text.contains("system_schema.tables"), "{text}");
        }
        let ddl = schema("inv_eu", &ScyllaReplication::default()).unwrap();
        for table in TABLES {
            assert!(
                ddl.iter()
                    .any(|t| t.starts_with(&format!("CREATE TABLE IF NOT EXISTS inv_eu.{table} ("))),
                "{table} has no DDL"
            );
        }
        assert_eq!(ddl.len(), TABLES.len() + 1);
    }

    #[test]
    fn bind_counts_follow_the_documented_order() {
        assert_eq!(Stmt::InsertEvent.bind_count(), 10);
        assert_eq!(Stmt::InsertKey.bind_count(), 7);
        assert_eq!(Stmt::InsertSnapshot.bind_count(), 5);
        assert_eq!(Stmt::InsertHistory.bind_count(), 10);
        assert_eq!(Stmt::InsertSkuHistory.bind_count(), 11);
        assert_eq!(Stmt::InsertDeadLetter.bind_count(), 12);
        assert_eq!(Stmt::InsertOwnership.bind_count(), 3);
        assert_eq!(Stmt::UpdateOwnership.bind_count(), 5);
        assert_eq!(Stmt::InsertLease.bind_count(), 5);
        assert_eq!(Stmt::UpdateLease.bind_count(), 8);
        assert_eq!(Stmt::UpdateUnleased.bind_count(), 7);
        assert_eq!(Stmt::ReleaseLease.bind_count(), 3);
        assert_eq!(Stmt::SelectOwnershipScopes.bind_count(), 2);
        assert_eq!(Stmt::SelectLog.bind_count(), 1);
    }

    #[test]
    fn lease_conditions_use_only_and_and_a_created_table_has_the_added_columns() {
        for stmt in [Stmt::UpdateLease, Stmt::UpdateUnleased, Stmt::ReleaseLease] {
            let text = stmt.cql("ks");
            let condition = text.split(" IF ").nth(1).unwrap();
            assert!(!condition.to_ascii_uppercase().contains(" OR "), "{text}");
        }
        let ddl = schema("ks", &ScyllaReplication::default()).unwrap();
        for (table, column, kind) in ADDED_COLUMNS {
            let create = ddl
                .iter()
                .find(|t| t.starts_with(&format!("CREATE TABLE IF NOT EXISTS ks.{table} (")))
                .unwrap();
            assert!(create.contains(&format!(" {column} {kind}")), "{create}");
        }
    }

    #[test]
    fn only_missing_columns_are_added() {
        let mut present = std::collections::BTreeSet::new();
        assert_eq!(
            missing_columns("ks", &present),
            vec![
                "ALTER TABLE ks.ownership ADD expires_at_ms bigint",
                "ALTER TABLE ks.ownership ADD payload text"
            ]
        );
        present.insert(("ownership".to_owned(), "expires_at_ms".to_owned()));
        present.insert(("other".to_owned(), "payload".to_owned()));
        assert_eq!(
            missing_columns("ks", &present),
            vec!["ALTER TABLE ks.ownership ADD payload text"]
        );
        present.insert(("ownership".to_owned(), "payload".to_owned()));
        assert!(missing_columns("ks", &present).is_empty());
        assert!(
            !SELECT_COLUMNS
                .to_ascii_uppercase()
                .contains("ALLOW FILTERING")
        );
    }

    #[test]
    fn replication_follows_the_config() {
        let mut replication = ScyllaReplication::default();
        assert_eq!(
            replication_map(&replication).unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
        );
        replication.datacenters = BTreeMap::from([("eu-west".into(), 3), ("us_east".into(), 2)]);
        assert_eq!(
            replication_map(&replication).unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'eu-west': 3, 'us_east': 2}"
        );
        let ddl = schema("stocksync", &replication).unwrap();
        assert!(ddl[0].starts_with("CREATE KEYSPACE IF NOT EXISTS stocksync WITH replication = {'class': 'NetworkTopologyStrategy', 'eu-west': 3"));
        replication.datacenters.insert("bad'dc".into(), 1);
        assert!(replication_map(&replication).is_err());
        let simple = ScyllaReplication {
            class: "SimpleStrategy".into(),
            factor: 1,
            datacenters: BTreeMap::new(),
        };
        assert_eq!(
            replication_map(&simple).unwrap(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        let zero = ScyllaReplication {
            factor: 0,
            ..simple.clone()
        };
        assert!(replication_map(&zero).is_err());
        let unknown = ScyllaReplication {
            class: "LocalStrategy".into(),
            ..simple
        };
        assert!(replication_map(&unknown).is_err());
    }

    #[test]
    fn keyspace_names_are_plain_identifiers() {
        for good in ["stocksync", "inv_2", "a"] {
            assert!(validate_keyspace(good).is_ok(), "{good}");
        }
        for bad in ["", "2inv", "Stock", "a-b", "ks; DROP", &"k".repeat(49)] {
            assert!(validate_keyspace(bad).is_err(), "{bad}");
        }
    }
}
