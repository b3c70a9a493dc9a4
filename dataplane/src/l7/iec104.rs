//! IEC 60870-5-104: the APCI (start 0x68, length, four control octets: I, S or U format) and,
//! for I-format frames, the ASDU header (type id, variable structure qualifier, cause of
//! transmission, originator and common address).

use septa_l7::{L7Proto, Message, Role};

use super::{Result, invalid, le16, need};

/// APCI length (start, length, control field).
pub const APCI_LEN: usize = 6;
/// ASDU header length (type, VSQ, COT, originator, common address).
pub const ASDU_HEADER_LEN: usize = 6;
/// Bytes that [`summarize`] reads.
pub const SUMMARY_LEN: usize = APCI_LEN + ASDU_HEADER_LEN;

/// APCI frame format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Numbered information transfer (carries an ASDU).
    I,
    /// Numbered supervisory (acknowledgement).
    S,
    /// Unnumbered control (STARTDT, STOPDT, TESTFR).
    U,
}

/// A view of one APDU.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer holding a whole APDU with sane APCI (and ASDU header for I frames).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the APCI, the length and the ASDU header.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        check_fields(b)?;
        need(b, self.total_len())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// APDU length field (bytes after it).
    pub fn length(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Whole APDU length.
    pub fn total_len(&self) -> usize {
        2 + usize::from(self.length())
    }

    /// Frame format.
    pub fn format(&self) -> Format {
        format_of(self.buffer.as_ref()[2])
    }

    /// U-format function bits (STARTDT act 0x07, con 0x0b, STOPDT 0x13/0x23, TESTFR 0x43/0x83).
    pub fn u_function(&self) -> u8 {
        self.buffer.as_ref()[2]
    }

    /// Send sequence number of an I frame.
    pub fn send_seq(&self) -> u16 {
        le16(self.buffer.as_ref(), 2) >> 1
    }

    /// Receive sequence number of I and S frames.
    pub fn recv_seq(&self) -> u16 {
        le16(self.buffer.as_ref(), 4) >> 1
    }

    /// ASDU type identifier (I frames).
    pub fn type_id(&self) -> u8 {
        self.buffer.as_ref()[6]
    }

    /// Cause of transmission (6 bits).
    pub fn cause(&self) -> u8 {
        self.buffer.as_ref()[8] & 0x3f
    }

    /// Negative confirmation bit.
    pub fn negative(&self) -> bool {
        self.buffer.as_ref()[8] & 0x40 != 0
    }

    /// Common address of the ASDU.
    pub fn common_address(&self) -> u16 {
        le16(self.buffer.as_ref(), 10)
    }
}

fn format_of(c0: u8) -> Format {
    if c0 & 1 == 0 {
        Format::I
    } else if c0 & 3 == 1 {
        Format::S
    } else {
        Format::U
    }
}

fn check_fields(b: &[u8]) -> Result<()> {
    need(b, APCI_LEN)?;
    if b[0] != 0x68 {
        return invalid("iec104 start byte");
    }
    let len = b[1];
    if !(4..=253).contains(&len) {
        return invalid("iec104 length");
    }
    match format_of(b[2]) {
        Format::I => {
            if usize::from(len) < 4 + ASDU_HEADER_LEN {
                return invalid("iec104 asdu length");
            }
            need(b, SUMMARY_LEN)?;
            if b[6] == 0 {
                return invalid("iec104 type id");
            }
        }
        Format::S => {
            if len != 4 || b[2] != 1 || b[3] != 0 {
                return invalid("iec104 s-format control");
            }
        }
        Format::U => {
            let f = b[2];
            if len != 4
                || !matches!(f, 0x07 | 0x0b | 0x13 | 0x23 | 0x43 | 0x83)
                || b[3..6] != [0; 3]
            {
                return invalid("iec104 u-format control");
            }
        }
    }
    Ok(())
}

/// Total length of the APDU that starts `prefix`.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>> {
    match (prefix.first(), prefix.get(1)) {
        (Some(&s), _) if s != 0x68 => invalid("iec104 start byte"),
        (Some(_), Some(&len)) if (4..=253).contains(&len) => Ok(Some(2 + usize::from(len))),
        (Some(_), Some(_)) => invalid("iec104 length"),
        _ => Ok(None),
    }
}

/// Summarises the APDU that starts `prefix`: I frames are requests (commands, monitoring data)
/// except confirmations and terminations, which are responses; S and U frames are link control.
pub fn summarize(prefix: &[u8]) -> Result<Message> {
    check_fields(prefix)?;
    let p = Packet::new_unchecked(prefix);
    let mut m = Message {
        proto: L7Proto::Iec104,
        role: Role::Other,
        ..Message::default()
    };
    if p.format() == Format::I {
        m.function = p.type_id();
        m.unit = Some(p.common_address());
        m.exception = p.negative();
        // 7 activation con, 9 deactivation con, 10 activation termination, 44-47 unknown x.
        m.role = match p.cause() {
            7 | 9 | 10 | 44..=47 => Role::Response,
            _ => Role::Request,
        };
    }
    Ok(m)
}
