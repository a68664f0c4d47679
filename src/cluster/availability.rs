//! Availability changes reach the channels' leaders (issue 13 §4): the ledger of each
//! instance publishes only its own SKUs' changes, but a channel is pushed by one instance,
//! so every instance also sends its changes to each other instance that leads a channel.
//!
//! Owns: [`ClusterSink`] (the ledger's [`AvailabilitySink`] with `[cluster]`), the wire type
//! of `POST /internal/v1/cluster/availability` ([`AvailabilityRequest`]; the receiving end is
//! `crate::web`'s cluster route, which publishes into propagation only) and
//! [`AVAILABILITY_PATH`].
//!
//! Per destination (an advertised URL of another instance that leads a channel now): a
//! bounded queue of at most [`MAX_CHANGES_WAITING`] changes (full: the oldest is dropped and
//! counted) and one task that sends them in order, at most [`MAX_CHANGES_PER_REQUEST`] per
//! request, with the cluster token. A failed request is retried with a backoff (100 ms
//! doubling to 5 s) while the destination still leads a channel; a destination that no
//! longer leads anything is forgotten with what waits for it. What is lost this way is
//! healed by the next leader's rebuild from the ledger when it takes a channel over, and by
//! reconciliation; the leader's sequence filter drops any change older than one it has.
//!
//! May depend on: `domain`, `telemetry`, `cluster::channels`.

use super::ChannelLeadership;
use crate::domain::{AvailabilityChange, AvailabilitySink};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The path availability changes are posted to on a channel's leader.
pub const AVAILABILITY_PATH: &str = "/internal/v1/cluster/availability";

/// Most changes in one request.
pub const MAX_CHANGES_PER_REQUEST: usize = 1_000;

/// Most changes waiting per destination; beyond, the oldest is dropped (and counted).
pub const MAX_CHANGES_WAITING: usize = 100_000;

/// How long one request may take, in seconds.
const REQUEST_TIMEOUT_SECS: u64 = 10;

/// The first pause after a failed request, in milliseconds (doubling up to
/// [`BACKOFF_MAX_MS`]).
const BACKOFF_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 5_000;

/// How often an idle sender checks that its destination still leads a channel.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The body of `POST /internal/v1/cluster/availability`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AvailabilityRequest {
    /// Durable availability changes of the sender's SKUs, oldest first; at most
    /// [`MAX_CHANGES_PER_REQUEST`].
    pub changes: Vec<AvailabilityChange>,
}

/// The same body, borrowed (the sender keeps the changes to retry them).
#[derive(Serialize)]
struct AvailabilityRequestRef<'a> {
    changes: &'a [AvailabilityChange],
}

/// The ledger's sink with `[cluster]`: publishes into the local propagation and queues the
/// changes for every other instance that leads a channel (see the module docs).
pub struct ClusterSink {
    inner: Arc<Inner>,
}

struct Inner {
    local: Arc<dyn AvailabilitySink>,
    leadership: Arc<ChannelLeadership>,
    client: reqwest::Client,
    token: String,
    destinations: Mutex<HashMap<Arc<str>, Arc<Destination>>>,
    stop: watch::Sender<bool>,
}

/// The changes waiting for one destination.
#[derive(Default)]
struct Destination {
    queue: Mutex<VecDeque<AvailabilityChange>>,
    wake: Notify,
}

impl Destination {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<AvailabilityChange>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `changes`, dropping the oldest beyond the bound; returns how many dropped.
    fn push(&self, changes: &[AvailabilityChange]) -> usize {
        let mut queue = self.queue();
        queue.extend(changes.iter().cloned());
        let excess = queue.len().saturating_sub(MAX_CHANGES_WAITING);
        queue.drain(..excess);
        excess
    }

    /// Puts a batch that could not be sent back in front (still bounded: what exceeds the
    /// bound is dropped from the oldest end); returns how many dropped.
    fn requeue(&self, batch: Vec<AvailabilityChange>) -> usize {
        let mut queue = self.queue();
        for change in batch.into_iter().rev() {
            queue.push_front(change);
        }
        let excess = queue.len().saturating_sub(MAX_CHANGES_WAITING);
        queue.drain(..excess);
        excess
    }

    fn take(&self, max: usize) -> Vec<AvailabilityChange> {
        let mut queue = self.queue();
        let count = queue.len().min(max);
        queue.drain(..count).collect()
    }
}

impl ClusterSink {
    /// A sink publishing into `local` (propagation) and sending to the leaders `leadership`
    /// names, over `client` with `token` (`[cluster] token`) as the bearer credential.
    /// Senders are spawned on the current tokio runtime as destinations appear.
    pub fn new(
        local: Arc<dyn AvailabilitySink>,
        leadership: Arc<ChannelLeadership>,
        client: reqwest::Client,
        token: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                local,
                leadership,
                client,
                token,
                destinations: Mutex::new(HashMap::new()),
                stop: watch::channel(false).0,
            }),
        }
    }

    /// Changes waiting for `url`, if it is a destination now.
    pub fn waiting(&self, url: &str) -> Option<usize> {
        self.inner
            .destinations()
            .get(url)
            .map(|destination| destination.queue().len())
    }

    /// Stops every sender (what waits is dropped: the next leader rebuilds from the ledger).
    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.destinations().clear();
    }
}

