//! One command encoder for many kernels: dispatches are recorded into one compute pass
//! (wgpu orders each dispatch after the writes before it) and submitted together by
//! [`Gpu::flush`], by every read back to the CPU and by every write into an existing
//! buffer, so a forward pass is a few submissions instead of one per kernel.
//!
//! Each dispatch's uniform block is a slot of one uniform buffer per encoder, filled by
//! a single queue write just before the encoder is submitted, instead of a buffer of its
//! own: on a real GPU the host's work per kernel, not the kernels, bounds decode speed.
//!
//! A kernel whose commands wgpu rejects while they are recorded makes the whole encoder
//! invalid; wgpu says so when it is finished, so that error arrives at the next flush and
//! names the kernels recorded since the previous one. The encoder is the device's, shared
//! by every thread that uses it: a flush submits the other threads' kernels too.

use std::num::NonZeroU64;
use std::sync::{MutexGuard, PoisonError};

use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::kernel::{Dispatch, Kernel};

/// Commands recorded before the encoder is submitted anyway, so a long run of kernels
/// without a readback starts on the device and the encoder stays small.
pub(crate) const MAX_PENDING_COMMANDS: usize = 256;

/// The largest uniform block a kernel may have (64 fields), and so one slot's size
/// before the device's offset alignment.
pub(crate) const MAX_UNIFORM_BYTES: usize = 256;

/// Commands recorded and not yet submitted.
#[derive(Default)]
pub(crate) struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// The compute pass dispatches go into, open until another kind of command or the
    /// submission ends it.
    pass: Option<wgpu::ComputePass<'static>>,
    /// This encoder's uniform buffer, one slot per dispatch, and the bytes it gets.
    uniforms: Option<wgpu::Buffer>,
    uniform_bytes: Vec<u8>,
    commands: usize,
    /// The distinct kernels recorded, for the message if the encoder fails.
    kernels: Vec<&'static str>,
}

impl Pending {
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder
            .get_or_insert_with(|| device.create_command_encoder(&Default::default()))
    }

    /// Counts one command of `kernel`; true once the encoder should be submitted.
    fn counted(&mut self, kernel: &'static str) -> bool {
        self.commands += 1;
        if !self.kernels.contains(&kernel) {
            self.kernels.push(kernel);
        }
        self.commands >= MAX_PENDING_COMMANDS
    }
}

impl Gpu {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records commands for `kernel` other than a dispatch (a clear, a copy) into the
    /// pending encoder, inside error scopes, and submits them all once there are
    /// [`MAX_PENDING_COMMANDS`].
    pub(crate) fn record(
        &self,
        kernel: &'static str,
        record: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        let full = self.scoped(kernel, 0, || {
            let mut pending = self.pending();
            pending.pass = None;
            record(pending.encoder(&self.device));
            pending.counted(kernel)
        })?;
        if full { self.flush() } else { Ok(()) }
    }

