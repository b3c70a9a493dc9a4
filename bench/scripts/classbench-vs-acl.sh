#!/usr/bin/env bash
# Septa's classifier against DPDK's rte_acl (dpdk-test-acl) on the same ClassBench files, in the
# same run. For each set: septa-bench's line, rte_acl's throughput for every --alg that works
# here, the best of them, and the ratio septa / best.
#
# usage: bench/scripts/classbench-vs-acl.sh [SET ...]
#   SET is a path prefix with SET and SET_trace next to it, e.g. ../shared/data/classbench/acl1_10K,
#   or gen:KIND:N (KIND = acl|fw|ipc) to generate a set of N rules into $WORK first.
#   Default: acl1/fw1/ipc1 at 1K and 10K from ../shared/data/classbench, then gen:acl|fw|ipc:100000
#   (all nine sets; the three 100K ones take several minutes each: rte_acl builds for 10-80 s).
# Rates are on-CPU rates on both sides, so time a process spends descheduled by other load on
# this shared machine does not count. Septa: cpu_idx_lookups_per_s / cpu_lookups_per_s (thread
# CPU time of the lookup loop only). rte_acl, by default for every set (METHOD=perf):
# `perf record -e cpu-clock -F PERF_HZ` samples a run with ITER0 classify passes and one with ITER
# passes, and only samples in librte_acl's classify code count: rate = (ITER - ITER0) * headers *
# PERF_HZ / (samples(ITER) - samples(ITER0)). So neither rte_acl's build (0.05-80 s of CPU), nor
# EAL start-up, nor file reading, nor time spent descheduled enters its rate. The classify code is
# the address range ACL_CLASSIFY_RANGE (default 0x0-0xad00 of Debian 12's librte_acl.so.23.0: the
# build code lies above 0xad00, found by comparing a 2-pass and a 150-pass run on acl1_10K; the
# avx512x32/x16 classify loops sit at 0x6000-0x7600, avx2's at 0x2d00-0x3700); the script warns
# when the library is another build. METHOD=cpu is the older estimate (ITER - ITER0) * headers /
# (CPU(ITER) - CPU(ITER0)) from the process CPU times of the two runs: cheaper, but the build's CPU
# time is in both terms and varies with the load (±10 % on the 10K sets, useless on 100K ones).
# Methods: ALGS (default "avx512x32 avx512x16": the fastest two everywhere on this machine; avx2,
# sse and scalar were 1.3-5x slower on every set in every earlier run) and ALGS_BIG for sets over
# BIG_RULES rules (default 50000; default ALGS_BIG "avx512x32", each of those runs rebuilds for
# 10-80 s). Rounds: ROUNDS (default 3) rounds, each running septa and then every rte_acl method,
# best of each side kept, so both sides see the same background load. The wall-clock rates of
# both are printed too (acl_wall_*, septa_wall) and the load average at the start and end of each
# set (load=). septa_idx is `match_burst` (a u32 rule index per key, what rte_acl returns);
# septa_dec is `classify_burst` (a 40-byte Decision per key). With SEPTA_BASE (a second septa-bench
# binary, say the previous build) that binary runs in every round too, right after SEPTA_BENCH,
# and the lines carry base_idx= and ratio_base= (before/after against the same rte_acl runs).
# At the end a summary prints one line per set.
# env: SEPTA_BENCH (binary, default: build septa-bench in release), METHOD (perf|cpu),
#      LOOKUPS (lookups per timed rte_acl run, default 30000000, 15000000 for big sets;
#      ITER = LOOKUPS / headers), ACL_ITER0 (default 2), PERF_HZ (default 2000), SECS (septa
#      measuring time, default 1), WORK (scratch dir, default a mktemp dir), ACL_MEM (MiB for
#      dpdk-test-acl, default 2048, and 12000 for big sets: 100K fw-shaped sets need a ~9 GiB
#      transient pool).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
data=${CLASSBENCH_DIR:-$here/../shared/data/classbench}
work=${WORK:-$(mktemp -d /tmp/septa-acl.XXXXXX)}
algs=${ALGS:-"avx512x32 avx512x16"}
method_all=${METHOD:-perf}
summary=()
secs=${SECS:-1}
rounds=${ROUNDS:-3}
if [[ -z "${SEPTA_BENCH:-}" ]]; then
    (cd "$here" && cargo build -q --release -p septa-bench)
    SEPTA_BENCH=${CARGO_TARGET_DIR:-$here/target}/release/septa-bench
