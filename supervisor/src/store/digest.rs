//! [`Digest`]: the SHA-256 that names a blob, `sha256:<64 hex>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use super::error::StoreError;

/// A SHA-256 content digest, held as 64 lowercase hex digits.
///
/// Parsed from `sha256:<hex>` or, as Ollama also accepts, `sha256-<hex>` (the blob file
/// name form); upper-case hex is accepted and stored lower-case. Displayed and
/// serialized as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 hex>` or `sha256-<64 hex>`.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidDigest {
            digest: s.to_owned(),
            reason: reason.to_owned(),
        };
        let hex = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("sha256-"))
            .ok_or_else(|| invalid("it does not start with \"sha256:\""))?;
        if hex.len() != 64 {
            return Err(invalid(&format!(
                "it has {} characters after \"sha256:\", not 64",
                hex.chars().count()
            )));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("it holds characters other than hex digits"));
        }
        Ok(Self {
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        Self {
            hex: to_hex(&hasher.finalize()),
        }
    }

    /// The 64 lowercase hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The blob's file name in `blobs/`: `sha256-<hex>`.
    pub fn file_name(&self) -> String {
        format!("sha256-{}", self.hex)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(Digest::of_bytes(b"").hex(), EMPTY);
        assert_eq!(Digest::of_bytes(b"").to_string(), format!("sha256:{EMPTY}"));
    }

    #[test]
    fn both_separators_and_upper_case_parse_to_the_same_digest() {
        let colon = Digest::parse(&format!("sha256:{EMPTY}")).unwrap();
        let dash = Digest::parse(&format!("sha256-{EMPTY}")).unwrap();
        let upper = Digest::parse(&format!("sha256:{}", EMPTY.to_uppercase())).unwrap();
        assert_eq!(colon, dash);
        assert_eq!(colon, upper);
        assert_eq!(colon.file_name(), format!("sha256-{EMPTY}"));
    }

    #[test]
    fn malformed_digests_are_refused_with_the_reason() {
        for (input, reason) in [
            (EMPTY.to_owned(), "does not start"),
            (format!("md5:{EMPTY}"), "does not start"),
            (format!("sha256:{}", &EMPTY[1..]), "63 characters"),
            (format!("sha256:{EMPTY}0"), "65 characters"),
            (format!("sha256:{}/..", &EMPTY[3..]), "other than hex"),
            (format!("sha256:{}g", &EMPTY[1..]), "other than hex"),
            ("sha256:".to_owned(), "0 characters"),
        ] {
            let err = Digest::parse(&input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
            assert!(err.contains(&input), "{input}: {err}");
        }
    }

    #[test]
    fn serde_round_trips_through_the_colon_form() {
        let d = Digest::of_bytes(b"abc");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:12\"").is_err());
    }
}
