//! `Load`: from the request's options to a running engine, with what it allocated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gguf::{GgufError, GgufFile};
use ollama_proto::runner as pb;
use plan::{LoadParams, PlanError};
use tonic::Status;

use crate::engine::{Engine, EngineConfig};
use crate::estimate;
use crate::model::pooling::Pooling;
use crate::model::{self, LoadOptions, ModelError, Numerics};
use crate::tokenizer::Tokenizer;

pub use plan::LoadConfig;

/// Checks a `Load` request, naming the first bad option: the `plan` crate's checks
/// (which the supervisor runs too, before it starts a runner), refused as
/// `INVALID_ARGUMENT`.
pub fn from_request(r: &pb::LoadRequest) -> Result<LoadConfig, Status> {
    let params = LoadParams {
        model_path: r.model_path.clone(),
        num_ctx: r.num_ctx,
        num_parallel: r.num_parallel,
        num_batch: r.num_batch,
        num_threads: r.num_threads,
        cache_type_k: r.cache_type_k.clone(),
        cache_type_v: r.cache_type_v.clone(),
        flash_attention: r.flash_attention,
        use_mmap: r.use_mmap,
        num_keep: r.num_keep,
        multi_user_cache: r.multi_user_cache,
        numerics: r.numerics.clone(),
        device: r.device.clone(),
    };
    LoadConfig::check(&params).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A loaded model: its engine and what the load allocated.
pub struct Loaded {
    /// The engine serving it.
    pub engine: Engine,
    /// The configuration it was loaded with.
    pub config: LoadConfig,
    /// Bytes allocated, by kind, and the estimate as `total_bytes` (rss and the counted
    /// heap are filled in when reported).
    pub memory: pb::Memory,
    /// Bytes of the model file mapped into memory (0 when it was read into the heap,
    /// where the heap count has it): what `allocated_bytes` adds to the live heap.
    pub mapped_bytes: usize,
    /// How long the load took.
    pub load_duration: Duration,
    /// The GPU the model runs on, whose live buffers are reported as `device_bytes`.
    pub device: Option<Arc<gpu::Gpu>>,
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
            LoadError::Model {
                source: ModelError::Plan(plan),
                ..
            } if matches!(**plan, PlanError::Kv(_)) => Status::invalid_argument(e.to_string()),
            LoadError::Thread(_) => Status::internal(e.to_string()),
            _ => Status::failed_precondition(e.to_string()),
        }
    }
}

/// Loads the model of `config` and starts its engine. Blocking: run it off the async
/// threads.
pub fn load(config: LoadConfig) -> Result<Loaded, LoadError> {
    let start = Instant::now();
    let heap_before = heap_live_bytes();
    kernels::alloc::reset_peak();
    let path = config.model_path.clone();
    let file = if config.use_mmap {
        GgufFile::open(&path)
    } else {
        GgufFile::read(&path)
    };
    let file = file.map_err(|source| LoadError::File {
        path: path.clone(),
        source,
    })?;
    let model_error = |source| LoadError::Model {
        path: path.clone(),
        source,
    };
    let heap_file = heap_live_bytes();
    let tokenizer =
        Tokenizer::from_metadata(file.metadata()).map_err(|e| LoadError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let pooling = Pooling::from_metadata(file.metadata()).map_err(|e| LoadError::Pooling {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let numerics = match config.exact_numerics {
        Some(true) => Numerics::Exact,
        Some(false) => Numerics::Fast,
        None => Numerics::from_env().map_err(|e| model_error(e.into()))?,
    };
    let options = LoadOptions {
        threads: config.threads,
        kv: config.kv,
        numerics,
        device: match &config.device {
            Some(device) => model::device::open(Some(device)),
            None => model::device::open_from_env(),
        }
        .map_err(model_error)?,
    };
    let heap_tokenizer = heap_live_bytes();
    let file = model::prepare(file, &options).map_err(model_error)?;
    let model = model::load(Arc::clone(&file), &options).map_err(model_error)?;
    let heap_model = heap_live_bytes();
    let cache = model::new_cache(model.as_ref(), config.kv).map_err(model_error)?;
    let heap_cache = heap_live_bytes();
    let estimate = estimate::estimate(&file, &config.kv, config.threads, options.device.is_some())
        .map_err(|e| model_error(e.into()))?;
    let weights_bytes = estimate.weights_bytes;
    let mapped_bytes = if file.is_mapped() {
        file.bytes().len()
    } else {
        0
    };
    let kv_bytes = cache.bytes().total();
    let compute_bytes = model.scratch_bytes() + model.n_vocab() * config.kv.num_parallel * 4;
    let architecture = model.architecture();
    let train_ctx = model.train_ctx();
    let device = model.device();
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
    let heap_after = heap_live_bytes();
    tracing::debug!(
        file = heap_file - heap_before,
        tokenizer = heap_tokenizer - heap_file,
        model = heap_model - heap_tokenizer,
        cache = heap_cache - heap_model,
        engine = heap_after - heap_cache,
        live = heap_after,
        peak = kernels::alloc::peak_bytes().unwrap_or(0),
        mapped = mapped_bytes,
        "heap bytes the load took, by step"
    );
    Ok(Loaded {
        engine,
        memory: pb::Memory {
            weights_bytes: weights_bytes as u64,
            kv_bytes: kv_bytes as u64,
            compute_bytes: compute_bytes as u64,
            total_bytes: estimate.total_bytes as u64,
            rss_bytes: 0,
            allocated_bytes: (heap_after + mapped_bytes) as u64,
            device_bytes: device_bytes(device.as_deref()),
        },
        device,
        mapped_bytes,
        config,
        load_duration,
        architecture,
        train_ctx,
    })
}

/// Heap bytes live now as the counting allocator sees them (0 where it is not installed,
/// as in a test binary: the figures are then left out rather than wrong).
pub fn heap_live_bytes() -> usize {
    kernels::alloc::live_bytes().unwrap_or(0)
}

/// Device memory `gpu` holds for this runner: the live buffers, or what wgpu's allocator
/// reserved when it reports more (memory accounting is honest); 0 on the CPU.
pub fn device_bytes(gpu: Option<&gpu::Gpu>) -> u64 {
    gpu.map_or(0, |g| {
        g.allocated_bytes().max(g.reserved_bytes().unwrap_or(0))
    })
}
