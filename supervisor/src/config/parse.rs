//! Parsers for the value syntaxes Ollama's variables use: Go durations, booleans, byte
//! counts, host addresses and K/V cache type names.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How long something is kept: a bounded time, or forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Kept this long after the last use (zero: released as soon as idle).
    For(Duration),
    /// Never released for being idle.
    Forever,
}

impl std::fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepAlive::Forever => f.write_str("forever"),
            KeepAlive::For(d) => write!(f, "{}", format_duration(*d)),
        }
    }
}

/// Formats a duration the way Go prints it (`5m0s`, `1h30m0s`, `0s`, `1.5s`).
pub fn format_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let nanos = d.subsec_nanos();
    let secs = if nanos == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{:09}", nanos);
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`, `-1m`) into signed nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i128;
    Some(if neg { -ns } else { ns })
}

/// Ollama's keep-alive syntax: a Go duration or whole seconds; negative means forever.
pub fn parse_keep_alive(s: &str) -> Option<KeepAlive> {
    let s = s.trim();
    let ns = match parse_go_duration(s) {
        Some(ns) => ns,
        None => i128::from(s.parse::<i64>().ok()?) * 1_000_000_000,
    };
    Some(if ns < 0 {
        KeepAlive::Forever
    } else {
        KeepAlive::For(Duration::from_nanos(u64::try_from(ns).ok()?))
    })
}

/// Go's `strconv.ParseBool`, which Ollama uses for its flags.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `OLLAMA_HOST`: `host`, `host:port`, `:port`, with an optional `http://` scheme.
pub fn parse_host(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .unwrap_or(s);
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err("a path is not allowed".into());
    }
    let with_port = if rest.is_empty() {
        "127.0.0.1:11434".to_string()
    } else if let Some(port) = rest.strip_prefix(':').filter(|p| !p.contains(':')) {
        format!("127.0.0.1:{port}")
    } else if rest.starts_with('[') {
        if rest.contains("]:") {
            rest.to_string()
        } else {
            format!("{rest}:11434")
        }
    } else if rest.matches(':').count() == 1 {
        rest.to_string()
    } else if rest.contains(':') {
        format!("[{rest}]:11434")
    } else {
        format!("{rest}:11434")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "the name resolves to no address".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_plain_seconds() {
        let secs = |n| Some(KeepAlive::For(Duration::from_secs(n)));
        assert_eq!(parse_keep_alive("5m"), secs(300));
        assert_eq!(parse_keep_alive("1h30m"), secs(5400));
        assert_eq!(parse_keep_alive("90"), secs(90));
        assert_eq!(parse_keep_alive("0"), secs(0));
        assert_eq!(parse_keep_alive("-1"), Some(KeepAlive::Forever));
        assert_eq!(parse_keep_alive("-1m"), Some(KeepAlive::Forever));
        assert_eq!(
            parse_keep_alive("1.5s"),
            Some(KeepAlive::For(Duration::from_millis(1500)))
        );
        for bad in ["", "5 minutes", "m", "1x", "--1"] {
            assert_eq!(parse_keep_alive(bad), None, "{bad:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn hosts_take_ollama_forms() {
        assert_eq!(parse_host("").unwrap().to_string(), "127.0.0.1:11434");
        assert_eq!(parse_host("0.0.0.0").unwrap().to_string(), "0.0.0.0:11434");
        assert_eq!(parse_host(":8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(
            parse_host("http://127.0.0.1:9000/").unwrap().to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(parse_host("::1").unwrap().to_string(), "[::1]:11434");
        assert!(parse_host("127.0.0.1:notaport").is_err());
        assert!(parse_host("http://h/x").is_err());
    }
}
