//! Device buffers: GGUF weight bytes uploaded as they are, f32 activations, and readback.
//!
//! Every buffer made here adds its size to [`Gpu::allocated_bytes`] and takes it back
//! when dropped, so the runner's report of device memory is a sum of live buffers, not an
//! estimate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::device::Gpu;
use crate::error::{GpuError, Result};

/// A storage buffer on the device, counted in [`Gpu::allocated_bytes`] while it lives.
#[derive(Debug)]
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    /// Bytes the caller asked for (before padding to whole 32-bit words).
    len_bytes: u64,
    allocated: Arc<AtomicU64>,
}

impl GpuBuffer {
    /// Bytes of data the buffer was made for (its allocation may be up to 3 bytes more).
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The number of f32 (or u32) values it holds.
    pub fn len_words(&self) -> usize {
        (self.len_bytes / 4) as usize
    }

    /// Bytes allocated on the device for it.
    pub fn allocated_bytes(&self) -> u64 {
        self.buffer.size()
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        self.allocated
            .fetch_sub(self.buffer.size(), Ordering::Relaxed);
    }
}

/// The largest array [`Gpu::constant`] remembers (a 512-token pass's attention tokens
/// are 4 KiB).
const MAX_CONSTANT_BYTES: usize = 8 << 10;
/// How many it remembers before it forgets them all.
const MAX_CONSTANTS: usize = 16;

/// The arrays [`Gpu::constant`] remembers, by content.
pub(crate) type Constants = std::collections::HashMap<Vec<u8>, Arc<GpuBuffer>>;

