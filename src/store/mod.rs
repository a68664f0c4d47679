//! Persistence: the [`Store`] trait and its backends.
//!
//! Owns: the event log (per SKU, ordered by sequence number), snapshots, idempotency keys
//! with expiry, consumed-offset watermarks, last-pushed values per channel listing, the
//! outcome of each event that was not plain `applied`, the dead letters of expired
//! parked movements, and ownership: each scope's fencing epoch and its lease ([`lease`]).
//! The trait is shaped for both the embedded SQLite backend ([`embedded::EmbeddedStore`])
//! and the ScyllaDB backend ([`scylla::ScyllaStore`]): everything is partitioned by SKU (or
//! by channel for pushed values), and one [`CommitBatch`] is one durable write.
//!
//! May depend on: `domain`.

/// The metrics wrapper [`open`] puts around every backend.
pub mod metered;

pub mod codec;
#[doc(hidden)]
pub mod conformance;
pub mod embedded;
pub mod fault;
pub mod history;
pub mod lease;
pub mod postgres;
pub mod scylla;
pub mod wal;

use async_trait::async_trait;
pub use lease::{Lease, LeaseOutcome};
use serde::{Deserialize, Serialize};

/// Errors from a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, SQL, network).
    #[error("store backend error in {operation}: {message}")]
    Backend {
        /// The store method that failed.
        operation: &'static str,
        /// The backend's message.
        message: String,
    },
    /// A stored value could not be decoded.
    #[error("corrupt record for sku {sku}: {message}")]
    Corrupt {
        /// The SKU whose record is bad.
        sku: String,
        /// What was wrong.
        message: String,
    },
    /// An earlier write failed; the store refuses further writes until restart so that no
    /// gap can appear in a SKU's event log.
    #[error("store is poisoned after an earlier write failure: {0}")]
    Poisoned(String),
    /// A commit carried an ownership epoch older than the store's for its scope: another
    /// instance took the scope over ([`Store::acquire_epoch`]), so nothing was written.
    #[error("fenced: {scope} is at epoch {current}, the write carried epoch {epoch}")]
    Fenced {
        /// The ownership scope (e.g. `movements/3`, a topic partition).
        scope: String,
        /// The epoch the write carried.
        epoch: u64,
        /// The store's epoch for the scope.
        current: u64,
    },
}

/// An ownership claim a [`CommitBatch`] is written under: the batch takes effect only while
/// `epoch` is still the newest epoch of `scope` ([`Store::acquire_epoch`]). The next step
/// (several instances) fences each topic partition's SKUs with one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The ownership scope (e.g. `movements/3`, a topic partition); at most 255 bytes.
    pub scope: String,
    /// The epoch the writer acquired for it (1 and up).
    pub epoch: u64,
}

/// One event of a SKU's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// The SKU.
    pub sku: String,
    /// Sequence number within the SKU, starting at 1, without gaps.
    pub seq: u64,
    /// The movement's idempotency key.
    pub idempotency_key: String,
    /// Until when the key is remembered, in milliseconds since the Unix epoch.
    pub key_expires_at_ms: i64,
    /// When the ledger recorded it, in milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
    /// The movement as stored: [`codec::encode_movement`]'s format byte and body (without
    /// the SKU and key, which are the fields above), or JSON text written by an earlier
    /// layout; read it with [`EventRecord::movement`].
    pub movement: Vec<u8>,
    /// The hash of the movement as submitted (`ledger::keys::movement_hash`), kept with the
    /// key so a later movement with the same key and another content is told apart from a
    /// redelivery; `None` when not known (events of earlier builds, tools). Not read back
    /// by [`Store::load_sku`] or [`Store::events`] (always `None` there).
    pub movement_hash: Option<u64>,
}

/// A snapshot of one SKU's derived state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The SKU.
    pub sku: String,
    /// The last event included.
    pub seq: u64,
    /// The state as stored: [`codec::encode_state`]'s format byte and body, or JSON text
    /// written by an earlier layout; read it with [`SnapshotRecord::state`].
    pub state: Vec<u8>,
}

