//! `Estimate`: the memory a load would take, by kind, with the arithmetic the scheduler
//! budgets with and the runner allocates through (`plan`), whether it fits the memory
//! the server sees, and the largest context that fits for each K/V cache type. The
//! VRAM estimator of the seeds, answered by the server that will load the model.

use std::path::PathBuf;

use gguf::{GgmlType, GgufFile};
use tonic::{Response, Status};

use super::convert;
use super::status::invalid;
use crate::api::reply::Target;
use crate::api::runner_options::load_settings;
use crate::api::{ApiError, AppState};
use crate::devices;
use crate::memory::{DevicePool, MemorySnapshot};
use crate::options::Options;
use crate::sched::{Backend, EstimateError, LoadSpec, estimate_with};
use ollama_proto::ollama as pb;

/// The K/V cache types whose largest context is reported: the cache types users choose
/// between (full precision, and the two quantizations Ollama offers).
const REPORTED_TYPES: [GgmlType; 3] = [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0];

/// Contexts are searched in steps of this many tokens.
const CONTEXT_STEP: u32 = 256;

fn estimate_error(error: EstimateError) -> Status {
    invalid(error.to_string())
}

/// The load spec for the request's source and options.
async fn spec<B: Backend>(
    state: &AppState<B>,
    r: &pb::EstimateRequest,
) -> Result<LoadSpec, Status> {
    let options = convert::options(r.options.as_ref());
    match &r.source {
        Some(pb::estimate_request::Source::Model(model)) => {
            Ok(Target::resolve(state, model, &options, None).await?.spec)
        }
        Some(pb::estimate_request::Source::Path(path)) => {
            let options = Options::from_map(&options).map_err(ApiError::from)?;
            Ok(LoadSpec {
                name: path.clone(),
                model_path: PathBuf::from(path),
                settings: load_settings(&state.config, &options)?,
            })
        }
        None => Err(invalid(
            "name a model of the store (model) or a GGUF file on the server (path)",
        )),
    }
}

/// Where a load's memory is checked: the pool that holds its weights, and whether its
/// device buffers are budgeted apart from system RAM there.
struct Where {
    /// "gpu" or "cpu".
    device: &'static str,
    /// Bytes of the pool.
    total: u64,
    /// Bytes free in it now.
    free: u64,
    /// Only the device part counts against it (a GPU with memory of its own).
    device_only: bool,
}

impl Where {
    /// The pool of a load of `spec` on a server with `target` and `pool`, given the
    /// probe's `snapshot` and the device bytes loaded runners hold (`held`, which a pool
    /// measured once at start must subtract itself).
    fn of(
        spec: &LoadSpec,
        target: &devices::Target,
        pool: &DevicePool,
        snapshot: &MemorySnapshot,
        held: u64,
    ) -> Self {
        let on_gpu = spec.settings.device.on_gpu(target);
        match pool.memory(snapshot).filter(|_| on_gpu) {
            Some(m) => Self {
                device: "gpu",
                total: m.total_bytes,
                free: match pool {
                    DevicePool::Budget { .. } => m.available_bytes.saturating_sub(held),
                    _ => m.available_bytes,
                },
                device_only: true,
            },
            None => Self {
                device: if on_gpu { "gpu" } else { "cpu" },
                total: snapshot.system.effective_total_bytes(),
                free: snapshot.system.available_bytes,
                device_only: false,
            },
        }
    }

    /// What a load estimated as `e` takes from this pool.
    fn need(&self, e: &plan::Estimate) -> u64 {
        if self.device_only {
            e.device_bytes as u64
        } else {
            (e.total_bytes + e.device_bytes) as u64
        }
    }
}

