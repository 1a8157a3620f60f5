// y[t][r] = sum_i W[r][i] * x[t][i] with x quantized to 8 bits (quantize_q8.wgsl): each
// run of 32 weights as bytes q and (d, m) with W = d * q + m (the type file's qrun), each
// run of x as bytes and (dx, dx * sum qx); a run adds d * dx * dot(q, qx) + m * dx * sum qx,
// the dot product four bytes at a time (dot4I8Packed: one instruction where the device
// has the packed 4x8-bit dot product, a few shifts elsewhere).
//
// Appended to common.wgsl and one weight-type file that defines qrun. The grid, the
// parts, the lanes and the reduction are matmul.wgsl's.

struct Params {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    y_row0: u32,
    y_stride: u32,
    w_row0: u32,
}

@group(0) @binding(1) var<storage, read> xq: array<u32>;
@group(0) @binding(2) var<storage, read> xs: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 64u;
const LANES: u32 = 8u;
const ROWS: u32 = WG / LANES;
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
    var q: array<u32, 8>;
    if (row < p.rows) {
        for (var u = lane; u < runs; u += LANES) {
            let dm = qrun(row_base + (u / runs_per_block) * BLOCK_BYTES, u % runs_per_block, &q);
            for (var t = 0u; t < n_t; t++) {
                let run = (t0 + t) * runs + u;
                var dot = 0;
                for (var i = 0u; i < 8u; i++) {
                    dot += dot4I8Packed(q[i], xq[run * 8u + i]);
                }
                let s = xs[run];
                acc[t] += dm.x * s.x * f32(dot) + dm.y * s.y;
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
