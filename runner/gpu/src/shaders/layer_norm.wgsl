// LayerNorm of each row with weight and bias: out[i] = ((x[i] - mean) * scale) * weight[i]
// + bias[i], scale = 1 / sqrt(var(x) + eps). One workgroup per row, two f32 tree
// reductions in workgroup memory (the sum, then the centred sum of squares); the CPU twin
// sums in f64.

struct Params {
    rows: u32,
    n: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 64u;

var<workgroup> partial: array<f32, WG>;

// The sum over the workgroup of each invocation's `v`; every invocation gets it.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

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
    let base = row * p.n;
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        s += x[base + i];
    }
    let mean = workgroup_sum(lid, s) / f32(p.n);
    var q = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let c = x[base + i] - mean;
        q += c * c;
    }
    let variance = workgroup_sum(lid, q) / f32(p.n);
    let scale = 1.0 / sqrt(variance + p.eps);
    for (var i = lid; i < p.n; i += WG) {
        out[base + i] = ((x[base + i] - mean) * scale) * weight[i] + bias[i];
    }
}
