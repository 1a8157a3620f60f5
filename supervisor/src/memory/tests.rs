use std::fs;
use std::path::Path;
use std::process::Command;

use super::cgroup::{
    CgroupMemory, CgroupReader, Limit, Mount, parse_limit, parse_mountinfo, parse_proc_cgroup,
    relative_to_mount, stat_value,
};
use super::*;
use crate::devices::{Adapter, AdapterMemory, NVIDIA, Target};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// This machine's mount table shape: cgroup v1 controllers plus an empty v2 hierarchy.
const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const V2_MOUNTINFO: &str =
    "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

/// Writes `files` (absolute paths) below `root`.
fn tree(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

fn read_tree(files: &[(&str, &str)]) -> Option<CgroupMemory> {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), files);
    CgroupReader::with_root(dir.path()).read()
}

#[test]
fn limit_files_parse_max_numbers_and_v1_unlimited() {
    assert_eq!(parse_limit("max\n"), Some(Limit::Unlimited));
    assert_eq!(parse_limit("1073741824\n"), Some(Limit::Bytes(GIB)));
    assert_eq!(parse_limit("9223372036854771712\n"), Some(Limit::Unlimited));
    assert_eq!(parse_limit("0"), Some(Limit::Bytes(0)));
    for garbage in [
        "",
        "\n",
        "maximum",
        "-5",
        "12abc",
        "1.5G",
        "99999999999999999999999",
    ] {
        assert_eq!(parse_limit(garbage), None, "{garbage:?}");
    }
}

#[test]
fn proc_cgroup_finds_v2_and_v1_memory_paths() {
    let hybrid = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
    let own = parse_proc_cgroup(hybrid);
    assert_eq!(own.v1_memory.as_deref(), Some("/process_api/abc"));
    assert_eq!(own.v2.as_deref(), Some("/"));

    let v2 = parse_proc_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n");
    assert_eq!(
        v2.v2.as_deref(),
        Some("/user.slice/user-1000.slice/session-2.scope")
    );
    assert_eq!(v2.v1_memory, None);

    let joined = parse_proc_cgroup("5:cpu,memory:/docker/x\n");
    assert_eq!(joined.v1_memory.as_deref(), Some("/docker/x"));

    let garbage = parse_proc_cgroup("nonsense\n::\n\u{0}:memory\n7:memoryless:/x\n");
    assert_eq!(garbage.v1_memory, None);
}

#[test]
fn mountinfo_finds_cgroup_mounts() {
    let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
    assert_eq!(
        mounts.v1_memory,
        Some(Mount {
            root: "/".into(),
            point: "/sys/fs/cgroup/memory".into()
        })
    );
    assert_eq!(
        mounts.v2.map(|m| m.point).as_deref(),
        Some("/sys/fs/cgroup/unified")
    );
    let v2 = parse_mountinfo(V2_MOUNTINFO);
    assert_eq!(v2.v2.map(|m| m.point).as_deref(), Some("/sys/fs/cgroup"));
    assert_eq!(v2.v1_memory, None);
    let garbage = parse_mountinfo("1 2 3\n - cgroup2\nx - \n");
    assert_eq!(garbage.v2, None);
}

#[test]
fn cgroup_path_is_taken_relative_to_the_mounted_root() {
    assert_eq!(relative_to_mount("/a/b", "/"), ["a", "b"]);
    assert_eq!(relative_to_mount("/docker/x/y", "/docker/x"), ["y"]);
    assert_eq!(
        relative_to_mount("/docker/x", "/docker/x"),
        Vec::<&str>::new()
    );
    assert_eq!(
        relative_to_mount("/docker/xy", "/docker/x"),
        Vec::<&str>::new()
    );
    assert_eq!(relative_to_mount("/a/../../etc", "/"), Vec::<&str>::new());
    assert_eq!(relative_to_mount("/", "/"), Vec::<&str>::new());
}

#[test]
fn memory_stat_values_are_found_by_exact_key() {
    let stat = "active_file 5\ninactive_file 4096\ntotal_inactive_file 8192\nbad line\n";
    assert_eq!(stat_value(stat, "inactive_file"), Some(4096));
    assert_eq!(stat_value(stat, "total_inactive_file"), Some(8192));
    assert_eq!(stat_value(stat, "file"), None);
    assert_eq!(stat_value("inactive_file lots\n", "inactive_file"), None);
}