impl EventRecord {
    /// Decodes the stored movement (either format), with this record's SKU and key.
    ///
    /// Errors: [`StoreError::Corrupt`] when the bytes do not decode.
    pub fn movement(&self) -> Result<crate::domain::Movement, StoreError> {
        codec::decode_movement(&self.movement, &self.sku, &self.idempotency_key).map_err(|e| {
            StoreError::Corrupt {
                sku: self.sku.clone(),
                message: format!("event {}: {e}", self.seq),
            }
        })
    }

    /// The stored movement as the JSON value the history and dashboard show.
    ///
    /// Errors: [`StoreError::Corrupt`] when the bytes do not decode.
    pub fn movement_json(&self) -> Result<serde_json::Value, StoreError> {
        codec::movement_json_value(&self.movement, &self.sku, &self.idempotency_key).map_err(|e| {
            StoreError::Corrupt {
                sku: self.sku.clone(),
                message: format!("event {}: {e}", self.seq),
            }
        })
    }
}

impl SnapshotRecord {
    /// Decodes the stored state (either format).
    ///
    /// Errors: [`StoreError::Corrupt`] when the bytes do not decode.
    pub fn state(&self) -> Result<crate::domain::SkuState, StoreError> {
        codec::decode_state(&self.state).map_err(|e| StoreError::Corrupt {
            sku: self.sku.clone(),
            message: format!("snapshot at {}: {e}", self.seq),
        })
    }
}

/// How far a consumer has durably consumed one partition: where its next owner may start
/// reading (see `ingest::kafka`). Stores keep the greatest one written per group, topic
/// and partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetWatermark {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume: every record of the partition before it is durable (or
    /// dead-lettered). The Kafka ingest writes the settled position it knew when it
    /// submitted the record, which may lag behind the records written with it.
    pub next_offset: i64,
}

/// One group commit: events of many SKUs, snapshots, and offset watermarks, written
/// atomically and durably.
#[derive(Clone, Debug, Default)]
pub struct CommitBatch {
    /// New events; per SKU in ascending sequence order.
    pub events: Vec<EventRecord>,
    /// New snapshots (replace older ones).
    pub snapshots: Vec<SnapshotRecord>,
    /// Offset watermarks to raise.
    pub offsets: Vec<OffsetWatermark>,
    /// Changes of SKUs' earliest open-hold expiry, in order (last one per SKU wins). Only
    /// movements that touch a hold with a TTL produce one, so the hot path writes none.
    pub hold_expiries: Vec<HoldExpiryRecord>,
    /// Multi-SKU reservation requests to record, or their refusal to add.
    pub reservations: Vec<ReservationRecord>,
    /// Parked movements that expired with one of `events` (issue 9 §2b), written with it;
    /// a row already stored (same SKU and parked seq) is kept, so a retry never duplicates.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Outcomes of `events` that are not plain `applied` (parked, ignored, or applying or
    /// expiring parked movements); a plain movement writes none.
    pub outcomes: Vec<EventOutcomeRecord>,
    /// Ownership claims the batch is written under; empty on a single node (no check).
    /// When one is stale the whole batch is refused with [`StoreError::Fenced`] (or, on a
    /// backend that cannot check inside the write, never becomes visible: see the backend).
    pub fences: Vec<Fence>,
    /// Several instances: per SKU of the batch written under its partition's fence, the
    /// index in `fences` of that fence ([`CommitBatch::fence_of`]). Empty on a single
    /// node, where every fence covers every SKU. A backend that stamps rows with their
    /// writer's epoch (ScyllaDB) stamps each SKU's rows with its own fence's epoch.
    pub sku_fences: std::collections::HashMap<String, usize>,
}

impl CommitBatch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.snapshots.is_empty()
            && self.offsets.is_empty()
            && self.hold_expiries.is_empty()
            && self.reservations.is_empty()
            && self.dead_letters.is_empty()
            && self.outcomes.is_empty()
    }

    /// The fence that covers `sku`'s records (its partition's, see
    /// [`CommitBatch::sku_fences`]); `None` when no fence is the SKU's own (a single node,
    /// or a SKU not in the batch).
    pub fn fence_of(&self, sku: &str) -> Option<&Fence> {
        self.fences.get(*self.sku_fences.get(sku)?)
    }
}

/// The earliest expiry among one SKU's open holds with a TTL: what the ledger's reaper
/// needs to find such SKUs again after a restart without scanning every SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldExpiryRecord {
    /// The SKU.
    pub sku: String,
    /// Milliseconds since the Unix epoch; in a [`CommitBatch`], `None` deletes the SKU's
    /// row (no open hold with a TTL left). Rows read back always carry `Some`.
    pub next_expiry_ms: Option<i64>,
}

