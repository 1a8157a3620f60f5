//! The GPU pass's products on 8-bit activations (`OLLAMA_GPU_INT_DOT=1`) through a real
//! `ollama-runner serve` on the GPU (lavapipe in CI): the answer a user reads is the
//! CPU's, and a value the variable does not take fails the load with its name.
//!
//! Without any Vulkan adapter the tests say `skipped` on stderr and pass, unless
//! `OLLAMA_GPU_TESTS=require`. The products' accuracy is `int_dot` in the gpu crate's
//! tests and the KL divergence in docs/PERFORMANCE.md.

use e2e::TestModel;
use ollama_proto::runner as pb;

use crate::served::{Served, generate, greedy, load_request};

/// SmolLM2's greedy answer on `device` with `env` in the runner's environment.
async fn answer(device: &str, env: &[(&str, &str)]) -> String {
    let mut served = Served::start_with_env(env).await;
    let load = pb::LoadRequest {
        num_ctx: Some(512),
        device: device.into(),
        ..Default::default()
    };
    served
        .client
        .load(load_request(TestModel::SmolLm2, load))
        .await
        .expect("load");
    let prompt = "The capital of France is";
    generate(&mut served.client, greedy(prompt, 8))
        .await
        .unwrap()
        .text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_int_dot_path_answers_as_the_cpu_does() {
    if gpu::testing::gpu_or_skip().is_none() {
        return;
    }
    let on_gpu = answer("gpu", &[("OLLAMA_GPU_INT_DOT", "1")]).await;
    let on_cpu = answer("cpu", &[("OLLAMA_NUMERICS", "exact")]).await;
    println!("int dot on the GPU: {on_gpu:?}; exact on the CPU: {on_cpu:?}");
    // Greedy text parts where two continuations are near ties (here after the first
    // sentence); the answer itself is the same.
    let first_line = |s: &str| s.lines().next().unwrap_or_default().to_owned();
    assert!(on_gpu.contains("Paris"), "{on_gpu:?}");
    assert_eq!(first_line(&on_gpu), first_line(&on_cpu));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_int_dot_setting_fails_the_load_and_names_it() {
    if gpu::testing::gpu_or_skip().is_none() {
        return;
    }
    let mut served = Served::start_with_env(&[("OLLAMA_GPU_INT_DOT", "maybe")]).await;
    let load = pb::LoadRequest {
        num_ctx: Some(512),
        device: "gpu".into(),
        ..Default::default()
    };
    let error = served
        .client
        .load(load_request(TestModel::SmolLm2, load))
        .await
        .unwrap_err();
    assert!(
        error.message().contains("OLLAMA_GPU_INT_DOT"),
        "{}",
        error.message()
    );
}
