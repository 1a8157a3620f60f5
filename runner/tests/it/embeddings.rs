//! Embeddings: the final hidden states after the model's final norm, pooled per input.
//! They do not depend on how the input is split into passes or on what shares a pass,
//! and they are llama.cpp's (`embedding=True` with that pooling; the first 8 values and
//! the L2 norm are stored in [`LLAMA_CPP`]).

use e2e::TestModel::{self, Gemma3, SmolLm2};
use runner::kvcache::KvConfig;
use runner::model::pooling::Pooler;
use runner::model::pooling::Pooling::{self, Last, Mean};
use runner::model::{self, Batch, Logits, Model, Output};
use runner::tokenizer::TokenId;

use crate::support::{load, reference_cache};

const THREADS: usize = 2;

const TEXTS: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map text to vectors.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
];

/// (model, pooling, index in [`TEXTS`], tokens, first 8 values, L2 norm) of llama.cpp's
/// unnormalized embedding, from llama-cpp-python 0.3.36's bindings over the peer build
/// (docs/PEER.md) on ggml's reference path (no repacking, no tiled products, F32 K/V,
/// flash attention off), with `pip install diskcache` and, per model, pooling (1 mean,
/// 3 last) and text:
///
/// ```sh
/// GGML_CPU_TILED_MM=0 LLAMA_CPP_LIB_PATH=/opt/peer/llama.cpp/build/bin \
/// PYTHONPATH=/tmp/llamacpp-src/llama_cpp_python-0.3.36 python3 -c '
/// import sys, numpy as np, llama_cpp as L, llama_cpp.llama_cpp as C; d = C.llama_model_default_params
/// C.llama_model_default_params = lambda: (lambda p: setattr(p, "use_extra_bufts", False) or p)(d())
/// m = L.Llama(model_path=sys.argv[1], embedding=True, pooling_type=int(sys.argv[2]), n_ctx=512,
///     n_batch=512, n_threads=2, flash_attn=False, type_k=0, type_v=0, verbose=False)
/// for t in sys.argv[3:]: e = np.array(m.embed(t), np.float32); print(len(m.tokenize(t.encode())), e[:8], np.linalg.norm(e))
/// ' MODEL.gguf POOLING TEXT...
/// ```
///
/// On the whole vectors (576 and 640 values) ours differ from these by at most 8.5e-8 of
/// the norm for mean (f32 rounding of the mean) and not at all for last.
#[rustfmt::skip]
const LLAMA_CPP: [(TestModel, Pooling, usize, usize, [f32; 8], f32); 12] = [
    (SmolLm2, Mean, 0, 10, [-1.2518544, -0.00715449, -0.089400075, 1.4976344, 0.34235263, -0.3661558, 0.34499085, -1.8148766], 26.801754),
    (SmolLm2, Mean, 1, 7, [-0.48739025, -1.1502088, -0.6405442, 0.39193007, -0.07797892, -0.1349035, -0.79479396, 0.21425024], 45.230255),
    (SmolLm2, Mean, 2, 15, [-0.785783, -0.15220225, -0.59359205, 0.6604729, 0.6561149, -0.1580529, 0.49575803, -0.3134468], 33.564056),
    (SmolLm2, Last, 0, 10, [-1.6122211, -0.21392444, 0.49408832, 0.8434464, 1.0118412, -1.0704445, -0.59200567, -1.8423083], 49.08509),
    (SmolLm2, Last, 1, 7, [-0.56262875, -1.4827478, -0.96507066, 0.9914702, 0.26326948, -0.6702978, -1.5959258, -0.13480285], 49.45933),
    (SmolLm2, Last, 2, 15, [-1.2970536, -0.49969137, -0.3380566, 0.58462626, 0.32206926, -1.2084268, -0.44375774, -1.1944488], 47.0532),
    (Gemma3, Mean, 0, 11, [-1.4625187, -2.904353, -0.7073253, -7.306793, -1.7506145, 0.09416322, -0.15858561, -2.137118], 79.85262),
    (Gemma3, Mean, 1, 8, [0.37710735, -2.7177062, 1.1539495, 20.39245, -4.0232143, 1.57587, 0.71122944, 2.8786316], 81.565475),
    (Gemma3, Mean, 2, 16, [-0.80698305, -3.2441802, -0.0021190383, -8.224501, -2.254795, -1.76511, 1.4760705, 2.5249135], 75.19662),
    (Gemma3, Last, 0, 11, [1.6695101, -6.469895, -0.4955723, -1.9791296, -2.8169503, 2.0676794, -0.59413767, -2.6204216], 82.726524),
    (Gemma3, Last, 1, 8, [0.3452904, -5.818133, 1.4875345, 31.8028, -6.0274253, 1.2431334, -1.5622852, 1.1799676], 110.45309),
    (Gemma3, Last, 2, 16, [-0.17003655, -0.25114104, -0.5476107, -3.3532999, 1.1882043, 0.45309484, 1.8432984, 1.1424388], 91.91525),
];

