//! Options Ollama knows (or knew: clients still send them) that this server cannot
//! honour. Each is accepted; the caller learns whether the value given leaves behaviour
//! unchanged, so that a request that loses a setting it asked for is told.

use serde_json::Value;

use super::OptionsError;
use super::value::{self, Kind};

/// The values of an unsupported option that change nothing.
#[derive(Debug, Clone, Copy)]
pub(super) enum Neutral {
    /// Only this boolean.
    Bool(bool),
    /// Only this number.
    Number(f64),
    /// Any value of the option's kind: the option only tunes something that is off
    /// here (mirostat's parameters, the draft length of speculative decoding).
    Any,
}

/// One known but unsupported option.
#[derive(Debug)]
pub(super) struct Unsupported {
    /// Its Ollama name.
    pub name: &'static str,
    /// Its JSON type.
    pub kind: Kind,
    /// The values accepted.
    pub neutral: Neutral,
}

const fn entry(name: &'static str, kind: Kind, neutral: Neutral) -> Unsupported {
    Unsupported {
        name,
        kind,
        neutral,
    }
}

/// Every known option we cannot honour.
pub(super) const UNSUPPORTED: &[Unsupported] = &[
    entry("mirostat", Kind::Integer, Neutral::Number(0.0)),
    entry("mirostat_tau", Kind::Float, Neutral::Any),
    entry("mirostat_eta", Kind::Float, Neutral::Any),
    entry("tfs_z", Kind::Float, Neutral::Number(1.0)),
    entry("penalize_newline", Kind::Bool, Neutral::Bool(false)),
    entry("numa", Kind::Bool, Neutral::Bool(false)),
    entry("low_vram", Kind::Bool, Neutral::Bool(false)),
    // Ollama ignored it and kept an f16 cache, the default here too; kv_cache_type
    // chooses the cache type.
    entry("f16_kv", Kind::Bool, Neutral::Bool(true)),
    entry("logits_all", Kind::Bool, Neutral::Bool(false)),
    entry("vocab_only", Kind::Bool, Neutral::Bool(false)),
    entry("use_mlock", Kind::Bool, Neutral::Bool(false)),
    entry("embedding_only", Kind::Bool, Neutral::Bool(false)),
    entry("draft_num_predict", Kind::Integer, Neutral::Any),
];

/// The entry for `name`, if it is a known unsupported option.
pub(super) fn find(name: &str) -> Option<&'static Unsupported> {
    UNSUPPORTED.iter().find(|u| u.name == name)
}

impl Unsupported {
    /// Whether `value` changes nothing; an error when it is of the wrong type.
    pub(super) fn is_neutral(&self, value: &Value) -> Result<bool, OptionsError> {
        let name = self.name;
        let neutral = match self.neutral {
            Neutral::Bool(b) => value::boolean(name, value)? == b,
            Neutral::Number(n) => {
                let given = match self.kind {
                    Kind::Integer => value::integer(name, value, i64::MIN, i64::MAX, "")? as f64,
                    _ => f64::from(value::float(name, value, |_| true, "a finite number")?),
                };
                given == n
            }
            Neutral::Any => {
                match self.kind {
                    Kind::Integer => {
                        value::integer(name, value, i64::MIN, i64::MAX, "")?;
                    }
                    _ => {
                        value::float(name, value, |_| true, "a finite number")?;
                    }
                }
                true
            }
        };
        Ok(neutral)
    }
}
