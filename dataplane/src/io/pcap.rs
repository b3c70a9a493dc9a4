//! pcap/pcapng file backend for the offline runtime.
//!
//! Port 0 receives the frames of the input file in order; the other ports receive nothing.
//! Transmissions on the *output port* are written to an output pcap (keeping each frame's
//! original timestamp); transmissions on other ports are accepted and discarded. Only Ethernet
//! captures are accepted. Allocates per frame: offline only, never on the DPDK path.
//!
//! A write error cannot be returned through [`PacketIo::tx_burst`]; it leaves the packets unsent
//! (the worker counts them as `tx_full`) and is reported by [`PcapIo::finish`].

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};

use super::{Burst, PacketBuf, PacketIo, PortId};
use crate::error::PcapIoError;

/// Number of ports a [`PcapIo`] serves: 0 (input) and 1 (its bridge peer).
pub const PCAP_PORTS: u16 = 2;

/// A frame read from a capture, with its timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapBuf {
    /// Capture timestamp (since the Unix epoch).
    pub timestamp: Duration,
    /// The frame.
    pub data: Vec<u8>,
}

impl PacketBuf for PcapBuf {
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

enum Input {
    Pcap(PcapReader<BufReader<File>>),
    PcapNg(PcapNgReader<BufReader<File>>),
}

/// The pcap backend.
pub struct PcapIo {
    path: PathBuf,
    input: Input,
    eof: bool,
    output: Option<(PortId, PcapWriter<BufWriter<File>>)>,
    error: Option<PcapIoError>,
    /// A frame read ahead by `next_timestamp`.
    peeked: Option<PcapBuf>,
    /// Timestamp of the last frame received: frames the gateway originates carry it.
    last_rx: Duration,
}

impl std::fmt::Debug for PcapIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapIo")
            .field("path", &self.path)
            .field("eof", &self.eof)
            .finish()
    }
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

fn open(path: &Path) -> Result<BufReader<File>, PcapIoError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| PcapIoError::Open(path.to_owned(), e))
}

fn linktype_error(path: &Path, linktype: DataLink) -> PcapIoError {
    PcapIoError::LinkType {
        path: path.to_owned(),
        linktype: format!("{linktype:?}"),
    }
}

impl PcapIo {
    /// Open `input` (pcap or pcapng, Ethernet) for reading; if `output` is given, create it and
    /// write there what is transmitted on `output_port`.
    pub fn open(input: &Path, output: Option<(&Path, PortId)>) -> Result<Self, PcapIoError> {
        let mut magic = [0u8; 4];
        open(input)?
            .read_exact(&mut magic)
            .map_err(|_| PcapIoError::NotPcap(input.to_owned()))?;
        let reader = open(input)?;
        let input_reader = if PCAP_MAGICS.contains(&magic) {
            let r = PcapReader::new(reader).map_err(PcapIoError::Pcap)?;
            let linktype = r.header().datalink;
            if linktype != DataLink::ETHERNET {
                return Err(linktype_error(input, linktype));
            }
            Input::Pcap(r)
        } else if magic == PCAPNG_MAGIC {
            // Link types are per interface in pcapng: checked as interfaces appear.
            Input::PcapNg(PcapNgReader::new(reader).map_err(PcapIoError::Pcap)?)
        } else {
            return Err(PcapIoError::NotPcap(input.to_owned()));
        };
        let output = match output {
            Some((path, port)) => {
                let file = File::create(path).map_err(|e| PcapIoError::Open(path.to_owned(), e))?;
                let header = PcapHeader {
                    datalink: DataLink::ETHERNET,
                    ts_resolution: pcap_file::TsResolution::NanoSecond,
                    ..PcapHeader::default()
                };
                let w = PcapWriter::with_header(BufWriter::new(file), header)
                    .map_err(PcapIoError::Pcap)?;
                Some((port, w))
            }
            None => None,
        };
        Ok(PcapIo {
            path: input.to_owned(),
            input: input_reader,
            eof: false,
            output,
            error: None,
            peeked: None,
            last_rx: Duration::ZERO,
        })
    }

    /// Has the whole input been read (or reading failed)?
    pub fn eof(&self) -> bool {
        self.eof && self.peeked.is_none()
    }

