// out[t][j] = sum over s of weights[t * k + s] * outputs[(t * k + s) * width + j]: the
// weighted sum of a token's k chosen experts, added in the router's order (slot 0 first),
// as the CPU adds them. One invocation per output element; workgroups numbered over x
// and y.

struct Params {
    n: u32,
    width: u32,
    k: u32,
}

@group(0) @binding(0) var<storage, read> outputs: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
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
    let t = i / p.width;
    let j = i % p.width;
    var sum = 0.0;
    for (var s = 0u; s < p.k; s++) {
        let slot = t * p.k + s;
        let v = weights[slot] * outputs[slot * p.width + j];
        sum = select(sum + v, v, s == 0u);
    }
    dst[i] = sum;
}
