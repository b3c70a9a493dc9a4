//! Errors of the DPDK wrapper. Every variant that comes from a DPDK call carries DPDK's own text
//! (`rte_strerror`) next to the errno value.

use std::ffi::CStr;

/// An error from DPDK or from the wrapper's own checks.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DpdkError {
    /// `Eal::init` was already called in this process (the EAL initialises once per process).
    #[error("the DPDK EAL was already initialised in this process")]
    EalAlreadyInitialised,
    /// `rte_eal_init` failed.
    #[error("rte_eal_init failed: {message} (errno {errno})")]
    EalInit {
        /// `rte_errno` after the call.
        errno: i32,
        /// DPDK's description of `errno`.
        message: String,
    },
    /// An argument cannot be passed to DPDK (e.g. it contains a NUL byte or is out of range).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `rte_pktmbuf_pool_create` failed.
    #[error("cannot create mempool {name:?}: {message} (errno {errno})")]
    Mempool {
        /// Requested pool name.
        name: String,
        /// `rte_errno` after the call.
        errno: i32,
        /// DPDK's description of `errno`.
        message: String,
    },
    /// The pool had no free mbuf.
    #[error("mempool {pool:?} has no free mbuf")]
    MbufExhausted {
        /// Pool name.
        pool: String,
    },
    /// The data does not fit into one mbuf.
    #[error("{len} bytes do not fit into an mbuf with {room} bytes of room")]
    MbufTooSmall {
        /// Bytes requested.
        len: usize,
        /// Bytes available.
        room: usize,
    },
    /// No ethdev port with this name or index.
    #[error("no DPDK port {0} (check the --vdev / PCI arguments)")]
    PortNotFound(String),
    /// A port operation failed.
    #[error("port {port}: {op} failed: {message} (errno {errno})")]
    Port {
        /// DPDK port id.
        port: u16,
        /// The DPDK function that failed.
        op: &'static str,
        /// Positive errno value.
        errno: i32,
        /// DPDK's description of `errno`.
        message: String,
    },
    /// The port cannot do what was asked (e.g. more queues than it has).
    #[error("port {port}: {reason}")]
    PortCapability {
        /// DPDK port id.
        port: u16,
        /// What is missing.
        reason: String,
    },
    /// A port was asked to stop or close while workers still hold its queues.
    #[error("port {port}: {live} queue handle(s) still in use; stop the workers first")]
    PortBusy {
        /// DPDK port id.
        port: u16,
        /// Live `PortQueue` handles.
        live: u32,
    },
    /// A port can be configured once per process; its queues are handed out once.
    #[error("port {0} was already configured in this process")]
    PortAlreadyConfigured(u16),
    /// An lcore operation failed.
    #[error("lcore {lcore}: {op} failed: {message} (errno {errno})")]
    Lcore {
        /// Lcore id.
        lcore: u32,
        /// The DPDK function that failed.
        op: &'static str,
        /// Positive errno value.
        errno: i32,
        /// DPDK's description of `errno`.
        message: String,
    },
}

/// DPDK's text for an errno value (positive or negative; DPDK functions return `-errno`).
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any int and returns a pointer to a NUL-terminated string
    // (a static string or a per-thread buffer), valid until the next call on this thread; we
    // copy it out immediately.
    let text = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errno.abs())) };
    text.to_string_lossy().into_owned()
}

/// The calling thread's `rte_errno`.
pub(crate) fn last_errno() -> i32 {
    // SAFETY: reads a thread-local int through the shim; no preconditions.
    unsafe { dpdk_sys::septa_rte_errno() }
}

/// Builds a [`DpdkError::Port`] from a DPDK return value (`-errno`).
pub(crate) fn port_error(port: u16, op: &'static str, ret: i32) -> DpdkError {
    let errno = ret.abs();
    DpdkError::Port {
        port,
        op,
        errno,
        message: strerror(errno),
    }
}

/// Turns a DPDK return code (`0` or positive: success, negative: `-errno`) into a `Result`.
pub(crate) fn check_port(port: u16, op: &'static str, ret: i32) -> Result<i32, DpdkError> {
    if ret < 0 {
        Err(port_error(port, op, ret))
    } else {
        Ok(ret)
    }
}
