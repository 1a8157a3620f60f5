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
