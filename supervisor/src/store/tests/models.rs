//! Models: create, list, resolve, and the errors a user sees.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::*;

#[tokio::test]
async fn create_list_and_resolve_smollm2() {
    let (_dir, store) = store();
    let path = e2e::TestModel::SmolLm2.path();
    // The digest comes from the checksum file the fetch script verified, not from us.
    let sha = std::fs::read_to_string(path.with_extension("gguf.sha256")).unwrap();
    let digest = Digest::parse(&format!("sha256:{}", sha.trim())).unwrap();
    let file = tokio::fs::File::open(&path).await.unwrap();
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(store.write_blob(&digest, file).await.unwrap(), file_len);

    let parameters: Map<String, Value> =
        serde_json::from_value(json!({"temperature": 0.2, "stop": ["<|im_end|>"]})).unwrap();
    let model = name("SmolLM2");
    let created = store
        .create(
            &model,
            CreateSpec {
                files: BTreeMap::from([(
                    "SmolLM2-135M-Instruct.Q4_1.gguf".to_owned(),
                    digest.clone(),
                )]),
                parameters: parameters.clone(),
                template: Some("{{ .Prompt }}".to_owned()),
                system: Some("You are terse.".to_owned()),
                ..CreateSpec::default()
            },
        )
        .unwrap();
    let details = &created.details;
    assert_eq!(created.name.to_string(), "smollm2:latest");
    assert_eq!(
        (details.format.as_str(), details.family.as_str()),
        ("gguf", "llama")
    );
    assert_eq!(details.families, ["llama"]);
    assert_eq!(details.parameter_size, "134.52M"); // 134,515,008 tensor elements
    assert_eq!(details.quantization_level, "Q4_1");

    let manifest_path = store
        .manifests_dir()
        .join("registry.ollama.ai/library/smollm2/latest");
    let manifest_bytes = std::fs::read(&manifest_path).unwrap();
    assert_eq!(created.digest, Digest::of_bytes(&manifest_bytes).hex());
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], media_type::MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media_type::CONFIG);
    let layers = manifest["layers"].as_array().unwrap();
    let kinds: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            media_type::MODEL,
            media_type::TEMPLATE,
            media_type::SYSTEM,
            media_type::PARAMS
        ]
    );
    assert_eq!(layers[0]["digest"], digest.to_string());
    assert_eq!(layers[0]["size"], file_len);
    let layer_sizes: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert_eq!(
        created.size,
        layer_sizes + manifest["config"]["size"].as_u64().unwrap()
    );

    let config_digest = Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(store.blob_path(&config_digest)).unwrap()).unwrap();
    assert_eq!(config["model_format"], "gguf");
    assert_eq!(config["model_family"], "llama");
    assert_eq!(config["model_type"], "134.52M");
    assert_eq!(config["file_type"], "Q4_1");
    assert_eq!(
        (config["architecture"].as_str(), config["os"].as_str()),
        (Some("amd64"), Some("linux"))
    );
    assert_eq!(config["rootfs"]["type"], "layers");
    let layer_digests: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    assert_eq!(
        config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        layer_digests
    );

    assert_eq!(store.list().unwrap(), std::slice::from_ref(&created));
    let tags = serde_json::to_value(&created).unwrap();
    assert_eq!(tags["name"], "smollm2:latest");
    assert_eq!(tags["model"], "smollm2:latest");
    assert_eq!(tags["digest"], created.digest);
    assert_eq!(tags["details"]["parent_model"], "");
    assert_eq!(tags["details"]["quantization_level"], "Q4_1");
    let when = tags["modified_at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(when).unwrap(),
        created.modified_at
    );

    let resolved = store.resolve(&name("smollm2:latest")).unwrap();
    assert_eq!(resolved.entry, created);
    assert_eq!(resolved.model_path, store.blob_path(&digest));
    assert_eq!(resolved.parameters, parameters);
    assert_eq!(resolved.template.as_deref(), Some("{{ .Prompt }}"));
    assert_eq!(resolved.system.as_deref(), Some("You are terse."));
    let gguf = gguf::GgufFile::open(&resolved.model_path).unwrap();
    assert_eq!(gguf.header().parameter_count(), 134_515_008);
}

