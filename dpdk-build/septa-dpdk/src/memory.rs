//! Which EAL memory arguments fit this machine: hugepages when they are set up, else `--no-huge`.
//! Pure Rust (reads /proc), usable before the EAL exists; `dpdk-build/hugepages-env.sh` prints
//! the same choice for shell scripts and CI.

use std::fs;

/// Free 2 MiB hugepages needed before we prefer hugepages over `--no-huge` (128 MiB).
const MIN_FREE_HUGEPAGES: u64 = 64;

/// Memory (MiB) for `--no-huge` runs: enough for a few 8K-mbuf pools.
pub const NO_HUGE_MEMORY_MB: u32 = 512;

/// True when hugetlbfs is mounted and enough hugepages are free.
pub fn hugepages_usable() -> bool {
    let mounted = fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    let free = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    mounted && free >= MIN_FREE_HUGEPAGES
}

/// Set to `1` to force `--no-huge` even where hugepages are usable (CI runs both ways).
pub const FORCE_NO_HUGE_ENV: &str = "SEPTA_DPDK_NO_HUGE";

/// EAL memory arguments: `--huge-unlink` (hugepage files removed once mapped) when hugepages are
/// usable and `SEPTA_DPDK_NO_HUGE` is not `1`, else `--no-huge -m 512` (pools must then stay
/// small). Never `--in-memory`, which cannot be combined with `--no-huge`.
pub fn eal_memory_args() -> Vec<String> {
    let forced = std::env::var(FORCE_NO_HUGE_ENV).is_ok_and(|v| v == "1");
    if !forced && hugepages_usable() {
        vec!["--huge-unlink".into()]
    } else {
        vec![
            "--no-huge".into(),
            "-m".into(),
            NO_HUGE_MEMORY_MB.to_string(),
        ]
    }
}

/// A `--file-prefix` value unique to this process and `tag`: every concurrent DPDK process needs
/// its own, or they share (and corrupt) one runtime directory.
pub fn unique_file_prefix(tag: &str) -> String {
    format!("septa-{tag}-{}", std::process::id())
}
