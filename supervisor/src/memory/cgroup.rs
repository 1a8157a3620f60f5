//! The memory limit of this process's cgroup, so that a container's limit counts as the
//! machine's size.
//!
//! The process's cgroup comes from `/proc/self/cgroup` (`0::/path` for cgroup v2, a line
//! whose controllers include `memory` for v1) and the hierarchies' mount points from
//! `/proc/self/mountinfo`. From that directory up to the mount point, each level's limit
//! (`memory.max` in v2, `memory.limit_in_bytes` in v1) and usage (`memory.current`,
//! `memory.usage_in_bytes`) are read; the tightest level wins. Usage counts the page
//! cache, so inactive file pages (`inactive_file`, `total_inactive_file` in
//! `memory.stat`), which the kernel reclaims before it kills anything, are not counted as
//! used. `max`, v1's near-2^63 "unlimited" and anything unreadable or unparsable mean no
//! limit at that level: this never fails, it only finds less.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The limit that binds this process, and what it leaves free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupMemory {
    /// The lowest memory limit from the process's cgroup up to the root.
    pub limit_bytes: u64,
    /// The least room left under any of those limits (limit minus usage, inactive file
    /// pages not counted as used).
    pub available_bytes: u64,
}

/// Reads cgroup files below a root directory: `/` on a real system, a temporary
/// directory holding `proc/self/...` and `sys/fs/cgroup/...` in tests.
#[derive(Debug, Clone)]
pub struct CgroupReader {
    root: PathBuf,
}

/// A limit file's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// A limit in bytes.
    Bytes(u64),
    /// `max`, or v1's page-rounded 2^63 (anything at or above 2^62 bytes).
    Unlimited,
}

/// The files one cgroup version uses.
struct Version {
    limit: &'static str,
    usage: &'static str,
    inactive_key: &'static str,
}

const V2: Version = Version {
    limit: "memory.max",
    usage: "memory.current",
    inactive_key: "inactive_file",
};

const V1: Version = Version {
    limit: "memory.limit_in_bytes",
    usage: "memory.usage_in_bytes",
    inactive_key: "total_inactive_file",
};

/// v1 writes "no limit" as the largest page-aligned `i64`; no machine has 4 EiB.
const UNLIMITED_FROM: u64 = 1 << 62;

/// Deeper cgroup paths than this are not walked (they do not occur; this bounds the work).
const MAX_DEPTH: usize = 64;

/// A cgroup hierarchy's mount: the hierarchy path mounted (`root`) and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub(crate) root: String,
    pub(crate) point: String,
}

/// Where each hierarchy is mounted, as `/proc/self/mountinfo` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Mounts {
    pub(crate) v2: Option<Mount>,
    pub(crate) v1_memory: Option<Mount>,
}

/// The process's cgroup paths, as `/proc/self/cgroup` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OwnCgroups {
    pub(crate) v2: Option<String>,
    pub(crate) v1_memory: Option<String>,
}

impl CgroupReader {
    /// Reads this machine's files.
    pub fn system() -> Self {
        Self::with_root("/")
    }

    /// Reads the files below `root` instead of `/`.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The limit binding this process, or `None` when there is none (or nothing could be
    /// read). Both versions are looked at, since hybrid systems mount the memory
    /// controller in v1 beside an empty v2 hierarchy.
    pub fn read(&self) -> Option<CgroupMemory> {
        let own = self
            .read_text("/proc/self/cgroup")
            .map(|text| parse_proc_cgroup(&text))
            .unwrap_or_default();
        let mounts = self
            .read_text("/proc/self/mountinfo")
            .map(|text| parse_mountinfo(&text))
            .unwrap_or_else(conventional_mounts);
        let v2 = own
            .v2
            .zip(mounts.v2)
            .and_then(|(path, mount)| self.tightest(&mount, &path, &V2));
        let v1 = own
            .v1_memory
            .zip(mounts.v1_memory)
            .and_then(|(path, mount)| self.tightest(&mount, &path, &V1));
        tighter(v2, v1)
    }

    /// The tightest limit from the cgroup's directory up to the mount point.
    fn tightest(
        &self,
        mount: &Mount,
        cgroup_path: &str,
        version: &Version,
    ) -> Option<CgroupMemory> {
        let mut dir = PathBuf::from(&mount.point);
        let mut dirs = vec![dir.clone()];
        for part in relative_to_mount(cgroup_path, &mount.root) {
            dir.push(part);
            dirs.push(dir.clone());
        }
        dirs.iter()
            .map(|dir| self.level(dir, version))
            .fold(None, tighter)
    }

