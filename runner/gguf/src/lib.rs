//! GGUF reader and writer.
//!
//! A GGUF file is a little-endian header (magic `GGUF`, version, tensor count, metadata
//! count), then typed key/value metadata, then a table of tensor records (name, dims in
//! ggml order, [`GgmlType`] id, offset), then padding to `general.alignment` and the
//! tensor data. This crate reads versions 2 and 3 and writes version 3.
//!
//! - [`GgufFile::open`] memory-maps a file and parses its header; tensor data is borrowed
//!   from the map ([`GgufFile::tensor_data`]), never copied.
//! - [`GgufHeader::parse`] parses from any `&[u8]` (tests and the fuzz target use it).
//! - [`Metadata`] keeps the key/value pairs in file order, with typed accessors that name
//!   a missing or mistyped key, and helpers for the keys models need
//!   (`{arch}.block_count`, `tokenizer.ggml.tokens`, ...).
//! - [`GgufWriter`] writes files that this reader and llama.cpp's read back.
//!
//! The file is untrusted input: every length and count is checked against the bytes left
//! before anything is allocated for it, dims and sizes use checked arithmetic, and every
//! tensor's data must lie inside the file at an aligned offset. A broken file gives a
//! [`GgufError`] with the path and byte offset, never a panic.
//!
//! Where this reader differs from llama.cpp's: it is stricter about values (strings must
//! be UTF-8, bools 0 or 1, arrays nest at most [`MAX_ARRAY_NESTING`] deep) and laxer about
//! layout (empty keys, tensor names of 64 bytes or more, gaps between tensors and
//! `general.alignment` of any integer type are accepted, since none of them makes a file
//! ambiguous). The writer produces only what llama.cpp accepts.

mod error;
mod file;
mod header;
pub mod keys;
mod mapped;
mod metadata;
mod model_keys;
mod parse;
mod tensor;
mod value;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{FormatError, GgufError, MetadataError};
pub use file::GgufFile;
pub use ggml_type::GgmlType;
pub use header::GgufHeader;
pub use mapped::MappedFile;
pub use metadata::{FromMetadata, Metadata};
pub use model_keys::{DEFAULT_ROPE_FREQ_BASE, file_type_name};
pub use tensor::TensorInfo;
pub use value::{MetadataArray, MetadataValue, ValueType};
pub use writer::{GgufWriter, MAX_NAME_LEN, WriteError};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// The version [`GgufWriter`] writes.
pub const GGUF_VERSION: u32 = 3;

/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;

/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// How deep arrays of arrays may nest before the file is refused (protects the stack).
pub const MAX_ARRAY_NESTING: usize = 16;
