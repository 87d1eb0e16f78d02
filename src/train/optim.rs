//! Optimizers whose state we own. libtorch's optimizers behind `tch::nn` keep
//! their moments out of reach, so a checkpoint could not hold them and a resumed
//! run would drift from an uninterrupted one. These follow PyTorch's update rules
//! exactly (`torch.optim.SGD` with momentum and dampening 0, which is also
//! TensorFlow's MomentumOptimizer; `torch.optim.Adam`).

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use tch::{Device, Kind, Tensor};

use super::fused;
use super::params::Params;

pub trait Optimizer {
    /// One update of `params` from their gradients with learning rate `lr`.
    fn step(&mut self, params: &Params, lr: f64) -> Result<()>;
    /// The state to checkpoint, as named tensors.
    fn state(&self, params: &Params) -> Vec<(String, Tensor)>;
    /// Restores what `state` saved; `tensors` may hold other entries too.
    fn load_state(&mut self, params: &Params, tensors: &HashMap<String, Tensor>) -> Result<()>;
}

fn zeros_like_all(params: &Params) -> Result<Vec<Tensor>> {
    params.tensors.iter().map(|p| Ok(p.f_zeros_like()?.f_detach()?)).collect()
}

fn restore(params: &Params, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<Vec<Tensor>> {
    params
        .iter()
        .map(|(name, p)| {
            let key = format!("{prefix}{name}");
            let t = tensors.get(&key).ok_or_else(|| anyhow!("checkpoint lacks optimizer state '{key}'"))?;
            if t.size() != p.size() {
                return Err(anyhow!("optimizer state '{key}' has shape {:?}, parameter has {:?}", t.size(), p.size()));
            }
            Ok(t.f_to_kind(p.kind())?.f_to_device(p.device())?)
        })
        .collect()
}

fn named(params: &Params, prefix: &str, bufs: &[Tensor]) -> Vec<(String, Tensor)> {
    params.names.iter().zip(bufs).map(|(n, b)| (format!("{prefix}{n}"), b.shallow_clone())).collect()
}

/// SGD with momentum: `buf = momentum * buf + grad; p -= lr * buf`, with an
/// optional L2 weight decay on chosen parameters (`grad + wd * p`).
pub struct Sgd {
    momentum: f64,
    /// Per parameter, in [`Params`] order.
    decay: Vec<f64>,
    bufs: Vec<Tensor>,
}

impl Sgd {
    pub fn new(params: &Params, momentum: f64) -> Result<Sgd> {
        Ok(Sgd { momentum, decay: vec![0.0; params.len()], bufs: zeros_like_all(params)? })
    }

    /// Adds `wd * p` to the gradient of every parameter whose name `select`
    /// accepts: the gradient of `wd * sum(p^2) / 2`, i.e. TensorFlow's
    /// `loss += wd * tf.nn.l2_loss(p)` and PyTorch's SGD `weight_decay`, applied
    /// in the update instead of through autograd (no graph, no extra passes over
    /// the weights). Ranks add it after the gradient all-reduce, so it counts
    /// once, as in a single process.
    pub fn with_weight_decay(mut self, params: &Params, wd: f64, select: impl Fn(&str) -> bool) -> Sgd {
        for (d, name) in self.decay.iter_mut().zip(&params.names) {
            if select(name) {
                *d = wd;
            }
        }
        self
    }
}

/// The SGD update over raw memory, one pass instead of five tensor ops: the
/// optimizer step is work every rank repeats, so it bounds data-parallel scaling.
fn sgd_fused_cpu(p: &Tensor, g: &Tensor, buf: &Tensor, momentum: f32, decay: f32, lr: f32) -> bool {
    let host_f32 = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous();
    let n = p.numel();
    if !(host_f32(p) && host_f32(g) && host_f32(buf)) || g.numel() != n || buf.numel() != n {
        return false;
    }
    // SAFETY: three distinct, contiguous f32 CPU tensors of n elements each (checked
    // above); nothing else touches them during the optimizer step (no autograd graph
    // holds them, libtorch runs no work on them concurrently).
    let (p, g, b) = unsafe {
        (
            std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(g.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(buf.data_ptr() as *mut f32, n),
        )
    };
    sgd_kernel(p, g, b, momentum, decay, lr);
    true
}

fn sgd_kernel(p: &mut [f32], g: &[f32], b: &mut [f32], momentum: f32, decay: f32, lr: f32) {
    for ((p, g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
        *b = momentum * *b + (*g + decay * *p);
        *p -= lr * *b;
    }
}

/// An optimizer whose update of each value reads only that value's parameter,
/// gradient and state. Ranks that share memory can then each update one
/// stripe of a model they hold once (see `DataParallel::step`), instead of
/// every rank updating all of it.
pub trait Elementwise: Optimizer {
    /// The state tensors, each shaped like its parameter: one list per kind
    /// of state, each in [`Params`] order.
    fn state_lists(&mut self) -> Vec<&mut Vec<Tensor>>;
    /// Updates values of parameter `param` from their gradient summed over
    /// ranks: `p`, `g` and every slice of `state` are the same span of it.
    /// The same arithmetic as [`Optimizer::step`].
    fn update_span(&self, param: usize, p: &mut [f32], g: &[f32], state: &mut [&mut [f32]], lr: f64);
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &Params, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        if on_gpu(params) {
            // One multi-tensor step per weight-decay value (two for MNIST).
            let (with_grad, grads) = defined_grads(params);
            // Per decay value, positions in `with_grad` (and `grads`).
            let mut groups: Vec<(f64, Vec<usize>)> = Vec::new();
            for (k, &i) in with_grad.iter().enumerate() {
                match groups.iter_mut().find(|(d, _)| *d == self.decay[i]) {
                    Some((_, members)) => members.push(k),
                    None => groups.push((self.decay[i], vec![k])),
                }
            }
            for (decay, members) in groups {
                let at: Vec<usize> = members.iter().map(|&k| with_grad[k]).collect();
                let (p, b, g) = (pick(&params.tensors, &at), pick(&self.bufs, &at), pick(&grads, &members));
                fused::sgd(&p, &g, &b, decay, self.momentum, lr)?;
            }
            return Ok(());
        }
        for ((p, buf), &decay) in params.tensors.iter().zip(self.bufs.iter_mut()).zip(&self.decay) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            if sgd_fused_cpu(p, &g, buf, self.momentum as f32, decay as f32, lr as f32) {
                continue;
            }
            let _ = buf.f_mul_scalar_(self.momentum)?;
            let _ = buf.f_add_(&g)?;
            if decay != 0.0 {
                let _ = buf.f_add_(&p.f_mul_scalar(decay)?)?;
            }
            let _ = p.shallow_clone().f_sub_(&buf.f_mul_scalar(lr)?)?;
        }
        Ok(())
    }

    fn state(&self, params: &Params) -> Vec<(String, Tensor)> {
        named(params, "optim.momentum.", &self.bufs)
    }

    fn load_state(&mut self, params: &Params, tensors: &HashMap<String, Tensor>) -> Result<()> {
        self.bufs = restore(params, tensors, "optim.momentum.")?;
        Ok(())
    }
}

impl Elementwise for Sgd {
    fn state_lists(&mut self) -> Vec<&mut Vec<Tensor>> {
        vec![&mut self.bufs]
    }

    fn update_span(&self, param: usize, p: &mut [f32], g: &[f32], state: &mut [&mut [f32]], lr: f64) {
        let decay = self.decay.get(param).copied().unwrap_or(0.0);
        if let [buf] = state {
            sgd_kernel(p, g, buf, self.momentum as f32, decay as f32, lr as f32);
        }
    }
}

/// Adam as `torch.optim.Adam` (L2 `weight_decay` added to the gradient).
pub struct Adam {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    steps: i64,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub fn new(params: &Params) -> Result<Adam> {
        Ok(Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            steps: 0,
            m: zeros_like_all(params)?,
            v: zeros_like_all(params)?,
        })
    }

    pub fn with_weight_decay(mut self, wd: f64) -> Adam {
        self.weight_decay = wd;
        self
    }

    pub fn steps(&self) -> i64 {
        self.steps
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &Params, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        if on_gpu(params) {
            let (at, grads) = defined_grads(params);
            let step = fused::AdamStep {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
                t: self.steps,
            };
            return fused::adam(&pick(&params.tensors, &at), &grads, &pick(&self.m, &at), &pick(&self.v, &at), &step);
        }
        let bias1 = 1.0 - self.beta1.powi(self.steps as i32);
        let bias2_sqrt = (1.0 - self.beta2.powi(self.steps as i32)).sqrt();
        let c = AdamCoefficients::new(self, lr / bias1, bias2_sqrt);
        for ((p, m), v) in params.tensors.iter().zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            if !adam_step_cpu(p, &g, m, v, &c) {
                adam_step_tensors(p, &g, m, v, &c)?;
            }
        }
        Ok(())
    }

    fn state(&self, params: &Params) -> Vec<(String, Tensor)> {
        let mut out = named(params, "optim.adam.m.", &self.m);
        out.extend(named(params, "optim.adam.v.", &self.v));
        out.push(("optim.adam.steps".into(), Tensor::from_slice(&[self.steps])));
        out
    }

    fn load_state(&mut self, params: &Params, tensors: &HashMap<String, Tensor>) -> Result<()> {
        self.m = restore(params, tensors, "optim.adam.m.")?;
        self.v = restore(params, tensors, "optim.adam.v.")?;
        let steps = tensors.get("optim.adam.steps").ok_or_else(|| anyhow!("checkpoint lacks 'optim.adam.steps'"))?;
        self.steps = steps.f_to_kind(Kind::Int64)?.f_int64_value(&[0])?;
        Ok(())
    }
}

