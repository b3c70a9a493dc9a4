//! Modbus/TCP: the MBAP header (transaction, protocol 0, length, unit) and the PDU's function
//! code, exception flag and, for requests, the data addresses read or written.

use septa_l7::{AddrRange, L7Proto, Message, Role};

use super::{L7Error, Result, Side, be16, invalid, need};

/// MBAP header length (up to and including the unit id).
pub const MBAP_LEN: usize = 7;
/// Largest value of the MBAP length field (a 260-byte ADU).
pub const MAX_LENGTH: u16 = 254;
/// Bytes of a message that [`summarize`] reads (function 23 has two ranges).
pub const SUMMARY_LEN: usize = 16;

mod field {
    pub const TID: usize = 0;
    pub const PID: usize = 2;
    pub const LEN: usize = 4;
    pub const UNIT: usize = 6;
    pub const FC: usize = 7;
    pub const DATA: usize = 8;
}

/// A read-only or read-write view of one Modbus/TCP ADU.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer holding a whole ADU with a sane header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The header is sane and the buffer holds the whole ADU.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        check_header(b)?;
        need(b, field::DATA)?;
        need(b, self.total_len())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Transaction identifier.
    pub fn transaction_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TID)
    }

    /// Protocol identifier (0 for Modbus).
    pub fn protocol_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PID)
    }

    /// Length field: bytes after it (unit id + PDU).
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LEN)
    }

    /// Whole ADU length (6 + length).
    pub fn total_len(&self) -> usize {
        6 + usize::from(self.length())
    }

    /// Unit identifier.
    pub fn unit_id(&self) -> u8 {
        self.buffer.as_ref()[field::UNIT]
    }

    /// Function code as on the wire (bit 7 set in exception responses).
    pub fn raw_function(&self) -> u8 {
        self.buffer.as_ref()[field::FC]
    }

    /// Function code without the exception bit.
    pub fn function(&self) -> u8 {
        self.raw_function() & 0x7f
    }

    /// An exception response.
    pub fn is_exception(&self) -> bool {
        self.raw_function() & 0x80 != 0
    }

    /// PDU data after the function code (up to the declared length).
    pub fn data(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[field::DATA..self.total_len().min(b.len())]
    }
}

fn check_header(b: &[u8]) -> Result<()> {
    need(b, MBAP_LEN)?;
    if be16(b, field::PID) != 0 {
        return invalid("modbus protocol id");
    }
    let len = be16(b, field::LEN);
    if !(2..=MAX_LENGTH).contains(&len) {
        return invalid("modbus length");
    }
    Ok(())
}

/// Total length of the ADU that starts `prefix`.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>> {
    if prefix.len() < 6 {
        return match check_header_partial(prefix) {
            Ok(()) => Ok(None),
            Err(e) => Err(e),
        };
    }
    if be16(prefix, field::PID) != 0 {
        return invalid("modbus protocol id");
    }
    let len = be16(prefix, field::LEN);
    if !(2..=MAX_LENGTH).contains(&len) {
        return invalid("modbus length");
    }
    Ok(Some(6 + usize::from(len)))
}

fn check_header_partial(prefix: &[u8]) -> Result<()> {
    // Protocol id bytes that are present must be zero.
    if prefix.iter().skip(field::PID).take(2).any(|&b| b != 0) {
        return invalid("modbus protocol id");
    }
    Ok(())
}

/// Summarises the ADU that starts `prefix`; `side` tells requests (client) from responses.
pub fn summarize(side: Side, prefix: &[u8]) -> Result<Message> {
    check_header(prefix)?;
    need(prefix, field::DATA)?;
    let p = Packet::new_unchecked(prefix);
    let total = p.total_len();
    let mut m = Message {
        proto: L7Proto::Modbus,
        function: p.function(),
        exception: p.is_exception(),
        unit: Some(u16::from(p.unit_id())),
        ..Message::default()
    };
    if side == Side::Server {
        m.role = Role::Response;
        return Ok(m);
    }
    m.role = Role::Request;
    let d = &prefix[field::DATA..prefix.len().min(total)];
    let at = |i: usize| -> Result<u16> {
        if d.len() < i + 2 {
            Err(L7Error::Truncated {
                need: field::DATA + i + 2,
                have: field::DATA + d.len(),
            })
        } else {
            Ok(be16(d, i))
        }
    };
    let range = |start: u16, count: u16| -> Result<AddrRange> {
        if count == 0 || u32::from(start) + u32::from(count) > 0x1_0000 {
            invalid("modbus quantity")
        } else {
            Ok(AddrRange { start, count })
        }
    };
    match p.raw_function() {
        1..=4 | 15 | 16 => m.ranges[0] = Some(range(at(0)?, at(2)?)?),
        5 | 6 | 22 | 24 => m.ranges[0] = Some(range(at(0)?, 1)?),
        23 => {
            m.ranges[0] = Some(range(at(0)?, at(2)?)?);
            m.ranges[1] = Some(range(at(4)?, at(6)?)?);
        }
        _ => {}
    }
    Ok(m)
}

/// Whether the length field of the ADU in `adu` is the one its function code implies (requests
/// from the client, responses from the server). Identification uses it: the MBAP header alone
/// is a weak signature (other protocols' length prefixes look like it).
pub fn length_fits_function(side: Side, adu: &[u8]) -> bool {
    let Ok(p) = Packet::new_checked(adu) else {
        return false;
    };
    let (len, d) = (usize::from(p.length()), p.data());
    let byte = |i: usize| d.get(i).map(|&b| usize::from(b));
    if p.is_exception() {
        return side == Side::Server && len == 3;
    }
    match (side, p.function()) {
        (Side::Client, 1..=6) => len == 6,
        (Side::Client, 15 | 16) => byte(4).is_some_and(|n| len == 7 + n),
        (Side::Client, 23) => byte(8).is_some_and(|n| len == 11 + n),
        (Side::Client, 22) => len == 8,
        (Side::Client, 7 | 11 | 12 | 17) => len == 2,
        (Side::Server, 1..=4 | 23) => byte(0).is_some_and(|n| len == 3 + n),
        (Side::Server, 5 | 6 | 15 | 16) => len == 6,
        (Side::Server, 22) => len == 8,
        _ => true,
    }
}
