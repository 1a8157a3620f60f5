//! Ollama's `options`: the settings a request (`POST /api/generate` `options`) or a
//! model's stored parameters (Modelfile `PARAMETER`, `/api/create` `parameters`) give,
//! under Ollama's names.
//!
//! [`Options`] has every field optional: unset means "inherit". The API layers them with
//! [`Options::overlay`]: server defaults, then the model's parameters, then the request's.
//!
//! Names Ollama knows but this server cannot honour (`mirostat`, `penalize_newline`,
//! `use_mlock`, ...) are accepted, as Ollama's clients send them. At the value that
//! changes nothing they pass silently; at any other a warning is logged and the option
//! is listed in [`Options::ignored`], which the API reports in its final answer (see
//! `unsupported.rs`). A name nobody knows is logged and ignored in a request's `options`,
//! as Ollama does, and refused in a Modelfile's `PARAMETER`, as Ollama's parser does.

mod unsupported;
mod value;

#[cfg(test)]
mod tests;

use gguf::GgmlType;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::config::{KV_CACHE_TYPES, Numerics};
use value::Kind;

/// Why options could not be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OptionsError {
    /// The name is not an option (Ollama's wording), in a Modelfile `PARAMETER`.
    #[error("invalid option provided: {0}")]
    Unknown(String),
    /// The value has the wrong JSON type.
    #[error("option {name:?} must be {expected}, not {value}")]
    WrongType {
        /// The option.
        name: String,
        /// The value given, as JSON.
        value: String,
        /// The type it takes.
        expected: &'static str,
    },
    /// The value is of the right type but outside what the option accepts.
    #[error("option {name:?} is {value}, but it must be {accepted}")]
    OutOfRange {
        /// The option.
        name: String,
        /// The value given, as JSON.
        value: String,
        /// What it accepts.
        accepted: String,
    },
}

/// Ollama's options, each `None` when not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `num_ctx`: context length in tokens (at least 1).
    pub num_ctx: Option<u32>,
    /// `num_batch`: tokens per prompt-processing batch (at least 1).
    pub num_batch: Option<u32>,
    /// `num_thread`: compute threads; 0 lets the runner decide.
    pub num_thread: Option<u32>,
    /// `num_keep`: prompt tokens kept when the context shifts; -1 keeps them all.
    pub num_keep: Option<i32>,
    /// `use_mmap`: map the model file instead of reading it into memory.
    pub use_mmap: Option<bool>,
    /// `num_gpu`: layers to offload to GPUs (-1: decided from memory, 0: none). Runners
    /// offload all layers or none, so 0 runs the model on the CPU and any other count
    /// leaves the device to the runner (`OLLAMA_DEVICE`, else the best GPU present).
    pub num_gpu: Option<i32>,
    /// `main_gpu`: the GPU for small tensors and scratch. No effect without a GPU.
    pub main_gpu: Option<u32>,
    /// `num_parallel`: sequences the runner serves at once (ours; at least 1).
    pub num_parallel: Option<u32>,
    /// `flash_attention`: use the fused attention kernel (ours).
    pub flash_attention: Option<bool>,
    /// `kv_cache_type`: the K and V cache type unless one is set alone (ours).
    pub kv_cache_type: Option<GgmlType>,
    /// `kv_cache_type_k`: the K cache type (ours).
    pub kv_cache_type_k: Option<GgmlType>,
    /// `kv_cache_type_v`: the V cache type (ours).
    pub kv_cache_type_v: Option<GgmlType>,
    /// `numerics`: `fast` or `exact` kernels for this model's runner (ours; the default
    /// is `OLLAMA_NUMERICS`).
    pub numerics: Option<Numerics>,
    /// `num_predict`: most tokens to generate; negative means no limit.
    pub num_predict: Option<i32>,
    /// `temperature`: at least 0; 0 picks the most likely token.
    pub temperature: Option<f32>,
    /// `top_k`: keep the k most likely tokens; 0 or less turns it off.
    pub top_k: Option<i32>,
    /// `top_p`: nucleus sampling, in [0, 1]; 1 turns it off.
    pub top_p: Option<f32>,
    /// `min_p`: drop tokens below this fraction of the best one's probability, in [0, 1].
    pub min_p: Option<f32>,
    /// `typical_p`: locally typical sampling, in [0, 1]; 1 turns it off.
    pub typical_p: Option<f32>,
    /// `repeat_last_n`: tokens the penalties look back over; 0 off, -1 the whole context.
    pub repeat_last_n: Option<i32>,
    /// `repeat_penalty`: above 0; 1 turns it off.
    pub repeat_penalty: Option<f32>,
    /// `presence_penalty`: 0 turns it off.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty`: 0 turns it off.
    pub frequency_penalty: Option<f32>,
    /// `seed`: sampling seed; negative means a random one.
    pub seed: Option<i64>,
    /// `stop`: generation ends before any of these strings.
    pub stop: Option<Vec<String>>,
    /// Options Ollama knows that this server does not implement, set to a value that
    /// would have changed the output: accepted, not applied, and reported to the client.
    pub ignored: Vec<String>,
}

