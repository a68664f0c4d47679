//! Amazon intake (PLATFORMS.md §4.3, §4.4, §4.6): ORDER_CHANGE notifications (through an
//! SQS bridge, over HTTP or Kafka), the Orders API backstop poller and the FBA inventory
//! reader.
//!
//! - [`decode`]: IO-free decoding of notifications, order pages, order items and FBA
//!   summaries into movements, and the Kafka record decoder of the bridge topic.
//! - [`receiver`]: `POST /webhooks/amazon/{channel_id}`, as a router `web` mounts.
//! - [`poller`]: the Orders API and FBA pollers on the shared poller loop.
//! - [`bridge`]: the Kafka consumer of the notifications an SQS bridge puts on a topic.
//!
//! May depend on: `domain`, `config`, `ledger`, `telemetry`, `ingest::receiver`,
//! `ingest::poller`, `ingest::kafka` (the record decoder type).

pub mod bridge;
pub mod decode;
pub mod poller;
pub mod receiver;
