//! The per-channel coalescing queue: one entry per listing, the newest ATP wins.
//!
//! Invariants: at most one entry per SKU, so memory is bounded by the channel's listing count
//! (only mapped SKUs are queued); a batch holds decreases (and values never acknowledged)
//! before increases, oldest first within each class; an isolated (permanently failing)
//! listing is only ever sent alone.

use std::collections::HashMap;
use tokio::time::Instant;

/// A listing waiting to be pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The newest ATP computed for the listing.
    pub atp: u64,
    /// When the oldest not-yet-acknowledged change was published (for the lag metric).
    pub published_at: Instant,
    /// Not pushed before this instant (backoff, or the grace period after a CAS conflict).
    pub not_before: Option<Instant>,
    /// Consecutive failed attempts.
    pub attempts: u32,
    /// The channel refused this listing permanently; it is retried alone.
    pub isolated: bool,
    /// Units reserved for the SKU (all locations) at the entry's first change that said
    /// (since it was queued or last accounted).
    pub first_reserved: Option<u64>,
    /// Units reserved at the newest change.
    pub reserved: Option<u64>,
    /// The sum of every rise of `reserved` after `first_reserved`, in units: with
    /// `first_reserved` it tells how many units were reserved (orders ingested) since a
    /// given point, which is how a hold after a compare-and-set conflict learns that the
    /// ledger has explained the channel's own sales (`propagation` module docs). Coalescing
    /// keeps it exact up to the granularity of `publish` calls.
    pub reserved_rises: u64,
}

impl Pending {
    fn new(atp: u64, now: Instant) -> Self {
        Self {
            atp,
            published_at: now,
            not_before: None,
            attempts: 0,
            isolated: false,
            first_reserved: None,
            reserved: None,
            reserved_rises: 0,
        }
    }

    /// Units reserved since `reserved` was `base` (falls do not offset rises); 0 when
    /// either is unknown, apart from the rises seen.
    pub fn reservations_since(&self, base: Option<u64>) -> u64 {
        let before_first = match (base, self.first_reserved) {
            (Some(base), Some(first)) => first.saturating_sub(base),
            _ => 0,
        };
        before_first.saturating_add(self.reserved_rises)
    }

    /// Starts the reservation accounting afresh at the current level.
    pub fn reset_reservations(&mut self) {
        self.first_reserved = self.reserved;
        self.reserved_rises = 0;
    }

    fn observe_reserved(&mut self, reserved: Option<u64>) {
        let Some(now) = reserved else { return };
        match self.reserved {
            Some(previous) => {
                self.reserved_rises = self
                    .reserved_rises
                    .saturating_add(now.saturating_sub(previous));
            }
            None => {
                if self.first_reserved.is_none() {
                    self.first_reserved = Some(now);
                }
            }
        }
        self.reserved = Some(now);
    }

    fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| at <= now)
    }
}

/// What [`CoalescingQueue::take_batch`] hands out.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Listings to push, decreases first.
    pub items: Vec<(String, Pending)>,
    /// Listings whose ATP already equals the channel's value: removed, nothing to push.
    pub unchanged: Vec<(String, Pending)>,
}

/// The coalescing queue of one channel.
#[derive(Debug, Default)]
pub(crate) struct CoalescingQueue {
    entries: HashMap<String, Pending>,
}

impl CoalescingQueue {
    /// Records a new ATP; an existing entry keeps its publish time, backoff and isolation.
    pub fn upsert(&mut self, sku: &str, atp: u64, now: Instant) {
        self.upsert_levels(sku, atp, None, now);
    }

    /// [`upsert`](Self::upsert) with the SKU's reserved units, when known, for the
    /// reservation accounting of holds.
    pub fn upsert_levels(&mut self, sku: &str, atp: u64, reserved: Option<u64>, now: Instant) {
        match self.entries.get_mut(sku) {
            Some(pending) => {
                pending.atp = atp;
                pending.observe_reserved(reserved);
            }
            None => {
                let mut pending = Pending::new(atp, now);
                pending.observe_reserved(reserved);
                self.entries.insert(sku.to_owned(), pending);
            }
        }
    }

    /// The ATP waiting for `sku`, if it is queued.
    pub fn atp_of(&self, sku: &str) -> Option<u64> {
        self.entries.get(sku).map(|pending| pending.atp)
    }

