//! The memory a GPU runner's device buffers come out of, so the scheduler can budget
//! them apart from system RAM.

use crate::devices::{Adapter, NVIDIA, Target};

use super::MemorySnapshot;

/// Where device buffers go, for the device this server's runners use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DevicePool {
    /// Runners compute on the CPU: they hold no device memory.
    #[default]
    None,
    /// The GPU computes in system RAM (integrated GPUs, Apple Silicon, software
    /// Vulkan): device buffers are budgeted as system memory.
    Shared,
    /// The NVIDIA GPU at this NVML index: total and free memory read live.
    Nvml {
        /// NVML's index of the device.
        index: u32,
    },
    /// A GPU measured once, through its Vulkan memory budget when the server started:
    /// `free_bytes` is what runners may use in all.
    Budget {
        /// The device-local heap.
        total_bytes: u64,
        /// What the budget left free at start.
        free_bytes: u64,
    },
    /// A GPU whose memory no source reports: loads onto it are not checked.
    Unmeasured,
}

/// A pool's size and what is free in it now, as the scheduler's fit reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolMemory {
    /// What runners could use if none were loaded.
    pub total_bytes: u64,
    /// What is free now (for a pool measured once, what was free at start: the
    /// scheduler subtracts its runners' usage itself).
    pub available_bytes: u64,
}

impl DevicePool {
    /// The pool of `target`, given what NVML sees in `snapshot` (its GPUs, named as
    /// NVML names them; the Vulkan and NVML names of one NVIDIA GPU agree).
    pub fn for_target(target: &Target, snapshot: &MemorySnapshot) -> Self {
        let Target::Gpu(adapter) = target else {
            return Self::None;
        };
        if adapter.unified() {
            return Self::Shared;
        }
        if let Some(index) = nvml_index(adapter, snapshot) {
            return Self::Nvml { index };
        }
        match adapter.memory {
            Some(m) => Self::Budget {
                total_bytes: m.total_bytes,
                free_bytes: m.free_bytes.min(m.total_bytes),
            },
            None => Self::Unmeasured,
        }
    }

    /// The device pool's memory in `snapshot`, or `None` when device bytes are not
    /// budgeted apart (no GPU, shared memory, or nothing measures it).
    pub fn memory(&self, snapshot: &MemorySnapshot) -> Option<PoolMemory> {
        match self {
            Self::Nvml { index } => {
                snapshot
                    .gpus
                    .iter()
                    .find(|g| g.index == *index)
                    .map(|g| PoolMemory {
                        total_bytes: g.total_bytes,
                        available_bytes: g.free_bytes,
                    })
            }
            Self::Budget { free_bytes, .. } => Some(PoolMemory {
                total_bytes: *free_bytes,
                available_bytes: *free_bytes,
            }),
            Self::None | Self::Shared | Self::Unmeasured => None,
        }
    }

    /// Whether device buffers take system RAM.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Shared)
    }

    /// How the pool is measured, for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "models run on the CPU, in system RAM".to_owned(),
            Self::Shared => "the GPU shares system RAM: models are budgeted there".to_owned(),
            Self::Nvml { index } => format!("GPU memory read through NVML (GPU {index})"),
            Self::Budget {
                total_bytes,
                free_bytes,
            } => format!(
                "GPU memory from the Vulkan budget at start: {free_bytes} of {total_bytes} bytes free"
            ),
            Self::Unmeasured => {
                "the GPU's memory cannot be read: loads onto it are not checked".to_owned()
            }
        }
    }
}

/// NVML's index of `adapter`: the first NVIDIA GPU of the same name. On a machine with
/// several identical GPUs that is NVML's lowest index, which budgets the right amount
/// as long as the GPUs are alike.
fn nvml_index(adapter: &Adapter, snapshot: &MemorySnapshot) -> Option<u32> {
    if adapter.vendor_id != NVIDIA {
        return None;
    }
    snapshot
        .gpus
        .iter()
        .find(|g| g.name.trim() == adapter.name.trim())
        .map(|g| g.index)
}
