//! [`ModelName`]: `[host/][namespace/]model[:tag]`, with Ollama's defaults and rules.
//!
//! Every part is checked against Ollama's character set (a part starts with a letter,
//! digit or `_`; `/` is never inside a part), so `.`, `..` and separators can never
//! appear as path components and a name cannot reach outside `manifests/`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::error::StoreError;

/// The registry host a name without one belongs to.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace a name without one belongs to.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag a name without one has.
pub const DEFAULT_TAG: &str = "latest";

/// A fully qualified, validated model name, every part lower-case (Ollama compares
/// names case-insensitively).
///
/// `Display` gives the short form users see: `smollm2:latest`, `me/smollm2:latest`, or
/// `host/ns/model:tag` when the host is not the default.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Host => "host",
            Part::Namespace => "namespace",
            Part::Model => "model",
            Part::Tag => "tag",
        }
    }

    fn max_len(self) -> usize {
        match self {
            Part::Host => 350,
            _ => 80,
        }
    }

    fn allows(self, c: char) -> bool {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => true,
            '.' => self != Part::Namespace,
            ':' => self == Part::Host,
            _ => false,
        }
    }
}

impl ModelName {
    /// Parses `[scheme://][host/][namespace/]model[:tag]`, filling in
    /// [`DEFAULT_HOST`], [`DEFAULT_NAMESPACE`] and [`DEFAULT_TAG`]. An `http://` or
    /// `https://` scheme is accepted and dropped, as it only matters for pulling.
    pub fn parse(name: &str) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        let mut rest = name.trim();
        if rest.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        // A ':' after the last '/' starts the tag; one before it is a host's port.
        let mut tag = DEFAULT_TAG;
        if let Some(colon) = rest.rfind(':')
            && rest.rfind('/').is_none_or(|slash| colon > slash)
        {
            tag = &rest[colon + 1..];
            rest = &rest[..colon];
        }
        let mut parts = rest.rsplitn(3, '/');
        let model = parts.next().unwrap_or_default();
        let namespace = parts.next().unwrap_or(DEFAULT_NAMESPACE);
        let host = match parts.next() {
            None => DEFAULT_HOST,
            Some(host) => match host.split_once("://") {
                Some(("http" | "https", host)) => host,
                Some((scheme, _)) => {
                    return Err(invalid(format!(
                        "the scheme \"{scheme}\" is not http or https"
                    )));
                }
                None => host,
            },
        };
        Self::from_parts(host, namespace, model, tag).map_err(invalid)
    }

    /// A name from its four parts, each checked as [`ModelName::parse`] checks it; the
    /// error says which part is wrong and why.
    fn from_parts(host: &str, namespace: &str, model: &str, tag: &str) -> Result<Self, String> {
        Ok(Self {
            host: check_part(Part::Host, host)?,
            namespace: check_part(Part::Namespace, namespace)?,
            model: check_part(Part::Model, model)?,
            tag: check_part(Part::Tag, tag)?,
        })
    }

    /// The name a manifest at `host/namespace/model/tag` under `manifests/` stands for,
    /// or why those directory names do not form one.
    pub(crate) fn from_path_parts(parts: [&str; 4]) -> Result<Self, String> {
        let [host, namespace, model, tag] = parts;
        Self::from_parts(host, namespace, model, tag)
    }

    /// The registry host, e.g. `registry.ollama.ai`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The namespace, e.g. `library`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The model, e.g. `smollm2`.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The tag, e.g. `latest`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The four parts, host first: the directories and file name under `manifests/`.
    pub(crate) fn path_parts(&self) -> [&str; 4] {
        [&self.host, &self.namespace, &self.model, &self.tag]
    }

    /// The manifest's path relative to the `manifests/` directory:
    /// `host/namespace/model/tag`.
    pub fn manifest_path(&self) -> PathBuf {
        self.path_parts().iter().collect()
    }

    /// The fully qualified form, `host/namespace/model:tag`.
    pub fn full(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }
}

fn check_part(part: Part, value: &str) -> Result<String, String> {
    let label = part.label();
    let shown = value.escape_debug();
    let Some(first) = value.chars().next() else {
        return Err(format!("the {label} is empty"));
    };
    if value.len() > part.max_len() {
        return Err(format!(
            "the {label} is {} bytes long, more than {}",
            value.len(),
            part.max_len()
        ));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!(
            "the {label} \"{shown}\" starts with '{}', not a letter, digit or '_'",
            first.escape_debug()
        ));
    }
    if let Some(bad) = value.chars().find(|&c| !part.allows(c)) {
        return Err(format!(
            "the {label} \"{shown}\" contains '{}', which is not allowed there",
            bad.escape_debug()
        ));
    }
    Ok(value.to_ascii_lowercase())
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host != DEFAULT_HOST {
            write!(f, "{}/{}/", self.host, self.namespace)?;
        } else if self.namespace != DEFAULT_NAMESPACE {
            write!(f, "{}/", self.namespace)?;
        }
        write!(f, "{}:{}", self.model, self.tag)
    }
}

