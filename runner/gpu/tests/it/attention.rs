//! K/V stores against `kernels`' quantizers (byte for byte) and flash attention against
//! a plain f64 softmax over the cells each token sees.

use gpu::testing::gpu_or_skip;
use gpu::{AttentionParams, Gpu, GpuError, KvType};
use kernels::quant::{dequantize_row, quantize_row};

use crate::support::{assert_close, rng, values};

/// `rows` rows of `dim` values quantized to `ty` by the CPU: the bytes, and the values
/// they decode to.
fn quantize_rows(ty: KvType, rows: &[f32], dim: usize) -> (Vec<u8>, Vec<f32>) {
    let row_bytes = ty.row_bytes(dim).unwrap();
    let n = rows.len() / dim;
    let mut bytes = vec![0u8; n * row_bytes];
    let mut decoded = vec![0f32; rows.len()];
    for ((row, out), back) in rows
        .chunks_exact(dim)
        .zip(bytes.chunks_exact_mut(row_bytes))
        .zip(decoded.chunks_exact_mut(dim))
    {
        quantize_row(ty.ggml(), row, out).unwrap();
        dequantize_row(ty.ggml(), out, back).unwrap();
    }
    (bytes, decoded)
}

/// Rows that hit the rounding edge cases: a zero block, halves for Q8_0's and Q4_0's
/// rounding (scales of exactly 1), f16 ties, subnormals and overflow.
fn edge_rows(dim: usize) -> Vec<f32> {
    let mut rows = vec![0.0; dim];
    let mut halves: Vec<f32> = (0..dim).map(|i| (i % 32) as f32 - 15.5).collect();
    for block in halves.chunks_mut(32).filter(|b| b.len() == 32) {
        block[31] = 127.0;
    }
    rows.extend(&halves);
    let mut q4: Vec<f32> = (0..dim).map(|i| (i % 16) as f32 - 7.5).collect();
    for block in q4.chunks_mut(32).filter(|b| b.len() == 32) {
        block[5] = -8.0;
        block[6] = 8.0;
    }
    rows.extend(&q4);
    let tie = 2f32.powi(-11);
    let specials = [
        1.0 + tie,
        1.0 + 3.0 * tie,
        -1.0 - tie,
        2f32.powi(-25),
        3.0 * 2f32.powi(-26),
        2f32.powi(-24) * 1.5,
        65520.0,
        65519.0,
        -1e-8,
        6.1e-5,
    ];
    rows.extend((0..dim).map(|i| specials[i % specials.len()]));
    rows
}

#[test]
fn stored_rows_are_the_bytes_ggml_quantizes_to() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = rng(31);
    for ty in KvType::ALL {
        let dims: &[usize] = match ty {
            KvType::F32 => &[1, 3, 240],
            KvType::F16 => &[2, 6, 240],
            KvType::Q8_0 | KvType::Q4_0 => &[32, 96, 576],
        };
        for &dim in dims {
            let mut rows = edge_rows(dim);
            rows.extend(values(&mut rng, 3 * dim, 3.0));
            let n = rows.len() / dim;
            // Cells out of order, with untouched cells between (and neighbours sharing a
            // word when rows are 18 or 34 bytes).
            let cells: Vec<u32> = (0..n as u32)
                .map(|t| (t * 5 + 3) % (n as u32 + 2))
                .collect();
            let n_cells = n + 2;
            let row_bytes = ty.row_bytes(dim).unwrap();
            let mut want: Vec<u8> = (0..n_cells * row_bytes)
                .map(|i| (i * 7 + 1) as u8)
                .collect();
            let cache = gpu.upload_bytes("cache", &want).unwrap();
            let src = gpu.upload_f32("rows", &rows).unwrap();
            gpu.store_kv_rows(&src, &cells, dim, ty, &cache).unwrap();
            let (bytes, _) = quantize_rows(ty, &rows, dim);
            for (t, &c) in cells.iter().enumerate() {
                let c = c as usize;
                want[c * row_bytes..(c + 1) * row_bytes]
                    .copy_from_slice(&bytes[t * row_bytes..(t + 1) * row_bytes]);
            }
            let got = gpu.read_bytes(&cache).unwrap();
            if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
                panic!(
                    "{ty:?} dim {dim}: byte {i} (cell {}, byte {} of the row) is {:#04x}, ggml writes {:#04x}",
                    i / row_bytes,
                    i % row_bytes,
                    got[i],
                    want[i]
                );
            }
        }
    }
}

