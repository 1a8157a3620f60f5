//! nomic-bert (nomic-embed-text's encoder: RoPE instead of position embeddings, fused QKV,
//! SwiGLU) on a tiny random model in F32 and Q8_0 (`scripts/make-synthetic-models.py`
//! with `SYNTHETIC_ARCHS=nomic-bert`, written on first use; MiniLM's WordPiece
//! vocabulary), against llama.cpp's `llama-embedding` on the same files.
//!
//! References: `tests/data/embedding-refs-nomic-synthetic.json`, written by
//! `scripts/make-nomic-refs.sh` (the command lines are in the file): eight varied
//! sentences embedded in one run, each as its own sequence, mean-pooled as the file says
//! and L2-normalized, with `llama-tokenize`'s ids of each.

use std::path::Path;
use std::sync::Arc;

use gguf::{GgufFile, GgufWriter, Metadata};
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use runner::kvcache::KvConfig;
use runner::model::pooling::{Pooler, Pooling};
use runner::model::{self, Batch, LoadOptions, Logits, Model, Numerics, Output};
use runner::tokenizer::{TokenId, Tokenizer};
use serde_json::Value;
use tonic::Code;

use crate::served::Served;

/// The file types, each with the lowest cosine to llama.cpp's vectors we accept.
const TYPES: [(&str, f64); 2] = [("F32", 0.9999), ("Q8_0", 0.99)];

/// One reference sentence of one file type.
struct Sentence {
    text: String,
    ids: Vec<TokenId>,
    embedding: Vec<f32>,
}

