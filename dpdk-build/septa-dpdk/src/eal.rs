//! The EAL: initialised once per process; the [`Eal`] token proves it and gives access to lcores.

use std::ffi::{CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{DpdkError, last_errno, strerror};

/// Program name put in front of the caller's arguments (`argv[0]`).
const PROGRAM_NAME: &str = "septa";

/// Set by the first [`Eal::init`] that reaches `rte_eal_init`, successful or not: DPDK does not
/// support a second `rte_eal_init` in one process.
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is initialised, held by the thread that initialised it (the main lcore).
///
/// It is deliberately neither `Send` nor `Sync`: launching work on lcores is only valid from the
/// main lcore. Dropping it does *not* call `rte_eal_cleanup`: mbufs, mempools and ports handed out
/// by this crate do not borrow it and would dangle. The process exit releases DPDK's memory; use
/// `--huge-unlink` (or `--in-memory`) so no hugepage files are left behind.
#[derive(Debug)]
pub struct Eal {
    _main_lcore_only: PhantomData<*const ()>,
}

/// A job run on a worker lcore.
type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

impl Eal {
    /// Initialises the EAL with `args` (any EAL arguments: `-l`, `--vdev`, `--file-prefix`,
    /// `--no-huge`, ...); the program name is prepended. A second call in the same process returns
    /// [`DpdkError::EalAlreadyInitialised`], also after a failed first call.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let owned = std::iter::once(PROGRAM_NAME)
            .chain(args.iter().map(String::as_str))
            .map(|arg| {
                CString::new(arg).map_err(|_| {
                    DpdkError::InvalidArgument(format!("EAL argument {arg:?} contains NUL"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let argc = c_int::try_from(owned.len())
            .map_err(|_| DpdkError::InvalidArgument("too many EAL arguments".into()))?;
        if INIT_CALLED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        // The EAL permutes argv and may keep pointers into it for the life of the process:
        // the strings and the array are leaked on purpose (once per process, a few hundred bytes).
        let owned: &'static [CString] = owned.leak();
        let argv: &'static mut [*mut c_char] = owned
            .iter()
            .map(|s| s.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect::<Vec<_>>()
            .leak();
        // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all living for the
        // rest of the process; INIT_CALLED guarantees this is the only call in the process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let errno = last_errno();
            return Err(DpdkError::EalInit {
                errno,
                message: strerror(errno),
            });
        }
        Ok(Eal {
            _main_lcore_only: PhantomData,
        })
    }

    /// The main lcore (the thread that called [`Eal::init`]).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: the EAL is initialised (self exists); reads immutable configuration.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Worker lcores enabled by the EAL arguments (`-l` / `-c`), main lcore excluded, ascending.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut lcores = Vec::new();
        // u32::MAX is DPDK's own start value: the next lcore after it is 0.
        let mut lcore = u32::MAX;
        loop {
            // SAFETY: the EAL is initialised; reads the immutable lcore configuration.
            lcore = unsafe { dpdk_sys::rte_get_next_lcore(lcore, 1, 0) };
            if lcore >= dpdk_sys::RTE_MAX_LCORE {
                return lcores;
            }
            lcores.push(lcore);
        }
    }

    /// NUMA socket of `lcore`.
    pub fn lcore_socket(&self, lcore: u32) -> u32 {
        // SAFETY: the EAL is initialised; DPDK bounds-checks lcore and returns 0 when out of range.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Runs `job` on the worker `lcore` (`rte_eal_remote_launch`). Its return value is collected by
    /// [`Eal::wait`]. A panic in `job` is caught and reported as `-1` (unwinding must not cross
    /// into C); with `panic = "abort"` it aborts the process as anywhere else.
    pub fn launch<F>(&self, lcore: u32, job: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        let lcore_error = |errno: i32| DpdkError::Lcore {
            lcore,
            op: "rte_eal_remote_launch",
            errno,
            message: strerror(errno),
        };
        // SAFETY: the EAL is initialised; rte_lcore_is_enabled bounds-checks lcore.
        let enabled = unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) } != 0;
        if !enabled || lcore == self.main_lcore() {
            return Err(lcore_error(dpdk_sys::EINVAL as i32));
        }
        let job: Box<Job> = Box::new(Box::new(job));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: we are on the main lcore (Eal is !Send), lcore is an enabled worker; `arg` is a
        // leaked Box<Job> that `run_job` takes back exactly once, or we take it back below if
        // the launch fails.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(run_job), arg, lcore) };
        if ret < 0 {
            // SAFETY: the launch failed, so DPDK will not call run_job with `arg`; it is ours again.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(lcore_error(-ret));
        }
        Ok(())
    }

    /// Waits for the job on `lcore` and returns its result (0 if nothing was launched there).
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: called from the main lcore (Eal is !Send); DPDK bounds-checks lcore.
        unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) }
    }

    /// Waits for every worker lcore to finish its job.
    pub fn wait_all(&self) {
        // SAFETY: called from the main lcore (Eal is !Send).
        unsafe { dpdk_sys::rte_eal_mp_wait_lcore() }
    }
}

/// The trampoline DPDK calls on the worker lcore.
unsafe extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `Eal::launch`, passed to us exactly once.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    catch_unwind(AssertUnwindSafe(job)).unwrap_or(-1)
}

/// The calling thread's lcore id, or `None` on a thread that is not an EAL lcore.
pub fn current_lcore() -> Option<u32> {
    // SAFETY: reads a thread-local value through the shim (valid on any thread, before or after
    // EAL init); LCORE_ID_ANY is a plain constant.
    let (id, any) = unsafe { (dpdk_sys::septa_rte_lcore_id(), dpdk_sys::SEPTA_LCORE_ID_ANY) };
    (id != any).then_some(id)
}

/// NUMA socket of the calling thread (`rte_socket_id`).
pub fn current_socket() -> u32 {
    // SAFETY: reads the calling thread's per-lcore socket id; valid on any thread.
    unsafe { dpdk_sys::rte_socket_id() }
}
