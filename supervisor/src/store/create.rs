//! [`Store::create`]: a model from an uploaded GGUF file plus parameters, template and
//! system message (Ollama's `POST /api/create` with `files`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Store;
use super::atomic;
use super::catalog::ModelEntry;
use super::details::ModelDetails;
use super::digest::Digest;
use super::error::StoreError;
use super::manifest::{Layer, Manifest, media_type};
use super::name::ModelName;

/// What a model is created from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateSpec {
    /// File name to digest of an uploaded blob; exactly one, a GGUF file.
    pub files: BTreeMap<String, Digest>,
    /// Default parameters (`temperature`, `stop`, ...), stored as given; the API
    /// checks names and types before calling [`Store::create`]. Empty: no params layer.
    pub parameters: Map<String, Value>,
    /// The prompt template; `None` or empty: no template layer.
    pub template: Option<String>,
    /// The default system message; `None` or empty: no system layer.
    pub system: Option<String>,
}

impl Store {
    /// Creates (or replaces) the model `name` from `spec` and returns its entry.
    ///
    /// The GGUF blob must already be uploaded ([`Store::write_blob`]) and must parse.
    /// Layer blobs and the config blob are written first, then the manifest atomically,
    /// so a crash leaves either the old model or the new one. Blocking: it parses the
    /// GGUF header and writes small files; call it through `spawn_blocking`.
    pub fn create(&self, name: &ModelName, spec: CreateSpec) -> Result<ModelEntry, StoreError> {
        let (file, digest) = match spec.files.first_key_value() {
            Some((file, digest)) if spec.files.len() == 1 => (file.clone(), digest.clone()),
            _ => {
                return Err(StoreError::UnsupportedFiles {
                    count: spec.files.len(),
                    names: spec.files.into_keys().collect(),
                });
            }
        };
        let blob = self.blob_path(&digest);
        let blob_len = match std::fs::metadata(&blob) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Err(StoreError::BlobMissing { file, digest }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing { file, digest });
            }
            Err(e) => return Err(StoreError::io("read", blob, e)),
        };
        let not_gguf = |reason: String| StoreError::NotGguf {
            file: file.clone(),
            digest: digest.clone(),
            reason,
        };
        let gguf = gguf::GgufFile::open(&blob).map_err(|e| not_gguf(e.to_string()))?;
        let details =
            ModelDetails::from_gguf(gguf.header()).map_err(|e| not_gguf(e.to_string()))?;
        drop(gguf);

        let mut layers = vec![Layer {
            media_type: media_type::MODEL.to_owned(),
            digest,
            size: blob_len,
        }];
        let texts = [
            (media_type::TEMPLATE, spec.template),
            (media_type::SYSTEM, spec.system),
        ];
        for (media_type, text) in texts {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                layers.push(self.small_layer(media_type, text.as_bytes())?);
            }
        }
        if !spec.parameters.is_empty() {
            let json =
                serde_json::to_vec(&spec.parameters).map_err(|source| StoreError::Encode {
                    what: "the parameters",
                    source,
                })?;
            layers.push(self.small_layer(media_type::PARAMS, &json)?);
        }

        let diff_ids = layers.iter().map(|l| l.digest.clone()).collect();
        let config = serde_json::to_vec(&details.to_config(diff_ids)).map_err(|source| {
            StoreError::Encode {
                what: "the model config",
                source,
            }
        })?;
        let config = self.small_layer(media_type::CONFIG, &config)?;
        let manifest = Manifest::new(config, layers);

        let path = self.manifest_path(name);
        let dir = path.parent().unwrap_or(self.manifests_dir());
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        atomic::write_atomic(&path, &manifest.to_bytes()?)?;
        self.remove_other_spellings(name, &path)?;
        self.entry(name, &path)
    }

    /// Removes the manifests of `name` spelled in other letter case than the one just
    /// written at `kept`: a manifest Ollama wrote under other case names the same model,
    /// and the new one replaces it.
    pub(super) fn remove_other_spellings(
        &self,
        name: &ModelName,
        kept: &std::path::Path,
    ) -> Result<(), StoreError> {
        for old in self.manifest_files(name) {
            if old != kept {
                std::fs::remove_file(&old).map_err(|e| StoreError::io("remove", &old, e))?;
                self.remove_empty_parents(&old);
            }
        }
        Ok(())
    }

    /// Removes the directories above a removed manifest that are now empty, up to
    /// `manifests/` itself, as Ollama does.
    pub(super) fn remove_empty_parents(&self, removed: &std::path::Path) {
        let mut dir = removed.parent();
        while let Some(d) =
            dir.filter(|d| d.starts_with(self.manifests_dir()) && *d != self.manifests_dir())
        {
            // Fails, harmlessly, once a directory still holds something.
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    fn small_layer(&self, media_type: &str, bytes: &[u8]) -> Result<Layer, StoreError> {
        Ok(Layer {
            media_type: media_type.to_owned(),
            digest: self.write_blob_bytes(bytes)?,
            size: bytes.len() as u64,
        })
    }
}
