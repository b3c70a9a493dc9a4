//! The update sweep: visits every slot of a flow table about once per interval, off the packet
//! path, and reports the live flows that saw packets since the slot's previous visit (the
//! worker turns them into [`crate::events::FlowUpdate`]s).
//!
//! **Time-driven, budgeted.** Visit `k` (counting from 0 since the sweep started at `start`)
//! is of slot `k % capacity` and is due at `start + k * interval / capacity`: a full pass over
//! the table takes one interval, whatever the load. Visits are made in groups of `batch`
//! (the per-call budget, at most the capacity): a group is visited once all of it is due, at
//! most `budget` visits per [`UpdateSweep::run`], and the next call resumes where it stopped
//! (like [`super::FlowTable::expire`]). Between groups a call costs one comparison.
//!
//! **No per-entry field.** A visit is never made before its group's end is due, so the slot's
//! previous visit (one pass earlier) happened at or after the due time of *that* group's end:
//! "packets since the previous visit" is `last_seen >= due(end of the group of k - capacity)`.
//! This never misses a packet. It reports a flow twice with the same totals only if its last
//! packet came between that due time and the previous visit itself, i.e. only while the sweep
//! lags (a stalled poll loop). When the sweep falls behind by more than a pass (a long stall,
//! a jump of the clock), it skips ahead to the last pass and uses the oldest reference it had
//! not yet used as the floor for that pass, so a skip never loses a report either.
//!
//! **Never** allocates, locks, logs or writes the table.

use super::{FlowEntry, FlowTable};

/// Per-table state of the update sweep (a few words; nothing per entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateSweep {
    /// Ticks per pass over the table; 0 = off.
    interval: u64,
    /// Tick of visit 0 and the group size (set on the first call).
    start: u64,
    batch: u64,
    /// Visits made since `start`.
    done: u64,
    /// Don't look again before this tick (the next group is not due yet).
    next_at: u64,
    /// After a skip: the reference time for visits before `floor_until`.
    floor: u64,
    floor_until: u64,
}

impl UpdateSweep {
    /// A sweep over the table once per `interval` ticks (0: never).
    pub fn new(interval: u64) -> Self {
        UpdateSweep {
            interval,
            ..UpdateSweep::default()
        }
    }

    /// Ticks per pass (0: off).
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// Visits made so far.
    pub fn visits(&self) -> u64 {
        self.done
    }

    /// Due tick of visit `k` over a table of `cap` slots, rounded down (`up`: rounded up).
    #[inline]
    fn due(&self, k: u64, cap: u64, up: bool) -> u64 {
        let n = u128::from(k) * u128::from(self.interval);
        let d = u128::from(cap);
        let off = if up { n.div_ceil(d) } else { n / d };
        self.start
            .saturating_add(u64::try_from(off).unwrap_or(u64::MAX))
    }

    /// Visits of whole groups due by `now` over a table of `cap` slots.
    #[inline]
    fn target(&self, now: u64, cap: u64) -> u64 {
        let t = u128::from(now - self.start) * u128::from(cap) / u128::from(self.interval);
        u64::try_from(t).unwrap_or(u64::MAX) / self.batch * self.batch
    }

    /// The time packets must be seen at or after for visit `k` to report its flow: no later
    /// than the slot's previous visit (see the module documentation).
    #[inline]
    fn reference(&self, k: u64, cap: u64) -> u64 {
        let prev = match k.checked_sub(cap) {
            Some(p) => self.due((p / self.batch + 1) * self.batch, cap, false),
            None => 0,
        };
        if k < self.floor_until {
            prev.min(self.floor)
        } else {
            prev
        }
    }

    /// Visit the slots due by `now`, at most `budget` (pass the same budget every time),
    /// calling `on_active` for each live flow with packets since the slot's previous visit.
    /// Returns the number of slots visited.
    pub fn run<S: Copy + Default>(
        &mut self,
        table: &FlowTable<S>,
        now: u64,
        budget: usize,
        mut on_active: impl FnMut(&FlowEntry<S>),
    ) -> usize {
        if self.interval == 0 || now < self.next_at {
            return 0;
        }
        let cap = table.capacity() as u64;
        if self.batch == 0 {
            self.start = now;
            self.batch = (budget as u64).clamp(1, cap);
        }
        let target = self.target(now.max(self.start), cap);
        if target > self.done.saturating_add(cap) {
            // More than a pass behind: one pass visits every slot once; the packets since the
            // oldest reference not yet used are reported in it.
            self.floor = self.reference(self.done, cap);
            self.done = (target - cap) / self.batch * self.batch;
            self.floor_until = target;
        }
        let mut visited = 0;
        while self.done < target && visited < budget {
            let k = self.done;
            let since = self.reference(k, cap);
            if let Some(e) = table.slot_entry((k % cap) as usize)
                && e.last_seen >= since
            {
                on_active(e);
            }
            self.done += 1;
            visited += 1;
        }
        // Behind (budget spent): come back at the next poll. Otherwise wait for a group.
        self.next_at = if self.done < target {
            now
        } else {
            self.due(self.done + self.batch, cap, true)
        };
        visited
    }
}

impl<S: Copy + Default> FlowTable<S> {
    /// The live entry in slot `i`, if any (for sweeps over the whole table).
    #[inline]
    pub fn slot_entry(&self, i: usize) -> Option<&FlowEntry<S>> {
        self.entries.get(i).filter(|e| e.live)
    }
}