/// One line of a channel order as a decoder last saw it: the durable index that lets a
/// decoder notice a line that vanished from a later payload (WooCommerce drops a removed
/// line from `line_items`), issue 9 §1. Bounded by retention: rows not seen for the
/// idempotency-key lifetime are forgotten ([`Store::record_order_lines`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineRecord {
    /// The channel id.
    pub channel: String,
    /// The channel's order id.
    pub order_id: String,
    /// The channel's line id.
    pub line_id: String,
    /// The line's SKU.
    pub sku: String,
    /// The version (order modification time in milliseconds) the line was last seen at.
    pub version: i64,
    /// When the row was last written, in milliseconds since the Unix epoch.
    pub seen_at_ms: i64,
}

/// A parked movement that waited longer than `[ledger] parked_ttl_secs` for its order
/// line and was dropped from the SKU's state (issue 9 §2b). Kept until `keep_until_ms`
/// (the idempotency-key lifetime after expiry); rows past it are forgotten whenever new
/// dead letters are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// The SKU.
    pub sku: String,
    /// The event that recorded (and parked) the movement; with `sku`, the row's identity.
    pub parked_seq: u64,
    /// The event whose application expired it.
    pub expired_seq: u64,
    /// The movement's idempotency key.
    pub idempotency_key: String,
    /// The movement's source.
    pub source: String,
    /// The movement's kind (`fulfilment`, `return`, ...).
    pub kind: String,
    /// The movement as JSON (the parked effect, without SKU and key).
    pub movement_json: String,
    /// Why it waited (the newest reason).
    pub reason: String,
    /// Its source time (when the TTL started), in milliseconds since the Unix epoch.
    pub parked_at_ms: i64,
    /// The expiring event's time, in milliseconds since the Unix epoch.
    pub expired_at_ms: i64,
    /// Until when the row is kept, in milliseconds since the Unix epoch.
    pub keep_until_ms: i64,
}

/// Filters of a dead-letter query ([`Store::dead_letters`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterQuery {
    /// Only this SKU.
    pub sku: Option<String>,
    /// Most rows returned (newest expiry first).
    pub limit: usize,
}

/// What an event did when it was not a plain `applied` (issue 9 §2b, §8), stored beside
/// the event (events without a row read as `applied`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventOutcomeRecord {
    /// The SKU.
    pub sku: String,
    /// The event.
    pub seq: u64,
    /// The outcome as JSON: `{"outcome": "parked"|"ignored"|"applied", "reason"?,
    /// "unparked"?, "dead_lettered"?}`.
    pub outcome_json: String,
}

/// One multi-SKU reservation request (`ledger::reservations`), kept so that commit,
/// release, lookup and retries find its lines again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRecord {
    /// The caller's request id.
    pub id: String,
    /// The request as first recorded (JSON); a later write with the same id keeps it.
    pub request_json: String,
    /// The refusal answered to the request (JSON), once it was refused; a write with
    /// `None` keeps an earlier refusal.
    pub refusal_json: Option<String>,
    /// When it was first recorded, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// What the store holds for one SKU: the newest snapshot and the events after it.
#[derive(Clone, Debug, Default)]
pub struct LoadedSku {
    /// The newest snapshot, if any.
    pub snapshot: Option<SnapshotRecord>,
    /// Events with seq greater than the snapshot's, ascending.
    pub events_after: Vec<EventRecord>,
    /// Unexpired idempotency keys of the SKU, with the seq that recorded each.
    pub idempotency_keys: Vec<(String, u64)>,
}

/// One unexpired idempotency key of a SKU with its expiry ([`Store::load_skus`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKeyRecord {
    /// The key.
    pub key: String,
    /// The event that recorded it.
    pub seq: u64,
    /// Until when it is remembered, in milliseconds since the Unix epoch; `i64::MAX` when
    /// the backend does not report it (the ledger then assumes its own TTL from now).
    pub expires_at_ms: i64,
}

