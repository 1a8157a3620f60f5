use serde_json::json;

use super::*;

fn parse(value: Value) -> Result<Options, OptionsError> {
    match value {
        Value::Object(map) => Options::from_map(&map),
        other => panic!("not an object: {other}"),
    }
}

/// Every field set, each to a value other than its default.
fn everything() -> Options {
    Options {
        num_ctx: Some(4096),
        num_batch: Some(256),
        num_thread: Some(3),
        num_keep: Some(-1),
        use_mmap: Some(false),
        num_gpu: Some(0),
        main_gpu: Some(1),
        num_parallel: Some(2),
        flash_attention: Some(true),
        kv_cache_type: Some(GgmlType::Q8_0),
        kv_cache_type_k: Some(GgmlType::Q4_0),
        kv_cache_type_v: Some(GgmlType::IQ4_NL),
        numerics: Some(Numerics::Exact),
        num_predict: Some(-1),
        temperature: Some(0.7),
        top_k: Some(20),
        top_p: Some(0.95),
        min_p: Some(0.05),
        typical_p: Some(0.9),
        repeat_last_n: Some(128),
        repeat_penalty: Some(1.1),
        presence_penalty: Some(-0.5),
        frequency_penalty: Some(1.5),
        seed: Some(-1),
        stop: Some(vec!["</s>".into(), "\n\n".into()]),
        ignored: Vec::new(),
    }
}

#[test]
fn reads_every_supported_option() {
    let options = parse(json!({
        "num_ctx": 4096, "num_batch": 256, "num_thread": 3, "num_keep": -1,
        "use_mmap": false, "num_gpu": 0, "main_gpu": 1, "num_parallel": 2,
        "flash_attention": true, "kv_cache_type": "q8_0", "kv_cache_type_k": "Q4_0",
        "kv_cache_type_v": "iq4_nl", "numerics": "Exact", "num_predict": -1, "temperature": 0.7, "top_k": 20,
        "top_p": 0.95, "min_p": 0.05, "typical_p": 0.9, "repeat_last_n": 128,
        "repeat_penalty": 1.1, "presence_penalty": -0.5, "frequency_penalty": 1.5,
        "seed": -1, "stop": ["</s>", "\n\n"],
    }))
    .unwrap();
    assert_eq!(options, everything());
}

#[test]
fn the_name_table_matches_the_parser() {
    for &(name, kind) in SUPPORTED {
        let sample = match kind {
            Kind::Integer => json!(1),
            Kind::Float => json!(0.5),
            Kind::Bool => json!(true),
            Kind::Str if name == "numerics" => json!("exact"),
            Kind::Str => json!("f16"),
            Kind::Strings => json!("x"),
        };
        let options = parse(json!({ name: sample })).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!options.is_empty(), "{name} set nothing");
        assert!(
            options.to_map().contains_key(name),
            "{name} not written back"
        );
    }
    assert_eq!(SUPPORTED.len(), everything().to_map().len());
}

#[test]
fn round_trips_through_to_map() {
    let map = everything().to_map();
    assert_eq!(
        map["temperature"],
        json!(0.7),
        "floats keep their short decimal form"
    );
    assert_eq!(map["kv_cache_type_v"], json!("iq4_nl"));
    assert_eq!(Options::from_map(&map).unwrap(), everything());
    assert!(Options::default().to_map().is_empty());
}

#[test]
fn null_leaves_an_option_unset() {
    let options = parse(json!({"temperature": null, "top_k": 5})).unwrap();
    assert_eq!(options.temperature, None);
    assert_eq!(options.top_k, Some(5));
}

#[test]
fn integral_floats_are_accepted_for_integers() {
    let options = parse(json!({"num_ctx": 4096.0, "seed": -3.0, "num_predict": 1e3})).unwrap();
    assert_eq!(options.num_ctx, Some(4096));
    assert_eq!(options.seed, Some(-3));
    assert_eq!(options.num_predict, Some(1000));
    // And integers for floats.
    assert_eq!(
        parse(json!({"temperature": 1})).unwrap().temperature,
        Some(1.0)
    );
}

#[test]
fn stop_is_a_string_or_an_array() {
    let one = parse(json!({"stop": "User:"})).unwrap();
    assert_eq!(one.stop, Some(vec!["User:".to_owned()]));
    let many = parse(json!({"stop": ["User:", "<|im_end|>"]})).unwrap();
    assert_eq!(many.stop, Some(vec!["User:".into(), "<|im_end|>".into()]));
    let none = parse(json!({"stop": []})).unwrap();
    assert_eq!(none.stop, Some(vec![]));
}

