//! BACnet/IP: BVLC (type 0x81, function, length), NPDU (version, control, optional destination
//! and source specifiers, hop count) and the APDU's type and service choice.

use septa_l7::{L7Proto, Message, Role};

use super::{Result, be16, invalid, need};

/// BVLC header length (forwarded NPDUs add the 6-byte originating address).
pub const BVLC_LEN: usize = 4;

/// BVLC functions that carry an NPDU.
pub mod bvlc {
    /// Forwarded-NPDU (6-byte B/IP address follows the header).
    pub const FORWARDED_NPDU: u8 = 0x04;
    /// Distribute-Broadcast-To-Network.
    pub const DISTRIBUTE_BROADCAST: u8 = 0x09;
    /// Original-Unicast-NPDU.
    pub const ORIGINAL_UNICAST: u8 = 0x0a;
    /// Original-Broadcast-NPDU.
    pub const ORIGINAL_BROADCAST: u8 = 0x0b;
    /// Secure-BVLL.
    pub const SECURE_BVLL: u8 = 0x0c;
}

/// APDU types (high nibble of the first APDU byte).
pub mod apdu {
    /// Confirmed service request.
    pub const CONFIRMED_REQUEST: u8 = 0;
    /// Unconfirmed service request.
    pub const UNCONFIRMED_REQUEST: u8 = 1;
    /// Simple ACK.
    pub const SIMPLE_ACK: u8 = 2;
    /// Complex ACK.
    pub const COMPLEX_ACK: u8 = 3;
    /// Segment ACK.
    pub const SEGMENT_ACK: u8 = 4;
    /// Error.
    pub const ERROR: u8 = 5;
    /// Reject.
    pub const REJECT: u8 = 6;
    /// Abort.
    pub const ABORT: u8 = 7;
}

/// A view of one BACnet/IP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer holding a whole BVLC message whose NPDU (if any) walks to its APDU.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// BVLC header sane, length equal to the buffer's, NPDU walkable.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        check_bvlc(b)?;
        if usize::from(self.length()) != b.len() {
            return invalid("bacnet bvlc length");
        }
        self.apdu_offset().map(|_| ())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// BVLC function.
    pub fn function(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// BVLC length (whole message).
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Offset of the NPDU, if the BVLC function carries one.
    pub fn npdu_offset(&self) -> Option<usize> {
        match self.function() {
            bvlc::FORWARDED_NPDU => Some(BVLC_LEN + 6),
            bvlc::DISTRIBUTE_BROADCAST | bvlc::ORIGINAL_UNICAST | bvlc::ORIGINAL_BROADCAST => {
                Some(BVLC_LEN)
            }
            _ => None,
        }
    }

    /// Offset of the APDU (`None`: no NPDU, or a network-layer message).
    pub fn apdu_offset(&self) -> Result<Option<usize>> {
        let b = self.buffer.as_ref();
        let Some(mut o) = self.npdu_offset() else {
            return Ok(None);
        };
        need(b, o + 2)?;
        if b[o] != 1 {
            return invalid("bacnet npdu version");
        }
        let control = b[o + 1];
        o += 2;
        if control & 0x20 != 0 {
            need(b, o + 3)?;
            o += 3 + usize::from(b[o + 2]);
        }
        if control & 0x08 != 0 {
            need(b, o + 3)?;
            let slen = usize::from(b[o + 2]);
            if slen == 0 {
                return invalid("bacnet npdu source length");
            }
            o += 3 + slen;
        }
        if control & 0x20 != 0 {
            o += 1; // hop count
        }
        if control & 0x80 != 0 {
            return Ok(None); // network-layer message
        }
        need(b, o + 1)?;
        Ok(Some(o))
    }
}

fn check_bvlc(b: &[u8]) -> Result<()> {
    need(b, BVLC_LEN)?;
    if b[0] != 0x81 {
        return invalid("bacnet bvlc type");
    }
    if b[1] > bvlc::SECURE_BVLL {
        return invalid("bacnet bvlc function");
    }
    if usize::from(be16(b, 2)) < BVLC_LEN {
        return invalid("bacnet bvlc length");
    }
    Ok(())
}

/// Length of the BVLC message that starts `prefix` (BACnet/IP is datagram-framed; this serves
/// the rare TCP transport and the tests).
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>> {
    if prefix.len() < BVLC_LEN {
        return Ok(None);
    }
    check_bvlc(prefix)?;
    Ok(Some(usize::from(be16(prefix, 2))))
}

/// Summarises one datagram: confirmed requests by service choice, unconfirmed ones as
/// `0x80 | choice`, acknowledgements and errors as responses.
pub fn summarize(datagram: &[u8]) -> Result<Message> {
    check_bvlc(datagram)?;
    let total = usize::from(be16(datagram, 2));
    let b = &datagram[..total.min(datagram.len())];
    let p = Packet::new_unchecked(b);
    let mut m = Message {
        proto: L7Proto::Bacnet,
        role: Role::Other,
        ..Message::default()
    };
    let Some(o) = p.apdu_offset()? else {
        return Ok(m);
    };
    let first = b[o];
    let choice_at = |i: usize| -> Result<u8> {
        need(b, o + i + 1)?;
        Ok(b[o + i])
    };
    match first >> 4 {
        apdu::CONFIRMED_REQUEST => {
            let segmented = first & 0x08 != 0;
            m.function = choice_at(if segmented { 5 } else { 3 })?;
            m.role = Role::Request;
        }
        apdu::UNCONFIRMED_REQUEST => {
            let c = choice_at(1)?;
            if c >= 0x80 {
                return invalid("bacnet unconfirmed service choice");
            }
            m.function = 0x80 | c;
            m.role = Role::Request;
        }
        apdu::SIMPLE_ACK | apdu::ERROR => {
            m.function = choice_at(2)?;
            m.role = Role::Response;
            m.exception = first >> 4 == apdu::ERROR;
        }
        apdu::COMPLEX_ACK => {
            let segmented = first & 0x08 != 0;
            m.function = choice_at(if segmented { 4 } else { 2 })?;
            m.role = Role::Response;
        }
        apdu::SEGMENT_ACK | apdu::REJECT | apdu::ABORT => {
            m.role = Role::Response;
            m.exception = first >> 4 != apdu::SEGMENT_ACK;
        }
        _ => return invalid("bacnet apdu type"),
    }
    Ok(m)
}
