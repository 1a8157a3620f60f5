//! The renderers on hand-built answers (snapshots, at a fixed "now"), and the small
//! parsers and formatters they use.

use chrono::{DateTime, Utc};
use ollama_proto::ollama::{
    ConfigResponse, ContextFit, Crashed, DepartedModel, EstimateResponse, Event, ListResponse,
    Loaded, ModelDetails, ModelSummary, PsResponse, Reload, RunningModel, Setting, ShowResponse,
    event::Kind, keep_alive,
};

use crate::format::{Terminal, human_bytes, human_number, human_time, short_duration};
use crate::options::parse_keep_alive;
use crate::run::Multiline;

fn now() -> DateTime<Utc> {
    "2026-12-02T14:00:00Z".parse().unwrap()
}

const PLAIN: Terminal = Terminal::Yes { colour: false };

fn details(family: &str, size: &str, quantization: &str) -> Option<ModelDetails> {
    Some(ModelDetails {
        format: "gguf".into(),
        family: family.into(),
        families: vec![family.into()],
        parameter_size: size.into(),
        quantization_level: quantization.into(),
    })
}

fn ps_response() -> PsResponse {
    let smollm2 = RunningModel {
        name: "smollm2:latest".into(),
        digest: "4e3aa5c1d2b7f00112233445566778899aabbccddeeff00112233445566778899".into(),
        size: 230_400_000,
        size_vram: 0,
        expires_at: "2026-12-02T14:04:30Z".into(),
        context_length: 4096,
        state: "ready".into(),
        pid: 4242,
        kv_cache_type_k: "q8_0".into(),
        kv_cache_type_v: "q4_0".into(),
        flash_attention: true,
        numerics: "exact".into(),
        num_parallel: 4,
        slots_busy: 1,
        requests_waiting: 2,
        details: details("llama", "135M", "Q4_1"),
        ..RunningModel::default()
    };
    let gemma3 = RunningModel {
        name: "gemma3:270m".into(),
        digest: "a5fd3b62230a0000".into(),
        size: 1_500_000_000,
        size_vram: 1_500_000_000,
        context_length: 8192,
        state: "loading".into(),
        kv_cache_type_k: "f16".into(),
        kv_cache_type_v: "f16".into(),
        num_parallel: 1,
        restarts: 2,
        last_failure: "signal 9 (SIGKILL); its last output was: out of memory".into(),
        ..RunningModel::default()
    };
    let departed = |name: &str, minutes: i64, reason: &str, detail: &str| DepartedModel {
        name: name.into(),
        at: (now() - chrono::TimeDelta::minutes(minutes)).to_rfc3339(),
        reason: reason.into(),
        detail: detail.into(),
    };
    PsResponse {
        models: vec![smollm2, gemma3],
        departed: vec![
            departed("tiny:latest", 1, "evicted", "evicted for gemma3:270m"),
            departed("big:latest", 5, "crashed", "crashed: killed by SIGKILL"),
            departed("smollm2:latest", 12, "reloaded", "reloaded for num_ctx"),
            departed("old:latest", 90, "expired", ""),
        ],
    }
}

#[test]
fn ps_shows_ollamas_columns_then_the_runners_and_why_models_left() {
    insta::assert_snapshot!(crate::ps::render(&ps_response(), now(), PLAIN));
}

#[test]
fn ps_in_a_pipe_is_tab_separated_without_colour() {
    let text = crate::ps::render(&ps_response(), now(), Terminal::No);
    assert!(!text.contains('\x1b'));
    insta::assert_snapshot!(text);
}

#[test]
fn ps_on_a_colour_terminal_colours_the_state_after_padding() {
    let text = crate::ps::ps_table(&ps_response(), now()).aligned(true);
    assert!(text.contains("\x1b[32mready"), "{text:?}");
    assert!(text.contains("\x1b[1mNAME"), "{text:?}");
}

#[test]
fn processor_splits_size_between_cpu_and_gpu_as_ollama() {
    let at = |size, size_vram| {
        crate::ps::processor(&RunningModel {
            size,
            size_vram,
            ..RunningModel::default()
        })
    };
    assert_eq!(at(230_400_000, 0), "100% CPU");
    // A runner on a GPU reports its device memory as both sizes.
    assert_eq!(at(1_500_000_000, 1_500_000_000), "100% GPU");
    assert_eq!(at(1_000, 520), "48%/52% CPU/GPU");
    assert_eq!(at(100, 200), "Unknown");
}

