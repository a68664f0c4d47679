//! The shipped load generator behind `stocksync loadgen` and `stocksync bench memory`.
//!
//! Owns: the synthetic workload ([`workload`]: Zipf-skewed SKUs, a mix of receipts, sales,
//! cancellations and fulfilments that the ledger never refuses), the open-loop driver
//! ([`open_loop`]: fixed arrival times, latency from the due time, HDR histograms), the
//! targets ([`targets`]: REST, the ledger in process; [`in_flight`]: the ledger driven one
//! movement at a time with many in flight; [`kafka`]: pre-produced topic against
//! a raw consume; [`push`]: movement → channel push latency through the Shopify
//! simulator), rate sweeps ([`sweep`]), the memory benchmark ([`memory`]) and SVG
//! plots ([`plot`]).
//!
//! May depend on every module through its public API (it drives the whole engine, like
//! `app`); nothing depends on it but the binary.

pub mod in_flight;
pub mod kafka;
pub mod memory;
pub mod open_loop;
pub mod plot;
pub mod push;
pub mod sweep;
pub mod targets;
pub mod workload;
pub mod zipf;

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A file or temp dir could not be used.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
    /// Kafka admin, produce or consume failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The generated config did not parse.
    #[error("config: {0}")]
    Config(String),
    /// The in-process App failed to start or acknowledge.
    #[error("app: {0}")]
    App(String),
    /// A value could not be encoded or decoded.
    #[error("encoding: {0}")]
    Encode(String),
    /// A phase took longer than its limit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
    /// The workload options are out of range.
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
}
