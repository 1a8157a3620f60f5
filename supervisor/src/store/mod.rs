//! The model store, on disk exactly in Ollama's layout so an admin recognises it:
//!
//! - `$OLLAMA_MODELS/blobs/sha256-<hex>`: content-addressed files (GGUF weights, JSON
//!   and text layers, the config).
//! - `$OLLAMA_MODELS/manifests/<host>/<namespace>/<model>/<tag>`: a Docker v2 manifest
//!   listing a model's config and layers by digest.
//!
//! Every write is atomic (temporary file, fsync, rename): a crash never leaves a partial
//! blob under its digest or a half-written manifest. Uploads are verified against their
//! digest before they become visible.
//!
//! [`Store::write_blob`] is async; the other operations do small blocking I/O and are
//! meant to be called from async code through `spawn_blocking`.

mod atomic;
mod blobs;
mod catalog;
mod create;
mod details;
mod digest;
mod error;
mod manage;
mod manifest;
mod name;
mod prune;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use catalog::{ModelEntry, ResolvedModel};
pub use create::{CreateSpec, StoredMessage};
pub use details::{ModelDetails, human_number};
pub use digest::Digest;
pub use error::StoreError;
pub use manage::Deleted;
pub use manifest::media_type;
pub use name::{DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName};
pub use prune::Pruned;

/// A model store rooted at a models directory (`$OLLAMA_MODELS`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    blobs: PathBuf,
    manifests: PathBuf,
}

impl Store {
    /// Opens the store in `models_dir`, creating `blobs/` and `manifests/` if missing.
    /// Blocking.
    pub fn open(models_dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = models_dir.into();
        let store = Self {
            blobs: root.join("blobs"),
            manifests: root.join("manifests"),
            root,
        };
        for dir in [&store.blobs, &store.manifests] {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        }
        Ok(store)
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/` inside the models directory.
    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// `manifests/` inside the models directory.
    pub fn manifests_dir(&self) -> &Path {
        &self.manifests
    }

    /// Where the manifest for `name` is (or would be written).
    pub fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.manifests.join(name.manifest_path())
    }
}
