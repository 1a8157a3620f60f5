//! Every `OLLAMA_*` variable the supervisor reads, parsed once at start into [`Config`].
//!
//! Names, defaults and meanings are Ollama's, so an existing systemd override works
//! unchanged. Unlike Ollama, a value that does not parse stops the start with a message
//! naming the variable, the value and what is accepted, instead of being ignored.
//! [`Config::describe`] lists each value with where it came from, for `ollamad config`.

mod parse;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gguf::GgmlType;
use thiserror::Error;

pub use parse::{KeepAlive, format_duration, parse_host, parse_keep_alive};

/// Where configuration values come from; the process environment in production, a map
/// in tests.
pub trait Env {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    // The one place the supervisor reads its environment.
    #[allow(clippy::disallowed_methods)]
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// One variable: its name, what it means, its default as text and what it accepts.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// The environment variable.
    pub name: &'static str,
    /// What it sets.
    pub meaning: &'static str,
    /// The default, as a user would write it.
    pub default: &'static str,
    /// The accepted values, for error messages and `--help`.
    pub accepts: &'static str,
}

/// Every variable the supervisor reads (the one registry: `--help` and errors use it).
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "OLLAMA_HOST",
        meaning: "address the HTTP and gRPC APIs listen on",
        default: "127.0.0.1:11434",
        accepts: "host, host:port, :port, optionally with http://",
    },
    Variable {
        name: "OLLAMA_MODELS",
        meaning: "directory of the model store",
        default: "$HOME/.ollama/models",
        accepts: "a directory path",
    },
    Variable {
        name: "OLLAMA_KEEP_ALIVE",
        meaning: "how long an idle model stays loaded",
        default: "5m",
        accepts: "a Go duration (5m, 1h30m) or seconds; negative keeps models loaded forever, 0 unloads at once",
    },
    Variable {
        name: "OLLAMA_MAX_LOADED_MODELS",
        meaning: "most models loaded at once (0: 3 per GPU, or 3 on CPU)",
        default: "0",
        accepts: "a whole number >= 0",
    },
    Variable {
        name: "OLLAMA_NUM_PARALLEL",
        meaning: "requests each model serves at once",
        default: "1",
        accepts: "a whole number >= 1",
    },
    Variable {
        name: "OLLAMA_MAX_QUEUE",
        meaning: "requests that may wait in all queues together before new ones are refused",
        default: "512",
        accepts: "a whole number >= 1",
    },
    Variable {
        name: "OLLAMA_CONTEXT_LENGTH",
        meaning: "default context length (num_ctx)",
        default: "4096",
        accepts: "a whole number >= 1",
    },
    Variable {
        name: "OLLAMA_FLASH_ATTENTION",
        meaning: "use flash attention (every architecture we run has it; 0 or false turns it off)",
        default: "true",
        accepts: "1, true, 0, false (Go booleans)",
    },
    Variable {
        name: "OLLAMA_NUMERICS",
        meaning: "how the runners' kernels add: fast (any order, judged by KL divergence against exact) or exact (llama.cpp's reference order, bit for bit)",
        default: "fast",
        accepts: "fast, exact",
    },
    Variable {
        name: "OLLAMA_KV_CACHE_TYPE",
        meaning: "type of the K and V cache",
        default: "f16",
        accepts: "f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl",
    },
    Variable {
        name: "OLLAMA_KV_CACHE_TYPE_K",
        meaning: "type of the K cache (overrides OLLAMA_KV_CACHE_TYPE)",
        default: "OLLAMA_KV_CACHE_TYPE",
        accepts: "f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl",
    },
    Variable {
        name: "OLLAMA_KV_CACHE_TYPE_V",
        meaning: "type of the V cache (overrides OLLAMA_KV_CACHE_TYPE)",
        default: "OLLAMA_KV_CACHE_TYPE",
        accepts: "f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl",
    },
    Variable {
        name: "OLLAMA_LOAD_TIMEOUT",
        meaning: "how long a model load may stall before it is given up",
        default: "5m",
        accepts: "a Go duration or seconds; 0 or negative waits forever",
    },
    Variable {
        name: "OLLAMA_GPU_OVERHEAD",
        meaning: "bytes of GPU memory to leave unused on each GPU",
        default: "0",
        accepts: "a whole number of bytes",
    },
    Variable {
        name: "OLLAMA_ORIGINS",
        meaning: "extra allowed CORS origins",
        default: "",
        accepts: "comma-separated origins",
    },
    Variable {
        name: "OLLAMA_DEBUG",
        meaning: "debug logging (2: trace)",
        default: "false",
        accepts: "a Go boolean, or a level 0, 1, 2",
    },
    Variable {
        name: "OLLAMA_MULTIUSER_CACHE",
        meaning: "spread requests over slots so shared prompts stay cached",
        default: "false",
        accepts: "a Go boolean",
    },
    Variable {
        name: "OLLAMA_NOPRUNE",
        meaning: "do not prune unused blobs at start",
        default: "false",
        accepts: "a Go boolean",
    },
    Variable {
        name: "OLLAMA_SCHED_SPREAD",
        meaning: "spread each model over all GPUs",
        default: "false",
        accepts: "a Go boolean",
    },
    Variable {
        name: "OLLAMA_RUNNER",
        meaning: "path of the ollama-runner binary",
        default: "ollama-runner beside ollamad",
        accepts: "a file path",
    },
    Variable {
        name: "OLLAMA_KERNELS",
        meaning: "instruction set the runners' kernels use (passed to each runner)",
        default: "the best the CPU has",
        accepts: "scalar, avx2, avx512 (a runner refuses what the CPU lacks)",
    },
    Variable {
        name: "OLLAMA_DEVICE",
        meaning: "device the runners compute on, chosen at start and sent with every load (a request's num_gpu 0 still picks the CPU)",
        default: "the best GPU present (not a software one), else the CPU",
        accepts: "cpu, gpu, or an adapter index as `ollama-runner devices` lists them",
    },
    Variable {
        name: "OLLAMA_GPU_INT_DOT",
        meaning: "GPU runners multiply Q4_0, Q4_1, Q5_0, Q8_0 and Q4_K weights by activations rounded to 8 bits, four bytes a step (passed to each runner)",
        default: "false",
        accepts: "a Go boolean (a runner refuses anything else)",
    },
    Variable {
        name: "OLLAMA_CPU_FALLBACK",
        meaning: "load a model on the CPU when it fails to load on the GPU (logged as a warning) instead of failing its requests",
        default: "false",
        accepts: "a Go boolean",
    },
];

