//! Store tests on a temporary models directory: uploads, create, list, resolve, copy,
//! delete.

mod blobs;
mod create;
mod manage;
mod models;
mod prune;

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

pub(super) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("models")).unwrap();
    (dir, store)
}

pub(super) fn name(s: &str) -> ModelName {
    ModelName::parse(s).unwrap()
}

/// Names of the files in `dir`, sorted.
pub(super) fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A small valid GGUF: a llama-family file of 1,234 F32 parameters marked Q4_K_M.
pub(super) fn tiny_gguf() -> Vec<u8> {
    let mut writer = gguf::GgufWriter::new();
    writer.set("general.architecture", "llama");
    writer.set("general.file_type", 15u32);
    writer
        .add_tensor("w", &[1234], gguf::GgmlType::F32, vec![0u8; 1234 * 4])
        .unwrap();
    writer.to_bytes().unwrap()
}

pub(super) async fn upload(store: &Store, bytes: &[u8]) -> Digest {
    let digest = Digest::of_bytes(bytes);
    store.write_blob(&digest, bytes).await.unwrap();
    digest
}

pub(super) fn spec(file: &str, digest: &Digest) -> CreateSpec {
    CreateSpec {
        files: BTreeMap::from([(file.to_owned(), digest.clone())]),
        ..CreateSpec::default()
    }
}
