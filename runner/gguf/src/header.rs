//! Parsing the header: magic, version, metadata, tensor table, data section start.

use std::collections::HashSet;

use ggml_type::GgmlType;

use crate::error::{FormatError, GgufError};
use crate::metadata::Metadata;
use crate::parse::Cursor;
use crate::tensor::{TensorInfo, tensor_size};
use crate::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, keys};

/// Fewest bytes a metadata pair takes: key length, value type, a one-byte value.
const MIN_PAIR_LEN: u64 = 8 + 4 + 1;
/// Fewest bytes a tensor record takes: name length, dim count, type, offset.
const MIN_TENSOR_LEN: u64 = 8 + 4 + 4 + 8;

/// Everything in a GGUF file but the tensor data: version, metadata, tensor table and
/// where the data section starts. Every tensor in it has been checked to lie inside the
/// bytes it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    alignment: u32,
    data_offset: u64,
}

impl GgufHeader {
    /// Parses and validates the header of a GGUF file held in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, GgufError> {
        let mut cursor = Cursor::new(bytes);
        let magic = cursor.take(4, "magic")?;
        if magic != GGUF_MAGIC {
            return Err(cursor.error_at(
                0,
                FormatError::BadMagic {
                    found: magic.to_vec(),
                },
            ));
        }
        let version = cursor.u32("version")?;
        match version {
            2 | 3 => {}
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(cursor.error_at(4, FormatError::BigEndian(v)));
            }
            v => return Err(cursor.error_at(4, FormatError::UnsupportedVersion(v))),
        }
        let tensor_count = cursor.count("tensor count", MIN_TENSOR_LEN)?;
        let pair_count = cursor.count("metadata pair count", MIN_PAIR_LEN)?;

        let (metadata, alignment_offset) = parse_metadata(&mut cursor, pair_count)?;
        let alignment = alignment(&metadata, &cursor, alignment_offset)?;
        let mut tensors = parse_tensor_table(&mut cursor, tensor_count, alignment)?;

        let data_offset = cursor.pos().next_multiple_of(u64::from(alignment));
        let file_len = bytes.len() as u64;
        for (tensor, record_offset) in &mut tensors {
            tensor.absolute_offset = data_offset.saturating_add(tensor.offset);
            let end = tensor.absolute_offset.saturating_add(tensor.byte_len);
            if end > file_len {
                cursor.set_context(Some(format!("tensor '{}'", tensor.name)));
                return Err(cursor.error_at(
                    *record_offset,
                    FormatError::TensorOutOfBounds {
                        start: tensor.absolute_offset,
                        end,
                        file_len,
                    },
                ));
            }
        }
        Ok(Self {
            version,
            metadata,
            tensors: tensors.into_iter().map(|(t, _)| t).collect(),
            alignment,
            data_offset,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The key/value metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Where the data section starts, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The sum of the tensors' element counts.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements).sum()
    }

    /// The data of `tensor` within `bytes`, the bytes this header was parsed from.
    pub fn tensor_data<'a>(
        &self,
        bytes: &'a [u8],
        tensor: &TensorInfo,
    ) -> Result<&'a [u8], GgufError> {
        let start = tensor.absolute_offset;
        let end = start.saturating_add(tensor.byte_len);
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| bytes.get(s..e))
            .ok_or_else(|| GgufError::ForeignTensor {
                name: tensor.name.clone(),
                start,
                end,
                len: bytes.len() as u64,
            })
    }
}

/// Reads the metadata pairs; also returns the offset of `general.alignment`'s value.
fn parse_metadata(cursor: &mut Cursor<'_>, pair_count: u64) -> Result<(Metadata, u64), GgufError> {
    let mut metadata = Metadata::new();
    let mut alignment_offset = 0;
    for _ in 0..pair_count {
        let key_offset = cursor.pos();
        cursor.set_context(None);
        let key = cursor.string()?;
        cursor.set_context(Some(format!("metadata key '{key}'")));
        if metadata.contains(&key) {
            return Err(cursor.error_at(key_offset, FormatError::DuplicateKey(key)));
        }
        let ty = cursor.value_type()?;
        if key == keys::GENERAL_ALIGNMENT {
            alignment_offset = cursor.pos();
        }
        let value = cursor.value(ty)?;
        metadata.insert(key, value);
    }
    cursor.set_context(None);
    Ok((metadata, alignment_offset))
}

fn alignment(metadata: &Metadata, cursor: &Cursor<'_>, offset: u64) -> Result<u32, GgufError> {
    let Some(value) = metadata.get(keys::GENERAL_ALIGNMENT) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_integer().and_then(|v| u32::try_from(v).ok()) {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => {
            let shown = match value.as_integer() {
                Some(v) => v.to_string(),
                None => format!("({})", value.describe()),
            };
            Err(cursor.error_at(offset, FormatError::BadAlignment(shown)))
        }
    }
}

/// Reads the tensor table; each record comes with the offset of its start for errors.
fn parse_tensor_table(
    cursor: &mut Cursor<'_>,
    tensor_count: u64,
    alignment: u32,
) -> Result<Vec<(TensorInfo, u64)>, GgufError> {
    // tensor_count was checked against the bytes left, so it fits in usize.
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = HashSet::with_capacity(tensor_count as usize);
    for index in 0..tensor_count {
        let record_offset = cursor.pos();
        cursor.set_context(Some(format!("tensor #{index}")));
        let name = cursor.string()?;
        cursor.set_context(Some(format!("tensor '{name}'")));
        if !names.insert(name.clone()) {
            return Err(cursor.error_at(record_offset, FormatError::DuplicateTensor));
        }
        let dims_offset = cursor.pos();
        let n_dims = cursor.u32("dimension count")?;
        if n_dims as usize > MAX_DIMS {
            return Err(cursor.error_at(dims_offset, FormatError::TooManyDims(n_dims)));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cursor.u64("dimension")?);
        }
        let type_offset = cursor.pos();
        let type_id = cursor.u32("tensor type")?;
        let ggml_type = GgmlType::from_id(type_id)
            .map_err(|_| cursor.error_at(type_offset, FormatError::UnknownTensorType(type_id)))?;
        let (n_elements, byte_len) =
            tensor_size(&dims, ggml_type).map_err(|kind| cursor.error_at(dims_offset, kind))?;
        let offset_offset = cursor.pos();
        let offset = cursor.u64("tensor data offset")?;
        if !offset.is_multiple_of(u64::from(alignment)) {
            return Err(
                cursor.error_at(offset_offset, FormatError::Misaligned { offset, alignment })
            );
        }
        let tensor = TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            absolute_offset: 0,
            n_elements,
            byte_len,
        };
        tensors.push((tensor, offset_offset));
    }
    cursor.set_context(None);
    Ok(tensors)
}
