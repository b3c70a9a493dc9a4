#!/usr/bin/env bash
# API contract: schemathesis against the OpenAPI document the API serves (issue 5).
#
# Builds and starts control/examples/api_sandbox (plain HTTP on a free loopback port, a temp data
# directory, no data plane), reads the admin token it prints, and runs a pinned schemathesis from a
# venv (installed from PyPI on first use; offline once cached) with every check but
# positive_data_acceptance: among them no 5xx, documented status codes, content types and headers,
# bodies matching the schema, and invalid input refused with 4xx. Excluded, as docs/api.md says: the SSE stream (never ends) and token deletion
# (the stateful phase would revoke the token it is using). Exits non-zero on any failure; the
# server is stopped on exit.
#
# Environment: SEPTA_VENV (default /var/cache/septa/venv, or ~/.cache/septa/venv when that is not
# writable), SCHEMATHESIS_MAX_EXAMPLES (default 20 per operation), SCHEMATHESIS_SEED (default
# fixed, for reproducible CI runs; "random" for a fresh one).
set -euo pipefail
cd "$(dirname "$0")/../.."

ST_VERSION=4.32.5
if [ -z "${SEPTA_VENV:-}" ]; then
  SEPTA_VENV=/var/cache/septa/venv
  mkdir -p /var/cache/septa 2>/dev/null && [ -w /var/cache/septa ] || SEPTA_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/septa/venv"
fi
VENV="$SEPTA_VENV"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-20}"
SEED="${SCHEMATHESIS_SEED:-20261126}"

# schemathesis, pinned, in its own venv.
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null || true)" != "schemathesis, version $ST_VERSION" ]; then
  echo "schemathesis: installing $ST_VERSION into $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" || { echo "schemathesis: python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

# The sandbox binary (its path from cargo, wherever CARGO_TARGET_DIR points).
bin=$(cargo build -p septa-control --example api_sandbox --locked --message-format=json-render-diagnostics |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "api_sandbox" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "schemathesis: api_sandbox was not built"; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
mkdir -p "$work/data"
"$bin" "$work/data" "$port" >"$work/server.log" 2>&1 &
pid=$!

# Wait for the document to be served (and the token to be printed).
for i in $(seq 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis: api_sandbox exited early:"; cat "$work/server.log"; exit 1
  fi
  if grep -q '^admin token: ' "$work/server.log" &&
    python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "$base/api/v1/openapi.json" 2>/dev/null; then
    break
  fi
  [ "$i" -lt 300 ] || { echo "schemathesis: api_sandbox not serving after 30 s:"; cat "$work/server.log"; exit 1; }
  sleep 0.1
done
token=$(sed -n 's/^admin token: //p' "$work/server.log" | head -n1)

seed_args=(--seed "$SEED")
[ "$SEED" = random ] && seed_args=()

# Every check but positive_data_acceptance, which the semantic refusals the schema cannot express
# fail by design (docs/api.md, "Trying it"). Two refusals added to schemathesis's default lists:
# 412 for invalid input, since writes that need If-Match check the precondition before reading the
# body (RFC 9110 13.2.1 allows it), so an invalid body with a random If-Match gets 412; and 428
# (RFC 6585 Precondition Required) for a missing If-Match.
cat >"$work/schemathesis.toml" <<'EOF'
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 412, 415, 422, 428, 429, "5xx"]

[checks.missing_required_header]
expected-statuses = [400, 401, 403, 406, 415, 422, 428]
EOF

# From the temp dir, so nothing (.hypothesis, reports) lands in the clone.
cd "$work"
set +e
"$VENV/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/api/v1/openapi.json" --url "$base" \
  -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance \
  --exclude-path-regex 'stream|tokens/' \
  --max-examples "$MAX_EXAMPLES" "${seed_args[@]}" \
  --workers 2 --request-timeout 10 --generation-database none \
  --no-color --output-truncate true
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "schemathesis: FAILED (exit $rc); server log tail:"; tail -n 20 "$work/server.log"
fi
exit "$rc"