/// Every supported option's name and JSON type.
const SUPPORTED: &[(&str, Kind)] = &[
    ("num_ctx", Kind::Integer),
    ("num_batch", Kind::Integer),
    ("num_thread", Kind::Integer),
    ("num_keep", Kind::Integer),
    ("use_mmap", Kind::Bool),
    ("num_gpu", Kind::Integer),
    ("main_gpu", Kind::Integer),
    ("num_parallel", Kind::Integer),
    ("flash_attention", Kind::Bool),
    ("kv_cache_type", Kind::Str),
    ("kv_cache_type_k", Kind::Str),
    ("kv_cache_type_v", Kind::Str),
    ("numerics", Kind::Str),
    ("num_predict", Kind::Integer),
    ("temperature", Kind::Float),
    ("top_k", Kind::Integer),
    ("top_p", Kind::Float),
    ("min_p", Kind::Float),
    ("typical_p", Kind::Float),
    ("repeat_last_n", Kind::Integer),
    ("repeat_penalty", Kind::Float),
    ("presence_penalty", Kind::Float),
    ("frequency_penalty", Kind::Float),
    ("seed", Kind::Integer),
    ("stop", Kind::Strings),
];

impl Options {
    /// Reads Ollama's `options` object. A `null` value leaves the option unset, as in
    /// Ollama. Wrong types and out-of-range values are errors naming the option; unknown
    /// names are logged and skipped; unsupported options set to a value that would
    /// matter are logged and listed in [`Options::ignored`].
    pub fn from_map(map: &Map<String, Value>) -> Result<Options, OptionsError> {
        let mut options = Options::default();
        for (name, value) in map {
            if !value.is_null() {
                options.set(name, value)?;
            }
        }
        Ok(options)
    }

    /// Reads options written as text, one `(name, value)` pair per Modelfile `PARAMETER`
    /// line. `stop` may repeat and collects every value; for any other repeated name the
    /// first is used, as in Ollama.
    pub fn from_parameters<'a>(
        parameters: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Options, OptionsError> {
        let mut map = Map::new();
        for (name, text) in parameters {
            let kind = kind_of(name).ok_or_else(|| OptionsError::Unknown(name.to_owned()))?;
            let value = value::from_text(kind, text).ok_or_else(|| OptionsError::WrongType {
                name: name.to_owned(),
                value: value::shown(&Value::from(text)),
                expected: kind.expected(),
            })?;
            match (kind, map.get_mut(name)) {
                (Kind::Strings, Some(Value::Array(list))) => list.push(value),
                (Kind::Strings, None) => {
                    map.insert(name.to_owned(), Value::Array(vec![value]));
                }
                (_, Some(_)) => {}
                (_, None) => {
                    map.insert(name.to_owned(), value);
                }
            }
        }
        Options::from_map(&map)
    }

