//! CPU feature detection, once, returning capability tokens.
//!
//! [`Isa`] names the instruction set a kernel runs on. Its SIMD variants carry a token
//! (`Avx2Token`, `Avx512Token`) that only detection can construct, and the
//! `#[target_feature]` kernels in [`crate::arch`] take that token, so holding an `Isa` is
//! proof that its instructions exist on this CPU.
//!
//! # Forcing a lower path
//!
//! `OLLAMA_KERNELS=scalar|avx2|avx512` (read once, at the first [`Isa::detect`]) picks a
//! path no higher than the hardware allows, so a test suite on an AVX-512 machine can run
//! the AVX2 and scalar kernels too. Asking for a path the CPU lacks, or a name that is not
//! a path, is an error rather than a silent fallback. Reading this variable is the only
//! I/O in this crate.
//!
//! # Paths
//!
//! - `avx512`: AVX-512 F, BW, VL and VNNI, plus AVX2, FMA and F16C (Zen 4/5, Ice Lake and
//!   later). CPUs with AVX-512 but no VNNI (Skylake-X) take the AVX2 path.
//! - `avx2`: AVX2, FMA and F16C (Haswell, Zen 1 and later).
//! - `scalar`: portable Rust, any target.

use std::sync::OnceLock;

use thiserror::Error;

#[cfg(target_arch = "x86_64")]
pub use crate::arch::x86::{Avx2Token, Avx512Token};

/// The environment variable that forces a lower kernel path.
pub const KERNELS_ENV: &str = "OLLAMA_KERNELS";

/// The instruction set a kernel runs on, with the proof that the CPU has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2Token),
    /// AVX-512 F/BW/VL/VNNI, plus everything `Avx2` needs.
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512Token),
}

/// Why the requested kernel path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IsaError {
    /// The name is not `scalar`, `avx2` or `avx512`.
    #[error("{KERNELS_ENV}={0:?} is not a kernel path (expected scalar, avx2 or avx512)")]
    UnknownName(String),
    /// The CPU lacks the instructions of the requested path.
    #[error("{KERNELS_ENV}={requested} asks for instructions this CPU lacks (best here: {best})")]
    Unsupported {
        /// The path asked for.
        requested: &'static str,
        /// The best path this CPU has.
        best: &'static str,
    },
}

impl Isa {
    /// The path the kernels use: the best this CPU has, or the one `OLLAMA_KERNELS` forces.
    /// Detection and the environment read happen once per process.
    pub fn detect() -> Result<Isa, IsaError> {
        static DETECTED: OnceLock<Result<Isa, IsaError>> = OnceLock::new();
        DETECTED
            .get_or_init(|| {
                let requested = std::env::var(KERNELS_ENV).ok();
                Self::select(requested.as_deref())
            })
            .clone()
    }

    /// The path for a requested name (`None` or empty: the best available).
    pub fn select(requested: Option<&str>) -> Result<Isa, IsaError> {
        let best = Self::best();
        let Some(name) = requested.map(str::trim).filter(|n| !n.is_empty()) else {
            return Ok(best);
        };
        let wanted = match name.to_ascii_lowercase().as_str() {
            "scalar" => "scalar",
            "avx2" => "avx2",
            "avx512" => "avx512",
            _ => return Err(IsaError::UnknownName(name.to_owned())),
        };
        Self::available()
            .into_iter()
            .find(|isa| isa.name() == wanted)
            .ok_or(IsaError::Unsupported {
                requested: wanted,
                best: best.name(),
            })
    }

    /// The best path this CPU has, ignoring the environment.
    pub fn best() -> Isa {
        *Self::available().last().unwrap_or(&Isa::Scalar)
    }

    /// Every path this CPU can run, lowest first (always starts with `Scalar`). Tests run
    /// each kernel on each of these.
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut paths = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(t) = Avx2Token::new() {
                paths.push(Isa::Avx2(t));
            }
            if let Some(t) = Avx512Token::new() {
                paths.push(Isa::Avx512(t));
            }
        }
        paths
    }

    /// The name `OLLAMA_KERNELS` uses for this path.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => "avx512",
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The environment variable that picks the numerics: `exact` or `fast`.
pub const NUMERICS_ENV: &str = "OLLAMA_NUMERICS";

