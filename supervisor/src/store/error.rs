//! [`StoreError`]: everything that can go wrong in the model store, each message saying
//! what the user can do about it.

use std::path::PathBuf;

use thiserror::Error;

use super::digest::Digest;

/// An error from the model store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A file or directory of the store could not be read or written.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What the store was doing (`create`, `read`, `rename`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A model name that does not follow Ollama's rules.
    #[error(
        "invalid model name \"{}\": {reason}; a name is [host/][namespace/]model[:tag] \
         such as \"smollm2:latest\", each part starting with a letter, digit or '_' and \
         holding only letters, digits, '_', '-' and '.' (no '.' in a namespace, ':' only \
         for a host's port), at most 80 characters (350 for the host)",
        .name.escape_debug()
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest that is not `sha256:` followed by 64 hex digits.
    #[error(
        "invalid digest \"{digest}\": {reason}; a digest is \"sha256:\" followed by 64 hex \
         digits (the SHA-256 of the file, as `sha256sum` prints it)"
    )]
    InvalidDigest {
        /// The digest as given.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading an uploaded blob failed before it was complete.
    #[error("upload of blob {digest} failed while reading it: {source}; upload it again")]
    Upload {
        /// The digest the upload was for.
        digest: Digest,
        /// The read error.
        source: std::io::Error,
    },
    /// Reading an upload whose digest is not known in advance failed.
    #[error("upload failed while reading it: {0}; upload it again")]
    UploadStream(std::io::Error),
    /// An upload was not as long as its sender said.
    #[error(
        "the upload was {actual} bytes, but {expected} were announced; nothing was stored: \
         send the whole file"
    )]
    SizeMismatch {
        /// The size announced.
        expected: u64,
        /// The bytes received (at most one more than announced).
        actual: u64,
    },
    /// An uploaded blob's content does not hash to the digest it was uploaded as.
    #[error(
        "uploaded data has digest {actual}, not the expected {expected}; nothing was stored: \
         check the file and its digest (`sha256sum FILE`) and upload it again"
    )]
    DigestMismatch {
        /// The digest the client named.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// `files` in a create request is not exactly one GGUF file.
    #[error(
        "a model is created from exactly one GGUF file in \"files\", but {count} were given{}; \
         converting safetensors and adding adapters are not supported",
        NamesPart(.names)
    )]
    UnsupportedFiles {
        /// How many files were given.
        count: usize,
        /// Their names.
        names: Vec<String>,
    },
    /// A file named in a create request has not been uploaded.
    #[error(
        "file \"{file}\" ({digest}) has not been uploaded: upload it first with \
         POST /api/blobs/{digest}"
    )]
    BlobMissing {
        /// The file name from the request.
        file: String,
        /// Its digest.
        digest: Digest,
    },
    /// A file named in a create request is not a GGUF model.
    #[error("file \"{file}\" ({digest}) is not a usable GGUF model: {reason}")]
    NotGguf {
        /// The file name from the request.
        file: String,
        /// Its digest.
        digest: Digest,
        /// What the GGUF reader said.
        reason: String,
    },
    /// No model of this name is in the store.
    #[error("model \"{name}\" not found, create it first (POST /api/create or `ollama create`)")]
    NotFound {
        /// The name as the user sees it.
        name: String,
    },
    /// A model's manifest, config or layer is unreadable or missing.
    #[error("model \"{name}\" is damaged: {reason}; create it again to repair it")]
    Corrupt {
        /// The name as the user sees it.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Encoding a manifest or layer as JSON failed.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// `: a, b` after a count of files, or nothing when there are none.
struct NamesPart<'a>(&'a [String]);

impl std::fmt::Display for NamesPart<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, " (")?;
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "\"{name}\"")?;
        }
        write!(f, ")")
    }
}
