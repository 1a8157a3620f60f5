//! Runners started from the real `ollama-runner` binary on the real SmolLM2 model.

use std::time::Duration;

use e2e::TestModel;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::*;

fn config(load_timeout: Duration) -> (RunnerConfig, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let config = RunnerConfig {
        bin: e2e::workspace_bin("ollama-runner"),
        socket_root: root.path().join("runners"),
        load_timeout,
    };
    (config, root)
}

fn load(options: pb::LoadRequest) -> pb::LoadRequest {
    pb::LoadRequest {
        model_path: TestModel::SmolLm2.path().display().to_string(),
        num_ctx: Some(256),
        num_threads: 1,
        ..options
    }
}

/// Waits until no process has `pid` (the waiter thread reaps ours).
async fn gone(pid: u32) -> bool {
    let exited = move || kill(Pid::from_raw(pid as i32), None).is_err();
    let wait = move || e2e::poll_until(Duration::from_secs(2), Duration::from_millis(10), exited);
    tokio::task::spawn_blocking(wait).await.unwrap()
}

#[tokio::test]
async fn a_runner_starts_in_a_private_directory_serves_and_stops() {
    use std::os::unix::fs::PermissionsExt;
    let (config, _root) = config(Duration::from_secs(60));
    let runner = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .unwrap();
    assert_eq!(runner.loaded().cache.as_ref().unwrap().num_ctx, 256);
    let dirs: Vec<_> = std::fs::read_dir(&config.socket_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    for dir in [&config.socket_root, &dirs[0]] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    let status = runner.client().status().await.unwrap();
    assert_eq!(status.state(), pb::RunnerState::Ready);
    let pid = runner.pid();
    assert_eq!(
        runner.stop(Duration::from_secs(10)).await,
        ExitInfo::Code(0)
    );
    assert!(gone(pid).await);
    drop(runner);
    assert!(!dirs[0].exists(), "the socket directory is removed");
}

#[tokio::test]
async fn a_killed_runner_is_seen_with_its_signal() {
    let (config, _root) = config(Duration::from_secs(60));
    let runner = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .unwrap();
    kill(Pid::from_raw(runner.pid() as i32), Signal::SIGKILL).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(1), runner.wait_exit())
        .await
        .expect("the exit is seen within a second");
    assert_eq!(exit, ExitInfo::Signal(9));
    assert_eq!(runner.exited(), Some(ExitInfo::Signal(9)));
}

#[tokio::test]
async fn a_refused_load_names_the_problem_and_leaves_no_process() {
    let (config, _root) = config(Duration::from_secs(60));
    let bad = load(pb::LoadRequest {
        cache_type_k: "q9_9".into(),
        ..Default::default()
    });
    let error = Runner::start(&config, "smollm2", bad).await.err().unwrap();
    let RunnerError::LoadRefused { model, reason } = &error else {
        panic!("{error}");
    };
    assert_eq!(model, "smollm2");
    assert!(reason.contains("q9_9"), "{error}");
    assert!(
        std::fs::read_dir(&config.socket_root)
            .unwrap()
            .next()
            .is_none(),
        "the directory of the failed runner is removed"
    );
}

#[tokio::test]
async fn a_runner_too_slow_to_load_is_stopped_and_a_missing_binary_is_named() {
    let (config, _root) = config(Duration::from_millis(1));
    let error = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, RunnerError::LoadTimeout { .. }), "{error}");
    assert!(error.to_string().contains("OLLAMA_LOAD_TIMEOUT"));

    let (mut missing, _root) = self::config(Duration::from_secs(5));
    missing.bin = "/nonexistent/ollama-runner".into();
    let error = Runner::start(&missing, "smollm2", load(Default::default()))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, RunnerError::Spawn { .. }), "{error}");
    assert!(error.to_string().contains("/nonexistent/ollama-runner"));
}

#[test]
fn a_runner_whose_supervisor_is_gone_does_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(e2e::workspace_bin("ollama-runner"))
        .arg("serve")
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args(["--parent-pid", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("pid 1") && stderr.contains("gone"),
        "{stderr}"
    );
    assert!(!dir.path().join("s.sock").exists());
}

// The one mapping from the runner's statuses to typed errors, on made-up statuses.

fn typed_as(call: Call, status: tonic::Status) -> RunnerError {
    client::typed("smollm2", call, &status)
}

