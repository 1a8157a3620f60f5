// Q5_0 (block_q5_0, 22 bytes): d: f16, qh: 4 bytes (bit l is the fifth bit of value l),
// qs: 16 bytes (nibbles as Q4_0); x = d * (q - 16).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let d = f16_at(b);
    let qh = word_at_even(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let word = word_at_even(b + 6u + 4u * i);
        for (var c = 0u; c < 4u; c++) {
            let q = byte_of(word, c);
            let l = 4u * i + c;
            let lo = (q & 0xfu) | (((qh >> l) & 1u) << 4u);
            let hi = (q >> 4u) | (((qh >> (l + 16u)) & 1u) << 4u);
            (*out)[l] = d * f32(i32(lo) - 16);
            (*out)[l + 16u] = d * f32(i32(hi) - 16);
        }
    }
}

// Bit 4 of each byte of a word from bits l..l+4 of qh: the fifth bits of four values.
fn fifth_bits(qh: u32, l: u32) -> u32 {
    let bits = qh >> l;
    return ((bits & 1u) << 4u) | ((bits & 2u) << 11u) | ((bits & 4u) << 18u) | ((bits & 8u) << 25u);
}

// Run j of the block at byte `b` as bytes 0..31, four to a word, and (d, m) with
// x = d * q + m (m = -16d): what the integer-dot matmul multiplies.
fn qrun(b: u32, j: u32, q: ptr<function, array<u32, 8>>) -> vec2<f32> {
    let qh = word_at_even(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let word = word_at_even(b + 6u + 4u * i);
        (*q)[i] = (word & 0x0f0f0f0fu) | fifth_bits(qh, 4u * i);
        (*q)[i + 4u] = ((word >> 4u) & 0x0f0f0f0fu) | fifth_bits(qh, 4u * i + 16u);
    }
    let d = f16_at(b);
    return vec2<f32>(d, -16.0 * d);
}
