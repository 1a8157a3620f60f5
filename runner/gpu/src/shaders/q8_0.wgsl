// Q8_0 (block_q8_0, 34 bytes): d: f16, qs: 32 x i8; x = d * q.
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

// Values 32*j..32*j+32 of the block at byte `b` (j = 0 here).
fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let d = f16_at(b);
    for (var i = 0u; i < 8u; i++) {
        let word = word_at_even(b + 2u + 4u * i);
        for (var c = 0u; c < 4u; c++) {
            // Byte c moved to the top, then shifted down with its sign.
            (*out)[4u * i + c] = d * f32(bitcast<i32>(word << (24u - 8u * c)) >> 24u);
        }
    }
}

// Run j of the block at byte `b` as signed bytes, four to a word, and (d, m) with
// x = d * q + m: what the integer-dot matmul multiplies.
fn qrun(b: u32, j: u32, q: ptr<function, array<u32, 8>>) -> vec2<f32> {
    for (var i = 0u; i < 8u; i++) {
        (*q)[i] = word_at_even(b + 2u + 4u * i);
    }
    return vec2<f32>(f16_at(b), 0.0);
}
