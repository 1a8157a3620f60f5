//! The memory estimate against what the runner allocates and what the process takes,
//! through `ollama-runner estimate` and `ollama-runner bench` on the real models (the
//! whole estimate against a serving runner's counted heap is in `memory`).

use e2e::TestModel;
use serde_json::Value;

fn runner(args: &[&str]) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?} failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn estimate_kv(model: TestModel, k: &str, v: &str) -> f64 {
    let path = model.path();
    let e = runner(&[
        "estimate",
        "--model",
        path.to_str().unwrap(),
        "--num-ctx",
        "32768",
        "--cache-type-k",
        k,
        "--cache-type-v",
        v,
        "--json",
    ]);
    for key in ["weights_bytes", "kv_bytes", "compute_bytes", "total_bytes"] {
        assert!(e[key].as_u64().is_some_and(|b| b > 0), "{key} in {e}");
    }
    e["kv_bytes"].as_f64().unwrap()
}

#[test]
fn quantized_caches_take_their_share_of_f16_at_32768_positions() {
    for model in [TestModel::SmolLm2, TestModel::Gemma3] {
        let f16 = estimate_kv(model, "f16", "f16");
        let q8 = estimate_kv(model, "q8_0", "q8_0") / f16;
        let q8_q4 = estimate_kv(model, "q8_0", "q4_0") / f16;
        assert!((q8 - 0.53).abs() <= 0.01, "{model:?}: q8_0/q8_0 is {q8}");
        assert!(
            (q8_q4 - 0.41).abs() <= 0.01,
            "{model:?}: q8_0/q4_0 is {q8_q4}"
        );
    }
}

/// Runs a short benchmark with `flags` and checks the estimate against the allocation
/// (5%) and the growth of resident memory (10%).
fn check_memory(model: TestModel, flags: &[&str]) {
    let path = model.path();
    let mut args = vec![
        "bench",
        "--model",
        path.to_str().unwrap(),
        "-p",
        "32",
        "-n",
        "4",
        "-r",
        "1",
        "-t",
        "2",
        "--json",
    ];
    args.extend_from_slice(flags);
    let out = runner(&args);
    let m = &out["memory"];
    let e = &m["estimate"];
    let get = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {out}"));
    let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b;
    let ctx = format!("{model:?} {flags:?}: {out}");
    // `bench` loads the model and its cache alone (no tokenizer, no server): the part of
    // the estimate it holds is the weights, the cache and the compute buffers.
    let part = get(e, "weights_bytes") + get(e, "kv_bytes") + get(e, "compute_bytes");
    assert!(
        close(get(e, "kv_bytes"), get(m, "kv_allocated_bytes"), 0.05),
        "{ctx}"
    );
    assert!(
        close(
            get(e, "compute_bytes"),
            get(m, "compute_allocated_bytes"),
            0.05
        ),
        "{ctx}"
    );
    assert!(close(part, get(m, "allocated_bytes"), 0.05), "{ctx}");
    assert!(close(part, get(m, "rss_growth_bytes"), 0.10), "{ctx}");
}

#[test]
fn the_estimate_is_what_smollm2_allocates_and_takes() {
    let m = TestModel::SmolLm2;
    check_memory(m, &["--num-ctx", "16384"]);
    // Four sequences generating at once: a server's four busy slots.
    check_memory(m, &["--num-ctx", "2048", "--parallel", "4"]);
    check_memory(
        m,
        &[
            "--num-ctx",
            "32768",
            "--cache-type-k",
            "q8_0",
            "--cache-type-v",
            "q4_0",
        ],
    );
    check_memory(
        m,
        &[
            "--num-ctx",
            "4096",
            "--cache-type-k",
            "f32",
            "--cache-type-v",
            "f32",
            "--flash-attention",
            "off",
        ],
    );
}

#[test]
fn the_estimate_is_what_gemma3_allocates_and_takes() {
    let m = TestModel::Gemma3;
    check_memory(m, &["--num-ctx", "16384"]);
    check_memory(
        m,
        &[
            "--num-ctx",
            "32768",
            "--cache-type-k",
            "q4_0",
            "--cache-type-v",
            "q4_0",
            "--num-batch",
            "256",
        ],
    );
}
