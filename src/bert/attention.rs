//! Attention for fp32 inference on x86 CPUs (see attention.cpp beside this
//! file): each (example, head) as two MKL products with the softmax between
//! them, its scores kept in cache, written straight into the layout the
//! output projection reads: 1.3-1.7x the rate of libtorch's fused kernel on
//! MiniLM's shapes on a Zen 3 (`cargo bench --bench attention`), about 6% of
//! fp32 and int8 inference there. That kernel serves everything else
//! (training, bf16, GPUs, CPUs that are not x86).

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

use anyhow::Result;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::shim::new_tensor;

extern "C" {
    fn hpcml_attention_available() -> c_int;
    fn hpcml_attention(
        q: *const C_tensor,
        k: *const C_tensor,
        v: *const C_tensor,
        key_bias: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Whether the kernel runs on this machine (x86 with AVX2 and FMA, a libtorch
/// with MKL's sgemm), read once; `HPCML_ATTENTION=0` leaves attention to
/// libtorch's kernel, for comparisons.
fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // SAFETY: reads CPU flags and looks a symbol up.
        !crate::cli::switched_off("HPCML_ATTENTION") && unsafe { hpcml_attention_available() } == 1
    })
}

/// Whether [`attend`] serves these inputs: fp32 on the CPU, without autograd.
pub fn serves(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    [q, k, v].iter().all(|t| t.device() == Device::Cpu && t.kind() == Kind::Float && !t.requires_grad()) && available()
}

/// `softmax(q k^T / sqrt(head_dim) + key_bias) v` for `q` `[batch, heads,
/// queries, head_dim]` and `k`, `v` `[batch, heads, keys, head_dim]`, with
/// `key_bias` (0 for a token, -inf for padding) one value per example and key;
/// the result is `[batch, queries, heads * head_dim]`. Only where [`serves`].
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, key_bias: Option<&Tensor>) -> Result<Tensor> {
    let bias = key_bias.map_or(std::ptr::null(), |b| b.as_ptr());
    new_tensor("attention", |out, err, len| {
        // SAFETY: every tensor is live for the call; `bias` is null or live.
        unsafe { hpcml_attention(q.as_ptr(), k.as_ptr(), v.as_ptr(), bias, out, err, len) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libtorch's attention in float64, in the layout [`attend`] returns.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let [q, k, v] = [q, k, v].map(|t| t.to_kind(Kind::Double));
        let bias = bias.map(|b| b.to_kind(Kind::Double));
        let ctx = Tensor::scaled_dot_product_attention(&q, &k, &v, bias.as_ref(), 0.0, false, None, false);
        let s = ctx.size();
        ctx.transpose(1, 2).reshape([s[0], s[2], s[1] * s[3]])
    }

    /// The largest difference from the float64 result, relative to its
    /// largest value. libtorch's fp32 kernel and this one are both within
    /// about 2e-6 of it on these inputs.
    fn max_diff(a: &Tensor, exact: &Tensor) -> f64 {
        let err = a.to_kind(Kind::Double).f_sub(exact).unwrap().abs().max().double_value(&[]);
        err / exact.abs().max().double_value(&[])
    }

    #[test]
    fn serves_fp32_inference_on_x86_with_avx2() {
        let cpu = crate::device::CpuFeatures::detect();
        let q = Tensor::randn([1, 2, 3, 4], (Kind::Float, Device::Cpu));
        let expected =
            cpu.is_x86() && cpu.has("avx2") && cpu.has("fma") && !crate::cli::switched_off("HPCML_ATTENTION");
        assert_eq!(serves(&q, &q, &q), expected);
        assert!(!serves(&q.to_kind(Kind::BFloat16), &q, &q), "bf16 is libtorch's");
        let trained = q.set_requires_grad(true);
        assert!(!serves(&trained, &q, &q), "autograd is libtorch's");
    }

    #[test]
    fn is_as_exact_as_libtorchs_kernel() {
        let q = Tensor::randn([1, 1, 1, 8], (Kind::Float, Device::Cpu));
        if !serves(&q, &q, &q) {
            return;
        }
        let _guard = tch::no_grad_guard();
        tch::manual_seed(3);
        // Query, key and value as views of one fused projection, as the
        // layers make them; lengths past a block of queries (128) and not a
        // multiple of 8; a padding mask; [CLS] alone against every key.
        for (batch, heads, len, dim) in [(3, 4, 37, 8), (2, 3, 300, 16), (16, 12, 128, 32), (1, 2, 1, 4)] {
            let y = Tensor::randn([batch, len, 3 * heads * dim], (Kind::Float, Device::Cpu)) * 3.0;
            let split =
                |i: i64| y.narrow(2, i * heads * dim, heads * dim).view([batch, len, heads, dim]).transpose(1, 2);
            let (q, k, v) = (split(0), split(1), split(2));
            let got = attend(&q, &k, &v, None).unwrap();
            let d = max_diff(&got, &reference(&q, &k, &v, None));
            assert!(d < 1e-5, "{batch}x{heads}x{len}x{dim}: differs by {d} (relative)");

            // Example e keeps its first len - 5e keys (at least one).
            let keep = Tensor::arange(len, (Kind::Int64, Device::Cpu))
                .unsqueeze(0)
                .lt_tensor(&(Tensor::arange(batch, (Kind::Int64, Device::Cpu)) * -5 + len).clamp_min(1).unsqueeze(1));
            let bias = Tensor::zeros([batch, len], (Kind::Float, Device::Cpu))
                .masked_fill(&keep.logical_not(), f64::NEG_INFINITY)
                .view([batch, 1, 1, len]);
            let got = attend(&q, &k, &v, Some(&bias)).unwrap();
            let d = max_diff(&got, &reference(&q, &k, &v, Some(&bias)));
            assert!(d < 1e-5, "{batch}x{heads}x{len}x{dim} with padding: differs by {d} (relative)");

            let cls = q.narrow(2, 0, 1);
            let got = attend(&cls, &k, &v, Some(&bias)).unwrap();
            let d = max_diff(&got, &reference(&cls, &k, &v, Some(&bias)));
            assert!(d < 1e-5, "{batch}x{heads}x{len}x{dim} for [CLS]: differs by {d} (relative)");
        }
    }

    #[test]
    fn refuses_mismatched_shapes() {
        let q = Tensor::randn([2, 3, 5, 4], (Kind::Float, Device::Cpu));
        if !serves(&q, &q, &q) {
            return;
        }
        let k = Tensor::randn([2, 3, 5, 8], (Kind::Float, Device::Cpu));
        let err = attend(&q, &k, &k, None).unwrap_err().to_string();
        assert!(err.contains("disagree in shape"), "{err}");
        let bias = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
        let err = attend(&q, &q, &q, Some(&bias)).unwrap_err().to_string();
        assert!(err.contains("one fp32 value per example and key"), "{err}");
    }
}
