//! WooCommerce intake (PLATFORMS.md §2.3–2.4): signed order webhooks, which WooCommerce
//! never retries, backed up by an order poller.
//!
//! - [`decode`]: IO-free webhook verification and order decoding into movements.
//! - [`receiver`]: `POST /webhooks/woocommerce/{channel_id}`, as a router `web` mounts.
//! - [`poller`]: the order poller (`modified_after` cursor) on the shared poller loop.
//! - [`lines`]: the durable index of an order's known lines, so a line WooCommerce dropped
//!   from an edited order becomes an edit to 0.
//!
//! May depend on: `domain`, `config`, `ledger`, `signing`, `telemetry`, `store`,
//! `ingest::receiver`, `ingest::poller`.

pub mod decode;
pub mod lines;
pub mod poller;
pub mod receiver;
