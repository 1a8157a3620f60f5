// F16 weights, read in runs of 32 values (64 bytes).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    for (var l = 0u; l < 32u; l++) {
        (*out)[l] = f16_at(b + 2u * l);
    }
}
