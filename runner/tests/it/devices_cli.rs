//! `ollama-runner devices --json` through the real binary, on whatever Vulkan adapter is
//! present (lavapipe in CI, through `OLLAMA_GPU_TESTS=require`): the shape the
//! supervisor parses, the device memory, and the default choice.
//!
//! Without any Vulkan adapter the test says `skipped` on stderr and passes, unless
//! `OLLAMA_GPU_TESTS=require`.

use serde_json::Value;

#[test]
fn devices_json_lists_lavapipe_with_its_memory_and_never_as_the_default() {
    if gpu::testing::gpu_or_skip().is_none() {
        return;
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args(["devices", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "devices --json failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    println!("{report:#}");
    let devices = report["devices"].as_array().expect("a devices array");
    assert!(!devices.is_empty(), "{report}");
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d["index"].as_u64(), Some(i as u64), "{d}");
        for key in ["name", "backend", "kind", "driver"] {
            assert!(d[key].is_string(), "{key} in {d}");
        }
        for key in ["vendor_id", "device_id"] {
            assert!(d[key].is_u64(), "{key} in {d}");
        }
        for key in ["shader_f16", "subgroups"] {
            assert!(d[key].is_boolean(), "{key} in {d}");
        }
        let m = &d["memory"];
        if !m.is_null() {
            let total = m["total_bytes"].as_u64().expect("total_bytes");
            let free = m["free_bytes"].as_u64().expect("free_bytes");
            assert!(total > 0 && free <= total, "{d}");
            assert!(m["unified"].is_boolean(), "{d}");
        }
    }
    let lavapipe = devices
        .iter()
        .find(|d| d["name"].as_str().is_some_and(|n| n.contains("llvmpipe")));
    let Some(lavapipe) = lavapipe else {
        // A real GPU and no lavapipe: the shape is checked; the default is some index.
        assert!(
            report["default"].is_u64() || report["default"].is_null(),
            "{report}"
        );
        return;
    };
    assert_eq!(lavapipe["kind"], "cpu", "{lavapipe}");
    assert_eq!(lavapipe["backend"], "vulkan", "{lavapipe}");
    let m = &lavapipe["memory"];
    assert!(
        m["total_bytes"].as_u64().is_some_and(|t| t > 0),
        "{lavapipe}"
    );
    assert_eq!(m["unified"], true, "{lavapipe}");
    if devices.iter().all(|d| d["kind"] == "cpu") {
        assert_eq!(report["default"], Value::Null, "{report}");
    } else {
        assert_ne!(report["default"], lavapipe["index"], "{report}");
    }
}
