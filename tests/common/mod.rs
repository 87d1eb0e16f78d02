//! Helpers the integration tests share: run a built binary directly or under a
//! real `mpiexec -n N`, always with a time limit so a hang fails instead of
//! blocking the suite.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the run exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "exit {}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        self
    }
}

/// A `Command` for `timeout SECS prog args...` with progress output off.
fn timed(secs: u64, prog: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.arg("--kill-after=5").arg(secs.to_string()).arg(prog).args(args);
    c.env("HPCML_PROGRESS", "off");
    c
}

/// Runs a binary of this package with a time limit.
pub fn run(bin: &str, args: &[&str], secs: u64) -> Run {
    run_in(bin, args, secs, None)
}

pub fn run_in(bin: &str, args: &[&str], secs: u64, dir: Option<&Path>) -> Run {
    let mut c = timed(secs, &exe(bin), args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    Run::from(c.output().expect("run timeout(1)"))
}

/// Runs a binary under `mpiexec -n ranks` with a time limit.
pub fn mpirun(ranks: usize, bin: &str, args: &[&str], secs: u64) -> Run {
    mpirun_in(ranks, bin, args, secs, None)
}

pub fn mpirun_in(ranks: usize, bin: &str, args: &[&str], secs: u64, dir: Option<&Path>) -> Run {
    mpirun_with(ranks, bin, args, secs, dir, &[])
}

/// [`mpirun_in`] with extra environment variables (mpiexec passes them on).
pub fn mpirun_with(ranks: usize, bin: &str, args: &[&str], secs: u64, dir: Option<&Path>, env: &[(&str, &str)]) -> Run {
    let exe = exe(bin);
    let n = ranks.to_string();
    let mut full: Vec<&str> = vec!["-n", &n, exe.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    let mut c = timed(secs, Path::new("mpiexec"), &full);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.envs(env.iter().copied());
    Run::from(c.output().expect("run mpiexec"))
}

/// Runs a binary under `mpiexec -n ranks -bind-to BINDING` (hydra's syntax,
/// e.g. `user:0+1,2+3`: rank 0 on CPUs 0 and 1, rank 1 on 2 and 3).
pub fn mpirun_bound(ranks: usize, binding: &str, bin: &str, args: &[&str], secs: u64) -> Run {
    let exe = exe(bin);
    let n = ranks.to_string();
    let mut full: Vec<&str> = vec!["-n", &n, "-bind-to", binding, exe.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    Run::from(timed(secs, Path::new("mpiexec"), &full).output().expect("run mpiexec"))
}

/// Path of a binary built by cargo for these tests.
pub fn exe(bin: &str) -> PathBuf {
    let var = format!("CARGO_BIN_EXE_{bin}");
    if let Some(p) = std::env::var_os(&var) {
        return PathBuf::from(p);
    }
    // Integration tests get CARGO_BIN_EXE_* at compile time; fall back to the
    // target directory next to the test executable.
    let mut p = std::env::current_exe().expect("test exe path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join(bin)
}

/// Asserts a failed run exited with `code` and said one line (no panic, no usage dump).
pub fn assert_one_line_error(r: &Run, code: i32, needle: &str) {
    assert_eq!(r.code, code, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{}", r.stderr);
    assert!(lines[0].contains(needle), "error line lacks '{needle}': {}", lines[0]);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// A copy of the RoBERTa checkpoint `from` in `to` whose tokenizer is the slow
/// `RobertaTokenizer`'s files, `vocab.json` and `merges.txt` (as many Hub
/// fine-tunes ship it), written from its `tokenizer.json`'s vocabulary and
/// merges; `tokenizer.json` itself is left out, and so is
/// `tokenizer_config.json` unless `keep_config`.
pub fn with_slow_roberta_tokenizer(from: &Path, to: &Path, keep_config: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let name = entry.unwrap().file_name();
        let skip = name == "tokenizer.json" || (name == "tokenizer_config.json" && !keep_config);
        if !skip {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
    let fast = json(&from.join("tokenizer.json"));
    let model = &fast["model"];
    // Newer tokenizer.json files keep a merge as a pair, older ones as "a b".
    let merges: Vec<String> = model["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            pair => format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()),
        })
        .collect();
    std::fs::write(to.join("vocab.json"), model["vocab"].to_string()).unwrap();
    std::fs::write(to.join("merges.txt"), format!("#version: 0.2\n{}\n", merges.join("\n"))).unwrap();
}
