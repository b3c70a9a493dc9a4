//! Compiled function-code conduits and their evaluator.

use std::fmt;

use crate::L7Proto;
use crate::functions;

/// Most address ranges one constraint may list.
pub const MAX_RANGES: usize = 16;
/// Most DNP3 master link addresses or networks one constraint may list.
pub const MAX_MASTERS: usize = 16;

/// What a message is in its exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Asks the peer to do something: the only role conduits restrict.
    Request,
    /// Answers a request (including exceptions and acknowledgements).
    Response,
    /// Connection management, continuation segments, keep-alives: always allowed.
    #[default]
    Other,
}

/// A range of data addresses `start .. start + count` (Modbus coils/registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrRange {
    /// First address.
    pub start: u16,
    /// Number of addresses (at least 1 in a valid range).
    pub count: u16,
}

impl AddrRange {
    /// The inclusive range `lo..=hi`.
    pub fn inclusive(lo: u16, hi: u16) -> Self {
        AddrRange {
            start: lo,
            count: hi.saturating_sub(lo).saturating_add(1),
        }
    }

    fn end(self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn covers(self, other: AddrRange) -> bool {
        other.start >= self.start && other.end() <= self.end()
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.end().saturating_sub(1).max(u32::from(self.start));
        write!(f, "{}-{}", self.start, last)
    }
}

/// What a parser reports about one protocol message: enough to decide a conduit and to count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Protocol.
    pub proto: L7Proto,
    /// Request, response or other.
    pub role: Role,
    /// Function code in the protocol's table (see [`crate::functions`]).
    pub function: u8,
    /// An exception / error response.
    pub exception: bool,
    /// Modbus unit id, DNP3 destination link address, IEC-104 common address.
    pub unit: Option<u16>,
    /// DNP3 source link address.
    pub source: Option<u16>,
    /// Data addresses read or written (Modbus); function 23 reports both its ranges.
    pub ranges: [Option<AddrRange>; 2],
}

/// A set of byte codes (function codes, unit ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FnSet([u64; 4]);

impl FnSet {
    /// The empty set.
    pub const EMPTY: FnSet = FnSet([0; 4]);
    /// Every code.
    pub const ALL: FnSet = FnSet([u64::MAX; 4]);

    /// Adds a code.
    pub fn insert(&mut self, code: u8) {
        self.0[usize::from(code >> 6)] |= 1 << (code & 63);
    }

    /// Removes a code.
    pub fn remove(&mut self, code: u8) {
        self.0[usize::from(code >> 6)] &= !(1 << (code & 63));
    }

    /// Whether the set holds `code`.
    pub fn contains(&self, code: u8) -> bool {
        self.0[usize::from(code >> 6)] & (1 << (code & 63)) != 0
    }

    /// The codes in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&c| self.contains(c))
    }
}

impl FromIterator<u8> for FnSet {
    fn from_iter<I: IntoIterator<Item = u8>>(it: I) -> Self {
        let mut s = FnSet::EMPTY;
        it.into_iter().for_each(|c| s.insert(c));
        s
    }
}

/// An IP network in the classifier's convention (IPv4 in the low 32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net {
    /// IPv6 network.
    pub v6: bool,
    /// Network address.
    pub addr: u128,
    /// Prefix length.
    pub len: u8,
}

/// The IP address that sent a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sender {
    /// IPv6 sender.
    pub v6: bool,
    /// Address (IPv4 in the low 32 bits).
    pub addr: u128,
}

impl Net {
    /// Whether `s` is inside the network.
    pub fn contains(&self, s: Sender) -> bool {
        let width: u32 = if self.v6 { 128 } else { 32 };
        if s.v6 != self.v6 || u32::from(self.len) > width {
            return false;
        }
        let shift = width - u32::from(self.len);
        let mask_shift = |a: u128| a.checked_shr(shift).unwrap_or(0);
        mask_shift(s.addr) == mask_shift(self.addr)
    }
}

