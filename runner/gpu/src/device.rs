//! Finding and opening a GPU: the adapters wgpu sees (Vulkan everywhere, Metal on Apple),
//! the `OLLAMA_DEVICE` spec that picks one, and the opened [`Gpu`] with its real limits,
//! its count of allocated bytes and its errors turned into [`GpuError`] values.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::batch::Pending;
use crate::budget::{self, DeviceMemory};
use crate::buffer::Constants;
use crate::error::{GpuError, Result};
use crate::kernel::Pipelines;

/// Which compute device a runner uses, as `OLLAMA_DEVICE` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `cpu`: the CPU engine; no GPU is opened.
    Cpu,
    /// `gpu`: the best adapter present (see [`DeviceKind::rank`]).
    Gpu,
    /// `0`, `1`, ...: the adapter at that index in [`list_adapters`].
    Index(usize),
}

impl FromStr for DeviceSpec {
    type Err = GpuError;

    fn from_str(value: &str) -> Result<Self> {
        let trimmed = value.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => other
                .parse()
                .map(Self::Index)
                .map_err(|_| GpuError::BadDeviceSpec {
                    value: value.to_owned(),
                }),
        }
    }
}

/// The physical kind of an adapter, which decides the default choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A GPU with its own memory.
    Discrete,
    /// A GPU sharing system memory (laptops, Apple Silicon).
    Integrated,
    /// A virtualised GPU (a VM's passthrough or paravirtual device).
    Virtual,
    /// Vulkan on the CPU, such as Mesa's lavapipe: right for tests, slower than the
    /// CPU engine for serving.
    Cpu,
    /// Anything the driver does not classify.
    Other,
}

impl DeviceKind {
    fn from_wgpu(ty: wgpu::DeviceType) -> Self {
        match ty {
            wgpu::DeviceType::DiscreteGpu => Self::Discrete,
            wgpu::DeviceType::IntegratedGpu => Self::Integrated,
            wgpu::DeviceType::VirtualGpu => Self::Virtual,
            wgpu::DeviceType::Cpu => Self::Cpu,
            wgpu::DeviceType::Other => Self::Other,
        }
    }

    /// Preference order for `OLLAMA_DEVICE=gpu`: lower is better.
    pub fn rank(self) -> u8 {
        match self {
            Self::Discrete => 0,
            Self::Integrated => 1,
            Self::Virtual => 2,
            Self::Other => 3,
            Self::Cpu => 4,
        }
    }

    /// The lowercase name used in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Discrete => "discrete",
            Self::Integrated => "integrated",
            Self::Virtual => "virtual",
            Self::Cpu => "cpu",
            Self::Other => "other",
        }
    }
}

/// One adapter as the runner reports it, so a user can pick it by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterDescription {
    /// Position in [`list_adapters`]; what `OLLAMA_DEVICE=<index>` takes.
    pub index: usize,
    /// The device name (`NVIDIA GeForce RTX 4090`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The wgpu backend (`vulkan`, `metal`).
    pub backend: String,
    /// Discrete, integrated, virtual or CPU.
    pub kind: DeviceKind,
    /// The PCI vendor ID the driver reports (`0x10de` NVIDIA, `0x1002` AMD, `0x8086`
    /// Intel, `0x10005` Mesa for lavapipe).
    pub vendor_id: u32,
    /// The vendor's device ID.
    pub device_id: u32,
    /// Driver name and version, as the driver reports them.
    pub driver: String,
    /// Whether WGSL's `f16` type (the `shader-f16` feature) is available.
    pub shader_f16: bool,
    /// Whether subgroup operations are available.
    pub subgroups: bool,
    /// The device-local heap's size and what is free of it (Vulkan only; see
    /// [`crate::budget`]), or `None` where the backend or the driver does not say.
    pub memory: Option<DeviceMemory>,
}

impl fmt::Display for AdapterDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({}, {}, driver {})",
            self.index,
            self.name,
            self.backend,
            self.kind.name(),
            self.driver
        )
    }
}

/// The backends this crate asks wgpu for: Vulkan, and Metal (compiled in on Apple only).
/// `WGPU_BACKEND` narrows them further, as wgpu documents.
fn backends() -> wgpu::Backends {
    (wgpu::Backends::VULKAN | wgpu::Backends::METAL).with_env()
}

fn adapters() -> Vec<wgpu::Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = backends();
    let instance = wgpu::Instance::new(descriptor);
    pollster::block_on(instance.enumerate_adapters(backends()))
}

