//! The partition table: which partitions of the movements topic this instance holds, at
//! which epoch, whether it admits new work for them, and who owns the others.
//!
//! Owns: [`PartitionTable`], the ledger's [`Ownership`] when `[cluster]` is configured.
//! Written only by the coordinator (`super`), read on every ledger message and commit.
//!
//! May depend on: `ledger::ownership`, `store` types, the Kafka partitioner.

use crate::ingest::kafka::partitioner::partition_for_key;
use crate::ledger::LedgerError;
use crate::ledger::ownership::Ownership;
use crate::store::Fence;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// The scope of partition `partition`'s lease and fence: `movements/<partition>`.
pub fn partition_scope(partition: u32) -> String {
    format!("{PARTITION_SCOPE_PREFIX}{partition}")
}

/// The prefix of every partition scope.
pub const PARTITION_SCOPE_PREFIX: &str = "movements/";

/// Which partitions this instance holds (see the module docs). Cheap to read: one murmur2
/// hash and one atomic load per question.
pub struct PartitionTable {
    partitions: u32,
    /// Per partition: the epoch this instance holds it at (0: not held).
    held: Box<[AtomicU64]>,
    /// Per partition: whether new work for its SKUs starts here.
    admitting: Box<[AtomicBool]>,
    /// Per partition: its scope string (kept so that a fence costs no formatting).
    scopes: Box<[String]>,
    /// Per partition: the advertised URL of its live owner, when another instance owns it.
    owners: RwLock<Vec<Option<Arc<str>>>>,
    /// Woken when a write was fenced, so the coordinator handles the loss at once.
    pub(super) fenced: Notify,
}

impl PartitionTable {
    /// A table of `partitions` partitions (at least 1), none held.
    pub fn new(partitions: u32) -> Self {
        let partitions = partitions.max(1);
        Self {
            partitions,
            held: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            admitting: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
            scopes: (0..partitions).map(partition_scope).collect(),
            owners: RwLock::new(vec![None; partitions as usize]),
            fenced: Notify::new(),
        }
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition of `sku`: `murmur2(sku) mod partitions`, as Kafka's producers place
    /// a record keyed by the SKU.
    pub fn partition_of(&self, sku: &str) -> u32 {
        partition_for_key(sku.as_bytes(), self.partitions).unwrap_or(0)
    }

    /// The epoch this instance holds `partition` at (0: not held).
    pub fn held_epoch(&self, partition: u32) -> u64 {
        self.held
            .get(partition as usize)
            .map_or(0, |held| held.load(Ordering::Acquire))
    }

    /// Whether new work for `partition`'s SKUs starts here.
    pub fn is_admitting(&self, partition: u32) -> bool {
        self.admitting
            .get(partition as usize)
            .is_some_and(|admitting| admitting.load(Ordering::Acquire))
    }

    /// The partitions held, ascending, with their epochs.
    pub fn held(&self) -> Vec<(u32, u64)> {
        (0..self.partitions)
            .filter_map(|partition| {
                let epoch = self.held_epoch(partition);
                (epoch > 0).then_some((partition, epoch))
            })
            .collect()
    }

    /// The advertised URL of `partition`'s owner when another live instance owns it.
    pub fn owner_url(&self, partition: u32) -> Option<Arc<str>> {
        self.owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition as usize)
            .cloned()
            .flatten()
    }

    /// Takes `partition` at `epoch` and starts admitting its SKUs.
    pub(super) fn hold(&self, partition: u32, epoch: u64) {
        if let Some(held) = self.held.get(partition as usize) {
            held.store(epoch, Ordering::Release);
        }
        if let Some(admitting) = self.admitting.get(partition as usize) {
            admitting.store(true, Ordering::Release);
        }
    }

    /// Stops admitting new work for `partition` (a handover starts; writes of work already
    /// admitted still carry the epoch).
    pub(super) fn stop_admitting(&self, partition: u32) {
        if let Some(admitting) = self.admitting.get(partition as usize) {
            admitting.store(false, Ordering::Release);
        }
    }

