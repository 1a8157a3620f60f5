//! The `gpu` crate's kernels against their CPU twins in `kernels`, on whatever Vulkan
//! adapter exists (lavapipe in CI). Without one each test prints a skip line, or fails
//! when `OLLAMA_GPU_TESTS=require`.

mod attention;
mod device;
mod elementwise;
mod experts;
mod int_dot;
mod matmul;
mod ops;
mod support;
