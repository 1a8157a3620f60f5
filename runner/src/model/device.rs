//! Which device a model runs on: `OLLAMA_DEVICE` (`cpu`, `gpu`, or an adapter index as
//! `ollama-runner devices` lists them), or by default the best real GPU present, else
//! the CPU. Vulkan on the CPU (Mesa's lavapipe) is never chosen by default: it is slower
//! than the CPU engine and exists for tests, which ask for it with `OLLAMA_DEVICE=gpu`.

use std::sync::Arc;

use gpu::{DeviceSpec, Gpu};

use super::ModelError;

/// The environment variable that picks the device.
pub const DEVICE_ENV: &str = "OLLAMA_DEVICE";

/// Opens the device `spec` names (`cpu`, `gpu` or an index), or with no spec the best
/// GPU that is not a software one; `None` means the CPU.
pub fn open(spec: Option<&str>) -> Result<Option<Arc<Gpu>>, ModelError> {
    let spec = match spec.map(str::trim).filter(|s| !s.is_empty()) {
        Some(spec) => Some(spec.parse::<DeviceSpec>()?),
        None => None,
    };
    open_spec(spec)
}

/// [`open`] with the spec parsed.
pub fn open_spec(spec: Option<DeviceSpec>) -> Result<Option<Arc<Gpu>>, ModelError> {
    let spec = match spec {
        Some(spec) => spec,
        None => {
            let adapters = gpu::list_adapters();
            match gpu::default_adapter(&adapters) {
                Some(adapter) => DeviceSpec::Index(adapter.index),
                None => DeviceSpec::Cpu,
            }
        }
    };
    let gpu = Gpu::open(spec)?.map(Arc::new);
    match &gpu {
        Some(gpu) => tracing::info!(adapter = %gpu.description(), "running on the GPU"),
        None => tracing::info!("running on the CPU"),
    }
    Ok(gpu)
}

/// [`open`] with `OLLAMA_DEVICE`.
pub fn open_from_env() -> Result<Option<Arc<Gpu>>, ModelError> {
    open(std::env::var(DEVICE_ENV).ok().as_deref())
}
