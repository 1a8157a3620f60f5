//! Why a model cannot be planned.

use gguf::{GgufError, MetadataError};
use thiserror::Error;

use crate::kv::KvConfigError;

/// Why a model's memory plan or estimate cannot be made.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A hyper-parameter is missing or malformed (the error names the key).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A hyper-parameter has a value the architecture cannot use.
    #[error("metadata key '{key}' is {value}: {why}")]
    BadHyperParameter {
        /// The key.
        key: String,
        /// Its value, printed.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No implementation exists for the file's architecture.
    #[error("unknown model architecture '{0}'")]
    UnknownArchitecture(String),
    /// The K/V cache cannot be configured as asked.
    #[error(transparent)]
    Kv(#[from] KvConfigError),
}
