//! The runner settings `load` and `estimate` take as flags, `--keep-alive` durations, and
//! `/set parameter NAME VALUE` (run): each turned into the proto's `Options`.

use anyhow::{Context as _, bail};
use ollama_proto::ollama::{KeepAlive, Options, keep_alive};

/// Flash attention on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// The settings a runner is started with, shared by `load` and `estimate`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunnerSettings {
    /// Context length in tokens of each parallel sequence.
    #[arg(long, value_name = "N")]
    num_ctx: Option<u32>,
    /// Sequences served at once.
    #[arg(long, value_name = "P")]
    num_parallel: Option<u32>,
    /// The K and V cache type (f16, q8_0, q4_0, ...).
    #[arg(long, value_name = "T")]
    kv_cache_type: Option<String>,
    /// The K cache type alone.
    #[arg(long, value_name = "T")]
    kv_cache_type_k: Option<String>,
    /// The V cache type alone.
    #[arg(long, value_name = "T")]
    kv_cache_type_v: Option<String>,
    /// Flash attention.
    #[arg(long, value_name = "on|off", hide_possible_values = true)]
    flash_attention: Option<Switch>,
}

impl RunnerSettings {
    /// The settings as options; unset flags stay unset, so the model's values apply.
    pub fn options(&self) -> Options {
        Options {
            num_ctx: self.num_ctx,
            num_parallel: self.num_parallel,
            kv_cache_type: self.kv_cache_type.clone(),
            kv_cache_type_k: self.kv_cache_type_k.clone(),
            kv_cache_type_v: self.kv_cache_type_v.clone(),
            flash_attention: self.flash_attention.map(|s| matches!(s, Switch::On)),
            ..Options::default()
        }
    }
}

/// A keep-alive as Ollama takes it: "5m", "1h30m", "90s", "300" (seconds), "0" (unload
/// after the request), a negative number or "forever" (until stopped).
pub fn parse_keep_alive(text: &str) -> Result<KeepAlive, String> {
    let text = text.trim();
    let forever = KeepAlive {
        keep_alive: Some(keep_alive::KeepAlive::Forever(true)),
    };
    if text.eq_ignore_ascii_case("forever") || text.starts_with('-') {
        return Ok(forever);
    }
    let seconds = match text.parse::<f64>() {
        Ok(seconds) => seconds,
        Err(_) => go_duration(text).ok_or_else(|| {
            format!("{text:?} is not a duration (examples: 5m, 1h30m, 90s, 0, -1)")
        })?,
    };
    Ok(KeepAlive {
        keep_alive: Some(keep_alive::KeepAlive::Seconds(seconds)),
    })
}

/// Seconds in a Go duration such as "1h30m" or "2.5s".
fn go_duration(text: &str) -> Option<f64> {
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// Sets option `name` to `value` as `/set parameter` does in Ollama; `stop` adds a stop
/// string each time.
pub fn set_parameter(options: &mut Options, name: &str, value: &str) -> anyhow::Result<()> {
    fn parse<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<Option<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let parsed = value.parse::<T>();
        Ok(Some(parsed.with_context(|| {
            format!("{name}: {value:?} is not a valid value")
        })?))
    }
    let o = options;
    match name {
        "num_ctx" => o.num_ctx = parse(name, value)?,
        "num_batch" => o.num_batch = parse(name, value)?,
        "num_thread" => o.num_thread = parse(name, value)?,
        "num_keep" => o.num_keep = parse(name, value)?,
        "use_mmap" => o.use_mmap = parse(name, value)?,
        "num_gpu" => o.num_gpu = parse(name, value)?,
        "main_gpu" => o.main_gpu = parse(name, value)?,
        "num_parallel" => o.num_parallel = parse(name, value)?,
        "flash_attention" => o.flash_attention = parse(name, value)?,
        "kv_cache_type" => o.kv_cache_type = Some(value.to_string()),
        "kv_cache_type_k" => o.kv_cache_type_k = Some(value.to_string()),
        "kv_cache_type_v" => o.kv_cache_type_v = Some(value.to_string()),
        "num_predict" => o.num_predict = parse(name, value)?,
        "temperature" => o.temperature = parse(name, value)?,
        "top_k" => o.top_k = parse(name, value)?,
        "top_p" => o.top_p = parse(name, value)?,
        "min_p" => o.min_p = parse(name, value)?,
        "typical_p" => o.typical_p = parse(name, value)?,
        "repeat_last_n" => o.repeat_last_n = parse(name, value)?,
        "repeat_penalty" => o.repeat_penalty = parse(name, value)?,
        "presence_penalty" => o.presence_penalty = parse(name, value)?,
        "frequency_penalty" => o.frequency_penalty = parse(name, value)?,
        "seed" => o.seed = parse(name, value)?,
        "stop" => o.stop.push(value.to_string()),
        _ => bail!("unknown parameter {name:?}"),
    }
    Ok(())
}
