//! Optimizer steps over all parameters at once: libtorch's multi-tensor
//! `_fused_adam_` and `_fused_sgd_` (fused_optim.cpp beside this file), the
//! kernels behind PyTorch's `fused=True` optimizers. On a GPU one tensor at a
//! time costs about ten kernel launches per parameter, which for BERT is over
//! a thousand a step, issued by the host while the GPU waits; these take a few.
//! The CPU keeps its one-pass loops in [`super::optim`], which are exactly
//! reproducible and as fast there.

use std::ffi::{c_char, c_int};

use anyhow::{bail, ensure, Result};
use tch::{Kind, Tensor};
use torch_sys::C_tensor;

use crate::shim::call;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn hpcml_fused_adam(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        m: *const *const C_tensor,
        v: *const *const C_tensor,
        steps: *const *const C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn hpcml_fused_sgd(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        bufs: *const *const C_tensor,
        n: usize,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Adam's constants for one update; `lr` is not bias-corrected (the kernel
/// does that from the step number).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// The step number t, counting this update (1 for the first).
    pub t: i64,
}

/// torch.optim.Adam's update of every tensor in `params`, in place, with its
/// gradient and moments (all float32 on one device).
pub fn adam(params: &[Tensor], grads: &[Tensor], m: &[Tensor], v: &[Tensor], s: &AdamStep) -> Result<()> {
    let n = params.len();
    ensure!(grads.len() == n && m.len() == n && v.len() == n, "fused Adam: lists of different lengths");
    alike("fused Adam step", params, &[grads, m, v])?;
    let grads = dense(grads)?;
    if n == 0 {
        return Ok(());
    }
    // One float tensor per parameter holding t, as torch.optim keeps them.
    let steps_all = Tensor::f_full([n as i64], s.t as f64, (Kind::Float, params[0].device()))?;
    let steps: Vec<Tensor> = (0..n as i64).map(|i| steps_all.f_select(0, i)).collect::<Result<_, _>>()?;
    let (p, g, m, v, st) = (ptrs(params), ptrs(&grads), ptrs(m), ptrs(v), ptrs(&steps));
    call("fused Adam step", |err, len| {
        // SAFETY: five arrays of n live tensors (checked above), which the shim
        // only reads as lists for the duration of the call.
        unsafe {
            hpcml_fused_adam(
                p.as_ptr(),
                g.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                st.as_ptr(),
                n,
                s.lr,
                s.beta1,
                s.beta2,
                s.weight_decay,
                s.eps,
                err,
                len,
            )
        }
    })
}

/// SGD with momentum, `buf = momentum * buf + grad + weight_decay * p;
/// p -= lr * buf`, of every tensor in `params`, in place.
pub fn sgd(
    params: &[Tensor],
    grads: &[Tensor],
    bufs: &[Tensor],
    weight_decay: f64,
    momentum: f64,
    lr: f64,
) -> Result<()> {
    let n = params.len();
    ensure!(grads.len() == n && bufs.len() == n, "fused SGD: lists of different lengths");
    alike("fused SGD step", params, &[grads, bufs])?;
    let grads = dense(grads)?;
    if n == 0 {
        return Ok(());
    }
    let (p, g, b) = (ptrs(params), ptrs(&grads), ptrs(bufs));
    call("fused SGD step", |err, len| {
        // SAFETY: three arrays of n live tensors (checked above), read as
        // lists for the duration of the call.
        unsafe { hpcml_fused_sgd(p.as_ptr(), g.as_ptr(), b.as_ptr(), n, weight_decay, momentum, lr, err, len) }
    })
}

/// The kernels walk every list as flat memory in its parameter's layout: a
/// tensor of another shape, kind or device would be read out of bounds, so it
/// is refused here, as are parameters and state that are not contiguous
/// (they are updated in place). Gradients are made contiguous by [`dense`].
fn alike(what: &str, params: &[Tensor], others: &[&[Tensor]]) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        let (size, kind, device) = (p.size(), p.kind(), p.device());
        let not_contiguous = || {
            anyhow::anyhow!(
                "{what}: tensor {i} is not contiguous; the multi-tensor kernels update contiguous tensors only"
            )
        };
        if !p.is_contiguous() {
            return Err(not_contiguous());
        }
        for (k, list) in others.iter().enumerate() {
            let t = &list[i];
            // others[0] holds the gradients.
            if k > 0 && !t.is_contiguous() {
                return Err(not_contiguous());
            }
            if t.size() != size || t.kind() != kind || t.device() != device {
                bail!(
                    "{what}: tensor {i} is {:?} {:?} on {:?}, its parameter {size:?} {kind:?} on {device:?}",
                    t.size(),
                    t.kind(),
                    t.device()
                );
            }
        }
    }
    Ok(())
}

