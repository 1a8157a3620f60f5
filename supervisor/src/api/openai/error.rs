//! Errors as the OpenAI API writes them: `{"error": {"message", "type", "param", "code"}}`
//! with the status OpenAI's clients expect. Every error of the `/v1` routes is an
//! [`ApiError`] first (the same checks as the Ollama routes); this is its other shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::ApiError;

/// An error answer of a `/v1` route.
#[derive(Debug)]
pub struct OpenAiError {
    error: ApiError,
    param: Option<&'static str>,
}

impl OpenAiError {
    /// 400 `invalid_request_error` about the request field `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            error: ApiError::bad_request(message),
            param: Some(param),
        }
    }

    /// The body: OpenAI's error object. A 404 is an unknown model (`model_not_found`);
    /// other client errors are `invalid_request_error`, the server's own `api_error`.
    pub fn body(&self) -> Value {
        let status = self.error.status();
        let (kind, code) = match status {
            StatusCode::NOT_FOUND => ("invalid_request_error", Some("model_not_found")),
            StatusCode::SERVICE_UNAVAILABLE => ("api_error", Some("server_busy")),
            s if s.is_client_error() => ("invalid_request_error", None),
            _ => ("api_error", None),
        };
        let param = match (self.param, status) {
            (Some(param), _) => Some(param),
            (None, StatusCode::NOT_FOUND) => Some("model"),
            (None, _) => None,
        };
        json!({"error": {
            "message": self.error.message(),
            "type": kind,
            "param": param,
            "code": code,
        }})
    }
}

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        Self { error, param: None }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut response = (self.error.status(), axum::Json(self.body())).into_response();
        if let Some(seconds) = self.error.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
