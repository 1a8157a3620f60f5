//! Importing Gemma 3 from Hugging Face directories with `ollama-runner convert`.
//!
//! The round trip: `scripts/gguf-to-hf.py` turns gemma-3-270m-q4_k_m.gguf into a Hugging
//! Face directory (F32 safetensors with Hugging Face's names and Gemma's `w - 1` norm
//! weights, `config.json`, a SentencePiece `tokenizer.model` encoded from the GGUF's
//! tokens, scores and types, `tokenizer_config.json` with the special tokens and
//! `added_tokens_decoder`), and importing it with `--type f32` gives the original file
//! dequantized to F32 (`ollama-runner dequantize`): every tensor bit for bit, and every
//! metadata key outside `general.*` equal to the original's. The norms come back exactly
//! because `(w - 1) + 1 == w` in F32 for every norm value of this model (the subtraction
//! is exact from 0.5 up; the script checks every value and stops if one would not
//! survive). The `general.*` keys legitimately differ: the file type (F32, not Q4_K_M)
//! and the name and provenance keys the converter takes from its own metadata.

use std::path::Path;
use std::process::Command;

use e2e::TestModel;
use gguf::GgufFile;
use runner::import::{self, OutType};
use safetensors::{Dtype, tensor::TensorView};
use serde_json::json;

use crate::llama_import::{assert_same_tensors, convert, hf_dir, model_keys, values};
use crate::support::{generate, load_path, reference_cache};

#[test]
fn gemma3_round_trips_through_a_hugging_face_directory_as_its_f32_dequantization() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = hf_dir(TestModel::Gemma3, tmp.path(), "gemma-3-270m");
    let out = tmp.path().join("gemma3-f32.gguf");
    let (ok, text) = convert(&[hf.to_str().unwrap(), out.to_str().unwrap(), "--type", "f32"]);
    assert!(ok, "{text}");
    assert!(text.contains("gemma3 (f32), 236 tensors"), "{text}");

    let dequantized = tmp.path().join("original-f32.gguf");
    let run = Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args(["dequantize", "--model"])
        .arg(TestModel::Gemma3.path())
        .arg("--out")
        .arg(&dequantized)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let original = GgufFile::open(TestModel::Gemma3.path()).unwrap();
    let imported = GgufFile::open(&out).unwrap();
    let reference = GgufFile::open(&dequantized).unwrap();
    // Tokens, scores, token types, special ids and flags, hyper-parameters.
    assert_eq!(model_keys(&imported), model_keys(&original));
    assert_eq!(imported.metadata().file_type().unwrap(), Some(0));
    assert_same_tensors(&imported, &reference);
    drop((original, imported, reference));

    let (tok_a, mut model_a) = load_path(&dequantized, 2);
    let (tok_b, mut model_b) = load_path(&out, 2);
    let prompt = "Water is made of hydrogen and";
    let ids = tok_a.encode(prompt, true, true);
    assert_eq!(tok_b.encode(prompt, true, true), ids);
    let a = generate(model_a.as_mut(), &tok_a, &ids, 6, reference_cache());
    let b = generate(model_b.as_mut(), &tok_b, &ids, 6, reference_cache());
    assert!(!a.generated.is_empty());
    assert_eq!(b.generated, a.generated, "{prompt}");
}

