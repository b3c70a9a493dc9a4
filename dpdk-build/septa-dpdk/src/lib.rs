//! placeholder, filled by the DPDK helper