/// Whether every parameter is a contiguous float32 tensor on one GPU: the optimizers
/// then step them all in a few multi-tensor kernels ([`fused`]).
fn on_gpu(params: &Params) -> bool {
    let Some(first) = params.tensors.first() else {
        return false;
    };
    let device = first.device();
    device.is_cuda()
        && params.tensors.iter().all(|p| p.device() == device && p.kind() == Kind::Float && p.is_contiguous())
}

/// The gradients autograd defined, with their parameters' indices.
fn defined_grads(params: &Params) -> (Vec<usize>, Vec<Tensor>) {
    params.tensors.iter().enumerate().map(|(i, p)| (i, p.grad())).filter(|(_, g)| g.defined()).unzip()
}

/// The tensors of `ts` at `at`, in that order (shallow: they share memory).
fn pick(ts: &[Tensor], at: &[usize]) -> Vec<Tensor> {
    at.iter().map(|&i| ts[i].shallow_clone()).collect()
}

/// One Adam update with its scalars: in float64 for the tensor ops (which
/// round them to the tensor's dtype), in float32 for the CPU loop.
struct AdamCoefficients {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// `lr / (1 - beta1^t)`.
    step: f64,
    /// `sqrt(1 - beta2^t)`.
    bias2_sqrt: f64,
}

