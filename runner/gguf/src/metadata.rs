//! The key/value metadata of a file, in file order, with typed accessors.

use std::collections::HashMap;

use crate::error::MetadataError;
use crate::value::{MetadataArray, MetadataValue};

/// The metadata of a GGUF file: key/value pairs in file order, with lookup by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty set of metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`. A new key goes at the end; an existing key keeps its place
    /// and gets the new value, which is returned.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Option<MetadataValue> {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
                None
            }
        }
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The pairs in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// The value of `key` as `T`; an error names the key when it is missing or holds
    /// another type. Integers convert between widths when the value fits.
    pub fn get_as<'a, T: FromMetadata<'a>>(&'a self, key: &str) -> Result<T, MetadataError> {
        match self.get(key) {
            Some(value) => T::from_metadata(key, value),
            None => Err(MetadataError::Missing(key.to_owned())),
        }
    }

    /// Like [`Metadata::get_as`], but a missing key is `Ok(None)`; a mistyped one is
    /// still an error.
    pub fn get_opt<'a, T: FromMetadata<'a>>(
        &'a self,
        key: &str,
    ) -> Result<Option<T>, MetadataError> {
        self.get(key)
            .map(|value| T::from_metadata(key, value))
            .transpose()
    }

    /// `key` as a `u32` (any integer type whose value fits).
    pub fn get_u32(&self, key: &str) -> Result<u32, MetadataError> {
        self.get_as(key)
    }

    /// `key` as a `u64` (any integer type whose value fits).
    pub fn get_u64(&self, key: &str) -> Result<u64, MetadataError> {
        self.get_as(key)
    }

    /// `key` as an `i32` (any integer type whose value fits).
    pub fn get_i32(&self, key: &str) -> Result<i32, MetadataError> {
        self.get_as(key)
    }

    /// `key` as an `i64` (any integer type whose value fits).
    pub fn get_i64(&self, key: &str) -> Result<i64, MetadataError> {
        self.get_as(key)
    }

    /// `key` as an `f32` (an `f32`, or an `f64` rounded).
    pub fn get_f32(&self, key: &str) -> Result<f32, MetadataError> {
        self.get_as(key)
    }

    /// `key` as an `f64` (an `f64` or an `f32`).
    pub fn get_f64(&self, key: &str) -> Result<f64, MetadataError> {
        self.get_as(key)
    }

    /// `key` as a `bool`.
    pub fn get_bool(&self, key: &str) -> Result<bool, MetadataError> {
        self.get_as(key)
    }

    /// `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str, MetadataError> {
        self.get_as(key)
    }

    /// `key` as an array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&MetadataArray, MetadataError> {
        self.get_as(key)
    }

    /// `key` as an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], MetadataError> {
        self.get_as(key)
    }

    /// `key` as an array of `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], MetadataError> {
        self.get_as(key)
    }

    /// `key` as an array of `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<&[i32], MetadataError> {
        self.get_as(key)
    }

    /// `key` as an array of `u32`.
    pub fn get_u32_array(&self, key: &str) -> Result<&[u32], MetadataError> {
        self.get_as(key)
    }
}

/// A Rust type that a metadata value can be read as.
pub trait FromMetadata<'a>: Sized {
    /// The value as `Self`, or an error naming `key`.
    fn from_metadata(key: &str, value: &'a MetadataValue) -> Result<Self, MetadataError>;
}

fn wrong_type(key: &str, expected: &'static str, value: &MetadataValue) -> MetadataError {
    MetadataError::WrongType {
        key: key.to_owned(),
        expected,
        found: value.describe(),
    }
}

macro_rules! integer_from_metadata {
    ($($t:ty),*) => {$(
        impl FromMetadata<'_> for $t {
            fn from_metadata(key: &str, value: &MetadataValue) -> Result<Self, MetadataError> {
                let wide = value
                    .as_integer()
                    .ok_or_else(|| wrong_type(key, stringify!($t), value))?;
                <$t>::try_from(wide).map_err(|_| MetadataError::OutOfRange {
                    key: key.to_owned(),
                    value: wide,
                    expected: stringify!($t),
                })
            }
        }
    )*};
}

integer_from_metadata!(u8, i8, u16, i16, u32, i32, u64, i64, usize);

impl FromMetadata<'_> for f32 {
    fn from_metadata(key: &str, value: &MetadataValue) -> Result<Self, MetadataError> {
        match *value {
            MetadataValue::F32(v) => Ok(v),
            MetadataValue::F64(v) => Ok(v as f32),
            _ => Err(wrong_type(key, "f32", value)),
        }
    }
}

impl FromMetadata<'_> for f64 {
    fn from_metadata(key: &str, value: &MetadataValue) -> Result<Self, MetadataError> {
        match *value {
            MetadataValue::F32(v) => Ok(v.into()),
            MetadataValue::F64(v) => Ok(v),
            _ => Err(wrong_type(key, "f64", value)),
        }
    }
}

impl FromMetadata<'_> for bool {
    fn from_metadata(key: &str, value: &MetadataValue) -> Result<Self, MetadataError> {
        match *value {
            MetadataValue::Bool(v) => Ok(v),
            _ => Err(wrong_type(key, "bool", value)),
        }
    }
}

impl<'a> FromMetadata<'a> for &'a str {
    fn from_metadata(key: &str, value: &'a MetadataValue) -> Result<Self, MetadataError> {
        match value {
            MetadataValue::String(v) => Ok(v),
            _ => Err(wrong_type(key, "string", value)),
        }
    }
}

impl<'a> FromMetadata<'a> for &'a MetadataArray {
    fn from_metadata(key: &str, value: &'a MetadataValue) -> Result<Self, MetadataError> {
        match value {
            MetadataValue::Array(v) => Ok(v),
            _ => Err(wrong_type(key, "array", value)),
        }
    }
}

macro_rules! slice_from_metadata {
    ($($t:ty => $variant:ident, $expected:literal);* $(;)?) => {$(
        impl<'a> FromMetadata<'a> for &'a [$t] {
            fn from_metadata(
                key: &str,
                value: &'a MetadataValue,
            ) -> Result<Self, MetadataError> {
                match value {
                    MetadataValue::Array(MetadataArray::$variant(v)) => Ok(v),
                    _ => Err(wrong_type(key, $expected, value)),
                }
            }
        }
    )*};
}

slice_from_metadata!(
    String => String, "array of string";
    f32 => F32, "array of f32";
    f64 => F64, "array of f64";
    i32 => I32, "array of i32";
    u32 => U32, "array of u32";
    i64 => I64, "array of i64";
    u64 => U64, "array of u64";
    u8 => U8, "array of u8";
    i8 => I8, "array of i8";
    u16 => U16, "array of u16";
    i16 => I16, "array of i16";
    bool => Bool, "array of bool";
    MetadataArray => Array, "array of array";
);
