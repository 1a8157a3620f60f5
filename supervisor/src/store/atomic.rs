//! Atomic replacement of files: write a uniquely named temporary file beside the target,
//! fsync it, rename it over the target, fsync the directory. A reader sees the old file
//! or the new one, never a part; a crash leaves at most a stray temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::StoreError;

/// Temporary files start with this, so they are hidden and can never be taken for a
/// blob (`sha256-...`) or a manifest tag (tags start with a letter, digit or `_`).
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// A fresh temporary path in `dir`, unique within this process (a counter) and across
/// processes (the process id); files are still created with `create_new`.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!("{TEMP_PREFIX}{}-{n}-{nanos}", std::process::id()))
}

/// Removes its file when dropped unless [`TempGuard::keep`] was called: a failed or
/// cancelled write leaves nothing behind.
pub(crate) struct TempGuard {
    path: Option<PathBuf>,
}

impl TempGuard {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path: Some(path) }
    }

    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// The file was renamed into place: do not remove anything.
    pub(crate) fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove temporary file");
        }
    }
}

/// Writes `bytes` to `target` atomically (see the module comment). Blocking.
pub(crate) fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let guard = TempGuard::new(temp_path(dir));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(guard.path())
        .map_err(|e| StoreError::io("create", guard.path(), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("write", guard.path(), e))?;
    drop(file);
    rename_into_place(guard, target)
}

/// Renames the guarded temporary file to `target` and makes the rename durable.
pub(crate) fn rename_into_place(guard: TempGuard, target: &Path) -> Result<(), StoreError> {
    fs::rename(guard.path(), target).map_err(|e| StoreError::io("rename into", target, e))?;
    guard.keep();
    if let Some(dir) = target.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Flushes a directory's entries (a rename or new file in it) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}
