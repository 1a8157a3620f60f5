//! Creating from another model: its layers are kept and what the spec gives replaces
//! them (parameters merged over); licenses and messages are stored and read back.

use serde_json::json;

use super::*;

fn message(role: &str, content: &str) -> StoredMessage {
    StoredMessage {
        role: role.into(),
        content: content.into(),
    }
}

#[tokio::test]
async fn a_model_built_on_another_keeps_its_weights_and_overrides_the_rest() {
    let (_dir, store) = store();
    let gguf = upload(&store, &tiny_gguf()).await;
    let base = CreateSpec {
        template: Some("{{ .Prompt }}".into()),
        system: Some("base system".into()),
        parameters: json!({"temperature": 0.5, "top_k": 7})
            .as_object()
            .unwrap()
            .clone(),
        license: vec!["MIT".into()],
        ..spec("tiny.gguf", &gguf)
    };
    store.create(&name("base"), base).unwrap();

    let derived = CreateSpec {
        base: Some(name("base")),
        system: Some("derived system".into()),
        parameters: json!({"temperature": 0.9}).as_object().unwrap().clone(),
        messages: vec![message("user", "Hi"), message("assistant", "Hello!")],
        ..CreateSpec::default()
    };
    let entry = store.create(&name("derived"), derived).unwrap();
    assert_eq!(entry.details.family, "llama");

    let resolved = store.resolve(&name("derived")).unwrap();
    let base = store.resolve(&name("base")).unwrap();
    assert_eq!(resolved.model_path, base.model_path);
    assert_eq!(resolved.template.as_deref(), Some("{{ .Prompt }}"));
    assert_eq!(resolved.system.as_deref(), Some("derived system"));
    assert_eq!(resolved.license, ["MIT"]);
    assert_eq!(
        serde_json::Value::Object(resolved.parameters),
        json!({"temperature": 0.9, "top_k": 7})
    );
    assert_eq!(
        resolved.messages,
        [message("user", "Hi"), message("assistant", "Hello!")]
    );
    // The base is unchanged.
    assert_eq!(base.system.as_deref(), Some("base system"));
    assert!(base.messages.is_empty());
}

#[tokio::test]
async fn building_on_a_missing_model_is_not_found() {
    let (_dir, store) = store();
    let spec = CreateSpec {
        base: Some(name("nothing-here")),
        ..CreateSpec::default()
    };
    let err = store.create(&name("x"), spec).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}
