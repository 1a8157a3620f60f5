//! The weights of a Hugging Face directory: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, memory-mapped and indexed by tensor name.
//!
//! Each shard's header is parsed (and checked) by the `safetensors` crate; the data stays
//! in the map until a tensor is converted, so a large model is read once, tensor by
//! tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gguf::MappedFile;
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use super::ImportError;

/// Where one tensor lies: its shard, its type and shape, its bytes within the shard.
#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The safetensors files of a model directory, mapped.
#[derive(Debug)]
pub struct Checkpoint {
    shards: Vec<MappedFile>,
    tensors: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or every shard `dir/model.safetensors.index.json`
    /// names.
    pub fn open(dir: &Path) -> Result<Self, ImportError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shard_files(&index)?
        } else {
            return Err(ImportError::MissingFile {
                dir: dir.to_path_buf(),
                what: "model.safetensors or model.safetensors.index.json",
            });
        };
        let mut checkpoint = Self {
            shards: Vec::new(),
            tensors: BTreeMap::new(),
        };
        for path in files {
            let map = MappedFile::open(dir.join(&path))?;
            let bad = |e: safetensors::SafeTensorError| ImportError::Safetensors {
                path: map.path().to_path_buf(),
                why: e.to_string(),
            };
            // deserialize checks that the offsets tile the data exactly.
            SafeTensors::deserialize(map.bytes()).map_err(bad)?;
            let (header_len, metadata) = SafeTensors::read_metadata(map.bytes()).map_err(bad)?;
            let base = 8 + header_len;
            let shard = checkpoint.shards.len();
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                checkpoint.tensors.insert(
                    name,
                    Entry {
                        shard,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: base + start,
                        end: base + end,
                    },
                );
            }
            checkpoint.shards.push(map);
        }
        Ok(checkpoint)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The first tensor stored in a quantized form (8-bit or narrower integers, FP8 and
    /// narrower floats), with its dtype: such a checkpoint has been quantized already
    /// and is refused rather than quantized twice.
    pub fn quantized_tensor(&self) -> Option<(&str, String)> {
        self.tensors.iter().find_map(|(name, e)| {
            let dtype = format!("{:?}", e.dtype);
            let quantized = matches!(e.dtype, Dtype::U8 | Dtype::I8)
                || ["F8", "F6", "F4", "E8", "I4", "U4"]
                    .iter()
                    .any(|p| dtype.starts_with(p));
            quantized.then_some((name.as_str(), dtype))
        })
    }

    /// The shape of tensor `name` (row-major, the slowest dimension first).
    pub fn shape(&self, name: &str) -> Result<&[usize], ImportError> {
        Ok(&self.entry(name)?.shape)
    }

    fn entry(&self, name: &str) -> Result<&Entry, ImportError> {
        self.tensors
            .get(name)
            .ok_or_else(|| ImportError::MissingTensor(name.to_owned()))
    }

    /// Tensor `name` as `f32` values, row-major. F32, F16 and BF16 are read; any other
    /// dtype is refused by name.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, ImportError> {
        let e = self.entry(name)?;
        let bytes = self.shards[e.shard]
            .bytes()
            .get(e.start..e.end)
            .ok_or_else(|| ImportError::Safetensors {
                path: self.shards[e.shard].path().to_path_buf(),
                why: format!("tensor '{name}' lies outside the file"),
            })?;
        let two = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
        let values = match e.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_bits(two(b)).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| bf16::from_bits(two(b)).to_f32())
                .collect(),
            other => {
                return Err(ImportError::UnsupportedDtype {
                    name: name.to_owned(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(values)
    }
}

/// The distinct shard files of an index's `weight_map`, in first-seen order.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>, ImportError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let parsed: Index = super::read_json(index)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for file in parsed.weight_map.values() {
        let path = PathBuf::from(file);
        if path.components().count() != 1 {
            return Err(ImportError::Safetensors {
                path: index.to_path_buf(),
                why: format!("shard '{file}' is not a file name in the model directory"),
            });
        }
        if !files.contains(&path) {
            files.push(path);
        }
    }
    Ok(files)
}
