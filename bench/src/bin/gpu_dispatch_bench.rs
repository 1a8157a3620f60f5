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

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dispatches: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(7), |a| a.parse())?;
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
