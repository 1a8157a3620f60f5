//! The decoder on a GPU (lavapipe in CI, through `OLLAMA_GPU_TESTS=require`) against the
//! CPU's exact path: the same model file, the same prompt, logits compared position by
//! position. The GPU adds in its own order with f32 activations (the CPU's exact path
//! rounds activations to 8 bits for quantized weights, as llama.cpp does), so the bars
//! are those of llama.cpp's own fast paths: a small KL divergence and the same top
//! token almost everywhere; on F32 models, where neither side rounds activations, the
//! logits agree to f32 accuracy and the greedy text is the same.
//!
//! Without any Vulkan adapter the tests say `skipped` on stderr and pass, unless
//! `OLLAMA_GPU_TESTS=require`.

use std::sync::Arc;

use gguf::GgufFile;
use runner::kvcache::{CacheType, KvConfig};
use runner::model::{self, Batch, LoadOptions, Logits, Model, ModelError, Numerics};
use runner::tokenizer::{TokenId, Tokenizer};

use crate::support::{generate, reference_cache};

/// The decoder architectures of the synthetic models.
const ARCHS: [&str; 6] = ["qwen2", "qwen3", "llama", "gemma2", "phi3", "qwen3moe"];

/// The GPU, or `None` after `gpu::testing::gpu_or_skip` said `skipped`.
fn device() -> Option<Arc<gpu::Gpu>> {
    gpu::testing::gpu_or_skip()?;
    Some(
        model::device::open(Some("gpu"))
            .unwrap()
            .expect("a GPU adapter"),
    )
}

fn load(
    path: &std::path::Path,
    kv: KvConfig,
    device: Option<Arc<gpu::Gpu>>,
) -> Result<(Tokenizer, Box<dyn Model>), ModelError> {
    let file = GgufFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_metadata(file.metadata()).unwrap();
    let options = LoadOptions {
        threads: 2,
        kv,
        numerics: Numerics::Exact,
        device,
    };
    let file = model::prepare(file, &options)?;
    Ok((tokenizer, model::load(file, &options)?))
}

/// The logits of every position of `prompt`, in one pass.
fn all_logits(model: &mut dyn Model, kv: KvConfig, prompt: &[TokenId]) -> Vec<Vec<f32>> {
    let mut cache = model::new_cache(model, kv).unwrap();
    let mut batch = Batch::new();
    for (i, &t) in prompt.iter().enumerate() {
        batch.push(t, i as i32, 0, true);
    }
    let mut out = Logits::new();
    model.forward(&batch, &mut cache, &mut out).unwrap();
    out.rows().map(|(_, row)| row.to_vec()).collect()
}

fn log_softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    x.iter().map(|&v| v as f64 - max - sum.ln()).collect()
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}

/// Mean KL divergence of `gpu` from `cpu` over the positions, the share of equal top
/// tokens, and the largest logit difference relative to the largest CPU logit.
fn compare(cpu: &[Vec<f32>], gpu: &[Vec<f32>]) -> (f64, f64, f32) {
    assert_eq!(cpu.len(), gpu.len());
    let (mut kld, mut same, mut err) = (0.0, 0usize, 0.0f32);
    for (c, g) in cpu.iter().zip(gpu) {
        let (lc, lg) = (log_softmax(c), log_softmax(g));
        kld += lc
            .iter()
            .zip(&lg)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
        same += usize::from(argmax(c) == argmax(g));
        let scale = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let e = c
            .iter()
            .zip(g)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        err = err.max(e / scale);
    }
    let n = cpu.len() as f64;
    (kld / n, same as f64 / n, err)
}

fn prompt(tokenizer: &Tokenizer) -> Vec<TokenId> {
    let text = "The GNU General Public License is a free, copyleft license for software and \
                other kinds of works. The licenses for most software and other practical works \
                are designed to take away your freedom to share and change the works.";
    tokenizer.encode(text, true, true)
}

/// The GPU's cache in f16, the type it serves with by default; the CPU's the reference.
fn gpu_cache(num_ctx: usize) -> KvConfig {
    KvConfig {
        flash_attention: true,
        num_batch: 512,
        ..KvConfig::new(num_ctx)
    }
}

