//! The submission order of routed movements, per SKU (several instances).
//!
//! Owns: [`RouteOrder`], the per-SKU chains that keep the movements of one SKU that go
//! through [`super::Ledger::submit`]'s routing (`[cluster]`) in the order they were
//! submitted, and [`Turn`], one movement's place in its SKU's chain.
//!
//! Why: on one node a movement's order is fixed by the synchronous cast into its SKU's
//! shard. A routed movement is applied here or forwarded over HTTP to the SKU's owner, and
//! retried with a backoff while the SKU's partition moves, so two movements of one SKU
//! routed independently could overtake each other. So the order is fixed when the movement
//! is submitted, synchronously: it takes the completion signal of the SKU's previous
//! routed movement and leaves its own for the next ([`RouteOrder::turn`]), and it admits or
//! forwards only once its predecessor has finished, whatever the outcome (answered,
//! refused, failed, or its task gone). Movements of different SKUs never wait for each
//! other.
//!
//! Invariants: at most one entry per SKU, present only while a routed movement of that SKU
//! is in flight, and removed when the last one in its chain finishes (its [`Turn`] is
//! dropped): the map never holds more SKUs than there are routed movements in flight, and
//! outside input cannot make it grow otherwise. Locks are held for one map operation and
//! never across an await. The plain (single-node) path never touches it.
//!
//! May depend on: `domain`, the ledger's `keys`.

use super::keys;
use crate::domain::Sku;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// The per-SKU chains of routed movements, split into independently locked slots (by the
/// SKU's hash) so that submissions of different SKUs rarely share a lock.
pub(crate) struct RouteOrder {
    slots: Box<[Mutex<Slot>]>,
}

/// One slot: the newest routed movement of each of its SKUs that has one in flight.
#[derive(Default)]
struct Slot {
    /// Numbers the turns of this slot (tells the newest of a chain from the others).
    next_ticket: u64,
    /// Per SKU, the newest turn still in flight.
    tails: HashMap<Sku, Tail>,
}

/// The newest turn of a SKU: its ticket and the signal the next turn waits for.
struct Tail {
    ticket: u64,
    /// Resolves (with an error: the sender is only ever dropped) when that turn ends.
    done: oneshot::Receiver<()>,
}

/// One routed movement's place in its SKU's chain. Wait for [`Turn::predecessor_done`]
/// before admitting or forwarding the movement, and hold the turn until the movement is
/// answered: dropping it lets the SKU's next routed movement go (a turn dropped while its
/// predecessor is still in flight lets it go only once that predecessor has finished too).
pub(crate) struct Turn {
    /// The previous turn's end while it may still be in flight (`None`: it has ended, or
    /// there was none).
    predecessor: Option<oneshot::Receiver<()>>,
    /// Dropped when the turn ends, which resolves the next turn's `predecessor`.
    done: Option<oneshot::Sender<()>>,
    order: Arc<RouteOrder>,
    sku: Sku,
    ticket: u64,
}

impl RouteOrder {
    /// Chains split into `slots` locks (at least one).
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1))
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
        }
    }

    fn slot(&self, sku: &str) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[keys::shard_of(sku, self.slots.len())]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `sku`'s next turn, synchronously: it comes after every turn of `sku` taken
    /// before and still in flight, and before every one taken after.
    pub(crate) fn turn(self: &Arc<Self>, sku: &Sku) -> Turn {
        let (done, receiver) = oneshot::channel();
        let mut slot = self.slot(sku.as_str());
        let ticket = slot.next_ticket;
        slot.next_ticket = ticket.wrapping_add(1);
        let previous = slot.tails.insert(
            sku.clone(),
            Tail {
                ticket,
                done: receiver,
            },
        );
        drop(slot);
        Turn {
            predecessor: previous.map(|tail| tail.done),
            done: Some(done),
            order: self.clone(),
            sku: sku.clone(),
            ticket,
        }
    }

    /// SKUs with a routed movement in flight.
    #[cfg(test)]
    pub(crate) fn in_flight_skus(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| {
                slot.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .tails
                    .len()
            })
            .sum()
    }
}

impl Turn {
    /// Resolves once the SKU's previous routed movement has finished (at once when there
    /// is none), whatever its outcome.
    pub(crate) async fn predecessor_done(&mut self) {
        if let Some(predecessor) = &mut self.predecessor {
            // Only ever resolved by the predecessor's sender being dropped.
            let _ = predecessor.await;
            self.predecessor = None;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(mut predecessor) = self.predecessor.take()
            && matches!(
                predecessor.try_recv(),
                Err(oneshot::error::TryRecvError::Empty)
            )
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Ended before its predecessor (its task went away while waiting): the chain
            // stays whole, this turn ends once the predecessor has.
            let rest = Turn {
                predecessor: None,
                done: self.done.take(),
                order: self.order.clone(),
                sku: self.sku.clone(),
                ticket: self.ticket,
            };
            runtime.spawn(async move {
                let _ = predecessor.await;
                drop(rest);
            });
            return;
        }
        // The newest turn of its SKU removes the entry; an older one's signal was taken by
        // its successor, which `done` (dropped after this) releases.
        let mut slot = self.order.slot(self.sku.as_str());
        if slot
            .tails
            .get(&self.sku)
            .is_some_and(|tail| tail.ticket == self.ticket)
        {
            slot.tails.remove(&self.sku);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    fn sku(name: &str) -> Sku {
        Sku(name.to_owned())
    }

    fn ready(future: impl Future<Output = ()>) -> bool {
        let mut future = std::pin::pin!(future);
        matches!(
            future
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(())
        )
    }

    #[test]
    fn a_turn_waits_for_its_predecessor_only_and_the_last_one_removes_the_entry() {
        let order = Arc::new(RouteOrder::new(4));
        let mut first = order.turn(&sku("A"));
        let mut second = order.turn(&sku("A"));
        let mut other = order.turn(&sku("B"));
        assert!(ready(first.predecessor_done()));
        assert!(ready(other.predecessor_done()), "B never waits for A");
        assert!(!ready(second.predecessor_done()), "second waits for first");
        assert_eq!(order.in_flight_skus(), 2);
        drop(first);
        assert!(ready(second.predecessor_done()));
        assert_eq!(order.in_flight_skus(), 2, "second is still in flight");
        drop(second);
        drop(other);
        assert_eq!(order.in_flight_skus(), 0);
    }

    #[tokio::test]
    async fn a_turn_dropped_before_its_predecessor_ends_keeps_the_chain_whole() {
        let order = Arc::new(RouteOrder::new(1));
        let first = order.turn(&sku("A"));
        let second = order.turn(&sku("A"));
        let mut third = order.turn(&sku("A"));
        drop(second);
        tokio::task::yield_now().await;
        assert!(
            !ready(third.predecessor_done()),
            "third still waits for first"
        );
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), third.predecessor_done())
            .await
            .expect("third goes once first has ended");
        drop(third);
        tokio::task::yield_now().await;
        assert_eq!(order.in_flight_skus(), 0);
    }
}
