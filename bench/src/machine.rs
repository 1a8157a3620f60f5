//! What the report says about the machine: CPU model, caches, kernel path.

use std::fs;

/// The facts printed above the tables.
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub model: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// L2 size of cpu0 in bytes (per core on the CPUs we run on).
    pub l2: usize,
    /// L3 size of cpu0 in bytes.
    pub l3: usize,
}

impl Machine {
    /// Reads /proc/cpuinfo and /sys/devices/system/cpu/cpu0/cache.
    pub fn probe() -> Self {
        let model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            l2: cache_size(2).unwrap_or(1 << 20),
            l3: cache_size(3).unwrap_or(32 << 20),
        }
    }
}

/// Size in bytes of the unified or data cache at `level` of cpu0.
fn cache_size(level: u32) -> Option<usize> {
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let read = |f: &str| fs::read_to_string(format!("{dir}/{f}")).ok();
        let Some(found) = read("level") else { break };
        if found.trim() != level.to_string() || read("type")?.trim() == "Instruction" {
            continue;
        }
        let size = read("size")?;
        let size = size.trim();
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
        let n: usize = digits.parse().ok()?;
        return Some(match unit {
            "K" => n << 10,
            "M" => n << 20,
            _ => n,
        });
    }
    None
}

/// Bytes as MiB or KiB.
pub fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}
