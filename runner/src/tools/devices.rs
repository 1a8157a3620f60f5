//! `ollama-runner devices`: the GPUs this machine offers, with the index that
//! `OLLAMA_DEVICE` (or `--device`) takes, and which one a model would run on by default.

use std::io::Write;

use clap::Args;

/// Arguments of `ollama-runner devices` (none yet).
#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {}

/// Lists every Vulkan (or Metal) adapter, one a line, and the default choice.
pub fn run(_args: &DevicesArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let adapters = gpu::list_adapters();
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
        writeln!(out, "{adapter} [{extras}]")?;
    }
    let default = adapters
        .iter()
        .filter(|a| a.kind != gpu::DeviceKind::Cpu)
        .min_by_key(|a| a.kind.rank());
    match default {
        Some(a) => writeln!(out, "default: {} ({})", a.index, a.name)?,
        None => writeln!(
            out,
            "default: cpu (software Vulkan is used only when asked for, with OLLAMA_DEVICE=gpu or its index)"
        )?,
    }
    Ok(())
}
