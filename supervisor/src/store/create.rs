//! [`Store::create`]: a model from an uploaded GGUF file, or from another model's layers,
//! plus parameters, template, system message, licenses and messages (Ollama's
//! `POST /api/create`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Store;
use super::atomic;
use super::catalog::ModelEntry;
use super::details::ModelDetails;
use super::digest::Digest;
use super::error::StoreError;
use super::manifest::{Layer, Manifest, media_type, read_manifest};
use super::name::ModelName;

/// What a model is created from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateSpec {
    /// File name to digest of an uploaded blob; exactly one, a GGUF file. May be empty
    /// when `base` is given (the base's weights are kept).
    pub files: BTreeMap<String, Digest>,
    /// A model whose layers the new one starts from (`FROM llama3.2`); what else the
    /// spec gives replaces the base's layer of that kind (parameters are merged over).
    pub base: Option<ModelName>,
    /// Default parameters (`temperature`, `stop`, ...), stored as given; the API
    /// checks names and types before calling [`Store::create`]. Empty: no params layer.
    pub parameters: Map<String, Value>,
    /// The prompt template; `None` or empty: no template layer.
    pub template: Option<String>,
    /// The default system message; `None` or empty: no system layer.
    pub system: Option<String>,
    /// License texts, one layer each; empty: none (or the base's).
    pub license: Vec<String>,
    /// A conversation stored with the model and put before every chat; empty: none
    /// (or the base's).
    pub messages: Vec<StoredMessage>,
}

/// One message of the conversation a model is created with (Modelfile `MESSAGE`), as
/// Ollama stores it in its messages layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: String,
}

impl Store {
    /// Creates (or replaces) the model `name` from `spec` and returns its entry.
    ///
    /// The GGUF blob must already be uploaded ([`Store::write_blob`]) and must parse.
    /// Layer blobs and the config blob are written first, then the manifest atomically,
    /// so a crash leaves either the old model or the new one. Blocking: it parses the
    /// GGUF header and writes small files; call it through `spawn_blocking`.
    pub fn create(&self, name: &ModelName, spec: CreateSpec) -> Result<ModelEntry, StoreError> {
        let mut layers = match &spec.base {
            Some(base) => self.base_layers(base)?,
            None => Vec::new(),
        };
        if !spec.files.is_empty() || spec.base.is_none() {
            let model = self.model_layer(&spec.files)?;
            layers.retain(|l| l.media_type != media_type::MODEL);
            layers.insert(0, model);
        }
        let model = layers
            .iter()
            .find(|l| l.media_type == media_type::MODEL)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt {
                name: spec
                    .base
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                reason: "it has no model layer".into(),
            })?;
        let details = self.details_of(&model)?;

        let texts = [
            (
                media_type::TEMPLATE,
                spec.template.into_iter().collect::<Vec<_>>(),
            ),
            (media_type::SYSTEM, spec.system.into_iter().collect()),
            (media_type::LICENSE, spec.license),
        ];
        for (media_type, texts) in texts {
            let texts: Vec<String> = texts.into_iter().filter(|t| !t.is_empty()).collect();
            if !texts.is_empty() {
                layers.retain(|l| l.media_type != media_type);
                for text in texts {
                    layers.push(self.small_layer(media_type, text.as_bytes())?);
                }
            }
        }
        if !spec.messages.is_empty() {
            let json = encode("the messages", &spec.messages)?;
            layers.retain(|l| l.media_type != media_type::MESSAGES);
            layers.push(self.small_layer(media_type::MESSAGES, &json)?);
        }
        if !spec.parameters.is_empty() {
            let mut parameters = self.base_parameters(&layers);
            parameters.extend(spec.parameters);
            let json = encode("the parameters", &parameters)?;
            layers.retain(|l| l.media_type != media_type::PARAMS);
            layers.push(self.small_layer(media_type::PARAMS, &json)?);
        }

        let diff_ids = layers.iter().map(|l| l.digest.clone()).collect();
        let config = encode("the model config", &details.to_config(diff_ids))?;
        let config = self.small_layer(media_type::CONFIG, &config)?;
        let manifest = Manifest::new(config, layers);

        let path = self.manifest_path(name);
        let dir = path.parent().unwrap_or(self.manifests_dir());
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        atomic::write_atomic(&path, &manifest.to_bytes()?)?;
        self.remove_other_spellings(name, &path)?;
        self.entry(name, &path)
    }

    /// The layers of model `base`, which must exist.
    fn base_layers(&self, base: &ModelName) -> Result<Vec<Layer>, StoreError> {
        let path = self
            .manifest_files(base)
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound {
                name: base.to_string(),
            })?;
        let file = read_manifest(&path).map_err(|reason| StoreError::Corrupt {
            name: base.to_string(),
            reason,
        })?;
        Ok(file.manifest.layers)
    }

    /// The parameters already in `layers` (a base model's), empty when none or unreadable.
    fn base_parameters(&self, layers: &[Layer]) -> Map<String, Value> {
        layers
            .iter()
            .find(|l| l.media_type == media_type::PARAMS)
            .and_then(|l| std::fs::read(self.blob_path(&l.digest)).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The model layer for `files`, which must name exactly one uploaded GGUF blob.
    fn model_layer(&self, files: &BTreeMap<String, Digest>) -> Result<Layer, StoreError> {
        let (file, digest) = match files.first_key_value() {
            Some((file, digest)) if files.len() == 1 => (file.clone(), digest.clone()),
            _ => {
                return Err(StoreError::UnsupportedFiles {
                    count: files.len(),
                    names: files.keys().cloned().collect(),
                });
            }
        };
        let blob = self.blob_path(&digest);
        let size = match std::fs::metadata(&blob) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Err(StoreError::BlobMissing { file, digest }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing { file, digest });
            }
            Err(e) => return Err(StoreError::io("read", blob, e)),
        };
        let layer = Layer {
            media_type: media_type::MODEL.to_owned(),
            digest,
            size,
        };
        self.details_of(&layer).map_err(|e| match e {
            StoreError::NotGguf { digest, reason, .. } => StoreError::NotGguf {
                file,
                digest,
                reason,
            },
            other => other,
        })?;
        Ok(layer)
    }

    /// The details of the GGUF in a model layer.
    fn details_of(&self, model: &Layer) -> Result<ModelDetails, StoreError> {
        let not_gguf = |reason: String| StoreError::NotGguf {
            file: model.digest.to_string(),
            digest: model.digest.clone(),
            reason,
        };
        let gguf = gguf::GgufFile::open(self.blob_path(&model.digest))
            .map_err(|e| not_gguf(e.to_string()))?;
        ModelDetails::from_gguf(gguf.header()).map_err(|e| not_gguf(e.to_string()))
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

    pub(super) fn small_layer(&self, media_type: &str, bytes: &[u8]) -> Result<Layer, StoreError> {
        Ok(Layer {
            media_type: media_type.to_owned(),
            digest: self.write_blob_bytes(bytes)?,
            size: bytes.len() as u64,
        })
    }
}

/// `value` as JSON bytes.
fn encode(what: &'static str, value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { what, source })
}