#[test]
fn the_runners_refusals_of_a_request_are_the_requests_fault() {
    let invalid = typed_as(
        Call::Generate,
        tonic::Status::invalid_argument("option top_logprobs = 50 is out of range: 0 to 20"),
    );
    assert!(
        matches!(invalid, RunnerError::Invalid { .. }),
        "{invalid:?}"
    );
    assert!(invalid.is_request_fault());
    assert_eq!(
        invalid.to_string(),
        "option top_logprobs = 50 is out of range: 0 to 20",
        "the runner's message is shown as it is: it says what to change"
    );
    let long = typed_as(
        Call::Generate,
        tonic::Status::resource_exhausted("the prompt has 900 tokens but the context holds 64"),
    );
    assert!(matches!(long, RunnerError::TooLong { .. }), "{long:?}");
    assert!(long.is_request_fault());
    assert!(long.to_string().contains("64"));
    let embed = typed_as(
        Call::Embed,
        tonic::Status::invalid_argument("inputs is empty"),
    );
    assert!(matches!(embed, RunnerError::Invalid { .. }), "{embed:?}");
}

#[test]
fn refusals_of_the_handshake_or_the_load_are_load_refusals() {
    for (call, status) in [
        (
            Call::Load,
            tonic::Status::invalid_argument("cache_type_k: q9_9"),
        ),
        (Call::Load, tonic::Status::not_found("cannot load /m.gguf")),
        (Call::Load, tonic::Status::resource_exhausted("no memory")),
        (
            Call::Health,
            tonic::Status::failed_precondition("the caller speaks runner protocol 9"),
        ),
    ] {
        let error = typed_as(call, status.clone());
        let RunnerError::LoadRefused { model, reason } = &error else {
            panic!("{call}: {error:?}");
        };
        assert_eq!(model, "smollm2");
        assert_eq!(reason, status.message());
        assert!(!error.is_request_fault());
        assert!(error.to_string().contains("smollm2"), "{error}");
    }
}

#[test]
fn a_broken_connection_or_an_unavailable_runner_is_a_runner_gone() {
    let transport = tonic::Status::from_error(Box::new(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "broken pipe",
    )));
    // Whatever code the transport gave it, and whatever the call.
    for call in [Call::Load, Call::Generate, Call::Status] {
        let error = typed_as(call, transport.clone());
        assert!(matches!(error, RunnerError::Gone { .. }), "{error:?}");
    }
    let h2 = tonic::Status::from_error(Box::new(std::io::Error::other("h2 protocol error")));
    assert!(matches!(
        typed_as(Call::Generate, h2),
        RunnerError::Gone { .. }
    ));
    let stopping = typed_as(
        Call::Generate,
        tonic::Status::unavailable("the runner is shutting down"),
    );
    assert!(matches!(stopping, RunnerError::Gone { .. }), "{stopping:?}");
    let message = stopping.to_string();
    assert!(
        message.contains("smollm2") && message.contains("shutting down"),
        "{message}"
    );
    assert!(message.contains("send the request again"), "{message}");
}

#[test]
fn cancelled_timed_out_and_failed_requests_say_so() {
    let cancelled = typed_as(
        Call::Generate,
        tonic::Status::cancelled("the runner was stopped before this request finished"),
    );
    assert!(
        matches!(cancelled, RunnerError::Cancelled { .. }),
        "{cancelled:?}"
    );
    assert!(cancelled.to_string().contains("stopped before"));
    let late = typed_as(Call::Status, tonic::Status::deadline_exceeded("too slow"));
    assert!(
        matches!(
            late,
            RunnerError::TimedOut {
                call: Call::Status,
                after: None,
                ..
            }
        ),
        "{late:?}"
    );
    assert!(late.to_string().contains("did not answer Status"), "{late}");
    let failed = typed_as(
        Call::Generate,
        tonic::Status::internal("the model failed: NaN logits"),
    );
    assert!(matches!(failed, RunnerError::Failed { .. }), "{failed:?}");
    assert_eq!(
        failed.to_string(),
        "the runner for smollm2 failed: the model failed: NaN logits"
    );
    let unloaded = typed_as(
        Call::Tokenize,
        tonic::Status::failed_precondition("no model is loaded: call Load first"),
    );
    assert!(
        matches!(unloaded, RunnerError::Failed { .. }),
        "{unloaded:?}"
    );
    for error in [cancelled, late, failed, unloaded] {
        assert!(!error.is_request_fault(), "{error:?}");
    }
}