#[test]
fn unknown_names_are_skipped_in_requests_and_refused_in_modelfiles() {
    let options = parse(json!({"bogus": 1, "top_k": 3})).unwrap();
    assert_eq!(
        options,
        Options {
            top_k: Some(3),
            ..Options::default()
        }
    );
    assert_eq!(
        Options::from_parameters([("bogus", "1")]).unwrap_err(),
        OptionsError::Unknown("bogus".into())
    );
}

#[test]
fn bad_values_are_errors_naming_the_option() {
    let cases = [
        (
            json!({"num_ctx": "4096"}),
            r#"option "num_ctx" must be a whole number, not "4096""#,
        ),
        (
            json!({"num_ctx": 4096.5}),
            r#"option "num_ctx" must be a whole number, not 4096.5"#,
        ),
        (
            json!({"num_ctx": 0}),
            r#"option "num_ctx" is 0, but it must be at least 1"#,
        ),
        (
            json!({"num_ctx": -5}),
            r#"option "num_ctx" is -5, but it must be at least 1"#,
        ),
        (
            json!({"num_ctx": 5_000_000_000u64}),
            r#"option "num_ctx" is 5000000000, but it must be at least 1"#,
        ),
        (
            json!({"num_batch": 0}),
            r#"option "num_batch" is 0, but it must be at least 1"#,
        ),
        (
            json!({"num_parallel": 0}),
            r#"option "num_parallel" is 0, but it must be at least 1"#,
        ),
        (
            json!({"num_predict": 3_000_000_000u64}),
            r#"option "num_predict" is 3000000000, but it must be a whole number that fits in 32 bits"#,
        ),
        (
            json!({"seed": 1e300}),
            r#"option "seed" is 1e+300, but it must be a whole number that fits in 64 bits"#,
        ),
        (
            json!({"seed": u64::MAX}),
            r#"option "seed" is 18446744073709551615, but it must be a whole number that fits in 64 bits"#,
        ),
        (
            json!({"top_p": 1.5}),
            r#"option "top_p" is 1.5, but it must be between 0 and 1"#,
        ),
        (
            json!({"min_p": -0.1}),
            r#"option "min_p" is -0.1, but it must be between 0 and 1"#,
        ),
        (
            json!({"temperature": -1}),
            r#"option "temperature" is -1, but it must be 0 or more"#,
        ),
        (
            json!({"temperature": 1e300}),
            r#"option "temperature" is 1e+300, but it must be 0 or more"#,
        ),
        (
            json!({"temperature": "hot"}),
            r#"option "temperature" must be a number, not "hot""#,
        ),
        (
            json!({"repeat_penalty": 0}),
            r#"option "repeat_penalty" is 0, but it must be above 0 (1 is off)"#,
        ),
        (
            json!({"repeat_last_n": -2}),
            r#"option "repeat_last_n" is -2, but it must be -1 (whole context) or more"#,
        ),
        (
            json!({"use_mmap": "true"}),
            r#"option "use_mmap" must be a boolean (true or false), not "true""#,
        ),
        (
            json!({"flash_attention": 1}),
            r#"option "flash_attention" must be a boolean (true or false), not 1"#,
        ),
        (
            json!({"kv_cache_type": "q4_K"}),
            r#"option "kv_cache_type" is "q4_K", but it must be one of f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl"#,
        ),
        (
            json!({"numerics": "quick"}),
            r#"option "numerics" is "quick", but it must be fast or exact"#,
        ),
        (
            json!({"kv_cache_type_k": 8}),
            r#"option "kv_cache_type_k" must be a string, not 8"#,
        ),
        (
            json!({"stop": ["a", 1]}),
            r#"option "stop" must be a string or an array of strings, not ["a",1]"#,
        ),
        (
            json!({"stop": ""}),
            r#"option "stop" is "", but it must be non-empty strings"#,
        ),
        (
            json!({"stop": {"a": 1}}),
            r#"option "stop" must be a string or an array of strings, not {"a":1}"#,
        ),
    ];
    for (input, message) in cases {
        let err = parse(input.clone()).unwrap_err();
        assert_eq!(err.to_string(), message, "{input}");
    }
}

#[test]
fn long_values_are_shortened_in_errors() {
    let long = "x".repeat(1000);
    let err = parse(json!({ "temperature": long }))
        .unwrap_err()
        .to_string();
    assert!(err.len() < 150, "{err}");
    assert!(err.contains("xxx..."), "{err}");
}

