//! A bounds-checked little-endian cursor over the file's bytes, and the metadata value
//! decoder built on it. Every read checks the bytes left first; every count is checked
//! against the bytes left before anything is allocated for it.

use crate::MAX_ARRAY_NESTING;
use crate::error::{FormatError, GgufError};
use crate::value::{MetadataArray, MetadataValue, ValueType};

/// A read position in a byte slice, with the metadata key or tensor being read for
/// error messages.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    context: Option<String>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            context: None,
        }
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    pub(crate) fn set_context(&mut self, context: Option<String>) {
        self.context = context;
    }

    /// An error at `offset`, tagged with the current context.
    pub(crate) fn error_at(&self, offset: u64, kind: FormatError) -> GgufError {
        GgufError::Format {
            path: None,
            offset,
            context: self.context.clone(),
            kind,
        }
    }

    /// Takes `n` bytes; `what` names the field for the error when they are not there.
    pub(crate) fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let left = self.left();
        if n > left {
            return Err(self.error_at(
                self.pos(),
                FormatError::Truncated {
                    what,
                    needed: n,
                    left,
                },
            ));
        }
        let start = self.pos;
        // n <= left <= usize::MAX, so the cast is exact.
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads a count field and checks that `count` items of at least `per_item` bytes
    /// fit in the bytes after it.
    pub(crate) fn count(&mut self, what: &'static str, per_item: u64) -> Result<u64, GgufError> {
        let offset = self.pos();
        let count = self.u64(what)?;
        let needed = count.saturating_mul(per_item);
        let left = self.left();
        if needed > left {
            return Err(self.error_at(
                offset,
                FormatError::CountTooLarge {
                    what,
                    count,
                    per_item,
                    needed,
                    left,
                },
            ));
        }
        Ok(count)
    }

    /// Reads a GGUF string: u64 length, then that many UTF-8 bytes.
    pub(crate) fn string(&mut self) -> Result<String, GgufError> {
        let offset = self.pos();
        let len = self.u64("string length")?;
        let left = self.left();
        if len > left {
            return Err(self.error_at(offset, FormatError::StringTooLong { len, left }));
        }
        let bytes = self.take(len, "string")?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.error_at(offset, FormatError::InvalidUtf8 { len })),
        }
    }

    /// Reads a value type id.
    pub(crate) fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let offset = self.pos();
        let id = self.u32("value type")?;
        ValueType::from_id(id)
            .ok_or_else(|| self.error_at(offset, FormatError::UnknownValueType(id)))
    }

    /// Reads one value of type `ty`.
    pub(crate) fn value(&mut self, ty: ValueType) -> Result<MetadataValue, GgufError> {
        Ok(match ty {
            ValueType::U8 => MetadataValue::U8(self.array::<1>("u8").map(u8::from_le_bytes)?),
            ValueType::I8 => MetadataValue::I8(self.array::<1>("i8").map(i8::from_le_bytes)?),
            ValueType::U16 => MetadataValue::U16(self.array("u16").map(u16::from_le_bytes)?),
            ValueType::I16 => MetadataValue::I16(self.array("i16").map(i16::from_le_bytes)?),
            ValueType::U32 => MetadataValue::U32(self.array("u32").map(u32::from_le_bytes)?),
            ValueType::I32 => MetadataValue::I32(self.array("i32").map(i32::from_le_bytes)?),
            ValueType::F32 => MetadataValue::F32(self.array("f32").map(f32::from_le_bytes)?),
            ValueType::U64 => MetadataValue::U64(self.array("u64").map(u64::from_le_bytes)?),
            ValueType::I64 => MetadataValue::I64(self.array("i64").map(i64::from_le_bytes)?),
            ValueType::F64 => MetadataValue::F64(self.array("f64").map(f64::from_le_bytes)?),
            ValueType::Bool => {
                let offset = self.pos();
                let [byte] = self.array::<1>("bool")?;
                MetadataValue::Bool(self.bool_from(byte, offset)?)
            }
            ValueType::String => MetadataValue::String(self.string()?),
            ValueType::Array => MetadataValue::Array(self.metadata_array(1)?),
        })
    }

    fn bool_from(&self, byte: u8, offset: u64) -> Result<bool, GgufError> {
        match byte {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error_at(offset, FormatError::InvalidBool(other))),
        }
    }

    /// Reads an array (element type, count, elements); `depth` is 1 for a top-level
    /// array.
    fn metadata_array(&mut self, depth: usize) -> Result<MetadataArray, GgufError> {
        let offset = self.pos();
        if depth > MAX_ARRAY_NESTING {
            return Err(self.error_at(offset, FormatError::NestingTooDeep(MAX_ARRAY_NESTING)));
        }
        let ty = self.value_type()?;
        let count = self.count("array length", ty.min_encoded_len())?;
        // `count` items of at least one byte fit in the file, so it fits in usize.
        let n = count as usize;
        Ok(match ty {
            ValueType::U8 => MetadataArray::U8(self.fixed(n, "u8 array", u8::from_le_bytes)?),
            ValueType::I8 => MetadataArray::I8(self.fixed(n, "i8 array", i8::from_le_bytes)?),
            ValueType::U16 => MetadataArray::U16(self.fixed(n, "u16 array", u16::from_le_bytes)?),
            ValueType::I16 => MetadataArray::I16(self.fixed(n, "i16 array", i16::from_le_bytes)?),
            ValueType::U32 => MetadataArray::U32(self.fixed(n, "u32 array", u32::from_le_bytes)?),
            ValueType::I32 => MetadataArray::I32(self.fixed(n, "i32 array", i32::from_le_bytes)?),
            ValueType::F32 => MetadataArray::F32(self.fixed(n, "f32 array", f32::from_le_bytes)?),
            ValueType::U64 => MetadataArray::U64(self.fixed(n, "u64 array", u64::from_le_bytes)?),
            ValueType::I64 => MetadataArray::I64(self.fixed(n, "i64 array", i64::from_le_bytes)?),
            ValueType::F64 => MetadataArray::F64(self.fixed(n, "f64 array", f64::from_le_bytes)?),
            ValueType::Bool => {
                let start = self.pos();
                let bytes = self.take(count, "bool array")?;
                let mut out = Vec::with_capacity(n);
                for (i, &byte) in bytes.iter().enumerate() {
                    out.push(self.bool_from(byte, start + i as u64)?);
                }
                MetadataArray::Bool(out)
            }
            ValueType::String => {
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.string()?);
                }
                MetadataArray::String(out)
            }
            ValueType::Array => {
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.metadata_array(depth + 1)?);
                }
                MetadataArray::Array(out)
            }
        })
    }

    /// Reads `n` fixed-size little-endian elements (already checked to fit).
    fn fixed<T, const N: usize>(
        &mut self,
        n: usize,
        what: &'static str,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        let bytes = self.take((n as u64).saturating_mul(N as u64), what)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|chunk| {
                let mut raw = [0; N];
                raw.copy_from_slice(chunk);
                decode(raw)
            })
            .collect())
    }
}
