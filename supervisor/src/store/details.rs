//! [`ModelDetails`]: format, family, parameter size and quantization, read from a GGUF
//! header when a model is created and from its config blob afterwards.

use serde::{Deserialize, Serialize};

use super::manifest::{ModelConfig, RootFs};

/// What `GET /api/tags` and `/api/show` report about a model (Ollama's `details`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDetails {
    /// The model this one was derived from; empty for a model created from a file.
    pub parent_model: String,
    /// The weights' format: `gguf`.
    pub format: String,
    /// `general.architecture`, e.g. `llama`.
    pub family: String,
    /// The families of all weight layers (one, for a single GGUF file).
    pub families: Vec<String>,
    /// The parameter count in [`human_number`] form, e.g. `135M`.
    pub parameter_size: String,
    /// The dominant quantization (`general.file_type`), e.g. `Q4_K_M`; `unknown` when
    /// the file does not say.
    pub quantization_level: String,
}

impl ModelDetails {
    /// Reads the details from a parsed GGUF header: the family from
    /// `general.architecture` (`unknown` when absent), the parameter count from the
    /// tensors, the quantization from `general.file_type`.
    pub(crate) fn from_gguf(header: &gguf::GgufHeader) -> Result<Self, gguf::MetadataError> {
        let metadata = header.metadata();
        let family = metadata
            .get_opt::<&str>(gguf::keys::GENERAL_ARCHITECTURE)?
            .unwrap_or("unknown")
            .to_owned();
        let quantization_level = metadata
            .file_type()?
            .and_then(gguf::file_type_name)
            .unwrap_or("unknown")
            .to_owned();
        Ok(Self {
            parent_model: String::new(),
            format: "gguf".to_owned(),
            families: vec![family.clone()],
            family,
            parameter_size: human_number(header.parameter_count()),
            quantization_level,
        })
    }

    /// The config blob that records these details, with the layers' digests.
    pub(crate) fn to_config(&self, diff_ids: Vec<super::Digest>) -> ModelConfig {
        ModelConfig {
            model_format: self.format.clone(),
            model_family: self.family.clone(),
            model_families: self.families.clone(),
            model_type: self.parameter_size.clone(),
            file_type: self.quantization_level.clone(),
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            rootfs: RootFs {
                kind: "layers".to_owned(),
                diff_ids,
            },
        }
    }

    /// The details a config blob records.
    pub(crate) fn from_config(config: ModelConfig) -> Self {
        Self {
            parent_model: String::new(),
            format: config.model_format,
            family: config.model_family,
            families: config.model_families,
            parameter_size: config.model_type,
            quantization_level: config.file_type,
        }
    }
}

/// A count the way Ollama prints parameter sizes (`format.HumanNumber`): billions with
/// one decimal (`7.6B`), millions with two (`268.10M`), thousands with none (`12K`),
/// and no decimals at all when the number is whole in its unit (`135M`, `7B`).
pub fn human_number(n: u64) -> String {
    const THOUSAND: u64 = 1_000;
    const MILLION: u64 = 1_000_000;
    const BILLION: u64 = 1_000_000_000;
    let scaled = |unit: u64, decimals: usize, suffix: &str| {
        if n.is_multiple_of(unit) {
            format!("{}{suffix}", n / unit)
        } else {
            format!("{:.decimals$}{suffix}", n as f64 / unit as f64)
        }
    };
    match n {
        BILLION.. => scaled(BILLION, 1, "B"),
        MILLION.. => scaled(MILLION, 2, "M"),
        THOUSAND.. => format!("{:.0}K", n as f64 / THOUSAND as f64),
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::human_number;

    #[test]
    fn human_number_matches_ollamas_format() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1K"),
            (1_499, "1K"),
            (1_500, "2K"),
            (999_999, "1000K"),
            (1_000_000, "1M"),
            (135_000_000, "135M"),
            (134_515_008, "134.52M"),
            (268_098_176, "268.10M"),
            (999_999_999, "1000.00M"),
            (1_000_000_000, "1B"),
            (7_000_000_000, "7B"),
            (7_615_616_512, "7.6B"),
            (70_553_706_496, "70.6B"),
        ] {
            assert_eq!(human_number(n), want, "{n}");
        }
    }
}
