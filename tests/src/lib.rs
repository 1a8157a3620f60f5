//! Shared helpers for tests that run the real binaries on the real test models.
//!
//! The models are fetched by `scripts/fetch-models` into
//! `${OLLAMA_TEST_MODELS:-$HOME/.cache/ollamad/test-models}`. A test that needs one and
//! does not find it fails with a message naming the script: it is never silently skipped.
//! This crate must not hold product code; it only finds things for tests.

use std::path::{Path, PathBuf};

/// A real model used by tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestModel {
    /// SmolLM2 135M Instruct, Q4_1 (llama architecture, gpt2 BPE tokenizer).
    SmolLm2,
    /// Gemma 3 270M, Q4_K_M (gemma3 architecture, SPM tokenizer, sliding window).
    Gemma3,
}

impl TestModel {
    /// The file name inside the cache directory (as `scripts/fetch-models` writes it).
    pub fn file_name(self) -> &'static str {
        match self {
            TestModel::SmolLm2 => "SmolLM2-135M-Instruct.Q4_1.gguf",
            TestModel::Gemma3 => "gemma-3-270m-q4_k_m.gguf",
        }
    }

    /// The file's published SHA-256 (as `scripts/fetch-models` verifies it), in hex.
    pub fn sha256(self) -> &'static str {
        match self {
            TestModel::SmolLm2 => {
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
            }
            TestModel::Gemma3 => "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        }
    }

    /// The path of the model file, or a panic that tells the user how to fetch it.
    pub fn path(self) -> PathBuf {
        let path = models_dir().join(self.file_name());
        assert!(
            path.is_file(),
            "test model {} not found at {}: run scripts/fetch-models first \
             (it honours OLLAMA_TEST_MODELS)",
            self.file_name(),
            path.display()
        );
        path
    }
}

/// The test model cache: `$OLLAMA_TEST_MODELS`, else `$HOME/.cache/ollamad/test-models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OLLAMA_TEST_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/ollamad/test-models")
}

/// The synthetic model cache: `$OLLAMA_SYNTHETIC_MODELS`, else
/// `$HOME/.cache/ollamad/synthetic`.
pub fn synthetic_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OLLAMA_SYNTHETIC_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/ollamad/synthetic")
}

/// The path of the synthetic model `{arch}-synthetic-{ty}.gguf` (tiny random weights, see
/// `scripts/make-synthetic-models.py`), writing that architecture's files first when the
/// file is not there (`SYNTHETIC_ARCHS={arch}`, which also asks for the models the script
/// writes only on request, such as `nomic-bert`): the script is deterministic, so a
/// generated file is the one the references were taken on. Panics, naming the script,
/// when it cannot run.
pub fn synthetic_model(arch: &str, ty: &str) -> PathBuf {
    static GENERATED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = synthetic_dir();
    let path = dir.join(format!("{arch}-synthetic-{ty}.gguf"));
    let _guard = GENERATED.lock().unwrap_or_else(|e| e.into_inner());
    if !path.is_file() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-synthetic-models.py");
        let status = std::process::Command::new("python3")
            .arg(&script)
            .arg(&dir)
            .env("SYNTHETIC_ARCHS", arch)
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()) && path.is_file(),
            "synthetic model {} could not be written: run {} by hand (it needs the gguf \
             package of scripts/requirements.txt and the vocabulary of scripts/fetch-models' \
             SmolLM2, Gemma 3 or all-MiniLM-L6-v2)",
            path.display(),
            script.display()
        );
    }
    path
}

/// The directory cargo put the workspace's binaries in for the running test's profile
/// (`target/release` for `cargo test --release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf()
}

/// The path of a workspace binary built for this test run, or a panic naming the build
/// command that makes it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build it with `cargo build --release --workspace --bins`",
        path.display()
    );
    path
}

/// Waits up to `limit` for `cond` about real processes (a server answering, a child
/// exiting), looking again every `every`; returns whether it came true. Tests of code
/// that runs on tokio's clock pause that clock instead: this is only for what happens
/// outside the test's process.
pub fn poll_until(
    limit: std::time::Duration,
    every: std::time::Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(every);
    }
    cond()
}
