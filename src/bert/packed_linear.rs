//! Linear layers on the CPU through oneDNN with packed weights.
//!
//! libtorch's fp32 `linear` on the CPU is MKL's sgemm; oneDNN's inner product
//! on a packed weight runs BERT's products near the core's peak: 8-21% faster
//! than MKL on this project's Zen 4 test machine, 2.3x on Zen 5, where MKL
//! keeps to AVX2 kernels and oneDNN uses the full-width AVX-512 pipes
//! (`benches/python/onednn_linear.py` measures it); within 5% of MKL on an
//! Intel Xeon, where MKL uses AVX-512 too. On a CPU without AVX-512 (a Zen 3)
//! MKL is the faster, and every layer stays on `linear`
//! ([`packs_for_inference`], [`trains`]).
//! Inference reuses one set of weights for many batches, so [`PackedLinear`]
//! packs them once. Training ([`linear`], on AMD CPUs with AVX-512: see
//! [`trains`]) packs the weight at each step, which costs little beside the
//! product, and has a backward of its own: the input's
//! gradient on oneDNN too, the weight's on MKL (a product over every row of
//! the batch, which MKL does better).
//!
//! The operators are libtorch's own (`mkldnn::_reorder_linear_weight`,
//! `mkldnn::_linear_pointwise`, see packed_linear.cpp beside this file). A libtorch built
//! without oneDNN, or `HPCML_ONEDNN=0`, leaves every layer on `linear`.

use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

use anyhow::Result;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::shim::new_tensor;

extern "C" {
    fn hpcml_onednn_linear_available() -> c_int;
    fn hpcml_onednn_pack_linear_weight(
        weight: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn hpcml_onednn_linear_train(
        x: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn hpcml_onednn_linear(
        x: *const C_tensor,
        packed: *const C_tensor,
        bias: *const C_tensor,
        attr: *const c_char,
        algorithm: *const c_char,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// An activation fused into the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fused {
    None,
    /// The exact erf GELU.
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
    Relu,
}

impl Fused {
    fn attr(self) -> (&'static CStr, &'static CStr) {
        match self {
            Fused::None => (c"none", c""),
            Fused::Gelu => (c"gelu", c"none"),
            Fused::GeluTanh => (c"gelu", c"tanh"),
            Fused::Relu => (c"relu", c""),
        }
    }
}

/// Whether packed layers can be used here: libtorch has the operators and the
/// user did not turn them off.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if crate::cli::switched_off("HPCML_ONEDNN") {
            return false;
        }
        // SAFETY: looks two names up in libtorch's operator registry.
        unsafe { hpcml_onednn_linear_available() == 1 }
    })
}

/// Where oneDNN's fp32 products beat libtorch's `linear` (MKL's sgemm), by
/// what the CPU is: `(inference, training)`. Inference packs each weight
/// once; training packs it at every step.
fn onednn_fp32_pays(cpu: &crate::device::CpuFeatures) -> (bool, bool) {
    // An x86 CPU without AVX-512 (a Zen 3): both libraries have AVX2 kernels
    // only, and MKL's, tuned per CPU, are the faster for inference: `evaluate`
    // on the fake-news train.csv at 25.3-30.3 texts/s on `linear` against
    // 22.7-25.5 on oneDNN in 6 interleaved pairs. Training is a wash there
    // (6 pairs of 1-epoch runs: 7.2-9.0 samples/s against 7.1-8.4, means
    // 7.90 and 7.73), so it takes the one path too.
    if cpu.is_x86() && !cpu.avx512_core() {
        return (false, false);
    }
    // MKL picks its AVX-512 kernels on Intel CPUs that have them, and there
    // its sgemm is as fast as oneDNN's on a packed weight, so packing at
    // every step only costs: on a Xeon with AMX a fake-news epoch trained at
    // 15.1-15.3 samples/s on `linear` against 14.6-14.7 on ours (inference,
    // packed once, stays on oneDNN: 52.5 against 49.5 texts/s there).
    (true, cpu.vendor != "GenuineIntel")
}

/// This CPU's [`onednn_fp32_pays`], read once.
fn fp32_pays() -> (bool, bool) {
    static PAYS: OnceLock<(bool, bool)> = OnceLock::new();
    *PAYS.get_or_init(|| onednn_fp32_pays(&crate::device::CpuFeatures::detect()))
}

