// Read access to one K/V cache buffer, `{buf}` at binding {binding}, whose rows are GGML
// blocks of type `{ty}`. The attention wrapper includes this file twice, for `k_cache`
// and `v_cache`, replacing the names in braces; it is common.wgsl's byte access with the
// buffer as a name instead of the weights' `w`.

@group(0) @binding({binding}) var<storage, read> {buf}: array<u32>;

fn {buf}_byte_at(i: u32) -> u32 {
    return ({buf}[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn {buf}_f16_at(i: u32) -> f32 {
    let word = {buf}[i >> 2u] >> ((i & 2u) * 8u);
    return unpack2x16float(word & 0xffffu).x;
}

// Value j of a head whose bytes start at byte `base`, in each cache type. Heads of the
// quantized types are whole blocks of 32 (the wrapper checks it), so the block of value j
// is j / 32 blocks past `base`.
fn {buf}_F32(base: u32, j: u32) -> f32 {
    return bitcast<f32>({buf}[(base >> 2u) + j]);
}

fn {buf}_F16(base: u32, j: u32) -> f32 {
    return {buf}_f16_at(base + 2u * j);
}

// block_q8_0 (34 bytes): d: f16, qs: 32 x i8; x = d * q.
fn {buf}_Q8_0(base: u32, j: u32) -> f32 {
    let b = base + (j >> 5u) * 34u;
    let q = (i32({buf}_byte_at(b + 2u + (j & 31u))) << 24u) >> 24u;
    return {buf}_f16_at(b) * f32(q);
}

// block_q4_0 (18 bytes): d: f16, qs: 16 bytes; value l < 16 is the low nibble of qs[l],
// value l >= 16 the high nibble of qs[l - 16]; x = d * (q - 8).
fn {buf}_Q4_0(base: u32, j: u32) -> f32 {
    let b = base + (j >> 5u) * 18u;
    let l = j & 31u;
    let byte = {buf}_byte_at(b + 2u + (l & 15u));
    let q = select(byte & 0xfu, byte >> 4u, l >= 16u);
    return {buf}_f16_at(b) * f32(i32(q) - 8);
}

fn {buf}_value(base: u32, j: u32) -> f32 {
    return {buf}_{ty}(base, j);
}