    /// Capture timestamp of the frame the next `rx_burst` starts with (the offline runtime's
    /// clock), `None` at the end of the input.
    pub fn next_timestamp(&mut self) -> Option<Duration> {
        if self.peeked.is_none() && !self.eof {
            self.peeked = self.next_frame();
            if self.peeked.is_none() {
                self.eof = true;
            }
        }
        self.peeked.as_ref().map(|f| f.timestamp)
    }

    /// Flush the output and report the first read or write error, if any.
    pub fn finish(self) -> Result<(), PcapIoError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some((_, w)) = self.output {
            use std::io::Write;
            w.into_writer().flush().map_err(PcapIoError::Io)?;
        }
        Ok(())
    }

    fn fail(&mut self, e: PcapIoError) {
        self.eof = true;
        self.error.get_or_insert(e);
    }

    fn next_frame(&mut self) -> Option<PcapBuf> {
        loop {
            match &mut self.input {
                Input::Pcap(r) => match r.next_packet()? {
                    Ok(p) => {
                        return Some(PcapBuf {
                            timestamp: p.timestamp,
                            data: p.data.into_owned(),
                        });
                    }
                    Err(e) => {
                        self.fail(PcapIoError::Pcap(e));
                        return None;
                    }
                },
                Input::PcapNg(r) => {
                    let (interface, frame) = match r.next_block()? {
                        Ok(Block::EnhancedPacket(p)) => (
                            Some(p.interface_id),
                            PcapBuf {
                                timestamp: p.timestamp,
                                data: p.data.into_owned(),
                            },
                        ),
                        Ok(Block::SimplePacket(p)) => (
                            Some(0),
                            PcapBuf {
                                timestamp: Duration::ZERO,
                                data: p.data.into_owned(),
                            },
                        ),
                        Ok(_) => continue,
                        Err(e) => {
                            self.fail(PcapIoError::Pcap(e));
                            return None;
                        }
                    };
                    let linktype = interface
                        .and_then(|i| r.interfaces().get(i as usize))
                        .map(|i| i.linktype);
                    match linktype {
                        Some(DataLink::ETHERNET) => return Some(frame),
                        Some(other) => {
                            let e = linktype_error(&self.path, other);
                            self.fail(e);
                        }
                        None => {
                            let e = PcapIoError::Pcap(pcap_file::PcapError::InvalidInterfaceId(
                                interface.unwrap_or_default(),
                            ));
                            self.fail(e);
                        }
                    }
                    return None;
                }
            }
        }
    }
}

impl PacketIo for PcapIo {
    type Buf = PcapBuf;

    fn port_count(&self) -> u16 {
        PCAP_PORTS
    }

    fn rx_burst(&mut self, port: PortId, out: &mut Burst<PcapBuf>) -> usize {
        if port != 0 || self.eof() {
            return 0;
        }
        let mut n = 0;
        if let Some(f) = self.peeked.take() {
            out.push(f);
            n += 1;
        }
        while !out.is_full() && !self.eof {
            match self.next_frame() {
                Some(f) => {
                    out.push(f);
                    n += 1;
                }
                None => {
                    self.eof = true;
                    break;
                }
            }
        }
        if let Some(last) = out.last() {
            self.last_rx = last.timestamp;
        }
        n
    }

    fn alloc_tx(&mut self, port: PortId, frame: &[u8]) -> Option<PcapBuf> {
        (port < PCAP_PORTS).then(|| PcapBuf {
            timestamp: self.last_rx,
            data: frame.to_vec(),
        })
    }

    fn tx_burst(&mut self, port: PortId, pkts: &mut Burst<PcapBuf>) -> usize {
        let Some((_, w)) = self.output.as_mut().filter(|(p, _)| *p == port) else {
            let n = pkts.len();
            pkts.clear();
            return n;
        };
        let mut sent = 0;
        for p in pkts.iter() {
            let rec = PcapPacket::new(p.timestamp, p.data.len() as u32, &p.data);
            if let Err(e) = w.write_packet(&rec) {
                self.error.get_or_insert(PcapIoError::Pcap(e));
                break;
            }
            sent += 1;
        }
        pkts.drain(..sent);
        sent
    }
}

/// Every frame of a capture, in order (for seeding ports and tests; allocates per frame).
pub fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>, PcapIoError> {
    let mut io = PcapIo::open(path, None)?;
    let mut frames = Vec::new();
    let mut burst = Burst::new();
    while !io.eof() {
        io.rx_burst(0, &mut burst);
        frames.extend(burst.drain(..).map(|b| b.data));
    }
    io.finish()?;
    Ok(frames)
}
