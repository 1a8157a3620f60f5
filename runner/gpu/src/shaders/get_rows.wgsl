// out[t] = dequantized row ids[t] of W: the embedding lookup.
//
// Appended to common.wgsl and one weight-type file. One workgroup per token id (grid x
// and y together number the token); its invocations take the row's runs of 32 values in
// turn. A matrix in several parts (see matmul.wgsl) is read by one dispatch per part,
// each writing the tokens whose rows it holds.

struct Params {
    // Rows in this part of the matrix.
    rows: u32,
    cols: u32,
    n_ids: u32,
    // The matrix row this part starts at.
    first_row: u32,
}

@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.n_ids) {
        return;
    }
    // Ids of other parts (and ids past the end, which the wrapper refuses) are skipped.
    let id = ids[t];
    if (id < p.first_row || id - p.first_row >= p.rows) {
        return;
    }
    let row = id - p.first_row;
    let runs = p.cols / 32u;
    let runs_per_block = BLOCK_VALUES / 32u;
    let row_base = row * (p.cols / BLOCK_VALUES) * BLOCK_BYTES;
    var vals: array<f32, 32>;
    for (var u = lid; u < runs; u += WG) {
        dequant32(row_base + (u / runs_per_block) * BLOCK_BYTES, u % runs_per_block, &vals);
        for (var l = 0u; l < 32u; l++) {
            out[t * p.cols + u * 32u + l] = vals[l];
        }
    }
}
