//! What every kernel wrapper shares: compiling WGSL once per device, packing the small
//! uniform block of sizes, splitting a large grid over two dimensions and recording one
//! dispatch inside error scopes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::buffer::GpuBuffer;
use crate::device::Gpu;
use crate::error::Result;

/// Workgroup size of every kernel here (a power of two for the tree reductions).
pub(crate) const WORKGROUP: u32 = 64;

/// Compiled pipelines of one device, by kernel name; built on first use.
#[derive(Default)]
pub(crate) struct Pipelines {
    map: Mutex<HashMap<String, Kernel>>,
}

/// A compiled kernel and the layout of its bindings, looked up once instead of per
/// dispatch.
#[derive(Clone, Debug)]
pub(crate) struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// The uniform block of a kernel: 32-bit fields in declaration order, padded to 16 bytes.
#[derive(Default)]
pub(crate) struct Params(Vec<u32>);

impl Params {
    /// Appends an unsigned field.
    pub(crate) fn u32(mut self, value: u32) -> Self {
        self.0.push(value);
        self
    }

    /// Appends a float field.
    pub(crate) fn f32(self, value: f32) -> Self {
        self.u32(value.to_bits())
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut words = self.0.clone();
        words.resize(words.len().max(1).next_multiple_of(4), 0);
        bytemuck::cast_slice(&words).to_vec()
    }
}

/// One dispatch: a kernel, its storage buffers (bindings 0, 1, ... in order), its uniform
/// block (the binding after them) and its grid of workgroups.
pub(crate) struct Dispatch<'a> {
    pub(crate) kernel: &'static str,
    pub(crate) buffers: &'a [&'a GpuBuffer],
    pub(crate) params: Params,
    pub(crate) workgroups: [u32; 3],
}

/// Converts a size to the u32 the kernels index with, or names it in a shape error.
pub(crate) fn to_u32(kernel: &'static str, what: &str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| crate::GpuError::Shape {
        kernel,
        detail: format!("{what} = {value} exceeds the kernels' 32-bit indices"),
    })
}

/// Refuses the same buffer as two operands: wgpu forbids binding one buffer both
/// writable and read-only in a dispatch.
pub(crate) fn check_distinct(kernel: &'static str, a: &GpuBuffer, b: &GpuBuffer) -> Result<()> {
    if std::ptr::eq(a, b) {
        return Err(crate::GpuError::Shape {
            kernel,
            detail: "the same buffer is given as input and output".to_owned(),
        });
    }
    Ok(())
}

impl Gpu {
    /// The pipeline named `kernel`, compiled from `source()` on first use.
    pub(crate) fn pipeline(&self, kernel: &str, source: impl FnOnce() -> String) -> Result<Kernel> {
        let mut map = self
            .pipelines
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pipeline) = map.get(kernel) {
            return Ok(pipeline.clone());
        }
        let source = source();
        let pipeline = self.scoped(kernel, 0, || {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })?;
        tracing::debug!(kernel, "GPU kernel compiled");
        let compiled = Kernel {
            layout: pipeline.get_bind_group_layout(0),
            pipeline,
        };
        map.insert(kernel.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// A grid of `n` workgroups as `[x, y]` with `x * y >= n`, each within the device's
    /// per-dimension limit (65535 on most); the kernels number them `x + y * width`.
    pub(crate) fn grid(&self, n: u32) -> [u32; 2] {
        let limit = self.limits.max_compute_workgroups_per_dimension.max(1);
        let x = n.clamp(1, limit);
        [x, n.div_ceil(x).max(1)]
    }

    /// Records one dispatch of a compiled kernel into the pending compute pass; it runs
    /// at the next submission (see `batch.rs`).
    pub(crate) fn dispatch(&self, kernel: &Kernel, d: Dispatch<'_>) -> Result<()> {
        if d.workgroups.contains(&0) {
            return Ok(());
        }
        self.record_dispatch(kernel, d)
    }
}

#[cfg(test)]
mod tests {
    use crate::GpuError;
    use crate::testing::gpu_or_skip;

    #[test]
    fn a_shader_that_does_not_compile_is_an_error_not_a_panic() {
        let Some(gpu) = gpu_or_skip() else { return };
        let error = gpu
            .pipeline("broken", || "fn main( {".to_owned())
            .unwrap_err();
        assert!(matches!(error, GpuError::Validation { .. }), "{error}");
        // The device is still usable afterwards.
        let buffer = gpu.upload_f32("after", &[1.0, 2.0]).unwrap();
        assert_eq!(gpu.read_f32(&buffer).unwrap(), [1.0, 2.0]);
    }

    #[test]
    fn params_pad_to_sixteen_bytes() {
        let p = super::Params::default().u32(1).f32(2.0).u32(3);
        assert_eq!(p.bytes().len(), 16);
        assert_eq!(super::Params::default().bytes().len(), 16);
    }
}
