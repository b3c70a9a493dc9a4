//! Ethernet ports: lookup, configuration (queues, symmetric RSS, descriptors), start/stop,
//! link status and counters.

use std::ffi::{CStr, CString, c_char};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::eal::Eal;
use crate::error::{DpdkError, check_port};
use crate::mempool::Mempool;
use crate::queue::{PortQueue, live_queues};

const MAX_PORTS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;

/// Ports whose queues were handed out (configure once per process).
static CONFIGURED: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

/// DPDK's ethdev control functions are not thread-safe: every control-path call of this module
/// runs under this lock (never taken on the burst path).
static CONTROL: Mutex<()> = Mutex::new(());

fn control() -> MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic while holding it leaves nothing inconsistent.
    CONTROL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Toeplitz key of repeated 0x6d5a: hashing (src, dst) and (dst, src) gives the same value, so
/// both directions of a flow land on the same queue (Woo & Park, "Scalable TCP Session
/// Monitoring with Symmetric Receive-side Scaling"). Static because PMDs keep the pointer from
/// `rte_eth_dev_configure` and may read it again at start.
static SYMMETRIC_RSS_KEY: [u8; 64] = {
    let mut key = [0u8; 64];
    let mut i = 0;
    while i < key.len() {
        key[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    key
};

/// Key length used when a device does not report one (the common 40-byte Toeplitz key).
const DEFAULT_RSS_KEY_LEN: u8 = 40;

/// An ethdev port, by DPDK port id. Operations on a port that was closed or detached return
/// errors, never undefined behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    id: u16,
}

/// What the device says it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCapabilities {
    /// Driver name, e.g. `net_ring`, `net_null`, `net_pcap`.
    pub driver: String,
    /// Maximum rx queues.
    pub max_rx_queues: u16,
    /// Maximum tx queues.
    pub max_tx_queues: u16,
    /// RSS hash types the device supports (`flow_type_rss_offloads`); 0: no RSS.
    pub rss_offloads: u64,
    /// RSS key size in bytes (0: not reported).
    pub rss_key_size: u8,
}

/// How to configure a port: one rx and one tx queue per worker.
#[derive(Debug, Clone, Copy)]
pub struct PortConfig {
    /// Number of rx queues, and of tx queues.
    pub queues: u16,
    /// Rx descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    /// Tx descriptors per queue (adjusted to the device's limits).
    pub tx_desc: u16,
    /// Pool the rx queues fill their rings from.
    pub pool: Mempool,
}

/// A configured (not yet started) port.
#[derive(Debug)]
pub struct ConfiguredPort {
    /// One handle per queue number, in order: hand `queues[i]` to worker `i`.
    pub queues: Vec<PortQueue>,
    /// True if symmetric RSS was enabled (the device supports RSS and `queues > 1`).
    pub rss: bool,
    /// Rx descriptors per queue after adjustment.
    pub rx_desc: u16,
    /// Tx descriptors per queue after adjustment.
    pub tx_desc: u16,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mb/s (0 if unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// The RSS configuration a device reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssHashConfig {
    /// The Toeplitz key in use.
    pub key: Vec<u8>,
    /// Hash types enabled (`RTE_ETH_RSS_*` bits).
    pub hash_types: u64,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames dropped by the device because rx queues were full.
    pub rx_missed: u64,
    /// Erroneous received frames.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

impl Port {
    /// Number of usable ports (`rte_eth_dev_count_avail`).
    pub fn count(_eal: &Eal) -> u16 {
        // SAFETY: the EAL is initialised; reads the port table.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// The port with DPDK id `id`.
    pub fn by_index(_eal: &Eal, id: u16) -> Result<Port, DpdkError> {
        // SAFETY: the EAL is initialised; the function bounds-checks id.
        let valid = unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) } != 0;
        if valid {
            Ok(Port { id })
        } else {
            Err(DpdkError::PortNotFound(id.to_string()))
        }
    }

    /// The port named `name` (e.g. `net_ring0`, or a PCI address such as `0000:01:00.0`).
    pub fn by_name(_eal: &Eal, name: &str) -> Result<Port, DpdkError> {
        let c_name = CString::new(name)
            .map_err(|_| DpdkError::InvalidArgument(format!("port name {name:?} contains NUL")))?;
        let mut id = 0u16;
        // SAFETY: the EAL is initialised; c_name is NUL-terminated; id is a valid out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
        if ret < 0 {
            return Err(DpdkError::PortNotFound(name.to_owned()));
        }
        Ok(Port { id })
    }

    /// The DPDK port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name DPDK knows the port by.
    pub fn name(&self) -> Result<String, DpdkError> {
        let _control = control();
        let mut buf = [0 as c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes, the size DPDK writes at most (NUL included).
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(self.id, buf.as_mut_ptr()) };
        check_port(self.id, "rte_eth_dev_get_name_by_port", ret)?;
        // SAFETY: on success DPDK wrote a NUL-terminated string into buf.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    /// NUMA socket of the device, if known.
    pub fn socket(&self) -> Option<u32> {
        // SAFETY: bounds-checked by DPDK; returns -1 (SOCKET_ID_ANY) when unknown or invalid.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) };
        u32::try_from(socket).ok()
    }

    fn raw_info(&self) -> Result<dpdk_sys::rte_eth_dev_info, DpdkError> {
        // SAFETY: rte_eth_dev_info is plain C data for which all-zero bytes is a valid value.
        let mut info: dpdk_sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: info is a valid out pointer; DPDK validates the port id.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) };
        check_port(self.id, "rte_eth_dev_info_get", ret)?;
        Ok(info)
    }

