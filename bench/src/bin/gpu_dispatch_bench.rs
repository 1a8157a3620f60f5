//! The host's cost of one GPU kernel: how long recording a dispatch takes, and a whole
//! record-submit-wait round per batch of dispatches, on the default GPU (lavapipe in CI).
//!
//! Decode on a real GPU is bound by this cost (about 600 kernels a token), not by the
//! kernels: the figure to watch when the recording path changes.
//!
//! `cargo run --release -p bench --bin gpu-dispatch-bench [-- DISPATCHES ROUNDS]`

use std::time::Instant;

use anyhow::{Context, Result};
use gpu::{DeviceSpec, Gpu};

/// What `--help` prints: every argument, what it does, its default.
const USAGE: &str = "\
gpu-dispatch-bench: the host's cost of one GPU kernel dispatch, on the default GPU

usage: gpu-dispatch-bench [DISPATCHES [ROUNDS]]

arguments:
  DISPATCHES  dispatches recorded and run per round (default: 2000)
  ROUNDS      rounds, medians taken (default: 7)
  -h, --help  print this help and exit
";

/// Dispatches per round and rounds, from the command line.
fn parse_args() -> Result<(usize, usize)> {
    let mut args = std::env::args().skip(1);
    let mut number = |name: &str, default: usize| -> Result<usize> {
        match args.next() {
            None => Ok(default),
            Some(arg) if arg == "--help" || arg == "-h" => bench::print_usage_and_exit(USAGE),
            Some(arg) => arg
                .parse()
                .with_context(|| format!("{name} must be a number, not {arg:?}")),
        }
    };
    Ok((number("DISPATCHES", 2000)?, number("ROUNDS", 7)?))
}

fn main() -> Result<()> {
    let (dispatches, rounds) = bench::options_or_exit(parse_args());
    let gpu = Gpu::open(DeviceSpec::Gpu)?.context("no GPU adapter")?;
    println!("adapter: {}", gpu.description());
    let x = gpu.upload_f32("x", &[1.0; 4])?;
    let mut record_us = Vec::new();
    let mut round_us = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..dispatches {
            gpu.scale_assign(&x, 4, 1.0)?;
        }
        let recorded = start.elapsed();
        gpu.read_f32(&x)?;
        let total = start.elapsed();
        record_us.push(recorded.as_secs_f64() * 1e6 / dispatches as f64);
        round_us.push(total.as_secs_f64() * 1e6 / dispatches as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{dispatches} dispatches x {rounds} rounds: recording {:.2} us/dispatch, \
         recording + running {:.2} us/dispatch (medians)",
        median(&mut record_us),
        median(&mut round_us)
    );
    Ok(())
}