    fn set(&mut self, name: &str, v: &Value) -> Result<(), OptionsError> {
        use value::{boolean, float, int32, integer, strings, uint32};
        match name {
            "num_ctx" => self.num_ctx = Some(uint32(name, v, 1, "at least 1")?),
            "num_batch" => self.num_batch = Some(uint32(name, v, 1, "at least 1")?),
            "num_thread" => self.num_thread = Some(uint32(name, v, 0, "0 (auto) or more")?),
            "num_keep" => self.num_keep = Some(int32(name, v, -1, "-1 (all) or more")?),
            "use_mmap" => self.use_mmap = Some(boolean(name, v)?),
            "num_gpu" => self.num_gpu = Some(int32(name, v, -1, "-1 (auto) or more")?),
            "main_gpu" => self.main_gpu = Some(uint32(name, v, 0, "a GPU index, 0 or more")?),
            "num_parallel" => self.num_parallel = Some(uint32(name, v, 1, "at least 1")?),
            "flash_attention" => self.flash_attention = Some(boolean(name, v)?),
            "kv_cache_type" => self.kv_cache_type = Some(kv_type(name, v)?),
            "kv_cache_type_k" => self.kv_cache_type_k = Some(kv_type(name, v)?),
            "kv_cache_type_v" => self.kv_cache_type_v = Some(kv_type(name, v)?),
            "numerics" => self.numerics = Some(numerics(name, v)?),
            "num_predict" => self.num_predict = Some(int32(name, v, i32::MIN, I32)?),
            "temperature" => self.temperature = Some(float(name, v, |f| f >= 0.0, "0 or more")?),
            "top_k" => self.top_k = Some(int32(name, v, i32::MIN, I32)?),
            "top_p" => self.top_p = Some(float(name, v, unit, "between 0 and 1")?),
            "min_p" => self.min_p = Some(float(name, v, unit, "between 0 and 1")?),
            "typical_p" => self.typical_p = Some(float(name, v, unit, "between 0 and 1")?),
            "repeat_last_n" => {
                self.repeat_last_n = Some(int32(name, v, -1, "-1 (whole context) or more")?)
            }
            "repeat_penalty" => {
                self.repeat_penalty = Some(float(name, v, |f| f > 0.0, "above 0 (1 is off)")?)
            }
            "presence_penalty" => {
                self.presence_penalty = Some(float(name, v, |_| true, "a finite number")?)
            }
            "frequency_penalty" => {
                self.frequency_penalty = Some(float(name, v, |_| true, "a finite number")?)
            }
            "seed" => {
                self.seed = Some(integer(
                    name,
                    v,
                    i64::MIN,
                    i64::MAX,
                    "a whole number that fits in 64 bits",
                )?)
            }
            "stop" => self.stop = Some(strings(name, v)?),
            _ => match unsupported::find(name) {
                Some(option) => {
                    if !option.is_neutral(v)? {
                        tracing::warn!(
                            option = name,
                            value = %value::shown(v),
                            "this server does not implement the option; it is ignored"
                        );
                        self.ignored.push(name.to_owned());
                    }
                }
                None => tracing::warn!(option = name, "unknown option ignored"),
            },
        }
        Ok(())
    }

    /// These options with every option `over` sets replaced by `over`'s value.
    pub fn overlay(&self, over: &Options) -> Options {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        Options {
            num_ctx: pick(&self.num_ctx, &over.num_ctx),
            num_batch: pick(&self.num_batch, &over.num_batch),
            num_thread: pick(&self.num_thread, &over.num_thread),
            num_keep: pick(&self.num_keep, &over.num_keep),
            use_mmap: pick(&self.use_mmap, &over.use_mmap),
            num_gpu: pick(&self.num_gpu, &over.num_gpu),
            main_gpu: pick(&self.main_gpu, &over.main_gpu),
            num_parallel: pick(&self.num_parallel, &over.num_parallel),
            flash_attention: pick(&self.flash_attention, &over.flash_attention),
            kv_cache_type: pick(&self.kv_cache_type, &over.kv_cache_type),
            kv_cache_type_k: pick(&self.kv_cache_type_k, &over.kv_cache_type_k),
            kv_cache_type_v: pick(&self.kv_cache_type_v, &over.kv_cache_type_v),
            numerics: pick(&self.numerics, &over.numerics),
            num_predict: pick(&self.num_predict, &over.num_predict),
            temperature: pick(&self.temperature, &over.temperature),
            top_k: pick(&self.top_k, &over.top_k),
            top_p: pick(&self.top_p, &over.top_p),
            min_p: pick(&self.min_p, &over.min_p),
            typical_p: pick(&self.typical_p, &over.typical_p),
            repeat_last_n: pick(&self.repeat_last_n, &over.repeat_last_n),
            repeat_penalty: pick(&self.repeat_penalty, &over.repeat_penalty),
            presence_penalty: pick(&self.presence_penalty, &over.presence_penalty),
            frequency_penalty: pick(&self.frequency_penalty, &over.frequency_penalty),
            seed: pick(&self.seed, &over.seed),
            stop: pick(&self.stop, &over.stop),
            ignored: {
                let mut all = self.ignored.clone();
                all.extend(
                    over.ignored
                        .iter()
                        .filter(|n| !self.ignored.contains(n))
                        .cloned(),
                );
                all
            },
        }
    }

