//! A load as the supervisor asks for it and the runner performs it: the options as sent
//! ([`LoadParams`], unset fields meaning the defaults), checked into a [`LoadConfig`]
//! that names the first bad option. The runner turns its `Load` request into
//! [`LoadParams`]; the supervisor does the same to estimate a load before it starts one,
//! so both refuse the same options with the same words.

use std::path::PathBuf;

use thiserror::Error;

use crate::kv::{CacheType, KvConfig, UnknownCacheType};

/// Ollama's default num_keep for the context shift.
pub const DEFAULT_NUM_KEEP: u32 = 4;
/// Positions per sequence unless asked.
pub const DEFAULT_NUM_CTX: u32 = 2048;
/// Sequences unless asked.
pub const DEFAULT_NUM_PARALLEL: u32 = 1;
/// Tokens per forward pass unless asked.
pub const DEFAULT_NUM_BATCH: u32 = 512;

/// Threads a load or a tool uses unless told: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The options of a load as sent, before checking: `None`, an empty string or 0 threads
/// leave an option at its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadParams {
    /// The GGUF file.
    pub model_path: String,
    /// Positions per sequence.
    pub num_ctx: Option<u32>,
    /// Sequences sharing the cache.
    pub num_parallel: Option<u32>,
    /// Tokens per forward pass at most.
    pub num_batch: Option<u32>,
    /// Compute threads; 0 for every core.
    pub num_threads: u32,
    /// Storage type of keys (`f16` when empty).
    pub cache_type_k: String,
    /// Storage type of values (`f16` when empty).
    pub cache_type_v: String,
    /// Flash attention (on when unset).
    pub flash_attention: Option<bool>,
    /// Map the file instead of reading it (on when unset).
    pub use_mmap: Option<bool>,
    /// Tokens the context shift keeps ([`DEFAULT_NUM_KEEP`] when unset).
    pub num_keep: Option<u32>,
    /// Spread shared prefixes over slots.
    pub multi_user_cache: bool,
    /// `exact` or `fast` (empty: the runner's default).
    pub numerics: String,
    /// `cpu`, `gpu` or an adapter index (empty: the runner's `OLLAMA_DEVICE`, else the
    /// best GPU present, else the CPU).
    pub device: String,
}

/// Why the options of a load are refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadConfigError {
    /// No model file is named.
    #[error("model_path is empty: name the GGUF file to load")]
    NoModelPath,
    /// A count that must be positive is 0.
    #[error("{name} is 0: it must be at least 1 (leave it unset for {default})")]
    Zero {
        /// The option.
        name: &'static str,
        /// Its default.
        default: u32,
    },
    /// The numerics is neither `exact` nor `fast`.
    #[error("numerics {0:?} is not exact or fast")]
    Numerics(String),
    /// The device is not `cpu`, `gpu` or an adapter index.
    #[error("device {0:?} is not cpu, gpu or an adapter index (ollama-runner devices lists them)")]
    Device(String),
    /// A cache type is not one we store.
    #[error("{name}: {source}")]
    CacheType {
        /// The option (`cache_type_k` or `cache_type_v`).
        name: &'static str,
        /// The name that was not understood.
        source: UnknownCacheType,
    },
}

/// The options of a load, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// The cache (and batch) configuration.
    pub kv: KvConfig,
    /// Compute threads.
    pub threads: usize,
    /// Map the file instead of reading it.
    pub use_mmap: bool,
    /// Tokens the context shift keeps.
    pub num_keep: usize,
    /// Spread shared prefixes over slots.
    pub multi_user_cache: bool,
    /// `Some(true)` for exact numerics, `Some(false)` for fast, `None` for the runner's
    /// default (`OLLAMA_NUMERICS`, else fast).
    pub exact_numerics: Option<bool>,
    /// The device asked for (`cpu`, `gpu` or an index, lowercase), or `None` for the
    /// runner's default (`OLLAMA_DEVICE`, else the best GPU present, else the CPU).
    pub device: Option<String>,
}

