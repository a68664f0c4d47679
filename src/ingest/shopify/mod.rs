//! Shopify intake (PLATFORMS.md §1.6–1.8): Shopify pushes orders, refunds and inventory
//! level changes as signed webhooks; an orders poller backs them up.
//!
//! - [`decode`]: IO-free webhook verification and decoding into movements.
//! - [`fulfillment`]: fulfillment orders (where Shopify assigned an order's units), read
//!   back after their thin webhooks and turned into sales and reassignments.
//! - [`receiver`]: `POST /webhooks/shopify/{channel_id}`, as a router `web` mounts.
//! - [`poller`]: `orders.json?updated_at_min=…` on an interval and whenever a
//!   compare-and-set conflict wakes it, through the same decoder.
//!
//! May depend on: `domain`, `config`, `ledger`, `signing`, `telemetry`, `platforms`,
//! `ingest::receiver`, `ingest::poller`.

pub mod decode;
pub mod fulfillment;
pub mod poller;
pub mod receiver;
