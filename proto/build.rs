//! Compiles the .proto contracts with protox, so a fresh machine needs no system `protoc`,
//! and keeps their descriptors for gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    for (proto, descriptor) in [
        ("proto/runner.proto", "runner_descriptor.bin"),
        ("proto/ollama.proto", "ollama_descriptor.bin"),
    ] {
        println!("cargo:rerun-if-changed={proto}");
        let fds = protox::compile([proto], ["proto"])?;
        std::fs::write(out.join(descriptor), fds.encode_to_vec())?;
        tonic_prost_build::configure().compile_fds(fds)?;
    }
    Ok(())
}
