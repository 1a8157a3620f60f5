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