/// A compiled function-code conduit: what requests one inspected service admits.
///
/// Built by the policy compiler; read (never written) by the workers. Lists are bounded by
/// [`MAX_RANGES`] and [`MAX_MASTERS`] at validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Constraint {
    /// The protocol the service must speak.
    pub proto: L7Proto,
    /// Allowed request functions.
    pub functions: FnSet,
    /// Allowed Modbus unit ids; `None` = every unit.
    pub units: Option<FnSet>,
    /// Allowed data address ranges; empty = every address.
    pub ranges: Vec<AddrRange>,
    /// DNP3: link addresses allowed to send requests; empty = any.
    pub masters: Vec<u16>,
    /// DNP3: networks (zones) allowed to send requests; empty = any.
    pub master_nets: Vec<Net>,
    /// S7: admit S7comm-plus (whose functions are not inspected).
    pub allow_plus: bool,
}

impl L7Constraint {
    /// A constraint that admits every request of `proto` (the base that selectors narrow).
    pub fn allow_all(proto: L7Proto) -> Self {
        L7Constraint {
            proto,
            functions: FnSet::ALL,
            units: None,
            ranges: Vec::new(),
            masters: Vec::new(),
            master_nets: Vec::new(),
            allow_plus: false,
        }
    }
}

/// Why a message was denied. Small and `Copy`: the worker keeps the last reason per flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The function is not in the conduit's allowed set.
    Function {
        /// Protocol.
        proto: L7Proto,
        /// Function code.
        code: u8,
    },
    /// The Modbus unit id is not allowed.
    Unit {
        /// Protocol.
        proto: L7Proto,
        /// Function code.
        code: u8,
        /// Unit id.
        unit: u16,
    },
    /// Addresses outside every allowed range.
    Range {
        /// Protocol.
        proto: L7Proto,
        /// Function code.
        code: u8,
        /// The offending range.
        range: AddrRange,
    },
    /// A DNP3 request from a link address that is not a named master.
    Master {
        /// Function code.
        code: u8,
        /// Link source address (`None`: not reported).
        address: Option<u16>,
    },
    /// A DNP3 request from a host outside the master zones.
    MasterHost {
        /// Function code.
        code: u8,
    },
    /// S7comm-plus on a conduit that does not admit it.
    S7Plus,
    /// The flow speaks another protocol than the conduit's.
    WrongProtocol {
        /// The conduit's protocol.
        expected: L7Proto,
        /// What the message was.
        found: L7Proto,
    },
    /// A message that does not parse, or a stream that could not be followed.
    Malformed {
        /// The conduit's protocol.
        proto: L7Proto,
    },
}

impl DenyReason {
    /// The function code the reason names, if any (for per-function deny counters).
    pub fn function(&self) -> Option<(L7Proto, u8)> {
        match *self {
            DenyReason::Function { proto, code }
            | DenyReason::Unit { proto, code, .. }
            | DenyReason::Range { proto, code, .. } => Some((proto, code)),
            DenyReason::Master { code, .. } | DenyReason::MasterHost { code } => {
                Some((L7Proto::Dnp3, code))
            }
            _ => None,
        }
    }
}

struct Named(L7Proto, u8);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Named(p, c) = *self;
        let what = match p {
            L7Proto::Iec104 => "type",
            L7Proto::EnipCip | L7Proto::Bacnet | L7Proto::OpcUa => "service",
            _ => "function",
        };
        write!(f, "{p} {what} {c} ({})", functions::name(p, c))
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DenyReason::Function { proto, code } => write!(f, "{} not allowed", Named(proto, code)),
            DenyReason::Unit { proto, code, unit } => {
                write!(f, "{} to unit {unit} not allowed", Named(proto, code))
            }
            DenyReason::Range { proto, code, range } => write!(
                f,
                "{} on addresses {range} outside the allowed ranges",
                Named(proto, code)
            ),
            DenyReason::Master { code, address } => {
                let n = Named(L7Proto::Dnp3, code);
                match address {
                    Some(a) => write!(f, "{n} from link address {a}, not an allowed master"),
                    None => write!(f, "{n} without a link address, not an allowed master"),
                }
            }
            DenyReason::MasterHost { code } => write!(
                f,
                "{} from a host outside the allowed masters",
                Named(L7Proto::Dnp3, code)
            ),
            DenyReason::S7Plus => f.write_str("s7comm-plus not allowed (s7.plus is false)"),
            DenyReason::WrongProtocol { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            DenyReason::Malformed { proto } => {
                write!(f, "malformed or unfollowable {proto} stream")
            }
        }
    }
}

