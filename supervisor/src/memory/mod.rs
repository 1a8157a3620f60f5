//! How much memory there is: the scheduler asks a [`MemoryProbe`] before it loads a model
//! and while it waits for an evicted runner's memory to come back.
//!
//! Three probes share one trait:
//! - [`NvmlProbe`] lists NVIDIA GPUs (total, free, per-process usage) through NVML, and
//!   system RAM as [`SystemProbe`] does;
//! - [`SystemProbe`] reports system RAM through `sysinfo`, with the available memory
//!   capped by the cgroup limit of this process (see [`cgroup`]), and each runner's
//!   resident memory;
//! - [`FakeProbe`] holds whatever a test sets, so scheduler tests can simulate GPUs of
//!   any size and memory coming back after an eviction.
//!
//! [`detect`] picks one at start: NVML when the library loads and sees a GPU, otherwise
//! system RAM. A machine without a GPU is normal: that is logged once at info level.
//! Which memory a model's device buffers take is the [`DevicePool`] of the device the
//! runners use (see `crate::devices`).

pub mod cgroup;
mod fake;
mod nvidia;
mod pool;
mod system;

#[cfg(test)]
mod tests;

pub use fake::FakeProbe;
pub use nvidia::NvmlProbe;
pub use pool::{DevicePool, PoolMemory};
pub use system::SystemProbe;

use thiserror::Error;

/// A source of memory figures: real hardware or a test's fake.
pub trait MemoryProbe: Send + Sync {
    /// What the machine has now: every GPU, and system RAM.
    fn snapshot(&self) -> Result<MemorySnapshot, MemoryError>;

    /// The resident (host) memory of process `pid` in bytes, or `None` when there is no
    /// such process (or it has exited and is a zombie). A process's GPU memory is in
    /// [`MemorySnapshot::gpu_bytes_of`].
    fn process_bytes(&self, pid: u32) -> Option<u64>;
}

/// Memory figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// The GPUs, in the driver's index order; empty on a machine without one.
    pub gpus: Vec<GpuMemory>,
    /// System RAM.
    pub system: SystemMemory,
}

/// One GPU's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuMemory {
    /// The driver's index of the device.
    pub index: u32,
    /// The device's name, such as "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Memory on the device.
    pub total_bytes: u64,
    /// Memory not allocated to anyone.
    pub free_bytes: u64,
    /// `(pid, bytes)` for each process holding memory on this device, where the driver
    /// reports it.
    pub used_by_processes: Vec<(u32, u64)>,
}

/// System RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemMemory {
    /// Physical memory of the machine.
    pub total_bytes: u64,
    /// Memory that can be used without swapping: the kernel's `MemAvailable`, capped by
    /// what the cgroup limit leaves when there is one.
    pub available_bytes: u64,
    /// The memory limit of this process's cgroup (the lowest along its ancestors), or
    /// `None` when there is none.
    pub cgroup_limit_bytes: Option<u64>,
}

impl SystemMemory {
    /// The memory this process may use in all: the physical total, or the cgroup limit
    /// when that is lower.
    pub fn effective_total_bytes(&self) -> u64 {
        match self.cgroup_limit_bytes {
            Some(limit) => limit.min(self.total_bytes),
            None => self.total_bytes,
        }
    }
}

impl MemorySnapshot {
    /// The GPU memory that process `pid` holds, summed over all GPUs (0 when none).
    pub fn gpu_bytes_of(&self, pid: u32) -> u64 {
        self.gpus
            .iter()
            .flat_map(|gpu| gpu.used_by_processes.iter())
            .filter(|(p, _)| *p == pid)
            .fold(0u64, |sum, (_, bytes)| sum.saturating_add(*bytes))
    }
}

/// Why memory could not be measured.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// `sysinfo` could not start on this platform.
    #[error("cannot read system memory: {0}")]
    System(#[source] sysinfo::Error),
    /// The kernel reported no memory at all (`/proc/meminfo` unreadable or empty).
    #[error("cannot read system memory: /proc/meminfo reported a total of 0 bytes")]
    NoSystemMemory,
    /// An NVML call failed.
    #[error("NVML: cannot {action}: {source}")]
    Nvml {
        /// What was being done, such as "read the memory of GPU 0".
        action: String,
        /// The library's error.
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
    /// NVML loaded but sees no device.
    #[error("NVML loaded but reports no GPU")]
    NoGpu,
}

/// The probe for this machine: [`NvmlProbe`] when the NVIDIA library loads and reports at
/// least one GPU, otherwise [`SystemProbe`]. Logs its choice once at info level; a missing
/// GPU is not an error. Call it once at start.
pub fn detect() -> Result<Box<dyn MemoryProbe>, MemoryError> {
    match NvmlProbe::new() {
        Ok(probe) => {
            tracing::info!(
                gpus = %probe.describe(),
                "memory: NVML found {} GPU(s)",
                probe.device_count()
            );
            Ok(Box::new(probe))
        }
        Err(reason) => {
            let probe = SystemProbe::new()?;
            tracing::info!(
                %reason,
                cgroup_limit_bytes = ?probe.snapshot().ok().and_then(|s| s.system.cgroup_limit_bytes),
                "memory: NVML sees no NVIDIA GPU"
            );
            Ok(Box::new(probe))
        }
    }
}