#[test]
fn ps_with_nothing_loaded_is_the_header() {
    let text = crate::ps::render(&PsResponse::default(), now(), PLAIN);
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn list_shows_name_id_size_and_age() {
    let model = |name: &str, size: u64, hours: i64| ModelSummary {
        name: name.into(),
        size,
        digest: "0123456789abcdef0123".into(),
        modified_at: (now() - chrono::TimeDelta::hours(hours)).to_rfc3339(),
        details: details("llama", "135M", "Q4_1"),
    };
    let list = ListResponse {
        models: vec![
            model("smollm2:latest", 100_840_000, 2),
            model("gemma3:270m", 253_000_000, 24 * 10),
        ],
    };
    insta::assert_snapshot!(crate::models::list_table(&list, now()).aligned(false));
}

#[test]
fn show_summary_is_ollamas() {
    let show = ShowResponse {
        parameters: "stop \"<|im_end|>\"\ntemperature 0.2\nnum_ctx 4096\n".into(),
        license: "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n"
            .into(),
        details: details("llama", "135M", "Q4_1"),
        model_info: r#"{"general.architecture": "llama", "general.parameter_count": 134515008,
            "llama.context_length": 8192, "llama.embedding_length": 576}"#
            .into(),
        capabilities: vec!["completion".into(), "tools".into()],
        ..ShowResponse::default()
    };
    insta::assert_snapshot!(crate::models::summary(&show));
}

fn estimate_response() -> EstimateResponse {
    EstimateResponse {
        weights_bytes: 96_000_000,
        kv_bytes: 47_400_000,
        k_bytes: 23_600_000,
        v_bytes: 23_600_000,
        compute_bytes: 12_300_000,
        runtime_bytes: 40_000_000,
        overhead_bytes: 0,
        total_bytes: 195_700_000,
        num_ctx: 4096,
        num_parallel: 1,
        kv_cache_type_k: "f16".into(),
        kv_cache_type_v: "f16".into(),
        device: "cpu".into(),
        free_bytes: 12_000_000_000,
        device_total_bytes: 16_000_000_000,
        fits: true,
        device_bytes: 0,
        max_context: vec![
            ContextFit {
                kv_cache_type: "f16".into(),
                max_num_ctx: 8192,
            },
            ContextFit {
                kv_cache_type: "q4_0".into(),
                max_num_ctx: 0,
            },
        ],
    }
}

#[test]
fn estimate_breaks_the_total_down_and_says_whether_it_fits() {
    insta::assert_snapshot!(crate::estimate::render(
        "smollm2",
        &estimate_response(),
        PLAIN
    ));
}

#[test]
fn a_gpu_estimate_says_what_lives_on_the_gpu_and_checks_its_memory() {
    let e = EstimateResponse {
        device: "gpu".into(),
        device_bytes: 150_000_000,
        free_bytes: 80_000_000_000,
        device_total_bytes: 81_000_000_000,
        ..estimate_response()
    };
    insta::assert_snapshot!(crate::estimate::render("smollm2", &e, PLAIN));
}

#[test]
fn config_is_name_value_source() {
    let setting = |name: &str, value: &str, source: &str| Setting {
        name: name.into(),
        value: value.into(),
        source: source.into(),
        description: "what it does".into(),
    };
    let config = ConfigResponse {
        settings: vec![
            setting("OLLAMA_CONTEXT_LENGTH", "512", "environment"),
            setting("OLLAMA_HOST", "127.0.0.1:11434", "default"),
            setting("OLLAMA_KEEP_ALIVE", "5m0s", "default"),
        ],
    };
    insta::assert_snapshot!(crate::config::config_table(&config).aligned(false));
}

