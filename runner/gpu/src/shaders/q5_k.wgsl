// Q5_K (block_q5_K, 176 bytes): d: f16, dmin: f16, scales: 12 bytes (as Q4_K), qh: 32
// bytes (bit j of qh[l] is the fifth bit of value l of sub-block j), qs: 128 bytes
// (nibbles as Q4_K); x = d*sc*q - dmin*m.
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn scale_min_k4(s: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(byte_at(s + j) & 63u, byte_at(s + j + 4u) & 63u);
    }
    let sc = (byte_at(s + j + 4u) & 0xfu) | ((byte_at(s + j - 4u) >> 6u) << 4u);
    let m = (byte_at(s + j + 4u) >> 4u) | ((byte_at(s + j) >> 6u) << 4u);
    return vec2<u32>(sc, m);
}

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let sm = scale_min_k4(b + 4u, j);
    let d1 = f16_at(b) * f32(sm.x);
    let m1 = f16_at(b + 2u) * f32(sm.y);
    let shift = 4u * (j & 1u);
    let qh = b + 16u;
    let qs = b + 48u + 32u * (j >> 1u);
    for (var i = 0u; i < 8u; i++) {
        let low = word_at_even(qs + 4u * i) >> shift;
        let high = word_at_even(qh + 4u * i) >> j;
        for (var c = 0u; c < 4u; c++) {
            let q = (byte_of(low, c) & 0xfu) | ((byte_of(high, c) & 1u) << 4u);
            (*out)[4u * i + c] = d1 * f32(q) - m1;
        }
    }
}
