//! Tests of the HTTP layer that start no process.

mod errors;
mod handlers;
mod ps_table;
