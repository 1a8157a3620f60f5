// Q4_1 (block_q4_1, 20 bytes): d: f16, m: f16, qs: 16 bytes (nibbles as Q4_0);
// x = d * q + m.
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let d = f16_at(b);
    let m = f16_at(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let word = word_at_even(b + 4u + 4u * i);
        for (var c = 0u; c < 4u; c++) {
            let q = byte_of(word, c);
            let l = 4u * i + c;
            (*out)[l] = f32(q & 0xfu) * d + m;
            (*out)[l + 16u] = f32(q >> 4u) * d + m;
        }
    }
}

// Run j of the block at byte `b` as bytes 0..15, four to a word, and (d, m) with
// x = d * q + m: what the integer-dot matmul multiplies.
fn qrun(b: u32, j: u32, q: ptr<function, array<u32, 8>>) -> vec2<f32> {
    for (var i = 0u; i < 4u; i++) {
        let word = word_at_even(b + 4u + 4u * i);
        (*q)[i] = word & 0x0f0f0f0fu;
        (*q)[i + 4u] = (word >> 4u) & 0x0f0f0f0fu;
    }
    return vec2<f32>(f16_at(b), f16_at(b + 2u));
}
