//! OPC UA binary (UA TCP): the 8-byte message header (type HEL/ACK/ERR/RHE/OPN/MSG/CLO, chunk
//! type F/C/A, size) and, for the first chunk of a MSG, the numeric node id of the service's
//! encoding (Read, Write, Call, ...), read after the symmetric security and sequence headers.
//!
//! Services can be read only on channels with security mode None or Sign; on an encrypted
//! channel the node id is ciphertext and reads as an unknown service.

use septa_l7::{L7Proto, Message, Role, functions};

use super::{Result, Side, invalid, le16, le32, need};

/// Message header length.
pub const HEADER_LEN: usize = 8;
/// Offset of the service node id in a MSG chunk.
pub const NODE_ID_OFFSET: usize = 24;
/// Bytes that [`summarize`] reads (the longest numeric node id encoding).
pub const SUMMARY_LEN: usize = NODE_ID_OFFSET + 7;
/// Largest message size accepted.
pub const MAX_SIZE: u32 = 1 << 24;
/// Function code reported for a service node id that is not in the table.
pub const UNKNOWN_SERVICE: u8 = 0xff;
const HELLO: u8 = 33;

/// Message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// Hello.
    Hel,
    /// Acknowledge.
    Ack,
    /// Error.
    Err,
    /// Reverse hello.
    Rhe,
    /// OpenSecureChannel.
    Opn,
    /// A service message.
    Msg,
    /// CloseSecureChannel.
    Clo,
}

fn message_type(b: &[u8]) -> Option<MessageType> {
    Some(match b.get(..3)? {
        b"HEL" => MessageType::Hel,
        b"ACK" => MessageType::Ack,
        b"ERR" => MessageType::Err,
        b"RHE" => MessageType::Rhe,
        b"OPN" => MessageType::Opn,
        b"MSG" => MessageType::Msg,
        b"CLO" => MessageType::Clo,
        _ => return None,
    })
}

/// A view of one UA TCP message chunk.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer holding a whole chunk with a sane header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Header sane and the whole chunk present.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        check_header(b)?;
        need(b, self.size() as usize)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn message_type(&self) -> MessageType {
        message_type(self.buffer.as_ref()).unwrap_or(MessageType::Err)
    }

    /// Chunk type: `F` final, `C` intermediate, `A` abort.
    pub fn chunk_type(&self) -> u8 {
        self.buffer.as_ref()[3]
    }

    /// Chunk size including the header.
    pub fn size(&self) -> u32 {
        le32(self.buffer.as_ref(), 4)
    }

    /// Secure channel id (OPN, MSG, CLO).
    pub fn secure_channel_id(&self) -> Option<u32> {
        let b = self.buffer.as_ref();
        (b.len() >= 12 && !matches!(self.message_type(), MessageType::Hel | MessageType::Ack))
            .then(|| le32(b, 8))
    }

    /// Numeric node id (namespace 0) of a MSG chunk's service, if encoded in the two- or
    /// four-byte or full numeric form and present.
    pub fn service_node_id(&self) -> Option<u32> {
        let b = self.buffer.as_ref();
        if self.message_type() != MessageType::Msg {
            return None;
        }
        let o = NODE_ID_OFFSET;
        match *b.get(o)? {
            0x00 => Some(u32::from(*b.get(o + 1)?)),
            0x01 if *b.get(o + 1)? == 0 && b.len() >= o + 4 => Some(u32::from(le16(b, o + 2))),
            0x02 if b.len() >= o + 7 && le16(b, o + 1) == 0 => Some(le32(b, o + 3)),
            _ => None,
        }
    }
}

fn check_header(b: &[u8]) -> Result<()> {
    need(b, HEADER_LEN)?;
    let Some(t) = message_type(b) else {
        return invalid("opcua message type");
    };
    let chunk = b[3];
    let chunk_ok = match t {
        MessageType::Msg | MessageType::Opn | MessageType::Clo => {
            matches!(chunk, b'F' | b'C' | b'A')
        }
        _ => chunk == b'F',
    };
    if !chunk_ok {
        return invalid("opcua chunk type");
    }
    let size = le32(b, 4);
    if !(HEADER_LEN as u32..=MAX_SIZE).contains(&size) {
        return invalid("opcua message size");
    }
    Ok(())
}

/// Total length of the chunk that starts `prefix`.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>> {
    if prefix.len() >= 3 && message_type(prefix).is_none() {
        return invalid("opcua message type");
    }
    if prefix.len() < HEADER_LEN {
        return Ok(None);
    }
    check_header(prefix)?;
    Ok(Some(le32(prefix, 4) as usize))
}

/// The chunk type of the chunk that starts `prefix`, if present.
pub fn chunk_type(prefix: &[u8]) -> Option<u8> {
    prefix.get(3).copied()
}

/// Summarises the chunk that starts `prefix` as the first chunk of its message.
pub fn summarize(side: Side, prefix: &[u8]) -> Result<Message> {
    check_header(prefix)?;
    let size = le32(prefix, 4) as usize;
    let b = &prefix[..size.min(prefix.len())];
    let p = Packet::new_unchecked(b);
    let mut m = Message {
        proto: L7Proto::OpcUa,
        role: Role::Other,
        ..Message::default()
    };
    let request = side == Side::Client;
    let role = |req: bool| if req { Role::Request } else { Role::Response };
    match p.message_type() {
        MessageType::Hel => {
            m.function = HELLO;
            m.role = role(request);
        }
        MessageType::Ack | MessageType::Rhe => m.role = Role::Response,
        MessageType::Err => {
            m.role = Role::Response;
            m.exception = true;
        }
        MessageType::Opn => {
            m.function = 2;
            m.role = role(request);
        }
        MessageType::Clo => {
            m.function = 3;
            m.role = role(request);
        }
        MessageType::Msg => {
            if p.chunk_type() == b'A' {
                return Ok(m);
            }
            need(b, NODE_ID_OFFSET + 2)?;
            match p.service_node_id().and_then(functions::opcua_service) {
                Some((code, response)) => {
                    m.function = code;
                    m.role = role(!response);
                }
                None => {
                    if matches!(b[NODE_ID_OFFSET], 0x01 | 0x02) && b.len() < SUMMARY_LEN.min(size) {
                        need(b, SUMMARY_LEN.min(size))?;
                    }
                    m.function = UNKNOWN_SERVICE;
                    m.role = role(request);
                }
            }
        }
    }
    Ok(m)
}
