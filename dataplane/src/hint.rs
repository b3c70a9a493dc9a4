//! Cache hints for the per-packet path.
//!
//! Some per-flow state lives in tables far larger than the cache (the sampler's sketch slots of a
//! new flow are four random lines); the worker can ask for those lines before it reads them, so
//! their misses overlap with other work instead of stalling it. A prefetch never faults and never
//! changes what the program computes, only when the line arrives: it takes a reference, so the
//! address is always one the program may read anyway. On x86_64 it is `PREFETCHT0`/`PREFETCHW`
//! through `safe_arch`, so this crate needs no exception to its lint; elsewhere it compiles to
//! nothing. (A burst-wide prefetch of flow-table buckets was measured and lost: see
//! docs/dataplane-state.md.)

/// Asks for the cache line holding `value` to be loaded into every cache level, for reading.
#[inline(always)]
pub fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_t0(value);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Asks for the cache line holding `value`, in anticipation of a write (the line arrives in the
/// exclusive state where the CPU supports it, `PREFETCHW`; otherwise as [`prefetch_read`]).
#[inline(always)]
pub fn prefetch_write<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_et0(value);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
