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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::SchedError;

    fn code(error: impl Into<ApiError>) -> Code {
        Status::from(error.into()).code()
    }

    #[test]
    fn capacity_request_and_availability_errors_get_their_grpc_codes() {
        assert_eq!(
            code(SchedError::QueueFull { max_queue: 4 }),
            Code::ResourceExhausted
        );
        let too_large = SchedError::TooLarge {
            model: "m".into(),
            required: 2,
            available: 1,
        };
        assert_eq!(code(too_large), Code::ResourceExhausted);
        assert_eq!(code(SchedError::ShuttingDown), Code::Unavailable);
        assert_eq!(code(SchedError::LoadFailed("no".into())), Code::Internal);
        assert_eq!(
            code(ApiError::bad_request("num_ctx")),
            Code::InvalidArgument
        );
        let missing = ApiError::new(StatusCode::NOT_FOUND, "model \"x\" not found");
        let status = Status::from(missing);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "model \"x\" not found");
    }
}