    /// Records one dispatch into the pending compute pass: its uniform bytes go into the
    /// encoder's uniform buffer, its bind group names that slot.
    pub(crate) fn record_dispatch(&self, kernel: &Kernel, d: Dispatch<'_>) -> Result<()> {
        let params = d.params.bytes();
        if params.len() > MAX_UNIFORM_BYTES {
            return Err(GpuError::Shape {
                kernel: d.kernel,
                detail: format!(
                    "a uniform block of {} bytes (at most {MAX_UNIFORM_BYTES})",
                    params.len()
                ),
            });
        }
        let stride = (MAX_UNIFORM_BYTES as u64)
            .next_multiple_of(u64::from(self.limits.min_uniform_buffer_offset_alignment));
        let full = self.scoped(d.kernel, params.len() as u64, || {
            let mut pending = self.pending();
            let offset = pending.uniform_bytes.len() as u64;
            pending.uniform_bytes.extend_from_slice(&params);
            pending.uniform_bytes.resize((offset + stride) as usize, 0);
            let uniforms = pending.uniforms.get_or_insert_with(|| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("uniform blocks"),
                    size: stride * MAX_PENDING_COMMANDS as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            let mut entries: Vec<wgpu::BindGroupEntry<'_>> = (d.buffers.iter().zip(0u32..))
                .map(|(buffer, binding)| wgpu::BindGroupEntry {
                    binding,
                    resource: buffer.buffer.as_entire_binding(),
                })
                .collect();
            entries.push(wgpu::BindGroupEntry {
                binding: d.buffers.len() as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: uniforms,
                    offset,
                    size: NonZeroU64::new(params.len() as u64),
                }),
            });
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(d.kernel),
                layout: &kernel.layout,
                entries: &entries,
            });
            if pending.pass.is_none() {
                let pass = pending
                    .encoder(&self.device)
                    .begin_compute_pass(&Default::default())
                    .forget_lifetime();
                pending.pass = Some(pass);
            }
            let pass = pending.pass.as_mut().expect("the pass was just opened");
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
            pending.counted(d.kernel)
        })?;
        if full { self.flush() } else { Ok(()) }
    }

    /// Submits every kernel recorded since the last flush. Reads flush by themselves; a
    /// caller flushes to start queued work early (before CPU work that does not need its
    /// result) or to learn of a failed kernel at a known point.
    pub fn flush(&self) -> Result<()> {
        let mut pending = self.pending();
        if pending.encoder.is_none() {
            return self.check_fault();
        }
        self.submit_locked(&mut pending, "flush", |_| {})
    }

    /// Submits every pending command and buffer write and waits for the device, so wgpu
    /// releases the staging memory of the uploads so far. Uploads stage their bytes in
    /// memory that, on a device sharing one memory type for everything (lavapipe,
    /// integrated GPUs), is carved out of the same blocks as the buffers; settling after
    /// each group of uploads lets the next buffers fill the staging's place instead of
    /// leaving holes in reserved blocks.
    pub fn settle(&self) -> Result<()> {
        self.flush()?;
        // Queued buffer writes go with the next submission, even an empty one.
        self.queue.submit(std::iter::empty::<wgpu::CommandBuffer>());
        self.wait()
    }

    /// Records `last` after the pending commands and submits them together: a readback's
    /// copy runs after every kernel before it.
    pub(crate) fn submit_with(
        &self,
        what: &str,
        last: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        let mut pending = self.pending();
        self.submit_locked(&mut pending, what, last)
    }

    /// Submits with the lock held, so no other thread's commands can be submitted
    /// between these and the ones recorded before them.
    fn submit_locked(
        &self,
        pending: &mut Pending,
        what: &str,
        last: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        // The pass borrows the encoder until it ends.
        pending.pass = None;
        let encoder = pending.encoder.take();
        let uniforms = pending.uniforms.take();
        let uniform_bytes = std::mem::take(&mut pending.uniform_bytes);
        let kernels = std::mem::take(&mut pending.kernels);
        pending.commands = 0;
        let result = self.scoped(what, 0, || {
            // Written before the submission's commands run, into a buffer no earlier
            // submission reads.
            if let Some(uniforms) = &uniforms {
                self.queue.write_buffer(uniforms, 0, &uniform_bytes);
            }
            let mut encoder =
                encoder.unwrap_or_else(|| self.device.create_command_encoder(&Default::default()));
            last(&mut encoder);
            self.queue.submit([encoder.finish()]);
        });
        match result {
            Err(GpuError::Validation { what, message }) if !kernels.is_empty() => {
                Err(GpuError::Validation {
                    what: format!(
                        "{what}, reported when the kernels recorded since the last flush \
                         were submitted (one of: {})",
                        kernels.join(", ")
                    ),
                    message,
                })
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kernel::{Dispatch, Params};
    use crate::testing::gpu_or_skip;
    use crate::{DeviceSpec, Gpu, GpuError};

    #[test]
    fn a_kernel_rejected_while_recorded_fails_at_the_flush_and_names_itself() {
        if gpu_or_skip().is_none() {
            return;
        }
        // A device of its own: the shared one's encoder takes other tests' kernels, whose
        // flushes would report this error instead.
        let gpu = Gpu::open(DeviceSpec::Gpu).unwrap().unwrap();
        let a = gpu.upload_f32("a", &[1.0, 2.0]).unwrap();
        let pipeline = gpu
            .pipeline("add_assign", || include_str!("shaders/add.wgsl").to_owned())
            .unwrap();
        // One buffer bound both writable and read-only: wgpu rejects the dispatch when
        // it is recorded, which spoils the encoder until it is finished.
        gpu.dispatch(
            &pipeline,
            Dispatch {
                kernel: "add_assign",
                buffers: &[&a, &a],
                params: Params::default().u32(2).u32(2),
                workgroups: [1, 1, 1],
            },
        )
        .unwrap();
        let error = gpu.flush().unwrap_err();
        assert!(matches!(error, GpuError::Validation { .. }), "{error}");
        assert!(error.to_string().contains("add_assign"), "{error}");
        // The device is still usable afterwards.
        let b = gpu.upload_f32("after", &[3.0]).unwrap();
        gpu.scale_assign(&b, 1, 2.0).unwrap();
        assert_eq!(gpu.read_f32(&b).unwrap(), [6.0]);
    }

    #[test]
    fn more_kernels_than_one_encoder_holds_run_in_order() {
        let Some(gpu) = gpu_or_skip() else { return };
        let x = gpu.zeros_f32("x", 3).unwrap();
        let one = gpu.upload_f32("one", &[1.0, 2.0, 3.0]).unwrap();
        for _ in 0..(2 * super::MAX_PENDING_COMMANDS + 7) {
            gpu.add_assign(&x, &one, 3, 3).unwrap();
            gpu.scale_assign(&x, 3, 0.5).unwrap();
        }
        // x = (x + v) / 2 converges to v; in order it is exactly v after enough steps.
        assert_eq!(gpu.read_f32(&x).unwrap(), [1.0, 2.0, 3.0]);
        gpu.flush().unwrap();
    }
}
