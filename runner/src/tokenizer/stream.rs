//! Streaming detokenization that never splits a UTF-8 character across two pieces.
//!
//! A byte-level token can end in the middle of a character (an emoji is often three or
//! four tokens). The decoder holds such a tail back until the character completes, and
//! turns bytes that can never complete into U+FFFD rather than passing them on.

/// Turns token bytes into valid UTF-8 text pieces, one call per token.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// A decoder with nothing held back.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the bytes of one token; returns the text that is now complete (maybe empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // an incomplete character at the end: wait for more bytes
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: whatever is held back can no longer complete.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emoji_split_over_tokens_comes_out_whole() {
        let bytes = "a😀b".as_bytes();
        let mut s = Utf8Stream::new();
        let pieces: Vec<String> = bytes.chunks(1).map(|b| s.push(b)).collect();
        assert_eq!(pieces.concat(), "a😀b");
        assert_eq!(pieces[1..5], ["", "", "", "😀"]);
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(s.push(&[0xE2, 0x82]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
