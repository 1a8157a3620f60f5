// Q8_0 (block_q8_0, 34 bytes): d: f16, qs: 32 x i8; x = d * q.
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

// Values 32*j..32*j+32 of the block at byte `b` (j = 0 here).
fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let d = f16_at(b);
    for (var l = 0u; l < 32u; l++) {
        (*out)[l] = d * f32(sbyte_at(b + 2u + l));
    }
}
