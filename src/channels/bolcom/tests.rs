//! Unit tests of the bol.com adapter.
