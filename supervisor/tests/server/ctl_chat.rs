//! `ollamactl run`'s chat against a scripted gRPC server, for what a real model cannot
//! make deterministic: a reply long enough to be stopped with Ctrl-C at a known point.
//! The chat with the real server and model is in `ctl.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use expectrl::{ControlCode, Expect as _};
use ollama_proto::ollama::ollama_server::{Ollama, OllamaServer};
use ollama_proto::ollama::{self as pb};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Answers "long" with a piece every 50 ms for ten seconds, anything else with the
/// number of messages it was sent; notes when a call is dropped before its end.
#[derive(Clone, Default)]
struct Scripted {
    cancelled: Arc<AtomicBool>,
}

/// Sets the flag when the stream it travels in is dropped unfinished.
struct DropFlag(Arc<AtomicBool>, bool);

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

fn piece(content: String, done: bool) -> Result<pb::ChatResponse, Status> {
    Ok(pb::ChatResponse {
        message: Some(pb::Message {
            role: "assistant".into(),
            content,
            ..pb::Message::default()
        }),
        done,
        ..pb::ChatResponse::default()
    })
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not scripted"))
}

#[tonic::async_trait]
impl Ollama for Scripted {
    type GenerateStream = Stream<pb::GenerateResponse>;
    type ChatStream = Stream<pb::ChatResponse>;
    type WatchStream = Stream<pb::Event>;

    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let request = request.into_inner();
        let last = request.messages.last().map(|m| m.content.clone());
        if last.as_deref() != Some("long") {
            let answer = format!("{} messages", request.messages.len());
            return Ok(Response::new(Box::pin(tokio_stream::iter([piece(
                answer, true,
            )]))));
        }
        let mut flag = DropFlag(Arc::clone(&self.cancelled), false);
        let pieces = tokio_stream::iter(0..200)
            .throttle(Duration::from_millis(50))
            .map(move |n| {
                // The whole guard moves into the closure (not just the field it sets), so
                // it lives as long as the stream.
                let flag = &mut flag;
                flag.1 = n == 199;
                piece(format!("piece {n} "), n == 199)
            });
        Ok(Response::new(Box::pin(pieces)))
    }

    async fn load(
        &self,
        _: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        Ok(Response::new(pb::LoadResponse::default()))
    }

    async fn generate(
        &self,
        _: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        unimplemented()
    }
    async fn embed(
        &self,
        _: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        unimplemented()
    }
    async fn list(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        unimplemented()
    }
    async fn show(
        &self,
        _: Request<pb::ShowRequest>,
    ) -> Result<Response<pb::ShowResponse>, Status> {
        unimplemented()
    }
    async fn ps(&self, _: Request<pb::PsRequest>) -> Result<Response<pb::PsResponse>, Status> {
        unimplemented()
    }
    async fn unload(
        &self,
        _: Request<pb::UnloadRequest>,
    ) -> Result<Response<pb::UnloadResponse>, Status> {
        unimplemented()
    }
    async fn create(
        &self,
        _: Request<Streaming<pb::CreateRequest>>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        unimplemented()
    }
    async fn copy(
        &self,
        _: Request<pb::CopyRequest>,
    ) -> Result<Response<pb::CopyResponse>, Status> {
        unimplemented()
    }
    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        unimplemented()
    }
    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        unimplemented()
    }
    async fn estimate(
        &self,
        _: Request<pb::EstimateRequest>,
    ) -> Result<Response<pb::EstimateResponse>, Status> {
        unimplemented()
    }
    async fn watch(
        &self,
        _: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        unimplemented()
    }
    async fn config(
        &self,
        _: Request<pb::ConfigRequest>,
    ) -> Result<Response<pb::ConfigResponse>, Status> {
        unimplemented()
    }
}

#[test]
fn ctrl_c_stops_a_reply_cancels_its_call_and_keeps_the_chat() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let server = Scripted::default();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(OllamaServer::new(server.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ollamactl"));
    command
        .args(["run", "scripted"])
        .env("OLLAMA_HOST", address.to_string())
        .env("TERM", "xterm");
    let mut chat = expectrl::Session::spawn(command).unwrap();
    chat.set_expect_timeout(Some(Duration::from_secs(30)));
    chat.expect(">>> ").unwrap();
    chat.send_line("long").unwrap();
    chat.expect("piece 2 ").unwrap();
    assert!(
        !server.cancelled.load(Ordering::SeqCst),
        "not before Ctrl-C"
    );
    chat.send(ControlCode::EndOfText).unwrap();
    chat.expect(">>> ").unwrap();
    assert!(
        crate::harness::eventually(Duration::from_secs(5), || server
            .cancelled
            .load(Ordering::SeqCst)),
        "the server saw the call cancelled"
    );

    // The stopped turn is forgotten: the next request holds only the new question.
    chat.send_line("count").unwrap();
    chat.expect("1 messages").unwrap();
    chat.expect(">>> ").unwrap();
    // Ctrl-C at the prompt does not leave.
    chat.send(ControlCode::EndOfText).unwrap();
    chat.expect("Use Ctrl + d or /bye to exit.").unwrap();
    chat.send_line("count").unwrap();
    chat.expect("3 messages").unwrap();
    chat.send_line("/bye").unwrap();
    chat.expect(expectrl::Eof).unwrap();
    let status = chat.get_process().wait().unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}
