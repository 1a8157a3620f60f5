use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_ollamas() {
    let c = Config::from_env(&env(&[("HOME", "/home/u")])).unwrap();
    assert_eq!(c.host.to_string(), "127.0.0.1:11434");
    assert_eq!(c.models_dir, PathBuf::from("/home/u/.ollama/models"));
    assert_eq!(c.keep_alive, KeepAlive::For(Duration::from_secs(300)));
    assert_eq!(
        (c.num_parallel, c.max_queue, c.max_loaded_models),
        (1, 512, 0)
    );
    assert_eq!(c.context_length, 4096);
    assert_eq!(
        (c.kv_cache_type_k, c.kv_cache_type_v),
        (GgmlType::F16, GgmlType::F16)
    );
    assert_eq!(c.load_timeout, Some(Duration::from_secs(300)));
    assert!(c.flash_attention, "flash attention is on by default");
    assert_eq!(c.numerics, Numerics::Fast);
    assert_eq!(c.log_level, LogLevel::Info);
}

#[test]
fn k_and_v_types_are_set_apart_over_the_shared_one() {
    let c = Config::from_env(&env(&[
        ("OLLAMA_KV_CACHE_TYPE", "q8_0"),
        ("OLLAMA_KV_CACHE_TYPE_V", "q4_0"),
    ]))
    .unwrap();
    assert_eq!(
        (c.kv_cache_type_k, c.kv_cache_type_v),
        (GgmlType::Q8_0, GgmlType::Q4_0)
    );
    let d = c.describe(&env(&[
        ("OLLAMA_KV_CACHE_TYPE", "q8_0"),
        ("OLLAMA_KV_CACHE_TYPE_V", "q4_0"),
    ]));
    let v = d
        .iter()
        .find(|d| d.name == "OLLAMA_KV_CACHE_TYPE_V")
        .unwrap();
    assert_eq!((v.value.as_str(), v.source), ("q4_0", "environment"));
    let k = d
        .iter()
        .find(|d| d.name == "OLLAMA_KV_CACHE_TYPE_K")
        .unwrap();
    assert_eq!((k.value.as_str(), k.source), ("q8_0", "default"));
}

#[test]
fn every_bad_value_names_variable_value_and_what_is_accepted() {
    let cases = [
        ("OLLAMA_HOST", "127.0.0.1:99999"),
        ("OLLAMA_KEEP_ALIVE", "five minutes"),
        ("OLLAMA_MAX_LOADED_MODELS", "-1"),
        ("OLLAMA_NUM_PARALLEL", "0"),
        ("OLLAMA_MAX_QUEUE", "lots"),
        ("OLLAMA_CONTEXT_LENGTH", "0"),
        ("OLLAMA_FLASH_ATTENTION", "yes"),
        ("OLLAMA_NUMERICS", "quick"),
        ("OLLAMA_KV_CACHE_TYPE", "q3_k"),
        ("OLLAMA_KV_CACHE_TYPE_K", "fp8"),
        ("OLLAMA_KV_CACHE_TYPE_V", "q4_k"),
        ("OLLAMA_LOAD_TIMEOUT", "soon"),
        ("OLLAMA_GPU_OVERHEAD", "1GB"),
        ("OLLAMA_DEBUG", "verbose"),
        ("OLLAMA_MULTIUSER_CACHE", "maybe"),
        ("OLLAMA_NOPRUNE", "2"),
        ("OLLAMA_SCHED_SPREAD", "on"),
        ("OLLAMA_DEVICE", "tpu"),
    ];
    for (name, value) in cases {
        let err = Config::from_env(&env(&[(name, value)])).unwrap_err();
        assert_eq!(err.name, name);
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains(value), "{msg}");
        assert!(msg.contains("accepted:"), "{msg}");
    }
}

#[test]
fn keep_alive_forms() {
    let ka = |v| {
        Config::from_env(&env(&[("OLLAMA_KEEP_ALIVE", v)]))
            .unwrap()
            .keep_alive
    };
    assert_eq!(ka("-1"), KeepAlive::Forever);
    assert_eq!(ka("0"), KeepAlive::For(Duration::ZERO));
    assert_eq!(ka("1h30m"), KeepAlive::For(Duration::from_secs(5400)));
    assert_eq!(ka("600"), KeepAlive::For(Duration::from_secs(600)));
    let lt = Config::from_env(&env(&[("OLLAMA_LOAD_TIMEOUT", "0")]))
        .unwrap()
        .load_timeout;
    assert_eq!(lt, None);
}

#[test]
fn device_forms() {
    let device = |v| {
        Config::from_env(&env(&[("OLLAMA_DEVICE", v)]))
            .unwrap()
            .device
    };
    assert_eq!(device("GPU"), Some("gpu".to_owned()));
    assert_eq!(device("cpu"), Some("cpu".to_owned()));
    assert_eq!(device("1"), Some("1".to_owned()));
    assert_eq!(device(""), None);
}

#[test]
fn every_registered_variable_is_described() {
    let c = Config::from_env(&env(&[])).unwrap();
    assert_eq!(c.describe(&env(&[])).len(), VARIABLES.len());
}
