//! What every binary shares around its workload: exit codes, one-line errors, the
//! MPI-aware `main`, and parsing of the numbers users type.
//!
//! Errors are `anyhow::Error`. A [`UsageError`] anywhere in the chain means the user
//! gave us something wrong (flags, files, data) and exits 2; anything else exits 1.
//! Errors that every rank has agreed on ([`crate::cluster::Cluster::agree`]) are
//! printed once by rank 0; any other error on a multi-rank job aborts the whole job,
//! so one failing rank never leaves the others hanging in a collective.

use std::fmt;
use std::process::ExitCode;

use clap::Parser;

use crate::cluster::{Agreed, Cluster};

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Something the user gave us is wrong; the message names it and the fix.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error (exit code 2) with the given message.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Returns early with a usage error (exit code 2), formatted like `format!`.
#[macro_export]
macro_rules! bail_usage {
    ($($arg:tt)*) => {
        return Err($crate::cli::usage(format!($($arg)*)))
    };
}

/// The exit code an error maps to: 2 for usage errors, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(agreed) = err.downcast_ref::<Agreed>() {
        return agreed.code;
    }
    if err.chain().any(|e| e.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_RUNTIME
    }
}

/// One line for an error: its context chain joined with ": ".
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}

/// Runs a binary: starts MPI, parses `A` from the command line, runs `body`, and
/// turns every failure into one line on stderr and an exit code.
pub fn main<A: Parser>(prog: &str, body: impl FnOnce(&Cluster, A) -> anyhow::Result<()>) -> ExitCode {
    // Rust ignores SIGPIPE, which turns `bert-classifier --help | head` into a
    // failed write and a panic; the default action ends the process quietly,
    // as with any other command-line tool.
    // SAFETY: setting a signal's disposition to SIG_DFL before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cluster = match Cluster::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{prog}: error: {}", one_line(&e));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    install_panic_hook(prog, &cluster);

    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) => return clap_exit(prog, &cluster, e),
    };

    let result = body(&cluster, args);
    let code = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(e) => report_error(prog, &cluster, &e),
    };
    drop(cluster);
    ExitCode::from(code)
}

fn report_error(prog: &str, cluster: &Cluster, err: &anyhow::Error) -> u8 {
    let code = exit_code(err);
    if cluster.size() == 1 {
        eprintln!("{prog}: error: {}", one_line(err));
    } else if err.downcast_ref::<Agreed>().is_some() {
        // Every rank holds the same error: say it once.
        if cluster.is_root() {
            eprintln!("{prog}: error: {}", one_line(err));
        }
    } else {
        eprintln!("{prog}: error: {} {}", cluster.tag(), one_line(err));
        cluster.abort(code as i32);
    }
    code
}

/// clap's own errors are several lines with usage; users get one line and a pointer
/// to `--help`. Help and version go to stdout and exit 0. All ranks parse the same
/// arguments, so only rank 0 speaks.
fn clap_exit(prog: &str, cluster: &Cluster, e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let quiet = !cluster.is_root();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            if !quiet {
                print!("{}", e.render());
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                return ExitCode::from(EXIT_USAGE);
            }
            ExitCode::SUCCESS
        }
        _ => {
            if !quiet {
                eprintln!("{prog}: {} (see {prog} --help)", clap_first_line(&e));
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn clap_first_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut first = lines.next().unwrap_or("invalid arguments").to_string();
    // "the following required arguments were not provided:" lists them below.
    if first.ends_with(':') {
        if let Some(next) = lines.next() {
            first = format!("{first} {next}");
        }
    }
    if first.starts_with("error:") {
        first.to_string()
    } else {
        format!("error: {first}")
    }
}

/// A panic is a bug, but it must still end the whole job with one line, not a
/// backtrace on one rank and a hang on the others.
fn install_panic_hook(prog: &str, cluster: &Cluster) {
    let prog = prog.to_string();
    let tag = cluster.tag();
    let multi = cluster.size() > 1;
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("{prog}: internal error: {tag} {msg}{at} (this is a bug in hpcml; please report it)");
        if multi {
            crate::cluster::abort_world(EXIT_RUNTIME as i32);
        }
        std::process::exit(EXIT_RUNTIME as i32);
    }));
}

/// Whether the environment switches a default measure off with `NAME=0`
/// (`HPCML_SHARED_SUM`, `HPCML_HEAP_CACHE`, `HPCML_ONEDNN`, `HPCML_ATTENTION`: for
/// comparisons).
pub fn switched_off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim() == "0")
}

/// Whether the environment switches a measure that is off by default on with
/// `NAME=1` (`HPCML_CUDNN_ATTENTION`: for comparisons).
pub fn switched_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim() == "1")
}

