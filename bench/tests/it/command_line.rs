//! `--help` and `-h` print every option and exit 0; a bad argument exits 2 with the
//! reason and a pointer to `--help`, without a backtrace.

use std::process::{Command, Output};

/// Each harness: its name, its binary, and every option its usage must name.
const HARNESSES: [(&str, &str, &[&str]); 7] = [
    (
        "kernels-bench",
        env!("CARGO_BIN_EXE_kernels-bench"),
        &[
            "--threads",
            "--types",
            "--quick",
            "--no-batched",
            "--cpu-time",
        ],
    ),
    (
        "model-bench",
        env!("CARGO_BIN_EXE_model-bench"),
        &[
            "--model",
            "--threads",
            "--prompt",
            "--gen",
            "--depth",
            "--reps",
            "--numerics",
            "--device",
            "--ctk",
            "--ctv",
            "--fa",
            "--llama-bench",
        ],
    ),
    (
        "serve-bench",
        env!("CARGO_BIN_EXE_serve-bench"),
        &[
            "--runner",
            "--llama-server",
            "--ollamad",
            "-n N",
            "--repeat",
            "--json",
        ],
    ),
    (
        "embed-bench",
        env!("CARGO_BIN_EXE_embed-bench"),
        &[
            "--dir",
            "--type",
            "--threads",
            "--sentences",
            "--reps",
            "--llama-embedding",
        ],
    ),
    (
        "format-bench",
        env!("CARGO_BIN_EXE_format-bench"),
        &["--model", "--threads", "--reps"],
    ),
    (
        "sample-bench",
        env!("CARGO_BIN_EXE_sample-bench"),
        &["--vocab", "--reps"],
    ),
    (
        "gpu-dispatch-bench",
        env!("CARGO_BIN_EXE_gpu-dispatch-bench"),
        &["DISPATCHES", "ROUNDS"],
    ),
];

fn run(binary: &str, arg: &str) -> Output {
    Command::new(binary)
        .arg(arg)
        // What makes `anyhow` print a backtrace when `main` returns an error.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"))
}

#[test]
fn help_prints_every_option_and_exits_0() {
    for (name, binary, options) in HARNESSES {
        for flag in ["--help", "-h"] {
            let out = run(binary, flag);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name} {flag}: {:?}", out.status);
            assert!(out.stderr.is_empty(), "{name} {flag} wrote to stderr");
            assert!(
                stdout.starts_with(&format!("{name}: ")),
                "{name} {flag}:\n{stdout}"
            );
            assert!(
                stdout.contains(&format!("usage: {name} ")),
                "{name} {flag}:\n{stdout}"
            );
            for option in options.iter().chain(&["-h, --help"]) {
                assert!(
                    stdout.contains(option),
                    "{name} {flag} misses {option}:\n{stdout}"
                );
            }
        }
    }
}

#[test]
fn a_bad_argument_exits_2_with_the_reason_only() {
    for (name, binary, _) in HARNESSES {
        let out = run(binary, "--no-such-option");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name} wrote to stdout");
        let reason = if name == "gpu-dispatch-bench" {
            r#"DISPATCHES must be a number, not "--no-such-option""#
        } else {
            r#"unknown argument "--no-such-option""#
        };
        assert!(stderr.contains(reason), "{name}: {stderr}");
        assert!(stderr.contains("run with --help"), "{name}: {stderr}");
        assert!(
            !stderr.contains("acktrace"),
            "{name} printed a backtrace: {stderr}"
        );
    }
}