    /// Puts back a listing that was taken but not acknowledged. When a newer ATP arrived
    /// meanwhile, the newer value wins and keeps the older publish time and retry state;
    /// the reservation accounting runs on as if the two were one entry.
    pub fn requeue(&mut self, sku: String, pending: Pending) {
        match self.entries.get_mut(&sku) {
            Some(newer) => {
                newer.reserved_rises = pending
                    .reserved_rises
                    .saturating_add(newer.reservations_since(pending.reserved));
                newer.first_reserved = pending.first_reserved.or(newer.first_reserved);
                newer.published_at = newer.published_at.min(pending.published_at);
                newer.not_before = pending.not_before;
                newer.attempts = pending.attempts;
                newer.isolated = pending.isolated;
            }
            None => {
                self.entries.insert(sku, pending);
            }
        }
    }

    /// Takes up to `max` ready listings. `channel_value` gives what the channel is believed
    /// to hold; listings already at that value come back in `unchanged`. Regular listings go
    /// first (decreases, then increases); an isolated listing is taken alone, only when no
    /// regular listing is ready.
    #[cfg(test)]
    pub fn take_batch(
        &mut self,
        now: Instant,
        max: usize,
        channel_value: impl Fn(&str) -> Option<i64>,
    ) -> Batch {
        self.take_batch_where(now, max, channel_value, |_, _| false)
    }

    /// [`take_batch`](Self::take_batch) leaving in the queue every listing for which
    /// `blocked` is true (a listing held after a compare-and-set conflict).
    pub fn take_batch_where(
        &mut self,
        now: Instant,
        max: usize,
        channel_value: impl Fn(&str) -> Option<i64>,
        blocked: impl Fn(&str, &Pending) -> bool,
    ) -> Batch {
        let mut batch = Batch::default();
        let mut regular: Vec<(bool, Instant, String)> = Vec::new();
        let mut isolated: Option<(Instant, String)> = None;
        let mut unchanged = Vec::new();
        for (sku, pending) in &self.entries {
            if !pending.ready(now) || blocked(sku, pending) {
                continue;
            }
            let current = channel_value(sku);
            if current == i64::try_from(pending.atp).ok() {
                unchanged.push(sku.clone());
            } else if pending.isolated {
                if isolated
                    .as_ref()
                    .is_none_or(|(at, _)| pending.published_at < *at)
                {
                    isolated = Some((pending.published_at, sku.clone()));
                }
            } else {
                let increase = current
                    .is_some_and(|value| i64::try_from(pending.atp).is_ok_and(|atp| atp > value));
                regular.push((increase, pending.published_at, sku.clone()));
            }
        }
        for sku in unchanged {
            if let Some(pending) = self.entries.remove(&sku) {
                batch.unchanged.push((sku, pending));
            }
        }
        let max = max.max(1);
        if regular.len() > max {
            regular.select_nth_unstable(max - 1);
            regular.truncate(max);
        }
        regular.sort_unstable();
        let chosen: Vec<String> = if regular.is_empty() {
            isolated.map(|(_, sku)| vec![sku]).unwrap_or_default()
        } else {
            regular.into_iter().map(|(_, _, sku)| sku).collect()
        };
        for sku in chosen {
            if let Some(pending) = self.entries.remove(&sku) {
                batch.items.push((sku, pending));
            }
        }
        batch
    }

