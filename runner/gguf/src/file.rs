//! A GGUF file held in memory: memory-mapped from disk, or owned bytes.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::GgufError;
use crate::header::GgufHeader;
use crate::tensor::TensorInfo;

/// Where the file's bytes live.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// An open GGUF file: its parsed [`GgufHeader`] (reachable through `Deref`) and its
/// bytes, from which tensor data is borrowed without copying.
pub struct GgufFile {
    path: Option<PathBuf>,
    bytes: Bytes,
    header: GgufHeader,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("version", &self.header.version())
            .field("metadata_pairs", &self.header.metadata().len())
            .field("tensors", &self.header.tensors().len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps the file at `path` and parses its header. Only the header's pages are
    /// read; tensor data stays on disk until used.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let map = crate::MappedFile::open(path)?.into_map();
        let header = GgufHeader::parse(&map).map_err(|e| e.with_path(path.to_path_buf()))?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            bytes: Bytes::Mapped(map),
            header,
        })
    }

    /// Reads the whole file at `path` into memory and parses its header: the weights are
    /// resident from the start and do not depend on the file afterwards (`use_mmap` off).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let header = GgufHeader::parse(&bytes).map_err(|e| e.with_path(path.to_path_buf()))?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            bytes: Bytes::Owned(bytes),
            header,
        })
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        let header = GgufHeader::parse(&bytes)?;
        Ok(Self {
            path: None,
            bytes: Bytes::Owned(bytes),
            header,
        })
    }

    /// Whether the bytes are mapped from the file (rather than read into the heap): a
    /// memory report counts mapped bytes apart from the heap.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// The path the file was opened from, if it came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// True for an empty file (which never parses, so never true for a `GgufFile`).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The data of `tensor`, borrowed from the file. An error means the record belongs to
    /// another file.
    pub fn tensor_data(&self, tensor: &TensorInfo) -> Result<&[u8], GgufError> {
        self.header.tensor_data(&self.bytes, tensor)
    }
}

impl Deref for GgufFile {
    type Target = GgufHeader;

    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}
