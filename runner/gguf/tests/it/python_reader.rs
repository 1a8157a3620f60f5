//! Files written by `GgufWriter` are read by the `gguf` PyPI package (llama.cpp's Python
//! reader) exactly as our reader reads them: same metadata in the same order with the
//! same types and values, same tensors, shapes, types, offsets and bytes, and both
//! read what was written.

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf::{GgmlType, GgufFile, GgufWriter, MetadataArray, MetadataValue};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-gguf.py")
}

/// Runs `scripts/check-gguf.py --data FILE`; fails the test when Python or the `gguf`
/// package is missing.
fn python_view(path: &Path) -> Value {
    let output = Command::new("python3")
        .arg(script())
        .arg("--data")
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3, then pip install -r scripts/requirements.txt")
        });
    assert!(
        output.status.success(),
        "scripts/check-gguf.py failed on {} (pip install -r scripts/requirements.txt \
         installs the reader it needs):\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("check-gguf.py prints JSON")
}

fn random_bytes(rng: &mut StdRng, n: u64) -> Vec<u8> {
    let mut data = vec![0; n as usize];
    rng.fill(&mut data[..]);
    data
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares one value as Python decoded it with ours; floats by their own width.
fn assert_same_value(key: &str, ours: &MetadataValue, theirs: &Value) {
    let same = match ours {
        MetadataValue::F32(v) => theirs.as_f64().map(|t| t as f32) == Some(*v),
        MetadataValue::F64(v) => theirs.as_f64() == Some(*v),
        MetadataValue::Array(array) => {
            assert_same_array(key, array, theirs);
            true
        }
        MetadataValue::U64(v) => theirs.as_u64() == Some(*v),
        MetadataValue::Bool(v) => theirs.as_bool() == Some(*v),
        MetadataValue::String(v) => theirs.as_str() == Some(v.as_str()),
        other => theirs.as_i64().map(i128::from) == other.as_integer(),
    };
    assert!(same, "{key}: ours {ours:?}, Python's {theirs}");
}

fn assert_same_array(key: &str, ours: &MetadataArray, theirs: &Value) {
    if let MetadataArray::Array(_) = ours {
        assert_eq!(
            theirs,
            &Value::Null,
            "{key}: the package does not decode nested arrays"
        );
        return;
    }
    let theirs = theirs
        .as_array()
        .unwrap_or_else(|| panic!("{key}: {theirs} is not a list"));
    assert_eq!(ours.len(), theirs.len(), "{key}: length");
    let as_values: Vec<MetadataValue> = match ours {
        MetadataArray::U8(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::I8(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::U16(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::I16(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::U32(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::I32(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::F32(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::Bool(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::String(v) => v.iter().map(|x| x.as_str().into()).collect(),
        MetadataArray::U64(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::I64(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::F64(v) => v.iter().map(|&x| x.into()).collect(),
        MetadataArray::Array(_) => unreachable!("handled above"),
    };
    for (i, (ours, theirs)) in as_values.iter().zip(theirs).enumerate() {
        assert_same_value(&format!("{key}[{i}]"), ours, theirs);
    }
}

/// Writes `writer` to `path` and checks that Python reads back exactly what was written,
/// and that our reader agrees with Python on the layout.
fn assert_python_reads_back(writer: &GgufWriter<'_>, path: &Path) {
    writer.write_file(path).unwrap();
    let ours = GgufFile::open(path).unwrap();
    let theirs = python_view(path);
    assert_eq!(theirs["version"], 3);
    assert_eq!(theirs["alignment"], u64::from(ours.alignment()));
    if !ours.tensors().is_empty() {
        assert_eq!(theirs["data_offset"], ours.data_offset());
    }

    let their_metadata = theirs["metadata"].as_array().unwrap();
    assert_eq!(
        their_metadata.len(),
        writer.metadata().len(),
        "metadata pair count"
    );
    for ((key, value), theirs) in writer.metadata().iter().zip(their_metadata) {
        assert_eq!(theirs["key"], key, "keys in file order");
        assert_eq!(theirs["type"], value.value_type().id(), "{key}: type");
        if let MetadataValue::Array(array) = value {
            assert_eq!(
                theirs["element_type"],
                array.element_type().id(),
                "{key}: element type"
            );
        }
        assert_same_value(key, value, &theirs["value"]);
    }
    assert_eq!(
        ours.metadata(),
        writer.metadata(),
        "our reader reads what was written"
    );

    let their_tensors = theirs["tensors"].as_array().unwrap();
    assert_eq!(their_tensors.len(), writer.tensors().len(), "tensor count");
    let expected = writer.tensors().zip(ours.tensors());
    for (((name, dims, ty, data), read), theirs) in expected.zip(their_tensors) {
        assert_eq!(theirs["name"], name);
        assert_eq!(theirs["type_id"], ty.id(), "{name}: type");
        assert_eq!(
            theirs["type"].as_str().unwrap().to_lowercase(),
            ty.name().to_lowercase(),
            "{name}: type name"
        );
        assert_eq!(theirs["shape"], serde_json::json!(dims), "{name}: shape");
        assert_eq!(theirs["n_bytes"], data.len(), "{name}: bytes");
        assert_eq!(theirs["data"].as_str().unwrap(), hex(data), "{name}: data");
        assert_eq!(theirs["n_elements"], read.n_elements(), "{name}: elements");
        assert_eq!(theirs["offset"], read.absolute_offset(), "{name}: offset");
        assert_eq!(ours.tensor_data(read).unwrap(), data, "{name}: our data");
    }
}

fn every_metadata_type(writer: &mut GgufWriter<'_>) {
    writer
        .set("general.architecture", "llama")
        .set("t.u8", 200u8)
        .set("t.i8", -100i8)
        .set("t.u16", 60_000u16)
        .set("t.i16", -30_000i16)
        .set("t.u32", 4_000_000_000u32)
        .set("t.i32", -2_000_000_000i32)
        .set("t.f32", 1.5e-6f32)
        .set("t.bool", false)
        .set("t.string", "héllo ☃ 世界")
        .set("t.u64", u64::MAX)
        .set("t.i64", i64::MIN)
        .set("t.f64", -1.234567890123456f64)
        .set("a.u8", vec![0u8, 255])
        .set("a.i8", vec![-128i8, 127])
        .set("a.u16", vec![0u16, 65_535])
        .set("a.i16", vec![-32_768i16, 32_767])
        .set("a.u32", vec![1u32, 2, 3])
        .set("a.i32", vec![-1i32, 0, 1])
        .set("a.f32", vec![0.1f32, -0.25, 1e30])
        .set("a.bool", vec![true, false])
        .set("a.string", vec!["a", "", "ü b"])
        .set("a.u64", vec![u64::MAX, 0])
        .set("a.i64", vec![i64::MIN, i64::MAX])
        .set("a.f64", vec![0.1f64, 1e300])
        .set(
            "a.nested",
            MetadataValue::Array(MetadataArray::Array(vec![
                MetadataArray::I32(vec![1, 2]),
                MetadataArray::Array(vec![MetadataArray::String(vec!["x".into()])]),
            ])),
        );
}

#[test]
fn python_reads_every_metadata_type_and_tensor_type_as_we_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut writer = GgufWriter::new();
    every_metadata_type(&mut writer);
    let shapes: [&[u64]; 3] = [&[2], &[2, 3], &[1, 2, 1, 2]];
    for (i, ty) in GgmlType::ALL.into_iter().enumerate() {
        // The package's table gives Q8_1 the 40-byte block of an old ggml (today's
        // ggml-common.h asserts 36), so it misreads Q8_1 tensors; Q8_1 is an
        // activation type that model files do not hold.
        if ty == GgmlType::Q8_1 {
            continue;
        }
        let mut dims = shapes[i % shapes.len()].to_vec();
        dims[0] *= ty.block_size() as u64;
        let bytes = ty.row_bytes(dims[0]).unwrap() * dims[1..].iter().product::<u64>();
        let data = random_bytes(&mut rng, bytes);
        writer
            .add_tensor(&format!("t.{}", ty.name()), &dims, ty, data)
            .unwrap();
    }
    assert_python_reads_back(&writer, &dir.path().join("all.gguf"));
}

#[test]
fn python_reads_custom_alignment_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let mut writer = GgufWriter::new();
    writer.set_alignment(64).unwrap();
    writer.set("general.name", "aligned");
    for (name, ty) in [
        ("a", GgmlType::Q4_K),
        ("b", GgmlType::F32),
        ("c", GgmlType::Q6_K),
    ] {
        let n = ty.block_size() as u64;
        let data = random_bytes(&mut rng, ty.row_bytes(n).unwrap());
        writer.add_tensor(name, &[n], ty, data).unwrap();
    }
    assert_python_reads_back(&writer, &dir.path().join("aligned.gguf"));
    assert_python_reads_back(&GgufWriter::new(), &dir.path().join("empty.gguf"));
}
