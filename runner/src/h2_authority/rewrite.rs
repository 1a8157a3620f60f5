//! The sans-IO half: bytes a client sent in, the same HTTP/2 connection out, with every
//! header block decoded and written again without HPACK indexing, and an `:authority`
//! that `http::uri::Authority` refuses replaced by [`REPLACEMENT_AUTHORITY`].
//!
//! Why every block and not only the bad ones: the client's HPACK encoder keeps a dynamic
//! table that must stay identical to the decoder's. Once this layer decodes a block, the
//! server's decoder no longer sees that block's table insertions, so from then on every
//! block reaches it fully literal ("literal without indexing", RFC 7541 §6.2.2): its
//! table stays empty and nothing ever refers to it. Size updates are consumed here for
//! the same reason.
//!
//! Frames other than HEADERS and CONTINUATION pass through unchanged and unbuffered;
//! header frames are held until their block is complete (bounded by
//! [`MAX_HEADER_BLOCK_BYTES`]), and the rewritten block is sent as a HEADERS frame and
//! as many CONTINUATION frames as it needs of at most [`MAX_OUTPUT_FRAME_PAYLOAD`] bytes,
//! the frame size every HTTP/2 peer must accept.
//!
//! HPACK decoding is `loona-hpack`'s: the maintained fork of `hpack` that passes h2spec,
//! with typed errors where the original panicked on bad input, a cap on the table size
//! a client may ask for, and a callback that lends fields without copying (so an HPACK
//! bomb is counted, not materialised). `httlib-hpack` indexes past the end of a cut
//! integer (a panic), and h2's own decoder is public only under its semver-exempt
//! `unstable` feature. The re-encoding is a few lines here. A "never indexed" mark
//! (RFC 7541 §6.2.3) does not survive; it only tells intermediaries not to compress the
//! field, and the server behind this layer is the last hop.

use std::borrow::Cow;

use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use loona_hpack::encoder::encode_integer_into;

/// What a client writes first on an HTTP/2 connection with prior knowledge
/// (RFC 9113 §3.4); gRPC clients always start this way.
pub const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The `:authority` sent instead of one the server would refuse: what a C-core client
/// sends itself when told `grpc.default_authority = localhost`.
pub const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

/// The most bytes of one encoded header block (HEADERS plus CONTINUATIONs, padding and
/// priority excluded) held before the connection is refused. Four times hyper's default
/// `max_header_list_size` (16 KiB), so h2 still answers a block between the two limits
/// its usual way (431), and below the point where h2 itself would drop the connection.
pub const MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;

/// The most bytes of one decoded header list (RFC 7541 §4.1 accounting: name, value and
/// 32 per field). It bounds what a block of small references to large table entries
/// (an "HPACK bomb") can expand to; see [`MAX_HEADER_BLOCK_BYTES`] for the value.
pub const MAX_HEADER_LIST_BYTES: usize = 64 * 1024;

/// The largest HPACK dynamic table a client may ask for. The server advertises the
/// protocol's 4096 (hyper sets no `SETTINGS_HEADER_TABLE_SIZE`), so a conforming client
/// never asks for more; the larger cap only bounds memory should the server's setting
/// ever grow.
pub const MAX_DYNAMIC_TABLE_BYTES: usize = 64 * 1024;

/// The largest frame payload this layer writes: 16 KiB, the `SETTINGS_MAX_FRAME_SIZE`
/// every HTTP/2 endpoint must accept whatever it advertised.
pub const MAX_OUTPUT_FRAME_PAYLOAD: usize = 16 * 1024;

