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

pub mod cgroup;
mod fake;
mod nvidia;
mod system;

#[cfg(test)]
mod tests;

pub use fake::FakeProbe;
pub use nvidia::NvmlProbe;
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

/// Where models are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// On the GPU with this index.
    Gpu {
        /// The driver's index of the device.
        index: u32,
    },
    /// In system RAM.
    System,
}

/// The pool models are placed in, with its size and free memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The pool.
    pub pool: Pool,
    /// Its size (for system RAM, capped by the cgroup limit).
    pub total_bytes: u64,
    /// Its free memory now.
    pub free_bytes: u64,
}

impl MemorySnapshot {
    /// The pool a model is placed in, and how much of it is free.
    ///
    /// When there is any GPU, models go to GPU memory, on the single GPU with the most
    /// free bytes (a model is not split across GPUs; ties go to the lower index). Without
    /// a GPU they go to system RAM, whose free memory is the available memory after the
    /// cgroup cap. This assumes runners load onto the GPU when there is one: a runner
    /// that computes on the CPU uses system RAM whatever this says.
    pub fn placement(&self) -> Placement {
        let best_gpu = self
            .gpus
            .iter()
            .max_by(|a, b| a.free_bytes.cmp(&b.free_bytes).then(b.index.cmp(&a.index)));
        match best_gpu {
            Some(gpu) => Placement {
                pool: Pool::Gpu { index: gpu.index },
                total_bytes: gpu.total_bytes,
                free_bytes: gpu.free_bytes,
            },
            None => Placement {
                pool: Pool::System,
                total_bytes: self.system.effective_total_bytes(),
                free_bytes: self.system.available_bytes,
            },
        }
    }

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
                "memory: NVML found {} GPU(s); models are placed in GPU memory",
                probe.device_count()
            );
            Ok(Box::new(probe))
        }
        Err(reason) => {
            let probe = SystemProbe::new()?;
            tracing::info!(
                %reason,
                cgroup_limit_bytes = ?probe.snapshot().ok().and_then(|s| s.system.cgroup_limit_bytes),
                "memory: no NVIDIA GPU; models are placed in system RAM"
            );
            Ok(Box::new(probe))
        }
    }
}
