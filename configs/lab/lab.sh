#!/usr/bin/env bash
# The Septa lab: a hospital campus in network namespaces with Septa routing between them.
# Called by `septa lab up|down|status|traffic` (src/lab.rs), which checks the prerequisites.
#
#   lab.sh up [septa|kernel]   build everything (idempotent: tears down a previous lab first)
#   lab.sh down                remove namespaces, veths, processes, DPDK runtime files
#   lab.sh status              what exists
#   lab.sh restart             restart Septa alone (after a crash), keeping the lab and its state
#   lab.sh traffic SCENARIO    normal | scan | lateral | modbus-write | exfil
#
# Subnets (one namespace each; "hosts" are addresses in it; gateway = .1, owned by Septa):
#   lab-it    office IT      10.10.1.0/24   users 10.10.1.10, .11, .12
#   lab-app   clinical apps  10.20.1.0/24   EHR web app 10.20.1.20:80
#   lab-ehr   clinical DB    10.20.0.0/24   PostgreSQL 10.20.0.10:5432
#   lab-plc   OT cell PLCs   10.30.1.0/24   Modbus/TCP PLC simulator 10.30.1.10:502
#   lab-hmi   OT cell HMIs   10.30.2.0/24   HMI poller 10.30.2.10
#   lab-mgmt  management     10.99.0.0/24   admin host 10.99.0.10
# Gateway ends `sl-<subnet>` live in the root namespace (septa mode: Septa's net_af_packet vdevs,
# no kernel address, so the API on 127.0.0.1:8080 is reachable from the host) or in namespace
# $NAME-gw (kernel mode: the Linux kernel as a stand-in router, no policy enforcement).
#
# A second lab (tests) runs beside the user's with SEPTA_LAB_NAME=NAME (1-8 of [a-z0-9]):
# namespaces NAME-<subnet>, gateway ends NAME-<subnet>, DPDK file prefix septa-NAME, and the API
# port SEPTA_LAB_API (default 8080). The state directory is SEPTA_LAB_STATE. SEPTA_LAB_NO_HUGE=1
# runs Septa's EAL without hugepages.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SEPTA=${SEPTA:?SEPTA must name the septa binary}
STATE=${SEPTA_LAB_STATE:-/var/lib/septa-lab}
NAME=${SEPTA_LAB_NAME:-lab}
[[ "$NAME" =~ ^[a-z0-9]{1,8}$ ]] || { echo "lab: SEPTA_LAB_NAME must be 1-8 of [a-z0-9]" >&2; exit 2; }
API=${SEPTA_LAB_API:-8080}
# Gateway-end prefix: `sl` for the default lab (names of earlier releases), else the lab name.
if [ "$NAME" = lab ]; then GWL=sl; else GWL=$NAME; fi
SUBNETS="it app ehr plc hmi mgmt"
declare -A NET=([it]=10.10.1 [app]=10.20.1 [ehr]=10.20.0 [plc]=10.30.1 [hmi]=10.30.2 [mgmt]=10.99.0)
declare -A HOSTS=([it]="10 11 12" [app]="20" [ehr]="10" [plc]="10" [hmi]="10" [mgmt]="10")
declare -A MAC=([it]=02:5e:00:00:00:01 [app]=02:5e:00:00:00:06 [ehr]=02:5e:00:00:00:02 [plc]=02:5e:00:00:00:03 [hmi]=02:5e:00:00:00:04 [mgmt]=02:5e:00:00:00:05)

