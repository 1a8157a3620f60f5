//! Reading models back: [`Store::list`] for `GET /api/tags` and [`Store::resolve`] for
//! everything that runs a model.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::Store;
use super::atomic::TEMP_PREFIX;
use super::details::ModelDetails;
use super::error::StoreError;
use super::manifest::{Layer, Manifest, ModelConfig, media_type, read_manifest};
use super::name::ModelName;

/// A model in the store, as `GET /api/tags` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// The model's name.
    pub name: ModelName,
    /// SHA-256 of the manifest file, hex (what Ollama reports as the model's digest).
    pub digest: String,
    /// Bytes of all layers and the config.
    pub size: u64,
    /// When the manifest was last written.
    pub modified_at: DateTime<Utc>,
    /// Format, family, parameter size, quantization.
    pub details: ModelDetails,
}

impl Serialize for ModelEntry {
    /// Ollama's `ListModelResponse` fields: `name` and `model` (both the short name),
    /// `modified_at` (RFC 3339), `size`, `digest`, `details`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            name: &'a ModelName,
            model: &'a ModelName,
            modified_at: String,
            size: u64,
            digest: &'a str,
            details: &'a ModelDetails,
        }
        Json {
            name: &self.name,
            model: &self.name,
            modified_at: self
                .modified_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            size: self.size,
            digest: &self.digest,
            details: &self.details,
        }
        .serialize(serializer)
    }
}

/// What the server needs to run a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// The model as `GET /api/tags` lists it.
    pub entry: ModelEntry,
    /// The GGUF weights (a blob).
    pub model_path: PathBuf,
    /// Default parameters stored with the model; empty when it has none.
    pub parameters: Map<String, Value>,
    /// The prompt template stored with the model.
    pub template: Option<String>,
    /// The default system message stored with the model.
    pub system: Option<String>,
    /// The license texts stored with the model, in manifest order; empty when none.
    pub license: Vec<String>,
    /// The conversation stored with the model (Modelfile `MESSAGE`), put before every
    /// chat; empty when none.
    pub messages: Vec<super::StoredMessage>,
}