    /// What the device can do.
    pub fn capabilities(&self) -> Result<PortCapabilities, DpdkError> {
        let _control = control();
        self.capabilities_locked()
    }

    fn capabilities_locked(&self) -> Result<PortCapabilities, DpdkError> {
        let info = self.raw_info()?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null driver_name points at the driver's static NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortCapabilities {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            rss_key_size: info.hash_key_size,
        })
    }

    /// Configures `config.queues` rx and tx queues, symmetric RSS where the device supports it,
    /// and the descriptor rings. Once per port per process: the returned queue handles are the
    /// only way to do I/O on the port.
    pub fn configure(&self, config: &PortConfig) -> Result<ConfiguredPort, DpdkError> {
        let slot = CONFIGURED
            .get(usize::from(self.id))
            .ok_or_else(|| DpdkError::PortNotFound(self.id.to_string()))?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::PortAlreadyConfigured(self.id));
        }
        let result = {
            let _control = control();
            self.configure_once(config)
        };
        if result.is_err() {
            // No queue handle was handed out: a later attempt is allowed.
            slot.store(false, Ordering::Release);
        }
        result
    }

    fn configure_once(&self, config: &PortConfig) -> Result<ConfiguredPort, DpdkError> {
        let port = self.id;
        let caps = self.capabilities_locked()?;
        if config.queues == 0
            || config.queues > caps.max_rx_queues
            || config.queues > caps.max_tx_queues
        {
            return Err(DpdkError::PortCapability {
                port,
                reason: format!(
                    "{} queues requested, device {} supports 1..={} rx and 1..={} tx",
                    config.queues, caps.driver, caps.max_rx_queues, caps.max_tx_queues
                ),
            });
        }
        // SAFETY: the hash-type bitmask is a plain constant defined in the shim.
        let wanted_hf = unsafe { dpdk_sys::SEPTA_RSS_HF_IP_TCP_UDP };
        let rss_hf = wanted_hf & caps.rss_offloads;
        let rss = config.queues > 1 && rss_hf != 0;

        let key_len = match caps.rss_key_size {
            0 => DEFAULT_RSS_KEY_LEN,
            n if usize::from(n) <= SYMMETRIC_RSS_KEY.len() => n,
            n if rss => {
                return Err(DpdkError::PortCapability {
                    port,
                    reason: format!("RSS key of {n} bytes is longer than Septa's key"),
                });
            }
            // Unused without RSS.
            _ => DEFAULT_RSS_KEY_LEN,
        };
        let rss_conf = dpdk_sys::rte_eth_rss_conf {
            // PMDs only read the key; the field is `*mut` for historical reasons.
            rss_key: SYMMETRIC_RSS_KEY.as_ptr().cast_mut(),
            rss_key_len: key_len,
            rss_hf,
        };
        // SAFETY: rte_eth_conf is plain C data; all-zero is DPDK's documented default.
        let mut conf: dpdk_sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        if rss {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf = rss_conf;
        }
        // SAFETY: conf is fully initialised and the key it points to is 'static.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_configure(port, config.queues, config.queues, &conf) };
        check_port(port, "rte_eth_dev_configure", ret)?;

        let (mut rx_desc, mut tx_desc) = (config.rx_desc, config.tx_desc);
        // SAFETY: both pointers are valid u16 out/in parameters.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut rx_desc, &mut tx_desc) };
        check_port(port, "rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;

        // SOCKET_ID_ANY (-1) is passed through as DPDK's unsigned "any socket".
        let socket = self.socket().unwrap_or(dpdk_sys::SOCKET_ID_ANY as u32);
        for queue in 0..config.queues {
            // SAFETY: the port is configured and stopped; NULL rx_conf selects the device's
            // defaults; the pool lives for the process.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    port,
                    queue,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    config.pool.as_ptr(),
                )
            };
            check_port(port, "rte_eth_rx_queue_setup", ret)?;
            // SAFETY: as above; NULL tx_conf selects the device's defaults.
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(port, queue, tx_desc, socket, std::ptr::null())
            };
            check_port(port, "rte_eth_tx_queue_setup", ret)?;
        }
        if rss {
            // Some PMDs (net_null among them) ignore the key given to rte_eth_dev_configure and
            // keep their default, asymmetric one: set it explicitly as well.
            let mut update = rss_conf;
            // SAFETY: `update` points at the 'static key; DPDK only reads it.
            let ret = unsafe { dpdk_sys::rte_eth_dev_rss_hash_update(port, &mut update) };
            if ret != -(dpdk_sys::ENOTSUP as i32) {
                check_port(port, "rte_eth_dev_rss_hash_update", ret)?;
            }
        }
        Ok(ConfiguredPort {
            queues: (0..config.queues)
                .map(|q| PortQueue::new(port, q))
                .collect(),
            rss,
            rx_desc,
            tx_desc,
        })
    }

    /// Starts the port (after `configure`).
    pub fn start(&self) -> Result<(), DpdkError> {
        let _control = control();
        // SAFETY: DPDK validates the port id and state.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        check_port(self.id, "rte_eth_dev_start", ret).map(drop)
    }

    /// Enables promiscuous mode. Returns false if the device does not support it (many vdevs).
    pub fn enable_promiscuous(&self) -> Result<bool, DpdkError> {
        let _control = control();
        // SAFETY: DPDK validates the port id.
        let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
        if ret == -(dpdk_sys::ENOTSUP as i32) {
            return Ok(false);
        }
        check_port(self.id, "rte_eth_promiscuous_enable", ret).map(|_| true)
    }

    fn ensure_idle(&self) -> Result<(), DpdkError> {
        match live_queues(self.id) {
            0 => Ok(()),
            live => Err(DpdkError::PortBusy {
                port: self.id,
                live,
            }),
        }
    }

    /// Stops the port. Fails with [`DpdkError::PortBusy`] while any of its `PortQueue`s exist
    /// (a worker could be inside a burst call).
    pub fn stop(&self) -> Result<(), DpdkError> {
        let _control = control();
        self.ensure_idle()?;
        // SAFETY: no queue handle exists, so no thread is polling the port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        check_port(self.id, "rte_eth_dev_stop", ret).map(drop)
    }

    /// Closes the port (after `stop`) and releases its resources. Same precondition as `stop`.
    pub fn close(&self) -> Result<(), DpdkError> {
        let _control = control();
        self.ensure_idle()?;
        // SAFETY: no queue handle exists, so no thread is polling the port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        check_port(self.id, "rte_eth_dev_close", ret).map(drop)
    }

    /// Link state without waiting for autonegotiation.
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let _control = control();
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: link is a valid out pointer; DPDK validates the port id.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut link) };
        check_port(self.id, "rte_eth_link_get_nowait", ret)?;
        Ok(LinkStatus {
            up: u32::from(link.link_status()) == dpdk_sys::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
            full_duplex: u32::from(link.link_duplex()) == dpdk_sys::RTE_ETH_LINK_FULL_DUPLEX,
        })
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let _control = control();
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: addr is a valid out pointer; DPDK validates the port id.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut addr) };
        check_port(self.id, "rte_eth_macaddr_get", ret)?;
        Ok(addr.addr_bytes)
    }

    /// The RSS key and hash types the device uses (to log at start-up, and to check that the
    /// symmetric key reached the device).
    pub fn rss_hash_config(&self) -> Result<RssHashConfig, DpdkError> {
        let mut key = [0u8; SYMMETRIC_RSS_KEY.len()];
        let _control = control();
        let key_len = match self.capabilities_locked()?.rss_key_size {
            0 => DEFAULT_RSS_KEY_LEN,
            n => n.min(SYMMETRIC_RSS_KEY.len() as u8),
        };
        let mut conf = dpdk_sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: key_len,
            rss_hf: 0,
        };
        // SAFETY: conf points at a key buffer of at least rss_key_len bytes, which DPDK fills.
        let ret = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(self.id, &mut conf) };
        check_port(self.id, "rte_eth_dev_rss_hash_conf_get", ret)?;
        let len = usize::from(conf.rss_key_len.min(key_len));
        Ok(RssHashConfig {
            key: key[..len].to_vec(),
            hash_types: conf.rss_hf,
        })
    }

    /// Basic counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let _control = control();
        // SAFETY: rte_eth_stats is plain counters; all-zero is valid.
        let mut s: dpdk_sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: s is a valid out pointer; DPDK validates the port id.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        check_port(self.id, "rte_eth_stats_get", ret)?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Extended counters as (name, value), in the driver's order. For final reports, not for the
    /// hot path (allocates).
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        let _control = control();
        let port = self.id;
        // SAFETY: a NULL array with size 0 asks for the count only.
        let ret = unsafe { dpdk_sys::rte_eth_xstats_get_names(port, std::ptr::null_mut(), 0) };
        let count = check_port(port, "rte_eth_xstats_get_names", ret)?.unsigned_abs();
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); count as usize];
        // SAFETY: names has room for `count` entries.
        let ret = unsafe { dpdk_sys::rte_eth_xstats_get_names(port, names.as_mut_ptr(), count) };
        let got_names = check_port(port, "rte_eth_xstats_get_names", ret)?.unsigned_abs();
        let mut values = vec![dpdk_sys::rte_eth_xstat::default(); count as usize];
        // SAFETY: values has room for `count` entries.
        let ret = unsafe { dpdk_sys::rte_eth_xstats_get(port, values.as_mut_ptr(), count) };
        let got_values = check_port(port, "rte_eth_xstats_get", ret)?.unsigned_abs();
        if got_names > count || got_values > count {
            // The set of counters grew between the calls (hot-plug); report rather than guess.
            return Err(DpdkError::PortCapability {
                port,
                reason: "xstats changed while reading them".into(),
            });
        }
        let names = &names[..got_names as usize];
        Ok(values[..got_values as usize]
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                // SAFETY: DPDK writes NUL-terminated names into the fixed-size array.
                let name = unsafe { CStr::from_ptr(name.name.as_ptr()) };
                Some((name.to_string_lossy().into_owned(), v.value))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::SYMMETRIC_RSS_KEY;

    /// Software Toeplitz hash (the function NICs compute for RSS).
    fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
        let mut hash = 0u32;
        for (byte_index, byte) in input.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    // The 32 key bits starting at bit position byte_index * 8 + bit.
                    let start = byte_index * 8 + bit;
                    let mut window = 0u32;
                    for k in 0..32 {
                        let pos = start + k;
                        let key_bit = (key[pos / 8] >> (7 - pos % 8)) & 1;
                        window = (window << 1) | u32::from(key_bit);
                    }
                    hash ^= window;
                }
            }
        }
        hash
    }

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(src);
        v.extend(dst);
        v.extend(sport.to_be_bytes());
        v.extend(dport.to_be_bytes());
        v
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        let flows = [
            ([10, 0, 0, 1], [10, 0, 1, 2], 40000, 502),
            ([192, 168, 7, 9], [172, 16, 0, 1], 20000, 443),
            ([1, 2, 3, 4], [255, 254, 253, 252], 1, 65535),
        ];
        for (a, b, pa, pb) in flows {
            let forward = toeplitz(&SYMMETRIC_RSS_KEY, &tuple(a, b, pa, pb));
            let reverse = toeplitz(&SYMMETRIC_RSS_KEY, &tuple(b, a, pb, pa));
            assert_eq!(forward, reverse, "{a:?}:{pa} <-> {b:?}:{pb}");
        }
    }

    #[test]
    fn the_key_is_0x6d5a_repeated() {
        assert!(SYMMETRIC_RSS_KEY.chunks(2).all(|c| c == [0x6d, 0x5a]));
    }

    #[test]
    fn toeplitz_matches_a_published_vector() {
        // Microsoft's RSS verification suite: default key, IPv4 only,
        // 66.9.149.187 -> 161.142.100.80 hashes to 0x323e8fc2.
        let ms_key: [u8; 40] = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        assert_eq!(
            toeplitz(&ms_key, &[66, 9, 149, 187, 161, 142, 100, 80]),
            0x323e_8fc2
        );
    }
}