/// A SentencePiece `ModelProto` of `pieces` (text, score, type), encoded by hand.
fn sentencepiece(pieces: &[(&str, f32, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (text, score, kind) in pieces {
        let mut piece = vec![0x0a, text.len() as u8];
        piece.extend_from_slice(text.as_bytes());
        piece.push(0x15);
        piece.extend_from_slice(&score.to_le_bytes());
        piece.extend_from_slice(&[0x18, *kind]);
        out.extend_from_slice(&[0x0a, piece.len() as u8]);
        out.extend_from_slice(&piece);
    }
    out
}

/// A small Gemma 3 checkpoint in `dir`: 2 layers of 64, four query heads of 16 sharing
/// one key/value head, 8 tokens; every tensor F32 except `odd_tensor`, stored as I32, and
/// without `missing_tensor`.
fn small_gemma3(dir: &Path, odd_tensor: &str, missing_tensor: &str) {
    let (n_embd, n_ff, n_vocab, head) = (64usize, 128usize, 8usize, 16usize);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![n_vocab, n_embd]),
        ("model.norm.weight".into(), vec![n_embd]),
    ];
    for i in 0..2 {
        let p = format!("model.layers.{i}.");
        for (name, shape) in [
            ("input_layernorm", vec![n_embd]),
            ("post_attention_layernorm", vec![n_embd]),
            ("pre_feedforward_layernorm", vec![n_embd]),
            ("post_feedforward_layernorm", vec![n_embd]),
            ("self_attn.q_norm", vec![head]),
            ("self_attn.k_norm", vec![head]),
            ("self_attn.q_proj", vec![4 * head, n_embd]),
            ("self_attn.k_proj", vec![head, n_embd]),
            ("self_attn.v_proj", vec![head, n_embd]),
            ("self_attn.o_proj", vec![n_embd, 4 * head]),
            ("mlp.gate_proj", vec![n_ff, n_embd]),
            ("mlp.up_proj", vec![n_ff, n_embd]),
            ("mlp.down_proj", vec![n_embd, n_ff]),
        ] {
            shapes.push((format!("{p}{name}.weight"), shape));
        }
    }
    shapes.retain(|(name, _)| name != missing_tensor);
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
            let dtype = if name == odd_tensor {
                Dtype::I32
            } else {
                Dtype::F32
            };
            let view = TensorView::new(dtype, shape.clone(), bytes).unwrap();
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let config = json!({
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "hidden_size": n_embd, "intermediate_size": n_ff, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": head,
        "query_pre_attn_scalar": head, "vocab_size": n_vocab, "sliding_window": 32,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
        "rope_local_base_freq": 1e4, "hidden_activation": "gelu_pytorch_tanh",
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let pieces = [
        ("<pad>", 0.0, 3),
        ("<eos>", 0.0, 3),
        ("<bos>", 0.0, 3),
        ("<unk>", 0.0, 2),
        ("\u{2581}a", -1.0, 1),
        ("b", -2.0, 1),
        ("<start_of_turn>", 0.0, 4),
    ];
    std::fs::write(dir.join("tokenizer.model"), sentencepiece(&pieces)).unwrap();
    let tokenizer_config = json!({
        "add_bos_token": true, "add_eos_token": false, "chat_template": "{{ bos_token }}",
        "added_tokens_decoder": {
            "3": {"content": "<unk>", "special": true},
            "6": {"content": "<start_of_turn>", "special": true},
            "7": {"content": "\u{2581}\u{2581}", "special": false},
        },
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
}

/// The small model imports with Gemma's conventions: norms shifted by one, no output
/// head, the SentencePiece types and scores, padding, added tokens and special ids as
/// llama.cpp's converter writes them.
#[test]
fn a_small_gemma3_imports_with_llama_cpp_s_keys() {
    let tmp = tempfile::tempdir().unwrap();
    small_gemma3(tmp.path(), "", "");
    let out = tmp.path().join("small.gguf");
    import::convert(tmp.path(), &out, OutType::F32, &mut |_, _, _| {}).unwrap();
    let file = GgufFile::open(&out).unwrap();
    let meta = file.metadata();
    assert_eq!(meta.architecture().unwrap(), "gemma3");
    assert_eq!(meta.get_u32("gemma3.attention.sliding_window").unwrap(), 32);
    assert_eq!(meta.get_f32("gemma3.rope.freq_base_swa").unwrap(), 1e4);
    assert_eq!(meta.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(
        meta.get_str_array("tokenizer.ggml.tokens").unwrap(),
        [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "\u{2581}a",
            "b",
            "<start_of_turn>",
            "  "
        ]
    );
    assert_eq!(
        meta.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        [3, 3, 3, 3, 1, 1, 3, 4]
    );
    assert_eq!(
        meta.get_f32_array("tokenizer.ggml.scores").unwrap(),
        [0.0, 0.0, 0.0, -1000.0, -1.0, -2.0, -1000.0, -1000.0]
    );
    assert_eq!(meta.get_u32("tokenizer.ggml.padding_token_id").unwrap(), 0);
    assert!(meta.get_u32("tokenizer.ggml.unknown_token_id").is_err());
    assert!(meta.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(!meta.get_bool("tokenizer.ggml.add_space_prefix").unwrap());
    assert_eq!(
        meta.get_str("tokenizer.chat_template").unwrap(),
        "{{ bos_token }}"
    );
    assert!(file.tensor("output.weight").is_none());
    let norm = file.tensor("blk.1.attn_k_norm.weight").unwrap();
    let stored = file.tensor_data(norm).unwrap();
    let first = f32::from_le_bytes(stored[..4].try_into().unwrap());
    assert_eq!(first, values(16, 2 + 13 + 5)[0] + 1.0);
}

/// A way to spoil the small model: the tensor stored as I32, the tensor left out, what
/// is done to the directory afterwards, and what the error must say.
type Spoiled<'a> = (&'a str, &'a str, &'a dyn Fn(&Path), &'a [&'a str]);

#[test]
fn bad_gemma3_directories_are_refused_by_what_is_wrong() {
    let cases: [Spoiled<'_>; 4] = [
        (
            "",
            "",
            &|d| std::fs::remove_file(d.join("tokenizer.model")).unwrap(),
            &["has no tokenizer.model"],
        ),
        (
            "",
            "",
            &|d| std::fs::write(d.join("tokenizer.model"), b"\x0a\x09garbage").unwrap(),
            &["tokenizer.model", "not a SentencePiece model"],
        ),
        (
            "",
            "model.layers.1.self_attn.k_norm.weight",
            &|_| {},
            &["'model.layers.1.self_attn.k_norm.weight' is missing"],
        ),
        (
            "model.layers.0.mlp.up_proj.weight",
            "",
            &|_| {},
            &["'model.layers.0.mlp.up_proj.weight' has dtype I32"],
        ),
    ];
    for (odd, missing, spoil, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        small_gemma3(tmp.path(), odd, missing);
        spoil(tmp.path());
        let out = tmp.path().join("out.gguf");
        let (ok, text) = convert(&[tmp.path().to_str().unwrap(), out.to_str().unwrap()]);
        assert!(!ok, "{text}");
        for e in expected {
            assert!(text.contains(e), "{e:?} not in {text}");
        }
        assert!(!text.contains("panicked"), "{text}");
        assert!(!out.exists(), "nothing is written");
    }
}