/// Parses a count the way people write them: `10000000`, `10_000_000`, `10,000,000`,
/// `1e9`, `2.5e9`. Must be a whole number in 1..=u64::MAX.
pub fn parse_count(what: &str, text: &str) -> Result<u64, String> {
    let hint = format!("{what} must be a positive whole number like 10000000, 1e9 or 10_000_000, got '{text}'");
    let t: String = text.trim().chars().filter(|c| *c != '_' && *c != ',').collect();
    if t.is_empty() {
        return Err(hint);
    }
    if t.starts_with('-') {
        return Err(format!("{what} must be positive, got '{text}'"));
    }
    let value: u64 = if t.bytes().all(|b| b.is_ascii_digit()) {
        match t.parse::<u64>() {
            Ok(v) => v,
            Err(_) => return Err(format!("{what} is too large: '{text}' exceeds {}", u64::MAX)),
        }
    } else {
        parse_scientific(&t).map_err(|e| match e {
            SciError::Syntax => hint.clone(),
            SciError::Fraction => format!("{what} must be a whole number, got '{text}'"),
            SciError::Overflow => format!("{what} is too large: '{text}' exceeds {}", u64::MAX),
        })?
    };
    if value == 0 {
        return Err(format!("{what} must be at least 1, got '{text}'"));
    }
    Ok(value)
}

/// Parses `--seed`: any whole number from 0 to u64::MAX.
pub fn parse_seed(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| format!("--seed must be a whole number from 0 to {}, got '{text}'", u64::MAX))
}

enum SciError {
    Syntax,
    Fraction,
    Overflow,
}

/// `M[.F]e[+]E` parsed exactly with integer arithmetic (no float rounding).
fn parse_scientific(t: &str) -> Result<u64, SciError> {
    let lower = t.to_ascii_lowercase();
    let Some((mantissa, exp)) = lower.split_once('e') else {
        return Err(if t.parse::<f64>().is_ok() { SciError::Fraction } else { SciError::Syntax });
    };
    let exp = exp.strip_prefix('+').unwrap_or(exp);
    if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if exp.starts_with('-') { SciError::Fraction } else { SciError::Syntax });
    }
    let exp: u32 = exp.parse().map_err(|_| SciError::Overflow)?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(SciError::Syntax);
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SciError::Syntax);
    }
    let frac = frac.trim_end_matches('0');
    let frac_len = frac.len() as u32;
    if frac_len > exp {
        return Err(SciError::Fraction);
    }
    let digits = format!("{int}{frac}");
    let base: u128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| SciError::Overflow)? };
    let scale = 10u128.checked_pow(exp - frac_len).ok_or(SciError::Overflow)?;
    let v = base.checked_mul(scale).ok_or(SciError::Overflow)?;
    u64::try_from(v).map_err(|_| SciError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_whole_numbers_from_zero() {
        assert_eq!(parse_seed("0"), Ok(0));
        assert_eq!(parse_seed("66478"), Ok(66478));
        assert_eq!(parse_seed(&u64::MAX.to_string()), Ok(u64::MAX));
        for bad in ["-1", "x", "1.5", "", "18446744073709551616"] {
            let err = parse_seed(bad).unwrap_err();
            assert!(err.starts_with("--seed must be a whole number from 0 to"), "{bad}: {err}");
        }
    }

    #[test]
    fn counts_in_the_forms_people_write() {
        assert_eq!(parse_count("N", "10000000"), Ok(10_000_000));
        assert_eq!(parse_count("N", "10_000_000"), Ok(10_000_000));
        assert_eq!(parse_count("N", "10,000,000"), Ok(10_000_000));
        assert_eq!(parse_count("N", "1e9"), Ok(1_000_000_000));
        assert_eq!(parse_count("N", "1E9"), Ok(1_000_000_000));
        assert_eq!(parse_count("N", "2.5e9"), Ok(2_500_000_000));
        assert_eq!(parse_count("N", "1.25e2"), Ok(125));
        assert_eq!(parse_count("N", "1e+3"), Ok(1000));
        assert_eq!(parse_count("N", "18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn counts_that_are_not_counts() {
        for bad in
            ["0", "0e5", "-5", "abc", "", "1.5", "1e-3", "1.25e1", "1e30", "18446744073709551616", "1e", "e9", "1x"]
        {
            let err = parse_count("SAMPLES", bad).expect_err(bad);
            assert!(err.contains("SAMPLES"), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
        assert!(parse_count("N", "1e30").unwrap_err().contains("too large"));
        assert!(parse_count("N", "-1").unwrap_err().contains("positive"));
        assert!(parse_count("N", "0").unwrap_err().contains("at least 1"));
        assert!(parse_count("N", "1.5").unwrap_err().contains("whole number, got"));
    }

    #[test]
    fn usage_errors_exit_two_through_context() {
        let e = usage("bad flag").context("reading config");
        assert_eq!(exit_code(&e), EXIT_USAGE);
        let e = anyhow::anyhow!("disk full");
        assert_eq!(exit_code(&e), EXIT_RUNTIME);
        assert_eq!(one_line(&usage("a").context("b")), "b: a");
    }
}
