//! Slurm's time limit (`--signal=B:USR1@120` forwarded to the job step) and
//! preemption arrive as SIGUSR1 or SIGTERM; Ctrl-C as SIGINT. All three ask the
//! trainer to checkpoint at the next step and exit cleanly; a second SIGINT
//! ends the process at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

pub struct StopSignal {
    flag: Arc<AtomicUsize>,
}

impl StopSignal {
    /// Installs the handlers; keep the value alive for the whole run.
    pub fn install() -> Result<StopSignal> {
        let flag = Arc::new(AtomicUsize::new(0));
        for sig in [SIGTERM, SIGUSR1, SIGINT] {
            signal_hook::flag::register_usize(sig, Arc::clone(&flag), sig as usize)?;
        }
        // Checked before the flag is set, so only a second Ctrl-C exits at once.
        let second = Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&second))?;
        signal_hook::flag::register(SIGINT, second)?;
        Ok(StopSignal { flag })
    }

    /// The signal that asked us to stop, if one did.
    pub fn requested(&self) -> Option<&'static str> {
        match self.flag.load(Ordering::Relaxed) as i32 {
            0 => None,
            SIGTERM => Some("SIGTERM"),
            SIGUSR1 => Some("SIGUSR1"),
            SIGINT => Some("SIGINT"),
            _ => Some("a signal"),
        }
    }
}
