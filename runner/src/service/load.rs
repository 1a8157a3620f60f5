//! `Load`: from the request's options to a running engine, with what it allocated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gguf::{GgufError, GgufFile};
use ollama_proto::runner as pb;
use tonic::Status;

use crate::engine::{Engine, EngineConfig};
use crate::estimate;
use crate::kvcache::{CacheType, KvConfig};
use crate::model::pooling::Pooling;
use crate::model::{self, LoadOptions, ModelError};
use crate::tokenizer::Tokenizer;

/// Ollama's default num_keep for the context shift.
const DEFAULT_NUM_KEEP: u32 = 4;

/// The options of a load, checked.
#[derive(Debug, Clone)]
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
}

impl LoadConfig {
    /// Checks a `Load` request, naming the first bad option.
    pub fn from_request(r: &pb::LoadRequest) -> Result<Self, Status> {
        if r.model_path.is_empty() {
            return Err(Status::invalid_argument(
                "model_path is empty: name the GGUF file to load",
            ));
        }
        let positive = |name: &str, value: Option<u32>, default: u32| match value {
            Some(0) => Err(Status::invalid_argument(format!(
                "{name} is 0: it must be at least 1 (leave it unset for {default})"
            ))),
            v => Ok(v.unwrap_or(default) as usize),
        };
        let num_ctx = positive("num_ctx", r.num_ctx, 2048)?;
        let num_parallel = positive("num_parallel", r.num_parallel, 1)?;
        let num_batch = positive("num_batch", r.num_batch, 512)?;
        let cache_type = |name: &str, value: &str| -> Result<CacheType, Status> {
            if value.is_empty() {
                return Ok(CacheType::F16);
            }
            value
                .parse()
                .map_err(|e| Status::invalid_argument(format!("{name}: {e}")))
        };
        let kv = KvConfig {
            num_ctx,
            num_parallel,
            num_batch,
            type_k: cache_type("cache_type_k", &r.cache_type_k)?,
            type_v: cache_type("cache_type_v", &r.cache_type_v)?,
            flash_attention: r.flash_attention.unwrap_or(true),
        };
        let threads = match r.num_threads {
            0 => crate::tools::default_threads(),
            n => n as usize,
        };
        Ok(Self {
            model_path: PathBuf::from(&r.model_path),
            kv,
            threads,
            use_mmap: r.use_mmap.unwrap_or(true),
            num_keep: r.num_keep.unwrap_or(DEFAULT_NUM_KEEP) as usize,
            multi_user_cache: r.multi_user_cache,
        })
    }
}

/// A loaded model: its engine and what the load allocated.
pub struct Loaded {
    /// The engine serving it.
    pub engine: Engine,
    /// The configuration it was loaded with.
    pub config: LoadConfig,
    /// Bytes allocated, by kind (rss filled in when reported).
    pub memory: pb::Memory,
    /// How long the load took.
    pub load_duration: Duration,
    /// `general.architecture`.
    pub architecture: &'static str,
    /// The context the model was trained for.
    pub train_ctx: usize,
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or parsed.
    #[error("cannot load {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: GgufError,
    },
    /// The model or its configuration was refused.
    #[error("cannot load {path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ModelError,
    },
    /// The tokenizer could not be built from the file.
    #[error("cannot load the tokenizer of {path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The pooling the file names cannot give embeddings.
    #[error("cannot load {path}: {message}")]
    Pooling {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The compute thread could not start.
    #[error("cannot start the compute thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl From<&LoadError> for Status {
    fn from(e: &LoadError) -> Self {
        match e {
            LoadError::File {
                source: GgufError::Io { source, .. },
                ..
            } if source.kind() == std::io::ErrorKind::NotFound => Status::not_found(e.to_string()),
            LoadError::Model {
                source: ModelError::Kv(_),
                ..
            } => Status::invalid_argument(e.to_string()),
            LoadError::Thread(_) => Status::internal(e.to_string()),
            _ => Status::failed_precondition(e.to_string()),
        }
    }
}

/// Loads the model of `config` and starts its engine. Blocking: run it off the async
/// threads.
pub fn load(config: LoadConfig) -> Result<Loaded, LoadError> {
    let start = Instant::now();
    let path = config.model_path.clone();
    let file = if config.use_mmap {
        GgufFile::open(&path)
    } else {
        GgufFile::read(&path)
    };
    let file = Arc::new(file.map_err(|source| LoadError::File {
        path: path.clone(),
        source,
    })?);
    let model_error = |source| LoadError::Model {
        path: path.clone(),
        source,
    };
    let tokenizer =
        Tokenizer::from_metadata(file.metadata()).map_err(|e| LoadError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let pooling = Pooling::from_metadata(file.metadata()).map_err(|e| LoadError::Pooling {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let options = LoadOptions {
        threads: config.threads,
        kv: config.kv,
    };
    let model = model::load(Arc::clone(&file), &options).map_err(model_error)?;
    let cache = model::new_cache(model.as_ref(), config.kv).map_err(model_error)?;
    let weights_bytes = estimate::estimate(&file, &config.kv, config.threads)
        .map_err(model_error)?
        .weights_bytes;
    let kv_bytes = cache.bytes().total();
    let compute_bytes = model.scratch_bytes() + model.n_vocab() * config.kv.num_parallel * 4;
    let architecture = model.architecture();
    let train_ctx = model.train_ctx();
    let load_duration = start.elapsed();
    let engine = Engine::start(
        model,
        cache,
        Arc::new(tokenizer),
        EngineConfig {
            num_keep: config.num_keep,
            multi_user_cache: config.multi_user_cache,
            pooling,
            load_duration,
        },
    )?;
    Ok(Loaded {
        engine,
        memory: pb::Memory {
            weights_bytes: weights_bytes as u64,
            kv_bytes: kv_bytes as u64,
            compute_bytes: compute_bytes as u64,
            total_bytes: (weights_bytes + kv_bytes + compute_bytes) as u64,
            rss_bytes: 0,
        },
        config,
        load_duration,
        architecture,
        train_ctx,
    })
}
