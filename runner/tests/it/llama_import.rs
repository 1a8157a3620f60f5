//! Importing llama models from Hugging Face directories with `ollama-runner convert`.
//!
//! The round trip: `scripts/gguf-to-hf.py` turns SmolLM2-135M-Instruct.Q4_1.gguf into a
//! Hugging Face directory (F32 safetensors with Hugging Face's names and rotary layout,
//! `config.json`, a `tokenizer.json` rebuilt from the GGUF's vocabulary and merges,
//! `tokenizer_config.json` with the chat template), and importing it with `--type q4_1`
//! gives the original file back: the same tensors, byte for byte, the same metadata, and
//! so the same greedy text. This holds because Q4_1 and Q8_0 blocks survive dequantize
//! and requantize exactly with our llama.cpp-exact quantizers: a block's smallest value
//! is its stored minimum and its largest lies 15 (Q4_1) or 127 (Q8_0) steps away, so the
//! requantizer recomputes the same f16 scale and minimum and every value lands on its
//! old integer.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::TestModel;
use gguf::GgufFile;
use runner::import::{self, OutType};
use safetensors::{Dtype, tensor::TensorView};
use serde_json::{Value, json};

use crate::support::{generate, load_path, reference_cache};

/// `ollama-runner convert` with `args`; its stdout and stderr.
pub fn convert(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("convert")
        .args(args)
        .output()
        .expect("ollama-runner runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A test model as a Hugging Face directory `dir/name`, written by
/// `scripts/gguf-to-hf.py`.
pub fn hf_dir(model: TestModel, dir: &Path, name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gguf-to-hf.py");
    let out = dir.join(name);
    let run = Command::new("python3")
        .arg(script)
        .arg(model.path())
        .arg(&out)
        .output()
        .expect("python3 runs");
    assert!(
        run.status.success(),
        "gguf-to-hf.py failed (pip install -r scripts/requirements.txt): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// SmolLM2 as a Hugging Face directory under `dir`.
fn smollm2_hf_dir(dir: &Path) -> PathBuf {
    hf_dir(TestModel::SmolLm2, dir, "SmolLM2-135M-Instruct")
}

/// `imported` holds `reference`'s tensors: the same names, types, shapes and bytes.
pub fn assert_same_tensors(imported: &GgufFile, reference: &GgufFile) {
    assert_eq!(imported.tensors().len(), reference.tensors().len());
    for theirs in reference.tensors() {
        let ours = imported
            .tensor(theirs.name())
            .unwrap_or_else(|| panic!("{} is missing", theirs.name()));
        assert_eq!(
            (ours.ggml_type(), ours.dims()),
            (theirs.ggml_type(), theirs.dims()),
            "{}",
            theirs.name()
        );
        assert!(
            imported.tensor_data(ours).unwrap() == reference.tensor_data(theirs).unwrap(),
            "{}: bytes differ",
            theirs.name()
        );
    }
}

/// Every metadata key outside `general.*`, rendered, sorted.
pub fn model_keys(file: &GgufFile) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = file
        .metadata()
        .iter()
        .filter(|(k, _)| !k.starts_with("general."))
        .map(|(k, v)| (k.to_owned(), format!("{v:?}")))
        .collect();
    keys.sort();
    keys
}

#[test]
fn smollm2_round_trips_through_a_hugging_face_directory_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = smollm2_hf_dir(tmp.path());
    let out = tmp.path().join("smollm2-q4_1.gguf");
    let (ok, text) = convert(&[
        hf.to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "q4_1",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("llama (q4_1), 272 tensors"), "{text}");

    let original = GgufFile::open(TestModel::SmolLm2.path()).unwrap();
    let imported = GgufFile::open(&out).unwrap();
    assert_eq!(model_keys(&imported), model_keys(&original));
    assert_eq!(imported.metadata().file_type().unwrap(), Some(3));
    assert_same_tensors(&imported, &original);

    // The same file, so the same greedy text on llama.cpp's reference path.
    let (tok_a, mut model_a) = load_path(&TestModel::SmolLm2.path(), 2);
    let (tok_b, mut model_b) = load_path(&out, 2);
    for prompt in [
        "The capital of France is",
        "def fibonacci(n):",
        "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n",
    ] {
        let ids = tok_a.encode(prompt, true, true);
        assert_eq!(tok_b.encode(prompt, true, true), ids, "{prompt}");
        let a = generate(model_a.as_mut(), &tok_a, &ids, 16, reference_cache());
        let b = generate(model_b.as_mut(), &tok_b, &ids, 16, reference_cache());
        assert!(!a.generated.is_empty());
        assert_eq!(
            tok_b.decode(&b.generated, false),
            tok_a.decode(&a.generated, false),
            "{prompt}"
        );
        assert_eq!(b.generated, a.generated, "{prompt}");
    }
}

/// Deterministic values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A small llama checkpoint in `dir`: 8 layers, 256-wide rows, 320-wide down
/// projections (not a whole number of 256-value blocks), four query heads sharing two
/// key/value heads, an untied output head; `config` is merged over its `config.json`,
/// and `u8_tensor` stores one tensor as U8 as an 8-bit quantized checkpoint would.
fn small_llama(dir: &Path, config: Value, u8_tensor: bool) {
    let (n_embd, n_ff, n_layer, n_vocab, head) = (256usize, 320usize, 8usize, 32usize, 64usize);
    let (q_rows, kv_rows) = (4 * head, 2 * head);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![n_vocab, n_embd]),
        ("model.norm.weight".into(), vec![n_embd]),
        ("lm_head.weight".into(), vec![n_vocab, n_embd]),
    ];
    for i in 0..n_layer {
        let p = format!("model.layers.{i}.");
        for (name, shape) in [
            ("input_layernorm", vec![n_embd]),
            ("post_attention_layernorm", vec![n_embd]),
            ("self_attn.q_proj", vec![q_rows, n_embd]),
            ("self_attn.k_proj", vec![kv_rows, n_embd]),
            ("self_attn.v_proj", vec![kv_rows, n_embd]),
            ("self_attn.o_proj", vec![n_embd, q_rows]),
            ("mlp.gate_proj", vec![n_ff, n_embd]),
            ("mlp.up_proj", vec![n_ff, n_embd]),
            ("mlp.down_proj", vec![n_embd, n_ff]),
        ] {
            shapes.push((format!("{p}{name}.weight"), shape));
        }
    }
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let bytes = values(n, i as u64)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            let quantized = u8_tensor && name == "model.layers.0.mlp.up_proj.weight";
            let (dtype, shape, bytes) = if quantized {
                (Dtype::U8, vec![bytes.len()], &bytes[..])
            } else {
                (Dtype::F32, shape.clone(), &bytes[..])
            };
            (name.clone(), TensorView::new(dtype, shape, bytes).unwrap())
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let mut cfg = json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": n_embd, "intermediate_size": n_ff, "num_hidden_layers": n_layer,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": n_vocab,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 3,
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut cfg, config) {
        base.extend(more);
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let tokenizer = json!({
        "added_tokens": [{"id": 3, "content": "<s>", "special": true}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
}

/// llama-quantize's Q4_K_M for 8 layers (`llama_tensor_get_type`): the output head Q6_K;
/// the value projections of layers 0, 3, 6, 7 (`use_more_bits`) Q6_K, the others Q4_K;
/// the down projections likewise Q6_K or Q4_K, but their 320-value rows hold no 256-value
/// block, so those fall back to Q8_0 and Q5_0; everything else Q4_K; norms F32.
#[test]
fn q4_k_m_mixes_a_small_llama_s_types_by_role_and_falls_back_on_odd_rows() {
    let tmp = tempfile::tempdir().unwrap();
    small_llama(tmp.path(), json!({}), false);
    let out = tmp.path().join("small.gguf");
    import::convert(tmp.path(), &out, OutType::Q4KM, &mut |_, _, _| {}).unwrap();
    let file = GgufFile::open(&out).unwrap();
    let type_of = |t: &str| {
        let info = file.tensor(t).unwrap_or_else(|| panic!("{t} is missing"));
        info.ggml_type().to_string().to_uppercase()
    };
    assert_eq!(type_of("output.weight"), "Q6_K");
    assert_eq!(type_of("token_embd.weight"), "Q4_K");
    assert_eq!(type_of("output_norm.weight"), "F32");
    for i in 0..8 {
        let more_bits = [0, 3, 6, 7].contains(&i);
        let (v, down) = if more_bits {
            ("Q6_K", "Q8_0")
        } else {
            ("Q4_K", "Q5_0")
        };
        assert_eq!(type_of(&format!("blk.{i}.attn_v.weight")), v, "layer {i}");
        assert_eq!(
            type_of(&format!("blk.{i}.ffn_down.weight")),
            down,
            "layer {i}"
        );
        for t in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
            assert_eq!(type_of(&format!("blk.{i}.{t}.weight")), "Q4_K", "{t} {i}");
        }
        assert_eq!(type_of(&format!("blk.{i}.attn_norm.weight")), "F32");
    }
    let meta = file.metadata();
    assert_eq!(meta.file_type().unwrap(), Some(15));
    assert_eq!(meta.get_u32("llama.attention.head_count_kv").unwrap(), 2);
    assert_eq!(meta.get_str("tokenizer.ggml.pre").unwrap(), "gpt2");
    assert_eq!(
        meta.get_str_array("tokenizer.ggml.tokens").unwrap()[..5],
        ["a", "b", "ab", "<s>", "[PAD4]"]
    );
    assert_eq!(meta.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 3);
}

#[test]
fn an_already_quantized_checkpoint_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.gguf");
    small_llama(
        tmp.path(),
        json!({"quantization_config": {"quant_method": "gptq", "bits": 4}}),
        false,
    );
    let (ok, text) = convert(&[tmp.path().to_str().unwrap(), out.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("already quantized") && text.contains("gptq"),
        "{text}"
    );

    let tmp = tempfile::tempdir().unwrap();
    small_llama(tmp.path(), json!({}), true);
    let (ok, text) = convert(&[
        tmp.path().to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "q4_k_m",
    ]);
    assert!(!ok);
    assert!(
        text.contains("already quantized")
            && text.contains("model.layers.0.mlp.up_proj.weight")
            && text.contains("U8"),
        "{text}"
    );
    assert!(!out.exists(), "nothing is written");
}

/// A GGUF of F32 weights in place of the directory is quantized as llama-quantize
/// would: SmolLM2 dequantized to F32 and quantized to Q4_1 again is the original file,
/// byte for byte; the original itself, already quantized, is refused.
#[test]
fn an_f32_gguf_quantizes_back_to_the_original_and_a_quantized_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (f32_file, out) = (tmp.path().join("f32.gguf"), tmp.path().join("q4_1.gguf"));
    let original = TestModel::SmolLm2.path();
    let run = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args(["dequantize", "--model"])
        .arg(&original)
        .arg("--out")
        .arg(&f32_file)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (ok, text) = convert(&[
        f32_file.to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "q4_1",
    ]);
    assert!(ok, "{text}");
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&original).unwrap(),
        "the requantized file differs from the original"
    );

    let (ok, text) = convert(&[
        original.to_str().unwrap(),
        tmp.path().join("again.gguf").to_str().unwrap(),
        "--type",
        "q4_k_m",
    ]);
    assert!(!ok);
    assert!(
        text.contains("already quantized")
            && text.contains("'token_embd.weight'")
            && text.contains("Q8_0"),
        "{text}"
    );
}
