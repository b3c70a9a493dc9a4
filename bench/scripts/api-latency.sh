#!/usr/bin/env bash
# Control API latency under data-plane load (issue 5 target: p99 <= 50 ms at 500 requests/s
# with the data plane at full load), side by side with an idle data plane, in the same run.
#
# For each mode, `septa run` (release, DPDK feature) starts on two net_pcap vdevs with the API
# on loopback HTTPS (self-signed certificate):
#   loaded: both ports replay configs/samples/demo.pcap forever (infinite_rx=1), so the worker
#           polls and forwards/drops as fast as it can; the demo policy is enforced.
#   idle:   the same gateway, ports fed by an empty capture (the worker polls, no packets).
# Load: oha at a fixed 500 requests/s (latency-corrected, so queueing counts) over a read-heavy
# mix, GET /api/v1/{flows?limit=50, policy, counters, revisions} and /metrics, chosen at random
# per request, plus one policy commit per second (alternating two versions, each an RCU
# publish to the workers) timed separately with curl.
#
# Usage: bench/scripts/api-latency.sh [SECONDS] [RATE]      (default 30 s at 500 requests/s)
# SEPTA_BIN=/path/to/septa runs that binary instead of building one. With
# SEPTA_BASELINE_BIN=/path/to/an/older/septa, the loaded mode also runs on that binary ("base"
# row), side by side in the same run.
# Installs what it needs: oha (`cargo install --locked oha` into $SEPTA_TOOLS, default
# ~/.cache/septa-tools), curl and python3 (Debian) if missing. Needs DPDK (libdpdk-dev) for the
# `dpdk` feature; skips cleanly without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
rate=${2:-500}
tools=${SEPTA_TOOLS:-$HOME/.cache/septa-tools}
target=${CARGO_TARGET_DIR:-target}

if ! pkg-config --exists libdpdk 2>/dev/null; then
    echo "skip: DPDK not installed (apt-get install libdpdk-dev); septa run needs it"
    exit 0
fi
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
oha="$tools/bin/oha"
if [ ! -x "$oha" ]; then
    echo "installing oha into $tools (cargo install --locked oha)"
    cargo install -q --locked --root "$tools" oha
fi

if [ -n "${SEPTA_BIN:-}" ]; then
    septa=$SEPTA_BIN
else
    cargo build -q --release --features dpdk --bin septa
    septa="$target/release/septa"
fi

