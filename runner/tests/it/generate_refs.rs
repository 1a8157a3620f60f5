//! The llama architecture against llama.cpp on SmolLM2 (references from
//! `scripts/make-generation-refs.sh`: llama.cpp's public API, K/V cache in F32, flash
//! attention off, 2 threads).
//!
//! What "the same" can mean here was measured, not assumed. SmolLM2-135M in Q4_1 is
//! extremely sensitive to rounding: its residual stream carries a few huge outlier
//! features, so the 8-bit quantization of activations before each product flips on
//! last-bit differences, and the flips grow through the layers. llama.cpp itself, with
//! nothing changed but its K/V cache from F32 to F16, moves its logits after the prompt by
//! 3% to 60% (`|a - b| / max(|b|, 1)`, worst of 70 ids) and its greedy text diverges from
//! its own within 6 to 52 tokens, at steps whose top-2 logits are up to 0.39 apart. Our
//! layer-0 activations equal llama.cpp's to 1e-7 (checked by dumping its graph), but the
//! sums in our matrix products round in another order than ggml's, so a 1e-3 agreement
//! needs bit-exact kernels. The references therefore hold both runs, and we assert:
//!
//! - the prompt tokens are llama.cpp's, exactly;
//! - after the prompt, the most likely token is llama.cpp's, and our logits (at its 50
//!   largest and 20 fixed ids) are within `max(1e-3, 2 × e16)` of its, where `e16` is
//!   llama.cpp's own F16-vs-F32 K/V difference for that prompt;
//! - teacher-forced on llama.cpp's 64 greedy tokens (prompt and continuation in one
//!   batch), our argmax is llama.cpp's next token at every step but near-ties (our top-2
//!   gap below `NEAR_TIE`), and at 90% of the steps at least;
//! - through `ollama-runner generate`, the printed text is the library's greedy
//!   continuation, and it starts with llama.cpp's first token.
//!
//! A wrong RoPE layout, head grouping or norm moves the logits by far more (the NeoX
//! layout puts another token first) and fails these checks.

use std::sync::Arc;

use e2e::TestModel;
use gguf::GgufFile;
use runner::model::{self, Batch, KvStore, LoadOptions, Logits, Model};
use runner::sample::{Sampler, SamplerOptions};
use runner::tokenizer::{TokenId, Tokenizer};

/// The floor of the logit tolerance.
const TOLERANCE: f32 = 1e-3;
/// Top-2 gaps below this are near-ties at this model's rounding sensitivity.
const NEAR_TIE: f32 = 0.25;
const THREADS: usize = 2;

#[derive(serde::Deserialize)]
struct Refs {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    prompt_ids: Vec<TokenId>,
    first_logits: FirstLogits,
    generated_ids: Vec<TokenId>,
    f16_kv: F16Kv,
}

#[derive(serde::Deserialize)]
struct FirstLogits {
    n_vocab: usize,
    top_ids: Vec<usize>,
    top_logits: Vec<f32>,
    fixed_ids: Vec<usize>,
    fixed_logits: Vec<f32>,
}

/// llama.cpp's logits at the same ids with an F16 K/V cache.
#[derive(serde::Deserialize)]
struct F16Kv {
    top_logits: Vec<f32>,
    fixed_logits: Vec<f32>,
}

fn refs() -> Refs {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/generation-refs-smollm2.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The argmax and the gap between the two largest values.
fn top2(logits: &[f32]) -> (TokenId, f32) {
    let (mut best, mut a, mut b) = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > a {
            (b, a, best) = (a, v, i);
        } else if v > b {
            b = v;
        }
    }
    (best as TokenId, a - b)
}

fn error(ours: f32, reference: f32) -> f32 {
    (ours - reference).abs() / reference.abs().max(1.0)
}

/// Runs the prompt and llama.cpp's continuation in one batch, with logits from the last
/// prompt token on.
fn teacher_forced(model: &mut dyn Model, prompt: &[TokenId], continuation: &[TokenId]) -> Logits {
    let mut cache = KvStore::new(model.kv_shape(), 512, 1).unwrap();
    let (mut batch, mut logits) = (Batch::new(), Logits::new());
    for (i, &t) in prompt.iter().chain(continuation).enumerate() {
        batch.push(t, i as i32, 0, i + 1 >= prompt.len());
    }
    model.forward(&batch, &mut cache, &mut logits).unwrap();
    logits
}

