//! `ollama-runner`: the runner binary.

fn main() {}