/// Autograd hands back some gradients in another layout than their
/// parameter's (a product's weight gradient transposed, say); the kernels
/// need them contiguous, as their parameters are.
fn dense(grads: &[Tensor]) -> Result<Vec<Tensor>> {
    grads.iter().map(|g| Ok(if g.is_contiguous() { g.shallow_clone() } else { g.f_contiguous()? })).collect()
}

fn ptrs(ts: &[Tensor]) -> Vec<*const C_tensor> {
    ts.iter().map(|t| t.as_ptr()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn random(shapes: &[&[i64]], seed: i64) -> Vec<Tensor> {
        tch::manual_seed(seed);
        shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu))).collect()
    }

    fn copies(ts: &[Tensor]) -> Vec<Tensor> {
        ts.iter().map(|t| t.copy()).collect()
    }

    fn max_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs().max().double_value(&[])).fold(0.0, f64::max)
    }

    const SHAPES: [&[i64]; 3] = [&[5, 7], &[7], &[3, 2, 4]];

    // libtorch's CPU kernels of the same operators stand in for the GPU ones
    // here; the reference is torch.optim.Adam's single-tensor update.
    #[test]
    fn fused_adam_matches_torch_optim_adam() {
        let params = random(&SHAPES, 1);
        let (m, v) = (random(&SHAPES, 2), random(&SHAPES, 3));
        let (m, v): (Vec<Tensor>, Vec<Tensor>) = (copies(&m), v.iter().map(|t| t.abs()).collect());
        let (rp, rm, rv) = (copies(&params), copies(&m), copies(&v));
        let (lr, b1, b2, eps, wd) = (1e-3, 0.9, 0.999, 1e-8, 0.01);
        for t in 1..=3 {
            let grads = random(&SHAPES, 10 + t);
            let s = AdamStep { lr, beta1: b1, beta2: b2, eps, weight_decay: wd, t };
            adam(&params, &grads, &m, &v, &s).unwrap();
            for (((p, m), v), g) in rp.iter().zip(&rm).zip(&rv).zip(&grads) {
                let g = g + p * wd;
                let _ = m.shallow_clone().g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.shallow_clone().g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                let denom = v.sqrt() / (1.0 - b2.powi(t as i32)).sqrt() + eps;
                let _ = p.shallow_clone().g_sub_(&(m / denom * (lr / (1.0 - b1.powi(t as i32)))));
            }
        }
        assert!(max_diff(&params, &rp) < 1e-6, "parameters differ by {}", max_diff(&params, &rp));
        assert!(max_diff(&m, &rm) < 1e-6 && max_diff(&v, &rv) < 1e-6);
        assert!(max_diff(&params, &random(&SHAPES, 1)) > 1e-4, "the parameters did not move");
    }

    #[test]
    fn fused_sgd_matches_momentum_sgd_with_weight_decay() {
        let params = random(&SHAPES, 4);
        let bufs = random(&SHAPES, 5);
        let (rp, rb) = (copies(&params), copies(&bufs));
        let (wd, momentum, lr) = (5e-4, 0.9, 0.01);
        for t in 0..3 {
            // A weight gradient as a product's backward leaves it: transposed.
            let mut grads = random(&SHAPES, 20 + t);
            grads[0] = Tensor::randn([7, 5], (Kind::Float, Device::Cpu)).tr();
            assert!(!grads[0].is_contiguous());
            sgd(&params, &grads, &bufs, wd, momentum, lr).unwrap();
            for ((p, b), g) in rp.iter().zip(&rb).zip(&grads) {
                let _ = b.shallow_clone().g_mul_scalar_(momentum).g_add_(&(g + p * wd));
                let _ = p.shallow_clone().g_sub_(&(b * lr));
            }
        }
        assert!(max_diff(&params, &rp) < 1e-6 && max_diff(&bufs, &rb) < 1e-6);
        assert!(max_diff(&params, &random(&SHAPES, 4)) > 1e-4, "the parameters did not move");
    }

    #[test]
    fn a_bad_list_is_an_error_not_a_crash() {
        let params = random(&SHAPES, 6);
        let grads = random(&[&[5, 7], &[7], &[9]], 7);
        let e = sgd(&params, &grads, &copies(&params), 0.0, 0.9, 0.1).unwrap_err().to_string();
        assert!(e.starts_with("fused SGD step: tensor 2 is [9]"), "{e}");
        let e = sgd(&params, &grads[..2], &copies(&params), 0.0, 0.9, 0.1).unwrap_err().to_string();
        assert!(e.contains("different lengths"), "{e}");
        // libtorch's own refusal (no integer kernels) comes back as an error too.
        let ints: Vec<Tensor> = params.iter().map(|t| t.to_kind(Kind::Int64)).collect();
        let e = sgd(&ints, &copies(&ints), &copies(&ints), 0.0, 0.9, 0.1).unwrap_err().to_string();
        assert!(e.starts_with("fused SGD step: ") && e.len() > "fused SGD step: ".len(), "{e}");
    }
}
