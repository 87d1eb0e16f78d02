//! Linear layers with int8 weights, for inference on the CPU (`--int8`):
//! PyTorch's dynamic quantization (`quantize_dynamic`, the recipe of its BERT
//! quantization tutorial) on libtorch's fbgemm kernels. Weights are quantized
//! once per output channel; activations are quantized on the fly, each text
//! over its own range (not one per batch as PyTorch does); the result is fp32. On a CPU without AVX-512 the int8 products run about
//! twice as many multiply-adds per cycle as fp32's, which fp32 inference
//! cannot get from anywhere else there (see int8_linear.cpp beside this file).

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::shim::{call, new_tensor};

extern "C" {
    fn hpcml_int8_linear_available() -> c_int;
    fn hpcml_int8_linear_pack(
        weight: *const C_tensor,
        bias: *const C_tensor,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn hpcml_int8_linear(
        x: *const C_tensor,
        packed: *const c_void,
        lengths: *const C_tensor,
        per_text: c_int,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn hpcml_int8_linear_free(packed: *mut c_void);
}

/// Why int8 layers cannot run here, or `None` where they can: fbgemm needs
/// x86 with AVX2 and FMA, and a libtorch built with it.
pub fn unavailable(device: Device) -> Option<String> {
    if device != Device::Cpu {
        return Some(format!(
            "--int8 runs on the CPU only (this run is on {device:?}); use -d cpu, or --precision bf16 on a GPU"
        ));
    }
    let cpu = crate::device::CpuFeatures::detect();
    if !(cpu.has("avx2") && cpu.has("fma")) {
        return Some("--int8 needs an x86 CPU with AVX2 and FMA (libtorch's fbgemm kernels); leave it off here".into());
    }
    // SAFETY: looks two names up in libtorch's operator registry.
    if unsafe { hpcml_int8_linear_available() } != 1 {
        return Some(
            "--int8: this libtorch has no quantized linear operators (built without fbgemm); leave it off".into(),
        );
    }
    None
}

/// Whether activations are quantized text by text (see int8_linear.cpp), read
/// once; `HPCML_INT8_PER_TEXT=0` gives PyTorch's one range per batch, for
/// comparisons.
fn per_text() -> bool {
    static PER_TEXT: OnceLock<bool> = OnceLock::new();
    *PER_TEXT.get_or_init(|| !crate::cli::switched_off("HPCML_INT8_PER_TEXT"))
}

/// A `[out, in]` fp32 weight and its bias, quantized and packed for fbgemm.
pub struct Int8Linear {
    packed: NonNull<c_void>,
}

// SAFETY: the packed weight is never changed after packing; fbgemm only reads
// it, from whichever thread runs the product.
unsafe impl Send for Int8Linear {}
unsafe impl Sync for Int8Linear {}

impl Int8Linear {
    pub fn pack(weight: &Tensor, bias: &Tensor) -> Result<Int8Linear> {
        if weight.device() != Device::Cpu || weight.kind() != Kind::Float {
            bail!("int8 layers take an fp32 weight on the CPU, not {:?} on {:?}", weight.kind(), weight.device());
        }
        let mut packed: *mut c_void = std::ptr::null_mut();
        call("quantizing a linear weight to int8", |err, len| {
            // SAFETY: both tensors are live for the call; `packed` receives a
            // new object that this struct frees.
            unsafe { hpcml_int8_linear_pack(weight.as_ptr(), bias.as_ptr(), &mut packed, err, len) }
        })?;
        match NonNull::new(packed) {
            Some(packed) => Ok(Int8Linear { packed }),
            None => bail!("quantizing a linear weight to int8: no packed weight came back"),
        }
    }

    /// `x W^T + b` over the last dimension of `x` (fp32 in, fp32 out). Each
    /// example of a `[batch, len, in]` input is quantized on its own, over
    /// its first `lengths[b]` rows (int64 `[batch]`; `None`: all of them);
    /// its other rows come out zero.
    pub fn forward(&self, x: &Tensor, lengths: Option<&Tensor>) -> Result<Tensor> {
        let lengths = lengths.map_or(std::ptr::null(), |l| l.as_ptr());
        let per_text = c_int::from(per_text());
        new_tensor("int8 linear", |out, err, len| {
            // SAFETY: `x`, `lengths` (or null) and the packed weight are live for the call.
            unsafe { hpcml_int8_linear(x.as_ptr(), self.packed.as_ptr(), lengths, per_text, out, err, len) }
        })
    }
}

impl Drop for Int8Linear {
    fn drop(&mut self) {
        // SAFETY: `packed` came from hpcml_int8_linear_pack and is freed once.
        unsafe { hpcml_int8_linear_free(self.packed.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_layers_stay_close_to_fp32_and_keep_the_shape() {
        if let Some(why) = unavailable(Device::Cpu) {
            eprintln!("{why}; nothing to compare");
            return;
        }
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        // Rows of very different scale: per-channel scales keep the small ones.
        let w = Tensor::randn([64, 96], opts) * Tensor::logspace(-2.0, 0.0, 64, 10.0, opts).unsqueeze(1);
        let b = Tensor::randn([64], opts);
        let layer = Int8Linear::pack(&w, &b).unwrap();
        let x = Tensor::randn([3, 7, 96], opts);
        for input in [x.shallow_clone(), x.narrow(1, 0, 1)] {
            let got = layer.forward(&input, None).unwrap();
            let want = input.linear(&w, Some(&b));
            assert_eq!(got.size(), want.size());
            assert_eq!(got.kind(), Kind::Float);
            // 7-bit activations (a step of 1/64 of an example's largest value)
            // keep the outputs within about 2% of their size.
            let err = (&got - &want).norm().double_value(&[]) / want.norm().double_value(&[]);
            assert!(err < 0.03, "int8 outputs are off by {err} relative");
            let same = (&got - &want).abs().max().double_value(&[]);
            assert!(same > 0.0, "int8 gave exactly fp32's outputs: not quantized");
        }
        // The smallest row's outputs too (a per-tensor scale would flatten them).
        let small = layer.forward(&x, None).unwrap().select(2, 0);
        let want = x.linear(&w, Some(&b)).select(2, 0);
        let diff = (&small - &want).abs().max().double_value(&[]);
        assert!(diff < 0.02, "the smallest channel is off by {diff}");
    }

    #[test]
    fn each_text_is_quantized_over_its_own_tokens() {
        if unavailable(Device::Cpu).is_some() || !per_text() {
            return;
        }
        tch::manual_seed(5);
        let opts = (Kind::Float, Device::Cpu);
        let (w, b) = (Tensor::randn([40, 24], opts) * 0.1, Tensor::randn([40], opts));
        let layer = Int8Linear::pack(&w, &b).unwrap();
        // Text 0 of 3 tokens (then 2 rows of padding holding large values);
        // text 1 of 5 tokens ten times larger than text 0's.
        let small = Tensor::randn([1, 3, 24], opts);
        let x = Tensor::cat(
            &[
                Tensor::cat(&[&small, &(Tensor::ones([1, 2, 24], opts) * 50.0)], 1),
                Tensor::randn([1, 5, 24], opts) * 10.0,
            ],
            0,
        );
        let lengths = Tensor::from_slice(&[3i64, 5]);
        let got = layer.forward(&x, Some(&lengths)).unwrap();
        // Alone, text 0 is one example (its rows shared among the threads):
        // the same bits, whatever its padding and its neighbour hold.
        let alone = layer.forward(&small, None).unwrap();
        assert!(got.narrow(0, 0, 1).narrow(1, 0, 3).equal(&alone), "text 0 depends on its batch");
        assert!(got.narrow(0, 0, 1).narrow(1, 3, 2).eq(0.0).all().int64_value(&[]) == 1, "padding rows are not zero");
        // And within 7-bit steps of text 0's own range, not text 1's.
        let want = small.linear(&w, Some(&b));
        let err = (&alone - &want).norm().double_value(&[]) / want.norm().double_value(&[]);
        assert!(err < 0.03, "text 0 is off by {err} relative");
    }

    #[test]
    fn a_mismatched_input_is_an_error_not_a_crash() {
        if unavailable(Device::Cpu).is_some() {
            return;
        }
        let opts = (Kind::Float, Device::Cpu);
        let layer = Int8Linear::pack(&Tensor::ones([8, 4], opts), &Tensor::zeros([8], opts)).unwrap();
        let err = layer.forward(&Tensor::ones([2, 5], opts), None).unwrap_err();
        assert!(err.to_string().starts_with("int8 linear:"), "{err}");
        assert!(!err.to_string().contains("Exception raised from"), "{err}");
        assert!(
            Int8Linear::pack(&Tensor::ones([8, 4], (Kind::Double, Device::Cpu)), &Tensor::zeros([8], opts)).is_err()
        );
    }
}
