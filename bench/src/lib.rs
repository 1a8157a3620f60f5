//! What the benchmark harnesses share: the median of their samples and the machine's load,
//! printed beside every figure because other work on the machine lowers it; and how
//! each of them answers `--help` and a bad command line.

use std::io::Write;

/// The median of `v` (the upper one of an even count). `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg, or "?".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Prints a harness's usage text to stdout and exits with status 0 (`--help`, `-h`).
pub fn print_usage_and_exit(usage: &str) -> ! {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`--help | head -1`) is not an error worth reporting.
    let _ = stdout.write_all(usage.as_bytes());
    let _ = stdout.flush();
    std::process::exit(0)
}

/// The options a harness read from its command line or, when that failed, the reason
/// and a pointer to `--help` on stderr and exit status 2. A bad command line is the
/// caller's mistake, so it gets no backtrace (which `anyhow` prints when `main` returns
/// an error under `RUST_BACKTRACE=1`).
pub fn options_or_exit<T>(parsed: anyhow::Result<T>) -> T {
    parsed.unwrap_or_else(|error| {
        eprintln!("error: {error:#}\nrun with --help to see the options");
        std::process::exit(2)
    })
}
