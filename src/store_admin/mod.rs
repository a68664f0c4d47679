//! Store administration behind the CLI: `stocksync migrate` ([`migrate`]),
//! `stocksync store copy` ([`copy`]) and `stocksync store backup`/`restore` ([`backup`]).
//!
//! Owns: creating a configured store's schema on demand, and moving every record a
//! [`crate::store::Store`] can read from one store into another, resumably, with a
//! verification by counts and per-SKU checksums.
//!
//! May depend on: `config`, `store`, `clock`.

pub mod backup;
pub mod copy;
pub mod migrate;
