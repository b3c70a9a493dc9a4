#!/usr/bin/env bash
# iperf3 through Septa against iperf3 through `dpdk-testpmd --forward-mode=io`, on the same two
# lab veths and net_af_packet vdevs, in the same run, interleaved rounds (issue 9, point 4).
#
# Two namespaces like the lab's office and EHR app subnets, each behind a veth whose gateway end
# (offloads off, as in `septa lab`) is a net_af_packet vdev of the forwarder under test:
#   sib-a <-> eth0 in septa-ib-a   10.10.1.10/24 (gateway 10.10.1.1), and 10.50.0.10/24
#   sib-b <-> eth0 in septa-ib-b   10.20.1.20/24 (gateway 10.20.1.1), and 10.50.0.20/24
# Forwarders (each on the same lcores: main 0, forwarding 1; EAL without hugepages):
#   testpmd        dpdk-testpmd --forward-mode=io: every frame out of the other port unchanged
#                  (a wire; iperf3 runs on 10.50.0.0/24, one L2 segment)
#   septa-bridge   septa run, the pair in bridge mode, enforcing a policy whose conduit allows
#                  iperf3 (tcp/5201) and ping from a to b: the same wire, with Septa's stateful
#                  policy
#   septa-routed   septa run, the pair routed as in `septa lab` (gateway .1, MAC rewrite, TTL),
#                  same policy; iperf3 from 10.10.1.10 to 10.20.1.20
# Each round runs every forwarder once (order rotates); each run is `iperf3 -t SECONDS` (one TCP
# stream, a -> b). Prints Gbit/s per run, the medians, and the medians' ratios to testpmd.
#
# Usage (root): bench/scripts/lab-iperf.sh [ROUNDS] [SECONDS]     (default 3 rounds of 5 s)
# Needs: dpdk-testpmd (dpdk), iperf3, iproute2, ethtool, and a release septa built with the dpdk
# feature (built here: cargo build --release --features dpdk --bin septa; or SEPTA=path/to/septa).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-5}
target=${CARGO_TARGET_DIR:-target}

[ "$(id -u)" = 0 ] || { echo "skip: needs root (network namespaces)"; exit 0; }
for t in dpdk-testpmd iperf3 ip ethtool python3; do
    command -v "$t" >/dev/null || { echo "skip: $t not installed (apt-get install dpdk iperf3 iproute2 ethtool python3)"; exit 0; }
done
if ! pkg-config --exists libdpdk 2>/dev/null; then
    echo "skip: DPDK not installed (bash dpdk-build/setup.sh)"; exit 0
fi
if [ -n "${SEPTA:-}" ]; then
    septa=$SEPTA # a septa built elsewhere (with the dpdk feature)
else
    cargo build -q --release --features dpdk --bin septa
    septa="$target/release/septa"
fi

work=
fwd=
cleanup() {
    stop_fwd
    for s in a b; do
        ip netns pids "septa-ib-$s" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "septa-ib-$s" 2>/dev/null || true
        ip link del "sib-$s" 2>/dev/null || true
    done
    [ -z "$work" ] || rm -rf "$work"
    rm -rf /var/run/dpdk/septa-ib-* 2>/dev/null || true
}
stop_fwd() {
    if [ -n "$fwd" ]; then
        kill -INT "$fwd" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$fwd" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$fwd" 2>/dev/null || true
        wait "$fwd" 2>/dev/null || true
        fwd=
    fi
}
cleanup # what an interrupted earlier run left
trap cleanup EXIT
work=$(mktemp -d)

declare -A MAC=([a]=02:5e:00:00:01:01 [b]=02:5e:00:00:01:02)
declare -A HOST=([a]=10.10.1.10 [b]=10.20.1.20)
declare -A L2=([a]=10.50.0.10 [b]=10.50.0.20)
for s in a b; do
    ns=septa-ib-$s
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    ip link add "sib-$s" type veth peer name eth0 netns "$ns"
    # Large TCP segments vanish through af_packet unless every offload is off (as in the lab).
    ethtool -K "sib-$s" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    ip netns exec "$ns" ethtool -K eth0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    ip link set "sib-$s" address "${MAC[$s]}"
    sysctl -qw "net.ipv6.conf.sib-$s.disable_ipv6=1"
    ip link set "sib-$s" up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
    ip netns exec "$ns" ip addr add "${HOST[$s]}/24" dev eth0
    ip netns exec "$ns" ip addr add "${L2[$s]}/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
done
ip netns exec septa-ib-a ip route add 10.20.1.0/24 via 10.10.1.1
ip netns exec septa-ib-b ip route add 10.10.1.0/24 via 10.20.1.1

cat >"$work/policy.yaml" <<'EOF'
apiVersion: septa.io/v1
kind: Policy
metadata:
  name: lab-iperf
spec:
  defaults:
    action: deny
    mode: enforce
  zones:
    - name: a
      subnets: [10.10.1.0/24, 10.50.0.10/32]
    - name: b
      subnets: [10.20.1.0/24, 10.50.0.20/32]
  conduits:
    - name: iperf3
      from: [a]
      to: [b]
      services:
        - proto: tcp
          ports: [5201]
        - proto: icmp