/// How the kernels may add: in llama.cpp's reference order, or in any order that pays.
///
/// *Exact* gives llama.cpp's reference kernels' bits (its `vec_dot`s, one block at a time,
/// in ggml's order), which is how the engine is proved correct: the token-exact tests run
/// on it. *Fast*, the default, lets a kernel add in another order (eight blocks folded
/// together, several accumulators) where that is faster; it is judged as llama.cpp judges
/// its own fast paths, by KL divergence against exact (`docs/PERFORMANCE.md`). Where no
/// fast kernel exists the exact one runs, so fast is never less accurate than it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Numerics {
    /// llama.cpp's reference order, bit for bit.
    Exact,
    /// Any order; the default.
    #[default]
    Fast,
}

/// A numerics name that is neither `exact` nor `fast`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{NUMERICS_ENV}={0:?} is not a numerics (expected exact or fast)")]
pub struct UnknownNumerics(pub String);

impl Numerics {
    /// The numerics `OLLAMA_NUMERICS` names (fast when unset or empty), read once per
    /// process.
    pub fn from_env() -> Result<Numerics, UnknownNumerics> {
        static CHOSEN: OnceLock<Result<Numerics, UnknownNumerics>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| {
                std::env::var(NUMERICS_ENV)
                    .ok()
                    .as_deref()
                    .map_or(Ok(Numerics::Fast), str::parse)
            })
            .clone()
    }

    /// The name `OLLAMA_NUMERICS` and the `numerics` option use.
    pub fn name(self) -> &'static str {
        match self {
            Numerics::Exact => "exact",
            Numerics::Fast => "fast",
        }
    }
}

impl std::str::FromStr for Numerics {
    type Err = UnknownNumerics;

    /// `exact` or `fast`, in any case; empty means the default (fast).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "fast" => Ok(Numerics::Fast),
            "exact" => Ok(Numerics::Exact),
            _ => Err(UnknownNumerics(s.to_owned())),
        }
    }
}

impl std::fmt::Display for Numerics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The number of threads a product should use by default.
///
/// This is `std::thread::available_parallelism`, which counts logical CPUs allowed to this
/// process (it honours affinity masks and cgroup quotas). On CPUs with SMT it counts both
/// siblings of a core; the matrix-vector product is bound by memory and gains nothing from
/// the second sibling, so callers that know the topology should pass their own count (the
/// runner takes `num_thread`). Reading `/proc/cpuinfo` would be I/O, which this crate
/// does not do.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_available_and_names_round_trip() {
        let all = Isa::available();
        assert_eq!(all[0], Isa::Scalar);
        for isa in &all {
            assert_eq!(Isa::select(Some(isa.name())), Ok(*isa));
        }
        assert_eq!(Isa::select(None), Ok(Isa::best()));
        assert_eq!(Isa::select(Some("  ")), Ok(Isa::best()));
        assert_eq!(Isa::select(Some("SCALAR")), Ok(Isa::Scalar));
    }

    #[test]
    fn numerics_parse_and_default_to_fast() {
        assert_eq!("exact".parse(), Ok(Numerics::Exact));
        assert_eq!(" FAST ".parse(), Ok(Numerics::Fast));
        assert_eq!("".parse(), Ok(Numerics::Fast));
        assert_eq!(Numerics::default(), Numerics::Fast);
        let err = "quick".parse::<Numerics>().unwrap_err();
        assert!(err.to_string().contains("expected exact or fast"), "{err}");
    }

    #[test]
    fn unknown_names_are_refused() {
        assert_eq!(
            Isa::select(Some("sse9")),
            Err(IsaError::UnknownName("sse9".into()))
        );
    }

    #[test]
    fn asking_for_more_than_the_cpu_has_is_an_error() {
        if Isa::best().name() != "avx512" {
            let err = Isa::select(Some("avx512")).unwrap_err();
            assert!(matches!(
                err,
                IsaError::Unsupported {
                    requested: "avx512",
                    ..
                }
            ));
        }
    }
}
