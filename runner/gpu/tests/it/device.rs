//! Device choice, accounting and error paths.

use gpu::testing::gpu_or_skip;
use gpu::{DeviceSpec, Gpu, GpuError, list_adapters};

#[test]
fn adapters_are_described() {
    let Some(gpu) = gpu_or_skip() else { return };
    let adapters = list_adapters();
    assert!(!adapters.is_empty());
    for (i, a) in adapters.iter().enumerate() {
        assert_eq!(a.index, i);
        assert!(!a.name.is_empty());
        eprintln!("{a} shader_f16={} subgroups={}", a.shader_f16, a.subgroups);
    }
    assert!(adapters.contains(gpu.description()));
    assert!(
        gpu.max_binding_bytes() >= 128 << 20,
        "{}",
        gpu.max_binding_bytes()
    );
}

#[test]
fn index_past_the_end_is_refused() {
    if gpu_or_skip().is_none() {
        return;
    }
    let count = list_adapters().len();
    let error = Gpu::open(DeviceSpec::Index(count)).unwrap_err();
    assert!(matches!(error, GpuError::NoSuchAdapter { .. }), "{error}");
    assert!(Gpu::open(DeviceSpec::Cpu).unwrap().is_none());
}

#[test]
fn allocations_are_counted_until_dropped() {
    if gpu_or_skip().is_none() {
        return;
    }
    // A device of its own: the shared one's count moves with the other tests.
    let gpu = Gpu::open(DeviceSpec::Gpu).unwrap().unwrap();
    assert_eq!(gpu.allocated_bytes(), 0);
    let a = gpu.upload_bytes("odd bytes", &[1, 2, 3, 4, 5]).unwrap();
    assert_eq!(a.len_bytes(), 5);
    assert_eq!(gpu.allocated_bytes(), 8);
    let b = gpu.zeros_f32("zeros", 1000).unwrap();
    assert_eq!(gpu.allocated_bytes(), 4008);
    assert_eq!(gpu.read_f32(&b).unwrap(), vec![0.0; 1000]);
    let reserved = gpu.reserved_bytes();
    eprintln!("allocated {} reserved {reserved:?}", gpu.allocated_bytes());
    if let Some(reserved) = reserved {
        assert!(reserved >= gpu.allocated_bytes(), "{reserved}");
    }
    drop(a);
    assert_eq!(gpu.allocated_bytes(), 4000);
    drop(b);
    assert_eq!(gpu.allocated_bytes(), 0);
}

#[test]
fn a_buffer_past_the_binding_limit_is_an_error() {
    let Some(gpu) = gpu_or_skip() else { return };
    let words = (gpu.max_binding_bytes() / 4 + 1) as usize;
    let error = gpu.zeros_f32("huge", words).unwrap_err();
    assert!(matches!(error, GpuError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("OLLAMA_DEVICE=cpu"), "{error}");
}

#[test]
fn values_round_trip() {
    let Some(gpu) = gpu_or_skip() else { return };
    let values: Vec<f32> = (0..1001).map(|i| i as f32 * 0.5 - 7.0).collect();
    let buffer = gpu.upload_f32("values", &values).unwrap();
    assert_eq!(gpu.read_f32(&buffer).unwrap(), values);
    gpu.write_f32(&buffer, &[42.0]).unwrap();
    assert_eq!(gpu.read_f32(&buffer).unwrap()[..2], [42.0, -6.5]);
    assert!(gpu.write_f32(&buffer, &vec![0.0; 1002]).is_err());
}
