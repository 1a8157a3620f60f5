//! Content-addressed blobs in `blobs/sha256-<hex>`: streamed uploads that are verified
//! before they become visible, and small layers written from memory.

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::Store;
use super::atomic::{self, TempGuard};
use super::digest::Digest;
use super::error::StoreError;

/// How much of an upload is read at a time.
const CHUNK: usize = 1 << 20;

impl Store {
    /// The path of the blob with this digest (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.file_name())
    }

    /// Whether the blob with this digest is in the store. Blocking (one `stat`).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Streams `reader` into the blob `digest` and returns the number of bytes stored.
    ///
    /// The bytes go to a uniquely named temporary file in `blobs/` and are hashed as
    /// they arrive; only when their SHA-256 equals `digest` is the file fsynced and
    /// renamed into place. On a mismatch, a read error or cancellation (the future
    /// dropped), the temporary file is removed and any existing blob of that digest is
    /// untouched, so concurrent or repeated uploads of one blob are safe.
    pub async fn write_blob(
        &self,
        digest: &Digest,
        reader: impl AsyncRead + Unpin,
    ) -> Result<u64, StoreError> {
        let (_, len) = self.write_upload(Some(digest), None, reader).await?;
        Ok(len)
    }

    /// Streams `reader` into a blob named by the digest of what arrives, checked against
    /// `expected` and `size` when given, and returns that digest and the length: an
    /// upload whose digest the sender did not compute first (the gRPC `Create`). As
    /// safe as [`Store::write_blob`]: nothing is visible before every check passed.
    pub async fn write_upload(
        &self,
        expected: Option<&Digest>,
        size: Option<u64>,
        mut reader: impl AsyncRead + Unpin,
    ) -> Result<(Digest, u64), StoreError> {
        let read_error = |source| match expected {
            Some(digest) => StoreError::Upload {
                digest: digest.clone(),
                source,
            },
            None => StoreError::UploadStream(source),
        };
        let guard = TempGuard::new(atomic::temp_path(self.blobs_dir()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(guard.path())
            .await
            .map_err(|e| StoreError::io("create", guard.path(), e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut len = 0u64;
        loop {
            let n = reader.read(&mut buf).await.map_err(read_error)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .await
                .map_err(|e| StoreError::io("write", guard.path(), e))?;
            len += n as u64;
            if size.is_some_and(|size| len > size) {
                break;
            }
        }
        if let Some(expected) = size.filter(|&size| size != len) {
            return Err(StoreError::SizeMismatch {
                expected,
                actual: len,
            });
        }
        let actual = Digest::from_hasher(hasher);
        if let Some(digest) = expected.filter(|&d| *d != actual) {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        file.sync_all()
            .await
            .map_err(|e| StoreError::io("write", guard.path(), e))?;
        drop(file);
        let target = self.blob_path(&actual);
        tokio::fs::rename(guard.path(), &target)
            .await
            .map_err(|e| StoreError::io("rename into", &target, e))?;
        guard.keep();
        let dir = self.blobs_dir();
        tokio::fs::File::open(dir)
            .await
            .map_err(|e| StoreError::io("open", dir, e))?
            .sync_all()
            .await
            .map_err(|e| StoreError::io("sync directory", dir, e))?;
        Ok((actual, len))
    }

    /// Stores `bytes` as a blob and returns its digest; for small layers (JSON, a
    /// template). Atomic like [`Store::write_blob`]; a blob that already exists with
    /// the right size is left as it is. Blocking.
    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of_bytes(bytes);
        let target = self.blob_path(&digest);
        let present =
            std::fs::metadata(&target).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64);
        if !present {
            atomic::write_atomic(&target, bytes)?;
        }
        Ok(digest)
    }
}