impl FromStr for ModelName {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ModelName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_ollamas_defaults_and_short_display() {
        for (input, full, display) in [
            (
                "smollm2",
                "registry.ollama.ai/library/smollm2:latest",
                "smollm2:latest",
            ),
            (
                "smollm2:135m",
                "registry.ollama.ai/library/smollm2:135m",
                "smollm2:135m",
            ),
            (
                "SmolLM2:Q4_K_M",
                "registry.ollama.ai/library/smollm2:q4_k_m",
                "smollm2:q4_k_m",
            ),
            (
                "qwen2.5:7b-instruct",
                "registry.ollama.ai/library/qwen2.5:7b-instruct",
                "qwen2.5:7b-instruct",
            ),
            (
                "me/smollm2",
                "registry.ollama.ai/me/smollm2:latest",
                "me/smollm2:latest",
            ),
            (
                "library/smollm2:x",
                "registry.ollama.ai/library/smollm2:x",
                "smollm2:x",
            ),
            (
                "hf.co/bartowski/gemma-3:q4",
                "hf.co/bartowski/gemma-3:q4",
                "hf.co/bartowski/gemma-3:q4",
            ),
            (
                "localhost:5000/ns/m",
                "localhost:5000/ns/m:latest",
                "localhost:5000/ns/m:latest",
            ),
            (
                "localhost:5000/ns/m:v1",
                "localhost:5000/ns/m:v1",
                "localhost:5000/ns/m:v1",
            ),
            (
                "https://example.com/ns/m",
                "example.com/ns/m:latest",
                "example.com/ns/m:latest",
            ),
            (
                "  padded  ",
                "registry.ollama.ai/library/padded:latest",
                "padded:latest",
            ),
        ] {
            let name = ModelName::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(name.full(), full, "{input}");
            assert_eq!(name.to_string(), display, "{input}");
            assert_eq!(
                ModelName::parse(&name.to_string()).unwrap(),
                name,
                "{input}"
            );
        }
    }

    #[test]
    fn names_compare_case_insensitively() {
        assert_eq!(
            ModelName::parse("Me/SmolLM2:Latest").unwrap(),
            ModelName::parse("me/smollm2").unwrap()
        );
    }

    #[test]
    fn manifest_path_is_four_plain_components() {
        let name = ModelName::parse("localhost:5000/ns/m:v1").unwrap();
        assert_eq!(
            name.manifest_path(),
            PathBuf::from("localhost:5000/ns/m/v1")
        );
        assert_eq!(name.manifest_path().components().count(), 4);
    }

    #[test]
    fn traversal_and_malformed_names_are_refused_with_the_part_named() {
        for (input, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("..", "model \"..\" starts with '.'"),
            ("../../etc/passwd", "starts with '.'"),
            ("a/../b", "namespace \"..\" starts with '.'"),
            ("../a/b/c", "host \"../a\" starts with '.'"),
            ("model:..", "tag \"..\" starts with '.'"),
            ("model:../x", "namespace \"model:..\" contains ':'"),
            ("/etc/passwd", "host is empty"),
            ("a//b", "namespace is empty"),
            ("a/b/", "model is empty"),
            ("model:", "tag is empty"),
            (":tag", "model is empty"),
            ("a/b/c/d", "host \"a/b\" contains '/'"),
            ("ns.x/model", "namespace \"ns.x\" contains '.'"),
            ("mo del", "model \"mo del\" contains ' '"),
            ("model\\..\\x", "contains '\\\\'"),
            ("model:t:u", "model \"model:t\" contains ':'"),
            ("mödel", "contains 'ö'"),
            ("-model", "starts with '-'"),
            ("file:///etc/m", "scheme \"file\""),
            ("model\0", r"contains '\0'"),
        ] {
            let err = ModelName::parse(input)
                .map(|n| panic!("{input:?} parsed as {}", n.full()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
            assert!(
                err.contains(&format!("\"{}\"", input.escape_debug())),
                "{input:?}: {err}"
            );
        }
    }

    #[test]
    fn part_lengths_follow_ollama() {
        let m80 = "m".repeat(80);
        assert!(ModelName::parse(&m80).is_ok());
        let err = ModelName::parse(&"m".repeat(81)).unwrap_err().to_string();
        assert!(
            err.contains("model is 81 bytes long, more than 80"),
            "{err}"
        );
        let long_tag = format!("m:{}", "t".repeat(81));
        assert!(ModelName::parse(&long_tag).is_err());
        let host = format!("{}/ns/m", "h".repeat(350));
        assert!(ModelName::parse(&host).is_ok());
        let host = format!("{}/ns/m", "h".repeat(351));
        assert!(ModelName::parse(&host).is_err());
    }
}