/// Whether [`linear`] serves a layer with this weight: fp32 on the CPU, where
/// oneDNN's products beat MKL's even with the weight packed at every step
/// (AMD CPUs with AVX-512, on which MKL keeps to its AVX2 kernels), and on
/// CPUs that are not x86, where libtorch has no MKL.
pub fn trains(weight: &Tensor) -> bool {
    fp32_pays().1 && available() && weight.device() == Device::Cpu && weight.kind() == Kind::Float
}

/// Whether inference layers of this kind are worth packing ([`PackedLinear`]):
/// bf16 wherever oneDNN packs it, fp32 where its products beat MKL's.
pub fn packs_for_inference(kind: Kind) -> bool {
    match kind {
        Kind::Float => fp32_pays().0,
        Kind::BFloat16 => true,
        _ => false,
    }
}

/// `x W^T + b` over the last dimension of `x`, with autograd, for an fp32
/// `[out, in]` weight and `[out]` bias on the CPU (see [`trains`]).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    new_tensor("oneDNN linear", |out, err, len| {
        // SAFETY: all tensors are live for the call.
        unsafe { hpcml_onednn_linear_train(x.as_ptr(), weight.as_ptr(), bias.as_ptr(), out, err, len) }
    })
}

/// Whether oneDNN packs bf16 weights here: it needs AVX-512 (BW, VL, DQ) or
/// AVX-NE-CONVERT, and refuses the reorder on an AVX2-only CPU such as a Zen 3,
/// where bf16 layers stay on libtorch's `linear`.
fn packs_bf16() -> bool {
    static PACKS: OnceLock<bool> = OnceLock::new();
    *PACKS.get_or_init(|| {
        let cpu = crate::device::CpuFeatures::detect();
        cpu.avx512_core() || cpu.has("avx_ne_convert")
    })
}

/// A `[out, in]` weight and its bias, packed for `x W^T + b`.
pub struct PackedLinear {
    packed: Tensor,
    bias: Tensor,
}

impl PackedLinear {
    /// Packs `weight` (`[out, in]`) with `bias` (`[out]`), both on the CPU in
    /// the same floating kind; `None` where packed layers are unavailable
    /// for that kind (see `packs_bf16`) or the weight is elsewhere (a GPU).
    pub fn pack(weight: &Tensor, bias: &Tensor) -> Result<Option<PackedLinear>> {
        let kind_packs = match weight.kind() {
            Kind::Float => true,
            Kind::BFloat16 => packs_bf16(),
            _ => false,
        };
        if !available() || weight.device() != Device::Cpu || !kind_packs {
            return Ok(None);
        }
        let weight = weight.f_detach()?.f_contiguous()?;
        let packed = new_tensor("packing a linear weight for oneDNN", |out, err, len| {
            // SAFETY: `weight` is live for the call.
            unsafe { hpcml_onednn_pack_linear_weight(weight.as_ptr(), out, err, len) }
        })?;
        let bias = bias.f_detach()?.f_to_kind(weight.kind())?.f_contiguous()?;
        Ok(Some(PackedLinear { packed, bias }))
    }

