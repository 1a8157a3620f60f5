// Q4_0 (block_q4_0, 18 bytes): d: f16, qs: 16 bytes; value l < 16 is the low nibble of
// qs[l], value l >= 16 the high nibble of qs[l - 16]; x = d * (q - 8).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let d = f16_at(b);
    for (var i = 0u; i < 4u; i++) {
        let word = word_at_even(b + 2u + 4u * i);
        for (var c = 0u; c < 4u; c++) {
            let q = byte_of(word, c);
            let l = 4u * i + c;
            (*out)[l] = d * f32(i32(q & 0xfu) - 8);
            (*out)[l + 16u] = d * f32(i32(q >> 4u) - 8);
        }
    }
}

// Run j of the block at byte `b` as bytes 0..15, four to a word, and (d, m) with
// x = d * q + m (m = -8d): what the integer-dot matmul multiplies.
fn qrun(b: u32, j: u32, q: ptr<function, array<u32, 8>>) -> vec2<f32> {
    for (var i = 0u; i < 4u; i++) {
        let word = word_at_even(b + 2u + 4u * i);
        (*q)[i] = word & 0x0f0f0f0fu;
        (*q)[i + 4u] = (word >> 4u) & 0x0f0f0f0fu;
    }
    let d = f16_at(b);
    return vec2<f32>(d, -8.0 * d);
}
