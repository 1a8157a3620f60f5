// Byte access into a buffer of GGUF blocks, shared by every kernel that reads weights.
//
// GGML blocks are packed back to back with sizes that are not multiples of four (34 bytes
// for Q8_0, 210 for Q6_K), so a block's fields sit at any byte offset. WGSL storage
// buffers hold 32-bit words at best, so every field is read byte by byte from the words
// (little-endian, as the file and every GPU we target are).

@group(0) @binding(0) var<storage, read> w: array<u32>;

// Unsigned byte at byte offset `i`.
fn byte_at(i: u32) -> u32 {
    return (w[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

// Signed byte at byte offset `i`.
fn sbyte_at(i: u32) -> i32 {
    return (i32(byte_at(i)) << 24u) >> 24u;
}

// IEEE half at byte offset `i` (even, as every f16 field of a GGML block is).
fn f16_at(i: u32) -> f32 {
    let word = w[i >> 2u] >> ((i & 2u) * 8u);
    return unpack2x16float(word & 0xffffu).x;
}

// The four bytes at an even byte offset `i` as a little-endian u32, in one or two word
// loads instead of four byte loads. Every field of a GGML block sits at an even offset.
// A read past the last block stays inside the buffer: buffers are padded to whole words.
fn word_at_even(i: u32) -> u32 {
    let k = i >> 2u;
    if ((i & 2u) == 0u) {
        return w[k];
    }
    return (w[k] >> 16u) | (w[k + 1u] << 16u);
}

// Byte `c` (0..4) of a word.
fn byte_of(word: u32, c: u32) -> u32 {
    return (word >> (8u * c)) & 0xffu;
}

// Little-endian u32 at any byte offset `i`.
fn u32_at(i: u32) -> u32 {
    return byte_at(i) | (byte_at(i + 1u) << 8u) | (byte_at(i + 2u) << 16u) | (byte_at(i + 3u) << 24u);
}