fn check_first_logits(case: &Case, ours: &[f32]) {
    let fl = &case.first_logits;
    assert_eq!(ours.len(), fl.n_vocab, "{:?}: vocabulary size", case.prompt);
    assert_eq!(
        top2(ours).0 as usize,
        fl.top_ids[0],
        "{:?}: most likely next token",
        case.prompt
    );
    let ids = fl.top_ids.iter().chain(&fl.fixed_ids);
    let reference: Vec<f32> = fl
        .top_logits
        .iter()
        .chain(&fl.fixed_logits)
        .copied()
        .collect();
    let f16 = case
        .f16_kv
        .top_logits
        .iter()
        .chain(&case.f16_kv.fixed_logits);
    let e16 = f16
        .zip(&reference)
        .map(|(&a, &b)| error(a, b))
        .fold(0.0, f32::max);
    let tolerance = TOLERANCE.max(2.0 * e16);
    for (&id, &want) in ids.zip(&reference) {
        let err = error(ours[id], want);
        assert!(
            err <= tolerance,
            "{:?}: logit of token {id} is {}, llama.cpp's is {want}: error {err:e} > {tolerance:e} \
             (llama.cpp's own F16-K/V error is {e16:e})",
            case.prompt,
            ours[id]
        );
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    let refs = refs();
    assert!(refs.cases.len() >= 5);
    let file = Arc::new(GgufFile::open(TestModel::SmolLm2.path()).unwrap());
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    let options = LoadOptions { threads: THREADS };
    let mut model = model::load(Arc::clone(&file), &options).unwrap();
    for case in &refs.cases {
        let prompt = tokenizer.encode(&case.prompt, true, true);
        assert_eq!(prompt, case.prompt_ids, "{:?}: prompt tokens", case.prompt);
        let logits = teacher_forced(model.as_mut(), &prompt, &case.generated_ids);
        check_first_logits(case, logits.row(prompt.len() - 1).unwrap());
        let mut agree = 0;
        for (k, &want) in case.generated_ids.iter().enumerate() {
            let (got, gap) = top2(logits.row(prompt.len() - 1 + k).unwrap());
            if got == want {
                agree += 1;
            } else {
                assert!(
                    gap < NEAR_TIE,
                    "{:?}: after {k} generated tokens we pick {got}, llama.cpp {want}, and our \
                     top-2 gap {gap} is no near-tie",
                    case.prompt
                );
            }
        }
        let n = case.generated_ids.len();
        assert!(
            agree * 10 >= n * 9,
            "{:?}: only {agree} of {n} greedy steps agree with llama.cpp",
            case.prompt
        );
    }
}

#[test]
fn generate_cli_prints_the_greedy_continuation() {
    let refs = refs();
    let case = &refs.cases[0];
    let n = case.generated_ids.len();
    let file = Arc::new(GgufFile::open(TestModel::SmolLm2.path()).unwrap());
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    let mut model = model::load(Arc::clone(&file), &LoadOptions { threads: 1 }).unwrap();
    let mut sampler = Sampler::new(SamplerOptions {
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..SamplerOptions::default()
    })
    .unwrap();
    let generation = runner::tools::generate::generate(
        model.as_mut(),
        &tokenizer,
        &mut sampler,
        &case.prompt_ids,
        n,
        512,
        7,
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(generation.generated.len(), n);
    assert_eq!(generation.generated[0], case.generated_ids[0]);
    let want = tokenizer.decode(&generation.generated, false);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("generate")
        .arg("--model")
        .arg(TestModel::SmolLm2.path())
        .args(["--prompt", &case.prompt])
        .args(["--num-predict", &n.to_string()])
        .args(["--threads", &THREADS.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "generate failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.strip_suffix('\n').unwrap_or(&stdout), want);
    let prompt_line = format!("prompt: {} tokens", case.prompt_ids.len());
    assert!(stderr.contains(&prompt_line), "{stderr}");
    assert!(
        stderr.contains(&format!("generated: {n} tokens")),
        "{stderr}"
    );
}

#[test]
fn bad_batches_are_errors_not_panics() {
    let file = Arc::new(GgufFile::open(TestModel::SmolLm2.path()).unwrap());
    let mut model = model::load(file, &LoadOptions { threads: 1 }).unwrap();
    let mut cache = KvStore::new(model.kv_shape(), 4, 1).unwrap();
    let (mut batch, mut logits) = (Batch::new(), Logits::new());
    model.forward(&batch, &mut cache, &mut logits).unwrap();
    assert!(logits.last().is_none(), "an empty batch has no logits");
    let n_vocab = model.n_vocab() as TokenId;
    batch.push(n_vocab, 0, 0, true);
    let err = model.forward(&batch, &mut cache, &mut logits).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("token {n_vocab} is outside the vocabulary of {n_vocab}")
    );
    batch.clear();
    batch.push(1, 3, 0, true);
    let err = model.forward(&batch, &mut cache, &mut logits).unwrap_err();
    assert_eq!(err.to_string(), "position 3 of sequence 0 is not in 0..=0");
    batch.clear();
    for pos in 0..5 {
        batch.push(1, pos, 0, false);
    }
    let err = model.forward(&batch, &mut cache, &mut logits).unwrap_err();
    assert_eq!(err.to_string(), "sequence 0 is full (4 positions)");
    let mut other = KvStore::new(
        runner::model::KvShape {
            n_layers: 1,
            k_dim: 1,
            v_dim: 1,
        },
        4,
        1,
    )
    .unwrap();
    assert!(model.forward(&batch, &mut other, &mut logits).is_err());
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    let key = b"general.architecture";
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&8u32.to_le_bytes());
    bytes.extend_from_slice(&5u64.to_le_bytes());
    bytes.extend_from_slice(b"mamba");
    std::fs::write(&path, bytes).unwrap();
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let err = model::load(file, &LoadOptions { threads: 1 })
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "unknown model architecture 'mamba'");
}
