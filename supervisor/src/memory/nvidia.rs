//! NVIDIA GPUs through NVML (`libnvidia-ml.so`, loaded at run time), plus system RAM.

use std::collections::BTreeMap;

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;

use super::{GpuMemory, MemoryError, MemoryProbe, MemorySnapshot, SystemProbe};

/// Every NVIDIA GPU's memory and the processes using it, with system RAM and resident
/// memory as [`SystemProbe`] reports them.
pub struct NvmlProbe {
    nvml: Nvml,
    device_count: u32,
    system: SystemProbe,
}

impl std::fmt::Debug for NvmlProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlProbe")
            .field("device_count", &self.device_count)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl NvmlProbe {
    /// Loads NVML and counts the GPUs. Fails when the library is absent (the usual case
    /// on a machine without an NVIDIA GPU), the driver is not loaded, or there is no GPU.
    pub fn new() -> Result<Self, MemoryError> {
        let nvml = Nvml::init().map_err(nvml_error("load the NVIDIA management library"))?;
        let device_count = nvml.device_count().map_err(nvml_error("count the GPUs"))?;
        if device_count == 0 {
            return Err(MemoryError::NoGpu);
        }
        Ok(Self {
            nvml,
            device_count,
            system: SystemProbe::new()?,
        })
    }

    /// How many GPUs NVML reported at start.
    pub fn device_count(&self) -> u32 {
        self.device_count
    }

    /// The GPUs as `index: name (total bytes)`, for the start-up log; a GPU that cannot be
    /// read says why.
    pub fn describe(&self) -> String {
        (0..self.device_count)
            .map(|index| match self.gpu(index) {
                Ok(gpu) => format!("{index}: {} ({} bytes)", gpu.name, gpu.total_bytes),
                Err(error) => format!("{index}: {error}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One GPU's memory now.
    fn gpu(&self, index: u32) -> Result<GpuMemory, MemoryError> {
        let device = self
            .nvml
            .device_by_index(index)
            .map_err(nvml_error(format!("open GPU {index}")))?;
        let name = device
            .name()
            .map_err(nvml_error(format!("read the name of GPU {index}")))?;
        let memory = device
            .memory_info()
            .map_err(nvml_error(format!("read the memory of GPU {index}")))?;
        let compute = processes_or_none(device.running_compute_processes()).map_err(nvml_error(
            format!("list the compute processes of GPU {index}"),
        ))?;
        let graphics = processes_or_none(device.running_graphics_processes()).map_err(
            nvml_error(format!("list the graphics processes of GPU {index}")),
        )?;
        Ok(GpuMemory {
            index,
            name,
            total_bytes: memory.total,
            free_bytes: memory.free.min(memory.total),
            used_by_processes: merge_processes(compute.iter().chain(&graphics)),
        })
    }
}

impl MemoryProbe for NvmlProbe {
    fn snapshot(&self) -> Result<MemorySnapshot, MemoryError> {
        let gpus = (0..self.device_count)
            .map(|index| self.gpu(index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MemorySnapshot {
            gpus,
            system: self.system.system_memory()?,
        })
    }

    fn process_bytes(&self, pid: u32) -> Option<u64> {
        self.system.process_bytes(pid)
    }
}

/// A process list, with "not supported on this device" read as no processes.
fn processes_or_none(
    result: Result<Vec<ProcessInfo>, NvmlError>,
) -> Result<Vec<ProcessInfo>, NvmlError> {
    match result {
        Err(NvmlError::NotSupported) => Ok(Vec::new()),
        other => other,
    }
}

/// `(pid, bytes)` per process, sorted by pid. A process in both the compute and the
/// graphics list is reported with the same allocation in each, so the larger is kept, not
/// the sum; processes whose usage the driver does not report are left out.
fn merge_processes<'a>(processes: impl Iterator<Item = &'a ProcessInfo>) -> Vec<(u32, u64)> {
    let mut by_pid = BTreeMap::new();
    for process in processes {
        if let UsedGpuMemory::Used(bytes) = process.used_gpu_memory {
            let entry = by_pid.entry(process.pid).or_insert(0u64);
            *entry = (*entry).max(bytes);
        }
    }
    by_pid.into_iter().collect()
}

/// Wraps an NVML error with what was being done.
fn nvml_error(action: impl Into<String>) -> impl FnOnce(NvmlError) -> MemoryError {
    let action = action.into();
    move |source| MemoryError::Nvml { action, source }
}