impl Inner {
    fn destinations(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Destination>>> {
        self.destinations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Posts `changes` to `url`.
    async fn send(&self, url: &str, changes: &[AvailabilityChange]) -> Result<(), String> {
        let target = format!("{}{AVAILABILITY_PATH}", url.trim_end_matches('/'));
        let response = self
            .client
            .post(&target)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .json(&AvailabilityRequestRef { changes })
            .send()
            .await
            .map_err(|error| format!("sending to {target} failed: {error}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{target} answered {status}"));
        }
        Ok(())
    }

    /// Forgets `url` when nothing waits for it and it leads no channel; true when forgotten.
    /// Under the destinations' lock, so no change is queued for a destination whose sender
    /// has ended.
    fn retire_if_idle(&self, url: &Arc<str>, destination: &Destination) -> bool {
        let mut destinations = self.destinations();
        if !destination.queue().is_empty() || self.leadership.remote_leaders().contains(url) {
            return false;
        }
        destinations.remove(url);
        true
    }

    /// One destination's sender (see the module docs).
    async fn run(self: Arc<Self>, url: Arc<str>, destination: Arc<Destination>) {
        let mut stopped = self.stop.subscribe();
        let mut backoff_ms = BACKOFF_MS;
        loop {
            if *stopped.borrow() {
                return;
            }
            let batch = destination.take(MAX_CHANGES_PER_REQUEST);
            if batch.is_empty() {
                if self.retire_if_idle(&url, &destination) {
                    tracing::debug!(url = %url, "no longer a channel leader: stopped sending to it");
                    return;
                }
                tokio::select! {
                    _ = destination.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                    _ = stopped.changed() => return,
                }
                continue;
            }
            match self.send(&url, &batch).await {
                Ok(()) => {
                    backoff_ms = BACKOFF_MS;
                    metrics::counter!(crate::telemetry::CLUSTER_AVAILABILITY_FORWARDED_TOTAL, "outcome" => "sent")
                        .increment(batch.len() as u64);
                }
                Err(error) => {
                    metrics::counter!(crate::telemetry::CLUSTER_AVAILABILITY_FORWARDED_TOTAL, "outcome" => "failed")
                        .increment(batch.len() as u64);
                    if !self.leadership.remote_leaders().contains(&url) {
                        // It leads nothing any more: whoever leads now rebuilds from the ledger.
                        destination.queue().clear();
                        if self.retire_if_idle(&url, &destination) {
                            tracing::info!(url = %url, error = %error, "a former channel leader is unreachable; its changes are dropped");
                            return;
                        }
                        continue;
                    }
                    tracing::warn!(url = %url, error = %error, retry_in_ms = backoff_ms, "availability changes not delivered to a channel leader; retrying");
                    count_dropped(destination.requeue(batch));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                        _ = stopped.changed() => return,
                    }
                    backoff_ms = backoff_ms.saturating_mul(2).min(BACKOFF_MAX_MS);
                }
            }
        }
    }
}

fn count_dropped(dropped: usize) {
    if dropped > 0 {
        metrics::counter!(crate::telemetry::CLUSTER_AVAILABILITY_FORWARDED_TOTAL, "outcome" => "dropped")
            .increment(dropped as u64);
        tracing::warn!(
            dropped,
            "availability queue to a channel leader full; oldest changes dropped"
        );
    }
}

impl AvailabilitySink for ClusterSink {
    fn publish(&self, changes: &[AvailabilityChange]) {
        self.inner.local.publish(changes);
        if changes.is_empty() || *self.inner.stop.borrow() {
            return;
        }
        let leaders = self.inner.leadership.remote_leaders();
        if leaders.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no tokio runtime: availability changes not sent to the channel leaders"
            );
            return;
        };
        let mut destinations = self.inner.destinations();
        for url in leaders {
            let destination = destinations.entry(url.clone()).or_insert_with(|| {
                let destination = Arc::new(Destination::default());
                runtime.spawn(Arc::clone(&self.inner).run(url.clone(), Arc::clone(&destination)));
                destination
            });
            count_dropped(destination.push(changes));
            destination.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Sku;

    fn change(sku: &str, seq: u64) -> AvailabilityChange {
        AvailabilityChange {
            sku: Sku::from(sku),
            seq,
            locations: Vec::new(),
            inbound: Vec::new(),
        }
    }

    #[test]
    fn a_destination_queue_is_bounded_and_drops_the_oldest() {
        let destination = Destination::default();
        let many: Vec<AvailabilityChange> = (0..MAX_CHANGES_WAITING as u64 + 5)
            .map(|seq| change("A", seq))
            .collect();
        assert_eq!(destination.push(&many), 5);
        assert_eq!(destination.queue().len(), MAX_CHANGES_WAITING);
        assert_eq!(destination.queue().front().map(|c| c.seq), Some(5));
        let batch = destination.take(MAX_CHANGES_PER_REQUEST);
        assert_eq!(batch.len(), MAX_CHANGES_PER_REQUEST);
        assert_eq!(destination.push(&[change("B", 1)]), 0);
        // A failed batch goes back in front; the bound holds, the oldest go.
        assert_eq!(destination.requeue(batch), 1);
        assert_eq!(destination.queue().front().map(|c| c.seq), Some(6));
        assert_eq!(
            destination.queue().back().map(|c| c.sku.as_str()),
            Some("B")
        );
    }
}
