//! Errors as the HTTP API shows them: a status code and Ollama's `{"error": "..."}` body.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::options::OptionsError;
use crate::runners::RunnerError;
use crate::sched::SchedError;
use crate::store::StoreError;
use crate::template::TemplateError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    /// The server lacks capacity for it (a full queue, a model that cannot fit): the
    /// gRPC API answers RESOURCE_EXHAUSTED, which HTTP's status cannot tell apart.
    exhausted: bool,
}

impl ApiError {
    /// An error with `status` and a message for the user.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            exhausted: false,
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 500: something failed on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status: the OpenAI routes answer the same error in their own shape.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The seconds a client should wait before retrying, for a busy server.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// Whether the server lacked capacity (queue or memory) rather than the request
    /// being wrong or something failing.
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> Self {
        let (status, retry_after) = match &e {
            SchedError::QueueFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            SchedError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, None),
            SchedError::BackOff { retry_in, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(retry_in.as_secs().max(1)),
            ),
            SchedError::TooLarge { .. }
            | SchedError::Estimate { .. }
            | SchedError::Memory(_)
            | SchedError::LoadFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        Self {
            status,
            message: e.to_string(),
            retry_after,
            exhausted: matches!(
                e,
                SchedError::QueueFull { .. } | SchedError::TooLarge { .. }
            ),
        }
    }
}

/// A runner's error as the API answers it. The request's own faults are 400 with the
/// runner's message, which says what to change. Everything else is 500, as Ollama
/// answers a runner's failures, with a message that names the model and what to do:
/// - a cancelled request (the runner was stopped under it) is 500, not nginx's 499:
///   Ollama has no such status, and the client is still there to read the answer;
/// - a timeout is 500 rather than 504: the runner is part of this server, not an
///   upstream a gateway waits for, Ollama answers 500 for its runner timeouts, and its
///   clients treat every 5xx alike.
impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> Self {
        let status = match &e {
            RunnerError::Invalid { .. } | RunnerError::TooLong { .. } => StatusCode::BAD_REQUEST,
            RunnerError::Spawn { .. }
            | RunnerError::Directory { .. }
            | RunnerError::Exited { .. }
            | RunnerError::LoadTimeout { .. }
            | RunnerError::LoadRefused { .. }
            | RunnerError::Cancelled { .. }
            | RunnerError::Gone { .. }
            | RunnerError::TimedOut { .. }
            | RunnerError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::InvalidName { .. }
            | StoreError::InvalidDigest { .. }
            | StoreError::DigestMismatch { .. }
            | StoreError::Upload { .. }
            | StoreError::UploadStream(_)
            | StoreError::SizeMismatch { .. }
            | StoreError::UnsupportedFiles { .. }
            | StoreError::BlobMissing { .. }
            | StoreError::NotGguf { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<OptionsError> for ApiError {
    fn from(e: OptionsError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        Self::bad_request(e.to_string())
    }
}

/// Gives the answers that axum writes itself (a body over the size limit, an unknown
/// route, a wrong method) Ollama's `{"error": ...}` body, so every client reads every
/// error the same way; under `/v1/`, OpenAI's error object. Answers that are already
/// JSON, and successes, pass unchanged.
pub async fn json_rejection(uri: Uri, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the request body is larger than {} MiB: send less text, or upload model files \
             with /api/blobs",
            super::MAX_JSON_BODY >> 20
        )
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let error = ApiError::new(status, message);
    let mut answer = if uri.path().starts_with("/v1/") {
        super::openai::OpenAiError::not_about_a_model(error).into_response()
    } else {
        error.into_response()
    };
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runners::{Call, ExitInfo};

    fn answer(e: RunnerError) -> (StatusCode, String) {
        let e = ApiError::from(e);
        (e.status, e.message)
    }

    #[test]
    fn a_runners_refusal_of_the_request_is_a_400_with_its_message() {
        let message = "the prompt has 900 tokens but the context holds 64: shorten the prompt";
        for e in [
            RunnerError::TooLong {
                model: "m".into(),
                message: message.into(),
            },
            RunnerError::Invalid {
                model: "m".into(),
                message: message.into(),
            },
        ] {
            assert_eq!(answer(e), (StatusCode::BAD_REQUEST, message.to_owned()));
        }
    }

    #[test]
    fn a_runners_failures_are_500s_that_name_the_model() {
        let m = || "smollm2".to_owned();
        for e in [
            RunnerError::Gone {
                model: m(),
                message: "broken pipe".into(),
            },
            RunnerError::Cancelled {
                model: m(),
                message: "stopped".into(),
            },
            RunnerError::TimedOut {
                model: m(),
                call: Call::Status,
                after: Some(Duration::from_secs(5)),
            },
            RunnerError::Failed {
                model: m(),
                message: "the model failed".into(),
            },
            RunnerError::LoadRefused {
                model: m(),
                reason: "unsupported architecture".into(),
            },
            RunnerError::LoadTimeout {
                model: m(),
                after: Duration::from_secs(300),
            },
            RunnerError::Exited {
                model: m(),
                exit: ExitInfo::Signal(9),
                stderr: vec!["out of memory".into()],
            },
        ] {
            let (status, message) = answer(e);
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{message}");
            assert!(message.contains("smollm2"), "{message}");
        }
    }
}
