//! Options split the way the runner needs them: the settings that shape a runner (and so
//! pick or reload one), and the per-request generation parameters.

use ollama_proto::runner as pb;

use super::ApiError;
use crate::config::Config;
use crate::options::Options;
use crate::sched::{DeviceChoice, LoadSettings};

/// The runner settings for `options` over the server's defaults. `kv_cache_type` sets
/// both types; `kv_cache_type_k` / `_v` override it; `num_gpu` 0 puts the runner on the
/// CPU.
pub fn load_settings(config: &Config, options: &Options) -> Result<LoadSettings, ApiError> {
    let mut s = LoadSettings::defaults(config);
    if let Some(n) = options.num_ctx {
        s.num_ctx = n;
    }
    if let Some(n) = options.num_batch {
        s.num_batch = n;
    }
    if let Some(n) = options.num_thread {
        s.num_thread = n;
    }
    if let Some(n) = options.num_parallel {
        s.num_parallel = n;
    }
    if let Some(on) = options.flash_attention {
        s.flash_attention = on;
    }
    if let Some(on) = options.use_mmap {
        s.use_mmap = on;
    }
    if let Some(n) = options.numerics {
        s.numerics = n;
    }
    if let Some(n) = options.num_gpu {
        s.device = DeviceChoice::from_num_gpu(n);
    }
    if let Some(t) = options.kv_cache_type {
        (s.type_k, s.type_v) = (t, t);
    }
    if let Some(t) = options.kv_cache_type_k {
        s.type_k = t;
    }
    if let Some(t) = options.kv_cache_type_v {
        s.type_v = t;
    }
    for (name, value) in [
        ("num_ctx", s.num_ctx),
        ("num_batch", s.num_batch),
        ("num_parallel", s.num_parallel),
    ] {
        if value == 0 {
            return Err(ApiError::bad_request(format!("{name} must be at least 1")));
        }
    }
    Ok(s)
}

/// The runner's `Generate` request for `prompt` with `options`' sampling parameters.
pub fn generate_request(prompt: String, options: &Options) -> pb::GenerateRequest {
    let non_negative = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
    pb::GenerateRequest {
        prompt,
        sampling: Some(pb::SamplingOptions {
            temperature: options.temperature,
            // Ollama: top_k <= 0 disables the filter.
            top_k: options.top_k.map(|k| u32::try_from(k).unwrap_or(0)),
            top_p: options.top_p,
            min_p: options.min_p,
            typical_p: options.typical_p,
            repeat_penalty: options.repeat_penalty,
            presence_penalty: options.presence_penalty,
            frequency_penalty: options.frequency_penalty,
            repeat_last_n: non_negative(options.repeat_last_n),
        }),
        num_predict: options.num_predict,
        stop: options.stop.clone().unwrap_or_default(),
        // Ollama: a negative seed means a random one.
        seed: options.seed.and_then(|s| u64::try_from(s).ok()),
        logprobs: false,
        top_logprobs: 0,
        shift: None,
        num_keep: non_negative(options.num_keep),
        context: Vec::new(),
        return_context: false,
        json_schema: None,
    }
}
