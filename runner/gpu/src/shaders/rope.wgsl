// Rotary position embedding in place over x[token][head][head_dim], as ggml's rope_ext:
// pair i of a head at position pos turns by theta_i = pos * theta_scale^i (a running f32
// product, as the CPU builds it), divided by the pair's frequency factor and mixed by
// YaRN when ext_factor is not 0; cos and sin are scaled by mscale. Normal layout pairs
// (2i, 2i+1), NeoX pairs (i, i + n_dims/2); dimensions past n_dims stay as they are.
// One invocation per pair.

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    n_dims: u32,
    neox: u32,
    freq_scale: f32,
    ext_factor: f32,
    mscale: f32,
    theta_scale: f32,
    corr_low: f32,
    corr_high: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<i32>;
@group(0) @binding(2) var<storage, read> factors: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
// 2*pi in three parts for Cody-Waite reduction. TWO_PI_1 and TWO_PI_2 have 8 significant
// bits, so k * TWO_PI_1 and k * TWO_PI_2 are exact for |k| < 2^16 (angles up to about
// 400k radians) even where the device splits fma into a rounded multiply and an add, as
// lavapipe does; TWO_PI_3 is the rest.
const TWO_PI_1: f32 = 6.28125;
const TWO_PI_2: f32 = 0.00193023681640625;
const TWO_PI_3: f32 = 5.070363386e-6;
const INV_TWO_PI: f32 = 0.15915494;

// angle - k*2*pi in about [-pi, pi], so cos and sin are accurate however the device
// computes them (Vulkan bounds their error only inside [-pi, pi]).
fn reduce(angle: f32) -> f32 {
    let k = round(angle * INV_TWO_PI);
    return ((angle - k * TWO_PI_1) - k * TWO_PI_2) - k * TWO_PI_3;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    let pairs = p.n_dims / 2u;
    if (idx >= p.n_tokens * p.n_heads * pairs) {
        return;
    }
    let i = idx % pairs;
    let head = (idx / pairs) % p.n_heads;
    let t = idx / (pairs * p.n_heads);

    var theta = f32(positions[t]);
    for (var k = 0u; k < i; k++) {
        theta *= p.theta_scale;
    }
    let extrap = theta / factors[i];
    let interp = p.freq_scale * extrap;
    var angle = interp;
    if (p.ext_factor != 0.0) {
        let y = (f32(i) - p.corr_low) / max(0.001, p.corr_high - p.corr_low);
        let mix = (1.0 - clamp(y, 0.0, 1.0)) * p.ext_factor;
        angle = interp * (1.0 - mix) + extrap * mix;
    }
    let r = reduce(angle);
    let c = cos(r) * p.mscale;
    let s = sin(r) * p.mscale;

    let base = (t * p.n_heads + head) * p.head_dim;
    var i0 = base + 2u * i;
    var i1 = i0 + 1u;
    if (p.neox != 0u) {
        i0 = base + i;
        i1 = base + i + pairs;
    }
    let x0 = x[i0];
    let x1 = x[i1];
    x[i0] = fma(x0, c, -(x1 * s));
    x[i1] = fma(x0, s, x1 * c);
}
