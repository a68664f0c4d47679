//! Which SKUs this instance may write, when several instances share one store.
//!
//! Owns: the [`Ownership`] contract between the ledger and whatever decides ownership
//! (`crate::cluster` with `[cluster]` configured; nothing on a single node).
//!
//! The ledger asks it three things:
//! - before new work for a SKU starts on a shard (a movement, a hold expiry), whether this
//!   instance may start it ([`Ownership::admit`]); a refusal is answered
//!   [`LedgerError::NotOwner`] and nothing is applied;
//! - when a group commit is built, the [`Fence`] each SKU's records are written under
//!   ([`Ownership::fence`]): the SKU's partition scope and the epoch this instance holds it
//!   at. A SKU whose partition is no longer held gets no fence: its records are left out of
//!   the write and its callers are answered `NotOwner`;
//! - when the store refuses a write as stale ([`crate::store::StoreError::Fenced`]), which
//!   scope was lost ([`Ownership::fenced`]), so that the owner of the decision stops
//!   admitting its SKUs and evicts them ([`crate::ledger::Ledger::evict_where`]).
//!
//! A SKU that is admitted while its partition is being handed over keeps being written
//! under the old epoch until the handover flushes and evicts it: admission and fencing are
//! separate on purpose.
//!
//! May depend on: `store` types and the ledger's error type.

use super::{Ack, LedgerError};
use crate::domain::Movement;
use crate::store::Fence;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// How long a movement submitted on an instance that does not own its SKU is retried while
/// the SKU's partition moves, in milliseconds from its submission (longer than a default
/// session timeout, so a node loss during the request is waited out). Counted from the
/// submission, the time spent waiting behind earlier movements of the same SKU included.
pub const ROUTE_DEADLINE_MS: u64 = 30_000;

/// The answer of a forwarded movement.
pub type ForwardFuture = Pin<Box<dyn Future<Output = Result<Ack, LedgerError>> + Send>>;

/// Sends a movement to the instance that owns its SKU (`crate::cluster` does it over HTTP
/// with the cluster credential) and gives back that instance's answer unchanged: `Ok` only
/// once the movement is durable there. A transport failure is
/// [`LedgerError::Unavailable`]; an owner that no longer owns the SKU answers
/// [`LedgerError::NotOwner`] (the ledger then retries).
pub trait Forwarder: Send + Sync + 'static {
    /// Applies `movement` on the instance whose advertised base URL is `owner`.
    fn forward(&self, owner: String, movement: Movement) -> ForwardFuture;
}

/// A shared [`Forwarder`] in [`super::LedgerOptions`] (`Debug` for the options).
#[derive(Clone)]
pub struct ForwarderHandle(pub Arc<dyn Forwarder>);

impl std::fmt::Debug for ForwarderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwarderHandle(..)")
    }
}

impl std::ops::Deref for ForwarderHandle {
    type Target = dyn Forwarder;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

/// The ledger's view of SKU ownership (see the module docs). Implementations must be cheap:
/// [`Ownership::admit`] runs for every message a shard routes and [`Ownership::fence`] for
/// every record of a group commit.
pub trait Ownership: Send + Sync + 'static {
    /// Whether new work for `sku` may start on this instance.
    ///
    /// Errors: [`LedgerError::NotOwner`] with the SKU's partition and, when known, the
    /// owner's advertised URL.
    fn admit(&self, sku: &str) -> Result<(), LedgerError>;

    /// The fence a write of `sku`'s records carries now, or `None` when this instance no
    /// longer holds the SKU's partition (the records must not be written).
    fn fence(&self, sku: &str) -> Option<Fence>;

    /// The store refused a write under `scope` at `epoch` (a newer epoch exists): this
    /// instance lost it, unless it holds the scope at another epoch by now (a refusal of an
    /// old write that was retried after the scope was taken back).
    fn fenced(&self, scope: &str, epoch: u64);
}

/// A shared [`Ownership`] in [`super::LedgerOptions`] (a newtype so that the options stay
/// `Debug`).
#[derive(Clone)]
pub struct OwnershipHandle(pub Arc<dyn Ownership>);

impl std::fmt::Debug for OwnershipHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnershipHandle(..)")
    }
}

impl std::ops::Deref for OwnershipHandle {
    type Target = dyn Ownership;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}