impl AdamCoefficients {
    fn new(adam: &Adam, step: f64, bias2_sqrt: f64) -> AdamCoefficients {
        AdamCoefficients {
            beta1: adam.beta1,
            beta2: adam.beta2,
            eps: adam.eps,
            weight_decay: adam.weight_decay,
            step,
            bias2_sqrt,
        }
    }
}

/// Adam's update with tensor ops (any device and dtype).
fn adam_step_tensors(p: &Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, c: &AdamCoefficients) -> Result<()> {
    let mut g = g.shallow_clone();
    if c.weight_decay != 0.0 {
        g = g.f_add(&p.f_mul_scalar(c.weight_decay)?)?;
    }
    let _ = m.f_mul_scalar_(c.beta1)?;
    let _ = m.f_add_(&g.f_mul_scalar(1.0 - c.beta1)?)?;
    let _ = v.f_mul_scalar_(c.beta2)?;
    let _ = v.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - c.beta2)?)?;
    let denom = v.f_sqrt()?.f_div_scalar(c.bias2_sqrt)?.f_add_scalar(c.eps)?;
    let _ = p.shallow_clone().f_sub_(&m.f_div(&denom)?.f_mul_scalar(c.step)?)?;
    Ok(())
}

/// Elements below which one thread updates a tensor alone.
const PARALLEL_MIN: usize = 1 << 18;

