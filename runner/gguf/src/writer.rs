//! Writing GGUF version 3 files: metadata, tensor table, aligned tensor data.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ggml_type::GgmlType;

use crate::error::FormatError;
use crate::file::GgufFile;
use crate::metadata::Metadata;
use crate::tensor::tensor_size;
use crate::value::{MetadataArray, MetadataValue};
use crate::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, MAX_DIMS, keys};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Two tensors with one name.
    #[error("tensor '{0}' added twice")]
    DuplicateTensor(String),
    /// The dims do not make a valid tensor of the type.
    #[error("tensor '{name}': {source}")]
    BadShape {
        /// The tensor.
        name: String,
        /// What is wrong with the dims.
        source: FormatError,
    },
    /// The data is not the size the dims and type call for.
    #[error("tensor '{name}': {ty} data for dims {dims:?} is {expected} bytes, got {actual}")]
    DataLength {
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
        /// Its dims.
        dims: Vec<u64>,
        /// Bytes expected.
        expected: u64,
        /// Bytes given.
        actual: u64,
    },
    /// `general.alignment` is not a `u32` power of two.
    #[error("general.alignment must be a u32 power of two, got {0}")]
    BadAlignment(String),
    /// A metadata key is the empty string (llama.cpp refuses such files).
    #[error("metadata keys must not be empty")]
    EmptyKey,
    /// A tensor name of [`MAX_NAME_LEN`] bytes or more (llama.cpp refuses such files).
    #[error("tensor name '{0}' is longer than {max} bytes", max = MAX_NAME_LEN - 1)]
    NameTooLong(String),
    /// Writing failed.
    #[error("cannot write GGUF{}: {source}", .path.as_ref().map(|p| format!(" file {}", p.display())).unwrap_or_default())]
    Io {
        /// The file, when writing to one.
        path: Option<PathBuf>,
        /// What the OS said.
        source: io::Error,
    },
}

/// Tensor names must be shorter than this (ggml's `GGML_MAX_NAME`, which counts the
/// terminating NUL).
pub const MAX_NAME_LEN: usize = 64;

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Cow<'a, [u8]>,
}

/// Builds a GGUF version 3 file: metadata pairs in insertion order, then tensors in
/// insertion order, each tensor's data aligned to `general.alignment` (default 32).
/// Tensor data can be borrowed (`&[u8]`, e.g. from another [`GgufFile`]) or owned.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Metadata,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
}