fn synthetic_on_the_gpu(arch: &str) {
    let Some(gpu) = device() else { return };
    for ty in ["F32", "Q8_0", "Q4_0"] {
        let path = e2e::synthetic_model(arch, ty);
        let (tokenizer, mut cpu) = load(&path, reference_cache(), None).unwrap();
        let prompt = prompt(&tokenizer);
        let want = all_logits(cpu.as_mut(), reference_cache(), &prompt);
        let reference = generate(cpu.as_mut(), &tokenizer, &prompt, 16, reference_cache());
        drop(cpu);
        for (type_kv, kv) in [
            (
                "f32",
                KvConfig {
                    type_k: CacheType::F32,
                    type_v: CacheType::F32,
                    ..gpu_cache(2048)
                },
            ),
            ("f16", gpu_cache(2048)),
        ] {
            let (_, mut model) = load(&path, kv, Some(Arc::clone(&gpu))).unwrap();
            assert!(model.device().is_some(), "{arch} {ty}: not on the GPU");
            let got = all_logits(model.as_mut(), kv, &prompt);
            let (kld, same, err) = compare(&want, &got);
            println!(
                "{arch} {ty} {type_kv} K/V on the GPU: mean KLD {kld:.2e}, same top {:.1}%, logit error {err:.2e}",
                same * 100.0
            );
            if ty == "F32" && type_kv == "f32" {
                assert!(err < 1e-3, "{arch} {ty}: logits differ by {err:e}");
                let generation = generate(model.as_mut(), &tokenizer, &prompt, 16, kv);
                assert_eq!(
                    generation.generated, reference.generated,
                    "{arch} {ty}: the GPU's greedy text parts from the CPU's"
                );
            }
            assert!(kld < 2e-3, "{arch} {ty} {type_kv}: mean KLD {kld:e}");
            // A tiny random model's logits are flat: the CPU's 8-bit activations (exact
            // path) against the GPU's f32 ones swap near-ties on a prompt of 44 tokens.
            assert!(same >= 0.85, "{arch} {ty} {type_kv}: same top token {same}");
        }
    }
}

#[test]
fn qwen2_runs_on_the_gpu() {
    synthetic_on_the_gpu(ARCHS[0]);
}

#[test]
fn qwen3_runs_on_the_gpu() {
    synthetic_on_the_gpu(ARCHS[1]);
}

#[test]
fn llama3_runs_on_the_gpu() {
    synthetic_on_the_gpu(ARCHS[2]);
}

#[test]
fn gemma2_runs_on_the_gpu() {
    synthetic_on_the_gpu(ARCHS[3]);
}

#[test]
fn phi3_runs_on_the_gpu() {
    synthetic_on_the_gpu(ARCHS[4]);
}

/// A mixture of experts: the router's choice made on the CPU, the chosen experts run on
/// the GPU, for a prompt's tokens at once and then one token at a time.
#[test]
fn qwen3moe_runs_on_the_gpu() {
    synthetic_on_the_gpu(ARCHS[5]);
}

/// An encoder (no GPU pass yet) asked onto the GPU runs on the CPU, says so through
/// [`Model::device`], computes what a CPU load computes, and is estimated on the CPU.
#[test]
fn an_encoder_asked_onto_the_gpu_runs_on_the_cpu_and_is_estimated_there() {
    let Some(gpu) = device() else { return };
    let path = e2e::synthetic_model("nomic-bert", "F32");
    let embed = |device: Option<Arc<gpu::Gpu>>| {
        let kv = KvConfig::new(256);
        let (tokenizer, mut model) = load(&path, kv, device).unwrap();
        let on_gpu = model.device().is_some();
        let mut cache = model::new_cache(model.as_ref(), kv).unwrap();
        let (mut batch, mut out) = (Batch::new(), Logits::new());
        batch.set_output(runner::model::Output::Embeddings);
        for (pos, id) in tokenizer
            .encode("the gpu is busy", true, true)
            .into_iter()
            .enumerate()
        {
            batch.push(id, pos as i32, 0, true);
        }
        model.forward(&batch, &mut cache, &mut out).unwrap();
        let rows: Vec<Vec<f32>> = out.rows().map(|(_, r)| r.to_vec()).collect();
        (on_gpu, rows)
    };
    let (on_gpu, asked) = embed(Some(gpu));
    assert!(!on_gpu, "an encoder reported a GPU it cannot run on");
    let (_, cpu) = embed(None);
    assert!(!cpu.is_empty());
    assert_eq!(
        asked, cpu,
        "the encoder asked onto the GPU computed something else"
    );

    let file = GgufFile::open(&path).unwrap();
    let kv = KvConfig::new(256);
    let on_device = runner::estimate::estimate(&file, &kv, 2, true).unwrap();
    let on_cpu = runner::estimate::estimate(&file, &kv, 2, false).unwrap();
    assert_eq!(on_device.device_bytes, 0);
    assert_eq!(on_device.total_bytes, on_cpu.total_bytes);
}

