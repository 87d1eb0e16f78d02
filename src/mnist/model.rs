//! The tutorial's LeNet-5-like network, the same function as its TensorFlow
//! graph: conv 5x5x32 SAME + ReLU + 2x2 max-pool, conv 5x5x64 SAME + ReLU + 2x2
//! max-pool, fc 3136 -> 512 + ReLU, dropout 0.5 in training, fc 512 -> 10.
//!
//! Layout: tensors are libtorch's logical NCHW with channels-last strides, i.e.
//! TensorFlow's NHWC in memory. The pooled features are flattened in HWC order,
//! exactly as the tutorial's `reshape` of an NHWC tensor, so `fc1` sees the
//! features in TensorFlow's order; its weight is stored `[512, 3136]` (out x in,
//! libtorch's `linear`), the transpose of TensorFlow's `[3136, 512]`. Conv
//! weights are `[out, in, 5, 5]` (TensorFlow: `[5, 5, in, out]`). SAME padding of
//! a 5x5 kernel at stride 1 is 2 on every side, and SAME 2x2/2 pooling of even
//! sizes pads nothing, so both match TensorFlow's exactly.
//!
//! Not an `nn::ModuleT`: dropout takes its mask from the caller, because the
//! mask must be a function of (seed, step, example) for ranks to agree with a
//! single process (see `train::rng::dropout_mask`).

use anyhow::Result;
use tch::{nn, Device, Kind, Tensor};

use crate::train::{rng, Precision};

pub const CONV1_DEPTH: i64 = 32;
pub const CONV2_DEPTH: i64 = 64;
pub const HIDDEN: i64 = 512;
pub const FEATURES: i64 = 7 * 7 * CONV2_DEPTH;
pub const NUM_LABELS: i64 = 10;
pub const DROPOUT: f64 = 0.5;
/// Standard deviation of every weight's truncated normal.
pub const INIT_STDDEV: f64 = 0.1;

pub struct Cnn {
    conv1_w: Tensor,
    conv1_b: Tensor,
    conv2_w: Tensor,
    conv2_b: Tensor,
    fc1_w: Tensor,
    fc1_b: Tensor,
    fc2_w: Tensor,
    fc2_b: Tensor,
}

/// TensorFlow's `truncated_normal(stddev)`: normal, redrawn beyond two standard
/// deviations; drawn by inverse CDF (as PyTorch's `trunc_normal_`): one uniform
/// per value from a counter-based stream keyed by `key`, so the weights are a
/// pure function of the seed, not of a global generator's state.
pub fn truncated_normal(key: u64, shape: &[i64], stddev: f64) -> Result<Tensor> {
    // Uniform on (-erf(sqrt 2), erf(sqrt 2)) maps through sqrt(2) * erfinv onto
    // (-2, 2) standard deviations. Rust's std has no erf: libtorch's is libm's.
    let bound = Tensor::from(std::f64::consts::SQRT_2).f_erf()?.f_double_value(&[])?;
    let n: i64 = shape.iter().product();
    let mut g = rng::SplitMix64::new(key);
    let u: Vec<f64> = (0..n).map(|_| bound * (2.0 * g.unit() - 1.0)).collect();
    Ok(Tensor::f_from_slice(&u)?
        .f_reshape(shape)?
        .f_erfinv()?
        .f_mul_scalar(stddev * std::f64::consts::SQRT_2)?
        .f_clamp(-2.0 * stddev, 2.0 * stddev)?
        .f_to_kind(Kind::Float)?)
}

