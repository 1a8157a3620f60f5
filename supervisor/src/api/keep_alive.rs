//! A request's `keep_alive`: seconds as a number, or a duration string (`"5m"`, `"-1"`).

use std::time::Duration;

use serde_json::Value;

use super::ApiError;
use crate::config::{KeepAlive, parse_keep_alive};

/// Reads `keep_alive` as Ollama does: a number is seconds (fractions allowed), a string is
/// a Go duration or whole seconds; negative keeps the model forever, 0 unloads it once the
/// request is done. `None` or JSON null leaves the server's default.
pub fn parse(value: Option<&Value>) -> Result<Option<KeepAlive>, ApiError> {
    let bad = |v: &Value| {
        ApiError::bad_request(format!(
            "invalid keep_alive {v}: use seconds (300), a duration (\"5m\", \"1h30m\"), \
             a negative value to keep the model loaded, or 0 to unload it after the request"
        ))
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let seconds = n.as_f64().ok_or_else(|| bad(&Value::Number(n.clone())))?;
            if seconds < 0.0 {
                Ok(Some(KeepAlive::Forever))
            } else {
                Duration::try_from_secs_f64(seconds)
                    .map(|d| Some(KeepAlive::For(d)))
                    .map_err(|_| bad(&Value::Number(n.clone())))
            }
        }
        Some(v @ Value::String(s)) => parse_keep_alive(s).map(Some).ok_or_else(|| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_strings_and_negatives() {
        let p = |v: Value| parse(Some(&v)).map_err(|e| e.message().to_string());
        assert_eq!(
            p(json!(30)),
            Ok(Some(KeepAlive::For(Duration::from_secs(30))))
        );
        assert_eq!(
            p(json!(1.5)),
            Ok(Some(KeepAlive::For(Duration::from_millis(1500))))
        );
        assert_eq!(p(json!(0)), Ok(Some(KeepAlive::For(Duration::ZERO))));
        assert_eq!(p(json!(-1)), Ok(Some(KeepAlive::Forever)));
        assert_eq!(p(json!("-1m")), Ok(Some(KeepAlive::Forever)));
        assert_eq!(
            p(json!("1h30m")),
            Ok(Some(KeepAlive::For(Duration::from_secs(5400))))
        );
        assert_eq!(
            p(json!("600")),
            Ok(Some(KeepAlive::For(Duration::from_secs(600))))
        );
        assert_eq!(parse(None).unwrap(), None);
        assert!(p(json!("soon")).unwrap_err().contains("invalid keep_alive"));
        assert!(p(json!(true)).is_err());
    }
}
