//! Where a JSON object or list ends, found as the text arrives: brackets counted outside
//! strings, so a call's end is seen without parsing a value that is still incomplete.
//! Whether the text between is valid JSON is for `serde_json` to say once it is whole.

/// The state of a scan over one JSON object or list that starts with its bracket.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Brackets open at the point scanned to.
    depth: u32,
    /// Inside a string literal.
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
    /// Bytes scanned so far (of the value's text, from its opening bracket).
    scanned: usize,
}

impl Scan {
    /// Continues over `text`, the value's text from its opening bracket on (as much as has
    /// arrived; earlier calls saw a prefix of it). Returns the length of the value once its
    /// closing bracket is in `text`, else `None`.
    pub fn advance(&mut self, text: &str) -> Option<usize> {
        let bytes = text.as_bytes();
        while let Some(&byte) = bytes.get(self.scanned) {
            self.scanned += 1;
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(self.scanned);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Scan;

    fn end_of(text: &str) -> Option<usize> {
        Scan::default().advance(text)
    }

    #[test]
    fn the_end_is_the_bracket_that_closes_the_first() {
        assert_eq!(end_of(r#"{"a": {"b": [1, 2]}} tail"#), Some(20));
        assert_eq!(end_of(r#"[{"a": 1}, {"b": 2}];"#), Some(20));
        assert_eq!(end_of(r#"{"a": "}]{[", "b": "\"}"} x"#), Some(25));
        assert_eq!(end_of(r#"{"a": "\\"}"#), Some(11));
        assert_eq!(end_of(r#"{"a": {"b": 1}"#), None);
        assert_eq!(end_of(r#"{"a": "}"#), None);
    }

    #[test]
    fn text_fed_in_pieces_ends_at_the_same_place() {
        let text = r#"{"city": "Zürich \"}\\", "days": [1, {"x": 2}]} and more"#;
        let whole = end_of(text);
        assert!(whole.is_some());
        for cut in 0..=text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let mut scan = Scan::default();
            let first = scan.advance(&text[..cut]);
            assert_eq!(first.or_else(|| scan.advance(text)), whole, "cut at {cut}");
        }
    }
}
