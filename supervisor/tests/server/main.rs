//! `ollamad` end to end: the real server, runner and models, driven over HTTP.

mod api;
mod config;
mod crashes;
mod harness;
mod lifecycle;
