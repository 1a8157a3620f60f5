//! A client that goes away stops the work: the runner's slot is free soon after the
//! connection closes, in the middle of the prompt's evaluation as well as during
//! generation. The slot is read from the runner itself, over its socket.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use supervisor::runners::RunnerClient;

use e2e::TestModel;

use crate::harness::{Server, eventually};

/// The runner's socket, read off its command line (`serve --socket PATH`).
fn socket_of(pid: u32) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let at = args.iter().position(|a| *a == b"--socket").unwrap();
    PathBuf::from(String::from_utf8_lossy(args[at + 1]).into_owned())
}

/// Slots the runner reports busy.
fn busy(runtime: &tokio::runtime::Runtime, socket: &Path) -> u32 {
    runtime.block_on(async {
        let client = RunnerClient::connect(socket, "smollm2").await.unwrap();
        client.status().await.unwrap().slots_busy
    })
}

/// Sends a streaming generate for `prompt` on a raw connection, to be closed at will.
fn open_generate(server: &Server, prompt: &str, num_predict: u32) -> TcpStream {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    let body = json!({"model": "smollm2", "prompt": prompt, "raw": true,
                      "options": {"num_predict": num_predict}})
    .to_string();
    write!(
        stream,
        "POST /api/generate HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

/// Closes `stream` once the runner is busy (after `after` more), and returns how long
/// the slot took to be free again.
fn close_and_time(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    stream: TcpStream,
    after: Duration,
) -> Duration {
    assert!(
        eventually(Duration::from_secs(10), || busy(runtime, socket) == 1),
        "the runner took the request"
    );
    std::thread::sleep(after);
    assert_eq!(
        busy(runtime, socket),
        1,
        "still working when the client leaves"
    );
    drop(stream);
    let closed = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || busy(runtime, socket) == 0),
        "the slot is freed"
    );
    closed.elapsed()
}

#[test]
fn a_client_that_leaves_stops_the_work_mid_prompt_and_mid_generation() {
    let server = Server::start(&[("OLLAMA_CONTEXT_LENGTH", "4096")]);
    server.create("smollm2", TestModel::SmolLm2, json!({"temperature": 0}));
    let (status, body) = server.generate("smollm2", "Hi", 1);
    assert_eq!(status, 200, "{body}");
    let pid = server.pid_of("smollm2:latest").unwrap();
    let socket = socket_of(pid);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // About 3000 tokens of prompt: seconds of evaluation on two cores.
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(300);
    let stream = open_generate(&server, &long, 8);
    let freed = close_and_time(&runtime, &socket, stream, Duration::from_millis(300));
    assert!(
        freed < Duration::from_millis(100),
        "mid-prompt: freed after {freed:?}"
    );

    // A short prompt and a long answer: closed while tokens stream.
    let stream = open_generate(&server, "Once upon a time", 2000);
    let freed = close_and_time(&runtime, &socket, stream, Duration::from_millis(500));
    assert!(
        freed < Duration::from_millis(100),
        "mid-generation: freed after {freed:?}"
    );

    // The runner still serves.
    let (status, body) = server.generate("smollm2", "Hi", 2);
    assert_eq!(status, 200, "{body}");
}
