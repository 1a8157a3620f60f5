//! Fuzz target: any bytes either parse as a GGUF header or give an error; never a panic,
//! an out-of-bounds read or an allocation sized by the input before it is checked.
//! When they parse, every tensor's data is reachable and the metadata accessors work,
//! and a file the writer accepts reads back with the same counts and writes back the
//! same bytes.

#![no_main]

use gguf::{GgufFile, GgufHeader, GgufWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = GgufHeader::parse(data) else {
        return;
    };
    for tensor in header.tensors() {
        let bytes = header.tensor_data(data, tensor).expect("validated tensor");
        assert_eq!(bytes.len() as u64, tensor.byte_len());
    }
    let metadata = header.metadata();
    let _ = metadata.block_count();
    let _ = metadata.head_count_kv();
    let _ = metadata.key_length();
    let _ = metadata.tokens();
    let _ = metadata.chat_template();

    // The writer refuses what llama.cpp refuses (empty keys, long tensor names, an
    // alignment that is not a u32); what it accepts must read back and write back the same.
    let file = GgufFile::from_bytes(data.to_vec()).expect("parsed once already");
    let Ok(written) = GgufWriter::from_file(&file).and_then(|w| w.to_bytes()) else {
        return;
    };
    let reread = GgufFile::from_bytes(written.clone()).expect("our output parses");
    assert_eq!(reread.metadata().len(), header.metadata().len());
    assert_eq!(reread.tensors().len(), header.tensors().len());
    let rewritten = GgufWriter::from_file(&reread)
        .and_then(|w| w.to_bytes())
        .expect("what we wrote can be written again");
    assert_eq!(written, rewritten, "write -> read -> write is stable");
});
