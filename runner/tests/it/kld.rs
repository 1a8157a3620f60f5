//! `ollama-runner perplexity --kl-divergence-base`: a run compared with itself diverges by
//! nothing and agrees on every top token; a lossier K/V cache diverges measurably and
//! the report says by how much, as llama.cpp's `llama-perplexity` reports a quantization.

use std::process::Command;

use e2e::TestModel;

use crate::support::figure;

const TEXT: &str = "/usr/share/common-licenses/GPL-3";

fn perplexity(base: &std::path::Path, compare: bool, kv: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ollama-runner"));
    command
        .args([
            "perplexity",
            "--file",
            TEXT,
            "--num-ctx",
            "256",
            "--chunks",
            "2",
        ])
        .arg("--model")
        .arg(TestModel::SmolLm2.path())
        .args(["--cache-type-k", kv, "--cache-type-v", kv, "--threads", "2"])
        .arg("--kl-divergence-base")
        .arg(base);
    if compare {
        command.arg("--kl-divergence");
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn kl_divergence_of_a_run_against_itself_and_against_a_q4_0_cache() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.kld");
    let first = perplexity(&base, false, "f16");
    assert!(first.starts_with("PPL = "), "{first}");
    let same = perplexity(&base, true, "f16");
    assert!(figure(&same, "Mean KLD:") < 1e-6, "{same}");
    assert_eq!(figure(&same, "Same top token:"), 100.0, "{same}");
    assert_eq!(figure(&same, "KLD positions:"), 2.0 * 127.0, "{same}");
    assert!((figure(&same, "PPL ratio:") - 1.0).abs() < 1e-6, "{same}");
    let q4 = perplexity(&base, true, "q4_0");
    let kld = figure(&q4, "Mean KLD:");
    assert!(kld > 1e-3 && kld < 1.0, "{q4}");
    assert!(figure(&q4, "99th percentile KLD:") >= kld, "{q4}");
    assert!(figure(&q4, "Same top token:") < 100.0, "{q4}");
}

#[test]
fn comparing_without_a_base_or_with_another_evaluation_is_an_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args(["perplexity", "--file", TEXT, "--kl-divergence"])
        .arg("--model")
        .arg(TestModel::SmolLm2.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.kld");
    std::fs::write(
        &base,
        b"OLKLD\0\0\x01 but not the right evaluation at all....",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args([
            "perplexity",
            "--file",
            TEXT,
            "--num-ctx",
            "256",
            "--chunks",
            "1",
        ])
        .arg("--model")
        .arg(TestModel::SmolLm2.path())
        .arg("--kl-divergence-base")
        .arg(&base)
        .arg("--kl-divergence")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another evaluation"), "{stderr}");
}
