//! Finds Debian's DPDK with `pkg-config`, compiles the C shim with DPDK's own cflags, generates
//! the bindings and tells rustc what to link.
//!
//! `pkg-config` is run directly (not through the `pkg-config` crate) because the crate drops
//! `-include rte_config.h` and `-march=...`, without which DPDK's headers do not compile.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const FIX: &str = "install DPDK with `sudo dpdk-build/setup.sh` \
                   (or `apt-get install dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev`)";

fn pkg_config(arg: &str) -> Vec<String> {
    let out = match Command::new("pkg-config").args([arg, "libdpdk"]).output() {
        Ok(out) => out,
        Err(e) => fail(&format!("cannot run pkg-config ({e})")),
    };
    if !out.status.success() {
        fail(&format!(
            "pkg-config does not know libdpdk: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Stops the build with a message that names the fix (no panic: a backtrace would bury it).
fn fail(why: &str) -> ! {
    let why = why.replace('\n', " ");
    println!("cargo::error=dpdk-sys: {why}");
    println!("cargo::error=fix: {FIX}");
    eprintln!("dpdk-sys: {why}\nfix: {FIX}");
    std::process::exit(1);
}

/// Cflags as separate arguments: `-include FILE` must stay a pair.
fn cflags() -> Vec<String> {
    pkg_config("--cflags")
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "PKG_CONFIG_SYSROOT_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let cflags = cflags();
    let libs = pkg_config("--libs");

    // The shim: ~10 one-line wrappers, compiled with exactly DPDK's flags.
    let mut cc = cc::Build::new();
    cc.file("csrc/shim.c")
        .include("csrc")
        .opt_level(3)
        .warnings(false);
    for flag in &cflags {
        cc.flag(flag);
    }
    cc.compile("septa_dpdk_shim");

    // Linking: rustc-link-lib reaches the final binary; raw link args from here would not.
    for lib in &libs {
        if let Some(dir) = lib.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(name) = lib.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={name}");
        }
        // `-Wl,--as-needed` and friends: rustc already links with --as-needed.
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let builder = bindgen::Builder::default()
        .header("csrc/shim.h")
        .clang_args(&cflags)
        .clang_arg("-Icsrc")
        .rust_target(bindgen::RustTarget::stable(85, 0).unwrap_or_else(|e| fail(&e.to_string())))
        .rust_edition(bindgen::RustEdition::Edition2024)
        .wrap_unsafe_ops(true)
        .generate_comments(false)
        .layout_tests(true)
        .derive_default(true)
        .prepend_enum_name(false)
        .allowlist_function("septa_.*")
        .allowlist_var("SEPTA_.*")
        .allowlist_function(
            "rte_eal_(init|cleanup|remote_launch|wait_lcore|mp_wait_lcore|process_type)",
        )
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_(socket_id|lcore_count|lcore_is_enabled|lcore_to_socket_id)")
        .allowlist_function("rte_get_(main_lcore|next_lcore)")
        .allowlist_function("rte_pktmbuf_(pool_create|free_bulk)")
        .allowlist_function("rte_mempool_(avail_count|in_use_count|lookup|free)")
        .allowlist_function("rte_eth_(dev_.*|rx_queue_setup|tx_queue_setup|promiscuous_.*)")
        .allowlist_function("rte_eth_(link_get_nowait|stats_get|stats_reset|xstats_.*|macaddr_get)")
        .allowlist_function("rte_eth_(rx_queue_count|find_next_owned_by|find_next)")
        .allowlist_type("rte_eth_(conf|dev_info|stats|xstat|xstat_name|link|rss_conf)")
        .allowlist_type("rte_mbuf|rte_mempool|rte_ether_addr|lcore_function_t|rte_lcore_state_t")
        .allowlist_var("RTE_MAX_(ETHPORTS|LCORE|QUEUES_PER_PORT)")
        .allowlist_var("RTE_ETH_(LINK_.*|NAME_MAX_LEN|XSTATS_NAME_SIZE|MQ_.*|DEV_NO_OWNER)")
        .allowlist_var("RTE_MEMPOOL_NAMESIZE|RTE_MBUF_DEFAULT_(BUF_SIZE|DATAROOM)|SOCKET_ID_ANY")
        .allowlist_var("RTE_ETHER_(ADDR_LEN|MTU|MAX_LEN)")
        .allowlist_var("E(NOTSUP|OPNOTSUPP|INVAL|NODEV|NOMEM|BUSY|ALREADY|EXIST|NOSPC)")
        // Thread-local variables (lcore id, rte_errno): bindgen would emit them as plain statics,
        // which link but crash when read. The shim reads them instead.
        .blocklist_item("per_lcore_.*")
        // Its generated Debug derive does not compile (bitfields in a packed struct).
        .blocklist_type("rte_flow_item_gtp_psc")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    // bindgen panics (rather than erring) when libclang cannot be loaded.
    let bindings = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.generate()))
        .unwrap_or_else(|_| fail("bindgen could not run libclang (is libclang-dev installed?)"))
        .unwrap_or_else(|e| fail(&format!("bindgen failed on DPDK's headers: {e}")));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));
}
