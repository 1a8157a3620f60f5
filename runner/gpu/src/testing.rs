//! The one way GPU tests get a device, here and in the runner: tests must run (or say
//! loudly that they did not) on machines with and without a Vulkan adapter.

use std::io::Write;
use std::sync::OnceLock;

use crate::device::{DeviceSpec, Gpu};
use crate::error::GpuError;

/// The environment variable that turns a missing adapter from a skip into a failure;
/// CI sets it to `require` so a broken lavapipe install cannot pass silently.
pub const REQUIRE_VAR: &str = "OLLAMA_GPU_TESTS";

/// A device shared by the tests of one binary (`OLLAMA_DEVICE=gpu`'s choice), or `None`
/// after printing `skipped: no GPU adapter ...` to stderr (past the harness's capture)
/// when there is none.
///
/// # Panics
/// When no adapter exists and `OLLAMA_GPU_TESTS=require`, or when an adapter exists but
/// cannot be opened.
pub fn gpu_or_skip() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    let gpu = GPU
        .get_or_init(|| match Gpu::open(DeviceSpec::Gpu) {
            Ok(gpu) => gpu,
            Err(GpuError::NoAdapter { .. }) => None,
            Err(error) => panic!("a GPU adapter exists but does not open: {error}"),
        })
        .as_ref();
    if gpu.is_none() {
        if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "require") {
            panic!("no GPU adapter, and {REQUIRE_VAR}=require: install mesa-vulkan-drivers");
        }
        // Straight to the stream, not `eprintln!`, which the test harness captures and
        // hides for passing tests: a skip must show in the log.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: no GPU adapter (install mesa-vulkan-drivers for lavapipe)"
        );
    }
    gpu
}

/// The bytes and the (scale, scale × sum) pairs of quantized activations, for tests of
/// the quantizer.
pub fn read_q8(gpu: &Gpu, x: &crate::int_dot::Q8Activations) -> (Vec<i8>, Vec<[f32; 2]>) {
    let bytes = gpu.read_bytes(&x.q).expect("read the bytes");
    let scales = gpu.read_f32(&x.s).expect("read the scales");
    let runs = x.capacity() / 32;
    (
        bytes[..runs * 32].iter().map(|&b| b as i8).collect(),
        scales[..runs * 2]
            .chunks_exact(2)
            .map(|p| [p[0], p[1]])
            .collect(),
    )
}
