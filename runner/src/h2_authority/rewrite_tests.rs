//! The rewriter on captured and built HTTP/2 bytes: the C-core request, splits at every
//! byte, CONTINUATION, padding and priority, limits, and malformed input.

use loona_hpack::Encoder;

use super::*;

/// What grpcio 1.85.3 (C-core 58) wrote on `unix:/tmp/cc/s.sock` for a unary call to
/// `/x.Y/Z`: preface, SETTINGS, WINDOW_UPDATE, SETTINGS ack, HEADERS (stream 1, with
/// `:authority: tmp%2Fcc%2Fs.sock`), WINDOW_UPDATE, DATA (end of stream), WINDOW_UPDATE.
const CORE_CAPTURE: &[&str] = &[
    "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000024040000000000000200000000000300000000000400",
    "400000000500400000000600004000fe0300000001000004080000000000003f00010000000401000000000000d60104",
    "0000000140053a70617468062f782e592f5a400a3a617574686f7269747911746d702532466363253246732e736f636b",
    "8386400c636f6e74656e742d74797065106170706c69636174696f6e2f677270634002746508747261696c6572734014",
    "677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c6174652c20677a6970400c6772",
    "70632d74696d656f7574023353400a757365722d6167656e7430677270632d707974686f6e2f312e38352e3320677270",
    "632d632f35382e302e3020286c696e75783b206368747470322900000408000000000100000005000005000100000001",
    "000000000000000408000000000000000005",
];

fn hex(parts: &[&str]) -> Vec<u8> {
    let text: String = parts.concat();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// One frame as the tests read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame_header(payload.len(), kind, flags, stream, &mut out);
    out.extend_from_slice(payload);
    out
}

/// Splits what the rewriter wrote (after the preface) into frames.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut rest = bytes
        .strip_prefix(CLIENT_PREFACE)
        .expect("the preface first");
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let head = FrameHead::parse(rest.first_chunk().unwrap());
        let payload = rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + head.length].to_vec();
        rest = &rest[FRAME_HEADER_LEN + head.length..];
        frames.push(Frame {
            kind: head.kind,
            flags: head.flags,
            stream: head.stream_raw,
            payload,
        });
    }
    frames
}

