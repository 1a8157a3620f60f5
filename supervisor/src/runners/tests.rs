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
    for _ in 0..200 {
        if kill(Pid::from_raw(pid as i32), None).is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
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
    let status = runner
        .client()
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
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
    let RunnerError::Refused { model, status } = &error else {
        panic!("{error}");
    };
    assert_eq!(model, "smollm2");
    assert!(status.message().contains("q9_9"), "{error}");
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
    assert!(matches!(error, RunnerError::Timeout { .. }), "{error}");
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
