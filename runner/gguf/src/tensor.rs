//! Tensor records: name, shape, type and where the data lies.

use ggml_type::GgmlType;

use crate::error::FormatError;

/// One tensor of a GGUF file, validated: its data lies inside the file at an aligned
/// offset and its size is a whole number of blocks of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) ggml_type: GgmlType,
    pub(crate) offset: u64,
    pub(crate) absolute_offset: u64,
    pub(crate) n_elements: u64,
    pub(crate) byte_len: u64,
}

impl TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dimensions in ggml order: `dims()[0]` (ne0) is the contiguous one, the row
    /// length.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// The offset of the data from the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The offset of the data from the start of the file.
    pub fn absolute_offset(&self) -> u64 {
        self.absolute_offset
    }

    /// The number of elements (the product of the dims).
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// The size of the data in bytes.
    pub fn byte_len(&self) -> u64 {
        self.byte_len
    }

    /// Elements per row (ne0), or 1 for a tensor with no dims.
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
}

/// Checks dims against `ty` and returns the element count and the size in bytes.
pub(crate) fn tensor_size(dims: &[u64], ty: GgmlType) -> Result<(u64, u64), FormatError> {
    let mut n_elements: u64 = 1;
    for (index, &value) in dims.iter().enumerate() {
        if value > i64::MAX as u64 {
            return Err(FormatError::DimTooLarge { index, value });
        }
        n_elements = n_elements
            .checked_mul(value)
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| FormatError::ElementCountOverflow {
                dims: dims.to_vec(),
            })?;
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    let block = ty.block_size();
    if !ne0.is_multiple_of(block as u64) {
        return Err(FormatError::PartialBlock { ne0, ty, block });
    }
    let row_bytes = ty.row_bytes(ne0).ok_or(FormatError::SizeOverflow)?;
    let byte_len = dims
        .iter()
        .skip(1)
        .try_fold(row_bytes, |bytes, &dim| bytes.checked_mul(dim))
        .ok_or(FormatError::SizeOverflow)?;
    Ok((n_elements, byte_len))
}
