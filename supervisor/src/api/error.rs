//! Errors as the HTTP API shows them: a status code and Ollama's `{"error": "..."}` body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::options::OptionsError;
use crate::sched::SchedError;
use crate::store::StoreError;
use crate::template::TemplateError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status` and a message for the user.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
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
        }
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