    /// The earliest instant a waiting listing becomes ready, if any is waiting.
    pub fn next_ready_at(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|pending| pending.not_before)
            .min()
    }

    /// True when some listing is ready now.
    pub fn has_ready(&self, now: Instant) -> bool {
        self.entries.values().any(|pending| pending.ready(now))
    }

    /// Drops every entry (a new leader rebuilds the queue from the ledger).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Listings queued, isolated ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Listings for which `blocked` is true.
    pub fn count_where(&self, blocked: impl Fn(&str, &Pending) -> bool) -> usize {
        self.entries
            .iter()
            .filter(|(sku, pending)| blocked(sku, pending))
            .count()
    }

    /// Listings isolated after a permanent refusal.
    pub fn isolated(&self) -> usize {
        self.entries
            .values()
            .filter(|pending| pending.isolated)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn skus(batch: &Batch) -> Vec<(&str, u64)> {
        batch
            .items
            .iter()
            .map(|(sku, pending)| (sku.as_str(), pending.atp))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_are_counted_across_coalescing_and_requeue() {
        let mut queue = CoalescingQueue::default();
        let now = Instant::now();
        queue.upsert_levels("A", 10, Some(2), now);
        queue.upsert_levels("A", 9, Some(3), now);
        queue.upsert_levels("A", 12, Some(1), now); // a cancellation does not offset
        queue.upsert_levels("A", 11, Some(2), now);
        let mut batch = queue.take_batch(now, 10, |_| None);
        let (sku, taken) = batch.items.pop().unwrap();
        assert_eq!(taken.reservations_since(Some(0)), 2 + 1 + 1);
        assert_eq!(taken.reservations_since(None), 2, "only the rises seen");
        // Two more orders while the push was in flight.
        queue.upsert_levels("A", 10, Some(3), now);
        queue.upsert_levels("A", 9, Some(4), now);
        queue.requeue(sku, taken);
        let merged = queue.take_batch(now, 10, |_| None).items.pop().unwrap().1;
        assert_eq!(merged.atp, 9);
        assert_eq!(merged.reservations_since(Some(0)), 2 + 1 + 1 + 1 + 1);
        let mut reset = merged.clone();
        reset.reset_reservations();
        assert_eq!(reset.reservations_since(Some(4)), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_newest_atp_wins_and_memory_is_one_entry_per_listing() {
        let mut queue = CoalescingQueue::default();
        let first = Instant::now();
        for atp in 0..1000 {
            queue.upsert("A", atp, Instant::now());
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(queue.len(), 1);
        let batch = queue.take_batch(Instant::now(), 10, |_| None);
        assert_eq!(skus(&batch), vec![("A", 999)]);
        assert_eq!(
            batch.items[0].1.published_at, first,
            "the lag counts from the oldest change"
        );
        assert_eq!(queue.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn decreases_go_out_before_increases() {
        let mut queue = CoalescingQueue::default();
        let channel = |sku: &str| match sku {
            "UP-OLD" | "UP" => Some(5),
            "DOWN" => Some(5),
            _ => None,
        };
        queue.upsert("UP-OLD", 9, Instant::now());
        tokio::time::advance(Duration::from_millis(5)).await;
        queue.upsert("UP", 8, Instant::now());
        queue.upsert("DOWN", 1, Instant::now());
        queue.upsert("NEW", 3, Instant::now());
        let first = queue.take_batch(Instant::now(), 2, channel);
        let mut firsts: Vec<&str> = first.items.iter().map(|(sku, _)| sku.as_str()).collect();
        firsts.sort_unstable();
        assert_eq!(
            firsts,
            vec!["DOWN", "NEW"],
            "the decrease and the unknown value go first"
        );
        let second = queue.take_batch(Instant::now(), 2, channel);
        assert_eq!(
            skus(&second),
            vec![("UP-OLD", 9), ("UP", 8)],
            "then increases, oldest first"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_at_the_channel_value_is_not_pushed() {
        let mut queue = CoalescingQueue::default();
        queue.upsert("A", 4, Instant::now());
        queue.upsert("B", 5, Instant::now());
        let batch = queue.take_batch(Instant::now(), 10, |_| Some(4));
        assert_eq!(skus(&batch), vec![("B", 5)]);
        assert_eq!(batch.unchanged.len(), 1);
        assert_eq!(queue.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_isolated_listing_waits_for_its_backoff_and_goes_alone() {
        let mut queue = CoalescingQueue::default();
        let now = Instant::now();
        queue.upsert("A", 1, now);
        queue.upsert("BAD", 1, now);
        let mut batch = queue.take_batch(now, 10, |_| None);
        assert_eq!(batch.items.len(), 2);
        let (sku, mut pending) = batch
            .items
            .remove(batch.items.iter().position(|(s, _)| s == "BAD").unwrap());
        pending.isolated = true;
        pending.attempts = 1;
        pending.not_before = Some(now + Duration::from_secs(1));
        queue.requeue(sku, pending);
        queue.upsert("B", 2, now);
        assert_eq!(queue.next_ready_at(), Some(now + Duration::from_secs(1)));
        assert_eq!(
            skus(&queue.take_batch(now, 10, |_| None)),
            vec![("B", 2)],
            "BAD is not in the batch"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        queue.upsert("C", 3, Instant::now());
        assert_eq!(
            skus(&queue.take_batch(Instant::now(), 10, |_| None)),
            vec![("C", 3)],
            "regular work first"
        );
        let alone = queue.take_batch(Instant::now(), 10, |_| None);
        assert_eq!(skus(&alone), vec![("BAD", 1)]);
        assert!(alone.items[0].1.isolated);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_value_survives_the_requeue_of_an_older_attempt() {
        let mut queue = CoalescingQueue::default();
        let now = Instant::now();
        queue.upsert("A", 5, now);
        let mut batch = queue.take_batch(now, 10, |_| None);
        tokio::time::advance(Duration::from_millis(10)).await;
        queue.upsert("A", 2, Instant::now());
        let (sku, mut pending) = batch.items.pop().unwrap();
        pending.attempts = 3;
        queue.requeue(sku, pending);
        let again = queue.take_batch(Instant::now(), 10, |_| None);
        assert_eq!(skus(&again), vec![("A", 2)]);
        assert_eq!(again.items[0].1.attempts, 3);
        assert_eq!(again.items[0].1.published_at, now);
    }
}