#[test]
fn v2_limit_less_usage_with_inactive_file_pages_counted_free() {
    let got = read_tree(&[
        ("/proc/self/cgroup", "0::/svc/app\n"),
        ("/proc/self/mountinfo", V2_MOUNTINFO),
        ("/sys/fs/cgroup/svc/memory.max", "max\n"),
        ("/sys/fs/cgroup/svc/app/memory.max", "1073741824\n"),
        (
            "/sys/fs/cgroup/svc/app/memory.current",
            &format!("{}\n", 300 * MIB),
        ),
        (
            "/sys/fs/cgroup/svc/app/memory.stat",
            &format!("anon 1\ninactive_file {}\n", 100 * MIB),
        ),
    ]);
    assert_eq!(
        got,
        Some(CgroupMemory {
            limit_bytes: GIB,
            available_bytes: GIB - 200 * MIB
        })
    );
}

#[test]
fn a_tighter_parent_cgroup_binds() {
    let got = read_tree(&[
        ("/proc/self/cgroup", "0::/svc/app\n"),
        ("/proc/self/mountinfo", V2_MOUNTINFO),
        ("/sys/fs/cgroup/svc/memory.max", &format!("{}\n", 512 * MIB)),
        (
            "/sys/fs/cgroup/svc/memory.current",
            &format!("{}\n", 400 * MIB),
        ),
        ("/sys/fs/cgroup/svc/app/memory.max", "1073741824\n"),
        (
            "/sys/fs/cgroup/svc/app/memory.current",
            &format!("{}\n", 10 * MIB),
        ),
    ]);
    assert_eq!(
        got,
        Some(CgroupMemory {
            limit_bytes: 512 * MIB,
            available_bytes: 112 * MIB
        })
    );
}

#[test]
fn v1_memory_controller_limit_is_read() {
    let got = read_tree(&[
        ("/proc/self/cgroup", "4:memory:/process_api/abc\n0::/\n"),
        ("/proc/self/mountinfo", HYBRID_MOUNTINFO),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        ),
        (
            "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
            "2147483648\n",
        ),
        (
            "/sys/fs/cgroup/memory/process_api/abc/memory.usage_in_bytes",
            "1073741824\n",
        ),
        (
            "/sys/fs/cgroup/memory/process_api/abc/memory.stat",
            "total_inactive_file 0\n",
        ),
    ]);
    assert_eq!(
        got,
        Some(CgroupMemory {
            limit_bytes: 2 * GIB,
            available_bytes: GIB
        })
    );
}

#[test]
fn unlimited_garbage_and_missing_files_mean_no_limit() {
    let v1_unlimited = [
        ("/proc/self/cgroup", "4:memory:/a\n"),
        ("/proc/self/mountinfo", HYBRID_MOUNTINFO),
        (
            "/sys/fs/cgroup/memory/a/memory.limit_in_bytes",
            "9223372036854771712\n",
        ),
        ("/sys/fs/cgroup/memory/a/memory.usage_in_bytes", "5\n"),
    ];
    assert_eq!(read_tree(&v1_unlimited), None);
    let v2_max = [
        ("/proc/self/cgroup", "0::/a\n"),
        ("/proc/self/mountinfo", V2_MOUNTINFO),
        ("/sys/fs/cgroup/a/memory.max", "max\n"),
    ];
    assert_eq!(read_tree(&v2_max), None);
    let garbage = [
        ("/proc/self/cgroup", "0::/a\n"),
        ("/proc/self/mountinfo", V2_MOUNTINFO),
        ("/sys/fs/cgroup/a/memory.max", "\u{1}\u{2}lots\n"),
    ];
    assert_eq!(read_tree(&garbage), None);
    let no_cgroup_file = [("/sys/fs/cgroup/memory.max", "1024\n")];
    assert_eq!(read_tree(&no_cgroup_file), None);
    assert_eq!(read_tree(&[]), None);
}

#[test]
fn unreadable_usage_leaves_the_whole_limit_and_missing_mountinfo_uses_usual_mounts() {
    let got = read_tree(&[
        ("/proc/self/cgroup", "0::/a\n"),
        ("/sys/fs/cgroup/a/memory.max", "4096\n"),
        ("/sys/fs/cgroup/a/memory.current", "garbage\n"),
    ]);
    assert_eq!(
        got,
        Some(CgroupMemory {
            limit_bytes: 4096,
            available_bytes: 4096
        })
    );
}

