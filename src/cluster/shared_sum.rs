//! Summing f32 buffers over the ranks of one node through shared memory.
//!
//! `MPI_Allreduce` between ranks of one node moves the data through MPI's
//! shared-memory queues chunk by chunk, copying every value several times; on a
//! 6.6 MB gradient that is 2-3 ms of a 30 ms step. Here each rank's two
//! buffers live in one MPI shared-memory window (`MPI_Win_allocate_shared`)
//! that every rank of the node maps: after a barrier, each rank sums one
//! stripe of all ranks' input buffers (in rank order, so every rank gets the
//! same bits) and writes it into that stripe of every rank's output buffer;
//! after a second barrier every rank holds the whole sum. Each value is read
//! once and written once per rank, nothing else is copied.
//!
//! Windows are never freed: freeing is collective and a rank leaving on an
//! error would hang the others in it, and tensors may still view the memory.
//! MPI releases them at `MPI_Finalize`; the job sizes them once.

use std::ffi::c_void;
use std::ptr;

use anyhow::{bail, Result};
use mpi::collective::SystemOperation;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use tch::{Device, Kind, Tensor};

use super::share;

/// Stripes start on 64-byte boundaries, so no two ranks write one cache line.
const ALIGN: usize = 16;

pub struct SharedSum {
    comm: SimpleCommunicator,
    rank: usize,
    ranks: usize,
    win: Option<ffi::MPI_Win>,
    /// Per rank, the start of its two buffers of `capacity` values each.
    bases: Vec<*mut f32>,
    capacity: usize,
    /// One region for the whole node, in rank 0's part of a second window:
    /// state that every rank reads and each updates a stripe of (see
    /// [`SharedSum::node_region`]). Its start and length in values.
    node: Option<(ffi::MPI_Win, *mut f32, usize)>,
}

impl SharedSum {
    /// Over `node` (all of whose ranks share memory).
    pub(super) fn new(node: SimpleCommunicator) -> SharedSum {
        let (rank, ranks) = (node.rank() as usize, node.size() as usize);
        SharedSum { comm: node, rank, ranks, win: None, bases: Vec::new(), capacity: 0, node: None }
    }

    /// Makes room for `len` values per buffer (collective: every rank calls it
    /// with the same `len`).
    fn reserve(&mut self, len: usize) -> Result<()> {
        if len <= self.capacity && self.win.is_some() {
            return Ok(());
        }
        // Headroom, so buffers that vary a little (sparse rows) rarely regrow.
        let capacity = (len + len / 4).div_ceil(ALIGN) * ALIGN;
        let bytes = 2 * capacity * std::mem::size_of::<f32>();
        self.check_room((bytes * self.ranks) as u64)?;
        let (win, bases) = allocate(&self.comm, bytes)?;
        self.bases = bases;
        self.win = Some(win);
        self.capacity = capacity;
        Ok(())
    }

    /// Fails, on every rank alike, when /dev/shm cannot hold `need` more bytes
    /// with headroom. MPI maps windows from /dev/shm; where that is small
    /// (Docker's default is 64 MB) touching the pages would kill the job with
    /// SIGBUS. Collective: every rank must reach the same answer.
    fn check_room(&self, need: u64) -> Result<()> {
        let free = shm_free_bytes();
        let fits = i32::from(free.is_none_or(|f| f >= need + need / 2 + (64 << 20)));
        let mut all_fit = 0i32;
        self.comm.all_reduce_into(&fits, &mut all_fit, SystemOperation::min());
        if all_fit == 0 {
            bail!(
                "/dev/shm has {} MB free, too little for the shared-memory gradient sum's {} MB and headroom (with Docker: --shm-size=1g or --ipc=host)",
                free.unwrap_or(0) >> 20,
                need >> 20
            );
        }
        Ok(())
    }

