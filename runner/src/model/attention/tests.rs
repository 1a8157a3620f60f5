//! Attention over the cache: windows, sequences sharing cells, and the flash path
//! against the reference path.

use super::*;
use crate::kvcache::{CacheType, KvConfig, KvLayout};

const SHAPE: AttentionShape = AttentionShape {
    n_head: 4,
    n_head_kv: 2,
    head_dim_k: 64,
    head_dim_v: 32,
    scale: 0.35,
    softcap: None,
};

/// Deterministic values in (-1, 1) that differ for every index and `salt`.
fn values(len: usize, salt: f32) -> Vec<f32> {
    (0..len)
        .map(|i| (i as f32 * 0.731 + salt * 12.9898).sin())
        .collect()
}

fn cache(num_ctx: usize, n_seq: usize, window: Option<usize>, config: KvConfig) -> KvCache {
    let layout = KvLayout {
        k_dim: SHAPE.k_dim(),
        v_dim: SHAPE.v_dim(),
        head_dim_k: SHAPE.head_dim_k,
        head_dim_v: SHAPE.head_dim_v,
        windows: vec![window],
    };
    let config = KvConfig {
        num_ctx,
        num_parallel: n_seq,
        num_batch: num_ctx * n_seq,
        ..config
    };
    KvCache::new(layout, config).unwrap()
}

