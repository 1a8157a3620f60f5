// RMSNorm of each row with a weight: out[i] = (x[i] * scale) * weight[i],
// scale = 1 / sqrt(mean(x^2) + eps). One workgroup per row; the sum of squares is f32
// (the CPU twin sums in f64) with a tree reduction in workgroup memory.

struct Params {
    rows: u32,
    n: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

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
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = x[base + i];
        s += v * v;
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let mean = partial[0] / f32(p.n);
    let scale = 1.0 / sqrt(mean + p.eps);
    for (var i = lid; i < p.n; i += WG) {
        out[base + i] = (x[base + i] * scale) * weight[i];
    }
}
