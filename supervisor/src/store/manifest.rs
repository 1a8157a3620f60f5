//! The JSON on disk: the Docker v2 manifest that lists a model's blobs and the config
//! blob that describes the model, both in Ollama's shape.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::digest::{Digest, to_hex};
use super::error::StoreError;

/// The media types Ollama gives manifests, configs and layers.
pub mod media_type {
    /// The manifest itself.
    pub const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// The config blob.
    pub const CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// The GGUF weights.
    pub const MODEL: &str = "application/vnd.ollama.image.model";
    /// A JSON object of default parameters (`temperature`, `stop`, ...).
    pub const PARAMS: &str = "application/vnd.ollama.image.params";
    /// The prompt template.
    pub const TEMPLATE: &str = "application/vnd.ollama.image.template";
    /// The default system message.
    pub const SYSTEM: &str = "application/vnd.ollama.image.system";
    /// A license text; a model may carry several.
    pub const LICENSE: &str = "application/vnd.ollama.image.license";
    /// A JSON list of messages (`[{"role": ..., "content": ...}]`) put before a chat.
    pub const MESSAGES: &str = "application/vnd.ollama.image.messages";
}

/// One blob a manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Layer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A manifest (`schemaVersion` 2). Fields Ollama adds for other layer kinds are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub config: Layer,
    pub layers: Vec<Layer>,
}

impl Manifest {
    pub fn new(config: Layer, layers: Vec<Layer>) -> Self {
        Self {
            schema_version: 2,
            media_type: media_type::MANIFEST.to_owned(),
            config,
            layers,
        }
    }

    /// The bytes written to disk: compact JSON and a newline, as Ollama's encoder does.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut bytes = serde_json::to_vec(self).map_err(|source| StoreError::Encode {
            what: "a manifest",
            source,
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The size of the model: its layers and config together.
    pub fn total_size(&self) -> u64 {
        self.layers
            .iter()
            .chain(std::iter::once(&self.config))
            .map(|l| l.size)
            .sum()
    }

    /// The first layer of this media type.
    pub fn layer(&self, media_type: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }
}

/// A manifest read from disk with what `GET /api/tags` reports about the file.
pub(crate) struct ManifestFile {
    pub manifest: Manifest,
    /// SHA-256 of the file's bytes, hex (Ollama's model `digest`).
    pub digest: String,
    pub modified: std::time::SystemTime,
}

/// Reads and parses the manifest at `path`; the error is a sentence saying what is
/// wrong, for the caller to wrap.
pub(crate) fn read_manifest(path: &Path) -> Result<ManifestFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| format!("manifest {} is not valid: {e}", path.display()))?;
    if manifest.schema_version != 2 {
        return Err(format!(
            "manifest {} has schemaVersion {}, not 2",
            path.display(),
            manifest.schema_version
        ));
    }
    Ok(ManifestFile {
        manifest,
        digest: to_hex(&Sha256::digest(&bytes)),
        modified,
    })
}

/// The config blob: what `GET /api/tags` shows as a model's details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModelConfig {
    #[serde(default)]
    pub model_format: String,
    #[serde(default)]
    pub model_family: String,
    #[serde(default)]
    pub model_families: Vec<String>,
    /// The parameter size, e.g. `135M`.
    #[serde(default)]
    pub model_type: String,
    /// The quantization level, e.g. `Q4_K_M`.
    #[serde(default)]
    pub file_type: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The config's list of layer digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}
