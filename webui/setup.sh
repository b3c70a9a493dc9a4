#!/usr/bin/env bash
# Installs what the web console's build and tests need, idempotently: Node.js and npm (the
# machine's, or Debian's when there are none), Debian's Chromium (driven by playwright-core; no
# browser is downloaded), then the locked npm packages (npm ci).
#
# Usage: bash webui/setup.sh      (as root when packages are missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
log() { printf 'webui/setup.sh: %s\n' "$*"; }

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages: ${need[*]}; run as root: sudo $0" >&2
        exit 1
    fi
    log "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Vite 8, Vitest 4 and playwright-core need Node.js 20.19 or newer (Debian 12's own is 18).
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
    log "Node.js $(node --version) is too old for the console's build tools (need 20.19+)" >&2
    exit 1
fi
log "node $(node --version), npm $(npm --version), $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?')"
npm ci --no-audit --no-fund --loglevel=error
