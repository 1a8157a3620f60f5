//! How much device memory an adapter has and how much of it is free: the size of its
//! device-local heap and, where the driver has `VK_EXT_memory_budget`, the budget the
//! driver grants this process less what the system already uses of that heap.
//!
//! This module is one of the workspace's few exceptions to `unsafe_code = "forbid"`: the
//! budget is reachable only through the Vulkan driver's C API (`vkGetPhysicalDevice
//! MemoryProperties2` with `VkPhysicalDeviceMemoryBudgetPropertiesEXT` chained), which
//! wgpu does not expose; its hal escape hatch hands out the raw `ash` instance and
//! physical device, and every call on those is `unsafe`. The unsafe items are the
//! narrowest possible, each block says why it is sound, and every failure gives `None`,
//! never a panic.
//!
//! Metal and the other backends report `None`: Apple GPUs share system memory and Metal
//! gives no per-heap budget through wgpu (the supervisor budgets them with system RAM).

use std::ffi::CStr;

use ash::vk;

use crate::device::DeviceKind;

/// An adapter's device memory, as the supervisor budgets with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes of the device-local heap models are loaded into: the largest
    /// `DEVICE_LOCAL` heap (on a discrete GPU its VRAM; on an integrated or CPU adapter
    /// the share of system memory the driver exposes).
    pub total_bytes: u64,
    /// Bytes of that heap this process may still allocate: the driver's budget less the
    /// heap's current usage (`VK_EXT_memory_budget`), or `total_bytes` when the driver
    /// does not report a budget. Never more than `total_bytes`.
    pub free_bytes: u64,
    /// Whether the heap is system memory (integrated GPUs, software Vulkan, or a device
    /// whose every heap is device-local): the supervisor must not count it on top of RAM.
    pub unified: bool,
}

/// The memory of `adapter`, or `None` when it is not a Vulkan adapter or the driver's
/// answers are unusable.
pub(crate) fn device_memory(adapter: &wgpu::Adapter, kind: DeviceKind) -> Option<DeviceMemory> {
    // SAFETY: the guard borrows the adapter's hal object for this function only; nothing
    // here destroys it or any of its handles, and only read-only queries are made.
    #[allow(unsafe_code)]
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let shared = hal.shared_instance();
    let instance = shared.raw_instance();
    let physical = hal.raw_physical_device();
    let device_version = hal.physical_device_capabilities().properties().api_version;
    let has_budget = supports_extension(instance, physical, ash::ext::memory_budget::NAME);
    let core_11 = shared.instance_api_version() >= vk::API_VERSION_1_1
        && device_version >= vk::API_VERSION_1_1;
    let khr_properties2 = shared
        .extensions()
        .contains(&ash::khr::get_physical_device_properties2::NAME);

    let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
    let (properties, budget) = if has_budget && (core_11 || khr_properties2) {
        let mut properties2 = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        memory_properties2(shared, physical, core_11, &mut properties2);
        let properties = properties2.memory_properties;
        (properties, Some(budget))
    } else {
        (memory_properties(instance, physical), None)
    };
    from_properties(&properties, budget.as_ref(), kind)
}

/// Whether the physical device supports the device extension `name`.
fn supports_extension(instance: &ash::Instance, physical: vk::PhysicalDevice, name: &CStr) -> bool {
    // SAFETY: `physical` was enumerated from `instance`, which the hal guard keeps alive.
    #[allow(unsafe_code)]
    let extensions = unsafe { instance.enumerate_device_extension_properties(physical) };
    extensions.is_ok_and(|list| list.iter().any(|e| e.extension_name_as_c_str() == Ok(name)))
}

/// The memory properties without the budget (Vulkan 1.0).
fn memory_properties(
    instance: &ash::Instance,
    physical: vk::PhysicalDevice,
) -> vk::PhysicalDeviceMemoryProperties {
    // SAFETY: `physical` was enumerated from `instance`, which the hal guard keeps alive.
    #[allow(unsafe_code)]
    unsafe {
        instance.get_physical_device_memory_properties(physical)
    }
}

/// The memory properties with `properties`' chain filled, through Vulkan 1.1 when both
/// the instance and the device have it, else `VK_KHR_get_physical_device_properties2`
/// (which the caller has checked the instance enabled).
fn memory_properties2(
    shared: &wgpu::hal::vulkan::InstanceShared,
    physical: vk::PhysicalDevice,
    core_11: bool,
    properties: &mut vk::PhysicalDeviceMemoryProperties2<'_>,
) {
    let instance = shared.raw_instance();
    if core_11 {
        // SAFETY: the instance and device are both Vulkan 1.1 (checked by the caller), so
        // the core entry point is loaded; the chain holds only the budget structure, whose
        // extension the device supports.
        #[allow(unsafe_code)]
        unsafe {
            instance.get_physical_device_memory_properties2(physical, properties);
        }
    } else {
        let khr =
            ash::khr::get_physical_device_properties2::Instance::new(shared.entry(), instance);
        // SAFETY: the instance enabled VK_KHR_get_physical_device_properties2 (checked by
        // the caller), so the loaded entry point is the driver's; the chain is as above.
        #[allow(unsafe_code)]
        unsafe {
            khr.get_physical_device_memory_properties2(physical, properties);
        }
    }
}