fi
command -v dpdk-test-acl >/dev/null || { echo "dpdk-test-acl not found (apt-get install dpdk-dev)" >&2; exit 1; }

sets=("$@")
if [[ ${#sets[@]} -eq 0 ]]; then
    for s in acl1 fw1 ipc1; do for n in 1K 10K; do sets+=("$data/${s}_$n"); done; done
    for k in acl fw ipc; do sets+=("gen:$k:100000"); done
fi

# One dpdk-test-acl run: prints "CPU_SECONDS WALL_RATE MEM_BYTES" (rate/mem empty when the
# algorithm fails here).
acl_run() {
    local rules=$1 trace=$2 alg=$3 iter=$4 prefix="septa-acl-$$-$alg"
    local out cpu
    out=$work/acl_out
    cpu=$( { TIMEFORMAT='%U %S'; time dpdk-test-acl --no-huge -m "$mem_mb" --no-pci -l 0 --file-prefix "$prefix" \
        --force-max-simd-bitwidth=512 --log-level='lib.acl,8' -- --rulesf="$rules" --tracef="$trace" --alg="$alg" \
        --iter="$iter" --tracenum=10000000 --rulenum=1000000 --verbose=0 >"$out" 2>&1 || true; } 2>&1 )
    rm -rf "/var/run/dpdk/$prefix"
    local rate mem
    rate=$(sed -n 's/.*cycles\/pkt, \([0-9.]*\) pkt\/sec.*/\1/p' "$out" | tail -1)
    mem=$(sed -n 's/^total: \([0-9]*\) bytes.*/\1/p' "$out" | tail -1)
    echo "$(awk '{printf "%.3f", $1 + $2}' <<<"$cpu") ${rate:-} ${mem:-}"
}

# rte_acl's on-CPU classify rate from perf samples (see the header): prints "RATE MEM_BYTES".
acl_lib=$(ldconfig -p 2>/dev/null | sed -n 's/.*librte_acl\.so\.23 .*=> \(.*\)/\1/p' | head -1)
acl_lib=$(readlink -f "${acl_lib:-/usr/lib/x86_64-linux-gnu/librte_acl.so.23}")
acl_lib_sha=0e8225cd59495383c017029123b26dfcf0ab4cefc93d43fa389463c9e88cfefd
perf_hz=${PERF_HZ:-2000}
acl_samples() { # rules trace alg iter -> "SAMPLES MEM_BYTES WALL_SECONDS WALL_RATE"
    local prefix="septa-acl-$$-perf" data=$work/perf.data out=$work/acl_perf_out lo hi t0 t1
    t0=$(date +%s.%N)
    perf record -q -e cpu-clock -F "$perf_hz" -o "$data" dpdk-test-acl --no-huge -m "$mem_mb" --no-pci -l 0 \
        --file-prefix "$prefix" --force-max-simd-bitwidth=512 --log-level='lib.acl,8' -- --rulesf="$1" \
        --tracef="$2" --alg="$3" --iter="$4" --tracenum=10000000 --rulenum=1000000 --verbose=0 >"$out" 2>&1 || true
    t1=$(date +%s.%N)
    rm -rf "/var/run/dpdk/$prefix"
    IFS=- read -r lo hi <<<"${ACL_CLASSIFY_RANGE:-0x0-0xad00}"
    perf report -i "$data" --dsos "$(basename "$acl_lib")" --sort sym --stdio -n 2>/dev/null |
        awk -v lo=$((lo)) -v hi=$((hi)) -v mem="$(sed -n 's/^total: \([0-9]*\) bytes.*/\1/p' "$out" | tail -1)" '
            function hex(x,   v, i) { v = 0; for (i = 3; i <= length(x); i++) v = v * 16 + index("0123456789abcdef", substr(tolower(x), i, 1)) - 1; return v }
            $3 == "[.]" && $4 ~ /^0x/ { a = hex($4); if (a >= lo && a < hi) n += $2 }
            END { printf "%d %s %s %s\n", n, mem, wall, rate }' rate="$(sed -n 's/.*cycles\/pkt, \([0-9.]*\) pkt\/sec.*/\1/p' "$out" | tail -1)" wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')"
}

# Larger of two numbers (empty counts as absent).
max() { if [[ -z ${2:-} ]] || awk -v a="$1" -v b="$2" 'BEGIN{exit !(a>b)}'; then echo "$1"; else echo "$2"; fi; }
# Value of key $2 in line $1.
field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<" $1"; }

# Wall seconds of one dpdk-test-acl run that builds the context and classifies one header.
acl_wall() {
    local prefix="septa-acl-$$-bld" t0 t1
    t0=$(date +%s.%N)
    dpdk-test-acl --no-huge -m "$mem_mb" --no-pci -l 0 --file-prefix "$prefix" -- --rulesf="$1" --tracef="$2" \
        --alg=scalar --iter=1 --tracenum=1 --rulenum=1000000 --verbose=0 >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    rm -rf "/var/run/dpdk/$prefix"
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}
one_rule=$work/one_rule
echo "@10.0.0.0/8 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00" >"$one_rule"

for set in "${sets[@]}"; do
    if [[ $set == gen:* ]]; then
        IFS=: read -r _ kind n <<<"$set"
        rules=$work/${kind}_$n; trace=$work/${kind}_${n}_trace
        "$SEPTA_BENCH" classbench --generate "$kind:$n" --write --rules "$rules" --trace "$trace" >/dev/null
        name="gen-$kind-$n"
    else
        rules=$set; trace=${set}_trace; name=$(basename "$set")
    fi
    headers=$(grep -c . "$trace")
    nrules=$(grep -c . "$rules")
    load0=$(cut -d' ' -f1 /proc/loadavg)
    method=$method_all; set_algs=$algs; lookups=${LOOKUPS:-30000000}; mem_mb=${ACL_MEM:-2048}
    if ((nrules > ${BIG_RULES:-50000})); then
        set_algs=${ALGS_BIG:-avx512x32}; lookups=${LOOKUPS:-15000000}; mem_mb=${ACL_MEM:-12000}
    fi
    if [[ $method == perf ]]; then
        [[ $(sha256sum "$acl_lib" | cut -d' ' -f1) == "$acl_lib_sha" || -n ${ACL_CLASSIFY_RANGE:-} ]] ||
            echo "warning: $acl_lib is not the build the default ACL_CLASSIFY_RANGE was measured on" >&2
    fi
    iter=$(( lookups / headers )); iter0=${ACL_ITER0:-2}
    ((iter > iter0 + 1)) || iter=$((iter0 + 2))
    # Best of $rounds for septa (the mismatch check runs once) and for every rte_acl method,
    # alternating, so both sides see the same background load.
    septa=$("$SEPTA_BENCH" classbench --rules "$rules" --trace "$trace" --secs "$secs")
    s_wall=$(field "$septa" lookups_per_s); s_dec=$(field "$septa" cpu_lookups_per_s)
    s_idx=$(field "$septa" cpu_idx_lookups_per_s)
    b_idx=
    declare -A acl_cpu_of=() acl_wall_of=() acl_cpu0_of=()
    acl_mem=
    for ((r = 0; r < rounds; r++)); do
        if ((r > 0)); then
            again=$("$SEPTA_BENCH" classbench --rules "$rules" --trace "$trace" --secs "$secs" --check-limit 0)
            s_wall=$(max "$(field "$again" lookups_per_s)" "$s_wall")
            s_dec=$(max "$(field "$again" cpu_lookups_per_s)" "$s_dec")
            s_idx=$(max "$(field "$again" cpu_idx_lookups_per_s)" "$s_idx")
        fi
        if [[ -n ${SEPTA_BASE:-} ]]; then
            base=$("$SEPTA_BASE" classbench --rules "$rules" --trace "$trace" --secs "$secs" --check-limit 0)
            b_idx=$(max "$(field "$base" cpu_idx_lookups_per_s)" "$b_idx")
        fi
        for alg in $set_algs; do
            if [[ $method == perf ]]; then
                if [[ -z ${acl_cpu0_of[$alg]:-} ]]; then
                    read -r s0 _ s0_wall <<<"$(acl_samples "$rules" "$trace" "$alg" "$iter0")"
                    acl_cpu0_of[$alg]=$s0
                fi
                read -r s1 mem _ rate <<<"$(acl_samples "$rules" "$trace" "$alg" "$iter")"
                [[ -n $mem ]] && acl_mem=$mem
                [[ -n $rate ]] && acl_wall_of[$alg]=$(max "$rate" "${acl_wall_of[$alg]:-}")
                crate=$(awk -v n="$(( (iter - iter0) * headers ))" -v a="$s1" -v b="${acl_cpu0_of[$alg]}" -v hz="$perf_hz" \
                    'BEGIN{ if (a > b) printf "%.0f", n * hz / (a - b) }')
                [[ -n $crate ]] && acl_cpu_of[$alg]=$(max "$crate" "${acl_cpu_of[$alg]:-}")
                continue
            fi
            if [[ -z ${acl_cpu0_of[$alg]:-} ]]; then
                read -r cpu0 _ _ <<<"$(acl_run "$rules" "$trace" "$alg" "$iter0")"
                acl_cpu0_of[$alg]=$cpu0
            fi
            read -r cpu rate mem <<<"$(acl_run "$rules" "$trace" "$alg" "$iter")"
            [[ -n $mem ]] && acl_mem=$mem
            [[ -z $rate ]] && continue
            acl_wall_of[$alg]=$(max "$rate" "${acl_wall_of[$alg]:-}")
            crate=$(awk -v n="$(( (iter - iter0) * headers ))" -v a="$cpu" -v b="${acl_cpu0_of[$alg]}" \
                'BEGIN{ if (a > b) printf "%.0f", n / (a - b) }')
            [[ -n $crate ]] && acl_cpu_of[$alg]=$(max "$crate" "${acl_cpu_of[$alg]:-}")
        done
    done
    best=0; best_alg=none; line=""
    for alg in $set_algs; do
        rate=${acl_cpu_of[$alg]:-}
        line+=" acl_${alg}=${rate:-fail} acl_wall_${alg}=${acl_wall_of[$alg]:-fail}"
        if [[ -n $rate ]] && awk -v a="$rate" -v b="$best" 'BEGIN{exit !(a>b)}'; then best=$rate; best_alg=$alg; fi
    done
    # rte_acl build time: wall time of a run that builds and classifies one header, minus the same
    # run on a one-rule file (EAL start-up and file reading).
    # (Large sets: the ITER0 run's wall time stands in for the first run; it classifies only
    # ITER0 passes, and one build of 10-80 s is saved.)
    if [[ $method == perf ]]; then build_wall=$s0_wall; else build_wall=$(acl_wall "$rules" "$trace"); fi
    acl_build_s=$(awk -v a="$build_wall" -v b="$(acl_wall "$one_rule" "$trace")" 'BEGIN{printf "%.2f", a-b}')
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a > 0 && b > 0) printf "%.2f", a/b; else print "n/a" }'; }
    load=$load0-$(cut -d' ' -f1 /proc/loadavg)
    base_part=
    [[ -n $b_idx ]] && base_part=" base_idx=$b_idx ratio_base=$(ratio "$b_idx" "$best")"
    echo "set=$name $septa"
    echo "set=$name${line} acl_best=$best acl_best_alg=$best_alg acl_mem_bytes=${acl_mem:-?} acl_build_s=$acl_build_s acl_method=$method" \
        "septa_idx=$s_idx septa_dec=$s_dec septa_wall=$s_wall ratio_idx=$(ratio "$s_idx" "$best")" \
        "ratio_dec=$(ratio "$s_dec" "$best") ratio_wall=$(ratio "$s_wall" "${acl_wall_of[$best_alg]:-0}")$base_part rounds=$rounds load=$load"
    summary+=("summary set=$name septa_idx=$s_idx acl_best=$best ($best_alg) ratio_idx=$(ratio "$s_idx" "$best")$base_part mismatches=$(field "$septa" mismatches) method=$method rounds=$rounds load=$load")
done
printf '%s\n' "${summary[@]}"