impl std::fmt::Debug for GgufWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .map(|t| (&t.name, t.ggml_type, &t.dims))
            .collect();
        f.debug_struct("GgufWriter")
            .field(
                "metadata_keys",
                &self.metadata.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("tensors", &tensors)
            .finish()
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty file: no metadata, no tensors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer holding `file`'s metadata and tensors (data borrowed, not copied), so a
    /// file can be rewritten with changes.
    pub fn from_file(file: &'a GgufFile) -> Result<Self, WriteError> {
        let mut writer = Self {
            metadata: file.metadata().clone(),
            ..Self::default()
        };
        for tensor in file.tensors() {
            let data = file.tensor_data(tensor).map_err(|e| WriteError::Io {
                path: None,
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            })?;
            writer.add_tensor(tensor.name(), tensor.dims(), tensor.ggml_type(), data)?;
        }
        Ok(writer)
    }

    /// The metadata to write.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The metadata to write, for changing.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The tensors added so far, in order: name, dims, type and data.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = (&str, &[u64], GgmlType, &[u8])> {
        self.tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dims.as_slice(), t.ggml_type, &*t.data))
    }

    /// Sets a metadata pair (a new key goes last; an existing key keeps its place).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<MetadataValue>) -> &mut Self {
        self.metadata.insert(key, value);
        self
    }

    /// Sets `general.alignment` (a power of two).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self, WriteError> {
        if !alignment.is_power_of_two() {
            return Err(WriteError::BadAlignment(alignment.to_string()));
        }
        Ok(self.set(keys::GENERAL_ALIGNMENT, alignment))
    }

    /// Adds a tensor; `dims` in ggml order (row length first), `data` exactly the bytes
    /// that `ggml_type` needs for that shape. The name must be shorter than
    /// [`MAX_NAME_LEN`] bytes.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ggml_type: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<&mut Self, WriteError> {
        let data = data.into();
        let bad_shape = |source| WriteError::BadShape {
            name: name.to_owned(),
            source,
        };
        if name.len() >= MAX_NAME_LEN {
            return Err(WriteError::NameTooLong(name.to_owned()));
        }
        if dims.len() > MAX_DIMS {
            return Err(bad_shape(FormatError::TooManyDims(dims.len() as u32)));
        }
        let (_, expected) = tensor_size(dims, ggml_type).map_err(bad_shape)?;
        if expected != data.len() as u64 {
            return Err(WriteError::DataLength {
                name: name.to_owned(),
                ty: ggml_type,
                dims: dims.to_vec(),
                expected,
                actual: data.len() as u64,
            });
        }
        if !self.names.insert(name.to_owned()) {
            return Err(WriteError::DuplicateTensor(name.to_owned()));
        }
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
        Ok(self)
    }

    fn alignment(&self) -> Result<u64, WriteError> {
        let Some(value) = self.metadata.get(keys::GENERAL_ALIGNMENT) else {
            return Ok(DEFAULT_ALIGNMENT.into());
        };
        match *value {
            MetadataValue::U32(a) if a.is_power_of_two() => Ok(a.into()),
            _ => Err(WriteError::BadAlignment(format!("{value:?}"))),
        }
    }

    /// Writes the file to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> Result<(), WriteError> {
        let alignment = self.alignment()?;
        if self.metadata.iter().any(|(key, _)| key.is_empty()) {
            return Err(WriteError::EmptyKey);
        }
        let io = |source| WriteError::Io { path: None, source };
        let mut out = Counting {
            inner: out,
            written: 0,
        };
        out.write_all(&GGUF_MAGIC).map_err(io)?;
        out.write_all(&GGUF_VERSION.to_le_bytes()).map_err(io)?;
        out.write_all(&(self.tensors.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&(self.metadata.len() as u64).to_le_bytes())
            .map_err(io)?;
        for (key, value) in self.metadata.iter() {
            write_str(&mut out, key).map_err(io)?;
            out.write_all(&value.value_type().id().to_le_bytes())
                .map_err(io)?;
            write_value(&mut out, value).map_err(io)?;
        }
        let mut offset = 0u64;
        for tensor in &self.tensors {
            write_str(&mut out, &tensor.name).map_err(io)?;
            out.write_all(&(tensor.dims.len() as u32).to_le_bytes())
                .map_err(io)?;
            for dim in &tensor.dims {
                out.write_all(&dim.to_le_bytes()).map_err(io)?;
            }
            out.write_all(&tensor.ggml_type.id().to_le_bytes())
                .map_err(io)?;
            out.write_all(&offset.to_le_bytes()).map_err(io)?;
            offset += (tensor.data.len() as u64).next_multiple_of(alignment);
        }
        pad(&mut out, alignment).map_err(io)?;
        for tensor in &self.tensors {
            out.write_all(&tensor.data).map_err(io)?;
            pad(&mut out, alignment).map_err(io)?;
        }
        Ok(())
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the file to `path` atomically: to a temporary file in the same directory,
    /// synced, then renamed over `path`. On failure `path` is untouched.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), WriteError> {
        let path = path.as_ref();
        let io = |source| WriteError::Io {
            path: Some(path.to_path_buf()),
            source,
        };
        let temp = temp_path(path);
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(io)?;
            let mut out = BufWriter::new(file);
            self.write_to(&mut out).map_err(|e| match e {
                WriteError::Io { source, .. } => io(source),
                other => other,
            })?;
            let file: File = out.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
            fs::rename(&temp, path).map_err(io)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// `dir/.name.tmp-<pid>-<n>`, unique within this process and unlikely to clash outside.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// A writer that counts bytes, for padding.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(out: &mut Counting<W>, alignment: u64) -> io::Result<()> {
    const ZEROS: [u8; 256] = [0; 256];
    let mut left = out.written.next_multiple_of(alignment) - out.written;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn write_str(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn write_value(out: &mut impl Write, value: &MetadataValue) -> io::Result<()> {
    match value {
        MetadataValue::U8(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I8(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.write_all(&[u8::from(*v)]),
        MetadataValue::String(v) => write_str(out, v),
        MetadataValue::Array(array) => write_array(out, array),
    }
}

fn write_array(out: &mut impl Write, array: &MetadataArray) -> io::Result<()> {
    fn each<T, W: Write, const N: usize>(
        out: &mut W,
        items: &[T],
        encode: impl Fn(&T) -> [u8; N],
    ) -> io::Result<()> {
        items
            .iter()
            .try_for_each(|item| out.write_all(&encode(item)))
    }
    out.write_all(&array.element_type().id().to_le_bytes())?;
    out.write_all(&(array.len() as u64).to_le_bytes())?;
    match array {
        MetadataArray::U8(v) => out.write_all(v),
        MetadataArray::I8(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::U16(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::I16(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::U32(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::I32(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::F32(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::U64(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::I64(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::F64(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::Bool(v) => each(out, v, |x| [u8::from(*x)]),
        MetadataArray::String(v) => v.iter().try_for_each(|s| write_str(out, s)),
        MetadataArray::Array(v) => v.iter().try_for_each(|a| write_array(out, a)),
    }
}
