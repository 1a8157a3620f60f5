//! The compute device this server's runners load onto, chosen once at start.
//!
//! The supervisor never opens a GPU itself: a broken driver must not take it down, and
//! the drivers' own memory is no model's. It asks `ollama-runner devices --json` (a child
//! that exits at once) what the machine offers, picks one the way `OLLAMA_DEVICE` says,
//! and then sends every load that explicit choice, so the scheduler's accounting and the
//! runner's placement cannot disagree.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// How long the device listing may take: driver start-up on a real GPU is well under a
/// second, so this only cuts off a hung driver.
const LISTING_TIMEOUT: Duration = Duration::from_secs(30);

/// `ollama-runner devices --json`, as the runner prints it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Listing {
    /// Every adapter, in the runner's index order.
    pub devices: Vec<Adapter>,
    /// The runner's own default: the best real GPU, never a software one.
    pub default: Option<usize>,
}

/// One adapter of a [`Listing`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Adapter {
    /// What `OLLAMA_DEVICE=<index>` names.
    pub index: usize,
    /// The device's name.
    pub name: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` or `other`.
    pub kind: String,
    /// The PCI vendor id (0x10de: NVIDIA).
    #[serde(default)]
    pub vendor_id: u32,
    /// Its memory, when the driver tells.
    #[serde(default)]
    pub memory: Option<AdapterMemory>,
}

/// An adapter's memory as its driver reported it when the server started.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct AdapterMemory {
    /// The device-local heap.
    pub total_bytes: u64,
    /// What the driver's budget left free then.
    pub free_bytes: u64,
    /// The device computes in system RAM (integrated GPUs, Apple Silicon, software
    /// Vulkan), so its buffers take system memory.
    pub unified: bool,
}

/// PCI vendor id of NVIDIA, whose GPUs NVML measures.
pub const NVIDIA: u32 = 0x10de;

impl Adapter {
    /// Preference when `OLLAMA_DEVICE=gpu`: discrete first, software Vulkan last (the
    /// runner's own order).
    fn rank(&self) -> u8 {
        match self.kind.as_str() {
            "discrete" => 0,
            "integrated" => 1,
            "virtual" => 2,
            "cpu" => 4,
            _ => 3,
        }
    }

    /// Whether its buffers live in system RAM: the driver says so, or it is an
    /// integrated or software device.
    pub fn unified(&self) -> bool {
        self.memory
            .map_or(matches!(self.kind.as_str(), "integrated" | "cpu"), |m| {
                m.unified
            })
    }
}

/// Where this server's runners compute.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// The CPU engine.
    #[default]
    Cpu,
    /// The GPU adapter of this listing entry.
    Gpu(Adapter),
}

impl Target {
    /// The runner's `LoadRequest.device` for it.
    pub fn runner_spec(&self) -> String {
        match self {
            Self::Cpu => "cpu".to_owned(),
            Self::Gpu(adapter) => adapter.index.to_string(),
        }
    }

    /// Whether runners compute on a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Self::Gpu(_))
    }
}

/// Why no device could be chosen.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The runner could not list the devices.
    #[error(
        "cannot list the GPUs with `{bin} devices --json`: {reason}; set OLLAMA_DEVICE=cpu to run on the CPU"
    )]
    Listing {
        /// The runner binary.
        bin: String,
        /// What went wrong.
        reason: String,
    },
    /// `OLLAMA_DEVICE` names a GPU this machine does not have.
    #[error(
        "OLLAMA_DEVICE={wanted} but {found}; `ollama-runner devices` lists them, or set OLLAMA_DEVICE=cpu"
    )]
    NotFound {
        /// What was asked for.
        wanted: String,
        /// What there is.
        found: String,
    },
}

/// The target `wanted` (`OLLAMA_DEVICE`: `None` or `auto` for the default, `cpu`, `gpu`
/// or an index) names in `listing`.
///
/// The default is the runner's: the best real GPU, else the CPU (software Vulkan only
/// when asked for). An explicit `gpu` or index that is not there is an error, never a
/// quiet fall back to the CPU.
pub fn choose(listing: &Listing, wanted: Option<&str>) -> Result<Target, DeviceError> {
    let not_found = |wanted: &str| DeviceError::NotFound {
        wanted: wanted.to_owned(),
        found: match listing.devices.len() {
            0 => "no Vulkan or Metal device was found".to_owned(),
            n => format!("only adapters 0 to {} exist", n - 1),
        },
    };
    let by_index = |index: usize| listing.devices.iter().find(|a| a.index == index);
    match wanted
        .map(str::trim)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "auto") => Ok(listing
            .default
            .and_then(by_index)
            .cloned()
            .map_or(Target::Cpu, Target::Gpu)),
        Some("cpu") => Ok(Target::Cpu),
        Some("gpu") => listing
            .devices
            .iter()
            .min_by_key(|a| (a.rank(), a.index))
            .cloned()
            .map(Target::Gpu)
            .ok_or_else(|| not_found("gpu")),
        Some(other) => other
            .parse()
            .ok()
            .and_then(by_index)
            .cloned()
            .map(Target::Gpu)
            .ok_or_else(|| not_found(other)),
    }
}

/// Parses the runner's `devices --json` output.
pub fn parse_listing(json: &str) -> Result<Listing, String> {
    serde_json::from_str(json.trim()).map_err(|e| format!("unexpected output ({e})"))
}

/// Asks `runner_bin` for the devices (`env` is the environment a runner gets) and
/// chooses the one `wanted` names. `cpu` asks nothing. When no device was asked for and
/// the listing fails, the runners compute on the CPU and a warning says why; a device
/// asked for by name must be there.
pub async fn discover(
    runner_bin: &Path,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    wanted: Option<&str>,
) -> Result<Target, DeviceError> {
    let wanted = wanted.map(str::trim).filter(|w| !w.is_empty());
    match wanted.map(str::to_ascii_lowercase).as_deref() {
        Some("cpu") => Ok(Target::Cpu),
        None | Some("auto") => match list(runner_bin, env).await {
            Ok(listing) => choose(&listing, None),
            Err(error) => {
                tracing::warn!(%error, "no GPU can be used: models run on the CPU");
                Ok(Target::Cpu)
            }
        },
        Some(_) => choose(&list(runner_bin, env).await?, wanted),
    }
}

/// Runs `runner_bin devices --json` and parses what it prints.
async fn list(
    runner_bin: &Path,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Listing, DeviceError> {
    let failed = |reason: String| DeviceError::Listing {
        bin: runner_bin.display().to_string(),
        reason,
    };
    let mut command = tokio::process::Command::new(runner_bin);
    command
        .args(["devices", "--json"])
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(LISTING_TIMEOUT, command.output())
        .await
        .map_err(|_| failed(format!("no answer within {LISTING_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").trim().to_owned();
        return Err(failed(format!("it exited with {} ({last})", output.status)));
    }
    parse_listing(&String::from_utf8_lossy(&output.stdout)).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> Listing {
        parse_listing(
            r#"{"devices":[
                {"index":0,"name":"llvmpipe (LLVM 15.0.6, 256 bits)","backend":"vulkan","kind":"cpu","vendor_id":65541,"device_id":0,"driver":"llvmpipe","shader_f16":true,"subgroups":true,"memory":{"total_bytes":25000000000,"free_bytes":20000000000,"unified":true}},
                {"index":1,"name":"NVIDIA H200","backend":"vulkan","kind":"discrete","vendor_id":4318,"device_id":8962,"driver":"NVIDIA 570","shader_f16":true,"subgroups":true,"memory":{"total_bytes":150000000000,"free_bytes":149000000000,"unified":false}}
            ],"default":1}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_default_is_the_runners_choice_and_cpu_without_one() {
        let l = listing();
        let Target::Gpu(gpu) = choose(&l, None).unwrap() else {
            panic!("expected the GPU");
        };
        assert_eq!((gpu.index, gpu.vendor_id), (1, NVIDIA));
        assert!(!gpu.unified());
        let software_only = Listing {
            devices: l.devices[..1].to_vec(),
            default: None,
        };
        assert_eq!(choose(&software_only, Some("auto")).unwrap(), Target::Cpu);
        assert_eq!(Target::Cpu.runner_spec(), "cpu");
    }

    #[test]
    fn gpu_takes_the_best_present_even_software_and_an_index_takes_that_one() {
        let l = listing();
        assert_eq!(choose(&l, Some("GPU")).unwrap().runner_spec(), "1");
        let software_only = Listing {
            devices: l.devices[..1].to_vec(),
            default: None,
        };
        let Target::Gpu(soft) = choose(&software_only, Some("gpu")).unwrap() else {
            panic!("gpu must take the software device when it is all there is");
        };
        assert!(soft.unified());
        assert_eq!(choose(&l, Some("0")).unwrap().runner_spec(), "0");
        assert_eq!(choose(&l, Some("cpu")).unwrap(), Target::Cpu);
    }

    #[test]
    fn a_gpu_that_is_not_there_is_an_error_naming_what_is() {
        let l = listing();
        let error = choose(&l, Some("7")).unwrap_err().to_string();
        assert!(
            error.contains("OLLAMA_DEVICE=7") && error.contains("0 to 1"),
            "{error}"
        );
        let none = Listing {
            devices: Vec::new(),
            default: None,
        };
        let error = choose(&none, Some("gpu")).unwrap_err().to_string();
        assert!(error.contains("no Vulkan or Metal device"), "{error}");
    }

    #[test]
    fn output_that_is_not_the_listing_is_refused() {
        assert!(parse_listing("no Vulkan or Metal device found").is_err());
        assert!(parse_listing(r#"{"devices":[{"index":"x"}]}"#).is_err());
    }
}
