//! `kernels-bench`: the speed of the matrix kernels, as a markdown report.
//!
//! ```text
//! cargo run --release -p bench --bin kernels-bench -- [--threads 1,2] [--quick] [--types q4_0,q8_0] [--no-batched] [--cpu-time] [--streams]
//! ```
//!
//! For each thread count it prints the streaming read bandwidth of a 1 GiB buffer, the
//! matrix-vector GB/s of weight bytes for each type at three sizes (half of L2, half of
//! L3, and 14336 x 4096, rotated over enough copies to exceed L3 four times), the ratio of
//! the large one to the read bandwidth, the batched GFLOP/s with 512 activation rows, the
//! pool's cost per call with empty tasks, and the time of one small (576 x 576) product.
//! With `--streams`, only the products of a decode step of one to four streams: SmolLM2's
//! feed-forward matrix (1536 x 576) from the last-level cache, microseconds a call, and
//! what four tokens cost against one (what bounds four streams' speed against one's).
//! The kernel path is the best this CPU has, or the one `OLLAMA_KERNELS` forces. The load
//! average is printed before and after: other work on the machine lowers every figure.

mod machine;
mod measure;

use anyhow::{Context, bail};
use kernels::GgmlType;
use kernels::cpu::{Isa, Numerics};
use kernels::pool::ThreadPool;

use machine::{Machine, human};
use measure::{
    Effort, Matrix, batched, few_tokens, matvec, matvec_call, pool_overhead, stream_read,
};

/// The weight types in the report, the two real models' types first.
const TYPES: [GgmlType; 13] = {
    use GgmlType::*;
    [
        Q4_1, Q8_0, Q4_K, Q6_K, Q5_0, F32, Q4_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, F16,
    ]
};

/// What `--help` prints: every option, what it does, its default.
const USAGE: &str = "\
kernels-bench: the speed of the matrix kernels, as a markdown report

usage: kernels-bench [OPTIONS]

options:
  --threads LIST  thread counts to measure, comma-separated (default: 1,2)
  --types LIST    weight types to measure, comma-separated, e.g. q4_0,q8_0 (default: all of
                  q4_1,q8_0,q4_K,q6_K,q5_0,f32,q4_0,q5_1,q2_K,q3_K,q5_K,iq4_nl,f16)
  --quick         medians of 3 runs of at least 20 ms and a 256 MiB stream (default: off,
                  7 runs of at least 100 ms and a 1 GiB stream)
  --no-batched    skip the batched product with 512 activation rows (default: measured)
  --cpu-time      time by the thread's on-CPU time; needs --threads 1 (default: off, wall clock)
  --streams       only the products of one to four tokens (a decode step of that many
                  streams) of a 1536x576 matrix read from L3 (default: off)
  -h, --help      print this help and exit
";

/// Rows and columns of the large matrix-vector product.
const LARGE: (usize, usize) = (14336, 4096);
/// A small model's matrix, to show the cost per call.
const SMALL: (usize, usize) = (576, 576);
/// SmolLM2's feed-forward matrix (gate or up), the products of `--streams`.
const FFN: (usize, usize) = (1536, 576);
/// Bytes of copies of it `--streams` rotates over: past L2, within a server CPU's L3, as a
/// small model's weights are.
const STREAMS_BYTES: usize = 32 << 20;
/// Activation rows of the batched product.
const BATCH: usize = 512;
/// Rows of the batched product's matrix (columns: 4096).
const BATCH_ROWS: usize = 1024;

