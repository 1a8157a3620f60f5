//! Browser origins allowed to call the API: Ollama's defaults (pages served from this
//! machine and desktop app schemes) plus `OLLAMA_ORIGINS`, where `*` matches any text.

use axum::http::HeaderValue;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

/// The origins every server allows, as Ollama does.
const DEFAULT_ORIGINS: &[&str] = &[
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
];

/// Whether `text` matches `pattern`, in which each `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether a request from `origin` is allowed, given the extra `allowed` patterns.
pub fn allowed(origin: &str, extra: &[String]) -> bool {
    DEFAULT_ORIGINS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .any(|pattern| glob(pattern, origin))
}

/// The CORS layer for the router.
pub fn layer(extra: Vec<String>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|o| allowed(o, &extra))
        }))
        .allow_methods(Any)
        .allow_headers(Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_extra_patterns() {
        let extra = vec![
            "https://*.example.com".to_string(),
            "chrome-extension://*".into(),
        ];
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "app://obsidian.md",
            "https://chat.example.com",
            "chrome-extension://abc",
        ] {
            assert!(allowed(ok, &extra), "{ok}");
        }
        for refused in [
            "https://evil.com",
            "http://localhost.evil.com",
            "https://example.com",
            "http://127.0.0.2",
        ] {
            assert!(!allowed(refused, &extra), "{refused}");
        }
        assert!(allowed("https://anything", &["*".to_string()]));
    }
}
