//! Shopify intake (PLATFORMS.md §1.6–1.8): Shopify pushes orders, refunds and inventory
//! level changes as signed webhooks; there is no poller.
//!
//! - [`decode`]: IO-free webhook verification and decoding into movements.
//! - [`receiver`]: `POST /webhooks/shopify/{channel_id}`, as a router `web` mounts.
//!
//! May depend on: `domain`, `config`, `ledger`, `signing`, `telemetry`,
//! `ingest::receiver`.

pub mod decode;
pub mod receiver;
