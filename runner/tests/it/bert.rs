//! BERT sentence embeddings end to end: all-MiniLM-L6-v2 imported from its Hugging Face
//! directory (`ollama-runner convert`, here through `runner::import`) in F32, F16 and
//! Q8_0, run by `runner::model::bert`, pooled and normalized, against the embeddings of
//! `scripts/make-embedding-refs.py` (a float64 numpy BERT outside our code, stored in
//! `runner/tests/data/embedding-refs-minilm.json` with the HF tokenizer's ids).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gguf::GgufFile;
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use runner::import::{self, OutType};
use runner::kvcache::KvConfig;
use runner::model::pooling::{Pooler, Pooling};
use runner::model::{self, Batch, LoadOptions, Logits, Model, Numerics, Output};
use runner::tokenizer::Tokenizer;
use serde_json::Value;
use tonic::Code;

use crate::served::Served;

/// One reference sentence: its text, the HF tokenizer's ids and the embedding.
pub struct Reference {
    pub text: String,
    pub ids: Vec<u32>,
    pub embedding: Vec<f32>,
}

/// The stored references.
pub fn references() -> Vec<Reference> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/embedding-refs-minilm.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let refs: Vec<Reference> = doc["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().unwrap().to_owned(),
            ids: s["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
            embedding: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect();
    assert_eq!(refs.len(), 50);
    refs
}

/// The cached Hugging Face directory of all-MiniLM-L6-v2.
pub fn minilm_dir() -> PathBuf {
    let dir = e2e::models_dir().join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-models",
        dir.display()
    );
    dir
}

