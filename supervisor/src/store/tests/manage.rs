//! Copy and delete: a copy shares the blobs, a delete removes only what no other model
//! names, and unknown names are `NotFound`.

use std::collections::BTreeMap;

use super::*;

fn spec_with_system(digest: &Digest, system: &str) -> CreateSpec {
    CreateSpec {
        files: BTreeMap::from([("tiny.gguf".to_owned(), digest.clone())]),
        system: Some(system.to_owned()),
        ..CreateSpec::default()
    }
}

#[tokio::test]
async fn a_copy_is_the_same_manifest_under_a_new_name() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    let source = store
        .create(&name("tiny"), spec("tiny.gguf", &gguf))
        .unwrap();
    let blobs_before = files_in(store.blobs_dir());

    let copy = store.copy(&name("tiny"), &name("me/tiny-copy:v1")).unwrap();
    assert_eq!(copy.name.to_string(), "me/tiny-copy:v1");
    assert_eq!(
        (copy.digest.as_str(), copy.size),
        (source.digest.as_str(), source.size)
    );
    assert_eq!(copy.details, source.details);
    assert_eq!(
        files_in(store.blobs_dir()),
        blobs_before,
        "no blob was added"
    );
    let names: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"me/tiny-copy:v1".to_owned()), "{names:?}");
    // No temporary file is left beside the new manifest.
    let dir = store
        .manifests_dir()
        .join("registry.ollama.ai/me/tiny-copy");
    assert_eq!(files_in(&dir), ["v1"]);

    // Onto itself: nothing changes.
    let same = store.copy(&name("tiny"), &name("TINY:latest")).unwrap();
    assert_eq!(same.digest, source.digest);
    assert_eq!(store.list().unwrap().len(), 2);
}

#[tokio::test]
async fn a_copy_replaces_the_destination_and_an_unknown_source_is_not_found() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    let a = store
        .create(&name("a"), spec_with_system(&gguf, "I am a"))
        .unwrap();
    store
        .create(&name("b"), spec_with_system(&gguf, "I am b"))
        .unwrap();
    let copied = store.copy(&name("a"), &name("b")).unwrap();
    assert_eq!(copied.digest, a.digest);
    let b = store.resolve(&name("b")).unwrap();
    assert_eq!(b.system.as_deref(), Some("I am a"));

    let missing = store.copy(&name("absent"), &name("c")).unwrap_err();
    assert!(
        matches!(&missing, StoreError::NotFound { name } if name == "absent:latest"),
        "{missing}"
    );
    assert!(store.resolve(&name("c")).is_err(), "nothing was written");
}

#[tokio::test]
async fn delete_removes_the_manifest_and_the_blobs_no_other_model_uses() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    store
        .create(&name("a"), spec_with_system(&gguf, "only a has this"))
        .unwrap();
    store
        .create(&name("b"), spec_with_system(&gguf, "only b has this"))
        .unwrap();
    store.copy(&name("a"), &name("a-copy")).unwrap();
    let system_of_a = Digest::of_bytes(b"only a has this");
    let system_of_b = Digest::of_bytes(b"only b has this");

    // The copy still names a's blobs: deleting a removes its manifest only.
    let first = store.delete(&name("a")).unwrap();
    assert_eq!((first.manifests, first.blobs), (1, 0));
    assert!(store.has_blob(&system_of_a));
    assert!(matches!(
        store.resolve(&name("a")),
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        !store
            .manifests_dir()
            .join("registry.ollama.ai/library/a")
            .exists(),
        "the empty model directory is removed"
    );

    // The last model naming a's system layer and config: those go, the shared GGUF stays.
    let second = store.delete(&name("a-copy")).unwrap();
    assert_eq!((second.manifests, second.blobs), (1, 2));
    assert!(!store.has_blob(&system_of_a));
    assert!(store.has_blob(&gguf) && store.has_blob(&system_of_b));
    assert_eq!(
        store.resolve(&name("b")).unwrap().system.as_deref(),
        Some("only b has this")
    );

    // The last model of all: every blob goes.
    let third = store.delete(&name("b")).unwrap();
    assert_eq!((third.manifests, third.blobs), (1, 3));
    assert!(files_in(store.blobs_dir()).is_empty());
    assert!(store.list().unwrap().is_empty());

    let again = store.delete(&name("b")).unwrap_err();
    assert!(matches!(again, StoreError::NotFound { .. }), "{again}");
}

#[tokio::test]
async fn delete_keeps_blobs_when_another_manifest_is_unreadable() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    store
        .create(&name("tiny"), spec("tiny.gguf", &gguf))
        .unwrap();
    let damaged = store.manifest_path(&name("damaged"));
    std::fs::create_dir_all(damaged.parent().unwrap()).unwrap();
    std::fs::write(&damaged, b"{ not json").unwrap();

    let deleted = store.delete(&name("tiny")).unwrap();
    assert_eq!((deleted.manifests, deleted.blobs), (1, 0));
    assert!(store.has_blob(&gguf));
}

#[tokio::test]
async fn license_layers_are_resolved_in_order() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    store
        .create(&name("tiny"), spec("tiny.gguf", &gguf))
        .unwrap();
    // Add two license layers as Ollama writes them.
    let path = store.manifest_path(&name("tiny"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for text in ["MIT", "Apache-2.0"] {
        let digest = store.write_blob_bytes(text.as_bytes()).unwrap();
        manifest["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": media_type::LICENSE,
                "digest": digest.to_string(),
                "size": text.len(),
            }));
    }
    std::fs::write(&path, manifest.to_string()).unwrap();
    assert_eq!(
        store.resolve(&name("tiny")).unwrap().license,
        ["MIT", "Apache-2.0"]
    );
}
