//! L7 awareness: zero-copy parsers of industrial protocols, identification of common IT
//! protocols, the bounded per-flow stream state, and the function-code conduit check.
//!
//! * One module per industrial protocol ([`modbus`], [`dnp3`], [`s7`], [`enip`], [`bacnet`],
//!   [`iec104`], [`opcua`]), each in the smoltcp `wire` style: a `Packet<T: AsRef<[u8]>>` view
//!   with `new_checked` (the whole message is present and its header is sane), accessors that
//!   cannot panic after that check, and a `summarize` that reads only the leading bytes of a
//!   message (its first [`summary_len`] bytes) into a [`Message`].
//! * [`ident`] names a flow's protocol from its first payload, with the port as a hint.
//! * [`L7State`] (64 bytes, no heap) follows a TCP stream in both directions: it frames
//!   messages across segments, buffers a split header in a bounded window and skips bodies, so
//!   every message is summarised exactly once and checked against the conduit with
//!   [`septa_l7::check`].
//! * [`inspect`] is the worker's side: a bounded per-worker slab of stream states, in-order
//!   feeding of TCP segments, blocking of denied flows, counters ([`L7Inspector`]).
//! * [`samples`] builds valid messages and whole captures of every protocol for tests.
//!
//! Invariants: nothing here allocates, locks or logs; every input either parses or yields an
//! [`L7Error`]; malformed messages are counted, never a panic. The name tables and the
//! constraint evaluator live in `septa-l7` (shared with the policy compiler).

pub mod bacnet;
pub mod dnp3;
pub mod enip;
pub mod ident;
pub mod iec104;
pub mod inspect;
pub mod modbus;
pub mod opcua;
pub mod s7;
pub mod samples;
mod stream;
#[cfg(test)]
mod tests;

pub use ident::{Transport, identify, tls_sni};
pub use inspect::{L7FlowStats, L7Inspector, L7Judgement};
pub use septa_l7::{DenyReason, L7Constraint, L7Proto, L7Verdict, Message, Role, Sender, check};
pub use stream::{FunctionTally, L7_PUBLISH_US, L7Counters, L7State, SharedL7Counters};

/// Which end of the connection sent a message: the client opened the flow (the flow entry's
/// `Direction::Original`), the server answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The flow's initiator.
    Client = 0,
    /// The flow's responder.
    Server = 1,
}

/// Why a message does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L7Error {
    /// Fewer bytes than the header or the declared length needs.
    #[error("truncated: {need} bytes needed, {have} present")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A header field holds a value the protocol does not allow.
    #[error("invalid {field}")]
    Invalid {
        /// Name of the field.
        field: &'static str,
    },
    /// A checksum does not match (DNP3 link CRCs).
    #[error("checksum mismatch in {block}")]
    Checksum {
        /// Which block.
        block: &'static str,
    },
}

/// Result of the L7 parsers.
pub type Result<T> = core::result::Result<T, L7Error>;

pub(crate) fn need(buf: &[u8], n: usize) -> Result<()> {
    if buf.len() < n {
        Err(L7Error::Truncated {
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn invalid<T>(field: &'static str) -> Result<T> {
    Err(L7Error::Invalid { field })
}

#[inline]
pub(crate) fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

#[inline]
pub(crate) fn le16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

#[inline]
pub(crate) fn le32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Bytes of a message's beginning that [`summarize`] reads (at most [`stream::WINDOW`]).
pub fn summary_len(proto: L7Proto) -> usize {
    match proto {
        L7Proto::Modbus => modbus::SUMMARY_LEN,
        L7Proto::Dnp3 => dnp3::SUMMARY_LEN,
        L7Proto::S7comm | L7Proto::S7commPlus => s7::SUMMARY_LEN,
        L7Proto::EnipCip => enip::SUMMARY_LEN,
        L7Proto::Iec104 => iec104::SUMMARY_LEN,
        L7Proto::OpcUa => opcua::SUMMARY_LEN,
        _ => 0,
    }
}

/// Total length of the message that starts `prefix` (a TCP stream of `proto`): `Ok(None)` when
/// more bytes are needed to tell, an error when the header is not the protocol's.
pub fn frame_len(proto: L7Proto, prefix: &[u8]) -> Result<Option<usize>> {
    match proto {
        L7Proto::Modbus => modbus::frame_len(prefix),
        L7Proto::Dnp3 => dnp3::frame_len(prefix),
        L7Proto::S7comm | L7Proto::S7commPlus => s7::frame_len(prefix),
        L7Proto::EnipCip => enip::frame_len(prefix),
        L7Proto::Iec104 => iec104::frame_len(prefix),
        L7Proto::OpcUa => opcua::frame_len(prefix),
        L7Proto::Bacnet => bacnet::frame_len(prefix),
        _ => invalid("protocol (no framing)"),
    }
}

/// Summarises the message that starts `prefix` (its first [`summary_len`] bytes suffice).
pub fn summarize(proto: L7Proto, side: Side, prefix: &[u8]) -> Result<Message> {
    match proto {
        L7Proto::Modbus => modbus::summarize(side, prefix),
        L7Proto::Dnp3 => dnp3::summarize(prefix),
        L7Proto::S7comm | L7Proto::S7commPlus => s7::summarize(prefix),
        L7Proto::EnipCip => enip::summarize(prefix),
        L7Proto::Bacnet => bacnet::summarize(prefix),
        L7Proto::Iec104 => iec104::summarize(prefix),
        L7Proto::OpcUa => opcua::summarize(side, prefix),
        _ => invalid("protocol (no parser)"),
    }
}
