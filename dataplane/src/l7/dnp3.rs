//! DNP3 (IEEE 1815) over TCP or UDP: the link layer (start bytes, length, control, addresses,
//! CRC over the header and over every 16-byte data block), the transport header, and the
//! application header of the first fragment segment (control, function code).

use crc::{CRC_16_DNP, Crc};
use septa_l7::{L7Proto, Message, Role};

use super::{L7Error, Result, invalid, le16, need};

/// Link header length including its CRC.
pub const HEADER_LEN: usize = 10;
/// Data bytes per CRC block.
pub const BLOCK: usize = 16;
/// Bytes that [`summarize`] reads: the header and the first (full) data block with its CRC.
pub const SUMMARY_LEN: usize = HEADER_LEN + BLOCK + 2;

const CRC: Crc<u16> = Crc::<u16>::new(&CRC_16_DNP);

/// The DNP3 CRC of `data`, in wire order (low byte first).
pub fn crc(data: &[u8]) -> [u8; 2] {
    CRC.checksum(data).to_le_bytes()
}

mod field {
    pub const START: usize = 0;
    pub const LEN: usize = 2;
    pub const CTRL: usize = 3;
    pub const DST: usize = 4;
    pub const SRC: usize = 6;
    pub const CRC: usize = 8;
}

/// Link control bit: the frame comes from the master.
pub const CTRL_DIR: u8 = 0x80;
/// Link control bit: primary (initiating) frame.
pub const CTRL_PRM: u8 = 0x40;
/// Transport header: first segment of an application fragment.
pub const TH_FIR: u8 = 0x40;
/// Transport header: last segment.
pub const TH_FIN: u8 = 0x80;

/// A view of one DNP3 link frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer holding a whole frame whose every CRC matches.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The whole frame is present, the header is sane and every CRC matches.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        check_header(b)?;
        let total = self.total_len();
        need(b, total)?;
        let mut off = HEADER_LEN;
        while off < total {
            let n = (total - off - 2).min(BLOCK);
            if crc(&b[off..off + n]) != [b[off + n], b[off + n + 1]] {
                return Err(L7Error::Checksum { block: "dnp3 data" });
            }
            off += n + 2;
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length field: control + addresses + user data (5..=255).
    pub fn length(&self) -> u8 {
        self.buffer.as_ref()[field::LEN]
    }

    /// User data bytes (without CRCs).
    pub fn data_len(&self) -> usize {
        usize::from(self.length()).saturating_sub(5)
    }

    /// Whole frame length on the wire.
    pub fn total_len(&self) -> usize {
        total_for(self.data_len())
    }

    /// Link control byte.
    pub fn control(&self) -> u8 {
        self.buffer.as_ref()[field::CTRL]
    }

    /// Destination link address.
    pub fn destination(&self) -> u16 {
        le16(self.buffer.as_ref(), field::DST)
    }

    /// Source link address.
    pub fn source(&self) -> u16 {
        le16(self.buffer.as_ref(), field::SRC)
    }

    /// Sent by the master (DIR bit).
    pub fn from_master(&self) -> bool {
        self.control() & CTRL_DIR != 0
    }

    /// Transport header (first user-data byte), if the frame carries data.
    pub fn transport(&self) -> Option<u8> {
        (self.data_len() > 0).then(|| self.buffer.as_ref()[HEADER_LEN])
    }

    /// Application function code, if this frame starts an application fragment.
    pub fn app_function(&self) -> Option<u8> {
        let th = self.transport()?;
        (th & TH_FIR != 0 && self.data_len() >= 3).then(|| self.buffer.as_ref()[HEADER_LEN + 2])
    }
}

fn total_for(data_len: usize) -> usize {
    HEADER_LEN + data_len + 2 * data_len.div_ceil(BLOCK)
}

fn check_header(b: &[u8]) -> Result<()> {
    need(b, HEADER_LEN)?;
    if b[field::START] != 0x05 || b[field::START + 1] != 0x64 {
        return invalid("dnp3 start bytes");
    }
    if b[field::LEN] < 5 {
        return invalid("dnp3 length");
    }
    if crc(&b[..field::CRC]) != [b[field::CRC], b[field::CRC + 1]] {
        return Err(L7Error::Checksum {
            block: "dnp3 header",
        });
    }
    Ok(())
}

/// Total length of the frame that starts `prefix`.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>> {
    if prefix.first().is_some_and(|&b| b != 0x05) || prefix.get(1).is_some_and(|&b| b != 0x64) {
        return invalid("dnp3 start bytes");
    }
    if prefix.len() < HEADER_LEN {
        return Ok(None);
    }
    check_header(prefix)?;
    Ok(Some(total_for(usize::from(prefix[field::LEN]) - 5)))
}

/// Summarises the frame that starts `prefix` (header and first data block checked).
pub fn summarize(prefix: &[u8]) -> Result<Message> {
    check_header(prefix)?;
    let p = Packet::new_unchecked(prefix);
    let mut m = Message {
        proto: L7Proto::Dnp3,
        role: Role::Other,
        unit: Some(p.destination()),
        source: Some(p.source()),
        ..Message::default()
    };
    let n = p.data_len().min(BLOCK);
    if n == 0 {
        return Ok(m);
    }
    need(prefix, HEADER_LEN + n + 2)?;
    let block = &prefix[HEADER_LEN..HEADER_LEN + n];
    if crc(block) != [prefix[HEADER_LEN + n], prefix[HEADER_LEN + n + 1]] {
        return Err(L7Error::Checksum { block: "dnp3 data" });
    }
    if block[0] & TH_FIR == 0 {
        return Ok(m); // a continuation segment: its fragment's header was checked already
    }
    if n < 3 {
        return invalid("dnp3 application header");
    }
    let code = block[2];
    m.function = code;
    m.role = match code {
        0 => Role::Other, // confirm: part of every exchange, never restricted
        0x81..=0x83 => Role::Response,
        _ => Role::Request,
    };
    if m.role == Role::Response && n >= 5 {
        // IIN2 bits 0-2: function not supported, object unknown, parameter error.
        m.exception = block[4] & 0x07 != 0;
    }
    Ok(m)
}