    /// One directory's limit and room, or `None` when it sets no limit.
    fn level(&self, dir: &Path, version: &Version) -> Option<CgroupMemory> {
        let limit = match parse_limit(&self.read_text(dir.join(version.limit))?)? {
            Limit::Bytes(bytes) => bytes,
            Limit::Unlimited => return None,
        };
        let usage = self
            .read_text(dir.join(version.usage))
            .and_then(|text| parse_bytes(&text))
            .unwrap_or(0);
        let inactive = self
            .read_text(dir.join("memory.stat"))
            .and_then(|text| stat_value(&text, version.inactive_key))
            .unwrap_or(0);
        Some(CgroupMemory {
            limit_bytes: limit,
            available_bytes: limit.saturating_sub(usage.saturating_sub(inactive)),
        })
    }

    /// The text of the file at absolute `path` below the root, or `None` if unreadable.
    fn read_text(&self, path: impl AsRef<Path>) -> Option<String> {
        let relative = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        fs::read_to_string(self.root.join(relative)).ok()
    }
}

/// The tighter of two limits: the lower limit and the lower room, each on its own.
fn tighter(a: Option<CgroupMemory>, b: Option<CgroupMemory>) -> Option<CgroupMemory> {
    match (a, b) {
        (Some(a), Some(b)) => Some(CgroupMemory {
            limit_bytes: a.limit_bytes.min(b.limit_bytes),
            available_bytes: a.available_bytes.min(b.available_bytes),
        }),
        (a, b) => a.or(b),
    }
}

/// The usual mount points, for when `/proc/self/mountinfo` cannot be read.
fn conventional_mounts() -> Mounts {
    Mounts {
        v2: Some(Mount {
            root: "/".into(),
            point: "/sys/fs/cgroup".into(),
        }),
        v1_memory: Some(Mount {
            root: "/".into(),
            point: "/sys/fs/cgroup/memory".into(),
        }),
    }
}

/// The directories below the mount point that lead to the cgroup: the cgroup path less
/// the mounted root. A path outside the mounted root, or with `.` or `..` in it, gives
/// none (the mount point itself is used).
pub(crate) fn relative_to_mount<'a>(cgroup_path: &'a str, mount_root: &str) -> Vec<&'a str> {
    let rest = if mount_root == "/" {
        Some(cgroup_path)
    } else {
        cgroup_path
            .strip_prefix(mount_root)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let Some(rest) = rest else {
        return Vec::new();
    };
    let parts: Vec<&str> = rest.split('/').filter(|part| !part.is_empty()).collect();
    let plain = parts.iter().all(|part| {
        matches!(
            Path::new(part).components().next(),
            Some(Component::Normal(_))
        )
    });
    if plain && parts.len() <= MAX_DEPTH {
        parts
    } else {
        Vec::new()
    }
}

/// Parses `/proc/PID/cgroup`: `hierarchy-id:controllers:path` per line.
pub(crate) fn parse_proc_cgroup(text: &str) -> OwnCgroups {
    let mut own = OwnCgroups::default();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            own.v2.get_or_insert_with(|| path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            own.v1_memory.get_or_insert_with(|| path.to_string());
        }
    }
    own
}

/// Parses `/proc/PID/mountinfo` for the cgroup v2 mount and the v1 memory mount:
/// `id parent major:minor root mount-point options [optional...] - fstype source super`.
pub(crate) fn parse_mountinfo(text: &str) -> Mounts {
    let mut mounts = Mounts::default();
    for line in text.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let before: Vec<&str> = before.split_whitespace().collect();
        let after: Vec<&str> = after.split_whitespace().collect();
        let (Some(root), Some(point), Some(fstype)) = (before.get(3), before.get(4), after.first())
        else {
            continue;
        };
        let mount = Mount {
            root: root.to_string(),
            point: point.to_string(),
        };
        let super_options = after.get(2).copied().unwrap_or("");
        match *fstype {
            "cgroup2" => {
                mounts.v2.get_or_insert(mount);
            }
            "cgroup" if super_options.split(',').any(|option| option == "memory") => {
                mounts.v1_memory.get_or_insert(mount);
            }
            _ => {}
        }
    }
    mounts
}

/// Parses a limit file: `max`, or a number of bytes. `None` for anything else.
pub(crate) fn parse_limit(text: &str) -> Option<Limit> {
    let text = text.trim();
    if text == "max" {
        return Some(Limit::Unlimited);
    }
    let bytes = parse_bytes(text)?;
    Some(if bytes >= UNLIMITED_FROM {
        Limit::Unlimited
    } else {
        Limit::Bytes(bytes)
    })
}

/// Parses a file holding one decimal number of bytes.
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a `memory.stat` file (`key value` per line).
pub(crate) fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| parse_bytes(value)).flatten()
    })
}
