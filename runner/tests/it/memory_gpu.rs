//! The memory estimate of a GPU load against what a real `ollama-runner serve` on the
//! GPU holds (lavapipe in CI, through `OLLAMA_GPU_TESTS=require`): the device memory it
//! reports between requests (`device_bytes`: the larger of its live buffers and wgpu's
//! reserved blocks) against the estimate's `device_bytes` less its transient buffers
//! (the head's logits, the cell tables, freed after each pass), and its counted host
//! memory (heap plus mapped file) against the estimate's host terms, within the 5% of
//! `memory`. `--nocapture` prints the figures.
//!
//! Without any Vulkan adapter the test says `skipped` on stderr and passes, unless
//! `OLLAMA_GPU_TESTS=require`.

use e2e::TestModel;
use runner::estimate::mib;

use crate::memory::{Row, TOLERANCE, measure, measure_file, ratio};

/// Loads `model` on the GPU at `num_ctx` positions with `cache` for keys and values,
/// generates a few tokens, then a few under a JSON schema; returns the failures.
async fn check(model: TestModel, num_ctx: u32, cache: &str) -> Vec<String> {
    compare(measure(model, num_ctx, cache, "gpu").await, 0)
}

/// The failures of one measured GPU load: each figure within 5% of the estimate, or,
/// for device memory, within `slack` bytes of it.
fn compare(row: Row, slack: u64) -> Vec<String> {
    let Row {
        what,
        estimate: e,
        loaded,
        generated,
        structured,
    } = row;
    let before_grammar = e.allocated_bytes - e.grammar_bytes;
    let held = e.device_bytes - e.device_transient_bytes;
    let comparisons = [
        ("device after the load", held, loaded.device_bytes),
        ("device after a generation", held, generated.device_bytes),
        ("device after a JSON request", held, structured.device_bytes),
        (
            "counted after the load",
            before_grammar,
            loaded.allocated_bytes,
        ),
        (
            "counted after a generation",
            before_grammar,
            generated.allocated_bytes,
        ),
        (
            "counted after a JSON request",
            e.allocated_bytes,
            structured.allocated_bytes,
        ),
    ];
    println!(
        "{what}: device estimate {:.2} MiB (weights {:.2}, K/V {:.2}, compute {:.2} of \
         which transient {:.2}, allocator {:.2}); host estimate counted {:.2} MiB, \
         total {:.2} MiB",
        mib(e.device_bytes),
        mib(e.device_weights_bytes),
        mib(e.device_kv_bytes),
        mib(e.device_compute_bytes),
        mib(e.device_transient_bytes),
        mib(e.device_allocator_bytes),
        mib(e.allocated_bytes),
        mib(e.total_bytes),
    );
    for (when, estimate, measured) in comparisons {
        println!(
            "{what}: {when}: estimate {:.2} MiB, measured {:.2} MiB, ratio {:.3}",
            mib(estimate),
            mib(measured as usize),
            ratio(estimate, measured)
        );
    }
    // Lavapipe's device memory is the process's own, so the resident set holds it, and
    // the driver's code (LLVM) besides: printed, not compared.
    for (when, m) in [
        ("load", &loaded),
        ("generation", &generated),
        ("JSON", &structured),
    ] {
        println!(
            "{what}: after the {when}: RSS {:.1} MiB, counted {:.1} MiB, device {:.1} MiB, \
             RSS beyond both {:.1} MiB (process term {:.1} MiB)",
            mib(m.rss_bytes as usize),
            mib(m.allocated_bytes as usize),
            mib(m.device_bytes as usize),
            (m.rss_bytes as f64 - m.allocated_bytes as f64 - m.device_bytes as f64)
                / (1024.0 * 1024.0),
            mib(e.process_bytes),
        );
    }
    let mut failures: Vec<String> = comparisons
        .into_iter()
        .filter(|&(when, estimate, measured)| {
            let within_slack =
                when.starts_with("device") && (estimate as u64).abs_diff(measured) <= slack;
            measured == 0 || ((ratio(estimate, measured) - 1.0).abs() > TOLERANCE && !within_slack)
        })
        .map(|(when, estimate, measured)| {
            format!(
                "{what}: {when}: estimate {estimate} is {:.3} of {measured}",
                ratio(estimate, measured)
            )
        })
        .collect();
    if structured.total_bytes != e.total_bytes as u64 {
        failures.push(format!(
            "{what}: the runner budgets {} where the estimate is {}",
            structured.total_bytes, e.total_bytes
        ));
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_loads_estimate_is_within_5_percent_of_what_the_runner_holds() {
    if gpu::testing::gpu_or_skip().is_none() {
        return;
    }
    let mut failures = Vec::new();
    for model in [TestModel::SmolLm2, TestModel::Gemma3] {
        for (num_ctx, cache) in [(2048, "f16"), (8192, "q8_0")] {
            failures.extend(check(model, num_ctx, cache).await);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A mixture of experts on the GPU: the router's logits, the gathered rows and every
/// chosen expert's outputs are device buffers the estimate must count too. The synthetic
/// model holds ~60 MiB on the device, so one of wgpu's 4 MiB allocator blocks is 6.5% of
/// it: where the allocator places a buffer in another block than the estimate's
/// first-fit packing does (seen once the 8-bit activation buffers came), device memory is
/// held to one block, which is under 0.1% of a real mixture's gigabytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_mixture_of_experts_estimate_is_within_one_allocator_block() {
    if gpu::testing::gpu_or_skip().is_none() {
        return;
    }
    let path = e2e::synthetic_model("qwen3moe", "Q8_0");
    let row = measure_file(&path, "qwen3moe-synthetic-Q8_0", (4096, "f16"), "gpu").await;
    let failures = compare(row, plan::device::ALLOCATOR_BLOCK_BYTES as u64);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
