//! The crate's one error type: what went wrong on the device, worded for the person who
//! has to act on it.

use thiserror::Error;

/// A failure to find, open or use a GPU device.
///
/// Every wgpu failure (out of memory, validation, device lost) arrives here as a value
/// instead of wgpu's default panic, so a runner can end its model with a clear message.
#[derive(Debug, Error)]
pub enum GpuError {
    /// The device spec (`OLLAMA_DEVICE`) is not one this crate understands.
    #[error(
        "device {value:?} is not `cpu`, `gpu` or an adapter index (0, 1, ...); \
         set OLLAMA_DEVICE to one of those"
    )]
    BadDeviceSpec {
        /// The value as given.
        value: String,
    },
    /// No Vulkan (or Metal) adapter exists on this machine.
    #[error(
        "no GPU adapter found (backends tried: {backends}); install your GPU's Vulkan \
         driver (mesa-vulkan-drivers provides lavapipe, Vulkan on the CPU) or set \
         OLLAMA_DEVICE=cpu"
    )]
    NoAdapter {
        /// The wgpu backends that were enumerated.
        backends: String,
    },
    /// An adapter index past the end of the list.
    #[error(
        "GPU adapter {index} does not exist: this machine has {count} (0..{count}); \
         pick one of those indices or set OLLAMA_DEVICE=gpu"
    )]
    NoSuchAdapter {
        /// The index asked for.
        index: usize,
        /// How many adapters there are.
        count: usize,
    },
    /// The adapter refused to open a device with its own limits.
    #[error(
        "could not open GPU adapter {adapter:?}: {source}; check its driver or set OLLAMA_DEVICE=cpu"
    )]
    OpenDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        #[source]
        source: wgpu::RequestDeviceError,
    },
    /// The device has no memory left for a buffer.
    #[error(
        "the GPU is out of memory allocating {bytes} bytes for {what} ({allocated} bytes \
         already allocated by this runner); use a smaller model or context, unload other \
         models, or set OLLAMA_DEVICE=cpu"
    )]
    OutOfMemory {
        /// What the buffer was for.
        what: String,
        /// Its size.
        bytes: u64,
        /// Bytes this crate had allocated before.
        allocated: u64,
    },
    /// One buffer larger than the device can address in a single binding.
    #[error(
        "{what} needs a GPU buffer of {bytes} bytes but this device binds at most {limit}; \
         the tensor must be split, or set OLLAMA_DEVICE=cpu"
    )]
    TooLarge {
        /// What the buffer was for.
        what: String,
        /// Its size.
        bytes: u64,
        /// The device's limit (`max_storage_buffer_binding_size` or `max_buffer_size`).
        limit: u64,
    },
    /// The device was lost (driver reset, GPU removed, hang).
    #[error(
        "the GPU device was lost ({reason}); this runner cannot continue, restart it or set OLLAMA_DEVICE=cpu"
    )]
    DeviceLost {
        /// wgpu's reason and message.
        reason: String,
    },
    /// wgpu rejected a call: a bug in this crate or its caller, never the user's doing.
    #[error("GPU validation error in {what}: {message} (this is a bug, please report it)")]
    Validation {
        /// The operation that failed.
        what: String,
        /// wgpu's message.
        message: String,
    },
    /// Operands whose sizes do not fit the kernel: a bug in the caller.
    #[error("{kernel}: {detail} (this is a bug in the caller, please report it)")]
    Shape {
        /// The kernel called.
        kernel: &'static str,
        /// What does not fit.
        detail: String,
    },
    /// A weight type the GPU kernels do not cover.
    #[error("weight type {ty} has no GPU kernel yet; set OLLAMA_DEVICE=cpu for this model")]
    UnsupportedType {
        /// The GGML type's name.
        ty: &'static str,
    },
}

/// Results of this crate.
pub type Result<T, E = GpuError> = std::result::Result<T, E>;