/// The largest context, a multiple of [`CONTEXT_STEP`] up to `ceiling`, whose load
/// (with K and V of type `kv`) needs at most `budget` bytes of `place`.
fn max_context(
    file: &GgufFile,
    spec: &LoadSpec,
    kv: GgmlType,
    (multi_user_cache, target): (bool, &devices::Target),
    (place, budget): (&Where, u64),
    ceiling: u32,
) -> u32 {
    let fits = |num_ctx: u32| {
        let mut s = spec.clone();
        s.settings.num_ctx = num_ctx;
        s.settings.type_k = kv;
        s.settings.type_v = kv;
        estimate_with(file, &s, multi_user_cache, target).is_ok_and(|e| place.need(&e) <= budget)
    };
    let (mut lo, mut hi) = (0, ceiling / CONTEXT_STEP);
    if hi == 0 || !fits(CONTEXT_STEP) {
        return 0;
    }
    // Memory grows with the context: the largest step count that fits, by bisection.
    lo += 1;
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid * CONTEXT_STEP) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo * CONTEXT_STEP
}

/// `Estimate`.
pub async fn estimate<B: Backend>(
    state: &AppState<B>,
    r: pb::EstimateRequest,
) -> Result<Response<pb::EstimateResponse>, Status> {
    let spec = spec(state, &r).await?;
    let (config, sched) = (state.config.clone(), state.sched.clone());
    let held: u64 = sched.snapshot().await.iter().map(|r| r.device_bytes).sum();
    let answer = tokio::task::spawn_blocking(move || {
        let file = GgufFile::open(&spec.model_path).map_err(|e| {
            invalid(format!(
                "cannot read {} as a GGUF model: {e}",
                spec.model_path.display()
            ))
        })?;
        let (target, pool) = (&sched.policy().target, &sched.policy().device_pool);
        let e =
            estimate_with(&file, &spec, config.multiuser_cache, target).map_err(estimate_error)?;
        let memory = sched
            .memory()
            .map_err(|e| Status::internal(format!("cannot measure free memory: {e}")))?;
        let place = Where::of(&spec, target, pool, &memory, held);
        let overhead = config.gpu_overhead;
        let total = (e.total_bytes + e.device_bytes) as u64 + overhead;
        let budget = place.free.saturating_sub(overhead);
        let host_fits = !place.device_only || e.total_bytes as u64 <= memory.system.available_bytes;
        let ceiling = file
            .header()
            .metadata()
            .arch_u32("context_length")
            .unwrap_or(spec.settings.num_ctx);
        let max = REPORTED_TYPES
            .iter()
            .map(|&kv| pb::ContextFit {
                kv_cache_type: kv.name().to_owned(),
                max_num_ctx: max_context(
                    &file,
                    &spec,
                    kv,
                    (config.multiuser_cache, target),
                    (&place, budget),
                    ceiling,
                ),
            })
            .collect();
        let s = &spec.settings;
        Ok::<_, Status>(pb::EstimateResponse {
            weights_bytes: e.weights_bytes as u64,
            kv_bytes: (e.kv_bytes + e.device_kv_bytes) as u64,
            k_bytes: e.k_bytes as u64,
            v_bytes: e.v_bytes as u64,
            compute_bytes: (e.compute_bytes + e.device_compute_bytes) as u64,
            overhead_bytes: overhead,
            total_bytes: total,
            num_ctx: s.num_ctx,
            num_parallel: s.num_parallel,
            kv_cache_type_k: s.type_k.name().to_owned(),
            kv_cache_type_v: s.type_v.name().to_owned(),
            device: place.device.to_owned(),
            free_bytes: place.free,
            device_total_bytes: place.total,
            fits: place.need(&e) + overhead <= place.free && host_fits,
            max_context: max,
            // The host's rest; on a GPU the uploaded weights and the allocator's slack
            // are in device_bytes.
            runtime_bytes: e
                .total_bytes
                .saturating_sub(e.weights_bytes + e.kv_bytes + e.compute_bytes)
                as u64,
            device_bytes: e.device_bytes as u64,
        })
    })
    .await
    .map_err(|e| Status::internal(format!("the estimate failed: {e}")))??;
    Ok(Response::new(answer))
}
