//! The timer wheel and the half-open list: intrusive doubly linked lists of slot numbers
//! threaded through the entries (see the module documentation of [`crate::flow`]).

use super::{FlowTable, NIL};

impl<S: Copy + Default> FlowTable<S> {
    /// Put `slot` on the wheel list of its expiry (never before the cursor).
    pub(super) fn wheel_link(&mut self, slot: u32) {
        let i = slot as usize;
        let at =
            (self.entries[i].expires_with(&self.timeouts) >> self.wheel_shift).max(self.cursor);
        // The time the wheel reaches slot `at & mask`: `at` itself within one revolution,
        // earlier for a longer timeout (the entry is re-slotted then, once per revolution).
        let at = self.cursor + ((at - self.cursor) & self.wheel_mask);
        let s = (at & self.wheel_mask) as usize;
        let head = self.wheel[s];
        let e = &mut self.entries[i];
        // Low 32 bits only: see `visits_late`.
        e.sched = at as u32;
        e.wheel_prev = NIL;
        e.wheel_next = head;
        if head != NIL {
            self.entries[head as usize].wheel_prev = slot;
        }
        self.wheel[s] = slot;
    }

    /// Take a live entry off its wheel list (or off the pending list `expire` is walking).
    pub(super) fn wheel_unlink(&mut self, slot: u32) {
        let i = slot as usize;
        let (prev, next, sched) = {
            let e = &self.entries[i];
            (e.wheel_prev, e.wheel_next, e.sched)
        };
        if prev != NIL {
            self.entries[prev as usize].wheel_next = next;
        } else if self.pending == slot {
            self.pending = next;
        } else {
            let s = (u64::from(sched) & self.wheel_mask) as usize;
            debug_assert_eq!(self.wheel[s], slot);
            self.wheel[s] = next;
        }
        if next != NIL {
            self.entries[next as usize].wheel_prev = prev;
        }
        let e = &mut self.entries[i];
        e.wheel_next = NIL;
        e.wheel_prev = NIL;
    }

    pub(super) fn half_push(&mut self, slot: u32) {
        let tail = self.half_tail;
        {
            let e = &mut self.entries[slot as usize];
            e.half_prev = tail;
            e.half_next = NIL;
        }
        if tail != NIL {
            self.entries[tail as usize].half_next = slot;
        } else {
            self.half_head = slot;
        }
        self.half_tail = slot;
        self.half_len += 1;
    }

    pub(super) fn half_unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let e = &mut self.entries[slot as usize];
            e.embryonic = false;
            (e.half_prev, e.half_next)
        };
        if prev != NIL {
            self.entries[prev as usize].half_next = next;
        } else {
            self.half_head = next;
        }
        if next != NIL {
            self.entries[next as usize].half_prev = prev;
        } else {
            self.half_tail = prev;
        }
        let e = &mut self.entries[slot as usize];
        e.half_prev = NIL;
        e.half_next = NIL;
        self.half_len -= 1;
    }

    /// Take a live entry out of the index and every list and return its slot to the free list.
    pub(super) fn unlink_all(&mut self, slot: u32) {
        self.wheel_unlink(slot);
        self.release(slot);
    }

    /// [`Self::unlink_all`] for an entry already off the wheel (detached by `expire`).
    pub(super) fn release(&mut self, slot: u32) {
        let i = slot as usize;
        self.generation += 1;
        self.index.remove(self.entries[i].hash, slot);
        if self.entries[i].embryonic {
            self.half_unlink(slot);
        }
        let e = &mut self.entries[i];
        e.live = false;
        e.wheel_next = self.free_head;
        self.free_head = slot;
        self.len -= 1;
    }
}