const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_PUSH_PROMISE: u8 = 0x5;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// Why a connection was refused. Each is a connection error in HTTP/2 terms: the layer
/// stops and the server sees the connection fail.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The connection did not start with the HTTP/2 client preface.
    #[error("the client did not send the HTTP/2 preface (not an HTTP/2 prior-knowledge client)")]
    BadPreface,
    /// A HEADERS or CONTINUATION frame, or their block, larger than the layer holds.
    #[error("a header block of more than {max} bytes (stream {stream})")]
    HeaderBlockTooLarge {
        /// The stream.
        stream: u32,
        /// [`MAX_HEADER_BLOCK_BYTES`].
        max: usize,
    },
    /// A header list that decodes to more than the layer holds.
    #[error("a header list of more than {max} bytes decoded (stream {stream})")]
    HeaderListTooLarge {
        /// The stream.
        stream: u32,
        /// [`MAX_HEADER_LIST_BYTES`].
        max: usize,
    },
    /// A header block left open and followed by another frame than its CONTINUATION.
    #[error(
        "frame type {kind:#x} on stream {got} while the header block of stream {open} \
         awaits CONTINUATION"
    )]
    ExpectedContinuation {
        /// The stream whose block is open.
        open: u32,
        /// The frame type received.
        kind: u8,
        /// Its stream.
        got: u32,
    },
    /// A CONTINUATION with no header block open.
    #[error("CONTINUATION on stream {stream} with no header block open")]
    UnexpectedContinuation {
        /// Its stream.
        stream: u32,
    },
    /// A client may not push (RFC 9113 §8.4).
    #[error("PUSH_PROMISE from a client")]
    PushPromiseFromClient,
    /// Padding or priority fields longer than the frame.
    #[error("a HEADERS frame on stream {stream} shorter than its padding and priority fields")]
    BadPadding {
        /// Its stream.
        stream: u32,
    },
    /// The header block is not valid HPACK (a compression error).
    #[error("cannot decode the header block of stream {stream}: {source}")]
    Hpack {
        /// Its stream.
        stream: u32,
        /// The decoder's reason.
        source: DecoderError,
    },
}

/// One connection's rewriting state: where in the frame stream the bytes so far end, the
/// client's HPACK dynamic table, and the header block being collected.
pub struct Rewriter {
    /// Received bytes not yet consumed (a partial preface, frame header or header frame).
    pending: Vec<u8>,
    state: State,
    decoder: Decoder<'static>,
    /// A HEADERS frame whose block awaits CONTINUATION frames.
    open_block: Option<OpenBlock>,
}

/// Where the next received byte belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside the client preface.
    Preface,
    /// At a frame's 9-byte header.
    FrameHeader,
    /// Inside a passed-through frame's payload, with this many bytes left.
    Forward(usize),
    /// Inside a HEADERS or CONTINUATION frame, held until whole.
    HeaderFrame(FrameHead),
}

/// A frame's 9-byte header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    length: usize,
    kind: u8,
    flags: u8,
    /// As received, reserved bit included.
    stream_raw: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Self {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        FrameHead {
            length: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
            kind,
            flags,
            stream_raw: u32::from_be_bytes([s0, s1, s2, s3]),
        }
    }

    fn stream(&self) -> u32 {
        self.stream_raw & STREAM_ID_MASK
    }
}

/// A decoded header field: name and value.
type Field = (Vec<u8>, Vec<u8>);

