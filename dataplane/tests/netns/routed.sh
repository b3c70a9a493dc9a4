#!/usr/bin/env bash
# Routed-mode end-to-end harness: two hosts in two subnets, a gateway between them, real
# `ping` (IPv4 and IPv6, the gateway's own addresses and across it, TTL expiry), a TCP
# transfer (python3 http.server + curl, checksummed), and a TCP and a UDP flow the policy
# allows and one of each it denies (configs/policies/routed-lab.yaml: TCP/8080 and UDP/5353
# allowed, TCP/9090 and UDP/9999 denied; the kernel router enforces nothing, so in kernel mode
# every flow must get through, which checks the probes themselves).
#
#   routed.sh kernel    the reference: the Linux kernel routes in namespace rt-gw. Checks the
#                       harness itself (namespaces, addresses, routes, the tests).
#   routed.sh septa     `septa run --config configs/routed-lab.toml` inside rt-gw, attached to
#                       the same veth ends through net_af_packet vdevs. Needs a binary built
#                       with `--features dpdk` (SEPTA=path, default target/debug/septa).
#   routed.sh setup | teardown   only build or remove the namespaces.
#
# Topology (all made here, removed on exit, also on failure):
#   rt-h1: h1 10.1.0.10/24 fd00:1::10/64 ── rt-gw1 [rt-gw] rt-gw2 ── h2 10.2.0.20/24 fd00:2::20/64 :rt-h2
#   gateway addresses 10.1.0.1 / fd00:1::1 and 10.2.0.1 / fd00:2::1 (kernel mode: on the veth ends;
#   septa mode: owned by septa, the veth ends carry no address).
# Traffic stays inside these namespaces. Exit status: 0 all passed, 1 a check failed, 2 setup
# or prerequisites missing.
set -euo pipefail

MODE=${1:-kernel}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
SEPTA=${SEPTA:-$ROOT/target/debug/septa}
CONFIG=${CONFIG:-$ROOT/configs/routed-lab.toml}
WORK=$(mktemp -d /tmp/septa-routed.XXXXXX)
GW_MAC1=02:00:00:00:01:01
GW_MAC2=02:00:00:00:02:01
SEPTA_PID=
PROBE_PID=
FAILED=0