impl Gpu {
    /// Allocates an uninitialised storage buffer of `len_bytes` (rounded up to a whole
    /// word, at least one), checking the device's limits first and catching an
    /// out-of-memory error.
    fn storage_buffer(&self, what: &str, len_bytes: u64) -> Result<GpuBuffer> {
        let size = len_bytes.max(4).next_multiple_of(4);
        let limit = self.max_binding_bytes();
        if size > limit {
            return Err(GpuError::TooLarge {
                what: what.to_owned(),
                bytes: size,
                limit,
            });
        }
        let buffer = self.scoped(what, size, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        })?;
        let total = self.allocated.fetch_add(size, Ordering::Relaxed) + size;
        tracing::debug!(what, bytes = size, total, "GPU buffer allocated");
        Ok(GpuBuffer {
            buffer,
            len_bytes,
            allocated: Arc::clone(&self.allocated),
        })
    }

    /// Uploads bytes as they are: a GGUF tensor's blocks stay quantized (the kernels
    /// dequantize them), padded with zeros to a whole word.
    pub fn upload_bytes(&self, what: &str, bytes: &[u8]) -> Result<GpuBuffer> {
        let buffer = self.storage_buffer(what, bytes.len() as u64)?;
        let whole = bytes.len() / 4 * 4;
        self.scoped(what, 0, || {
            if whole > 0 {
                self.queue.write_buffer(&buffer.buffer, 0, &bytes[..whole]);
            }
            if whole < bytes.len() {
                let mut tail = [0u8; 4];
                tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
                self.queue.write_buffer(&buffer.buffer, whole as u64, &tail);
            }
        })?;
        Ok(buffer)
    }

    /// A read-only buffer of `bytes`, shared with every earlier request for the same
    /// bytes while it is remembered: a pass gives each layer's RoPE, K/V store and
    /// attention the same positions, cells and sequence ids, which are uploaded once
    /// instead of per layer. Only small arrays are remembered, and only a few, so what
    /// they hold stays a rounding error in [`Gpu::allocated_bytes`].
    pub(crate) fn constant(&self, what: &str, bytes: &[u8]) -> Result<Arc<GpuBuffer>> {
        if bytes.len() > MAX_CONSTANT_BYTES {
            return self.upload_bytes(what, bytes).map(Arc::new);
        }
        let mut constants = self
            .constants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(buffer) = constants.get(bytes) {
            return Ok(Arc::clone(buffer));
        }
        if constants.len() >= MAX_CONSTANTS {
            constants.clear();
        }
        let buffer = Arc::new(self.upload_bytes(what, bytes)?);
        constants.insert(bytes.to_vec(), Arc::clone(&buffer));
        Ok(buffer)
    }

    /// Uploads f32 values (activations, norm weights).
    pub fn upload_f32(&self, what: &str, values: &[f32]) -> Result<GpuBuffer> {
        self.upload_bytes(what, bytemuck::cast_slice(values))
    }

    /// Uploads u32 values (token ids).
    pub fn upload_u32(&self, what: &str, values: &[u32]) -> Result<GpuBuffer> {
        self.upload_bytes(what, bytemuck::cast_slice(values))
    }

    /// Uploads i32 values (positions).
    pub fn upload_i32(&self, what: &str, values: &[i32]) -> Result<GpuBuffer> {
        self.upload_bytes(what, bytemuck::cast_slice(values))
    }

    /// A buffer of `len` f32 zeros, for a kernel's output.
    pub fn zeros_f32(&self, what: &str, len: usize) -> Result<GpuBuffer> {
        let buffer = self.storage_buffer(what, 4 * len as u64)?;
        self.record("zeros_f32", |encoder| {
            encoder.clear_buffer(&buffer.buffer, 0, None);
        })?;
        Ok(buffer)
    }

    /// Overwrites the start of an f32 buffer with `values`.
    pub fn write_f32(&self, buffer: &GpuBuffer, values: &[f32]) -> Result<()> {
        if values.len() > buffer.len_words() {
            return Err(GpuError::Shape {
                kernel: "write_f32",
                detail: format!(
                    "{} values do not fit a buffer of {}",
                    values.len(),
                    buffer.len_words()
                ),
            });
        }
        // The write runs before the next submission: kernels recorded before it must be
        // submitted first, or they would see the new values.
        self.flush()?;
        self.scoped("write_f32", 0, || {
            self.queue
                .write_buffer(&buffer.buffer, 0, bytemuck::cast_slice(values));
        })
    }

    /// Copies an f32 buffer back to the CPU (logits for the sampler; test results),
    /// after every kernel recorded before has finished.
    pub fn read_f32(&self, buffer: &GpuBuffer) -> Result<Vec<f32>> {
        let mut bytes = self.read_words("readback", buffer)?;
        bytes.truncate(buffer.len_words() * 4);
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes))
    }

    /// Copies a buffer's bytes back to the CPU (`len_bytes` of them), after every kernel
    /// submitted before has finished: how tests compare a quantized K/V cache with the
    /// CPU's bytes.
    pub fn read_bytes(&self, buffer: &GpuBuffer) -> Result<Vec<u8>> {
        let mut bytes = self.read_words("read_bytes", buffer)?;
        bytes.truncate(buffer.len_bytes() as usize);
        Ok(bytes)
    }

    /// Every allocated byte of `buffer` (whole words), through a mapped staging buffer.
    fn read_words(&self, what: &str, buffer: &GpuBuffer) -> Result<Vec<u8>> {
        let size = buffer.allocated_bytes();
        if buffer.len_bytes() == 0 {
            return Ok(Vec::new());
        }
        let staging = self.scoped(what, size, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        self.submit_with(what, |encoder| {
            encoder.copy_buffer_to_buffer(&buffer.buffer, 0, &staging, 0, size);
        })?;
        let (sender, receiver) = mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            // The receiver waits below; a send can only fail if it is gone.
            let _ = sender.send(result);
        });
        self.wait()?;
        receiver
            .recv()
            .map_err(|_| GpuError::DeviceLost {
                reason: "the readback was dropped unanswered".to_owned(),
            })?
            .map_err(|e| GpuError::DeviceLost {
                reason: format!("mapping the readback buffer failed: {e}"),
            })?;
        let bytes = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Validation {
                what: what.to_owned(),
                message: e.to_string(),
            })?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
