//! S7comm over ISO-on-TCP: TPKT (RFC 1006), COTP (ISO 8073: connection request/confirm, data)
//! and the S7 header (protocol id 0x32, ROSCTR, parameter and data lengths, the function code
//! that leads the parameters). S7comm-plus (protocol id 0x72) is recognised, not parsed.

use septa_l7::{L7Proto, Message, Role};

use super::{Result, be16, invalid, need};

/// TPKT header length.
pub const TPKT_LEN: usize = 4;
/// Bytes that [`summarize`] reads (TPKT, COTP DT, userdata header and parameters).
pub const SUMMARY_LEN: usize = 24;
/// S7comm protocol id.
pub const S7_MAGIC: u8 = 0x32;
/// S7comm-plus protocol id.
pub const S7PLUS_MAGIC: u8 = 0x72;

/// COTP PDU types (high nibble of the second COTP byte).
pub mod cotp {
    /// Connection request.
    pub const CR: u8 = 0xe0;
    /// Connection confirm.
    pub const CC: u8 = 0xd0;
    /// Disconnect request.
    pub const DR: u8 = 0x80;
    /// Data.
    pub const DT: u8 = 0xf0;
}

/// S7 ROSCTR values.
pub mod rosctr {
    /// Job request.
    pub const JOB: u8 = 1;
    /// Acknowledgement without data.
    pub const ACK: u8 = 2;
    /// Acknowledgement with data.
    pub const ACK_DATA: u8 = 3;
    /// Userdata (programmer, cyclic, block, CPU, security, time functions).
    pub const USERDATA: u8 = 7;
}

/// A view of one TPKT-framed PDU (COTP and, for data, the S7 PDU).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer holding a whole TPKT with a sane COTP header (and S7 header, for data).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks everything the accessors read.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        let total = check_tpkt(b)?;
        need(b, total)?;
        check_fields(&b[..total])
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// TPKT length (whole PDU).
    pub fn tpkt_length(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// COTP length indicator (header bytes after it).
    pub fn cotp_len(&self) -> u8 {
        self.buffer.as_ref()[4]
    }

    /// COTP PDU type (high nibble).
    pub fn cotp_type(&self) -> u8 {
        self.buffer.as_ref()[5] & 0xf0
    }

    /// Offset of the COTP payload (the S7 PDU for data).
    pub fn payload_offset(&self) -> usize {
        TPKT_LEN + 1 + usize::from(self.cotp_len())
    }

    /// S7 protocol id (0x32 S7comm, 0x72 S7comm-plus) of a data PDU that carries one.
    pub fn protocol_id(&self) -> Option<u8> {
        let o = self.payload_offset();
        if self.cotp_type() != cotp::DT || usize::from(self.tpkt_length()) <= o {
            return None;
        }
        self.buffer.as_ref().get(o).copied()
    }

    /// ROSCTR of an S7comm PDU.
    pub fn rosctr(&self) -> u8 {
        let b = self.buffer.as_ref();
        b.get(self.payload_offset() + 1).copied().unwrap_or(0)
    }

    /// S7 header length (12 for acknowledgements, which carry an error class and code).
    pub fn s7_header_len(&self) -> usize {
        header_len(self.rosctr())
    }

    /// Parameter length.
    pub fn param_len(&self) -> u16 {
        get16(self.buffer.as_ref(), self.payload_offset() + 6)
    }

    /// Data length.
    pub fn data_len(&self) -> u16 {
        get16(self.buffer.as_ref(), self.payload_offset() + 8)
    }

    /// Error class and code of an acknowledgement.
    pub fn error(&self) -> Option<(u8, u8)> {
        let b = self.buffer.as_ref();
        let o = self.payload_offset();
        if self.protocol_id() != Some(S7_MAGIC)
            || !matches!(self.rosctr(), rosctr::ACK | rosctr::ACK_DATA)
        {
            return None;
        }
        Some((*b.get(o + 10)?, *b.get(o + 11)?))
    }

    /// The parameter bytes (present part).
    pub fn params(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let start = (self.payload_offset() + self.s7_header_len()).min(b.len());
        let end = (start + usize::from(self.param_len())).min(b.len());
        &b[start..end]
    }
}

