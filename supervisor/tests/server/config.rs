//! The binary refuses bad configuration before serving and shows where values came from.

use std::process::Command;

fn ollamad(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ollamad"));
    command.args(args).env_clear().env("HOME", "/nonexistent");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn every_bad_value_stops_the_start_with_a_message() {
    let cases = [
        ("OLLAMA_HOST", "127.0.0.1:99999"),
        ("OLLAMA_KEEP_ALIVE", "five minutes"),
        ("OLLAMA_MAX_LOADED_MODELS", "-1"),
        ("OLLAMA_NUM_PARALLEL", "0"),
        ("OLLAMA_MAX_QUEUE", "lots"),
        ("OLLAMA_CONTEXT_LENGTH", "0"),
        ("OLLAMA_FLASH_ATTENTION", "yes"),
        ("OLLAMA_KV_CACHE_TYPE", "q3_k"),
        ("OLLAMA_KV_CACHE_TYPE_K", "fp8"),
        ("OLLAMA_KV_CACHE_TYPE_V", "q4_k"),
        ("OLLAMA_LOAD_TIMEOUT", "soon"),
        ("OLLAMA_GPU_OVERHEAD", "1GB"),
        ("OLLAMA_DEBUG", "verbose"),
        ("OLLAMA_MULTIUSER_CACHE", "maybe"),
        ("OLLAMA_NOPRUNE", "2"),
        ("OLLAMA_SCHED_SPREAD", "on"),
        ("OLLAMA_CPU_FALLBACK", "sometimes"),
    ];
    for (name, value) in cases {
        // `serve` would bind a port: a bad value must stop it before that.
        let out = ollamad(&[], &[(name, value)]);
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(name) && err.contains(value) && err.contains("accepted:"),
            "{name}={value}: {err}"
        );
    }
}

#[test]
fn a_device_the_machine_does_not_have_stops_the_start_naming_it() {
    let models = tempfile::tempdir().unwrap();
    let models = models.path().to_str().unwrap();
    let out = ollamad(
        &[],
        &[
            ("OLLAMA_DEVICE", "99"),
            ("OLLAMA_MODELS", models),
            ("OLLAMA_HOST", "127.0.0.1:0"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OLLAMA_DEVICE=99") && err.contains("OLLAMA_DEVICE=cpu"),
        "{err}"
    );
}

#[test]
fn config_shows_each_value_and_its_source() {
    let out = ollamad(&["config"], &[("OLLAMA_KV_CACHE_TYPE", "q8_0")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .to_string()
    };
    let kv = line("OLLAMA_KV_CACHE_TYPE");
    assert!(kv.contains("q8_0") && kv.contains("(environment)"), "{kv}");
    let host = line("OLLAMA_HOST");
    assert!(
        host.contains("127.0.0.1:11434") && host.contains("(default)"),
        "{host}"
    );
}

#[test]
fn help_documents_every_variable() {
    let out = ollamad(&["--help"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    for v in supervisor::config::VARIABLES {
        assert!(text.contains(v.name), "{} missing from --help", v.name);
    }
}
