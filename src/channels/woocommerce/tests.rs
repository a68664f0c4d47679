//! Unit tests of the WooCommerce adapter against the simulator (filled below).