    /// The options that are set, under Ollama's names (what `/api/show` lists and what a
    /// model's parameters are stored as). [`Options::from_map`] reads it back unchanged.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(name.to_owned(), value);
            }
        };
        let kv = |t: Option<GgmlType>| t.map(|t| Value::from(t.name()));
        // Through the shortest decimal text, so 0.9f32 is stored as 0.9, not 0.8999999761.
        let float = |f: Option<f32>| f.map(|f| Value::from(f.to_string().parse().unwrap_or(0.0)));
        put("num_ctx", self.num_ctx.map(Value::from));
        put("num_batch", self.num_batch.map(Value::from));
        put("num_thread", self.num_thread.map(Value::from));
        put("num_keep", self.num_keep.map(Value::from));
        put("use_mmap", self.use_mmap.map(Value::from));
        put("num_gpu", self.num_gpu.map(Value::from));
        put("main_gpu", self.main_gpu.map(Value::from));
        put("num_parallel", self.num_parallel.map(Value::from));
        put("flash_attention", self.flash_attention.map(Value::from));
        put("kv_cache_type", kv(self.kv_cache_type));
        put("kv_cache_type_k", kv(self.kv_cache_type_k));
        put("kv_cache_type_v", kv(self.kv_cache_type_v));
        put("numerics", self.numerics.map(|n| Value::from(n.name())));
        put("num_predict", self.num_predict.map(Value::from));
        put("temperature", float(self.temperature));
        put("top_k", self.top_k.map(Value::from));
        put("top_p", float(self.top_p));
        put("min_p", float(self.min_p));
        put("typical_p", float(self.typical_p));
        put("repeat_last_n", self.repeat_last_n.map(Value::from));
        put("repeat_penalty", float(self.repeat_penalty));
        put("presence_penalty", float(self.presence_penalty));
        put("frequency_penalty", float(self.frequency_penalty));
        put("seed", self.seed.map(Value::from));
        put("stop", self.stop.clone().map(Value::from));
        map
    }

    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == Options::default()
    }
}

/// The JSON type of a known option, supported or not.
fn kind_of(name: &str) -> Option<Kind> {
    SUPPORTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, kind)| kind)
        .or_else(|| unsupported::find(name).map(|u| u.kind))
}

const I32: &str = "a whole number that fits in 32 bits";

fn unit(f: f32) -> bool {
    (0.0..=1.0).contains(&f)
}

/// A K/V cache type name the runner accepts.
fn numerics(name: &str, v: &Value) -> Result<Numerics, OptionsError> {
    Numerics::from_name(value::string(name, v)?).ok_or_else(|| OptionsError::OutOfRange {
        name: name.to_owned(),
        value: value::shown(v),
        accepted: "fast or exact".to_owned(),
    })
}

fn kv_type(name: &str, v: &Value) -> Result<GgmlType, OptionsError> {
    let text = value::string(name, v)?;
    GgmlType::from_name(text)
        .filter(|t| KV_CACHE_TYPES.contains(t))
        .ok_or_else(|| OptionsError::OutOfRange {
            name: name.to_owned(),
            value: value::shown(v),
            accepted: format!("one of {}", KV_CACHE_TYPES.map(GgmlType::name).join(", ")),
        })
}
