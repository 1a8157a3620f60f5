//! The table `ollamactl ps` prints, as a snapshot (expiries redacted: they depend on
//! the clock).

use std::time::{Duration, SystemTime};

use crate::api::{PsModel, PsResponse, ps_table};
use crate::sched::RunnerState;

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn row(name: &str, state: RunnerState) -> PsModel {
    PsModel {
        name: name.into(),
        model: name.into(),
        size: 310 << 20,
        digest: "sha256:0123".into(),
        details: serde_json::Value::Null,
        expires_at: rfc3339(SystemTime::now() + Duration::from_secs(290)),
        size_vram: 0,
        context_length: 4096,
        state,
        pid: Some(4242),
        estimated_bytes: 300 << 20,
        measured_bytes: Some(310 << 20),
        kv_cache_type_k: "q8_0".into(),
        kv_cache_type_v: "q4_0".into(),
        flash_attention: true,
        num_parallel: 4,
        slots_busy: 1,
        requests_waiting: 2,
        restarts: 0,
        last_failure: None,
    }
}

#[test]
fn ps_table_lines_up_every_column_and_lists_failures_below() {
    let mut failed = row("gemma3:270m", RunnerState::Failed);
    failed.pid = None;
    failed.measured_bytes = None;
    failed.restarts = 3;
    failed.expires_at = rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33));
    failed.last_failure = Some(
        "the runner for gemma3:270m exited unexpectedly: signal 11 (SIGSEGV); its last \
         output was: fatal: bad tensor"
            .into(),
    );
    let mut loading = row("smollm2:latest", RunnerState::Loading);
    loading.flash_attention = false;
    loading.kv_cache_type_k = "f16".into();
    loading.kv_cache_type_v = "f16".into();
    let ps = PsResponse {
        models: vec![failed, loading, row("nomic:latest", RunnerState::Ready)],
    };
    insta::with_settings!({filters => vec![(r"in \d+ (s|min|h)", "in [T]")]}, {
        insta::assert_snapshot!(ps_table(&ps));
    });
}
