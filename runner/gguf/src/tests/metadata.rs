//! Typed metadata accessors and the model-key helpers.

use crate::{GgufHeader, GgufWriter, Metadata, MetadataArray, MetadataError, MetadataValue};

fn metadata(pairs: Vec<(&str, MetadataValue)>) -> Metadata {
    let mut writer = GgufWriter::new();
    for (key, value) in pairs {
        writer.set(key, value);
    }
    let bytes = writer.to_bytes().unwrap();
    GgufHeader::parse(&bytes).unwrap().metadata().clone()
}

#[test]
fn integers_convert_between_widths_when_they_fit() {
    let m = metadata(vec![
        ("u8", MetadataValue::U8(7)),
        ("i32", MetadataValue::I32(40)),
        ("neg", MetadataValue::I64(-1)),
        ("big", MetadataValue::U64(1 << 40)),
    ]);
    assert_eq!(m.get_u32("u8"), Ok(7));
    assert_eq!(m.get_u64("i32"), Ok(40));
    assert_eq!(m.get_i64("neg"), Ok(-1));
    assert_eq!(m.get_u64("big"), Ok(1 << 40));
    assert_eq!(
        m.get_u32("neg"),
        Err(MetadataError::OutOfRange {
            key: "neg".into(),
            value: -1,
            expected: "u32"
        })
    );
    assert_eq!(
        m.get_u32("big").unwrap_err().to_string(),
        "metadata key 'big' is 1099511627776, which does not fit in u32"
    );
}

#[test]
fn errors_name_the_missing_or_mistyped_key() {
    let m = metadata(vec![
        ("name", "x".into()),
        ("list", vec![1u32, 2].into()),
        ("flag", true.into()),
    ]);
    assert_eq!(
        m.get_u32("absent").unwrap_err().to_string(),
        "metadata key 'absent' is missing"
    );
    assert_eq!(
        m.get_u32("name").unwrap_err().to_string(),
        "metadata key 'name' is string, expected u32"
    );
    assert_eq!(
        m.get_str_array("list").unwrap_err().to_string(),
        "metadata key 'list' is array of u32, expected array of string"
    );
    assert_eq!(m.get_u32_array("list"), Ok(&[1u32, 2][..]));
    assert_eq!(m.get_bool("flag"), Ok(true));
    assert!(m.get_f32("flag").is_err());
    assert_eq!(m.get_opt::<u32>("absent"), Ok(None));
    assert!(m.get_opt::<u32>("name").is_err(), "mistyped is not absent");
}

#[test]
fn floats_accept_either_width() {
    let m = metadata(vec![("a", 0.5f32.into()), ("b", 0.25f64.into())]);
    assert_eq!(m.get_f32("a"), Ok(0.5));
    assert_eq!(m.get_f32("b"), Ok(0.25));
    assert_eq!(m.get_f64("a"), Ok(0.5));
}

#[test]
fn arrays_are_borrowed_by_element_type() {
    let m = metadata(vec![
        ("s", vec!["a", "b"].into()),
        ("f", vec![1.0f32, 2.0].into()),
        ("i", vec![1i32, -1].into()),
        (
            "n",
            MetadataValue::Array(MetadataArray::Array(vec![MetadataArray::U8(vec![1])])),
        ),
    ]);
    assert_eq!(m.get_str_array("s").unwrap(), ["a", "b"]);
    assert_eq!(m.get_f32_array("f"), Ok(&[1.0f32, 2.0][..]));
    assert_eq!(m.get_i32_array("i"), Ok(&[1i32, -1][..]));
    let nested = m.get_as::<&[MetadataArray]>("n").unwrap();
    assert_eq!(nested, [MetadataArray::U8(vec![1])]);
    assert_eq!(m.get_array("s").unwrap().len(), 2);
}

#[test]
fn model_helpers_read_arch_keys_with_llama_cpp_defaults() {
    let m = metadata(vec![
        ("general.architecture", "gemma3".into()),
        ("gemma3.block_count", 18u32.into()),
        ("gemma3.context_length", 32768u32.into()),
        ("gemma3.embedding_length", 640u32.into()),
        ("gemma3.attention.head_count", 4u32.into()),
        ("gemma3.attention.key_length", 256u32.into()),
        ("gemma3.attention.sliding_window", 512u32.into()),
        ("tokenizer.ggml.model", "llama".into()),
        ("tokenizer.ggml.tokens", vec!["<pad>", "<eos>"].into()),
        ("tokenizer.ggml.scores", vec![0.0f32, -1.0].into()),
        ("tokenizer.ggml.token_type", vec![3i32, 3].into()),
        ("tokenizer.ggml.eos_token_id", 1u32.into()),
    ]);
    assert_eq!(m.architecture(), Ok("gemma3"));
    assert_eq!(m.arch_key("block_count").unwrap(), "gemma3.block_count");
    assert_eq!(m.block_count(), Ok(18));
    assert_eq!(m.context_length(), Ok(32768));
    assert_eq!(m.head_count(), Ok(4));
    assert_eq!(m.head_count_kv(), Ok(4), "defaults to head_count");
    assert_eq!(m.key_length(), Ok(256));
    assert_eq!(m.value_length(), Ok(160), "embedding_length / head_count");
    assert_eq!(m.sliding_window(), Ok(Some(512)));
    assert_eq!(m.rope_freq_base(), Ok(10_000.0));
    assert_eq!(m.rope_dimension_count(), Ok(None));
    assert_eq!(m.tokenizer_model(), Ok("llama"));
    assert_eq!(m.tokenizer_pre(), Ok(None));
    assert_eq!(m.tokens().unwrap().len(), 2);
    assert_eq!(m.token_scores(), Ok(Some(&[0.0f32, -1.0][..])));
    assert_eq!(m.token_types(), Ok(Some(&[3i32, 3][..])));
    assert_eq!(m.merges(), Ok(None));
    assert_eq!(m.bos_token_id(), Ok(None));
    assert_eq!(m.eos_token_id(), Ok(Some(1)));
    assert_eq!(m.chat_template(), Ok(None));
    assert_eq!(
        m.feed_forward_length().unwrap_err().to_string(),
        "metadata key 'gemma3.feed_forward_length' is missing"
    );
    assert_eq!(
        Metadata::new().block_count().unwrap_err().to_string(),
        "metadata key 'general.architecture' is missing"
    );
}

#[test]
fn insert_keeps_the_first_position() {
    let mut m = Metadata::new();
    m.insert("a", 1u32);
    m.insert("b", 2u32);
    assert_eq!(m.insert("a", 3u32), Some(MetadataValue::U32(1)));
    let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(m.get_u32("a"), Ok(3));
}

#[test]
fn file_type_names_follow_llama_cpp() {
    assert_eq!(crate::file_type_name(3), Some("Q4_1"));
    assert_eq!(crate::file_type_name(15), Some("Q4_K_M"));
    assert_eq!(crate::file_type_name(4), None, "retired");
}
