//! [`Store::copy`] and [`Store::delete`]: Ollama's `POST /api/copy` and
//! `DELETE /api/delete`. A copy is a second manifest naming the same blobs, written
//! atomically; a delete removes the manifest, then the blobs no other model names.

use std::collections::HashSet;

use super::Store;
use super::atomic;
use super::catalog::ModelEntry;
use super::error::StoreError;
use super::manifest::read_manifest;
use super::name::ModelName;

/// What [`Store::delete`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Manifest files: one, or more when Ollama wrote the name in several letter cases.
    pub manifests: usize,
    /// Blobs that no other model names.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl Store {
    /// Copies the model `source` to `destination` and returns the new entry: the same
    /// manifest bytes (so the same digest and blobs) under the new name, written
    /// atomically, replacing any model of that name. Copying a model onto its own name
    /// changes nothing. Blocking.
    pub fn copy(
        &self,
        source: &ModelName,
        destination: &ModelName,
    ) -> Result<ModelEntry, StoreError> {
        let from = self
            .manifest_files(source)
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound {
                name: source.to_string(),
            })?;
        // A damaged source is refused here rather than copied.
        let entry = self.entry(source, &from)?;
        if source == destination {
            return Ok(entry);
        }
        let bytes = std::fs::read(&from).map_err(|e| StoreError::io("read", &from, e))?;
        let to = self.manifest_path(destination);
        let dir = to.parent().unwrap_or(self.manifests_dir());
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        atomic::write_atomic(&to, &bytes)?;
        self.remove_other_spellings(destination, &to)?;
        self.entry(destination, &to)
    }

    /// Deletes the model `name`: its manifest (in every letter case Ollama may have
    /// written it), the directories left empty, and the blobs no other manifest names.
    /// When another manifest cannot be read, what it names is unknown and every blob is
    /// kept (a later prune removes them). Blocking.
    pub fn delete(&self, name: &ModelName) -> Result<Deleted, StoreError> {
        let paths = self.manifest_files(name);
        if paths.is_empty() {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        }
        // What the deleted manifests name; an unreadable one names nothing we know.
        let mut named = HashSet::new();
        for path in &paths {
            if let Ok(file) = read_manifest(path) {
                named.insert(file.manifest.config.digest.clone());
                named.extend(file.manifest.layers.iter().map(|l| l.digest.clone()));
            }
        }
        for path in &paths {
            std::fs::remove_file(path).map_err(|e| StoreError::io("remove", path, e))?;
            self.remove_empty_parents(path);
        }
        let mut deleted = Deleted {
            manifests: paths.len(),
            ..Deleted::default()
        };
        let used = match self.used_blobs() {
            Ok(used) => used,
            Err(reason) => {
                tracing::warn!(model = %name, %reason, "keeping the deleted model's blobs: a manifest is unreadable");
                return Ok(deleted);
            }
        };
        for digest in named.difference(&used) {
            let path = self.blob_path(digest);
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    deleted.blobs += 1;
                    deleted.bytes += bytes;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", path, e)),
            }
        }
        Ok(deleted)
    }
}