#[test]
fn system_probe_caps_available_memory_by_the_cgroup_limit() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            ("/proc/self/cgroup", "0::/a\n"),
            ("/proc/self/mountinfo", V2_MOUNTINFO),
            ("/sys/fs/cgroup/a/memory.max", &format!("{}\n", 64 * MIB)),
            (
                "/sys/fs/cgroup/a/memory.current",
                &format!("{}\n", 48 * MIB),
            ),
        ],
    );
    let probe = SystemProbe::with_cgroup(CgroupReader::with_root(dir.path())).unwrap();
    let system = probe.snapshot().unwrap().system;
    assert_eq!(system.cgroup_limit_bytes, Some(64 * MIB));
    assert_eq!(system.available_bytes, 16 * MIB);
    assert_eq!(system.effective_total_bytes(), 64 * MIB);
}

/// `MemTotal` from /proc/meminfo, in bytes.
fn meminfo_total() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn system_probe_reports_this_machine() {
    let probe = SystemProbe::new().unwrap();
    let snapshot = probe.snapshot().unwrap();
    assert!(snapshot.gpus.is_empty());
    let system = &snapshot.system;
    assert_eq!(system.total_bytes, meminfo_total());
    assert!(system.available_bytes > 0);
    assert!(system.available_bytes <= system.total_bytes);
    if let Some(limit) = system.cgroup_limit_bytes {
        assert!(system.available_bytes <= limit);
    }
}

#[test]
fn system_probe_measures_processes_and_forgets_exited_ones() {
    let probe = SystemProbe::new().unwrap();
    let own = probe.process_bytes(std::process::id()).unwrap();
    assert!(own > MIB, "our own resident memory is {own} bytes");
    // pid_max is at most 2^22 on Linux.
    assert_eq!(probe.process_bytes(u32::MAX - 1), None);

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    assert!(probe.process_bytes(pid).is_some_and(|bytes| bytes > 0));
    child.kill().unwrap();
    // Killed but not yet waited for, the child is a zombie: it holds no memory.
    let gone = e2e::poll_until(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_millis(10),
        || probe.process_bytes(pid).is_none(),
    );
    assert!(gone, "a killed child still reported as holding memory");
    child.wait().unwrap();
    assert_eq!(probe.process_bytes(pid), None);
}

#[test]
fn detect_uses_nvml_only_when_it_works() {
    let probe = detect().unwrap();
    let snapshot = probe.snapshot().unwrap();
    match NvmlProbe::new() {
        Ok(nvml) => assert_eq!(snapshot.gpus.len(), nvml.device_count() as usize),
        Err(error) => {
            eprintln!("{error}");
            assert!(error.to_string().starts_with("NVML"), "{error}");
            assert!(snapshot.gpus.is_empty());
            assert!(probe.process_bytes(std::process::id()).is_some());
        }
    }
}

/// Run on a machine with an NVIDIA GPU: `cargo test -p supervisor -- --ignored nvml`.
#[test]
#[ignore = "needs an NVIDIA GPU and driver"]
fn nvml_probe_reports_gpus() {
    let probe = NvmlProbe::new().unwrap();
    let snapshot = probe.snapshot().unwrap();
    assert!(!snapshot.gpus.is_empty());
    for gpu in &snapshot.gpus {
        assert!(gpu.total_bytes > GIB, "{gpu:?}");
        assert!(gpu.free_bytes <= gpu.total_bytes, "{gpu:?}");
        assert!(!gpu.name.is_empty());
    }
    assert_eq!(snapshot.system.total_bytes, meminfo_total());
    assert!(probe.process_bytes(std::process::id()).is_some());
    println!("{}\n{snapshot:#?}", probe.describe());
}

fn adapter(name: &str, kind: &str, vendor_id: u32, memory: Option<(u64, u64, bool)>) -> Target {
    Target::Gpu(Adapter {
        index: 0,
        name: name.into(),
        kind: kind.into(),
        vendor_id,
        memory: memory.map(|(total_bytes, free_bytes, unified)| AdapterMemory {
            total_bytes,
            free_bytes,
            unified,
        }),
    })
}

