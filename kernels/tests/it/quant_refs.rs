//! Our quantization against gguf-py's, on the reference files `scripts/make-quant-refs.py`
//! writes into `kernels/tests/data/` (the file format is documented in that script).
//!
//! Dequantization must be bit-exact, on real tensors of both test models and on random
//! blocks of the other types; quantization must be byte-identical for every type gguf-py
//! can quantize (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16).

use std::path::{Path, PathBuf};

use kernels::GgmlType;
use kernels::quant::{dequantize_row, quantize_row};

/// Every file the script writes that names a real model tensor or a type without a real
/// tensor: a missing one fails the test instead of silently testing less.
const REQUIRED: &[&str] = &[
    "dequant-Q4_1-smollm2",
    "dequant-Q8_0-smollm2",
    "dequant-F32-smollm2",
    "dequant-Q4_K-gemma3",
    "dequant-Q6_K-gemma3",
    "dequant-Q5_0-gemma3",
    "dequant-Q8_0-gemma3",
    "dequant-F32-gemma3",
    "dequant-Q4_0-random",
    "dequant-Q4_1-random",
    "dequant-Q5_0-random",
    "dequant-Q5_1-random",
    "dequant-Q8_0-random",
    "dequant-Q2_K-random",
    "dequant-Q3_K-random",
    "dequant-Q4_K-random",
    "dequant-Q5_K-random",
    "dequant-Q6_K-random",
    "dequant-IQ4_NL-random",
    "dequant-F16-random",
    "dequant-BF16-random",
    "quant-Q4_0-ties",
    "quant-Q4_1-ties",
    "quant-Q5_0-ties",
    "quant-Q5_1-ties",
    "quant-Q8_0-ties",
    "quant-F16-rounding",
    "quant-BF16-rounding",
];

/// One reference case.
struct Case {
    name: String,
    origin: String,
    ty: GgmlType,
    quantize: bool,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn u32_at(raw: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(raw[at..at + 4].try_into().unwrap())
}

fn read_case(path: &Path) -> Case {
    let raw = std::fs::read(path).unwrap();
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    assert_eq!(&raw[..4], b"QREF", "{name}: bad magic");
    assert_eq!(u32_at(&raw, 4), 1, "{name}: version");
    let ty = GgmlType::from_id(u32_at(&raw, 8)).unwrap();
    let kind = u32_at(&raw, 12);
    assert!(kind <= 1, "{name}: kind {kind}");
    let n_values = u32_at(&raw, 16) as usize;
    let n_bytes = u32_at(&raw, 20) as usize;
    let name_len = u32_at(&raw, 24) as usize;
    let mut at = 28;
    let origin = String::from_utf8(raw[at..at + name_len].to_vec()).unwrap();
    at += name_len;
    let bytes = raw[at..at + n_bytes].to_vec();
    at += n_bytes;
    let values: Vec<f32> = raw[at..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), n_values, "{name}: truncated");
    Case {
        name,
        origin,
        ty,
        quantize: kind == 1,
        bytes,
        values,
    }
}

fn all_cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("kernels/tests/data (run scripts/make-quant-refs.py)")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "qref"))
        .collect();
    paths.sort();
    let cases: Vec<Case> = paths.iter().map(|p| read_case(p)).collect();
    for required in REQUIRED {
        assert!(
            cases.iter().any(|c| c.name == *required),
            "reference {required} is missing"
        );
    }
    cases
}

/// Index and both bit patterns of the first difference, for a readable failure.
fn first_bit_difference(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
    got.iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
        .map(|i| (i, got[i], want[i]))
}

#[test]
fn dequantization_is_bit_exact_with_gguf_py() {
    let mut checked = 0;
    for case in all_cases().iter().filter(|c| !c.quantize) {
        let mut out = vec![f32::NAN; case.values.len()];
        dequantize_row(case.ty, &case.bytes, &mut out).unwrap();
        if let Some((i, got, want)) = first_bit_difference(&out, &case.values) {
            panic!(
                "{} ({}): value {i} is {got:e} ({:#010x}), gguf-py says {want:e} ({:#010x})",
                case.name,
                case.origin,
                got.to_bits(),
                want.to_bits()
            );
        }
        checked += 1;
    }
    assert!(checked >= 21, "only {checked} dequantization references");
}

#[test]
fn quantization_is_byte_identical_to_gguf_py() {
    let mut checked = 0;
    for case in all_cases().iter().filter(|c| c.quantize) {
        let mut out = vec![0xAAu8; case.bytes.len()];
        quantize_row(case.ty, &case.values, &mut out).unwrap();
        if let Some(i) = out.iter().zip(&case.bytes).position(|(a, b)| a != b) {
            let block = i / case.ty.type_size();
            let range = block * case.ty.type_size()..(block + 1) * case.ty.type_size();
            panic!(
                "{} ({}): byte {i} (block {block}) differs\n ours:   {:02x?}\n gguf-py: {:02x?}\n input: {:?}",
                case.name,
                case.origin,
                &out[range.clone()],
                &case.bytes[range],
                &case.values[block * case.ty.block_size()..(block + 1) * case.ty.block_size()]
            );
        }
        checked += 1;
    }
    assert!(checked >= 70, "only {checked} quantization references");
}

#[test]
fn real_tensors_dequantize_to_plausible_weights() {
    // Guards the references themselves: real weights are finite, not all zero, and not huge.
    for case in all_cases()
        .iter()
        .filter(|c| !c.quantize && !c.name.ends_with("random"))
    {
        assert!(
            case.values.iter().all(|v| v.is_finite() && v.abs() < 1e4),
            "{}",
            case.name
        );
        assert!(case.values.iter().any(|&v| v != 0.0), "{}", case.name);
    }
}