impl Cnn {
    /// Variables under `p` named after their layers (`conv1.weight`, ...,
    /// `fc2.bias`), initialised as the tutorial does: truncated normal weights
    /// (stddev 0.1), conv1 bias 0, the other biases 0.1. Drawn on the CPU from
    /// streams keyed by `seed` and the layer, so every rank and every device
    /// starts from the same weights.
    pub fn new(p: &nn::Path, seed: u64) -> Result<Cnn> {
        let tn = |layer: &str, shape: &[i64]| truncated_normal(rng::derive(seed, layer, 0), shape, INIT_STDDEV);
        let conv1_w = tn("init conv1", &[CONV1_DEPTH, 1, 5, 5])?;
        let conv2_w = tn("init conv2", &[CONV2_DEPTH, CONV1_DEPTH, 5, 5])?;
        let fc1_w = tn("init fc1", &[HIDDEN, FEATURES])?;
        let fc2_w = tn("init fc2", &[NUM_LABELS, HIDDEN])?;
        let full = |n: i64, v: f64| Tensor::f_full([n], v, (Kind::Float, Device::Cpu));
        let layer = |name: &str, w: &Tensor, b: Tensor| -> Result<(Tensor, Tensor)> {
            let l = p / name;
            Ok((l.f_var_copy("weight", w)?, l.f_var_copy("bias", &b)?))
        };
        let (conv1_w, conv1_b) = layer("conv1", &conv1_w, full(CONV1_DEPTH, 0.0)?)?;
        let (conv2_w, conv2_b) = layer("conv2", &conv2_w, full(CONV2_DEPTH, 0.1)?)?;
        let (fc1_w, fc1_b) = layer("fc1", &fc1_w, full(HIDDEN, 0.1)?)?;
        let (fc2_w, fc2_b) = layer("fc2", &fc2_w, full(NUM_LABELS, 0.1)?)?;
        Ok(Cnn { conv1_w, conv1_b, conv2_w, conv2_b, fc1_w, fc1_b, fc2_w, fc2_b })
    }

    /// Logits (f32) for images `[n, 1, 28, 28]` (channels-last strides). With a
    /// `dropout` mask (`[n, 512]` of 0 and 2), this is the training graph;
    /// without, evaluation. Convolutions and matmuls take `precision`'s dtype;
    /// the master weights stay f32.
    pub fn forward(&self, images: &Tensor, dropout: Option<&Tensor>, precision: Precision) -> Result<Tensor> {
        let c = |t: &Tensor| precision.cast(t);
        let x = c(images);
        let h = conv_relu_pool(&x, &c(&self.conv1_w), &c(&self.conv1_b))?;
        let h = conv_relu_pool(&h, &c(&self.conv2_w), &c(&self.conv2_b))?;
        // NCHW with channels-last strides permuted to NHWC is contiguous: the
        // flatten is a view, in the tutorial's HWC order.
        let h = h.f_permute([0, 2, 3, 1])?.f_reshape([-1, FEATURES])?;
        let mut h = h.f_linear(&c(&self.fc1_w), Some(&c(&self.fc1_b)))?;
        let mut h = h.f_relu_()?;
        if let Some(mask) = dropout {
            h = h.f_mul(&crate::device::upload(mask, h.device())?.f_to_kind(h.kind())?)?;
        }
        Ok(h.f_linear(&c(&self.fc2_w), Some(&c(&self.fc2_b)))?.f_to_kind(Kind::Float)?)
    }

    /// The tutorial's `regularizers`: l2_loss (sum of squares / 2) of both fully
    /// connected layers' weights and biases.
    pub fn l2_loss(&self) -> Result<f64> {
        let _guard = tch::no_grad_guard();
        let mut total = 0.0;
        for t in [&self.fc1_w, &self.fc1_b, &self.fc2_w, &self.fc2_b] {
            total += t.f_square()?.f_sum(Kind::Float)?.f_double_value(&[])? / 2.0;
        }
        Ok(total)
    }
}

/// `max_pool(relu(conv(x) + b))`, computed as `relu(max_pool(conv(x) + b))`:
/// the same values (ReLU is monotonic, so it commutes with max) and the same
/// gradients (the pool routes the gradient to the first maximum either way, and
/// ReLU passes it only where that maximum is positive), with the ReLU and its
/// backward on a tensor 4x smaller.
fn conv_relu_pool(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let pooled =
        x.f_conv2d(w, Some(b), [1, 1], [2, 2], [1, 1], 1)?.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?;
    // In place: the pool's backward keeps its input and indices, not its output.
    let mut pooled = pooled;
    Ok(pooled.f_relu_()?)
}

