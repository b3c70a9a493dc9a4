#!/usr/bin/env bash
# What the lab needs from Debian (`septa lab setup` runs this): DPDK and hugepages first, with
# dpdk-build/setup.sh (without clang/libclang, which only regenerate dpdk-sys's bindings; first,
# so that a build running beside this script can link DPDK as early as possible), then
# PostgreSQL, iproute2, ethtool, curl, python3, ping, util-linux, and the attacker's tools of
# `septa lab traffic` and the end-to-end test (nmap, netcat). Idempotent.
#
# Usage: sudo configs/lab/setup.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PACKAGES=(postgresql iproute2 ethtool curl python3 iputils-ping util-linux nmap netcat-openbsd)
log() { printf 'lab setup: %s\n' "$*"; }

# SEPTA_DPDK_SETUP: where `septa lab setup` found dpdk-build/setup.sh (its own source tree).
SEPTA_DPDK_BINDGEN="${SEPTA_DPDK_BINDGEN:-0}" bash "${SEPTA_DPDK_SETUP:-$HERE/../../dpdk-build/setup.sh}"

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages: ${missing[*]}; run as root: sudo $0" >&2
        exit 1
    fi
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    log "packages present: ${PACKAGES[*]}"
fi
