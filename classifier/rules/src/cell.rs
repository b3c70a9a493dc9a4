//! RCU publication of rule tables: the control plane publishes, workers read once per burst.
//!
//! Built on `arc-swap` (see `docs/rcu.md` for the race walk-through and the measurement that
//! chose it). Each worker owns a [`TableReader`] that caches an `Arc` to the table it last saw;
//! [`TableReader::load`] is the worker's quiescent point: it lets go of the cached table when a
//! newer one is published. The cell itself keeps one reference to every retired table, so the
//! worker's release is only a counter decrement: the table is freed on the control side, by
//! [`TableCell::reclaim`] (called by every publish), once no worker holds it any more. A table is
//! therefore never freed while a worker can read it, and never freed on a worker thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Cache};

use crate::table::RuleTable;

/// The cell holding the running table.
#[derive(Debug)]
pub struct TableCell {
    current: ArcSwap<RuleTable>,
    /// Serialises epoch numbering across concurrent publishers.
    next_epoch: AtomicU64,
    /// Retired tables, freed by `reclaim` once only this list holds them. Control side only.
    retired: Mutex<Vec<Arc<RuleTable>>>,
}

impl TableCell {
    /// A cell whose first table is `initial`, stamped with epoch 1.
    pub fn new(mut initial: RuleTable) -> Arc<Self> {
        initial.set_epoch(1);
        Arc::new(TableCell {
            current: ArcSwap::from_pointee(initial),
            next_epoch: AtomicU64::new(2),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// Makes `table` the running table with the next epoch, returned. Workers see it at their
    /// next [`TableReader::load`]; the previous table is freed once no worker holds it.
    pub fn publish(&self, mut table: RuleTable) -> u64 {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        table.set_epoch(epoch);
        // A slower concurrent publisher must not replace a newer epoch.
        let new = Arc::new(table);
        let old = self.current.rcu(|cur| {
            if cur.epoch() > epoch {
                Arc::clone(cur)
            } else {
                Arc::clone(&new)
            }
        });
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        // When a newer epoch won the race, `new` was never visible and `old` is still running.
        if old.epoch() < epoch {
            retired.push(old);
        }
        drop(new);
        retired.retain(|t| Arc::strong_count(t) > 1);
        epoch
    }

    /// Frees retired tables that no worker holds any more; returns how many are still held.
    /// Publishing calls it; call it periodically to return memory when publishes are rare.
    pub fn reclaim(&self) -> usize {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        retired.retain(|t| Arc::strong_count(t) > 1);
        retired.len()
    }

    /// The running table (for the control side; workers use a [`TableReader`]).
    pub fn current(&self) -> Arc<RuleTable> {
        self.current.load_full()
    }

    /// A reader handle for one worker.
    pub fn reader(self: &Arc<Self>) -> TableReader {
        TableReader {
            cache: Cache::new(Arc::clone(self).into_arc_swap()),
        }
    }

    fn into_arc_swap(self: Arc<Self>) -> ArcSwapRef {
        ArcSwapRef(self)
    }
}

/// Lets `arc_swap::Cache` reach the `ArcSwap` inside a shared [`TableCell`].
#[derive(Debug)]
struct ArcSwapRef(Arc<TableCell>);

impl std::ops::Deref for ArcSwapRef {
    type Target = ArcSwap<RuleTable>;
    fn deref(&self) -> &Self::Target {
        &self.0.current
    }
}

/// One worker's view of a [`TableCell`]. Not shared between threads: each worker makes its own.
#[derive(Debug)]
pub struct TableReader {
    cache: Cache<ArcSwapRef, Arc<RuleTable>>,
}

impl TableReader {
    /// The newest published table. Call once per burst: this is the worker's quiescent point,
    /// where it lets go of the table it used before. Costs one atomic load when nothing changed.
    #[inline]
    pub fn load(&mut self) -> &RuleTable {
        self.cache.load()
    }

    /// Marks a quiescent point without using the table: an idle worker calls this once per poll
    /// loop so that retired tables are not kept alive by it.
    #[inline]
    pub fn quiescent(&mut self) {
        let _ = self.cache.load();
    }
}
