//! Pruning removes only what no model uses, and nothing when it cannot tell.

use super::*;

#[tokio::test]
async fn prune_removes_unused_blobs_and_temp_files_and_keeps_every_model_whole() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    let entry = store
        .create(&name("tiny"), spec("tiny.gguf", &gguf))
        .unwrap();
    let unused = upload(&store, b"an upload that was never used in a create").await;
    std::fs::write(store.blobs_dir().join(".tmp-interrupted"), b"half").unwrap();

    let pruned = store.prune().unwrap();
    assert_eq!(pruned.blobs, 1);
    assert_eq!(pruned.bytes, 41);
    assert_eq!(pruned.temp_files, 1);
    assert!(!store.has_blob(&unused));
    assert!(store.has_blob(&gguf));
    let resolved = store.resolve(&name("tiny")).unwrap();
    assert_eq!(resolved.entry, entry);
    assert_eq!(
        store.prune().unwrap(),
        Pruned::default(),
        "a second prune finds nothing"
    );
}

#[tokio::test]
async fn an_unreadable_manifest_stops_blob_pruning() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    store
        .create(&name("tiny"), spec("tiny.gguf", &gguf))
        .unwrap();
    let other = upload(&store, b"named by the damaged manifest, perhaps").await;
    let damaged = store.manifest_path(&name("damaged"));
    std::fs::create_dir_all(damaged.parent().unwrap()).unwrap();
    std::fs::write(&damaged, b"{ not json").unwrap();

    let pruned = store.prune().unwrap();
    assert_eq!(pruned.blobs, 0);
    assert!(store.has_blob(&other));
}