impl Store {
    /// Every readable model, newest first. A manifest that cannot be read or parsed, or
    /// whose config blob is missing, is skipped with a warning instead of failing the
    /// list. Blocking: reads every manifest and config; call it through
    /// `spawn_blocking`.
    pub fn list(&self) -> Result<Vec<ModelEntry>, StoreError> {
        let root = self.manifests_dir();
        std::fs::read_dir(root).map_err(|e| StoreError::io("read", root, e))?;
        let mut found = Vec::new();
        walk(root, &mut Vec::new(), &mut found);
        let mut entries = Vec::new();
        for (path, parts) in found {
            let name = match ModelName::from_path_parts(parts.each_ref().map(String::as_str)) {
                Ok(name) => name,
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "skipping manifest with an invalid name");
                    continue;
                }
            };
            match self.load(&name, &path) {
                Ok((entry, _)) => entries.push(entry),
                Err(reason) => {
                    tracing::warn!(model = %name, %reason, "skipping unreadable model");
                }
            }
        }
        entries.sort_by(|a, b| b.modified_at.cmp(&a.modified_at).then(a.name.cmp(&b.name)));
        // Ollama may have written one name in several letter cases: list it once.
        let mut seen = std::collections::HashSet::new();
        entries.retain(|e| seen.insert(e.name.clone()));
        Ok(entries)
    }

    /// The model `name` with its weights path, parameters, template and system
    /// message. Blocking: reads the manifest and small layers; call it through
    /// `spawn_blocking`.
    pub fn resolve(&self, name: &ModelName) -> Result<ResolvedModel, StoreError> {
        let path = self
            .manifest_files(name)
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_string(),
            })?;
        let corrupt = |reason: String| StoreError::Corrupt {
            name: name.to_string(),
            reason,
        };
        let (entry, manifest) = self.load(name, &path).map_err(corrupt)?;
        let model = manifest
            .layer(media_type::MODEL)
            .ok_or_else(|| corrupt(format!("manifest {} has no model layer", path.display())))?;
        let model_path = self.blob_path(&model.digest);
        if !model_path.is_file() {
            return Err(corrupt(format!(
                "its weights blob {} is missing",
                model.digest
            )));
        }
        let text = |media_type| {
            manifest
                .layer(media_type)
                .map(|layer| self.read_text(layer))
                .transpose()
                .map_err(corrupt)
        };
        let template = text(media_type::TEMPLATE)?;
        let system = text(media_type::SYSTEM)?;
        let license = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == media_type::LICENSE)
            .map(|l| self.read_text(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        let parameters = match text(media_type::PARAMS)? {
            None => Map::new(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| corrupt(format!("its parameters layer is not a JSON object: {e}")))?,
        };
        let messages = match text(media_type::MESSAGES)? {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                corrupt(format!("its messages layer is not a list of messages: {e}"))
            })?,
        };
        Ok(ResolvedModel {
            entry,
            model_path,
            parameters,
            template,
            system,
            license,
            messages,
        })
    }

    /// The manifest files that stand for `name`: the lower-case path first if it
    /// exists, then any spelled in other letter case (Ollama keeps the case it was
    /// given). Blocking.
    pub(crate) fn manifest_files(&self, name: &ModelName) -> Vec<PathBuf> {
        let mut dirs = vec![self.manifests_dir().to_path_buf()];
        let parts = name.path_parts();
        for (depth, part) in parts.iter().enumerate() {
            let last = depth + 1 == parts.len();
            let mut next = Vec::new();
            for dir in &dirs {
                let Ok(read) = std::fs::read_dir(dir) else {
                    continue;
                };
                for entry in read.flatten() {
                    let path = entry.path();
                    let matches = entry
                        .file_name()
                        .to_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(part));
                    let kind_ok = if last { path.is_file() } else { path.is_dir() };
                    if matches && kind_ok {
                        next.push(path);
                    }
                }
            }
            dirs = next;
        }
        let exact = self.manifest_path(name);
        dirs.sort_by_key(|p| *p != exact);
        dirs
    }

    /// The entry for `name`, whose manifest is at `path`, and the manifest; the error
    /// says what is wrong.
    fn load(&self, name: &ModelName, path: &Path) -> Result<(ModelEntry, Manifest), String> {
        let file = read_manifest(path)?;
        let config_path = self.blob_path(&file.manifest.config.digest);
        let config = std::fs::read(&config_path)
            .map_err(|e| format!("cannot read its config blob {}: {e}", config_path.display()))?;
        let config: ModelConfig = serde_json::from_slice(&config).map_err(|e| {
            format!(
                "its config blob {} is not valid: {e}",
                config_path.display()
            )
        })?;
        let entry = ModelEntry {
            name: name.clone(),
            digest: file.digest,
            size: file.manifest.total_size(),
            modified_at: DateTime::<Utc>::from(file.modified),
            details: ModelDetails::from_config(config),
        };
        Ok((entry, file.manifest))
    }

    /// The entry for the manifest at `path` as [`Store::list`] would report it.
    pub(crate) fn entry(&self, name: &ModelName, path: &Path) -> Result<ModelEntry, StoreError> {
        let (entry, _) = self
            .load(name, path)
            .map_err(|reason| StoreError::Corrupt {
                name: name.to_string(),
                reason,
            })?;
        Ok(entry)
    }

    /// A text layer's content.
    fn read_text(&self, layer: &Layer) -> Result<String, String> {
        let path = self.blob_path(&layer.digest);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read its {} blob {}: {e}",
                layer.media_type,
                path.display()
            )
        })?;
        String::from_utf8(bytes).map_err(|_| {
            format!(
                "its {} blob {} is not UTF-8",
                layer.media_type,
                path.display()
            )
        })
    }
}

/// Collects the files exactly four levels below `dir` (host/namespace/model/tag),
/// skipping hidden entries such as temporary files; unreadable directories are skipped
/// with a warning.
pub(super) fn walk(dir: &Path, parts: &mut Vec<String>, found: &mut Vec<(PathBuf, [String; 4])>) {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable manifest directory");
            return;
        }
    };
    for entry in read.flatten() {
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %path.display(), "skipping manifest path that is not UTF-8");
            continue;
        };
        if file_name.starts_with('.') {
            if !file_name.starts_with(TEMP_PREFIX) {
                tracing::debug!(path = %path.display(), "skipping hidden file in manifests");
            }
            continue;
        }
        parts.push(file_name);
        if parts.len() == 4 {
            if path.is_file()
                && let Ok(four) = <[String; 4]>::try_from(parts.clone())
            {
                found.push((path, four));
            }
        } else if path.is_dir() {
            walk(&path, parts, found);
        }
        parts.pop();
    }
}