/// One SKU as [`Store::load_skus`] returns it.
#[derive(Clone, Debug, Default)]
pub struct BatchLoadedSku {
    /// Snapshot and later events (its `idempotency_keys` may be left empty: see `keys`).
    pub loaded: LoadedSku,
    /// The SKU's unexpired idempotency keys with their expiry.
    pub keys: Vec<IdempotencyKeyRecord>,
}

/// The value last pushed to one channel listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedRecord {
    /// Channel id.
    pub channel: String,
    /// SKU.
    pub sku: String,
    /// Units the channel accepted.
    pub quantity: u64,
    /// When the channel acknowledged it, in milliseconds since the Unix epoch.
    pub pushed_at_ms: i64,
}

/// Filters of a movement-history query ([`Store::query_events`]); every filter is optional
/// and they combine with AND.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// Only this SKU.
    pub sku: Option<String>,
    /// Only events recorded at or after this time, in milliseconds since the Unix epoch.
    pub from_ms: Option<i64>,
    /// Only events recorded before this time, in milliseconds since the Unix epoch.
    pub to_ms: Option<i64>,
    /// Only movements from this source (the movement's `source`, e.g. `shopify:main`).
    pub source: Option<String>,
    /// Only movements of this kind (the movement's `type`, e.g. `sale`).
    pub kind: Option<String>,
    /// Only events after this cursor ([`HistoryEvent::cursor`] of the last row of the
    /// previous page).
    pub after: Option<u64>,
    /// Most rows returned.
    pub limit: usize,
}

/// One event of the movement history, with the cursor that pages past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEvent {
    /// Position in the global, append-ordered log (ascending, not dense).
    pub cursor: u64,
    /// The event.
    pub event: EventRecord,
    /// The event's stored outcome ([`EventOutcomeRecord::outcome_json`]); `None`: applied.
    pub outcome: Option<String>,
}

/// One listing of one push request and the channel's answer (the push audit log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushLogRecord {
    /// Channel id.
    pub channel: String,
    /// SKU.
    pub sku: String,
    /// The quantity we asked the channel to hold.
    pub quantity: u64,
    /// The value we told the channel to compare against (`changeFromQuantity`), if any.
    pub change_from: Option<i64>,
    /// What the request did: `accepted`, `conflict` (the compare-and-set was refused,
    /// nothing written), `read` (the channel's value read back after a conflict; `quantity`
    /// is the value read), `rejected`, `deferred` or `error`; or a decision without a
    /// request (`requests` 0): `held` (a conflict showed the channel lowered the listing
    /// itself; increases wait for the ledger), `hold_released` / `hold_kept`
    /// (reconciliation's heal policy on a hold nothing explained).
    pub outcome: String,
    /// The channel's value after a conflict, or its code and message for a refusal/error.
    pub detail: Option<String>,
    /// HTTP requests this entry stands for (the write request shared by every listing of a
    /// batch; the read after a conflict; 0 for a decision).
    pub requests: u32,
    /// When the answer arrived, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Filters of a push-log query ([`Store::query_push_log`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushLogQuery {
    /// Only this channel.
    pub channel: Option<String>,
    /// Only this SKU.
    pub sku: Option<String>,
    /// Only answers at or after this time, in milliseconds since the Unix epoch.
    pub from_ms: Option<i64>,
    /// Only answers before this time, in milliseconds since the Unix epoch.
    pub to_ms: Option<i64>,
    /// Most rows returned (newest first).
    pub limit: usize,
}

/// One configuration change (the config audit log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigAuditRecord {
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What happened: `loaded` (at start) or the name of a runtime change.
    pub action: String,
    /// Who or what made it (`startup`, an API caller).
    pub actor: String,
    /// Hex SHA-256 of the canonical (JSON) config after the change.
    pub config_hash: String,
    /// The config after the change, as JSON with secrets redacted.
    pub config_json: String,
}