log() { printf 'lab: %s\n' "$*"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
bg() { # bg NAME NS CMD...: a logged background process whose pid is remembered
    local name=$1 ns=$2; shift 2
    ip netns exec "$ns" setsid "$@" >"$STATE/log/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/pids/$name"
}

down() {
    if [ -d "$STATE/pids" ]; then
        for f in "$STATE"/pids/*; do
            [ -e "$f" ] || continue
            pid=$(cat "$f")
            # setsid made each one a process group leader: end the group.
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        done
        sleep 0.5
        for f in "$STATE"/pids/*; do
            [ -e "$f" ] || continue
            pid=$(cat "$f")
            kill -KILL -- "-$pid" 2>/dev/null || true
            rm -f "$f"
        done
    fi
    for ns in $(for s in $SUBNETS; do echo "$NAME-$s"; done) $NAME-gw; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    for s in $SUBNETS; do ip link del "$GWL-$s" 2>/dev/null || true; done
    rm -rf "/var/run/dpdk/septa-$NAME" /dev/hugepages/septa-"$NAME"map_* 2>/dev/null || true
    rm -rf "$STATE/pids" "$STATE/pgdata" "$STATE/pgsock" "$STATE/www"
}

setup_net() {
    local mode=$1
    if [ "$mode" = kernel ]; then ip netns add $NAME-gw; in_ns $NAME-gw ip link set lo up; fi
    for s in $SUBNETS; do
        local ns=$NAME-$s n=${NET[$s]}
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
        ip link add "$GWL-$s" type veth peer name eth0 netns "$ns"
        [ "$mode" = kernel ] && ip link set "$GWL-$s" netns $NAME-gw
        local gwns=; [ "$mode" = kernel ] && gwns=$NAME-gw
        g() { if [ -n "$gwns" ]; then in_ns "$gwns" "$@"; else "$@"; fi; }
        # Large TCP segments vanish through af_packet unless every offload is off.
        in_ns "$ns" ethtool -K eth0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
        g ethtool -K "$GWL-$s" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
        g ip link set "$GWL-$s" address "${MAC[$s]}"
        g sysctl -qw "net.ipv6.conf.$GWL-$s.disable_ipv6=1"
        g ip link set "$GWL-$s" up
        if [ "$mode" = kernel ]; then in_ns $NAME-gw ip addr add "$n.1/24" dev "$GWL-$s"; fi
        in_ns "$ns" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
        for h in ${HOSTS[$s]}; do in_ns "$ns" ip addr add "$n.$h/24" dev eth0; done
        in_ns "$ns" ip link set eth0 up
        in_ns "$ns" ip route add default via "$n.1"
    done
    if [ "$mode" = kernel ]; then in_ns $NAME-gw sysctl -qw net.ipv4.ip_forward=1; fi
}

start_services() {
    # EHR web app.
    mkdir -p "$STATE/www"
    printf '<html><body><h1>EHR</h1><p>patient list</p></body></html>\n' >"$STATE/www/index.html"
    head -c 1048576 /dev/urandom >"$STATE/www/records.bin"
    bg web $NAME-app python3 -m http.server 80 --bind 10.20.1.20 --directory "$STATE/www"
    # EHR database: PostgreSQL as a plain process with its own data directory.
    local initdb pg
    initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | head -1 || true)
    pg=$(command -v postgres || ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null | head -1 || true)
    if [ -n "$initdb" ] && [ -n "$pg" ] && id postgres >/dev/null 2>&1; then
        mkdir -p "$STATE/pgdata" "$STATE/pgsock"
        chown postgres "$STATE/pgdata" "$STATE/pgsock"
        runuser -u postgres -- "$initdb" -D "$STATE/pgdata" -A trust -U postgres >"$STATE/log/initdb.log" 2>&1
        echo "host all all 0.0.0.0/0 trust" >>"$STATE/pgdata/pg_hba.conf"
        bg postgres $NAME-ehr runuser -u postgres -- "$pg" -D "$STATE/pgdata" -k "$STATE/pgsock" \
            -c listen_addresses=10.20.0.10 -c port=5432
        log "PostgreSQL: 10.20.0.10:5432 (database postgres, user postgres)"
    else
        log "PostgreSQL not installed (apt-get install postgresql): the EHR database is absent"
    fi
    # OT cell.
    bg plc $NAME-plc python3 "$HERE/modbus.py" plc 10.30.1.10 502
    sleep 0.3
    bg hmi $NAME-hmi python3 "$HERE/modbus.py" poll 10.30.1.10 502 1
    # `up` returns when the servers accept connections: a user's first request must not be
    # refused by a server that is still starting.
    wait_listen $NAME-app 10.20.1.20:80 web
    wait_listen $NAME-plc 10.30.1.10:502 plc
}

# Waits (up to 10 s) until namespace $1 listens on TCP address:port $2; says so if it does not.
wait_listen() {
    local i
    for i in $(seq 1 50); do
        if in_ns "$1" ss -Hltn "src $2" 2>/dev/null | grep -q .; then return 0; fi
        sleep 0.2
    done
    log "$3 is not listening on $2 yet (log $STATE/log/$3.log)"
}

start_septa() {
    mkdir -p "$STATE/septa"
    # This lab's gateway ends, DPDK file prefix and API port.
    sed -e "s/iface=sl-/iface=$GWL-/g" -e "s/--file-prefix=septa-lab/--file-prefix=septa-$NAME/" \
        -e "s/127\.0\.0\.1:8080/127.0.0.1:$API/" "$HERE/septa-lab.toml" >"$STATE/septa/lab.toml"
    if [ "${SEPTA_LAB_NO_HUGE:-0}" = 1 ]; then
        # Plain memory instead of hugepages (slower; for tests and machines without them).
        sed -i 's/"-m", "256"/"--no-huge", "-m", "512"/' "$STATE/septa/lab.toml"
    fi
    cp "$HERE/policy.yaml" "$STATE/septa/policy.yaml"
    # [ml] model_dir = "models": the committed flow models beside the lab's configs.
    ln -sfn "$(cd "$HERE/../models" && pwd)" "$STATE/septa/models"
    "$SEPTA" check-config "$STATE/septa/lab.toml" >"$STATE/log/check-config.log" 2>&1 \
        || { cat "$STATE/log/check-config.log" >&2; return 1; }
    # `exec`: the pid file names septa itself, and no shell is left holding the caller's stdout
    # (a caller reading `septa lab up`'s output would otherwise wait for septa to exit).
    (cd "$STATE/septa" && exec setsid "$SEPTA" run --config lab.toml >"$STATE/log/septa.log" 2>&1 </dev/null) &
    echo $! >"$STATE/pids/septa"
    for _ in $(seq 1 60); do
        if ! kill -0 "$(cat "$STATE/pids/septa")" 2>/dev/null; then
            log "septa exited:"; tail -20 "$STATE/log/septa.log" >&2; return 1
        fi
        if in_ns $NAME-it ping -c 1 -W 1 10.10.1.1 >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    log "septa did not answer on 10.10.1.1 within 30 s:"; tail -20 "$STATE/log/septa.log" >&2; return 1
}

# Every lab address pings its gateway once, so Septa knows each host's MAC before the first
# routed packet: Septa drops (does not queue) a packet whose next hop is not resolved yet, and a
# user's very first request would otherwise wait for a TCP retransmission.
prime_neighbours() {
    local s a
    for s in $SUBNETS; do
        for a in $(in_ns "$NAME-$s" ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1); do
            in_ns "$NAME-$s" ping -c 1 -W 1 -I "$a" "${NET[$s]}.1" >/dev/null 2>&1 || true
        done
    done
}

# Septa alone, after a crash or to pick up a new binary: ends the running one (if any) and
# starts it again on the same namespaces, servers and state (the store keeps the running policy
# revision and the audit log). Traffic is dropped, never forwarded unchecked, while it is down.
restart_septa() {
    [ "$(cat "$STATE/router" 2>/dev/null)" = septa ] || { log "no Septa lab is up (septa lab up)"; return 1; }
    local pid
    pid=$(cat "$STATE/pids/septa" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    mv -f "$STATE/log/septa.log" "$STATE/log/septa.previous.log" 2>/dev/null || true
    start_septa && prime_neighbours
    log "septa restarted (pid $(cat "$STATE/pids/septa"))"
}

up() {
    local mode=${1:-septa}
    down
    mkdir -p "$STATE/log" "$STATE/pids"
    echo "$mode" >"$STATE/router"
    setup_net "$mode"
    if [ "$mode" = septa ]; then start_septa && prime_neighbours; else log "router: the Linux kernel in $NAME-gw (stand-in; no policy enforcement)"; fi
    start_services
    # Background traffic so that flows appear.
    bg background $NAME-it bash "$0" traffic-loop
    if [ -e "$STATE/pids/postgres" ] && command -v psql >/dev/null; then
        bg dbsession $NAME-app bash "$0" db-session
    fi
    log "up ($mode). Try: ip netns exec $NAME-it curl http://10.20.1.20/ ; septa lab traffic scan"
}

status() {
    [ -f "$STATE/router" ] || { log "down"; return 3; }
    log "router: $(cat "$STATE/router")"
    for s in $SUBNETS; do
        if ip netns list | grep -qw "$NAME-$s"; then log "namespace $NAME-$s ${NET[$s]}.0/24: present"; else log "namespace $NAME-$s: MISSING"; fi
    done
    for f in "$STATE"/pids/*; do
        [ -e "$f" ] || continue
        if kill -0 "$(cat "$f")" 2>/dev/null; then log "process $(basename "$f"): running (pid $(cat "$f"))"
        else log "process $(basename "$f"): NOT running (log $STATE/log/$(basename "$f").log)"; fi
    done
}

tcp_probe() { # tcp_probe NS SRC DST:PORT...: one TCP connection attempt (2 s) to each, all at once
    local ns=$1; shift
    in_ns "$ns" python3 -c 'import socket, sys, concurrent.futures as cf
def probe(target):
    dst, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(2); s.bind((sys.argv[1], 0))
    try:
        s.connect((dst, int(port))); return f"{sys.argv[1]} -> {target}: open"
    except OSError as e:
        return f"{sys.argv[1]} -> {target}: {e}"
    finally:
        s.close()
with cf.ThreadPoolExecutor(len(sys.argv) - 2) as ex:
    for line in ex.map(probe, sys.argv[2:]):
        print(line)' "$@"
}

traffic() {
    case "${1:-}" in
        web)
            in_ns $NAME-it curl -sS --max-time 5 --interface 10.10.1.10 -o /dev/null http://10.20.1.20/ || true
            in_ns $NAME-it curl -sS --max-time 5 --interface 10.10.1.11 -o /dev/null http://10.20.1.20/records.bin || true ;;
        normal)
            in_ns $NAME-it curl -sS --max-time 5 --interface 10.10.1.10 -o /dev/null -w 'it -> EHR web: HTTP %{http_code}\n' http://10.20.1.20/ || true
            in_ns $NAME-it curl -sS --max-time 5 --interface 10.10.1.11 -o /dev/null -w 'it -> EHR records: %{size_download} bytes\n' http://10.20.1.20/records.bin || true
            in_ns $NAME-hmi python3 "$HERE/modbus.py" read 10.30.1.10 502 0 4 || true
            in_ns $NAME-app psql -h 10.20.0.10 -U postgres -d postgres -Atc 'select count(*) from pg_stat_activity' || true ;;
        # scan and lateral run twice: from an office host (enforced: every probe is dropped and
        # shows as a deny record) and from the management host (the management zone is in
        # monitor mode, so the probes are forwarded, and Septa's flow models score them: anomalies
        # at /api/v1/anomalies). The office's blocked probes are scored too: Septa samples the
        # first packet of a refused flow as a one-packet flow with its source's fan-out.
        # The probes of a scenario run at once (a dropped probe waits 2 s for nothing).
        scan)
            local ports="21 22 23 80 135 139 443 445 502 1433 3306 3389 5432 5900 8080 20000" p t=()
            for p in $ports; do t+=("10.30.1.10:$p"); done
            tcp_probe $NAME-it 10.10.1.12 "${t[@]}"
            tcp_probe $NAME-mgmt 10.99.0.10 "${t[@]}" ;;
        lateral)
            local d p it=() mg=()
            for p in 445 139 3389; do
                for d in 10.20.0.10 10.20.1.20 10.99.0.10; do it+=("$d:$p"); done
                for d in 10.10.1.10 10.10.1.11 10.10.1.12 10.20.0.10 10.20.1.20; do mg+=("$d:$p"); done
            done
            tcp_probe $NAME-it 10.10.1.12 "${it[@]}"
            tcp_probe $NAME-mgmt 10.99.0.10 "${mg[@]}" ;;
        modbus-write)
            in_ns $NAME-hmi python3 "$HERE/modbus.py" write 10.30.1.10 502 10 1 || true
            in_ns $NAME-it python3 "$HERE/modbus.py" write 10.30.1.10 502 10 1 || true ;;
        exfil)
            in_ns $NAME-ehr curl -sS --max-time 5 --interface 10.20.0.10 -o /dev/null -T "$STATE/www/records.bin" http://10.10.1.10:8443/ || true
            tcp_probe $NAME-ehr 10.20.0.10 10.99.0.10:443 ;;
        *) echo "usage: lab traffic normal|scan|lateral|modbus-write|exfil" >&2; return 2 ;;
    esac
}

case "${1:-}" in
    up) up "${2:-septa}" ;;
    down) down; rm -rf "$STATE/router" "$STATE/septa" "$STATE/log"; rmdir "$STATE" 2>/dev/null || true; log "down" ;;
    status) status ;;
    restart) restart_septa ;;
    traffic) shift; traffic "$@" ;;
    # The background: office users on the web app (one request per connection, as curl does);
    # the HMI poller and the EHR app's database session are long-lived connections of their own.
    traffic-loop) while true; do traffic web >/dev/null 2>&1; sleep 2; done ;;
    db-session) while sleep 2; do echo 'select count(*) from pg_stat_activity;'; done |
        psql -h 10.20.0.10 -U postgres -d postgres -qAt >/dev/null ;;
    *) echo "usage: lab.sh up [septa|kernel] | down | status | restart | traffic SCENARIO" >&2; exit 2 ;;
esac