EOF
eal='"-l", "0,1", "--no-huge", "-m", "512", "--no-pci", "--no-telemetry"'
vdevs='"--vdev=net_af_packet0,iface=sib-a", "--vdev=net_af_packet1,iface=sib-b"'
for mode in bridge routed; do
    {
        echo "[dpdk]"
        echo "eal_args = [$eal, \"--file-prefix=septa-ib-$mode\", $vdevs]"
        echo "mempool_size = 8191"
        echo "[[ports]]"
        echo 'name = "net_af_packet0"'
        [ "$mode" = routed ] && echo 'address = "10.10.1.1/24"'
        echo "[[ports]]"
        echo 'name = "net_af_packet1"'
        [ "$mode" = routed ] && echo 'address = "10.20.1.1/24"'
        echo "[[pairs]]"
        echo 'ports = ["net_af_packet0", "net_af_packet1"]'
        echo "mode = \"$mode\""
        echo "[dataplane]"
        echo "worker_lcores = [1]"
        echo "policy = \"$work/policy.yaml\""
    } >"$work/$mode.toml"
    "$septa" check-config "$work/$mode.toml" >"$work/check-$mode.log" 2>&1 || { cat "$work/check-$mode.log"; exit 1; }
done

# start FORWARDER: starts it (pid in fwd, iperf3 destination in dst) and waits until a -> b
# answers ping through it.
start() {
    local f=$1
    case $f in
        testpmd)
            # No -i: testpmd forwards until Enter on stdin; a FIFO this shell holds open (fd 9)
            # never delivers one, and stop_fwd ends it with SIGINT.
            [ -p "$work/stdin" ] || { mkfifo "$work/stdin"; exec 9<>"$work/stdin"; }
            dpdk-testpmd -l 0,1 --no-huge -m 512 --no-pci --no-telemetry \
                --file-prefix=septa-ib-testpmd --vdev=net_af_packet0,iface=sib-a \
                --vdev=net_af_packet1,iface=sib-b -- --forward-mode=io --auto-start \
                --nb-cores=1 --total-num-mbufs=8191 <"$work/stdin" >"$work/$f.log" 2>&1 &
            dst=${L2[b]} ;;
        septa-bridge) "$septa" run --config "$work/bridge.toml" >"$work/$f.log" 2>&1 </dev/null &
            dst=${L2[b]} ;;
        septa-routed) "$septa" run --config "$work/routed.toml" >"$work/$f.log" 2>&1 </dev/null &
            dst=${HOST[b]} ;;
    esac
    fwd=$!
    for _ in $(seq 1 60); do
        # Both hosts announce themselves (routed: to the gateway, which learns their MACs).
        if [ "$f" = septa-routed ]; then
            ip netns exec septa-ib-b ping -c 1 -W 1 10.20.1.1 >/dev/null 2>&1 || true
        fi
        if ip netns exec septa-ib-a ping -c 1 -W 1 "$dst" >/dev/null 2>&1; then return 0; fi
        kill -0 "$fwd" 2>/dev/null || break
        sleep 0.5
    done
    echo "FAIL: $f does not forward (log $work/$f.log):" >&2; tail -20 "$work/$f.log" >&2; exit 1
}

run() { # run FORWARDER: sets gbps
    local f=$1
    # A fresh one-test server per run: a server whose last test lost its forwarder stays busy.
    ip netns pids septa-ib-b | xargs -r kill -KILL 2>/dev/null || true
    (ip netns exec septa-ib-b iperf3 -s -1 >>"$work/iperf3-server.log" 2>&1 &) # not a job
    start "$f"
    ip netns exec septa-ib-a iperf3 -c "$dst" -t "$secs" -J >"$work/$f.json" 2>&1 || true
    stop_fwd
    gbps=$(python3 -c 'import json,sys
try: print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("nan")' "$work/$f.json")
    if [ "$gbps" = nan ]; then echo "$f: iperf3 failed: $(head -c 300 "$work/$f.json")" >&2; fi
}

echo "iperf3 a -> b (one TCP stream, ${secs} s per run), ${rounds} interleaved rounds; Gbit/s"
forwarders=(testpmd septa-bridge septa-routed)
declare -A results
for r in $(seq 1 "$rounds"); do
    line="round $r:"
    for i in 0 1 2; do
        f=${forwarders[$(( (i + r - 1) % 3 ))]}
        run "$f"
        results[$f]="${results[$f]:-} $gbps"
        line="$line  $f $gbps"
    done
    echo "$line"
done
python3 - "${results[testpmd]}" "${results[septa-bridge]}" "${results[septa-routed]}" <<'EOF'
import statistics, sys
names = ["testpmd", "septa-bridge", "septa-routed"]
med = {}
for n, v in zip(names, sys.argv[1:]):
    vals = [float(x) for x in v.split()]
    ok = [x for x in vals if x == x]
    med[n] = statistics.median(ok) if ok else float("nan")
    print(f"{n:13} median {med[n]:7.3f} Gbit/s  runs {' '.join(f'{x:.3f}' for x in vals)}")
base = med["testpmd"]
for n in names[1:]:
    print(f"{n} / testpmd io: {med[n] / base:.3f}")
EOF
