//! Persistence: the [`Store`] trait and its backends.
//!
//! Owns: the event log (per SKU, ordered by sequence number), snapshots, idempotency keys
//! with expiry, consumed-offset watermarks, and last-pushed values per channel listing.
//! The trait is shaped for both the embedded SQLite backend ([`embedded::EmbeddedStore`])
//! and a ScyllaDB backend: everything is partitioned by SKU (or by channel for pushed
//! values), and one [`CommitBatch`] is one durable write.
//!
//! May depend on: `domain`.

pub mod embedded;

use async_trait::async_trait;
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
    /// The movement as JSON.
    pub movement_json: String,
}

/// A snapshot of one SKU's derived state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The SKU.
    pub sku: String,
    /// The last event included.
    pub seq: u64,
    /// The state as JSON.
    pub state_json: String,
}

/// How far a consumer has durably consumed one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetWatermark {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume (last durable + 1).
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
}

impl CommitBatch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.snapshots.is_empty() && self.offsets.is_empty()
    }
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

/// A store backend. One trait, one registry function: [`open`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes one batch atomically and durably (fsync'd before returning `Ok`).
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError>;
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
}

/// Opens the configured backend (the registry of store backends).
pub fn open(config: &crate::config::StoreConfig) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match config.backend {
        crate::config::StoreBackend::Embedded => Ok(std::sync::Arc::new(
            embedded::EmbeddedStore::open(&config.path)?,
        )),
        crate::config::StoreBackend::Scylla => Err(StoreError::Backend {
            operation: "open",
            message:
                "the scylla backend is not built into this release; use backend = \"embedded\""
                    .to_owned(),
        }),
    }
}
