//! stocksync: an inventory synchronisation engine.
//!
//! Every stock movement from every source lands in one central ledger; every channel's
//! listed quantity (available-to-promise, ATP) is derived from that ledger and pushed out
//! within seconds, within each platform's rate limits.
//!
//! ```text
//! ingest (Kafka, webhooks, REST) ─► ledger (per-SKU actors) ─► store (embedded SQLite)
//!                                        │
//!                                        └─► propagation (per-channel actors, coalescing
//!                                            queues, token buckets) ─► channels (adapters)
//! web (API, /metrics) reads ledger state; app wires everything
//! ```
//!
//! Layout:
//! - [`domain`]: vocabulary types and the pure SKU state machine (no async, no I/O).
//! - [`ledger`]: SKU actors, registry, passivation, group commit.
//! - [`store`]: the `Store` trait and its backends.
//! - [`store_admin`]: `stocksync migrate` and `stocksync store copy`.
//! - [`ingest`]: every way a movement comes in: Kafka consumer, and per platform its
//!   decoders, webhook receiver (an axum router `web` mounts) and poller.
//! - [`propagation`]: per-channel actors with coalescing queue, rate limiter, retries.
//! - [`reconcile`]: channel read-back, echo recognition, discrepancies, healing, alerts.
//! - [`platforms`]: one API client per platform (auth, token cache, throttle signals,
//!   error classification) and its config section, shared by channels and ingest.
//! - [`channels`]: one folder per platform adapter (the push side).
//! - [`sandbox`]: faithful local simulators of the platforms.
//! - [`web`]: HTTP API (mounting the webhook receivers of `ingest`), `/metrics`, `/healthz`.
//! - [`config`], [`telemetry`], [`clock`], [`signing`], [`problem`]: leaf modules.
//! - [`demo`]: the synthetic demo behind `stocksync demo`.
//! - `fuzzing` (hidden): property checks over arbitrary bytes for every IO-free decoder,
//!   shared by the `cargo fuzz` targets in `fuzz/` and the proptest run in `cargo test`.
//! - [`loadgen`]: the shipped load generator (`stocksync loadgen`, `stocksync bench memory`).
//! - [`app`]: the only place that wires everything.
//!
//! A module depends only on what is downstream of it in the flow or on leaf modules.

// The unit-test build also sees the dev-dependencies of the integration tests and benches.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// Used by the `stocksync` binary only (src/main.rs: the CLI and the global allocator);
// `unused_crate_dependencies` checks each target on its own.
use clap as _;
use mimalloc as _;

pub mod app;
pub mod channels;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod ledger;
pub mod loadgen;
pub mod platforms;
pub mod problem;
pub mod propagation;
pub mod reconcile;
pub mod sandbox;
pub mod signing;
pub mod store;
pub mod store_admin;
pub mod telemetry;
pub mod web;
