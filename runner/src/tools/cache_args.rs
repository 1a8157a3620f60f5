//! The K/V cache flags every tool takes: `--cache-type-k`, `--cache-type-v` and
//! `--flash-attention`, with llama.cpp's CPU defaults (f16, f16, on); and `--numerics`,
//! which picks the kernels' arithmetic.

use clap::Args;

use crate::kvcache::{CacheType, KvCache, KvConfig};
use crate::model::Numerics;

/// How the tools store keys and values and run attention.
#[derive(Debug, Clone, Copy, Args)]
pub struct CacheArgs {
    /// Storage type of cached keys: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1 or iq4_nl.
    #[arg(long = "cache-type-k", default_value = "f16")]
    pub type_k: CacheType,
    /// Storage type of cached values (same choices as for keys, set independently).
    #[arg(long = "cache-type-v", default_value = "f16")]
    pub type_v: CacheType,
    /// Flash attention (`on`) or the reference attention (`off`).
    #[arg(
        long = "flash-attention",
        default_value = "on",
        value_parser = on_off,
        action = clap::ArgAction::Set
    )]
    pub flash_attention: bool,
    /// `exact` (llama.cpp's reference order, bit for bit) or `fast` (the default unless
    /// `OLLAMA_NUMERICS` says otherwise).
    #[arg(long)]
    pub numerics: Option<Numerics>,
    /// `cpu`, `gpu` or an adapter index (`ollama-runner devices` lists them); by default
    /// `OLLAMA_DEVICE`, else the best real GPU present, else the CPU.
    #[arg(long)]
    pub device: Option<gpu::DeviceSpec>,
}

/// Parses `on`/`off` (and `true`/`false`, `1`/`0`).
pub fn on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(format!("'{other}' is not on or off")),
    }
}

impl CacheArgs {
    /// The cache configuration for these flags and the given sizes.
    pub fn config(&self, num_ctx: usize, num_parallel: usize, num_batch: usize) -> KvConfig {
        KvConfig {
            num_ctx,
            num_parallel,
            num_batch,
            type_k: self.type_k,
            type_v: self.type_v,
            flash_attention: self.flash_attention,
        }
    }
}

impl CacheArgs {
    /// The GPU `--device` (or `OLLAMA_DEVICE`) picks, opened, or `None` for the CPU.
    pub fn device(&self) -> anyhow::Result<Option<std::sync::Arc<gpu::Gpu>>> {
        Ok(match self.device {
            Some(spec) => crate::model::device::open_spec(Some(spec))?,
            None => crate::model::device::open_from_env()?,
        })
    }

    /// Whether a model would run on a GPU with these flags, as [`CacheArgs::device`]
    /// decides, without opening it (for the estimate): `--device` or `OLLAMA_DEVICE` naming
    /// a GPU, or by default a real GPU present.
    pub fn on_device(&self) -> anyhow::Result<bool> {
        let spec = match self.device {
            Some(spec) => Some(spec),
            None => match std::env::var(crate::model::device::DEVICE_ENV) {
                Ok(v) if !v.trim().is_empty() => Some(v.parse::<gpu::DeviceSpec>()?),
                _ => None,
            },
        };
        Ok(match spec {
            Some(gpu::DeviceSpec::Cpu) => false,
            Some(gpu::DeviceSpec::Index(_)) => true,
            Some(gpu::DeviceSpec::Gpu) => !gpu::list_adapters().is_empty(),
            None => gpu::default_adapter(&gpu::list_adapters()).is_some(),
        })
    }

    /// The numerics asked for: the flag, else `OLLAMA_NUMERICS`, else fast.
    pub fn numerics(&self) -> anyhow::Result<Numerics> {
        Ok(match self.numerics {
            Some(n) => n,
            None => Numerics::from_env()?,
        })
    }
}

/// One line saying what the cache is: types, attention path and size, for stderr.
pub fn describe(cache: &KvCache) -> String {
    let c = cache.config();
    format!(
        "K/V cache: K {}, V {}, flash attention {}, {} × {} positions, {:.1} MiB",
        c.type_k,
        c.type_v,
        if c.flash_attention { "on" } else { "off" },
        c.num_parallel,
        c.num_ctx,
        cache.bytes().total() as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_and_off_parse_and_anything_else_is_refused() {
        assert_eq!(on_off("on"), Ok(true));
        assert_eq!(on_off("OFF"), Ok(false));
        assert!(on_off("auto").unwrap_err().contains("'auto'"));
    }
}
