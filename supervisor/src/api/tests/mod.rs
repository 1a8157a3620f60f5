//! Tests of the HTTP layer that start no process.

mod chat;
mod context;
mod create;
mod embed;
mod errors;
mod format;
mod generate;
mod handlers;
mod models;
mod openai;
mod openai_routes;
mod requests;
