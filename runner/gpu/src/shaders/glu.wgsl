// Gated linear units: out[i] = act(gate[i]) * up[i], with act silu (SwiGLU) or the tanh
// approximation of GELU (GeGLU). The wrapper prepends `const GELU: bool = ...;`.
// One invocation per element; workgroups numbered over x and y.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
const SQRT_2_OVER_PI: f32 = 0.7978846;
const GELU_COEF_A: f32 = 0.044715;

fn silu(g: f32) -> f32 {
    return g / (1.0 + exp(-g));
}

fn gelu_tanh(g: f32) -> f32 {
    // tanh saturates long before 15; clamping keeps exp-based tanh away from inf/inf.
    let inner = clamp(SQRT_2_OVER_PI * g * (1.0 + GELU_COEF_A * g * g), -15.0, 15.0);
    return 0.5 * g * (1.0 + tanh(inner));
}

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
    let g = gate[i];
    var a: f32;
    if (GELU) {
        a = gelu_tanh(g);
    } else {
        a = silu(g);
    }
    out[i] = a * up[i];
}
