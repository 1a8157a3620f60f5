// y[t][r] = sum_i W[r][i] * x[t][i]: a quantized weight matrix times f32 activations.
//
// Appended to common.wgsl and one weight-type file, which define `w`, BLOCK_VALUES,
// BLOCK_BYTES and dequant32. A matrix too large for one binding comes in parts of whole
// rows, one dispatch each, writing its rows at y_row0 of rows y_stride wide; one expert
// of a stack of experts is the part's rows from w_row0.
// A workgroup of 64 computes ROWS rows for up to TOKENS tokens (grid: x and y together
// number the group of rows, z the group of tokens); the LANES invocations of a row take
// its runs of 32 weights in turn, dequantize each once and multiply it into the
// accumulators of every token, then a tree reduction in workgroup memory (no subgroup
// operations, so it runs anywhere) sums each row's LANES partial sums per token.
// Accumulation is f32. Several rows per workgroup matter where a workgroup is expensive:
// lavapipe spends about 30 us on each.

struct Params {
    // Rows in this part of the matrix.
    rows: u32,
    cols: u32,
    n_tokens: u32,
    // Index in y of this part's first row.
    y_row0: u32,
    // Rows of the whole matrix: the length of one token's output in y.
    y_stride: u32,
    // The part's row this dispatch calls row 0 (one expert of a stack of experts).
    w_row0: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
const LANES: u32 = 8u;
const ROWS: u32 = WG / LANES;
// At most LANES: lane t writes token t.
const TOKENS: u32 = 8u;

var<workgroup> partial: array<array<f32, WG>, TOKENS>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lid % LANES;
    let first = lid - lane;
    let row = (wid.x + wid.y * nwg.x) * ROWS + lid / LANES;
    let t0 = wid.z * TOKENS;
    let n_t = min(TOKENS, p.n_tokens - t0);
    let runs = p.cols / 32u;
    let runs_per_block = BLOCK_VALUES / 32u;
    let row_base = (p.w_row0 + row) * (p.cols / BLOCK_VALUES) * BLOCK_BYTES;

    var acc = array<f32, TOKENS>();
    var vals: array<f32, 32>;
    if (row < p.rows) {
        for (var u = lane; u < runs; u += LANES) {
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
    }
    for (var t = 0u; t < TOKENS; t++) {
        partial[t][lid] = acc[t];
    }
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if (lane < stride) {
            for (var t = 0u; t < TOKENS; t++) {
                partial[t][lid] += partial[t][lid + stride];
            }
        }
        workgroupBarrier();
    }
    if (row < p.rows && lane < n_t) {
        y[(t0 + lane) * p.y_stride + p.y_row0 + row] = partial[lane][first];
    }
}
