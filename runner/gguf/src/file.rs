//! A GGUF file held in memory: memory-mapped from disk, or owned bytes.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use std::collections::HashSet;

use memmap2::MmapMut;

use crate::error::GgufError;
use crate::header::GgufHeader;
use crate::tensor::TensorInfo;

/// Where the file's bytes live. The map is private and copy-on-write, so a tensor
/// rewritten in place ([`GgufFile::tensor_data_mut`]) changes this process's view only.
enum Bytes {
    Mapped(MmapMut),
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

impl Bytes {
    fn as_mut(&mut self) -> &mut [u8] {
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
    /// Tensors whose data a reader rewrote in a layout of its own.
    rewritten: HashSet<String>,
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
        let map = crate::mapped::map_private(path)?;
        let header = GgufHeader::parse(&map).map_err(|e| e.with_path(path.to_path_buf()))?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            bytes: Bytes::Mapped(map),
            header,
            rewritten: HashSet::new(),
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
            rewritten: HashSet::new(),
        })
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        let header = GgufHeader::parse(&bytes)?;
        Ok(Self {
            path: None,
            bytes: Bytes::Owned(bytes),
            header,
            rewritten: HashSet::new(),
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

    /// The data of the tensor `name`, writable, for a reader that rewrites it in a layout
    /// of its own once, at load (and then calls [`GgufFile::mark_rewritten`]). The file on
    /// disk never changes: a mapped file is mapped copy-on-write, and each page written
    /// becomes this process's own (the same memory the mapped page took). `None` when the
    /// file has no such tensor or its record lies outside the file.
    pub fn tensor_data_mut(&mut self, name: &str) -> Option<&mut [u8]> {
        let info = self.header.tensor(name)?;
        let start = usize::try_from(info.absolute_offset).ok()?;
        let end = start.checked_add(usize::try_from(info.byte_len).ok()?)?;
        self.bytes.as_mut().get_mut(start..end)
    }

    /// Records that the data of `name` no longer lies as the file stores it, so readers
    /// that expect the file's layout can refuse it ([`GgufFile::is_rewritten`]).
    pub fn mark_rewritten(&mut self, name: &str) {
        self.rewritten.insert(name.to_owned());
    }

    /// Whether [`GgufFile::mark_rewritten`] was called for `name`.
    pub fn is_rewritten(&self, name: &str) -> bool {
        self.rewritten.contains(name)
    }
}

impl Deref for GgufFile {
    type Target = GgufHeader;

    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}