/// A cache type the GPU kernels do not store is refused when the cache is made.
#[test]
fn a_cache_type_the_gpu_does_not_store_is_refused() {
    let Some(gpu) = device() else { return };
    let path = e2e::synthetic_model("llama", "F32");
    let kv = KvConfig {
        type_k: CacheType::Q5_1,
        ..gpu_cache(256)
    };
    let (_, model) = load(&path, kv, Some(gpu)).unwrap();
    let message = model::new_cache(model.as_ref(), kv)
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("q5_1") && message.contains("OLLAMA_DEVICE=cpu"),
        "{message}"
    );
}

/// A test model on the GPU against the CPU's exact path (llama.cpp's reference
/// arithmetic), measured as `fast_numerics` measures the fast CPU path: `ollama-runner
/// perplexity --kl-divergence` on the GPL-3 text at a context of 512, with the GPU's
/// defaults (f16 cache, flash attention). One window (255 scored positions) keeps each
/// model to two or three minutes on lavapipe; the bars are llama.cpp's own default path
/// against its reference (`mean_kld`, `same_top` percent), held within two standard
/// errors of this smaller sample.
fn within_llama_cpps_fast_path_budget(model: e2e::TestModel, mean_kld: f64, same_top: f64) {
    if device().is_none() {
        return;
    }
    let model = model.path();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("exact.kld");
    let run = |extra: &[&str], device: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
            .arg("perplexity")
            .arg("--model")
            .arg(&model)
            .args(["--file", "/usr/share/common-licenses/GPL-3"])
            .args(["--num-ctx", "512", "--chunks", "1", "--threads", "2"])
            .args(["--device", device])
            .arg("--kl-divergence-base")
            .arg(&base)
            .args(extra)
            .env_remove("OLLAMA_NUMERICS")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    run(&crate::support::REFERENCE_FLAGS, "cpu");
    let report = run(&["--kl-divergence"], "gpu");
    let name = model.file_name().unwrap().to_string_lossy().into_owned();
    eprintln!("{name} on the GPU against exact:\n{report}");
    let figure = |label| crate::support::figure(&report, label);
    assert_eq!(figure("KLD positions:") as usize, 255, "{report}");
    let kld = figure("Mean KLD:");
    // Two standard errors of a 255-position mean (0.0002 to 0.0003 each) above the bar.
    assert!(
        kld <= mean_kld + 0.0006,
        "{name}: mean KLD {kld} above llama.cpp's {mean_kld}"
    );
    let same = figure("Same top token:");
    // The standard error of a share of 255 agreements near 95% is 1.3 points.
    assert!(
        same >= same_top - 2.6,
        "{name}: same top token {same}% below llama.cpp's {same_top}%"
    );
    let ratio = figure("PPL ratio:");
    // Two standard errors of one window's ratio (0.5% to 0.6%).
    assert!(
        (ratio - 1.0).abs() <= 0.012,
        "{name}: perplexity ratio {ratio}"
    );
}

#[test]
fn smollm2_on_the_gpu_stays_within_llama_cpps_fast_path_budget() {
    within_llama_cpps_fast_path_budget(e2e::TestModel::SmolLm2, 0.0040, 95.6);
}

#[test]
fn gemma3_on_the_gpu_stays_within_llama_cpps_fast_path_budget() {
    within_llama_cpps_fast_path_budget(e2e::TestModel::Gemma3, 0.0068, 95.1);
}