fn describe(index: usize, adapter: &wgpu::Adapter) -> AdapterDescription {
    let info = adapter.get_info();
    let features = adapter.features();
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let kind = DeviceKind::from_wgpu(info.device_type);
    AdapterDescription {
        index,
        name: info.name,
        backend: info.backend.to_string(),
        kind,
        vendor_id: info.vendor,
        device_id: info.device,
        driver,
        memory: budget::device_memory(adapter, kind),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
    }
}

/// Every adapter wgpu finds on the Vulkan and Metal backends, in its order; the indices
/// are what `OLLAMA_DEVICE=<index>` names.
pub fn list_adapters() -> Vec<AdapterDescription> {
    adapters()
        .iter()
        .enumerate()
        .map(|(index, adapter)| describe(index, adapter))
        .collect()
}

/// The adapter a runner uses when `OLLAMA_DEVICE` is unset: the best one by
/// [`DeviceKind::rank`] that is not Vulkan on the CPU (lavapipe is for tests, slower than
/// the CPU engine), or `None` for the CPU.
pub fn default_adapter(adapters: &[AdapterDescription]) -> Option<&AdapterDescription> {
    adapters
        .iter()
        .filter(|a| a.kind != DeviceKind::Cpu)
        .min_by_key(|a| a.kind.rank())
}

/// The size of the memory blocks wgpu's allocator carves small buffers out of (both
/// device-local and host-visible ones); a buffer larger than this gets a block of its
/// own, of its size.
///
/// wgpu's default (128 to 256 MiB device blocks, 64 to 128 MiB host ones) leaves up to a
/// block of reserved but unused memory, which the runner reports (its `device_bytes` is
/// the larger of its live buffers and the allocator's reserve) and which is no function
/// of the model: a 135M-parameter model's 160 MiB of buffers reserved 320 MiB on
/// lavapipe. With 4 MiB blocks (wgpu's smallest) the reserve is the buffers plus at most
/// a few MiB, which the estimate (`plan::device::ALLOCATOR_SLACK_BYTES`) can hold; the
/// weights' large matrices, the K/V rows and the pass's buffers each get their own
/// allocation, as drivers prefer for large buffers.
pub const SUBALLOCATION_BLOCK_BYTES: u64 = 4 << 20;

