//! Per-protocol, per-state idle timeouts, in the caller's ticks.

/// Which idle timeout applies to a flow. The conntrack state machine picks it per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeoutClass {
    /// TCP: SYN seen, no answer yet.
    TcpSynSent = 0,
    /// TCP: SYN-ACK seen, handshake not complete.
    TcpSynRecv = 1,
    /// TCP: handshake complete.
    TcpEstablished = 2,
    /// TCP: first FIN seen.
    TcpFinWait = 3,
    /// TCP: first FIN acknowledged, other side still open.
    TcpCloseWait = 4,
    /// TCP: both FINs seen, last ACK outstanding.
    TcpLastAck = 5,
    /// TCP: closed by FINs, lingering for stray segments.
    TcpTimeWait = 6,
    /// TCP: reset.
    TcpClose = 7,
    /// UDP: packets in one direction only.
    Udp = 8,
    /// UDP: both directions seen.
    UdpStream = 9,
    /// ICMP / ICMPv6 echo or other query.
    Icmp = 10,
    /// Any other protocol.
    #[default]
    Other = 11,
}

impl TimeoutClass {
    /// Number of classes.
    pub const COUNT: usize = 12;
}

/// Idle timeouts per [`TimeoutClass`], in ticks (the unit of the `now` the caller passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// By `TimeoutClass as usize`.
    pub ticks: [u64; TimeoutClass::COUNT],
}

impl Timeouts {
    /// The Linux/nftables conntrack defaults (`nf_conntrack_*_timeout*` sysctls), in seconds:
    /// TCP syn_sent 120, syn_recv 60, established 432000 (5 days), fin_wait 120, close_wait 60,
    /// last_ack 30, time_wait 120, close 10; UDP 30, UDP stream 120; ICMP 30; generic 600.
    pub const NFTABLES_SECONDS: [u64; TimeoutClass::COUNT] =
        [120, 60, 432_000, 120, 60, 30, 120, 10, 30, 120, 30, 600];

    /// [`Self::NFTABLES_SECONDS`] for a clock of `ticks_per_second`.
    pub fn nftables_defaults(ticks_per_second: u64) -> Self {
        Timeouts {
            ticks: Self::NFTABLES_SECONDS.map(|s| s.saturating_mul(ticks_per_second)),
        }
    }

    /// The timeout of `class`.
    #[inline]
    pub fn get(&self, class: TimeoutClass) -> u64 {
        self.ticks[class as usize]
    }

    /// Set the timeout of `class`.
    pub fn set(&mut self, class: TimeoutClass, ticks: u64) {
        self.ticks[class as usize] = ticks;
    }
}