#[test]
fn device_memory_is_read_through_nvml_the_vulkan_budget_or_system_ram() {
    let fake = FakeProbe::gpus(&[8 * GIB, 24 * GIB]);
    let snapshot = fake.snapshot().unwrap();
    assert_eq!(
        DevicePool::for_target(&Target::Cpu, &snapshot),
        DevicePool::None
    );
    // An NVIDIA GPU that NVML also sees is measured live there.
    let nvidia = adapter(
        "Fake GPU 1",
        "discrete",
        NVIDIA,
        Some((24 * GIB, 20 * GIB, false)),
    );
    let pool = DevicePool::for_target(&nvidia, &snapshot);
    assert_eq!(pool, DevicePool::Nvml { index: 1 });
    fake.set_gpu_free(1, 5 * GIB);
    assert_eq!(
        pool.memory(&fake.snapshot().unwrap()),
        Some(PoolMemory {
            total_bytes: 24 * GIB,
            available_bytes: 5 * GIB
        })
    );
    // Another GPU with memory of its own: its budget at start.
    let radeon = adapter(
        "AMD Radeon RX 7900",
        "discrete",
        0x1002,
        Some((24 * GIB, 22 * GIB, false)),
    );
    let pool = DevicePool::for_target(&radeon, &snapshot);
    assert_eq!(
        pool.memory(&snapshot),
        Some(PoolMemory {
            total_bytes: 22 * GIB,
            available_bytes: 22 * GIB
        })
    );
    // Integrated and software devices share system RAM; a GPU nothing measures is not
    // budgeted apart.
    for shared in [
        adapter("Intel Iris Xe", "integrated", 0x8086, None),
        adapter("llvmpipe", "cpu", 0x10005, Some((16 * GIB, 16 * GIB, true))),
    ] {
        assert_eq!(
            DevicePool::for_target(&shared, &snapshot),
            DevicePool::Shared
        );
    }
    let unknown = adapter("Some GPU", "discrete", 0x1234, None);
    let pool = DevicePool::for_target(&unknown, &snapshot);
    assert_eq!(
        (pool.clone(), pool.memory(&snapshot)),
        (DevicePool::Unmeasured, None)
    );
}

#[test]
fn fake_probe_changes_are_seen_and_memory_returns_when_a_process_ends() {
    let fake = FakeProbe::gpus(&[16 * GIB]);
    fake.add_process(100, 500 * MIB);
    fake.add_gpu_process(0, 100, 6 * GIB);
    fake.add_gpu_process(0, 200, 4 * GIB);
    let snapshot = fake.snapshot().unwrap();
    assert_eq!(snapshot.gpus[0].free_bytes, 6 * GIB);
    assert_eq!(snapshot.gpu_bytes_of(100), 6 * GIB);
    assert_eq!(
        snapshot.gpus[0].used_by_processes,
        [(100, 6 * GIB), (200, 4 * GIB)]
    );
    assert_eq!(snapshot.system.available_bytes, 64 * GIB - 500 * MIB);
    assert_eq!(fake.process_bytes(100), Some(500 * MIB));
    assert_eq!(fake.process_bytes(300), None);

    fake.remove_process(100);
    let snapshot = fake.snapshot().unwrap();
    assert_eq!(snapshot.gpus[0].free_bytes, 12 * GIB);
    assert_eq!(snapshot.gpu_bytes_of(100), 0);
    assert_eq!(snapshot.system.available_bytes, 64 * GIB);
    assert_eq!(fake.process_bytes(100), None);
    assert_eq!(fake.snapshots_taken(), 2);

    let ram = FakeProbe::system(8 * GIB, 8 * GIB);
    ram.set_system_available(3 * GIB);
    assert_eq!(ram.snapshot().unwrap().system.available_bytes, 3 * GIB);
    ram.set_system_available(100 * GIB);
    assert_eq!(ram.snapshot().unwrap().system.available_bytes, 8 * GIB);
}

#[test]
fn a_fake_probe_is_usable_as_a_shared_trait_object() {
    let fake = std::sync::Arc::new(FakeProbe::system(4 * GIB, 4 * GIB));
    let probe: std::sync::Arc<dyn MemoryProbe> = fake.clone();
    fake.add_process(7, GIB);
    assert_eq!(probe.snapshot().unwrap().system.available_bytes, 3 * GIB);
    assert_eq!(probe.process_bytes(7), Some(GIB));
}
