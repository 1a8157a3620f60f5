//! End-to-end tests across binaries. One module per area.

mod models;
