//! Broken files: each gives an error that says what is wrong and where, never a panic.

use proptest::prelude::*;

use super::sample_writer;
use crate::{FormatError, GgufError, GgufFile, GgufHeader, GgufWriter};

/// A GGUF file built field by field.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, tensors: u64, pairs: u64) -> Self {
        let mut raw = Raw::default();
        raw.bytes(b"GGUF").u32(version).u64(tensors).u64(pairs);
        raw
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A tensor record.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_to(&mut self, alignment: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(alignment) {
            self.0.push(0);
        }
        self
    }
}

/// Parses, expecting a format error; returns (offset, kind, message).
fn format_error(bytes: &[u8]) -> (u64, FormatError, String) {
    match GgufHeader::parse(bytes) {
        Ok(_) => panic!("parsed a broken file"),
        Err(e @ GgufError::Format { .. }) => (
            e.offset().unwrap(),
            e.format_kind().unwrap().clone(),
            e.to_string(),
        ),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn a_string_of_2_pow_60_bytes_is_refused_before_allocating() {
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(1 << 60).bytes(&[b'x'; 1200]);
    let (offset, kind, message) = format_error(&raw.0);
    assert_eq!(offset, 24);
    assert_eq!(
        kind,
        FormatError::StringTooLong {
            len: 1 << 60,
            left: 1200
        }
    );
    assert_eq!(
        message,
        "invalid GGUF at offset 24: string length 1152921504606846976 exceeds the 1200 \
         bytes left in the file"
    );
}

#[test]
fn a_wrong_magic_is_refused_at_offset_0() {
    let mut bytes = sample_writer(1).to_bytes().unwrap();
    bytes[..4].copy_from_slice(b"GGML");
    let (offset, kind, message) = format_error(&bytes);
    assert_eq!(offset, 0);
    assert_eq!(
        kind,
        FormatError::BadMagic {
            found: b"GGML".to_vec()
        }
    );
    assert!(message.contains("not a GGUF file"), "{message}");
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let bytes = sample_writer(2).to_bytes().unwrap();
    let header = GgufHeader::parse(&bytes).unwrap();
    let data_end = header
        .tensors()
        .iter()
        .map(|t| t.absolute_offset() + t.byte_len())
        .max()
        .unwrap();
    for len in 0..data_end as usize {
        let err = GgufHeader::parse(&bytes[..len]).expect_err("truncated file parsed");
        let offset = err.offset().expect("format errors carry an offset");
        assert!(
            offset <= len as u64,
            "offset {offset} past the end of {len} bytes"
        );
    }
    let (offset, kind, _) = format_error(&bytes[..2]);
    assert_eq!(offset, 0);
    assert_eq!(
        kind,
        FormatError::Truncated {
            what: "magic",
            needed: 4,
            left: 2
        }
    );
}

#[test]
fn a_truncated_file_on_disk_names_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    let bytes = sample_writer(3).to_bytes().unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 200]).unwrap();
    let message = GgufFile::open(&path).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("(tensor '"), "{message}");
    assert!(
        message.contains("extends past the end of the file"),
        "{message}"
    );

    std::fs::write(&path, b"").unwrap();
    let message = GgufFile::open(&path).unwrap_err().to_string();
    assert!(
        message.contains("at offset 0: magic needs 4 bytes but only 0"),
        "{message}"
    );
    assert!(GgufFile::open(dir.path().join("absent.gguf")).is_err());
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    let (offset, kind, _) = format_error(&Raw::header(3, 1 << 62, 0).0);
    assert_eq!(offset, 8);
    assert!(matches!(
        kind,
        FormatError::CountTooLarge {
            what: "tensor count",
            ..
        }
    ));

    let (offset, kind, message) = format_error(&Raw::header(3, 0, u64::MAX).0);
    assert_eq!(offset, 16);
    assert!(matches!(
        kind,
        FormatError::CountTooLarge {
            count: u64::MAX,
            ..
        }
    ));
    assert!(
        message.contains("metadata pair count 18446744073709551615"),
        "{message}"
    );

    // An array of 2^60 u32 needs 2^62 bytes.
    let mut raw = Raw::header(3, 0, 1);
    raw.str("a").u32(9).u32(4).u64(1 << 60).bytes(&[0; 64]);
    let (offset, kind, message) = format_error(&raw.0);
    assert_eq!(offset, 24 + 9 + 4 + 4);
    assert_eq!(
        kind,
        FormatError::CountTooLarge {
            what: "array length",
            count: 1 << 60,
            per_item: 4,
            needed: 1 << 62,
            left: 64
        }
    );
    assert!(message.contains("(metadata key 'a')"), "{message}");

    // An array of 1000 strings with room for fewer than 1000 length fields.
    let mut raw = Raw::header(3, 0, 1);
    raw.str("s").u32(9).u32(8).u64(1000).bytes(&[0; 7999]);
    let (_, kind, _) = format_error(&raw.0);
    assert!(matches!(
        kind,
        FormatError::CountTooLarge {
            needed: 8000,
            left: 7999,
            ..
        }
    ));
}

