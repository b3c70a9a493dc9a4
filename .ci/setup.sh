#!/usr/bin/env bash
# Installs everything the whole test suite (.ci/test) needs on a fresh Debian 12 machine, as root,
# idempotently: README.md's test command and CI's .ci/run both start with it, so a step missing
# here fails both (nothing is installed only in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages (DPDK, clang for the bindgen check of dpdk-sys's bindings, libpcap) and hugepages.
bash dpdk-build/setup.sh
# Node.js/npm, Debian's Chromium and the console's npm packages (webui/package-lock.json).
bash webui/setup.sh
# What tests/lab.rs needs to build the lab with Septa routing it (PostgreSQL for its psql check,
# iproute2, nmap, netcat, ...): the lab's own setup (its DPDK step finds everything in place).
bash configs/lab/setup.sh
# python3-venv: control/tests/schemathesis.sh installs its pinned schemathesis into a venv.
if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed'; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
