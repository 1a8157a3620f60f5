// Activations quantized for the integer-dot matmul: each run of 32 f32 values becomes 32
// signed bytes q (four to a word, in order) with a scale d = max|x| / 127 and
// q = round(x / d) (half away from zero), d then kept in half precision, as ggml's q8_0
// and q8_1 quantize (the CPU's exact path rounds the same way); s[run] = (d, d * sum q)
// keeps the sum a weight offset multiplies. One invocation per run; workgroups numbered over x and y.

struct Params {
    runs: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> xq: array<u32>;
@group(0) @binding(2) var<storage, read_write> xs: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = (wid.x + wid.y * nwg.x) * WG + lid;
    if (r >= p.runs) {
        return;
    }
    let base = r * 32u;
    var amax = 0.0;
    for (var l = 0u; l < 32u; l++) {
        amax = max(amax, abs(x[base + l]));
    }
    let d = amax / 127.0;
    let inv = select(0.0, 1.0 / d, d > 0.0);
    var sum = 0;
    for (var i = 0u; i < 8u; i++) {
        var word = 0u;
        for (var c = 0u; c < 4u; c++) {
            // Half away from zero, as C's roundf in ggml's quantizer.
            let v = x[base + 4u * i + c] * inv;
            let q = i32(sign(v) * floor(abs(v) + 0.5));
            sum += q;
            word |= (bitcast<u32>(q) & 0xffu) << (8u * c);
        }
        xq[r * 8u + i] = word;
    }
    // The scale as ggml stores it, in half precision.
    let dh = unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x;
    xs[r] = vec2<f32>(dh, dh * f32(sum));
}
