//! The memory estimate against what a real `ollama-runner serve` holds, for both test
//! models at 2048 and 32768 positions with f16, q8_0 and q4_0 caches (K and V alike, one
//! sequence, batches of 512, 2 threads): the twelve configurations.
//!
//! The runner counts what it holds (`allocated_bytes`: its live heap, counted by its
//! global allocator, plus the mapped model file) and reports the estimate it budgets with
//! (`total_bytes`). The estimate's counted part (`Estimate::allocated_bytes`) must be
//! within 5% of the count after the load and after a short generation (less the grammar
//! tables, not built yet), and after a structured-output request (all of it); the whole
//! estimate, the process's code and stacks included, must be within 5% of the resident
//! set. `--nocapture` prints the table of docs/MEMORY.md.

use e2e::TestModel;
use gguf::GgufFile;
use ollama_proto::runner as pb;
use runner::estimate::{Estimate, estimate, mib};

use crate::served::{Served, generate, greedy, load_request_for};

/// The bound on |estimate - measured| / measured.
pub(crate) const TOLERANCE: f64 = 0.05;

/// One configuration's figures.
pub(crate) struct Row {
    pub(crate) what: String,
    pub(crate) estimate: Estimate,
    /// After the load.
    pub(crate) loaded: pb::Memory,
    /// After a plain generation.
    pub(crate) generated: pb::Memory,
    /// After a structured-output request (the grammar tables built).
    pub(crate) structured: pb::Memory,
}

impl Row {
    /// Each comparison: what, the estimate, the measure.
    fn comparisons(&self) -> [(&'static str, usize, u64); 4] {
        let e = &self.estimate;
        let before_grammar = e.allocated_bytes - e.grammar_bytes;
        [
            (
                "counted after the load",
                before_grammar,
                self.loaded.allocated_bytes,
            ),
            (
                "counted after a generation",
                before_grammar,
                self.generated.allocated_bytes,
            ),
            (
                "counted after a JSON request",
                e.allocated_bytes,
                self.structured.allocated_bytes,
            ),
            (
                "resident after a JSON request",
                e.total_bytes,
                self.structured.rss_bytes,
            ),
        ]
    }

    /// Why the figures are out of bounds, if they are.
    fn failures(&self) -> Vec<String> {
        let mut failures: Vec<String> = self
            .comparisons()
            .into_iter()
            .filter(|&(_, estimate, measured)| {
                measured == 0 || (ratio(estimate, measured) - 1.0).abs() > TOLERANCE
            })
            .map(|(when, estimate, measured)| {
                format!(
                    "{}: {when}: estimate {estimate} is {:.3} of {measured}",
                    self.what,
                    ratio(estimate, measured)
                )
            })
            .collect();
        if self.structured.total_bytes != self.estimate.total_bytes as u64 {
            failures.push(format!(
                "{}: the runner budgets {} where the estimate is {}",
                self.what, self.structured.total_bytes, self.estimate.total_bytes
            ));
        }
        failures
    }

    fn markdown(&self) -> String {
        let e = &self.estimate;
        let c = self.comparisons();
        format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} | {:.3} |",
            self.what,
            mib(c[1].1),
            mib(c[1].2 as usize),
            mib(self.generated.rss_bytes as usize),
            ratio(c[1].1, c[1].2),
            mib(e.allocated_bytes),
            mib(c[2].2 as usize),
            ratio(c[2].1, c[2].2),
            mib(e.total_bytes),
            mib(c[3].2 as usize),
            ratio(c[3].1, c[3].2),
        )
    }
}

pub(crate) fn ratio(estimate: usize, measured: u64) -> f64 {
    estimate as f64 / measured as f64
}

/// Loads `model` on `device` at `num_ctx` positions with `cache` for keys and values,
/// generates a few tokens, then a few under a JSON schema, and reads what the runner
/// holds after each step.
pub(crate) async fn measure(model: TestModel, num_ctx: u32, cache: &str, device: &str) -> Row {
    measure_file(&model.path(), model.file_name(), (num_ctx, cache), device).await
}

/// [`measure`] for the model file at `path`, named `name` in the figures.
pub(crate) async fn measure_file(
    path: &std::path::Path,
    name: &str,
    (num_ctx, cache): (u32, &str),
    device: &str,
) -> Row {
    let load = pb::LoadRequest {
        num_ctx: Some(num_ctx),
        cache_type_k: cache.into(),
        cache_type_v: cache.into(),
        device: device.into(),
        ..Default::default()
    };
    let config =
        runner::service::load::from_request(&load_request_for(path, load.clone())).unwrap();
    let file = GgufFile::open(path).unwrap();
    let estimate = estimate(&file, &config.kv, config.threads, device != "cpu").unwrap();

    let mut served = Served::with_path(path, load).await;
    let loaded = served.status().await.memory.unwrap();
    let plain = generate(&mut served.client, greedy("The capital of France is", 8))
        .await
        .unwrap();
    assert!(!plain.text.is_empty());
    let generated = served.status().await.memory.unwrap();
    let request = pb::GenerateRequest {
        json_schema: Some(r#"{"type":"object"}"#.into()),
        ..greedy("Answer in JSON:", 8)
    };
    generate(&mut served.client, request).await.unwrap();
    let structured = served.status().await.memory.unwrap();
    Row {
        what: format!("{name} | {num_ctx} | {cache}"),
        estimate,
        loaded,
        generated,
        structured,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_is_within_5_percent_of_what_the_runner_holds() {
    let mut rows = Vec::new();
    for model in [TestModel::SmolLm2, TestModel::Gemma3] {
        for num_ctx in [2048, 32768] {
            for cache in ["f16", "q8_0", "q4_0"] {
                // The CPU runner's memory: looking for a GPU would load the Vulkan
                // drivers present (lavapipe maps LLVM), which no estimate holds.
                rows.push(measure(model, num_ctx, cache, "cpu").await);
            }
        }
    }
    println!(
        "| model | num_ctx | K/V | estimate (no grammar) | allocated after generation | \
         RSS after generation | ratio | estimate (counted) | allocated after JSON | ratio | \
         estimate (total) | RSS after JSON | ratio |"
    );
    println!(
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in &rows {
        println!("{}", row.markdown());
    }
    // What the computed terms leave: the runtime's own heap, for RUNTIME_HEAP_BYTES; and
    // the resident set outside the count, for the process terms.
    for row in &rows {
        let e = &row.estimate;
        let computed = e.allocated_bytes - e.runtime_bytes - e.sampler_bytes;
        let left = |m: &pb::Memory, grammar: usize| {
            m.allocated_bytes as i64 - (computed - e.grammar_bytes + grammar) as i64
        };
        println!(
            "{}: heap beyond the computed terms after the load {}, a generation {}, a JSON \
             request {}; resident beyond the count {} then {}; process term {}",
            row.what,
            left(&row.loaded, 0),
            left(&row.generated, 0),
            left(&row.structured, e.grammar_bytes),
            row.generated.rss_bytes as i64 - row.generated.allocated_bytes as i64,
            row.structured.rss_bytes as i64 - row.structured.allocated_bytes as i64,
            e.process_bytes
        );
    }
    let failures: Vec<String> = rows.iter().flat_map(Row::failures).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