/// The K/V cache types a user may choose.
pub const KV_CACHE_TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::IQ4_NL,
];

/// A value that could not be used; stops the start.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{name}={value:?} is not valid: {reason}; accepted: {accepts}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
    /// What would be accepted.
    pub accepts: &'static str,
}

/// Log verbosity from `OLLAMA_DEBUG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Info and above.
    Info,
    /// Debug and above.
    Debug,
    /// Everything.
    Trace,
}

/// The supervisor's whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `OLLAMA_HOST`.
    pub host: SocketAddr,
    /// `OLLAMA_MODELS`.
    pub models_dir: PathBuf,
    /// `OLLAMA_KEEP_ALIVE`.
    pub keep_alive: KeepAlive,
    /// `OLLAMA_MAX_LOADED_MODELS` (0: decided from the hardware).
    pub max_loaded_models: usize,
    /// `OLLAMA_NUM_PARALLEL`.
    pub num_parallel: usize,
    /// `OLLAMA_MAX_QUEUE`.
    pub max_queue: usize,
    /// `OLLAMA_CONTEXT_LENGTH`.
    pub context_length: u32,
    /// `OLLAMA_FLASH_ATTENTION`.
    pub flash_attention: bool,
    /// `OLLAMA_NUMERICS`: the runners' default numerics, checked here so that a typo
    /// stops the server at start-up.
    pub numerics: Numerics,
    /// K cache type (`OLLAMA_KV_CACHE_TYPE_K`, else `OLLAMA_KV_CACHE_TYPE`).
    pub kv_cache_type_k: GgmlType,
    /// V cache type (`OLLAMA_KV_CACHE_TYPE_V`, else `OLLAMA_KV_CACHE_TYPE`).
    pub kv_cache_type_v: GgmlType,
    /// `OLLAMA_LOAD_TIMEOUT` (`None`: no limit).
    pub load_timeout: Option<Duration>,
    /// `OLLAMA_GPU_OVERHEAD`, bytes.
    pub gpu_overhead: u64,
    /// `OLLAMA_ORIGINS`.
    pub origins: Vec<String>,
    /// `OLLAMA_DEBUG`.
    pub log_level: LogLevel,
    /// `OLLAMA_MULTIUSER_CACHE`.
    pub multiuser_cache: bool,
    /// `OLLAMA_NOPRUNE`.
    pub noprune: bool,
    /// `OLLAMA_RUNNER` (`None`: `ollama-runner` beside this binary).
    pub runner: Option<PathBuf>,
    /// `OLLAMA_KERNELS`, passed to runners as it is (they check it).
    pub kernels: Option<String>,
    /// `OLLAMA_GPU_INT_DOT`, passed to runners as it is (they check it).
    pub gpu_int_dot: Option<String>,
    /// `OLLAMA_DEVICE`: which device the server's runners use (see `crate::devices`);
    /// its form is checked here so that a typo stops the server at start-up rather
    /// than failing every load.
    pub device: Option<String>,
    /// `OLLAMA_CPU_FALLBACK`.
    pub cpu_fallback: bool,
    /// `XDG_RUNTIME_DIR`, where runner sockets go (else the temporary directory).
    pub runtime_dir: Option<PathBuf>,
    /// `OLLAMA_SCHED_SPREAD`.
    pub sched_spread: bool,
}

