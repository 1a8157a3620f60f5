//! What the benchmark harnesses share: the median of their samples and the machine's load,
//! printed beside every figure because other work on the machine lowers it.

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
