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

use std::ops::Range;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use super::params::Params;
use crate::cluster::{share, Cluster};

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
    fused: Vec<f32>,
}

impl<'c> DataParallel<'c> {
    pub fn new(cluster: &'c Cluster) -> DataParallel<'c> {
        DataParallel { cluster, fused: Vec::new() }
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
            params.tensors.iter().filter(|t| t.is_floating_point()).map(Tensor::shallow_clone).collect();
        self.pack(&floats)?;
        self.cluster.broadcast_f32(&mut self.fused);
        let _guard = tch::no_grad_guard();
        self.unpack(&floats, |i, src| {
            floats[i].shallow_clone().f_copy_(src)?;
            Ok(())
        })
        .context("broadcasting parameters")
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
    /// Returns true when any rank passed `stop`.
    pub fn all_reduce_gradients(&mut self, params: &Params, weight: f64, stop: bool) -> Result<bool> {
        self.all_reduce_gradients_sparse(params, weight, stop, &[])
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
        let grads: Vec<Tensor> = params.tensors.iter().map(|p| p.grad()).collect();
        let rows = self.union_rows(params, sparse)?;
        let pieces: Vec<Tensor> = grads
            .iter()
            .zip(&rows)
            .map(|(g, r)| match r {
                Some(idx) => g.f_index_select(0, idx),
                None => Ok(g.shallow_clone()),
            })
            .collect::<Result<_, _>>()?;
        self.pack(&pieces)?;
        let w = weight as f32;
        if w != 1.0 {
            for x in &mut self.fused {
                *x *= w;
            }
        }
        self.fused.push(if stop { 1.0 } else { 0.0 });
        self.cluster.sum_f32_in_place(&mut self.fused);
        let any_stop = self.fused.pop().unwrap_or(0.0) > 0.0;
        let _guard = tch::no_grad_guard();
        self.unpack(&pieces, |i, src| {
            let mut g = grads[i].shallow_clone();
            match &rows[i] {
                Some(idx) => {
                    // Rows outside the union are zero on every rank already.
                    let _ = g.f_index_copy_(0, idx, src)?;
                }
                None => {
                    g.f_copy_(src)?;
                }
            }
            Ok(())
        })
        .context("all-reducing gradients")?;
        Ok(any_stop)
    }

    /// For each parameter, the sorted union over ranks of the rows named in
    /// `sparse` (as an index tensor on the parameter's device), or `None`
    /// for parameters sent whole.
    fn union_rows(&self, params: &Params, sparse: &[SparseRows]) -> Result<Vec<Option<Tensor>>> {
        let mut out: Vec<Option<Tensor>> = params.tensors.iter().map(|_| None).collect();
        if sparse.is_empty() {
            return Ok(out);
        }
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
            out[i] = Some(Tensor::f_from_slice(&rows)?.f_to_device(device)?);
        }
        Ok(out)
    }

    /// Sums `values` over ranks, in place (losses, counts: one call for all).
    pub fn sum_metrics(&self, values: &mut [f64]) {
        self.cluster.sum_f64_slice(values);
    }

    /// Copies tensors (any device, any float dtype) into `fused`, one after
    /// the other, flattened, as float32: one pass, straight into the buffer
    /// MPI sends (GPU tensors are joined on the GPU and cross the bus once).
    fn pack(&mut self, tensors: &[Tensor]) -> Result<()> {
        let total: usize = tensors.iter().map(Tensor::numel).sum();
        self.fused.clear();
        self.fused.resize(total, 0.0);
        if total == 0 {
            return Ok(());
        }
        let blob = self.fused_view()?;
        let _guard = tch::no_grad_guard();
        let on_cpu = tensors.iter().all(|t| t.device() == Device::Cpu);
        if on_cpu {
            let mut offset = 0i64;
            for t in tensors {
                let n = t.numel() as i64;
                blob.f_narrow(0, offset, n)?.f_copy_(&t.f_reshape([-1])?)?;
                offset += n;
            }
        } else {
            let device = tensors.iter().map(Tensor::device).find(|d| *d != Device::Cpu).unwrap_or(Device::Cpu);
            let flat: Vec<Tensor> = tensors
                .iter()
                .map(|t| t.f_reshape([-1])?.f_to_kind(Kind::Float)?.f_to_device(device))
                .collect::<Result<_, _>>()?;
            blob.shallow_clone().f_copy_(&Tensor::f_cat(&flat, 0)?)?;
        }
        Ok(())
    }

    /// Hands `put(i, src)` the slice of `fused` that belongs to `like[i]`, as a
    /// tensor of its shape, dtype and device.
    fn unpack(&self, like: &[Tensor], mut put: impl FnMut(usize, &Tensor) -> Result<()>) -> Result<()> {
        let total: usize = like.iter().map(Tensor::numel).sum();
        if total == 0 {
            return Ok(());
        }
        let blob = self.fused_view()?.f_narrow(0, 0, total as i64)?;
        // GPU parameters: the whole buffer crosses the bus once.
        let device = like.iter().map(Tensor::device).find(|d| *d != Device::Cpu).unwrap_or(Device::Cpu);
        let src_all = if device == Device::Cpu { blob } else { blob.f_to_device(device)? };
        let mut offset = 0i64;
        for (i, dst) in like.iter().enumerate() {
            let n = dst.numel() as i64;
            let src = src_all
                .f_narrow(0, offset, n)?
                .f_view(dst.size().as_slice())?
                .f_to_kind(dst.kind())?
                .f_to_device(dst.device())?;
            put(i, &src)?;
            offset += n;
        }
        Ok(())
    }

    /// `fused` as a float32 CPU tensor sharing its memory (no copy).
    fn fused_view(&self) -> Result<Tensor> {
        let n = self.fused.len() as i64;
        // SAFETY: the view lives only inside pack/unpack, while `fused` is
        // neither resized nor dropped; it covers exactly its `n` floats.
        Ok(unsafe { Tensor::f_from_blob(self.fused.as_ptr() as *const u8, &[n], &[1], Kind::Float, Device::Cpu)? })
    }
}
