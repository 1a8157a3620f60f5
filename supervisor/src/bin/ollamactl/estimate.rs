//! `estimate`: what a model would take in memory with given settings, whether that fits
//! what the server has free, and the largest context that fits per K/V cache type.

use std::path::Path;

use anyhow::Context as _;
use ollama_proto::ollama::{EstimateRequest, EstimateResponse, estimate_request};

use crate::client::Session;
use crate::format::{Table, Terminal, emit, emit_json, human_bytes};
use crate::options::RunnerSettings;

/// `ollamactl estimate`'s arguments.
#[derive(Debug, clap::Args)]
pub struct EstimateArgs {
    /// A model of the store, or a GGUF file (an existing file, sent as an absolute path:
    /// the server reads it, so it must be on the server's machine).
    model: String,
    #[command(flatten)]
    settings: RunnerSettings,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// Asks the server and prints the breakdown.
pub async fn estimate(
    session: &Session,
    args: EstimateArgs,
    terminal: Terminal,
) -> anyhow::Result<()> {
    let path = Path::new(&args.model);
    let source = if path.is_file() {
        let absolute = std::path::absolute(path)
            .with_context(|| format!("cannot make {} absolute", path.display()))?;
        estimate_request::Source::Path(absolute.display().to_string())
    } else {
        estimate_request::Source::Model(args.model.clone())
    };
    let request = EstimateRequest {
        source: Some(source),
        options: Some(args.settings.options()),
    };
    let estimate = session.client.clone().estimate(request).await;
    let estimate = estimate
        .map_err(|s| session.model_error(s, &args.model))?
        .into_inner();
    if args.json {
        return Ok(emit_json(&crate::json::estimate(&estimate))?);
    }
    Ok(emit(&render(&args.model, &estimate, terminal))?)
}

/// The breakdown, the verdict and the context table.
pub fn render(model: &str, e: &EstimateResponse, terminal: Terminal) -> String {
    let mut out = format!(
        "{model}: num_ctx {}, num_parallel {}, K/V {}/{}\n",
        e.num_ctx, e.num_parallel, e.kv_cache_type_k, e.kv_cache_type_v
    );
    let kv = format!(
        "{} (K {}, V {})",
        human_bytes(e.kv_bytes),
        human_bytes(e.k_bytes),
        human_bytes(e.v_bytes)
    );
    let rows = [
        ("weights", human_bytes(e.weights_bytes)),
        ("K/V cache", kv),
        ("compute", human_bytes(e.compute_bytes)),
        ("runtime", human_bytes(e.runtime_bytes)),
        ("overhead", human_bytes(e.overhead_bytes)),
        ("total", human_bytes(e.total_bytes)),
    ];
    let device_row = (e.device_bytes > 0).then(|| ("on the GPU", human_bytes(e.device_bytes)));
    for (name, value) in rows.into_iter().chain(device_row) {
        out.push_str(&format!("  {name:<10}  {value}\n"));
    }
    let verdict = if e.fits { "fits" } else { "does not fit" };
    out.push_str(&format!(
        "{verdict} on {}: {} free of {}\n",
        e.device.to_uppercase(),
        human_bytes(e.free_bytes),
        human_bytes(e.device_total_bytes)
    ));
    if !e.max_context.is_empty() {
        out.push('\n');
        out.push_str(&context_table(e).render(terminal));
    }
    out
}

/// The largest context that fits, one row per K/V cache type.
pub fn context_table(e: &EstimateResponse) -> Table {
    let mut table = Table::new(&["K/V TYPE", "MAX CONTEXT"]);
    for fit in &e.max_context {
        let max = match fit.max_num_ctx {
            0 => "does not fit".to_string(),
            n => n.to_string(),
        };
        table.row(vec![fit.kv_cache_type.clone().into(), max.into()]);
    }
    table
}
