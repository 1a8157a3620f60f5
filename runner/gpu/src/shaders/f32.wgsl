// F32 weights, read in runs of 32 values (128 bytes, word-aligned).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let word = b >> 2u;
    for (var l = 0u; l < 32u; l++) {
        (*out)[l] = bitcast<f32>(w[word + l]);
    }
}
