//! Slurm's time limit (`--signal=B:USR1@120` forwarded to the job step) and
//! preemption arrive as SIGUSR1 or SIGTERM; Ctrl-C as SIGINT. All three ask the
//! trainer to checkpoint at the next step and exit cleanly; a second SIGINT
//! ends the process at once.
//!
//! The CUDA libraries install signal handlers of their own when a GPU is first
//! used, replacing ours: on an H100 a SIGTERM then ended training at once, with
//! no checkpoint. So the handlers are plain `sigaction`s that chain to nothing,
//! and every look at the flag puts them back if something replaced them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{bail, Result};
use libc::{c_int, SIGINT, SIGTERM, SIGUSR1};

const SIGNALS: [c_int; 3] = [SIGTERM, SIGUSR1, SIGINT];

/// The first signal that asked to stop (0: none). Process-wide, as handlers are.
static REQUESTED: AtomicUsize = AtomicUsize::new(0);
/// Whether a SIGINT came already: the second one ends the process.
static SIGINT_SEEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: c_int) {
    if sig == SIGINT && SIGINT_SEEN.swap(true, Ordering::Relaxed) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
    let _ = REQUESTED.compare_exchange(0, sig as usize, Ordering::Relaxed, Ordering::Relaxed);
}

pub struct StopSignal {
    _private: (),
}

impl StopSignal {
    /// Installs the handlers; keep the value alive for the whole run.
    pub fn install() -> Result<StopSignal> {
        for sig in SIGNALS {
            set_handler(sig)?;
        }
        Ok(StopSignal { _private: () })
    }

    /// Puts back any handler a library replaced (three system calls): called
    /// once the GPU is set up, and at every look at the flag.
    pub fn reassert(&self) {
        for sig in SIGNALS {
            if !handler_is_ours(sig) {
                // A failure leaves the other library's handler; nothing better to do.
                let _ = set_handler(sig);
            }
        }
    }

    /// The signal that asked us to stop, if one did (see [`Self::reassert`]).
    pub fn requested(&self) -> Option<&'static str> {
        self.reassert();
        match REQUESTED.load(Ordering::Relaxed) as c_int {
            0 => None,
            SIGTERM => Some("SIGTERM"),
            SIGUSR1 => Some("SIGUSR1"),
            SIGINT => Some("SIGINT"),
            _ => Some("a signal"),
        }
    }
}

fn set_handler(sig: c_int) -> Result<()> {
    // SAFETY: a zeroed sigaction is a valid value to fill in; the handler
    // only touches an atomic and calls _exit, both async-signal-safe.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        bail!("cannot install the handler for signal {sig}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn handler_is_ours(sig: c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == on_signal as extern "C" fn(c_int) as libc::sighandler_t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test in this binary that touches signal dispositions.
    #[test]
    fn a_replaced_handler_is_put_back_and_the_signal_is_seen() {
        let stop = StopSignal::install().unwrap();
        assert!(stop.requested().is_none());
        // What a library initialising a GPU does: a handler of its own.
        extern "C" fn foreign(_: c_int) {
            // SAFETY: async-signal-safe; ends the test binary, failing the run.
            unsafe { libc::_exit(99) };
        }
        // SAFETY: as in set_handler.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = foreign as extern "C" fn(c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(libc::sigaction(SIGUSR1, &action, std::ptr::null_mut()), 0);
        }
        assert!(!handler_is_ours(SIGUSR1));
        assert!(stop.requested().is_none());
        assert!(handler_is_ours(SIGUSR1));
        // SAFETY: raise only delivers SIGUSR1 to this thread, handled by ours.
        assert_eq!(unsafe { libc::raise(SIGUSR1) }, 0);
        assert_eq!(stop.requested(), Some("SIGUSR1"));
    }
}
