#!/usr/bin/env bash
# Installs Debian's DPDK (and what dpdk-sys needs to build) and sets up 2 MiB hugepages.
# Idempotent: installs only missing packages, never lowers an existing hugepage count.
# Where hugepages cannot be set up (container, no permission) it says so and exits 0:
# Septa then runs with `--no-huge` and small mempools (see hugepages-env.sh).
#
# Usage: sudo dpdk-build/setup.sh      (SEPTA_HUGEPAGES=N to ask for N pages, default 256)
set -euo pipefail

PACKAGES=(dpdk dpdk-dev libdpdk-dev pkg-config libpcap-dev)
# clang and libclang only regenerate (or check) dpdk-sys's checked-in bindings (its `bindgen`
# feature; the test suite checks them): the default for a development machine. The lab's
# quickstart sets SEPTA_DPDK_BINDGEN=0 and saves their download (about a third of the packages).
if [[ "${SEPTA_DPDK_BINDGEN:-1}" != 0 ]]; then
    PACKAGES+=(clang libclang-dev)
fi
# Not needed to build, only faster: .cargo/cc-link.sh links with mold when it is installed.
OPTIONAL=(mold)
WANT_PAGES="${SEPTA_HUGEPAGES:-256}"
HUGE_DIR=/dev/hugepages
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'setup.sh: %s\n' "$*"; }

# --- packages -------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages: ${missing[*]}; run as root: sudo $0" >&2
        exit 1
    fi
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "packages present: ${PACKAGES[*]}"
fi
for pkg in "${OPTIONAL[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' &&
        [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" ||
            log "could not install $pkg (optional: a faster linker); builds use the default one"
    fi
done
if ! version="$(pkg-config --modversion libdpdk 2>/dev/null)"; then
    log "pkg-config cannot find libdpdk after installation; check libdpdk-dev" >&2
    exit 1
fi
log "libdpdk $version"

# --- hugepages ------------------------------------------------------------------------------
hugetlbfs_mounted() { awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; }

pages="$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)"
if ((pages < WANT_PAGES)); then
    if { echo "$WANT_PAGES" >/proc/sys/vm/nr_hugepages; } 2>/dev/null; then
        pages="$(cat /proc/sys/vm/nr_hugepages)"
        ((pages >= WANT_PAGES)) || log "only $pages of $WANT_PAGES hugepages could be reserved"
    else
        log "cannot write /proc/sys/vm/nr_hugepages (not root, or a container); keeping $pages pages"
    fi
fi
if ((pages > 0)) && ! hugetlbfs_mounted; then
    mkdir -p "$HUGE_DIR" 2>/dev/null || true
    mount -t hugetlbfs -o pagesize=2M nodev "$HUGE_DIR" 2>/dev/null ||
        log "cannot mount hugetlbfs on $HUGE_DIR"
fi

args="$("$HERE/hugepages-env.sh")"
if [[ "$args" == --no-huge* ]]; then
    log "hugepages are not usable here: Septa will run with --no-huge (small mempools)."
    log "EAL memory args: $args"
    exit 0
fi
log "hugepages: $pages x 2 MiB reserved, $(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo) free, hugetlbfs mounted"
log "EAL memory args: $args"