#[test]
fn a_runner_that_died_starting_shows_its_last_lines() {
    let error = RunnerError::Exited {
        model: "smollm2".into(),
        exit: ExitInfo::Code(1),
        stderr: vec!["loading".into(), "error: cannot map the file".into()],
    };
    assert_eq!(
        error.to_string(),
        "the runner for smollm2 exited with exit code 1 before it was ready; its last output \
         (set OLLAMA_DEBUG=1 for more) was:\nloading\nerror: cannot map the file"
    );
    let silent = RunnerError::Exited {
        model: "smollm2".into(),
        exit: ExitInfo::Signal(9),
        stderr: vec![],
    };
    assert!(
        silent.to_string().ends_with("it wrote nothing to stderr"),
        "{silent}"
    );
}

#[test]
fn the_stderr_tail_keeps_the_last_lines_oldest_first() {
    let tail = spawner::StderrTail::default();
    for i in 1..=STDERR_TAIL_LINES + 5 {
        tail.push(format!("line {i}"));
    }
    let lines = tail.lines();
    assert_eq!(lines.len(), STDERR_TAIL_LINES);
    assert_eq!(lines[0], "line 6");
    assert_eq!(
        lines.last().unwrap(),
        &format!("line {}", STDERR_TAIL_LINES + 5)
    );
    tail.push("é".repeat(2000));
    let long = tail.lines().pop().unwrap();
    assert!(long.len() <= 1024 + '…'.len_utf8(), "{}", long.len());
    assert!(long.ends_with('…'));
}

#[test]
fn only_whitelisted_variables_reach_a_runner() {
    let vars = [
        ("PATH", "/usr/bin"),
        ("OLLAMA_DEBUG", "1"),
        ("OLLAMA_HOST", "0.0.0.0:11434"),
        ("AWS_SECRET_ACCESS_KEY", "hunter2"),
        ("CUDA_VISIBLE_DEVICES", "0"),
    ]
    .map(|(k, v)| (k.into(), v.into()));
    let names: Vec<_> = spawner::runner_env(vars)
        .into_iter()
        .map(|(k, _)| k.into_string().unwrap())
        .collect();
    assert_eq!(names, ["PATH", "OLLAMA_DEBUG", "CUDA_VISIBLE_DEVICES"]);
}

// Real children.

/// A stand-in runner: a shell script with `body`, in `dir`.
fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-runner");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_runner_that_dies_at_once_is_reported_with_all_its_last_lines() {
    // Written right before the exit: the exit must not be seen before the lines are.
    let (mut config, root) = config(Duration::from_secs(30));
    config.bin = script(
        root.path(),
        "i=1; while [ $i -le 30 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 3",
    );
    for _ in 0..5 {
        let error = Runner::start(&config, "broken", load(Default::default()))
            .await
            .err()
            .unwrap();
        let RunnerError::Exited {
            model,
            exit,
            stderr,
        } = &error
        else {
            panic!("{error}");
        };
        assert_eq!((model.as_str(), *exit), ("broken", ExitInfo::Code(3)));
        let expected: Vec<String> = (11..=30).map(|i| format!("line {i}")).collect();
        assert_eq!(stderr, &expected);
        assert!(error.to_string().ends_with("line 29\nline 30"), "{error}");
    }
}

#[tokio::test]
async fn the_exit_is_seen_only_once_the_stderr_tail_is_complete() {
    // Many lines written right before the exit: the reader is still busy with them when
    // the process is reaped; whoever sees the exit must see the last line too.
    let root = tempfile::tempdir().unwrap();
    let bin = script(
        root.path(),
        "i=1; while [ $i -le 3000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 0",
    );
    for _ in 0..5 {
        let child = spawner::spawn(&bin, &root.path().join("unused.sock"), "fake").unwrap();
        let exit = wait_exit(&mut child.exit.clone()).await;
        assert_eq!(exit, ExitInfo::Code(0));
        let lines = child.stderr.lines();
        assert_eq!(lines.len(), STDERR_TAIL_LINES);
        assert_eq!(lines.last().unwrap(), "line 3000");
    }
}

