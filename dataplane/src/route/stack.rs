//! The gateway's own host stack on one routed port: a smoltcp [`Interface`] behind a
//! [`StackDevice`] made of two bounded frame rings. The router pushes the frames addressed to
//! the gateway (ARP, neighbour discovery, pings of its address) into the receive ring; smoltcp
//! answers into the transmit ring, which the router also uses for the frames it builds itself
//! (time exceeded, solicitations). The worker drains the transmit ring onto the port.
//!
//! Slow path: everything is allocated when the router is built; a full ring drops (counted by
//! the caller) instead of growing.

use ipnet::{Ipv4Net, Ipv6Net};
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

/// Bytes per ring slot: a 1500-byte MTU frame with Ethernet header and room to spare.
pub const SLOT_LEN: usize = 1536;
/// The largest frame smoltcp may emit (MTU 1500 plus the Ethernet header).
const MAX_FRAME_LEN: usize = 1514;

/// A bounded FIFO of frames in one preallocated buffer.
#[derive(Debug)]
pub struct FrameRing {
    buf: Vec<u8>,
    lens: Vec<u16>,
    head: usize,
    len: usize,
}

impl FrameRing {
    /// A ring of `slots` frames of up to [`SLOT_LEN`] bytes (at least one slot).
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        FrameRing {
            buf: vec![0; slots * SLOT_LEN],
            lens: vec![0; slots],
            head: 0,
            len: 0,
        }
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing queued?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No room for another frame?
    pub fn is_full(&self) -> bool {
        self.len == self.lens.len()
    }

    fn slot(&self, i: usize) -> &[u8] {
        &self.buf[i * SLOT_LEN..i * SLOT_LEN + usize::from(self.lens[i])]
    }

    /// Claim the next slot, `len` bytes long, for the caller to fill; `None` if the ring is
    /// full or `len` exceeds [`SLOT_LEN`].
    pub fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.is_full() || len > SLOT_LEN {
            return None;
        }
        let i = (self.head + self.len) % self.lens.len();
        // At most SLOT_LEN (checked above).
        self.lens[i] = len as u16;
        self.len += 1;
        Some(&mut self.buf[i * SLOT_LEN..i * SLOT_LEN + len])
    }

    /// Append a copy of `frame`; `false` if it did not fit.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        match self.reserve(frame.len()) {
            Some(b) => {
                b.copy_from_slice(frame);
                true
            }
            None => false,
        }
    }

    /// Append a frame a builder writes into a full-size slot, keeping the first `n` bytes where
    /// `n` is what the builder returns.
    pub fn push_built(&mut self, build: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.is_full() {
            return false;
        }
        let i = (self.head + self.len) % self.lens.len();
        let n = build(&mut self.buf[i * SLOT_LEN..(i + 1) * SLOT_LEN]).min(SLOT_LEN);
        // At most SLOT_LEN.
        self.lens[i] = n as u16;
        self.len += 1;
        true
    }

    /// The `i`-th frame from the oldest (0: [`Self::front`]), left in the ring.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.len).then(|| self.slot((self.head + i) % self.lens.len()))
    }

    /// The oldest frame, left in the ring.
    pub fn front(&self) -> Option<&[u8]> {
        (!self.is_empty()).then(|| self.slot(self.head))
    }

    /// Remove the oldest frame; returns its slot index (valid until the next push).
    fn pop_index(&mut self) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let i = self.head;
        self.head = (self.head + 1) % self.lens.len();
        self.len -= 1;
        Some(i)
    }

    /// Remove the oldest frame.
    pub fn pop(&mut self) -> bool {
        self.pop_index().is_some()
    }
}

/// The `phy::Device` smoltcp polls: frames in from the router, frames out to the worker.
#[derive(Debug)]
pub struct StackDevice {
    /// Frames for the gateway, not yet seen by smoltcp.
    pub rx: FrameRing,
    /// Frames to transmit on the port.
    pub tx: FrameRing,
}

/// Receive token: one frame of the receive ring.
pub struct StackRx<'a>(&'a [u8]);

/// Transmit token: a slot of the transmit ring.
pub struct StackTx<'a>(&'a mut FrameRing);

impl RxToken for StackRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl TxToken for StackTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // Tokens are handed out only while a slot is free and smoltcp never exceeds the MTU we
        // advertise, so the reservation succeeds; should it not, the frame is built in a
        // scratch buffer and discarded.
        match self.0.reserve(len) {
            Some(slot) => f(slot),
            None => {
                let mut scratch = [0u8; SLOT_LEN];
                f(&mut scratch[..len.min(SLOT_LEN)])
            }
        }
    }
}

impl Device for StackDevice {
    type RxToken<'a> = StackRx<'a>;
    type TxToken<'a> = StackTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(StackRx<'_>, StackTx<'_>)> {
        // Keep the frame queued until a reply can be queued too.
        if self.tx.is_full() {
            return None;
        }
        let i = self.rx.pop_index()?;
        Some((StackRx(self.rx.slot(i)), StackTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<StackTx<'_>> {
        (!self.tx.is_full()).then_some(StackTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME_LEN;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// One routed port's host stack.
pub struct PortStack {
    iface: Interface,
    /// The rings smoltcp reads and writes.
    pub dev: StackDevice,
}

impl std::fmt::Debug for PortStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortStack")
            .field("addrs", &self.iface.ip_addrs())
            .field("dev", &self.dev)
            .finish()
    }
}

impl PortStack {
    /// A stack owning `v4` and/or `v6` on an interface with `mac`, with `queue` frames in each
    /// direction. `now` in µs.
    pub fn new(
        mac: [u8; 6],
        v4: Option<Ipv4Net>,
        v6: Option<Ipv6Net>,
        queue: usize,
        now: u64,
    ) -> Self {
        let mut dev = StackDevice {
            rx: FrameRing::new(queue),
            tx: FrameRing::new(queue),
        };
        let hw = HardwareAddress::Ethernet(EthernetAddress(mac));
        let mut config = Config::new(hw);
        config.random_seed =
            u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
        let mut iface = Interface::new(config, &mut dev, instant(now));
        iface.update_ip_addrs(|addrs| {
            // The interface holds two addresses (smoltcp's default bound); we add at most two.
            if let Some(n) = v4 {
                let _ = addrs.push(IpCidr::new(n.addr().into(), n.prefix_len()));
            }
            if let Some(n) = v6 {
                let _ = addrs.push(IpCidr::new(n.addr().into(), n.prefix_len()));
            }
        });
        PortStack { iface, dev }
    }

    /// Let smoltcp handle the queued frames (answers go to the transmit ring). Cheap when
    /// nothing is queued. Returns how many frames it appended to the transmit ring (its
    /// answers, the ring's last frames).
    pub fn poll(&mut self, now: u64) -> usize {
        if self.dev.rx.is_empty() {
            return 0;
        }
        let before = self.dev.tx.len();
        let mut storage: [SocketStorage<'_>; 0] = [];
        let mut sockets = SocketSet::new(&mut storage[..]);
        let _ = self.iface.poll(instant(now), &mut self.dev, &mut sockets);
        // smoltcp only appends to the transmit ring; nothing drains it during a poll.
        self.dev.tx.len() - before
    }
}

fn instant(now_us: u64) -> Instant {
    Instant::from_micros(i64::try_from(now_us).unwrap_or(i64::MAX))
}