/// Adam on a float32 CPU parameter in one pass over memory, split over
/// libtorch's thread count, without the tensor path's seven full-size
/// temporaries (a quarter of a MiniLM training step on one core). It performs
/// the tensor path's float32 operations in the same order (Rust never
/// contracts them into FMAs): the moments come out bit for bit the same; the
/// parameters differ only where libtorch's vectorised sqrt (MKL VML, not
/// correctly rounded) and IEEE sqrt disagree in the last bit. Runs on CPUs
/// always take this path, so they stay exactly reproducible. Returns false,
/// touching nothing, where it does not apply (GPU, other dtypes, strides).
fn adam_step_cpu(p: &Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, c: &AdamCoefficients) -> bool {
    let n = p.numel();
    let fits =
        |t: &Tensor| t.device() == tch::Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() == n;
    if !(fits(p) && fits(g) && fits(m) && fits(v)) {
        return false;
    }
    let k = KernelScalars {
        beta1: c.beta1 as f32,
        one_minus_beta1: (1.0 - c.beta1) as f32,
        beta2: c.beta2 as f32,
        one_minus_beta2: (1.0 - c.beta2) as f32,
        bias2_sqrt: c.bias2_sqrt as f32,
        eps: c.eps as f32,
        step: c.step as f32,
        weight_decay: c.weight_decay as f32,
    };
    // SAFETY: four distinct contiguous float32 CPU tensors of `n` elements,
    // which nothing else reads or writes during the step.
    let (ps, gs, ms, vs) = unsafe {
        (
            std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(g.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts_mut(v.data_ptr() as *mut f32, n),
        )
    };
    let threads = (tch::get_num_threads().max(1) as usize).min(n / PARALLEL_MIN).max(1);
    if threads == 1 {
        adam_kernel(ps, gs, ms, vs, &k);
        return true;
    }
    let chunk = n.div_ceil(threads);
    let k = &k;
    std::thread::scope(|s| {
        for (((p, g), m), v) in
            ps.chunks_mut(chunk).zip(gs.chunks(chunk)).zip(ms.chunks_mut(chunk)).zip(vs.chunks_mut(chunk))
        {
            s.spawn(move || adam_kernel(p, g, m, v, k));
        }
    });
    true
}

/// [`AdamCoefficients`] rounded to float32, as the tensor ops round them.
struct KernelScalars {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias2_sqrt: f32,
    eps: f32,
    step: f32,
    weight_decay: f32,
}

fn adam_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &KernelScalars) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { adam_avx512(p, g, m, v, k) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { adam_avx2(p, g, m, v, k) };
        }
    }
    adam_loop(p, g, m, v, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn adam_avx512(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &KernelScalars) {
    adam_loop(p, g, m, v, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &KernelScalars) {
    adam_loop(p, g, m, v, k)
}

#[inline(always)]
fn adam_loop(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &KernelScalars) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if k.weight_decay != 0.0 { g + *p * k.weight_decay } else { g };
        *m = *m * k.beta1 + g * k.one_minus_beta1;
        *v = *v * k.beta2 + g * g * k.one_minus_beta2;
        let denom = v.sqrt() / k.bias2_sqrt + k.eps;
        *p -= *m / denom * k.step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, VarStore};
    use tch::Device;

    fn quadratic() -> (VarStore, Params) {
        let vs = VarStore::new(Device::Cpu);
        let _w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
        let p = Params::trainable(&vs);
        (vs, p)
    }

    fn grad_step(p: &Params) {
        p.zero_grad();
        let loss = (&p.tensors[0] * &p.tensors[0]).sum(Kind::Float);
        loss.backward();
    }

    #[test]
    fn sgd_momentum_follows_the_update_rule() {
        let (_vs, p) = quadratic();
        let mut opt = Sgd::new(&p, 0.9).unwrap();
        // grad of sum(w^2) is 2w. Step 1: buf = 2w0; w1 = w0 - 0.1 * 2 w0 = 0.8 w0.
        grad_step(&p);
        opt.step(&p, 0.1).unwrap();
        let w1: Vec<f32> = Vec::try_from(&p.tensors[0]).unwrap();
        assert_eq!(w1, vec![0.8, -1.6, 2.4]);
        // Step 2: buf = 0.9 * 2 w0 + 2 w1 = 3.4 w0; w2 = 0.8 w0 - 0.34 w0 = 0.46 w0.
        grad_step(&p);
        opt.step(&p, 0.1).unwrap();
        let w2: Vec<f32> = Vec::try_from(&p.tensors[0]).unwrap();
        for (a, b) in w2.iter().zip([0.46f32, -0.92, 1.38]) {
            assert!((a - b).abs() < 1e-6, "{w2:?}");
        }
    }

    #[test]
    fn weight_decay_is_the_gradient_of_half_the_squared_norm() {
        // Decay 0.5 on "w" only: the gradient 2w becomes 2.5w, as if the loss
        // had 0.5 * sum(w^2) / 2 added; "v" is left alone.
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let v = vs.root().var_copy("v", &Tensor::from_slice(&[4.0f32]));
        let p = Params::trainable(&vs);
        let mut opt = Sgd::new(&p, 0.9).unwrap().with_weight_decay(&p, 0.5, |n| n == "w");
        let loss = (&w * &w).sum(Kind::Float) + (&v * &v).sum(Kind::Float);
        loss.backward();
        opt.step(&p, 0.1).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![0.75, -1.5]);
        assert_eq!(Vec::<f32>::try_from(&v).unwrap(), vec![3.2]);
    }

    #[test]
    fn fused_and_tensor_op_updates_agree() {
        // f32 CPU parameters take the one-pass update, f64 ones the tensor ops
        // (as GPU parameters do): both must follow the same rule.
        let run = |kind: Kind| {
            let vs = VarStore::new(Device::Cpu);
            let init = Tensor::linspace(-1.0, 1.0, 1000, (Kind::Float, Device::Cpu)).to_kind(kind);
            let w = vs.root().var_copy("w", &init);
            let g = Tensor::linspace(3.0, -2.0, 1000, (kind, Device::Cpu));
            let p = Params::trainable(&vs);
            let mut opt = Sgd::new(&p, 0.9).unwrap().with_weight_decay(&p, 5e-4, |_| true);
            for _ in 0..3 {
                p.zero_grad();
                (&w * &g).sum(kind).backward();
                opt.step(&p, 0.01).unwrap();
            }
            w.detach().to_kind(Kind::Double)
        };
        let (fused, ops) = (run(Kind::Float), run(Kind::Double));
        assert!(fused.allclose(&ops, 1e-6, 1e-6, false), "{}", (fused - ops).abs().max());
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_lr() {
        // With bias correction, Adam's first step is lr * sign(grad) (up to eps).
        let (_vs, p) = quadratic();
        let mut opt = Adam::new(&p).unwrap();
        grad_step(&p);
        opt.step(&p, 0.01).unwrap();
        let w: Vec<f32> = Vec::try_from(&p.tensors[0]).unwrap();
        for (a, b) in w.iter().zip([0.99f32, -1.99, 2.99]) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
    }

    #[test]
    fn one_pass_cpu_adam_matches_the_tensor_path() {
        // The CPU loop computes what the tensor path (GPUs, other dtypes)
        // computes: the same moments, parameters up to sqrt's last bit.
        for weight_decay in [0.0, 0.01] {
            let n = 3 * PARALLEL_MIN as i64 + 7;
            let p = Tensor::randn([n], (Kind::Float, Device::Cpu));
            let (mut m, mut v) = (p.zeros_like(), p.zeros_like());
            let (p2, mut m2, mut v2) = (p.copy(), m.copy(), v.copy());
            for t in 1..=3 {
                let g = Tensor::randn([n], (Kind::Float, Device::Cpu)) * t;
                let c = AdamCoefficients {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay,
                    step: 2e-5 / (1.0 - f64::powi(0.9, t as i32)),
                    bias2_sqrt: (1.0 - f64::powi(0.999, t as i32)).sqrt(),
                };
                assert!(adam_step_cpu(&p, &g, &mut m, &mut v, &c));
                adam_step_tensors(&p2, &g, &mut m2, &mut v2, &c).unwrap();
            }
            assert!(m.equal(&m2) && v.equal(&v2), "weight decay {weight_decay}");
            let moved = (&p - &p2).abs().max().double_value(&[]);
            assert!(moved < 1e-6, "parameters differ by {moved}");
            assert!(!p.equal(&Tensor::zeros_like(&p)));
        }
        let d = Tensor::ones([4], (Kind::Double, Device::Cpu));
        let c = AdamCoefficients { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1.0, bias2_sqrt: 1.0 };
        assert!(!adam_step_cpu(&d, &d, &mut d.copy(), &mut d.copy(), &c));
    }

    #[test]
    fn state_round_trips() {
        let (_vs, p) = quadratic();
        let mut a = Adam::new(&p).unwrap();
        for _ in 0..3 {
            grad_step(&p);
            a.step(&p, 0.01).unwrap();
        }
        let saved: HashMap<String, Tensor> = a.state(&p).into_iter().collect();
        let mut b = Adam::new(&p).unwrap();
        b.load_state(&p, &saved).unwrap();
        assert_eq!(b.steps(), 3);
        assert!(a.m[0].allclose(&b.m[0], 0.0, 0.0, false));
        let empty = HashMap::new();
        assert!(Sgd::new(&p, 0.9).unwrap().load_state(&p, &empty).is_err());
        let _ = nn::VarStore::new(Device::Cpu);
    }
}