#[test]
fn store_kv_rows_refuses_bad_sizes() {
    let Some(gpu) = gpu_or_skip() else { return };
    let src = gpu.zeros_f32("src", 64).unwrap();
    let cache = gpu.upload_bytes("cache", &[0; 68]).unwrap();
    let shape = |r: gpu::Result<()>| assert!(matches!(r, Err(GpuError::Shape { .. })), "{r:?}");
    shape(gpu.store_kv_rows(&src, &[0, 0], 32, KvType::Q8_0, &cache));
    shape(gpu.store_kv_rows(&src, &[2], 32, KvType::Q8_0, &cache));
    shape(gpu.store_kv_rows(&src, &[0], 33, KvType::Q8_0, &cache));
    shape(gpu.store_kv_rows(&src, &[0], 3, KvType::F16, &cache));
    shape(gpu.store_kv_rows(&src, &[0, 1, 2], 32, KvType::F32, &cache));
    shape(gpu.store_kv_rows(&src, &[0], 8, KvType::F32, &src));
    assert!(KvType::Q4_0.row_bytes(0).is_err());
    assert_eq!(KvType::Q4_0.row_bytes(64).unwrap(), 36);
    gpu.store_kv_rows(&src, &[1, 0], 32, KvType::Q8_0, &cache)
        .unwrap();
}

/// One attention problem: the cache's cells and the tokens that attend.
struct Case {
    params: AttentionParams,
    cell_pos: Vec<i32>,
    cell_seqs: Vec<u64>,
    /// Cells attention reads (the table may be longer).
    n_cells: usize,
    token_pos: Vec<i32>,
    token_seq: Vec<u32>,
}

/// 150 cells (not a multiple of 64): a prefix of 20 shared by sequences 0 and 1, then
/// both sequences' own cells interleaved, with empty cells among them; `n_cells` stops 7
/// short of the table. Seven tokens, one of sequence 2 (which has no cells) and one at a
/// position before every cell.
fn case(params: AttentionParams) -> Case {
    let mut cell_pos = Vec::new();
    let mut cell_seqs = Vec::new();
    for p in 0..20 {
        cell_pos.push(p);
        cell_seqs.push(0b11);
    }
    let (mut next0, mut next1) = (20, 20);
    for c in 20..150 {
        match c % 5 {
            0 => {
                cell_pos.push(-1);
                cell_seqs.push(0);
            }
            1 | 3 => {
                cell_pos.push(next1);
                cell_seqs.push(0b10);
                next1 += 1;
            }
            _ => {
                cell_pos.push(next0);
                cell_seqs.push(0b01);
                next0 += 1;
            }
        }
    }
    Case {
        params,
        cell_pos,
        cell_seqs,
        n_cells: 143,
        token_pos: vec![0, 19, 40, 75, 30, 70, 5, -3],
        token_seq: vec![0, 1, 0, 0, 1, 1, 2, 0],
    }
}

impl Case {
    fn sees(&self, t: usize, c: usize) -> bool {
        let (pos, seq) = (self.token_pos[t], self.token_seq[t]);
        self.cell_seqs[c] >> seq & 1 == 1
            && self.cell_pos[c] <= pos
            && self
                .params
                .window
                .is_none_or(|w| ((pos - self.cell_pos[c]) as usize) < w)
    }

