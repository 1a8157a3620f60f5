// Writes token rows of f32 values into their cells of a K/V cache, converted to the
// cache's GGML type `{ty}` the way ggml's reference quantizers do, so the bytes match the
// CPU cache's.
//
// The wrapper prepends UNIT_VALUES and UNIT_BYTES: the values one invocation converts
// (one f32, two f16, or one block of 32) and the bytes they become. A Q8_0 or Q4_0 row is
// not a whole number of words (34 and 18-byte blocks), so neighbouring units, even of
// other cells, can share a word: partial words are merged with atomic AND and OR of just
// this unit's bytes.

struct Params {
    n_tokens: u32,
    dim: u32,
    row_bytes: u32,
    units_per_row: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> cells: array<u32>;
@group(0) @binding(2) var<storage, read_write> cache: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;

// The unit's bytes, little-endian from byte 0 (34 at most).
var<private> packed: array<u32, 9>;

fn put_byte(i: u32, b: u32) {
    packed[i >> 2u] |= (b & 0xffu) << ((i & 3u) * 8u);
}

// IEEE half bits of x, rounded to nearest even (as the `half` crate and F16C do); WGSL's
// pack2x16float leaves the rounding to the implementation.
fn f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let e = i32((b >> 23u) & 0xffu);
    let m = b & 0x7fffffu;
    if (e == 255) {
        return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    let he = e - 112;
    if (he >= 31) {
        return sign | 0x7c00u;
    }
    // Bits of the f32 significand (implicit one included) below the half's last bit.
    var sig = m;
    var drop = 13u;
    var r = 0u;
    if (he <= 0) {
        if (he < -10) {
            return sign;
        }
        sig = m | 0x800000u;
        drop = u32(14 - he);
    } else {
        r = u32(he) << 10u;
    }
    r |= sig >> drop;
    let rest = sig & ((1u << drop) - 1u);
    let half_way = 1u << (drop - 1u);
    // A carry out of the significand rightly bumps the exponent (or reaches infinity).
    if (rest > half_way || (rest == half_way && (r & 1u) == 1u)) {
        r += 1u;
    }
    return sign | r;
}

fn put_f16(i: u32, x: f32) {
    let h = f16_bits(x);
    put_byte(i, h);
    put_byte(i + 1u, h >> 8u);
}

// C's roundf: halves away from zero (WGSL's round takes them to even).
fn round_away(v: f32) -> i32 {
    let a = abs(v);
    let f = floor(a);
    return i32(sign(v) * (f + select(0.0, 1.0, a - f >= 0.5)));
}

fn pack_F32(s: u32) {
    packed[0] = bitcast<u32>(src[s]);
}

fn pack_F16(s: u32) {
    packed[0] = f16_bits(src[s]) | (f16_bits(src[s + 1u]) << 16u);
}

// quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d).
fn pack_Q8_0(s: u32) {
    var amax = 0.0;
    for (var l = 0u; l < 32u; l++) {
        amax = max(amax, abs(src[s + l]));
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    put_f16(0u, d);
    for (var l = 0u; l < 32u; l++) {
        put_byte(2u + l, bitcast<u32>(round_away(src[s + l] * id)));
    }
}

// quantize_row_q4_0_ref: the value of largest magnitude (the first, on ties) keeping its
// sign, d = max / -8, q = min(15, trunc(x / d + 8.5)).
fn pack_Q4_0(s: u32) {
    var amax = 0.0;
    var max_value = 0.0;
    for (var l = 0u; l < 32u; l++) {
        let v = src[s + l];
        if (amax < abs(v)) {
            amax = abs(v);
            max_value = v;
        }
    }
    let d = max_value / -8.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    put_f16(0u, d);
    for (var l = 0u; l < 16u; l++) {
        let q0 = min(15u, u32(src[s + l] * id + 8.5));
        let q1 = min(15u, u32(src[s + l + 16u] * id + 8.5));
        put_byte(2u + l, q0 | (q1 << 4u));
    }
}

// Writes the unit's bytes at byte `dst` of the cache.
fn write_unit(dst: u32) {
    let end = dst + UNIT_BYTES;
    for (var w = dst >> 2u; w <= (end - 1u) >> 2u; w++) {
        var value = 0u;
        var mask = 0u;
        for (var k = 0u; k < 4u; k++) {
            let g = w * 4u + k;
            if (g >= dst && g < end) {
                let i = g - dst;
                value |= ((packed[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu) << (k * 8u);
                mask |= 0xffu << (k * 8u);
            }
        }
        if (mask == 0xffffffffu) {
            atomicStore(&cache[w], value);
        } else {
            atomicAnd(&cache[w], ~mask);
            atomicOr(&cache[w], value);
        }
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let u = (wid.x + wid.y * nwg.x) * WG + lid;
    if (u >= p.n_tokens * p.units_per_row) {
        return;
    }
    let t = u / p.units_per_row;
    let k = u % p.units_per_row;
    pack_{ty}(t * p.dim + k * UNIT_VALUES);
    write_unit(cells[t] * p.row_bytes + k * UNIT_BYTES);
}