#[tokio::test]
async fn create_refuses_bad_files_with_a_clear_error_and_writes_no_manifest() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    let text = upload(&store, b"not a model at all, just text").await;
    let model = name("m");

    let none = store
        .create(&model, CreateSpec::default())
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("exactly one GGUF file") && none.contains("0 were given"),
        "{none}"
    );

    let mut two = spec("a.gguf", &gguf);
    two.files.insert("b.gguf".to_owned(), gguf.clone());
    let two = store.create(&model, two).unwrap_err().to_string();
    assert!(
        two.contains("2 were given") && two.contains("\"a.gguf\", \"b.gguf\""),
        "{two}"
    );

    let absent = Digest::of_bytes(b"never uploaded");
    let missing = store
        .create(&model, spec("m.gguf", &absent))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("\"m.gguf\"") && missing.contains(&format!("POST /api/blobs/{absent}")),
        "{missing}"
    );

    let not_gguf = store.create(&model, spec("notes.gguf", &text)).unwrap_err();
    assert!(
        matches!(not_gguf, StoreError::NotGguf { .. }),
        "{not_gguf:?}"
    );
    assert!(
        not_gguf.to_string().contains("file \"notes.gguf\""),
        "{not_gguf}"
    );

    let mut truncated = tiny_gguf();
    truncated.truncate(truncated.len() - 1000); // into the tensor's data
    let truncated = upload(&store, &truncated).await;
    assert!(matches!(
        store.create(&model, spec("t.gguf", &truncated)),
        Err(StoreError::NotGguf { .. })
    ));

    assert!(store.list().unwrap().is_empty());
    assert!(files_in(store.manifests_dir()).is_empty());
}

#[tokio::test]
async fn recreating_a_name_replaces_its_manifest() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    let model = name("me/tiny:v1");
    let mut first = spec("tiny.gguf", &gguf);
    first.system = Some("first".to_owned());
    first.parameters.insert("top_k".to_owned(), json!(5));
    let before = store.create(&model, first).unwrap();
    assert_eq!(before.details.parameter_size, "1K");
    assert_eq!(before.details.quantization_level, "Q4_K_M");

    let mut second = spec("tiny.gguf", &gguf);
    second.system = Some("second".to_owned());
    let after = store.create(&name("ME/Tiny:V1"), second).unwrap();
    assert_ne!(before.digest, after.digest);

    let listed = store.list().unwrap();
    assert_eq!(listed, std::slice::from_ref(&after));
    assert_eq!(listed[0].name.to_string(), "me/tiny:v1");
    let resolved = store.resolve(&model).unwrap();
    assert_eq!(resolved.system.as_deref(), Some("second"));
    assert!(resolved.parameters.is_empty() && resolved.template.is_none());
    let dir = store.manifests_dir().join("registry.ollama.ai/me/tiny");
    assert_eq!(
        files_in(&dir),
        ["v1"],
        "no temporary file is left beside the manifest"
    );
}

#[tokio::test]
async fn list_skips_damaged_manifests_and_resolve_says_what_is_wrong() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    let good = store.create(&name("good"), spec("g.gguf", &gguf)).unwrap();
    let library = store.manifests_dir().join("registry.ollama.ai/library");

    std::fs::create_dir_all(library.join("garbage")).unwrap();
    std::fs::write(
        library.join("garbage/latest"),
        b"{\"schemaVersion\": 2, \"lay",
    )
    .unwrap();
    let good_manifest = std::fs::read_to_string(library.join("good/latest")).unwrap();
    let manifest: Value = serde_json::from_str(&good_manifest).unwrap();
    let config = Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
    let no_config = good_manifest.replace(config.hex(), Digest::of_bytes(b"gone").hex());
    std::fs::create_dir_all(library.join("noconfig")).unwrap();
    std::fs::write(library.join("noconfig/latest"), no_config).unwrap();
    std::fs::create_dir_all(library.join("bad name")).unwrap();
    std::fs::write(library.join("bad name/latest"), &good_manifest).unwrap();
    std::fs::write(library.join("good/.tmp-123-0-0"), b"{").unwrap();

    assert_eq!(store.list().unwrap(), [good]);
    for broken in ["garbage", "noconfig"] {
        let err = store.resolve(&name(broken)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("create it again"), "{err}");
    }
    let err = store.resolve(&name("nope")).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("model \"nope:latest\" not found, create it first"),
        "{err}"
    );
}

#[tokio::test]
async fn a_manifest_ollama_wrote_in_mixed_case_is_found_then_replaced() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    store
        .create(&name("mymodel"), spec("m.gguf", &gguf))
        .unwrap();
    let library = store.manifests_dir().join("registry.ollama.ai/library");
    std::fs::create_dir_all(library.join("MyModel")).unwrap();
    std::fs::rename(
        library.join("mymodel/latest"),
        library.join("MyModel/Latest"),
    )
    .unwrap();

    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name.to_string(), "mymodel:latest");
    let resolved = store.resolve(&name("MYMODEL")).unwrap();
    assert_eq!(resolved.model_path, store.blob_path(&gguf));

    store
        .create(&name("mymodel"), spec("m.gguf", &gguf))
        .unwrap();
    assert!(
        !library.join("MyModel").exists(),
        "the emptied directory is removed"
    );
    assert_eq!(files_in(&library.join("mymodel")), ["latest"]);
    assert_eq!(store.list().unwrap().len(), 1);
}