/// The decision on one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L7Verdict {
    /// Forward.
    Allow,
    /// Drop, for this reason.
    Deny(DenyReason),
}

/// Decides one message against a conduit. `sender` is the IP address that sent the packet
/// (checked against DNP3 master zones). Never allocates, never panics.
pub fn check(c: &L7Constraint, m: &Message, sender: Sender) -> L7Verdict {
    use L7Verdict::{Allow, Deny};
    if m.proto == L7Proto::S7commPlus && c.proto == L7Proto::S7comm {
        return if c.allow_plus {
            Allow
        } else {
            Deny(DenyReason::S7Plus)
        };
    }
    if m.proto != c.proto {
        return Deny(DenyReason::WrongProtocol {
            expected: c.proto,
            found: m.proto,
        });
    }
    if m.role != Role::Request {
        return Allow;
    }
    let (proto, code) = (m.proto, m.function);
    if !c.functions.contains(code) {
        return Deny(DenyReason::Function { proto, code });
    }
    if let (Some(units), Some(unit)) = (&c.units, m.unit)
        && !u8::try_from(unit).is_ok_and(|u| units.contains(u))
    {
        return Deny(DenyReason::Unit { proto, code, unit });
    }
    if !c.ranges.is_empty() {
        for range in m.ranges.iter().flatten() {
            if !c.ranges.iter().any(|a| a.covers(*range)) {
                return Deny(DenyReason::Range {
                    proto,
                    code,
                    range: *range,
                });
            }
        }
    }
    if !c.masters.is_empty() && !m.source.is_some_and(|s| c.masters.contains(&s)) {
        return Deny(DenyReason::Master {
            code,
            address: m.source,
        });
    }
    if !c.master_nets.is_empty() && !c.master_nets.iter().any(|n| n.contains(sender)) {
        return Deny(DenyReason::MasterHost { code });
    }
    Allow
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::resolve;

    fn modbus(code: u8, start: u16, count: u16) -> Message {
        Message {
            proto: L7Proto::Modbus,
            role: Role::Request,
            function: code,
            unit: Some(1),
            ranges: [Some(AddrRange { start, count }), None],
            ..Message::default()
        }
    }

    fn read_only() -> L7Constraint {
        L7Constraint {
            functions: resolve(L7Proto::Modbus, "read_*")
                .unwrap()
                .into_iter()
                .collect(),
            ..L7Constraint::allow_all(L7Proto::Modbus)
        }
    }

    #[test]
    fn modbus_read_allowed_write_denied_with_named_reason() {
        let c = read_only();
        assert_eq!(
            check(&c, &modbus(3, 0, 10), Sender::default()),
            L7Verdict::Allow
        );
        let v = check(&c, &modbus(6, 0, 1), Sender::default());
        let L7Verdict::Deny(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            r.to_string(),
            "modbus function 6 (write_single_register) not allowed"
        );
        assert_eq!(r.function(), Some((L7Proto::Modbus, 6)));
        // Responses are never restricted.
        let resp = Message {
            role: Role::Response,
            ..modbus(6, 0, 1)
        };
        assert_eq!(check(&c, &resp, Sender::default()), L7Verdict::Allow);
    }

    #[test]
    fn modbus_units_and_ranges() {
        let c = L7Constraint {
            units: Some([1u8, 2].into_iter().collect()),
            ranges: vec![AddrRange::inclusive(0, 99), AddrRange::inclusive(200, 299)],
            ..read_only()
        };
        assert_eq!(
            check(&c, &modbus(3, 90, 10), Sender::default()),
            L7Verdict::Allow
        );
        let v = check(&c, &modbus(3, 95, 10), Sender::default());
        let L7Verdict::Deny(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            r.to_string(),
            "modbus function 3 (read_holding_registers) on addresses 95-104 outside the allowed ranges"
        );
        let other_unit = Message {
            unit: Some(7),
            ..modbus(3, 0, 1)
        };
        assert!(matches!(
            check(&c, &other_unit, Sender::default()),
            L7Verdict::Deny(DenyReason::Unit { unit: 7, .. })
        ));
    }

    #[test]
    fn dnp3_cold_restart_denied_and_masters_checked() {
        let c = L7Constraint {
            functions: ["read", "operate", "select", "confirm"]
                .iter()
                .flat_map(|s| resolve(L7Proto::Dnp3, s).unwrap())
                .collect(),
            masters: vec![1],
            master_nets: vec![Net {
                v6: false,
                addr: u128::from(0x0a00_0000u32),
                len: 8,
            }],
            ..L7Constraint::allow_all(L7Proto::Dnp3)
        };
        let req = |code, source| Message {
            proto: L7Proto::Dnp3,
            role: Role::Request,
            function: code,
            source: Some(source),
            unit: Some(10),
            ..Message::default()
        };
        let inside = Sender {
            v6: false,
            addr: u128::from(0x0a01_0203u32),
        };
        let outside = Sender {
            v6: false,
            addr: u128::from(0xc0a8_0001u32),
        };
        assert_eq!(check(&c, &req(1, 1), inside), L7Verdict::Allow);
        let L7Verdict::Deny(r) = check(&c, &req(13, 1), inside) else {
            panic!()
        };
        assert_eq!(r.to_string(), "dnp3 function 13 (cold_restart) not allowed");
        let L7Verdict::Deny(r) = check(&c, &req(1, 9), inside) else {
            panic!()
        };
        assert_eq!(
            r.to_string(),
            "dnp3 function 1 (read) from link address 9, not an allowed master"
        );
        assert_eq!(
            check(&c, &req(1, 1), outside),
            L7Verdict::Deny(DenyReason::MasterHost { code: 1 })
        );
    }

    #[test]
    fn s7_stop_denied_plus_gated_wrong_protocol_denied() {
        let mut functions = FnSet::ALL;
        for code in resolve(L7Proto::S7comm, "stop").unwrap() {
            functions.remove(code);
        }
        let c = L7Constraint {
            functions,
            ..L7Constraint::allow_all(L7Proto::S7comm)
        };
        let job = |code| Message {
            proto: L7Proto::S7comm,
            role: Role::Request,
            function: code,
            ..Message::default()
        };
        assert_eq!(check(&c, &job(0x04), Sender::default()), L7Verdict::Allow);
        let L7Verdict::Deny(r) = check(&c, &job(0x29), Sender::default()) else {
            panic!()
        };
        assert_eq!(r.to_string(), "s7comm function 41 (plc_stop) not allowed");
        let plus = Message {
            proto: L7Proto::S7commPlus,
            ..Message::default()
        };
        assert_eq!(
            check(&c, &plus, Sender::default()),
            L7Verdict::Deny(DenyReason::S7Plus)
        );
        let dnp = Message {
            proto: L7Proto::Dnp3,
            ..Message::default()
        };
        assert!(matches!(
            check(&c, &dnp, Sender::default()),
            L7Verdict::Deny(DenyReason::WrongProtocol { .. })
        ));
    }

    #[test]
    fn nets_match_prefixes_by_family() {
        let n = Net {
            v6: false,
            addr: u128::from(0x0a00_0000u32),
            len: 0,
        };
        assert!(n.contains(Sender { v6: false, addr: 5 }));
        assert!(!n.contains(Sender { v6: true, addr: 5 }));
    }
}