#[test]
fn watch_lines_say_time_model_and_what_happened() {
    let event = |kind: Kind| Event {
        at: "2026-12-02T14:02:03.250Z".into(),
        model: "smollm2:latest".into(),
        kind: Some(kind),
    };
    let events = [
        event(Kind::Loaded(Loaded {
            pid: 4242,
            load_duration_ns: 1_240_000_000,
        })),
        event(Kind::Reload(Reload {
            changed: vec!["num_ctx".into(), "kv_cache_type_k".into()],
        })),
        event(Kind::Crashed(Crashed {
            message: "the runner exited unexpectedly".into(),
            signal: 9,
            exit_code: None,
            stderr_tail: vec!["loading tensors".into(), "fatal: out of memory".into()],
        })),
    ];
    let lines: Vec<String> = events.iter().map(crate::watch::event_line).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn sizes_are_decimal_as_ollamas() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(230_400_000), "230 MB");
    assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
    assert_eq!(human_bytes(2_000_000_000), "2 GB");
    assert_eq!(human_number(134_515_008), "134.52M");
    assert_eq!(human_number(7_200_000_000), "7.2B");
}

#[test]
fn times_are_relative_as_ollamas() {
    let at = |seconds: i64| (now() + chrono::TimeDelta::seconds(seconds)).to_rfc3339();
    assert_eq!(human_time(&at(270), now(), "-"), "4 minutes from now");
    assert_eq!(human_time(&at(70), now(), "-"), "About a minute from now");
    assert_eq!(human_time(&at(-7200), now(), "-"), "2 hours ago");
    assert_eq!(human_time(&at(30 * 365 * 86400), now(), "-"), "Forever");
    assert_eq!(human_time("", now(), "Never"), "Never");
    assert_eq!(short_duration(850_000_000), "850 ms");
    assert_eq!(short_duration(1_240_000_000), "1.24 s");
}

#[test]
fn keep_alive_takes_ollamas_forms() {
    let seconds = |text: &str| match parse_keep_alive(text).unwrap().keep_alive {
        Some(keep_alive::KeepAlive::Seconds(s)) => s,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(seconds("5m"), 300.0);
    assert_eq!(seconds("1h30m"), 5400.0);
    assert_eq!(seconds("90"), 90.0);
    assert_eq!(seconds("0"), 0.0);
    assert_eq!(seconds("1.5s"), 1.5);
    assert!(matches!(
        parse_keep_alive("-1").unwrap().keep_alive,
        Some(keep_alive::KeepAlive::Forever(true))
    ));
    assert!(parse_keep_alive("soon").is_err());
}

#[test]
fn triple_quotes_make_one_multi_line_message() {
    let mut m = Multiline::default();
    assert_eq!(m.feed("hello").as_deref(), Some("hello"));
    assert_eq!(m.feed(r#""""one line""""#).as_deref(), Some("one line"));
    assert_eq!(m.feed(r#"""""#), None);
    assert!(m.is_open());
    assert_eq!(m.feed("first"), None);
    assert_eq!(m.feed(r#"second""""#).as_deref(), Some("first\nsecond"));
    assert!(!m.is_open());
}

#[test]
fn a_local_from_is_a_path_relative_to_the_modelfile() {
    use std::path::{Path, PathBuf};
    let dir = Path::new("/models");
    let home = || Some(PathBuf::from("/home/me"));
    let local = |from: &str| crate::create::local_file(from, dir, home());
    assert_eq!(local("./w.gguf"), Some(PathBuf::from("/models/./w.gguf")));
    assert_eq!(local("w.GGUF"), Some(PathBuf::from("/models/w.GGUF")));
    assert_eq!(local("/abs/w.bin"), Some(PathBuf::from("/abs/w.bin")));
    assert_eq!(local("~/w.gguf"), Some(PathBuf::from("/home/me/w.gguf")));
    assert_eq!(local("smollm2"), None);
    assert_eq!(local("library/smollm2:135m"), None);
}

#[test]
fn a_directory_from_is_rewritten_to_its_absolute_path() {
    let modelfile = "# a comment\nfrom ./minilm\nPARAMETER num_ctx 256\n";
    let out = crate::create::with_from(modelfile, "/models/minilm");
    assert_eq!(
        out,
        "# a comment\nFROM /models/minilm\nPARAMETER num_ctx 256\n"
    );
    let parsed = supervisor::modelfile::Modelfile::parse(&out).unwrap();
    assert_eq!(parsed.from(), Some("/models/minilm"));
}
