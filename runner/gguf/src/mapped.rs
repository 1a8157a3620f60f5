//! A read-only memory map of any file, for readers of other formats (the safetensors
//! import) that want a file's bytes without copying them and without `unsafe` of their
//! own: the map is made here, beside the GGUF file's, under the same assumption.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::error::GgufError;

/// A file mapped read-only into memory.
pub struct MappedFile {
    path: PathBuf,
    map: Mmap,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.map.len())
            .finish()
    }
}

impl MappedFile {
    /// Maps the file at `path`; its pages are read from disk when first touched.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io_error = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        // SAFETY: the map is read-only and we assume nobody truncates or rewrites the file
        // while it is open, as for `GgufFile::open`: model files are written once and
        // never modified in place. A file changed under us by another program could show
        // us changed bytes or fault (SIGBUS), as with any mmap-based reader.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// Maps the file at `path` private and copy-on-write: reads come from the file's pages,
/// and a page written (a tensor repacked at load) becomes this process's own copy; the
/// file never changes.
pub(crate) fn map_private(path: &Path) -> Result<MmapMut, GgufError> {
    let io_error = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    // SAFETY: as in `MappedFile::open`: we assume nobody truncates or rewrites the file
    // while it is open. The map is private, so our writes never reach the file or other
    // processes, and nothing else holds a reference into it yet.
    #[allow(unsafe_code)]
    let map = unsafe { MmapOptions::new().map_copy(&file) }.map_err(io_error)?;
    Ok(map)
}
