//! Uploads: verified, atomic, never corrupting what is stored.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::*;

/// Yields `data`, then fails: a client that disconnects mid-upload.
struct FailingAfter(Vec<u8>);

impl AsyncRead for FailingAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.0.is_empty() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "client went away",
            )));
        }
        let n = self.0.len().min(buf.remaining());
        buf.put_slice(&self.0[..n]);
        self.0.drain(..n);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn open_creates_the_layout_and_an_upload_is_stored_under_its_digest() {
    let (_dir, store) = store();
    assert_eq!(files_in(store.root()), ["blobs", "manifests"]);
    let data = b"hello blob".repeat(300_000);
    let digest = Digest::of_bytes(&data);
    assert!(!store.has_blob(&digest));
    let n = store.write_blob(&digest, data.as_slice()).await.unwrap();
    assert_eq!(n, data.len() as u64);
    assert!(store.has_blob(&digest));
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), data);
    assert_eq!(files_in(store.blobs_dir()), [digest.file_name()]);
}

#[tokio::test]
async fn an_upload_with_the_wrong_digest_is_refused_and_leaves_nothing() {
    let (_dir, store) = store();
    let claimed = Digest::of_bytes(b"what the client promised");
    let err = store
        .write_blob(&claimed, &b"what it sent"[..])
        .await
        .unwrap_err();
    let actual = Digest::of_bytes(b"what it sent");
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&claimed.to_string()) && message.contains(&actual.to_string()),
        "{message}"
    );
    assert!(!store.has_blob(&claimed) && !store.has_blob(&actual));
    assert!(files_in(store.blobs_dir()).is_empty());
}

#[tokio::test]
async fn failed_uploads_never_corrupt_an_existing_blob_and_a_reupload_succeeds() {
    let (_dir, store) = store();
    let data = b"the real content".to_vec();
    let digest = upload(&store, &data).await;
    assert!(store.write_blob(&digest, &b"tampered"[..]).await.is_err());
    let err = store
        .write_blob(&digest, FailingAfter(data[..5].to_vec()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client went away"), "{err}");
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), data);
    assert_eq!(
        store.write_blob(&digest, data.as_slice()).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), data);
    assert_eq!(files_in(store.blobs_dir()), [digest.file_name()]);
}

#[tokio::test]
async fn a_cancelled_upload_removes_its_temporary_file() {
    let (_dir, store) = store();
    let (mut client, server) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut client, b"partial")
        .await
        .unwrap();
    let task = {
        let store = store.clone();
        tokio::spawn(async move { store.write_blob(&Digest::of_bytes(b"never"), server).await })
    };
    let blobs = store.blobs_dir().to_path_buf();
    let started = move || !files_in(&blobs).is_empty();
    let wait = move || {
        let (limit, every) = (
            std::time::Duration::from_secs(5),
            std::time::Duration::from_millis(5),
        );
        e2e::poll_until(limit, every, started)
    };
    tokio::task::spawn_blocking(wait).await.unwrap();
    assert_eq!(
        files_in(store.blobs_dir()).len(),
        1,
        "the upload never started"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(files_in(store.blobs_dir()).is_empty());
}

#[tokio::test]
async fn small_layers_are_content_addressed() {
    let (_dir, store) = store();
    let a = store.write_blob_bytes(b"{\"temperature\":0.5}").unwrap();
    assert_eq!(a, Digest::of_bytes(b"{\"temperature\":0.5}"));
    assert_eq!(store.write_blob_bytes(b"{\"temperature\":0.5}").unwrap(), a);
    let mut read = String::new();
    tokio::fs::File::open(store.blob_path(&a))
        .await
        .unwrap()
        .read_to_string(&mut read)
        .await
        .unwrap();
    assert_eq!(read, "{\"temperature\":0.5}");
    assert_eq!(files_in(store.blobs_dir()), [a.file_name()]);
}
