//! The GGUF reader on the real models, checked against the `gguf` Python package.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use e2e::TestModel;
use gguf::GgufFile;
use serde_json::Value;

/// Runs `scripts/check-gguf.py FILE`; fails when Python or the `gguf` package is missing.
fn python_view(path: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-gguf.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): pip install -r scripts/requirements.txt")
        });
    assert!(
        output.status.success(),
        "scripts/check-gguf.py failed (pip install -r scripts/requirements.txt):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Our tensor table, metadata keys and types equal the Python reader's.
fn assert_matches_python(model: TestModel) {
    let path = model.path();
    let start = Instant::now();
    let file = GgufFile::open(&path).unwrap();
    // Reported, not asserted: timing depends on the machine and its load.
    eprintln!(
        "opened {} ({} bytes, {} tensors, {} keys) in {:?}",
        model.file_name(),
        file.len(),
        file.tensors().len(),
        file.metadata().len(),
        start.elapsed()
    );
    let theirs = python_view(&path);
    assert_eq!(theirs["data_offset"], file.data_offset());
    let their_keys: Vec<(&str, u64)> = theirs["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["key"].as_str().unwrap(), f["type"].as_u64().unwrap()))
        .collect();
    let our_keys: Vec<(&str, u64)> = file
        .metadata()
        .iter()
        .map(|(k, v)| (k, u64::from(v.value_type().id())))
        .collect();
    assert_eq!(our_keys, their_keys);

    let their_tensors = theirs["tensors"].as_array().unwrap();
    assert_eq!(file.tensors().len(), their_tensors.len());
    for (ours, theirs) in file.tensors().iter().zip(their_tensors) {
        let name = ours.name();
        assert_eq!(theirs["name"], name);
        assert_eq!(theirs["type_id"], ours.ggml_type().id(), "{name}");
        assert_eq!(theirs["shape"], serde_json::json!(ours.dims()), "{name}");
        assert_eq!(theirs["n_bytes"], ours.byte_len(), "{name}");
        assert_eq!(theirs["offset"], ours.absolute_offset(), "{name}");
        assert_eq!(
            file.tensor_data(ours).unwrap().len() as u64,
            ours.byte_len()
        );
    }
}

#[test]
fn smollm2_reads_as_python_reads_it() {
    assert_matches_python(TestModel::SmolLm2);
}

#[test]
fn gemma3_reads_as_python_reads_it() {
    assert_matches_python(TestModel::Gemma3);
}

#[test]
fn tokenizer_metadata_of_the_real_models() {
    let smol = GgufFile::open(TestModel::SmolLm2.path()).unwrap();
    let m = smol.metadata();
    assert_eq!(m.tokens().unwrap().len(), 49152);
    assert_eq!(m.merges().unwrap().unwrap().len(), 48900);
    assert_eq!(m.token_types().unwrap().unwrap().len(), 49152);
    assert_eq!(m.token_scores().unwrap(), None);
    assert_eq!(m.tokens().unwrap()[1], "<|im_start|>");
    assert!(m.chat_template().unwrap().unwrap().contains("<|im_start|>"));

    let gemma = GgufFile::open(TestModel::Gemma3.path()).unwrap();
    let m = gemma.metadata();
    assert_eq!(m.tokens().unwrap().len(), 262_144);
    assert_eq!(m.token_scores().unwrap().unwrap().len(), 262_144);
    assert_eq!(m.bos_token_id().unwrap(), Some(2));
    assert_eq!(m.eos_token_id().unwrap(), Some(1));
    assert_eq!(m.tokens().unwrap()[2], "<bos>");
    assert_eq!(m.rope_freq_base().unwrap(), 1_000_000.0);
    assert_eq!(m.sliding_window().unwrap(), Some(512));
    assert_eq!(m.chat_template().unwrap(), None);
}
