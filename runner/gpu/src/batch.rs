//! One command encoder for many kernels: dispatches are recorded, each its own compute
//! pass (passes run in order), and submitted together by [`Gpu::flush`], by every read
//! back to the CPU and by every write into an existing buffer, so a forward pass is a
//! few submissions instead of one per kernel.
//!
//! A kernel whose commands wgpu rejects while they are recorded makes the whole encoder
//! invalid; wgpu says so when it is finished, so that error arrives at the next flush and
//! names the kernels recorded since the previous one. The encoder is the device's, shared
//! by every thread that uses it: a flush submits the other threads' kernels too.

use std::sync::{MutexGuard, PoisonError};

use crate::device::Gpu;
use crate::error::{GpuError, Result};

/// Commands recorded before the encoder is submitted anyway, so a long run of kernels
/// without a readback starts on the device and the encoder stays small.
const MAX_PENDING_COMMANDS: usize = 256;

/// Commands recorded and not yet submitted.
#[derive(Default)]
pub(crate) struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    commands: usize,
    /// The distinct kernels recorded, for the message if the encoder fails.
    kernels: Vec<&'static str>,
}

impl Gpu {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records commands for `kernel` into the pending encoder, inside error scopes, and
    /// submits them all once there are [`MAX_PENDING_COMMANDS`].
    pub(crate) fn record(
        &self,
        kernel: &'static str,
        record: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        let full = self.scoped(kernel, 0, || {
            let mut pending = self.pending();
            let encoder = pending
                .encoder
                .get_or_insert_with(|| self.device.create_command_encoder(&Default::default()));
            record(encoder);
            pending.commands += 1;
            if !pending.kernels.contains(&kernel) {
                pending.kernels.push(kernel);
            }
            pending.commands >= MAX_PENDING_COMMANDS
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
        let encoder = pending.encoder.take();
        let kernels = std::mem::take(&mut pending.kernels);
        pending.commands = 0;
        let result = self.scoped(what, 0, || {
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
