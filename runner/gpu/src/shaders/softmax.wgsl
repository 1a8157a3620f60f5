// Softmax of each row of x * scale: out[i] = exp(s[i] - max) / sum_j exp(s[j] - max).
// One workgroup per row: a max reduction, then a sum reduction, both in workgroup memory.
// A row that is all -inf becomes all zeros, as the CPU twin makes it.

struct Params {
    rows: u32,
    n: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

const WG: u32 = 64u;

var<workgroup> partial: array<f32, WG>;

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
    let neg_inf = bitcast<f32>(0xff800000u);
    var m = neg_inf;
    for (var i = lid; i < p.n; i += WG) {
        m = max(m, x[base + i] * p.scale);
    }
    partial[lid] = m;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    let row_max = partial[0];
    workgroupBarrier();
    if (row_max == neg_inf) {
        for (var i = lid; i < p.n; i += WG) {
            out[base + i] = 0.0;
        }
        return;
    }
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        s += exp(x[base + i] * p.scale - row_max);
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / partial[0];
    for (var i = lid; i < p.n; i += WG) {
        out[base + i] = exp(x[base + i] * p.scale - row_max) * inv;
    }
}