fn get16(b: &[u8], i: usize) -> u16 {
    match (b.get(i), b.get(i + 1)) {
        (Some(&h), Some(&l)) => u16::from_be_bytes([h, l]),
        _ => 0,
    }
}

fn header_len(rosctr: u8) -> usize {
    if matches!(rosctr, rosctr::ACK | rosctr::ACK_DATA) {
        12
    } else {
        10
    }
}

fn check_tpkt(b: &[u8]) -> Result<usize> {
    need(b, TPKT_LEN)?;
    if b[0] != 3 || b[1] != 0 {
        return invalid("tpkt version");
    }
    let len = usize::from(be16(b, 2));
    if len < TPKT_LEN + 3 {
        return invalid("tpkt length");
    }
    Ok(len)
}

/// Checks COTP and S7 headers in `b` (one TPKT PDU or its leading bytes).
fn check_fields(b: &[u8]) -> Result<()> {
    need(b, TPKT_LEN + 2)?;
    let li = usize::from(b[4]);
    let kind = b[5] & 0xf0;
    if li < 1 {
        return invalid("cotp length");
    }
    if kind != cotp::DT {
        return if matches!(
            kind,
            cotp::CR | cotp::CC | cotp::DR | 0xc0 | 0x70 | 0x60 | 0x50
        ) {
            Ok(())
        } else {
            invalid("cotp pdu type")
        };
    }
    if li != 2 {
        return invalid("cotp data length indicator");
    }
    let o = TPKT_LEN + 1 + li;
    let total = usize::from(be16(b, 2));
    if total == o {
        return Ok(()); // an empty data unit (keep-alive), no S7 PDU
    }
    need(b, o + 1)?;
    match b[o] {
        S7PLUS_MAGIC => Ok(()),
        S7_MAGIC => {
            need(b, o + 2)?;
            let r = b[o + 1];
            if !matches!(
                r,
                rosctr::JOB | rosctr::ACK | rosctr::ACK_DATA | rosctr::USERDATA
            ) {
                return invalid("s7 rosctr");
            }
            let hl = header_len(r);
            need(b, o + hl)?;
            let plen = usize::from(be16(b, o + 6));
            if r == rosctr::JOB || r == rosctr::USERDATA {
                if plen == 0 {
                    return invalid("s7 parameter length");
                }
                need(b, o + hl + if r == rosctr::USERDATA { 6 } else { 1 })?;
                if r == rosctr::USERDATA && plen < 8 {
                    return invalid("s7 userdata parameter length");
                }
            }
            Ok(())
        }
        _ => invalid("s7 protocol id"),
    }
}

/// Total length of the TPKT PDU that starts `prefix`.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>> {
    if prefix.first().is_some_and(|&b| b != 3) || prefix.get(1).is_some_and(|&b| b != 0) {
        return invalid("tpkt version");
    }
    if prefix.len() < TPKT_LEN {
        return Ok(None);
    }
    check_tpkt(prefix).map(Some)
}

/// Summarises the TPKT PDU that starts `prefix`.
pub fn summarize(prefix: &[u8]) -> Result<Message> {
    let total = check_tpkt(prefix)?;
    let b = &prefix[..total.min(prefix.len())];
    check_fields(b)?;
    let p = Packet::new_unchecked(b);
    let mut m = Message {
        proto: L7Proto::S7comm,
        role: Role::Other,
        ..Message::default()
    };
    match p.protocol_id() {
        None => Ok(m), // connection management
        Some(S7PLUS_MAGIC) => {
            m.proto = L7Proto::S7commPlus;
            m.role = Role::Request;
            Ok(m)
        }
        Some(_) => {
            let o = p.payload_offset() + p.s7_header_len();
            match p.rosctr() {
                rosctr::JOB => {
                    m.role = Role::Request;
                    m.function = b[o];
                }
                rosctr::USERDATA => {
                    let method = b[o + 5];
                    m.function = 0xe0 | (method & 0x0f);
                    m.role = if method >> 4 == 4 {
                        Role::Request
                    } else {
                        Role::Response
                    };
                }
                _ => {
                    m.role = Role::Response;
                    m.exception = p.error().is_some_and(|(c, _)| c != 0);
                    m.function = b.get(o).copied().unwrap_or(0);
                }
            }
            Ok(m)
        }
    }
}
