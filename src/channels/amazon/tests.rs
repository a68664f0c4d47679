//! Unit tests of the Amazon adapter.