/// The pooler of `tokens` (sequence 0), run `chunk` tokens a pass; `neighbour`
/// (sequence 1) shares every pass, asking output of all its tokens.
fn pooled(
    model: &mut dyn Model,
    tokens: &[TokenId],
    pooling: Pooling,
    chunk: usize,
    neighbour: &[TokenId],
) -> Pooler {
    let kv = KvConfig {
        num_parallel: 2,
        ..reference_cache()
    };
    let mut cache = model::new_cache(model, kv).unwrap();
    let n_embd = model.n_embd();
    let mut pooler = Pooler::new(pooling, n_embd);
    let (mut batch, mut out) = (Batch::new(), Logits::new());
    let len = tokens.len();
    for start in (0..len).step_by(chunk) {
        batch.clear();
        batch.set_output(Output::Embeddings);
        for (i, &token) in tokens.iter().enumerate().skip(start).take(chunk) {
            batch.push(token, i as i32, 0, pooling.wants_token(i, len));
            if let Some(&t) = neighbour.get(i) {
                batch.push(t, i as i32, 1, true);
            }
        }
        model.forward(&batch, &mut cache, &mut out).unwrap();
        assert_eq!((out.output(), out.width()), (Output::Embeddings, n_embd));
        pooler.push_batch(&batch, &out, 0).unwrap();
    }
    pooler
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// `max |a - b|` relative to `scale`.
fn relative_error(a: &[f32], b: &[f32], scale: f32) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs());
    diff.fold(0.0, f32::max) / scale
}

#[test]
fn embeddings_do_not_depend_on_chunks_or_batch_neighbours() {
    let (tokenizer, mut model) = load(SmolLm2, THREADS);
    let tokens = tokenizer.encode(TEXTS[2], true, false);
    let neighbour = tokenizer.encode(TEXTS[0], true, false);
    for pooling in [Mean, Last] {
        let mut run = |chunk, neighbour| {
            let pooler = pooled(model.as_mut(), &tokens, pooling, chunk, neighbour);
            pooler.finish(false).unwrap()
        };
        let whole = run(tokens.len(), &[]);
        let chunked = run(3, &[]);
        let shared = run(tokens.len(), &neighbour);
        for (what, v) in [
            ("in chunks of 3", chunked),
            ("beside another input", shared),
        ] {
            let err = relative_error(&v, &whole, norm(&whole));
            assert!(err < 1e-4, "{pooling} {what}: relative error {err:e}");
        }
    }
}

#[test]
fn embeddings_are_llama_cpps() {
    for test_model in [SmolLm2, Gemma3] {
        let (tokenizer, mut model) = load(test_model, THREADS);
        let cases = LLAMA_CPP.iter().filter(|case| case.0 == test_model);
        for &(_, pooling, text, n_tokens, first, want_norm) in cases {
            let what = format!("{test_model:?} {pooling} {:?}", TEXTS[text]);
            let tokens = tokenizer.encode(TEXTS[text], true, false);
            assert_eq!(tokens.len(), n_tokens, "{what}: tokens");
            let pooler = pooled(model.as_mut(), &tokens, pooling, tokens.len(), &[]);
            let raw = pooler.clone().finish(false).unwrap();
            let err = relative_error(&raw[..8], &first, want_norm);
            let norm_err = (norm(&raw) - want_norm).abs() / want_norm;
            assert!(
                err < 1e-5 && norm_err < 1e-5,
                "{what}: {err:e}, norm {norm_err:e}"
            );
            let unit = pooler.finish(true).unwrap();
            let want_unit: Vec<f32> = first.iter().map(|v| v / want_norm).collect();
            assert!(relative_error(&unit[..8], &want_unit, 1.0) < 1e-5, "{what}");
            assert!((norm(&unit) - 1.0).abs() < 1e-5, "{what}: not unit length");
        }
    }
}
