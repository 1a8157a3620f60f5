//! Files written by `GgufWriter` read back identically.

use ggml_type::GgmlType;
use rand::{SeedableRng, rngs::StdRng};

use super::{every_value_type, random_data, sample_writer};
use crate::{GgufFile, GgufHeader, GgufWriter, MetadataValue, WriteError};

#[test]
fn every_metadata_type_reads_back_in_order() {
    let writer = sample_writer(1);
    let bytes = writer.to_bytes().unwrap();
    let header = GgufHeader::parse(&bytes).unwrap();
    assert_eq!(header.version(), 3);

    let expected = every_value_type();
    let read: Vec<(&str, &MetadataValue)> = header.metadata().iter().collect();
    assert_eq!(read.len(), expected.len() + 1);
    assert_eq!(
        read[0],
        ("general.architecture", &MetadataValue::from("llama"))
    );
    for ((key, value), (read_key, read_value)) in expected.iter().zip(&read[1..]) {
        assert_eq!(key, read_key);
        assert_eq!(value, *read_value, "value of {key}");
        assert_eq!(value.value_type(), read_value.value_type());
    }
}

#[test]
fn tensors_read_back_with_their_data() {
    let writer = sample_writer(2);
    let bytes = writer.to_bytes().unwrap();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let names = [
        "token_embd.weight",
        "blk.0.attn_norm.weight",
        "blk.0.ffn_up.weight",
        "blk.0.ffn_down.weight",
        "blk.0.attn_q.weight",
        "output.weight",
    ];
    assert_eq!(file.tensors().len(), names.len());
    for (tensor, name) in file.tensors().iter().zip(names) {
        assert_eq!(tensor.name(), name);
        let expected = random_data(&mut rng, tensor.dims(), tensor.ggml_type());
        assert_eq!(file.tensor_data(tensor).unwrap(), &expected[..], "{name}");
        assert_eq!(tensor.absolute_offset() % 32, 0);
        assert_eq!(tensor.byte_len(), expected.len() as u64);
    }
    let q4k = file.tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!(q4k.dims(), &[256, 3]);
    assert_eq!(q4k.ggml_type(), GgmlType::Q4_K);
    assert_eq!(q4k.n_elements(), 768);
    assert_eq!(q4k.byte_len(), 3 * 144);
    assert_eq!(
        file.parameter_count(),
        640 + 64 + 768 + 128 + 15 + 512,
        "sum of element counts"
    );
}

#[test]
fn rewriting_a_file_gives_the_same_bytes() {
    let bytes = sample_writer(3).to_bytes().unwrap();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    let again = GgufWriter::from_file(&file).unwrap().to_bytes().unwrap();
    assert_eq!(bytes, again);
}

#[test]
fn custom_alignment_is_honoured_and_recorded() {
    for alignment in [1u32, 8, 64, 4096] {
        let mut writer = sample_writer(4);
        writer.set_alignment(alignment).unwrap();
        let bytes = writer.to_bytes().unwrap();
        let header = GgufHeader::parse(&bytes).unwrap();
        assert_eq!(header.alignment(), alignment);
        assert_eq!(header.data_offset() % u64::from(alignment), 0);
        assert_eq!(
            header.metadata().get_u32("general.alignment"),
            Ok(alignment)
        );
        for tensor in header.tensors() {
            assert_eq!(tensor.absolute_offset() % u64::from(alignment), 0);
        }
        let file = GgufFile::from_bytes(bytes).unwrap();
        let original = sample_writer(4).to_bytes().unwrap();
        let original = GgufFile::from_bytes(original).unwrap();
        for (a, b) in file.tensors().iter().zip(original.tensors()) {
            assert_eq!(
                file.tensor_data(a).unwrap(),
                original.tensor_data(b).unwrap()
            );
        }
    }
}

#[test]
fn every_ggml_type_can_be_written_and_read() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut writer = GgufWriter::new();
    for ty in GgmlType::ALL {
        let dims = [ty.block_size() as u64 * 2, 3];
        let data = random_data(&mut rng, &dims, ty);
        writer.add_tensor(ty.name(), &dims, ty, data).unwrap();
    }
    let file = GgufFile::from_bytes(writer.to_bytes().unwrap()).unwrap();
    for (tensor, ty) in file.tensors().iter().zip(GgmlType::ALL) {
        assert_eq!(tensor.ggml_type(), ty);
        assert_eq!(tensor.byte_len(), 6 * ty.type_size() as u64);
    }
}

#[test]
fn an_empty_file_round_trips() {
    let bytes = GgufWriter::new().to_bytes().unwrap();
    assert_eq!(bytes.len(), 32, "24-byte header padded to 32");
    let header = GgufHeader::parse(&bytes).unwrap();
    assert!(header.metadata().is_empty());
    assert!(header.tensors().is_empty());
    // Without the padding (as some writers leave it) the file still parses.
    assert!(GgufHeader::parse(&bytes[..24]).is_ok());
}

#[test]
fn write_file_replaces_atomically_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"old contents").unwrap();

    let writer = sample_writer(6);
    writer.write_file(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.path(), Some(path.as_path()));
    assert_eq!(file.bytes(), &writer.to_bytes().unwrap()[..]);

    let mut broken = sample_writer(6);
    broken.set("general.alignment", 3u32);
    let err = broken.write_file(&path).unwrap_err();
    assert!(matches!(err, WriteError::BadAlignment(_)), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        writer.to_bytes().unwrap(),
        "a failed write leaves the old file"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["model.gguf"]);
}

#[test]
fn writer_refuses_inconsistent_tensors() {
    let mut writer = GgufWriter::new();
    let err = writer
        .add_tensor("short", &[32, 2], GgmlType::Q8_0, vec![0u8; 67])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor 'short': q8_0 data for dims [32, 2] is 68 bytes, got 67"
    );
    let err = writer
        .add_tensor("partial", &[33], GgmlType::Q4_0, vec![0u8; 18])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not a multiple of the q4_0 block size 32"),
        "{err}"
    );
    let err = writer
        .add_tensor("deep", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0u8; 4])
        .unwrap_err();
    assert!(err.to_string().contains("5 dimensions"), "{err}");
    writer
        .add_tensor("x", &[1], GgmlType::F32, vec![0u8; 4])
        .unwrap();
    let err = writer
        .add_tensor("x", &[1], GgmlType::F32, vec![0u8; 4])
        .unwrap_err();
    assert!(
        matches!(err, WriteError::DuplicateTensor(ref n) if n == "x"),
        "{err}"
    );
    assert!(writer.set_alignment(48).is_err());
    let long = "n".repeat(crate::MAX_NAME_LEN);
    let err = writer
        .add_tensor(&long, &[1], GgmlType::F32, vec![0u8; 4])
        .unwrap_err();
    assert!(matches!(err, WriteError::NameTooLong(_)), "{err}");
    writer.set("", 1u32);
    assert!(matches!(writer.to_bytes(), Err(WriteError::EmptyKey)));
    let mut writer = GgufWriter::new();
    writer.set("general.alignment", 64u64);
    assert!(
        matches!(writer.to_bytes(), Err(WriteError::BadAlignment(_))),
        "llama.cpp wants a u32"
    );
}