/// Reads back a block this layer wrote, refusing any representation but a literal
/// without indexing with a literal, non-Huffman name and value.
fn literal_fields(mut block: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let string = |block: &mut &[u8]| {
        let (&first, _) = block.split_first().unwrap();
        assert_eq!(first & 0x80, 0, "no Huffman");
        let mut len = usize::from(first & 0x7f);
        let mut used = 1;
        if len == 0x7f {
            let mut shift = 0;
            loop {
                let byte = block[used];
                used += 1;
                len += usize::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        let text = String::from_utf8(block[used..used + len].to_vec()).unwrap();
        *block = &block[used + len..];
        text
    };
    while !block.is_empty() {
        assert_eq!(block[0], 0x00, "literal without indexing, literal name");
        block = &block[1..];
        let name = string(&mut block);
        let value = string(&mut block);
        fields.push((name, value));
    }
    fields
}

fn feed_all(rewriter: &mut Rewriter, input: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::new();
    rewriter.feed(input, &mut out)?;
    Ok(out)
}

fn rewrite(input: &[u8]) -> Result<Vec<u8>, RewriteError> {
    feed_all(&mut Rewriter::new(), input)
}

/// The preface, then `frames` built from (kind, flags, stream, payload).
fn connection(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = CLIENT_PREFACE.to_vec();
    for (kind, flags, stream, payload) in frames {
        bytes.extend(frame_bytes(*kind, *flags, *stream, payload));
    }
    bytes
}

fn block_of(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    encoder.encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn headers_of(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[test]
fn the_c_core_authority_becomes_localhost_and_the_rest_passes_unchanged() {
    let input = hex(CORE_CAPTURE);
    let output = rewrite(&input).unwrap();
    let before = frames(&input);
    let after = frames(&output);
    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(&after) {
        if old.kind == TYPE_HEADERS {
            assert_eq!((new.flags, new.stream), (old.flags, old.stream));
            let fields = literal_fields(&new.payload);
            assert_eq!(
                headers_of(&fields),
                [
                    (":path", "/x.Y/Z"),
                    (":authority", "localhost"),
                    (":method", "POST"),
                    (":scheme", "http"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    ("grpc-accept-encoding", "identity, deflate, gzip"),
                    ("grpc-timeout", "3S"),
                    (
                        "user-agent",
                        "grpc-python/1.85.3 grpc-c/58.0.0 (linux; chttp2)"
                    ),
                ]
            );
        } else {
            assert_eq!(old, new);
        }
    }
}

#[test]
fn any_split_of_the_input_gives_the_same_output() {
    let input = hex(CORE_CAPTURE);
    let whole = rewrite(&input).unwrap();
    let mut rewriter = Rewriter::new();
    let mut out = Vec::new();
    for byte in &input {
        rewriter.feed(std::slice::from_ref(byte), &mut out).unwrap();
    }
    assert_eq!(out, whole);
    for cut in [1, 23, 24, 25, 33, 100, 0x5b + 9, 0x5b + 10, 300] {
        let mut rewriter = Rewriter::new();
        let mut out = Vec::new();
        rewriter.feed(&input[..cut], &mut out).unwrap();
        rewriter.feed(&input[cut..], &mut out).unwrap();
        assert_eq!(out, whole, "cut at {cut}");
    }
}

/// RFC 7541 C.4: Huffman-coded values and references to the dynamic table built by the
/// previous blocks, all with a valid authority that stays.
#[test]
fn dynamic_table_references_and_huffman_decode_across_blocks() {
    let input = connection(&[
        (
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            hex(&["828684418cf1e3c2e5f23a6ba0ab90f4ff"]),
        ),
        (
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            3,
            hex(&["828684be5886a8eb10649cbf"]),
        ),
        (
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            5,
            hex(&["828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]),
        ),
    ]);
    let output = frames(&rewrite(&input).unwrap());
    let blocks: Vec<_> = output.iter().map(|f| literal_fields(&f.payload)).collect();
    assert_eq!(
        headers_of(&blocks[1]),
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]
    );
    assert_eq!(
        headers_of(&blocks[2]),
        [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]
    );
}

#[test]
fn continuation_frames_are_joined_and_the_block_rewritten_once() {
    let block = block_of(&[(":method", "POST"), (":authority", "a%2Fb"), ("x", "y")]);
    let (a, rest) = block.split_at(3);
    let (b, c) = rest.split_at(5);
    let input = connection(&[
        (TYPE_HEADERS, FLAG_END_STREAM, 1, a.to_vec()),
        (TYPE_CONTINUATION, 0, 1, b.to_vec()),
        (TYPE_CONTINUATION, FLAG_END_HEADERS, 1, c.to_vec()),
        (0x0, 0, 1, b"data".to_vec()),
    ]);
    let output = frames(&rewrite(&input).unwrap());
    assert_eq!(output.len(), 2);
    assert_eq!(output[0].kind, TYPE_HEADERS);
    assert_eq!(output[0].flags, FLAG_END_STREAM | FLAG_END_HEADERS);
    assert_eq!(
        headers_of(&literal_fields(&output[0].payload)),
        [(":method", "POST"), (":authority", "localhost"), ("x", "y")]
    );
    assert_eq!(output[1].payload, b"data");
}

#[test]
fn padding_is_dropped_and_priority_kept() {
    let block = block_of(&[(":authority", "bad%")]);
    let mut payload = vec![3];
    payload.extend([0x80, 0, 0, 7, 200]);
    payload.extend(&block);
    payload.extend([0, 0, 0]);
    let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS;
    let output = frames(&rewrite(&connection(&[(TYPE_HEADERS, flags, 9, payload)])).unwrap());
    assert_eq!(output[0].flags, FLAG_PRIORITY | FLAG_END_HEADERS);
    assert_eq!(output[0].payload[..PRIORITY_LEN], [0x80, 0, 0, 7, 200]);
    assert_eq!(
        headers_of(&literal_fields(&output[0].payload[PRIORITY_LEN..])),
        [(":authority", "localhost")]
    );
}

#[test]
fn padding_as_long_as_the_payload_is_refused() {
    for payload in [vec![], vec![4, 1, 2, 3], vec![0x00, 1, 2]] {
        let flags = if payload.first() == Some(&0) {
            FLAG_PADDED | FLAG_PRIORITY
        } else {
            FLAG_PADDED
        };
        let result = rewrite(&connection(&[(
            TYPE_HEADERS,
            flags | FLAG_END_HEADERS,
            1,
            payload,
        )]));
        assert!(
            matches!(result, Err(RewriteError::BadPadding { stream: 1 })),
            "{result:?}"
        );
    }
}

#[test]
fn a_large_block_is_sent_in_frames_the_server_accepts() {
    let value = "v".repeat(40_000);
    let block = block_of(&[(":authority", "%"), ("big", &value)]);
    let output =
        frames(&rewrite(&connection(&[(TYPE_HEADERS, FLAG_END_HEADERS, 1, block)])).unwrap());
    assert_eq!(output.len(), 3);
    assert!(
        output
            .iter()
            .all(|f| f.payload.len() <= MAX_OUTPUT_FRAME_PAYLOAD)
    );
    assert_eq!(output[0].kind, TYPE_HEADERS);
    assert_eq!(output[0].flags, 0);
    assert_eq!((output[1].kind, output[1].flags), (TYPE_CONTINUATION, 0));
    assert_eq!(
        (output[2].kind, output[2].flags),
        (TYPE_CONTINUATION, FLAG_END_HEADERS)
    );
    let joined: Vec<u8> = output.iter().flat_map(|f| f.payload.clone()).collect();
    let fields = literal_fields(&joined);
    assert_eq!(
        headers_of(&fields),
        [(":authority", "localhost"), ("big", value.as_str())]
    );
}

#[test]
fn frames_out_of_order_around_a_block_are_refused() {
    let block = block_of(&[(":method", "GET")]);
    let interleaved = rewrite(&connection(&[
        (TYPE_HEADERS, 0, 1, block.clone()),
        (0x8, 0, 0, vec![0, 0, 0, 1]),
    ]));
    assert!(matches!(
        interleaved,
        Err(RewriteError::ExpectedContinuation {
            open: 1,
            kind: 0x8,
            got: 0
        })
    ));
    let other_stream = rewrite(&connection(&[
        (TYPE_HEADERS, 0, 1, block.clone()),
        (TYPE_CONTINUATION, FLAG_END_HEADERS, 3, vec![]),
    ]));
    assert!(matches!(
        other_stream,
        Err(RewriteError::ExpectedContinuation {
            open: 1,
            got: 3,
            ..
        })
    ));
    let orphan = rewrite(&connection(&[(
        TYPE_CONTINUATION,
        FLAG_END_HEADERS,
        1,
        block,
    )]));
    assert!(matches!(
        orphan,
        Err(RewriteError::UnexpectedContinuation { stream: 1 })
    ));
    let push = rewrite(&connection(&[(
        TYPE_PUSH_PROMISE,
        FLAG_END_HEADERS,
        1,
        vec![0; 8],
    )]));
    assert!(matches!(push, Err(RewriteError::PushPromiseFromClient)));
}

#[test]
fn a_wrong_preface_is_refused_at_its_first_wrong_byte() {
    assert!(matches!(
        rewrite(b"GET / HTTP/1.1\r\n"),
        Err(RewriteError::BadPreface)
    ));
    assert!(matches!(
        rewrite(b"PRI * HTTP/2.0\r\n\r\nXM"),
        Err(RewriteError::BadPreface)
    ));
    assert_eq!(rewrite(b"PRI * HTTP/2.0").unwrap(), b"");
}

#[test]
fn oversized_header_frames_are_refused_from_their_header_alone() {
    let mut input = CLIENT_PREFACE.to_vec();
    write_frame_header(0xff_ffff, TYPE_HEADERS, FLAG_END_HEADERS, 1, &mut input);
    let result = rewrite(&input);
    assert!(
        matches!(
            result,
            Err(RewriteError::HeaderBlockTooLarge { stream: 1, .. })
        ),
        "{result:?}"
    );
    // Many CONTINUATIONs adding up over the limit.
    let mut frames = vec![(TYPE_HEADERS, 0, 1, vec![0x40; 16_000])];
    frames.extend((0..5).map(|_| (TYPE_CONTINUATION, 0, 1, vec![0x40; 16_000])));
    let result = rewrite(&connection(&frames));
    assert!(
        matches!(
            result,
            Err(RewriteError::HeaderBlockTooLarge { stream: 1, .. })
        ),
        "{result:?}"
    );
}

#[test]
fn other_frames_stream_through_without_being_held() {
    let mut input = CLIENT_PREFACE.to_vec();
    write_frame_header(0xff_ffff, 0x0, 0, 1, &mut input);
    input.extend([7; 1000]);
    let mut rewriter = Rewriter::new();
    assert_eq!(feed_all(&mut rewriter, &input).unwrap(), input);
    assert_eq!(feed_all(&mut rewriter, &[8; 500]).unwrap(), [8; 500]);
    assert!(rewriter.pending.is_empty());
}

/// A 4000-byte table entry referenced by one byte at a time would decode to 100 MB.
#[test]
fn a_header_list_expanding_past_the_limit_is_refused() {
    let mut block = vec![0x40, 0x01, b'k'];
    let _ = encode_integer_into(4000, 7, 0, &mut block);
    block.extend([b'v'; 4000]);
    block.extend([0xbe; 25_000]);
    let result = rewrite(&connection(&[(TYPE_HEADERS, FLAG_END_HEADERS, 1, block)]));
    assert!(
        matches!(
            result,
            Err(RewriteError::HeaderListTooLarge { stream: 1, .. })
        ),
        "{result:?}"
    );
}

#[test]
fn table_size_updates_are_consumed_and_capped() {
    // Size update to 0, then :method GET (static index 2).
    let output = rewrite(&connection(&[(
        TYPE_HEADERS,
        FLAG_END_HEADERS,
        1,
        vec![0x20, 0x82],
    )]))
    .unwrap();
    assert_eq!(
        headers_of(&literal_fields(&frames(&output)[0].payload)),
        [(":method", "GET")]
    );
    let mut too_big = vec![];
    let _ = encode_integer_into(MAX_DYNAMIC_TABLE_BYTES + 1, 5, 0x20, &mut too_big);
    too_big.push(0x82);
    let result = rewrite(&connection(&[(TYPE_HEADERS, FLAG_END_HEADERS, 1, too_big)]));
    assert!(
        matches!(result, Err(RewriteError::Hpack { stream: 1, .. })),
        "{result:?}"
    );
}

#[test]
fn malformed_hpack_is_a_compression_error() {
    for block in [
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // integer too long
        vec![0xc0],                               // index past both tables
        vec![0x00, 0x05, b'a'],                   // name shorter than its length
        vec![0x00, 0x81, 0xff, 0x01, b'v'],       // Huffman name with EOS padding
        vec![0x40],                               // cut after the first byte
    ] {
        let result = rewrite(&connection(&[(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            block.clone(),
        )]));
        assert!(
            matches!(result, Err(RewriteError::Hpack { stream: 1, .. })),
            "{block:x?}: {result:?}"
        );
    }
}

/// Random bytes after the preface, and random header blocks in valid frames: an answer
/// every time, never a panic, and never more held than the limits allow.
#[test]
fn random_input_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2000 {
        let len = (next() % 600) as usize;
        let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let input = if round % 2 == 0 {
            let mut input = CLIENT_PREFACE.to_vec();
            input.extend(&noise);
            input
        } else {
            let flags = next() as u8;
            connection(&[(TYPE_HEADERS, flags | FLAG_END_HEADERS, 1, noise)])
        };
        let mut rewriter = Rewriter::new();
        let mut out = Vec::new();
        for piece in input.chunks(1 + (next() % 50) as usize) {
            if rewriter.feed(piece, &mut out).is_err() {
                break;
            }
        }
        assert!(rewriter.pending.len() <= MAX_HEADER_BLOCK_BYTES + FRAME_HEADER_LEN + 600);
    }
}
