//! System RAM through `sysinfo`, capped by this process's cgroup limit.

use std::sync::{Mutex, MutexGuard};

use sysinfo::{
    MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System,
};

use super::cgroup::CgroupReader;
use super::{MemoryError, MemoryProbe, MemorySnapshot, SystemMemory};

/// System RAM (the kernel's total and available memory, capped by the cgroup limit) and
/// each process's resident memory. Reports no GPU.
#[derive(Debug)]
pub struct SystemProbe {
    system: Mutex<System>,
    cgroup: CgroupReader,
}

impl SystemProbe {
    /// A probe of this machine.
    pub fn new() -> Result<Self, MemoryError> {
        Self::with_cgroup(CgroupReader::system())
    }

    /// A probe of this machine's RAM that reads cgroup files through `cgroup`.
    pub fn with_cgroup(cgroup: CgroupReader) -> Result<Self, MemoryError> {
        let system = System::new().map_err(MemoryError::System)?;
        Ok(Self {
            system: Mutex::new(system),
            cgroup,
        })
    }

    /// System RAM now.
    pub fn system_memory(&self) -> Result<SystemMemory, MemoryError> {
        let (total, available) = {
            let mut system = self.lock();
            system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
            (system.total_memory(), system.available_memory())
        };
        if total == 0 {
            return Err(MemoryError::NoSystemMemory);
        }
        let available = available.min(total);
        let cgroup = self.cgroup.read();
        Ok(SystemMemory {
            total_bytes: total,
            available_bytes: cgroup.map_or(available, |c| available.min(c.available_bytes)),
            cgroup_limit_bytes: cgroup.map(|c| c.limit_bytes),
        })
    }

    /// The `sysinfo` state; a panic elsewhere while it was held leaves nothing half-done
    /// that a refresh does not overwrite, so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, System> {
        self.system
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemoryProbe for SystemProbe {
    fn snapshot(&self) -> Result<MemorySnapshot, MemoryError> {
        Ok(MemorySnapshot {
            gpus: Vec::new(),
            system: self.system_memory()?,
        })
    }

    fn process_bytes(&self, pid: u32) -> Option<u64> {
        let pid = Pid::from_u32(pid);
        let mut system = self.lock();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system
            .process(pid)
            .filter(|process| {
                !matches!(
                    process.status(),
                    ProcessStatus::Zombie | ProcessStatus::Dead
                )
            })
            .map(|process| process.memory())
    }
}
