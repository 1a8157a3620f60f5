//! `ollama-runner perplexity` against llama.cpp's `llama-perplexity` on the GPL-3 text
//! with a context of 512 (references from `scripts/make-perplexity-refs.sh`).
//!
//! Two llama.cpp figures are stored per model. Its default run (F16 K/V cache, flash
//! attention, its fastest kernels) rounds differently from ours, and our figure must be
//! within 0.5% of it. Its run on its reference kernels (F32 K/V cache, no flash attention,
//! no repacked or tiled products) does the arithmetic our kernels reproduce bit for bit
//! (see `generate_refs.rs`), and our figure must equal it as printed: a wrong window cut,
//! a missing BOS or scoring the wrong positions could not do that. The window count must
//! equal llama.cpp's chunk count, which checks the text tokenized to the same length.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use e2e::TestModel;

/// Largest relative difference from llama.cpp's perplexity.
const TOLERANCE: f64 = 0.005;

#[derive(serde::Deserialize)]
struct Refs {
    text: String,
    text_bytes: u64,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    model: String,
    n_ctx: usize,
    chunks: usize,
    ppl: f64,
    plus_minus: f64,
    command: String,
    reference_ppl: f64,
    reference_plus_minus: f64,
    reference_command: String,
}

fn refs() -> Refs {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/perplexity-refs.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs `ollama-runner perplexity` on the reference text and checks its figure.
fn matches_llama_cpp(model: TestModel) {
    let refs = refs();
    let case = refs
        .cases
        .iter()
        .find(|c| c.model == model.file_name())
        .unwrap_or_else(|| panic!("no perplexity reference for {}", model.file_name()));
    let size = std::fs::metadata(&refs.text)
        .unwrap_or_else(|e| panic!("{}: {e}", refs.text))
        .len();
    assert_eq!(
        size, refs.text_bytes,
        "{} is not the text the references were made from: rerun \
         scripts/make-perplexity-refs.sh",
        refs.text
    );

    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("perplexity")
        .arg("--model")
        .arg(model.path())
        .args(["--file", &refs.text])
        .args(["--num-ctx", &case.n_ctx.to_string(), "--threads", "2"])
        .args(crate::support::REFERENCE_FLAGS)
        .output()
        .expect("ollama-runner runs");
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "perplexity failed: {stderr}");

    let last = stdout.lines().last().unwrap_or_default();
    let (ppl, plus_minus) = parse_ppl_line(last)
        .unwrap_or_else(|| panic!("last line of stdout is not 'PPL = X +/- Y': {stdout:?}"));
    let windows = format!("{} windows of {}", case.chunks, case.n_ctx);
    assert!(
        stderr.contains(&windows),
        "llama.cpp evaluated {windows}; our run said: {stderr}"
    );
    let relative = (ppl - case.ppl) / case.ppl;
    println!(
        "{}: ours PPL = {ppl} +/- {plus_minus} ({:.1} s), llama.cpp PPL = {} +/- {} \
         ({}), difference {:+.3}%",
        case.model,
        elapsed.as_secs_f64(),
        case.ppl,
        case.plus_minus,
        case.command,
        100.0 * relative
    );
    assert!(
        relative.abs() <= TOLERANCE,
        "{}: PPL {ppl} is {:+.3}% from llama.cpp's {} (allowed {}%)",
        case.model,
        100.0 * relative,
        case.ppl,
        100.0 * TOLERANCE
    );
    // Printed with four and five decimals, as llama.cpp prints them.
    assert_eq!(
        (format!("{ppl:.4}"), format!("{plus_minus:.5}")),
        (
            format!("{:.4}", case.reference_ppl),
            format!("{:.5}", case.reference_plus_minus)
        ),
        "{}: our figure is not llama.cpp's on its reference kernels ({})",
        case.model,
        case.reference_command
    );
    // Same tokens scored and nearly the same spread: the uncertainty follows the PPL.
    let relative_pm = (plus_minus - case.plus_minus) / case.plus_minus;
    assert!(
        relative_pm.abs() <= 10.0 * TOLERANCE,
        "{}: uncertainty {plus_minus} is {:+.2}% from llama.cpp's {}",
        case.model,
        100.0 * relative_pm,
        case.plus_minus
    );
}

/// `PPL = X +/- Y` as `(X, Y)`.
pub(crate) fn parse_ppl_line(line: &str) -> Option<(f64, f64)> {
    let rest = line.strip_prefix("PPL = ")?;
    let (ppl, plus_minus) = rest.split_once(" +/- ")?;
    Some((ppl.parse().ok()?, plus_minus.trim().parse().ok()?))
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    matches_llama_cpp(TestModel::SmolLm2);
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    matches_llama_cpp(TestModel::Gemma3);
}

#[test]
fn a_text_shorter_than_two_windows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("short.txt");
    std::fs::write(&text, "Only a few words, far fewer than two windows.").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("perplexity")
        .arg("--model")
        .arg(TestModel::SmolLm2.path())
        .arg("--file")
        .arg(&text)
        .args(["--num-ctx", "512", "--threads", "1"])
        .output()
        .expect("ollama-runner runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("at least 1024") && stderr.contains("short.txt"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Our perplexity of the reference text for `model` with `flags` added.
fn our_ppl(model: TestModel, flags: &[&str]) -> f64 {
    let refs = refs();
    let output = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("perplexity")
        .arg("--model")
        .arg(model.path())
        .args(["--file", &refs.text, "--num-ctx", "512", "--threads", "2"])
        .args(flags)
        .output()
        .expect("ollama-runner runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "perplexity failed: {stderr}");
    let (ppl, _) = parse_ppl_line(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|| panic!("no PPL line: {stdout:?}"));
    ppl
}

/// The reference-path figure (which `matches_llama_cpp` shows we equal).
fn reference_ppl(model: TestModel) -> f64 {
    refs()
        .cases
        .iter()
        .find(|c| c.model == model.file_name())
        .map(|c| c.reference_ppl)
        .unwrap()
}

/// The default cache (f16 keys and values, flash attention) costs Gemma 3 less than 0.1%.
/// The kernels run in exact numerics, so that the figure is the cache's alone (fast
/// numerics move it by about as much again; `fast_numerics.rs` judges those).
#[test]
fn gemma3_default_cache_stays_within_a_tenth_of_a_percent() {
    let (ours, reference) = (
        our_ppl(TestModel::Gemma3, &["--numerics", "exact"]),
        reference_ppl(TestModel::Gemma3),
    );
    let relative = (ours - reference) / reference;
    println!(
        "gemma3 f16/f16 flash: {ours} vs {reference} ({:+.3}%)",
        100.0 * relative
    );
    assert!(relative.abs() <= 0.001, "{ours} vs {reference}");
}

/// 8-bit keys and values cost SmolLM2 less than 0.5%.
#[test]
fn smollm2_q8_0_cache_costs_less_than_half_a_percent() {
    let flags = [
        "--numerics",
        "exact",
        "--cache-type-k",
        "q8_0",
        "--cache-type-v",
        "q8_0",
    ];
    let (ours, reference) = (
        our_ppl(TestModel::SmolLm2, &flags),
        reference_ppl(TestModel::SmolLm2),
    );
    let relative = (ours - reference) / reference;
    println!(
        "smollm2 q8_0/q8_0 flash: {ours} vs {reference} ({:+.3}%)",
        100.0 * relative
    );
    assert!(relative <= 0.005, "{ours} vs {reference}");
}