log() { printf 'routed.sh: %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { log "missing $1 ($2)"; exit 2; }; }

teardown() {
    if [ -n "$SEPTA_PID" ]; then
        kill -TERM "$SEPTA_PID" 2>/dev/null || true
        wait "$SEPTA_PID" 2>/dev/null || true
        SEPTA_PID=
    fi
    for ns in rt-h1 rt-h2 rt-gw; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf /var/run/dpdk/septa-routed
}

cleanup() {
    teardown
    rm -rf "$WORK"
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

setup() {
    teardown
    for ns in rt-h1 rt-h2 rt-gw; do ip netns add "$ns"; done
    for i in 1 2; do
        ip link add "h$i" netns "rt-h$i" type veth peer name "rt-gw$i" netns rt-gw
        in_ns "rt-h$i" ip link set lo up
        in_ns "rt-h$i" ip link set "h$i" up
        # Large TCP segments vanish through af_packet unless every offload is off.
        in_ns "rt-h$i" ethtool -K "h$i" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
        in_ns rt-gw ethtool -K "rt-gw$i" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    done
    in_ns rt-gw ip link set lo up
    in_ns rt-gw ip link set rt-gw1 address "$GW_MAC1"
    in_ns rt-gw ip link set rt-gw2 address "$GW_MAC2"
    in_ns rt-h1 ip addr add 10.1.0.10/24 dev h1
    in_ns rt-h1 ip -6 addr add fd00:1::10/64 dev h1 nodad
    in_ns rt-h1 ip route add default via 10.1.0.1
    in_ns rt-h1 ip -6 route add default via fd00:1::1
    in_ns rt-h2 ip addr add 10.2.0.20/24 dev h2
    in_ns rt-h2 ip -6 addr add fd00:2::20/64 dev h2 nodad
    in_ns rt-h2 ip route add default via 10.2.0.1
    in_ns rt-h2 ip -6 route add default via fd00:2::1
}

gateway_kernel() {
    in_ns rt-gw sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    in_ns rt-gw ip addr add 10.1.0.1/24 dev rt-gw1
    in_ns rt-gw ip addr add 10.2.0.1/24 dev rt-gw2
    in_ns rt-gw ip -6 addr add fd00:1::1/64 dev rt-gw1 nodad
    in_ns rt-gw ip -6 addr add fd00:2::1/64 dev rt-gw2 nodad
    in_ns rt-gw ip link set rt-gw1 up
    in_ns rt-gw ip link set rt-gw2 up
}

gateway_septa() {
    [ -x "$SEPTA" ] || { log "no septa binary at $SEPTA (cargo build --features dpdk)"; exit 2; }
    # The kernel must stay silent on the gateway ends: no addresses, no IPv6 (no DAD, no RS).
    for i in 1 2; do
        in_ns rt-gw sysctl -qw "net.ipv6.conf.rt-gw$i.disable_ipv6=1"
        in_ns rt-gw ip link set "rt-gw$i" up
    done
    "$SEPTA" check-config "$CONFIG" >"$WORK/check-config.txt" || { cat "$WORK/check-config.txt"; exit 2; }
    # Directly, not through in_ns: `ip netns exec` execs septa, so $! is septa itself (a
    # backgrounded shell function would be a subshell that ignores the signals sent to it).
    ip netns exec rt-gw "$SEPTA" run --config "$CONFIG" >"$WORK/septa.log" 2>&1 &
    SEPTA_PID=$!
    # Wait (bounded) until the gateway answers ARP for its address.
    for _ in $(seq 1 60); do
        if ! kill -0 "$SEPTA_PID" 2>/dev/null; then
            log "septa exited:"; cat "$WORK/septa.log"; exit 2
        fi
        if in_ns rt-h1 ping -c 1 -W 1 10.1.0.1 >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    log "septa did not answer on 10.1.0.1 within 30 s:"; cat "$WORK/septa.log"; exit 2
}

check() {
    local name=$1; shift
    if "$@" >"$WORK/out.txt" 2>&1; then
        log "ok    $name"
    else
        log "FAIL  $name"; sed 's/^/    /' "$WORK/out.txt"; FAILED=1
    fi
}

ttl_expires_at_gateway() {
    # A TTL of 1 expires at the gateway, which answers from its ingress address.
    local out
    out=$(in_ns rt-h1 ping -c 1 -W 2 -t 1 "$1" 2>&1 || true)
    echo "$out"
    grep -q "From $2.*[Tt]ime to live exceeded" <<<"$out"
}

hop_limit_expires_at_gateway() {
    local out
    out=$(in_ns rt-h1 ping -6 -c 1 -W 2 -t 1 "$1" 2>&1 || true)
    echo "$out"
    grep -q "From $2.*[Tt]ime exceeded" <<<"$out"
}

tcp_transfer() {
    # 2 MiB through an HTTP server in rt-h2, fetched from rt-h1, checksums compared.
    local addr=$1 url=$2
    head -c 2097152 /dev/urandom >"$WORK/blob"
    in_ns rt-h2 python3 -m http.server 8080 --bind "$addr" --directory "$WORK" >/dev/null 2>&1 &
    local server=$!
    local ok=1
    for _ in $(seq 1 20); do
        if in_ns rt-h1 curl -sS -g --max-time 20 -o "$WORK/fetched" "$url/blob"; then ok=0; break; fi
        sleep 0.5
    done
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    [ $ok -eq 0 ] && cmp "$WORK/blob" "$WORK/fetched"
}

# A TCP listener on 9090 and UDP echo servers on 5353 and 9999 in rt-h2 (v4 and v6).
start_probe_servers() {
    in_ns rt-h2 python3 -c '
import socket, threading
def tcp(fam, addr):
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 9090)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"hello\n"); c.close()
def udp(fam, addr, port):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((addr, port))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
for fam, addr in ((socket.AF_INET, "10.2.0.20"), (socket.AF_INET6, "fd00:2::20")):
    threading.Thread(target=tcp, args=(fam, addr), daemon=True).start()
    for port in (5353, 9999):
        threading.Thread(target=udp, args=(fam, addr, port), daemon=True).start()
threading.Event().wait()' >"$WORK/probe-servers.log" 2>&1 &
    PROBE_PID=$!
    sleep 0.5
}

