//! What the supervisor and the runner both need without the engine.
//!
//! `ollamad` must decide whether a model fits before it starts a runner, and refuse bad
//! load options with the runner's own words, yet it must not link the engine or the
//! kernels. This crate holds that shared part, as plain data and arithmetic:
//!
//! - [`arch`]: each architecture's hyper-parameters read from GGUF metadata, and the
//!   memory plan they imply ([`ArchPlan`]);
//! - [`kv`]: the K/V cache configuration ([`KvConfig`], [`CacheType`]) and the sizes of
//!   its tables and rows ([`KvPlan`]);
//! - [`compute`]: the sizes of the activations and of the attention and matmul scratch;
//! - [`device`]: the sizes of a GPU load's device buffers (weights as uploaded, the
//!   pass's buffers);
//! - [`estimate`](mod@estimate): the bytes a load takes, by kind, in host memory and on
//!   a GPU;
//! - [`heap`]: the heap sizes of the tables built from a file's metadata (the parsed
//!   header, the tokenizer, the grammar engine);
//! - [`load`]: a load's options checked into a [`LoadConfig`];
//! - [`logging`]: the binaries' stderr logging.
//!
//! The runner allocates its cache and buffers through these same functions, so an
//! estimate is what a load allocates. It depends on the GGUF reader and the GGML types
//! only; errors are this crate's own ([`PlanError`], [`KvConfigError`],
//! [`LoadConfigError`]), which each side maps at its boundary.

#![forbid(unsafe_code)]

pub mod arch;
pub mod compute;
pub mod device;
mod error;
pub mod estimate;
pub mod heap;
pub mod kv;
pub mod load;
pub mod logging;

pub use arch::{ArchPlan, RopeSpec};
pub use error::PlanError;
pub use estimate::{Estimate, estimate, mib};
pub use kv::{CacheType, KvBytes, KvConfig, KvConfigError, KvLayout, KvPlan};
pub use load::{LoadConfig, LoadConfigError, LoadParams};
