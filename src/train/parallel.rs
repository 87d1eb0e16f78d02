//! Data-parallel training over MPI, the Horovod way.
//!
//! Every rank holds the whole model. Parameters are broadcast from rank 0 once;
//! each global batch is split into disjoint shards, one per rank; after
//! `backward`, every gradient is packed (in the fixed [`Params`] order) into one
//! fused buffer, all-reduced in a single call, and unpacked. Each rank's
//! gradient is weighted by its share of the global batch, so uneven shards still
//! give the global batch's mean gradient exactly, and 2 ranks step like 1 rank
//! with the same global batch. One extra slot carries "a rank was asked to stop"
//! so all ranks stop at the same step.
//!
//! Ranks of one node that train with an [`Elementwise`] optimizer through
//! [`DataParallel::step`] go further: they hold the model once, in shared
//! memory, and each sums and updates one stripe of it (`striped`).

use std::ops::Range;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use super::optim::Elementwise;
use super::params::Params;
use crate::cluster::{share, Cluster, SharedSum};

mod striped;

/// The rows of one parameter's gradient that may be non-zero on this rank
/// (e.g. the vocabulary rows an embedding table looked up this step).
#[derive(Clone, Debug)]
pub struct SparseRows {
    /// The parameter's name in [`Params`].
    pub param: String,
    /// Row indices, in any order, repeats allowed.
    pub rows: Vec<i64>,
}

pub struct DataParallel<'c> {
    cluster: &'c Cluster,
    /// Host buffers of the fused all-reduce, kept across steps: gradients are
    /// packed into `send` (plus one slot: the stop flag) and summed into `recv`.
    /// Two buffers because rsmpi has no MPI_IN_PLACE; neither is copied again.
    send: Option<Tensor>,
    recv: Option<Tensor>,
    /// On a GPU, gradients are packed on the device first, so one
    /// device-to-host copy moves them all (and one copy brings them back).
    staging: Option<Tensor>,
    /// With every rank on one node, `send` and `recv` are buffers in shared
    /// memory and the sum is done there instead of by MPI_Allreduce.
    shared: Option<SharedSum>,
}