# probe tcp|udp ADDR PORT open|blocked: from rt-h1, a TCP connect / UDP echo within 2 s (3 tries
# for open: the first packets may be lost while the gateway resolves the neighbour).
probe() {
    local proto=$1 addr=$2 port=$3 want=$4 tries=1 got=blocked
    [ "$want" = open ] && tries=3
    for _ in $(seq 1 $tries); do
        if in_ns rt-h1 python3 -c '
import socket, sys
proto, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(2)
try:
    if proto == "tcp":
        s.connect((addr, port)); s.recv(16)
    else:
        s.sendto(b"probe", (addr, port)); s.recvfrom(64)
except OSError as e:
    print(f"{proto} {addr} {port}: {e}"); sys.exit(1)
print(f"{proto} {addr} {port}: answered")' "$proto" "$addr" "$port"; then got=open; break; fi
    done
    echo "$proto $addr:$port: $got (want $want)"
    [ "$got" = "$want" ]
}

run_checks() {
    check "ping gateway 10.1.0.1"        in_ns rt-h1 ping -c 3 -i 0.2 -W 2 10.1.0.1
    check "ping gateway fd00:1::1"       in_ns rt-h1 ping -6 -c 3 -i 0.2 -W 2 fd00:1::1
    check "ping across 10.2.0.20"        in_ns rt-h1 ping -c 3 -i 0.2 -W 2 10.2.0.20
    check "ping across fd00:2::20"       in_ns rt-h1 ping -6 -c 3 -i 0.2 -W 2 fd00:2::20
    check "ping far gateway 10.2.0.1"    in_ns rt-h2 ping -c 3 -i 0.2 -W 2 10.2.0.1
    check "TTL 1 -> time exceeded (v4)"  ttl_expires_at_gateway 10.2.0.20 10.1.0.1
    check "hop limit 1 -> time exceeded (v6)" hop_limit_expires_at_gateway fd00:2::20 fd00:1::1
    check "TCP 2 MiB over IPv4"          tcp_transfer 10.2.0.20 http://10.2.0.20:8080
    check "TCP 2 MiB over IPv6"          tcp_transfer fd00:2::20 "http://[fd00:2::20]:8080"
    local denied=blocked
    [ "$MODE" = kernel ] && denied=open
    start_probe_servers
    check "UDP/5353 allowed (v4)"        probe udp 10.2.0.20 5353 open
    check "UDP/5353 allowed (v6)"        probe udp fd00:2::20 5353 open
    check "TCP/9090 $denied (v4)"        probe tcp 10.2.0.20 9090 "$denied"
    check "TCP/9090 $denied (v6)"        probe tcp fd00:2::20 9090 "$denied"
    check "UDP/9999 $denied (v4)"        probe udp 10.2.0.20 9999 "$denied"
    check "UDP/9999 $denied (v6)"        probe udp fd00:2::20 9999 "$denied"
    kill "$PROBE_PID" 2>/dev/null || true
    wait "$PROBE_PID" 2>/dev/null || true
}

[ "$(id -u)" -eq 0 ] || { log "needs root (network namespaces)"; exit 2; }
need ip iproute2; need ping iputils-ping; need curl curl; need python3 python3; need ethtool ethtool

case "$MODE" in
    setup) setup; log "namespaces rt-h1 rt-h2 rt-gw ready"; rm -rf "$WORK"; exit 0 ;;
    teardown) teardown; rm -rf "$WORK"; log "removed"; exit 0 ;;
    kernel|septa) ;;
    *) echo "usage: $0 kernel|septa|setup|teardown" >&2; exit 2 ;;
esac

trap cleanup EXIT
setup
if [ "$MODE" = kernel ]; then gateway_kernel; else gateway_septa; fi
run_checks
if [ "$MODE" = septa ]; then
    # Let the gateway's counters show the drops it counted (ttl_exceeded, neighbour_unresolved...).
    kill -TERM "$SEPTA_PID" 2>/dev/null || true
    wait "$SEPTA_PID" 2>/dev/null || true
    SEPTA_PID=
    sed 's/^/    septa: /' "$WORK/septa.log" | tail -40
    # The denied probes were dropped by the policy, not lost on the way.
    check "septa counted policy drops" grep -Eq "^ +policy +[1-9]" "$WORK/septa.log"
fi
if [ $FAILED -eq 0 ]; then log "all checks passed ($MODE)"; else log "some checks FAILED ($MODE)"; fi
exit $FAILED
