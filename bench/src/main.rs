//! Benchmark harness placeholder until the kernel benchmarks land.

fn main() {}
