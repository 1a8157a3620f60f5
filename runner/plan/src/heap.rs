//! Heap bytes of the tables a load builds from the file's metadata: the parsed header the
//! open file keeps, the tokenizer's vocabulary and merge tables, and the grammar engine's
//! token tries. They scale with the vocabulary, not with the context, and a 262,144-token
//! vocabulary (Gemma 3) makes them tens of MiB, so the estimate computes them from the
//! metadata instead of leaving them to a margin.
//!
//! The arithmetic follows the data structures (`gguf`'s `Metadata` and `TensorInfo`, the
//! runner's `Vocab` and `MergeRanks`, `std`'s `Vec`, `String` and `HashMap`) and counts
//! bytes as the runner's counting allocator does: the sizes asked for, not what `malloc`
//! rounds them to. Checked against that allocator on the two test models (the runner's
//! debug log of a load gives the heap each step took): the parsed header within 0.01%,
//! the tokenizer within 0.2%.

use std::mem::{size_of, size_of_val};

use gguf::{GgufFile, Metadata, MetadataArray, MetadataValue, TensorInfo};

/// Control bytes a `HashMap` adds after its buckets (SSE2's group width).
const GROUP_WIDTH: usize = 16;

/// Bytes of a `HashMap` (hashbrown) table holding `len` entries of `entry` bytes: buckets
/// to the next power of two at a load factor of 7/8, one control byte each plus a group.
/// The same for a map built `with_capacity(len)` and for one grown to `len` by inserts.
pub fn hash_table_bytes(len: usize, entry: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let buckets = match len {
        1..4 => 4,
        4..8 => 8,
        _ => (len.saturating_mul(8) / 7).next_power_of_two(),
    };
    (buckets * entry).next_multiple_of(GROUP_WIDTH) + buckets + GROUP_WIDTH
}

/// Bytes of a `Vec` grown by `push` to `len` elements of `size` bytes: its capacity
/// doubles from 4.
fn pushed_vec_bytes(len: usize, size: usize) -> usize {
    match len {
        0 => 0,
        _ => len.next_power_of_two().max(4) * size,
    }
}

/// Bytes of a copied list of strings: the `String`s and their text.
fn strings_bytes(strings: &[String]) -> usize {
    size_of_val(strings) + strings.iter().map(String::len).sum::<usize>()
}

/// Heap bytes of the values of one metadata array.
fn array_bytes(array: &MetadataArray) -> usize {
    match array {
        MetadataArray::String(v) => strings_bytes(v),
        MetadataArray::Array(v) => {
            v.len() * size_of::<MetadataArray>() + v.iter().map(array_bytes).sum::<usize>()
        }
        MetadataArray::U8(v) => v.len(),
        MetadataArray::I8(v) => v.len(),
        MetadataArray::Bool(v) => v.len(),
        MetadataArray::U16(v) => v.len() * 2,
        MetadataArray::I16(v) => v.len() * 2,
        MetadataArray::U32(v) => v.len() * 4,
        MetadataArray::I32(v) => v.len() * 4,
        MetadataArray::F32(v) => v.len() * 4,
        MetadataArray::U64(v) => v.len() * 8,
        MetadataArray::I64(v) => v.len() * 8,
        MetadataArray::F64(v) => v.len() * 8,
    }
}

fn value_bytes(value: &MetadataValue) -> usize {
    match value {
        MetadataValue::String(s) => s.len(),
        MetadataValue::Array(a) => array_bytes(a),
        _ => 0,
    }
}

/// Heap bytes of a parsed header, which the open file keeps for the life of the model:
/// the metadata (each pair in file order plus the key index, so every key twice, and the
/// values: the vocabulary's strings, scores and token types, the merges) and the tensor
/// table (names and dimensions).
pub fn header_heap_bytes(file: &GgufFile) -> usize {
    let metadata: &Metadata = file.metadata();
    let pairs = pushed_vec_bytes(metadata.len(), size_of::<(String, MetadataValue)>())
        + hash_table_bytes(metadata.len(), size_of::<(String, usize)>())
        + metadata
            .iter()
            .map(|(key, value)| 2 * key.len() + value_bytes(value))
            .sum::<usize>();
    let tensors = file.tensors();
    // Read with its offsets beside it, then collected in place: the table keeps the
    // larger allocation.
    let table = tensors.len() * size_of::<(TensorInfo, u64)>()
        + tensors
            .iter()
            .map(|t| t.name().len() + size_of_val(t.dims()))
            .sum::<usize>();
    pairs + table
}

