//! EtherNet/IP: the 24-byte encapsulation header (command, length, session, status, context,
//! options) and, for SendRRData/SendUnitData, the common packet format items that lead to the
//! CIP request's service code.

use septa_l7::{L7Proto, Message, Role};

use super::{Result, invalid, le16, le32, need};

/// Encapsulation header length.
pub const HEADER_LEN: usize = 24;
/// Bytes that [`summarize`] reads: header, CPF prefix, a connected address item, the data
/// item header, its sequence count and the CIP service byte.
pub const SUMMARY_LEN: usize = 48;
/// Most CPF items walked before the data item must have been found.
const MAX_ITEMS: u16 = 4;

/// Encapsulation commands.
pub mod command {
    /// NOP.
    pub const NOP: u16 = 0x0000;
    /// ListServices.
    pub const LIST_SERVICES: u16 = 0x0004;
    /// ListIdentity.
    pub const LIST_IDENTITY: u16 = 0x0063;
    /// ListInterfaces.
    pub const LIST_INTERFACES: u16 = 0x0064;
    /// RegisterSession.
    pub const REGISTER_SESSION: u16 = 0x0065;
    /// UnRegisterSession.
    pub const UNREGISTER_SESSION: u16 = 0x0066;
    /// SendRRData (unconnected CIP).
    pub const SEND_RR_DATA: u16 = 0x006f;
    /// SendUnitData (connected CIP).
    pub const SEND_UNIT_DATA: u16 = 0x0070;
    /// IndicateStatus.
    pub const INDICATE_STATUS: u16 = 0x0072;
    /// Cancel.
    pub const CANCEL: u16 = 0x0073;
}

/// CPF item types.
pub mod item {
    /// Null address.
    pub const NULL_ADDRESS: u16 = 0x0000;
    /// Connected address.
    pub const CONNECTED_ADDRESS: u16 = 0x00a1;
    /// Connected data (sequence count, then CIP).
    pub const CONNECTED_DATA: u16 = 0x00b1;
    /// Unconnected data (CIP).
    pub const UNCONNECTED_DATA: u16 = 0x00b2;
    /// Sequenced address (implicit I/O).
    pub const SEQUENCED_ADDRESS: u16 = 0x8002;
}

fn known(cmd: u16) -> bool {
    use command::*;
    matches!(
        cmd,
        NOP | LIST_SERVICES
            | LIST_IDENTITY
            | LIST_INTERFACES
            | REGISTER_SESSION
            | UNREGISTER_SESSION
            | SEND_RR_DATA
            | SEND_UNIT_DATA
            | INDICATE_STATUS
            | CANCEL
    )
}

/// A view of one encapsulation message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer holding a whole encapsulation message with a known command.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Header sane, whole message present, CIP service located for data commands.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        check_header(b)?;
        need(b, self.total_len())?;
        self.cip_offset().map(|_| ())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Encapsulation command.
    pub fn command(&self) -> u16 {
        le16(self.buffer.as_ref(), 0)
    }

    /// Length of the data after the header.
    pub fn length(&self) -> u16 {
        le16(self.buffer.as_ref(), 2)
    }

    /// Whole message length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.length())
    }

    /// Session handle.
    pub fn session(&self) -> u32 {
        le32(self.buffer.as_ref(), 4)
    }

    /// Encapsulation status.
    pub fn status(&self) -> u32 {
        le32(self.buffer.as_ref(), 8)
    }

    /// Offset of the CIP message in a SendRRData/SendUnitData message (`None` for others).
    pub fn cip_offset(&self) -> Result<Option<usize>> {
        let b = self.buffer.as_ref();
        let cmd = self.command();
        if cmd != command::SEND_RR_DATA && cmd != command::SEND_UNIT_DATA {
            return Ok(None);
        }
        let end = self.total_len().min(b.len());
        let b = &b[..end];
        need(b, HEADER_LEN + 8)?;
        let count = le16(b, HEADER_LEN + 6);
        if count == 0 || count > MAX_ITEMS {
            return invalid("enip cpf item count");
        }
        let mut off = HEADER_LEN + 8;
        for _ in 0..count {
            need(b, off + 4)?;
            let (kind, len) = (le16(b, off), usize::from(le16(b, off + 2)));
            let data = off + 4;
            match kind {
                item::UNCONNECTED_DATA => {
                    need(b, data + 1)?;
                    return Ok(Some(data));
                }
                item::CONNECTED_DATA => {
                    need(b, data + 3)?;
                    return Ok(Some(data + 2));
                }
                _ => off = data + len,
            }
        }
        invalid("enip cpf without a data item")
    }
}

fn check_header(b: &[u8]) -> Result<()> {
    need(b, HEADER_LEN)?;
    if !known(le16(b, 0)) {
        return invalid("enip command");
    }
    Ok(())
}

/// Total length of the message that starts `prefix`.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>> {
    if prefix.len() < 4 {
        return Ok(None);
    }
    if !known(le16(prefix, 0)) {
        return invalid("enip command");
    }
    Ok(Some(HEADER_LEN + usize::from(le16(prefix, 2))))
}

/// Summarises the message that starts `prefix`: CIP requests by service code, CIP responses,
/// and encapsulation-only commands (sessions, identity) as link control.
pub fn summarize(prefix: &[u8]) -> Result<Message> {
    check_header(prefix)?;
    let p = Packet::new_unchecked(prefix);
    let mut m = Message {
        proto: L7Proto::EnipCip,
        role: Role::Other,
        ..Message::default()
    };
    if let Some(o) = p.cip_offset()? {
        let service = prefix[o];
        m.function = service & 0x7f;
        if service & 0x80 != 0 {
            m.role = Role::Response;
            m.exception = prefix.get(o + 2).is_some_and(|&s| s != 0);
        } else {
            m.role = Role::Request;
        }
    }
    Ok(m)
}
