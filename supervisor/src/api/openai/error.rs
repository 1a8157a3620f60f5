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
    /// A 404 here is an unknown route, not an unknown model.
    not_about_a_model: bool,
}

impl OpenAiError {
    /// 400 `invalid_request_error` about the request field `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            error: ApiError::bad_request(message),
            param: Some(param),
            not_about_a_model: false,
        }
    }

    /// An error of the HTTP layer (an unknown route, a wrong method, a body too large),
    /// where a 404 does not mean `model_not_found`.
    pub fn not_about_a_model(error: ApiError) -> Self {
        Self {
            error,
            param: None,
            not_about_a_model: true,
        }
    }

    /// The body: OpenAI's error object. A 404 is an unknown model (`model_not_found`);
    /// other client errors are `invalid_request_error`, the server's own `api_error`.
    pub fn body(&self) -> Value {
        let status = self.error.status();
        let model = !self.not_about_a_model;
        let (kind, code) = match status {
            StatusCode::NOT_FOUND if model => ("invalid_request_error", Some("model_not_found")),
            StatusCode::SERVICE_UNAVAILABLE => ("api_error", Some("server_busy")),
            s if s.is_client_error() => ("invalid_request_error", None),
            _ => ("api_error", None),
        };
        let param = match (self.param, status) {
            (Some(param), _) => Some(param),
            (None, StatusCode::NOT_FOUND) if model => Some("model"),
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
        Self {
            error,
            param: None,
            not_about_a_model: false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(error: OpenAiError) -> (StatusCode, Value, Option<String>) {
        let body = error.body()["error"].clone();
        let response = error.into_response();
        let retry = response.headers().get(header::RETRY_AFTER);
        let retry = retry.map(|v| v.to_str().unwrap_or_default().to_owned());
        (response.status(), body, retry)
    }

    #[test]
    fn every_status_has_openais_type_and_code() {
        let (status, body, _) = shape(ApiError::new(StatusCode::NOT_FOUND, "model x").into());
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"message": "model x", "type": "invalid_request_error", "param": "model",
                   "code": "model_not_found"})
        );
        let route = OpenAiError::not_about_a_model(ApiError::new(StatusCode::NOT_FOUND, "no"));
        let (_, body, _) = shape(route);
        assert_eq!(
            (&body["code"], &body["param"]),
            (&Value::Null, &Value::Null)
        );
        let (status, body, _) = shape(ApiError::internal("the runner died").into());
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            (&body["type"], &body["code"]),
            (&json!("api_error"), &Value::Null)
        );
        let (_, body, _) = shape(OpenAiError::invalid("n", "n must be 1"));
        assert_eq!(
            (&body["type"], &body["param"]),
            (&json!("invalid_request_error"), &json!("n"))
        );
    }

    #[test]
    fn a_busy_server_keeps_retry_after() {
        let full = crate::sched::SchedError::QueueFull { max_queue: 4 };
        let (status, body, retry) = shape(ApiError::from(full).into());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["type"], "api_error");
        assert_eq!(retry.as_deref(), Some("1"));
    }
}
