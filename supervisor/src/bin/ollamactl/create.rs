//! `create NAME -f Modelfile`: a model from a Modelfile. When its FROM names a local
//! file, the file is hashed, then streamed to the server in chunks through the
//! client-streaming Create call, both with a progress bar; when it names a local
//! directory (a Hugging Face model), FROM is made absolute and the server converts the
//! directory itself (it runs on this machine); otherwise only the Modelfile is sent.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use ollama_proto::ollama::{CreateHeader, CreateRequest, Upload, create_request::Part};
use sha2::Digest as _;
use supervisor::config::{Env as _, ProcessEnv};
use supervisor::modelfile::Modelfile;
use tokio::io::AsyncReadExt as _;

use crate::client::Session;
use crate::format::{emit, short_digest};

/// Bytes per uploaded message: well under gRPC's message limits, large enough that the
/// per-message cost does not show.
const CHUNK: usize = 1 << 20;

/// `ollamactl create`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The new model's name.
    name: String,
    /// The Modelfile.
    #[arg(short = 'f', long = "file", default_value = "Modelfile")]
    file: PathBuf,
    /// Quantize the weights to this type: q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m,
    /// q5_k_s, q5_k_m or q6_k (f32 and f16, the default, for a Hugging Face directory);
    /// a GGUF FROM must hold F32, F16 or BF16 weights, an already quantized one is
    /// refused.
    #[arg(short, long, value_name = "TYPE")]
    quantize: Option<String>,
}

/// Reads the Modelfile, uploads its FROM file when it is local, and creates the model.
pub async fn create(session: &Session, args: CreateArgs) -> anyhow::Result<()> {
    let modelfile = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let parsed = Modelfile::parse(&modelfile)
        .map_err(|e| anyhow!("{}: line {}: {}", args.file.display(), e.line, e.kind))?;
    let from = parsed
        .from()
        .ok_or_else(|| anyhow!("{}: no FROM line", args.file.display()))?
        .to_string();
    let mut header = CreateHeader {
        name: args.name.clone(),
        modelfile,
        quantize: args.quantize.unwrap_or_default(),
        upload: None,
    };
    let directory = args.file.parent().unwrap_or(Path::new("."));
    let local = local_file(&from, directory, ProcessEnv.var("HOME").map(PathBuf::from));
    let mut upload_from = None;
    if let Some(dir) = local.as_ref().filter(|p| p.is_dir()) {
        let absolute = std::fs::canonicalize(dir)
            .with_context(|| format!("FROM {from}: cannot read {}", dir.display()))?;
        header.modelfile = with_from(&header.modelfile, &absolute.display().to_string());
    } else if let Some(path) = local {
        let size = std::fs::metadata(&path)
            .with_context(|| format!("FROM {from}: cannot read {}", path.display()))?
            .len();
        let sha256 = hash(&path, size).await?;
        header.upload = Some(Upload {
            file_name: from.clone(),
            size,
            sha256,
        });
        upload_from = Some((path, size));
    }
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(CreateRequest {
            part: Some(Part::Header(header)),
        })
        .await?;
    let producer = upload_from.map(|(path, size)| tokio::spawn(upload(path, size, sender)));
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let created = session.client.clone().create(stream).await;
    if let Some(producer) = producer {
        producer.abort();
    }
    let created = created
        .map_err(|s| session.model_error(s, &from))?
        .into_inner();
    Ok(emit(&format!(
        "created {} ({})\n",
        created.name,
        short_digest(&created.digest)
    ))?)
}

/// The file a FROM names when it names one on this machine: a path starting with `.`,
/// `/` or `~`, or ending in `.gguf`, relative to the Modelfile's directory.
pub fn local_file(from: &str, directory: &Path, home: Option<PathBuf>) -> Option<PathBuf> {
    let is_path = from.starts_with(['.', '/', '~']) || from.to_lowercase().ends_with(".gguf");
    if !is_path {
        return None;
    }
    if let Some(rest) = from.strip_prefix("~/")
        && let Some(home) = home
    {
        return Some(home.join(rest));
    }
    Some(directory.join(from))
}

/// `modelfile` with its FROM line's argument replaced by `from`.
pub fn with_from(modelfile: &str, from: &str) -> String {
    let mut done = false;
    let lines: Vec<String> = modelfile
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let is_from = trimmed.get(..5).is_some_and(|w| {
                w.eq_ignore_ascii_case("from ") || w.eq_ignore_ascii_case("from\t")
            });
            if is_from && !done {
                done = true;
                format!("FROM {from}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    lines.join("\n") + "\n"
}

fn bar(size: u64, what: &str, path: &Path) -> ProgressBar {
    let bar = ProgressBar::new(size);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    bar.set_message(format!("{what} {name}"));
    bar
}

/// The file's sha256 (hex), read on a blocking thread with a progress bar.
async fn hash(path: &Path, size: u64) -> anyhow::Result<String> {
    let path = path.to_path_buf();
    let task = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let bar = bar(size, "hashing", &path);
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0; CHUNK];
        loop {
            let n = file
                .read(&mut buffer)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        Ok(format!("{:x}", hasher.finalize()))
    });
    task.await?
}

/// Sends the file in chunks after the header; stops when the call ends early (the
/// server refused it: its answer says why).
async fn upload(path: PathBuf, size: u64, sender: tokio::sync::mpsc::Sender<CreateRequest>) {
    let bar = bar(size, "uploading", &path);
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return;
    };
    loop {
        let mut chunk = vec![0; CHUNK];
        let n = match file.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        chunk.truncate(n);
        let request = CreateRequest {
            part: Some(Part::Chunk(chunk)),
        };
        if sender.send(request).await.is_err() {
            break;
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
}
