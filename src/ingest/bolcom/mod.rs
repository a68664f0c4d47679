//! bol.com intake (PLATFORMS.md §3.5): bol pushes no orders in v10, so orders and returns
//! are polled; there is no webhook receiver.
//!
//! - [`decode`]: IO-free decoding of order lists, orders and returns into movements.
//! - [`poller`]: the order and returns poller on the shared poller loop.
//!
//! May depend on: `domain`, `config`, `ledger`, `telemetry`, `ingest::poller`.

pub mod decode;
pub mod poller;
