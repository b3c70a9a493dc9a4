#!/usr/bin/env bash
# What the lab needs from Debian (`septa lab setup` runs this): PostgreSQL, iproute2, ethtool,
# curl, python3, ping, util-linux, and the attacker's tools of `septa lab traffic` and the
# end-to-end test (nmap, netcat), then DPDK and hugepages with dpdk-build/setup.sh. Idempotent.
#
# Usage: sudo configs/lab/setup.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PACKAGES=(postgresql iproute2 ethtool curl python3 iputils-ping util-linux nmap netcat-openbsd)
log() { printf 'lab setup: %s\n' "$*"; }

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
# SEPTA_DPDK_SETUP: where `septa lab setup` found dpdk-build/setup.sh (its own source tree).
bash "${SEPTA_DPDK_SETUP:-$HERE/../../dpdk-build/setup.sh}"
