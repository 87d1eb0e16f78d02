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
        let floats: Vec<&Tensor> = params.tensors.iter().filter(|t| t.is_floating_point()).collect();
        self.pack(floats.iter().map(|t| Ok((*t).shallow_clone())))?;
        self.cluster.broadcast_f32(&mut self.fused);
        let _guard = tch::no_grad_guard();
        self.unpack(&floats, |dst, src| {
            dst.shallow_clone().f_copy_(src)?;
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
        self.pack(grads.iter().map(|g| g.f_mul_scalar(weight).map_err(Into::into)))?;
        self.fused.push(if stop { 1.0 } else { 0.0 });
        self.cluster.sum_f32_in_place(&mut self.fused);
        let any_stop = self.fused.pop().unwrap_or(0.0) > 0.0;
        let _guard = tch::no_grad_guard();
        let refs: Vec<&Tensor> = grads.iter().collect();
        self.unpack(&refs, |dst, src| {
            dst.shallow_clone().f_copy_(src)?;
            Ok(())
        })
        .context("all-reducing gradients")?;
        Ok(any_stop)
    }

    /// Sums `values` over ranks, in place (losses, counts: one call for all).
    pub fn sum_metrics(&self, values: &mut [f64]) {
        self.cluster.sum_f64_slice(values);
    }

    /// Flattens tensors (on their device) into one f32 tensor, then into `fused`
    /// with a single device-to-host copy.
    fn pack(&mut self, tensors: impl Iterator<Item = Result<Tensor>>) -> Result<()> {
        let flat: Vec<Tensor> =
            tensors.map(|t| Ok(t?.f_detach()?.f_to_kind(Kind::Float)?.f_reshape([-1])?)).collect::<Result<_>>()?;
        self.fused.clear();
        if flat.is_empty() {
            return Ok(());
        }
        let device = flat[0].device();
        let all = Tensor::f_cat(&flat.iter().map(|t| t.f_to_device(device)).collect::<Result<Vec<_>, _>>()?, 0)?
            .f_to_device(Device::Cpu)?;
        let n = all.numel();
        self.fused.resize(n, 0.0);
        all.f_copy_data(&mut self.fused, n)?;
        Ok(())
    }

    /// Hands each destination tensor its slice of `fused`, as a tensor of the
    /// destination's shape, kind and device.
    fn unpack(&self, dsts: &[&Tensor], mut put: impl FnMut(&Tensor, &Tensor) -> Result<()>) -> Result<()> {
        let mut offset = 0usize;
        for dst in dsts {
            let n = dst.numel();
            let src = Tensor::f_from_slice(&self.fused[offset..offset + n])?
                .f_reshape(dst.size())?
                .f_to_kind(dst.kind())?
                .f_to_device(dst.device())?;
            put(dst, &src)?;
            offset += n;
        }
        Ok(())
    }
}
