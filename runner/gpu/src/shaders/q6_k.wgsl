// Q6_K (block_q6_K, 210 bytes): ql: 128 bytes of low nibbles, qh: 64 bytes of high bit
// pairs, scales: 16 x i8, d: f16. Sub-block j (0..8) of 32 values is group k = j % 4 of
// half h = j / 4: value l takes a nibble of ql[64h + 32(k%2) + l] (the low one for
// k < 2), bits 2k..2k+2 of qh[32h + l] and scale 8h + 2k + l/16; x = d * sc * (q - 32).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn dequant32(b: u32, j: u32, out: ptr<function, array<f32, 32>>) {
    let h = j >> 2u;
    let k = j & 3u;
    let d = f16_at(b + 208u);
    let ql = b + 64u * h + 32u * (k & 1u);
    let low_shift = 4u * (k >> 1u);
    let qh = b + 128u + 32u * h;
    let sc = b + 192u + 8u * h + 2u * k;
    let scales = vec2<f32>(d * f32(sbyte_at(sc)), d * f32(sbyte_at(sc + 1u)));
    for (var i = 0u; i < 8u; i++) {
        let lows = word_at_even(ql + 4u * i) >> low_shift;
        let highs = word_at_even(qh + 4u * i) >> (2u * k);
        let scale = scales[i / 4u];
        for (var c = 0u; c < 4u; c++) {
            let q = i32((byte_of(lows, c) & 0xfu) | ((byte_of(highs, c) & 3u) << 4u)) - 32;
            (*out)[4u * i + c] = scale * f32(q);
        }
    }
}
