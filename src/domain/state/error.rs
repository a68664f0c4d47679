//! Why a movement is refused: [`ApplyError`].

use crate::domain::Sku;

/// Why a movement was refused. Refused movements are not recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A hold asked for more than is available at every candidate location.
    #[error(
        "insufficient stock for reservation {reservation}: requested {requested}, best location has {available} available"
    )]
    InsufficientStock {
        /// The reservation id.
        reservation: String,
        /// Units requested.
        requested: u64,
        /// The most available units at any candidate location.
        available: i64,
    },
    /// A fulfilment or cancellation named a reservation that is not open.
    #[error("reservation {reservation} is not open")]
    UnknownReservation {
        /// The reservation id.
        reservation: String,
    },
    /// More units shipped than are still reserved on the line.
    #[error("reservation {reservation} has {open} open units, cannot ship {requested}")]
    OverFulfilment {
        /// The reservation id.
        reservation: String,
        /// Units still open on it.
        open: u64,
        /// Units the fulfilment asked to ship.
        requested: u64,
    },
    /// A transfer receipt named a transfer that was never dispatched.
    #[error("transfer {transfer} is not known")]
    UnknownTransfer {
        /// The transfer id.
        transfer: String,
    },
    /// More units received than are still in transit on the transfer.
    #[error("transfer {transfer} has {in_transit} units in transit, cannot receive {requested}")]
    OverReceipt {
        /// The transfer id.
        transfer: String,
        /// Units still in transit on it.
        in_transit: u64,
        /// Units the receipt named.
        requested: u64,
    },
    /// A receipt against a purchase-order line that is not open.
    #[error("purchase order line {purchase_order} is not open")]
    UnknownPurchaseOrder {
        /// The purchase-order line id.
        purchase_order: String,
    },
    /// The transfer id was already used for another dispatch.
    #[error("transfer {transfer} was already dispatched")]
    DuplicateTransfer {
        /// The transfer id.
        transfer: String,
    },
    /// The movement itself is malformed (see [`Movement::validate`]).
    #[error("invalid movement: {0}")]
    Invalid(String),
    /// A movement for another SKU was sent to this state.
    #[error("movement for {got} applied to {expected}")]
    WrongSku {
        /// This state's SKU.
        expected: Sku,
        /// The movement's SKU.
        got: Sku,
    },
}
