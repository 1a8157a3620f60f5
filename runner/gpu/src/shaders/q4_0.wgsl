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
