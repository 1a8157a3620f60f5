// Q4_1 (block_q4_1, 20 bytes): d: f16, m: f16, qs: 16 bytes (nibbles as Q4_0);
// x = d * q + m.
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let d = f16_at(b);
    let m = f16_at(b + 2u);
    for (var l = 0u; l < 16u; l++) {
        let q = byte_at(b + 4u + l);
        (*out)[l] = f32(q & 0xfu) * d + m;
        (*out)[l + 16u] = f32(q >> 4u) * d + m;
    }
}
