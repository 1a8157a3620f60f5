// Flash attention: out = softmax(scale * q·K over the visible cells) · V, one pass over
// the cells with a running maximum and sum (the softmax is rescaled as the maximum grows),
// so no score matrix is ever stored.
//
// Appended to kv_cache.wgsl twice (k_cache at binding 1, v_cache at binding 2). One
// workgroup per (token, query head), numbered over grid x and y; it takes the cells in
// blocks of 64: invocation i scores cell i of the block (-inf when the token does not see
// it), the workgroup reduces the block's maximum and sum, and invocation i accumulates
// output values i, i + 64, ... over the block's cells, whose weights sit in workgroup
// memory.

struct Params {
    n_tokens: u32,
    n_head: u32,
    // Query heads per kv head.
    group: u32,
    head_dim_k: u32,
    head_dim_v: u32,
    n_cells: u32,
    k_row_bytes: u32,
    k_head_bytes: u32,
    v_row_bytes: u32,
    v_head_bytes: u32,
    scale: f32,
    // 0 for none.
    softcap: f32,
    // 0 for none; else a cell is seen only when the token's position is less than
    // `window` past it.
    use_window: u32,
    window: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
// Per cell: position (i32), then the sequence bit set as two words, low first.
@group(0) @binding(3) var<storage, read> cells: array<u32>;
// Per token: position (i32), sequence.
@group(0) @binding(4) var<storage, read> tokens: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

const WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
// Output values per invocation.
const ACCS: u32 = MAX_HEAD_DIM / WG;

var<workgroup> q_head: array<f32, MAX_HEAD_DIM>;
var<workgroup> weight: array<f32, WG>;
var<workgroup> partial: array<f32, WG>;

fn visible(c: u32, pos: i32, seq: u32) -> bool {
    let cell_pos = bitcast<i32>(cells[3u * c]);
    let bits = cells[3u * c + 1u + seq / 32u];
    if (((bits >> (seq % 32u)) & 1u) == 0u || cell_pos > pos) {
        return false;
    }
    return p.use_window == 0u || u32(pos - cell_pos) < p.window;
}

fn workgroup_max(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    let result = workgroupUniformLoad(&partial[0]);
    // Every invocation has read the result before `partial` is written again.
    workgroupBarrier();
    return result;
}

fn workgroup_sum(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let result = workgroupUniformLoad(&partial[0]);
    workgroupBarrier();
    return result;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // (token, head) pairs are numbered token-major, as q and out are laid out.
    let pair = wid.x + wid.y * nwg.x;
    if (pair >= p.n_tokens * p.n_head) {
        return;
    }
    let t = pair / p.n_head;
    let kv_head = (pair % p.n_head) / p.group;
    let pos = bitcast<i32>(tokens[2u * t]);
    let seq = tokens[2u * t + 1u];
    for (var j = lid; j < p.head_dim_k; j += WG) {
        q_head[j] = q[pair * p.head_dim_k + j];
    }
    workgroupBarrier();

    let neg_inf = bitcast<f32>(0xff800000u);
    // The running maximum and sum of exp(score - m) over the cells so far.
    var m = neg_inf;
    var l = 0.0;
    var acc: array<f32, ACCS>;
    for (var start = 0u; start < p.n_cells; start += WG) {
        let c = start + lid;
        var s = neg_inf;
        if (c < p.n_cells && visible(c, pos, seq)) {
            let base = c * p.k_row_bytes + kv_head * p.k_head_bytes;
            var dot = 0.0;
            for (var j = 0u; j < p.head_dim_k; j++) {
                dot += q_head[j] * k_cache_value(base, j);
            }
            s = dot * p.scale;
            if (p.softcap > 0.0) {
                // tanh saturates long before 15; the clamp keeps exp-based tanh finite.
                s = p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0));
            }
        }
        let m_new = max(m, workgroup_max(s, lid));
        var e = 0.0;
        if (s != neg_inf) {
            e = exp(s - m_new);
        }
        weight[lid] = e;
        let block_sum = workgroup_sum(e, lid);
        // What the sums so far are worth against the new maximum (0 while nothing is seen).
        var rescale = 0.0;
        if (m != neg_inf) {
            rescale = exp(m - m_new);
        }
        l = l * rescale + block_sum;
        m = m_new;
        let count = min(WG, p.n_cells - start);
        for (var a = 0u; a < ACCS; a++) {
            let j = lid + a * WG;
            if (j < p.head_dim_v) {
                var sum = acc[a] * rescale;
                for (var i = 0u; i < count; i++) {
                    // Unseen cells are skipped, not multiplied by 0: their rows may hold
                    // anything, NaN included.
                    let w = weight[i];
                    if (w != 0.0) {
                        sum += w * v_cache_value((start + i) * p.v_row_bytes + kv_head * p.v_head_bytes, j);
                    }
                }
                acc[a] = sum;
            }
        }
        // `weight` is rewritten by the next block.
        workgroupBarrier();
    }

    var inv = 0.0;
    if (l > 0.0) {
        inv = 1.0 / l;
    }
    for (var a = 0u; a < ACCS; a++) {
        let j = lid + a * WG;
        if (j < p.head_dim_v) {
            out[pair * p.head_dim_v + j] = acc[a] * inv;
        }
    }
}
