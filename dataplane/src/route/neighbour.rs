//! The neighbour table the forwarding path reads: IP address → (MAC, port), learnt from ARP and
//! IPv6 neighbour discovery on routed ports.
//!
//! Bounded and allocation-free after construction: a set-associative table of
//! [`NeighbourTable::capacity`] slots in sets of [`WAYS`]; an address can live only in the set
//! its hash picks, so a lookup reads at most [`WAYS`] slots. When a set is full, an insertion
//! replaces an unresolved entry first, otherwise the least recently confirmed one.

use crate::io::PortId;

/// Slots per set.
pub const WAYS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Empty,
    /// Solicited, no answer yet: holds the time of the last solicitation only.
    Incomplete,
    /// Resolved: the MAC is valid.
    Reachable,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: State,
    v6: bool,
    ip: u128,
    mac: [u8; 6],
    port: PortId,
    /// When the mapping was last learnt or confirmed (µs).
    confirmed: u64,
    /// When the address was last solicited (µs); `None` if never.
    solicited: Option<u64>,
}

const EMPTY: Slot = Slot {
    state: State::Empty,
    v6: false,
    ip: 0,
    mac: [0; 6],
    port: 0,
    confirmed: 0,
    solicited: None,
};

/// A resolved neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Its MAC address.
    pub mac: [u8; 6],
    /// The port it was learnt on.
    pub port: PortId,
    /// When it was last learnt or confirmed (µs).
    pub confirmed: u64,
}

/// Bounded IP → MAC table (IPv4 and IPv6).
#[derive(Clone, Debug)]
pub struct NeighbourTable {
    slots: Vec<Slot>,
    set_mask: usize,
}

impl NeighbourTable {
    /// A table of at least `capacity` entries (rounded up to a power-of-two number of sets of
    /// [`WAYS`]; at least one set). Allocates here, never afterwards.
    pub fn new(capacity: usize) -> Self {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        NeighbourTable {
            slots: vec![EMPTY; sets * WAYS],
            set_mask: sets - 1,
        }
    }

    /// Number of slots: the most entries (resolved or not) the table holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Entries in use (resolved or being resolved). Walks the table: for tests and statistics.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state != State::Empty)
            .count()
    }

    /// Is the table empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn set(&self, ip: u128, v6: bool) -> std::ops::Range<usize> {
        // Fold the address to 64 bits and mix it (a Fibonacci hash): adjacent host addresses
        // land in different sets.
        let folded = (ip as u64) ^ ((ip >> 64) as u64) ^ u64::from(v6);
        let h = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let set = (h >> 32) as usize & self.set_mask;
        set * WAYS..(set + 1) * WAYS
    }

    #[inline]
    fn find(&self, ip: u128, v6: bool) -> Option<usize> {
        self.set(ip, v6).find(|&i| {
            self.slots[i].state != State::Empty && self.slots[i].ip == ip && self.slots[i].v6 == v6
        })
    }

    /// The resolved neighbour of `ip`, if any.
    #[inline]
    pub fn lookup(&self, ip: u128, v6: bool) -> Option<Neighbour> {
        let s = &self.slots[self.find(ip, v6)?];
        (s.state == State::Reachable).then_some(Neighbour {
            mac: s.mac,
            port: s.port,
            confirmed: s.confirmed,
        })
    }

    /// The slot for `ip`: its own, else an empty one in its set, else the victim (an
    /// unresolved entry first, then the least recently confirmed).
    fn slot_for(&mut self, ip: u128, v6: bool) -> usize {
        if let Some(i) = self.find(ip, v6) {
            return i;
        }
        let range = self.set(ip, v6);
        let victim = range
            .min_by_key(|&i| {
                let s = &self.slots[i];
                let rank = match s.state {
                    State::Empty => 0,
                    State::Incomplete => 1,
                    State::Reachable => 2,
                };
                (rank, s.confirmed)
            })
            .unwrap_or(0);
        self.slots[victim] = Slot { v6, ip, ..EMPTY };
        victim
    }

    /// Record that `ip` is at `mac` behind `port` (from an ARP packet or a neighbour
    /// advertisement/solicitation).
    pub fn learn(&mut self, ip: u128, v6: bool, mac: [u8; 6], port: PortId, now: u64) {
        let i = self.slot_for(ip, v6);
        let s = &mut self.slots[i];
        s.state = State::Reachable;
        s.mac = mac;
        s.port = port;
        s.confirmed = now;
    }

    /// Should the router solicit `ip` now? `true` at most once per `interval` µs per address
    /// (the caller then sends one ARP request or neighbour solicitation). An unknown address
    /// gets an unresolved entry, which makes room by the eviction rule above.
    pub fn should_solicit(
        &mut self,
        ip: u128,
        v6: bool,
        port: PortId,
        now: u64,
        interval: u64,
    ) -> bool {
        let i = self.slot_for(ip, v6);
        let s = &mut self.slots[i];
        if s.state == State::Empty {
            s.state = State::Incomplete;
            s.port = port;
        }
        match s.solicited {
            Some(t) if now.saturating_sub(t) < interval => false,
            _ => {
                s.solicited = Some(now);
                true
            }
        }
    }
}
