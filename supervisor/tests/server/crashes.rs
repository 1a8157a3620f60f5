//! One model's failure stays its own: killed and hung runners, and the server's own end.

use std::time::{Duration, Instant};

use e2e::TestModel;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::harness::{Server, alive, eventually, stream_lines};

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).unwrap();
}

fn long_stream(model: &str, n: u32) -> serde_json::Value {
    json!({"model": model, "prompt": "Tell me a long story about a dragon.",
           "options": {"temperature": 0, "num_predict": n}})
}

#[test]
fn a_killed_runner_fails_only_its_own_stream_and_is_restarted() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    server.create("gemma3", TestModel::Gemma3, json!({}));
    for name in ["smollm2", "gemma3"] {
        assert_eq!(server.generate(name, "Hi", 1).0, 200);
    }
    let victim = server.pid_of("smollm2:latest").unwrap();
    let survivor = stream_lines(&server, long_stream("gemma3", 48));
    let doomed = stream_lines(&server, long_stream("smollm2", 400));
    doomed
        .recv_timeout(Duration::from_secs(60))
        .expect("the victim streams");
    survivor
        .recv_timeout(Duration::from_secs(60))
        .expect("the survivor streams");

    signal(victim, Signal::SIGKILL);
    let killed_at = Instant::now();
    let (at, error) = loop {
        let (at, line) = doomed.recv_timeout(Duration::from_secs(5)).expect("an end");
        if line["done"] != false {
            break (at, line);
        }
    };
    assert!(
        at.duration_since(killed_at) < Duration::from_secs(1),
        "error after {:?}",
        at - killed_at
    );
    let message = error["error"].as_str().unwrap_or_else(|| panic!("{error}"));
    assert!(
        message.contains("smollm2") && message.contains("SIGKILL"),
        "{message}"
    );

    let last = survivor.iter().last().expect("the survivor ends");
    assert_eq!(last.1["done"], true, "{}", last.1);
    assert_eq!(last.1["eval_count"], 48);

    let (status, body) = server.generate("smollm2", "Hi", 2);
    assert_eq!(status, 200, "{body}");
    let restarted = server.pid_of("smollm2:latest").unwrap();
    assert_ne!(restarted, victim);
    let ps = server.ps();
    let row = ps.iter().find(|m| m["name"] == "smollm2:latest").unwrap();
    assert_eq!(row["restarts"], 1, "{row}");
}

#[test]
fn a_runner_that_dies_reports_its_last_stderr_line_to_the_client_and_in_ps() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    assert_eq!(server.generate("smollm2", "Hi", 1).0, 200);
    let pid = server.pid_of("smollm2:latest").unwrap();
    let stream = stream_lines(&server, long_stream("smollm2", 400));
    stream
        .recv_timeout(Duration::from_secs(60))
        .expect("it streams");
    // SIGTERM makes the runner log a line and drain; SIGKILL then ends it mid-stream, so
    // that line is the last it wrote.
    signal(pid, Signal::SIGTERM);
    let last_words = "signal received, stopping";
    assert!(
        eventually(Duration::from_secs(10), || server
            .log()
            .contains(last_words)),
        "the runner did not log its stop:\n{}",
        server.log()
    );
    signal(pid, Signal::SIGKILL);
    let error = loop {
        let (_, line) = stream
            .recv_timeout(Duration::from_secs(10))
            .expect("an end");
        if line["done"] != false {
            break line;
        }
    };
    let message = error["error"].as_str().unwrap_or_else(|| panic!("{error}"));
    assert!(
        message.contains("SIGKILL") && message.contains(last_words),
        "{message}"
    );

    assert_eq!(server.generate("smollm2", "Hi", 1).0, 200, "restarted");
    let ps = server.ps();
    let row = ps.iter().find(|m| m["name"] == "smollm2:latest").unwrap();
    let last_failure = row["last_failure"].as_str().unwrap_or_default();
    assert!(last_failure.contains(last_words), "{row}");
}

#[test]
fn a_stopped_runner_times_out_and_is_replaced() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    assert_eq!(server.generate("smollm2", "Hi", 1).0, 200);
    let frozen = server.pid_of("smollm2:latest").unwrap();
    let stream = stream_lines(&server, long_stream("smollm2", 400));
    stream
        .recv_timeout(Duration::from_secs(60))
        .expect("it streams");
    signal(frozen, Signal::SIGSTOP);
    let error = loop {
        let (_, line) = stream
            .recv_timeout(Duration::from_secs(20))
            .expect("an end");
        if line["done"] != false {
            break line;
        }
    };
    let message = error["error"].as_str().unwrap_or_else(|| panic!("{error}"));
    assert!(
        message.contains("timed out") && message.contains("smollm2"),
        "{message}"
    );
    assert!(eventually(Duration::from_secs(5), || !alive(frozen)));
    let (status, body) = server.generate("smollm2", "Hi", 2);
    assert_eq!(status, 200, "{body}");
    assert_ne!(server.pid_of("smollm2:latest").unwrap(), frozen);
}

#[test]
fn killing_the_server_takes_its_runners_with_it() {
    let mut server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    assert_eq!(server.generate("smollm2", "Hi", 1).0, 200);
    let runner = server.pid_of("smollm2:latest").unwrap();
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(1), || !alive(runner)),
        "runner {runner} outlived its supervisor"
    );
}

#[test]
fn sigterm_lets_a_stream_finish_then_exits_cleanly() {
    let mut server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    assert_eq!(server.generate("smollm2", "Hi", 1).0, 200);
    let runner = server.pid_of("smollm2:latest").unwrap();
    let stream = stream_lines(&server, long_stream("smollm2", 24));
    stream
        .recv_timeout(Duration::from_secs(60))
        .expect("it streams");
    signal(server.child.id(), Signal::SIGTERM);
    let last = stream.iter().last().unwrap();
    assert_eq!(last.1["done"], true, "the stream ends normally: {}", last.1);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(!alive(runner), "no runner left behind");
}
