#!/usr/bin/env bash
# The README's first command: a fresh Debian 12 machine (Rust and cargo installed) to a running
# lab, as root. The Debian packages install (DPDK first; no clang: the DPDK bindings are checked
# in) while cargo already compiles the crates that need none of them (all but dpdk-sys, which
# links DPDK, and what uses it); then the rest is built and `septa lab up` starts the lab.
#
# Usage: sudo bash configs/lab/quickstart.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
log() { printf 'quickstart: %s\n' "$*"; }
if [[ $(id -u) -ne 0 ]]; then
    log "run as root: it installs Debian packages and builds network namespaces (sudo $0)" >&2
    exit 1
fi
command -v cargo >/dev/null || { log "cargo is not installed (https://rustup.rs)" >&2; exit 1; }

# --keep-going: if cargo reaches dpdk-sys before apt has installed libdpdk-dev,
# that one build script fails (a failure is not cached: the second cargo runs it again) and
# everything that does not depend on it is still built.
early_log=$(mktemp /tmp/septa-quickstart.XXXXXX.log)
cargo build -p septa --features dpdk --keep-going >"$early_log" 2>&1 &
early=$!
trap 'kill "$early" 2>/dev/null || true' EXIT
log "building in the background (log: $early_log) while the Debian packages install"
bash configs/lab/setup.sh
# The console: a debug build serves webui/dist from disk, so it is built here (a fresh clone has
# none). Its tools need Node.js 20.19+ (Debian 12's own nodejs is 18); without it the lab still
# runs and the API answers, and https://127.0.0.1:8080 says how to build the console.
if [[ -f webui/dist/index.html ]]; then
    log "console already built (webui/dist)"
elif command -v node >/dev/null && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
    log "building the console with node $(node --version)"
    (cd webui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) \
        || log "the console build failed; the lab runs without it (see webui/README.md)" >&2
else
    log "Node.js 20.19+ not found: the lab runs without the console (see webui/README.md)" >&2
fi
log "packages done; waiting for the build"
wait "$early" || true
trap - EXIT
cargo run -p septa --features dpdk -- lab up
