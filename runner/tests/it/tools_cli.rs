//! `ollama-runner dump-tensor` and `tokenize` on the real models, against independent
//! references: the `gguf` Python package's dequantization, and llama.cpp's tokens.

use std::path::Path;
use std::process::Command;

use e2e::TestModel;
use serde_json::Value;

fn runner(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args(args)
        .output()
        .expect("ollama-runner runs")
}

fn json_stdout(args: &[&str]) -> Value {
    let out = runner(args);
    assert!(
        out.status.success(),
        "ollama-runner {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// The first `limit` values of a tensor as the `gguf` Python package dequantizes them.
fn python_values(model: &Path, tensor: &str, limit: usize) -> Vec<f32> {
    let code = "import sys, json\n\
                from gguf import GGUFReader\n\
                from gguf.quants import dequantize\n\
                r = GGUFReader(sys.argv[1])\n\
                t = next(t for t in r.tensors if t.name == sys.argv[2])\n\
                v = dequantize(t.data, t.tensor_type).reshape(-1)[: int(sys.argv[3])]\n\
                print(json.dumps([float(x) for x in v]))";
    let out = Command::new("python3")
        .args(["-c", code])
        .arg(model)
        .args([tensor, &limit.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the gguf package failed (pip install -r scripts/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    values.into_iter().map(|v| v as f32).collect()
}

#[test]
fn dump_tensor_equals_the_python_reference_for_every_type_in_both_models() {
    let cases = [
        (TestModel::SmolLm2, "blk.0.attn_q.weight"),    // q4_1
        (TestModel::SmolLm2, "token_embd.weight"),      // q8_0
        (TestModel::SmolLm2, "blk.0.attn_norm.weight"), // f32
        (TestModel::Gemma3, "blk.0.attn_q.weight"),     // q5_0
        (TestModel::Gemma3, "blk.0.ffn_down.weight"),   // q6_K or q4_K
        (TestModel::Gemma3, "blk.1.ffn_gate.weight"),   // q4_K
        (TestModel::Gemma3, "token_embd.weight"),       // q6_K or q8_0
    ];
    for (model, tensor) in cases {
        let path = model.path();
        let ours: Vec<f32> = serde_json::from_value(json_stdout(&[
            "dump-tensor",
            "--model",
            path.to_str().unwrap(),
            "--name",
            tensor,
            "--limit",
            "300",
        ]))
        .unwrap();
        assert_eq!(ours.len(), 300, "{tensor}");
        assert_eq!(
            ours,
            python_values(&path, tensor, 300),
            "{tensor} in {}",
            model.file_name()
        );
    }
}

#[test]
fn dump_tensor_names_a_missing_tensor() {
    let path = TestModel::SmolLm2.path();
    let out = runner(&[
        "dump-tensor",
        "--model",
        path.to_str().unwrap(),
        "--name",
        "blk.99.x",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no tensor named \"blk.99.x\""), "{err}");
}

#[test]
fn tokenize_cli_gives_the_models_tokens() {
    let path = TestModel::Gemma3.path();
    let ids = json_stdout(&[
        "tokenize",
        "--model",
        path.to_str().unwrap(),
        "--text",
        "Hello world",
    ]);
    // BOS, then "Hello", " world" in Gemma 3's vocabulary
    assert_eq!(ids, serde_json::json!([2, 9259, 1902]));
}

#[test]
fn an_unknown_cache_type_is_refused_with_the_choices() {
    let model = TestModel::SmolLm2.path();
    let out = runner(&[
        "estimate",
        "--model",
        model.to_str().unwrap(),
        "--cache-type-v",
        "q3_k",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("'q3_k'") && stderr.contains("q8_0") && stderr.contains("iq4_nl"),
        "{stderr}"
    );
}

#[test]
fn generate_says_which_cache_it_runs_with() {
    let model = TestModel::SmolLm2.path();
    let out = runner(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "The capital of France is",
        "--num-predict",
        "4",
        "--threads",
        "2",
        "--cache-type-k",
        "q8_0",
        "--cache-type-v",
        "q4_0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("K/V cache: K q8_0, V q4_0, flash attention on"),
        "{stderr}"
    );
}

/// The first `limit` values of `tensor` in `model` through `dump-tensor`.
fn dumped(model: &Path, tensor: &str, limit: usize) -> Vec<f32> {
    let values = json_stdout(&[
        "dump-tensor",
        "--model",
        model.to_str().unwrap(),
        "--name",
        tensor,
        "--limit",
        &limit.to_string(),
    ]);
    serde_json::from_value(values).unwrap()
}

#[test]
fn dequantize_copies_every_value_and_a_nudge_moves_only_the_last_bits_of_matrices() {
    let model = TestModel::SmolLm2.path();
    let dir = tempfile::tempdir().unwrap();
    let exact = dir.path().join("exact.gguf");
    let nudged = dir.path().join("nudged.gguf");
    for (out, nudge) in [(&exact, "0"), (&nudged, "1")] {
        let done = runner(&[
            "dequantize",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--nudge",
            nudge,
        ]);
        assert!(
            done.status.success(),
            "dequantize failed: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let info = json_stdout(&["inspect", "--model", exact.to_str().unwrap(), "--json"]);
    assert_eq!(info["file_type"], "F32", "{info}");

    // q4_1, q8_0 and f32 tensors: the copy holds exactly the values the engine reads.
    for tensor in [
        "blk.0.attn_q.weight",
        "token_embd.weight",
        "blk.0.attn_norm.weight",
    ] {
        let original = dumped(&model, tensor, 512);
        assert_eq!(dumped(&exact, tensor, 512), original, "{tensor}");
        let moved = dumped(&nudged, tensor, 512);
        if tensor.ends_with("norm.weight") {
            assert_eq!(moved, original, "{tensor}: vectors are not nudged");
            continue;
        }
        let mut changed = 0;
        for (m, o) in moved.iter().zip(&original) {
            assert!(
                (m - o).abs() <= o.abs() * 2.0 * f32::EPSILON,
                "{tensor}: {o} became {m}"
            );
            changed += usize::from(m != o);
        }
        assert!(changed > 0, "{tensor}: a nudge of 1 changed nothing");
    }
}

#[test]
fn dequantize_refuses_to_overwrite_its_input() {
    let model = TestModel::SmolLm2.path();
    let path = model.to_str().unwrap();
    let out = runner(&["dequantize", "--model", path, "--out", path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--out must name a new file"), "{stderr}");
}
