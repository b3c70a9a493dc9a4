#!/usr/bin/env bash
# Septa's classifier against DPDK's rte_acl (dpdk-test-acl) on the same ClassBench files, in the
# same run. For each set: septa-bench's line, rte_acl's throughput for every --alg that works
# here, the best of them, and the ratio septa / best.
#
# usage: bench/scripts/classbench-vs-acl.sh [SET ...]
#   SET is a path prefix with SET and SET_trace next to it, e.g. ../shared/data/classbench/acl1_10K,
#   or gen:KIND:N (KIND = acl|fw|ipc) to generate a set of N rules into $WORK first.
#   Default: acl1/fw1/ipc1 at 1K and 10K from ../shared/data/classbench.
# env: SEPTA_BENCH (binary, default: build septa-bench in release), ACL_ITER (default 20),
#      ALGS (default "avx512x32 avx512x16 avx2 sse scalar"), SECS (septa measuring time, default 0.5),
#      ROUNDS (default 3: septa and every rte_acl method run alternately ROUNDS times, best of each
#      kept, so both sides see the same background load on this shared machine),
#      WORK (scratch dir, default a mktemp dir), ACL_MEM (MiB for dpdk-test-acl, default 2048; 100K
#      fw-shaped sets need ~12000).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
data=${CLASSBENCH_DIR:-$here/../shared/data/classbench}
work=${WORK:-$(mktemp -d /tmp/septa-acl.XXXXXX)}
acl_iter=${ACL_ITER:-20}
algs=${ALGS:-"avx512x32 avx512x16 avx2 sse scalar"}
secs=${SECS:-0.5}
rounds=${ROUNDS:-3}
if [[ -z "${SEPTA_BENCH:-}" ]]; then
    (cd "$here" && cargo build -q --release -p septa-bench)
    SEPTA_BENCH=${CARGO_TARGET_DIR:-$here/target}/release/septa-bench
fi
command -v dpdk-test-acl >/dev/null || { echo "dpdk-test-acl not found (apt-get install dpdk-dev)" >&2; exit 1; }

sets=("$@")
if [[ ${#sets[@]} -eq 0 ]]; then
    for s in acl1 fw1 ipc1; do for n in 1K 10K; do sets+=("$data/${s}_$n"); done; done
fi

# rte_acl lookups/s for one file pair and algorithm (empty when the algorithm fails here).
acl_rate() {
    local rules=$1 trace=$2 alg=$3 prefix="septa-acl-$$-$alg"
    local out
    out=$(dpdk-test-acl --no-huge -m "${ACL_MEM:-2048}" --no-pci -l 0 --file-prefix "$prefix" --force-max-simd-bitwidth=512 \
        --log-level='lib.acl,8' -- --rulesf="$rules" --tracef="$trace" --alg="$alg" --iter="$acl_iter" \
        --tracenum=10000000 --rulenum=1000000 --verbose=0 2>&1) || true
    rm -rf "/var/run/dpdk/$prefix"
    local rate mem
    rate=$(sed -n 's/.*cycles\/pkt, \([0-9.]*\) pkt\/sec.*/\1/p' <<<"$out" | tail -1)
    mem=$(sed -n 's/^total: \([0-9]*\) bytes.*/\1/p' <<<"$out" | tail -1)
    echo "${rate:-} ${mem:-}"
}

# Wall seconds of one dpdk-test-acl run that builds the context and classifies one header.
acl_wall() {
    local prefix="septa-acl-$$-bld" t0 t1
    t0=$(date +%s.%N)
    dpdk-test-acl --no-huge -m "${ACL_MEM:-2048}" --no-pci -l 0 --file-prefix "$prefix" -- --rulesf="$1" --tracef="$2" \
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
    # Best of $rounds for septa (the mismatch check runs once) and for every rte_acl method.
    septa=$("$SEPTA_BENCH" classbench --rules "$rules" --trace "$trace" --secs "$secs")
    septa_rate=$(sed -n "s/.* lookups_per_s=\([0-9]*\).*/\1/p" <<<"$septa")
    declare -A acl_rate_of=()
    acl_mem=
    for ((r = 0; r < rounds; r++)); do
        if ((r > 0)); then
            again=$("$SEPTA_BENCH" classbench --rules "$rules" --trace "$trace" --secs "$secs" --check-limit 0)
            rate=$(sed -n "s/.* lookups_per_s=\([0-9]*\).*/\1/p" <<<"$again")
            awk -v a="$rate" -v b="$septa_rate" 'BEGIN{exit !(a>b)}' && septa_rate=$rate
        fi
        for alg in $algs; do
            read -r rate mem <<<"$(acl_rate "$rules" "$trace" "$alg")"
            [[ -n $mem ]] && acl_mem=$mem
            [[ -z $rate ]] && continue
            if [[ -z ${acl_rate_of[$alg]:-} ]] || awk -v a="$rate" -v b="${acl_rate_of[$alg]}" 'BEGIN{exit !(a>b)}'; then
                acl_rate_of[$alg]=$rate
            fi
        done
    done
    best=0; best_alg=none; line=""
    for alg in $algs; do
        rate=${acl_rate_of[$alg]:-}
        line+=" acl_${alg}=${rate:-fail}"
        if [[ -n $rate ]] && awk -v a="$rate" -v b="$best" 'BEGIN{exit !(a>b)}'; then best=$rate; best_alg=$alg; fi
    done
    # rte_acl build time: wall time of a run that builds and classifies one header, minus the same
    # run on a one-rule file (EAL start-up and file reading).
    acl_build_s=$(awk -v a="$(acl_wall "$rules" "$trace")" -v b="$(acl_wall "$one_rule" "$trace")" 'BEGIN{printf "%.2f", a-b}')
    ratio=$(awk -v a="$septa_rate" -v b="$best" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }')
    echo "set=$name $septa"
    echo "set=$name${line} acl_best=$best acl_best_alg=$best_alg acl_mem_bytes=${acl_mem:-?} acl_build_s=$acl_build_s septa_best_lookups_per_s=$septa_rate ratio=$ratio"
done
