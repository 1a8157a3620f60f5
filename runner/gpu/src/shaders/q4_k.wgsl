// Q4_K (block_q4_K, 144 bytes): d: f16, dmin: f16, scales: 12 bytes of packed 6-bit
// scales and minimums, qs: 128 bytes. Sub-block j (0..8) of 32 values reads bytes
// qs[32*(j/2)..] in their low (even j) or high (odd j) nibbles; x = d*sc*q - dmin*m.
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

// Scale and minimum of sub-block j from the 12 bytes at `s` (ggml's get_scale_min_k4).
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
    let qs = b + 16u + 32u * (j >> 1u);
    for (var i = 0u; i < 8u; i++) {
        let word = word_at_even(qs + 4u * i) >> shift;
        for (var c = 0u; c < 4u; c++) {
            (*out)[4u * i + c] = d1 * f32(byte_of(word, c) & 0xfu) - m1;
        }
    }
}

// Run j (sub-block j) of the block at byte `b` as bytes 0..15, four to a word, and
// (d, m) with x = d * q + m (d = d*sc, m = -dmin*m): what the integer-dot matmul
// multiplies.
fn qrun(b: u32, j: u32, q: ptr<function, array<u32, 8>>) -> vec2<f32> {
    let sm = scale_min_k4(b + 4u, j);
    let shift = 4u * (j & 1u);
    let qs = b + 16u + 32u * (j >> 1u);
    for (var i = 0u; i < 8u; i++) {
        (*q)[i] = (word_at_even(qs + 4u * i) >> shift) & 0x0f0f0f0fu;
    }
    return vec2<f32>(f16_at(b) * f32(sm.x), -f16_at(b + 2u) * f32(sm.y));
}
