//! Logging for the binaries (`ollama-runner` and `ollamad` alike): structured lines on
//! stderr, colour only on a terminal, `RUST_LOG` over the binary's default level.

/// Installs the stderr subscriber with `default` (`info`, `debug`, `trace`) unless
/// `RUST_LOG` says otherwise. Call once, first thing in `main`.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The default level a value of `OLLAMA_DEBUG` asks for, as `ollama-runner` reads it:
/// `debug` for any value but unset, empty, `0` or `false`; `info` otherwise. (`ollamad`
/// reads the variable through its configuration registry, which also knows `2` for
/// `trace`.)
pub fn level_from_ollama_debug(value: Option<&str>) -> &'static str {
    match value {
        Some(v) if !v.is_empty() && v != "0" && v != "false" => "debug",
        _ => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_debug_turns_on_debug_unless_empty_or_false() {
        assert_eq!(level_from_ollama_debug(None), "info");
        for off in ["", "0", "false"] {
            assert_eq!(level_from_ollama_debug(Some(off)), "info");
        }
        for on in ["1", "true", "yes"] {
            assert_eq!(level_from_ollama_debug(Some(on)), "debug");
        }
    }
}
