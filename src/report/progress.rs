//! Progress of long work: a bar on a terminal, a plain line every so often
//! otherwise (Slurm logs), nothing for work too short to need it. Written to
//! stderr so stdout keeps only results.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

enum Mode {
    Bar(ProgressBar),
    Lines { every: Duration, last: Instant },
    Off,
}

pub struct Progress {
    label: String,
    total: u64,
    pos: u64,
    start: Instant,
    mode: Mode,
}

impl Progress {
    /// `enabled` is false on ranks other than 0. `HPCML_PROGRESS=bar|lines|off`
    /// overrides the choice; `HPCML_PROGRESS_SECS` sets the line interval (30 s).
    pub fn new(label: impl Into<String>, total: u64, enabled: bool) -> Progress {
        let label = label.into();
        let choice = std::env::var("HPCML_PROGRESS").unwrap_or_default();
        let every = std::env::var("HPCML_PROGRESS_SECS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(30));
        let tty = std::io::stderr().is_terminal();
        let mode = match (enabled, choice.as_str()) {
            (false, _) | (_, "off") => Mode::Off,
            (_, "lines") => Mode::Lines { every, last: Instant::now() },
            (_, "bar") => Mode::Bar(bar(&label, total)),
            _ if tty => Mode::Bar(bar(&label, total)),
            _ => Mode::Lines { every, last: Instant::now() },
        };
        Progress { label, total, pos: 0, start: Instant::now(), mode }
    }

    pub fn inc(&mut self, n: u64) {
        self.set(self.pos + n);
    }

    pub fn set(&mut self, pos: u64) {
        self.pos = pos.min(self.total);
        match &mut self.mode {
            Mode::Bar(b) => b.set_position(self.pos),
            Mode::Lines { every, last } => {
                if last.elapsed() >= *every {
                    *last = Instant::now();
                    let pct = if self.total == 0 { 100.0 } else { 100.0 * self.pos as f64 / self.total as f64 };
                    let el = self.start.elapsed().as_secs_f64();
                    let eta = if self.pos > 0 { el * (self.total - self.pos) as f64 / self.pos as f64 } else { 0.0 };
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(
                        err,
                        "{}: {}/{} ({pct:.0}%), {el:.0} s elapsed, ~{eta:.0} s left",
                        self.label, self.pos, self.total
                    );
                }
            }
            Mode::Off => {}
        }
    }

    /// A short status shown beside the bar (e.g. the running loss).
    pub fn message(&self, msg: impl Into<String>) {
        if let Mode::Bar(b) = &self.mode {
            b.set_message(msg.into());
        }
    }

    /// Prints a line without tearing the bar.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.mode {
            Mode::Bar(b) => b.suspend(|| println!("{}", line.as_ref())),
            _ => println!("{}", line.as_ref()),
        }
    }

    pub fn finish(&mut self) {
        if let Mode::Bar(b) = &self.mode {
            b.finish_and_clear();
        }
        self.mode = Mode::Off;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn bar(label: &str, total: u64) -> ProgressBar {
    let b = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta}) {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b.set_prefix(label.to_string());
    b
}
