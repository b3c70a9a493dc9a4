#!/usr/bin/env bash
# IPFIX interop check: Septa's exporter (control/examples/ipfix_send.rs) against nfdump's
# collector (Debian package `nfdump`: nfcapd + nfdump) on loopback.
#
# Passes when nfdump decodes every record sent, with the right addresses, ports, packet and
# byte totals. (nfdump does not print unknown enterprise elements; the verdict and rule-id
# fields are checked by the netflow_parser round trip in `cargo test -p septa-control export`.)
#
# Usage: bench/scripts/ipfix-interop.sh [RECORDS]   (needs nfcapd/nfdump; skips cleanly without)
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-1000}
port=${IPFIX_PORT:-47390}
if ! command -v nfcapd >/dev/null || ! command -v nfdump >/dev/null; then
    echo "skip: nfcapd/nfdump not installed (apt-get install nfdump)"
    exit 0
fi
work=$(mktemp -d)
cleanup() { [ -n "${cap:-}" ] && kill "$cap" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build -q -p septa-control --example ipfix_send
sender="${CARGO_TARGET_DIR:-target}/debug/examples/ipfix_send"

nfcapd -w "$work" -p "$port" -b 127.0.0.1 -t 60 >"$work/nfcapd.log" 2>&1 &
cap=$!
sleep 1
sent=$("$sender" "127.0.0.1:$port" "$records")
echo "septa: $sent"
sleep 1
kill -TERM "$cap"; wait "$cap" 2>/dev/null || true; cap=
nfdump -R "$work" -q -N -o "fmt:%sa,%da,%pr,%dp,%pkt,%byt" >"$work/out.csv"
got=$(grep -c . "$work/out.csv" || true)
sent_n=$(sed -E 's/.*sent_records=([0-9]+).*/\1/' <<<"$sent")
echo "nfdump: records=$got"
head -n 3 "$work/out.csv" | sed 's/^/  /'
if [ "$got" != "$sent_n" ]; then
    echo "FAIL: sent $sent_n records, nfdump decoded $got"; cat "$work/nfcapd.log"; exit 1
fi
# Every decoded record is one the generator can produce: 10.0.x.y hosts, TCP 1000-1003 or UDP 53.
bad=$(tr -d ' ' <"$work/out.csv" | grep -Ev '^10\.0\.[0-3]\.[0-9]+,10\.0\.[0-3]\.[0-9]+,(6,100[0-3]|17,53),[0-9]+,[0-9]+$' || true)
if [ -n "$bad" ]; then
    echo "FAIL: unexpected records:"; head -n 5 <<<"$bad"; exit 1
fi
sums=$(tr -d ' ' <"$work/out.csv" | awk -F, '{p+=$5; b+=$6} END {printf "packets=%d bytes=%d", p, b}')
want=$(grep -oE 'packets=[0-9]+ bytes=[0-9]+' <<<"$sent")
if [ "$sums" != "$want" ]; then
    echo "FAIL: totals differ: septa $want, nfdump $sums"; exit 1
fi
echo "ok: nfdump decoded all $got records with the expected addresses, protocols and ports; $sums"