/// A header block being collected across HEADERS and CONTINUATION frames.
struct OpenBlock {
    stream_raw: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    /// A rewriter for a new connection, expecting the client preface.
    pub fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_DYNAMIC_TABLE_BYTES);
        Rewriter {
            pending: Vec::new(),
            state: State::Preface,
            decoder,
            open_block: None,
        }
    }

    /// Takes the next bytes the client sent, in any split, and appends what the server
    /// should read instead to `out`. After an error the connection must be closed: the
    /// rewriter's state no longer matches the client's.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.pending.extend_from_slice(input);
        let mut consumed = 0;
        let result = self.process(&mut consumed, out);
        self.pending.drain(..consumed);
        result
    }

    /// Consumes whole units of `pending` from `*consumed` on, until one is incomplete.
    fn process(&mut self, consumed: &mut usize, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        loop {
            let available = &self.pending[*consumed..];
            match self.state {
                State::Preface => {
                    let seen = available.len().min(CLIENT_PREFACE.len());
                    if available[..seen] != CLIENT_PREFACE[..seen] {
                        return Err(RewriteError::BadPreface);
                    }
                    if seen < CLIENT_PREFACE.len() {
                        return Ok(());
                    }
                    out.extend_from_slice(CLIENT_PREFACE);
                    *consumed += CLIENT_PREFACE.len();
                    self.state = State::FrameHeader;
                }
                State::FrameHeader => {
                    let Some(header) = available.first_chunk::<FRAME_HEADER_LEN>() else {
                        return Ok(());
                    };
                    let head = FrameHead::parse(header);
                    *consumed += FRAME_HEADER_LEN;
                    self.state = self.route(head)?;
                    if let State::Forward(_) = self.state {
                        out.extend_from_slice(header);
                    }
                }
                State::Forward(remaining) => {
                    if remaining == 0 {
                        self.state = State::FrameHeader;
                        continue;
                    }
                    if available.is_empty() {
                        return Ok(());
                    }
                    let take = remaining.min(available.len());
                    out.extend_from_slice(&available[..take]);
                    *consumed += take;
                    self.state = State::Forward(remaining - take);
                }
                State::HeaderFrame(head) => {
                    let Some(payload) = available.get(..head.length) else {
                        return Ok(());
                    };
                    let payload = payload.to_vec();
                    *consumed += head.length;
                    self.state = State::FrameHeader;
                    self.header_frame(head, &payload, out)?;
                }
            }
        }
    }

    /// Where a frame with this header goes, checking the order of header frames.
    fn route(&self, head: FrameHead) -> Result<State, RewriteError> {
        if let Some(open) = &self.open_block {
            let open_stream = open.stream_raw & STREAM_ID_MASK;
            if head.kind != TYPE_CONTINUATION || head.stream() != open_stream {
                return Err(RewriteError::ExpectedContinuation {
                    open: open_stream,
                    kind: head.kind,
                    got: head.stream(),
                });
            }
        }
        match head.kind {
            TYPE_HEADERS | TYPE_CONTINUATION => {
                if head.length > MAX_HEADER_BLOCK_BYTES {
                    return Err(RewriteError::HeaderBlockTooLarge {
                        stream: head.stream(),
                        max: MAX_HEADER_BLOCK_BYTES,
                    });
                }
                if head.kind == TYPE_CONTINUATION && self.open_block.is_none() {
                    return Err(RewriteError::UnexpectedContinuation {
                        stream: head.stream(),
                    });
                }
                Ok(State::HeaderFrame(head))
            }
            TYPE_PUSH_PROMISE => Err(RewriteError::PushPromiseFromClient),
            _ => Ok(State::Forward(head.length)),
        }
    }

    /// A whole HEADERS or CONTINUATION frame: adds its fragment to the open block and
    /// rewrites the block once it ends.
    fn header_frame(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let stream = head.stream();
        let mut block = match self.open_block.take() {
            Some(mut block) => {
                // A CONTINUATION (route checked it): no padding or priority fields.
                if block.fragment.len() + payload.len() > MAX_HEADER_BLOCK_BYTES {
                    return Err(RewriteError::HeaderBlockTooLarge {
                        stream,
                        max: MAX_HEADER_BLOCK_BYTES,
                    });
                }
                block.fragment.extend_from_slice(payload);
                block
            }
            None => headers_block(head, payload)?,
        };
        if head.flags & FLAG_END_HEADERS == 0 {
            self.open_block = Some(block);
            return Ok(());
        }
        let fields = self.decode(stream, &block.fragment)?;
        block.fragment.clear();
        let mut encoded =
            Vec::with_capacity(fields.iter().map(|(n, v)| n.len() + v.len() + 8).sum());
        for (name, value) in &fields {
            let value = match (name.as_slice(), value) {
                (b":authority", value) if !is_valid_authority(value) => {
                    tracing::debug!(
                        stream,
                        authority = %String::from_utf8_lossy(value),
                        "replacing an :authority h2 would refuse"
                    );
                    REPLACEMENT_AUTHORITY
                }
                _ => value.as_slice(),
            };
            encode_literal_without_indexing(name, value, &mut encoded);
        }
        write_block(&block, &encoded, out);
        Ok(())
    }

    /// Decodes a complete header block against the connection's dynamic table.
    fn decode(&mut self, stream: u32, block: &[u8]) -> Result<Vec<Field>, RewriteError> {
        let mut fields = Vec::new();
        let mut list_bytes = 0usize;
        self.decoder
            .decode_with_cb(block, |name: Cow<[u8]>, value: Cow<[u8]>| {
                // Counted even past the limit, but no longer copied: decoding must go on
                // to the end only to report the block's own errors first.
                list_bytes = list_bytes.saturating_add(name.len() + value.len() + 32);
                if list_bytes <= MAX_HEADER_LIST_BYTES {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|source| RewriteError::Hpack { stream, source })?;
        if list_bytes > MAX_HEADER_LIST_BYTES {
            return Err(RewriteError::HeaderListTooLarge {
                stream,
                max: MAX_HEADER_LIST_BYTES,
            });
        }
        Ok(fields)
    }
}

/// The block a HEADERS frame opens: its fragment without padding, its priority fields
/// kept to be sent again.
fn headers_block(head: FrameHead, payload: &[u8]) -> Result<OpenBlock, RewriteError> {
    let bad_padding = || RewriteError::BadPadding {
        stream: head.stream(),
    };
    let mut rest = payload;
    let mut padding = 0;
    if head.flags & FLAG_PADDED != 0 {
        let (&length, after) = rest.split_first().ok_or_else(bad_padding)?;
        padding = usize::from(length);
        rest = after;
    }
    let mut priority = None;
    if head.flags & FLAG_PRIORITY != 0 {
        let (fields, after) = rest
            .split_first_chunk::<PRIORITY_LEN>()
            .ok_or_else(bad_padding)?;
        priority = Some(*fields);
        rest = after;
    }
    // RFC 9113 §6.2: padding as long as the rest of the payload or longer is an error.
    let fragment_len = rest.len().checked_sub(padding).ok_or_else(bad_padding)?;
    Ok(OpenBlock {
        stream_raw: head.stream_raw,
        end_stream: head.flags & FLAG_END_STREAM != 0,
        priority,
        fragment: rest[..fragment_len].to_vec(),
    })
}

/// Whether h2's server would accept `value` as `:authority`: the same parse it makes.
fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// RFC 7541 §6.2.2 with a literal name: touches neither side's dynamic table.
fn encode_literal_without_indexing(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    for string in [name, value] {
        // Writing to a Vec cannot fail; the first byte's top bit (Huffman) stays clear.
        let _ = encode_integer_into(string.len(), 7, 0, out);
        out.extend_from_slice(string);
    }
}

/// Sends `encoded` as the block of `block`'s stream: one HEADERS frame, then
/// CONTINUATION frames, none with a payload over [`MAX_OUTPUT_FRAME_PAYLOAD`].
fn write_block(block: &OpenBlock, encoded: &[u8], out: &mut Vec<u8>) {
    let priority: &[u8] = block.priority.as_ref().map_or(&[], |p| p.as_slice());
    let first_len = encoded.len().min(MAX_OUTPUT_FRAME_PAYLOAD - priority.len());
    let (first, mut rest) = encoded.split_at(first_len);
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_header(
        priority.len() + first.len(),
        TYPE_HEADERS,
        flags,
        block.stream_raw,
        out,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_OUTPUT_FRAME_PAYLOAD));
        let flags = if after.is_empty() {
            FLAG_END_HEADERS
        } else {
            0
        };
        write_frame_header(chunk.len(), TYPE_CONTINUATION, flags, block.stream_raw, out);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

/// A 9-byte frame header; `length` is at most [`MAX_OUTPUT_FRAME_PAYLOAD`].
fn write_frame_header(length: usize, kind: u8, flags: u8, stream_raw: u32, out: &mut Vec<u8>) {
    let length = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&length[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_raw.to_be_bytes());
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
