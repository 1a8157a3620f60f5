//! Tests of the HTTP layer that start no process.

mod chat;
mod create;
mod embed;
mod errors;
mod format;
mod handlers;
mod models;
mod ps_table;