/// A store backend. One trait, one registry function: [`open`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name (`embedded`, `postgres`, `scylla`, or a wrapper's), the
    /// `backend` label of the store metrics.
    fn backend_name(&self) -> &'static str {
        "unknown"
    }
    /// Raises the ownership epoch of `scope` by one with a compare-and-set and records
    /// `owner` as its holder; returns the new epoch (1 for a scope never claimed). Called
    /// when ownership changes, never per write. From then on a commit whose
    /// [`CommitBatch::fences`] name `scope` with an older epoch is refused.
    ///
    /// The claim is unconditional and does not expire: it replaces any lease on the scope
    /// (a previous holder's [`Store::try_lease`] is answered [`LeaseOutcome::Held`] from
    /// then on) with `owner` holding it until [`lease::ACQUIRED_EXPIRES_AT_MS`], that is
    /// until it calls [`Store::release_lease`] with the returned epoch or the scope is
    /// acquired again.
    ///
    /// Errors: [`StoreError::Backend`]; the default (a backend without fencing) always.
    async fn acquire_epoch(&self, scope: &str, owner: &str) -> Result<u64, StoreError> {
        let _ = (scope, owner);
        Err(StoreError::Backend {
            operation: "acquire_epoch",
            message: "this store backend has no ownership epochs".to_owned(),
        })
    }
    /// The newest epoch of `scope` and its holder, if it was ever claimed.
    async fn current_epoch(&self, scope: &str) -> Result<Option<(u64, String)>, StoreError> {
        let _ = scope;
        Ok(None)
    }
    /// Claims `scope` for `owner` until `now_ms + ttl_ms` with one atomic compare-and-set on
    /// the scope's ownership row (the row [`Store::acquire_epoch`] writes, same epoch):
    /// - no row: granted at epoch 1;
    /// - held by `owner`, expired or not: renewed (new expiry and payload, same epoch);
    /// - held by another owner whose lease expired (`expires_at_ms <= now_ms`) or was
    ///   released: taken over at epoch + 1, so that the previous holder's fenced commits
    ///   are refused from then on;
    /// - otherwise [`LeaseOutcome::Held`] with the holder's lease, and nothing changes.
    ///
    /// Two concurrent callers are never both granted at one epoch. A row written by a build
    /// without leases counts as expired; a row written by [`Store::acquire_epoch`] is held
    /// by its owner until released. `payload` (at most [`lease::MAX_LEASE_PAYLOAD_BYTES`])
    /// is what the holder publishes, e.g. its advertised URL.
    ///
    /// Times are milliseconds since the Unix epoch from the caller's clock (the store
    /// never reads its own): the clocks of instances sharing a store must agree to well
    /// within `ttl_ms`, and a holder should renew well before its expiry.
    ///
    /// Errors: [`StoreError::Backend`] when the backend fails, or (naming the limit) for an
    /// empty scope or owner, a scope or owner above 255 bytes, a payload above 4,096
    /// bytes, or `ttl_ms <= 0`; the default (a backend without leases) always.
    async fn try_lease(
        &self,
        scope: &str,
        owner: &str,
        payload: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        let _ = (scope, owner, payload, now_ms, ttl_ms);
        Err(StoreError::Backend {
            operation: "try_lease",
            message: "this store backend has no leases".to_owned(),
        })
    }
    /// Gives `scope` up: sets its `expires_at_ms` to 0, keeping owner and epoch (so the
    /// next other owner to take it raises the epoch), only while `owner` still holds it at
    /// `epoch`. Returns whether it did (false: the scope is unknown, or someone else took
    /// it over, or it was acquired again, since).
    ///
    /// Errors: [`StoreError::Backend`] when the backend fails, or for an empty or too long
    /// scope or owner; the default (a backend without leases) always.
    async fn release_lease(
        &self,
        scope: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<bool, StoreError> {
        let _ = (scope, owner, epoch);
        Err(StoreError::Backend {
            operation: "release_lease",
            message: "this store backend has no leases".to_owned(),
        })
    }
    /// The ownership rows of every scope that starts with `prefix` (a plain string: `%` and
    /// `_` are no wildcards; empty: every scope), ascending by scope (byte order), at most
    /// `limit` and never more than [`lease::MAX_LEASES_LISTED`]. Expired and released
    /// leases are included (callers compare `expires_at_ms` with their own clock), and so
    /// are scopes only claimed with [`Store::acquire_epoch`].
    ///
    /// Errors: [`StoreError::Backend`] when the backend fails or the prefix is above 255
    /// bytes; the default (a backend without leases): none listed.
    async fn leases(&self, prefix: &str, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let _ = (prefix, limit);
        Ok(Vec::new())
    }
    /// Writes one batch atomically and durably (fsync'd before returning `Ok`).
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError>;
    /// Like [`Store::commit`], with the batch shared, so that the ledger's committer can
    /// write the same batch again after a failure without copying it first. The default
    /// copies the batch only while another holder shares it; a backend that can write from
    /// a reference (the embedded one) overrides it to never copy.
    async fn commit_shared(&self, batch: std::sync::Arc<CommitBatch>) -> Result<(), StoreError> {
        self.commit(std::sync::Arc::unwrap_or_clone(batch)).await
    }
    /// Loads a SKU's newest snapshot, later events and unexpired keys (`now_ms` decides expiry).
    async fn load_sku(&self, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError>;
    /// All events of a SKU with seq in `from_seq..`, ascending, at most `limit`.
    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// SKUs known to the store, ascending, starting after `after`, at most `limit`.
    async fn list_skus(&self, after: Option<&str>, limit: usize)
    -> Result<Vec<String>, StoreError>;
    /// Offset watermarks of a consumer group.
    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, StoreError>;
    /// Records the values last pushed (and acknowledged) per channel listing.
    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError>;
    /// The values last pushed to one channel, all SKUs.
    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError>;
    /// Forgets idempotency keys that expired before `now_ms`; returns how many rows it
    /// deleted (backends that filter expired keys at load time, like the embedded one, or
    /// expire them natively, like a ScyllaDB TTL, return 0).
    async fn expire_keys(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// Movement history across SKUs, ascending by cursor (append order), filtered by `query`.
    async fn query_events(&self, query: &EventQuery) -> Result<Vec<HistoryEvent>, StoreError>;
    /// Appends push answers to the push audit log (one write for the whole slice).
    async fn append_push_log(&self, records: &[PushLogRecord]) -> Result<(), StoreError>;
    /// Push answers matching `query`, newest first.
    async fn query_push_log(&self, query: &PushLogQuery) -> Result<Vec<PushLogRecord>, StoreError>;
    /// Deletes push answers older than `before_ms`; returns how many were deleted.
    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, StoreError>;
    /// Event retention (`[store] event_retention_days`): deletes every event that
    /// (1) was recorded before `before_ms`, (2) is covered by its SKU's newest snapshot
    /// (seq at or below the snapshot's), so loading the SKU never needs it, and (3) has an
    /// idempotency key expired at `now_ms`, so no duplicate can get through; with it go
    /// its key and its outcome. Returns how many events were deleted. Works in bounded
    /// chunks (one transaction each), so writers are never held up for long.
    ///
    /// The default deletes nothing and answers 0: a backend that expires rows natively
    /// (ScyllaDB's table TTL) or keeps everything.
    ///
    /// Errors: [`StoreError::Backend`] when the store fails; what was deleted before the
    /// failure stays deleted.
    async fn prune_events(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        let _ = (before_ms, now_ms);
        Ok(0)
    }
    /// Appends one configuration change to the config audit log.
    async fn record_config_change(&self, record: &ConfigAuditRecord) -> Result<(), StoreError>;
    /// The newest `limit` configuration changes, newest first.
    async fn config_changes(&self, limit: usize) -> Result<Vec<ConfigAuditRecord>, StoreError>;
    /// SKUs with an open hold that has a TTL, with its earliest expiry, ascending by SKU
    /// after `after`, at most `limit` (the ledger's reaper reads them at start).
    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HoldExpiryRecord>, StoreError>;
    /// The reservation request recorded under `id`, if any.
    async fn reservation(&self, id: &str) -> Result<Option<ReservationRecord>, StoreError>;
    /// The known lines of one channel order ([`OrderLineRecord`]), ascending by line id.
    /// Default (a backend without the index): none, so vanished lines go unnoticed.
    async fn order_lines(
        &self,
        _channel: &str,
        _order_id: &str,
    ) -> Result<Vec<OrderLineRecord>, StoreError> {
        Ok(Vec::new())
    }
    /// Upserts `records` (keyed by channel, order and line) durably, and forgets every row
    /// last written before `forget_before_ms` (the retention bound). Default: nothing kept.
    async fn record_order_lines(
        &self,
        _records: &[OrderLineRecord],
        _forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Dead letters ([`DeadLetterRecord`]) matching `query`, newest expiry first. Default
    /// (a backend without the table): none.
    async fn dead_letters(
        &self,
        _query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        Ok(Vec::new())
    }
    /// Loads many SKUs in one call (the ledger batches the SKUs it misses): one entry per
    /// SKU of `skus`, in that order; a SKU never seen loads as empty. The default loads them
    /// one by one with [`Store::load_sku`] and reports unknown key expiries.
    async fn load_skus(
        &self,
        skus: &[String],
        now_ms: i64,
    ) -> Result<Vec<BatchLoadedSku>, StoreError> {
        let mut loaded = Vec::with_capacity(skus.len());
        for sku in skus {
            let mut one = self.load_sku(sku, now_ms).await?;
            let keys = std::mem::take(&mut one.idempotency_keys)
                .into_iter()
                .map(|(key, seq)| IdempotencyKeyRecord {
                    key,
                    seq,
                    expires_at_ms: i64::MAX,
                })
                .collect();
            loaded.push(BatchLoadedSku { loaded: one, keys });
        }
        Ok(loaded)
    }
    /// The seq of the event of `sku` that recorded idempotency key `key`, if that key is
    /// still remembered at `now_ms` (its expiry is after `now_ms`). The default asks
    /// [`Store::find_idempotency_key_hash`] and drops the hash.
    async fn find_idempotency_key(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .find_idempotency_key_hash(sku, key, now_ms)
            .await?
            .map(|(seq, _)| seq))
    }
    /// Whether `sku` has at least one durable event (is in [`Store::list_skus`]). The
    /// default reads its first event with [`Store::events`].
    async fn sku_exists(&self, sku: &str) -> Result<bool, StoreError> {
        Ok(!self.events(sku, 1, 1).await?.is_empty())
    }

    /// Like [`Store::find_idempotency_key`], also answering the movement hash stored with
    /// the key (`None` for a key recorded without one: it never conflicts). The default
    /// loads the SKU's keys with [`Store::load_sku`] and knows no hashes.
    async fn find_idempotency_key_hash(
        &self,
        sku: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(u64, Option<u64>)>, StoreError> {
        let loaded = self.load_sku(sku, now_ms).await?;
        Ok(loaded
            .idempotency_keys
            .into_iter()
            .find(|(stored, _)| stored == key)
            .map(|(_, seq)| (seq, None)))
    }
    /// Like [`Store::events`], with each event's [`EventRecord::movement_hash`] filled in
    /// (`None` where the key was recorded without one): what `stocksync store copy` reads so
    /// that the target refuses a conflicting redelivery exactly as the source would. The
    /// default asks [`Store::find_idempotency_key_hash`] once per event (expired keys
    /// included); a backend that keeps the hash beside the event overrides it with one read.
    async fn events_with_hashes(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut events = self.events(sku, from_seq, limit).await?;
        for event in &mut events {
            event.movement_hash = self
                .find_idempotency_key_hash(sku, &event.idempotency_key, i64::MIN)
                .await?
                .filter(|(seq, _)| *seq == event.seq)
                .and_then(|(_, hash)| hash);
        }
        Ok(events)
    }
    /// Called once on a clean stop, after the last commit: leaves the store compact on disk
    /// (the embedded backend checkpoints and truncates its WAL). Default: nothing to do.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Gives back memory the backend only holds as a cache (called by the ledger after it
    /// passivated many SKUs); the cache refills on demand. Default: nothing to give back.
    async fn release_memory(&self) {}
}

/// Opens the configured backend (the registry of store backends), wrapped in
/// [`metered::MeteredStore`] so that every backend's calls are counted alike.
///
/// Errors: [`StoreError::Backend`] when the backend cannot be opened or reached.
pub async fn open(
    config: &crate::config::StoreConfig,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(metered::MeteredStore::wrap(open_backend(config).await?))
}

/// The configured backend itself, unwrapped.
async fn open_backend(
    config: &crate::config::StoreConfig,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match config.backend {
        crate::config::StoreBackend::Embedded => {
            Ok(std::sync::Arc::new(embedded::EmbeddedStore::open_with(
                &config.path,
                wal::WalOptions {
                    checkpoint_bytes: config.wal_checkpoint_bytes,
                    idle_checkpoint_secs: config.wal_idle_checkpoint_secs,
                },
            )?))
        }
        crate::config::StoreBackend::Postgres => Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(&config.postgres).await?,
        )),
        crate::config::StoreBackend::Scylla => Ok(std::sync::Arc::new(
            scylla::ScyllaStore::open(&config.scylla).await?,
        )),
    }
}
