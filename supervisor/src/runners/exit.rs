//! How a runner process ended, in words an admin can act on.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// A child's end: its exit code or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// Waiting for it failed; how it ended is not known.
    Unknown,
}

impl From<ExitStatus> for ExitInfo {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Code(code),
            (None, Some(signal)) => Self::Signal(signal),
            (None, None) => Self::Unknown,
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Code(code @ ollama_proto::RUNNER_EXIT_DEVICE_LOST) => {
                write!(f, "exit code {code} (its GPU was lost)")
            }
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(name) => write!(f, "signal {signal} ({name})"),
                Err(_) => write!(f, "signal {signal}"),
            },
            Self::Unknown => f.write_str("an unknown status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_reads_as_a_code_or_a_named_signal() {
        assert_eq!(ExitInfo::Code(3).to_string(), "exit code 3");
        assert_eq!(
            ExitInfo::Code(75).to_string(),
            "exit code 75 (its GPU was lost)"
        );
        assert_eq!(ExitInfo::Signal(9).to_string(), "signal 9 (SIGKILL)");
        assert_eq!(ExitInfo::from(ExitStatus::from_raw(9)), ExitInfo::Signal(9));
        assert_eq!(
            ExitInfo::from(ExitStatus::from_raw(2 << 8)),
            ExitInfo::Code(2)
        );
    }
}