    /// The f64 reference over decoded cache values.
    fn reference(&self, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let p = &self.params;
        let group = p.n_head / p.n_head_kv;
        let (k_row, v_row) = (p.n_head_kv * p.head_dim_k, p.n_head_kv * p.head_dim_v);
        let mut out = Vec::new();
        for t in 0..self.token_pos.len() {
            for h in 0..p.n_head {
                let g = h / group;
                let qh = &q[(t * p.n_head + h) * p.head_dim_k..][..p.head_dim_k];
                let scores: Vec<(usize, f64)> = (0..self.n_cells)
                    .filter(|&c| self.sees(t, c))
                    .map(|c| {
                        let kh = &k[c * k_row + g * p.head_dim_k..][..p.head_dim_k];
                        let dot: f64 = qh
                            .iter()
                            .zip(kh)
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum();
                        let s = dot * f64::from(p.scale);
                        let s = p
                            .softcap
                            .map_or(s, |cap| f64::from(cap) * (s / f64::from(cap)).tanh());
                        (c, s)
                    })
                    .collect();
                let max = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|s| (s.1 - max).exp()).sum();
                for j in 0..p.head_dim_v {
                    let sum: f64 = scores
                        .iter()
                        .map(|&(c, s)| {
                            (s - max).exp() * f64::from(v[c * v_row + g * p.head_dim_v + j])
                        })
                        .sum();
                    out.push(if scores.is_empty() {
                        0.0
                    } else {
                        (sum / total) as f32
                    });
                }
            }
        }
        out
    }

    fn check(&self, gpu: &Gpu, seed: u64) {
        let p = &self.params;
        let mut rng = rng(seed);
        let n_tokens = self.token_pos.len();
        let table = self.cell_pos.len();
        let q = values(&mut rng, n_tokens * p.n_head * p.head_dim_k, 1.0);
        let k = values(&mut rng, table * p.n_head_kv * p.head_dim_k, 1.0);
        let v = values(&mut rng, table * p.n_head_kv * p.head_dim_v, 1.0);
        let (mut k_bytes, k_decoded) = quantize_rows(p.k_type, &k, p.n_head_kv * p.head_dim_k);
        let (mut v_bytes, v_decoded) = quantize_rows(p.v_type, &v, p.n_head_kv * p.head_dim_v);
        // Empty cells hold NaN in every type (0xff bytes): attention must never read them.
        for (c, &seqs) in self.cell_seqs.iter().enumerate() {
            if seqs == 0 {
                let kr = k_bytes.len() / table;
                let vr = v_bytes.len() / table;
                k_bytes[c * kr..(c + 1) * kr].fill(0xff);
                v_bytes[c * vr..(c + 1) * vr].fill(0xff);
            }
        }
        let cells = gpu.upload_cells(&self.cell_pos, &self.cell_seqs).unwrap();
        let q_gpu = gpu.upload_f32("q", &q).unwrap();
        let k_gpu = gpu.upload_bytes("k cache", &k_bytes).unwrap();
        let v_gpu = gpu.upload_bytes("v cache", &v_bytes).unwrap();
        let out = gpu
            .zeros_f32("out", n_tokens * p.n_head * p.head_dim_v)
            .unwrap();
        gpu.flash_attention(
            &q_gpu,
            &k_gpu,
            &v_gpu,
            &cells,
            self.n_cells,
            &self.token_pos,
            &self.token_seq,
            p,
            &out,
        )
        .unwrap();
        let got = gpu.read_f32(&out).unwrap();
        let want = self.reference(&q, &k_decoded, &v_decoded);
        assert_close(&format!("{p:?}"), &got, &want, |_| 1e-4);
        // The token of sequence 2 and the one before every cell see nothing.
        let per_token = p.n_head * p.head_dim_v;
        assert!(got[6 * per_token..].iter().all(|&x| x == 0.0));
    }
}

fn params(
    (n_head, n_head_kv, head_dim_k, head_dim_v): (usize, usize, usize, usize),
    (k_type, v_type): (KvType, KvType),
) -> AttentionParams {
    AttentionParams {
        n_head,
        n_head_kv,
        head_dim_k,
        head_dim_v,
        scale: 1.0 / (head_dim_k as f32).sqrt(),
        softcap: None,
        window: None,
        k_type,
        v_type,
    }
}

#[test]
fn attention_matches_the_reference_for_every_cache_type() {
    let Some(gpu) = gpu_or_skip() else { return };
    for (i, ty) in KvType::ALL.into_iter().enumerate() {
        case(params((9, 3, 64, 64), (ty, ty))).check(gpu, 40 + i as u64);
    }
    case(params((4, 2, 128, 128), (KvType::Q8_0, KvType::Q4_0))).check(gpu, 45);
    case(params((2, 1, 128, 64), (KvType::F16, KvType::Q8_0))).check(gpu, 46);
}

#[test]
fn attention_heads_of_80_and_256() {
    let Some(gpu) = gpu_or_skip() else { return };
    case(params((9, 3, 80, 80), (KvType::F16, KvType::F16))).check(gpu, 50);
    case(params((3, 3, 80, 80), (KvType::F32, KvType::F32))).check(gpu, 51);
    case(params((4, 1, 256, 256), (KvType::Q8_0, KvType::Q8_0))).check(gpu, 52);
    case(params((2, 2, 256, 256), (KvType::F16, KvType::Q4_0))).check(gpu, 53);
}

#[test]
fn attention_with_a_sliding_window_and_a_softcap() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut p = params((9, 3, 64, 64), (KvType::F16, KvType::F16));
    p.window = Some(16);
    case(p).check(gpu, 60);
    p.window = Some(1);
    case(p).check(gpu, 61);
    p.window = None;
    // Scores of several units, so a cap of 2 bends them.
    p.scale = 1.0;
    p.softcap = Some(2.0);
    case(p).check(gpu, 62);
    let mut p = params((8, 4, 256, 128), (KvType::Q8_0, KvType::F32));
    p.softcap = Some(50.0);
    p.window = Some(40);
    case(p).check(gpu, 63);
}

