//! A probe that reports what a test sets: GPUs or system RAM of any size, free memory
//! that changes while the scheduler waits, and per-process usage.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{GpuMemory, MemoryError, MemoryProbe, MemorySnapshot, SystemMemory};

/// System RAM a fake GPU machine reports unless a test sets otherwise: 64 GiB, all free.
const FAKE_HOST_BYTES: u64 = 64 << 30;

/// A [`MemoryProbe`] for tests. Every setter takes `&self`, so a test can keep an
/// `Arc<FakeProbe>` and change the figures while the scheduler holds the same probe.
///
/// Processes added with [`FakeProbe::add_process`] and [`FakeProbe::add_gpu_process`]
/// take their bytes from free memory; [`FakeProbe::remove_process`] gives them back, as
/// the kernel and driver do when a runner exits.
#[derive(Debug)]
pub struct FakeProbe {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    snapshot: MemorySnapshot,
    resident: BTreeMap<u32, u64>,
    snapshots_taken: u64,
}

impl FakeProbe {
    /// A machine without a GPU, with `total_bytes` of RAM of which `available_bytes` are
    /// available, and no cgroup limit.
    pub fn system(total_bytes: u64, available_bytes: u64) -> Self {
        Self::from_snapshot(MemorySnapshot {
            gpus: Vec::new(),
            system: SystemMemory {
                total_bytes,
                available_bytes: available_bytes.min(total_bytes),
                cgroup_limit_bytes: None,
            },
        })
    }

    /// A machine with one GPU of each size in `totals_bytes` (indices 0, 1, ...), all
    /// free, and 64 GiB of free system RAM.
    pub fn gpus(totals_bytes: &[u64]) -> Self {
        let gpus = (0u32..)
            .zip(totals_bytes)
            .map(|(index, &total)| GpuMemory {
                index,
                name: format!("Fake GPU {index}"),
                total_bytes: total,
                free_bytes: total,
                used_by_processes: Vec::new(),
            })
            .collect();
        Self::from_snapshot(MemorySnapshot {
            gpus,
            system: SystemMemory {
                total_bytes: FAKE_HOST_BYTES,
                available_bytes: FAKE_HOST_BYTES,
                cgroup_limit_bytes: None,
            },
        })
    }

    /// A probe that reports `snapshot` until changed.
    pub fn from_snapshot(snapshot: MemorySnapshot) -> Self {
        Self {
            state: Mutex::new(State {
                snapshot,
                resident: BTreeMap::new(),
                snapshots_taken: 0,
            }),
        }
    }

    /// Sets the available system RAM (capped at the total).
    pub fn set_system_available(&self, bytes: u64) {
        let mut state = self.lock();
        state.snapshot.system.available_bytes = bytes.min(state.snapshot.system.total_bytes);
    }

    /// Sets the cgroup limit reported with system RAM.
    pub fn set_cgroup_limit(&self, bytes: Option<u64>) {
        self.lock().snapshot.system.cgroup_limit_bytes = bytes;
    }

    /// Sets GPU `index`'s free memory (capped at its total).
    ///
    /// # Panics
    /// When there is no GPU `index`: the test set up a different machine.
    pub fn set_gpu_free(&self, index: u32, bytes: u64) {
        let mut state = self.lock();
        let gpu = gpu_mut(&mut state, index);
        gpu.free_bytes = bytes.min(gpu.total_bytes);
    }

    /// Starts process `pid` with `resident_bytes` of RAM, taken from available RAM.
    pub fn add_process(&self, pid: u32, resident_bytes: u64) {
        let mut state = self.lock();
        let system = &mut state.snapshot.system;
        system.available_bytes = system.available_bytes.saturating_sub(resident_bytes);
        *state.resident.entry(pid).or_insert(0) += resident_bytes;
    }

    /// Gives process `pid` `bytes` on GPU `index`, taken from that GPU's free memory. The
    /// process need not have been added with [`FakeProbe::add_process`].
    ///
    /// # Panics
    /// When there is no GPU `index`.
    pub fn add_gpu_process(&self, index: u32, pid: u32, bytes: u64) {
        let mut state = self.lock();
        let gpu = gpu_mut(&mut state, index);
        gpu.free_bytes = gpu.free_bytes.saturating_sub(bytes);
        match gpu.used_by_processes.iter_mut().find(|(p, _)| *p == pid) {
            Some((_, used)) => *used = used.saturating_add(bytes),
            None => gpu.used_by_processes.push((pid, bytes)),
        }
    }

    /// Ends process `pid`: its RAM and GPU memory become free again, and it is no longer
    /// reported.
    pub fn remove_process(&self, pid: u32) {
        let mut state = self.lock();
        let resident = state.resident.remove(&pid).unwrap_or(0);
        let system = &mut state.snapshot.system;
        system.available_bytes = system
            .available_bytes
            .saturating_add(resident)
            .min(system.total_bytes);
        for gpu in &mut state.snapshot.gpus {
            let returned: u64 = gpu
                .used_by_processes
                .iter()
                .filter(|(p, _)| *p == pid)
                .map(|(_, bytes)| bytes)
                .sum();
            gpu.used_by_processes.retain(|(p, _)| *p != pid);
            gpu.free_bytes = gpu.free_bytes.saturating_add(returned).min(gpu.total_bytes);
        }
    }

    /// How many snapshots have been taken, so a test can see the scheduler polled.
    pub fn snapshots_taken(&self) -> u64 {
        self.lock().snapshots_taken
    }

    /// The state; the fake holds nothing a panicking test could leave half-written.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// GPU `index` of the fake machine.
fn gpu_mut(state: &mut State, index: u32) -> &mut GpuMemory {
    let count = state.snapshot.gpus.len();
    state
        .snapshot
        .gpus
        .iter_mut()
        .find(|gpu| gpu.index == index)
        .unwrap_or_else(|| panic!("the fake probe has {count} GPU(s), none with index {index}"))
}

impl MemoryProbe for FakeProbe {
    fn snapshot(&self) -> Result<MemorySnapshot, MemoryError> {
        let mut state = self.lock();
        state.snapshots_taken += 1;
        Ok(state.snapshot.clone())
    }

    fn process_bytes(&self, pid: u32) -> Option<u64> {
        self.lock().resident.get(&pid).copied()
    }
}
