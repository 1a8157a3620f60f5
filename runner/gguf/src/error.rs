//! Errors: what is wrong with a file, where, and which metadata key a caller missed.

use std::fmt;
use std::path::PathBuf;

/// An error opening, parsing or using a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, measured or mapped.
    #[error("cannot read GGUF file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The bytes are not a valid GGUF file.
    #[error("invalid GGUF{} at offset {offset}{}: {kind}", PathPart(.path), ContextPart(.context))]
    Format {
        /// The file, when the bytes came from one.
        path: Option<PathBuf>,
        /// The byte offset of the field that is wrong.
        offset: u64,
        /// The metadata key or tensor being read, when there is one.
        context: Option<String>,
        /// What is wrong.
        kind: FormatError,
    },
    /// A tensor record that does not belong to this file was used to read its data.
    #[error("tensor '{name}' (bytes {start}..{end}) is not a tensor of this {len}-byte file")]
    ForeignTensor {
        /// The tensor's name.
        name: String,
        /// Absolute start of its data.
        start: u64,
        /// Absolute end of its data.
        end: u64,
        /// This file's length.
        len: u64,
    },
}

impl GgufError {
    /// The byte offset of the problem, for format errors.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Format { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The kind of format error, if this is one.
    pub fn format_kind(&self) -> Option<&FormatError> {
        match self {
            Self::Format { kind, .. } => Some(kind),
            _ => None,
        }
    }

    pub(crate) fn with_path(mut self, file: PathBuf) -> Self {
        if let Self::Format { path, .. } = &mut self {
            *path = Some(file);
        }
        self
    }
}

struct PathPart<'a>(&'a Option<PathBuf>);

impl fmt::Display for PathPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, " file {}", path.display()),
            None => Ok(()),
        }
    }
}

struct ContextPart<'a>(&'a Option<String>);

impl fmt::Display for ContextPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(context) => write!(f, " ({context})"),
            None => Ok(()),
        }
    }
}

/// What is wrong with the bytes of a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The file does not start with `GGUF`.
    #[error("bad magic {found:02x?}: not a GGUF file (expected \"GGUF\")")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The version is not 2 or 3.
    #[error("unsupported GGUF version {0} (this reader reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    /// The version field reads as 2 or 3 only when byte-swapped.
    #[error("big-endian GGUF (version field {0:#010x}) is not supported")]
    BigEndian(u32),
    /// A fixed-size field runs past the end of the file.
    #[error("{what} needs {needed} bytes but only {left} are left in the file")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Its size.
        needed: u64,
        /// Bytes from its offset to the end of the file.
        left: u64,
    },
    /// A string's length is more than the bytes after it.
    #[error("string length {len} exceeds the {left} bytes left in the file")]
    StringTooLong {
        /// The declared length.
        len: u64,
        /// Bytes after the length field.
        left: u64,
    },
    /// A count (tensors, metadata pairs, array elements) needs more bytes than are left.
    #[error(
        "{what} {count} needs at least {needed} bytes ({per_item} each) but only {left} are \
         left in the file"
    )]
    CountTooLarge {
        /// What is counted.
        what: &'static str,
        /// The declared count.
        count: u64,
        /// The fewest bytes one item takes.
        per_item: u64,
        /// `count * per_item`, saturated.
        needed: u64,
        /// Bytes after the count field.
        left: u64,
    },
    /// A string is not UTF-8.
    #[error("string of {len} bytes is not valid UTF-8")]
    InvalidUtf8 {
        /// Its length.
        len: u64,
    },
    /// A bool byte other than 0 or 1.
    #[error("bool byte {0} is neither 0 nor 1")]
    InvalidBool(u8),
    /// A metadata value type id that is not one of the 13.
    #[error("unknown metadata value type id {0}")]
    UnknownValueType(u32),
    /// Arrays nested deeper than [`crate::MAX_ARRAY_NESTING`].
    #[error("arrays nested more than {0} deep")]
    NestingTooDeep(usize),
    /// The same key twice.
    #[error("duplicate metadata key '{0}'")]
    DuplicateKey(String),
    /// `general.alignment` is not a power of two, or not an unsigned integer.
    #[error("general.alignment {0} is not a power of two that fits in u32")]
    BadAlignment(String),
    /// The same tensor name twice.
    #[error("duplicate tensor name")]
    DuplicateTensor,
    /// More dims than [`crate::MAX_DIMS`].
    #[error("tensor has {0} dimensions (at most {max} allowed)", max = crate::MAX_DIMS)]
    TooManyDims(u32),
    /// A dim larger than `i64::MAX` (ggml stores them as `int64_t`).
    #[error("dimension {index} is {value}, larger than i64::MAX")]
    DimTooLarge {
        /// Which dim.
        index: usize,
        /// Its value.
        value: u64,
    },
    /// The product of the dims overflows.
    #[error("element count {dims:?} overflows i64")]
    ElementCountOverflow {
        /// The dims.
        dims: Vec<u64>,
    },
    /// A tensor type id that is not a GGML type.
    #[error("unknown GGML tensor type id {0}")]
    UnknownTensorType(u32),
    /// The first dim is not a whole number of blocks of the tensor's type.
    #[error("first dimension {ne0} is not a multiple of the {ty} block size {block}")]
    PartialBlock {
        /// The first dim.
        ne0: u64,
        /// The tensor type.
        ty: ggml_type::GgmlType,
        /// Its block size.
        block: usize,
    },
    /// The tensor's size in bytes overflows.
    #[error("tensor size in bytes overflows u64")]
    SizeOverflow,
    /// A tensor offset that is not a multiple of the alignment.
    #[error("tensor data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        /// Offset relative to the data section.
        offset: u64,
        /// `general.alignment`.
        alignment: u32,
    },
    /// A tensor's data runs past the end of the file.
    #[error(
        "tensor data at bytes {start}..{end} extends past the end of the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        /// Absolute start.
        start: u64,
        /// Absolute end (saturated).
        end: u64,
        /// The file length.
        file_len: u64,
    },
}

/// A metadata key is missing, has another type, or holds a value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The key is not in the file.
    #[error("metadata key '{0}' is missing")]
    Missing(String),
    /// The key holds another type.
    #[error("metadata key '{key}' is {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// The key holds an integer that does not fit the type asked for.
    #[error("metadata key '{key}' is {value}, which does not fit in {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value.
        value: i128,
        /// What the caller asked for.
        expected: &'static str,
    },
}
