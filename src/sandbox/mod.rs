//! Faithful local simulators of the sales platforms (DESIGN.md §4 "Platform simulators").
//!
//! Owns: in-process HTTP servers that behave like the platforms described in PLATFORMS.md,
//! including the awkward parts (throttling, compare-and-set errors, idempotency keys,
//! signed webhooks). Tests, the demo, benchmarks and what-if simulation use them.
//!
//! May depend on: `config`, `telemetry` only; a simulator knows nothing about the engine.

pub mod amazon;
pub mod bolcom;
pub mod shopify;
pub mod woocommerce;
