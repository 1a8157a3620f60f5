//! The HTTP API's errors as gRPC statuses, with the same messages.

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::api::ApiError;

impl From<ApiError> for Status {
    /// 400 is INVALID_ARGUMENT and 404 NOT_FOUND; a full queue or a model that cannot fit
    /// is RESOURCE_EXHAUSTED; a server shutting down or a model backing off after crashes
    /// is UNAVAILABLE (a client may retry); 501 is UNIMPLEMENTED; the rest is INTERNAL.
    fn from(error: ApiError) -> Self {
        let code = if error.exhausted() {
            Code::ResourceExhausted
        } else {
            match error.status() {
                StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Code::InvalidArgument,
                StatusCode::NOT_FOUND => Code::NotFound,
                StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
                StatusCode::NOT_IMPLEMENTED => Code::Unimplemented,
                _ => Code::Internal,
            }
        };
        Status::new(code, error.message())
    }
}

/// INVALID_ARGUMENT naming what is wrong.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}
