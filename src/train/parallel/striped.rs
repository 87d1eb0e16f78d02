//! The step of ranks that share one node's memory: the model and the
//! optimizer's state live once per node, in a region every rank maps, and each
//! rank sums one stripe of the gradient over ranks and updates that stripe of
//! the model in place (ZeRO's sharded update, with nothing to gather after:
//! the updated model already sits where every rank reads it).
//!
//! Against an all-reduce followed by every rank updating the whole model, a
//! rank touches 1/ranks of the parameters and optimizer state instead of all
//! of them, and autograd's fresh gradients are read where they lie: nothing
//! zeroes a buffer, accumulates into it, or writes the sum back to every rank.
//! With one thread per rank, those passes over memory were most of what a
//! 2-rank step cost beyond its arithmetic and its waits at the barriers.
//!
//! Each value is summed in rank order by one rank, so the result is the same
//! bits as the all-reduce path's.

use std::ops::Range;

use anyhow::{Context, Result};
use tch::Tensor;

use super::{host_slice, is_host_f32, point_into, views_of, DataParallel};
use crate::train::optim::Elementwise;
use crate::train::params::Params;

/// Values summed and updated at a time: the partial sum stays in L1.
const CHUNK: usize = 2048;

impl DataParallel<'_> {
    /// Whether [`DataParallel::step`] takes the striped path: several ranks,
    /// all on one node and sharing memory, every parameter a contiguous f32
    /// CPU tensor. The same answer on every rank.
    pub(super) fn can_stripe(&self, params: &Params) -> bool {
        self.cluster.size() > 1 && self.shared.is_some() && params.tensors.iter().all(is_host_f32)
    }

    /// See the module comment. Falls back to the all-reduce path, on every
    /// rank alike, when /dev/shm cannot hold the node's copy of the model.
    pub(super) fn striped_step<O: Elementwise>(
        &mut self,
        loss: &Tensor,
        params: &Params,
        opt: &mut O,
        lr: f64,
        stop: bool,
    ) -> Result<bool> {
        let n = params.numel();
        // Backward first: moving the parameters into shared memory under a
        // graph that saved them would cut them off from their gradients.
        let fresh = Tensor::f_run_backward(&[loss], &params.tensors, false, false)?;
        let send = match self.adopt(params, opt) {
            Ok(send) => send,
            Err(e) => {
                self.leave_shared_memory(&e);
                Self::set_gradients(params, &fresh)?;
                let any_stop = self.all_reduce_gradients(params, 1.0, stop)?;
                opt.step(params, lr)?;
                return Ok(any_stop);
            }
        };
        let _guard = tch::no_grad_guard();
        // In each parameter's memory order (a convolution's may come back
        // channels-last); `None` where autograd made none (zero).
        let grads = fresh
            .iter()
            .zip(&params.tensors)
            .map(|(g, p)| match g.defined() {
                false => Ok(None),
                true if g.stride() == p.stride() && is_host_f32(g) => Ok(Some(g.shallow_clone())),
                true => {
                    let mut like = p.f_empty_like()?;
                    like.f_copy_(g)?;
                    Ok(Some(like))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let spans = spans(params);
        let Some(shared) = self.shared.as_mut() else { anyhow::bail!("the striped step lost its shared window") };
        let (ranks, me) = shared.ranks();
        // SAFETY: this rank's own buffer of n + 1 values; other ranks read it
        // only between the next two fences, when this rank does not write it.
        let out = unsafe { host_slice(&send, n + 1) };
        for q in (0..ranks).filter(|&q| q != me) {
            let stripe = shared.stripe(q, n);
            for (span, g) in spans.iter().zip(&grads) {
                let at = overlap(span, &stripe);
                match g {
                    // SAFETY: a contiguous f32 CPU gradient of span.len() values.
                    Some(g) => {
                        out[at.clone()].copy_from_slice(&unsafe { values(g) }[at.start - span.start..][..at.len()])
                    }
                    None => out[at].fill(0.0),
                }
            }
        }
        out[n] = if stop { 1.0 } else { 0.0 };
        shared.fence();
        // SAFETY (reading peers' buffers): between the fences nobody writes them.
        let any_stop = stop || (0..ranks).any(|q| q != me && unsafe { shared.peer(q, 0, n + 1)[n] } > 0.0);
        let mine = shared.stripe(me, n);
        let states: Vec<Vec<*mut f32>> =
            opt.state_lists().iter().map(|list| list.iter().map(|t| t.data_ptr() as *mut f32).collect()).collect();
        let mut sum = [0f32; CHUNK];
        for (i, (span, g)) in spans.iter().zip(&grads).enumerate() {
            let at = overlap(span, &mine);
            // SAFETY: `g` is a contiguous f32 CPU gradient of span.len() values.
            let own = g.as_ref().map(|g| unsafe { values(g) });
            for start in at.clone().step_by(CHUNK) {
                let end = (start + CHUNK).min(at.end);
                let acc = &mut sum[..end - start];
                for q in 0..ranks {
                    // SAFETY: peers' buffers are read-only between the fences.
                    let part = if q == me {
                        own.map(|g| &g[start - span.start..end - span.start])
                    } else {
                        Some(unsafe { &shared.peer(q, 0, n)[start..end] })
                    };
                    match (q, part) {
                        (0, Some(part)) => acc.copy_from_slice(part),
                        (0, None) => acc.fill(0.0),
                        (_, Some(part)) => acc.iter_mut().zip(part).for_each(|(a, b)| *a += b),
                        (_, None) => {}
                    }
                }
                let local = start - span.start..end - span.start;
                // SAFETY: parameter i and its state live in the node's region
                // (adopt), and between the fences this rank alone touches
                // the values of its stripe; every pointer spans span.len().
                let (p, mut state) = unsafe {
                    let p = std::slice::from_raw_parts_mut(params.tensors[i].data_ptr() as *mut f32, span.len());
                    let state: Vec<&mut [f32]> = states
                        .iter()
                        .map(|list| &mut std::slice::from_raw_parts_mut(list[i], span.len())[local.clone()])
                        .collect();
                    (&mut p[local], state)
                };
                opt.update_span(i, p, acc, &mut state, lr);
            }
        }
        shared.fence();
        Ok(any_stop)
    }

    /// Moves the parameters and the optimizer's state into the node's shared
    /// region (rank 0's values), unless they are there already, and returns
    /// this rank's shared buffer for its gradient's parts that other ranks
    /// own and the stop flag (`n + 1` values). Collective.
    fn adopt<O: Elementwise>(&mut self, params: &Params, opt: &mut O) -> Result<Tensor> {
        let n = params.numel();
        let Some(shared) = self.shared.as_mut() else { anyhow::bail!("the striped step has no shared window") };
        // The buffer first: both may fail for want of room.
        let send = shared.buffer(0, n + 1)?;
        let mut lists: Vec<&mut Vec<Tensor>> = opt.state_lists();
        // Regions start on 64-byte boundaries.
        let stride = n.div_ceil(16) * 16;
        let node = shared.node_region((1 + lists.len()) * stride)?;
        let region = |j: usize| node.f_narrow(0, (j * stride) as i64, n as i64);
        let mut placed = views_of(&params.tensors, &region(0)?);
        for (j, list) in lists.iter().enumerate() {
            placed &= views_of(list, &region(1 + j)?);
        }
        if !shared.any(!placed) {
            return Ok(send);
        }
        let _guard = tch::no_grad_guard();
        let (_, me) = shared.ranks();
        if me == 0 {
            copy_into(&params.tensors, &region(0)?)?;
            for (j, list) in lists.iter().enumerate() {
                copy_into(list, &region(1 + j)?)?;
            }
        }
        shared.fence();
        point_into(&params.tensors, &region(0)?).context("moving the parameters into shared memory")?;
        for (j, list) in lists.iter_mut().enumerate() {
            point_into(list, &region(1 + j)?).context("moving the optimizer's state into shared memory")?;
        }
        Ok(send)
    }
}

/// Each parameter's values in the flat layout, in [`Params`] order.
fn spans(params: &Params) -> Vec<Range<usize>> {
    let mut start = 0;
    params
        .tensors
        .iter()
        .map(|t| {
            let span = start..start + t.numel();
            start = span.end;
            span
        })
        .collect()
}

/// The part of `a` inside `b` (empty, at `a.start`, when none).
fn overlap(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    let start = a.start.max(b.start).min(a.end);
    start..a.end.min(b.end).max(start)
}

/// Copies `tensors` one after the other into `region` (each in its own
/// memory order), skipping those already there.
fn copy_into(tensors: &[Tensor], region: &Tensor) -> Result<()> {
    let mut offset = 0i64;
    for t in tensors {
        let len = t.numel() as i64;
        let dst = region.f_narrow(0, offset, len)?;
        if dst.data_ptr() != t.data_ptr() {
            // Same strides, so the memory order is the parameter's.
            let dst = dst.f_as_strided(t.size().as_slice(), t.stride().as_slice(), None)?;
            dst.shallow_clone().f_copy_(t)?;
        }
        offset += len;
    }
    Ok(())
}

/// A contiguous f32 CPU tensor's values.
///
/// # Safety
/// `t` must be a contiguous (in some memory order) f32 CPU tensor that
/// nothing writes while the slice lives.
unsafe fn values(t: &Tensor) -> &[f32] {
    std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_the_common_part_or_empty() {
        assert_eq!(overlap(&(10..20), &(0..15)), 10..15);
        assert_eq!(overlap(&(10..20), &(15..40)), 15..20);
        assert_eq!(overlap(&(10..20), &(12..13)), 12..13);
        assert!(overlap(&(10..20), &(20..30)).is_empty());
        assert!(overlap(&(10..20), &(0..10)).is_empty());
        assert!(overlap(&(10..20), &(30..40)).is_empty());
    }
}
