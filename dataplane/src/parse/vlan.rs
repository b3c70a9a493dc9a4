//! Zero-copy view of an IEEE 802.1Q / 802.1ad (QinQ) VLAN tag, in the style of `smoltcp::wire`
//! (smoltcp has none).
//!
//! The view covers the 4 bytes that follow a TPID (the TPID itself is the ethertype field of the
//! enclosing header): TCI (PCP, DEI, VLAN id) then the encapsulated ethertype. After
//! [`VlanTag::new_checked`] succeeds no accessor can panic.

use smoltcp::wire::EthernetProtocol;

/// TPID of a customer (802.1Q) tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of a service (802.1ad, QinQ outer) tag.
pub const TPID_8021AD: u16 = 0x88a8;
/// Bytes of a tag after its TPID.
pub const HEADER_LEN: usize = 4;

/// Is `ethertype` one of the VLAN TPIDs this view parses?
#[inline]
pub const fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == TPID_8021Q || ethertype == TPID_8021AD
}

/// Error returned when the buffer is shorter than a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated;

/// A read/write view of a VLAN tag.
#[derive(Debug, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wrap a buffer without checking its length; accessors may panic until
    /// [`check_len`](Self::check_len) succeeds.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// [`new_unchecked`](Self::new_unchecked) plus [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// Ensure no accessor will panic.
    pub fn check_len(&self) -> Result<(), Truncated> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Truncated)
        } else {
            Ok(())
        }
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn tci(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vlan_id(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Ethertype of what the tag encapsulates (may be another TPID for QinQ).
    pub fn ethertype(&self) -> EthernetProtocol {
        let d = self.buffer.as_ref();
        EthernetProtocol::from(u16::from_be_bytes([d[2], d[3]]))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VlanTag<&'a T> {
    /// The bytes after the tag.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[0..2].copy_from_slice(&tci.to_be_bytes());
    }

    /// Set the priority code point (only the low 3 bits are used).
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13);
        self.set_tci(tci);
    }

    /// Set the drop eligible indicator.
    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Set the VLAN id (only the low 12 bits are used).
    pub fn set_vlan_id(&mut self, id: u16) {
        let tci = (self.tci() & 0xf000) | (id & 0x0fff);
        self.set_tci(tci);
    }

    /// Set the encapsulated ethertype.
    pub fn set_ethertype(&mut self, ethertype: EthernetProtocol) {
        self.buffer.as_mut()[2..4].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PCP 5, DEI 1, VID 0x123, inner ethertype IPv4, one payload byte.
    const TAG: [u8; 5] = [0xb1, 0x23, 0x08, 0x00, 0xaa];

    #[test]
    fn deconstruct() {
        let t = VlanTag::new_checked(&TAG[..]).unwrap();
        assert_eq!(t.pcp(), 5);
        assert!(t.dei());
        assert_eq!(t.vlan_id(), 0x123);
        assert_eq!(t.ethertype(), EthernetProtocol::Ipv4);
        assert_eq!(t.payload(), &[0xaa]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 5];
        buf[4] = 0xaa;
        let mut t = VlanTag::new_unchecked(&mut buf[..]);
        t.set_pcp(5);
        t.set_dei(true);
        t.set_vlan_id(0x123);
        t.set_ethertype(EthernetProtocol::Ipv4);
        assert_eq!(buf, TAG);
        // Setters keep the other TCI fields.
        let mut t = VlanTag::new_unchecked(&mut buf[..]);
        t.set_vlan_id(0xfff);
        t.set_dei(false);
        assert_eq!((t.pcp(), t.dei(), t.vlan_id()), (5, false, 0xfff));
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(VlanTag::new_checked(&TAG[..n]), Err(Truncated));
        }
        assert!(VlanTag::new_checked(&TAG[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn tpids() {
        assert!(is_vlan_tpid(0x8100) && is_vlan_tpid(0x88a8) && !is_vlan_tpid(0x0800));
    }
}