/// One line of [`Config::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The variable.
    pub name: &'static str,
    /// The value in effect, as text.
    pub value: String,
    /// `environment` or `default`.
    pub source: &'static str,
}

fn variable(name: &str) -> &'static Variable {
    VARIABLES
        .iter()
        .find(|v| v.name == name)
        .expect("every variable read is in the registry")
}

struct Reader<'a> {
    env: &'a dyn Env,
}

impl Reader<'_> {
    /// The raw value, `None` when unset or empty (Ollama treats empty as unset).
    fn raw(&self, name: &str) -> Option<String> {
        self.env
            .var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn get<T>(
        &self,
        name: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => parse(&value).map_err(|reason| {
                let var = variable(name);
                ConfigError {
                    name: var.name,
                    value,
                    reason,
                    accepts: var.accepts,
                }
            }),
        }
    }

    /// `OLLAMA_HOST`, which the server and its clients read alike.
    fn host(&self) -> Result<SocketAddr, ConfigError> {
        let default = SocketAddr::from(([127, 0, 0, 1], 11434));
        self.get("OLLAMA_HOST", default, parse::parse_host)
    }

    fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        self.bool_or(name, false)
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.get(name, default, |s| {
            parse::parse_bool(s).ok_or_else(|| "not a boolean".into())
        })
    }

    fn count(&self, name: &str, default: usize, min: usize) -> Result<usize, ConfigError> {
        self.get(name, default, |s| {
            let n: usize = s.parse().map_err(|_| "not a whole number".to_string())?;
            if n < min {
                return Err(format!("must be at least {min}"));
            }
            Ok(n)
        })
    }

    fn kv_type(&self, name: &str, default: GgmlType) -> Result<GgmlType, ConfigError> {
        self.get(name, default, |s| {
            GgmlType::from_name(s)
                .filter(|t| KV_CACHE_TYPES.contains(t))
                .ok_or_else(|| "not a K/V cache type".into())
        })
    }
}