impl LoadConfig {
    /// Checks `p`, naming the first bad option.
    pub fn check(p: &LoadParams) -> Result<Self, LoadConfigError> {
        if p.model_path.is_empty() {
            return Err(LoadConfigError::NoModelPath);
        }
        let positive = |name, value: Option<u32>, default| match value {
            Some(0) => Err(LoadConfigError::Zero { name, default }),
            v => Ok(v.unwrap_or(default) as usize),
        };
        let cache_type = |name, value: &str| {
            if value.is_empty() {
                return Ok(CacheType::F16);
            }
            value
                .parse()
                .map_err(|source| LoadConfigError::CacheType { name, source })
        };
        let kv = KvConfig {
            num_ctx: positive("num_ctx", p.num_ctx, DEFAULT_NUM_CTX)?,
            num_parallel: positive("num_parallel", p.num_parallel, DEFAULT_NUM_PARALLEL)?,
            num_batch: positive("num_batch", p.num_batch, DEFAULT_NUM_BATCH)?,
            type_k: cache_type("cache_type_k", &p.cache_type_k)?,
            type_v: cache_type("cache_type_v", &p.cache_type_v)?,
            flash_attention: p.flash_attention.unwrap_or(true),
        };
        let exact_numerics = match p.numerics.trim().to_ascii_lowercase().as_str() {
            "" => None,
            "exact" => Some(true),
            "fast" => Some(false),
            _ => return Err(LoadConfigError::Numerics(p.numerics.clone())),
        };
        let device = match p.device.trim().to_ascii_lowercase() {
            d if d.is_empty() => None,
            d if d == "cpu" || d == "gpu" || d.parse::<usize>().is_ok() => Some(d),
            _ => return Err(LoadConfigError::Device(p.device.clone())),
        };
        let threads = match p.num_threads {
            0 => default_threads(),
            n => n as usize,
        };
        Ok(Self {
            model_path: PathBuf::from(&p.model_path),
            kv,
            threads,
            use_mmap: p.use_mmap.unwrap_or(true),
            num_keep: p.num_keep.unwrap_or(DEFAULT_NUM_KEEP) as usize,
            multi_user_cache: p.multi_user_cache,
            exact_numerics,
            device,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> LoadParams {
        LoadParams {
            model_path: "/models/m.gguf".into(),
            ..LoadParams::default()
        }
    }

    #[test]
    fn unset_options_take_the_defaults() {
        let c = LoadConfig::check(&LoadParams {
            num_threads: 3,
            ..params()
        })
        .unwrap();
        assert_eq!(c.kv, KvConfig::new(2048));
        assert_eq!((c.threads, c.num_keep), (3, 4));
        assert!(c.use_mmap && !c.multi_user_cache);
        assert_eq!(c.exact_numerics, None, "unset: the runner's default");
    }

    #[test]
    fn numerics_are_exact_or_fast() {
        let numerics = |n: &str| {
            LoadConfig::check(&LoadParams {
                numerics: n.into(),
                ..params()
            })
            .map(|c| c.exact_numerics)
        };
        assert_eq!(numerics("exact"), Ok(Some(true)));
        assert_eq!(numerics("Fast"), Ok(Some(false)));
        assert_eq!(
            numerics("sloppy").unwrap_err().to_string(),
            "numerics \"sloppy\" is not exact or fast"
        );
    }

    #[test]
    fn the_first_bad_option_is_named() {
        let err = |p: LoadParams| LoadConfig::check(&p).unwrap_err().to_string();
        assert_eq!(
            err(LoadParams::default()),
            "model_path is empty: name the GGUF file to load"
        );
        assert_eq!(
            err(LoadParams {
                num_batch: Some(0),
                ..params()
            }),
            "num_batch is 0: it must be at least 1 (leave it unset for 512)"
        );
        let e = err(LoadParams {
            cache_type_v: "q3_k".into(),
            ..params()
        });
        assert!(
            e.starts_with("cache_type_v: unknown K/V cache type 'q3_k'"),
            "{e}"
        );
    }
}