    /// Forgets `partition`: no admission, no fence.
    pub(super) fn drop_partition(&self, partition: u32) {
        self.stop_admitting(partition);
        if let Some(held) = self.held.get(partition as usize) {
            held.store(0, Ordering::Release);
        }
    }

    /// Replaces the owners' URLs (index: partition).
    pub(super) fn set_owner_urls(&self, urls: Vec<Option<Arc<str>>>) {
        *self.owners.write().unwrap_or_else(|e| e.into_inner()) = urls;
    }

    /// The partition a scope names, if it is one of this table's.
    pub fn partition_of_scope(&self, scope: &str) -> Option<u32> {
        scope
            .strip_prefix(PARTITION_SCOPE_PREFIX)?
            .parse::<u32>()
            .ok()
            .filter(|partition| *partition < self.partitions)
    }
}

impl Ownership for PartitionTable {
    fn admit(&self, sku: &str) -> Result<(), LedgerError> {
        let partition = self.partition_of(sku);
        if self.is_admitting(partition) {
            return Ok(());
        }
        Err(LedgerError::NotOwner {
            partition,
            owner: self.owner_url(partition).map(|url| url.to_string()),
        })
    }

    fn fence(&self, sku: &str) -> Option<Fence> {
        let partition = self.partition_of(sku);
        let epoch = self.held_epoch(partition);
        (epoch > 0).then(|| Fence {
            scope: self.scopes[partition as usize].clone(),
            epoch,
        })
    }

    fn fenced(&self, scope: &str, epoch: u64) {
        if let Some(partition) = self.partition_of_scope(scope)
            && self.held_epoch(partition) == epoch
        {
            self.drop_partition(partition);
            self.fenced.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_is_admitted_and_fenced_only_while_its_partition_is_held() {
        let table = PartitionTable::new(6);
        let sku = "SKU-ADMIT-1";
        let partition = table.partition_of(sku);
        assert_eq!(
            Some(partition),
            partition_for_key(sku.as_bytes(), 6),
            "the table places SKUs as Kafka's producers do"
        );
        assert!(matches!(
            table.admit(sku),
            Err(LedgerError::NotOwner { partition: p, owner: None }) if p == partition
        ));
        assert_eq!(table.fence(sku), None);

        table.hold(partition, 7);
        assert!(table.admit(sku).is_ok());
        assert_eq!(
            table.fence(sku),
            Some(Fence {
                scope: format!("movements/{partition}"),
                epoch: 7
            })
        );
        assert_eq!(table.held(), vec![(partition, 7)]);

        // A handover: no new work, but admitted work is still written under epoch 7.
        table.stop_admitting(partition);
        assert!(table.admit(sku).is_err());
        assert_eq!(table.fence(sku).map(|fence| fence.epoch), Some(7));

        // A refusal of an older epoch's write (retried late) leaves the newer hold alone.
        table.fenced(&partition_scope(partition), 6);
        assert_eq!(table.fence(sku).map(|fence| fence.epoch), Some(7));
        table.fenced(&partition_scope(partition), 7);
        assert_eq!(table.fence(sku), None);
        assert!(table.held().is_empty());
    }

    #[test]
    fn not_owner_names_the_owner_url_when_one_is_known() {
        let table = PartitionTable::new(2);
        let sku = "SKU-ELSEWHERE";
        let partition = table.partition_of(sku);
        let mut urls = vec![None, None];
        urls[partition as usize] = Some(Arc::from("http://10.1.2.3:8080"));
        table.set_owner_urls(urls);
        match table.admit(sku) {
            Err(LedgerError::NotOwner { owner, .. }) => {
                assert_eq!(owner.as_deref(), Some("http://10.1.2.3:8080"))
            }
            other => panic!("expected NotOwner, got {other:?}"),
        }
    }

    #[test]
    fn foreign_or_out_of_range_scopes_are_ignored() {
        let table = PartitionTable::new(3);
        table.hold(1, 2);
        table.fenced("ledger", 2);
        table.fenced("movements/9", 2);
        table.fenced("channel/shopify", 2);
        assert_eq!(table.held(), vec![(1, 2)]);
        assert_eq!(table.partition_of_scope("movements/2"), Some(2));
        assert_eq!(table.partition_of_scope("movements/x"), None);
    }
}
