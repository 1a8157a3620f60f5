//! The one table from errors to HTTP answers: status, Retry-After, Ollama's body.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::api::ApiError;
use crate::runners::ExitInfo;
use crate::sched::{RunnerFailure, SchedError};

async fn answer(e: impl Into<ApiError>) -> (StatusCode, Option<String>, String) {
    let response = e.into().into_response();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (status, retry, body["error"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn scheduler_errors_map_to_503_with_retry_after_or_500() {
    let crash = RunnerFailure::Crashed {
        model: "m".into(),
        exit: ExitInfo::Code(1),
        stderr: vec!["boom".into()],
    };
    let table = [
        (
            SchedError::QueueFull { max_queue: 4 },
            StatusCode::SERVICE_UNAVAILABLE,
            Some("1"),
        ),
        (
            SchedError::ShuttingDown,
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        ),
        (
            SchedError::BackOff {
                model: "m".into(),
                crashes: 3,
                window: Duration::from_secs(60),
                last: crash,
                retry_in: Duration::from_secs(12),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            Some("12"),
        ),
        (
            SchedError::TooLarge {
                model: "m".into(),
                required: 10 << 30,
                available: 4 << 30,
            },
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
        ),
        (
            SchedError::Estimate {
                model: "m".into(),
                message: "not a GGUF file".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
        ),
        (
            SchedError::Memory("no /proc".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
        ),
        (
            SchedError::LoadFailed("refused".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
        ),
    ];
    for (error, status, retry) in table {
        let message = error.to_string();
        let got = answer(error).await;
        assert_eq!(got, (status, retry.map(String::from), message));
    }
}

#[tokio::test]
async fn store_errors_map_to_404_or_400() {
    use crate::store::ModelName;
    let missing = crate::store::Store::open(tempfile::tempdir().unwrap().path())
        .unwrap()
        .resolve(&ModelName::parse("absent").unwrap())
        .unwrap_err();
    assert_eq!(answer(missing).await.0, StatusCode::NOT_FOUND);
    let bad_name = ModelName::parse("a b").unwrap_err();
    assert_eq!(answer(bad_name).await.0, StatusCode::BAD_REQUEST);
}
