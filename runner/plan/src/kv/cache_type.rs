//! The types a K or V cache row can be stored in.

use std::fmt;
use std::str::FromStr;

use ggml_type::GgmlType;
use thiserror::Error;

/// A storage type for cached keys or values: the f32 reference, f16 (llama.cpp's and
/// Ollama's default), and the 32-value block types that halve or quarter it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheType {
    /// 4 bytes a value: the reference, exactly what the model computed.
    F32,
    /// 2 bytes a value.
    F16,
    /// 34 bytes per 32 values.
    Q8_0,
    /// 18 bytes per 32 values.
    Q4_0,
    /// 20 bytes per 32 values.
    Q4_1,
    /// 22 bytes per 32 values.
    Q5_0,
    /// 24 bytes per 32 values.
    Q5_1,
    /// 18 bytes per 32 values, non-linear levels.
    Iq4Nl,
}

/// A cache type name that is not one of [`CacheType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown K/V cache type '{0}': use one of f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl")]
pub struct UnknownCacheType(pub String);

impl CacheType {
    /// Every type, in the order the help text lists them.
    pub const ALL: [CacheType; 8] = [
        CacheType::F32,
        CacheType::F16,
        CacheType::Q8_0,
        CacheType::Q4_0,
        CacheType::Q4_1,
        CacheType::Q5_0,
        CacheType::Q5_1,
        CacheType::Iq4Nl,
    ];

    /// The GGML type the rows are stored as.
    pub fn ggml(self) -> GgmlType {
        match self {
            CacheType::F32 => GgmlType::F32,
            CacheType::F16 => GgmlType::F16,
            CacheType::Q8_0 => GgmlType::Q8_0,
            CacheType::Q4_0 => GgmlType::Q4_0,
            CacheType::Q4_1 => GgmlType::Q4_1,
            CacheType::Q5_0 => GgmlType::Q5_0,
            CacheType::Q5_1 => GgmlType::Q5_1,
            CacheType::Iq4Nl => GgmlType::IQ4_NL,
        }
    }

    /// The name users write (`q8_0`), as llama.cpp's `--cache-type-k` and Ollama's
    /// `OLLAMA_KV_CACHE_TYPE` spell it.
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
            CacheType::Q8_0 => "q8_0",
            CacheType::Q4_0 => "q4_0",
            CacheType::Q4_1 => "q4_1",
            CacheType::Q5_0 => "q5_0",
            CacheType::Q5_1 => "q5_1",
            CacheType::Iq4Nl => "iq4_nl",
        }
    }

    /// True for the block types (everything but f32 and f16).
    pub fn is_quantized(self) -> bool {
        !matches!(self, CacheType::F32 | CacheType::F16)
    }

    /// Values per block: a head must be a whole number of them.
    pub fn block_size(self) -> usize {
        self.ggml().block_size()
    }

    /// Bytes of `n` values, `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let ty = self.ggml();
        n.is_multiple_of(ty.block_size())
            .then(|| n / ty.block_size() * ty.type_size())
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CacheType {
    type Err = UnknownCacheType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        CacheType::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| UnknownCacheType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for t in CacheType::ALL {
            assert_eq!(t.name().parse::<CacheType>(), Ok(t));
        }
        assert_eq!("Q8_0".parse::<CacheType>(), Ok(CacheType::Q8_0));
        let err = "q3_k".parse::<CacheType>().unwrap_err().to_string();
        assert!(err.contains("'q3_k'") && err.contains("iq4_nl"), "{err}");
    }

    #[test]
    fn row_bytes_are_exact_fractions_of_f16() {
        let f16 = CacheType::F16.row_bytes(4096).unwrap();
        assert_eq!(CacheType::Q8_0.row_bytes(4096).unwrap() * 64, f16 * 34);
        assert_eq!(CacheType::Q4_0.row_bytes(4096).unwrap() * 64, f16 * 18);
        assert_eq!(CacheType::F32.row_bytes(3), Some(12));
        assert_eq!(CacheType::Q4_1.row_bytes(48), None);
    }
}