#[test]
fn absurd_dims_are_refused() {
    let cases: [(&[u64], u32, &str); 6] = [
        (&[1, 1, 1, 1, 1], 0, "5 dimensions"),
        (
            &[1 << 63],
            0,
            "dimension 0 is 9223372036854775808, larger than i64::MAX",
        ),
        (&[1 << 40, 1 << 40], 0, "overflows i64"),
        (
            &[33],
            2,
            "first dimension 33 is not a multiple of the q4_0 block size 32",
        ),
        (&[1 << 62], 0, "size in bytes overflows"),
        (&[1 << 61, 2], 0, "size in bytes overflows"),
    ];
    for (dims, ty, expected) in cases {
        let mut raw = Raw::header(3, 1, 0);
        raw.tensor("t", dims, ty, 0).pad_to(32).bytes(&[0; 64]);
        let (offset, _, message) = format_error(&raw.0);
        assert_eq!(offset, 24 + 9, "dims start after the name: {message}");
        assert!(message.contains(expected), "{dims:?}: {message}");
        assert!(message.contains("(tensor 't')"), "{message}");
    }
}

#[test]
fn a_tensor_pointing_past_the_end_is_refused() {
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[8], 0, 32).pad_to(32).bytes(&[0; 40]);
    let offset_field = 24 + 9 + 4 + 8 + 4;
    let (offset, kind, message) = format_error(&raw.0);
    assert_eq!(offset, offset_field);
    let data_offset = 64;
    assert_eq!(
        kind,
        FormatError::TensorOutOfBounds {
            start: data_offset + 32,
            end: data_offset + 32 + 32,
            file_len: 104
        }
    );
    assert!(message.contains("tensor 'w'"), "{message}");

    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[8], 0, u64::MAX - 31).pad_to(32);
    let (_, kind, _) = format_error(&raw.0);
    assert!(matches!(
        kind,
        FormatError::TensorOutOfBounds { end: u64::MAX, .. }
    ));
}

#[test]
fn unknown_tensor_type_names_id_tensor_and_offset() {
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("blk.0.x", &[32], 4, 0)
        .pad_to(32)
        .bytes(&[0; 64]);
    let (offset, kind, message) = format_error(&raw.0);
    assert_eq!(offset, 24 + 15 + 4 + 8);
    assert_eq!(kind, FormatError::UnknownTensorType(4));
    assert_eq!(
        message,
        "invalid GGUF at offset 51 (tensor 'blk.0.x'): unknown GGML tensor type id 4"
    );
}

#[test]
fn misaligned_tensors_and_bad_alignments_are_refused() {
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[1], 0, 4).pad_to(32).bytes(&[0; 64]);
    let (_, kind, _) = format_error(&raw.0);
    assert_eq!(
        kind,
        FormatError::Misaligned {
            offset: 4,
            alignment: 32
        }
    );

    for (ty, value, shown) in [
        (4u32, 3u64.to_le_bytes()[..4].to_vec(), "3"),
        (4, 0u32.to_le_bytes().to_vec(), "0"),
        (10, (1u64 << 40).to_le_bytes().to_vec(), "1099511627776"),
        (6, 32f32.to_le_bytes().to_vec(), "(f32)"),
    ] {
        let mut raw = Raw::header(3, 0, 1);
        raw.str("general.alignment").u32(ty).bytes(&value);
        let (offset, kind, _) = format_error(&raw.0);
        assert_eq!(offset, 24 + 8 + 17 + 4, "points at the value");
        assert_eq!(kind, FormatError::BadAlignment(shown.into()));
    }
}

