//! Ingest: every way a movement enters stocksync before it reaches the ledger.
//!
//! Owns: the Kafka movements consumer and its dead-letter producer ([`kafka`]), the optional
//! ATP output producer ([`kafka::AtpPublisher`]), and the platform webhook decoders
//! ([`shopify`]). Decoders are IO-free functions (bytes → movement or a typed error) with
//! unit tests beside them; the I/O around them only sequences calls.
//!
//! Invariant (DESIGN.md §3 rule 3): a source is acknowledged (a Kafka offset committed, an
//! HTTP 2xx answered) only after the ledger says the movement is durable.
//!
//! May depend on: `domain`, `ledger`, `config`, `telemetry` and `store` types. Never on
//! `propagation` or `channels`.

pub mod amazon;
pub mod amazon_poll;
pub mod bolcom;
pub mod bolcom_poll;
pub mod channel_pollers;
pub mod kafka;
pub mod shopify;
pub mod woocommerce;
pub mod woocommerce_poll;