    /// A region of `len` f32 values that every rank of the node maps at once
    /// (one copy per node, not per rank), as a CPU tensor that does not own
    /// its memory; it stays valid for the life of the process. Collective
    /// when it has to grow. Its contents survive only while it need not grow.
    pub fn node_region(&mut self, len: usize) -> Result<Tensor> {
        let start = match self.node {
            Some((_, start, have)) if have >= len => start,
            _ => {
                let bytes = len * std::mem::size_of::<f32>();
                self.check_room(bytes as u64)?;
                let (win, bases) = allocate(&self.comm, if self.rank == 0 { bytes } else { 0 })?;
                self.node = Some((win, bases[0], len));
                bases[0]
            }
        };
        // SAFETY: `start` begins at least `len` values of a window never
        // freed before MPI_Finalize.
        Ok(unsafe { Tensor::f_from_blob(start as *const u8, &[len as i64], &[1], Kind::Float, Device::Cpu)? })
    }

    /// The values `start..end` of a buffer of `len` that rank `rank` of the
    /// node owns in [`SharedSum::sum`] and in a striped update: stripes start
    /// on 64-byte boundaries, so no two ranks write one cache line.
    pub fn stripe(&self, rank: usize, len: usize) -> std::ops::Range<usize> {
        let (start, end) = share(len.div_ceil(ALIGN) as u64, self.ranks, rank);
        (start as usize * ALIGN).min(len)..(end as usize * ALIGN).min(len)
    }

    /// Whether `flag` is true on any rank of the node. Collective.
    pub fn any(&self, flag: bool) -> bool {
        let mut any = 0i32;
        self.comm.all_reduce_into(&i32::from(flag), &mut any, SystemOperation::max());
        any != 0
    }

    /// The number of ranks on this node and this rank's place among them.
    pub fn ranks(&self) -> (usize, usize) {
        (self.ranks, self.rank)
    }

    /// Rank `rank`'s buffer `which`, its first `len` values, for reading.
    ///
    /// # Safety
    /// The caller must know that nobody writes those values while the slice
    /// lives (between two [`SharedSum::fence`]s where their owner does not).
    pub unsafe fn peer(&self, rank: usize, which: usize, len: usize) -> &[f32] {
        debug_assert!(len <= self.capacity && which < 2 && rank < self.ranks);
        std::slice::from_raw_parts(self.slot(rank, which), len)
    }

    /// This rank's buffer `which` (0 or 1), its first `len` values as a CPU
    /// f32 tensor. The tensor does not own the memory; it stays valid for the
    /// life of the process. Collective when it has to grow the window.
    pub fn buffer(&mut self, which: usize, len: usize) -> Result<Tensor> {
        self.reserve(len)?;
        let p = self.slot(self.rank, which);
        // SAFETY: `p` starts `capacity >= len` f32 values of this rank's
        // window, which is never freed before MPI_Finalize.
        Ok(unsafe { Tensor::f_from_blob(p as *const u8, &[len as i64], &[1], Kind::Float, Device::Cpu)? })
    }

    /// Which of this rank's buffers `t` starts at, if either.
    pub fn which(&self, t: &Tensor) -> Option<usize> {
        (0..2).find(|&w| self.win.is_some() && t.data_ptr() as *mut f32 == self.slot(self.rank, w))
    }

    /// Whether `t`'s data starts inside either of this rank's buffers.
    pub fn holds(&self, t: &Tensor) -> bool {
        if self.win.is_none() {
            return false;
        }
        let (start, p) = (self.slot(self.rank, 0) as usize, t.data_ptr() as usize);
        p >= start && p < start + 2 * self.capacity * std::mem::size_of::<f32>()
    }

    fn slot(&self, rank: usize, which: usize) -> *mut f32 {
        // SAFETY (of the pointer arithmetic): within the rank's 2 x capacity values.
        unsafe { self.bases[rank].add(which * self.capacity) }
    }

