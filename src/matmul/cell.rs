//! One cell of the sweep: an n x n by n x n product in one type on one device,
//! warmed up, then timed `repeats` times with the device synchronised around
//! each product, then checked. Failures (out of memory, unsupported type, a
//! wrong product) end the cell, never the run.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::check::{self, Check};
use super::config::{memory_bytes, GIB};
use super::dtype::Dtype;
use crate::device::Device;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub device: Device,
    pub dtype: Dtype,
    pub size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// This type has no (useful) kernel on this device.
    Unsupported,
    /// A, B and C would not fit under the memory limit, so the cell was not tried.
    MemoryLimit,
    /// The allocator said no.
    OutOfMemory,
    /// The product disagreed with the f64 reference.
    WrongResult,
    /// Anything else libtorch reported.
    Error,
}

impl Failure {
    /// A few words for the table.
    pub fn short(self) -> &'static str {
        match self {
            Failure::Unsupported => "unsupported",
            Failure::MemoryLimit => "over memory limit",
            Failure::OutOfMemory => "out of memory",
            Failure::WrongResult => "wrong result",
            Failure::Error => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellError {
    pub failure: Failure,
    pub message: String,
}

impl CellError {
    pub fn new(failure: Failure, message: impl Into<String>) -> CellError {
        CellError { failure, message: message.into() }
    }
}

impl From<tch::TchError> for CellError {
    /// libtorch's first line (the rest is a C++ backtrace), classified.
    fn from(e: tch::TchError) -> CellError {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        let first = first.strip_prefix("Internal torch error: ").unwrap_or(first).trim();
        // c10's "[enforce fail at alloc_cpu.cpp:127] err == 0. " says nothing to a user.
        let first = match first.strip_prefix("[enforce fail at ").and_then(|r| r.split_once("] ")) {
            Some((_, rest)) => rest.strip_prefix("err == 0. ").unwrap_or(rest),
            None => first,
        };
        let lower = first.to_ascii_lowercase();
        let oom = ["out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory"];
        if oom.iter().any(|m| lower.contains(m)) {
            CellError::new(Failure::OutOfMemory, format!("out of memory: {first}"))
        } else {
            CellError::new(Failure::Error, first.to_string())
        }
    }
}

/// The most memory a cell may take, and what that limit is, for the message.
#[derive(Clone, Debug)]
pub struct MemoryLimit {
    pub gib: f64,
    pub what: String,
}

/// Refuses a cell whose A, B and C would not fit under `limit`.
pub fn fits(cell: &Cell, limit: Option<&MemoryLimit>) -> Result<(), CellError> {
    let need = memory_bytes(cell.size, cell.dtype) as f64 / GIB;
    match limit {
        Some(l) if need > l.gib => Err(CellError::new(
            Failure::MemoryLimit,
            format!(
                "{n}x{n} {dt} needs {need:.2} GiB for A, B and C, more than {what} ({gib:.2} GiB); \
                 use smaller --sizes or raise --max-memory-gb",
                n = cell.size,
                dt = cell.dtype,
                what = l.what,
                gib = l.gib
            ),
        )),
        _ => Ok(()),
    }
}

/// What a cell measured: seconds per product, in the order run, and the check.
#[derive(Clone, Debug)]
pub struct Measured {
    pub times: Vec<f64>,
    pub check: Check,
}

struct Operands {
    a: Tensor,
    b: Tensor,
    c: Tensor,
}

impl Operands {
    /// Random normal A and B (the same on every rank for a seed) and the output
    /// C, allocated once: every product writes into it, as `torch.matmul(a, b,
    /// out=c)` does in the Python peer, so no repeat pays for an allocation.
    fn new(cell: &Cell, seed: u64) -> Result<Operands, CellError> {
        tch::manual_seed(seed as i64);
        let n = cell.size as i64;
        let opts = (cell.dtype.kind(), cell.device.tch());
        let a = Tensor::f_randn([n, n], opts)?;
        let b = Tensor::f_randn([n, n], opts)?;
        let c = Tensor::f_empty([n, n], opts)?;
        Ok(Operands { a, b, c })
    }

    /// Seconds for one product, from a synchronised start to a synchronised end.
    fn multiply(&self, device: Device) -> Result<f64, CellError> {
        device.synchronize();
        let t0 = Instant::now();
        // The returned handle is another reference to C; dropping it frees nothing.
        let _ = self.a.f_matmul_out(&self.c, &self.b)?;
        device.synchronize();
        Ok(t0.elapsed().as_secs_f64())
    }
}

/// TF32 on for a tf32 cell on a GPU, and back off when the cell ends, however
/// it ends, so no f32 cell after it runs on TF32 by accident.
struct Tf32Guard(bool);

impl Tf32Guard {
    fn new(cell: &Cell) -> Tf32Guard {
        let on = cell.device.is_cuda() && cell.dtype == Dtype::Tf32;
        if cell.device.is_cuda() {
            crate::device::set_cuda_tf32(on);
        }
        Tf32Guard(on)
    }
}

impl Drop for Tf32Guard {
    fn drop(&mut self) {
        if self.0 {
            crate::device::set_cuda_tf32(false);
        }
    }
}

/// Runs a cell whose pre-checks gave `ready`. `lockstep` is called before every
/// product, warm-ups included, exactly `warmup + repeats` times whatever
/// happens, so ranks that wait on each other there (MPI barriers) stay in step
/// even when the cell fails on some of them.
pub fn measure(
    cell: &Cell,
    ready: Result<(), CellError>,
    warmup: usize,
    repeats: usize,
    seed: u64,
    lockstep: &dyn Fn(),
) -> Result<Measured, CellError> {
    let _tf32 = Tf32Guard::new(cell);
    let mut state = ready.and_then(|()| Operands::new(cell, seed));
    let mut times = Vec::with_capacity(repeats);
    for i in 0..warmup + repeats {
        lockstep();
        if let Ok(ops) = &state {
            match ops.multiply(cell.device) {
                Ok(t) if i >= warmup => times.push(t),
                Ok(_) => {}
                Err(e) => state = Err(e),
            }
        }
    }
    let ops = state?;
    let check = check::verify(&ops.a, &ops.b, &ops.c, cell.dtype)?;
    Ok(Measured { times, check })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell as Counter;

    fn cpu(dtype: Dtype, size: usize) -> Cell {
        Cell { device: Device::Cpu, dtype, size }
    }

    #[test]
    fn times_every_repeat_and_keeps_lockstep() {
        let calls = Counter::new(0);
        let m = measure(&cpu(Dtype::F32, 96), Ok(()), 2, 3, 1, &|| calls.set(calls.get() + 1)).unwrap();
        assert_eq!(m.times.len(), 3);
        assert!(m.times.iter().all(|t| *t > 0.0));
        assert_eq!(calls.get(), 5);
        assert_eq!(m.check.entries, 96 * 96);
    }

    #[test]
    fn a_failed_cell_still_keeps_lockstep() {
        let calls = Counter::new(0);
        let refused = Err(CellError::new(Failure::Unsupported, "no"));
        let e = measure(&cpu(Dtype::F32, 64), refused, 1, 4, 1, &|| calls.set(calls.get() + 1)).unwrap_err();
        assert_eq!(e.failure, Failure::Unsupported);
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn memory_limit_refuses_before_allocating() {
        let limit = MemoryLimit { gib: 0.5, what: "the --max-memory-gb limit".into() };
        // 8192^2 x 4 bytes x 3 = 0.75 GiB.
        let e = fits(&cpu(Dtype::F32, 8192), Some(&limit)).unwrap_err();
        assert_eq!(e.failure, Failure::MemoryLimit);
        assert!(e.message.contains("needs 0.75 GiB") && e.message.contains("--max-memory-gb"), "{}", e.message);
        // Half the bytes: 0.375 GiB fits.
        assert!(fits(&cpu(Dtype::Bf16, 8192), Some(&limit)).is_ok());
        assert!(fits(&cpu(Dtype::Bf16, 16384), Some(&limit)).is_err());
        assert!(fits(&cpu(Dtype::F32, 1 << 20), None).is_ok());
    }

    #[test]
    fn allocator_refusals_read_as_out_of_memory() {
        // Unlimited overcommit (mode 1) would hand out the untouched 4 TiB.
        if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "1") {
            return;
        }
        // 2^40 elements: more than any allocator here will give.
        let e = CellError::from(Tensor::f_empty([1 << 20, 1 << 20], (tch::Kind::Float, tch::Device::Cpu)).unwrap_err());
        assert_eq!(e.failure, Failure::OutOfMemory, "{}", e.message);
        assert!(e.message.starts_with("out of memory: ") && !e.message.contains('\n'), "{}", e.message);
        assert!(!e.message.contains("enforce fail"), "{}", e.message);
    }
}