impl<'c> DataParallel<'c> {
    /// Collective: every rank creates its DataParallel at the same point.
    pub fn new(cluster: &'c Cluster) -> DataParallel<'c> {
        DataParallel { cluster, send: None, recv: None, staging: None, shared: cluster.shared_sum() }
    }

    pub fn cluster(&self) -> &Cluster {
        self.cluster
    }

    /// This rank's shard `start..end` of a global batch of `n` examples.
    pub fn shard(&self, n: usize) -> Range<usize> {
        let (s, e) = share(n as u64, self.cluster.size(), self.cluster.rank());
        s as usize..e as usize
    }

    /// Copies rank 0's values of every floating-point tensor in `params` to all ranks.
    pub fn broadcast(&mut self, params: &Params) -> Result<()> {
        if self.cluster.size() == 1 {
            return Ok(());
        }
        let floats: Vec<Tensor> =
            params.tensors.iter().filter(|t| t.is_floating_point()).map(|t| t.shallow_clone()).collect();
        // A buffer of its own: the send buffer may hold the gradients.
        let buf = host_buffer(&mut None, floats.iter().map(|t| t.numel()).sum())?;
        let n = self.pack_into(&buf, &floats)?;
        // SAFETY: `buf` is a contiguous f32 CPU buffer only this function holds.
        self.cluster.broadcast_f32(unsafe { host_slice(&buf, n) });
        let _guard = tch::no_grad_guard();
        self.unpack(&floats, &buf).context("broadcasting parameters")
    }

    /// One step of the global batch: backpropagates this rank's `loss` (scaled
    /// by its share of the global batch, as for [`Self::backward`] with
    /// weight 1), sums the gradients over ranks and updates `params` with
    /// `opt` at `lr`. Returns true when any rank passed `stop`. Ranks of one
    /// node that share memory take the striped path (`striped`), which leaves
    /// `.grad` as it was; elsewhere this is `backward` and `opt.step`.
    pub fn step<O: Elementwise>(
        &mut self,
        loss: &Tensor,
        params: &Params,
        opt: &mut O,
        lr: f64,
        stop: bool,
    ) -> Result<bool> {
        if self.can_stripe(params) {
            return self.striped_step(loss, params, opt, lr, stop);
        }
        let any_stop = self.backward(loss, params, 1.0, stop)?;
        opt.step(params, lr)?;
        Ok(any_stop)
    }

    /// Backpropagates this rank's `loss` and leaves in every parameter's `.grad`
    /// the gradient of the global batch (see [`Self::all_reduce_gradients`] for
    /// `weight` and `stop`; returns true when any rank passed `stop`). Callers
    /// need not zero the gradients. One process takes autograd's fresh gradients
    /// and points `.grad` at them (no zeroing pass, no accumulation pass);
    /// several ranks accumulate into the fused buffers and all-reduce them.
    pub fn backward(&mut self, loss: &Tensor, params: &Params, weight: f64, stop: bool) -> Result<bool> {
        if self.cluster.size() > 1 {
            params.zero_grad();
            loss.f_backward()?;
            return self.all_reduce_gradients(params, weight, stop);
        }
        Self::fresh_gradients(loss, params)?;
        self.all_reduce_gradients(params, weight, stop)
    }

    /// Backpropagates `loss` and points every parameter's `.grad` at the
    /// gradient autograd just made (zero where it made none): no zeroing pass
    /// and no accumulation pass over the gradients, as `zero_grad` followed by
    /// `backward` would cost.
    pub fn fresh_gradients(loss: &Tensor, params: &Params) -> Result<()> {
        let fresh = Tensor::f_run_backward(&[loss], &params.tensors, false, false)?;
        Self::set_gradients(params, &fresh)
    }

    /// Points every parameter's `.grad` at its gradient in `fresh` (zero
    /// where that is undefined).
    fn set_gradients(params: &Params, fresh: &[Tensor]) -> Result<()> {
        // The first time, `.grad` must exist to be pointed elsewhere.
        Self::define_grads(params)?;
        let _guard = tch::no_grad_guard();
        for (p, g) in params.tensors.iter().zip(fresh) {
            let mut dst = p.grad();
            if g.defined() {
                let _ = dst.f_set_source_tensor_(g)?;
            } else {
                let _ = dst.f_zero_()?;
            }
        }
        Ok(())
    }

    /// Gives every parameter a (zero) gradient, so all ranks send the same fused
    /// layout even when some layer got no gradient on some rank.
    pub fn define_grads(params: &Params) -> Result<()> {
        let missing: Vec<&Tensor> = params.tensors.iter().filter(|t| !t.grad().defined()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut sum = Tensor::f_zeros([], (Kind::Float, missing[0].device()))?;
        for t in &missing {
            sum = sum.f_add(&t.f_sum(Kind::Float)?.f_mul_scalar(0.0)?.f_to_device(sum.device())?)?;
        }
        sum.f_backward()?;
        Ok(())
    }

    /// Replaces each rank's gradients by the global batch's: the sum over ranks of
    /// `weight * grad`, where `weight` is this rank's share of the global batch
    /// (`shard len / global batch len`; the weights of all ranks sum to 1).
    /// A trainer that already scaled its loss by the share passes 1.0, which
    /// saves a pass over the buffer. Returns true when any rank passed `stop`.
    pub fn all_reduce_gradients(&mut self, params: &Params, weight: f64, stop: bool) -> Result<bool> {
        if self.cluster.size() == 1 {
            if weight != 1.0 {
                let _guard = tch::no_grad_guard();
                for p in &params.tensors {
                    let g = p.grad();
                    if g.defined() {
                        let _ = g.shallow_clone().f_mul_scalar_(weight)?;
                    }
                }
            }
            return Ok(stop);
        }
        Self::define_grads(params)?;
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = params.tensors.iter().map(|p| p.grad()).collect();
        let n: usize = grads.iter().map(|g| g.numel()).sum();
        // On the CPU the gradients live in the fused buffers themselves (PyTorch
        // DDP's `gradient_as_bucket_view`): backward accumulates straight into the
        // buffer that is sent, and after the all-reduce the gradients are pointed
        // at the buffer that received. No copy either way; the two buffers swap
        // roles every step. Elsewhere (GPUs) they are packed and unpacked.
        let in_place = grads.iter().all(is_host_f32);
        let send = match self.send.as_ref().filter(|b| in_place && b.numel() == n + 1 && views_of(&grads, b)) {
            Some(b) => b.shallow_clone(),
            None => {
                let send = self.send_buffer(n + 1)?;
                self.pack_into(&send, &grads)?;
                if in_place {
                    point_into(&grads, &send)?;
                }
                send
            }
        };
        let (recv, any_stop) = self.exchange(&send, n, weight, stop)?;
        if in_place {
            point_into(&grads, &recv).context("all-reducing gradients")?;
            self.send = Some(recv);
            self.recv = Some(send);
        } else {
            self.unpack(&grads, &recv).context("all-reducing gradients")?;
        }
        Ok(any_stop)
    }

    /// Scales the `n` packed values of `send` by `weight`, puts the stop flag in
    /// its last slot and sums it over ranks into the receive buffer, which it
    /// returns with whether any rank asked to stop.
    fn exchange(&mut self, send: &Tensor, n: usize, weight: f64, stop: bool) -> Result<(Tensor, bool)> {
        if weight != 1.0 {
            let _ = send.f_narrow(0, 0, n as i64)?.f_mul_scalar_(weight)?;
        }
        // SAFETY: `send` is this rank's contiguous f32 CPU buffer of at least
        // n + 1 values; libtorch has no work queued on it.
        unsafe { host_slice(send, n + 1)[n] = if stop { 1.0 } else { 0.0 } };
        let from = self.shared.as_ref().and_then(|shared| shared.which(send));
        let recv = match (self.shared.as_mut(), from) {
            (Some(shared), Some(from)) => {
                shared.sum(from, n + 1)?;
                let recv = shared.buffer(1 - from, n + 1)?;
                self.recv = Some(recv.shallow_clone());
                recv
            }
            _ => {
                let recv = host_buffer(&mut self.recv, n + 1)?;
                // SAFETY: `send` and `recv` are this struct's two distinct
                // contiguous f32 CPU buffers of at least n + 1 elements; no
                // gradient view into `send` is used while MPI reads it.
                let (send_s, recv_s) = unsafe { (host_slice(send, n + 1), host_slice(&recv, n + 1)) };
                self.cluster.sum_f32_into(send_s, recv_s);
                recv
            }
        };
        // SAFETY: `recv` holds the n + 1 summed values; nothing writes it now.
        let any_stop = unsafe { host_slice(&recv, n + 1)[n] } > 0.0;
        Ok((recv, any_stop))
    }

    /// [`all_reduce_gradients`](Self::all_reduce_gradients) for models with
    /// embedding tables: `sparse` names, per table, the rows this rank looked
    /// up (its gradient is zero elsewhere). Only the rows some rank looked up
    /// travel, found with one small all-reduce of a row mask first. For BERT
    /// that halves the fused buffer (the vocabulary is half the model, a batch
    /// touches a few thousand of its 30,522 rows); the result is the same.
    pub fn all_reduce_gradients_sparse(
        &mut self,
        params: &Params,
        weight: f64,
        stop: bool,
        sparse: &[SparseRows],
    ) -> Result<bool> {
        if sparse.is_empty() || self.cluster.size() == 1 {
            return self.all_reduce_gradients(params, weight, stop);
        }
        Self::define_grads(params)?;
        let rows = self.union_rows(params, sparse)?;
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = params.tensors.iter().map(|p| p.grad()).collect();
        if self.shared.is_some() && grads.iter().all(is_host_f32) {
            return self.sparse_in_shared_buffers(&grads, &rows, weight, stop);
        }
        // Gradients a dense step left in the fused buffer get memory of their
        // own first: packing and summing write both buffers.
        if self.send.as_ref().is_some_and(|b| views_of(&grads, b)) {
            let own = host_buffer(&mut None, grads.iter().map(|g| g.numel()).sum())?;
            self.pack_into(&own, &grads)?;
            point_into(&grads, &own)?;
        }
        // Dense gradients are shallow clones (unpacking writes them in place);
        // sparse ones are copies of their rows, scattered back after.
        let pieces: Vec<Tensor> = grads
            .iter()
            .zip(&rows)
            .map(|(g, r)| match r {
                Some(idx) => g.f_index_select(0, idx),
                None => Ok(g.shallow_clone()),
            })
            .collect::<Result<_, _>>()?;
        let n: usize = pieces.iter().map(|t| t.numel()).sum();
        let send = self.send_buffer(n + 1)?;
        self.pack_into(&send, &pieces)?;
        let (recv, any_stop) = self.exchange(&send, n, weight, stop)?;
        self.unpack(&pieces, &recv).context("all-reducing gradients")?;
        for ((g, piece), r) in grads.iter().zip(&pieces).zip(&rows) {
            if let Some(idx) = r {
                // Rows outside the union are zero on every rank already.
                let _ = g.shallow_clone().f_index_copy_(0, idx, piece)?;
            }
        }
        Ok(any_stop)
    }

    /// The sparse all-reduce on one node: as in the dense path, the dense
    /// gradients live in the shared fused buffers (backward accumulates into
    /// the one that is sent, and they are pointed at the one that received), so
    /// only the rows looked up are copied in, after them, and back out. That
    /// spares two copies of the dense half of the model every step.
    fn sparse_in_shared_buffers(
        &mut self,
        grads: &[Tensor],
        rows: &[Option<Tensor>],
        weight: f64,
        stop: bool,
    ) -> Result<bool> {
        let dense: Vec<Tensor> =
            grads.iter().zip(rows).filter(|(_, r)| r.is_none()).map(|(g, _)| g.shallow_clone()).collect();
        let tables: Vec<(&Tensor, &Tensor, i64)> =
            grads.iter().zip(rows).filter_map(|(g, r)| r.as_ref().map(|r| (g, r, row_width(g)))).collect();
        let dense_n: usize = dense.iter().map(|g| g.numel()).sum();
        let n = dense_n + tables.iter().map(|(_, r, w)| r.numel() * *w as usize).sum::<usize>();
        // Rows are written where a dense step's layout may have put a table's
        // gradient, and the buffers may move when they grow: whatever sits in
        // them gets memory of its own first.
        let table_grads: Vec<Tensor> = tables.iter().map(|(g, _, _)| g.shallow_clone()).collect();
        self.own_memory(&table_grads)?;
        let send = self.send_buffer(n + 1)?;
        if !views_of(&dense, &send) {
            self.own_memory(&dense)?;
            self.pack_into(&send, &dense)?;
            point_into(&dense, &send)?;
        }
        let mut offset = dense_n as i64;
        for (g, idx, width) in &tables {
            let k = idx.numel() as i64;
            let dst = send.f_narrow(0, offset, k * width)?.f_view([k, *width])?;
            let _ = g.f_view([-1, *width])?.f_index_select_out(&dst, 0, idx)?;
            offset += k * width;
        }
        let (recv, any_stop) = self.exchange(&send, n, weight, stop)?;
        point_into(&dense, &recv).context("all-reducing gradients")?;
        let mut offset = dense_n as i64;
        for (g, idx, width) in &tables {
            let k = idx.numel() as i64;
            // Rows outside the union are zero on every rank already.
            let summed = recv.f_narrow(0, offset, k * width)?.f_view([k, *width])?;
            let _ = g.f_view([-1, *width])?.f_index_copy_(0, idx, &summed)?;
            offset += k * width;
        }
        self.send = Some(recv);
        self.recv = Some(send);
        Ok(any_stop)
    }

    /// Moves those of `grads` that live in a shared fused buffer to memory of
    /// their own (same values), so the buffer can be rewritten under them.
    fn own_memory(&self, grads: &[Tensor]) -> Result<()> {
        let Some(shared) = self.shared.as_ref() else {
            return Ok(());
        };
        for g in grads.iter().filter(|g| shared.holds(g)) {
            let mut copy = g.f_empty_like()?;
            copy.f_copy_(g)?;
            let _ = g.shallow_clone().f_set_source_tensor_(&copy)?;
        }
        Ok(())
    }

    /// For each parameter, the sorted union over ranks of the rows named in
    /// `sparse` (as an index tensor on the parameter's device), or `None`
    /// for parameters sent whole.
    fn union_rows(&self, params: &Params, sparse: &[SparseRows]) -> Result<Vec<Option<Tensor>>> {
        let mut out: Vec<Option<Tensor>> = params.tensors.iter().map(|_| None).collect();
        let mut spans = Vec::with_capacity(sparse.len());
        let mut mask: Vec<f32> = Vec::new();
        for s in sparse {
            let i = params.names.iter().position(|n| *n == s.param).ok_or_else(|| {
                anyhow::anyhow!("sparse gradient rows for '{}', which is not a trainable parameter", s.param)
            })?;
            let n = params.tensors[i].size().first().copied().unwrap_or(0).max(0) as usize;
            let base = mask.len();
            mask.resize(base + n, 0.0);
            for &r in &s.rows {
                if r >= 0 && (r as usize) < n {
                    mask[base + r as usize] = 1.0;
                }
            }
            spans.push((i, base, n));
        }
        self.cluster.sum_f32_in_place(&mut mask);
        for (i, base, n) in spans {
            let rows: Vec<i64> = (0..n).filter(|&r| mask[base + r] > 0.0).map(|r| r as i64).collect();
            let device = params.tensors[i].device();
            out[i] = Some(crate::device::upload(&Tensor::f_from_slice(&rows)?, device)?);
        }
        Ok(out)
    }

    /// Sums `values` over ranks, in place (losses, counts: one call for all).
    pub fn sum_metrics(&self, values: &mut [f64]) {
        self.cluster.sum_f64_slice(values);
    }

    /// The buffer gradients are packed into, `len` values: this rank's
    /// shared-memory one on a single node, else a host buffer kept across steps.
    fn send_buffer(&mut self, len: usize) -> Result<Tensor> {
        if let Some(shared) = self.shared.as_mut() {
            let which = self.send.as_ref().and_then(|t| shared.which(t)).unwrap_or(0);
            match shared.buffer(which, len) {
                Ok(t) => {
                    self.send = Some(t.shallow_clone());
                    return Ok(t);
                }
                Err(e) => self.leave_shared_memory(&e),
            }
        }
        host_buffer(&mut self.send, len)
    }

    /// Sums with MPI_Allreduce from here on, saying why once. Every rank calls
    /// it alike: the shared-memory failures it follows are agreed collectively.
    fn leave_shared_memory(&mut self, why: &anyhow::Error) {
        if self.cluster.is_root() {
            eprintln!("note: {why:#}; summing gradients with MPI_Allreduce instead");
        }
        self.shared = None;
        self.send = None;
        self.recv = None;
    }

    /// Copies `tensors`, flattened to f32 in order, into the start of the host
    /// buffer `send`. Returns the number of values packed.
    fn pack_into(&mut self, send: &Tensor, tensors: &[Tensor]) -> Result<usize> {
        let n: usize = tensors.iter().map(|t| t.numel()).sum();
        if n == 0 {
            return Ok(0);
        }
        let flat: Vec<Tensor> = tensors
            .iter()
            .map(|t| Ok(t.f_detach()?.f_to_kind(Kind::Float)?.f_reshape([-1])?))
            .collect::<Result<_>>()?;
        let body = send.f_narrow(0, 0, n as i64)?;
        let device = tensors[0].device();
        if device == Device::Cpu {
            let _ = Tensor::f_cat_out(&body, &flat, 0)?;
        } else {
            let staging = device_buffer(&mut self.staging, n, device)?;
            let _ = Tensor::f_cat_out(&staging, &flat, 0)?;
            body.shallow_clone().f_copy_(&staging)?;
        }
        Ok(n)
    }

    /// Copies consecutive slices of the host buffer `from` into `dsts` (each in
    /// its own shape, kind and device).
    fn unpack(&mut self, dsts: &[Tensor], from: &Tensor) -> Result<()> {
        let n: usize = dsts.iter().map(|t| t.numel()).sum();
        if n == 0 {
            return Ok(());
        }
        let device = dsts[0].device();
        let src = if device == Device::Cpu {
            from.shallow_clone()
        } else {
            let staging = device_buffer(&mut self.staging, n, device)?;
            staging.shallow_clone().f_copy_(&from.f_narrow(0, 0, n as i64)?)?;
            staging
        };
        let mut offset = 0i64;
        for dst in dsts {
            let len = dst.numel() as i64;
            dst.shallow_clone().f_copy_(&src.f_narrow(0, offset, len)?.f_view(dst.size().as_slice())?)?;
            offset += len;
        }
        Ok(())
    }
}

fn is_host_f32(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

/// Values per row of a table (its first dimension is the rows).
fn row_width(t: &Tensor) -> i64 {
    let rows = t.size().first().copied().unwrap_or(1).max(1);
    t.numel() as i64 / rows
}

/// Whether each gradient is the next slice of `buf`, in order.
fn views_of(grads: &[Tensor], buf: &Tensor) -> bool {
    let base = buf.data_ptr() as usize;
    let mut offset = 0usize;
    grads.iter().all(|g| {
        let ok = g.data_ptr() as usize == base + 4 * offset;
        offset += g.numel();
        ok
    })
}

/// Re-points each gradient at its slice of `buf` (same shape and strides): the
/// parameter's `.grad` then reads and accumulates into the buffer.
fn point_into(grads: &[Tensor], buf: &Tensor) -> Result<()> {
    let mut offset = 0i64;
    for g in grads {
        let (size, stride) = (g.size(), g.stride());
        let _ =
            g.shallow_clone().f_set_source_tensor_storage_offset_(buf, offset, size.as_slice(), stride.as_slice())?;
        offset += g.numel() as i64;
    }
    Ok(())
}

/// The f32 CPU buffer kept in `slot`, (re)allocated when its length changes.
fn host_buffer(slot: &mut Option<Tensor>, n: usize) -> Result<Tensor> {
    device_buffer(slot, n, Device::Cpu)
}

fn device_buffer(slot: &mut Option<Tensor>, n: usize, device: Device) -> Result<Tensor> {
    if let Some(t) = slot.as_ref().filter(|t| t.numel() == n && t.device() == device) {
        return Ok(t.shallow_clone());
    }
    let t = Tensor::f_zeros([n as i64], (Kind::Float, device))?;
    *slot = Some(t.shallow_clone());
    Ok(t)
}

/// The first `n` values of a host buffer as a slice MPI can read and write.
///
/// # Safety
/// `t` must be a contiguous f32 CPU tensor of at least `n` elements that nothing
/// else reads or writes while the slice lives.
#[allow(clippy::mut_from_ref)]
unsafe fn host_slice(t: &Tensor, n: usize) -> &mut [f32] {
    debug_assert!(t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() >= n);
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n)
}
