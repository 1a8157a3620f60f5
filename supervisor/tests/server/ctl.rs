//! `ollamactl` against a real server: every command through the real binary over gRPC,
//! the chat through a pseudo-terminal, and the one-line failures.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use e2e::TestModel;
use serde_json::{Value, json};

use crate::harness::{Server, eventually};

/// `ollamactl` aimed at `server`.
fn command(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ollamactl"));
    command
        .args(args)
        .env("OLLAMA_HOST", server.base.trim_start_matches("http://"));
    command
}

/// Runs `ollamactl args` and returns its stdout, failing the test on a non-zero exit.
fn ctl(server: &Server, args: &[&str]) -> String {
    let out = command(server, args).output().unwrap();
    assert!(
        out.status.success(),
        "ollamactl {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ollamactl args` parsed as JSON.
pub(crate) fn ctl_json(server: &Server, args: &[&str]) -> Value {
    let text = ctl(server, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// Asserts the command failed with exactly one line on stderr containing `expected`.
fn assert_one_line_failure(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ollamactl: "), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
}

/// The line of `table` that starts with `name`.
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split('\t').next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

/// A directory beside the test models (so a hard link works) holding a link to `model`.
fn directory_with(model: TestModel) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ollamactl-test-")
        .tempdir_in(e2e::models_dir())
        .unwrap();
    let link = dir.path().join(model.file_name());
    if std::fs::hard_link(model.path(), &link).is_err() {
        std::fs::copy(model.path(), &link).unwrap();
    }
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn create_list_show_copy_remove_estimate_config_and_version() {
    let server = Server::start(&[]);
    let dir = directory_with(TestModel::SmolLm2);
    let modelfile = dir.path().join("Modelfile");
    let from = format!("./{}", TestModel::SmolLm2.file_name());
    write(
        &modelfile,
        &format!("FROM {from}\nPARAMETER temperature 0\nLICENSE \"\"\"Apache 2.0\"\"\"\n"),
    );
    let created = ctl(
        &server,
        &["create", "smollm2", "-f", modelfile.to_str().unwrap()],
    );
    assert!(created.starts_with("created smollm2"), "{created}");

    // From a model of the store: only the Modelfile travels.
    let derived = dir.path().join("Derived");
    write(&derived, "FROM smollm2\nPARAMETER num_ctx 256\n");
    ctl(
        &server,
        &["create", "tiny", "-f", derived.to_str().unwrap()],
    );

    let list = ctl(&server, &["list"]);
    let smollm2 = row(&list, "smollm2:latest");
    let digest = ctl_json(&server, &["list", "--json"])["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "smollm2:latest")
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .unwrap();
    assert!(smollm2.contains(&digest[..12]), "{list}");
    assert!(smollm2.contains(" MB"), "{list}");
    assert!(list.contains("tiny:latest"), "{list}");

    let summary = ctl(&server, &["show", "smollm2"]);
    for expected in [
        "architecture",
        "llama",
        "context length",
        "embedding length",
        "Q4_1",
        "completion",
        "temperature",
        "Apache 2.0",
    ] {
        assert!(summary.contains(expected), "{expected}: {summary}");
    }
    assert!(ctl(&server, &["show", "smollm2", "--modelfile"]).contains("FROM "));
    assert!(ctl(&server, &["show", "tiny", "--parameters"]).contains("num_ctx"));
    assert!(
        !ctl(&server, &["show", "smollm2", "--template"])
            .trim()
            .is_empty()
    );

    ctl(&server, &["cp", "tiny", "tiny2"]);
    assert!(ctl(&server, &["list"]).contains("tiny2:latest"));
    ctl(&server, &["rm", "tiny2"]);
    assert!(!ctl(&server, &["list"]).contains("tiny2:latest"));

    let estimate = ctl(
        &server,
        &[
            "estimate",
            "smollm2",
            "--num-ctx",
            "1024",
            "--num-parallel",
            "2",
            "--kv-cache-type",
            "q8_0",
        ],
    );
    for expected in [
        "num_ctx 1024",
        "num_parallel 2",
        "q8_0/q8_0",
        "weights",
        "K/V cache",
        "runtime",
        "total",
        "free of",
    ] {
        assert!(estimate.contains(expected), "{expected}: {estimate}");
    }
    let gemma3 = TestModel::Gemma3.path();
    let by_path = ctl_json(
        &server,
        &[
            "estimate",
            gemma3.to_str().unwrap(),
            "--num-ctx",
            "2048",
            "--json",
        ],
    );
    assert_eq!(by_path["num_ctx"], 2048, "{by_path}");
    assert!(
        by_path["weights_bytes"].as_u64().unwrap() > 100_000_000,
        "{by_path}"
    );
    assert!(
        !by_path["max_context"].as_array().unwrap().is_empty(),
        "{by_path}"
    );

    let config = ctl(&server, &["config"]);
    let context = row(&config, "OLLAMA_CONTEXT_LENGTH");
    assert!(
        context.contains("512") && context.contains("environment"),
        "{config}"
    );

    let version = ctl(&server, &["version"]);
    assert!(
        version.contains("ollamactl ") && version.contains("ollamad "),
        "{version}"
    );

    let unknown = command(&server, &["show", "nosuch"]).output().unwrap();
    assert_one_line_failure(&unknown, "model \"nosuch\" not found");
    let missing_base = dir.path().join("Missing");
    write(&missing_base, "FROM nosuch\n");
    let out = command(
        &server,
        &["create", "x", "-f", missing_base.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// `ollamactl watch` in the background: its lines, once it says it is subscribed.
fn watch(server: &Server) -> (Child, Receiver<String>) {
    let mut child = command(server, &["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("watching"), "{first}");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn load_ps_run_stop_and_watch_see_the_scheduler() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    server.create("gemma3", TestModel::Gemma3, json!({}));
    let (mut watcher, events) = watch(&server);

    let loaded = ctl(
        &server,
        &[
            "load",
            "smollm2",
            "--num-ctx",
            "1024",
            "--kv-cache-type-k",
            "q8_0",
            "--kv-cache-type-v",
            "q4_0",
            "--flash-attention",
            "on",
            "--keep-alive",
            "-1",
        ],
    );
    assert!(loaded.starts_with("loaded smollm2 in "), "{loaded}");
    let table = ctl(&server, &["ps"]);
    let smollm2 = row(&table, "smollm2:latest");
    for expected in [
        "\t1024\t",
        "\tForever\t",
        "\tq8_0/q4_0\t",
        "\ton\t",
        "\texact\t",
        "\tready\t",
        "100% CPU",
    ] {
        assert!(smollm2.contains(expected), "{expected}: {table}");
    }
    let ps = ctl_json(&server, &["ps", "--json"]);
    let model = &ps["models"][0];
    assert_eq!(model["kv_cache_type_k"], "q8_0", "{ps}");
    assert_eq!(model["kv_cache_type_v"], "q4_0", "{ps}");
    assert_eq!(model["numerics"], "exact", "{ps}");
    assert!(model["pid"].as_u64().unwrap() > 0, "{ps}");

    let answer = ctl(
        &server,
        &[
            "run",
            "smollm2",
            "Say hello.",
            "-p",
            "temperature=0",
            "-p",
            "num_predict=8",
        ],
    );
    assert!(!answer.trim().is_empty(), "{answer}");

    assert_eq!(ctl(&server, &["stop", "smollm2"]).trim(), "stopped smollm2");
    let ps = ctl_json(&server, &["ps", "--json"]);
    assert!(ps["models"].as_array().unwrap().is_empty(), "{ps}");
    let departed = &ps["departed"][0];
    assert_eq!(departed["name"], "smollm2:latest", "{ps}");
    assert!(
        ["unloaded", "expired"].contains(&departed["reason"].as_str().unwrap()),
        "{ps}"
    );
    let table = ctl(&server, &["ps"]);
    assert!(
        table.contains("DEPARTED") && table.contains("smollm2:latest"),
        "{table}"
    );

    let mut seen = Vec::new();
    let saw = |seen: &mut Vec<String>, what: &str| {
        eventually(Duration::from_secs(10), || {
            seen.extend(events.try_iter());
            seen.iter()
                .any(|l| l.contains("smollm2:latest") && l.contains(what))
        })
    };
    assert!(saw(&mut seen, "  loaded: pid "), "{seen:#?}");
    assert!(saw(&mut seen, "  unloaded"), "{seen:#?}");
    let _ = watcher.kill();
    let _ = watcher.wait();

    for model in ["smollm2", "gemma3"] {
        ctl(&server, &["load", model]);
    }
    let stopped = ctl(&server, &["stop", "--all"]);
    assert_eq!(stopped.lines().count(), 2, "{stopped}");
    assert!(
        ctl_json(&server, &["ps", "--json"])["models"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// The letters and digits the terminal showed after the echo of `typed`: the answer,
/// without the line editor's escape sequences.
fn words_after(screen: &str, typed: &str) -> String {
    let (_, after) = screen
        .split_once(typed)
        .unwrap_or_else(|| panic!("{typed:?} not echoed: {screen:?}"));
    let mut words = String::new();
    let mut chars = after.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then one final letter.
            chars
                .by_ref()
                .find(|c| c.is_ascii_alphabetic() || *c == '~');
        } else if c.is_alphanumeric() {
            words.push(c);
        }
    }
    words
}

#[test]
fn run_chats_through_a_terminal_until_bye() {
    use expectrl::Expect as _;
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    let mut command = command(&server, &["run", "smollm2", "-p", "num_predict=24"]);
    command.env("TERM", "xterm");
    let mut chat = expectrl::Session::spawn(command).unwrap();
    chat.set_expect_timeout(Some(Duration::from_secs(120)));
    chat.expect(">>> ").unwrap();
    chat.send_line("What is the capital of France?").unwrap();
    let first = chat.expect(">>> ").unwrap();
    let first = String::from_utf8_lossy(first.before()).to_string();
    let answer = words_after(&first, "What is the capital of France?");
    assert!(!answer.is_empty(), "no answer streamed: {first:?}");
    chat.send_line("/set parameter temperature 0").unwrap();
    chat.expect("Set parameter 'temperature' to '0'").unwrap();
    chat.expect(">>> ").unwrap();
    chat.send_line("\"\"\"Name one colour.").unwrap();
    chat.expect("... ").unwrap();
    chat.send_line("Just one word.\"\"\"").unwrap();
    let second = chat.expect(">>> ").unwrap();
    let second = String::from_utf8_lossy(second.before()).to_string();
    let answer = words_after(&second, "Just one word.\"\"\"");
    assert!(!answer.is_empty(), "no answer streamed: {second:?}");
    chat.send_line("/bye").unwrap();
    chat.expect(expectrl::Eof).unwrap();
    let status = chat.get_process().wait().unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

#[test]
fn failures_are_one_line_and_a_non_zero_exit() {
    let unreachable = Command::new(env!("CARGO_BIN_EXE_ollamactl"))
        .arg("ps")
        .env("OLLAMA_HOST", "127.0.0.1:9")
        .output()
        .unwrap();
    assert_one_line_failure(
        &unreachable,
        "cannot reach ollamad at 127.0.0.1:9: is it running?",
    );
    let bad_flag = Command::new(env!("CARGO_BIN_EXE_ollamactl"))
        .args(["ps", "--bogus"])
        .output()
        .unwrap();
    assert_one_line_failure(&bad_flag, "--bogus");
    assert_eq!(bad_flag.status.code(), Some(2));
}