/// The weights the L2 term covers, by variable name.
pub fn is_regularized(name: &str) -> bool {
    name.starts_with("fc1.") || name.starts_with("fc2.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Params;

    #[test]
    fn truncated_normal_stays_within_two_stddevs_and_has_its_spread() {
        let t = truncated_normal(1, &[200_000], 0.1).unwrap();
        assert!(t.abs().max().double_value(&[]) <= 0.2);
        // A normal truncated at 2 sigma keeps 88% of the variance: std 0.0880.
        let std = t.std(true).double_value(&[]);
        assert!((std - 0.0880).abs() < 0.001, "{std}");
        assert!(t.mean(Kind::Float).double_value(&[]).abs() < 0.001);
    }

    #[test]
    fn shapes_names_and_initial_values() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Cnn::new(&vs.root(), 66478).unwrap();
        let p = Params::trainable(&vs);
        assert_eq!(
            p.names,
            [
                "conv1.bias",
                "conv1.weight",
                "conv2.bias",
                "conv2.weight",
                "fc1.bias",
                "fc1.weight",
                "fc2.bias",
                "fc2.weight"
            ]
        );
        assert_eq!(p.numel(), 32 * 25 + 32 + 64 * 32 * 25 + 64 + 3136 * 512 + 512 + 512 * 10 + 10);
        assert_eq!(m.conv1_b.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert!((m.fc2_b.mean(Kind::Float).double_value(&[]) - 0.1).abs() < 1e-7);
        let x = crate::mnist::data::fake_data(3).tensors(Device::Cpu).unwrap().0;
        let logits = m.forward(&x, None, Precision::Fp32).unwrap();
        assert_eq!(logits.size(), vec![3, 10]);
        // Same seed, same weights; another seed, others.
        let vs2 = nn::VarStore::new(Device::Cpu);
        let m2 = Cnn::new(&vs2.root(), 66478).unwrap();
        assert!(m2.fc1_w.equal(&m.fc1_w));
        let vs3 = nn::VarStore::new(Device::Cpu);
        assert!(!Cnn::new(&vs3.root(), 1).unwrap().fc1_w.equal(&m.fc1_w));
        assert!(is_regularized("fc1.weight") && is_regularized("fc2.bias") && !is_regularized("conv2.bias"));
    }

    #[test]
    fn flatten_is_in_tensorflows_hwc_order() {
        // One image whose pooled feature (h, w, c) is known: set the conv2 output
        // through its bias only (zero weights), then read which fc1 input moves.
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Cnn::new(&vs.root(), 1).unwrap();
        let _guard = tch::no_grad_guard();
        let _ = m.conv2_w.shallow_clone().zero_();
        let bias: Vec<f32> = (0..64).map(|c| c as f32).collect();
        m.conv2_b.shallow_clone().copy_(&Tensor::from_slice(&bias));
        // fc1 reads feature k only: output 0 = feature k.
        let _ = m.fc1_w.shallow_clone().zero_();
        let _ = m.fc1_b.shallow_clone().zero_();
        let k = (3 * 7 + 5) * 64 + 17; // (h 3, w 5, c 17) in HWC order
        let _ = m.fc1_w.shallow_clone().narrow(0, 0, 1).narrow(1, k, 1).fill_(1.0);
        let _ = m.fc2_w.shallow_clone().zero_();
        let _ = m.fc2_w.shallow_clone().narrow(0, 0, 1).narrow(1, 0, 1).fill_(1.0);
        let _ = m.fc2_b.shallow_clone().zero_();
        let x = crate::mnist::data::fake_data(1).tensors(Device::Cpu).unwrap().0;
        let logits = m.forward(&x, None, Precision::Fp32).unwrap();
        assert_eq!(logits.double_value(&[0, 0]), 17.0);
    }
}