#[test]
fn unsupported_options_pass_and_are_reported_when_they_would_change_something() {
    let neutral = parse(json!({
        "mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1, "tfs_z": 1.0,
        "penalize_newline": false, "numa": false, "low_vram": false, "f16_kv": true,
        "logits_all": false, "vocab_only": false, "use_mlock": false,
        "embedding_only": false, "draft_num_predict": 4, "temperature": 0.5,
    }))
    .unwrap();
    assert_eq!(
        neutral,
        Options {
            temperature: Some(0.5),
            ..Options::default()
        }
    );
    assert!(parse(json!({"mirostat": 0.0, "tfs_z": 1})).is_ok());
    for (input, name) in [
        (json!({"mirostat": 2}), "mirostat"),
        (json!({"tfs_z": 0.95}), "tfs_z"),
        (json!({"penalize_newline": true}), "penalize_newline"),
        (json!({"use_mlock": true}), "use_mlock"),
        (json!({"numa": true}), "numa"),
        (json!({"low_vram": true}), "low_vram"),
        (json!({"f16_kv": false}), "f16_kv"),
        (json!({"vocab_only": true}), "vocab_only"),
    ] {
        let options = parse(input.clone()).unwrap();
        assert_eq!(options.ignored, [name], "{input}");
    }
    // Reported once, whichever layer set them.
    let both = parse(json!({"mirostat": 1, "numa": true}))
        .unwrap()
        .overlay(&parse(json!({"mirostat": 2, "top_k": 5})).unwrap());
    assert_eq!(both.ignored, ["mirostat", "numa"]);
    assert_eq!(both.top_k, Some(5));
    // Their types are still checked.
    let err = parse(json!({"mirostat": "off"})).unwrap_err();
    assert!(matches!(err, OptionsError::WrongType { .. }), "{err}");
    let err = parse(json!({"mirostat_tau": "five"})).unwrap_err();
    assert!(matches!(err, OptionsError::WrongType { .. }), "{err}");
}

#[test]
fn overlay_takes_each_set_field_from_over() {
    let defaults = Options {
        num_ctx: Some(2048),
        temperature: Some(0.8),
        top_k: Some(40),
        stop: Some(vec!["a".into()]),
        ..Options::default()
    };
    let model = Options {
        temperature: Some(0.2),
        stop: Some(vec!["<|im_end|>".into()]),
        ..Options::default()
    };
    let request = Options {
        num_ctx: Some(8192),
        seed: Some(42),
        ..Options::default()
    };
    let merged = defaults.overlay(&model).overlay(&request);
    assert_eq!(
        merged,
        Options {
            num_ctx: Some(8192),
            temperature: Some(0.2),
            top_k: Some(40),
            seed: Some(42),
            stop: Some(vec!["<|im_end|>".into()]),
            ..Options::default()
        }
    );
    // Every field: a full overlay wins everywhere, an empty one changes nothing.
    assert_eq!(defaults.overlay(&everything()), everything());
    assert_eq!(everything().overlay(&Options::default()), everything());
    // An empty stop list set by the request still replaces the model's.
    let cleared = model.overlay(&Options {
        stop: Some(vec![]),
        ..Options::default()
    });
    assert_eq!(cleared.stop, Some(vec![]));
}

#[test]
fn parameters_read_from_text() {
    let options = Options::from_parameters([
        ("num_ctx", "4096"),
        ("temperature", "0.25"),
        ("stop", "<|im_start|>"),
        ("stop", "<|im_end|>"),
        ("use_mmap", "False"),
        ("num_predict", "128.0"),
        ("kv_cache_type", "q8_0"),
        ("top_k", "10"),
        ("top_k", "99"),
        ("mirostat", "0"),
    ])
    .unwrap();
    assert_eq!(
        options,
        Options {
            num_ctx: Some(4096),
            temperature: Some(0.25),
            stop: Some(vec!["<|im_start|>".into(), "<|im_end|>".into()]),
            use_mmap: Some(false),
            num_predict: Some(128),
            kv_cache_type: Some(GgmlType::Q8_0),
            top_k: Some(10),
            ..Options::default()
        }
    );
    for (pair, message) in [
        (
            ("num_ctx", "lots"),
            r#"option "num_ctx" must be a whole number, not "lots""#,
        ),
        (
            ("temperature", "nan"),
            r#"option "temperature" must be a number, not "nan""#,
        ),
        (
            ("use_mmap", "yes"),
            r#"option "use_mmap" must be a boolean (true or false), not "yes""#,
        ),
        (
            ("num_ctx", "0"),
            r#"option "num_ctx" is 0, but it must be at least 1"#,
        ),
        (("frobnicate", "1"), "invalid option provided: frobnicate"),
    ] {
        let err = Options::from_parameters([pair]).unwrap_err();
        assert_eq!(err.to_string(), message, "{pair:?}");
    }
}