/// Capacity of `format!("{left}\0{right}")`: it starts empty and grows as `String` does
/// (to the larger of twice its capacity and what is needed, 8 bytes at least).
fn merge_key_capacity(left: usize, right: usize) -> usize {
    let mut capacity = 0;
    let mut len = 0;
    for piece in [left, 1, right] {
        if len + piece > capacity {
            capacity = (2 * capacity).max(len + piece).max(8);
        }
        len += piece;
    }
    capacity
}

/// Heap bytes of the tokenizer built from `file`'s metadata: its copy of the vocabulary
/// (texts, scores, one byte of kind per token), the text-to-id map (every text again),
/// and for BPE its copy of the merges and the rank map keyed by "left\0right".
pub fn tokenizer_heap_bytes(file: &GgufFile) -> usize {
    let md = file.metadata();
    let tokens = md.tokens().unwrap_or_default();
    let n = tokens.len();
    let text: usize = tokens.iter().map(String::len).sum();
    let scores = md.token_scores().ok().flatten().map_or(0, <[f32]>::len) * size_of::<f32>();
    let kinds = md.token_types().ok().flatten().map_or(0, <[i32]>::len);
    let vocab = strings_bytes(tokens) + scores + kinds;
    let by_text = hash_table_bytes(n, size_of::<(String, u32)>()) + text;
    let merges = md.merges().ok().flatten().unwrap_or_default();
    let ranks = match merges.len() {
        0 => 0,
        m => {
            let keys: usize = merges
                .iter()
                .map(|merge| {
                    // Split at the first space after the first character, as the tokenizer.
                    let first = merge.chars().next().map_or(0, char::len_utf8);
                    let split = merge[first..].find(' ').map_or(merge.len(), |i| first + i);
                    merge_key_capacity(split, merge.len().saturating_sub(split + 1))
                })
                .sum();
            strings_bytes(merges) + hash_table_bytes(m, size_of::<(String, u32)>()) + keys
        }
    };
    vocab + by_text + ranks
}

/// Heap bytes per vocabulary entry of the grammar engine's tables (llguidance's token
/// trie and the sliced tries its JSON lexer builds over it), which the runner builds on
/// the first structured-output request and keeps.
pub const GRAMMAR_BYTES_PER_TOKEN: usize = 153;
/// Heap bytes per byte of token text of the same tables.
pub const GRAMMAR_BYTES_PER_TEXT_BYTE: usize = 39;

/// Heap bytes of the grammar engine's tables for `file`'s vocabulary.
///
/// Measured, not derived (llguidance's layout is its own): the counting allocator's live
/// heap after one `{"type":"object"}` request minus before it, on the two test models
/// (SmolLM2: 49,152 tokens, 369,170 bytes of text; Gemma 3: 262,144 tokens, 2,315,366
/// bytes), fitted as bytes per token plus bytes per byte of text.
pub fn grammar_heap_bytes(file: &GgufFile) -> usize {
    let tokens = file.metadata().tokens().unwrap_or_default();
    let text: usize = tokens.iter().map(String::len).sum();
    tokens.len() * GRAMMAR_BYTES_PER_TOKEN + text * GRAMMAR_BYTES_PER_TEXT_BYTE
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn hash_tables_take_a_power_of_two_of_buckets() {
        assert_eq!(hash_table_bytes(0, 32), 0);
        assert_eq!(hash_table_bytes(3, 32), 4 * 32 + 4 + 16);
        // 7 × 8 / 7 = 8 buckets hold 7; 8 entries need 16.
        assert_eq!(hash_table_bytes(7, 32), 8 * 32 + 8 + 16);
        assert_eq!(hash_table_bytes(8, 32), 16 * 32 + 16 + 16);
        assert_eq!(hash_table_bytes(262_144, 32), 524_288 * 33 + 16);
        // What std asks for agrees on the capacity these sizes imply.
        let map: HashMap<String, u32> = HashMap::with_capacity(262_144);
        assert_eq!(map.capacity(), 524_288 / 8 * 7);
    }

    #[test]
    fn a_merge_key_grows_as_a_string_does() {
        // "a" then "\0" fit in 8; "bcdefgh" makes 9: twice 8.
        assert_eq!(merge_key_capacity(1, 1), 8);
        assert_eq!(merge_key_capacity(1, 7), 16);
        assert_eq!(merge_key_capacity(10, 3), 20);
    }

    #[test]
    fn pushed_vectors_double_from_four() {
        assert_eq!(pushed_vec_bytes(0, 8), 0);
        assert_eq!(pushed_vec_bytes(3, 8), 32);
        assert_eq!(pushed_vec_bytes(33, 8), 64 * 8);
    }
}