#[tokio::test]
async fn a_killed_runners_stderr_tail_ends_with_its_last_log_line() {
    let (config, _root) = config(Duration::from_secs(60));
    let runner = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .unwrap();
    // The runner logs its drain (a Shutdown on an idle runner answers at once).
    let drained = runner.client().shutdown(Duration::ZERO).await.unwrap();
    assert_eq!((drained.finished, drained.cancelled), (0, 0));
    runner.kill();
    assert_eq!(runner.wait_exit().await, ExitInfo::Signal(9));
    let tail = runner.stderr_tail();
    assert!(tail.len() >= 3, "{tail:#?}");
    assert!(tail.iter().any(|l| l.contains("loaded")), "{tail:#?}");
    let last = tail.last().unwrap();
    assert!(last.contains("drained"), "{tail:#?}");
}

/// The names in a process's environment.
fn environment_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            entry.split('=').next().unwrap_or_default().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_runner_gets_only_the_whitelisted_environment() {
    let ours: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    assert!(
        ours.iter().any(|name| !RUNNER_ENV.contains(&name.as_str())),
        "cargo runs tests with CARGO_* variables, which a runner must not get: {ours:?}"
    );
    let (config, _root) = config(Duration::from_secs(60));
    let runner = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .unwrap();
    let theirs = environment_of(runner.pid());
    for name in &theirs {
        assert!(
            RUNNER_ENV.contains(&name.as_str()),
            "{name} reached the runner"
        );
    }
    if ours.iter().any(|n| n == "PATH") {
        assert!(theirs.iter().any(|n| n == "PATH"), "{theirs:?}");
    }
}

#[tokio::test]
async fn an_idle_runner_stops_at_once_with_code_zero() {
    let (config, _root) = config(Duration::from_secs(60));
    let runner = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // Shutdown has nothing to drain and answers at once; the SIGTERM that follows ends
    // the runner cleanly.
    assert_eq!(
        runner.stop(Duration::from_secs(20)).await,
        ExitInfo::Code(0)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        runner
            .stderr_tail()
            .iter()
            .any(|l| l.contains("finished=0") && l.contains("cancelled=0")),
        "the stop went through Shutdown: {:#?}",
        runner.stderr_tail()
    );
}

/// Greedy, `n` tokens of a story.
fn story(n: i32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: "Once upon a time, in a small village,".into(),
        sampling: Some(pb::SamplingOptions {
            temperature: Some(0.0),
            ..Default::default()
        }),
        num_predict: Some(n),
        ..Default::default()
    }
}

/// Reads `stream` to its Done or its error, after checking it has started.
async fn rest(mut stream: GenerateStream) -> Result<pb::Done, RunnerError> {
    loop {
        match stream.message().await {
            Some(Ok(pb::GenerateResponse {
                event: Some(pb::generate_response::Event::Done(done)),
            })) => return Ok(done),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => panic!("the stream ended with neither a Done nor an error"),
        }
    }
}

/// A generation of `request` on `runner`, once its first piece has arrived.
async fn streaming(runner: &Runner, request: pb::GenerateRequest) -> GenerateStream {
    let mut stream = runner.client().generate(request).await.unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first.event,
        Some(pb::generate_response::Event::Piece(_))
    ));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_a_short_generation_finish_and_cuts_a_long_one_at_the_drain_deadline() {
    let (config, _root) = config(Duration::from_secs(60));
    let short = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .unwrap();
    let reader = tokio::spawn(rest(streaming(&short, story(8)).await));
    assert_eq!(short.stop(Duration::from_secs(60)).await, ExitInfo::Code(0));
    let done = reader.await.unwrap().expect("the generation finished");
    assert_eq!(done.timings.unwrap().generated_tokens, 8);

    let long = Runner::start(&config, "smollm2", load(Default::default()))
        .await
        .unwrap();
    let reader = tokio::spawn(rest(streaming(&long, story(1_000_000)).await));
    let started = tokio::time::Instant::now();
    assert_eq!(long.stop(Duration::from_secs(2)).await, ExitInfo::Code(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let error = reader
        .await
        .unwrap()
        .expect_err("the generation was cut off");
    assert!(matches!(error, RunnerError::Cancelled { .. }), "{error:?}");
    let refused = long.client().generate(story(1)).await.err().unwrap();
    assert!(matches!(refused, RunnerError::Gone { .. }), "{refused:?}");
}