    /// Every rank's buffer `1 - from` gets, in its first `len` values, the
    /// sum over ranks of their buffers `from`. Collective.
    pub fn sum(&mut self, from: usize, len: usize) -> Result<()> {
        if len > self.capacity || from > 1 {
            bail!("shared-memory sum of {len} values in buffer {from}: the window holds {}", self.capacity);
        }
        let to = 1 - from;
        self.fence();
        let std::ops::Range { start, end } = self.stripe(self.rank, len);
        if end > start {
            let n = end - start;
            // SAFETY: between the two fences, this rank alone writes values
            // start..end of every output buffer, and nobody writes the inputs.
            unsafe {
                let out = std::slice::from_raw_parts_mut(self.slot(self.rank, to).add(start), n);
                out.copy_from_slice(std::slice::from_raw_parts(self.slot(0, from).add(start), n));
                for r in 1..self.ranks {
                    let add = std::slice::from_raw_parts(self.slot(r, from).add(start), n);
                    for (o, a) in out.iter_mut().zip(add) {
                        *o += a;
                    }
                }
                for r in (0..self.ranks).filter(|&r| r != self.rank) {
                    ptr::copy_nonoverlapping(out.as_ptr(), self.slot(r, to).add(start), n);
                }
            }
        }
        self.fence();
        Ok(())
    }

    /// Makes every rank's writes to either window visible to all, and waits
    /// for all. Collective.
    pub fn fence(&self) {
        let wins = [self.win, self.node.map(|(w, _, _)| w)];
        // SAFETY: MPI calls on this struct's windows and communicator.
        unsafe {
            for win in wins.iter().flatten() {
                ffi::MPI_Win_sync(*win);
            }
            ffi::MPI_Barrier(self.comm.as_raw());
            for win in wins.iter().flatten() {
                ffi::MPI_Win_sync(*win);
            }
        }
    }
}

/// A shared-memory window of `bytes` on this rank (collective over `comm`,
/// whose ranks may ask for different sizes), locked for passive access, and
/// where every rank's part starts. Never freed (see the module comment).
fn allocate(comm: &SimpleCommunicator, bytes: usize) -> Result<(ffi::MPI_Win, Vec<*mut f32>)> {
    let mut base: *mut f32 = ptr::null_mut();
    let mut win: ffi::MPI_Win = unsafe { std::mem::zeroed() };
    // SAFETY: plain MPI calls on `comm`; `base`, `win` and the queried
    // pointers are written by MPI.
    unsafe {
        let rc = ffi::MPI_Win_allocate_shared(
            bytes as ffi::MPI_Aint,
            std::mem::size_of::<f32>() as i32,
            ffi::RSMPI_INFO_NULL,
            comm.as_raw(),
            &mut base as *mut *mut f32 as *mut c_void,
            &mut win,
        );
        if rc != 0 {
            bail!("MPI_Win_allocate_shared of {} MB failed (error {rc})", bytes >> 20);
        }
        let mut bases = Vec::with_capacity(comm.size() as usize);
        for r in 0..comm.size() {
            let (mut size, mut unit, mut b): (ffi::MPI_Aint, i32, *mut f32) = (0, 0, ptr::null_mut());
            let rc = ffi::MPI_Win_shared_query(win, r, &mut size, &mut unit, &mut b as *mut *mut f32 as *mut c_void);
            if rc != 0 || (b.is_null() && size > 0) {
                bail!("MPI_Win_shared_query for rank {r} failed (error {rc})");
            }
            bases.push(b);
        }
        ffi::MPI_Win_lock_all(0, win);
        Ok((win, bases))
    }
}

/// Free bytes in /dev/shm, where MPI maps shared windows (`None`: no /dev/shm
/// to ask, as on systems that map shared memory elsewhere).
fn shm_free_bytes() -> Option<u64> {
    let path = std::ffi::CString::new("/dev/shm").ok()?;
    // SAFETY: statvfs fills the zeroed struct it is given from a valid C path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
}