/// MiniLM converted to `ty` into `dir`.
pub fn converted(dir: &Path, ty: OutType) -> PathBuf {
    let out = dir.join(format!("minilm-{ty:?}.gguf"));
    import::convert(&minilm_dir(), &out, ty, &mut |_, _, _| {}).unwrap();
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Embeds every reference (by its stored ids) with `model`, `per_batch` sentences packed
/// in each pass as sequences 0, 1, ...
fn embed_ids(model: &mut dyn Model, refs: &[Reference], per_batch: usize) -> Vec<Vec<f32>> {
    let mut cache = model::new_cache(
        &*model,
        KvConfig {
            num_parallel: per_batch,
            ..KvConfig::new(512)
        },
    )
    .unwrap();
    let (mut batch, mut out) = (Batch::new(), Logits::new());
    let mut vectors = Vec::new();
    for group in refs.chunks(per_batch) {
        batch.clear();
        batch.set_output(Output::Embeddings);
        for (seq, r) in group.iter().enumerate() {
            for (pos, &id) in r.ids.iter().enumerate() {
                batch.push(id, pos as i32, seq, true);
            }
        }
        model.forward(&batch, &mut cache, &mut out).unwrap();
        for seq in 0..group.len() {
            let mut pooler = Pooler::new(Pooling::Mean, model.n_embd());
            pooler.push_batch(&batch, &out, seq).unwrap();
            vectors.push(pooler.finish(true).unwrap());
        }
    }
    vectors
}

fn load(path: &Path, numerics: Numerics) -> Box<dyn Model> {
    let file = Arc::new(GgufFile::open(path).unwrap());
    let kv = KvConfig {
        num_batch: 2048,
        ..KvConfig::new(512)
    };
    model::load(
        file,
        &LoadOptions {
            threads: 2,
            kv,
            numerics,
            device: None,
        },
    )
    .unwrap()
}

/// The lowest cosine similarity of our embeddings to the references, printed per type.
fn worst_cosine(ty: OutType, per_batch: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut model = load(&converted(dir.path(), ty), Numerics::default());
    let refs = references();
    let ours = embed_ids(&mut *model, &refs, per_batch);
    let worst = (ours.iter().zip(&refs))
        .map(|(v, r)| (cosine(v, &r.embedding), &r.text))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    eprintln!(
        "{ty:?}, {per_batch} a pass: lowest cosine {:.7} ({:?})",
        worst.0, worst.1
    );
    worst.0
}

#[test]
fn f32_embeddings_match_the_reference() {
    assert!(worst_cosine(OutType::F32, 1) >= 0.9999);
}

#[test]
fn f16_embeddings_match_the_reference_with_sentences_packed_in_one_batch() {
    assert!(worst_cosine(OutType::F16, 50) >= 0.999);
}

/// The two numerics on one F32 file, every sentence packed in one pass: exact (llama.cpp's
/// order, GELU's `erf` in `f64`) and fast (other summation orders, GELU in `f32` SIMD)
/// give nearly the same vectors. Measured: lowest cosine 1 - 5.2e-13.
#[test]
fn exact_and_fast_numerics_embed_alike() {
    let dir = tempfile::tempdir().unwrap();
    let path = converted(dir.path(), OutType::F32);
    let refs = references();
    let embed = |numerics| embed_ids(&mut *load(&path, numerics), &refs, refs.len());
    let (exact, fast) = (embed(Numerics::Exact), embed(Numerics::Fast));
    let worst = (exact.iter().zip(&fast))
        .map(|(e, f)| cosine(e, f))
        .fold(1.0, f64::min);
    eprintln!("exact against fast: lowest cosine 1 - {:.1e}", 1.0 - worst);
    assert!(worst >= 1.0 - 1e-9, "lowest cosine {worst}");
}

#[test]
fn q8_0_embeddings_match_the_reference() {
    assert!(worst_cosine(OutType::Q8_0, 7) >= 0.99);
}

/// The 4- and 5-bit types: the matrices in the type, the token embeddings (MiniLM's
/// output head, as `llama-quantize` sees a model without one) in Q8_0, since Q6_K's
/// blocks do not fit its 384-wide rows; the vectors near the reference as far as such a
/// small model allows: lowest cosines measured 0.893 (Q4_0), 0.915 (Q4_1), 0.977 (Q5_0),
/// 0.975 (Q5_1), on one-word sentences; llama.cpp's `llama-embedding` on the same files
/// gives 0.8935 (Q4_0) and 0.9757 (Q5_1) (`scripts/compare-llama-embedding.py`).
#[test]
fn four_and_five_bit_embeddings_stay_near_the_reference() {
    for (ty, name, bound) in [
        (OutType::Q4_0, "Q4_0", 0.88),
        (OutType::Q4_1, "Q4_1", 0.90),
        (OutType::Q5_0, "Q5_0", 0.97),
        (OutType::Q5_1, "Q5_1", 0.97),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = GgufFile::open(converted(dir.path(), ty)).unwrap();
        let type_of = |t: &str| {
            file.tensor(t)
                .unwrap()
                .ggml_type()
                .to_string()
                .to_uppercase()
        };
        assert_eq!(type_of("blk.3.attn_q.weight"), name);
        assert_eq!(type_of("blk.3.ffn_down.weight"), name);
        assert_eq!(type_of("token_embd.weight"), "Q8_0");
        assert_eq!(type_of("position_embd.weight"), "F32");
        let worst = worst_cosine(ty, 25);
        assert!(worst >= bound, "{name}: lowest cosine {worst}");
    }
}

/// Q4_K_M mixes types by role as llama-quantize does: on MiniLM's six layers the value
/// and down projections of layers 2 and 5 (`use_more_bits`) take Q6_K, the others Q4_K;
/// where the 384-wide rows do not hold Q4_K's or Q6_K's 256-value blocks, Q5_0 and Q8_0
/// take their place (only the down projections, 1536 wide, keep K-quants).
#[test]
fn q4_k_m_mixes_types_by_role_and_stays_near_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(converted(dir.path(), OutType::Q4KM)).unwrap();
    let type_of = |t: &str| {
        file.tensor(t)
            .unwrap()
            .ggml_type()
            .to_string()
            .to_uppercase()
    };
    for (name, ty) in [
        ("token_embd.weight", "Q8_0"),
        ("blk.0.attn_q.weight", "Q5_0"),
        ("blk.0.attn_v.weight", "Q5_0"),
        ("blk.2.attn_v.weight", "Q8_0"),
        ("blk.0.ffn_down.weight", "Q4_K"),
        ("blk.2.ffn_down.weight", "Q6_K"),
        ("blk.5.ffn_down.weight", "Q6_K"),
        ("blk.3.ffn_up.weight", "Q5_0"),
    ] {
        assert_eq!(type_of(name), ty, "{name}");
    }
    assert_eq!(file.metadata().file_type().unwrap(), Some(15));
    let worst = worst_cosine(OutType::Q4KM, 25);
    // Measured 0.9703; llama.cpp's llama-embedding on the same file gives 0.9704.
    assert!(worst >= 0.96, "Q4_K_M: lowest cosine {worst}");
}

