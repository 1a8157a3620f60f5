// y[t][r] = sum_i W[r][i] * x[t][i]: a quantized weight matrix times f32 activations.
//
// Appended to common.wgsl and one weight-type file, which define `w`, BLOCK_VALUES,
// BLOCK_BYTES and dequant32. A matrix too large for one binding comes in parts of whole
// rows, one dispatch each, writing its rows at y_row0 of rows y_stride wide.
// One workgroup computes one row for up to TOKENS tokens
// (grid: x and y together number the row, z the group of tokens): each invocation
// dequantizes runs of 32 weights once and multiplies them into the accumulators of every
// token, then a tree reduction in workgroup memory (no subgroup operations, so it runs
// anywhere) sums the 64 partial sums of each token. Accumulation is f32.

struct Params {
    // Rows in this part of the matrix.
    rows: u32,
    cols: u32,
    n_tokens: u32,
    // Index in y of this part's first row.
    y_row0: u32,
    // Rows of the whole matrix: the length of one token's output in y.
    y_stride: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
const TOKENS: u32 = 8u;

var<workgroup> partial: array<array<f32, WG>, TOKENS>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let t0 = wid.z * TOKENS;
    let n_t = min(TOKENS, p.n_tokens - t0);
    let runs = p.cols / 32u;
    let runs_per_block = BLOCK_VALUES / 32u;
    let row_base = row * (p.cols / BLOCK_VALUES) * BLOCK_BYTES;

    var acc = array<f32, TOKENS>();
    var vals: array<f32, 32>;
    for (var u = lid; u < runs; u += WG) {
        dequant32(row_base + (u / runs_per_block) * BLOCK_BYTES, u % runs_per_block, &vals);
        for (var t = 0u; t < n_t; t++) {
            let xb = (t0 + t) * p.cols + u * 32u;
            var s = 0.0;
            for (var l = 0u; l < 32u; l++) {
                s += vals[l] * x[xb + l];
            }
            acc[t] += s;
        }
    }
    for (var t = 0u; t < TOKENS; t++) {
        partial[t][lid] = acc[t];
    }
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            for (var t = 0u; t < TOKENS; t++) {
                partial[t][lid] += partial[t][lid + stride];
            }
        }
        workgroupBarrier();
    }
    if (lid < n_t) {
        y[(t0 + lid) * p.y_stride + p.y_row0 + row] = partial[lid][0];
    }
}
