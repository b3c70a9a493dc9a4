//! Cache hints for the per-packet path.
//!
//! A burst's flow-table buckets and sampler slots live in tables far larger than the cache; the
//! worker can ask for their lines a few packets before it reads them, so the misses of a burst
//! overlap instead of queueing (VPP's dual/quad loops do the same). A prefetch never faults and
//! never changes what the program computes, only when the line arrives: it takes a reference, so
//! the address is always one the program may read anyway. On x86_64 it is `PREFETCHT0` through
//! `safe_arch` (no unsafe block in this crate); elsewhere it compiles to nothing.

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
