//! Weights repacked at load for the fast kernels (`model::repack`) compute what the same
//! weights compute as the file stores them: the same logits, bit for bit, after a prompt
//! (the many-token kernels) and over a greedy decode (the one-token kernels), with a
//! token table that is also the output head read row by row out of its packed groups;
//! and the file on disk is left as it was.

use std::sync::Arc;

use e2e::TestModel;
use gguf::GgufFile;
use kernels::cpu::Isa;
use runner::kvcache::KvConfig;
use runner::model::{self, LoadOptions, Numerics};

use crate::support::generate;

fn options() -> LoadOptions {
    LoadOptions {
        threads: 2,
        kv: KvConfig::reference(256),
        numerics: Numerics::Fast,
        device: None,
    }
}

/// Loads `model` repacked and as stored, in fast numerics, and asserts the same logits
/// after a prompt and the same greedy decode; returns what was repacked.
fn repacked_gives_the_bits_of_its_rows(model: TestModel, isa: Isa) -> model::repack::Repacked {
    let path = model.path();
    let bytes_before = std::fs::read(&path).unwrap();
    let mut packed = GgufFile::open(&path).unwrap();
    let done = model::repack::repack_weights(&mut packed, Numerics::Fast, isa).unwrap();
    // Both models tie their head to a Q8_0 token table.
    assert!(packed.is_rewritten("token_embd.weight"), "{model:?}");
    let plain = GgufFile::open(&path).unwrap();
    let tokenizer = crate::support::tokenizer(model);
    let prompt = tokenizer.encode(
        "The quick brown fox jumps over the lazy dog because",
        true,
        true,
    );
    let runs = [Arc::new(packed), Arc::new(plain)].map(|file| {
        let mut m = model::load(file, &options()).unwrap();
        generate(m.as_mut(), &tokenizer, &prompt, 12, options().kv)
    });
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&runs[0].first_logits),
        bits(&runs[1].first_logits),
        "{model:?}: the prompt's logits differ"
    );
    assert_eq!(
        runs[0].generated, runs[1].generated,
        "{model:?}: the decode differs"
    );
    assert!(
        std::fs::read(&path).unwrap() == bytes_before,
        "{model:?}: repacking wrote to the model file"
    );
    done
}

#[test]
fn repacked_models_give_the_bits_of_their_rows() {
    let isa = Isa::detect().unwrap();
    if isa == Isa::Scalar {
        eprintln!("skipped: the scalar kernels never read repacked weights");
        return;
    }
    // SmolLM2's layers are Q4_1, 30 layers of seven matrices, and its head is the Q8_0
    // token table.
    let done = repacked_gives_the_bits_of_its_rows(TestModel::SmolLm2, isa);
    assert_eq!(done.tensors, 30 * 7 + 1, "SmolLM2: {done:?}");
    // Gemma 3's rows of 640 values are Q5_0 and Q8_0 (not whole K-quant blocks).
    let done = repacked_gives_the_bits_of_its_rows(TestModel::Gemma3, isa);
    assert!(done.tensors > 0, "Gemma 3: {done:?}");
}

#[test]
fn exact_numerics_leave_the_file_as_stored() {
    let mut file = GgufFile::open(TestModel::SmolLm2.path()).unwrap();
    let done = model::repack::repack_weights(&mut file, Numerics::Exact, Isa::best()).unwrap();
    assert_eq!(done.tensors, 0);
    assert!(!file.is_rewritten("blk.0.attn_q.weight"));
}
