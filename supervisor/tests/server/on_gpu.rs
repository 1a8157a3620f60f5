//! A model on the GPU beside one on the CPU, through the real server and runners: a
//! request's `num_gpu` 0 keeps its model on the CPU, `/api/ps` tells the two apart as
//! Ollama does ("100% GPU": `size_vram` == `size`), and killing the GPU runner leaves the
//! CPU one serving.
//!
//! The server runs with `OLLAMA_DEVICE=gpu`, which its runners inherit, so any Vulkan
//! adapter serves, Mesa's lavapipe included. Without one the test says `skipped` on
//! stderr and passes, unless `OLLAMA_GPU_TESTS=require`.

use std::io::Write;
use std::time::Duration;

use e2e::TestModel;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::harness::{Server, alive, eventually};

/// Whether a Vulkan adapter exists; without one, panics under `OLLAMA_GPU_TESTS=require`
/// and otherwise says `skipped`.
fn has_adapter() -> bool {
    if !gpu::list_adapters().is_empty() {
        return true;
    }
    let var = gpu::testing::REQUIRE_VAR;
    if std::env::var(var).is_ok_and(|v| v == "require") {
        panic!("no GPU adapter, and {var}=require: install mesa-vulkan-drivers");
    }
    // Past the harness's capture, which hides a passing test's output.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: no GPU adapter (install mesa-vulkan-drivers for lavapipe)"
    );
    false
}

/// A short greedy generation of `model` with `options` added; answers status and body.
fn generate(server: &Server, model: &str, options: Value) -> (u16, Value) {
    let mut all = json!({"temperature": 0, "num_predict": 4});
    if let (Some(all), Some(options)) = (all.as_object_mut(), options.as_object()) {
        all.extend(options.clone());
    }
    server.post(
        "/api/generate",
        json!({"model": model, "prompt": "Hi", "stream": false, "options": all}),
    )
}

#[test]
fn num_gpu_0_keeps_a_model_on_the_cpu_while_another_runs_on_the_gpu() {
    if !has_adapter() {
        return;
    }
    let server = Server::start(&[("OLLAMA_DEVICE", "gpu")]);
    server.create("on-gpu", TestModel::SmolLm2, json!({}));
    server.create("on-cpu", TestModel::SmolLm2, json!({}));
    let on_cpu = json!({"num_gpu": 0});
    for (model, options) in [("on-gpu", json!({})), ("on-cpu", on_cpu.clone())] {
        let (status, body) = generate(&server, model, options);
        assert_eq!(status, 200, "{model}: {body}\n{}", server.log());
        assert!(body["eval_count"].as_u64() > Some(0), "{model}: {body}");
    }

    let ps = server.ps();
    let row = |name: &str| {
        let row = ps.iter().find(|m| m["name"] == name);
        row.cloned()
            .unwrap_or_else(|| panic!("{name} is not in ps: {ps:?}"))
    };
    let gpu = row("on-gpu:latest");
    assert!(gpu["size_vram"].as_u64() > Some(0), "{gpu}");
    assert_eq!(gpu["size"], gpu["size_vram"], "{gpu}");
    assert!(
        gpu["device"].as_str().is_some_and(|d| !d.is_empty()),
        "{gpu}"
    );
    // The estimate's device part is what the runner allocated, within the 5% the
    // memory tests allow.
    let estimate = crate::ctl::ctl_json(&server, &["estimate", "on-gpu", "--json"]);
    assert_eq!(estimate["device"], "gpu", "{estimate}");
    let (estimated, held) = (estimate["device_bytes"].as_u64(), gpu["size_vram"].as_u64());
    let ratio = estimated.unwrap() as f64 / held.unwrap() as f64;
    assert!(
        (0.95..1.05).contains(&ratio),
        "estimate {estimate} vs ps {gpu}"
    );
    let cpu = row("on-cpu:latest");
    assert_eq!(
        (&cpu["size_vram"], &cpu["device"]),
        (&json!(0), &Value::Null),
        "{cpu}"
    );
    assert!(cpu["size"].as_u64() > Some(0), "{cpu}");

    let victim = gpu["pid"].as_u64().expect("a pid") as u32;
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(victim)));
    let (status, body) = generate(&server, "on-cpu", on_cpu);
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert!(body["eval_count"].as_u64() > Some(0), "{body}");
    assert_eq!(
        server.pid_of("on-cpu:latest"),
        cpu["pid"].as_u64().map(|p| p as u32)
    );
}
