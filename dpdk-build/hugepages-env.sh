#!/usr/bin/env bash
# Prints the EAL memory arguments that fit this machine, on one line:
#   --huge-unlink          hugetlbfs mounted and >= 64 free 2 MiB pages (128 MiB)
#   --no-huge -m 512       otherwise, or when SEPTA_DPDK_NO_HUGE=1 (pools must stay small)
# Same rule as septa_dpdk::eal_memory_args(). Never prints --in-memory: it cannot be combined
# with --no-huge. Add your own unique --file-prefix for every concurrent DPDK process.
#
# Usage: EAL_ARGS="$(dpdk-build/hugepages-env.sh)"   or   source it and call septa_eal_memory_args
septa_eal_memory_args() {
    local free mounted
    free="$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo 2>/dev/null)"
    mounted="$(awk '$3 == "hugetlbfs" { print "yes"; exit }' /proc/mounts 2>/dev/null)"
    if [[ "${SEPTA_DPDK_NO_HUGE:-0}" != 1 && "$mounted" == yes && "${free:-0}" -ge 64 ]]; then
        echo "--huge-unlink"
    else
        echo "--no-huge -m 512"
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    septa_eal_memory_args
fi