impl Config {
    /// Reads and validates every variable.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let r = Reader { env };
        let home = env.var("HOME").unwrap_or_else(|| "/root".into());
        let kv_both = r.kv_type("OLLAMA_KV_CACHE_TYPE", GgmlType::F16)?;
        Ok(Config {
            host: r.host()?,
            models_dir: r.get(
                "OLLAMA_MODELS",
                PathBuf::from(home).join(".ollama/models"),
                |s| Ok(PathBuf::from(s)),
            )?,
            keep_alive: r.get(
                "OLLAMA_KEEP_ALIVE",
                KeepAlive::For(Duration::from_secs(300)),
                |s| parse_keep_alive(s).ok_or_else(|| "not a duration".into()),
            )?,
            max_loaded_models: r.count("OLLAMA_MAX_LOADED_MODELS", 0, 0)?,
            num_parallel: r.count("OLLAMA_NUM_PARALLEL", 1, 1)?,
            max_queue: r.count("OLLAMA_MAX_QUEUE", 512, 1)?,
            context_length: r.get("OLLAMA_CONTEXT_LENGTH", 4096, |s| match s.parse::<u32>() {
                Ok(0) => Err("must be at least 1".into()),
                Ok(n) => Ok(n),
                Err(_) => Err("not a whole number".into()),
            })?,
            // On by default, as Ollama now turns it on for the models that support it
            // (its PRs #12639, #12482, #13448): every architecture here supports it.
            flash_attention: r.bool_or("OLLAMA_FLASH_ATTENTION", true)?,
            numerics: r.get("OLLAMA_NUMERICS", Numerics::Fast, |s| match s.trim() {
                "" => Ok(Numerics::Fast),
                s => Numerics::from_name(s).ok_or_else(|| "not fast or exact".into()),
            })?,
            kv_cache_type_k: r.kv_type("OLLAMA_KV_CACHE_TYPE_K", kv_both)?,
            kv_cache_type_v: r.kv_type("OLLAMA_KV_CACHE_TYPE_V", kv_both)?,
            load_timeout: r.get("OLLAMA_LOAD_TIMEOUT", Some(Duration::from_secs(300)), |s| {
                match parse_keep_alive(s) {
                    Some(KeepAlive::For(d)) if !d.is_zero() => Ok(Some(d)),
                    Some(_) => Ok(None),
                    None => Err("not a duration".into()),
                }
            })?,
            gpu_overhead: r.get("OLLAMA_GPU_OVERHEAD", 0, |s| {
                s.parse::<u64>()
                    .map_err(|_| "not a whole number of bytes".into())
            })?,
            origins: r.get("OLLAMA_ORIGINS", Vec::new(), |s| {
                Ok(s.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(String::from)
                    .collect())
            })?,
            log_level: r.get("OLLAMA_DEBUG", LogLevel::Info, |s| match s {
                "2" => Ok(LogLevel::Trace),
                _ => match parse::parse_bool(s) {
                    Some(true) => Ok(LogLevel::Debug),
                    Some(false) => Ok(LogLevel::Info),
                    None => Err("not a boolean or level".into()),
                },
            })?,
            multiuser_cache: r.bool("OLLAMA_MULTIUSER_CACHE")?,
            noprune: r.bool("OLLAMA_NOPRUNE")?,
            sched_spread: r.bool("OLLAMA_SCHED_SPREAD")?,
            cpu_fallback: r.bool("OLLAMA_CPU_FALLBACK")?,
            runner: r.raw("OLLAMA_RUNNER").map(PathBuf::from),
            kernels: r.raw("OLLAMA_KERNELS"),
            gpu_int_dot: r.raw("OLLAMA_GPU_INT_DOT"),
            device: r.get("OLLAMA_DEVICE", None, |s| {
                let s = s.to_ascii_lowercase();
                if s == "cpu" || s == "gpu" || s.parse::<usize>().is_ok() {
                    Ok(Some(s))
                } else {
                    Err("not cpu, gpu or an adapter index".into())
                }
            })?,
            runtime_dir: r.raw("XDG_RUNTIME_DIR").map(PathBuf::from),
        })
    }

    /// The address a client (`ollamactl`) reaches the server at: `OLLAMA_HOST` read as
    /// the server reads it, with an unspecified address (`0.0.0.0`) meaning this machine.
    /// Only that variable is read, so a bad value of another one does not stop a client.
    pub fn client_address(env: &dyn Env) -> Result<SocketAddr, ConfigError> {
        let mut addr = Reader { env }.host()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(addr)
    }

    /// Each variable with the value in effect and whether it came from the environment.
    pub fn describe(&self, env: &dyn Env) -> Vec<Described> {
        let load_timeout = self.load_timeout.map_or("none".into(), format_duration);
        VARIABLES
            .iter()
            .map(|v| {
                let value = match v.name {
                    "OLLAMA_HOST" => self.host.to_string(),
                    "OLLAMA_MODELS" => self.models_dir.display().to_string(),
                    "OLLAMA_KEEP_ALIVE" => self.keep_alive.to_string(),
                    "OLLAMA_MAX_LOADED_MODELS" => self.max_loaded_models.to_string(),
                    "OLLAMA_NUM_PARALLEL" => self.num_parallel.to_string(),
                    "OLLAMA_MAX_QUEUE" => self.max_queue.to_string(),
                    "OLLAMA_CONTEXT_LENGTH" => self.context_length.to_string(),
                    "OLLAMA_FLASH_ATTENTION" => self.flash_attention.to_string(),
                    "OLLAMA_NUMERICS" => self.numerics.name().to_owned(),
                    "OLLAMA_KV_CACHE_TYPE" | "OLLAMA_KV_CACHE_TYPE_K" => {
                        self.kv_cache_type_k.name().into()
                    }
                    "OLLAMA_KV_CACHE_TYPE_V" => self.kv_cache_type_v.name().into(),
                    "OLLAMA_LOAD_TIMEOUT" => load_timeout.clone(),
                    "OLLAMA_GPU_OVERHEAD" => self.gpu_overhead.to_string(),
                    "OLLAMA_ORIGINS" => self.origins.join(","),
                    "OLLAMA_DEBUG" => format!("{:?}", self.log_level).to_lowercase(),
                    "OLLAMA_MULTIUSER_CACHE" => self.multiuser_cache.to_string(),
                    "OLLAMA_NOPRUNE" => self.noprune.to_string(),
                    "OLLAMA_SCHED_SPREAD" => self.sched_spread.to_string(),
                    "OLLAMA_RUNNER" => self
                        .runner
                        .as_ref()
                        .map_or("beside ollamad".into(), |p| p.display().to_string()),
                    "OLLAMA_KERNELS" => self.kernels.clone().unwrap_or_else(|| "auto".into()),
                    "OLLAMA_DEVICE" => self.device.clone().unwrap_or_else(|| "auto".into()),
                    "OLLAMA_CPU_FALLBACK" => self.cpu_fallback.to_string(),
                    "OLLAMA_GPU_INT_DOT" => {
                        self.gpu_int_dot.clone().unwrap_or_else(|| "false".into())
                    }
                    other => unreachable!("{other} is in the registry but not described"),
                };
                let set = env.var(v.name).is_some_and(|s| !s.trim().is_empty());
                Described {
                    name: v.name,
                    value,
                    source: if set { "environment" } else { "default" },
                }
            })
            .collect()
    }
}

/// How a runner's kernels add (the runner's `--numerics`, `OLLAMA_NUMERICS`): ollamad
/// names it without depending on the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Numerics {
    /// Any order of additions, judged by KL divergence against exact (the default).
    #[default]
    Fast,
    /// llama.cpp's reference order, bit for bit.
    Exact,
}

impl Numerics {
    /// The name the runner and the API use.
    pub fn name(self) -> &'static str {
        match self {
            Numerics::Fast => "fast",
            Numerics::Exact => "exact",
        }
    }

    /// `fast` or `exact`, in any case.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "fast" => Some(Numerics::Fast),
            "exact" => Some(Numerics::Exact),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