    /// `act(x W^T + b)` over the last dimension of `x` (in the weight's kind).
    pub fn forward(&self, x: &Tensor, act: Fused) -> Result<Tensor> {
        let (attr, algorithm) = act.attr();
        new_tensor("oneDNN linear", |out, err, len| {
            // SAFETY: all tensors and strings are live for the call.
            unsafe {
                hpcml_onednn_linear(
                    x.as_ptr(),
                    self.packed.as_ptr(),
                    self.bias.as_ptr(),
                    attr.as_ptr(),
                    algorithm.as_ptr(),
                    out,
                    err,
                    len,
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, act: Fused) -> Tensor {
        let y = x.linear(w, Some(b));
        match act {
            Fused::None => y,
            Fused::Gelu => y.gelu("none"),
            Fused::GeluTanh => y.gelu("tanh"),
            Fused::Relu => y.relu(),
        }
    }

    #[test]
    fn packed_layers_compute_what_linear_does() {
        if !available() {
            eprintln!("this libtorch has no oneDNN linear operators; nothing to compare");
            return;
        }
        tch::manual_seed(7);
        let w = Tensor::randn([48, 32], (Kind::Float, Device::Cpu)) * 0.1;
        let b = Tensor::randn([48], (Kind::Float, Device::Cpu));
        let layer = PackedLinear::pack(&w, &b).unwrap().unwrap();
        // 3-d input and a non-contiguous slice of it, as BERT's [CLS] rows are.
        let x = Tensor::randn([4, 9, 32], (Kind::Float, Device::Cpu));
        let cls = x.narrow(1, 0, 1);
        for act in [Fused::None, Fused::Gelu, Fused::GeluTanh, Fused::Relu] {
            for input in [&x, &cls] {
                let got = layer.forward(input, act).unwrap();
                let want = reference(input, &w, &b, act);
                assert_eq!(got.size(), want.size());
                let diff = (&got - &want).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "{act:?}: packed and linear differ by {diff}");
            }
        }
    }

    #[test]
    fn training_layers_give_linear_s_values_and_gradients() {
        if !available() {
            return;
        }
        tch::manual_seed(11);
        let opts = (Kind::Float, Device::Cpu);
        let w = (Tensor::randn([24, 16], opts) * 0.1).set_requires_grad(true);
        let b = Tensor::randn([24], opts).set_requires_grad(true);
        let x = Tensor::randn([3, 5, 16], opts).set_requires_grad(true);
        let upstream = Tensor::randn([3, 5, 24], opts);
        let grads = |y: Tensor| -> Vec<Tensor> {
            let loss = (y * &upstream).sum(Kind::Float);
            Tensor::run_backward(&[loss], &[&x, &w, &b], false, false)
        };
        let ours = linear(&x, &w, &b).unwrap();
        let theirs = x.linear(&w, Some(&b));
        let diff = (&ours - &theirs).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "values differ by {diff}");
        for (name, (a, e)) in ["x", "weight", "bias"].iter().zip(grads(ours).iter().zip(&grads(theirs))) {
            let diff = (a - e).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "the gradient of {name} differs by {diff}");
        }
        // The [CLS] rows alone (a non-contiguous slice) train too.
        let cls = x.narrow(1, 0, 1);
        let g = Tensor::run_backward(&[linear(&cls, &w, &b).unwrap().sum(Kind::Float)], &[&x], false, false);
        let e = Tensor::run_backward(&[cls.linear(&w, Some(&b)).sum(Kind::Float)], &[&x], false, false);
        assert!((&g[0] - &e[0]).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn fp32_goes_to_onednn_only_where_it_beats_mkl() {
        let cpu = |vendor: &str, flags: &str| {
            let text = format!("vendor_id\t: {vendor}\ncpu family\t: 25\nflags\t\t: {flags}\n");
            crate::device::CpuFeatures::from_cpuinfo(&text)
        };
        let avx512 = "avx2 fma avx512f avx512bw avx512vl avx512dq";
        // (inference, training)
        assert_eq!(onednn_fp32_pays(&cpu("AuthenticAMD", "avx2 fma")), (false, false), "Zen 3");
        assert_eq!(onednn_fp32_pays(&cpu("GenuineIntel", "avx2 fma")), (false, false), "Intel, AVX2 only");
        assert_eq!(onednn_fp32_pays(&cpu("AuthenticAMD", avx512)), (true, true), "Zen 4 and 5");
        assert_eq!(onednn_fp32_pays(&cpu("GenuineIntel", avx512)), (true, false), "Xeon");
        // Not x86 (Arm: no MKL): oneDNN, as before.
        assert_eq!(onednn_fp32_pays(&cpu("", "fp asimd sve")), (true, true), "Arm");
    }

    #[test]
    fn a_mismatched_input_is_an_error_not_a_crash() {
        if !available() {
            return;
        }
        let w = Tensor::ones([8, 4], (Kind::Float, Device::Cpu));
        let layer = PackedLinear::pack(&w, &Tensor::zeros([8], (Kind::Float, Device::Cpu))).unwrap().unwrap();
        let bad = Tensor::ones([2, 5], (Kind::Float, Device::Cpu));
        let err = layer.forward(&bad, Fused::None).unwrap_err();
        assert!(err.to_string().starts_with("oneDNN linear:"), "{err}");
        // C++ backtraces stay out of the message.
        assert!(!err.to_string().contains("Exception raised from"), "{err}");
        let err = linear(&bad, &w, &Tensor::zeros([8], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(err.to_string().starts_with("oneDNN linear:"), "{err}");
    }
}