struct Options {
    threads: Vec<usize>,
    quick: bool,
    batched: bool,
    cpu_time: bool,
    streams: bool,
    types: Vec<GgmlType>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        threads: vec![1, 2],
        quick: false,
        batched: true,
        cpu_time: false,
        streams: false,
        types: TYPES.to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-batched" => options.batched = false,
            "--cpu-time" => options.cpu_time = true,
            "--streams" => options.streams = true,
            "--help" | "-h" => bench::print_usage_and_exit(USAGE),
            "--threads" => {
                let list = args.next().context("--threads needs a list such as 1,2")?;
                options.threads = list
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse::<usize>()
                            .with_context(|| format!("bad thread count {n:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            "--types" => {
                let list = args
                    .next()
                    .context("--types needs a list such as q4_0,q8_0")?;
                options.types = list
                    .split(',')
                    .map(|n| {
                        GgmlType::from_name(n.trim()).with_context(|| format!("unknown type {n:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if options.cpu_time && options.threads != [1] {
        bail!("--cpu-time times the calling thread only; use it with --threads 1");
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = bench::options_or_exit(parse_args());
    let isa = Isa::detect()?;
    let numerics = Numerics::from_env()?;
    let machine = Machine::probe();
    let effort = if options.quick {
        Effort {
            runs: 3,
            min_run: 0.02,
            cpu_time: options.cpu_time,
        }
    } else {
        Effort {
            runs: 7,
            min_run: 0.1,
            cpu_time: options.cpu_time,
        }
    };
    let stream_bytes = if options.quick { 256 << 20 } else { 1 << 30 };

    println!("## Kernel benchmark\n");
    println!(
        "- CPU: {} ({} logical CPUs available)",
        machine.model, machine.cpus
    );
    println!(
        "- L2: {} per core, L3: {}",
        human(machine.l2),
        human(machine.l3)
    );
    println!("- kernel path: {isa}, numerics: {numerics} (`OLLAMA_NUMERICS`)");
    println!("- load average at start: {}", bench::load_average());
    println!(
        "- figures: median of {} runs of at least {} ms each, timed by {}\n",
        effort.runs,
        effort.min_run * 1e3,
        if effort.cpu_time {
            "the thread's on-CPU time (time other processes held the core left out)"
        } else {
            "the wall clock"
        }
    );

    if options.streams {
        streams(&options, numerics, isa, effort)?;
        println!("Load average at end: {}", bench::load_average());
        return Ok(());
    }
    let cols = LARGE.1;
    for &threads in &options.threads {
        let pool = ThreadPool::new(threads)?;
        let stream = stream_read(&pool, stream_bytes, effort);
        println!("### {threads} thread(s)\n");
        println!(
            "Streaming read ({}): **{stream:.1} GB/s**\n",
            human(stream_bytes)
        );
        println!(
            "Pool overhead per call (empty tasks): **{:.2} µs**\n",
            pool_overhead(&pool, effort)
        );
        let (small_rows, small_cols) = SMALL;
        let small =
            Matrix::random(GgmlType::Q4_1, small_rows, small_cols, 5).loaded_for(numerics, isa);
        println!(
            "One {small_rows}x{small_cols} q4_1 matvec (SmolLM2's attention projection), per call: **{:.1} µs**\n",
            matvec_call(&pool, isa, &small, effort)
        );
        println!(
            "| type | matvec in L2 (GB/s) | matvec in L3 (GB/s) | matvec {}x{} (GB/s) | vs stream | batched x{BATCH} (GFLOP/s) |",
            LARGE.0, LARGE.1
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for &ty in &options.types {
            let row_bytes = cols / ty.block_size() * ty.type_size();
            let rows_for = |bytes: usize| (bytes / row_bytes).max(threads * 8);
            let loaded = |rows: usize, seed: u64| {
                Matrix::random(ty, rows, cols, seed).loaded_for(numerics, isa)
            };
            let l2 = [loaded(rows_for(machine.l2 / 2).next_multiple_of(8), 1)];
            let l3 = [loaded(rows_for(machine.l3 / 2).next_multiple_of(8), 2)];
            let large_bytes = LARGE.0 * row_bytes;
            let copies = (4 * machine.l3).div_ceil(large_bytes).max(2);
            let large: Vec<Matrix> = (0..copies).map(|i| loaded(LARGE.0, 3 + i as u64)).collect();
            let g_l2 = matvec(&pool, isa, &l2, effort);
            let g_l3 = matvec(&pool, isa, &l3, effort);
            let g_large = matvec(&pool, isa, &large, effort);
            drop(large);
            let flops = if options.batched {
                let batch = loaded(BATCH_ROWS, 9);
                let batch_effort = Effort {
                    runs: effort.runs.min(3),
                    ..effort
                };
                batched(&pool, isa, &batch, BATCH, batch_effort)
            } else {
                f64::NAN
            };
            println!(
                "| {ty} | {g_l2:.1} | {g_l3:.1} | {g_large:.1} | {:.0}% | {flops:.1} |",
                100.0 * g_large / stream
            );
        }
        println!();
    }
    println!("Load average at end: {}", bench::load_average());
    Ok(())
}

/// The `--streams` report: for each thread count and type, microseconds per product of
/// [`FFN`] with one to four activation rows, and four rows' time over one's.
fn streams(options: &Options, numerics: Numerics, isa: Isa, effort: Effort) -> anyhow::Result<()> {
    let (rows, cols) = FFN;
    for &threads in &options.threads {
        let pool = ThreadPool::new(threads)?;
        println!("### {threads} thread(s), {rows}x{cols}, µs a product\n");
        println!("| type | 1 token | 2 tokens | 3 tokens | 4 tokens | 4 / 1 |");
        println!("|---|---:|---:|---:|---:|---:|");
        for &ty in &options.types {
            if !cols.is_multiple_of(ty.block_size()) {
                continue;
            }
            let loaded =
                |i: usize| Matrix::random(ty, rows, cols, 20 + i as u64).loaded_for(numerics, isa);
            let first = loaded(0);
            let n_copies = STREAMS_BYTES.div_ceil(first.bytes()).max(2);
            let copies: Vec<Matrix> = std::iter::once(first)
                .chain((1..n_copies).map(loaded))
                .collect();
            let us: Vec<f64> = (1..=4)
                .map(|n| few_tokens(&pool, isa, &copies, n, effort) * 1e6)
                .collect();
            println!(
                "| {ty} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                us[0],
                us[1],
                us[2],
                us[3],
                us[3] / us[0]
            );
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{TYPES, USAGE};

    #[test]
    fn usage_lists_the_default_types() {
        let names: Vec<&str> = TYPES.iter().map(|ty| ty.name()).collect();
        assert!(USAGE.contains(&names.join(",")), "USAGE misses {names:?}");
    }
}