#[test]
fn stored_rows_are_what_attention_reads() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut p = params((4, 2, 64, 64), (KvType::Q4_0, KvType::Q8_0));
    p.window = Some(30);
    let c = case(p);
    let mut rng = rng(70);
    let table = c.cell_pos.len();
    let (k_dim, v_dim) = (2 * 64, 2 * 64);
    let k = values(&mut rng, table * k_dim, 1.0);
    let v = values(&mut rng, table * v_dim, 1.0);
    let q = values(&mut rng, c.token_pos.len() * 4 * 64, 1.0);
    let k_cache = gpu
        .zeros_f32("k", table * p.k_type.row_bytes(k_dim).unwrap() / 4)
        .unwrap();
    let v_cache = gpu
        .zeros_f32("v", table * p.v_type.row_bytes(v_dim).unwrap() / 4)
        .unwrap();
    let all: Vec<u32> = (0..table as u32).collect();
    let k_gpu = gpu.upload_f32("k rows", &k).unwrap();
    let v_gpu = gpu.upload_f32("v rows", &v).unwrap();
    gpu.store_kv_rows(&k_gpu, &all, k_dim, p.k_type, &k_cache)
        .unwrap();
    gpu.store_kv_rows(&v_gpu, &all, v_dim, p.v_type, &v_cache)
        .unwrap();
    let cells = gpu.upload_cells(&c.cell_pos, &c.cell_seqs).unwrap();
    let out = gpu.zeros_f32("out", c.token_pos.len() * 4 * 64).unwrap();
    let q_gpu = gpu.upload_f32("q", &q).unwrap();
    gpu.flash_attention(
        &q_gpu,
        &k_cache,
        &v_cache,
        &cells,
        c.n_cells,
        &c.token_pos,
        &c.token_seq,
        &p,
        &out,
    )
    .unwrap();
    let (_, k_decoded) = quantize_rows(p.k_type, &k, k_dim);
    let (_, v_decoded) = quantize_rows(p.v_type, &v, v_dim);
    let want = c.reference(&q, &k_decoded, &v_decoded);
    assert_close(
        "stored then attended",
        &gpu.read_f32(&out).unwrap(),
        &want,
        |_| 1e-4,
    );
}

#[test]
fn attention_refuses_bad_shapes() {
    let Some(gpu) = gpu_or_skip() else { return };
    let good = params((4, 2, 64, 64), (KvType::Q8_0, KvType::F16));
    let cells = gpu.upload_cells(&[0, 1, 2], &[1, 1, 1]).unwrap();
    let q = gpu.zeros_f32("q", 2 * 4 * 64).unwrap();
    let k = gpu.zeros_f32("k", 3 * 2 * 68 / 4).unwrap();
    let v = gpu.zeros_f32("v", 3 * 2 * 64 * 2 / 4).unwrap();
    let out = gpu.zeros_f32("out", 2 * 4 * 64).unwrap();
    let run = |p: &AttentionParams, n_cells: usize, pos: &[i32], seq: &[u32]| {
        gpu.flash_attention(&q, &k, &v, &cells, n_cells, pos, seq, p, &out)
    };
    run(&good, 3, &[1, 2], &[0, 0]).unwrap();
    let shape = |r: gpu::Result<()>| assert!(matches!(r, Err(GpuError::Shape { .. })), "{r:?}");
    shape(run(&good, 4, &[1, 2], &[0, 0]));
    shape(run(&good, 3, &[1, 2], &[0]));
    shape(run(&good, 3, &[1, 2], &[0, 64]));
    shape(run(&good, 3, &[1, 2, 3], &[0, 0, 0]));
    let mut p = good;
    p.n_head = 3;
    shape(run(&p, 3, &[1], &[0]));
    let mut p = good;
    p.head_dim_k = 80;
    shape(run(&p, 3, &[1], &[0]));
    let mut p = good;
    p.head_dim_v = 512;
    shape(run(&p, 3, &[1], &[0]));
    let mut p = good;
    p.softcap = Some(0.0);
    shape(run(&p, 3, &[1], &[0]));
    let mut p = good;
    p.n_head_kv = 4;
    shape(run(&p, 3, &[1], &[0]));
    shape(gpu.flash_attention(&q, &k, &v, &cells, 3, &[1], &[0], &good, &q));
    assert!(gpu.upload_cells(&[0], &[]).is_err());
}