/// Runs `batch` through one attention layer of `cache` with projections `q`, `k`, `v`
/// (one row per token); returns every token's output.
fn run(
    pool: &ThreadPool,
    cache: &mut KvCache,
    batch: &Batch,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Vec<f32> {
    let (mut q, mut k, mut v) = (q.to_vec(), k.to_vec(), v.to_vec());
    let c = *cache.config();
    let compute = ComputeConfig {
        num_ctx: c.num_ctx,
        num_batch: c.num_batch,
        num_parallel: c.num_parallel,
        flash_attention: c.flash_attention,
        threads: pool.threads(),
    };
    let mut scratch = AttentionScratch::new(&SHAPE, &compute);
    let mut out = vec![0.0; batch.len() * SHAPE.out_dim()];
    let placement = cache.place(batch.seqs(), batch.positions()).unwrap();
    let isa = Isa::detect().unwrap();
    attention(
        pool,
        isa,
        &SHAPE,
        cache,
        0,
        &placement,
        batch,
        &mut q,
        &mut k,
        &mut v,
        &mut scratch,
        &mut out,
    )
    .unwrap();
    out
}

/// `n` tokens of sequence 0 at positions `0..n` in a fresh reference cache.
fn run_one(pool: &ThreadPool, window: Option<usize>, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let n = q.len() / SHAPE.q_dim();
    let mut kv = cache(n, 1, window, KvConfig::reference(n));
    let mut batch = Batch::new();
    for t in 0..n {
        batch.push(1, t as i32, 0, false);
    }
    run(pool, &mut kv, &batch, q, k, v)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_token_past_the_window_sees_only_the_window() {
    let pool = ThreadPool::new(2).unwrap();
    let (n, w) = (40, 7);
    let q = values(n * SHAPE.q_dim(), 1.0);
    let k = values(n * SHAPE.k_dim(), 2.0);
    let v = values(n * SHAPE.v_dim(), 3.0);
    let windowed = run_one(&pool, Some(w), &q, &k, &v);
    let od = SHAPE.out_dim();
    for t in [w - 1, w, n - 1] {
        let first = t + 1 - w;
        let only = run_one(
            &pool,
            None,
            &q[first * SHAPE.q_dim()..(t + 1) * SHAPE.q_dim()],
            &k[first * SHAPE.k_dim()..(t + 1) * SHAPE.k_dim()],
            &v[first * SHAPE.v_dim()..(t + 1) * SHAPE.v_dim()],
        );
        let (a, b) = (&windowed[t * od..(t + 1) * od], &only[(w - 1) * od..w * od]);
        assert!(max_diff(a, b) <= 1e-6, "token {t}: {a:?} vs {b:?}");
    }
    let plain = run_one(&pool, None, &q, &k, &v);
    let last = (n - 1) * od..n * od;
    assert!(max_diff(&plain[last.clone()], &windowed[last]) > 1e-3);
}

#[test]
fn a_window_of_one_returns_each_tokens_own_value() {
    let pool = ThreadPool::new(2).unwrap();
    let n = 13;
    let q = values(n * SHAPE.q_dim(), 7.0);
    let k = values(n * SHAPE.k_dim(), 8.0);
    let v = values(n * SHAPE.v_dim(), 9.0);
    let own = run_one(&pool, Some(1), &q, &k, &v);
    for t in 0..n {
        for h in 0..SHAPE.n_head {
            let (kv_h, hv) = (h / SHAPE.group(), SHAPE.head_dim_v);
            let o = &own[t * SHAPE.out_dim() + h * hv..][..hv];
            let want = &v[t * SHAPE.v_dim() + kv_h * hv..][..hv];
            assert!(max_diff(o, want) <= 1e-6, "token {t} head {h}");
        }
    }
}

/// Three sequences: 0 and 1 share a 20-token prefix (sequence 1 continues from it with
/// its own tokens), 2 is unrelated; then one decode token each. Returns the decode
/// outputs for `config`.
fn shared_prefix_decode(pool: &ThreadPool, window: Option<usize>, config: KvConfig) -> Vec<f32> {
    let mut kv = cache(64, 3, window, config);
    let (qd, kd, vd) = (SHAPE.q_dim(), SHAPE.k_dim(), SHAPE.v_dim());
    let prompt = |kv: &mut KvCache, seq: usize, first: usize, n: usize, salt: f32| {
        let mut batch = Batch::new();
        for p in first..first + n {
            batch.push(1, p as i32, seq, false);
        }
        let (q, k, v) = (
            values(n * qd, salt),
            values(n * kd, salt + 1.0),
            values(n * vd, salt + 2.0),
        );
        run(pool, kv, &batch, &q, &k, &v);
    };
    prompt(&mut kv, 0, 0, 30, 1.0);
    kv.seq_cp(0, 1, 0..20);
    prompt(&mut kv, 1, 20, 15, 2.0);
    prompt(&mut kv, 2, 0, 25, 3.0);
    let mut batch = Batch::new();
    for (seq, pos) in [(0, 30), (1, 35), (2, 25)] {
        batch.push(1, pos, seq, true);
    }
    let (q, k, v) = (
        values(3 * qd, 4.0),
        values(3 * kd, 5.0),
        values(3 * vd, 6.0),
    );
    run(pool, &mut kv, &batch, &q, &k, &v)
}

#[test]
fn flash_attention_equals_the_reference_with_shared_prefixes_and_windows() {
    let pool = ThreadPool::new(2).unwrap();
    for window in [None, Some(9)] {
        let reference = shared_prefix_decode(&pool, window, KvConfig::reference(64));
        let flash = shared_prefix_decode(
            &pool,
            window,
            KvConfig {
                flash_attention: true,
                ..KvConfig::reference(64)
            },
        );
        let scale = reference.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let diff = max_diff(&reference, &flash);
        assert!(diff <= 1e-4 * scale, "window {window:?}: {diff} of {scale}");
    }
}

#[test]
fn a_sequence_sharing_a_prefix_gets_what_it_would_get_alone() {
    let pool = ThreadPool::new(1).unwrap();
    let cfg = KvConfig::reference(64);
    let base = shared_prefix_decode(&pool, None, cfg);
    // Sequence 1 alone in its cache, with the same 20-token prefix and the same own
    // tokens: its decode output equals the one it had sharing cells with sequence 0 (and
    // sitting next to sequence 2) - it saw neither sequence 0's tail nor sequence 2.
    let hv = SHAPE.out_dim();
    let mut kv = cache(64, 3, None, cfg);
    let (qd, kd, vd) = (SHAPE.q_dim(), SHAPE.k_dim(), SHAPE.v_dim());
    let mut batch = Batch::new();
    for p in 0..20 {
        batch.push(1, p, 1, false);
    }
    let (q, k, v) = (
        values(30 * qd, 1.0),
        values(30 * kd, 2.0),
        values(30 * vd, 3.0),
    );
    run(
        &pool,
        &mut kv,
        &batch,
        &q[..20 * qd],
        &k[..20 * kd],
        &v[..20 * vd],
    );
    let mut batch = Batch::new();
    for p in 20..35 {
        batch.push(1, p, 1, false);
    }
    let (q, k, v) = (
        values(15 * qd, 2.0),
        values(15 * kd, 3.0),
        values(15 * vd, 4.0),
    );
    run(&pool, &mut kv, &batch, &q, &k, &v);
    let mut batch = Batch::new();
    batch.push(1, 35, 1, true);
    let (q, k, v) = (
        values(3 * qd, 4.0),
        values(3 * kd, 5.0),
        values(3 * vd, 6.0),
    );
    let alone = run(
        &pool,
        &mut kv,
        &batch,
        &q[qd..2 * qd],
        &k[kd..2 * kd],
        &v[vd..2 * vd],
    );
    assert!(max_diff(&alone, &base[hv..2 * hv]) <= 1e-6);
}

#[test]
fn every_cache_type_runs_flash_attention_close_to_the_reference_on_the_same_cache() {
    let pool = ThreadPool::new(2).unwrap();
    for ty in CacheType::ALL {
        let cfg = KvConfig {
            type_k: ty,
            type_v: ty,
            ..KvConfig::reference(64)
        };
        let reference = shared_prefix_decode(&pool, Some(17), cfg);
        let flash = shared_prefix_decode(
            &pool,
            Some(17),
            KvConfig {
                flash_attention: true,
                ..cfg
            },
        );
        // The reference reads the same stored rows, dequantized; flash attention also
        // quantizes the query to 8 bits against a quantized key, as llama.cpp does.
        let budget = match ty {
            CacheType::F32 | CacheType::F16 => 1e-4,
            _ => 2e-2,
        };
        let diff = max_diff(&reference, &flash);
        assert!(diff <= budget, "{ty}: {diff}");
    }
}

/// A decode step of two sequences deep enough for several chunks each, on `threads`
/// threads: few threads make each unit take every K/V head of a chunk, many keep a unit
/// per head.
fn deep_decode(threads: usize) -> Vec<f32> {
    let pool = ThreadPool::new(threads).unwrap();
    let config = KvConfig {
        flash_attention: true,
        ..KvConfig::reference(4096)
    };
    let mut kv = cache(4096, 2, None, config);
    let (qd, kd, vd) = (SHAPE.q_dim(), SHAPE.k_dim(), SHAPE.v_dim());
    for (seq, n, salt) in [(0, 1500, 1.0), (1, 700, 2.0)] {
        let mut batch = Batch::new();
        for p in 0..n {
            batch.push(1, p as i32, seq, false);
        }
        let (q, k, v) = (
            values(n * qd, salt),
            values(n * kd, salt + 1.0),
            values(n * vd, salt + 2.0),
        );
        run(&pool, &mut kv, &batch, &q, &k, &v);
    }
    let mut batch = Batch::new();
    batch.push(1, 1500, 0, true);
    batch.push(1, 700, 1, true);
    let (q, k, v) = (
        values(2 * qd, 4.0),
        values(2 * kd, 5.0),
        values(2 * vd, 6.0),
    );
    run(&pool, &mut kv, &batch, &q, &k, &v)
}

#[test]
fn a_decode_step_sums_the_same_with_a_unit_per_head_or_per_chunk() {
    // Nine chunks of 256 positions: two threads group the heads, sixteen do not.
    let (grouped, per_head) = (deep_decode(2), deep_decode(16));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&grouped), bits(&per_head));
    assert!(grouped.iter().any(|&x| x != 0.0));
}
