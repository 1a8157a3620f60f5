// dst row rows[k] = src row k, rows of `width` f32 values: each expert's outputs put back
// in the (token, slot) order of the router's choices. One invocation per source element;
// workgroups numbered over x and y.

struct Params {
    n: u32,
    width: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    dst[rows[i / p.width] * p.width + i % p.width] = src[i];
}