/// The device memory the heaps in `properties` (and the driver's `budget`, when it has
/// one) describe: the largest device-local heap, or the largest heap when none is.
fn from_properties(
    properties: &vk::PhysicalDeviceMemoryProperties,
    budget: Option<&vk::PhysicalDeviceMemoryBudgetPropertiesEXT<'_>>,
    kind: DeviceKind,
) -> Option<DeviceMemory> {
    let count = (properties.memory_heap_count as usize).min(vk::MAX_MEMORY_HEAPS);
    let heaps = &properties.memory_heaps[..count];
    let local = |h: &vk::MemoryHeap| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL);
    let (index, heap) = heaps
        .iter()
        .enumerate()
        .filter(|(_, h)| local(h))
        .max_by_key(|(_, h)| h.size)
        .or_else(|| heaps.iter().enumerate().max_by_key(|(_, h)| h.size))?;
    let total_bytes = heap.size;
    if total_bytes == 0 {
        return None;
    }
    let free_bytes = budget.map_or(total_bytes, |b| {
        b.heap_budget[index]
            .saturating_sub(b.heap_usage[index])
            .min(total_bytes)
    });
    let unified =
        matches!(kind, DeviceKind::Integrated | DeviceKind::Cpu) || heaps.iter().all(local);
    Some(DeviceMemory {
        total_bytes,
        free_bytes,
        unified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(heaps: &[(u64, bool)]) -> vk::PhysicalDeviceMemoryProperties {
        let mut p = vk::PhysicalDeviceMemoryProperties {
            memory_heap_count: heaps.len() as u32,
            ..Default::default()
        };
        for (slot, &(size, device_local)) in p.memory_heaps.iter_mut().zip(heaps) {
            slot.size = size;
            if device_local {
                slot.flags = vk::MemoryHeapFlags::DEVICE_LOCAL;
            }
        }
        p
    }

    #[test]
    fn a_discrete_gpu_reports_its_largest_device_local_heap_and_its_budget() {
        // A 24 GiB card with a 256 MiB BAR window and 64 GiB of host memory.
        let p = properties(&[(24 << 30, true), (64 << 30, false), (256 << 20, true)]);
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        budget.heap_budget[0] = 23 << 30;
        budget.heap_usage[0] = 3 << 30;
        let m = from_properties(&p, Some(&budget), DeviceKind::Discrete).unwrap();
        assert_eq!(
            m,
            DeviceMemory {
                total_bytes: 24 << 30,
                free_bytes: 20 << 30,
                unified: false
            }
        );
        // Without the extension: the whole heap.
        let m = from_properties(&p, None, DeviceKind::Discrete).unwrap();
        assert_eq!((m.total_bytes, m.free_bytes), (24 << 30, 24 << 30));
    }

    #[test]
    fn usage_beyond_the_budget_leaves_nothing_free_and_free_never_exceeds_total() {
        let p = properties(&[(8 << 30, true)]);
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        budget.heap_budget[0] = 1 << 30;
        budget.heap_usage[0] = 2 << 30;
        let m = from_properties(&p, Some(&budget), DeviceKind::Integrated).unwrap();
        assert_eq!(m.free_bytes, 0);
        assert!(m.unified);
        budget.heap_budget[0] = 16 << 30;
        budget.heap_usage[0] = 0;
        let m = from_properties(&p, Some(&budget), DeviceKind::Integrated).unwrap();
        assert_eq!(m.free_bytes, 8 << 30);
    }

    #[test]
    fn no_heap_or_an_empty_one_gives_none() {
        assert_eq!(
            from_properties(&properties(&[]), None, DeviceKind::Other),
            None
        );
        assert_eq!(
            from_properties(&properties(&[(0, true)]), None, DeviceKind::Other),
            None
        );
    }

    #[test]
    fn a_device_whose_every_heap_is_device_local_is_unified() {
        let p = properties(&[(4 << 30, true), (1 << 30, true)]);
        let m = from_properties(&p, None, DeviceKind::Other).unwrap();
        assert!(m.unified);
        assert_eq!(m.total_bytes, 4 << 30);
    }
}
