//! Unit tests: metadata types, writer round trips, broken files.

mod broken;
mod metadata;
mod round_trip;

use ggml_type::GgmlType;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{GgufWriter, MetadataArray, MetadataValue};

/// Random bytes of the size `ty` needs for `dims`.
pub(crate) fn random_data(rng: &mut StdRng, dims: &[u64], ty: GgmlType) -> Vec<u8> {
    let (_, len) = crate::tensor::tensor_size(dims, ty).expect("valid test shape");
    let mut data = vec![0; len as usize];
    rng.fill(&mut data[..]);
    data
}

/// One value of each of the 13 types, arrays of each type, nested and empty arrays.
pub(crate) fn every_value_type() -> Vec<(&'static str, MetadataValue)> {
    vec![
        ("t.u8", MetadataValue::U8(200)),
        ("t.i8", MetadataValue::I8(-100)),
        ("t.u16", MetadataValue::U16(60_000)),
        ("t.i16", MetadataValue::I16(-30_000)),
        ("t.u32", MetadataValue::U32(4_000_000_000)),
        ("t.i32", MetadataValue::I32(-2_000_000_000)),
        ("t.f32", MetadataValue::F32(1.5e-6)),
        ("t.bool", MetadataValue::Bool(true)),
        ("t.string", MetadataValue::String("héllo ☃ 世界".into())),
        ("t.empty_string", MetadataValue::String(String::new())),
        ("t.u64", MetadataValue::U64(u64::MAX)),
        ("t.i64", MetadataValue::I64(i64::MIN)),
        ("t.f64", MetadataValue::F64(-1.234567890123456)),
        ("a.u8", vec![0u8, 1, 255].into()),
        ("a.i8", vec![-128i8, 0, 127].into()),
        ("a.u16", vec![0u16, 65535].into()),
        ("a.i16", vec![-32768i16, 32767].into()),
        ("a.u32", vec![1u32, 2, 3].into()),
        ("a.i32", vec![-1i32, 0, 1].into()),
        ("a.f32", vec![0.5f32, -0.25, 1e30].into()),
        ("a.bool", vec![true, false, true].into()),
        ("a.string", vec!["a", "", "ü b"].into()),
        ("a.u64", vec![u64::MAX, 0].into()),
        ("a.i64", vec![i64::MIN, i64::MAX].into()),
        ("a.f64", vec![f64::MIN_POSITIVE, 1e300].into()),
        ("a.empty", MetadataValue::Array(MetadataArray::U32(vec![]))),
        (
            "a.nested",
            MetadataValue::Array(MetadataArray::Array(vec![
                MetadataArray::I32(vec![1, 2]),
                MetadataArray::String(vec!["x".into()]),
                MetadataArray::Array(vec![
                    MetadataArray::F64(vec![0.125]),
                    MetadataArray::Bool(vec![]),
                    MetadataArray::Array(vec![]),
                ]),
                MetadataArray::U8(vec![]),
            ])),
        ),
    ]
}

/// A small model-like file: every value type, a few tensors of several types.
pub(crate) fn sample_writer(seed: u64) -> GgufWriter<'static> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut writer = GgufWriter::new();
    writer.set("general.architecture", "llama");
    for (key, value) in every_value_type() {
        writer.set(key, value);
    }
    let tensors: [(&str, &[u64], GgmlType); 6] = [
        ("token_embd.weight", &[64, 10], GgmlType::Q4_0),
        ("blk.0.attn_norm.weight", &[64], GgmlType::F32),
        ("blk.0.ffn_up.weight", &[256, 3], GgmlType::Q4_K),
        ("blk.0.ffn_down.weight", &[32, 2, 2], GgmlType::Q8_0),
        ("blk.0.attn_q.weight", &[5, 3], GgmlType::F16),
        ("output.weight", &[256, 1, 1, 2], GgmlType::IQ2_XXS),
    ];
    for (name, dims, ty) in tensors {
        let data = random_data(&mut rng, dims, ty);
        writer
            .add_tensor(name, dims, ty, data)
            .expect("valid test tensor");
    }
    writer
}