#[test]
fn wordpiece_gives_the_hugging_face_tokenizer_s_ids() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(converted(dir.path(), OutType::Q8_0)).unwrap();
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    assert_eq!(tokenizer.model_name(), "bert");
    let mut wrong = Vec::new();
    for r in references() {
        // Hugging Face matches special tokens written in the text ("[CLS]"), as our
        // parse_special does.
        let ours = tokenizer.encode(&r.text, true, true);
        if ours != r.ids {
            wrong.push(format!("{:?}: ours {ours:?}, HF {:?}", r.text, r.ids));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 50 differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The converted model served by `ollama-runner serve`, texts in and vectors out through
/// gRPC `Embed`: the runner's own tokenizer, embed path, pooling and normalization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_embeddings_match_the_reference_and_generate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refs = references();
    for (ty, bound) in [
        (OutType::F32, 0.9999),
        (OutType::F16, 0.999),
        (OutType::Q8_0, 0.99),
    ] {
        let path = converted(dir.path(), ty);
        let mut served = Served::start().await;
        let c = &mut served.client;
        c.load(pb::LoadRequest {
            protocol_version: RUNNER_PROTOCOL_VERSION,
            model_path: path.display().to_string(),
            num_threads: 2,
            ..Default::default()
        })
        .await
        .expect("load");
        let embedded = c
            .embed(pb::EmbedRequest {
                inputs: refs.iter().map(|r| r.text.clone()).collect(),
                normalize: None,
                truncate: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(embedded.embeddings.len(), refs.len());
        let tokens: usize = refs.iter().map(|r| r.ids.len()).sum();
        assert_eq!(embedded.prompt_tokens as usize, tokens);
        let worst = (embedded.embeddings.iter().zip(&refs))
            .map(|(e, r)| cosine(&e.values, &r.embedding))
            .fold(1.0, f64::min);
        eprintln!("served {ty:?}: lowest cosine {worst:.7}");
        assert!(worst >= bound, "{ty:?}: lowest cosine {worst} < {bound}");

        // The 50 inputs were packed into passes of up to num_batch tokens; each one alone
        // gives the same vector.
        for i in [0, 17, 49] {
            let alone = c
                .embed(pb::EmbedRequest {
                    inputs: vec![refs[i].text.clone()],
                    normalize: None,
                    truncate: false,
                })
                .await
                .unwrap()
                .into_inner();
            let (a, b) = (&alone.embeddings[0].values, &embedded.embeddings[i].values);
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                diff <= 1e-6,
                "{ty:?} input {i}: alone and packed differ by {diff}"
            );
        }

        if ty == OutType::Q8_0 {
            let refused = c
                .generate(crate::served::greedy("Hello", 4))
                .await
                .map(drop);
            let status = refused.expect_err("an embedding model must refuse generate");
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(
                status.message().contains("embedding model"),
                "{}",
                status.message()
            );
            assert!(
                status.message().contains("generate"),
                "{}",
                status.message()
            );

            let long = "word ".repeat(600);
            let request = |truncate| pb::EmbedRequest {
                inputs: vec![long.clone()],
                normalize: None,
                truncate,
            };
            let status = c.embed(request(false)).await.expect_err("too long");
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(
                status.message().contains("at most 512"),
                "{}",
                status.message()
            );
            let cut = c.embed(request(true)).await.unwrap().into_inner();
            assert_eq!(cut.prompt_tokens, 512);
        }
    }
}