fn references(ty: &str) -> Vec<Sentence> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/embedding-refs-nomic-synthetic.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let numbers = |v: &Value| -> Vec<f64> {
        (v.as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let sentences = doc["types"][ty]["sentences"].as_array().unwrap();
    sentences
        .iter()
        .map(|s| Sentence {
            text: s["text"].as_str().unwrap().to_owned(),
            ids: numbers(&s["ids"])
                .into_iter()
                .map(|x| x as TokenId)
                .collect(),
            embedding: numbers(&s["embedding"])
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = (a.iter().zip(b))
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn options(numerics: Numerics) -> LoadOptions {
    LoadOptions {
        threads: 2,
        kv: KvConfig {
            num_batch: 512,
            num_parallel: 8,
            ..KvConfig::new(512)
        },
        numerics,
        device: None,
    }
}

fn load(ty: &str, numerics: Numerics) -> (Tokenizer, Box<dyn Model>) {
    let file = Arc::new(GgufFile::open(e2e::synthetic_model("nomic-bert", ty)).unwrap());
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    (tokenizer, model::load(file, &options(numerics)).unwrap())
}

/// Every sentence's ids in one pass, sequence by sequence, mean-pooled and normalized.
fn embed_packed(model: &mut dyn Model, inputs: &[Vec<TokenId>]) -> Vec<Vec<f32>> {
    let kv = KvConfig {
        num_parallel: inputs.len(),
        ..options(Numerics::Exact).kv
    };
    let mut cache = model::new_cache(&*model, kv).unwrap();
    let (mut batch, mut out) = (Batch::new(), Logits::new());
    batch.set_output(Output::Embeddings);
    for (seq, ids) in inputs.iter().enumerate() {
        for (pos, &id) in ids.iter().enumerate() {
            batch.push(id, pos as i32, seq, true);
        }
    }
    model.forward(&batch, &mut cache, &mut out).unwrap();
    (0..inputs.len())
        .map(|seq| {
            let mut pooler = Pooler::new(Pooling::Mean, model.n_embd());
            pooler.push_batch(&batch, &out, seq).unwrap();
            pooler.finish(true).unwrap()
        })
        .collect()
}

/// The lowest cosine of `vectors` to the references, with its sentence.
fn worst(vectors: &[Vec<f32>], refs: &[Sentence]) -> (f64, String) {
    (vectors.iter().zip(refs))
        .map(|(v, r)| (cosine(v, &r.embedding), r.text.clone()))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap()
}

#[test]
fn nomic_bert_tokens_are_llama_cpps() {
    for (ty, _) in TYPES {
        let (tokenizer, model) = load(ty, Numerics::Exact);
        assert_eq!(model.architecture(), "nomic-bert");
        assert_eq!(tokenizer.model_name(), "bert");
        for r in references(ty) {
            assert_eq!(tokenizer.encode(&r.text, true, true), r.ids, "{:?}", r.text);
        }
    }
}

#[test]
fn nomic_bert_embeddings_are_llama_cpps() {
    for (ty, bound) in TYPES {
        for numerics in [Numerics::Exact, Numerics::Fast] {
            let (_, mut model) = load(ty, numerics);
            let refs = references(ty);
            let ids: Vec<_> = refs.iter().map(|r| r.ids.clone()).collect();
            let packed = embed_packed(&mut *model, &ids);
            let (cos, text) = worst(&packed, &refs);
            eprintln!(
                "nomic-bert {ty} {numerics:?}: lowest cosine {cos:.9}, 1 - cos = {:.1e} ({text:?})",
                1.0 - cos
            );
            assert!(
                cos >= bound,
                "{ty} {numerics:?}: lowest cosine {cos} < {bound}"
            );
            if numerics == Numerics::Exact {
                // llama.cpp's reference path (F32 attention, flash attention off): equal
                // to the 7 decimals stored, 1 - cos ~1e-13 in both types. An F16 cast
                // of K and V (llama.cpp's flash attention) alone gives 5e-8.
                assert!(1.0 - cos <= 1e-9, "{ty} exact: 1 - cos = {:e}", 1.0 - cos);
            }
            // Alone in its pass, a sentence gives the vector it gave among the others.
            for (i, r) in refs.iter().enumerate().step_by(3) {
                let alone = embed_packed(&mut *model, std::slice::from_ref(&r.ids));
                let diff = (alone[0].iter().zip(&packed[i]))
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    diff <= 1e-6,
                    "{ty} sentence {i}: alone and packed differ by {diff}"
                );
            }
        }
    }
}

/// The Q8_0 model served by `ollama-runner serve`: texts in, llama.cpp's vectors out
/// through gRPC `Embed`, and generate refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_nomic_bert_embeds_and_refuses_generate() {
    let (ty, bound) = TYPES[1];
    let refs = references(ty);
    let mut served = Served::start().await;
    let c = &mut served.client;
    c.load(pb::LoadRequest {
        protocol_version: RUNNER_PROTOCOL_VERSION,
        model_path: e2e::synthetic_model("nomic-bert", ty).display().to_string(),
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
    let vectors: Vec<Vec<f32>> = (embedded.embeddings.into_iter())
        .map(|e| e.values)
        .collect();
    assert_eq!(vectors.len(), refs.len());
    let (cos, text) = worst(&vectors, &refs);
    eprintln!("served nomic-bert {ty}: lowest cosine {cos:.9} ({text:?})");
    assert!(cos >= bound, "served {ty}: lowest cosine {cos} < {bound}");

    let status = c
        .generate(crate::served::greedy("Hello", 4))
        .await
        .map(drop)
        .expect_err("an embedding model must refuse generate");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("embedding model"),
        "{}",
        status.message()
    );
}

/// The F32 file rewritten without the tensor `drop_tensor` or the key `drop_key`.
fn damaged(drop_tensor: &str, drop_key: &str) -> Arc<GgufFile> {
    let file = GgufFile::open(e2e::synthetic_model("nomic-bert", "F32")).unwrap();
    let mut w = GgufWriter::new();
    let mut md = Metadata::new();
    for (key, value) in file.metadata().iter().filter(|(k, _)| *k != drop_key) {
        md.insert(key, value.clone());
    }
    *w.metadata_mut() = md;
    for t in file.tensors().iter().filter(|t| t.name() != drop_tensor) {
        let data = file.tensor_data(t).unwrap();
        w.add_tensor(t.name(), t.dims(), t.ggml_type(), data)
            .unwrap();
    }
    Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap())
}

#[test]
fn a_damaged_nomic_bert_file_is_refused_by_name() {
    let error = |file| match model::load(file, &options(Numerics::Exact)) {
        Ok(_) => panic!("a damaged file loaded"),
        Err(e) => e.to_string(),
    };
    for name in [
        "blk.1.attn_qkv.weight",
        "blk.2.ffn_gate.weight",
        "token_embd_norm.bias",
        "blk.0.layer_output_norm.bias",
    ] {
        let e = error(damaged(name, ""));
        assert!(e.contains(name), "{name}: {e}");
    }
    let key = "nomic-bert.attention.layer_norm_epsilon";
    let e = error(damaged("", key));
    assert!(e.contains(key), "{e}");
}
