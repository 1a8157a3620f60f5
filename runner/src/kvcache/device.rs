//! A cache whose rows live on the GPU the model computes on: the cells and their
//! bookkeeping stay here, the key and value rows are device buffers that the GPU
//! forward pass writes and attends over in place ([`DeviceLayer`]).
//!
//! The rare host-side edits (copying a shared cell before a shift, re-rotating shifted
//! keys) read the layer back, edit it here and upload it again.

use std::sync::Arc;

use gpu::{Gpu, GpuBuffer, KvType};
use kernels::arch::cast::as_bytes_mut;

use super::{CacheType, KvCache, KvConfig, KvError, KvLayout, Rows};

/// The GPU storage type of a cache type, or the error that names the ones the GPU has.
pub fn device_type(ty: CacheType) -> Result<KvType, KvError> {
    Ok(match ty {
        CacheType::F32 => KvType::F32,
        CacheType::F16 => KvType::F16,
        CacheType::Q8_0 => KvType::Q8_0,
        CacheType::Q4_0 => KvType::Q4_0,
        other => return Err(KvError::DeviceType { ty: other.name() }),
    })
}

/// What the GPU attention of one layer reads and writes: the cells (positions and
/// sequence sets, to upload), the window, and the rows on the device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceLayer<'a> {
    /// The table the layer stores into (the index into a [`super::Placement`]).
    pub table: usize,
    /// Each cell's position.
    pub pos: &'a [i32],
    /// Each cell's set of sequences.
    pub seqs: &'a [u64],
    /// The layer's sliding window.
    pub window: Option<usize>,
    /// Key rows, one cell after another.
    pub k: &'a GpuBuffer,
    /// Value rows.
    pub v: &'a GpuBuffer,
    /// Key storage type.
    pub k_type: KvType,
    /// Value storage type.
    pub v_type: KvType,
}

impl KvCache {
    /// A cache whose rows are allocated on `gpu` now (zeroed), as [`super::KvPlan`]
    /// sizes them; the cells are kept here. Only the types the GPU kernels store are
    /// accepted, and the quantized types are stored without the Hadamard rotation.
    pub fn new_on_device(
        layout: KvLayout,
        config: KvConfig,
        gpu: Arc<Gpu>,
    ) -> Result<Self, KvError> {
        device_type(config.type_k)?;
        device_type(config.type_v)?;
        Self::allocate(layout, config, Some(gpu))
    }

    /// The GPU holding the rows, when the cache was made on one.
    pub fn device(&self) -> Option<&Arc<Gpu>> {
        self.device.as_ref()
    }

    /// Layer `layer`'s cells and device rows, or `None` for a cache in host memory.
    pub fn device_layer(&self, layer: usize) -> Option<DeviceLayer<'_>> {
        let l = &self.layers[layer];
        let table = &self.tables[l.table];
        let (Rows::Device(k), Rows::Device(v)) = (&l.k, &l.v) else {
            return None;
        };
        Some(DeviceLayer {
            table: l.table,
            pos: table.cells.positions(),
            seqs: table.cells.seq_sets(),
            window: table.window,
            k,
            v,
            // A device cache was made only for types these accept.
            k_type: device_type(self.config.type_k).ok()?,
            v_type: device_type(self.config.type_v).ok()?,
        })
    }
}

/// Runs `edit` on the bytes of `rows`: in place for host rows; for device rows on a copy
/// read back from the device, uploaded again afterwards.
pub(super) fn edit_rows<E: From<KvError>>(
    device: Option<&Arc<Gpu>>,
    rows: &mut Rows,
    edit: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    match rows {
        Rows::Host(words) => edit(as_bytes_mut(words)),
        Rows::Device(buffer) => {
            let gpu = device
                .ok_or_else(|| KvError::Device("device rows without their device".to_owned()))?;
            let mut words = gpu.read_f32(buffer).map_err(KvError::from)?;
            edit(as_bytes_mut(&mut words))?;
            *buffer = gpu
                .upload_f32("K/V cache rows", &words)
                .map_err(KvError::from)?;
            Ok(())
        }
    }
}
