//! `ollama-runner devices`: the GPUs this machine offers, with the index that
//! `OLLAMA_DEVICE` (or `--device`) takes, their device memory, and which one a model
//! would run on by default.
//!
//! `--json` prints one object the supervisor parses (keep the field names):
//!
//! ```json
//! {"devices":[{"index":0,"name":"llvmpipe (LLVM 15.0.6, 256 bits)","backend":"vulkan",
//!   "kind":"cpu","vendor_id":65541,"device_id":0,
//!   "driver":"llvmpipe Mesa 22.3.6 (LLVM 15.0.6)","shader_f16":true,"subgroups":true,
//!   "memory":{"total_bytes":2147483648,"free_bytes":2147483648,"unified":true}}],
//!  "default":null}
//! ```
//!
//! `kind` is `discrete`, `integrated`, `virtual`, `cpu` or `other`; `memory` is `null`
//! where the backend does not report it (Metal); `default` is the index a runner uses
//! when `OLLAMA_DEVICE` is unset, or `null` for the CPU (software Vulkan is never the
//! default).

use std::io::Write;

use clap::Args;
use gpu::{AdapterDescription, DeviceMemory};
use serde_json::{Value, json};

/// Arguments of `ollama-runner devices`.
#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {
    /// Print one JSON object (`{"devices": [...], "default": index or null}`) instead of
    /// the text.
    #[arg(long)]
    pub json: bool,
}

/// Lists every Vulkan (or Metal) adapter, one a line, and the default choice.
pub fn run(args: &DevicesArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let adapters = gpu::list_adapters();
    let default = gpu::default_adapter(&adapters);
    if args.json {
        let report = json_report(&adapters, default.map(|a| a.index));
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    if adapters.is_empty() {
        writeln!(
            out,
            "no Vulkan or Metal device found: models run on the CPU (install the GPU's Vulkan driver, or mesa-vulkan-drivers for lavapipe)"
        )?;
        return Ok(());
    }
    for adapter in &adapters {
        let extras = [
            ("shader-f16", adapter.shader_f16),
            ("subgroups", adapter.subgroups),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
        let memory = match &adapter.memory {
            Some(m) => format!(
                ", {} MiB {}, {} MiB free",
                m.total_bytes >> 20,
                if m.unified { "shared" } else { "device" },
                m.free_bytes >> 20
            ),
            None => String::new(),
        };
        writeln!(out, "{adapter} [{extras}]{memory}")?;
    }
    match default {
        Some(a) => writeln!(out, "default: {} ({})", a.index, a.name)?,
        None => writeln!(
            out,
            "default: cpu (software Vulkan is used only when asked for, with OLLAMA_DEVICE=gpu or its index)"
        )?,
    }
    Ok(())
}

/// The `--json` object.
fn json_report(adapters: &[AdapterDescription], default: Option<usize>) -> Value {
    let memory = |m: &DeviceMemory| {
        json!({
            "total_bytes": m.total_bytes,
            "free_bytes": m.free_bytes,
            "unified": m.unified,
        })
    };
    let devices: Vec<Value> = adapters
        .iter()
        .map(|a| {
            json!({
                "index": a.index,
                "name": a.name,
                "backend": a.backend,
                "kind": a.kind.name(),
                "vendor_id": a.vendor_id,
                "device_id": a.device_id,
                "driver": a.driver,
                "shader_f16": a.shader_f16,
                "subgroups": a.subgroups,
                "memory": a.memory.as_ref().map(memory),
            })
        })
        .collect();
    json!({ "devices": devices, "default": default })
}

#[cfg(test)]
mod tests {
    use gpu::DeviceKind;

    use super::*;

    #[test]
    fn the_json_has_the_shape_the_supervisor_parses() {
        let adapter = |index, kind, memory| AdapterDescription {
            index,
            name: format!("gpu {index}"),
            backend: "vulkan".into(),
            kind,
            vendor_id: 0x10de,
            device_id: 0x2684,
            driver: "NVIDIA 550".into(),
            shader_f16: true,
            subgroups: false,
            memory,
        };
        let adapters = [
            adapter(
                0,
                DeviceKind::Discrete,
                Some(DeviceMemory {
                    total_bytes: 24 << 30,
                    free_bytes: 20 << 30,
                    unified: false,
                }),
            ),
            adapter(1, DeviceKind::Cpu, None),
        ];
        let report = json_report(&adapters, gpu::default_adapter(&adapters).map(|a| a.index));
        assert_eq!(
            report,
            json!({
                "devices": [
                    {"index": 0, "name": "gpu 0", "backend": "vulkan", "kind": "discrete",
                     "vendor_id": 0x10de, "device_id": 0x2684, "driver": "NVIDIA 550",
                     "shader_f16": true, "subgroups": false,
                     "memory": {"total_bytes": 24u64 << 30, "free_bytes": 20u64 << 30,
                                "unified": false}},
                    {"index": 1, "name": "gpu 1", "backend": "vulkan", "kind": "cpu",
                     "vendor_id": 0x10de, "device_id": 0x2684, "driver": "NVIDIA 550",
                     "shader_f16": true, "subgroups": false, "memory": null},
                ],
                "default": 0,
            })
        );
        assert_eq!(json_report(&adapters[1..], None)["default"], Value::Null);
    }
}
