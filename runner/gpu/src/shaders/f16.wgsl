// F16 weights, read in runs of 32 values (64 bytes).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    for (var i = 0u; i < 16u; i++) {
        let pair = unpack2x16float(word_at_even(b + 4u * i));
        (*out)[2u * i] = pair.x;
        (*out)[2u * i + 1u] = pair.y;
    }
}
