//! [`Store::prune`]: removing what no model uses, as Ollama does at start unless
//! `OLLAMA_NOPRUNE` is set.

use std::collections::HashSet;
use std::path::Path;

use super::Store;
use super::atomic::TEMP_PREFIX;
use super::catalog::walk;
use super::digest::Digest;
use super::error::StoreError;
use super::manifest::read_manifest;

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs no manifest names.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Temporary files left by interrupted uploads or creates.
    pub temp_files: usize,
}

impl Store {
    /// Removes blobs that no manifest names and the temporary files interrupted writes
    /// left behind. Run it before serving: an upload in progress, or a blob uploaded for a
    /// create that has not come yet, is removed. When any manifest cannot be read, no blob
    /// is removed (what it names is unknown), only temporary files. Blocking.
    pub fn prune(&self) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned {
            temp_files: remove_temp_files(self.blobs_dir())
                + remove_temp_files(self.manifests_dir()),
            ..Pruned::default()
        };
        let used = match self.used_blobs() {
            Ok(used) => used,
            Err(reason) => {
                tracing::warn!(%reason, "not pruning blobs: a manifest is unreadable");
                return Ok(pruned);
            }
        };
        let dir = self.blobs_dir();
        let read = std::fs::read_dir(dir).map_err(|e| StoreError::io("read", dir, e))?;
        for entry in read.flatten() {
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::parse(n).ok())
            else {
                continue;
            };
            if used.contains(&digest) {
                continue;
            }
            let path = entry.path();
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    pruned.blobs += 1;
                    pruned.bytes += bytes;
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot prune blob"),
            }
        }
        Ok(pruned)
    }
}

impl Store {
    /// Every blob some manifest names (configs and layers). Fails, saying which, when a
    /// manifest cannot be read: what it names is then unknown, so nothing may be removed.
    /// Blocking.
    pub(crate) fn used_blobs(&self) -> Result<HashSet<Digest>, String> {
        let mut manifests = Vec::new();
        walk(self.manifests_dir(), &mut Vec::new(), &mut manifests);
        let mut used = HashSet::new();
        for (path, _) in &manifests {
            let file = read_manifest(path)?;
            used.insert(file.manifest.config.digest.clone());
            used.extend(file.manifest.layers.iter().map(|l| l.digest.clone()));
        }
        Ok(used)
    }
}

/// Removes files named with the temporary prefix anywhere under `dir`; returns how many.
fn remove_temp_files(dir: &Path) -> usize {
    let Ok(read) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in read.flatten() {
        let path = entry.path();
        let temp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX));
        if path.is_dir() {
            removed += remove_temp_files(&path);
        } else if temp && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}