/// An opened GPU: device, queue, the adapter's limits, a count of the bytes allocated
/// through this crate, and the compiled kernels.
///
/// Every wgpu error is caught (error scopes around each call, a handler for the rest, a
/// device-lost callback) and returned as a [`GpuError`], so a device failure ends the
/// operation with a message instead of a panic.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    description: AdapterDescription,
    pub(crate) limits: wgpu::Limits,
    pub(crate) allocated: Arc<AtomicU64>,
    /// The first error nobody captured, or the device-lost reason; every later call fails
    /// with it.
    fault: Arc<Mutex<Option<String>>>,
    pub(crate) pipelines: Pipelines,
    /// Kernels recorded and not yet submitted (see `batch.rs`).
    pub(crate) pending: Mutex<Pending>,
    /// Small index arrays already on the device (see [`Gpu::constant`]).
    pub(crate) constants: Mutex<Constants>,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.description)
            .field("allocated_bytes", &self.allocated_bytes())
            .finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens the device `spec` names, or returns `None` for [`DeviceSpec::Cpu`].
    pub fn open(spec: DeviceSpec) -> Result<Option<Self>> {
        // Before any enumeration: looking at the adapters loads every Vulkan driver
        // present (lavapipe maps LLVM), memory a CPU runner must not pay.
        if spec == DeviceSpec::Cpu {
            return Ok(None);
        }
        let adapters = adapters();
        let index = match spec {
            DeviceSpec::Cpu => return Ok(None),
            DeviceSpec::Index(index) if index < adapters.len() => index,
            DeviceSpec::Index(index) => {
                return Err(GpuError::NoSuchAdapter {
                    index,
                    count: adapters.len(),
                });
            }
            DeviceSpec::Gpu => adapters
                .iter()
                .enumerate()
                .min_by_key(|(_, a)| DeviceKind::from_wgpu(a.get_info().device_type).rank())
                .map(|(index, _)| index)
                .ok_or_else(|| GpuError::NoAdapter {
                    backends: format!("{:?}", backends()),
                })?,
        };
        Self::open_adapter(describe(index, &adapters[index]), &adapters[index]).map(Some)
    }

    fn open_adapter(description: AdapterDescription, adapter: &wgpu::Adapter) -> Result<Self> {
        // The adapter's own limits, not wgpu's portable defaults (a 128 MiB binding, a
        // 256 MiB buffer): weight tensors are large.
        let limits = adapter.limits();
        let block = SUBALLOCATION_BLOCK_BYTES;
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("ollama-runner"),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Manual {
                suballocated_device_memory_block_size: block..block,
            },
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&descriptor)).map_err(|source| {
                GpuError::OpenDevice {
                    adapter: description.name.clone(),
                    source,
                }
            })?;
        let fault = Arc::new(Mutex::new(None::<String>));
        let on_error = Arc::clone(&fault);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            tracing::error!(%error, "uncaptured GPU error");
            on_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| error.to_string());
        }));
        let on_lost = Arc::clone(&fault);
        device.set_device_lost_callback(move |reason, message| {
            tracing::error!(?reason, %message, "GPU device lost");
            on_lost
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| format!("device lost: {reason:?}: {message}"));
        });
        tracing::info!(
            adapter = %description,
            max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size,
            max_buffer_size = limits.max_buffer_size,
            shader_f16 = description.shader_f16,
            subgroups = description.subgroups,
            "GPU device opened"
        );
        Ok(Self {
            device,
            queue,
            description,
            limits,
            allocated: Arc::new(AtomicU64::new(0)),
            fault,
            pipelines: Pipelines::default(),
            pending: Mutex::default(),
            constants: Mutex::default(),
        })
    }

    /// The adapter this device was opened on.
    pub fn description(&self) -> &AdapterDescription {
        &self.description
    }

    /// The largest buffer one kernel can bind: the cap on one weight tensor's bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Bytes of device memory held by live buffers made through this crate: what the
    /// runner reports to the supervisor.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Bytes of device memory wgpu's allocator holds in its blocks, free space included
    /// (at least [`Gpu::allocated_bytes`]), or `None` where the backend keeps no report.
    /// The runner reports the larger of the two: memory accounting is honest.
    pub fn reserved_bytes(&self) -> Option<u64> {
        self.device
            .generate_allocator_report()
            .map(|report| report.total_reserved_bytes)
    }

    /// Fails once the device has been lost or has raised an error no scope caught.
    pub(crate) fn check_fault(&self) -> Result<()> {
        match &*self.fault.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(reason) => Err(GpuError::DeviceLost {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` inside out-of-memory, validation and internal error scopes and turns what
    /// they catch into a [`GpuError`]; `bytes` is the allocation `f` makes, for the
    /// out-of-memory message.
    pub(crate) fn scoped<T>(&self, what: &str, bytes: u64, f: impl FnOnce() -> T) -> Result<T> {
        self.check_fault()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        let internal = pollster::block_on(internal.pop());
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if oom.is_some() {
            return Err(GpuError::OutOfMemory {
                what: what.to_owned(),
                bytes,
                allocated: self.allocated_bytes(),
            });
        }
        if let Some(error) = validation.or(internal) {
            return Err(GpuError::Validation {
                what: what.to_owned(),
                message: error.to_string(),
            });
        }
        Ok(value)
    }

    /// Waits until every submitted command has finished.
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::DeviceLost {
                reason: e.to_string(),
            })?;
        self.check_fault()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_or_skip;

    #[test]
    fn specs_parse() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!(" GPU ".parse::<DeviceSpec>().unwrap(), DeviceSpec::Gpu);
        assert_eq!("1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Index(1));
        let error = "cuda:0".parse::<DeviceSpec>().unwrap_err();
        assert!(error.to_string().contains("\"cuda:0\""), "{error}");
        assert!("-1".parse::<DeviceSpec>().is_err());
        assert!("".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn discrete_ranks_first_and_software_last() {
        let mut kinds = [
            DeviceKind::Cpu,
            DeviceKind::Other,
            DeviceKind::Integrated,
            DeviceKind::Discrete,
            DeviceKind::Virtual,
        ];
        kinds.sort_by_key(|k| k.rank());
        assert_eq!(kinds[0], DeviceKind::Discrete);
        assert_eq!(kinds[4], DeviceKind::Cpu);
    }

    #[test]
    fn a_lost_device_fails_every_later_call_with_device_lost() {
        if gpu_or_skip().is_none() {
            return;
        }
        let gpu = Gpu::open(DeviceSpec::Gpu).unwrap().unwrap();
        let before = gpu.upload_f32("before", &[1.0]).unwrap();
        gpu.device.destroy();
        let error = gpu.read_f32(&before).unwrap_err();
        assert!(matches!(error, GpuError::DeviceLost { .. }), "{error}");
        let error = gpu.zeros_f32("after", 4).unwrap_err();
        assert!(matches!(error, GpuError::DeviceLost { .. }), "{error}");
        assert!(error.to_string().contains("OLLAMA_DEVICE=cpu"), "{error}");
    }
}
