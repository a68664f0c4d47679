//! The integration tests: ONE test binary (`cargo test --test integration`), so the
//! library and its dependencies are linked once rather than once per test file.
//!
//! One module per area, each against real servers on `127.0.0.1:0`, temp dirs and, for
//! Kafka, a real tansu broker; `support` and `compliance` are the shared harnesses. The
//! tests run in parallel as threads of this one process, so none may rely on process-wide
//! state of its own: the metrics recorder is installed once per process
//! (`stocksync::telemetry::prometheus`) and every test tells its metrics apart by its own
//! channel, source or SKU names.
//!
//! Run one area with `cargo test --test integration web_api::`, one test by its path
//! (`cargo test --test integration -- --exact web_api::name`).

// A test target sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

mod compliance;
mod support;

mod amazon_bridge;
mod auth;
mod backup_restore;
mod bolcom_amazon;
mod channel_compliance;
mod cluster;
mod cluster_processes;
mod crash_recovery;
mod dashboard_browser;
mod end_to_end;
mod grafana;
mod http_limits;
mod kafka_assignment;
mod kafka_ingest;
mod kafka_partitioner;
mod kafka_poison;
mod kits_refunds;
mod layout;
mod limits;
mod loadgen;
mod multichannel;
mod openapi_contract;
mod order_lifecycle;
mod readme_commands;
mod reconcile;
mod reservations;
mod scenarios;
mod shopify_locations;
mod shopify_propagation;
mod stock_model;
mod store_conformance;
mod store_copy;
mod stored_format;
mod web_api;
mod woocommerce_intake;