#[test]
fn bad_versions_value_types_and_values_are_refused() {
    let (offset, kind, _) = format_error(&Raw::header(1, 0, 0).0);
    assert_eq!((offset, kind), (4, FormatError::UnsupportedVersion(1)));
    let (_, kind, message) = format_error(&Raw::header(3u32.swap_bytes(), 0, 0).0);
    assert_eq!(kind, FormatError::BigEndian(3u32.swap_bytes()));
    assert!(message.contains("big-endian"), "{message}");
    assert!(
        GgufHeader::parse(&Raw::header(2, 0, 0).0).is_ok(),
        "version 2 reads"
    );

    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(13).u32(0);
    let (offset, kind, _) = format_error(&raw.0);
    assert_eq!((offset, kind), (33, FormatError::UnknownValueType(13)));

    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(7).bytes(&[2]);
    let (offset, kind, _) = format_error(&raw.0);
    assert_eq!((offset, kind), (37, FormatError::InvalidBool(2)));

    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(8).u64(2).bytes(&[0xc3, 0x28]);
    let (_, kind, _) = format_error(&raw.0);
    assert_eq!(kind, FormatError::InvalidUtf8 { len: 2 });

    let mut raw = Raw::header(3, 0, 2);
    raw.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    let (offset, kind, _) = format_error(&raw.0);
    assert_eq!((offset, kind), (41, FormatError::DuplicateKey("k".into())));

    let mut raw = Raw::header(3, 2, 0);
    raw.tensor("t", &[1], 0, 0)
        .tensor("t", &[1], 0, 32)
        .pad_to(32)
        .bytes(&[0; 64]);
    let (_, kind, _) = format_error(&raw.0);
    assert_eq!(kind, FormatError::DuplicateTensor);
}

#[test]
fn deeply_nested_arrays_are_refused_without_exhausting_the_stack() {
    let mut raw = Raw::header(3, 0, 1);
    raw.str("deep");
    raw.u32(9);
    for _ in 0..100_000 {
        raw.u32(9).u64(1);
    }
    raw.u32(4).u64(0);
    let (_, kind, message) = format_error(&raw.0);
    assert_eq!(kind, FormatError::NestingTooDeep(crate::MAX_ARRAY_NESTING));
    assert!(message.contains("(metadata key 'deep')"), "{message}");

    let mut writer = GgufWriter::new();
    let mut value = crate::MetadataArray::U8(vec![1]);
    for _ in 1..crate::MAX_ARRAY_NESTING {
        value = crate::MetadataArray::Array(vec![value]);
    }
    writer.set("ok", value);
    assert!(
        GgufHeader::parse(&writer.to_bytes().unwrap()).is_ok(),
        "the cap is allowed"
    );
}

#[test]
fn a_foreign_tensor_record_is_an_error_not_a_panic() {
    let big = GgufFile::from_bytes(sample_writer(4).to_bytes().unwrap()).unwrap();
    let mut small = GgufWriter::new();
    small
        .add_tensor("x", &[1], ggml_type::GgmlType::F32, vec![0; 4])
        .unwrap();
    let small = GgufFile::from_bytes(small.to_bytes().unwrap()).unwrap();
    let last = big.tensors().last().unwrap();
    assert!(matches!(
        small.tensor_data(last),
        Err(GgufError::ForeignTensor { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn corrupted_bytes_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = sample_writer(5).to_bytes().unwrap();
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(header) = GgufHeader::parse(&bytes) {
            for tensor in header.tensors() {
                prop_assert!(header.tensor_data(&bytes, tensor).is_ok());
            }
        }
    }
}