work=$(mktemp -d)
gw=
cleanup() {
    [ -n "${commits:-}" ] && kill "$commits" 2>/dev/null || true
    [ -n "$gw" ] && kill -INT "$gw" 2>/dev/null && wait "$gw" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# An empty capture: the pcap global header only (Ethernet link type).
printf '\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x01\x00\x00\x00' \
    >"$work/empty.pcap"
cp configs/samples/demo.pcap "$work/traffic.pcap"
cp configs/policies/demo.yaml "$work/seed.yaml"
# The second version: another policy name (any change to the document gives a new revision;
# the demo already has metadata labels, so adding a second `labels` key would be rejected).
python3 - "$work" <<'EOF'
import json, sys
d = sys.argv[1]
a = open(f"{d}/seed.yaml").read()
b = a.replace("metadata:\n  name: demo-hospital\n", "metadata:\n  name: demo-hospital-v2\n", 1)
assert a != b, "could not derive a second policy version"
for name, text in (("a", a), ("b", b)):
    json.dump({"policy": text, "reason": "api latency bench"}, open(f"{d}/commit-{name}.json", "w"))
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start MODE -> sets gw (pid), port, tok (bearer token)
start() {
    local mode=$1 dir="$work/$1" rx
    mkdir -p "$dir"
    port=$(free_port)
    if [ "$mode" != idle ]; then
        rx="rx_pcap=$work/traffic.pcap,infinite_rx=1"
    else
        rx="rx_pcap=$work/empty.pcap"
    fi
    cat >"$dir/gw.toml" <<EOF
[dpdk]
eal_args = ["-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-telemetry", "--file-prefix", "septa-apibench-$$-$mode",
            "--vdev=net_pcap0,$rx,tx_pcap=/dev/null", "--vdev=net_pcap1,$rx,tx_pcap=/dev/null"]
mempool_size = 8191
mempool_cache = 256
rx_descriptors = 512
tx_descriptors = 512

[[ports]]
name = "net_pcap0"
[[ports]]
name = "net_pcap1"

[[pairs]]
ports = ["net_pcap0", "net_pcap1"]

[dataplane]
policy = "$work/seed.yaml"

[control]
listen = "127.0.0.1:$port"
data_dir = "$dir/state"
EOF
    local bin=$septa
    [ "$mode" = base ] && bin=$SEPTA_BASELINE_BIN
    "$bin" run --config "$dir/gw.toml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    gw=$!
    local pw=
    for _ in $(seq 1 600); do
        pw=$(sed -nE 's/.*created user `admin` with password ([0-9a-f]+).*/\1/p' "$dir/stderr.log")
        if [ -n "$pw" ] && curl -sk --max-time 2 "https://127.0.0.1:$port/healthz" >/dev/null; then
            break
        fi
        if ! kill -0 "$gw" 2>/dev/null; then
            echo "FAIL: septa run ($mode) exited:"; tail -n 20 "$dir/stderr.log"; exit 1
        fi
        sleep 0.1
    done
    [ -n "$pw" ] || { echo "FAIL: no admin password from septa run ($mode)"; exit 1; }
    local base="https://127.0.0.1:$port/api/v1"
    curl -sk -c "$dir/jar" -o "$dir/login.json" -H 'content-type: application/json' \
        -d "{\"user\":\"admin\",\"password\":\"$pw\"}" "$base/auth/login"
    local csrf
    csrf=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf_token"])' "$dir/login.json")
    curl -sk -b "$dir/jar" -o "$dir/token.json" -H 'content-type: application/json' \
        -H "x-csrf-token: $csrf" -d '{"id":"bench","role":"admin","reason":"api latency bench"}' \
        "$base/tokens"
    tok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$dir/token.json")
}

rx_packets() {
    curl -sk -H "authorization: Bearer $tok" "https://127.0.0.1:$port/metrics" |
        awk '/^septa_port_rx_packets_total/ {s += $2} END {printf "%d", s}'
}

# measure MODE -> appends one line of results to $work/results
measure() {
    local mode=$1 dir="$work/$1"
    start "$mode"
    local base="https://127.0.0.1:$port/api/v1"
    # Warm up (TLS sessions, first flows).
    for _ in 1 2 3; do curl -sk -o /dev/null -H "authorization: Bearer $tok" "$base/policy"; done
    sleep 2
    local rx0 t0
    rx0=$(rx_packets); t0=$(date +%s.%N)
    (
        i=0
        while :; do
            f="$work/commit-$([ $((i % 2)) = 0 ] && echo b || echo a).json"
            r=$(curl -sk -o "$dir/commit.out" -w '%{http_code} %{time_total}' \
                -H "authorization: Bearer $tok" -H 'content-type: application/json' \
                -H 'if-match: *' --data-binary "@$f" "$base/policy/commit")
            echo "$r" >>"$dir/commits.txt"
            case $r in
                2*) ;;
                *) { echo "$r"; cat "$dir/commit.out"; echo; } >>"$dir/commit-errors.txt" ;;
            esac
            i=$((i + 1))
            sleep 1
        done
    ) &
    commits=$!
    # In oha's --rand-regex-url a dot is literal (an escaped one becomes a random character).
    "$oha" -z "${secs}s" -q "$rate" -c 32 --latency-correction --no-tui --insecure \
        --output-format json -H "authorization: Bearer $tok" \
        --rand-regex-url "https://127.0.0.1:$port/(api/v1/flows\\?limit=50|api/v1/policy|api/v1/counters|api/v1/revisions|metrics)" \
        >"$dir/oha.json"
    kill "$commits" 2>/dev/null || true; wait "$commits" 2>/dev/null || true; commits=
    if [ -s "$dir/commit-errors.txt" ]; then
        echo "# $mode: first failed commit:" >&2; head -c 600 "$dir/commit-errors.txt" >&2; echo >&2
    fi
    local rx1 t1 load
    rx1=$(rx_packets); t1=$(date +%s.%N)
    load=$(cut -d' ' -f1 /proc/loadavg)
    kill -INT "$gw"; wait "$gw" 2>/dev/null || true; gw=
    python3 - "$mode" "$dir" "$rx0" "$rx1" "$t0" "$t1" "$load" >>"$work/results" <<'EOF'
import json, sys
mode, d, rx0, rx1, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
load = float(sys.argv[7])
o = json.load(open(f"{d}/oha.json"))
s, p = o["summary"], o["latencyPercentiles"]
codes = o.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
total = sum(codes.values())
c = [l.split() for l in open(f"{d}/commits.txt") if l.strip()]
ct = sorted(float(t) * 1e3 for _, t in c)
cok = sum(1 for code, _ in c if code.startswith("2"))
pct = lambda v, q: v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
mpps = (rx1 - rx0) / (t1 - t0) / 1e6
codes_c = {}
for code, _ in c:
    codes_c[code] = codes_c.get(code, 0) + 1
print(f"# {mode}: commit statuses {dict(sorted(codes_c.items()))}", file=sys.stderr)
print(f"{mode:7} {s['requestsPerSec']:7.1f} {p['p50']*1e3:8.2f} {p['p99']*1e3:8.2f} {s['slowest']*1e3:8.1f} "
      f"{ok:6}/{total:<6} {cok:3}/{len(c):<3} {pct(ct, .5):8.1f} {pct(ct, .99):8.1f} {mpps:8.3f} {load:6.2f}")
EOF
}

echo "septa API latency: ${rate} requests/s for ${secs} s per mode (oha, latency-corrected), plus 1 commit/s"
measure idle
measure loaded
if [ -n "${SEPTA_BASELINE_BIN:-}" ]; then
    measure base
fi
echo
echo "mode    req/s    p50 ms   p99 ms  max ms  2xx/total     commits  c.p50 ms c.p99 ms  dp Mpps  load1"
cat "$work/results"
python3 - "$work/results" <<'EOF'
import sys
rows = {l.split()[0]: l.split() for l in open(sys.argv[1])}
if "idle" in rows and "loaded" in rows:
    i, l = float(rows["idle"][3]), float(rows["loaded"][3])
    print(f"\np99 loaded / idle: {l / i:.2f}x; target: p99 <= 50 ms at 500 requests/s with the data plane at full load: "
          + ("met" if l <= 50 else "NOT met"))
EOF
