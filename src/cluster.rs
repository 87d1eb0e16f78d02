//! The MPI world every workload runs in: who we are (rank, size, node-local rank,
//! host), rank-0 printing, the reductions and broadcasts data-parallel work needs,
//! agreement on errors, and the abort path that ends a whole job at once.
//!
//! Works unchanged as a singleton (a binary started without `mpiexec`): MPICH
//! initialises a world of one.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;

use anyhow::{anyhow, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::{Threading, Universe};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod cpus;
// Hands out its buffers as tensors: only with libtorch.
#[cfg(feature = "torch")]
mod shared_sum;
#[cfg(feature = "torch")]
pub use shared_sum::SharedSum;

/// rsmpi counts are C ints: buffers beyond this many elements go in pieces.
const MAX_MPI_COUNT: usize = 1 << 30;

pub struct Cluster {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
    nodes: usize,
    default_threads: usize,
    host: String,
    scratch: RefCell<Vec<f32>>,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

/// An error every rank of the job has agreed on; rank 0 prints it once.
#[derive(Debug)]
pub struct Agreed {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Agreed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Agreed {}

impl Cluster {
    /// Starts MPI (threads may exist, only the main thread calls MPI) and finds
    /// this process's place in the job.
    pub fn init() -> Result<Cluster> {
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| anyhow!("MPI was already initialised in this process"))?;
        let world = universe.world();
        let rank = world.rank() as usize;
        let size = world.size() as usize;
        let node = world.split_shared(world.rank());
        let local_rank = node.rank() as usize;
        let local_size = node.size() as usize;
        let default_threads = node_thread_share(&node);
        let mut nodes = 0u64;
        world.all_reduce_into(&u64::from(local_rank == 0), &mut nodes, SystemOperation::sum());
        let host = mpi::environment::processor_name()
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        Ok(Cluster {
            world,
            rank,
            size,
            local_rank,
            local_size,
            nodes: nodes as usize,
            default_threads,
            host,
            scratch: RefCell::new(Vec::new()),
            _universe: universe,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Rank among the processes sharing this node's memory (MPI shared-memory split).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Number of ranks on this node.
    pub fn local_size(&self) -> usize {
        self.local_size
    }

    /// Number of nodes in the job.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// CPU threads this rank runs when `--threads` is not given: its share of
    /// the physical cores it may use (see [`cpus`]).
    pub fn default_threads(&self) -> usize {
        self.default_threads
    }

    /// A shared-memory sum over all ranks, when they all run on one node and
    /// there are several (`HPCML_SHARED_SUM=0` turns it off, for comparison
    /// with MPI_Allreduce). Collective.
    #[cfg(feature = "torch")]
    pub fn shared_sum(&self) -> Option<SharedSum> {
        let off = crate::cli::switched_off("HPCML_SHARED_SUM");
        if self.size < 2 || self.nodes != 1 || off {
            return None;
        }
        Some(SharedSum::new(self.world.split_shared(self.world.rank())))
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// `[host-rank]`, the prefix of per-rank lines.
    pub fn tag(&self) -> String {
        format!("[{}-{}]", self.host, self.rank)
    }

    /// Prints a line on rank 0 only, flushed at once so Slurm logs keep order.
    pub fn say(&self, line: impl fmt::Display) {
        if self.is_root() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// Seconds on MPI's wall clock.
    pub fn wtime(&self) -> f64 {
        mpi::time()
    }

    pub fn sum_u64(&self, x: u64) -> u64 {
        let mut out = 0u64;
        self.world.all_reduce_into(&x, &mut out, SystemOperation::sum());
        out
    }

    pub fn sum_f64(&self, x: f64) -> f64 {
        let mut out = 0f64;
        self.world.all_reduce_into(&x, &mut out, SystemOperation::sum());
        out
    }

    pub fn max_f64(&self, x: f64) -> f64 {
        let mut out = 0f64;
        self.world.all_reduce_into(&x, &mut out, SystemOperation::max());
        out
    }

    pub fn min_f64(&self, x: f64) -> f64 {
        let mut out = 0f64;
        self.world.all_reduce_into(&x, &mut out, SystemOperation::min());
        out
    }

    /// Element-wise sum of `values` over all ranks, in place.
    pub fn sum_f64_slice(&self, values: &mut [f64]) {
        if self.size == 1 || values.is_empty() {
            return;
        }
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    /// Element-wise sum of an f32 buffer over all ranks, in place. One persistent
    /// scratch buffer is reused across calls (rsmpi has no MPI_IN_PLACE), and
    /// buffers over 2^30 elements go in pieces.
    pub fn sum_f32_in_place(&self, buf: &mut [f32]) {
        if self.size == 1 || buf.is_empty() {
            return;
        }
        let mut scratch = self.scratch.borrow_mut();
        let piece = buf.len().min(MAX_MPI_COUNT);
        if scratch.len() < piece {
            scratch.resize(piece, 0.0);
        }
        for chunk in buf.chunks_mut(MAX_MPI_COUNT) {
            let send = &mut scratch[..chunk.len()];
            send.copy_from_slice(chunk);
            self.world.all_reduce_into(&send[..], chunk, SystemOperation::sum());
        }
    }

    /// Element-wise sum over all ranks of `send` into `recv` (same length): the
    /// all-reduce without the copy [`Cluster::sum_f32_in_place`] makes, for
    /// callers that keep their own pair of buffers.
    pub fn sum_f32_into(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(send.len(), recv.len(), "all-reduce buffers differ in length");
        if self.size == 1 {
            recv.copy_from_slice(send);
            return;
        }
        for (s, r) in send.chunks(MAX_MPI_COUNT).zip(recv.chunks_mut(MAX_MPI_COUNT)) {
            self.world.all_reduce_into(s, r, SystemOperation::sum());
        }
    }

    /// Overwrites `buf` on every rank with rank 0's contents.
    pub fn broadcast_f32(&self, buf: &mut [f32]) {
        if self.size == 1 {
            return;
        }
        let root = self.world.process_at_rank(0);
        for chunk in buf.chunks_mut(MAX_MPI_COUNT) {
            root.broadcast_into(chunk);
        }
    }

    /// Sends rank 0's bytes to every rank (any length).
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        self.broadcast_bytes_from(0, bytes);
    }

    fn broadcast_bytes_from(&self, from: usize, bytes: &mut Vec<u8>) {
        if self.size == 1 {
            return;
        }
        let root = self.world.process_at_rank(from as i32);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        for chunk in bytes.chunks_mut(MAX_MPI_COUNT) {
            root.broadcast_into(chunk);
        }
    }

    /// Sends rank 0's value to every rank.
    pub fn broadcast_value<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<T> {
        let mut bytes = if self.is_root() { serde_json::to_vec(value)? } else { Vec::new() };
        self.broadcast_bytes(&mut bytes);
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Collects one record from every rank on rank 0, in rank order; `None` elsewhere.
    pub fn gather<T: Serialize + DeserializeOwned>(&self, item: &T) -> Result<Option<Vec<T>>> {
        let bytes = serde_json::to_vec(item)?;
        if self.size == 1 {
            return Ok(Some(vec![serde_json::from_slice(&bytes)?]));
        }
        let len = i32::try_from(bytes.len())
            .map_err(|_| anyhow!("record of {} bytes is too large to gather", bytes.len()))?;
        let root = self.world.process_at_rank(0);
        if !self.is_root() {
            root.gather_into(&len);
            root.gather_varcount_into(&bytes[..]);
            return Ok(None);
        }
        let mut lens = vec![0i32; self.size];
        root.gather_into_root(&len, &mut lens[..]);
        let displs: Vec<i32> = lens
            .iter()
            .scan(0i32, |acc, &l| {
                let d = *acc;
                *acc += l;
                Some(d)
            })
            .collect();
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        let mut all = vec![0u8; total];
        {
            let mut part = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
            root.gather_varcount_into_root(&bytes[..], &mut part);
        }
        let mut out = Vec::with_capacity(self.size);
        for (d, l) in displs.iter().zip(&lens) {
            out.push(serde_json::from_slice(&all[*d as usize..(*d + *l) as usize])?);
        }
        Ok(Some(out))
    }

    /// A collective check: if any rank's `local` is an error, every rank returns an
    /// error carrying the first failing rank's message and exit code, so the job
    /// ends cleanly with one line instead of some ranks waiting forever.
    pub fn agree<T>(&self, local: Result<T>) -> Result<T> {
        if self.size == 1 {
            return local;
        }
        let mine = match &local {
            Ok(_) => self.size as i32,
            Err(_) => self.rank as i32,
        };
        let mut first = 0i32;
        self.world.all_reduce_into(&mine, &mut first, SystemOperation::min());
        if first as usize == self.size {
            return local;
        }
        let mut bytes = match &local {
            Err(e) if first as usize == self.rank => {
                let mut b = vec![crate::cli::exit_code(e)];
                let prefix = if self.rank == 0 { String::new() } else { format!("{} ", self.tag()) };
                b.extend_from_slice(format!("{prefix}{}", crate::cli::one_line(e)).as_bytes());
                b
            }
            _ => Vec::new(),
        };
        self.broadcast_bytes_from(first as usize, &mut bytes);
        let code = bytes.first().copied().unwrap_or(crate::cli::EXIT_RUNTIME);
        let message = String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned();
        Err(anyhow::Error::new(Agreed { code, message }))
    }

    /// Ends every rank of the job with `code`.
    pub fn abort(&self, code: i32) -> ! {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let_launcher_forward_output();
        self.world.abort(code)
    }
}

/// Aborts the whole job from a place that holds no [`Cluster`] (the panic hook).
pub fn abort_world(code: i32) {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        let _ = std::io::stderr().flush();
        let_launcher_forward_output();
        SimpleCommunicator::world().abort(code);
    }
}

/// The error line sits in the pipe to the launcher's proxy, and an abort makes
/// hydra (and srun) tear the job down at once: without a pause the line was lost
/// in about one run in seven. A moment before aborting costs nothing on a job
/// that is ending anyway.
fn let_launcher_forward_output() {
    std::thread::sleep(std::time::Duration::from_millis(300));
}

/// This rank's default thread count: its physical cores (capped by a cgroup
/// CPU quota), divided among the node's ranks whose CPU sets overlap its own.
/// Collective over the node.
fn node_thread_share(node: &SimpleCommunicator) -> usize {
    let mine = cpus::affinity();
    let mut all = vec![0u64; cpus::MASK_WORDS * node.size() as usize];
    node.all_gather_into(&mine.unwrap_or([0; cpus::MASK_WORDS])[..], &mut all[..]);
    let masks: Vec<cpus::CpuMask> = all
        .chunks_exact(cpus::MASK_WORDS)
        .map(|c| {
            let mut m = [0u64; cpus::MASK_WORDS];
            m.copy_from_slice(c);
            m
        })
        .collect();
    cpus::thread_share(mine.as_ref(), &masks, cpus::own_physical_cores())
}

/// Splits `total` items over `parts` as evenly as possible: part `i` gets
/// `[start, end)`, the first `total % parts` parts one item more. Nothing dropped.
pub fn share(total: u64, parts: usize, i: usize) -> (u64, u64) {
    let parts = parts.max(1) as u64;
    let i = i as u64;
    let base = total / parts;
    let extra = total % parts;
    let start = i * base + i.min(extra);
    let len = base + u64::from(i < extra);
    (start, start + len)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_cover_everything_once() {
        for total in [0u64, 1, 7, 10, 1_000_003] {
            for parts in 1..=7 {
                let mut next = 0;
                let mut lens = Vec::new();
                for i in 0..parts {
                    let (s, e) = share(total, parts, i);
                    assert_eq!(s, next);
                    next = e;
                    lens.push(e - s);
                }
                assert_eq!(next, total);
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo <= 1);
            }
        }
    }
}
