//! The public gRPC API (`ollama.v1`, `proto/ollama.proto`), served on the HTTP port: a
//! request whose content-type is `application/grpc` goes to tonic, everything else to
//! the HTTP routes ([`split`]). Server reflection (v1 and v1alpha) and `grpc.health.v1`
//! are served beside it, so `grpcurl`, Kubernetes probes and every gRPC stack can use it.
//!
//! Each RPC translates its request into the HTTP route's and runs the same code behind
//! it (`chat::start`, `generate::start`, `embed::embed_inputs`, the store, the
//! scheduler): what differs is only the encoding of the answer.

mod admin;
mod convert;
mod departed;
mod estimate;
mod generate;
mod status;
mod store;

use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::Stream;
use ollama_proto::ollama as pb;
use ollama_proto::ollama::ollama_server::{Ollama, OllamaServer};
use tokio_util::sync::CancellationToken;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};
use tower::ServiceExt;

use super::AppState;
use crate::sched::Backend;
use departed::Departed;

/// A server-streaming answer.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The `Ollama` service over the HTTP API's state.
pub struct OllamaGrpc<B: Backend> {
    state: AppState<B>,
    departed: Arc<Departed>,
    stopping: CancellationToken,
}

/// The gRPC routes: the `Ollama` service, reflection v1 and v1alpha, and health. Long
/// streams (`Watch`) end when `stopping` is cancelled, so that the server's graceful
/// shutdown is not held open by a watching client.
pub fn routes<B: Backend>(state: AppState<B>, stopping: CancellationToken) -> Router {
    let departed = Departed::follow(state.sched.events(), stopping.clone());
    let service = OllamaGrpc {
        state,
        departed,
        stopping,
    };
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ollama_proto::OLLAMA_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let mut routes = tonic::service::Routes::new(OllamaServer::new(service)).add_service(health);
    // The descriptor sets are compiled in: one that does not decode is our build's bug.
    match reflection().build_v1() {
        Ok(v1) => routes = routes.add_service(v1),
        Err(error) => tracing::error!(%error, "gRPC reflection v1 is unavailable"),
    }
    match reflection().build_v1alpha() {
        Ok(v1alpha) => routes = routes.add_service(v1alpha),
        Err(error) => tracing::error!(%error, "gRPC reflection v1alpha is unavailable"),
    }
    tokio::spawn(async move {
        health_reporter
            .set_serving::<OllamaServer<OllamaGrpc<B>>>()
            .await;
    });
    routes.into_axum_router()
}

/// Sends gRPC requests (content-type `application/grpc`, with or without a `+proto`
/// suffix) to `grpc` and every other request on to the HTTP routes.
pub async fn split(State(grpc): State<Router>, request: Request, next: Next) -> Response {
    let is_grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return next.run(request).await;
    }
    match grpc.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[tonic::async_trait]
impl<B: Backend> Ollama for OllamaGrpc<B> {
    type GenerateStream = ResponseStream<pb::GenerateResponse>;
    type ChatStream = ResponseStream<pb::ChatResponse>;
    type WatchStream = ResponseStream<pb::Event>;

    async fn generate(
        &self,
        request: GrpcRequest<pb::GenerateRequest>,
    ) -> Result<GrpcResponse<Self::GenerateStream>, Status> {
        generate::generate(&self.state, request.into_inner()).await
    }

    async fn chat(
        &self,
        request: GrpcRequest<pb::ChatRequest>,
    ) -> Result<GrpcResponse<Self::ChatStream>, Status> {
        generate::chat(&self.state, request.into_inner()).await
    }

    async fn embed(
        &self,
        request: GrpcRequest<pb::EmbedRequest>,
    ) -> Result<GrpcResponse<pb::EmbedResponse>, Status> {
        generate::embed(&self.state, request.into_inner()).await
    }

    async fn list(
        &self,
        _: GrpcRequest<pb::ListRequest>,
    ) -> Result<GrpcResponse<pb::ListResponse>, Status> {
        store::list(&self.state).await
    }

    async fn show(
        &self,
        request: GrpcRequest<pb::ShowRequest>,
    ) -> Result<GrpcResponse<pb::ShowResponse>, Status> {
        store::show(&self.state, request.into_inner()).await
    }

    async fn ps(
        &self,
        _: GrpcRequest<pb::PsRequest>,
    ) -> Result<GrpcResponse<pb::PsResponse>, Status> {
        admin::ps(&self.state, &self.departed).await
    }

    async fn load(
        &self,
        request: GrpcRequest<pb::LoadRequest>,
    ) -> Result<GrpcResponse<pb::LoadResponse>, Status> {
        admin::load(&self.state, request.into_inner()).await
    }

    async fn unload(
        &self,
        request: GrpcRequest<pb::UnloadRequest>,
    ) -> Result<GrpcResponse<pb::UnloadResponse>, Status> {
        admin::unload(&self.state, request.into_inner()).await
    }

    async fn create(
        &self,
        request: GrpcRequest<Streaming<pb::CreateRequest>>,
    ) -> Result<GrpcResponse<pb::CreateResponse>, Status> {
        store::create(&self.state, request.into_inner()).await
    }

    async fn copy(
        &self,
        request: GrpcRequest<pb::CopyRequest>,
    ) -> Result<GrpcResponse<pb::CopyResponse>, Status> {
        store::copy(&self.state, request.into_inner()).await
    }

    async fn delete(
        &self,
        request: GrpcRequest<pb::DeleteRequest>,
    ) -> Result<GrpcResponse<pb::DeleteResponse>, Status> {
        store::delete(&self.state, request.into_inner()).await
    }

    async fn version(
        &self,
        _: GrpcRequest<pb::VersionRequest>,
    ) -> Result<GrpcResponse<pb::VersionResponse>, Status> {
        Ok(GrpcResponse::new(pb::VersionResponse {
            version: super::OLLAMA_API_VERSION.to_owned(),
            ollamad_version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn estimate(
        &self,
        request: GrpcRequest<pb::EstimateRequest>,
    ) -> Result<GrpcResponse<pb::EstimateResponse>, Status> {
        estimate::estimate(&self.state, request.into_inner()).await
    }

    async fn watch(
        &self,
        _: GrpcRequest<pb::WatchRequest>,
    ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
        Ok(admin::watch(&self.state, self.stopping.clone()))
    }

    async fn config(
        &self,
        _: GrpcRequest<pb::ConfigRequest>,
    ) -> Result<GrpcResponse<pb::ConfigResponse>, Status> {
        Ok(admin::config(&self.state))
    }
}
